//! Replays an AOF's commands in memory, for the selected keys only.
//!
//! The base's keys come in as DUMP payloads ([`Replay::base_key`]); each
//! command of the incremental parts then changes the keys it names
//! ([`Replay::command`]). A payload is decoded only when a command needs
//! its value (an `HSET`, an `INCR`), and re-encoded at the end with the
//! plain types ([`crate::format::dump::encode`]); a key no command changed,
//! or one whose commands only move it (`RENAME`) or change its expiry,
//! keeps its base payload byte for byte.
//!
//! What the server wrote is what it executed, so the replay follows the
//! server's loader: no key expires during the replay (a loading server
//! expires nothing either), `MULTI` … `EXEC` is applied at `EXEC`, and a
//! `MULTI` the AOF ends inside is dropped. A command that cannot be
//! replayed faithfully (a stream command, `SPOP`, an unknown command)
//! marks each selected key it names as damaged with the reason, until a
//! command replaces the whole value (`SET`, `DEL`, `RESTORE`).
//!
//! Memory: the selected keys, with their values, until the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::resp::Command;
use crate::format::dump::{self, HashField, Value};

/// The RDB version sealed into re-encoded payloads when the base gave none
/// (a RESP base): Redis 5.0's, which every supported server restores.
pub const PLAIN_RDB_VERSION: u16 = 9;

/// One key at the end of the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalKey {
    pub db: u64,
    pub key: Vec<u8>,
    /// The key's payload and absolute expiry (unix ms), or why its value
    /// is not known.
    pub outcome: Result<(Vec<u8>, Option<i64>), String>,
}

/// What the replay leaves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// Every selected key that exists at the end, sorted by db and key.
    pub keys: Vec<FinalKey>,
    /// A `MULTI` that the input ended inside: the byte offset of its
    /// `MULTI` and how many commands it queued (dropped, as the server
    /// drops them).
    pub open_multi: Option<(u64, usize)>,
    /// Commands that name no key and could not be replayed.
    pub notes: Vec<String>,
}

/// Which keys the replay keeps: `(db, key)` → selected.
pub type Wants<'a> = Box<dyn FnMut(u64, &[u8]) -> bool + 'a>;

/// The replay's state: see the module documentation.
pub struct Replay<'a> {
    wants: Wants<'a>,
    now_ms: i64,
    rdb_version: u16,
    db: u64,
    keys: HashMap<(u64, Vec<u8>), Entry>,
    multi: Option<(u64, Vec<Command>)>,
    notes: Vec<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    held: Held,
    expire_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
enum Held {
    /// The payload as the base had it (never decoded).
    Payload(Vec<u8>),
    Live(Live),
    /// Exists, value unknown: why.
    Damaged(String),
}

