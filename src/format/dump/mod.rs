//! Redis DUMP payloads: decode them without a server.
//!
//! A DUMP payload is `type byte | body | RDB version (u16 LE) | CRC-64
//! (u64 LE)`; the body is the value exactly as an RDB file stores it. This
//! module is pure (bytes in, values out) so archives can be inspected,
//! verified and compared offline, and so a key can be re-created with plain
//! commands when a target server refuses the payload (older server, or
//! Redis/Valkey numbering clash). See `docs/dump-format.md` in the project
//! notes for the format and the measured server behaviour.
//!
//! * [`parse_envelope`], [`retag`], [`crc64`]: the trailer.
//! * [`target_accepts_version`], [`target_knows_type`], [`rdb_version_for`]:
//!   predict whether a RESTORE on a given server can succeed.
//! * [`decode`]: every encoding written by Redis 2.4–8.2 and Valkey 7.2–9.1
//!   (strings plain/int/LZF, ziplist, listpack, intset, zipmap, quicklist 1
//!   and 2, hashtable/skiplist forms, zset v1/v2, streams 15/19/21 with
//!   groups, field-TTL hashes 22 (Valkey HASH_2 when the version is ≥ 80,
//!   else the Redis 7.4 RC layout), 23 (RC), 24, 25, and module values (7)
//!   kept raw). It never guesses: an unknown type id is
//!   [`DecodeError::UnknownType`]; lengths are checked against the input
//!   before anything is allocated; anything odd is an error, not a panic.
//!   The decoder is stricter than RESTORE in two ways: bytes after the value
//!   are an error ([`DecodeError::TrailingBytes`]; DUMP never writes them),
//!   and so are duplicate set/hash/zset members (servers refuse those only
//!   in some encodings).
//! * [`Value::to_json`] / [`Value::from_json`]: a lossless JSON form (see
//!   [`json`] for the exact rules, including the `{"base64": ...}` marker
//!   for bytes that are not UTF-8).
//! * [`Value::to_commands`]: plain commands that re-create the key.

mod body;
mod commands;
mod crc64;
mod encode;
mod envelope;
mod error;
mod intset;
pub mod json;
mod listpack;
mod lzf;
pub(crate) mod reader;
mod stream;
mod value;
mod ziplist;
mod zipmap;

pub use commands::CommandOptions;
pub use crc64::crc64;
pub use encode::{encode, encode_set, EncodeError};
pub use envelope::{
    parse_envelope, peek_type_and_version, rdb_version_for, redis_type, retag, seal, seal_into,
    target_accepts_version, target_knows_type, type_id_name, type_ids_in, Envelope, Product,
    ServerKind, VALKEY_FIRST_OWN,
};
pub use error::DecodeError;
pub use json::JsonError;
pub use reader::LengthForm;
pub use value::{
    Consumer, HashField, PendingEntry, RedisType, Stream, StreamEntry, StreamGroup, StreamId, Value,
};

/// Decode a whole DUMP payload: envelope, checksum and value.
pub fn decode(payload: &[u8]) -> Result<Value, DecodeError> {
    let env = parse_envelope(payload)?;
    decode_body(env.type_byte, env.body, env.rdb_version)
}

/// Decode a value body (the bytes between the type byte and the trailer),
/// e.g. one taken from an RDB file. Offsets in errors count as if the body
/// sat at offset 1 of a payload.
pub fn decode_body(type_byte: u8, body: &[u8], rdb_version: u16) -> Result<Value, DecodeError> {
    let mut r = reader::Reader::new(body, 1);
    let value = body::decode(&mut r, type_byte, rdb_version)?;
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes {
            count: r.remaining(),
            offset: r.offset(),
        });
    }
    Ok(value)
}

/// Expand an LZF-compressed string to its stated length `out_len` (the
/// form RDB strings use, §2.6); bounded by the input's maximal expansion.
pub fn lzf_decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, DecodeError> {
    lzf::decompress(input, out_len, 0)
}

/// The Redis type of a DUMP payload, from its type byte and trailer version.
pub fn payload_type_name(payload: &[u8]) -> &'static str {
    peek_type_and_version(payload)
        .and_then(|(type_byte, version)| redis_type(type_byte, version))
        .map_or("unknown", |t| t.name())
}

#[cfg(test)]
mod tests;
