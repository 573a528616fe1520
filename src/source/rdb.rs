//! A physical backup (`dump.rdb`, or any RDB stream) as a record source.
//!
//! [`RdbSource::open`] reads the header and the leading AUX fields (server
//! version, creation time) so that the archive-style [`Header`] describing
//! the file is known before the records; [`RdbSource::read`] then yields
//! every selected key of the selected database, classified by the same
//! attribution rule as a SCAN pass ([`Attributor`]). A file has no index,
//! so it is always read front to back.
//!
//! With no kb_id or category selected, every key of the file comes out:
//! a key of no knowledge base is filed under the prefix before its first
//! `:` (as an archive would file it), or with an empty kb_id when it has
//! none.
//!
//! A key without a category marker may belong to a kb_id that only a
//! later key reveals (see [`crate::kato::attribute`]). For a file,
//! [`RdbSource::kb_ids_in`] finds every kb_id in a first pass (values
//! delimited, not collected) and [`RdbSource::knowing`] then attributes
//! each key as it is read, so memory stays flat; a stream (stdin) cannot
//! be read twice, so such keys are held with their payloads until its
//! end.
//!
//! An error of the reader (a truncated file, an unknown type, a bad
//! checksum) becomes one [`SourceItem::Damaged`] after every key read
//! before it.

use std::collections::HashMap;
use std::io::Read;

use crate::format::archive::{Header, Record, SelectionSpec, SourceInfo};
use crate::format::dump::payload_type_name;
use crate::format::rdb::{self, Checksum, Item, KeyRecord, Magic, RdbError, RdbReader};
use crate::kato::attribute::{Attributed, Attributor, Census, KeyspaceCensus};
use crate::records::SourceItem;
use crate::selection::Selection;

/// `SourceInfo::kind` of a header that describes an RDB file.
pub const RDB_FILE_KIND: &str = "rdb-file";

/// An opened RDB input, header and leading AUX fields read.
pub struct RdbSource {
    name: String,
    reader: RdbReader<Box<dyn Read + Send>>,
    rdb_header: rdb::Header,
    header: Header,
    /// The first item after the leading AUX fields, read to find their end.
    next: Option<Result<Item, RdbError>>,
    db: Option<u64>,
    /// Every kb_id of the file, when a first pass found them (see
    /// [`RdbSource::knowing`]).
    kbs: Option<Vec<Vec<u8>>>,
    /// Every key of the db is counted by group ([`RdbSource::counting`]).
    counting: bool,
    /// Keys whose expiry is at or before this instant are dropped
    /// ([`RdbSource::dropping_expired_at`]).
    expired_at_ms: Option<i64>,
    /// What must follow the RDB ([`RdbSource::ending_with_mark`]).
    end_mark: Option<Vec<u8>>,
}

/// How a read of the file ended.
#[derive(Debug)]
pub struct RdbEnd {
    pub header: Header,
    /// The checksum after the EOF opcode, when the file was read to its end.
    pub checksum: Option<Checksum>,
    /// Keys read (in the selected database), selected or not.
    pub keys_read: u64,
    /// Keys skipped because they belong to another database.
    pub keys_in_other_dbs: u64,
    /// Keys dropped as expired ([`RdbSource::dropping_expired_at`]).
    pub expired: u64,
    /// Every key of the selected db by group, when counted
    /// ([`RdbSource::counting`]); kb_ids named literally count as kb_ids.
    pub census: Option<KeyspaceCensus>,
    /// Why the read ended before the end of the RDB (also emitted as a
    /// [`SourceItem::Damaged`]), or what is wrong after it.
    pub error: Option<String>,
    /// The read stopped because its consumer said so.
    pub stopped: bool,
}