/// A value being changed, in a form that makes each command cheap.
#[derive(Debug, Clone, PartialEq)]
enum Live {
    Str(Vec<u8>),
    List(VecDeque<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    ZSet(BTreeMap<Vec<u8>, f64>),
}

type Step = Result<(), String>;

const WRONG_TYPE: &str = "holds another type than the command works on";

impl<'a> Replay<'a> {
    /// A replay keeping the keys `wants` selects. `now_ms` is the instant
    /// relative expiries (`EXPIRE 60`, `SET … EX 60`) count from, as the
    /// loading server counts them; `rdb_version` seals re-encoded values
    /// (the base's version, or [`PLAIN_RDB_VERSION`]).
    pub fn new(wants: Wants<'a>, now_ms: i64, rdb_version: u16) -> Replay<'a> {
        Replay {
            wants,
            now_ms,
            rdb_version,
            db: 0,
            keys: HashMap::new(),
            multi: None,
            notes: Vec::new(),
        }
    }

    /// The RDB version re-encoded values are sealed with (a base read
    /// after [`Replay::new`] may set it).
    pub fn set_rdb_version(&mut self, version: u16) {
        self.rdb_version = version;
    }

    /// A key of the base (an RDB record).
    pub fn base_key(&mut self, db: u64, key: Vec<u8>, payload: Vec<u8>, expire_at_ms: Option<i64>) {
        if (self.wants)(db, &key) {
            let held = Held::Payload(payload);
            self.keys.insert((db, key), Entry { held, expire_at_ms });
        }
    }

    /// Selected keys held now.
    pub fn held(&self) -> usize {
        self.keys.len()
    }

    /// Applies one command (queued while a `MULTI` is open). `place`
    /// names where it sits (file and offset) for the reasons of damage.
    pub fn command(&mut self, cmd: Command, place: &str) {
        let name = cmd.name();
        match name.as_slice() {
            b"MULTI" => {
                if self.multi.is_none() {
                    self.multi = Some((cmd.offset, Vec::new()));
                }
            }
            b"EXEC" => {
                for queued in self.multi.take().map(|m| m.1).unwrap_or_default() {
                    self.apply(&queued, place);
                }
            }
            b"DISCARD" => self.multi = None,
            _ => match &mut self.multi {
                Some((_, queue)) => queue.push(cmd),
                None => self.apply(&cmd, place),
            },
        }
    }

    /// Ends the replay: every selected key that exists, encoded.
    pub fn finish(self) -> Finished {
        let rdb_version = self.rdb_version;
        let mut keys: Vec<FinalKey> = self
            .keys
            .into_iter()
            .map(|((db, key), entry)| FinalKey {
                db,
                key,
                outcome: entry.finish(rdb_version),
            })
            .collect();
        keys.sort_by(|a, b| (a.db, &a.key).cmp(&(b.db, &b.key)));
        Finished {
            keys,
            open_multi: self.multi.map(|(at, q)| (at, q.len())),
            notes: self.notes,
        }
    }

    fn apply(&mut self, cmd: &Command, place: &str) {
        let args = &cmd.args;
        let name = cmd.name();
        let at = || {
            format!(
                "{} at byte {} of {place}",
                String::from_utf8_lossy(&name),
                cmd.offset
            )
        };
        match self.keyless(&name, args) {
            Some(Ok(())) => return,
            Some(Err(why)) => {
                self.notes.push(format!("{}: {why}", at()));
                return;
            }
            None => {}
        }
        for (key, result) in self.keyed(&name, args) {
            if let Err(why) = result {
                self.damage(&key, format!("{}: {why}", at()));
            }
        }
    }

    /// Commands that name no key; `None` for the others.
    fn keyless(&mut self, name: &[u8], args: &[Vec<u8>]) -> Option<Step> {
        Some(match name {
            b"SELECT" => match args.get(1).and_then(|a| parse_u64(a)) {
                Some(db) => {
                    self.db = db;
                    Ok(())
                }
                None => Err("no database number".into()),
            },
            b"FLUSHDB" => {
                let db = self.db;
                self.keys.retain(|(d, _), _| *d != db);
                Ok(())
            }
            b"FLUSHALL" => {
                self.keys.clear();
                Ok(())
            }
            b"SWAPDB" => {
                self.swap_dbs(args);
                Err("SWAPDB is not replayed: the keys of both databases are marked damaged".into())
            }
            // Server-side state without keys.
            b"FUNCTION" | b"SCRIPT" | b"PING" => Ok(()),
            _ if args.len() < 2 => Err("an unknown command without a key".into()),
            _ => return None,
        })
    }

    fn swap_dbs(&mut self, args: &[Vec<u8>]) {
        let dbs: Vec<u64> = args[1..].iter().filter_map(|a| parse_u64(a)).collect();
        for ((db, _), entry) in self.keys.iter_mut() {
            if dbs.contains(db) {
                entry.held = Held::Damaged("SWAPDB swapped its database".into());
            }
        }
    }

    /// Applies a command that names keys; the result per selected key.
    fn keyed(&mut self, name: &[u8], args: &[Vec<u8>]) -> Vec<(Vec<u8>, Step)> {
        let db = self.db;
        match name {
            b"DEL" | b"UNLINK" => {
                for key in &args[1..] {
                    self.keys.remove(&(db, key.clone()));
                }
                Vec::new()
            }
            b"MSET" | b"MSETNX" => {
                let all_absent = args[1..].chunks(2).all(|p| !self.exists(&p[0]));
                if name == b"MSETNX" && !all_absent {
                    return Vec::new();
                }
                let mut out = Vec::new();
                for pair in args[1..].chunks(2) {
                    let step = match pair {
                        [k, v] => {
                            self.put(k, Live::Str(v.clone()), None);
                            Ok(())
                        }
                        _ => Err("a key without a value".into()),
                    };
                    out.push((pair[0].clone(), step));
                }
                out
            }
            b"RENAME" | b"RENAMENX" => self.rename(args, name == b"RENAMENX"),
            b"COPY" => self.copy(args),
            b"SMOVE" => self.smove(args),
            b"RPOPLPUSH" | b"LMOVE" => self.lmove(args),
            b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
                let n = args.get(2).and_then(|a| parse_u64(a)).unwrap_or(0) as usize;
                let keys = args.iter().skip(3).take(n).cloned();
                let why = "a script's effects are not replayed (servers before 7.0 may write the script itself)";
                keys.map(|k| (k, Err(why.to_string()))).collect()
            }
            // `XGROUP CREATE key group id`: the key comes second.
            b"XGROUP" => match args.get(2) {
                Some(key) if self.selected(key) => {
                    vec![(key.clone(), self.one_key(name, key, &[]))]
                }
                _ => Vec::new(),
            },
            _ => {
                let key = args[1].clone();
                if !self.selected(&key) {
                    return Vec::new();
                }
                let step = self.one_key(name, &key, &args[2..]);
                vec![(key, step)]
            }
        }
    }

