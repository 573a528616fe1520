//! Reading archives without a server: overviews, selected records, the
//! full integrity check behind `inspect`, `ls`, `cat` and `verify`, and the
//! RESTORE version gate per well-known target (`inspect`).

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use serde::Serialize;

use crate::format::archive::{
    self, ArchiveReader, BlockMeta, Header, IndexedArchive, KbWindow, Record,
};
use crate::format::dump::{self, Product, ServerKind};
use crate::selection::Selection;
use crate::sink::redis::Method;

/// What an archive holds, from its index (or a metadata-only pass).
#[derive(Debug, Clone)]
pub struct Overview {
    pub header: Header,
    pub blocks: Vec<(u64, BlockMeta)>,
    pub kbs: Vec<KbWindow>,
}

/// Overview of a seekable archive: reads the header, the end frame and the
/// index only.
pub fn overview_file<R: Read + Seek>(input: R) -> archive::Result<Overview> {
    let archive = IndexedArchive::open(input)?;
    Ok(Overview {
        header: archive.header().clone(),
        blocks: archive
            .index()
            .blocks
            .iter()
            .map(|e| (e.offset, e.meta.clone()))
            .collect(),
        kbs: archive.index().kbs.clone(),
    })
}

/// Overview of a stream: every block frame is read and checked, none is
/// decompressed.
pub fn overview_stream<R: Read>(input: R) -> archive::Result<Overview> {
    let mut reader = ArchiveReader::new(input)?;
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block()? {
        blocks.push((block.offset, block.meta.clone()));
    }
    Ok(Overview {
        header: reader.header().clone(),
        blocks,
        kbs: reader.index().map(|i| i.kbs.clone()).unwrap_or_default(),
    })
}

/// The index entries of the blocks a selection needs (by kb_id and
/// category; `--match` is applied to the records inside).
pub fn selected_blocks<'a>(
    index: &'a archive::Index,
    selection: &'a Selection,
) -> impl Iterator<Item = &'a archive::IndexEntry> {
    index
        .blocks
        .iter()
        .filter(|e| selection.block_selected(&e.meta.kb_id, e.meta.category))
}

/// Calls `visit` for every selected record of a seekable archive, reading
/// only the blocks the selection needs.
pub fn visit_file<R: Read + Seek, E: From<archive::Error>>(
    input: R,
    selection: &Selection,
    mut visit: impl FnMut(Record) -> Result<(), E>,
) -> Result<Header, E> {
    let mut archive = IndexedArchive::open(input)?;
    let entries: Vec<_> = selected_blocks(archive.index(), selection)
        .cloned()
        .collect();
    for entry in &entries {
        let block = archive.read_block(entry)?;
        visit_block(&block, selection, &mut visit)?;
    }
    Ok(archive.header().clone())
}

/// Like [`visit_file`] for a stream: unselected blocks are skipped without
/// being decompressed.
pub fn visit_stream<R: Read, E: From<archive::Error>>(
    input: R,
    selection: &Selection,
    mut visit: impl FnMut(Record) -> Result<(), E>,
) -> Result<Header, E> {
    let mut reader = ArchiveReader::new(input)?;
    while let Some(block) = reader.next_block()? {
        if selection.block_selected(&block.meta.kb_id, block.meta.category) {
            visit_block(&block, selection, &mut visit)?;
        }
    }
    Ok(reader.header().clone())
}

fn visit_block<E: From<archive::Error>>(
    block: &archive::Block,
    selection: &Selection,
    visit: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    for record in block.records()? {
        let record = record?;
        if selection.key_selected(&record.key) {
            visit(record)?;
        }
    }
    Ok(())
}

/// One thing wrong with an archive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Byte offset of the damaged frame, when known.
    pub offset: Option<u64>,
    /// The block concerned (`kb node0, emotives`), when known.
    pub block: Option<String>,
    pub message: String,
}

/// The result of a full integrity check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub blocks_ok: u64,
    pub blocks_damaged: u64,
    pub records_ok: u64,
    pub records_damaged: u64,
    /// Whether the end frame was reached and is valid.
    pub complete: bool,
    /// Distinct RDB versions of the payloads in the blocks that were read.
    pub rdb_versions: BTreeSet<u16>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.complete
    }

    fn problem(&mut self, offset: Option<u64>, block: Option<String>, message: String) {
        self.problems.push(Problem {
            offset,
            block,
            message,
        });
    }
}

/// Checks one DUMP payload on its own: length and CRC-64 trailer.
pub fn check_payload(payload: &[u8]) -> Result<(), String> {
    dump::parse_envelope(payload)
        .map(drop)
        .map_err(|e| trailer_problem(payload, &e))
}

/// Checks that a DUMP payload is readable offline: its CRC-64 trailer and a
/// full decode of its value (one pass: the decoder checks the trailer
/// first), so an archive that verifies is one that `cat` (and a logical
/// restore) can read.
pub fn check_payload_decodes(payload: &[u8]) -> Result<(), String> {
    dump::decode(payload).map(drop).map_err(|e| match e {
        dump::DecodeError::TooShort { .. } | dump::DecodeError::BadChecksum { .. } => {
            trailer_problem(payload, &e)
        }
        other => undecodable(payload, &other),
    })
}

