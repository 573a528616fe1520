use super::*;
use crate::format::dump::{decode, seal};

const NOW: i64 = 1_700_000_000_000;

fn cmd(words: &[&str]) -> Command {
    Command {
        args: words.iter().map(|w| w.as_bytes().to_vec()).collect(),
        offset: 7,
    }
}

/// Replays `cmds` over `base` (db 0 string keys), every key selected
/// except those starting with `other:`.
fn replay(base: &[(&str, &str)], cmds: &[&[&str]]) -> Finished {
    let mut r = Replay::new(Box::new(|_, k: &[u8]| !k.starts_with(b"other:")), NOW, 11);
    for (k, v) in base {
        let mut body = vec![v.len() as u8];
        body.extend_from_slice(v.as_bytes());
        r.base_key(0, k.as_bytes().to_vec(), seal(0, &body, 11), None);
    }
    for c in cmds {
        r.command(cmd(c), "incr.aof");
    }
    r.finish()
}

fn value(f: &Finished, key: &str) -> Option<Value> {
    let k = f.keys.iter().find(|k| k.key == key.as_bytes())?;
    Some(decode(&k.outcome.as_ref().unwrap().0).unwrap().canonical())
}

fn expiry(f: &Finished, key: &str) -> Option<i64> {
    let k = f.keys.iter().find(|k| k.key == key.as_bytes())?;
    k.outcome.as_ref().unwrap().1
}

fn damage(f: &Finished, key: &str) -> String {
    let k = f.keys.iter().find(|k| k.key == key.as_bytes()).unwrap();
    k.outcome.clone().unwrap_err()
}

fn s(v: &str) -> Value {
    Value::String(v.as_bytes().to_vec())
}

fn b(v: &[&str]) -> Vec<Vec<u8>> {
    v.iter().map(|x| x.as_bytes().to_vec()).collect()
}

#[test]
fn untouched_base_keys_keep_their_payload_byte_for_byte() {
    let f = replay(
        &[("a", "1"), ("b", "2")],
        &[&["PEXPIREAT", "a", "1800000000000"], &["RENAME", "b", "c"]],
    );
    let payload = seal(0, b"\x011", 11);
    assert_eq!(f.keys[0].outcome, Ok((payload, Some(1_800_000_000_000))));
    assert_eq!(f.keys[1].key, b"c");
    assert_eq!(f.keys.len(), 2);
}

#[test]
fn strings_counters_and_expiries() {
    let f = replay(
        &[("freq", "5")],
        &[
            &["INCR", "freq"],
            &["INCRBY", "freq", "10"],
            &["DECR", "freq"],
            &["SET", "new", "1", "NX"],
            &["SET", "new", "2", "NX"],
            &["SET", "gone", "x", "XX"],
            &["SET", "ttl", "v", "PXAT", "1800000000000"],
            &["SET", "ttl", "w", "KEEPTTL"],
            &["SET", "rel", "v", "EX", "60"],
            &["APPEND", "new", "23"],
            &["SETRANGE", "pad", "2", "x"],
            &["SETEX", "sx", "10", "v"],
            &["SET", "persisted", "v", "PX", "5"],
            &["PERSIST", "persisted"],
        ],
    );
    assert_eq!(value(&f, "freq"), Some(s("15")));
    assert_eq!(value(&f, "new"), Some(s("123")));
    assert_eq!(value(&f, "gone"), None);
    assert_eq!(value(&f, "ttl"), Some(s("w")));
    assert_eq!(expiry(&f, "ttl"), Some(1_800_000_000_000));
    assert_eq!(expiry(&f, "rel"), Some(NOW + 60_000));
    assert_eq!(value(&f, "pad"), Some(Value::String(b"\0\0x".to_vec())));
    assert_eq!(expiry(&f, "sx"), Some(NOW + 10_000));
    assert_eq!(expiry(&f, "persisted"), None);
}

