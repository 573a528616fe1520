//! Before a restore or a copy writes anything: what on the target it would
//! touch. Nothing here writes; the command asks for confirmation (or
//! `--yes`) and prints warnings from these facts.
//!
//! - [`existing_keys`]: how many selected keys the target already holds,
//!   counted by the restore engine's own dry run (its `EXISTS` path) in
//!   missing mode over a second read of the source: renames and passed
//!   expiries count exactly as the real run will see them.
//! - [`dbsize`]: the conservative bound where the source cannot be read
//!   twice (a pipe) or reading it twice would load a production server
//!   again (a live source).
//! - [`rename_targets`]: kb_ids that `--rename-kb` writes into and that
//!   already hold keys.
//! - [`same_origin`] and [`overlaps`]: whether an archive came from this
//!   very server and db, and whether the selection puts keys back where
//!   they came from.

use std::collections::BTreeSet;

use tokio::sync::mpsc::Receiver;

use crate::format::archive::{BlockMeta, Header};
use crate::net::redis::{RedisConn, RedisIoError};
use crate::progress::NoProgress;
use crate::records::SourceItem;
use crate::selection::Selection;
use crate::sink::redis::{restore, KbOccupancy, Mode, RestoreError, RestoreOptions, Target};

/// The selected keys of `items` that `target` already holds (see the
/// module comment).
pub async fn existing_keys(
    target: &Target,
    items: Receiver<SourceItem>,
    options: &RestoreOptions,
) -> Result<u64, RestoreError> {
    let probe = RestoreOptions {
        mode: Mode::Missing,
        dry_run: true,
        memory_budget: None,
        ..options.clone()
    };
    let summary = restore(target, items, &probe, None, &NoProgress).await?;
    Ok(summary.total().kept)
}

/// The number of keys in the target's db.
pub async fn dbsize(conn: &RedisConn) -> Result<u64, RedisIoError> {
    conn.clone().query(redis::cmd("DBSIZE"), "DBSIZE").await
}

/// The `--rename-kb` destinations that already hold keys on the target,
/// with their key counts (one SCAN of the db's key names).
pub async fn rename_targets(
    conn: &RedisConn,
    renames: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<KbOccupancy>, RedisIoError> {
    let mut occupied = Vec::new();
    let destinations: Vec<Vec<u8>> = renames
        .iter()
        .map(|(_, to)| to.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if destinations.is_empty() {
        return Ok(occupied);
    }
    // One census of the db: a kb_id's keys include those outside its
    // prefix (its `stm:events:{kb}` stream).
    let census = conn.clone().census(&destinations).await?;
    for to in destinations {
        let keys: u64 = census.kbs.get(&to).map_or(0, |c| c.values().sum());
        if keys > 0 {
            occupied.push(KbOccupancy {
                kb_id: to,
                existing_keys: keys,
            });
        }
    }
    Ok(occupied)
}

/// Whether the archive was exported from `target`'s own server and db
/// (undo archives, which always are, excepted: putting them back is
/// their purpose).
pub fn same_origin(header: &Header, target: &RedisConn) -> bool {
    header.source.kind != "undo"
        && header.source.address == target.address()
        && i64::from(header.source.db) == target.db()
}

/// Whether the selection takes keys of any archived block back under their
/// own kb_id (not renamed away).
pub fn overlaps<'a>(
    blocks: impl IntoIterator<Item = &'a BlockMeta>,
    selection: &Selection,
    renames: &[(Vec<u8>, Vec<u8>)],
) -> bool {
    blocks.into_iter().any(|block| {
        block.records > 0
            && selection.block_selected(&block.kb_id, block.category)
            && !renames.iter().any(|(from, _)| *from == block.kb_id)
    })
}
