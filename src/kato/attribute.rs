//! Which kb_id owns each key of a whole pass over a keyspace.
//!
//! [`classify_with`] decides one key given the kb_ids known so far. Over a
//! SCAN pass that is not enough, because a kb_id may contain `:`: an
//! unmarked key `a:b:x` belongs to kb `a:b` when `a:b` is a kb_id, else to
//! kb `a`, and whether `a:b` is a kb_id is only known once the pass has
//! seen some key of it. The rule, written once here:
//!
//! - kb_ids are given up front (the caller's, trusted) or **learned** from
//!   keys that carry a category marker: a prefix counts as a kb_id only when
//!   some key under it has a marker (`cache:user:42` does not make `cache`
//!   a knowledge base);
//! - a key with a marker is attributed at once, to the kb_id before its
//!   first marker;
//! - a key without a marker is attributed at once to the longest known kb_id
//!   that prefixes it when no longer kb_id could own it (no `:` after that
//!   kb_id's `:`); otherwise it is **held** until the pass is over and every
//!   kb_id is known, and [`Attributor::finish`] attributes it then;
//! - a key under no known kb_id belongs to none.
//!
//! A caller that wants the keys of some kb_ids only says so
//! ([`Attributor::wanting`]): keys that cannot belong to one of them are
//! dropped as soon as that is certain instead of being held, so a pass
//! over a whole keyspace does not hold other applications' keys.
//!
//! Pure: fed keys, it says where they belong; the SCAN is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use super::{classify_with, Category};

/// A key and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    pub key: Vec<u8>,
    pub kb_id: Vec<u8>,
    pub category: Category,
}

/// Attributes the keys of one pass (see the module documentation).
#[derive(Debug, Default)]
pub struct Attributor {
    /// kb_ids given up front or learned, for [`classify_with`].
    known: Vec<Vec<u8>>,
    known_set: BTreeSet<Vec<u8>>,
    /// The kb_ids whose keys the caller wants; `None`: every kb_id.
    wanted: Option<BTreeSet<Vec<u8>>>,
    held: Vec<Vec<u8>>,
    unattributed: u64,
}

/// What [`Attributor::finish`] leaves: the held keys, attributed now that
/// every kb_id is known, and the count of keys over the whole pass that
/// were not attributed (they belong to no kb_id, or to one not wanted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    pub attributed: Vec<Attributed>,
    pub unattributed: u64,
}

impl Attributor {
    /// An attributor that knows no kb_id yet: it learns them from markers.
    pub fn new() -> Attributor {
        Attributor::default()
    }

