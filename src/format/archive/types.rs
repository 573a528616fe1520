//! The MessagePack structures inside frames. All are encoded as maps with
//! named fields, so a later v1 writer may add fields that this reader skips
//! (see the versioning rules in docs/FORMAT.md).

use serde::{Deserialize, Serialize};

use crate::kato::{Category, CategoryName};

/// The header frame: what the archive is and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u16,
    /// `kbdump <version>` of the writer.
    pub tool: String,
    /// Unix milliseconds when the export started.
    pub created_at_ms: i64,
    pub source: SourceInfo,
    pub selection: SelectionSpec,
    /// Unix ms of the server's snapshot when every record is the state of
    /// one instant (an export from the replication stream); absent for a
    /// SCAN export, whose keys are each read at some instant of their
    /// kb_id's window. Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at_ms: Option<i64>,
    /// The snapshot of each master of a cluster (an export from their
    /// replication streams): each record is the state of its master's
    /// instant, but the instants of different masters differ, so the
    /// archive is point-in-time per shard, not across shards
    /// (`snapshot_at_ms` is then absent). Written only when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardSnapshot>,
}

/// One master's snapshot in a cluster archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSnapshot {
    /// `host:port` of the master.
    pub master: String,
    /// Unix ms of its snapshot (as `snapshot_at_ms` for one server).
    pub snapshot_at_ms: i64,
}

impl Header {
    /// A header of the current format version, written by this kbdump.
    pub fn new(source: SourceInfo, selection: SelectionSpec, created_at_ms: i64) -> Header {
        Header {
            format_version: crate::format::archive::FORMAT_VERSION,
            tool: format!("kbdump {}", env!("CARGO_PKG_VERSION")),
            created_at_ms,
            source,
            selection,
            snapshot_at_ms: None,
            shards: Vec::new(),
        }
    }
}

/// The server the data came from. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `redis-server`, `rdb-file`, `clickhouse-mirror`, …
    pub kind: String,
    /// `host:port` (or file name), without user or password.
    pub address: String,
    /// `redis` or `valkey`.
    pub product: String,
    pub version: String,
    /// RDB version of the DUMP payloads, as predicted from the server version
    /// (each block also lists the versions it actually holds).
    pub rdb_version: Option<u16>,
    /// `standalone` or `cluster`.
    pub mode: String,
    pub db: u32,
    /// The masters of a cluster (`host:port`, sorted) when the read began;
    /// absent for one server and in archives written before clusters were
    /// read. Each master is scanned on its own, so the keys of different
    /// masters were not read at one instant: a cluster archive is not a
    /// point-in-time copy across shards (nor is one of a single server:
    /// see the windows of the index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<String>,
}

/// The selection the archive was made with, as the user gave it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelectionSpec {
    /// kb_ids or globs. With `kbs` empty and neither `global` nor
    /// `foreign`, every key of the db was selected (in archives written
    /// before the groups existed: every kb_id found).
    #[serde(with = "serde_bytes_vec")]
    pub kbs: Vec<Vec<u8>>,
    /// `--global`: KATO's global keys. Written only when set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// `--foreign`: keys that are not KATO's. Written only when set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub foreign: bool,
    pub categories: Vec<Category>,
    #[serde(with = "serde_bytes_vec")]
    pub matches: Vec<Vec<u8>>,
}

/// One key as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub kb_id: Vec<u8>,
    pub category: Category,
    /// Redis type name (`string`, `hash`, …) derived from the payload.
    pub redis_type: String,
    /// Absolute expiry in unix milliseconds, `None` for a persistent key.
    pub expire_at_ms: Option<i64>,
    /// The DUMP payload exactly as the server returned it.
    pub payload: Vec<u8>,
}

/// The type of an [absent](Record::absent) record: what Redis' TYPE says
/// of a key that does not exist.
pub const ABSENT_TYPE: &str = "none";

impl Record {
    /// A record saying that `key` did not exist: an undo archive holds one
    /// for every key its replace created, and restoring it in replace mode
    /// deletes the key. Its type is [`ABSENT_TYPE`] and its payload empty
    /// (a DUMP payload never is), so the two cannot be confused.
    pub fn absent(key: Vec<u8>, kb_id: Vec<u8>, category: Category) -> Record {
        Record {
            key,
            kb_id,
            category,
            redis_type: ABSENT_TYPE.to_string(),
            expire_at_ms: None,
            payload: Vec::new(),
        }
    }

    /// Whether this is an [absent](Record::absent) record.
    pub fn is_absent(&self) -> bool {
        self.redis_type == ABSENT_TYPE && self.payload.is_empty()
    }
}