#[test]
fn expire_options_follow_the_server() {
    let f = replay(
        &[("a", "1"), ("b", "1")],
        &[
            &["PEXPIREAT", "a", "1000", "NX"],
            &["PEXPIREAT", "a", "500", "GT"],
            &["PEXPIREAT", "a", "2000", "GT"],
            &["PEXPIREAT", "b", "100", "XX"],
            &["EXPIRE", "missing", "10"],
        ],
    );
    assert_eq!(expiry(&f, "a"), Some(2000));
    assert_eq!(expiry(&f, "b"), None);
    assert_eq!(f.keys.len(), 2);
}

#[test]
fn collections() {
    let f = replay(
        &[],
        &[
            &["HSET", "h", "joy", "0.4", "fear", "1"],
            &["HDEL", "h", "fear"],
            &["HINCRBY", "h", "n", "3"],
            &["HSETNX", "h", "n", "9"],
            &["HMSET", "h2", "a", "1"],
            &["HDEL", "h2", "a"],
            &["SADD", "s", "x", "y", "z"],
            &["SREM", "s", "y"],
            &["ZADD", "z", "1", "a", "2", "b"],
            &["ZADD", "z", "XX", "GT", "1", "b", "5", "a", "9", "c"],
            &["ZINCRBY", "z", "0.5", "b"],
            &["ZADD", "z", "INCR", "1", "c"],
            &["RPUSH", "l", "a", "b", "c", "d", "b"],
            &["LPUSH", "l", "z"],
            &["LPOP", "l"],
            &["RPOP", "l", "1"],
            &["LSET", "l", "-1", "D"],
            &["LINSERT", "l", "AFTER", "a", "a2"],
            &["LREM", "l", "0", "b"],
            &["LTRIM", "l", "0", "1"],
            &["RPUSHX", "nolist", "a"],
        ],
    );
    let field = |k: &str, v: &str| HashField {
        field: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        expire_at_ms: None,
    };
    assert_eq!(
        value(&f, "h"),
        Some(Value::Hash(vec![field("joy", "0.4"), field("n", "3")]))
    );
    assert_eq!(value(&f, "h2"), None, "an emptied hash is deleted");
    assert_eq!(value(&f, "s"), Some(Value::Set(b(&["x", "z"]))));
    assert_eq!(
        value(&f, "z"),
        Some(Value::ZSet(vec![
            (b"a".to_vec(), 5.0),
            (b"b".to_vec(), 2.5),
            (b"c".to_vec(), 1.0)
        ]))
    );
    assert_eq!(value(&f, "l"), Some(Value::List(b(&["a", "a2"]))));
    assert_eq!(value(&f, "nolist"), None);
}

#[test]
fn base_values_are_decoded_when_changed() {
    let mut r = Replay::new(Box::new(|_, _: &[u8]| true), NOW, 11);
    let set = dump::encode(&Value::Set(b(&["a", "b"])), 11).unwrap();
    r.base_key(0, b"s".to_vec(), set, Some(5));
    r.command(cmd(&["SADD", "s", "c"]), "f");
    let f = r.finish();
    assert_eq!(value(&f, "s"), Some(Value::Set(b(&["a", "b", "c"]))));
    assert_eq!(expiry(&f, "s"), Some(5), "the expiry stays");
}

#[test]
fn multi_exec_applies_and_an_open_multi_is_dropped() {
    let f = replay(
        &[],
        &[
            &["MULTI"],
            &["SET", "a", "1"],
            &["EXEC"],
            &["MULTI"],
            &["SET", "b", "1"],
            &["DEL", "a"],
        ],
    );
    assert_eq!(value(&f, "a"), Some(s("1")));
    assert_eq!(value(&f, "b"), None);
    assert_eq!(f.open_multi, Some((7, 2)));
}

#[test]
fn databases_flushes_and_deletes() {
    let f = replay(
        &[("a", "1"), ("b", "2")],
        &[
            &["SELECT", "1"],
            &["SET", "a", "db1"],
            &["SET", "c", "db1"],
            &["FLUSHDB"],
            &["SET", "d", "db1"],
            &["SELECT", "0"],
            &["UNLINK", "a"],
        ],
    );
    let keys: Vec<_> = f.keys.iter().map(|k| (k.db, k.key.clone())).collect();
    assert_eq!(keys, vec![(0, b"b".to_vec()), (1, b"d".to_vec())]);
    let f = replay(
        &[("a", "1")],
        &[&["SELECT", "3"], &["SET", "x", "1"], &["FLUSHALL"]],
    );
    assert!(f.keys.is_empty());
}