    /// An attributor that takes `kbs` as kb_ids, with or without markers,
    /// and learns more from markers.
    pub fn knowing<I, K>(kbs: I) -> Attributor
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let mut this = Attributor::default();
        for kb in kbs {
            this.learn(kb.as_ref());
        }
        this
    }

    /// Yields only keys of `kbs` (which become known kb_ids too); keys of
    /// other kb_ids, or of none, are dropped as soon as that is certain.
    pub fn wanting<I, K>(mut self, kbs: I) -> Attributor
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let mut wanted = BTreeSet::new();
        for kb in kbs {
            self.learn(kb.as_ref());
            wanted.insert(kb.as_ref().to_vec());
        }
        self.wanted = Some(wanted);
        self
    }

    /// Whether `kb_id` is known (given or learned so far).
    pub fn knows(&self, kb_id: &[u8]) -> bool {
        self.known_set.contains(kb_id)
    }

    fn is_wanted(&self, kb_id: &[u8]) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(kb_id))
    }

    /// Every kb_id known so far (given or learned), in the order first
    /// seen.
    pub fn known_kbs(&self) -> Vec<Vec<u8>> {
        self.known.clone()
    }

    /// Keys held until [`Attributor::finish`].
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Feeds one key. Returns where it belongs when that is certain now;
    /// `None` when the key is held (see [`Attributor::finish`]) or is not
    /// attributed (it belongs to no kb_id, or to one not wanted).
    pub fn push(&mut self, key: Vec<u8>) -> Option<Attributed> {
        let Some(c) = classify_with(&key, &self.known) else {
            self.unattributed += 1;
            return None;
        };
        let (kb_len, category) = (c.kb_id.len(), c.category);
        let kb_id = &key[..kb_len];
        if category != Category::Other {
            if !self.knows(kb_id) {
                self.learn(kb_id);
            }
        } else if !self.knows(kb_id) || key[kb_len + 1..].contains(&b':') {
            // Not certain yet: a longer kb_id may still turn up and own the
            // key. Held only when the candidate is wanted: the owner can
            // only become a longer kb_id, and a longer wanted one (wanted
            // kb_ids are all known) would already be the candidate.
            if self.is_wanted(kb_id) {
                self.held.push(key);
            } else {
                self.unattributed += 1;
            }
            return None;
        }
        if !self.is_wanted(kb_id) {
            self.unattributed += 1;
            return None;
        }
        Some(Attributed {
            kb_id: kb_id.to_vec(),
            key,
            category,
        })
    }

    /// Ends the pass: attributes the held keys against every kb_id now
    /// known.
    pub fn finish(mut self) -> Finished {
        let held = std::mem::take(&mut self.held);
        let mut attributed = Vec::with_capacity(held.len());
        for key in held {
            let owner = classify_with(&key, &self.known)
                .filter(|c| self.knows(c.kb_id) && self.is_wanted(c.kb_id))
                .map(|c| (c.kb_id.len(), c.category));
            match owner {
                Some((kb_len, category)) => attributed.push(Attributed {
                    kb_id: key[..kb_len].to_vec(),
                    key,
                    category,
                }),
                None => self.unattributed += 1,
            }
        }
        Finished {
            attributed,
            unattributed: self.unattributed,
        }
    }

    fn learn(&mut self, kb_id: &[u8]) {
        if self.known_set.insert(kb_id.to_vec()) {
            self.known.push(kb_id.to_vec());
        }
    }
}

/// kb_ids and their key counts per category, from one SCAN pass. Counts may
/// include a key twice when SCAN repeats it (rehashing); they are a census,
/// not an export.
///
/// Only prefixes that some key with a marker proves to be kb_ids are
/// listed (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KbCensus {
    pub kbs: BTreeMap<Vec<u8>, BTreeMap<Category, u64>>,
    /// Keys that belong to no kb_id.
    pub unclassified: u64,
}

/// Counts a [`KbCensus`] from keys fed one by one.
#[derive(Debug, Default)]
pub struct Census {
    attributor: Attributor,
    census: KbCensus,
}

impl Census {
    pub fn new() -> Census {
        Census::default()
    }

    pub fn add(&mut self, key: Vec<u8>) {
        if let Some(a) = self.attributor.push(key) {
            self.count(a);
        }
    }

    pub fn finish(mut self) -> KbCensus {
        let finished = std::mem::take(&mut self.attributor).finish();
        for a in finished.attributed {
            self.count(a);
        }
        self.census.unclassified = finished.unattributed;
        self.census
    }

    fn count(&mut self, a: Attributed) {
        *self
            .census
            .kbs
            .entry(a.kb_id)
            .or_default()
            .entry(a.category)
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owners = BTreeMap<Vec<u8>, (Vec<u8>, Category)>;

    /// Feeds `keys` in order; returns every key's owner and the unowned
    /// count, checking that no key is lost or attributed twice.
    fn run(mut attributor: Attributor, keys: &[&[u8]]) -> (Owners, u64) {
        let mut owners = Owners::new();
        let mut put = |a: Attributed| {
            let previous = owners.insert(a.key.clone(), (a.kb_id, a.category));
            assert!(previous.is_none(), "{:?} attributed twice", a.key);
        };
        for key in keys {
            if let Some(a) = attributor.push(key.to_vec()) {
                put(a);
            }
        }
        let finished = attributor.finish();
        finished.attributed.into_iter().for_each(&mut put);
        assert_eq!(
            owners.len() as u64 + finished.unattributed,
            keys.len() as u64
        );
        (owners, finished.unattributed)
    }

    fn owner<'a>(owners: &'a Owners, key: &[u8]) -> Option<(&'a [u8], Category)> {
        owners.get(key).map(|(kb, c)| (&kb[..], *c))
    }

