//! Unit tests of the reader on crafted files: every opcode, truncation,
//! bad magic, unknown opcodes and types, checksums.

use super::*;
use crate::format::dump::{self, crc64, seal};

/// Builds RDB files byte by byte.
struct File {
    bytes: Vec<u8>,
}

impl File {
    fn redis(version: u16) -> File {
        File {
            bytes: format!("REDIS{version:04}").into_bytes(),
        }
    }

    fn valkey(version: u16) -> File {
        File {
            bytes: format!("VALKEY{version:03}").into_bytes(),
        }
    }

    fn raw(mut self, b: &[u8]) -> File {
        self.bytes.extend_from_slice(b);
        self
    }

    fn string(self, s: &[u8]) -> File {
        assert!(s.len() < 64);
        self.raw(&[s.len() as u8]).raw(s)
    }

    fn aux(self, k: &[u8], v: &[u8]) -> File {
        self.raw(&[0xfa]).string(k).string(v)
    }

    fn string_key(self, k: &[u8], v: &[u8]) -> File {
        self.raw(&[0]).string(k).string(v)
    }

    /// EOF and a correct checksum.
    fn end(self) -> Vec<u8> {
        let mut f = self.raw(&[0xff]);
        let crc = crc64(&f.bytes);
        f.bytes.extend_from_slice(&crc.to_le_bytes());
        f.bytes
    }

    fn end_with_crc(self, crc: u64) -> Vec<u8> {
        let mut f = self.raw(&[0xff]);
        f.bytes.extend_from_slice(&crc.to_le_bytes());
        f.bytes
    }
}

fn read_all(bytes: &[u8]) -> (Vec<Item>, Option<RdbError>) {
    let mut reader = match RdbReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut items = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

fn keys(items: &[Item]) -> Vec<&KeyRecord> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Key(k) => Some(k),
            _ => None,
        })
        .collect()
}

#[test]
fn a_string_key_becomes_its_dump_payload() {
    let file = File::redis(9)
        .aux(b"redis-ver", b"6.2.14")
        .raw(&[0xfe, 0])
        .raw(&[0xfb, 1, 1])
        .raw(&[0xfc])
        .raw(&1_700_000_000_123i64.to_le_bytes())
        .string_key(b"k", b"hello")
        .end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    let k = keys(&items)[0];
    assert_eq!(k.key, b"k");
    assert_eq!(k.db, 0);
    assert_eq!(k.expire_at_ms, Some(1_700_000_000_123));
    assert_eq!(k.payload, seal(0, b"\x05hello", 9));
    assert_eq!(
        dump::decode(&k.payload).unwrap(),
        dump::Value::String(b"hello".to_vec())
    );
    assert!(matches!(
        items.last(),
        Some(Item::End {
            checksum: Checksum::Verified(_)
        })
    ));
    assert_eq!(
        items[0],
        Item::Aux {
            key: b"redis-ver".to_vec(),
            value: b"6.2.14".to_vec()
        }
    );
}

#[test]
fn expiry_in_seconds_idle_freq_and_db_apply_to_the_next_key_only() {
    let file = File::redis(9)
        .raw(&[0xfe, 3])
        .raw(&[0xfd])
        .raw(&1_700_000_000i32.to_le_bytes())
        .raw(&[0xf8, 0x05, 0xf9, 0x07])
        .string_key(b"a", b"1")
        .string_key(b"b", b"2")
        .end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    let ks = keys(&items);
    assert_eq!(ks[0].expire_at_ms, Some(1_700_000_000_000));
    assert_eq!(ks[0].idle_seconds, Some(5));
    assert_eq!(ks[0].lfu_freq, Some(7));
    assert_eq!((ks[0].db, ks[1].db), (3, 3));
    assert_eq!(ks[1].expire_at_ms, None);
    assert_eq!(ks[1].idle_seconds, None);
}

#[test]
fn integer_and_lzf_keys_are_expanded() {
    // An int8 key -100, then an LZF key: literal "a", back-reference of 9.
    let lzf = [0x00, b'a', 0xe0, 0x00, 0x00];
    let file = File::redis(9)
        .raw(&[0, 0xc0, 0x9c])
        .string(b"v")
        .raw(&[0, 0xc3, lzf.len() as u8, 10])
        .raw(&lzf)
        .string(b"w")
        .end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    let ks = keys(&items);
    assert_eq!(ks[0].key, b"-100");
    assert_eq!(ks[1].key, b"aaaaaaaaaa");
}

