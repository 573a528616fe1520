//! A lossless JSON form of [`Value`], for `cat`-style output and scripts.
//!
//! Byte strings (values, members, fields, keys of stream entries, names):
//!
//! * valid UTF-8 → a JSON string;
//! * a compact JSON object or array (`{"a":1}`, as `JSON.stringify` and
//!   `serde_json` write it) → that JSON embedded as is;
//! * an object or array written with Python's default `", "`/`": "`
//!   separators (`json.dumps`) → `{"json_spaced": <document>}`;
//! * anything else (not UTF-8) → `{"base64": "<standard base64>"}`.
//!
//! A document is embedded only when re-serialising the parsed document
//! gives back the exact original bytes (so whitespace, key order, escapes
//! and number spelling are preserved), and never when it is itself a
//! single-key object named `base64` or `json_spaced`, so reading back is
//! unambiguous: a JSON string is its UTF-8 bytes, a one-key object with a
//! marker name is decoded by the marker, any other object or array is the
//! compact serialisation. [`Value::from_json`] inverts [`Value::to_json`]
//! exactly for every value.
//!
//! Values: `{"type": "<redis type>", "value": ...}` with `value` a byte
//! string (string), an array of them (list, set), `[[member, score], ...]`
//! (zset; score a JSON number, or a string for ±inf and for any double a
//! JSON number would not carry exactly), an object `{field: value}` plus
//! `"field_expire_at_ms": {field: ms}` when there are field TTLs (hash with
//! all-UTF-8 fields) or `[[field, value, ms|null], ...]` (other hashes), an
//! object for streams (ids as `"ms-seq"` strings) and
//! `{"module_id", "name", "raw"}` for module values.

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use super::value::{
    Consumer, HashField, PendingEntry, RedisType, Stream, StreamEntry, StreamGroup, StreamId, Value,
};

/// Why a JSON document is not a value in the form above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value json at {path}: {why}")]
pub struct JsonError {
    pub path: String,
    pub why: String,
}

type Result<T> = std::result::Result<T, JsonError>;

fn err<T>(path: &str, why: impl Into<String>) -> Result<T> {
    Err(JsonError {
        path: path.into(),
        why: why.into(),
    })
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MARK_B64: &str = "base64";
const MARK_SPACED: &str = "json_spaced";

/// A byte string in the JSON form (see the module docs).
pub fn bytes_to_json(b: &[u8]) -> Json {
    let Ok(s) = std::str::from_utf8(b) else {
        return json!({ MARK_B64: B64.encode(b) });
    };
    match embeddable(s) {
        Some((doc, false)) => doc,
        Some((doc, true)) => json!({ MARK_SPACED: doc }),
        None => Json::String(s.to_owned()),
    }
}

/// The document in `s` and whether it is Python-spaced, when embedding it
/// is lossless and unambiguous.
fn embeddable(s: &str) -> Option<(Json, bool)> {
    if !(s.starts_with('{') || s.starts_with('[')) {
        return None;
    }
    let doc: Json = serde_json::from_str(s).ok()?;
    if marker(&doc).is_some() {
        return None;
    }
    if serde_json::to_string(&doc).ok()? == s {
        return Some((doc, false));
    }
    (spaced(&doc)? == s).then_some((doc, true))
}

/// The one-key marker object's name and content, if `j` is one.
fn marker(j: &Json) -> Option<(&str, &Json)> {
    let o = j.as_object().filter(|o| o.len() == 1)?;
    let (k, v) = o.iter().next()?;
    [MARK_B64, MARK_SPACED]
        .contains(&k.as_str())
        .then_some((k.as_str(), v))
}

/// `doc` serialised with Python's default separators.
fn spaced(doc: &Json) -> Option<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    serde::Serialize::serialize(doc, &mut ser).ok()?;
    String::from_utf8(out).ok()
}

struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// The inverse of [`bytes_to_json`].
pub fn bytes_from_json(j: &Json, path: &str) -> Result<Vec<u8>> {
    match (j, marker(j)) {
        (Json::String(s), _) => Ok(s.as_bytes().to_vec()),
        (_, Some((MARK_B64, Json::String(b)))) => B64
            .decode(b)
            .or_else(|e| err(path, format!("bad base64: {e}"))),
        (_, Some((MARK_SPACED, doc))) => Ok(spaced(doc).unwrap_or_default().into_bytes()),
        (Json::Object(_) | Json::Array(_), None) => Ok(j.to_string().into_bytes()),
        _ => err(
            path,
            "expected a string, a JSON document or a marker object",
        ),
    }
}

