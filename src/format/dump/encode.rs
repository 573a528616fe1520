//! The inverse of the decoder for the plain types: a [`Value`] sealed as a
//! DUMP payload every server since Redis 2.6 (and every Valkey) restores.
//!
//! The plain RDB types are used, never the compact encodings: string (0),
//! list as a linked list (1), set (2), hash (4), zset with binary scores
//! (5). A server converts them to its own encoding when it loads them, so
//! the restore path planning treats these payloads like any other. Streams,
//! module values and hashes with field expiries have no plain type and are
//! refused.

use super::envelope::seal_into;
use super::value::Value;

/// Why a value has no plain payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {what} has no plain RDB encoding, so it cannot be written as a payload")]
pub struct EncodeError {
    pub what: &'static str,
}

/// Type and body of `value` sealed with `rdb_version` (≥ 8 for zset
/// scores in binary form, which every supported server reads).
pub fn encode(value: &Value, rdb_version: u16) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => {
            out.push(0);
            string(&mut out, s);
        }
        Value::List(items) => {
            out.push(1);
            strings(&mut out, items);
        }
        Value::Set(members) => {
            out.push(2);
            strings(&mut out, members);
        }
        Value::ZSet(members) => {
            out.push(5);
            length(&mut out, members.len() as u64);
            for (member, score) in members {
                string(&mut out, member);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        Value::Hash(fields) => {
            if fields.iter().any(|f| f.expire_at_ms.is_some()) {
                return Err(EncodeError {
                    what: "hash with field expiries",
                });
            }
            out.push(4);
            length(&mut out, fields.len() as u64);
            for f in fields {
                string(&mut out, &f.field);
                string(&mut out, &f.value);
            }
        }
        Value::Stream(_) => return Err(EncodeError { what: "stream" }),
        Value::Module { .. } => {
            return Err(EncodeError {
                what: "module value",
            })
        }
    }
    seal_into(&mut out, rdb_version);
    Ok(out)
}

/// A plain set (type 2) of `members` sealed with `rdb_version`, built
/// from borrowed members without collecting a [`Value`] first (a rebuild
/// makes one per `symbol_to_patterns` set). Members are written as given:
/// the caller makes them distinct, as a set's members are.
pub fn encode_set<'a, I>(members: I, rdb_version: u16) -> Vec<u8>
where
    I: ExactSizeIterator<Item = &'a [u8]> + Clone,
{
    let bytes: usize = members.clone().map(|m| m.len() + 5).sum();
    let mut out = Vec::with_capacity(bytes + 20);
    out.push(2);
    length(&mut out, members.len() as u64);
    for member in members {
        string(&mut out, member);
    }
    seal_into(&mut out, rdb_version);
    out
}

fn strings(out: &mut Vec<u8>, items: &[Vec<u8>]) {
    length(out, items.len() as u64);
    for item in items {
        string(out, item);
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    length(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// The RDB length encoding: 6, 14, 32 or 64 bits.
fn length(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dump::{decode, HashField};

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn every_plain_value_decodes_back() {
        let long = bytes(20_000, 7);
        let values = [
            Value::String(Vec::new()),
            Value::String(long.clone()),
            Value::String(bytes(100, 1)),
            Value::List((0..70).map(|i| bytes(i, 3)).collect()),
            Value::Set(vec![b"a".to_vec(), long.clone()]),
            Value::ZSet(vec![
                (b"m".to_vec(), 1.5),
                (b"n".to_vec(), f64::NEG_INFINITY),
            ]),
            Value::Hash(vec![HashField {
                field: b"f".to_vec(),
                value: long,
                expire_at_ms: None,
            }]),
        ];
        for v in values {
            let payload = encode(&v, 11).unwrap();
            assert_eq!(decode(&payload).unwrap(), v);
            assert_eq!(
                &payload[payload.len() - 10..payload.len() - 8],
                &11u16.to_le_bytes()
            );
        }
    }

    #[test]
    fn a_borrowed_set_encodes_like_the_value() {
        let members: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("member {i}").into_bytes())
            .collect();
        let borrowed = encode_set(members.iter().map(Vec::as_slice), 10);
        assert_eq!(borrowed, encode(&Value::Set(members.clone()), 10).unwrap());
        assert_eq!(decode(&borrowed).unwrap(), Value::Set(members));
    }

    #[test]
    fn the_length_forms_match_the_readers() {
        for n in [
            0u64,
            63,
            64,
            16383,
            16384,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
        ] {
            let mut out = Vec::new();
            length(&mut out, n);
            let mut r = crate::format::dump::reader::Reader::new(&out, 0);
            assert_eq!(r.length("n").unwrap(), n);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn streams_and_field_expiries_are_refused() {
        let ttl = Value::Hash(vec![HashField {
            field: b"f".to_vec(),
            value: b"v".to_vec(),
            expire_at_ms: Some(1),
        }]);
        assert!(encode(&ttl, 11).is_err());
        assert!(encode(&Value::Stream(Default::default()), 11).is_err());
    }
}