    fn selected(&mut self, key: &[u8]) -> bool {
        (self.wants)(self.db, key)
    }

    fn exists(&self, key: &[u8]) -> bool {
        self.keys.contains_key(&(self.db, key.to_vec()))
    }

    /// Replaces a selected key's whole value (damage is forgotten).
    fn put(&mut self, key: &[u8], value: Live, expire_at_ms: Option<i64>) {
        if self.selected(key) {
            let held = Held::Live(value);
            self.keys
                .insert((self.db, key.to_vec()), Entry { held, expire_at_ms });
        }
    }

    fn damage(&mut self, key: &[u8], why: String) {
        if !self.selected(key) {
            return;
        }
        let entry = self.keys.entry((self.db, key.to_vec())).or_insert(Entry {
            held: Held::Damaged(String::new()),
            expire_at_ms: None,
        });
        if !matches!(entry.held, Held::Damaged(ref w) if !w.is_empty()) {
            entry.held = Held::Damaged(why);
        }
    }

    /// The live value of a selected key, decoded from its payload on first
    /// use; `Ok(None)` when the key does not exist.
    fn live(&mut self, key: &[u8]) -> Result<Option<&mut Entry>, String> {
        let Some(entry) = self.keys.get_mut(&(self.db, key.to_vec())) else {
            return Ok(None);
        };
        if let Held::Payload(p) = &entry.held {
            entry.held = Held::Live(Live::from_payload(p)?);
        }
        match &entry.held {
            Held::Damaged(why) => Err(format!("the value was already unknown ({why})")),
            _ => Ok(Some(entry)),
        }
    }

    /// Commands on one key (`args` after the key).
    fn one_key(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        match name {
            b"SET" => self.set(key, args),
            b"SETNX" => {
                if !self.exists(key) {
                    self.put(key, Live::Str(arg(args, 0)?.to_vec()), None);
                }
                Ok(())
            }
            b"SETEX" | b"PSETEX" => {
                let n = int(arg(args, 0)?)?;
                let ms = if name == b"SETEX" { n.saturating_mul(1000) } else { n };
                let at = self.now_ms.saturating_add(ms);
                self.put(key, Live::Str(arg(args, 1)?.to_vec()), Some(at));
                Ok(())
            }
            b"GETSET" => {
                self.put(key, Live::Str(arg(args, 0)?.to_vec()), None);
                Ok(())
            }
            b"GETDEL" => {
                self.keys.remove(&(self.db, key.to_vec()));
                Ok(())
            }
            b"RESTORE" => self.restore(key, args),
            b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" => self.expire(name, key, args),
            b"PERSIST" => {
                if let Some(e) = self.keys.get_mut(&(self.db, key.to_vec())) {
                    e.expire_at_ms = None;
                }
                Ok(())
            }
            b"GETEX" => self.getex(key, args),
            b"INCR" => self.incr(key, 1),
            b"DECR" => self.incr(key, -1),
            b"INCRBY" => self.incr(key, int(arg(args, 0)?)?),
            b"DECRBY" => self.incr(key, int(arg(args, 0)?)?.checked_neg().ok_or("overflow")?),
            b"APPEND" => self.string_edit(key, |s| s.extend_from_slice(&args[0]), args),
            b"SETRANGE" => {
                let offset = usize::try_from(int(arg(args, 0)?)?).map_err(|_| "bad offset")?;
                let value = arg(args, 1)?.to_vec();
                if offset.saturating_add(value.len()) > 512 << 20 {
                    return Err("string longer than 512 MiB".into());
                }
                self.string_edit(key, |s| splice(s, offset, &value), args)
            }
            b"INCRBYFLOAT" | b"HINCRBYFLOAT" => {
                Err("not replayed: servers write its result (SET or HSET) into the AOF, so this AOF was not written by one".into())
            }
            b"HSET" | b"HMSET" | b"HSETNX" | b"HDEL" | b"HINCRBY" => self.hash(name, key, args),
            b"SADD" | b"SREM" => self.set_members(name, key, args),
            b"ZADD" | b"ZINCRBY" | b"ZREM" | b"ZPOPMIN" | b"ZPOPMAX" => self.zset(name, key, args),
            b"RPUSH" | b"LPUSH" | b"RPUSHX" | b"LPUSHX" | b"LPOP" | b"RPOP" | b"LREM" | b"LTRIM"
            | b"LSET" | b"LINSERT" => self.list(name, key, args),
            _ if name.starts_with(b"X") => Err(
                "stream commands are not replayed; the stream's last state is unknown (read it from a server that loaded this AOF)".into(),
            ),
            _ => Err("this command is not replayed by kbdump, so the key's last state is unknown".into()),
        }
    }

