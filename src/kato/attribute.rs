//! Which group owns each key of a whole pass over a keyspace.
//!
//! Every key of a db belongs to exactly one group (see `kato`'s catalogue):
//! a kb_id, KATO's global keys, or foreign keys; kbdump's own temporary
//! keys are counted apart and never yielded. [`outside`] recognises KATO's
//! global keys and the `stm:events:{kb_id}` streams by their fixed text;
//! [`classify_with`] decides the other keys given the kb_ids known so far.
//! Over a SCAN pass that is not enough, because a kb_id may contain `:`:
//! an unmarked key `a:b:x` belongs to kb `a:b` when `a:b` is a kb_id, else
//! to kb `a`, else (no kb_id prefixes it) it is foreign, and whether `a:b`
//! is a kb_id is only known once the pass has seen some key of it. The
//! rule, written once here:
//!
//! - kb_ids are given up front (the caller's, trusted) or **learned** from
//!   keys that carry a category marker or name their kb_id
//!   (`stm:events:{kb_id}`): a prefix counts as a kb_id only when some key
//!   proves it (`cache:user:42` does not make `cache` a knowledge base);
//! - a key with a marker is attributed at once, to the kb_id before its
//!   first marker;
//! - a key without a marker is attributed at once to the longest known kb_id
//!   that prefixes it when no longer kb_id could own it (no `:` after that
//!   kb_id's `:`); otherwise it is **held** until the pass is over and every
//!   kb_id is known, and [`Attributor::finish`] attributes it then;
//! - a key under no known kb_id is foreign.
//!
//! A caller that wants some keys only says so ([`Attributor::wanting`],
//! [`Attributor::want`]): keys that cannot be wanted are dropped as soon as
//! that is certain instead of being held, so a pass over a whole keyspace
//! does not hold other applications' keys. A caller that knows every kb_id
//! already (from a [`Census`] just taken) says so too
//! ([`Attributor::complete`]) and nothing is held at all.
//!
//! [`Census`] counts a whole pass by the same rule without holding keys: an
//! unmarked key's owner depends only on the key without its last
//! `:`-segment, so it holds one counter per such parent instead.
//!
//! Pure: fed keys, it says where they belong; the SCAN is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use super::{classify_by_marker, classify_with, outside, Category, Group, Outside};

/// A key and where it belongs. `kb_id` is empty for keys outside any kb_id
/// (KATO's global keys, foreign keys: see [`Attributed::group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    pub key: Vec<u8>,
    pub kb_id: Vec<u8>,
    pub category: Category,
}

impl Attributed {
    pub fn group(&self) -> Group {
        Group::of(&self.kb_id, self.category)
    }
}

/// Which keys a caller wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The kb_ids whose keys are wanted; `None`: every kb_id.
    pub kbs: Option<BTreeSet<Vec<u8>>>,
    /// KATO's global keys.
    pub kato: bool,
    /// Foreign keys.
    pub foreign: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Wanted::everything()
    }
}

impl Wanted {
    /// Every key of every group.
    pub fn everything() -> Wanted {
        Wanted {
            kbs: None,
            kato: true,
            foreign: true,
        }
    }

    /// The keys of `kbs` only.
    pub fn kbs<I, K>(kbs: I) -> Wanted
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        Wanted {
            kbs: Some(kbs.into_iter().map(|k| k.as_ref().to_vec()).collect()),
            kato: false,
            foreign: false,
        }
    }

    fn kb(&self, kb_id: &[u8]) -> bool {
        self.kbs.as_ref().is_none_or(|w| w.contains(kb_id))
    }

    /// Whether a key of this kb_id (empty outside kb_ids) and category is
    /// wanted.
    pub fn place(&self, kb_id: &[u8], category: Category) -> bool {
        match Group::of(kb_id, category) {
            Group::Kb => self.kb(kb_id),
            Group::Kato => self.kato,
            Group::Foreign => self.foreign,
        }
    }
}

/// Attributes the keys of one pass (see the module documentation).
#[derive(Debug, Default)]
pub struct Attributor {
    /// kb_ids given up front or learned, for [`classify_with`].
    known: Vec<Vec<u8>>,
    known_set: BTreeSet<Vec<u8>>,
    wanted: Wanted,
    /// Every kb_id is known up front: hold nothing.
    complete: bool,
    held: Vec<Vec<u8>>,
    dropped: u64,
    temporary: u64,
}

