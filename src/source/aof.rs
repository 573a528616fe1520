//! An append-only file as a record source: a Redis 7+ AOF directory (its
//! manifest, a base that is an RDB file or RESP commands, incremental
//! parts) or a single AOF file (RESP commands, after an RDB preamble or
//! not), recognised by content.
//!
//! [`AofSource::read`] makes two passes over the parts. The first only
//! learns the key names (which kb_ids exist, so that every key is
//! attributed as a SCAN pass would attribute it); the second feeds the
//! base's keys and every command to [`Replay`], which keeps the selected
//! keys only. Memory is therefore bounded by the selection: the selected
//! keys with their values, held until the last command, plus one command.
//!
//! The end of the input is judged as the server's loader judges it: a
//! last command cut short is reported and every command before it used
//! (what `redis-check-aof --fix` keeps), and so is a `MULTI` the input ends
//! inside (its commands are dropped). Damage anywhere else (a corrupt
//! command, a damaged base, a part cut short that is not the last) is an
//! error naming the file and byte offset, and no key is yielded: the keys'
//! state after it is unknown. [`AofSource::salvaging`] yields the keys as
//! they were just before the damage instead.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::rdb::{describe, record};
use crate::format::aof::{
    self, manifest, AofError, CommandReader, FinalKey, Replay, PLAIN_RDB_VERSION,
};
use crate::format::archive::Header;
use crate::format::rdb::{self, looks_like_rdb, Item, RdbError, RdbReader};
use crate::kato::attribute::{Attributed, Attributor};
use crate::kato::display_bytes;
use crate::records::SourceItem;
use crate::selection::Selection;

/// `SourceInfo::kind` of a header that describes an AOF.
pub const AOF_KIND: &str = "aof";

/// Read-ahead per part.
const PART_BUFFER: usize = 1 << 20;

/// At most this many notes about keyless commands are reported one by one.
const MAX_NOTES: usize = 20;

/// An opened AOF: its parts listed, its header known.
pub struct AofSource {
    name: String,
    parts: Vec<PartFile>,
    header: Header,
    db: Option<u64>,
    salvage: bool,
    now_ms: i64,
}

/// One file of the AOF, in replay order.
#[derive(Debug, Clone)]
struct PartFile {
    /// The name in messages: the file name inside the directory.
    name: String,
    path: PathBuf,
}

/// Why an AOF could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AofOpenError {
    #[error("cannot read {name}: {cause}")]
    Io { name: String, cause: io::Error },
    #[error("{name}: {cause}")]
    Manifest { name: String, cause: AofError },
    #[error("{0}: a directory without an AOF manifest (*.manifest); name an AOF directory (appendonlydir), an AOF or RDB file, or a .kbd archive")]
    NoManifest(String),
    #[error("{name}: more than one manifest ({list}); keep the one the server uses")]
    Manifests { name: String, list: String },
    #[error("{name}: {cause}")]
    Rdb { name: String, cause: RdbError },
}

/// How a read ended.
#[derive(Debug)]
pub struct AofEnd {
    pub header: Header,
    /// Every part was read up to its end, or up to a cut last command
    /// (reported). False when damage stopped the read.
    pub complete: bool,
    /// Selected keys at the end.
    pub keys: u64,
}

/// Whether a directory is an AOF directory (it holds a `*.manifest`).
pub fn is_aof_dir(path: &Path) -> bool {
    path.is_dir() && manifests(path).is_ok_and(|m| !m.is_empty())
}

fn manifests(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "manifest") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

impl AofSource {
    /// Opens an AOF directory (by its manifest) or a single AOF file;
    /// `db` selects one database (`None`: every one).
    pub fn open(path: &Path, db: Option<u64>) -> Result<AofSource, AofOpenError> {
        let name = path.display().to_string();
        let parts = if path.is_dir() {
            dir_parts(path, &name)?
        } else {
            let file = path
                .file_name()
                .map_or(name.clone(), |f| f.to_string_lossy().into());
            vec![PartFile {
                name: file,
                path: path.to_path_buf(),
            }]
        };
        let header = describe_parts(&name, &parts, db)?;
        Ok(AofSource {
            name,
            parts,
            header,
            db,
            salvage: false,
            now_ms: crate::clock::Clock::system().now_ms(),
        })
    }

    /// On damage in the middle, yields the keys as they were just before
    /// it instead of none.
    pub fn salvaging(mut self, salvage: bool) -> Self {
        self.salvage = salvage;
        self
    }