/// The message for a payload whose trailer is wrong.
fn trailer_problem(payload: &[u8], err: &dump::DecodeError) -> String {
    match err {
        dump::DecodeError::BadChecksum { expected, found } => {
            format!("payload CRC64 mismatch: stored {expected:016x}, computed {found:016x}")
        }
        dump::DecodeError::TooShort { len } => {
            format!("payload of {len} bytes is shorter than a DUMP trailer")
        }
        other => undecodable(payload, other),
    }
}

/// The message for a payload the decoder refuses: names the type byte
/// (and its server-source name) next to the decoder's own error.
pub fn undecodable(payload: &[u8], err: &dump::DecodeError) -> String {
    let type_byte = payload.first().copied().unwrap_or_default();
    let name = dump::parse_envelope(payload)
        .ok()
        .and_then(|e| dump::type_id_name(e.type_byte, e.rdb_version))
        .map_or(String::new(), |n| format!(" ({n})"));
    format!("payload with type byte {type_byte}{name} does not decode: {err}")
}

/// Verifies a stream front to back: every frame checksum, every block's
/// decompression and records, every payload's own CRC, and the end frame.
pub fn verify_stream<R: Read>(
    input: R,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut reader = match ArchiveReader::new(input) {
        Ok(r) => r,
        Err(e) => {
            report.problem(error_offset(&e), None, e.to_string());
            return report;
        }
    };
    loop {
        match reader.next_block() {
            Ok(Some(block)) => verify_block(&block, &mut report, payload_check),
            Ok(None) => {
                report.complete = true;
                break;
            }
            Err(e @ archive::Error::Checksum { .. }) => {
                report.blocks_damaged += 1;
                report.problem(error_offset(&e), None, e.to_string());
            }
            Err(e) => {
                report.problem(error_offset(&e), None, e.to_string());
                break;
            }
        }
    }
    report
}

fn verify_block(
    block: &archive::Block,
    report: &mut VerifyReport,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) {
    let name = block.describe();
    report
        .rdb_versions
        .extend(block.meta.rdb_versions.iter().copied());
    let records = match block.records() {
        Ok(r) => r,
        Err(e) => {
            report.blocks_damaged += 1;
            report.problem(Some(block.offset), Some(name), e.to_string());
            return;
        }
    };
    let mut damaged = false;
    let mut count = 0;
    for record in records {
        count += 1;
        match record.map_err(|e| e.to_string()).and_then(|r| {
            payload_check(&r)
                .map_err(|m| format!("key {}: {m}", crate::kato::display_bytes(&r.key)))
        }) {
            Ok(()) => report.records_ok += 1,
            Err(message) => {
                damaged = true;
                report.records_damaged += 1;
                report.problem(Some(block.offset), Some(name.clone()), message);
            }
        }
    }
    if count != block.meta.records {
        damaged = true;
        report.problem(
            Some(block.offset),
            Some(name),
            format!(
                "holds {count} records, metadata says {}",
                block.meta.records
            ),
        );
    }
    if damaged {
        report.blocks_damaged += 1;
    } else {
        report.blocks_ok += 1;
    }
}

/// Verifies a seekable file: the stream pass, then the index and end frame
/// against what the stream held. When the stream breaks off (a damaged frame
/// header), the blocks after the break are still checked through the index.
pub fn verify_file<R: Read + Seek>(
    mut input: R,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> std::io::Result<VerifyReport> {
    input.rewind()?;
    let mut report = verify_stream(&mut input, payload_check);
    input.rewind()?;
    match IndexedArchive::open(&mut input) {
        Ok(mut archive) => {
            if !report.complete {
                let broke_at = report.problems.last().and_then(|p| p.offset).unwrap_or(0);
                let later: Vec<_> = archive
                    .index()
                    .blocks
                    .iter()
                    .filter(|e| e.offset > broke_at)
                    .cloned()
                    .collect();
                for entry in later {
                    match archive.read_block(&entry) {
                        Ok(block) => verify_block(&block, &mut report, payload_check),
                        Err(e) => {
                            report.blocks_damaged += 1;
                            report.problem(Some(entry.offset), None, e.to_string());
                        }
                    }
                }
            }
        }
        Err(e) if report.complete => report.problem(error_offset(&e), None, format!("index: {e}")),
        Err(_) => {}
    }
    Ok(report)
}

fn error_offset(e: &archive::Error) -> Option<u64> {
    match e {
        archive::Error::Truncated { offset, .. }
        | archive::Error::Checksum { offset, .. }
        | archive::Error::Corrupt { offset, .. } => Some(*offset),
        archive::Error::BadMagic { .. } | archive::Error::UnsupportedVersion { .. } => Some(0),
        _ => None,
    }
}

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
                let set = match gate_method(&target.kind, type_byte, version) {
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

/// The same decision `restore::plan` takes for one payload.
fn gate_method(kind: &ServerKind, type_byte: u8, rdb_version: u16) -> Method {
    let knows = dump::target_knows_type(kind, type_byte, rdb_version);
    match (knows, dump::target_accepts_version(kind, rdb_version)) {
        (true, true) => Method::Raw,
        (true, false) => Method::Retagged,
        (false, _) => Method::Logical,
    }
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

    #[test]
    fn undecodable_names_the_type_byte() {
        let payload = dump::seal(200, b"", 10);
        let err = check_payload_decodes(&payload).unwrap_err();
        assert!(err.contains("type byte 200"), "{err}");
        let payload = dump::seal(16, b"\x01\x02", 10);
        let err = check_payload_decodes(&payload).unwrap_err();
        assert!(err.contains("type byte 16 (HASH_LISTPACK)"), "{err}");
    }
}
