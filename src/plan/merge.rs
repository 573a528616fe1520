//! Merge mode's decisions: which policy each category follows, and what a
//! live value and its archived counterpart come to together. Values in, a
//! decision out; the Redis sink writes the decision atomically against
//! concurrent writers.
//!
//! The policies, and KATO's defaults:
//!
//! | policy | what it does | default for |
//! |---|---|---|
//! | `max` | integer strings: the larger of live and archived | `frequency` |
//! | `union` | hashes: archived fields the live hash lacks are added (live fields win); sets: archived members added; strings holding a JSON object of lists of strings (KATO's metadata): per field, the sorted union of both lists, written as KATO's Python writes it | `affinity`, `metadata` |
//! | `keep` | the live value stays | `emotives`, `symbols`, `globals`, `metrics`, `predictions`, `other` |
//! | `replace` | the archived value overwrites the live one | — |
//!
//! In every policy a key missing on the target is restored as archived. A
//! live or archived value that does not fit its policy (a frequency that is
//! not an integer, metadata that is not a JSON object of lists) is a
//! *conflict*: the live value stays and the key is reported.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::format::dump::{HashField, Value};
use crate::kato::{display_bytes, pytext, Category};

/// How one category's archived values are put together with live ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The larger of two integer strings.
    Max,
    /// Hash fields or set members added where the live value lacks them;
    /// KATO metadata unioned per field.
    Union,
    /// The live value stays.
    Keep,
    /// The archived value overwrites the live one.
    Replace,
}

impl Policy {
    pub const ALL: [Policy; 4] = [Policy::Max, Policy::Union, Policy::Keep, Policy::Replace];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Max => "max",
            Policy::Union => "union",
            Policy::Keep => "keep",
            Policy::Replace => "replace",
        }
    }

    pub fn from_name(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }

    /// KATO's default for a category (see the module docs).
    pub fn kato_default(category: Category) -> Policy {
        match category {
            Category::Frequency => Policy::Max,
            Category::Affinity | Category::Metadata => Policy::Union,
            _ => Policy::Keep,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The policy of every category: KATO's defaults, with overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies([Policy; Category::ALL.len()]);

impl Default for Policies {
    fn default() -> Self {
        Policies(Category::ALL.map(Policy::kato_default))
    }
}

impl Policies {
    pub fn set(&mut self, category: Category, policy: Policy) {
        self.0[category as usize] = policy;
    }

    pub fn of(&self, category: Category) -> Policy {
        self.0[category as usize]
    }

    /// Every category with its policy, in catalogue order.
    pub fn iter(&self) -> impl Iterator<Item = (Category, Policy)> + '_ {
        Category::ALL.into_iter().map(|c| (c, self.of(c)))
    }
}

/// What merging a live value with the archived one comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The live value already holds everything the archived one adds.
    Unchanged,
    /// Change the live key (atomically: see [`Merge`]).
    Write(Merge),
    /// The live or the archived value does not fit the policy: the live
    /// value stays. The reason says which and why.
    Conflict(String),
}

/// A change to a live key, stated so that it can be applied atomically
/// while other clients write the key.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Raise an integer string to `to`, if it is still lower then
    /// (policy max): an `INCR` meanwhile is never undone.
    Raise { to: i64 },
    /// Replace the string, if it still is `from`, by `to` (KATO metadata;
    /// a changed value is read and merged again).
    Swap { from: Vec<u8>, to: Vec<u8> },
    /// Add these fields, each only if the live hash still lacks it.
    AddFields(Vec<(Vec<u8>, Vec<u8>)>),
    /// Add these members to the live set.
    AddMembers(Vec<Vec<u8>>),
    /// Overwrite with the archived value (policy replace).
    Replace,
}

impl Merge {
    /// The value the key holds once the change is made (for the dry run).
    pub fn result(&self, live: &Value, archived: &Value) -> Value {
        match (self, live) {
            (Merge::Raise { to }, _) => Value::String(to.to_string().into_bytes()),
            (Merge::Swap { to, .. }, _) => Value::String(to.clone()),
            (Merge::AddFields(add), Value::Hash(fields)) => {
                let mut fields = fields.clone();
                fields.extend(add.iter().map(|(field, value)| HashField {
                    field: field.clone(),
                    value: value.clone(),
                    expire_at_ms: None,
                }));
                Value::Hash(fields)
            }
            (Merge::AddMembers(add), Value::Set(members)) => {
                Value::Set(members.iter().chain(add).cloned().collect())
            }
            _ => archived.clone(),
        }
    }
}

