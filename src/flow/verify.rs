//! The full integrity check behind `verify`: every frame checksum, every
//! block's decompression and records, every payload's own CRC and decoding,
//! the index and the end frame.

use std::collections::BTreeSet;
use std::io::{Read, Seek};

use serde::Serialize;

use crate::format::archive::{self, ArchiveReader, IndexedArchive, Record};
use crate::format::dump;
use crate::source::archive::{ArchiveInput, OpenError};

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

/// Verifies an archive: a file with [`verify_file`] (stream pass, then the
/// index), stdin with [`verify_stream`].
pub fn verify(
    input: &ArchiveInput,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> Result<VerifyReport, OpenError> {
    let io_error = |source| OpenError::Io {
        name: input.name(),
        source,
    };
    match input.open_file()? {
        Some(file) => verify_file(file, payload_check).map_err(io_error),
        None => Ok(verify_stream(input.open_stream()?, payload_check)),
    }
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
            // An absent record has no payload to check.
            if r.is_absent() {
                return Ok(());
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