impl RdbSource {
    /// Opens an RDB input named `name`; `db` selects one database (`None`:
    /// every database of the file).
    pub fn open(
        name: String,
        input: Box<dyn Read + Send>,
        db: Option<u64>,
    ) -> Result<RdbSource, RdbError> {
        let mut reader = RdbReader::new(input)?;
        let rdb_header = reader.header();
        let mut aux = HashMap::new();
        let next = loop {
            match reader.next_item() {
                Ok(Some(Item::Aux { key, value })) => {
                    aux.insert(key, value);
                }
                Ok(Some(item)) => break Some(Ok(item)),
                Ok(None) => break None,
                Err(e) => break Some(Err(e)),
            }
        };
        let header = describe(&name, Some(rdb_header), &aux, db);
        Ok(RdbSource {
            name,
            reader,
            rdb_header,
            header,
            next,
            db,
            kbs: None,
            counting: false,
            expired_at_ms: None,
            end_mark: None,
        })
    }

    /// Counts every key of the selected db by group while reading (for
    /// what a selection leaves out, and which kb_ids exist: a stream has
    /// no other way to tell), in [`RdbEnd::census`].
    pub fn counting(mut self) -> Self {
        self.counting = true;
        self
    }

    /// Drops keys whose expiry is at or before `now_ms`, as the server
    /// would no longer return them (a snapshot holds keys that expired but
    /// were not yet removed).
    pub fn dropping_expired_at(mut self, now_ms: i64) -> Self {
        self.expired_at_ms = Some(now_ms);
        self
    }

    /// The RDB is followed by `mark` (a diskless replication transfer):
    /// it is checked after the checksum instead of reporting data after
    /// the RDB, and anything after it is left unread.
    pub fn ending_with_mark(mut self, mark: Vec<u8>) -> Self {
        self.end_mark = Some(mark);
        self
    }

    /// Every kb_id among the keys of `input` (database `db`, or every
    /// one): the prefixes that some key with a category marker proves to
    /// be kb_ids. A first pass over a file that can be read twice, so that
    /// the second needs to hold no key until the end (see
    /// [`RdbSource::knowing`]). Values are delimited, not collected.
    pub fn kb_ids_in(input: impl Read, db: Option<u64>) -> Result<Vec<Vec<u8>>, RdbError> {
        Ok(Self::first_pass(input, db)?.0)
    }

    /// [`RdbSource::kb_ids_in`], and whether AOF commands follow the RDB
    /// (an AOF file with an RDB preamble, to be read as an AOF).
    pub fn first_pass(input: impl Read, db: Option<u64>) -> Result<(Vec<Vec<u8>>, bool), RdbError> {
        let mut attributor = Attributor::new();
        let mut reader = RdbReader::new(input)?.without_payloads();
        while let Some(item) = reader.next_item()? {
            if let Item::Key(k) = item {
                if db.is_none_or(|d| d == k.db) {
                    attributor.push(k.key);
                }
            }
        }
        let (mut rest, inner) = reader.into_parts();
        if rest.len() < 8 {
            let _ = inner.take(8).read_to_end(&mut rest);
        }
        Ok((
            attributor.known_kbs(),
            crate::format::aof::looks_like_commands(&rest),
        ))
    }

    /// Takes `kbs` as the complete list of the file's kb_ids (from
    /// [`RdbSource::kb_ids_in`]): each key is then attributed as it is
    /// read, and memory stays flat whatever the keys.
    pub fn knowing(mut self, kbs: Vec<Vec<u8>>) -> Self {
        self.kbs = Some(kbs);
        self
    }

    /// The input's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file described as an archive header: source file, RDB version,
    /// server version and creation time (AUX `ctime`) when the file has
    /// them.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file's magic and RDB version.
    pub fn rdb_header(&self) -> rdb::Header {
        self.rdb_header
    }

    /// Reads the file, calling `emit` for every selected record and for
    /// the reader's error if there is one; stops early when `emit` returns
    /// false.
    pub fn read(
        mut self,
        selection: &Selection,
        emit: &mut dyn FnMut(SourceItem) -> bool,
    ) -> RdbEnd {
        let mut keys = KeyStage::new(selection, self.kbs.take(), self.counting);
        let mut end = self.decode(&mut |decoded| match decoded {
            Decoded::Key(k) => keys.push(k, emit),
            Decoded::Damaged(item) => emit(item),
        });
        if end.stopped {
            return end;
        }
        end.census = keys.finish(emit);
        end
    }