/// What `policy` makes of the live value and the archived one.
pub fn decide(policy: Policy, live: &Value, archived: &Value) -> Decision {
    match policy {
        Policy::Keep => Decision::Unchanged,
        Policy::Replace => Decision::Write(Merge::Replace),
        _ if live.logically_eq(archived) => Decision::Unchanged,
        Policy::Max => max(live, archived),
        Policy::Union => union(live, archived),
    }
}

fn max(live: &Value, archived: &Value) -> Decision {
    let to = match integer(archived, "archived") {
        Ok(n) => n,
        Err(why) => return Decision::Conflict(why),
    };
    match integer(live, "live") {
        Ok(now) if to > now => Decision::Write(Merge::Raise { to }),
        Ok(_) => Decision::Unchanged,
        Err(why) => Decision::Conflict(why),
    }
}

/// The integer a string holds, in the strict form Redis' `INCR` accepts
/// (and writes): no sign but `-`, no leading zeros, no spaces, 64 bits.
pub fn redis_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

fn integer(value: &Value, which: &str) -> Result<i64, String> {
    let not =
        |what: String| format!("the {which} value is {what}; policy max takes integer strings");
    match value {
        Value::String(s) => {
            redis_integer(s).ok_or_else(|| not(format!("{}, not an integer", quoted(s))))
        }
        other => Err(not(format!("a {}", other.redis_type()))),
    }
}

/// A value for a message, shortened: the reader wants to recognise it.
fn quoted(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    let shown = display_bytes(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("\"{shown}…\" ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

const UNION_TAKES: &str = "policy union takes hashes, sets and strings holding a JSON object \
                           whose values are lists of strings (KATO metadata)";

fn union(live: &Value, archived: &Value) -> Decision {
    match (live, archived) {
        (Value::Hash(live), Value::Hash(archived)) => add_fields(live, archived),
        (Value::Set(live), Value::Set(archived)) => add_members(live, archived),
        (Value::String(live), Value::String(archived)) => union_metadata(live, archived),
        (live, archived) if live.redis_type() != archived.redis_type() => {
            Decision::Conflict(format!(
                "the live value is a {} and the archived one a {}; {UNION_TAKES}",
                live.redis_type(),
                archived.redis_type()
            ))
        }
        (live, _) => Decision::Conflict(format!(
            "the values are {}s; {UNION_TAKES}",
            live.redis_type()
        )),
    }
}

fn add_fields(live: &[HashField], archived: &[HashField]) -> Decision {
    let present: BTreeSet<&[u8]> = live.iter().map(|f| f.field.as_slice()).collect();
    let missing: Vec<&HashField> = archived
        .iter()
        .filter(|f| !present.contains(f.field.as_slice()))
        .collect();
    if missing.iter().any(|f| f.expire_at_ms.is_some()) {
        return Decision::Conflict(
            "archived hash fields to add carry their own expiry, which a union cannot \
             reproduce; restore this key with --policy CATEGORY=replace"
                .into(),
        );
    }
    if missing.is_empty() {
        return Decision::Unchanged;
    }
    Decision::Write(Merge::AddFields(
        missing
            .into_iter()
            .map(|f| (f.field.clone(), f.value.clone()))
            .collect(),
    ))
}

fn add_members(live: &[Vec<u8>], archived: &[Vec<u8>]) -> Decision {
    let present: BTreeSet<&[u8]> = live.iter().map(Vec::as_slice).collect();
    let missing: Vec<Vec<u8>> = archived
        .iter()
        .filter(|m| !present.contains(m.as_slice()))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Decision::Unchanged;
    }
    Decision::Write(Merge::AddMembers(missing))
}

/// KATO metadata: field -> list of strings, in the object's field order.
type Metadata = Vec<(String, Vec<String>)>;

fn union_metadata(live: &[u8], archived: &[u8]) -> Decision {
    let (live_md, archived_md) = match (metadata(live, "live"), metadata(archived, "archived")) {
        (Ok(l), Ok(a)) => (l, a),
        (Err(why), _) | (_, Err(why)) => return Decision::Conflict(why),
    };
    let merged = merge_metadata(&live_md, &archived_md);
    if merged == live_md {
        return Decision::Unchanged;
    }
    let text = pytext::json_dumps_str_lists(
        merged
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str))),
    );
    Decision::Write(Merge::Swap {
        from: live.to_vec(),
        to: text.into_bytes(),
    })
}