/// What [`Attributor::finish`] leaves: the held keys, attributed now that
/// every kb_id is known, the count of keys over the whole pass that were
/// not wanted, and of kbdump's temporary keys (never attributed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    pub attributed: Vec<Attributed>,
    pub dropped: u64,
    pub temporary: u64,
}

impl Attributor {
    /// An attributor that knows no kb_id yet (it learns them from markers)
    /// and wants every key.
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
    pub fn wanting<I, K>(self, kbs: I) -> Attributor
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        self.want(Wanted::kbs(kbs))
    }

    /// Yields only the keys `wanted` names; its kb_ids become known.
    pub fn want(mut self, wanted: Wanted) -> Attributor {
        for kb in wanted.kbs.iter().flatten() {
            self.learn(kb);
        }
        self.wanted = wanted;
        self
    }

    /// The kb_ids given are every kb_id of the keyspace (a census was just
    /// taken): an unmarked key is attributed at once, to the longest known
    /// kb_id that prefixes it or else as foreign, and nothing is held. A
    /// kb_id created after the census is still learned from its markers.
    pub fn complete(mut self) -> Attributor {
        self.complete = true;
        self
    }

    /// Whether `kb_id` is known (given or learned so far).
    pub fn knows(&self, kb_id: &[u8]) -> bool {
        self.known_set.contains(kb_id)
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

    /// Feeds one key. Returns where it belongs when that is certain now and
    /// it is wanted; `None` when the key is held (see
    /// [`Attributor::finish`]), not wanted, or one of kbdump's temporary
    /// keys.
    pub fn push(&mut self, key: Vec<u8>) -> Option<Attributed> {
        match outside(&key) {
            Some(Outside::Temporary) => {
                self.temporary += 1;
                return None;
            }
            Some(Outside::Kato(category)) => return self.keep(key, Vec::new(), category),
            Some(Outside::Kb(c)) => {
                let (kb_id, category) = (c.kb_id.to_vec(), c.category);
                self.learn(&kb_id);
                return self.keep(key, kb_id, category);
            }
            None => {}
        }
        let Some(c) = classify_with(&key, &self.known) else {
            return self.keep(key, Vec::new(), Category::Foreign);
        };
        let (kb_len, category) = (c.kb_id.len(), c.category);
        let known = self.knows(&key[..kb_len]);
        if category != Category::Other {
            if !known {
                self.learn(&key[..kb_len]);
            }
            let kb_id = key[..kb_len].to_vec();
            return self.keep(key, kb_id, category);
        }
        let certain = known && !key[kb_len + 1..].contains(&b':');
        if certain || (self.complete && known) {
            let kb_id = key[..kb_len].to_vec();
            return self.keep(key, kb_id, category);
        }
        if self.complete {
            return self.keep(key, Vec::new(), Category::Foreign);
        }
        // Not certain yet: a longer kb_id may still turn up and own the
        // key, or none may (then it is foreign). Held only when the owner
        // can be wanted: a longer wanted kb_id (wanted kb_ids are all
        // known) would already be the candidate.
        let could_be_wanted = if known {
            self.wanted.kb(&key[..kb_len])
        } else {
            self.wanted.kbs.is_none() || self.wanted.foreign
        };
        if could_be_wanted {
            self.held.push(key);
        } else {
            self.dropped += 1;
        }
        None
    }

    /// Ends the pass: attributes the held keys against every kb_id now
    /// known.
    pub fn finish(mut self) -> Finished {
        let held = std::mem::take(&mut self.held);
        let mut attributed = Vec::with_capacity(held.len());
        for key in held {
            let owner = classify_with(&key, &self.known)
                .filter(|c| self.knows(c.kb_id))
                .map(|c| c.kb_id.len());
            let (kb_id, category) = match owner {
                Some(kb_len) => (key[..kb_len].to_vec(), Category::Other),
                None => (Vec::new(), Category::Foreign),
            };
            attributed.extend(self.keep(key, kb_id, category));
        }
        Finished {
            attributed,
            dropped: self.dropped,
            temporary: self.temporary,
        }
    }

    /// The key, attributed, when wanted; else counted as dropped.
    fn keep(&mut self, key: Vec<u8>, kb_id: Vec<u8>, category: Category) -> Option<Attributed> {
        if !self.wanted.place(&kb_id, category) {
            self.dropped += 1;
            return None;
        }
        Some(Attributed {
            key,
            kb_id,
            category,
        })
    }

    fn learn(&mut self, kb_id: &[u8]) {
        if self.known_set.insert(kb_id.to_vec()) {
            self.known.push(kb_id.to_vec());
        }
    }
}

