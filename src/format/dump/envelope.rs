//! The DUMP envelope (§2.1): `type byte | body | RDB version u16 LE |
//! CRC-64 u64 LE`, plus what the trailer tells about where a payload can be
//! restored (§1.4, §2.3, §2.4).

use super::crc64::crc64;
use super::error::{DecodeError, Result};
use super::value::RedisType;

/// Trailer size: version (2) + CRC (8).
const TRAILER: usize = 10;
/// The first RDB version of Valkey's own numbering; 12–79 are "foreign"
/// (Redis ≥ 7.4) to Valkey.
pub const VALKEY_FIRST_OWN: u16 = 80;
const FOREIGN: std::ops::RangeInclusive<u16> = 12..=79;

/// A payload split into its parts, checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub type_byte: u8,
    /// The value body, without the type byte and trailer.
    pub body: &'a [u8],
    pub rdb_version: u16,
    pub crc: u64,
}

/// Split `payload` and verify its CRC.
pub fn parse_envelope(payload: &[u8]) -> Result<Envelope<'_>> {
    if payload.len() < TRAILER + 1 {
        return Err(DecodeError::TooShort { len: payload.len() });
    }
    let (covered, crc_bytes) = payload.split_at(payload.len() - 8);
    let crc = u64::from_le_bytes(crc_bytes.try_into().expect("8 bytes"));
    let found = crc64(covered);
    if crc != found {
        return Err(DecodeError::BadChecksum {
            expected: crc,
            found,
        });
    }
    let version_at = payload.len() - TRAILER;
    Ok(Envelope {
        type_byte: payload[0],
        body: &payload[1..version_at],
        rdb_version: u16::from_le_bytes([payload[version_at], payload[version_at + 1]]),
        crc,
    })
}

/// The type byte and trailer RDB version, read without checking the CRC.
/// For routing decisions on payloads whose integrity is covered elsewhere
/// (the archive's frame checksums, the server's own check on RESTORE):
/// checking 64 bits of CRC per payload there would cost more than the
/// decision itself.
pub fn peek_type_and_version(payload: &[u8]) -> Option<(u8, u16)> {
    if payload.len() < TRAILER + 1 {
        return None;
    }
    let at = payload.len() - TRAILER;
    Some((
        payload[0],
        u16::from_le_bytes([payload[at], payload[at + 1]]),
    ))
}

/// The payload with its trailer version set to `rdb_version` and the CRC
/// recomputed (§1.6). The input's own CRC must be valid.
pub fn retag(payload: &[u8], rdb_version: u16) -> Result<Vec<u8>> {
    parse_envelope(payload)?;
    let mut out = payload[..payload.len() - TRAILER].to_vec();
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Wrap a type byte and body into a payload with a valid trailer.
pub fn seal(type_byte: u8, body: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + TRAILER + 1);
    out.push(type_byte);
    out.extend_from_slice(body);
    seal_into(&mut out, rdb_version);
    out
}

/// Append the trailer (`rdb_version` and the CRC-64 of everything before
/// it) to a buffer holding a type byte and a body: [`seal`] without a
/// copy, for readers that collect the body in place.
pub fn seal_into(type_and_body: &mut Vec<u8>, rdb_version: u16) {
    type_and_body.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(type_and_body);
    type_and_body.extend_from_slice(&crc.to_le_bytes());
}

/// The type ids a payload uses. A DUMP payload holds exactly one value, so
/// this is its one type byte; interpret it with [`type_id_name`], which
/// needs the trailer version because id 22 means two different things.
pub fn type_ids_in(payload: &[u8]) -> Result<Vec<u8>> {
    Ok(vec![parse_envelope(payload)?.type_byte])
}

