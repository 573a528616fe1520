//! The mirror table as a record source: which rows a `--kb`/`--category`/
//! `--match` selection reads, and the task that feeds them to the restore
//! engine (`kbdump restore --from-clickhouse`).

use clickhouse::Row;
use serde::Deserialize;
use tokio::sync::mpsc::{channel, Receiver};
use tokio::task::JoinHandle;

use super::{Error, MirrorReader, MIRRORED, MIRROR_TABLE};
use crate::clickhouse_io::{Ch, ChError};
use crate::kato::Category;
use crate::restore::SourceItem;
use crate::selection::Selection;

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The kb_ids and categories of the mirror a selection reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorScope {
    /// kb_ids to read (empty: all).
    pub kb_ids: Vec<Vec<u8>>,
    /// Categories to read (empty: all mirrored).
    pub categories: Vec<Category>,
}

impl MirrorScope {
    /// Resolves `--kb` globs against the kb_ids in the mirror (literal ids
    /// need no discovery) and keeps the mirrored categories among
    /// `--category`. `None` when the selection cannot match any row.
    pub async fn resolve(ch: &Ch, selection: &Selection) -> Result<Option<Self>, ChError> {
        ch.require_table(MIRROR_TABLE, MIRROR_HINT).await?;
        let categories: Vec<Category> = MIRRORED
            .into_iter()
            .filter(|c| selection.category_selected(*c))
            .collect();
        if categories.is_empty() {
            return Ok(None);
        }
        let categories = if selection.categories.is_empty() {
            Vec::new()
        } else {
            categories
        };
        let kb_ids = match (selection.kbs.is_empty(), selection.literal_kbs()) {
            (true, _) => Vec::new(),
            (false, Some(literal)) => literal,
            (false, None) => {
                let found = mirrored_kb_ids(ch).await?;
                let chosen: Vec<_> = found
                    .into_iter()
                    .filter(|kb| selection.kb_selected(kb))
                    .collect();
                if chosen.is_empty() {
                    return Ok(None);
                }
                chosen
            }
        };
        Ok(Some(MirrorScope { kb_ids, categories }))
    }

    /// Payload bytes and key count of the rows in scope (for restore's
    /// memory guard, which charges a per-key overhead too).
    pub async fn payload_bytes(&self, ch: &Ch) -> Result<(u64, u64), ChError> {
        let sql = format!(
            "SELECT sum(length(payload)), count() FROM ?.redis_mirror FINAL WHERE {}",
            self.filter()
        );
        self.bind(ch.client().query(&sql).bind(ch.db()))
            .fetch_one::<(u64, u64)>()
            .await
            .map_err(|e| ch.error("sizing the mirror", e))
    }

    /// The WHERE condition; [`Self::bind`] binds its values in order.
    pub(super) fn filter(&self) -> String {
        let mut sql = String::from("1 = 1");
        if !self.kb_ids.is_empty() {
            // Matched as hex: a kb_id is bytes, and a bound string would
            // have to be valid UTF-8.
            sql.push_str(" AND has(?, hex(kb_id))");
        }
        if !self.categories.is_empty() {
            sql.push_str(" AND has(?, category)");
        }
        sql
    }

    pub(super) fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        if !self.kb_ids.is_empty() {
            let kbs: Vec<String> = self.kb_ids.iter().map(|k| hex_upper(k)).collect();
            query = query.bind(kbs);
        }
        if !self.categories.is_empty() {
            let names: Vec<&str> = self.categories.iter().map(|c| c.name()).collect();
            query = query.bind(names);
        }
        query
    }
}

pub(super) const MIRROR_HINT: &str = "run `kbdump mirror` first, or pass the right ?database=";

/// The distinct kb_ids in the mirror table, as bytes.
async fn mirrored_kb_ids(ch: &Ch) -> Result<Vec<Vec<u8>>, ChError> {
    #[derive(Row, Deserialize)]
    struct KbRow {
        #[serde(with = "serde_bytes")]
        kb_id: Vec<u8>,
    }
    let rows = ch
        .client()
        .query("SELECT DISTINCT kb_id FROM ?.redis_mirror ORDER BY kb_id")
        .bind(ch.db())
        .fetch_all::<KbRow>()
        .await
        .map_err(|e| ch.error("listing kb_ids in the mirror", e))?;
    Ok(rows.into_iter().map(|r| r.kb_id).collect())
}

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