/// Every key of a keyspace counted by group, from one SCAN pass: kb_ids
/// with their key counts per category, KATO's global keys per category,
/// foreign keys, kbdump's temporary keys. Counts may include a key twice
/// when SCAN repeats it (rehashing); they are a census, not an export.
///
/// Only prefixes that some key proves to be kb_ids are listed (see the
/// module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyspaceCensus {
    pub kbs: BTreeMap<Vec<u8>, BTreeMap<Category, u64>>,
    /// KATO's keys outside any kb_id, per category.
    pub kato: BTreeMap<Category, u64>,
    /// Keys that are not KATO's.
    pub foreign: u64,
    /// kbdump's own temporary keys (never exported).
    pub temporary: u64,
}

impl KeyspaceCensus {
    /// A census of counted cells, `(kb_id, category, keys)` with an empty
    /// kb_id outside kb_ids (an archive's blocks, say).
    pub fn from_cells<'a>(cells: impl IntoIterator<Item = (&'a [u8], Category, u64)>) -> Self {
        let mut census = KeyspaceCensus::default();
        for (kb_id, category, n) in cells {
            match Group::of(kb_id, category) {
                Group::Kb => {
                    let kb = census.kbs.entry(kb_id.to_vec()).or_default();
                    *kb.entry(category).or_default() += n;
                }
                Group::Kato => *census.kato.entry(category).or_default() += n,
                Group::Foreign => census.foreign += n,
            }
        }
        census
    }

    /// The kb_ids found, sorted.
    pub fn kb_ids(&self) -> Vec<Vec<u8>> {
        self.kbs.keys().cloned().collect()
    }

    /// Keys of kb_ids.
    pub fn kb_keys(&self) -> u64 {
        self.kbs.values().flat_map(BTreeMap::values).sum()
    }

    /// KATO's global keys.
    pub fn kato_keys(&self) -> u64 {
        self.kato.values().sum()
    }

    /// Keys of one group.
    pub fn keys_of(&self, group: Group) -> u64 {
        match group {
            Group::Kb => self.kb_keys(),
            Group::Kato => self.kato_keys(),
            Group::Foreign => self.foreign,
        }
    }

    /// Every key counted, kbdump's temporary keys included.
    pub fn total(&self) -> u64 {
        self.kb_keys() + self.kato_keys() + self.foreign + self.temporary
    }

    /// Every `(kb_id, category, keys)` cell; keys outside any kb_id have an
    /// empty kb_id, as in archives. kbdump's temporary keys are in none.
    pub fn cells(&self) -> Vec<(&[u8], Category, u64)> {
        let kbs = self
            .kbs
            .iter()
            .flat_map(|(kb, cats)| cats.iter().map(move |(c, n)| (&kb[..], *c, *n)));
        let kato = self.kato.iter().map(|(c, n)| (&b""[..], *c, *n));
        let foreign = (self.foreign > 0).then_some((&b""[..], Category::Foreign, self.foreign));
        kbs.chain(kato).chain(foreign).collect()
    }
}

/// Counts a [`KeyspaceCensus`] from keys fed one by one, by the
/// attribution rule of this module, holding one counter per parent of an
/// unmarked key instead of the keys.
#[derive(Debug, Default)]
pub struct Census {
    known: BTreeSet<Vec<u8>>,
    /// Unmarked keys per parent (the key up to its last `:`), whose owner
    /// is decided once every kb_id is known.
    pending: BTreeMap<Vec<u8>, u64>,
    census: KeyspaceCensus,
}

impl Census {
    pub fn new() -> Census {
        Census::default()
    }

