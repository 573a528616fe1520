//! The logical path: a value decoded and re-created with plain commands on
//! a temporary key, in bounded chunks, then moved into place atomically.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value as Reply;

use super::{Mode, Outcome, Pending, RestoreOptions};
use crate::format::dump::{self, CommandOptions, ServerKind};
use crate::net::redis::{RedisConn, RedisIoError};
use crate::plan::Method;

/// How long a temporary key of the logical path lives if the run dies
/// before moving it into place, so interrupted runs leave no garbage.
const TEMP_KEY_TTL_MS: i64 = 3_600_000;

/// Re-creates one key with plain commands on a temporary key, then moves it
/// into place atomically. The key is moved only when every command
/// succeeded: a value half-built (OOM midway, say) never replaces or
/// creates the real key.
pub(super) async fn restore_logical(
    conn: &mut RedisConn,
    kind: &ServerKind,
    pending: &Pending,
    options: &RestoreOptions,
) -> Result<Outcome, RedisIoError> {
    let value = match dump::decode(&pending.payload) {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::Failed(format!("cannot decode the payload: {e}"))),
    };
    let mut command_options = CommandOptions::for_server(kind);
    command_options.max_elements = options.max_elements;
    command_options.max_bytes = options.max_bytes;
    let temp = temp_key(&pending.key);
    let commands = value.to_commands(&temp, &command_options);
    if commands.is_empty() {
        return Ok(Outcome::Failed(format!(
            "the target refused the payload and a {} value cannot be re-created with commands",
            value.redis_type().name()
        )));
    }
    // XCLAIM's error replies quote its key and group, which the client
    // cannot read when they are not UTF-8 (it drops the connection): the
    // claims go out only once everything they need was created.
    let (claims, commands): (Vec<_>, Vec<_>) = commands
        .into_iter()
        .partition(|c| c[0].eq_ignore_ascii_case(b"XCLAIM"));
    let mut failure = first_error(
        &conn
            .pipeline(&build(&temp, &commands), "logical restore")
            .await?,
    );
    if failure.is_none() && !claims.is_empty() {
        let claimed = conn.pipeline(&plain(&claims), "logical restore").await?;
        failure = first_error(&claimed);
    }
    let outcome = match failure {
        Some(reason) => Outcome::Failed(format!("re-creating with commands failed: {reason}")),
        None => move_into_place(conn, &temp, pending, options).await?,
    };
    if outcome == Outcome::Restored(Method::Logical) {
        let gaps = value.command_gaps(&command_options);
        if !gaps.is_empty() {
            return Ok(Outcome::Lossy(gaps.join("; ")));
        }
    } else {
        let _: Result<i64, _> = conn
            .query(redis::cmd("DEL").arg(&temp).clone(), "DEL")
            .await;
    }
    Ok(outcome)
}

/// The commands that build the temporary key, with a safety TTL set right
/// after the first one created it.
fn build(temp: &[u8], commands: &[Vec<Vec<u8>>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("DEL").arg(temp);
    for (i, command) in commands.iter().enumerate() {
        pipe.add_command(to_cmd(command));
        if i == 0 {
            pipe.cmd("PEXPIRE").arg(temp).arg(TEMP_KEY_TTL_MS);
        }
    }
    pipe
}

/// The commands as one pipeline that returns every reply.
fn plain(commands: &[Vec<Vec<u8>>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for command in commands {
        pipe.add_command(to_cmd(command));
    }
    pipe
}

fn to_cmd(command: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::cmd(&String::from_utf8_lossy(&command[0]));
    for arg in &command[1..] {
        cmd.arg(arg);
    }
    cmd
}

fn first_error(replies: &[Reply]) -> Option<String> {
    replies.iter().find_map(|r| match r {
        Reply::ServerError(e) => Some(format!("{} {}", e.code(), e.details().unwrap_or(""))),
        _ => None,
    })
}

/// Sets the real expiry and renames, in one transaction: an interruption
/// leaves either the temporary key (which expires) or the finished key.
async fn move_into_place(
    conn: &mut RedisConn,
    temp: &[u8],
    pending: &Pending,
    options: &RestoreOptions,
) -> Result<Outcome, RedisIoError> {
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    match pending.expire_at_ms {
        Some(at) => pipe.cmd("PEXPIREAT").arg(temp).arg(at),
        None => pipe.cmd("PERSIST").arg(temp),
    };
    let rename = match options.mode {
        // Merge mode restores only keys that are missing.
        Mode::Missing | Mode::Merge => "RENAMENX",
        Mode::Replace => "RENAME",
    };
    pipe.cmd(rename).arg(temp).arg(&pending.key);
    let replies = match conn.pipeline(&pipe, "logical restore").await {
        Ok(replies) => replies,
        // A refused command aborts the whole transaction (EXECABORT, e.g.
        // OOM): a failure of this key, not of the connection.
        Err(RedisIoError::Command { cause, .. }) => {
            return Ok(Outcome::Failed(format!(
                "moving the re-created key into place failed: {cause}"
            )))
        }
        Err(e) => return Err(e),
    };
    Ok(match (first_error(&replies), replies.last()) {
        // PEXPIREAT with an instant that passed while the key was being
        // re-created deletes it: the key expired, nothing failed.
        (Some(_), _)
            if pending
                .expire_at_ms
                .is_some_and(|at| at <= options.clock.now_ms()) =>
        {
            Outcome::Expired
        }
        (Some(reason), _) => Outcome::Failed(format!(
            "moving the re-created key into place failed: {reason}"
        )),
        (None, Some(Reply::Int(0))) => Outcome::Kept,
        (None, _) => Outcome::Restored(Method::Logical),
    })
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary key name next to `key`: its `{…}` hash tag puts it in the
/// key's own cluster slot (whatever braces the key holds), so the RENAME
/// into place never spans slots; the prefix makes leftovers of an
/// interrupted run easy to find.
fn temp_key(key: &[u8]) -> Vec<u8> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = crate::plan::slot::tag_for_slot(crate::plan::slot::hash_slot(key));
    let mut temp = crate::kato::TEMP_KEY_PREFIX.to_vec();
    temp.extend_from_slice(format!("{{{tag}}}:{}:{n}", std::process::id()).as_bytes());
    temp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_keys_share_the_hash_slot_of_their_key() {
        use crate::plan::slot::hash_slot;
        let keys: [&[u8]; 9] = [
            b"user:{42}:x",
            b"kb:emotives:p",
            b"a}b",
            b"{}x",
            b"x{",
            b"kb:{a:metadata:p",
            b"{{a}}",
            b"}{",
            b"",
        ];
        for key in keys {
            let temp = temp_key(key);
            assert!(temp.starts_with(crate::kato::TEMP_KEY_PREFIX));
            assert_eq!(hash_slot(&temp), hash_slot(key), "{key:?}");
        }
        assert_ne!(temp_key(b"k"), temp_key(b"k"));
    }
}
