//! Delimiting one value body per type id (§2.8, §2.13-2.15 of the format
//! notes): the reader steps over exactly the bytes of the value, without
//! building it, so that they can become a DUMP payload unchanged.

use std::io::Read;

use super::error::{RdbError, Result};
use super::input::Input;
use crate::format::dump::VALKEY_FIRST_OWN;

/// How a body of a given type id is laid out, as far as delimiting goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout {
    /// One string (a plain value or a container blob).
    String,
    /// A count, then that many strings.
    Strings,
    /// A count, then (member, text score) pairs.
    ZSetV1,
    /// A count, then (field, value) pairs.
    Hash,
    /// A count, then (member, binary score) pairs.
    ZSetV2,
    /// A module id and a module opcode stream.
    Module,
    /// Stream types 15, 19, 21.
    Stream(u8),
    /// A count, then (container, node) pairs.
    Quicklist2,
    /// Valkey's HASH_2: a count, then (field, value, i64 expiry).
    ValkeyHash2,
    /// A count, then (ttl, field, value); with a min-expire prefix if set.
    HashTtls { min_expire: bool },
    /// A min-expire prefix, then one listpack string.
    MinExpireListpack,
}

/// The layout of type `t` under `rdb_version`, or the error that names the
/// type (sitting at `offset`) when it has none this reader knows. Checked
/// before the key is read, so the error points at the type byte.
pub(super) fn layout(t: u8, rdb_version: u16, offset: u64) -> Result<Layout> {
    let valkey = rdb_version >= VALKEY_FIRST_OWN;
    Ok(match t {
        0 | 9..=13 | 16 | 17 | 20 => Layout::String,
        23 if !valkey => Layout::String,
        1 | 2 | 14 => Layout::Strings,
        3 => Layout::ZSetV1,
        4 => Layout::Hash,
        5 => Layout::ZSetV2,
        6 => {
            return Err(RdbError::Undelimitable {
                type_byte: 6,
                offset,
                why: "pre-GA module values can only be read by their module",
            })
        }
        7 => Layout::Module,
        15 | 19 | 21 => Layout::Stream(t),
        18 => Layout::Quicklist2,
        22 if valkey => Layout::ValkeyHash2,
        22 => Layout::HashTtls { min_expire: false },
        24 if !valkey => Layout::HashTtls { min_expire: true },
        25 if !valkey => Layout::MinExpireListpack,
        _ => {
            return Err(RdbError::UnknownType {
                byte: t,
                offset,
                rdb_version,
            })
        }
    })
}

/// Step over one body laid out as `layout`.
pub(super) fn skip_body<R: Read>(inp: &mut Input<R>, layout: Layout) -> Result<()> {
    match layout {
        Layout::String => inp.skip_string("value"),
        Layout::Strings => repeat(inp, "elements", |inp| inp.skip_string("element")),
        Layout::ZSetV1 => repeat(inp, "zset members", |inp| {
            inp.skip_string("member")?;
            inp.skip_text_double("score")
        }),
        Layout::Hash => repeat(inp, "hash fields", |inp| {
            inp.skip_string("field")?;
            inp.skip_string("value")
        }),
        Layout::ZSetV2 => repeat(inp, "zset members", |inp| {
            inp.skip_string("member")?;
            inp.skip(8, "score")
        }),
        Layout::Module => {
            inp.length("module id")?;
            inp.skip_module_opcodes("module value")
        }
        Layout::Stream(t) => skip_stream(inp, t),
        Layout::Quicklist2 => repeat(inp, "quicklist nodes", |inp| {
            inp.length("quicklist container")?;
            inp.skip_string("quicklist node")
        }),
        Layout::ValkeyHash2 => repeat(inp, "hash fields", |inp| {
            inp.skip_string("field")?;
            inp.skip_string("value")?;
            inp.skip(8, "field expiry")
        }),
        Layout::HashTtls { min_expire } => {
            if min_expire {
                inp.skip(8, "hash min expire")?;
            }
            hash_with_ttls(inp)
        }
        Layout::MinExpireListpack => {
            inp.skip(8, "hash min expire")?;
            inp.skip_string("hash listpack")
        }
    }
}

/// A count, then that many items. Every item consumes input, so a lying
/// count ends in `Truncated`, never in a long idle loop or an allocation.
fn repeat<R: Read>(
    inp: &mut Input<R>,
    what: &'static str,
    mut item: impl FnMut(&mut Input<R>) -> Result<()>,
) -> Result<()> {
    let n = inp.length(what)?;
    for _ in 0..n {
        item(inp)?;
    }
    Ok(())
}

fn hash_with_ttls<R: Read>(inp: &mut Input<R>) -> Result<()> {
    repeat(inp, "hash fields", |inp| {
        inp.length("field expiry")?;
        inp.skip_string("field")?;
        inp.skip_string("value")
    })
}

/// Stream types 15, 19 and 21 (§2.13).
fn skip_stream<R: Read>(inp: &mut Input<R>, t: u8) -> Result<()> {
    repeat(inp, "stream nodes", |inp| {
        inp.skip_string("stream node id")?;
        inp.skip_string("stream node listpack")
    })?;
    let metadata_lengths = if t >= 19 { 8 } else { 3 };
    for _ in 0..metadata_lengths {
        inp.length("stream metadata")?;
    }
    repeat(inp, "stream groups", |inp| skip_group(inp, t))
}

fn skip_group<R: Read>(inp: &mut Input<R>, t: u8) -> Result<()> {
    inp.skip_string("group name")?;
    inp.length("group last id")?;
    inp.length("group last id")?;
    if t >= 19 {
        inp.length("group entries read")?;
    }
    repeat(inp, "group pending entries", |inp| {
        inp.skip(16 + 8, "pending entry")?;
        inp.length("pending delivery count").map(drop)
    })?;
    repeat(inp, "consumers", |inp| {
        inp.skip_string("consumer name")?;
        inp.skip(if t >= 21 { 16 } else { 8 }, "consumer times")?;
        let owned = inp.length("consumer pending entries")?;
        for _ in 0..owned {
            inp.skip(16, "consumer pending id")?;
        }
        Ok(())
    })
}