    fn set(&mut self, key: &[u8], args: &[Vec<u8>]) -> Step {
        let value = arg(args, 0)?.to_vec();
        let (mut nx, mut xx, mut keep_ttl, mut expire) = (false, false, false, None);
        let mut opts = args[1..].iter();
        while let Some(opt) = opts.next() {
            let mut at = |scale: i64, relative: bool| -> Result<Option<i64>, String> {
                let n = int(opts.next().ok_or("an expiry option without its time")?)?;
                let ms = n.saturating_mul(scale);
                Ok(Some(if relative {
                    self.now_ms.saturating_add(ms)
                } else {
                    ms
                }))
            };
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GET" => {}
                b"KEEPTTL" => keep_ttl = true,
                b"EX" => expire = at(1000, true)?,
                b"PX" => expire = at(1, true)?,
                b"EXAT" => expire = at(1000, false)?,
                b"PXAT" => expire = at(1, false)?,
                other => {
                    return Err(format!(
                        "unknown SET option {:?}",
                        other.escape_ascii().to_string()
                    ))
                }
            }
        }
        let old = self.keys.get(&(self.db, key.to_vec()));
        if (nx && old.is_some()) || (xx && old.is_none()) {
            return Ok(());
        }
        let expire = match keep_ttl {
            true => old.and_then(|e| e.expire_at_ms),
            false => expire,
        };
        self.put(key, Live::Str(value), expire);
        Ok(())
    }

    fn restore(&mut self, key: &[u8], args: &[Vec<u8>]) -> Step {
        let ttl = int(arg(args, 0)?)?;
        let payload = arg(args, 1)?.to_vec();
        let flags: Vec<Vec<u8>> = args[2..].iter().map(|a| a.to_ascii_uppercase()).collect();
        let has = |f: &[u8]| flags.iter().any(|x| x == f);
        if self.exists(key) && !has(b"REPLACE") {
            return Ok(());
        }
        let expire = match (ttl, has(b"ABSTTL")) {
            (0, _) => None,
            (t, true) => Some(t),
            (t, false) => Some(self.now_ms.saturating_add(t)),
        };
        dump::parse_envelope(&payload)
            .map_err(|e| format!("a payload that is not a DUMP payload: {e}"))?;
        let held = Held::Payload(payload);
        self.keys.insert(
            (self.db, key.to_vec()),
            Entry {
                held,
                expire_at_ms: expire,
            },
        );
        Ok(())
    }

    fn expire(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        let n = int(arg(args, 0)?)?;
        let at = match name {
            b"EXPIRE" => self.now_ms.saturating_add(n.saturating_mul(1000)),
            b"PEXPIRE" => self.now_ms.saturating_add(n),
            b"EXPIREAT" => n.saturating_mul(1000),
            _ => n,
        };
        let Some(entry) = self.keys.get_mut(&(self.db, key.to_vec())) else {
            return Ok(());
        };
        let flag = args.get(1).map(|f| f.to_ascii_uppercase());
        let current = entry.expire_at_ms;
        let allowed = match flag.as_deref() {
            None => true,
            Some(b"NX") => current.is_none(),
            Some(b"XX") => current.is_some(),
            Some(b"GT") => current.is_some_and(|c| at > c),
            Some(b"LT") => current.is_none_or(|c| at < c),
            Some(_) => return Err("unknown expiry option".into()),
        };
        if allowed {
            entry.expire_at_ms = Some(at);
        }
        Ok(())
    }

    fn getex(&mut self, key: &[u8], args: &[Vec<u8>]) -> Step {
        let now = self.now_ms;
        let Some(entry) = self.keys.get_mut(&(self.db, key.to_vec())) else {
            return Ok(());
        };
        let opt = args.first().map(|a| a.to_ascii_uppercase());
        let n = || args.get(1).map_or(Err("no time".to_string()), |a| int(a));
        entry.expire_at_ms = match opt.as_deref() {
            None => entry.expire_at_ms,
            Some(b"PERSIST") => None,
            Some(b"EX") => Some(now.saturating_add(n()?.saturating_mul(1000))),
            Some(b"PX") => Some(now.saturating_add(n()?)),
            Some(b"EXAT") => Some(n()?.saturating_mul(1000)),
            Some(b"PXAT") => Some(n()?),
            Some(_) => return Err("unknown GETEX option".into()),
        };
        Ok(())
    }