    /// A census that takes `kbs` as kb_ids, with or without markers (the
    /// kb_ids a user named literally); they are listed only if some key
    /// belongs to them.
    pub fn knowing<I, K>(kbs: I) -> Census
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        Census {
            known: kbs.into_iter().map(|k| k.as_ref().to_vec()).collect(),
            ..Census::default()
        }
    }

    pub fn add(&mut self, key: Vec<u8>) {
        let c = &mut self.census;
        match outside(&key) {
            Some(Outside::Temporary) => c.temporary += 1,
            Some(Outside::Kato(category)) => *c.kato.entry(category).or_default() += 1,
            Some(Outside::Kb(found)) => {
                let kb_id = found.kb_id.to_vec();
                self.count(kb_id, found.category, 1);
            }
            None => match classify_by_marker(&key) {
                Some(found) => {
                    let kb_id = found.kb_id.to_vec();
                    self.count(kb_id, found.category, 1);
                }
                None => match key.iter().rposition(|&b| b == b':') {
                    Some(at) if at > 0 => *self.pending.entry(key[..at].to_vec()).or_default() += 1,
                    _ => c.foreign += 1,
                },
            },
        }
    }

    pub fn finish(mut self) -> KeyspaceCensus {
        for (parent, n) in std::mem::take(&mut self.pending) {
            match self.owner_of_children(&parent) {
                Some(kb_len) => self.count(parent[..kb_len].to_vec(), Category::Other, n),
                None => self.census.foreign += n,
            }
        }
        self.census
    }

    /// The kb_id that owns the unmarked keys `{parent}:{last segment}`: the
    /// longest known kb_id that is `parent` or prefixes it up to a `:`.
    fn owner_of_children(&self, parent: &[u8]) -> Option<usize> {
        let colons = parent.iter().enumerate().filter(|(_, &b)| b == b':');
        let ends = colons.map(|(i, _)| i).chain([parent.len()]);
        ends.filter(|&end| end > 0 && self.known.contains(&parent[..end]))
            .max()
    }

    fn count(&mut self, kb_id: Vec<u8>, category: Category, n: u64) {
        if !self.known.contains(&kb_id) {
            self.known.insert(kb_id.clone());
        }
        *self
            .census
            .kbs
            .entry(kb_id)
            .or_default()
            .entry(category)
            .or_default() += n;
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
            owners.len() as u64 + finished.dropped + finished.temporary,
            keys.len() as u64
        );
        (owners, finished.dropped)
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
        assert_eq!(finished.dropped, 0);
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
    fn a_prefix_without_markers_is_no_kb_id_but_foreign() {
        let (owners, dropped) = run(
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
        assert_eq!(dropped, 0);
        for key in [&b"cache:user:42"[..], b"cache:x", b"plain", b":leading"] {
            assert_eq!(owner(&owners, key), Some((&b""[..], Category::Foreign)));
        }
        assert_eq!(
            owner(&owners, b"node0:events"),
            Some((&b"node0"[..], Category::Other))
        );
        // Given up front, a kb_id needs no marker.
        let (owners, dropped) = run(Attributor::knowing([b"cache"]), &[b"cache:x"]);
        assert_eq!(owner(&owners, b"cache:x").unwrap().0, b"cache");
        assert_eq!(dropped, 0);
    }

    #[test]
    fn every_key_falls_into_one_group() {
        let keys: [&[u8]; 9] = [
            b"node0:frequency:p",
            b"stm:events:node0",
            b"stm:events:fresh",
            b"stm:global",
            b"kato:session:session-ab-1",
            b"kato:metrics:entropy:0cc1",
            b"patterns:top:s:10",
            b"other_app:thing",
            b"__kbdump_tmp:{node0:frequency:p}:1:0",
        ];
        let mut at = Attributor::new();
        let mut got = Owners::new();
        for key in keys {
            if let Some(a) = at.push(key.to_vec()) {
                got.insert(a.key.clone(), (a.kb_id, a.category));
            }
        }
        let finished = at.finish();
        for a in finished.attributed {
            got.insert(a.key.clone(), (a.kb_id, a.category));
        }
        assert_eq!(finished.temporary, 1);
        assert_eq!(got.len(), 8);
        let of = |k: &[u8]| owner(&got, k).unwrap();
        assert_eq!(of(b"stm:events:node0"), (&b"node0"[..], Category::Stm));
        // A kb_id whose only key is its STM stream is a kb_id.
        assert_eq!(of(b"stm:events:fresh"), (&b"fresh"[..], Category::Stm));
        assert_eq!(of(b"stm:global"), (&b""[..], Category::Stm));
        assert_eq!(of(b"kato:session:session-ab-1").1, Category::Sessions);
        assert_eq!(
            of(b"kato:metrics:entropy:0cc1"),
            (&b""[..], Category::Caches)
        );
        assert_eq!(of(b"patterns:top:s:10").1, Category::Caches);
        assert_eq!(of(b"other_app:thing"), (&b""[..], Category::Foreign));
    }

    #[test]
    fn wanting_groups_keeps_only_them() {
        let keys: [&[u8]; 5] = [
            b"a:frequency:p",
            b"stm:events:a",
            b"kato:session:s",
            b"cache:x:y",
            b"plain",
        ];
        let want = |kato, foreign| Wanted {
            kbs: Some(BTreeSet::new()),
            kato,
            foreign,
        };
        let (owners, dropped) = run(Attributor::new().want(want(true, false)), &keys);
        assert_eq!(
            owners.keys().collect::<Vec<_>>(),
            [&b"kato:session:s".to_vec()]
        );
        assert_eq!(dropped, 4);
        let (owners, _) = run(Attributor::new().want(want(false, true)), &keys);
        assert_eq!(owners.len(), 2);
        assert!(owners
            .values()
            .all(|(kb, c)| kb.is_empty() && *c == Category::Foreign));
        let (owners, _) = run(Attributor::new().wanting([b"a"]), &keys);
        assert_eq!(owners.len(), 2, "{owners:?}");
    }

    #[test]
    fn a_complete_attributor_holds_nothing() {
        let keys: [&[u8]; 5] = [
            b"a:b:weird",
            b"a:weird",
            b"zz:weird",
            b"x:y:z",
            b"a:b:frequency:p",
        ];
        let known: [&[u8]; 2] = [b"a", b"a:b"];
        let mut at = Attributor::knowing(known).complete();
        let now: Vec<_> = keys.iter().filter_map(|k| at.push(k.to_vec())).collect();
        assert_eq!(at.held(), 0);
        assert_eq!(now.len(), 5);
        assert_eq!(now[0].kb_id, b"a:b");
        assert_eq!(now[1].kb_id, b"a");
        assert_eq!(
            (now[2].kb_id.as_slice(), now[2].category),
            (&b""[..], Category::Foreign)
        );
        assert_eq!(now[3].category, Category::Foreign);
        assert_eq!(at.finish().attributed, Vec::new());
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
        assert_eq!(finished.dropped, 6);
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
    fn census_counts_per_group_and_category() {
        let mut census = Census::new();
        for key in [
            &b"node0:frequency:p"[..],
            b"node0:frequency:q",
            b"node0:weird",
            b"x:y:z",
            b"x:y:emotives:p",
            b"cache:user:42",
            b"plain",
            b"stm:events:node0",
            b"stm:global",
            b"kato:session:s1",
            b"kato:metrics:frequency:0cc1",
            b"__kbdump_tmp:{node0:frequency:p}:1:0",
        ] {
            census.add(key.to_vec());
        }
        let census = census.finish();
        let node0 = &census.kbs[&b"node0".to_vec()];
        assert_eq!(node0[&Category::Frequency], 2);
        assert_eq!(node0[&Category::Other], 1);
        assert_eq!(node0[&Category::Stm], 1);
        let xy = &census.kbs[&b"x:y".to_vec()];
        assert_eq!((xy[&Category::Emotives], xy[&Category::Other]), (1, 1));
        assert_eq!(census.kb_ids(), vec![b"node0".to_vec(), b"x:y".to_vec()]);
        assert_eq!(census.foreign, 2);
        assert_eq!(census.kato[&Category::Stm], 1);
        assert_eq!(census.kato[&Category::Sessions], 1);
        assert_eq!(census.kato[&Category::Caches], 1);
        assert_eq!(census.temporary, 1);
        assert_eq!(census.total(), 12);
        assert_eq!(census.cells().iter().map(|c| c.2).sum::<u64>(), 11);
        let again = KeyspaceCensus::from_cells(census.cells());
        assert_eq!(
            again,
            KeyspaceCensus {
                temporary: 0,
                ..census
            }
        );
    }

    #[test]
    fn the_census_counts_what_the_attributor_attributes() {
        let keys: [&[u8]; 7] = [
            b"a:emotives:1",
            b"a:weird",
            b"a:b:emotives:2",
            b"a:b:weird",
            b"a:b:c:d",
            b"x:y",
            b"stm:events:a:b",
        ];
        for order in permutations(&keys) {
            let (owners, _) = run(Attributor::new(), &order);
            let mut expected = KeyspaceCensus::default();
            for (kb, c) in owners.values() {
                match Group::of(kb, *c) {
                    Group::Kb => {
                        *expected
                            .kbs
                            .entry(kb.clone())
                            .or_default()
                            .entry(*c)
                            .or_default() += 1
                    }
                    Group::Kato => *expected.kato.entry(*c).or_default() += 1,
                    Group::Foreign => expected.foreign += 1,
                }
            }
            let mut census = Census::new();
            order.iter().for_each(|k| census.add(k.to_vec()));
            assert_eq!(census.finish(), expected, "{order:?}");
        }
    }
}
