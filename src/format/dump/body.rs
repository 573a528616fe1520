//! Value bodies per type id (§2.8, §2.14, §2.15): the dispatcher that turns
//! a type byte and its body into a [`Value`].

use std::collections::HashSet;

use super::error::{DecodeError, Result};
use super::reader::{parse_score, Reader};
use super::value::{HashField, Value};
use super::{intset, listpack, stream, ziplist, zipmap};

/// Decode a body of type `t` written under `rdb_version`. `r` starts right
/// after the type byte; the whole body must be consumed.
pub fn decode(r: &mut Reader, t: u8, rdb_version: u16) -> Result<Value> {
    let value = match t {
        0 => Value::String(r.string("string value")?),
        1 => Value::List(strings(r, "list")?),
        2 => Value::Set(strings(r, "set")?),
        3 => Value::ZSet(zset_v1(r)?),
        4 => Value::Hash(hash_plain(r)?),
        5 => Value::ZSet(zset_v2(r)?),
        6 => {
            return Err(DecodeError::Unsupported {
                type_byte: 6,
                why: "pre-GA module values need the module to parse",
            })
        }
        7 => module(r)?,
        9 => Value::Hash(no_ttl(pairs(blob(r, "zipmap", zipmap::entries)?, r)?)),
        10 => Value::List(blob(r, "ziplist", ziplist::entries)?),
        11 => Value::Set(blob(r, "intset", intset::entries)?),
        12 => Value::ZSet(scored(blob(r, "ziplist", ziplist::entries)?, r)?),
        13 => Value::Hash(no_ttl(pairs(blob(r, "ziplist", ziplist::entries)?, r)?)),
        14 => Value::List(quicklist(r)?),
        15 | 19 | 21 => Value::Stream(stream::decode(r, t)?),
        16 => Value::Hash(no_ttl(pairs(blob(r, "listpack", listpack::entries)?, r)?)),
        17 => Value::ZSet(scored(blob(r, "listpack", listpack::entries)?, r)?),
        18 => Value::List(quicklist2(r)?),
        20 => Value::Set(blob(r, "listpack", listpack::entries)?),
        22 if rdb_version >= 80 => Value::Hash(hash_valkey(r)?),
        22 => Value::Hash(hash_ttl_table(r, 1)?),
        23 if rdb_version < 80 => {
            Value::Hash(triplets(blob(r, "listpack", listpack::entries)?, r)?)
        }
        24 if rdb_version < 80 => {
            let min = r.u64_le("hash min expire")?;
            Value::Hash(hash_ttl_table(r, min)?)
        }
        25 if rdb_version < 80 => {
            r.u64_le("hash min expire")?;
            Value::Hash(triplets(blob(r, "listpack", listpack::entries)?, r)?)
        }
        _ => {
            return Err(DecodeError::UnknownType {
                type_byte: t,
                rdb_version,
            })
        }
    };
    check_value(&value, r.offset())?;
    Ok(value)
}

/// A string holding a container blob, parsed by `parse`; errors inside the
/// blob are wrapped with the blob's payload offset.
fn blob<T>(r: &mut Reader, container: &'static str, parse: fn(&[u8]) -> Result<T>) -> Result<T> {
    let offset = r.offset();
    let bytes = r.string(container)?;
    parse(&bytes).map_err(|e| DecodeError::InContainer {
        container,
        offset,
        inner: Box::new(e),
    })
}

fn strings(r: &mut Reader, what: &'static str) -> Result<Vec<Vec<u8>>> {
    let n = r.count(what, 1)?;
    (0..n).map(|_| r.string(what)).collect()
}

fn zset_v1(r: &mut Reader) -> Result<Vec<(Vec<u8>, f64)>> {
    let n = r.count("zset", 2)?;
    (0..n)
        .map(|_| Ok((r.string("zset member")?, r.text_double("zset score")?)))
        .collect()
}

fn zset_v2(r: &mut Reader) -> Result<Vec<(Vec<u8>, f64)>> {
    let n = r.count("zset", 9)?;
    (0..n)
        .map(|_| Ok((r.string("zset member")?, r.binary_double("zset score")?)))
        .collect()
}

fn hash_plain(r: &mut Reader) -> Result<Vec<HashField>> {
    let n = r.count("hash", 2)?;
    (0..n)
        .map(|_| {
            Ok(field(
                r.string("hash field")?,
                r.string("hash value")?,
                None,
            ))
        })
        .collect()
}

fn field(field: Vec<u8>, value: Vec<u8>, expire_at_ms: Option<i64>) -> HashField {
    HashField {
        field,
        value,
        expire_at_ms,
    }
}

/// Types 24 (`min` = stored minimum) and Redis-RC 22 (`min` = 1): each
/// field's ttl is 0 for none, else `ttl + min - 1` absolute ms.
fn hash_ttl_table(r: &mut Reader, min: u64) -> Result<Vec<HashField>> {
    let n = r.count("hash", 3)?;
    (0..n)
        .map(|_| {
            let at = r.offset();
            let ttl = r.length("hash field ttl")?;
            let expire = match ttl {
                0 => None,
                t => Some(as_ms(t.wrapping_add(min).wrapping_sub(1), at)?),
            };
            Ok(field(
                r.string("hash field")?,
                r.string("hash value")?,
                expire,
            ))
        })
        .collect()
}