    fn incr(&mut self, key: &[u8], by: i64) -> Step {
        self.string_edit_checked(key, |s| {
            let n = if s.is_empty() { Some(0) } else { parse_i64(s) };
            let n = n.ok_or("the value is not an integer")?;
            *s = n
                .checked_add(by)
                .ok_or("increment overflows")?
                .to_string()
                .into_bytes();
            Ok(())
        })
    }

    fn string_edit(
        &mut self,
        key: &[u8],
        edit: impl FnOnce(&mut Vec<u8>),
        args: &[Vec<u8>],
    ) -> Step {
        arg(args, 0)?;
        self.string_edit_checked(key, |s| {
            edit(s);
            Ok(())
        })
    }

    /// Changes a string in place, creating it (empty, no expiry) when
    /// absent; the expiry is kept.
    fn string_edit_checked(&mut self, key: &[u8], edit: impl FnOnce(&mut Vec<u8>) -> Step) -> Step {
        if !self.exists(key) {
            self.put(key, Live::Str(Vec::new()), None);
        }
        let entry = self.live(key)?.ok_or("the key vanished")?;
        let Held::Live(Live::Str(s)) = &mut entry.held else {
            return Err(WRONG_TYPE.into());
        };
        edit(s)
    }

    /// The live value of `key`, created empty by `empty` when absent (and
    /// `create`), or `None` when absent and not to be created.
    fn collection(&mut self, key: &[u8], empty: Option<Live>) -> Result<Option<&mut Live>, String> {
        if !self.exists(key) {
            let Some(empty) = empty else {
                return Ok(None);
            };
            self.put(key, empty, None);
        }
        match self.live(key)? {
            Some(Entry {
                held: Held::Live(live),
                ..
            }) => Ok(Some(live)),
            _ => Err("the key vanished".into()),
        }
    }

    /// Deletes `key` when its collection became empty, as the server does.
    fn drop_if_empty(&mut self, key: &[u8]) {
        let k = (self.db, key.to_vec());
        if let Some(Entry {
            held: Held::Live(live),
            ..
        }) = self.keys.get(&k)
        {
            if live.is_empty() {
                self.keys.remove(&k);
            }
        }
    }

    fn hash(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        let creates = matches!(name, b"HSET" | b"HMSET" | b"HSETNX" | b"HINCRBY");
        let empty = creates.then(|| Live::Hash(BTreeMap::new()));
        let Some(live) = self.collection(key, empty)? else {
            return Ok(());
        };
        let Live::Hash(h) = live else {
            return Err(WRONG_TYPE.into());
        };
        match name {
            b"HSET" | b"HMSET" => {
                if args.is_empty() || !args.len().is_multiple_of(2) {
                    return Err("fields and values do not pair up".into());
                }
                for pair in args.chunks(2) {
                    h.insert(pair[0].clone(), pair[1].clone());
                }
            }
            b"HSETNX" => {
                h.entry(arg(args, 0)?.to_vec())
                    .or_insert(arg(args, 1)?.to_vec());
            }
            b"HDEL" => {
                for f in args {
                    h.remove(f);
                }
            }
            _ => {
                let by = int(arg(args, 1)?)?;
                let field = h
                    .entry(arg(args, 0)?.to_vec())
                    .or_insert_with(|| b"0".to_vec());
                let n = parse_i64(field).ok_or("the field is not an integer")?;
                *field = n
                    .checked_add(by)
                    .ok_or("increment overflows")?
                    .to_string()
                    .into_bytes();
            }
        }
        self.drop_if_empty(key);
        Ok(())
    }

    fn set_members(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        let empty = (name == b"SADD").then(|| Live::Set(BTreeSet::new()));
        let Some(live) = self.collection(key, empty)? else {
            return Ok(());
        };
        let Live::Set(s) = live else {
            return Err(WRONG_TYPE.into());
        };
        for m in args {
            if name == b"SADD" {
                s.insert(m.clone());
            } else {
                s.remove(m);
            }
        }
        self.drop_if_empty(key);
        Ok(())
    }

