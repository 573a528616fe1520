//! The opcode loop: header, then items until the EOF opcode and the
//! checksum.

use std::io::Read;

use super::error::{RdbError, Result};
use super::input::Input;
use super::value::{layout, skip_body};
use super::{Checksum, Header, Item, KeyRecord, Magic, ReaderOptions};
use crate::format::dump::{seal_into, VALKEY_FIRST_OWN};

const OP_KEY_META_OR_SLOT_IMPORT: u8 = 243;
const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// The first RDB version whose files carry a CRC-64 after the EOF opcode.
const FIRST_WITH_CHECKSUM: u16 = 5;
/// The first Redis RDB version where opcode 243 is KEY_META (Redis 8.6).
const FIRST_WITH_KEY_META: u16 = 13;

/// A streaming RDB reader over any [`Read`]: see the [module
/// docs](super) for how to drive it.
pub struct RdbReader<R> {
    inp: Input<R>,
    header: Header,
    options: ReaderOptions,
    db: u64,
    /// Opcodes seen since the last key, applying to the next one.
    pending: Pending,
    done: bool,
    /// Whether keys come with their payloads (see [`RdbReader::without_payloads`]).
    payloads: bool,
}

#[derive(Default)]
struct Pending {
    expire_at_ms: Option<i64>,
    idle_seconds: Option<u64>,
    lfu_freq: Option<u8>,
    key_meta: Vec<u8>,
}

impl<R: Read> RdbReader<R> {
    /// Read the header (magic and version) with the default limits.
    pub fn new(inner: R) -> Result<Self> {
        Self::with_options(inner, ReaderOptions::default())
    }

    /// Read the header (magic and version).
    pub fn with_options(inner: R, options: ReaderOptions) -> Result<Self> {
        let mut inp = Input::new(inner);
        let header = read_header(&mut inp)?;
        Ok(RdbReader {
            inp,
            header,
            options,
            db: 0,
            pending: Pending::default(),
            done: false,
            payloads: true,
        })
    }

    /// Keys come with an empty payload from now on: every value is still
    /// delimited (and the file checksummed), nothing is collected. For a
    /// quick first pass that only needs the key names.
    pub fn without_payloads(mut self) -> Self {
        self.payloads = false;
        self
    }

    /// The file's magic and version.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Bytes consumed so far (for progress; errors carry their own offset).
    pub fn offset(&self) -> u64 {
        self.inp.offset()
    }