    /// Relative expiries in the commands count from `now_ms` (default:
    /// when the source was opened, as a server loading the AOF would).
    pub fn at(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// The input's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AOF described as an archive header: the input, and the base's
    /// RDB version, server version and creation time when it has them.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads every part, replaying the commands for the selected keys,
    /// and calls `emit` for every selected key at the end and for what was
    /// damaged; stops early when `emit` returns false.
    pub fn read(self, selection: &Selection, emit: &mut dyn FnMut(SourceItem) -> bool) -> AofEnd {
        let kbs = self.learn_kb_ids();
        let db = self.db;
        let mut attributor = attributor_for(&kbs, selection);
        let wants = move |d: u64, key: &[u8]| {
            db.is_none_or(|x| x == d)
                && attributor
                    .push(key.to_vec())
                    .is_some_and(|a| selection.selects(&a.kb_id, a.category, &a.key))
        };
        let mut replay = Replay::new(Box::new(wants), self.now_ms, PLAIN_RDB_VERSION);
        let stop = self.replay_parts(&mut replay);
        let finished = replay.finish();
        let mut end = AofEnd {
            header: self.header.clone(),
            complete: stop.is_none(),
            keys: 0,
        };
        let what = format!("AOF {}", self.name);
        if let Some(stop) = stop {
            let keeps = stop.truncation || self.salvage;
            let reason = match (stop.truncation, self.salvage) {
                (true, _) => format!("{}; every command before it was used (what redis-check-aof --fix keeps)", stop.reason),
                (false, true) => format!("{}; --salvage: the keys as they were before it", stop.reason),
                (false, false) => format!(
                    "{}; nothing was read, as the keys' state after it is unknown \
                     (--salvage keeps the keys as they were before it; redis-check-aof shows the damage)",
                    stop.reason
                ),
            };
            end.complete = stop.truncation;
            if !emit(SourceItem::Damaged {
                what: what.clone(),
                reason,
            }) || !keeps
            {
                return end;
            }
        }
        if let Some((offset, queued)) = finished.open_multi {
            let reason = format!(
                "the input ends inside a MULTI at byte {offset} ({queued} queued commands): \
                 dropped, as the server drops an unfinished transaction"
            );
            if !emit(SourceItem::Damaged {
                what: what.clone(),
                reason,
            }) {
                return end;
            }
        }
        if !self.notes(&finished.notes, &what, emit) {
            return end;
        }
        let mut attributor = attributor_for(&kbs, selection);
        for key in finished.keys {
            let Some(a) = attributor.push(key.key.clone()) else {
                continue;
            };
            end.keys += 1;
            if !emit(final_item(a, key)) {
                break;
            }
        }
        end
    }

    fn notes(
        &self,
        notes: &[String],
        what: &str,
        emit: &mut dyn FnMut(SourceItem) -> bool,
    ) -> bool {
        for note in notes.iter().take(MAX_NOTES) {
            let item = SourceItem::Damaged {
                what: what.to_string(),
                reason: format!("{note} (it names no key; the keys may differ from the server's)"),
            };
            if !emit(item) {
                return false;
            }
        }
        if notes.len() > MAX_NOTES {
            let reason = format!(
                "{} more commands without a key were not replayed",
                notes.len() - MAX_NOTES
            );
            return emit(SourceItem::Damaged {
                what: what.to_string(),
                reason,
            });
        }
        true
    }

    /// The first pass: every kb_id among the keys of the parts (base keys
    /// and the keys commands name). Damage is left to the second pass.
    fn learn_kb_ids(&self) -> Vec<Vec<u8>> {
        let mut attributor = Attributor::new();
        let db = self.db;
        let mut select = 0u64;
        for part in &self.parts {
            let _ = read_part(part, true, &mut |event| match event {
                Event::Key(k) if db.is_none_or(|d| d == k.db) => {
                    attributor.push(k.key);
                }
                Event::Key(_) | Event::RdbVersion(_) => {}
                Event::Command(cmd) => {
                    if cmd.name() == b"SELECT" {
                        select = cmd
                            .args
                            .get(1)
                            .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
                            .unwrap_or(select);
                    } else if db.is_none_or(|d| d == select) {
                        for key in aof::keys_of(&cmd.args) {
                            attributor.push(key.to_vec());
                        }
                    }
                }
            });
        }
        attributor.known_kbs()
    }

    /// The second pass; `Some` when damage stopped it.
    fn replay_parts(&self, replay: &mut Replay<'_>) -> Option<Stop> {
        let last = self.parts.len().saturating_sub(1);
        for (i, part) in self.parts.iter().enumerate() {
            let result = read_part(part, false, &mut |event| match event {
                Event::RdbVersion(v) => replay.set_rdb_version(v),
                Event::Key(k) => replay.base_key(k.db, k.key, k.payload, k.expire_at_ms),
                Event::Command(cmd) => replay.command(cmd, &part.name),
            });
            if let Err(e) = result {
                let truncation = i == last && e.is_truncation();
                return Some(Stop {
                    reason: format!("{}: {}", part.name, e.message()),
                    truncation,
                });
            }
        }
        None
    }
}

struct Stop {
    reason: String,
    /// Only the last command of the last part was cut short.
    truncation: bool,
}

fn attributor_for(kbs: &[Vec<u8>], selection: &Selection) -> Attributor {
    let base = Attributor::knowing(kbs).complete();
    match selection.literal_kbs() {
        Some(wanted) => base.wanting(wanted),
        None => base,
    }
}

fn final_item(a: Attributed, key: FinalKey) -> SourceItem {
    match key.outcome {
        Ok((payload, expiry)) => SourceItem::Record(record(a, payload, expiry)),
        Err(why) => SourceItem::Damaged {
            what: format!("key {} (db {})", display_bytes(&key.key), key.db),
            reason: format!("{why}; the key is left out"),
        },
    }
}

fn dir_parts(dir: &Path, name: &str) -> Result<Vec<PartFile>, AofOpenError> {
    let io_error = |cause| AofOpenError::Io {
        name: name.to_string(),
        cause,
    };
    let found = manifests(dir).map_err(io_error)?;
    let manifest_path = match found.as_slice() {
        [] => return Err(AofOpenError::NoManifest(name.to_string())),
        [one] => one.clone(),
        many => {
            let list = many
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AofOpenError::Manifests {
                name: name.to_string(),
                list,
            });
        }
    };
    let manifest_name = manifest_path.display().to_string();
    let mut text = String::new();
    File::open(&manifest_path)
        .and_then(|f| f.take(16 << 20).read_to_string(&mut text))
        .map_err(|cause| AofOpenError::Io {
            name: manifest_name.clone(),
            cause,
        })?;
    let parts = manifest::parse(&text).map_err(|cause| AofOpenError::Manifest {
        name: manifest_name,
        cause,
    })?;
    Ok(parts
        .into_iter()
        .map(|p| PartFile {
            path: dir.join(&p.file),
            name: p.file,
        })
        .collect())
}

