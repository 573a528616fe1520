//! The full integrity check behind `verify`: every frame checksum, every
//! block's decompression and records, every payload's own CRC and decoding,
//! the index and the end frame.

use std::collections::BTreeSet;
use std::io::{BufReader, Read, Seek, SeekFrom};

use serde::Serialize;

use crate::format::archive::{self, ArchiveReader, EndInfo, Index, IndexedArchive, KeySet, Record};
use crate::format::dump;
use crate::records::SourceItem;
use crate::selection::Selection;
use crate::source::archive::{ArchiveInput, ArchiveSource, OpenError, OpenedInput, Physical};

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
    let io_error = |cause| OpenError::Io {
        name: input.name(),
        cause,
    };
    if input.holds_physical()? {
        if let Some(backup) = ArchiveSource::open_db(input, None)?.into_physical() {
            return Ok(verify_physical(backup, payload_check));
        }
    }
    match input.open()? {
        OpenedInput::Seekable(file) => verify_file(file, payload_check).map_err(io_error),
        OpenedInput::Stream(stream) => Ok(verify_stream(stream, payload_check)),
    }
}

/// Verifies a physical backup (an RDB file or an AOF, every database):
/// an RDB's checksum, an AOF's commands, and every key's payload with
/// `payload_check`. The reader stops at the first damage (neither has
/// frames to resynchronise on).
pub fn verify_physical(
    rdb: Physical,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let end = rdb.read(&Selection::default(), &mut |item| {
        match item {
            SourceItem::Record(r) => match payload_check(&r) {
                Ok(()) => {
                    report.records_ok += 1;
                    if let Some((_, v)) = dump::peek_type_and_version(&r.payload) {
                        report.rdb_versions.insert(v);
                    }
                }
                Err(m) => {
                    report.records_damaged += 1;
                    let key = crate::kato::display_bytes(&r.key);
                    report.problem(None, None, format!("key {key}: {m}"));
                }
            },
            SourceItem::Damaged { reason, .. } => report.problem(None, None, reason),
            SourceItem::KbDone(_) => {}
        }
        true
    });
    report.complete = end.complete;
    report
}

/// Verifies a stream front to back: every frame checksum, every block's
/// decompression and records (each must belong to its block, none may
/// repeat), every payload's own CRC, the end frame, and the index against
/// the blocks the stream held.
pub fn verify_stream<R: Read>(
    input: R,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut reader = match ArchiveReader::new(input) {
        Ok(r) => r,
        Err(e) => {
            report.problem(e.offset(), None, e.to_string());
            return report;
        }
    };
    let mut keys = KeySet::new();
    loop {
        match reader.next_block() {
            Ok(Some(block)) => verify_block(&block, &mut report, &mut keys, payload_check),
            Ok(None) => {
                report.complete = true;
                break;
            }
            Err(e @ archive::Error::Checksum { .. }) => {
                report.blocks_damaged += 1;
                report.problem(e.offset(), None, e.to_string());
            }
            Err(e) => {
                report.problem(e.offset(), None, e.to_string());
                break;
            }
        }
    }
    index_problems(&mut report, reader.layout_problems(), &reader);
    report
}

fn index_problems<R: Read>(
    report: &mut VerifyReport,
    problems: Vec<String>,
    reader: &ArchiveReader<R>,
) {
    let at = reader.end_info().map(|e| e.index_offset);
    for p in problems {
        report.problem(at, None, format!("index: {p}"));
    }
}

fn verify_block(
    block: &archive::Block,
    report: &mut VerifyReport,
    keys: &mut KeySet,
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
        let checked = match record {
            Ok(r) if !keys.first(&r.key) => {
                count += 1;
                Err(archive::duplicate(&r.key))
            }
            // An absent record has no payload to check.
            Ok(r) if r.is_absent() => {
                count += 1;
                Ok(())
            }
            Ok(r) => {
                count += 1;
                payload_check(&r)
                    .map_err(|m| format!("key {}: {m}", crate::kato::display_bytes(&r.key)))
            }
            Err(archive::Error::Misplaced { key, why, .. }) => {
                count += 1;
                Err(format!("key {key} {why}"))
            }
            // The block's stream broke off: what remains is not records.
            Err(e) => Err(e.to_string()),
        };
        match checked {
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
/// against what the stream held. Where the frame structure is lost (a
/// damaged length field), the pass resumes at the next frame the index
/// locates, so every block after the damage is still checked; the damaged
/// one is named as damaged, not as a truncation. A file without a usable
/// end is read like a stream (and reported truncated where it ends).
pub fn verify_file<R: Read + Seek>(
    mut input: R,
    payload_check: &dyn Fn(&Record) -> Result<(), String>,
) -> std::io::Result<VerifyReport> {
    let file_len = input.seek(SeekFrom::End(0))?;
    input.rewind()?;
    let layout = IndexedArchive::open_unchecked(&mut input)
        .map(|a| (a.index().clone(), a.end_info()))
        .map_err(|(e, _)| e);
    input.rewind()?;
    let Ok((index, end)) = layout else {
        let mut report = verify_stream(BufReader::new(&mut input), payload_check);
        if let (true, Err(e)) = (report.complete, layout) {
            report.problem(e.offset(), None, format!("index: {e}"));
        }
        return Ok(report);
    };
    let mut report = VerifyReport::default();
    let mut reader = match ArchiveReader::with_len(BufReader::new(&mut input), file_len) {
        Ok(r) => r,
        Err(e) => {
            report.problem(e.offset(), None, e.to_string());
            return Ok(report);
        }
    };
    let starts = frame_starts(&index, &end);
    let mut keys = KeySet::new();
    loop {
        let at = reader.offset();
        match reader.next_block() {
            Ok(Some(block)) => verify_block(&block, &mut report, &mut keys, payload_check),
            Ok(None) => {
                report.complete = true;
                break;
            }
            Err(e) => {
                let failed_at = match &e {
                    archive::Error::Checksum { offset, .. } => *offset,
                    _ => reader.offset().max(at),
                };
                let lost = !matches!(e, archive::Error::Checksum { .. })
                    || !starts.contains(&reader.offset());
                let next = starts.range(failed_at + 1..).next().copied();
                if index.blocks.iter().any(|b| b.offset == failed_at) {
                    report.blocks_damaged += 1;
                }
                match (lost, next) {
                    (false, _) => report.problem(Some(failed_at), None, e.to_string()),
                    (true, Some(next)) => {
                        report.problem(
                            Some(failed_at),
                            None,
                            format!(
                                "{e}; the frame at byte {failed_at} is damaged (its length field \
                                 cannot be trusted); resuming at byte {next}, the next frame \
                                 the index locates"
                            ),
                        );
                        if let Err(e) = reader.resume_at(next) {
                            report.problem(Some(next), None, e.to_string());
                            break;
                        }
                    }
                    (true, None) => {
                        report.problem(Some(failed_at), None, e.to_string());
                        break;
                    }
                }
            }
        }
    }
    let problems = if reader.end_info().is_some() {
        reader.layout_problems()
    } else {
        archive::index_against_blocks(&index, &end, reader.seen_blocks(), false)
    };
    let at = Some(end.index_offset);
    for p in problems {
        report.problem(at, None, format!("index: {p}"));
    }
    Ok(report)
}

/// Where frames start according to the index: every indexed block, the
/// index frame, the end frame.
fn frame_starts(index: &Index, end: &EndInfo) -> BTreeSet<u64> {
    let mut starts: BTreeSet<u64> = index.blocks.iter().map(|e| e.offset).collect();
    starts.insert(end.index_offset);
    starts
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
