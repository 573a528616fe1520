//! Stream bodies (§2.13): types 15 (Redis ≤ 6.2), 19 (Redis 7.0) and 21
//! (Redis ≥ 7.2, Valkey), with their consumer groups, PELs and consumers.

use super::error::{DecodeError, Result};
use super::listpack::{self, Elem};
use super::reader::Reader;
use super::value::{Consumer, PendingEntry, Stream, StreamEntry, StreamGroup, StreamId};

/// Smallest encodings, used to bound counts by the remaining input.
const MIN_NODE: usize = 2;
const MIN_GROUP: usize = 5;
const MIN_PEL_ENTRY: usize = 25;
const MIN_CONSUMER: usize = 10;
const RAW_ID: usize = 16;

/// Decode a stream body of type `t` (15, 19 or 21).
pub fn decode(r: &mut Reader, t: u8) -> Result<Stream> {
    let mut s = Stream {
        entries: nodes(r)?,
        length: r.length("stream length")?,
        last_id: id(r, "stream last id")?,
        ..Stream::default()
    };
    if t >= 19 {
        s.first_id = Some(id(r, "stream first id")?);
        s.max_deleted_id = Some(id(r, "stream max deleted id")?);
        s.entries_added = Some(r.length("stream entries added")?);
    }
    if s.entries.len() as u64 != s.length {
        return Err(DecodeError::corrupt(
            format!(
                "stream: length says {}, nodes hold {} live entries",
                s.length,
                s.entries.len()
            ),
            r.offset(),
        ));
    }
    let n = r.count("stream group count", MIN_GROUP)?;
    s.groups = (0..n).map(|_| group(r, t)).collect::<Result<_>>()?;
    Ok(s)
}

fn id(r: &mut Reader, what: &'static str) -> Result<StreamId> {
    Ok(StreamId::new(r.length(what)?, r.length(what)?))
}

fn raw_id(r: &mut Reader, what: &'static str) -> Result<StreamId> {
    let (ms, seq) = r.raw_stream_id(what)?;
    Ok(StreamId::new(ms, seq))
}

fn nodes(r: &mut Reader) -> Result<Vec<StreamEntry>> {
    let n = r.count("stream node count", MIN_NODE)?;
    let mut entries = Vec::new();
    for _ in 0..n {
        let key_at = r.offset();
        let key = r.string("stream node key")?;
        let master = master_id(&key, key_at)?;
        let at = r.offset();
        let blob = r.string("stream node listpack")?;
        node(&blob, master, &mut entries).map_err(|e| DecodeError::InContainer {
            container: "stream node listpack",
            offset: at,
            inner: Box::new(e),
        })?;
    }
    if entries.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(DecodeError::corrupt(
            "stream: entry ids not ascending",
            r.offset(),
        ));
    }
    Ok(entries)
}

fn master_id(key: &[u8], at: usize) -> Result<StreamId> {
    let Ok(raw) = <[u8; RAW_ID]>::try_from(key) else {
        return Err(DecodeError::corrupt(
            format!("stream node key of {} bytes, expected 16", key.len()),
            at,
        ));
    };
    let ms = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let seq = u64::from_be_bytes(raw[8..].try_into().expect("8 bytes"));
    Ok(StreamId::new(ms, seq))
}

/// A cursor over the elements of one node listpack.
struct Node<'a> {
    elems: Vec<Elem<'a>>,
    pos: usize,
}

impl<'a> Node<'a> {
    fn next(&mut self, what: &'static str) -> Result<&Elem<'a>> {
        let e = self.elems.get(self.pos).ok_or(DecodeError::Truncated {
            what,
            offset: self.pos,
        })?;
        self.pos += 1;
        Ok(e)
    }

    fn int(&mut self, what: &'static str) -> Result<i64> {
        let at = self.pos;
        self.next(what)?.as_int().ok_or_else(|| {
            DecodeError::corrupt(format!("{what}: not an integer (element {at})"), at)
        })
    }

    fn count(&mut self, what: &'static str) -> Result<usize> {
        let at = self.pos;
        let v = self.int(what)?;
        // Every counted thing is at least one element, so a count larger than
        // what is left is corrupt; this also keeps allocations bounded.
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.elems.len() - self.pos)
            .ok_or_else(|| DecodeError::corrupt(format!("{what}: {v} (element {at})"), at))
    }

    fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>> {
        Ok(self.next(what)?.to_bytes())
    }
}

fn node(blob: &[u8], master: StreamId, out: &mut Vec<StreamEntry>) -> Result<()> {
    let elems = listpack::elements(blob)?;
    if elems.is_empty() {
        return Err(DecodeError::corrupt("empty stream node", 0));
    }
    let mut n = Node { elems, pos: 0 };
    let live = n.count("stream node entry count")?;
    let deleted = n.count("stream node deleted count")?;
    let nfields = n.count("stream node master field count")?;
    let master_fields = (0..nfields)
        .map(|_| n.bytes("stream node master field"))
        .collect::<Result<Vec<_>>>()?;
    n.int("stream node master terminator")?;
    let mut seen_live = 0;
    for _ in 0..live + deleted {
        if let Some(e) = node_entry(&mut n, master, &master_fields)? {
            out.push(e);
            seen_live += 1;
        }
    }
    if seen_live != live || n.pos != n.elems.len() {
        return Err(DecodeError::corrupt(
            "stream node: entry counts do not match",
            n.pos,
        ));
    }
    Ok(())
}

/// One node entry; `None` for a deleted one.
fn node_entry(
    n: &mut Node,
    master: StreamId,
    master_fields: &[Vec<u8>],
) -> Result<Option<StreamEntry>> {
    let flags = n.int("stream entry flags")?;
    let id = StreamId::new(
        master
            .ms
            .wrapping_add(n.int("stream entry ms delta")? as u64),
        master
            .seq
            .wrapping_add(n.int("stream entry seq delta")? as u64),
    );
    let fields = if flags & 2 != 0 {
        master_fields
            .iter()
            .map(|f| Ok((f.clone(), n.bytes("stream entry value")?)))
            .collect::<Result<Vec<_>>>()?
    } else {
        let k = n.count("stream entry field count")?;
        (0..k)
            .map(|_| {
                Ok((
                    n.bytes("stream entry field")?,
                    n.bytes("stream entry value")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?
    };
    n.int("stream entry element count")?;
    Ok((flags & 1 == 0).then_some(StreamEntry { id, fields }))
}

fn group(r: &mut Reader, t: u8) -> Result<StreamGroup> {
    let name = r.string("stream group name")?;
    let last_delivered = id(r, "stream group last id")?;
    let entries_read = if t >= 19 {
        Some(r.length("stream group entries read")?).filter(|&v| v != u64::MAX)
    } else {
        None
    };
    let n = r.count("stream group pel count", MIN_PEL_ENTRY)?;
    let pel = (0..n).map(|_| pel_entry(r)).collect::<Result<Vec<_>>>()?;
    let n = r.count("stream consumer count", MIN_CONSUMER)?;
    let consumers = (0..n)
        .map(|_| consumer(r, t, &pel))
        .collect::<Result<Vec<_>>>()?;
    Ok(StreamGroup {
        name,
        last_delivered,
        entries_read,
        pel,
        consumers,
    })
}

fn pel_entry(r: &mut Reader) -> Result<PendingEntry> {
    Ok(PendingEntry {
        id: raw_id(r, "stream pel id")?,
        delivery_time_ms: r.u64_le("stream pel delivery time")?,
        delivery_count: r.length("stream pel delivery count")?,
    })
}

fn consumer(r: &mut Reader, t: u8, pel: &[PendingEntry]) -> Result<Consumer> {
    let name = r.string("stream consumer name")?;
    let seen_time_ms = r.u64_le("stream consumer seen time")?;
    // u64::MAX (-1) = never active; folded into `None` with "not stored".
    let active_time_ms = if t >= 21 {
        Some(r.u64_le("stream consumer active time")?).filter(|&v| v != u64::MAX)
    } else {
        None
    };
    let n = r.count("stream consumer pel count", RAW_ID)?;
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.offset();
        let id = raw_id(r, "stream consumer pel id")?;
        if pel.binary_search_by(|p| p.id.cmp(&id)).is_err() {
            return Err(DecodeError::corrupt(
                format!("consumer pel id {id} not in the group pel"),
                at,
            ));
        }
        pending.push(id);
    }
    Ok(Consumer {
        name,
        seen_time_ms,
        active_time_ms,
        pending,
    })
}