fn score_to_json(v: f64) -> Json {
    let as_number = serde_json::Number::from_f64(v).map(Json::Number);
    let exact = as_number
        .as_ref()
        .and_then(|n| serde_json::from_str::<f64>(&n.to_string()).ok())
        .is_some_and(|back| back.to_bits() == v.to_bits());
    match (as_number, exact) {
        (Some(n), true) => n,
        _ if v == f64::INFINITY => json!("inf"),
        _ if v == f64::NEG_INFINITY => json!("-inf"),
        _ => json!(format!("{v:?}")),
    }
}

fn score_from_json(j: &Json, path: &str) -> Result<f64> {
    let parsed = match j {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => super::reader::parse_score(s.as_bytes()),
        _ => None,
    };
    parsed.map_or_else(|| err(path, "expected a score"), Ok)
}

impl Value {
    /// The JSON form (see the module docs).
    pub fn to_json(&self) -> Json {
        let value = match self {
            Value::String(s) => bytes_to_json(s),
            Value::List(items) | Value::Set(items) => {
                items.iter().map(|b| bytes_to_json(b)).collect()
            }
            Value::ZSet(z) => z
                .iter()
                .map(|(m, s)| json!([bytes_to_json(m), score_to_json(*s)]))
                .collect(),
            Value::Hash(h) => return hash_to_json(h),
            Value::Stream(s) => stream_to_json(s),
            Value::Module {
                module_id,
                name,
                raw,
            } => {
                json!({"module_id": module_id, "name": name, "raw": { MARK_B64: B64.encode(raw) }})
            }
        };
        json!({"type": self.redis_type().name(), "value": value})
    }

    /// The inverse of [`Value::to_json`].
    pub fn from_json(j: &Json) -> Result<Value> {
        let t = j["type"].as_str().and_then(RedisType::from_name);
        let v = &j["value"];
        Ok(match t {
            Some(RedisType::String) => Value::String(bytes_from_json(v, "value")?),
            Some(RedisType::List) => Value::List(byte_list(v, "value")?),
            Some(RedisType::Set) => Value::Set(byte_list(v, "value")?),
            Some(RedisType::ZSet) => Value::ZSet(zset_from_json(v)?),
            Some(RedisType::Hash) => Value::Hash(hash_from_json(j)?),
            Some(RedisType::Stream) => Value::Stream(stream_from_json(v)?),
            Some(RedisType::Module) => module_from_json(v)?,
            None => return err("type", "missing or unknown type"),
        })
    }
}

fn array<'a>(j: &'a Json, path: &str) -> Result<&'a Vec<Json>> {
    j.as_array()
        .map_or_else(|| err(path, "expected an array"), Ok)
}

fn byte_list(j: &Json, path: &str) -> Result<Vec<Vec<u8>>> {
    array(j, path)?
        .iter()
        .enumerate()
        .map(|(i, b)| bytes_from_json(b, &format!("{path}[{i}]")))
        .collect()
}

fn zset_from_json(v: &Json) -> Result<Vec<(Vec<u8>, f64)>> {
    array(v, "value")?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = format!("value[{i}]");
            Ok((
                bytes_from_json(&p[0], &path)?,
                score_from_json(&p[1], &path)?,
            ))
        })
        .collect()
}

fn hash_to_json(h: &[HashField]) -> Json {
    let utf8 = |f: &HashField| std::str::from_utf8(&f.field).ok().map(str::to_owned);
    let names: Option<Vec<String>> = h.iter().map(utf8).collect();
    let Some(names) = names else {
        let rows: Vec<Json> = h
            .iter()
            .map(|f| {
                json!([
                    bytes_to_json(&f.field),
                    bytes_to_json(&f.value),
                    f.expire_at_ms
                ])
            })
            .collect();
        return json!({"type": "hash", "value": rows});
    };
    let mut fields = Map::new();
    let mut ttls = Map::new();
    for (name, f) in names.into_iter().zip(h) {
        if let Some(t) = f.expire_at_ms {
            ttls.insert(name.clone(), json!(t));
        }
        fields.insert(name, bytes_to_json(&f.value));
    }
    let mut out = json!({"type": "hash", "value": fields});
    if !ttls.is_empty() {
        out["field_expire_at_ms"] = Json::Object(ttls);
    }
    out
}

