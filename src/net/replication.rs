//! Asking a server for a snapshot the way a replica (or `redis-cli --rdb`)
//! does, on a connection of our own: `AUTH` as the endpoint does,
//! `REPLCONF capa eof` (we read diskless, end-marked transfers),
//! `REPLCONF rdb-only 1` (Redis ≥ 7.0 and Valkey: send the RDB and no
//! command stream after it; an older server's error is ignored), then
//! `SYNC`. The server answers with newlines while it prepares the
//! snapshot, then `$<len>` (a snapshot saved to its disk first) or
//! `$EOF:<40 bytes>` (diskless: the RDB streamed as its fork writes it,
//! followed by the same 40 bytes as its end mark).
//!
//! [`Transfer`] hands out the RDB bytes as they arrive; it does not parse
//! them. A `$<len>` transfer ends after `len` bytes; an end-marked one
//! never ends by itself: its reader finds the end of the RDB (the EOF
//! opcode and checksum), checks the end mark after it, and drops the
//! transfer. A connection that closes before that is an error, never an
//! end.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::redis::{cap, RawTarget};

/// Why no snapshot (or only part of one) came.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The server will not send this client a snapshot (an ACL without
    /// `+sync`, a renamed or unknown command, a managed service, a replica
    /// cut off from its master), said before any of it was sent: another
    /// method can still read the server.
    #[error("Redis at {address} refused {command}: {}", cap(.reply))]
    Refused {
        address: String,
        command: &'static str,
        reply: String,
    },
    #[error("cannot connect to Redis at {address} for its snapshot: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("Redis at {address} refused the credentials on the snapshot connection: {}", cap(.reply))]
    Auth { address: String, reply: String },
    #[error(
        "Redis at {address} fell silent for {secs} s after SYNC without starting \
         the snapshot; use --method scan"
    )]
    NoSnapshot { address: String, secs: u64 },
    #[error("Redis at {address} answered {what} with something unexpected: {}", cap(.detail))]
    Protocol {
        address: String,
        what: &'static str,
        detail: String,
    },
    /// The connection failed or closed in the middle of the snapshot.
    #[error("the snapshot from Redis at {address} broke off after {received} bytes: {source}")]
    Lost {
        address: String,
        received: u64,
        #[source]
        source: io::Error,
    },
}

impl ReplicationError {
    /// Whether the server refused before sending anything, so that reading
    /// it another way is sound.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ReplicationError::Refused { .. })
    }
}

type Result<T> = std::result::Result<T, ReplicationError>;

/// How the end of the RDB is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `$<len>`: exactly this many bytes.
    Length(u64),
    /// `$EOF:<mark>`: the RDB, then these 40 bytes.
    EndMark(Vec<u8>),
}

/// After this long without the snapshot, the caller is told why it waits.
const WAIT_NOTICE: Duration = Duration::from_millis(1500);
/// The longest silence before a transfer (the server sends a newline a
/// second while it prepares) and inside one (it streams without pause).
const READ_SILENCE: Duration = Duration::from_secs(60);
/// Bytes handed out at most per chunk.
const CHUNK: usize = 1 << 18;
/// The longest a TLS handshake on the snapshot connection may take (as
/// the client library's connections).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest reply line read during the handshake.
const MAX_LINE: usize = 64 << 10;

/// The connection of a snapshot: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A snapshot on its way: the RDB bytes as the server sends them.
pub struct Transfer {
    stream: BufReader<Box<dyn Stream>>,
    address: String,
    framing: Framing,
    received: u64,
    /// Whether `REPLCONF rdb-only` was accepted (the server sends nothing
    /// after the RDB).
    rdb_only: bool,
}