#[test]
fn renames_in_and_out_of_the_selection() {
    let f = replay(
        &[("a", "1"), ("b", "2")],
        &[
            &["SET", "other:x", "1"],
            &["RENAME", "other:x", "in"],
            &["RENAME", "a", "other:y"],
            &["RENAMENX", "b", "in"],
        ],
    );
    assert!(
        damage(&f, "in").contains("outside the selection"),
        "{}",
        damage(&f, "in")
    );
    assert_eq!(value(&f, "a"), None);
    assert_eq!(
        value(&f, "b"),
        Some(s("2")),
        "RENAMENX onto an existing key does nothing"
    );
}

#[test]
fn what_is_not_replayed_damages_the_key_until_replaced() {
    let f = replay(
        &[],
        &[
            &["XADD", "stm:events:kb", "1-1", "f", "v"],
            &["XGROUP", "CREATE", "grouped", "g", "0"],
            &["SPOP", "s"],
            &["PFADD", "hll", "a"],
            &["PFADD", "hll2", "a"],
            &["SET", "hll2", "replaced"],
            &["XADD", "other:stream", "1-1", "f", "v"],
            &["INCRBYFLOAT", "f", "1.5"],
        ],
    );
    assert!(damage(&f, "stm:events:kb").contains("stream"));
    assert!(damage(&f, "stm:events:kb").contains("byte 7 of incr.aof"));
    assert!(damage(&f, "s").contains("SPOP"));
    assert!(damage(&f, "grouped").contains("stream"));
    assert!(!f.keys.iter().any(|k| k.key == b"CREATE"));
    assert!(damage(&f, "hll").contains("not replayed"));
    assert!(damage(&f, "f").contains("INCRBYFLOAT"));
    assert_eq!(value(&f, "hll2"), Some(s("replaced")));
    assert!(!f.keys.iter().any(|k| k.key.starts_with(b"other:")));
}

#[test]
fn wrong_types_and_bad_numbers_are_damage_not_panics() {
    let f = replay(
        &[("str", "abc")],
        &[
            &["HSET", "str", "f", "v"],
            &["INCR", "str"],
            &["ZADD", "z", "nan", "m"],
            &["LSET", "nol", "5", "x"],
        ],
    );
    assert!(damage(&f, "str").contains("another type"));
    assert!(damage(&f, "z").contains("NaN"));
    assert_eq!(f.keys.len(), 2);
}

#[test]
fn restore_in_the_aof_sets_the_payload() {
    let payload = seal(0, b"\x01v", 11);
    let mut r = Replay::new(Box::new(|_, _: &[u8]| true), NOW, 11);
    let args = vec![
        b"RESTORE".to_vec(),
        b"k".to_vec(),
        b"0".to_vec(),
        payload.clone(),
    ];
    r.command(Command { args, offset: 0 }, "f");
    assert_eq!(r.finish().keys[0].outcome, Ok((payload, None)));
}

#[test]
fn keys_of_names_the_keys() {
    let args = |w: &[&str]| b(w);
    assert_eq!(keys_of(&args(&["SELECT", "1"])), Vec::<&[u8]>::new());
    assert_eq!(
        keys_of(&args(&["del", "a", "b"])),
        vec![b"a" as &[u8], b"b"]
    );
    assert_eq!(
        keys_of(&args(&["MSET", "a", "1", "b", "2"])),
        vec![b"a" as &[u8], b"b"]
    );
    assert_eq!(
        keys_of(&args(&["EVAL", "s", "1", "k", "arg"])),
        vec![b"k" as &[u8]]
    );
    assert_eq!(
        keys_of(&args(&["HSET", "h", "f", "v"])),
        vec![b"h" as &[u8]]
    );
}