/// The server-source name of a type id under an RDB version.
pub fn type_id_name(type_byte: u8, rdb_version: u16) -> Option<&'static str> {
    let valkey = rdb_version >= VALKEY_FIRST_OWN;
    Some(match type_byte {
        0 => "STRING",
        1 => "LIST",
        2 => "SET",
        3 => "ZSET",
        4 => "HASH",
        5 => "ZSET_2",
        6 => "MODULE_PRE_GA",
        7 => "MODULE_2",
        9 => "HASH_ZIPMAP",
        10 => "LIST_ZIPLIST",
        11 => "SET_INTSET",
        12 => "ZSET_ZIPLIST",
        13 => "HASH_ZIPLIST",
        14 => "LIST_QUICKLIST",
        15 => "STREAM_LISTPACKS",
        16 => "HASH_LISTPACK",
        17 => "ZSET_LISTPACK",
        18 => "LIST_QUICKLIST_2",
        19 => "STREAM_LISTPACKS_2",
        20 => "SET_LISTPACK",
        21 => "STREAM_LISTPACKS_3",
        22 if valkey => "HASH_2",
        22 => "HASH_METADATA_PRE_GA",
        23 if valkey => "PATH_HASH",
        23 => "HASH_LISTPACK_EX_PRE_GA",
        24 if !valkey => "HASH_METADATA",
        25 if !valkey => "HASH_LISTPACK_EX",
        26 if !valkey => "STREAM_LISTPACKS_4",
        _ => return None,
    })
}

/// The Redis type a type id stands for under an RDB version (§2.4), or
/// `None` for ids that are unknown (or unknown in that numbering).
pub fn redis_type(type_byte: u8, rdb_version: u16) -> Option<RedisType> {
    let valkey = rdb_version >= VALKEY_FIRST_OWN;
    Some(match type_byte {
        0 => RedisType::String,
        1 | 10 | 14 | 18 => RedisType::List,
        2 | 11 | 20 => RedisType::Set,
        3 | 5 | 12 | 17 => RedisType::ZSet,
        4 | 9 | 13 | 16 | 22 => RedisType::Hash,
        23..=25 if !valkey => RedisType::Hash,
        15 | 19 | 21 => RedisType::Stream,
        26 if !valkey => RedisType::Stream,
        6 | 7 => RedisType::Module,
        _ => return None,
    })
}

/// Which server product a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    Redis,
    Valkey,
}

impl Product {
    pub fn name(&self) -> &'static str {
        match self {
            Product::Redis => "redis",
            Product::Valkey => "valkey",
        }
    }
}

/// What RESTORE on a target depends on: its product, its own RDB version
/// and (Valkey ≥ 8.1) whether `rdb-version-check` is `relaxed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKind {
    pub product: Product,
    pub rdb_version: u16,
    pub relaxed: bool,
}

/// Whether the target's version gate lets a payload with trailer version
/// `rdb_version` through (§1.4, §2.16). Passing the gate does not mean the
/// body loads: see [`target_knows_type`].
pub fn target_accepts_version(server: &ServerKind, rdb_version: u16) -> bool {
    let own = server.rdb_version;
    match server.product {
        Product::Redis => rdb_version <= own,
        Product::Valkey if server.relaxed && own >= VALKEY_FIRST_OWN => true,
        Product::Valkey if server.relaxed => !FOREIGN.contains(&rdb_version),
        Product::Valkey => rdb_version <= own && !FOREIGN.contains(&rdb_version),
    }
}

/// Whether the target understands type id `type_byte` of a payload written
/// under `payload_rdb_version` (§2.4). Id 22 (and 23) mean different things
/// in Redis' and Valkey's numbering; a target knows them only in its own.
pub fn target_knows_type(server: &ServerKind, type_byte: u8, payload_rdb_version: u16) -> bool {
    let valkey_payload = payload_rdb_version >= VALKEY_FIRST_OWN;
    match type_byte {
        0..=5 | 9..=14 => return true,
        // 6 is refused by every loader; 7 exists since Redis 4.0 (RDB 8).
        6 | 8 => return false,
        7 => return server.rdb_version >= 8,
        _ => {}
    }
    let max = match server.product {
        Product::Redis => redis_max_type(server.rdb_version),
        Product::Valkey => valkey_max_type(server.rdb_version),
    };
    if type_byte > max {
        return false;
    }
    match (server.product, type_byte) {
        (Product::Redis, 22 | 23) => !valkey_payload,
        (Product::Valkey, 22 | 23) => !FOREIGN.contains(&payload_rdb_version),
        _ => true,
    }
}

