/*!
Text exactly as KATO's Python writes it.

KATO stores floats with `str(float)` and term-frequency vectors with
`json.dumps(dict)`. A rebuild must produce the same bytes, so this module
reimplements the two formatters:

- [`float_repr`]: Python's `repr(float)` (identical to `str(float)` since
  Python 3.2): the shortest digit string that round-trips, fixed notation
  when the decimal exponent `e` satisfies `-5 < e < 16`, otherwise
  scientific with a signed, at least two-digit exponent (`1e-05`,
  `1.5e+16`); `inf`, `-inf`, `nan`, `-0.0`.
- [`json_dumps_tf`]: `json.dumps` with default arguments for a flat
  `{str: float}` object: separators `", "` and `": "`, `ensure_ascii=True`
  (`\uXXXX` in lowercase hex, surrogate pairs above U+FFFF), keys in the
  order given.
- [`json_dumps_str_lists`]: the same for KATO's pattern metadata, a
  `{str: [str, ...]}` object.
*/

use std::fmt::Write as _;

/// Python's `repr(x)` for a float.
pub fn float_repr(x: f64) -> String {
    let mut out = String::with_capacity(24);
    push_float_repr(&mut out, x);
    out
}

/// Appends Python's `repr(x)` to `out`.
pub fn push_float_repr(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    let a = x.abs();
    if a.is_infinite() {
        out.push_str("inf");
    } else if a == 0.0 {
        out.push_str("0.0");
    } else {
        push_finite(out, a);
    }
}

/// Formats a finite positive value. Rust's `{:e}` already yields the
/// shortest round-trip digits (`1.5e-5`); only the layout differs.
fn push_finite(out: &mut String, a: f64) {
    let mut buf = StackBuf::default();
    let _ = write!(buf, "{a:e}");
    let sci = buf.as_str();
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an 'e'");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let mut digit_buf = [0u8; 32];
    let mut k = 0;
    for b in mantissa.bytes().filter(|b| *b != b'.') {
        digit_buf[k] = b;
        k += 1;
    }
    let digits = std::str::from_utf8(&digit_buf[..k]).expect("ASCII digits");
    // Python's float_repr_style 'short': scientific iff decpt <= -4 or
    // decpt > 16, where decpt = exp + 1 (Python/pystrtod.c).
    let decpt = exp + 1;
    if decpt <= -4 || decpt > 16 {
        push_scientific(out, digits, exp);
    } else {
        push_fixed(out, digits, decpt);
    }
}

/// A fixed buffer for `{:e}` output (at most 24 bytes for an f64), so
/// formatting a float allocates nothing.
#[derive(Default)]
struct StackBuf {
    bytes: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("fmt writes UTF-8")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn push_scientific(out: &mut String, digits: &str, exp: i32) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let sign = if exp < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:02}", exp.abs());
}

fn push_fixed(out: &mut String, digits: &str, decpt: i32) {
    let k = digits.len() as i32;
    if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(digits);
    } else if decpt >= k {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (decpt - k) as usize));
        out.push_str(".0");
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

/// `json.dumps` of a float: `repr`, except the non-finite spellings.
fn push_json_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push_float_repr(out, x);
    }
}

/// Appends a JSON string literal as `json.dumps(..., ensure_ascii=True)`
/// writes it.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => push_unicode_escape(out, c),
        }
    }
    out.push('"');
}

fn push_unicode_escape(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        let _ = write!(out, "\\u{unit:04x}");
    }
}

/// `json.dumps({k: v, ...})` for a flat object of floats, in the given key
/// order. Keys that are not UTF-8 are decoded lossily (U+FFFD), which is
/// what a Python client decoding with `errors="replace"` would see.
pub fn json_dumps_tf<'a, I>(entries: I) -> String
where
    I: IntoIterator<Item = (&'a [u8], f64)>,
{
    let mut out = String::with_capacity(64);
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_json_str(&mut out, &String::from_utf8_lossy(key));
        out.push_str(": ");
        push_json_float(&mut out, value);
    }
    out.push('}');
    out
}

/// `json.dumps({k: [v, ...], ...})` for an object whose values are lists
/// of strings (KATO's pattern metadata), in the given key and list order.
pub fn json_dumps_str_lists<'a, I, L>(entries: I) -> String
where
    I: IntoIterator<Item = (&'a str, L)>,
    L: IntoIterator<Item = &'a str>,
{
    let mut out = String::with_capacity(64);
    out.push('{');
    for (i, (key, values)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_json_str(&mut out, key);
        out.push_str(": [");
        for (j, value) in values.into_iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            push_json_str(&mut out, value);
        }
        out.push(']');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (2.0 / 3.0, "0.6666666666666666"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (123.456, "123.456"),
            (100.0, "100.0"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-2.5e-7, "-2.5e-07"),
            (1.584962500721156, "1.584962500721156"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(*x), *want, "repr({x:e})");
        }
    }

    #[test]
    fn json_matches_python_dumps() {
        let entries: Vec<(&[u8], f64)> = vec![
            (b"a", 0.5),
            ("é\"\\:x y".as_bytes(), 0.25),
            ("😀\n\u{7f}\u{1}".as_bytes(), 1.0),
        ];
        // python3: json.dumps({"a": 0.5, "é\"\\:x y": 0.25,
        //                      "😀\n\x7f\x01": 1.0})
        let want = r#"{"a": 0.5, "\u00e9\"\\:x y": 0.25, "\ud83d\ude00\n\u007f\u0001": 1.0}"#;
        assert_eq!(json_dumps_tf(entries), want);
    }

    #[test]
    fn json_of_empty_object() {
        assert_eq!(json_dumps_tf(Vec::<(&[u8], f64)>::new()), "{}");
    }

    #[test]
    fn string_lists_match_python_dumps() {
        let entries: Vec<(&str, Vec<&str>)> = vec![
            ("book", vec!["Alice", "Looking Glass"]),
            ("é", vec![]),
            ("q\"", vec!["✓\t", "😀"]),
        ];
        // python3: json.dumps({"book": ["Alice", "Looking Glass"], "é": [],
        //                      'q"': ["✓\t", "😀"]})
        let want = r#"{"book": ["Alice", "Looking Glass"], "\u00e9": [], "q\"": ["\u2713\t", "\ud83d\ude00"]}"#;
        assert_eq!(
            json_dumps_str_lists(entries.iter().map(|(k, v)| (*k, v.iter().copied()))),
            want
        );
        assert_eq!(json_dumps_str_lists(Vec::<(&str, Vec<&str>)>::new()), "{}");
    }
}
