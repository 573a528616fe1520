//! The mirror as a record source (`kbdump restore --from-clickhouse
//! [--as-of TIME]`): the state at an instant of the keys a
//! `--kb`/`--category`/`--match` selection reads, fed to a sink exactly as
//! an archive's records are.

use tokio::sync::mpsc::channel;

use super::RecordStream;
use crate::format::mirror::Layout;
use crate::net::clickhouse::{Ch, ChError};
use crate::net::mirror::{layout, MirrorError, MirrorReader, MirrorScope};
use crate::records::{SelectedSize, SourceItem};
use crate::selection::Selection;

/// The mirror, opened for a selection at an instant: its `--kb` globs
/// resolved against the kb_ids in the mirror, and the size of the keys in
/// scope.
pub struct MirrorSource {
    ch: Ch,
    layout: Layout,
    at_ms: u64,
    selection: Selection,
    /// `None` when the selection cannot match any row.
    scope: Option<MirrorScope>,
    size: SelectedSize,
}

impl MirrorSource {
    /// Resolves the selection against the mirror and sizes the state at
    /// `at_ms` (`None`: the latest).
    pub async fn open(
        ch: Ch,
        selection: Selection,
        at_ms: Option<u64>,
    ) -> Result<MirrorSource, ChError> {
        let layout = layout(&ch).await?;
        let at_ms = at_ms.unwrap_or(u64::MAX);
        let scope = MirrorScope::resolve(&ch, layout, &selection).await?;
        let size = match &scope {
            Some(scope) => {
                let (payload_bytes, keys) = scope.payload_bytes(&ch, layout, at_ms).await?;
                SelectedSize {
                    payload_bytes,
                    keys,
                }
            }
            None => SelectedSize::default(),
        };
        Ok(MirrorSource {
            ch,
            layout,
            at_ms,
            selection,
            scope,
            size,
        })
    }

    /// Payload bytes and keys of the rows in scope.
    pub fn selected_size(&self) -> Option<SelectedSize> {
        Some(self.size)
    }

    /// The table read (`database.table`), for messages.
    pub fn table(&self) -> String {
        self.layout.table(self.ch.target().database())
    }

    /// Feeds the selected rows as records, as an archive source does. A row
    /// with an unknown category is reported as [`SourceItem::Damaged`]; a
    /// ClickHouse failure ends the stream and is the task's error. The task
    /// ends with the number of records sent.
    pub fn stream(self) -> RecordStream<u64> {
        let (tx, rx) = channel(SOURCE_CHANNEL);
        let handle = tokio::spawn(async move {
            let Some(scope) = self.scope else {
                return Ok(0);
            };
            let (ch, selection) = (self.ch, self.selection);
            let mut reader = MirrorReader::open_at(&ch, self.layout, &scope, self.at_ms)?;
            let mut sent = 0;
            loop {
                let item = match reader.next().await {
                    Ok(None) => break,
                    Ok(Some(r)) if !selection.selects(&r.kb_id, r.category, &r.key) => continue,
                    Ok(Some(r)) => SourceItem::Record(r),
                    Err(MirrorError::BadRow { table, category }) => SourceItem::Damaged {
                        what: table,
                        reason: format!("row with unknown category {category:?}"),
                    },
                    Err(e) => return Err(e.into()),
                };
                if tx.send(item).await.is_err() {
                    break;
                }
                sent += 1;
            }
            Ok(sent)
        });
        RecordStream::named(rx, handle, "ClickHouse mirror")
    }
}

/// Records in flight between the mirror reader and the consumer.
const SOURCE_CHANNEL: usize = 4096;