fn hash_from_json(j: &Json) -> Result<Vec<HashField>> {
    let ttl_of = |name: &str| j["field_expire_at_ms"].get(name).and_then(Json::as_i64);
    match &j["value"] {
        Json::Object(o) => o
            .iter()
            .map(|(name, v)| {
                let value = bytes_from_json(v, &format!("value.{name}"))?;
                Ok(HashField {
                    field: name.as_bytes().to_vec(),
                    value,
                    expire_at_ms: ttl_of(name),
                })
            })
            .collect(),
        rows => array(rows, "value")?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let path = format!("value[{i}]");
                let (field, value) = (
                    bytes_from_json(&r[0], &path)?,
                    bytes_from_json(&r[1], &path)?,
                );
                Ok(HashField {
                    field,
                    value,
                    expire_at_ms: r[2].as_i64(),
                })
            })
            .collect(),
    }
}

fn module_from_json(v: &Json) -> Result<Value> {
    Ok(Value::Module {
        module_id: v["module_id"]
            .as_u64()
            .map_or_else(|| err("value.module_id", "expected u64"), Ok)?,
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        raw: bytes_from_json(&v["raw"], "value.raw")?,
    })
}

fn id_json(id: StreamId) -> Json {
    Json::String(id.to_string())
}

fn stream_to_json(s: &Stream) -> Json {
    let entries: Vec<Json> = s
        .entries
        .iter()
        .map(|e| {
            let fields: Vec<Json> = e
                .fields
                .iter()
                .map(|(f, v)| json!([bytes_to_json(f), bytes_to_json(v)]))
                .collect();
            json!({"id": id_json(e.id), "fields": fields})
        })
        .collect();
    json!({
        "length": s.length,
        "last_id": id_json(s.last_id),
        "first_id": s.first_id.map(id_json),
        "max_deleted_id": s.max_deleted_id.map(id_json),
        "entries_added": s.entries_added,
        "entries": entries,
        "groups": s.groups.iter().map(group_to_json).collect::<Vec<_>>(),
    })
}

