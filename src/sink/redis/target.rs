//! The target server of a restore and what it accepts.

use super::{estimated_memory, RestoreError};
use crate::format::dump::ServerKind;
use crate::net::redis::{RedisConn, RedisIoError, ServerInfo};

/// The target server and what it accepts, learned once per run.
#[derive(Clone)]
pub struct Target {
    pub conn: RedisConn,
    pub info: ServerInfo,
    pub kind: ServerKind,
    /// The largest single argument the server accepts
    /// (`proto-max-bulk-len`); a bigger payload cannot be sent with RESTORE.
    pub max_bulk: u64,
}

/// Redis' default `proto-max-bulk-len`, assumed when CONFIG is disabled.
pub(super) const DEFAULT_MAX_BULK: u64 = 512 << 20;

impl Target {
    pub async fn connect(url: &str) -> Result<Target, RedisIoError> {
        Target::learn(RedisConn::connect(url).await?).await
    }

    /// Learns what an open connection's server accepts (INFO, the RESTORE
    /// gate, `proto-max-bulk-len`).
    pub async fn learn(mut conn: RedisConn) -> Result<Target, RedisIoError> {
        let info = conn.server_info().await?;
        let kind = conn.server_kind(&info).await?;
        let max_bulk = conn
            .config_number("proto-max-bulk-len")
            .await
            .unwrap_or(DEFAULT_MAX_BULK);
        Ok(Target {
            conn,
            info,
            kind,
            max_bulk,
        })
    }

    /// Refuses a target that would refuse every write, before the first.
    pub fn check_writable(&self) -> Result<(), RestoreError> {
        match &self.info.read_only_replica_of {
            Some(master) => Err(RestoreError::ReadOnlyReplica {
                address: self.conn.address().to_string(),
                master: master.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn evicts(&self) -> bool {
        self.info.maxmemory > 0 && self.info.maxmemory_policy != "noeviction"
    }

    /// Free memory below `maxmemory`, less a reserve of 5% of it: client
    /// buffers and the server's own bookkeeping grow during a run too, and
    /// filling memory to the last byte makes the next command evict.
    pub(super) fn headroom(&self) -> u64 {
        let usable = self.info.maxmemory - self.info.maxmemory / 20;
        usable.saturating_sub(self.info.used_memory)
    }

    /// The memory a run may add when the target evicts, else `None`.
    pub fn memory_budget(&self) -> Option<u64> {
        self.evicts().then(|| self.headroom())
    }

    /// Refuses a restore that would push the target over `maxmemory` when
    /// its policy evicts keys to make room. `payload_bytes` and `keys` are
    /// the size of the selection (see [`estimated_memory`]).
    pub fn check_headroom(&self, payload_bytes: u64, keys: u64) -> Result<(), RestoreError> {
        if !self.evicts() {
            return Ok(());
        }
        let needed = estimated_memory(payload_bytes, keys);
        let headroom = self.headroom();
        if needed > headroom {
            return Err(RestoreError::NoHeadroom {
                address: self.conn.address().to_string(),
                needed,
                headroom,
                policy: self.info.maxmemory_policy.clone(),
            });
        }
        Ok(())
    }
}