/// Parses KATO metadata the way Python's `json.loads` reads it into a
/// dict: field order kept, a repeated field keeps its first place and its
/// last value.
fn metadata(text: &[u8], which: &str) -> Result<Metadata, String> {
    let not = || {
        format!(
            "the {which} value {} is not a JSON object whose values are lists of strings; {UNION_TAKES}",
            quoted(text)
        )
    };
    let doc: serde_json::Value = serde_json::from_slice(text).map_err(|_| not())?;
    let object = doc.as_object().ok_or_else(not)?;
    object
        .iter()
        .map(|(field, values)| {
            let list = values.as_array().ok_or_else(not)?;
            let strings = list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(not))
                .collect::<Result<Vec<String>, String>>()?;
            Ok((field.clone(), strings))
        })
        .collect()
}

/// KATO's merge: the live fields in their order, then the fields only the
/// archive has; each list the sorted union of both (Python's `sorted` on
/// strings is code point order, which is UTF-8 byte order).
fn merge_metadata(live: &Metadata, archived: &Metadata) -> Metadata {
    let archived_of = |field: &str| {
        archived
            .iter()
            .rev()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    };
    let sorted_union = |a: &[String], b: &[String]| -> Vec<String> {
        let set: BTreeSet<&String> = a.iter().chain(b).collect();
        set.into_iter().cloned().collect()
    };
    let mut merged: Metadata = live
        .iter()
        .map(|(field, values)| (field.clone(), sorted_union(values, archived_of(field))))
        .collect();
    for (field, values) in archived {
        if !merged.iter().any(|(f, _)| f == field) {
            merged.push((field.clone(), sorted_union(values, &[])));
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::String(text.as_bytes().to_vec())
    }

    fn hash(fields: &[(&str, &str)]) -> Value {
        Value::Hash(
            fields
                .iter()
                .map(|(f, v)| HashField {
                    field: f.as_bytes().to_vec(),
                    value: v.as_bytes().to_vec(),
                    expire_at_ms: None,
                })
                .collect(),
        )
    }

    fn conflict(d: Decision) -> String {
        match d {
            Decision::Conflict(why) => why,
            other => panic!("not a conflict: {other:?}"),
        }
    }

    #[test]
    fn kato_defaults_and_overrides() {
        let mut p = Policies::default();
        assert_eq!(p.of(Category::Frequency), Policy::Max);
        assert_eq!(p.of(Category::Affinity), Policy::Union);
        assert_eq!(p.of(Category::Metadata), Policy::Union);
        for c in [
            Category::Emotives,
            Category::Symbols,
            Category::Globals,
            Category::Metrics,
            Category::Predictions,
            Category::Other,
        ] {
            assert_eq!(p.of(c), Policy::Keep, "{c}");
        }
        p.set(Category::Emotives, Policy::Replace);
        assert_eq!(p.of(Category::Emotives), Policy::Replace);
        assert_eq!(p.iter().count(), Category::ALL.len());
        assert_eq!(Policy::from_name("union"), Some(Policy::Union));
        assert_eq!(Policy::from_name("Union"), None);
    }

    #[test]
    fn max_raises_only_a_lower_integer() {
        assert_eq!(
            decide(Policy::Max, &s("1"), &s("20")),
            Decision::Write(Merge::Raise { to: 20 })
        );
        assert_eq!(decide(Policy::Max, &s("21"), &s("20")), Decision::Unchanged);
        assert_eq!(decide(Policy::Max, &s("20"), &s("20")), Decision::Unchanged);
        assert_eq!(
            decide(Policy::Max, &s("-5"), &s("-2")),
            Decision::Write(Merge::Raise { to: -2 })
        );
        assert!(conflict(decide(Policy::Max, &s("abc"), &s("2")))
            .contains("live value is \"abc\", not an integer"));
        assert!(conflict(decide(Policy::Max, &s("1"), &s("02"))).contains("archived"));
        assert!(conflict(decide(Policy::Max, &s("1"), &hash(&[("a", "1")]))).contains("a hash"));
    }

    #[test]
    fn integers_are_what_incr_accepts() {
        assert_eq!(redis_integer(b"0"), Some(0));
        assert_eq!(redis_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "+1",
            "01",
            "-0",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
        ] {
            assert_eq!(redis_integer(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn union_of_hashes_adds_missing_fields_and_keeps_live_ones() {
        let live = hash(&[("joy", "0.9"), ("fear", "0.1")]);
        let archived = hash(&[("joy", "0.4"), ("utility", "-1.2")]);
        let d = decide(Policy::Union, &live, &archived);
        let add = vec![(b"utility".to_vec(), b"-1.2".to_vec())];
        assert_eq!(d, Decision::Write(Merge::AddFields(add.clone())));
        assert_eq!(
            Merge::AddFields(add).result(&live, &archived).canonical(),
            hash(&[("joy", "0.9"), ("fear", "0.1"), ("utility", "-1.2")]).canonical()
        );
        let superset = hash(&[("joy", "0.9"), ("utility", "5")]);
        assert_eq!(
            decide(Policy::Union, &superset, &archived),
            Decision::Unchanged
        );
        let mut with_ttl = archived.clone();
        if let Value::Hash(fields) = &mut with_ttl {
            fields[1].expire_at_ms = Some(1);
        }
        assert!(conflict(decide(Policy::Union, &live, &with_ttl)).contains("expiry"));
    }

    #[test]
    fn union_of_sets_adds_members() {
        let live = Value::Set(vec![b"a".to_vec()]);
        let archived = Value::Set(vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(
            decide(Policy::Union, &live, &archived),
            Decision::Write(Merge::AddMembers(vec![b"b".to_vec()]))
        );
    }

    #[test]
    fn union_of_kato_metadata_is_what_kato_writes() {
        // python3: live = {"chapter": ["3", "2"], "src": ["é"]};
        // arch = {"book": ["Alice"], "chapter": ["1", "2"]}; then
        // m = {k: sorted(set(v) | set(arch.get(k, []))) for k, v in live.items()}
        // m.update({k: sorted(v) for k, v in arch.items() if k not in m})
        // json.dumps(m)
        let live = s(r#"{"chapter": ["3", "2"], "src": ["\u00e9"]}"#);
        let archived = s(r#"{"book":["Alice"],"chapter":["1","2"]}"#);
        let want = r#"{"chapter": ["1", "2", "3"], "src": ["\u00e9"], "book": ["Alice"]}"#;
        match decide(Policy::Union, &live, &archived) {
            Decision::Write(Merge::Swap { from, to }) => {
                assert_eq!(
                    from,
                    r#"{"chapter": ["3", "2"], "src": ["\u00e9"]}"#.as_bytes()
                );
                assert_eq!(String::from_utf8(to).unwrap(), want);
            }
            other => panic!("{other:?}"),
        }
        // Nothing to add, whatever the spelling: unchanged.
        let compact = s(r#"{"a":["1","2"]}"#);
        assert_eq!(
            decide(Policy::Union, &compact, &s(r#"{"a": ["2"]}"#)),
            Decision::Unchanged
        );
        // Code point order, as Python sorts.
        match decide(
            Policy::Union,
            &s(r#"{"a": ["é"]}"#),
            &s(r#"{"a": ["z", "A"]}"#),
        ) {
            Decision::Write(Merge::Swap { to, .. }) => {
                assert_eq!(to, br#"{"a": ["A", "z", "\u00e9"]}"#)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn metadata_that_is_not_kato_shaped_is_a_conflict() {
        let archived = s(r#"{"a": ["1"]}"#);
        for live in [r#"{"a": "1"}"#, r#"{"a": [1]}"#, "[1]", "{not json", "7"] {
            let why = conflict(decide(Policy::Union, &s(live), &archived));
            assert!(why.contains("the live value"), "{live}: {why}");
        }
        let why = conflict(decide(Policy::Union, &archived, &s("x")));
        assert!(why.contains("the archived value"), "{why}");
    }

    #[test]
    fn union_needs_the_same_type_of_a_kind_it_merges() {
        let why = conflict(decide(Policy::Union, &s("x"), &hash(&[("a", "1")])));
        assert!(
            why.contains("a string and the archived one a hash"),
            "{why}"
        );
        let list = Value::List(vec![b"a".to_vec()]);
        let why = conflict(decide(Policy::Union, &list, &Value::List(vec![])));
        assert!(why.contains("lists"), "{why}");
    }

    #[test]
    fn keep_and_replace() {
        assert_eq!(decide(Policy::Keep, &s("1"), &s("2")), Decision::Unchanged);
        assert_eq!(
            decide(Policy::Replace, &s("1"), &s("1")),
            Decision::Write(Merge::Replace)
        );
    }
}