    fn zset(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        let creates = matches!(name, b"ZADD" | b"ZINCRBY");
        let empty = creates.then(|| Live::ZSet(BTreeMap::new()));
        let Some(live) = self.collection(key, empty)? else {
            return Ok(());
        };
        let Live::ZSet(z) = live else {
            return Err(WRONG_TYPE.into());
        };
        match name {
            b"ZADD" => zadd(z, args)?,
            b"ZINCRBY" => {
                let by = score(arg(args, 0)?)?;
                let s = z.entry(arg(args, 1)?.to_vec()).or_insert(0.0);
                *s += by;
                if s.is_nan() {
                    return Err("the score became NaN".into());
                }
            }
            b"ZREM" => {
                for m in args {
                    z.remove(m);
                }
            }
            _ => {
                let count = args.first().map_or(Ok(1), |c| int(c))?.max(0) as usize;
                let mut order: Vec<(f64, Vec<u8>)> =
                    z.iter().map(|(m, s)| (*s, m.clone())).collect();
                order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                if name == b"ZPOPMAX" {
                    order.reverse();
                }
                for (_, m) in order.into_iter().take(count) {
                    z.remove(&m);
                }
            }
        }
        self.drop_if_empty(key);
        Ok(())
    }

    fn list(&mut self, name: &[u8], key: &[u8], args: &[Vec<u8>]) -> Step {
        let creates = matches!(name, b"RPUSH" | b"LPUSH");
        let empty = creates.then(|| Live::List(VecDeque::new()));
        let Some(live) = self.collection(key, empty)? else {
            return Ok(());
        };
        let Live::List(l) = live else {
            return Err(WRONG_TYPE.into());
        };
        list_op(l, name, args)?;
        self.drop_if_empty(key);
        Ok(())
    }

    fn rename(&mut self, args: &[Vec<u8>], nx: bool) -> Vec<(Vec<u8>, Step)> {
        let (Some(src), Some(dst)) = (args.get(1).cloned(), args.get(2).cloned()) else {
            return Vec::new();
        };
        if src == dst || (nx && self.exists(&dst)) {
            return Vec::new();
        }
        let entry = self.keys.remove(&(self.db, src.clone()));
        if !self.selected(&dst) {
            return Vec::new();
        }
        if self.selected(&src) {
            if let Some(entry) = entry {
                self.keys.insert((self.db, dst), entry);
            }
            return Vec::new();
        }
        let why = format!(
            "renamed from {}, a key outside the selection whose value was not kept",
            crate::kato::display_bytes(&src)
        );
        self.keys.remove(&(self.db, dst.clone()));
        vec![(dst, Err(why))]
    }

    fn copy(&mut self, args: &[Vec<u8>]) -> Vec<(Vec<u8>, Step)> {
        let (Some(src), Some(dst)) = (args.get(1).cloned(), args.get(2).cloned()) else {
            return Vec::new();
        };
        if !self.selected(&dst) {
            return Vec::new();
        }
        let flags: Vec<Vec<u8>> = args[3..].iter().map(|a| a.to_ascii_uppercase()).collect();
        if flags.iter().any(|f| f == b"DB") {
            return vec![(dst, Err("COPY to another database is not replayed".into()))];
        }
        if self.exists(&dst) && !flags.iter().any(|f| f == b"REPLACE") {
            return Vec::new();
        }
        if !self.selected(&src) {
            let why = format!(
                "copied from {}, a key outside the selection",
                crate::kato::display_bytes(&src)
            );
            return vec![(dst, Err(why))];
        }
        if let Some(entry) = self.keys.get(&(self.db, src)).cloned() {
            self.keys.insert((self.db, dst), entry);
        }
        Vec::new()
    }

    fn smove(&mut self, args: &[Vec<u8>]) -> Vec<(Vec<u8>, Step)> {
        let [_, src, dst, member] = args else {
            return vec![];
        };
        let mut out = Vec::new();
        if self.selected(src) {
            out.push((
                src.clone(),
                self.set_members(b"SREM", src, std::slice::from_ref(member)),
            ));
        }
        if self.selected(dst) {
            out.push((
                dst.clone(),
                self.set_members(b"SADD", dst, std::slice::from_ref(member)),
            ));
        }
        out
    }

    /// `RPOPLPUSH src dst` and `LMOVE src dst LEFT|RIGHT LEFT|RIGHT`.
    fn lmove(&mut self, args: &[Vec<u8>]) -> Vec<(Vec<u8>, Step)> {
        let (Some(src), Some(dst)) = (args.get(1).cloned(), args.get(2).cloned()) else {
            return vec![];
        };
        let side = |i: usize, default: &[u8]| {
            args.get(i)
                .map_or(default.to_vec(), |s| s.to_ascii_uppercase())
        };
        let (from, to) = (side(3, b"RIGHT"), side(4, b"LEFT"));
        let mut out = Vec::new();
        let mut moved = None;
        if self.selected(&src) {
            let pop: &[u8] = if from == b"LEFT" { b"LPOP" } else { b"RPOP" };
            let step = self.pop_one(&src, pop).map(|m| moved = m);
            out.push((src.clone(), step));
        }
        if self.selected(&dst) {
            let step = match moved {
                Some(m) => {
                    let push: &[u8] = if to == b"LEFT" { b"LPUSH" } else { b"RPUSH" };
                    self.list(push, &dst, &[m])
                }
                None => Err(format!(
                    "an element moved in from {}, whose value was not kept",
                    crate::kato::display_bytes(&src)
                )),
            };
            out.push((dst, step));
        }
        out
    }

