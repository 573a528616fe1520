//! Reading archives without a server: overviews, selected records and the
//! full integrity check behind `inspect`, `ls`, `cat` and `verify`.

use std::io::{Read, Seek};

use serde::Serialize;

use crate::archive::{self, ArchiveReader, BlockMeta, Header, IndexedArchive, KbWindow, Record};
use crate::selection::Selection;

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

/// Calls `visit` for every selected record of a seekable archive, reading
/// only the blocks the selection needs.
pub fn visit_file<R: Read + Seek, E: From<archive::Error>>(
    input: R,
    selection: &Selection,
    mut visit: impl FnMut(Record) -> Result<(), E>,
) -> Result<Header, E> {
    let mut archive = IndexedArchive::open(input)?;
    let entries: Vec<_> = archive
        .index()
        .blocks
        .iter()
        .filter(|e| selection.block_selected(&e.meta.kb_id, e.meta.category))
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
    const REDIS_CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);
    let n = payload.len();
    if n < 10 {
        return Err(format!(
            "payload of {n} bytes is shorter than a DUMP trailer"
        ));
    }
    let stored = u64::from_le_bytes(payload[n - 8..].try_into().expect("8 bytes"));
    let computed = REDIS_CRC.checksum(&payload[..n - 8]);
    if stored != computed {
        return Err(format!(
            "payload CRC64 mismatch: stored {stored:016x}, computed {computed:016x}"
        ));
    }
    Ok(())
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