#[test]
fn checksum_zero_is_accepted_as_disabled() {
    let file = File::redis(10).string_key(b"k", b"v").end_with_crc(0);
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        items.last(),
        Some(&Item::End {
            checksum: Checksum::Disabled
        })
    );
}

#[test]
fn a_bad_checksum_is_an_error_after_the_keys() {
    let file = File::redis(10).string_key(b"k", b"v").end_with_crc(12345);
    let (items, err) = read_all(&file);
    assert_eq!(keys(&items).len(), 1, "the key before it is kept");
    match err {
        Some(RdbError::BadChecksum {
            expected, offset, ..
        }) => {
            assert_eq!(expected, 12345);
            assert_eq!(offset, file.len() as u64 - 8);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn old_versions_have_no_checksum() {
    let mut file = File::redis(4).string_key(b"k", b"v").raw(&[0xff]).bytes;
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        items.last(),
        Some(&Item::End {
            checksum: Checksum::Absent
        })
    );
    file.truncate(file.len() - 1);
    let (_, err) = read_all(&file);
    assert!(matches!(err, Some(RdbError::Truncated { .. })));
}

#[test]
fn bad_magic_is_refused() {
    for bytes in [&b"KBD1xxxxxxxx"[..], b"REDISxxxx", b"RED", b""] {
        let (_, err) = read_all(bytes);
        assert!(
            matches!(err, Some(RdbError::BadMagic { .. })),
            "{bytes:?}: {err:?}"
        );
    }
    let (_, err) = read_all(b"REDIS0099");
    assert!(matches!(
        err,
        Some(RdbError::UnsupportedVersion { version: 99, .. })
    ));
    let (_, err) = read_all(b"VALKEY011");
    assert!(matches!(
        err,
        Some(RdbError::UnsupportedVersion { version: 11, .. })
    ));
}

#[test]
fn truncation_anywhere_keeps_the_keys_before_it_and_names_the_offset() {
    let file = File::redis(11)
        .aux(b"ctime", b"1700000000")
        .string_key(b"a", b"first")
        .string_key(b"b", b"second")
        .end();
    let full = keys(&read_all(&file).0).len();
    assert_eq!(full, 2);
    for cut in 9..file.len() {
        let (items, err) = read_all(&file[..cut]);
        let err = err.unwrap_or_else(|| panic!("cut at {cut} read as complete"));
        assert!(err.is_truncation(), "cut at {cut}: {err}");
        assert_eq!(err.offset(), Some(cut as u64), "cut at {cut}: {err}");
        assert!(keys(&items).len() <= full);
    }
}

#[test]
fn an_unknown_type_names_itself_and_its_offset() {
    let head = File::redis(9).string_key(b"a", b"1").bytes;
    let at = head.len() as u64;
    let file = File { bytes: head }.raw(&[0x1f]).string(b"x").end();
    let (items, err) = read_all(&file);
    assert_eq!(keys(&items).len(), 1);
    match err {
        Some(RdbError::UnknownType {
            byte: 0x1f,
            offset,
            rdb_version: 9,
        }) => assert_eq!(offset, at),
        other => panic!("{other:?}"),
    }
}

#[test]
fn opcode_243_depends_on_magic_and_version() {
    // Valkey: SLOT_IMPORT (job name, ranges).
    let file = File::valkey(80)
        .raw(&[243])
        .string(b"job")
        .raw(&[1, 0, 0x41, 0x00])
        .string_key(b"k", b"v")
        .end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert!(items.contains(&Item::SlotImport {
        job: b"job".to_vec(),
        ranges: vec![(0, 0x100)]
    }));
    // Redis 13: KEY_META, kept in front of the payload.
    let meta = [243, 1, 0, 0, 0, 1, 5, 1, b'm', 0];
    let file = File::redis(13).raw(&meta).string_key(b"k", b"v").end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    let k = keys(&items)[0];
    assert!(k.payload.starts_with(&meta));
    assert_eq!(k.payload[meta.len()], 0, "then the type byte");
    // Redis 12: unknown.
    let file = File::redis(12).raw(&[243]).end();
    let (_, err) = read_all(&file);
    assert!(matches!(err, Some(RdbError::UnknownType { byte: 243, .. })));
}

#[test]
fn every_other_opcode_is_read() {
    let file = File::redis(12)
        .raw(&[0xf7, 0x05, 2, 0x02, 1, 7, 5, 1, b'x', 0])
        .raw(&[0xf5])
        .string(b"#!lua name=lib")
        .raw(&[0xf6])
        .string(b"f")
        .string(b"LUA")
        .raw(&[1])
        .string(b"desc")
        .string(b"code")
        .raw(&[0xf4, 1, 2, 3])
        .string_key(b"k", b"v")
        .end();
    let (items, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert!(items.contains(&Item::ModuleAux { module_id: 5 }));
    assert!(items.contains(&Item::Function(b"#!lua name=lib".to_vec())));
    assert!(items.contains(&Item::Function(b"code".to_vec())));
    assert!(items.contains(&Item::SlotInfo {
        slot: 1,
        keys: 2,
        expires: 3
    }));
    assert_eq!(keys(&items).len(), 1);
}

#[test]
fn declared_lengths_over_the_limit_are_refused_before_allocating() {
    let mut file = File::redis(9)
        .raw(&[0, 0x81])
        .raw(&u64::MAX.to_be_bytes())
        .bytes;
    file.extend_from_slice(b"abc");
    let (_, err) = read_all(&file);
    assert!(matches!(err, Some(RdbError::TooLarge { .. })), "{err:?}");
    // A value (not materialised, only collected) is bounded the same way.
    let mut file = File::redis(9).raw(&[0]).string(b"k").raw(&[0x81]).bytes;
    file.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let (_, err) = read_all(&file);
    assert!(matches!(err, Some(RdbError::TooLarge { .. })), "{err:?}");
    let small = ReaderOptions { max_value_bytes: 4 };
    let file = File::redis(9).string_key(b"k", b"too long").end();
    let mut reader = RdbReader::with_options(&file[..], small).unwrap();
    assert!(matches!(reader.next_item(), Err(RdbError::TooLarge { .. })));
    assert!(
        matches!(reader.next_item(), Ok(None)),
        "finished after an error"
    );
}

#[test]
fn into_parts_returns_what_follows_the_rdb() {
    let mut file = File::redis(9).string_key(b"k", b"v").end();
    file.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let mut reader = RdbReader::new(&file[..]).unwrap();
    while reader.next_item().unwrap().is_some() {}
    let (rest, _) = reader.into_parts();
    assert_eq!(rest, b"*1\r\n$4\r\nPING\r\n");
}

#[test]
fn looks_like_rdb_by_content() {
    assert!(looks_like_rdb(b"REDIS0011\xfa"));
    assert!(looks_like_rdb(b"VALKEY080"));
    assert!(!looks_like_rdb(b"KBD1"));
    assert!(!looks_like_rdb(b"REDIS"));
}

#[test]
fn huge_declared_counts_end_in_truncation_not_in_allocation() {
    // A list of 2^62 elements, a stream with 2^62 groups, a hash of 2^62
    // fields: each item consumes input, so the lie ends at the file's end.
    let huge = {
        let mut b = vec![0x81];
        b.extend_from_slice(&(1u64 << 62).to_be_bytes());
        b
    };
    for (t, prefix) in [(1u8, &[][..]), (4, &[]), (15, &[0, 0, 0, 0]), (24, &[0; 8])] {
        let mut file = File::redis(12)
            .raw(&[t])
            .string(b"k")
            .raw(prefix)
            .raw(&huge)
            .bytes;
        file.extend_from_slice(&[1, b'x']);
        let (items, err) = read_all(&file);
        assert!(keys(&items).is_empty());
        assert!(
            matches!(err, Some(RdbError::Truncated { .. })),
            "type {t}: {err:?}"
        );
    }
}

proptest::proptest! {
    /// Any bytes after a valid header: an error or an end, never a panic;
    /// every payload that comes out has a valid trailer.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        valkey in proptest::prelude::any::<bool>(),
    ) {
        let mut file = if valkey { File::valkey(80) } else { File::redis(12) }.bytes;
        file.extend_from_slice(&body);
        let (items, _) = read_all(&file);
        for k in keys(&items) {
            proptest::prop_assert!(dump::parse_envelope(&k.payload).is_ok());
        }
    }
}