/// Connects to `target` and asks for a snapshot; returns once the server
/// has said how it sends it (the RDB's first bytes follow). `waiting` is
/// called once when the server takes longer than a moment to start.
pub async fn request_snapshot(
    target: &RawTarget,
    waiting: &(dyn Fn() + Send + Sync),
) -> Result<Transfer> {
    let address = target.address.clone();
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| ReplicationError::Connect {
            address: address.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(stream),
        Some(config) => {
            let name = super::tls::server_name(&target.host).map_err(|reason| {
                ReplicationError::Connect {
                    address: address.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, reason),
                }
            })?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            // Bounded: a port that takes TCP but never answers the
            // handshake (a plain port) would otherwise hang here.
            let handshake = tokio::time::timeout(TLS_HANDSHAKE, connector.connect(name, stream));
            let tls = match handshake.await {
                Ok(done) => done,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS handshake within {} s", TLS_HANDSHAKE.as_secs()),
                )),
            }
            .map_err(|source| ReplicationError::Connect {
                address: address.clone(),
                source: io::Error::new(source.kind(), format!("TLS: {source}")),
            })?;
            Box::new(tls)
        }
    };
    let mut link = Link {
        stream: BufReader::with_capacity(CHUNK, stream),
        address,
    };
    if let Some(password) = &target.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &target.user {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        if let Err(reply) = link.ask(&args, "AUTH").await? {
            return Err(ReplicationError::Auth {
                address: link.address,
                reply,
            });
        }
    }
    if let Err(reply) = link
        .ask(&[b"REPLCONF", b"capa", b"eof"], "REPLCONF")
        .await?
    {
        return Err(link.refused("REPLCONF", reply));
    }
    // Redis before 7.0 does not know it: it then sends the command stream
    // after the RDB, which the reader never reads.
    let rdb_only = link
        .ask(&[b"REPLCONF", b"rdb-only", b"1"], "REPLCONF")
        .await?
        .is_ok();
    // Valkey ≥ 9 writes a replica the RDB version the replica says it
    // reads (an older one to a replica that says nothing); its own makes
    // the payloads byte-identical to its DUMP.
    if let Some(version) = &target.announce_version {
        let announce = [&b"REPLCONF"[..], b"version", version.as_bytes()];
        let _ = link.ask(&announce, "REPLCONF").await?;
    }
    link.send(&[b"SYNC"], "SYNC").await?;
    let framing = link.snapshot_header(waiting).await?;
    Ok(Transfer {
        stream: link.stream,
        address: link.address,
        framing,
        received: 0,
        rdb_only,
    })
}

impl Transfer {
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the server was asked to send the RDB alone (Redis ≥ 7.0,
    /// Valkey).
    pub fn rdb_only(&self) -> bool {
        self.rdb_only
    }

    /// The next bytes of the snapshot; `None` after the last byte of a
    /// `$<len>` transfer. An end-marked transfer never ends here: a close
    /// is [`ReplicationError::Lost`] (its reader knows where the RDB ends).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let want = match self.framing {
            Framing::Length(len) if self.received >= len => return Ok(None),
            Framing::Length(len) => (len - self.received).min(CHUNK as u64) as usize,
            Framing::EndMark(_) => CHUNK,
        };
        let mut chunk = vec![0u8; want];
        let read = tokio::time::timeout(READ_SILENCE, self.stream.read(&mut chunk)).await;
        let n = match read {
            Err(_) => {
                return Err(self.lost(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing arrived for {} s", READ_SILENCE.as_secs()),
                )))
            }
            Ok(Err(e)) => return Err(self.lost(e)),
            Ok(Ok(0)) => {
                return Err(self.lost(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before the end of the snapshot",
                )))
            }
            Ok(Ok(n)) => n,
        };
        chunk.truncate(n);
        self.received += n as u64;
        Ok(Some(chunk))
    }

    fn lost(&self, source: io::Error) -> ReplicationError {
        ReplicationError::Lost {
            address: self.address.clone(),
            received: self.received,
            source,
        }
    }
}

/// The handshake's side of the connection.
struct Link {
    stream: BufReader<Box<dyn Stream>>,
    address: String,
}

impl Link {
    async fn send(&mut self, args: &[&[u8]], what: &'static str) -> Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let stream = self.stream.get_mut();
        // A TLS stream may hold encrypted bytes until flushed.
        let written = match stream.write_all(&out).await {
            Ok(()) => stream.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| self.closed(what, e))
    }

    /// Sends a command and reads its one-line reply: `Ok(text)` for `+`,
    /// `Err(text)` for an error.
    async fn ask(
        &mut self,
        args: &[&[u8]],
        what: &'static str,
    ) -> Result<std::result::Result<String, String>> {
        self.send(args, what).await?;
        let line = tokio::time::timeout(READ_SILENCE, self.line(what))
            .await
            .map_err(|_| self.closed(what, io::ErrorKind::TimedOut.into()))??;
        match line.as_bytes().first() {
            Some(b'+') => Ok(Ok(line[1..].to_string())),
            Some(b'-') => Ok(Err(line[1..].to_string())),
            _ => Err(ReplicationError::Protocol {
                address: self.address.clone(),
                what,
                detail: line,
            }),
        }
    }

