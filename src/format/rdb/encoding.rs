//! The RDB primitives over the streaming input: lengths (§2.5 of the
//! format notes), strings with their integer and LZF forms (§2.6), text
//! doubles (§2.7) and module opcode streams (§2.15). Each comes in a
//! "skip" form (delimit only, for values) and, where the reader needs the
//! content (keys, aux fields, db numbers), a "read" form.

use std::io::Read;

use super::error::{RdbError, Result};
use super::input::Input;
use crate::format::dump::{lzf_decompress, LengthForm};

/// A length byte's meaning.
pub(super) enum Len {
    Plain(u64),
    /// `11xxxxxx`: a specially encoded string follows (int8/16/32, LZF).
    Special(u8),
}

impl<R: Read> Input<R> {
    pub fn length_or_special(&mut self, what: &'static str) -> Result<Len> {
        let start = self.offset();
        let b = self.u8(what)?;
        Ok(match LengthForm::of(b) {
            LengthForm::Short(n) => Len::Plain(n),
            LengthForm::Medium(high) => Len::Plain(high | u64::from(self.u8(what)?)),
            LengthForm::Special(k) => Len::Special(k),
            LengthForm::Be32 => Len::Plain(u64::from(u32::from_be_bytes(self.array(what)?))),
            LengthForm::Be64 => Len::Plain(u64::from_be_bytes(self.array(what)?)),
            LengthForm::Invalid => {
                return Err(RdbError::Corrupt {
                    what: format!("{what}: invalid length byte {b:#04x}"),
                    offset: start,
                })
            }
        })
    }

    /// A plain length; the special string form is an error here.
    pub fn length(&mut self, what: &'static str) -> Result<u64> {
        let start = self.offset();
        match self.length_or_special(what)? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => Err(RdbError::Corrupt {
                what: format!("{what}: string encoding where a length was expected"),
                offset: start,
            }),
        }
    }

    /// Step over a string in any of its forms.
    pub fn skip_string(&mut self, what: &'static str) -> Result<()> {
        let start = self.offset();
        match self.length_or_special(what)? {
            Len::Plain(n) => self.skip(n, what),
            Len::Special(0) => self.skip(1, what),
            Len::Special(1) => self.skip(2, what),
            Len::Special(2) => self.skip(4, what),
            Len::Special(3) => {
                let compressed = self.length(what)?;
                self.length(what)?;
                self.skip(compressed, what)
            }
            Len::Special(k) => Err(unknown_string_encoding(what, k, start)),
        }
    }

    /// A string's content: integers as decimal text, LZF expanded. `limit`
    /// bounds every length before it is used.
    pub fn read_string(&mut self, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let start = self.offset();
        match self.length_or_special(what)? {
            Len::Plain(n) => self.bytes(n, limit, what),
            Len::Special(0) => Ok(decimal(i64::from(self.u8(what)? as i8))),
            Len::Special(1) => Ok(decimal(i64::from(i16::from_le_bytes(self.array(what)?)))),
            Len::Special(2) => Ok(decimal(i64::from(i32::from_le_bytes(self.array(what)?)))),
            Len::Special(3) => {
                let compressed = self.length(what)?;
                let expanded = self.length(what)?;
                if expanded > limit {
                    return Err(RdbError::TooLarge {
                        what,
                        len: expanded,
                        limit,
                        offset: start,
                    });
                }
                let at = self.offset();
                let input = self.bytes(compressed, limit, what)?;
                lzf_decompress(&input, expanded as usize).map_err(|e| RdbError::Corrupt {
                    what: format!("{what}: {e}"),
                    offset: at,
                })
            }
            Len::Special(k) => Err(unknown_string_encoding(what, k, start)),
        }
    }

    /// A zset v1 score: one length byte (253-255 mark NaN and infinities),
    /// then that many bytes of text.
    pub fn skip_text_double(&mut self, what: &'static str) -> Result<()> {
        match self.u8(what)? {
            253..=255 => Ok(()),
            n => self.skip(u64::from(n), what),
        }
    }

    /// A module opcode stream up to and including its EOF opcode.
    pub fn skip_module_opcodes(&mut self, what: &'static str) -> Result<()> {
        loop {
            let start = self.offset();
            match self.length(what)? {
                0 => return Ok(()),
                1 | 2 => {
                    self.length(what)?;
                }
                3 => self.skip(4, what)?,
                4 => self.skip(8, what)?,
                5 => self.skip_string(what)?,
                op => {
                    return Err(RdbError::Corrupt {
                        what: format!("{what}: unknown module opcode {op}"),
                        offset: start,
                    })
                }
            }
        }
    }
}

fn decimal(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn unknown_string_encoding(what: &'static str, k: u8, offset: u64) -> RdbError {
    RdbError::Corrupt {
        what: format!("{what}: unknown string encoding {k}"),
        offset,
    }
}
