//! The test vectors of dump-format §1.10 and malformed-input cases.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn bs(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| b(s)).collect()
}

fn decode_hex(s: &str) -> Value {
    decode(&hex(s)).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn fields(items: &[(&str, &str, Option<i64>)]) -> Value {
    Value::Hash(
        items
            .iter()
            .map(|(f, v, t)| HashField {
                field: b(f),
                value: b(v),
                expire_at_ms: *t,
            })
            .collect(),
    )
}

#[test]
fn int_strings_every_server() {
    for p in [
        "00 c064 0900 57dbc4fd3488ee02",
        "00 c064 0a00 87299531600e8db3",
        "00 c064 0b00 eef628429d91643a",
        "00 c064 5000 48035ca0fe5cea47",
        "00 c064 0c00 4c5fa1f19a2413fa",
    ] {
        assert_eq!(decode_hex(p), Value::String(b("100")));
    }
    assert_eq!(
        decode_hex("00 c13075 0a00 49977f92988c365b"),
        Value::String(b("30000"))
    );
    assert_eq!(
        decode_hex("00 c200943577 0a00 421228d8e073c087"),
        Value::String(b("2000000000"))
    );
}

#[test]
fn plain_and_lzf_strings() {
    assert_eq!(
        decode_hex("00 0b68656c6c6f20776f726c64 0a00 0bfc49b9a6c7a034"),
        Value::String(b("hello world"))
    );
    let lzf = "00 c319440008616263646566676861e0ff07e1ff07e1ff07e1d407016768 0a00 cd0ac67b5f698c95";
    assert_eq!(decode_hex(lzf), Value::String(b"abcdefgh".repeat(128)));
}

#[test]
fn small_lists() {
    let want = Value::List(bs(&["a", "b", "1", "2", "-7", "300", "70000"]));
    let q1 = "0e 0121210000001b000000070000016103016203f202f302fef903c02c0104f0701101ff 0900 45c0dac1b990fb1c";
    let q2 =
        "12 01021c1c000000070081610281620201010201dff902c12c02f270110104ff 0a00 f80530602d7bee25";
    assert_eq!(decode_hex(q1), want);
    assert_eq!(decode_hex(q2), want);
}

#[test]
fn small_zsets() {
    let want = Value::ZSet(vec![
        (b("c"), -3.0),
        (b("a"), 1.0),
        (b("b"), 2.5),
        (b("d"), f64::INFINITY),
    ]);
    let zl = "0c 262600000020000000080000016303fefd03016103f20201620303322e350501640303696e66ff 0900 c9a5b81fbd8399a5";
    let lp = "11 22220000000800816302dffd02816102010181620283322e350481640283696e6604ff 0a00 c54a2b13accba97f";
    assert_eq!(decode_hex(zl), want);
    assert_eq!(decode_hex(lp), want);
}

#[test]
fn small_hashes() {
    let want = fields(&[
        ("f1", "v1", None),
        ("f2", "2", None),
        ("f3", "300000", None),
    ]);
    let zl = "0d 22220000001c000000060000026631040276310402663204f30202663304f0e09304ff 0900 5d1739101eacee9b";
    let lp =
        "10 1e1e0000000600826631038276310382663203020182663303f2e0930404ff 0a00 1efbda3a36e72b9e";
    assert_eq!(decode_hex(zl), want);
    assert_eq!(decode_hex(lp), want);
}

#[test]
fn sets() {
    let intset = "0b c32830040800000005200302c063ff60000001200b400000024004200000032003600002f2052a201b0000 0a00 ec48878ad6ee1d97";
    let got = decode_hex(intset).canonical();
    assert_eq!(
        got,
        Value::Set(bs(&["-40000", "1", "2", "3", "5000000000"])).canonical()
    );
    let lp =
        "14 1e1e0000000300856170706c65068662616e616e61078663686572727907ff 0b00 ed1626bed451ecd3";
    assert_eq!(
        decode_hex(lp),
        Value::Set(bs(&["apple", "banana", "cherry"]))
    );
}

#[test]
fn empty_streams_with_a_group() {
    let v15 = decode_hex("0f 0000000001016700000000 0900 088dbae1c32d8fd8");
    let Value::Stream(s) = &v15 else {
        panic!("not a stream")
    };
    assert_eq!((s.length, s.first_id, s.groups.len()), (0, None, 1));
    assert_eq!(s.groups[0].name, b("g"));
    assert_eq!(s.groups[0].entries_read, None);
    for p in [
        "13 000000000000000000010167000081ffffffffffffffff0000 0a00 a01a953dfb9cddde",
        "15 000000000000000000010167000081ffffffffffffffff0000 0b00 96f26e9fcacfc572",
    ] {
        let v = decode_hex(p);
        let Value::Stream(s) = &v else {
            panic!("not a stream")
        };
        assert_eq!(s.first_id, Some(StreamId::ZERO));
        assert_eq!(s.entries_added, Some(0));
        // u64::MAX entries_read means "unknown".
        assert_eq!(s.groups[0].entries_read, None);
    }
    // Loading the type-15 stream, a newer server estimates entries_read
    // (0 for a never-used stream), while XGROUP CREATE on 7.0 leaves it
    // unknown: the canonical forms say exactly that.
    let Value::Stream(c) = v15.canonical() else {
        panic!()
    };
    assert_eq!(c.groups[0].entries_read, Some(0));
    assert_eq!(c.entries_added, Some(0));
}

#[test]
fn field_ttl_hashes() {
    let valkey = decode_hex("16 030161c00145172d18a20100000162c002ffffffffffffffff0163c003ffffffffffffffff 5000 2dbfe451353f8bd9");
    let redis = decode_hex("19 ed172d18a2010000242400000009008161020101f4ed172d18a2010000098162020201000181630203010001ff 0c00 aa7d44c15a2c0050");
    let want = fields(&[
        ("a", "1", Some(0x01a2_182d_1745)),
        ("b", "2", None),
        ("c", "3", None),
    ]);
    assert_eq!(valkey, want);
    let Value::Hash(h) = &redis else { panic!() };
    assert_eq!(h[0].expire_at_ms, Some(0x01a2_182d_17ed));
    assert_eq!((h[1].expire_at_ms, h[2].expire_at_ms), (None, None));
}

#[test]
fn type_22_below_80_is_the_redis_rc_layout() {
    // count 1; ttl 1000 (length form 0x43e8), field "f", value "v".
    let p = seal(22, &hex("01 43e8 0166 0176"), 12);
    assert_eq!(decode(&p).unwrap(), fields(&[("f", "v", Some(1000))]));
    // The same bytes under version 80 are read with the Valkey layout and fail.
    assert!(decode(&seal(22, &hex("01 43e8 0166 0176"), 80)).is_err());
}

#[test]
fn type_24_ttl_is_relative_to_the_minimum() {
    // min 1000; two fields, ttl 1 (= 1000) and 0 (none).
    let mut body = 1000u64.to_le_bytes().to_vec();
    body.extend(hex("02 01 0161 0131 00 0162 0132"));
    let got = decode(&seal(24, &body, 12)).unwrap();
    assert_eq!(got, fields(&[("a", "1", Some(1000)), ("b", "2", None)]));
}

#[test]
fn old_forms() {
    // type 1 list, type 2 set, type 3 zset with a text score, type 4 hash, type 5 zset.
    assert_eq!(
        decode(&seal(1, &hex("02 0161 0162"), 6)).unwrap(),
        Value::List(bs(&["a", "b"]))
    );
    assert_eq!(
        decode(&seal(2, &hex("01 0161"), 6)).unwrap(),
        Value::Set(bs(&["a"]))
    );
    let z = decode(&seal(3, &hex("02 0161 03322e35 0162 fe"), 6)).unwrap();
    assert_eq!(z, Value::ZSet(vec![(b("a"), 2.5), (b("b"), f64::INFINITY)]));
    assert_eq!(
        decode(&seal(4, &hex("01 0166 0176"), 6)).unwrap(),
        fields(&[("f", "v", None)])
    );
    let mut body = hex("01 0161");
    body.extend(2.5f64.to_le_bytes());
    assert_eq!(
        decode(&seal(5, &body, 9)).unwrap(),
        Value::ZSet(vec![(b("a"), 2.5)])
    );
    // zipmap: "a" -> "xy".
    let zm = hex("08 01 01 61 02 00 78 79 ff");
    assert_eq!(
        decode(&seal(9, &zm, 3)).unwrap(),
        fields(&[("a", "xy", None)])
    );
}

#[test]
fn module_values_are_kept_raw() {
    // id with name "AAAAAAAAA" version 1; opcodes: uint 5, string "x", EOF.
    let p = seal(7, &hex("01 02 05 05 0178 00"), 9);
    let Value::Module {
        module_id,
        name,
        raw,
    } = decode(&p).unwrap()
    else {
        panic!()
    };
    assert_eq!((module_id, name.as_str()), (1, "AAAAAAAAA"));
    assert_eq!(raw, hex("02 05 05 0178 00"));
    assert!(matches!(
        decode(&seal(6, &[0], 9)),
        Err(DecodeError::Unsupported { type_byte: 6, .. })
    ));
}

#[test]
fn unknown_types_are_refused() {
    for (t, v) in [(8, 9), (26, 13), (23, 80), (24, 80), (200, 9)] {
        let err = decode(&seal(t, &[0], v)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownType {
                type_byte: t,
                rdb_version: v
            }
        );
        assert!(err.to_string().starts_with("unknown type byte"));
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let err = decode(&seal(0, &hex("0161 00"), 9)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TrailingBytes {
            count: 1,
            offset: 3
        }
    );
}

#[test]
fn empty_and_duplicate_aggregates_are_corrupt() {
    assert!(matches!(
        decode(&seal(2, &hex("00"), 9)),
        Err(DecodeError::Corrupt { .. })
    ));
    assert!(matches!(
        decode(&seal(2, &hex("02 0161 0161"), 9)),
        Err(DecodeError::Corrupt { .. })
    ));
    assert!(matches!(
        decode(&seal(4, &hex("02 0161 0131 0161 0132"), 9)),
        Err(DecodeError::Corrupt { .. })
    ));
    assert!(matches!(
        decode(&seal(3, &hex("01 0161 fd"), 6)),
        Err(DecodeError::Corrupt { .. })
    ));
}

#[test]
fn every_truncation_of_real_payloads_is_an_error() {
    let payloads = [
        "0e 0121210000001b000000070000016103016203f202f302fef903c02c0104f0701101ff 0900 45c0dac1b990fb1c",
        "11 22220000000800816302dffd02816102010181620283322e350481640283696e6604ff 0a00 c54a2b13accba97f",
        "15 000000000000000000010167000081ffffffffffffffff0000 0b00 96f26e9fcacfc572",
        "19 ed172d18a2010000242400000009008161020101f4ed172d18a2010000098162020201000181630203010001ff 0c00 aa7d44c15a2c0050",
    ];
    for p in payloads {
        let bytes = hex(p);
        let env = parse_envelope(&bytes).unwrap();
        for cut in 0..env.body.len() {
            let short = seal(env.type_byte, &env.body[..cut], env.rdb_version);
            assert!(decode(&short).is_err(), "{p} cut at {cut}");
        }
    }
}

#[test]
fn error_messages_name_the_offset() {
    let err = decode(&seal(0, &hex("05 61"), 9)).unwrap_err();
    assert_eq!(err.to_string(), "truncated string value at byte offset 2");
    let err = decode(&seal(18, &hex("01 03 0161"), 10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt quicklist container type 3 at byte offset 2"
    );
}
