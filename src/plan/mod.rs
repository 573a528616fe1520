//! Pure decisions of a restore: which path each payload takes on a target
//! (raw, retagged, logical), what a selection costs in server memory, how
//! `--rename-kb` maps keys, the per-release gate `inspect` shows, merge
//! mode's policies ([`merge`]), and the pace of reads ([`throttle`]).
//! Nothing here talks to a server; the Redis sink, the dry run and the
//! readers call it.
//!
//! For backup directories: [`retention`] (which backups to keep),
//! [`health`] (the alarms of `backups check`) and [`metrics`] (their
//! Prometheus textfile), each with the instant passed in.
//!
//! For the ClickHouse mirror: [`shrink`] (the guard against recording an
//! eviction storm as deletions) and [`instant`] (`--as-of TIME`).
//!
//! For cluster targets: [`slot`] (hash slots, and a tag for each).

mod gate;
pub mod health;
pub mod instant;
pub mod merge;
pub mod metrics;
pub mod retention;
pub mod shrink;
pub mod slot;
pub mod throttle;

use serde::Serialize;

use crate::format::dump::{self, ServerKind};

pub use gate::{gate_report, GateTarget, GateVerdict, GATE_TARGETS};

/// How a key was (or would be) written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Raw,
    Retagged,
    Logical,
}

/// Server memory per key beyond its payload: dict entry, key string,
/// object headers and allocator rounding. Measured at 90-120 bytes for
/// KATO-like keys on Redis 7.0; twice the payload alone under-estimated a
/// dataset of small keys by half and let a guarded restore evict keys.
const KEY_OVERHEAD: u64 = 160;

/// What `keys` keys with `payload_bytes` of DUMP payloads take in server
/// memory, erring high: encodings expand (twice the payload), and every
/// key has a fixed overhead.
pub fn estimated_memory(payload_bytes: u64, keys: u64) -> u64 {
    payload_bytes
        .saturating_mul(2)
        .saturating_add(keys.saturating_mul(KEY_OVERHEAD))
}

/// Applies `--rename-kb FROM=TO` to a record's kb_id and key (the key
/// shapes that name a kb_id are the catalogue's: `kato::keys::rekeyed`).
pub fn renamed(kb_id: &[u8], key: &[u8], renames: &[(Vec<u8>, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    for (from, to) in renames {
        if kb_id == from.as_slice() {
            if let Some(key) = crate::kato::keys::rekeyed(key, from, to) {
                return (to.clone(), key);
            }
        }
    }
    (kb_id.to_vec(), key.to_vec())
}

/// The path a payload takes on this target.
pub fn plan(kind: &ServerKind, payload: &[u8], force_logical: bool) -> Method {
    // The CRC is not checked here: the server checks it on RESTORE, and a
    // refused payload falls back to the decoder, which does check it.
    let Some((type_byte, rdb_version)) = dump::peek_type_and_version(payload) else {
        return Method::Logical;
    };
    if force_logical {
        return Method::Logical;
    }
    path_for(kind, type_byte, rdb_version)
}

/// The one restore-path decision, for a payload's type id and RDB version
/// on a target: raw when the target takes both, retagged when it knows the
/// type but not the version (older types never changed encoding), logical
/// when it does not know the type. `plan`, the dry run and `inspect`'s
/// gate report all decide through this function.
pub fn path_for(kind: &ServerKind, type_byte: u8, rdb_version: u16) -> Method {
    let knows_type = dump::target_knows_type(kind, type_byte, rdb_version);
    match (knows_type, dump::target_accepts_version(kind, rdb_version)) {
        (true, true) => Method::Raw,
        (true, false) => Method::Retagged,
        (false, _) => Method::Logical,
    }
}

/// [`plan`], with payloads too large for one RESTORE sent down the chunked
/// logical path.
pub fn plan_sized(
    kind: &ServerKind,
    payload: &[u8],
    force_logical: bool,
    max_payload: u64,
) -> Method {
    if payload.len() as u64 >= max_payload {
        return Method::Logical;
    }
    plan(kind, payload, force_logical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dump::Product;

    #[test]
    fn renames_apply_to_the_kb_prefix_only() {
        let renames = vec![(b"a".to_vec(), b"b".to_vec())];
        assert_eq!(
            renamed(b"a", b"a:emotives:x", &renames),
            (b"b".to_vec(), b"b:emotives:x".to_vec())
        );
        assert_eq!(
            renamed(b"ab", b"ab:emotives:x", &renames),
            (b"ab".to_vec(), b"ab:emotives:x".to_vec())
        );
    }

    #[test]
    fn plan_follows_the_version_gate() {
        let redis62 = ServerKind {
            product: Product::Redis,
            rdb_version: 9,
            relaxed: false,
        };
        let string_v10 = dump::seal(0, b"\x03abc", 10);
        let listpack_hash_v10 = dump::seal(16, b"\x00", 10);
        assert_eq!(plan(&redis62, &string_v10, false), Method::Retagged);
        assert_eq!(plan(&redis62, &listpack_hash_v10, false), Method::Logical);
        let redis70 = ServerKind {
            product: Product::Redis,
            rdb_version: 10,
            relaxed: false,
        };
        assert_eq!(plan(&redis70, &listpack_hash_v10, false), Method::Raw);
        assert_eq!(plan(&redis70, &listpack_hash_v10, true), Method::Logical);
    }
}
