//! The mirror table as a record source (`kbdump restore
//! --from-clickhouse`): the rows a `--kb`/`--category`/`--match` selection
//! reads, fed to a sink exactly as an archive's records are.

use tokio::sync::mpsc::channel;

use crate::net::clickhouse::Ch;
use crate::net::mirror::{MirrorError as Error, MirrorReader, MirrorScope};
use crate::records::SourceItem;
use crate::selection::Selection;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

/// What the mirror source task found once it is done: records sent.
pub type MirrorSourceResult = Result<u64, Error>;

/// Records in flight between the mirror reader and the consumer.
const SOURCE_CHANNEL: usize = 4096;

/// Feeds the restore engine from the mirror table, as an archive source
/// does: the selection's kb_ids (globs resolved against the mirror),
/// categories and key globs. A row with an unknown category is reported
/// as [`SourceItem::Damaged`]; a ClickHouse failure ends the stream and is
/// the task's error.
pub fn spawn_mirror_source(
    ch: Ch,
    selection: Selection,
) -> (Receiver<SourceItem>, JoinHandle<MirrorSourceResult>) {
    let (tx, rx) = channel(SOURCE_CHANNEL);
    let handle = tokio::spawn(async move {
        let Some(scope) = MirrorScope::resolve(&ch, &selection).await? else {
            return Ok(0);
        };
        let mut reader = MirrorReader::open(&ch, &scope.kb_ids, &scope.categories).await?;
        let mut sent = 0;
        loop {
            let item = match reader.next().await {
                Ok(None) => break,
                Ok(Some(r)) if !selection.selects(&r.kb_id, r.category, &r.key) => continue,
                Ok(Some(r)) => SourceItem::Record(r),
                Err(Error::BadRow { table, category }) => SourceItem::Damaged {
                    what: table,
                    reason: format!("row with unknown category {category:?}"),
                },
                Err(e) => return Err(e),
            };
            if tx.send(item).await.is_err() {
                break;
            }
            sent += 1;
        }
        Ok(sent)
    });
    (rx, handle)
}