    /// The next item, `Ok(None)` after [`Item::End`]. After an error the
    /// reader is finished: it returns `Ok(None)` from then on.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        match self.step() {
            Ok(item) => {
                if matches!(item, Item::End { .. }) {
                    self.done = true;
                }
                Ok(Some(item))
            }
            Err(e) => {
                self.done = true;
                self.inp.abandon_capture();
                Err(e)
            }
        }
    }

    /// The bytes read from the inner reader but not consumed (what follows
    /// the RDB: an AOF tail, a replication end mark), and the inner reader.
    pub fn into_parts(self) -> (Vec<u8>, R) {
        self.inp.into_parts()
    }

    /// Read until the next item to hand out.
    fn step(&mut self) -> Result<Item> {
        loop {
            let at = self.inp.offset();
            let op = self.inp.u8("opcode")?;
            if let Some(item) = self.opcode(op, at)? {
                return Ok(item);
            }
        }
    }

    /// Handle one opcode or type byte; `None` when it only sets state for
    /// the next key.
    fn opcode(&mut self, op: u8, at: u64) -> Result<Option<Item>> {
        let limit = self.options.max_value_bytes;
        Ok(Some(match op {
            OP_EOF => self.end()?,
            OP_SELECTDB => {
                self.db = self.inp.length("db number")?;
                Item::SelectDb(self.db)
            }
            OP_RESIZEDB => Item::ResizeDb {
                keys: self.inp.length("resizedb keys")?,
                expires: self.inp.length("resizedb expires")?,
            },
            OP_EXPIRETIME => {
                let seconds = i32::from_le_bytes(self.inp.array("expire time")?);
                self.pending.expire_at_ms = Some(i64::from(seconds) * 1000);
                return Ok(None);
            }
            OP_EXPIRETIME_MS => {
                let ms = i64::from_le_bytes(self.inp.array("expire time")?);
                self.pending.expire_at_ms = Some(ms);
                return Ok(None);
            }
            OP_IDLE => {
                self.pending.idle_seconds = Some(self.inp.length("idle time")?);
                return Ok(None);
            }
            OP_FREQ => {
                self.pending.lfu_freq = Some(self.inp.u8("lfu frequency")?);
                return Ok(None);
            }
            OP_AUX => Item::Aux {
                key: self.inp.read_string(limit, "aux field name")?,
                value: self.inp.read_string(limit, "aux field value")?,
            },
            OP_MODULE_AUX => self.module_aux(at)?,
            OP_FUNCTION2 => Item::Function(self.inp.read_string(limit, "function library")?),
            OP_FUNCTION_PRE_GA => self.function_pre_ga()?,
            OP_SLOT_INFO => Item::SlotInfo {
                slot: self.inp.length("slot id")?,
                keys: self.inp.length("slot size")?,
                expires: self.inp.length("slot expires size")?,
            },
            OP_KEY_META_OR_SLOT_IMPORT if self.header.magic == Magic::Valkey => {
                self.slot_import()?
            }
            OP_KEY_META_OR_SLOT_IMPORT if self.header.version >= FIRST_WITH_KEY_META => {
                self.key_meta()?;
                return Ok(None);
            }
            t => Item::Key(self.key(t, at)?),
        }))
    }

    fn end(&mut self) -> Result<Item> {
        if self.header.version < FIRST_WITH_CHECKSUM {
            return Ok(Item::End {
                checksum: Checksum::Absent,
            });
        }
        let found = self.inp.checksum();
        let crc_at = self.inp.offset();
        let expected = u64::from_le_bytes(self.inp.array("checksum after the EOF opcode")?);
        let checksum = match expected {
            0 => Checksum::Disabled,
            _ if expected == found => Checksum::Verified(found),
            _ => {
                return Err(RdbError::BadChecksum {
                    expected,
                    found,
                    offset: crc_at,
                })
            }
        };
        Ok(Item::End { checksum })
    }

    /// One key: the type byte `t` (already read, at `at`), the key, and the
    /// value body, which becomes a DUMP payload.
    fn key(&mut self, t: u8, at: u64) -> Result<KeyRecord> {
        let limit = self.options.max_value_bytes;
        let version = self.header.version;
        let layout = layout(t, version, at)?;
        let pending = std::mem::take(&mut self.pending);
        let key = self.inp.read_string(limit, "key")?;
        let payload = if self.payloads {
            let mut prefix = pending.key_meta;
            prefix.push(t);
            self.inp.begin_capture(&prefix, limit);
            skip_body(&mut self.inp, layout)?;
            let mut payload = self.inp.end_capture();
            seal_into(&mut payload, version);
            payload
        } else {
            skip_body(&mut self.inp, layout)?;
            Vec::new()
        };
        Ok(KeyRecord {
            db: self.db,
            key,
            payload,
            expire_at_ms: pending.expire_at_ms,
            idle_seconds: pending.idle_seconds,
            lfu_freq: pending.lfu_freq,
            offset: at,
        })
    }

    /// MODULE_AUX: module id, `when` as a module opcode pair, then the
    /// module's opcode stream (skipped: only the module understands it).
    fn module_aux(&mut self, at: u64) -> Result<Item> {
        let module_id = self.inp.length("module id")?;
        let when_opcode = self.inp.length("module aux when opcode")?;
        if when_opcode != 2 {
            return Err(RdbError::Corrupt {
                what: format!("module aux: when opcode {when_opcode}, expected 2"),
                offset: at,
            });
        }
        self.inp.length("module aux when")?;
        self.inp.skip_module_opcodes("module aux data")?;
        Ok(Item::ModuleAux { module_id })
    }

    /// The function opcode of the Redis 7.0 release candidates: name,
    /// engine, an optional description, then the code.
    fn function_pre_ga(&mut self) -> Result<Item> {
        let limit = self.options.max_value_bytes;
        self.inp.skip_string("function name")?;
        self.inp.skip_string("function engine")?;
        if self.inp.length("function has description")? != 0 {
            self.inp.skip_string("function description")?;
        }
        Ok(Item::Function(
            self.inp.read_string(limit, "function code")?,
        ))
    }

    /// Valkey's SLOT_IMPORT: a job name and its slot ranges.
    fn slot_import(&mut self) -> Result<Item> {
        let job = self
            .inp
            .read_string(self.options.max_value_bytes, "slot import job")?;
        let n = self.inp.length("slot import ranges")?;
        let mut ranges = Vec::new();
        for _ in 0..n {
            let start = self.inp.length("slot range start")?;
            let end = self.inp.length("slot range end")?;
            ranges.push((start, end));
        }
        Ok(Item::SlotImport { job, ranges })
    }

    /// Redis' KEY_META (RDB ≥ 13): class count, then per class a 4-byte
    /// class spec and a module opcode stream. It belongs to the next key,
    /// and DUMP puts it in front of the type byte, so the bytes are kept
    /// (opcode included) as the start of that key's payload.
    fn key_meta(&mut self) -> Result<()> {
        self.inp
            .begin_capture(&[OP_KEY_META_OR_SLOT_IMPORT], self.options.max_value_bytes);
        let classes = self.inp.length("key metadata classes")?;
        for _ in 0..classes {
            self.inp.skip(4, "key metadata class")?;
            self.inp.skip_module_opcodes("key metadata")?;
        }
        self.pending.key_meta = self.inp.end_capture();
        Ok(())
    }
}

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

fn read_header<R: Read>(inp: &mut Input<R>) -> Result<Header> {
    let raw: [u8; 9] = match inp.array("header") {
        Ok(raw) => raw,
        Err(RdbError::Truncated { .. }) => {
            return Err(RdbError::BadMagic {
                found: String::from("a file shorter than 9 bytes"),
            })
        }
        Err(e) => return Err(e),
    };
    let (magic, digits) = if raw.starts_with(b"REDIS") {
        (Magic::Redis, &raw[5..])
    } else if raw.starts_with(b"VALKEY") {
        (Magic::Valkey, &raw[6..])
    } else {
        return Err(bad_magic(&raw));
    };
    let version = std::str::from_utf8(digits)
        .ok()
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u16>().ok())
        .ok_or_else(|| bad_magic(&raw))?;
    let known = match magic {
        Magic::Redis => (1..=14).contains(&version),
        Magic::Valkey => (VALKEY_FIRST_OWN..=81).contains(&version),
    };
    if !known {
        return Err(RdbError::UnsupportedVersion {
            magic: magic.name(),
            version,
        });
    }
    Ok(Header { magic, version })
}

fn bad_magic(raw: &[u8]) -> RdbError {
    RdbError::BadMagic {
        found: raw.escape_ascii().to_string(),
    }
}

/// True when `bytes` (the first bytes of a file) look like an RDB file:
/// for detecting the input by content rather than by name.
pub fn looks_like_rdb(bytes: &[u8]) -> bool {
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    (bytes.starts_with(b"REDIS") && bytes.len() >= 9 && digits(&bytes[5..9]))
        || (bytes.starts_with(b"VALKEY") && bytes.len() >= 9 && digits(&bytes[6..9]))
}