/// How a record is stored inside a block (kb_id and category live in the
/// block's metadata, once).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RecordWire<'a> {
    #[serde(with = "serde_bytes", borrow)]
    pub key: std::borrow::Cow<'a, [u8]>,
    #[serde(rename = "type")]
    pub redis_type: std::borrow::Cow<'a, str>,
    pub expire_at_ms: Option<i64>,
    #[serde(with = "serde_bytes", borrow)]
    pub payload: std::borrow::Cow<'a, [u8]>,
    /// The explicit marker of an absent record, written only when true
    /// (readers before it see a record of type `none` with an empty
    /// payload, which they cannot restore and report as undecodable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub absent: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Uncompressed metadata at the start of a block frame.
///
/// The category is stored as its name. A name this build does not know (a
/// newer writer's category) reads as [`Category::Other`]; [`Block`] and
/// [`IndexEntry`] keep the name (`category_name()`).
///
/// [`Block`]: super::Block
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "BlockMetaWire")]
pub struct BlockMeta {
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    pub category: Category,
    /// Number of records in the block.
    pub records: u64,
    /// Sum of the DUMP payload sizes.
    pub payload_bytes: u64,
    /// Size of the decompressed record stream.
    pub raw_len: u64,
    /// Distinct RDB versions among the payloads.
    pub rdb_versions: Vec<u16>,
    /// Distinct payload type bytes among the payloads.
    pub type_bytes: Vec<u8>,
}

/// [`BlockMeta`] as read, with the category's name as stored.
#[derive(Deserialize)]
pub(crate) struct BlockMetaWire {
    #[serde(with = "serde_bytes")]
    kb_id: Vec<u8>,
    category: CategoryName,
    records: u64,
    payload_bytes: u64,
    raw_len: u64,
    rdb_versions: Vec<u16>,
    type_bytes: Vec<u8>,
}

impl BlockMetaWire {
    /// The metadata, and the category name when it is not in the catalogue.
    pub(crate) fn split(self) -> (BlockMeta, Option<String>) {
        let meta = BlockMeta {
            kb_id: self.kb_id,
            category: self.category.category(),
            records: self.records,
            payload_bytes: self.payload_bytes,
            raw_len: self.raw_len,
            rdb_versions: self.rdb_versions,
            type_bytes: self.type_bytes,
        };
        (meta, self.category.into_unknown())
    }
}

impl From<BlockMetaWire> for BlockMeta {
    fn from(wire: BlockMetaWire) -> BlockMeta {
        wire.split().0
    }
}

/// One block as listed in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "IndexEntryWire")]
pub struct IndexEntry {
    /// Offset of the block frame from the start of the archive.
    pub offset: u64,
    /// Frame length including its 9-byte header.
    pub len: u64,
    #[serde(flatten)]
    pub meta: BlockMeta,
    /// The stored category name when this build does not know it (then
    /// `meta.category` is [`Category::Other`]).
    #[serde(skip)]
    unknown_category: Option<String>,
}

impl IndexEntry {
    pub fn new(offset: u64, len: u64, meta: BlockMeta) -> IndexEntry {
        IndexEntry {
            offset,
            len,
            meta,
            unknown_category: None,
        }
    }

    /// The category's name as stored: `meta.category`'s, or a name this
    /// build does not know (read as [`Category::Other`]).
    pub fn category_name(&self) -> &str {
        self.unknown_category
            .as_deref()
            .unwrap_or(self.meta.category.name())
    }
}

#[derive(Deserialize)]
struct IndexEntryWire {
    offset: u64,
    len: u64,
    #[serde(flatten)]
    meta: BlockMetaWire,
}

impl From<IndexEntryWire> for IndexEntry {
    fn from(wire: IndexEntryWire) -> IndexEntry {
        let (meta, unknown_category) = wire.meta.split();
        IndexEntry {
            offset: wire.offset,
            len: wire.len,
            meta,
            unknown_category,
        }
    }
}

/// The SCAN window and counters of one kb_id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KbWindow {
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    /// Unix ms when the SCAN of this kb_id started and finished: the archive
    /// holds each key as it was at some instant inside this window.
    pub scan_started_ms: i64,
    pub scan_finished_ms: i64,
    pub keys: u64,
    /// Keys SCAN returned that were gone by the time they were DUMPed.
    pub vanished: u64,
    /// Repeats that SCAN returned and the export dropped.
    pub duplicates: u64,
}

/// The index frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Index {
    pub blocks: Vec<IndexEntry>,
    pub kbs: Vec<KbWindow>,
}

/// `Vec<Vec<u8>>` as a MessagePack array of `bin`.
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let wrapped: Vec<&serde_bytes::Bytes> =
            v.iter().map(|b| serde_bytes::Bytes::new(b)).collect();
        wrapped.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v: Vec<serde_bytes::ByteBuf> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
    }
}