/// Valkey 9 HASH_2: field, value, expire as i64 LE with −1 for none.
fn hash_valkey(r: &mut Reader) -> Result<Vec<HashField>> {
    let n = r.count("hash", 10)?;
    (0..n)
        .map(|_| {
            let f = r.string("hash field")?;
            let v = r.string("hash value")?;
            let expire = r.i64_le("hash field expire")?;
            Ok(field(f, v, (expire != -1).then_some(expire)))
        })
        .collect()
}

fn as_ms(v: u64, at: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| DecodeError::corrupt(format!("field expire time {v}"), at))
}

/// Listpack (field, value, expire) triplets of types 23 and 25.
fn triplets(items: Vec<Vec<u8>>, r: &Reader) -> Result<Vec<HashField>> {
    if !items.len().is_multiple_of(3) {
        return Err(DecodeError::corrupt(
            "hash listpack: not field/value/expire triplets",
            r.offset(),
        ));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(f), Some(v), Some(e)) = (it.next(), it.next(), it.next()) {
        let expire: i64 = parse_int(&e).ok_or_else(|| {
            DecodeError::corrupt("hash field expire is not an integer", r.offset())
        })?;
        out.push(field(f, v, (expire != 0).then_some(expire)));
    }
    Ok(out)
}

fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Alternating field/value elements of a ziplist, listpack or zipmap.
fn pairs(items: Vec<Vec<u8>>, r: &Reader) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if !items.len().is_multiple_of(2) {
        return Err(DecodeError::corrupt(
            "odd number of elements in a paired container",
            r.offset(),
        ));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn no_ttl(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<HashField> {
    pairs.into_iter().map(|(f, v)| field(f, v, None)).collect()
}

/// Member/score pairs with scores as text or integer elements.
fn scored(items: Vec<Vec<u8>>, r: &Reader) -> Result<Vec<(Vec<u8>, f64)>> {
    pairs(items, r)?
        .into_iter()
        .map(|(m, s)| {
            let score = parse_score(&s)
                .ok_or_else(|| DecodeError::corrupt("zset score is not a number", r.offset()))?;
            Ok((m, score))
        })
        .collect()
}

/// Type 14: ziplist nodes, concatenated.
fn quicklist(r: &mut Reader) -> Result<Vec<Vec<u8>>> {
    let n = r.count("quicklist node count", 1)?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend(blob(r, "ziplist", ziplist::entries)?);
    }
    Ok(out)
}

/// Type 18: PLAIN nodes hold one element, PACKED nodes a listpack.
fn quicklist2(r: &mut Reader) -> Result<Vec<Vec<u8>>> {
    let n = r.count("quicklist node count", 2)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let at = r.offset();
        match r.length("quicklist container")? {
            1 => out.push(r.string("quicklist plain node")?),
            2 => out.extend(blob(r, "listpack", listpack::entries)?),
            c => {
                return Err(DecodeError::corrupt(
                    format!("quicklist container type {c}"),
                    at,
                ))
            }
        }
    }
    Ok(out)
}

/// Type 7: module id, then an opcode stream kept raw (§2.15).
fn module(r: &mut Reader) -> Result<Value> {
    let module_id = r.length("module id")?;
    let start = r.offset();
    let before = r.clone();
    loop {
        let at = r.offset();
        match r.length("module opcode")? {
            0 => break,
            1 | 2 => drop(r.length("module integer")?),
            3 => drop(r.take(4, "module float")?),
            4 => drop(r.take(8, "module double")?),
            5 => drop(r.string("module string")?),
            op => return Err(DecodeError::corrupt(format!("module opcode {op}"), at)),
        }
    }
    let raw = before
        .clone()
        .take(r.offset() - start, "module value")?
        .to_vec();
    Ok(Value::Module {
        module_id,
        name: module_name(module_id),
        raw,
    })
}

/// The 9-character type name packed into the top 54 bits of a module id.
pub fn module_name(id: u64) -> String {
    const CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..9)
        .map(|i| CHARS[((id >> (58 - 6 * i)) & 63) as usize] as char)
        .collect()
}

/// Refuse what servers refuse: empty aggregates and duplicate members.
fn check_value(v: &Value, offset: usize) -> Result<()> {
    let (len, unique) = match v {
        Value::List(l) => (l.len(), true),
        Value::Set(s) => (s.len(), all_unique(s.iter())),
        Value::ZSet(z) => (z.len(), all_unique(z.iter().map(|m| &m.0))),
        Value::Hash(h) => (h.len(), all_unique(h.iter().map(|f| &f.field))),
        _ => return Ok(()),
    };
    if len == 0 {
        return Err(DecodeError::corrupt(
            format!("empty {}", v.redis_type()),
            offset,
        ));
    }
    if let Value::ZSet(z) = v {
        if z.iter().any(|m| m.1.is_nan()) {
            return Err(DecodeError::corrupt("zset score is NaN", offset));
        }
    }
    if !unique {
        return Err(DecodeError::corrupt(
            format!("duplicate member in {}", v.redis_type()),
            offset,
        ));
    }
    Ok(())
}

fn all_unique<'a>(items: impl Iterator<Item = &'a Vec<u8>>) -> bool {
    let mut seen = HashSet::new();
    items.into_iter().all(|m| seen.insert(m.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        // "mymodule1" would be too long to check by hand; check A..I and the version bits.
        let mut id = 0u64;
        for (i, c) in (0..9u64).enumerate() {
            id |= c << (58 - 6 * i);
        }
        id |= 5;
        assert_eq!(module_name(id), "ABCDEFGHI");
    }
}
