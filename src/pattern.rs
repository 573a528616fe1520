//! Redis-style glob patterns over bytes.
//!
//! `--kb` and `--match` take the same globs as Redis' `SCAN MATCH` (`*`, `?`,
//! `[abc]`, `[^a-z]`, `\` escapes), and offline commands must select exactly
//! what a live SCAN would, so the matcher mirrors Redis' `stringmatchlen`
//! rather than filesystem globbing (which treats `/` specially and works on
//! text, not bytes).

/// A compiled glob; matching works on raw key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: impl Into<Vec<u8>>) -> Glob {
        Glob {
            pattern: pattern.into(),
        }
    }

    /// A glob that matches exactly `literal`.
    pub fn literal(literal: &[u8]) -> Glob {
        Glob::new(escape(literal))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.pattern
    }

    pub fn is_match(&self, subject: &[u8]) -> bool {
        glob_match(&self.pattern, subject)
    }

    /// True when the pattern has no metacharacters, so it names one string.
    pub fn is_literal(&self) -> bool {
        !self
            .pattern
            .iter()
            .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
    }
}

/// Escapes glob metacharacters so the result matches `literal` only.
/// Used to build `SCAN MATCH` patterns from kb_ids, which may contain them.
pub fn escape(literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(literal.len() + 4);
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Matches `subject` against a Redis glob `pattern`.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice and
    // free of the exponential blow-up that a naive recursive `*` has.
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match step(pattern, p, subject[s]) {
            Step::Star => {
                star = Some((p + 1, s));
                p += 1;
            }
            Step::Consumed(next_p) => {
                p = next_p;
                s += 1;
            }
            Step::Mismatch => match star {
                Some((star_p, star_s)) => {
                    p = star_p;
                    s = star_s + 1;
                    star = Some((star_p, star_s + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

enum Step {
    Star,
    Consumed(usize),
    Mismatch,
}

/// Tries to match one subject byte at pattern position `p`.
fn step(pattern: &[u8], p: usize, c: u8) -> Step {
    let Some(&pc) = pattern.get(p) else {
        return Step::Mismatch;
    };
    match pc {
        b'*' => Step::Star,
        b'?' => Step::Consumed(p + 1),
        b'[' => match_class(pattern, p + 1, c),
        b'\\' if p + 1 < pattern.len() => literal_step(pattern[p + 1] == c, p + 2),
        _ => literal_step(pc == c, p + 1),
    }
}

fn literal_step(equal: bool, next: usize) -> Step {
    if equal {
        Step::Consumed(next)
    } else {
        Step::Mismatch
    }
}

/// Matches a `[...]` class starting after the `[`; like Redis, an unclosed
/// class runs to the end of the pattern.
fn match_class(pattern: &[u8], mut p: usize, c: u8) -> Step {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = ordered(pattern[p], pattern[p + 2]);
            matched |= (lo..=hi).contains(&c);
            p += 3;
        } else {
            matched |= pattern[p] == c;
            p += 1;
        }
    }
    let next = (p + 1).min(pattern.len());
    literal_step(matched != negate, next)
}

fn ordered(a: u8, b: u8) -> (u8, u8) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("node*_kato", "node12_kato"));
        assert!(!m("node*_kato", "node12_kat"));
        assert!(m("n?de", "node"));
        assert!(!m("n?de", "nde"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("**x", "yx"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(m("node[0-3]", "node2"));
        assert!(!m("node[0-3]", "node4"));
        assert!(m("node[^0-3]", "node4"));
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[z-a]", "m"), "reversed range like Redis");
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn escapes_are_literal() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
    }

    #[test]
    fn escape_makes_any_kb_id_literal() {
        let kb = b"kb*[1]?:x\\y";
        let pat = escape(kb);
        assert!(glob_match(&pat, kb));
        assert!(!glob_match(&pat, b"kbZ[1]?:x\\y"));
        assert!(!glob_match(&pat, b"kb*1?:x\\y"));
        let mut scan = pat.clone();
        scan.extend_from_slice(b":*");
        assert!(glob_match(&scan, b"kb*[1]?:x\\y:frequency:abc"));
    }

    #[test]
    fn binary_bytes_match() {
        assert!(glob_match(b"kb\xff:*", b"kb\xff:\x00\x01"));
        assert!(glob_match(b"[\x00-\x10]", b"\x05"));
    }

    #[test]
    fn literal_detection() {
        assert!(Glob::new("node0_kato").is_literal());
        assert!(!Glob::new("node*").is_literal());
        assert!(Glob::literal(b"a*").is_match(b"a*"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let subject = "a".repeat(5000);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!m(&pattern, &subject));
    }
}