/// The header: the base's RDB header and AUX fields when the first part
/// starts with an RDB preamble.
fn describe_parts(name: &str, parts: &[PartFile], db: Option<u64>) -> Result<Header, AofOpenError> {
    let first = parts
        .first()
        .ok_or_else(|| AofOpenError::NoManifest(name.to_string()))?;
    let mut input = open_part(first).map_err(|cause| AofOpenError::Io {
        name: first.name.clone(),
        cause,
    })?;
    let rdb_err = |cause| AofOpenError::Rdb {
        name: first.name.clone(),
        cause,
    };
    let mut aux = std::collections::HashMap::new();
    let rdb_header = if looks_like_rdb(io::BufRead::fill_buf(&mut input).unwrap_or(&[])) {
        let mut reader = RdbReader::new(input).map_err(rdb_err)?;
        while let Ok(Some(Item::Aux { key, value })) = reader.next_item() {
            aux.insert(key, value);
        }
        Some(reader.header())
    } else {
        None
    };
    let mut header = describe(name, rdb_header, &aux, db);
    header.source.kind = AOF_KIND.to_string();
    Ok(header)
}

fn open_part(part: &PartFile) -> io::Result<BufReader<File>> {
    Ok(BufReader::with_capacity(
        PART_BUFFER,
        File::open(&part.path)?,
    ))
}

/// What a part yields, in order.
enum Event {
    /// The part starts with an RDB of this version.
    RdbVersion(u16),
    Key(rdb::KeyRecord),
    Command(aof::Command),
}

/// Why a part could not be read to its end.
enum PartError {
    Open(io::Error),
    Rdb(RdbError),
    Aof(AofError),
    NotAof(String),
}

impl PartError {
    fn is_truncation(&self) -> bool {
        matches!(self, PartError::Aof(e) if e.is_truncation())
    }

    fn message(&self) -> String {
        match self {
            PartError::Open(e) => format!("cannot be read: {e}"),
            PartError::Rdb(e) => format!("its RDB preamble: {e}"),
            PartError::Aof(e) => e.to_string(),
            PartError::NotAof(head) => {
                format!("neither an RDB file nor AOF commands: it starts with {head:?}")
            }
        }
    }
}

/// Reads one part: an RDB preamble if there is one, then commands.
/// `names_only`: keys come without their payloads (the first pass).
fn read_part(
    part: &PartFile,
    names_only: bool,
    on: &mut dyn FnMut(Event),
) -> Result<(), PartError> {
    let mut input = open_part(part).map_err(PartError::Open)?;
    let head = io::BufRead::fill_buf(&mut input)
        .map_err(PartError::Open)?
        .to_vec();
    if head.is_empty() {
        return Ok(());
    }
    if !looks_like_rdb(&head) {
        if !aof::looks_like_commands(&head) {
            let shown = String::from_utf8_lossy(&head[..head.len().min(16)]).into_owned();
            return Err(PartError::NotAof(shown));
        }
        return read_commands(CommandReader::new(input, 0), on);
    }
    let mut reader = RdbReader::new(input).map_err(PartError::Rdb)?;
    if names_only {
        reader = reader.without_payloads();
    }
    on(Event::RdbVersion(reader.header().version));
    loop {
        match reader.next_item().map_err(PartError::Rdb)? {
            Some(Item::Key(k)) => on(Event::Key(k)),
            Some(Item::End { .. }) | None => break,
            Some(_) => {}
        }
    }
    let offset = reader.offset();
    let (rest, inner) = reader.into_parts();
    read_commands(
        CommandReader::<BufReader<File>>::with_prefix(rest, inner, offset),
        on,
    )
}

fn read_commands(
    mut reader: CommandReader<impl Read>,
    on: &mut dyn FnMut(Event),
) -> Result<(), PartError> {
    while let Some(cmd) = reader.next_command().map_err(PartError::Aof)? {
        on(Event::Command(cmd));
    }
    Ok(())
}