    /// The first stage of [`RdbSource::read`], on its own so that several
    /// RDB streams (the masters of a cluster) can feed one [`KeyStage`]:
    /// every key of the selected db that has not expired, unattributed, and
    /// the reader's error or what is wrong after the RDB as
    /// [`Decoded::Damaged`]. Stops early when `emit` returns false
    /// ([`RdbEnd::stopped`]). Counts but does not take a census.
    pub fn decode(mut self, emit: &mut dyn FnMut(Decoded) -> bool) -> RdbEnd {
        let mut end = RdbEnd {
            header: self.header.clone(),
            checksum: None,
            keys_read: 0,
            keys_in_other_dbs: 0,
            expired: 0,
            census: None,
            error: None,
            stopped: false,
        };
        let mut next = self.next.take();
        loop {
            let item = match next.take() {
                Some(item) => item,
                None => match self.reader.next_item().transpose() {
                    Some(item) => item,
                    None => break,
                },
            };
            let keep_going = match item {
                Ok(Item::Key(k)) if self.db.is_some_and(|db| db != k.db) => {
                    end.keys_in_other_dbs += 1;
                    true
                }
                Ok(Item::Key(k))
                    if k.expire_at_ms
                        .zip(self.expired_at_ms)
                        .is_some_and(|(at, now)| at <= now) =>
                {
                    end.expired += 1;
                    true
                }
                Ok(Item::Key(k)) => {
                    end.keys_read += 1;
                    emit(Decoded::Key(k))
                }
                Ok(Item::End { checksum }) => {
                    end.checksum = Some(checksum);
                    break;
                }
                Ok(_) => true,
                Err(e) => {
                    end.error = Some(e.to_string());
                    emit(Decoded::Damaged(SourceItem::Damaged {
                        what: format!("RDB file {}", self.name),
                        reason: format!("{e}; every key before it was read"),
                    }));
                    break;
                }
            };
            if !keep_going {
                end.stopped = true;
                return end;
            }
        }
        if end.checksum.is_some() {
            let after = match self.end_mark.take() {
                Some(mark) => missing_end_mark(self.reader, &mark),
                None => trailing_data(self.reader),
            };
            if let Some(reason) = after {
                end.error = Some(reason.clone());
                emit(Decoded::Damaged(SourceItem::Damaged {
                    what: format!("RDB file {}", self.name),
                    reason,
                }));
            }
        }
        end
    }
}

/// What [`RdbSource::decode`] yields.
#[derive(Debug)]
pub enum Decoded {
    /// A key of the selected db, not expired, not yet attributed.
    Key(KeyRecord),
    /// The reader's error, or what is wrong after the RDB.
    Damaged(SourceItem),
}

/// What is wrong with bytes after the RDB's checksum, if there are any: an
/// AOF with an RDB preamble goes on with commands, which this reader does
/// not replay, so its keys may not be the server's last state.
fn trailing_data(reader: RdbReader<Box<dyn Read + Send>>) -> Option<String> {
    let (rest, mut inner) = reader.into_parts();
    let mut probe = [0u8; 1];
    let more = !rest.is_empty() || inner.read(&mut probe).is_ok_and(|n| n > 0);
    more.then(|| {
        "data follows the end of the RDB (an AOF's commands after its RDB preamble?); \
         it was not read, so later changes to these keys are missing"
            .to_string()
    })
}

/// What is wrong with the end mark that must follow the RDB, if anything:
/// the transfer is complete only when it is there.
fn missing_end_mark(reader: RdbReader<Box<dyn Read + Send>>, mark: &[u8]) -> Option<String> {
    let (rest, inner) = reader.into_parts();
    let mut found = Vec::with_capacity(mark.len());
    let mut chained = std::io::Read::chain(&rest[..], inner).take(mark.len() as u64);
    let read = chained.read_to_end(&mut found);
    match read {
        Ok(_) if found == mark => None,
        Ok(_) => Some(format!(
            "the transfer's end mark does not follow the RDB ({} bytes of it found): \
             the snapshot cannot be trusted to be complete",
            found.len()
        )),
        Err(e) => Some(format!("the transfer broke off before its end mark: {e}")),
    }
}

