//! The RESTORE gate per well-known server release, from an archive's block
//! metadata alone: what `inspect` reports about where an archive can go.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{path_for, Method};
use crate::format::archive::BlockMeta;
use crate::format::dump::{Product, ServerKind};

/// A server release whose RESTORE gate `inspect` reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTarget {
    pub name: &'static str,
    pub kind: ServerKind,
}

const fn target(name: &'static str, product: Product, rdb_version: u16) -> GateTarget {
    GateTarget {
        name,
        kind: ServerKind {
            product,
            rdb_version,
            relaxed: false,
        },
    }
}

/// The releases KATO deployments run or move to, in their default
/// (`rdb-version-check strict`) configuration; RDB versions from
/// dump-format.md §2.3.
pub const GATE_TARGETS: [GateTarget; 6] = [
    target("Redis 6.2", Product::Redis, 9),
    target("Redis 7.0", Product::Redis, 10),
    target("Redis 7.2", Product::Redis, 11),
    target("Redis 7.4/8.x", Product::Redis, 12),
    target("Valkey 8.1", Product::Valkey, 11),
    target("Valkey 9.x", Product::Valkey, 80),
];

/// How one target can take an archive's payloads: which (RDB version,
/// type id) pairs pass RESTORE as they are, which only after the trailer
/// is retagged to the target's version, and which need the logical
/// (command) path because the target does not know the type id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateVerdict {
    pub target: &'static str,
    pub product: &'static str,
    pub target_rdb_version: u16,
    /// The slowest path any payload needs: `raw`, `retagged` or `logical`.
    pub method: Method,
    pub raw_type_ids: BTreeSet<u8>,
    pub retag_type_ids: BTreeSet<u8>,
    pub logical_type_ids: BTreeSet<u8>,
}

/// The gate verdict for every target in [`GATE_TARGETS`], from block
/// metadata alone (no payload is read). A block lists its RDB versions and
/// type ids as two sets, so every combination is assumed to occur; blocks
/// of one export hold one RDB version, where this is exact.
pub fn gate_report(blocks: &[(u64, BlockMeta)]) -> Vec<GateVerdict> {
    GATE_TARGETS
        .iter()
        .map(|t| gate_verdict(t, blocks))
        .collect()
}

fn gate_verdict(target: &GateTarget, blocks: &[(u64, BlockMeta)]) -> GateVerdict {
    let mut verdict = GateVerdict {
        target: target.name,
        product: target.kind.product.name(),
        target_rdb_version: target.kind.rdb_version,
        method: Method::Raw,
        raw_type_ids: BTreeSet::new(),
        retag_type_ids: BTreeSet::new(),
        logical_type_ids: BTreeSet::new(),
    };
    for (_, meta) in blocks {
        for &version in &meta.rdb_versions {
            for &type_byte in &meta.type_bytes {
                let set = match path_for(&target.kind, type_byte, version) {
                    Method::Raw => &mut verdict.raw_type_ids,
                    Method::Retagged => &mut verdict.retag_type_ids,
                    Method::Logical => &mut verdict.logical_type_ids,
                };
                set.insert(type_byte);
            }
        }
    }
    verdict.method = if !verdict.logical_type_ids.is_empty() {
        Method::Logical
    } else if !verdict.retag_type_ids.is_empty() {
        Method::Retagged
    } else {
        Method::Raw
    };
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kato::Category;

    fn meta(rdb_versions: &[u16], type_bytes: &[u8]) -> (u64, BlockMeta) {
        let meta = BlockMeta {
            kb_id: b"kb".to_vec(),
            category: Category::Other,
            records: 1,
            payload_bytes: 1,
            raw_len: 1,
            rdb_versions: rdb_versions.to_vec(),
            type_bytes: type_bytes.to_vec(),
        };
        (10, meta)
    }

    fn verdict<'a>(report: &'a [GateVerdict], name: &str) -> &'a GateVerdict {
        report.iter().find(|v| v.target == name).unwrap()
    }

    #[test]
    fn redis_7_0_archive_needs_retag_on_6_2_and_logical_for_listpacks() {
        let report = gate_report(&[meta(&[10], &[0, 16, 18]), meta(&[10], &[2, 5])]);
        let r62 = verdict(&report, "Redis 6.2");
        assert_eq!(r62.method, Method::Logical);
        assert_eq!(r62.retag_type_ids, BTreeSet::from([0, 2, 5]));
        assert_eq!(r62.logical_type_ids, BTreeSet::from([16, 18]));
        for newer in ["Redis 7.0", "Redis 7.4/8.x", "Valkey 8.1", "Valkey 9.x"] {
            assert_eq!(verdict(&report, newer).method, Method::Raw, "{newer}");
        }
    }

    #[test]
    fn valkey_9_type_22_is_logical_everywhere_but_valkey_9() {
        let report = gate_report(&[meta(&[80], &[0, 22])]);
        assert_eq!(verdict(&report, "Valkey 9.x").method, Method::Raw);
        let v81 = verdict(&report, "Valkey 8.1");
        assert_eq!(v81.retag_type_ids, BTreeSet::from([0]));
        assert_eq!(v81.logical_type_ids, BTreeSet::from([22]));
        assert_eq!(
            verdict(&report, "Redis 7.4/8.x").logical_type_ids,
            BTreeSet::from([22])
        );
    }

    #[test]
    fn redis_8_payloads_are_retagged_for_valkey_9() {
        let report = gate_report(&[meta(&[12], &[0, 21])]);
        assert_eq!(verdict(&report, "Valkey 9.x").method, Method::Retagged);
        assert_eq!(verdict(&report, "Redis 7.4/8.x").method, Method::Raw);
        assert_eq!(
            verdict(&report, "Redis 7.2").logical_type_ids,
            BTreeSet::new()
        );
    }

    #[test]
    fn empty_archive_is_raw_everywhere() {
        assert!(gate_report(&[]).iter().all(|v| v.method == Method::Raw));
    }
}