/// Highest type id a Redis with this RDB version loads (§2.4). Unknown
/// future versions get the last documented set: under-claiming only sends
/// a key down the slower command path, over-claiming would fail a RESTORE.
fn redis_max_type(v: u16) -> u8 {
    match v {
        0..=8 => 14,
        9 => 15,
        10 => 19,
        11 => 21,
        12 => 25,
        _ => 26,
    }
}

fn valkey_max_type(v: u16) -> u8 {
    match v {
        0..=79 => 21,
        80 => 22,
        _ => 23,
    }
}

/// The RDB version a server release writes (§2.3), from the product and its
/// version string (`valkey_version` for Valkey, whose `redis_version` says
/// 7.2.4). `None` for releases the table does not cover.
pub fn rdb_version_for(product: Product, version: &str) -> Option<u16> {
    let mut parts = version.trim().split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    match product {
        Product::Redis => redis_rdb_version(major, minor),
        Product::Valkey => valkey_rdb_version(major, minor),
    }
}

fn redis_rdb_version(major: u32, minor: u32) -> Option<u16> {
    Some(match (major, minor) {
        (2, 6) | (2, 8) | (3, 0) => 6,
        (3, 2) => 7,
        (4, 0) => 8,
        (5, 0) | (6, 0) | (6, 2) => 9,
        (7, 0) => 10,
        (7, 2) => 11,
        (7, 4) | (8, 0) | (8, 2) | (8, 4) => 12,
        (8, 6) => 13,
        _ => return None,
    })
}