fn group_to_json(g: &StreamGroup) -> Json {
    let pel: Vec<Json> = g
        .pel
        .iter()
        .map(|p| json!({"id": id_json(p.id), "delivery_time_ms": p.delivery_time_ms, "delivery_count": p.delivery_count}))
        .collect();
    let consumers: Vec<Json> = g
        .consumers
        .iter()
        .map(|c| {
            json!({
                "name": bytes_to_json(&c.name),
                "seen_time_ms": c.seen_time_ms,
                "active_time_ms": c.active_time_ms,
                "pending": c.pending.iter().map(|i| id_json(*i)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": bytes_to_json(&g.name),
        "last_delivered": id_json(g.last_delivered),
        "entries_read": g.entries_read,
        "pel": pel,
        "consumers": consumers,
    })
}

fn id_from(j: &Json, path: &str) -> Result<StreamId> {
    j.as_str()
        .and_then(|s| s.parse().ok())
        .map_or_else(|| err(path, "expected a stream id"), Ok)
}

fn opt_id(j: &Json, path: &str) -> Result<Option<StreamId>> {
    if j.is_null() {
        Ok(None)
    } else {
        id_from(j, path).map(Some)
    }
}

fn u64_at(j: &Json, path: &str) -> Result<u64> {
    j.as_u64()
        .map_or_else(|| err(path, "expected an unsigned integer"), Ok)
}

fn stream_from_json(v: &Json) -> Result<Stream> {
    let entries = array(&v["entries"], "value.entries")?
        .iter()
        .map(|e| {
            let fields = array(&e["fields"], "entry.fields")?
                .iter()
                .map(|p| {
                    Ok((
                        bytes_from_json(&p[0], "entry.field")?,
                        bytes_from_json(&p[1], "entry.value")?,
                    ))
                })
                .collect::<Result<_>>()?;
            Ok(StreamEntry {
                id: id_from(&e["id"], "entry.id")?,
                fields,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Stream {
        entries,
        length: u64_at(&v["length"], "value.length")?,
        last_id: id_from(&v["last_id"], "value.last_id")?,
        first_id: opt_id(&v["first_id"], "value.first_id")?,
        max_deleted_id: opt_id(&v["max_deleted_id"], "value.max_deleted_id")?,
        entries_added: v["entries_added"].as_u64(),
        groups: array(&v["groups"], "value.groups")?
            .iter()
            .map(group_from_json)
            .collect::<Result<_>>()?,
    })
}

fn group_from_json(g: &Json) -> Result<StreamGroup> {
    let pel = array(&g["pel"], "group.pel")?
        .iter()
        .map(|p| {
            Ok(PendingEntry {
                id: id_from(&p["id"], "pel.id")?,
                delivery_time_ms: u64_at(&p["delivery_time_ms"], "pel.delivery_time_ms")?,
                delivery_count: u64_at(&p["delivery_count"], "pel.delivery_count")?,
            })
        })
        .collect::<Result<_>>()?;
    let consumers = array(&g["consumers"], "group.consumers")?
        .iter()
        .map(|c| {
            Ok(Consumer {
                name: bytes_from_json(&c["name"], "consumer.name")?,
                seen_time_ms: u64_at(&c["seen_time_ms"], "consumer.seen_time_ms")?,
                active_time_ms: c["active_time_ms"].as_u64(),
                pending: array(&c["pending"], "consumer.pending")?
                    .iter()
                    .map(|i| id_from(i, "consumer.pending"))
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(StreamGroup {
        name: bytes_from_json(&g["name"], "group.name")?,
        last_delivered: id_from(&g["last_delivered"], "group.last_delivered")?,
        entries_read: g["entries_read"].as_u64(),
        pel,
        consumers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(b: &[u8]) -> Json {
        let j = bytes_to_json(b);
        let text = j.to_string();
        let back: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(bytes_from_json(&back, "t").unwrap(), b, "{text}");
        j
    }

    #[test]
    fn byte_strings() {
        assert_eq!(round_trip(b"plain"), json!("plain"));
        assert_eq!(round_trip(b"\xff\x00"), json!({"base64": "/wA="}));
        assert_eq!(round_trip(b"[{\"joy\":0.4}]"), json!([{"joy": 0.4}]));
        assert_eq!(
            round_trip(b"[{\"joy\": 0.4, \"u\": -1.2}]"),
            json!({"json_spaced": [{"joy": 0.4, "u": -1.2}]})
        );
        // Not embedded: odd spacing, number spelling, marker look-alikes, scalars.
        for s in [
            "{ \"a\":1}",
            "[1e5]",
            "{\"base64\":\"AA==\"}",
            "{\"json_spaced\":[]}",
            "123",
            "\"q\"",
            "[1.0000000000000000001]",
        ] {
            assert_eq!(round_trip(s.as_bytes()), json!(s), "{s}");
        }
    }

    #[test]
    fn scores() {
        for v in [
            0.1,
            -0.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
            2.5,
        ] {
            let j: Json = serde_json::from_str(&score_to_json(v).to_string()).unwrap();
            assert_eq!(
                score_from_json(&j, "s").unwrap().to_bits(),
                v.to_bits(),
                "{v}"
            );
        }
        assert_eq!(score_to_json(2.5), json!(2.5));
        assert_eq!(score_to_json(f64::INFINITY), json!("inf"));
    }

    #[test]
    fn hash_forms() {
        let f = |n: &[u8], t| HashField {
            field: n.to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: t,
        };
        let text = Value::Hash(vec![f(b"a", Some(7)), f(b"b", None)]);
        assert_eq!(
            text.to_json(),
            json!({"type": "hash", "value": {"a": "v", "b": "v"}, "field_expire_at_ms": {"a": 7}})
        );
        let binary = Value::Hash(vec![f(b"\xff", None)]);
        assert_eq!(
            binary.to_json(),
            json!({"type": "hash", "value": [[{"base64": "/w=="}, "v", null]]})
        );
        for v in [text, binary] {
            assert_eq!(Value::from_json(&v.to_json()).unwrap(), v);
        }
    }

    #[test]
    fn bad_documents() {
        assert!(Value::from_json(&json!({"type": "nope", "value": 1})).is_err());
        assert!(Value::from_json(&json!({"type": "list", "value": "x"})).is_err());
        let e =
            Value::from_json(&json!({"type": "string", "value": {"base64": "!!"}})).unwrap_err();
        assert_eq!(e.path, "value");
    }
}