/// The keys of a read on their way to records: counted by group (when
/// asked), attributed by the key catalogue's rule (a kb_id, KATO's global
/// keys, or foreign), selected, and held with their values only while
/// their owner is uncertain (never when every kb_id is known up front).
/// One stage may take the keys of several RDB streams (the masters of a
/// cluster): a kb_id one master's key proves then attributes another's.
pub struct KeyStage<'a> {
    selection: &'a Selection,
    attributor: Attributor,
    census: Option<Census>,
    /// The payload and expiry of keys the attributor holds.
    held: HashMap<Vec<u8>, (Vec<u8>, Option<i64>)>,
}

impl<'a> KeyStage<'a> {
    /// A stage for `selection`; `kbs`, when given, is every kb_id there
    /// is; `counting` takes a census of every key pushed.
    pub fn new(selection: &'a Selection, kbs: Option<Vec<Vec<u8>>>, counting: bool) -> Self {
        let base = match kbs {
            Some(list) => Attributor::knowing(list).complete(),
            None => Attributor::new(),
        };
        // Named kb_ids are known without a marker; keys outside kb_ids
        // are still wanted when the selection takes them (`--global`).
        let attributor = match selection.literal_kbs() {
            Some(kbs) => base.want(selection.wanted(&kbs)),
            None => base,
        };
        let census = counting.then(|| match selection.literal_kbs() {
            Some(literal) => Census::knowing(literal),
            None => Census::new(),
        });
        KeyStage {
            selection,
            attributor,
            census,
            held: HashMap::new(),
        }
    }

    /// Takes one key: emits its record when it is selected and its owner
    /// is known, holds it when its owner is not known yet. False when
    /// `emit` said to stop.
    pub fn push(&mut self, k: KeyRecord, emit: &mut dyn FnMut(SourceItem) -> bool) -> bool {
        if let Some(census) = &mut self.census {
            census.add(k.key.clone());
        }
        let held_before = self.attributor.held();
        match self.attributor.push(k.key.clone()) {
            Some(a) => self.selection_send(a, k.payload, k.expire_at_ms, emit),
            None if self.attributor.held() > held_before => {
                self.held.insert(k.key, (k.payload, k.expire_at_ms));
                true
            }
            // Not wanted, or one of kbdump's temporary keys.
            None => true,
        }
    }

    /// After the last key: emits the held keys that turned out selected,
    /// and returns the census, when taken.
    pub fn finish(mut self, emit: &mut dyn FnMut(SourceItem) -> bool) -> Option<KeyspaceCensus> {
        let census = self.census.take().map(Census::finish);
        let attributor = std::mem::take(&mut self.attributor);
        for a in attributor.finish().attributed {
            let Some((payload, expiry)) = self.held.remove(&a.key) else {
                continue;
            };
            if !self.selection_send(a, payload, expiry, emit) {
                break;
            }
        }
        census
    }

    fn selection_send(
        &self,
        a: Attributed,
        payload: Vec<u8>,
        expiry: Option<i64>,
        emit: &mut dyn FnMut(SourceItem) -> bool,
    ) -> bool {
        if !self.selection.selects(&a.kb_id, a.category, &a.key) {
            return true;
        }
        emit(SourceItem::Record(record(a, payload, expiry)))
    }
}

pub(super) fn record(a: Attributed, payload: Vec<u8>, expire_at_ms: Option<i64>) -> Record {
    Record {
        redis_type: payload_type_name(&payload).to_string(),
        key: a.key,
        kb_id: a.kb_id,
        category: a.category,
        expire_at_ms,
        payload,
    }
}