fn valkey_rdb_version(major: u32, minor: u32) -> Option<u16> {
    Some(match (major, minor) {
        (7, 2) | (8, 0) | (8, 1) => 11,
        (9, 0) | (9, 1) => 80,
        (9, 2) => 81,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const REDIS62_INT8: &str = "00 c064 0900 57dbc4fd3488ee02";

    #[test]
    fn splits_a_real_payload() {
        let p = hex(REDIS62_INT8);
        let env = parse_envelope(&p).unwrap();
        assert_eq!(env.type_byte, 0);
        assert_eq!(env.body, &[0xc0, 0x64]);
        assert_eq!(env.rdb_version, 9);
        assert_eq!(env.crc, 0x02ee_8834_fdc4_db57);
    }

    #[test]
    fn bad_crc_and_short_input() {
        let mut p = hex(REDIS62_INT8);
        *p.last_mut().unwrap() ^= 1;
        assert!(matches!(
            parse_envelope(&p),
            Err(DecodeError::BadChecksum { .. })
        ));
        assert_eq!(
            parse_envelope(&p[..10]),
            Err(DecodeError::TooShort { len: 10 })
        );
        assert_eq!(parse_envelope(&[]), Err(DecodeError::TooShort { len: 0 }));
    }

    #[test]
    fn retag_matches_the_servers_own_payloads() {
        // The same int8 string as written by Redis 7.0 (v10) and Valkey 9.1 (v80).
        let p = hex(REDIS62_INT8);
        assert_eq!(retag(&p, 10).unwrap(), hex("00 c064 0a00 87299531600e8db3"));
        assert_eq!(retag(&p, 80).unwrap(), hex("00 c064 5000 48035ca0fe5cea47"));
        assert_eq!(
            seal(0, &[0xc0, 0x64], 12),
            hex("00 c064 0c00 4c5fa1f19a2413fa")
        );
    }

    #[test]
    fn type_22_depends_on_version() {
        assert_eq!(type_id_name(22, 80), Some("HASH_2"));
        assert_eq!(type_id_name(22, 12), Some("HASH_METADATA_PRE_GA"));
        assert_eq!(redis_type(22, 80), Some(RedisType::Hash));
        assert_eq!(redis_type(24, 80), None);
        assert_eq!(redis_type(24, 12), Some(RedisType::Hash));
        assert_eq!(redis_type(8, 12), None);
        assert_eq!(redis_type(21, 11), Some(RedisType::Stream));
        assert_eq!(type_ids_in(&hex(REDIS62_INT8)).unwrap(), vec![0]);
    }

    fn redis(v: u16) -> ServerKind {
        ServerKind {
            product: Product::Redis,
            rdb_version: v,
            relaxed: false,
        }
    }

    fn valkey(v: u16, relaxed: bool) -> ServerKind {
        ServerKind {
            product: Product::Valkey,
            rdb_version: v,
            relaxed,
        }
    }

    /// The measured sweep of §1.4, row by row.
    #[test]
    fn version_gate_matches_measurements() {
        let targets = [
            redis(9),
            redis(10),
            valkey(11, false),
            valkey(11, true),
            valkey(80, false),
            valkey(80, true),
            redis(12),
        ];
        let rows: &[(&[u16], [bool; 7])] = &[
            (&[1, 6, 9], [true; 7]),
            (&[10], [false, true, true, true, true, true, true]),
            (&[11], [false, false, true, true, true, true, true]),
            (&[12], [false, false, false, false, false, true, true]),
            (
                &[13, 14, 79],
                [false, false, false, false, false, true, false],
            ),
            (&[80], [false, false, false, true, true, true, false]),
            (
                &[81, 82, 255, 65535],
                [false, false, false, true, false, true, false],
            ),
        ];
        for (versions, expect) in rows {
            for &v in *versions {
                for (t, want) in targets.iter().zip(expect) {
                    assert_eq!(
                        target_accepts_version(t, v),
                        *want,
                        "target {t:?} version {v}"
                    );
                }
            }
        }
    }

    /// The rewrite matrix of §1.6: which type ids each target refuses.
    #[test]
    fn known_types_match_measurements() {
        let refused = |t: &ServerKind, v: u16| -> Vec<u8> {
            (0..=30)
                .filter(|&b| b != 8 && redis_type(b, v).is_some() && !target_knows_type(t, b, v))
                .collect()
        };
        let emitted = |ids: &[u8], r: Vec<u8>| -> Vec<u8> {
            r.into_iter().filter(|b| ids.contains(b)).collect()
        };
        let r70 = [0, 2, 4, 5, 11, 16, 17, 18, 19];
        let v81 = [0, 2, 4, 5, 11, 16, 17, 18, 20, 21];
        let v91 = [0, 2, 4, 5, 11, 16, 17, 18, 20, 21, 22];
        let r82 = [0, 2, 4, 5, 11, 16, 17, 18, 20, 21, 24, 25];
        assert_eq!(emitted(&r70, refused(&redis(9), 10)), vec![16, 17, 18, 19]);
        assert_eq!(
            emitted(&v81, refused(&redis(9), 11)),
            vec![16, 17, 18, 20, 21]
        );
        assert_eq!(emitted(&v81, refused(&redis(10), 11)), vec![20, 21]);
        assert_eq!(emitted(&v91, refused(&redis(10), 80)), vec![20, 21, 22]);
        assert_eq!(emitted(&v91, refused(&valkey(11, false), 80)), vec![22]);
        assert_eq!(emitted(&v91, refused(&redis(12), 80)), vec![22]);
        assert_eq!(
            emitted(&r82, refused(&redis(9), 12)),
            vec![16, 17, 18, 20, 21, 24, 25]
        );
        assert_eq!(emitted(&r82, refused(&valkey(11, false), 12)), vec![24, 25]);
        assert_eq!(emitted(&r82, refused(&valkey(80, true), 12)), vec![24, 25]);
        assert!(target_knows_type(&valkey(80, false), 22, 80));
        assert!(!target_knows_type(&valkey(80, true), 22, 12));
    }

    #[test]
    fn rdb_versions_per_release() {
        assert_eq!(rdb_version_for(Product::Redis, "6.2.14"), Some(9));
        assert_eq!(rdb_version_for(Product::Redis, "7.0.15"), Some(10));
        assert_eq!(rdb_version_for(Product::Redis, "7.4.1"), Some(12));
        assert_eq!(rdb_version_for(Product::Redis, "8.2.3"), Some(12));
        assert_eq!(rdb_version_for(Product::Valkey, "8.1.8"), Some(11));
        assert_eq!(rdb_version_for(Product::Valkey, "9.1.2"), Some(80));
        assert_eq!(rdb_version_for(Product::Redis, "99.0.0"), None);
        assert_eq!(rdb_version_for(Product::Redis, "seven"), None);
    }
}
