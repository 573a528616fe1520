//! Every payload captured by `scripts/gen-dump-fixtures.sh` decodes to
//! exactly what the server itself reported through ordinary commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use kbdump::format::dump::{self, HashField, Stream, StreamId, Value};
use serde_json::Value as Json;

/// How far a timestamp derived from an idle time may be from the decoded one.
const CLOCK_SLACK_MS: i64 = 2_000;

fn fixture_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dump");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn load(file: &PathBuf) -> Json {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn bytes(j: &Json) -> Vec<u8> {
    match j {
        Json::String(s) => s.as_bytes().to_vec(),
        Json::Object(o) => base64::engine::general_purpose::STANDARD
            .decode(o["base64"].as_str().unwrap())
            .unwrap(),
        other => panic!("not a byte string: {other}"),
    }
}

fn list(j: &Json) -> Vec<Vec<u8>> {
    j.as_array().unwrap().iter().map(bytes).collect()
}

fn id(j: &Json) -> StreamId {
    j.as_str().unwrap().parse().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The server's view as a `Value`, for every type but streams.
fn expected_value(t: &str, v: &Json) -> Value {
    let items = || v.as_array().unwrap().iter();
    match t {
        "string" => Value::String(bytes(v)),
        "list" => Value::List(list(v)),
        "set" => Value::Set(list(v)),
        "zset" => Value::ZSet(
            items()
                .map(|p| (bytes(&p[0]), parse_score(p[1].as_str().unwrap())))
                .collect(),
        ),
        "hash" => Value::Hash(
            items()
                .map(|f| HashField {
                    field: bytes(&f[0]),
                    value: bytes(&f[1]),
                    expire_at_ms: f[2].as_i64(),
                })
                .collect(),
        ),
        other => panic!("no plain view for {other}"),
    }
}

fn parse_score(s: &str) -> f64 {
    match s {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

type Entry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);

fn view_entries(view: &Json) -> Vec<Entry> {
    let entry = |e: &Json| {
        let pairs = e[1].as_array().unwrap().iter();
        (
            id(&e[0]),
            pairs.map(|p| (bytes(&p[0]), bytes(&p[1]))).collect(),
        )
    };
    view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(entry)
        .collect()
}

fn check_stream(label: &str, s: &Stream, view: &Json, now_ms: i64) {
    let got: Vec<Entry> = s.entries.iter().map(|e| (e.id, e.fields.clone())).collect();
    assert_eq!(got, view_entries(view), "{label}: entries");
    assert_eq!(
        s.length,
        view["length"].as_u64().unwrap(),
        "{label}: length"
    );
    assert_eq!(s.last_id, id(&view["last_id"]), "{label}: last id");
    if view["first_id"].is_null() {
        let meta = (s.first_id, s.max_deleted_id, s.entries_added);
        assert_eq!(meta, (None, None, None), "{label}: type 15 metadata");
    } else {
        assert_eq!(s.first_id, Some(id(&view["first_id"])), "{label}: first id");
        let max_deleted = Some(id(&view["max_deleted_id"]));
        assert_eq!(s.max_deleted_id, max_deleted, "{label}: max deleted");
        let added = view["entries_added"].as_u64();
        assert_eq!(s.entries_added, added, "{label}: entries added");
    }
    let groups = view["groups"].as_array().unwrap();
    assert_eq!(s.groups.len(), groups.len(), "{label}: group count");
    for g in groups {
        let name = bytes(&g["name"]);
        let got = s.groups.iter().find(|x| x.name == name).expect("group");
        check_group(label, got, g, now_ms);
    }
}

fn near(a: i64, b: i64) -> bool {
    (a - b).abs() < CLOCK_SLACK_MS
}

fn check_group(label: &str, got: &dump::StreamGroup, g: &Json, now_ms: i64) {
    let last = id(&g["last_delivered"]);
    assert_eq!(got.last_delivered, last, "{label}: last delivered");
    if g["has_entries_read"].as_bool().unwrap() {
        let read = g["entries_read"].as_u64();
        assert_eq!(got.entries_read, read, "{label}: entries read");
    }
    let pel = g["pel"].as_array().unwrap();
    assert_eq!(got.pel.len(), pel.len(), "{label}: pel size");
    let mut owner = BTreeMap::new();
    for (p, want) in got.pel.iter().zip(pel) {
        assert_eq!(p.id, id(&want["id"]), "{label}: pel id");
        let count = want["delivery_count"].as_u64().unwrap();
        assert_eq!(p.delivery_count, count, "{label}: delivery count");
        let derived = now_ms - want["idle_ms"].as_i64().unwrap();
        assert!(
            near(p.delivery_time_ms as i64, derived),
            "{label}: delivered"
        );
        owner.insert(p.id, bytes(&want["consumer"]));
    }
    let consumers = g["consumers"].as_array().unwrap();
    assert_eq!(got.consumers.len(), consumers.len(), "{label}: consumers");
    for c in consumers {
        check_consumer(label, got, c, &owner, now_ms);
    }
}

fn check_consumer(
    label: &str,
    group: &dump::StreamGroup,
    c: &Json,
    owner: &BTreeMap<StreamId, Vec<u8>>,
    now_ms: i64,
) {
    let name = bytes(&c["name"]);
    let gc = group
        .consumers
        .iter()
        .find(|x| x.name == name)
        .expect("consumer");
    let pending = c["pending"].as_u64().unwrap();
    assert_eq!(gc.pending.len() as u64, pending, "{label}: consumer pel");
    assert!(
        gc.pending.iter().all(|i| owner[i] == name),
        "{label}: owner"
    );
    let seen = now_ms - c["idle_ms"].as_i64().unwrap();
    assert!(near(gc.seen_time_ms as i64, seen), "{label}: seen time");
    match c["inactive_ms"].as_i64() {
        Some(-1) | None => assert_eq!(gc.active_time_ms, None, "{label}: active"),
        Some(idle) => {
            let active = gc.active_time_ms.expect("active time") as i64;
            assert!(near(active, now_ms - idle), "{label}: active time");
        }
    }
}

fn check_key(server: &str, rdb_version: u16, k: &Json) {
    let label = format!("{server} {}", k["key"]);
    let payload = hex(k["payload_hex"].as_str().unwrap());
    let env = dump::parse_envelope(&payload).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(env.rdb_version, rdb_version, "{label}");
    let value = dump::decode(&payload).unwrap_or_else(|e| panic!("{label}: {e}"));
    let t = k["expected"]["type"].as_str().unwrap();
    assert_eq!(value.redis_type().name(), t, "{label}");
    let rt = dump::redis_type(env.type_byte, env.rdb_version);
    assert_eq!(rt, Some(value.redis_type()), "{label}");
    let view = &k["expected"]["value"];
    match &value {
        Value::Stream(s) => {
            let now = k["server_time_ms"].as_i64().unwrap();
            check_stream(&label, s, view, now);
        }
        _ => {
            let want = expected_value(t, view);
            assert!(value.logically_eq(&want), "{label}: {value:?}");
        }
    }
}

#[test]
fn every_fixture_payload_decodes_to_the_servers_view() {
    let files = fixture_files();
    assert_eq!(files.len(), 5, "one fixture per server flavour");
    let mut checked = 0;
    for file in files {
        let doc = load(&file);
        let server = doc["label"].as_str().unwrap();
        let rdb_version = doc["rdb_version"].as_u64().unwrap() as u16;
        for k in doc["keys"].as_array().unwrap() {
            check_key(server, rdb_version, k);
            checked += 1;
        }
    }
    assert!(checked >= 200, "only {checked} payloads checked");
}

/// The fixtures must keep covering every type id the servers write.
#[test]
fn fixtures_cover_every_written_type_id() {
    let mut seen = BTreeSet::new();
    for file in fixture_files() {
        for k in load(&file)["keys"].as_array().unwrap() {
            seen.insert(hex(k["payload_hex"].as_str().unwrap())[0]);
        }
    }
    let want: BTreeSet<u8> = [
        0, 2, 4, 5, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25,
    ]
    .into();
    assert_eq!(seen, want);
}

/// One key decodes to the same value whichever server wrote it.
#[test]
fn one_key_decodes_alike_on_every_server() {
    let mut by_key: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for file in fixture_files() {
        let doc = load(&file);
        for k in doc["keys"].as_array().unwrap() {
            let value = dump::decode(&hex(k["payload_hex"].as_str().unwrap())).unwrap();
            let entry = by_key.entry(k["key"].to_string()).or_default();
            entry.push((doc["label"].to_string(), value));
        }
    }
    for (key, values) in by_key {
        if key.contains("stream") || key.contains("ttl") {
            continue; // ids and timestamps differ between servers
        }
        let (first, v0) = &values[0];
        for (other, v) in &values[1..] {
            assert!(v0.logically_eq(v), "{key}: {first} vs {other}");
        }
    }
}

/// The JSON form reads back to exactly the same value, through text.
#[test]
fn json_form_round_trips_every_fixture_value() {
    for file in fixture_files() {
        for k in load(&file)["keys"].as_array().unwrap() {
            let value = dump::decode(&hex(k["payload_hex"].as_str().unwrap())).unwrap();
            let text = value.to_json().to_string();
            let back = Value::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, value, "{}", k["key"]);
        }
    }
}

/// KATO's JSON strings are shown as JSON, not as escaped text.
#[test]
fn json_documents_are_embedded() {
    let file = fixture_files().into_iter().next().unwrap();
    let doc = load(&file);
    let key = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "kb:emotives:1");
    let value = dump::decode(&hex(key.unwrap()["payload_hex"].as_str().unwrap())).unwrap();
    let want = serde_json::json!({"type": "string", "value": [{"joy": 0.4, "utility": -1.2}]});
    assert_eq!(value.to_json(), want);
}
