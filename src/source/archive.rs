//! Record sources for restore and diff: an archive file (only the selected
//! blocks, through the index), or an archive stream. Reading runs on a
//! blocking thread and feeds a bounded channel, so memory stays flat.

use std::io::{Read, Seek};

use tokio::sync::mpsc::{channel, Receiver, Sender};
use tokio::task::JoinHandle;

use crate::flow::verify::selected_blocks;
use crate::format::archive::{self, ArchiveReader, Block, Header, IndexedArchive};
use crate::selection::Selection;
use crate::sink::redis::SourceItem;

/// Records in flight between the reader thread and the consumer.
const CHANNEL_RECORDS: usize = 4096;

/// What the reader thread found, once it is done.
pub type SourceResult = Result<Header, archive::Error>;

/// The size of a seekable archive's selected blocks, from its index (for
/// the memory guard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectedSize {
    pub payload_bytes: u64,
    pub keys: u64,
}

/// The selected blocks' size (an upper bound when `--match` narrows the
/// selection further) and the archive's header.
pub fn selected_size<R: Read + Seek>(
    input: R,
    selection: &Selection,
) -> archive::Result<(Header, SelectedSize)> {
    let archive = IndexedArchive::open(input)?;
    let mut size = SelectedSize::default();
    for entry in selected_blocks(archive.index(), selection) {
        size.payload_bytes += entry.meta.payload_bytes;
        size.keys += entry.meta.records;
    }
    Ok((archive.header().clone(), size))
}

/// Reads the selected blocks of a seekable archive. A damaged block is
/// reported as [`SourceItem::Damaged`] and the others are still read. A
/// truncated file has no index: it is then read front to back, so every
/// intact block is still restored and the truncation is reported at the end.
pub fn spawn_file_source<R: Read + Seek + Send + 'static>(
    mut input: R,
    selection: Selection,
) -> (Receiver<SourceItem>, JoinHandle<SourceResult>) {
    let (tx, rx) = channel(CHANNEL_RECORDS);
    let handle = tokio::task::spawn_blocking(move || match IndexedArchive::open(&mut input) {
        Ok(archive) => read_indexed(archive, &selection, &tx),
        Err(archive::Error::Truncated { .. }) => {
            input.rewind()?;
            read_stream(input, &selection, &tx)
        }
        Err(e) => Err(e),
    });
    (rx, handle)
}

fn read_indexed<R: Read + Seek>(
    mut archive: IndexedArchive<R>,
    selection: &Selection,
    tx: &Sender<SourceItem>,
) -> SourceResult {
    let entries: Vec<_> = selected_blocks(archive.index(), selection)
        .cloned()
        .collect();
    for entry in entries {
        let sent = match archive.read_block(&entry) {
            Ok(block) => send_block(tx, &block, selection),
            Err(e) => damaged(tx, describe_entry(&entry), e),
        };
        if !sent {
            break;
        }
    }
    Ok(archive.header().clone())
}

/// Reads an archive front to back (a pipe). Unselected blocks are skipped
/// without decompression; a block with a bad checksum is reported and
/// skipped; damage that loses the frame structure ends the stream with a
/// `Damaged` item.
pub fn spawn_stream_source<R: Read + Send + 'static>(
    input: R,
    selection: Selection,
) -> (Receiver<SourceItem>, JoinHandle<SourceResult>) {
    let (tx, rx) = channel(CHANNEL_RECORDS);
    let handle = tokio::task::spawn_blocking(move || read_stream(input, &selection, &tx));
    (rx, handle)
}

fn read_stream<R: Read>(input: R, selection: &Selection, tx: &Sender<SourceItem>) -> SourceResult {
    let mut reader = ArchiveReader::new(input)?;
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                if selection.block_selected(&block.meta.kb_id, block.meta.category)
                    && !send_block(tx, &block, selection)
                {
                    break;
                }
            }
            Ok(None) => break,
            Err(e @ archive::Error::Checksum { .. }) => {
                if !damaged(tx, "archive block".into(), e) {
                    break;
                }
            }
            Err(e) => {
                damaged(tx, "archive".into(), e);
                break;
            }
        }
    }
    Ok(reader.header().clone())
}

fn describe_entry(entry: &archive::IndexEntry) -> String {
    format!(
        "block at byte {} (kb {}, {})",
        entry.offset,
        crate::kato::display_bytes(&entry.meta.kb_id),
        entry.meta.category
    )
}

/// Sends a block's selected records; false when the consumer has gone.
fn send_block(tx: &Sender<SourceItem>, block: &Block, selection: &Selection) -> bool {
    let records = match block.records() {
        Ok(r) => r,
        Err(e) => return damaged(tx, block.describe(), e),
    };
    for record in records {
        let item = match record {
            Ok(r) if !selection.key_selected(&r.key) => continue,
            Ok(r) => SourceItem::Record(r),
            Err(e) => SourceItem::Damaged {
                what: block.describe(),
                reason: e.to_string(),
            },
        };
        if tx.blocking_send(item).is_err() {
            return false;
        }
    }
    true
}

fn damaged(tx: &Sender<SourceItem>, what: String, e: archive::Error) -> bool {
    tx.blocking_send(SourceItem::Damaged {
        what,
        reason: e.to_string(),
    })
    .is_ok()
}
