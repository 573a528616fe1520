//! Keyspace notifications: the change feed of `mirror --follow`.
//!
//! Redis publishes, for each change of a key, a message on
//! `__keyspace@{db}__:{key}` whose payload is the event (`set`, `hset`,
//! `del`, `expired`, `evicted`, `rename_from`, ...), when the server's
//! `notify-keyspace-events` asks for them. Pub/sub is fire-and-forget: a
//! message published while the connection is down is lost, so the
//! follower treats every (re)connection as a gap and makes a full pass
//! after subscribing.
//!
//! Why this feed and not the replication stream: it tells an eviction
//! (`evicted`) from a deletion (`del`), which the replication stream does
//! not (an evicted key is replicated as a `DEL`); it takes no replica slot
//! and no snapshot transfer; and it works through ACLs that allow pub/sub.
//! Its cost is a server setting, which [`check_config`] names.

use futures::StreamExt;

use crate::net::redis::{Endpoint, RedisConn, RedisIoError};
use crate::pattern;

/// What a notification says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Written, deleted, expired, renamed: read it again.
    Touched,
    /// Evicted under `maxmemory`: lost, not deleted.
    Evicted,
}

/// The event classes `--follow` needs: keyspace channels (`K`), generic
/// commands (`g`: DEL, RENAME, EXPIRE), each type the mirrored categories
/// use, expiries (`x`) and evictions (`e`). `A` stands for every class.
const NEEDED: &str = "g$lshzxe";

/// What `notify-keyspace-events` (its value) lacks for `--follow`, or
/// `None` when it has everything.
pub fn missing_events(value: &str) -> Option<String> {
    let mut missing = String::new();
    if !value.contains('K') {
        missing.push('K');
    }
    if !value.contains('A') {
        missing.extend(NEEDED.chars().filter(|c| !value.contains(*c)));
    }
    (!missing.is_empty()).then_some(missing)
}

/// Why following cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(
        "notify-keyspace-events is {value:?} on {address}, without {missing}: --follow needs a \
         notification for every change. Run CONFIG SET notify-keyspace-events KA on the server \
         (and put notify-keyspace-events KA in its redis.conf, or the setting is gone after a \
         restart)"
    )]
    Disabled {
        address: String,
        value: String,
        missing: String,
    },
}

/// Checks that the server publishes every event `--follow` needs.
pub async fn check_config(conn: &mut RedisConn) -> Result<(), NotifyError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("notify-keyspace-events");
    let reply: Vec<String> = conn.query(cmd, "CONFIG GET notify-keyspace-events").await?;
    let value = reply.get(1).cloned().unwrap_or_default();
    match missing_events(&value) {
        None => Ok(()),
        Some(missing) => Err(NotifyError::Disabled {
            address: conn.address().to_string(),
            value,
            missing,
        }),
    }
}

/// A subscription to the keyspace notifications of one db.
pub struct Notifications {
    stream: redis::aio::PubSubStream,
    /// `__keyspace@{db}__:`, stripped from each channel.
    prefix: Vec<u8>,
}

impl Notifications {
    /// Subscribes to the keys of `kb_ids` (each `{kb_id}:*`), or to every
    /// key of the db when `kb_ids` is `None`.
    pub async fn subscribe(
        endpoint: &Endpoint,
        db: i64,
        kb_ids: Option<&[Vec<u8>]>,
    ) -> Result<Notifications, RedisIoError> {
        let prefix = format!("__keyspace@{db}__:").into_bytes();
        let patterns: Vec<Vec<u8>> = match kb_ids {
            Some(kbs) => kbs
                .iter()
                .map(|kb| {
                    let mut p = prefix.clone();
                    p.extend_from_slice(&pattern::escape(kb));
                    p.extend_from_slice(b":*");
                    p
                })
                .collect(),
            None => vec![[prefix.as_slice(), b"*"].concat()],
        };
        let pubsub = RedisConn::psubscribe(endpoint, &patterns).await?;
        Ok(Notifications {
            stream: pubsub.into_on_message(),
            prefix,
        })
    }

    /// The next changed key, or `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<(Vec<u8>, Change)> {
        loop {
            let msg = self.stream.next().await?;
            let Ok(channel) = msg.get_channel::<Vec<u8>>() else {
                continue;
            };
            let Some(key) = channel.strip_prefix(self.prefix.as_slice()) else {
                continue;
            };
            let change = match msg.get_payload_bytes() {
                b"evicted" => Change::Evicted,
                _ => Change::Touched,
            };
            return Some((key.to_vec(), change));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_needed_event_classes_are_named() {
        assert_eq!(missing_events(""), Some("Kg$lshzxe".into()));
        assert_eq!(missing_events("KA"), None);
        assert_eq!(missing_events("AK"), None);
        assert_eq!(missing_events("Kg$lshzxe"), None);
        assert_eq!(missing_events("KEA"), None);
        assert_eq!(missing_events("Ex"), Some("Kg$lshze".into()));
        assert_eq!(missing_events("K$"), Some("glshzxe".into()));
    }
}