/// The archive header that describes an RDB file (or an AOF, whose base
/// may have no RDB header).
pub(super) fn describe(
    name: &str,
    rdb_header: Option<rdb::Header>,
    aux: &HashMap<Vec<u8>, Vec<u8>>,
    db: Option<u64>,
) -> Header {
    let text = |k: &[u8]| aux.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let (product, version) = match (text(b"valkey-ver"), text(b"redis-ver")) {
        (Some(v), _) => ("valkey", v),
        (None, Some(v)) if rdb_header.is_none_or(|h| h.magic == Magic::Redis) => ("redis", v),
        // A RESP base says nothing about its server.
        (None, None) if rdb_header.is_none() => ("redis", String::new()),
        (None, v) => ("valkey", v.unwrap_or_default()),
    };
    let created_at_ms = text(b"ctime")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .map_or(0, |s| s.saturating_mul(1000));
    let info = SourceInfo {
        kind: RDB_FILE_KIND.to_string(),
        address: name.to_string(),
        product: product.to_string(),
        version,
        rdb_version: rdb_header.map(|h| h.version),
        mode: "standalone".to_string(),
        db: db.map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX)),
        masters: Vec::new(),
    };
    Header::new(info, SelectionSpec::default(), created_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dump::seal;
    use crate::kato::Category;
    use crate::pattern::Glob;

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    /// A Redis 11 file: ctime aux, db 0 with the given string keys, db 1
    /// with one key, EOF and a zero checksum.
    fn file(keys: &[&[u8]]) -> Vec<u8> {
        let mut f = b"REDIS0011".to_vec();
        f.push(0xfa);
        string(&mut f, b"redis-ver");
        string(&mut f, b"7.2.4");
        f.extend_from_slice(&[0xfa, 5]);
        f.extend_from_slice(b"ctime");
        f.extend_from_slice(&[0xc2]);
        f.extend_from_slice(&1_700_000_000i32.to_le_bytes());
        f.extend_from_slice(&[0xfe, 0]);
        for k in keys {
            f.push(0);
            string(&mut f, k);
            string(&mut f, b"v");
        }
        f.extend_from_slice(&[0xfe, 1, 0]);
        string(&mut f, b"other-db");
        string(&mut f, b"v");
        f.push(0xff);
        f.extend_from_slice(&[0; 8]);
        f
    }

    fn read(bytes: Vec<u8>, selection: &Selection, db: Option<u64>) -> (Vec<Record>, RdbEnd) {
        let source =
            RdbSource::open("dump.rdb".into(), Box::new(std::io::Cursor::new(bytes)), db).unwrap();
        let mut out = Vec::new();
        let end = source.read(selection, &mut |item| {
            match item {
                SourceItem::Record(r) => out.push(r),
                other => panic!("{other:?}"),
            }
            true
        });
        (out, end)
    }

    #[test]
    fn the_header_describes_the_file() {
        let source = RdbSource::open(
            "dump.rdb".into(),
            Box::new(std::io::Cursor::new(file(&[]))),
            Some(0),
        )
        .unwrap();
        let info = &source.header().source;
        assert_eq!(info.kind, RDB_FILE_KIND);
        assert_eq!(info.address, "dump.rdb");
        assert_eq!(
            (info.product.as_str(), info.version.as_str()),
            ("redis", "7.2.4")
        );
        assert_eq!(info.rdb_version, Some(11));
        assert_eq!(source.header().created_at_ms, 1_700_000_000_000);
    }

    #[test]
    fn nothing_selected_yields_every_key_of_the_db_classified() {
        let keys: [&[u8]; 4] = [b"kb1:emotives:x", b"kb1:plain", b"cache:user", b"nocolon"];
        let (records, end) = read(file(&keys), &Selection::default(), Some(0));
        let mut got: Vec<_> = records
            .iter()
            .map(|r| (r.key.clone(), r.kb_id.clone(), r.category))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (b"cache:user".to_vec(), b"".to_vec(), Category::Foreign),
                (
                    b"kb1:emotives:x".to_vec(),
                    b"kb1".to_vec(),
                    Category::Emotives
                ),
                (b"kb1:plain".to_vec(), b"kb1".to_vec(), Category::Other),
                (b"nocolon".to_vec(), b"".to_vec(), Category::Foreign),
            ]
        );
        assert_eq!((end.keys_read, end.keys_in_other_dbs), (4, 1));
        assert_eq!(end.checksum, Some(Checksum::Disabled));
        assert_eq!(records[0].payload, seal(0, b"\x01v", 11));
        assert_eq!(records[0].redis_type, "string");
        let (all_dbs, _) = read(file(&keys), &Selection::default(), None);
        assert_eq!(all_dbs.len(), 5);
    }

    #[test]
    fn a_kb_and_category_selection_narrows() {
        let keys: [&[u8]; 3] = [b"kb1:emotives:x", b"kb2:emotives:y", b"kb1:symbols:z"];
        let selection = Selection {
            kbs: vec![Glob::new(b"kb1".to_vec())],
            categories: vec![Category::Emotives],
            ..Selection::default()
        };
        let (records, _) = read(file(&keys), &selection, Some(0));
        let got: Vec<_> = records.iter().map(|r| r.key.clone()).collect();
        assert_eq!(got, vec![b"kb1:emotives:x".to_vec()]);
    }

    /// Every item a read of `bytes` (db 0, nothing selected) yields.
    fn all_items(bytes: Vec<u8>) -> Vec<SourceItem> {
        let input = Box::new(std::io::Cursor::new(bytes));
        let source = RdbSource::open("dump.rdb".into(), input, Some(0)).unwrap();
        let mut items = Vec::new();
        source.read(&Selection::default(), &mut |item| {
            items.push(item);
            true
        });
        items
    }

    #[test]
    fn a_first_pass_attributes_like_holding_until_the_end() {
        // The unmarked key comes before the key that proves `a:b` a kb_id.
        let keys: [&[u8]; 3] = [b"a:b:plain", b"a:b:emotives:x", b"a:other"];
        let bytes = file(&keys);
        let kbs = RdbSource::kb_ids_in(&bytes[..], Some(0)).unwrap();
        assert_eq!(kbs, vec![b"a:b".to_vec()]);
        let by_key = |mut v: Vec<Record>| {
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v
        };
        let held = by_key(read(bytes.clone(), &Selection::default(), Some(0)).0);
        let input = Box::new(std::io::Cursor::new(bytes));
        let known = RdbSource::open("dump.rdb".into(), input, Some(0))
            .unwrap()
            .knowing(kbs);
        let mut streamed = Vec::new();
        known.read(&Selection::default(), &mut |item| {
            if let SourceItem::Record(r) = item {
                streamed.push(r);
            }
            true
        });
        let streamed = by_key(streamed);
        assert_eq!(held, streamed);
        assert_eq!(streamed[0].key, b"a:b:emotives:x");
        assert_eq!(streamed[1].kb_id, b"a:b", "a:b:plain belongs to a:b");
        assert_eq!(streamed[2].kb_id, b"", "a:other to no known kb_id");
        assert_eq!(streamed[2].category, Category::Foreign);
    }

    #[test]
    fn data_after_the_rdb_is_reported_not_ignored() {
        let mut bytes = file(&[b"kb1:emotives:x"]);
        bytes.extend_from_slice(b"*2\r\n$3\r\nDEL\r\n$14\r\nkb1:emotives:x\r\n");
        let items = all_items(bytes);
        assert!(matches!(items.first(), Some(SourceItem::Record(_))));
        assert!(
            matches!(items.last(), Some(SourceItem::Damaged { reason, .. }) if reason.contains("AOF"))
        );
    }

    #[test]
    fn a_truncated_file_yields_its_keys_then_the_damage() {
        let mut bytes = file(&[b"kb1:emotives:x", b"kb1:emotives:y"]);
        bytes.truncate(bytes.len() - 20);
        let items = all_items(bytes);
        assert!(
            matches!(items.last(), Some(SourceItem::Damaged { reason, .. }) if reason.contains("truncated"))
        );
        assert!(
            items
                .iter()
                .filter(|i| matches!(i, SourceItem::Record(_)))
                .count()
                >= 1
        );
    }
}