    fn pop_one(&mut self, key: &[u8], pop: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(live) = self.collection(key, None)? else {
            return Ok(None);
        };
        let Live::List(l) = live else {
            return Err(WRONG_TYPE.into());
        };
        let got = if pop == b"LPOP" {
            l.pop_front()
        } else {
            l.pop_back()
        };
        self.drop_if_empty(key);
        Ok(got)
    }
}

fn zadd(z: &mut BTreeMap<Vec<u8>, f64>, args: &[Vec<u8>]) -> Step {
    let (mut nx, mut xx, mut gt, mut lt, mut incr) = (false, false, false, false, false);
    let mut i = 0;
    while let Some(flag) = args.get(i) {
        match flag.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            b"CH" => {}
            b"INCR" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err("scores and members do not pair up".into());
    }
    for pair in pairs.chunks(2) {
        let mut new = score(&pair[0])?;
        let old = z.get(&pair[1]).copied();
        if (nx && old.is_some()) || (xx && old.is_none()) {
            continue;
        }
        if incr {
            new += old.unwrap_or(0.0);
            if new.is_nan() {
                return Err("the score became NaN".into());
            }
        }
        if let Some(old) = old {
            if (gt && new <= old) || (lt && new >= old) {
                continue;
            }
        }
        z.insert(pair[1].clone(), new);
    }
    Ok(())
}

fn list_op(l: &mut VecDeque<Vec<u8>>, name: &[u8], args: &[Vec<u8>]) -> Step {
    match name {
        b"RPUSH" | b"RPUSHX" => l.extend(args.iter().cloned()),
        b"LPUSH" | b"LPUSHX" => args.iter().for_each(|a| l.push_front(a.clone())),
        b"LPOP" | b"RPOP" => {
            let count = args.first().map_or(Ok(1), |c| int(c))?.max(0) as usize;
            for _ in 0..count {
                if name == b"LPOP" {
                    l.pop_front()
                } else {
                    l.pop_back()
                };
            }
        }
        b"LREM" => {
            let count = int(arg(args, 0)?)?;
            let value = arg(args, 1)?;
            lrem(l, count, value);
        }
        b"LTRIM" => {
            let (start, stop) = (int(arg(args, 0)?)?, int(arg(args, 1)?)?);
            let (from, to) = range(l.len(), start, stop);
            let kept: VecDeque<_> = l
                .drain(..)
                .skip(from)
                .take(to.saturating_sub(from))
                .collect();
            *l = kept;
        }
        b"LSET" => {
            let i = int(arg(args, 0)?)?;
            let i = if i < 0 { l.len() as i64 + i } else { i };
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| l.get_mut(i))
                .ok_or("index out of range")?;
            *slot = arg(args, 1)?.to_vec();
        }
        _ => {
            let where_ = arg(args, 0)?.to_ascii_uppercase();
            let (pivot, value) = (arg(args, 1)?, arg(args, 2)?);
            if let Some(at) = l.iter().position(|e| e == pivot) {
                let at = if where_ == b"AFTER" { at + 1 } else { at };
                l.insert(at, value.to_vec());
            }
        }
    }
    Ok(())
}

fn lrem(l: &mut VecDeque<Vec<u8>>, count: i64, value: &[u8]) {
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    let mut keep = |e: &Vec<u8>| {
        let drop = removed < limit && e == value;
        removed += usize::from(drop);
        !drop
    };
    if count >= 0 {
        l.retain(|e| keep(e));
    } else {
        let mut items: Vec<_> = l.drain(..).rev().filter(|e| keep(e)).collect();
        items.reverse();
        l.extend(items);
    }
}

/// `LTRIM`'s and `LRANGE`'s index rules: the half-open range kept.
fn range(len: usize, start: i64, stop: i64) -> (usize, usize) {
    let len = len as i64;
    let norm = |i: i64| if i < 0 { len + i } else { i };
    let (start, stop) = (norm(start).max(0), norm(stop).min(len - 1));
    if start > stop || start >= len {
        return (0, 0);
    }
    (start as usize, stop as usize + 1)
}