    /// One reply line without its line end.
    async fn line(&mut self, what: &'static str) -> Result<String> {
        let mut raw = Vec::new();
        let mut limited = (&mut self.stream).take(MAX_LINE as u64);
        let n = limited
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| self.closed(what, e))?;
        if n == 0 {
            return Err(self.closed(what, io::ErrorKind::UnexpectedEof.into()));
        }
        while matches!(raw.last(), Some(b'\n' | b'\r')) {
            raw.pop();
        }
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    /// Reads up to the payload: keepalive newlines (the server sends one a
    /// second while it saves or waits), `+FULLRESYNC` (when the server
    /// treats SYNC as PSYNC), then `$<len>` or `$EOF:<mark>`. A save of a
    /// large db may take long; a server silent for [`READ_SILENCE`] is
    /// given up on.
    async fn snapshot_header(&mut self, waiting: &(dyn Fn() + Send + Sync)) -> Result<Framing> {
        let started = Instant::now();
        let mut told = false;
        loop {
            let patience = match told {
                false => WAIT_NOTICE.saturating_sub(started.elapsed()),
                true => READ_SILENCE,
            };
            let line = match tokio::time::timeout(patience, self.line("SYNC")).await {
                Err(_) if told => {
                    return Err(ReplicationError::NoSnapshot {
                        address: self.address.clone(),
                        secs: READ_SILENCE.as_secs(),
                    })
                }
                Err(_) => {
                    told = true;
                    waiting();
                    continue;
                }
                Ok(line) => line.map_err(|e| match e {
                    // Closed before any of the snapshot: a refusal.
                    ReplicationError::Lost { .. } => self.refused(
                        "SYNC",
                        "the server closed the connection before sending a snapshot".into(),
                    ),
                    other => other,
                })?,
            };
            if line.is_empty() || line.starts_with("+FULLRESYNC") {
                if !told && started.elapsed() >= WAIT_NOTICE {
                    told = true;
                    waiting();
                }
                continue;
            }
            if let Some(reply) = line.strip_prefix('-') {
                return Err(self.refused("SYNC", reply.to_string()));
            }
            return self.framing(&line);
        }
    }

    fn framing(&self, line: &str) -> Result<Framing> {
        framing(line).ok_or_else(|| ReplicationError::Protocol {
            address: self.address.clone(),
            what: "SYNC",
            detail: line.to_string(),
        })
    }

    fn refused(&self, command: &'static str, reply: String) -> ReplicationError {
        ReplicationError::Refused {
            address: self.address.clone(),
            command,
            reply,
        }
    }

    /// The connection failed during the handshake: nothing of a snapshot
    /// was sent, so this is said as a lost connection with 0 bytes.
    fn closed(&self, what: &'static str, e: io::Error) -> ReplicationError {
        let kind = e.kind();
        ReplicationError::Lost {
            address: self.address.clone(),
            received: 0,
            source: io::Error::new(kind, format!("during {what}: {e}")),
        }
    }
}

/// How a snapshot's first line (`$<len>` or `$EOF:<40 bytes>`) frames it.
fn framing(line: &str) -> Option<Framing> {
    let rest = line.strip_prefix('$')?;
    match rest.strip_prefix("EOF:") {
        Some(mark) if mark.len() == 40 => Some(Framing::EndMark(mark.as_bytes().to_vec())),
        Some(_) => None,
        None => rest.parse().ok().map(Framing::Length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_transfers_are_framed() {
        let mark = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            framing(&format!("$EOF:{mark}")),
            Some(Framing::EndMark(mark.as_bytes().to_vec()))
        );
        assert_eq!(framing("$175"), Some(Framing::Length(175)));
        for bad in ["$EOF:short", "$", "$-1", "+OK", "175", "$12x"] {
            assert_eq!(framing(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_refusal_lets_another_method_read() {
        let refused = ReplicationError::Refused {
            address: "h:1".into(),
            command: "SYNC",
            reply: "NOPERM".into(),
        };
        assert!(refused.is_refusal());
        let lost = ReplicationError::Lost {
            address: "h:1".into(),
            received: 10,
            source: io::ErrorKind::UnexpectedEof.into(),
        };
        assert!(!lost.is_refusal());
        assert!(lost.to_string().contains("after 10 bytes"), "{lost}");
    }
}