    /// Every order of `keys`, by Heap's algorithm.
    fn permutations<'a>(keys: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
        fn go<'a>(k: usize, v: &mut Vec<&'a [u8]>, out: &mut Vec<Vec<&'a [u8]>>) {
            if k <= 1 {
                out.push(v.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, v, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                v.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(keys.len(), &mut keys.to_vec(), &mut out);
        out
    }

    #[test]
    fn unmarked_keys_of_a_longer_kb_go_to_it_in_any_order() {
        // The export/diff regression: kb `a` is exported, `a:b` is a kb_id
        // only because a key of it has a marker.
        let keys: [&[u8]; 4] = [b"a:emotives:1", b"a:weird", b"a:b:emotives:2", b"a:b:weird"];
        for order in permutations(&keys) {
            let (owners, unowned) = run(Attributor::knowing([b"a"]), &order);
            assert_eq!(unowned, 0);
            assert_eq!(
                owner(&owners, b"a:emotives:1"),
                Some((&b"a"[..], Category::Emotives))
            );
            assert_eq!(
                owner(&owners, b"a:weird"),
                Some((&b"a"[..], Category::Other))
            );
            assert_eq!(
                owner(&owners, b"a:b:emotives:2"),
                Some((&b"a:b"[..], Category::Emotives))
            );
            assert_eq!(
                owner(&owners, b"a:b:weird"),
                Some((&b"a:b"[..], Category::Other)),
                "{order:?}"
            );
        }
    }

    #[test]
    fn without_a_longer_kb_an_unmarked_key_stays_with_the_shorter() {
        let (owners, _) = run(
            Attributor::knowing([b"a"]),
            &[b"a:b:weird", b"a:emotives:1"],
        );
        assert_eq!(
            owner(&owners, b"a:b:weird"),
            Some((&b"a"[..], Category::Other))
        );
    }

    #[test]
    fn keys_are_attributed_at_once_when_certain_and_held_otherwise() {
        let mut at = Attributor::knowing([b"a"]);
        let now = at.push(b"a:weird".to_vec()).unwrap();
        assert_eq!((&now.kb_id[..], now.category), (&b"a"[..], Category::Other));
        assert!(at.push(b"a:frequency:p:q".to_vec()).is_some());
        assert!(
            at.push(b"a:b:weird".to_vec()).is_none(),
            "a:b may be a kb_id"
        );
        assert!(
            at.push(b"zz:weird".to_vec()).is_none(),
            "zz is not known yet"
        );
        assert_eq!(at.held(), 2);
        // A marker makes `zz` a kb_id; its unmarked keys are certain now.
        assert!(at.push(b"zz:metadata:p".to_vec()).is_some());
        assert!(at.knows(b"zz"));
        let late = at.push(b"zz:other".to_vec()).unwrap();
        assert_eq!(late.kb_id, b"zz");
        let finished = at.finish();
        let kbs: Vec<&[u8]> = finished.attributed.iter().map(|a| &a.kb_id[..]).collect();
        assert_eq!(kbs, vec![&b"a"[..], b"zz"]);
        assert_eq!(finished.unattributed, 0);
    }

    #[test]
    fn the_longest_known_kb_wins() {
        let known: [&[u8]; 2] = [b"a", b"a:b"];
        let (owners, _) = run(
            Attributor::knowing(known),
            &[b"a:b:x", b"a:c", b"a:b:c:x", b"a:b:c:frequency:p"],
        );
        assert_eq!(owner(&owners, b"a:b:x").unwrap().0, b"a:b");
        assert_eq!(owner(&owners, b"a:c").unwrap().0, b"a");
        assert_eq!(owner(&owners, b"a:b:c:x").unwrap().0, b"a:b:c");
        let (owners, _) = run(Attributor::knowing(known), &[b"a:b:c:x"]);
        assert_eq!(owner(&owners, b"a:b:c:x").unwrap().0, b"a:b");
    }

    #[test]
    fn a_prefix_without_markers_is_no_kb_id() {
        let (owners, unowned) = run(
            Attributor::new(),
            &[
                b"cache:user:42",
                b"cache:x",
                b"plain",
                b":leading",
                b"node0:frequency:p",
                b"node0:events",
            ],
        );
        assert_eq!(unowned, 4);
        assert_eq!(
            owner(&owners, b"node0:events"),
            Some((&b"node0"[..], Category::Other))
        );
        // Given up front, a kb_id needs no marker.
        let (owners, unowned) = run(Attributor::knowing([b"cache"]), &[b"cache:x"]);
        assert_eq!((owners.len(), unowned), (1, 0));
    }

    #[test]
    fn a_kb_id_holding_a_marker_does_not_own_keys_under_it() {
        // What a SCAN of `x:emotives:y:frequency:*` returns is kb `x`'s.
        let (owners, _) = run(
            Attributor::knowing([&b"x:emotives:y"[..]]),
            &[b"x:emotives:y:frequency:p"],
        );
        assert_eq!(
            owner(&owners, b"x:emotives:y:frequency:p"),
            Some((&b"x"[..], Category::Emotives))
        );
    }

    #[test]
    fn wanting_some_kbs_drops_the_others_without_holding_them() {
        // A pass over the whole keyspace for kb `a`, knowing kb `a:c`.
        let known: [&[u8]; 2] = [b"a", b"a:c"];
        let mut at = Attributor::knowing(known).wanting([b"a"]);
        for key in [
            &b"cache:user:42"[..],
            b"cache:x",
            b"a:c:weird",
            b"a:c:emotives:p",
            b"b:frequency:p",
            b"plain",
        ] {
            assert!(at.push(key.to_vec()).is_none(), "{key:?}");
        }
        assert_eq!(at.held(), 0);
        assert!(at.push(b"a:b:weird".to_vec()).is_none());
        assert_eq!(at.held(), 1, "a:b:weird may be kb a's");
        assert!(at.push(b"a:weird".to_vec()).is_some());
        let finished = at.finish();
        assert_eq!(finished.attributed.len(), 1);
        assert_eq!(finished.attributed[0].kb_id, b"a");
        assert_eq!(finished.unattributed, 6);
        // Held for `a`, then owned by a longer kb_id that is not wanted.
        let (owners, unattributed) = run(
            Attributor::knowing([b"a"]).wanting([b"a"]),
            &[b"a:b:weird", b"a:b:emotives:2"],
        );
        assert!(owners.is_empty());
        assert_eq!(unattributed, 2);
    }

    #[test]
    fn wanting_gives_what_attributing_everything_gives_for_those_kbs() {
        let keys: [&[u8]; 6] = [
            b"a:emotives:1",
            b"a:weird",
            b"a:b:emotives:2",
            b"a:b:weird",
            b"a:b:c:d",
            b"x:y",
        ];
        for order in permutations(&keys) {
            let (all, _) = run(Attributor::knowing([b"a"]), &order);
            for kb in [&b"a"[..], b"a:b"] {
                let (mine, _) = run(Attributor::knowing([b"a"]).wanting([kb]), &order);
                let expected: Owners = all
                    .iter()
                    .filter(|(_, (owner, _))| owner == kb)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(mine, expected, "{order:?}");
            }
        }
    }

    #[test]
    fn binary_and_glob_kb_ids_are_bytes() {
        let (owners, _) = run(
            Attributor::new(),
            &[b"kb\xff*:frequency:\x00", b"kb\xff*:\x01"],
        );
        assert_eq!(owner(&owners, b"kb\xff*:\x01").unwrap().0, b"kb\xff*");
    }

    #[test]
    fn census_counts_per_kb_and_category() {
        let mut census = Census::new();
        for key in [
            &b"node0:frequency:p"[..],
            b"node0:frequency:q",
            b"node0:weird",
            b"x:y:z",
            b"x:y:emotives:p",
            b"cache:user:42",
            b"plain",
        ] {
            census.add(key.to_vec());
        }
        let census = census.finish();
        let node0 = &census.kbs[&b"node0".to_vec()];
        assert_eq!(node0[&Category::Frequency], 2);
        assert_eq!(node0[&Category::Other], 1);
        let xy = &census.kbs[&b"x:y".to_vec()];
        assert_eq!((xy[&Category::Emotives], xy[&Category::Other]), (1, 1));
        assert_eq!(census.kbs.len(), 2);
        assert_eq!(census.unclassified, 2);
    }
}