fn splice(s: &mut Vec<u8>, offset: usize, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    if s.len() < offset + value.len() {
        s.resize(offset + value.len(), 0);
    }
    s[offset..offset + value.len()].copy_from_slice(value);
}

fn arg(args: &[Vec<u8>], i: usize) -> Result<&[u8], String> {
    args.get(i)
        .map(Vec::as_slice)
        .ok_or_else(|| "too few arguments".to_string())
}

fn int(a: &[u8]) -> Result<i64, String> {
    parse_i64(a).ok_or_else(|| format!("{:?} is not an integer", a.escape_ascii().to_string()))
}

/// An integer as the server parses one (no spaces, no `+`, no leading
/// zeros).
fn parse_i64(a: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(a).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    canonical.then(|| s.parse().ok()).flatten()
}

fn parse_u64(a: &[u8]) -> Option<u64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

fn score(a: &[u8]) -> Result<f64, String> {
    let s = std::str::from_utf8(a).map_err(|_| "a score that is not text")?;
    let v = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a score"))?,
    };
    if v.is_nan() {
        return Err("a NaN score".into());
    }
    Ok(v)
}

impl Entry {
    fn finish(self, rdb_version: u16) -> Result<(Vec<u8>, Option<i64>), String> {
        let payload = match self.held {
            Held::Payload(p) => p,
            Held::Live(live) => {
                dump::encode(&live.into_value(), rdb_version).map_err(|e| e.to_string())?
            }
            Held::Damaged(why) => return Err(why),
        };
        Ok((payload, self.expire_at_ms))
    }
}

impl Live {
    fn from_payload(payload: &[u8]) -> Result<Live, String> {
        let value =
            dump::decode(payload).map_err(|e| format!("its base value does not decode: {e}"))?;
        Ok(match value {
            Value::String(s) => Live::Str(s),
            Value::List(l) => Live::List(l.into()),
            Value::Set(s) => Live::Set(s.into_iter().collect()),
            Value::ZSet(z) => Live::ZSet(z.into_iter().collect()),
            Value::Hash(fields) if fields.iter().all(|f| f.expire_at_ms.is_none()) => {
                Live::Hash(fields.into_iter().map(|f| (f.field, f.value)).collect())
            }
            Value::Hash(_) => {
                return Err("commands on a hash with field expiries are not replayed".into())
            }
            Value::Stream(_) => return Err("commands on a stream are not replayed".into()),
            Value::Module { .. } => {
                return Err("commands on a module value are not replayed".into())
            }
        })
    }

    fn is_empty(&self) -> bool {
        match self {
            Live::Str(_) => false,
            Live::List(l) => l.is_empty(),
            Live::Set(s) => s.is_empty(),
            Live::Hash(h) => h.is_empty(),
            Live::ZSet(z) => z.is_empty(),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Live::Str(s) => Value::String(s),
            Live::List(l) => Value::List(l.into()),
            Live::Set(s) => Value::Set(s.into_iter().collect()),
            Live::Hash(h) => Value::Hash(
                h.into_iter()
                    .map(|(field, value)| HashField {
                        field,
                        value,
                        expire_at_ms: None,
                    })
                    .collect(),
            ),
            Live::ZSet(z) => Value::ZSet(z.into_iter().collect()),
        }
    }
}

/// The keys a command names, for a first pass that only learns key names
/// (which kb_ids exist). Commands without keys give none; an unknown
/// command is taken to name its first argument.
pub fn keys_of(args: &[Vec<u8>]) -> Vec<&[u8]> {
    let name = args
        .first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default();
    let rest = args.get(1..).unwrap_or(&[]);
    match name.as_slice() {
        b"SELECT" | b"MULTI" | b"EXEC" | b"DISCARD" | b"FLUSHDB" | b"FLUSHALL" | b"SWAPDB"
        | b"FUNCTION" | b"SCRIPT" | b"PING" => Vec::new(),
        b"DEL" | b"UNLINK" => rest.iter().map(Vec::as_slice).collect(),
        b"MSET" | b"MSETNX" => rest.iter().step_by(2).map(Vec::as_slice).collect(),
        b"RENAME" | b"RENAMENX" | b"COPY" | b"SMOVE" | b"RPOPLPUSH" | b"LMOVE" => {
            rest.iter().take(2).map(Vec::as_slice).collect()
        }
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let n = rest.get(1).and_then(|a| parse_u64(a)).unwrap_or(0) as usize;
            rest.iter().skip(2).take(n).map(Vec::as_slice).collect()
        }
        b"XGROUP" => rest.get(1).map(Vec::as_slice).into_iter().collect(),
        _ => rest.first().map(Vec::as_slice).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests;
