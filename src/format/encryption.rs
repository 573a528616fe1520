//! Archives at rest: the `age` format (<https://age-encryption.org/v1>)
//! around a whole archive, so an archive or a backup that leaves the
//! machine does not carry the data in clear.
//!
//! The archive inside is unchanged: encryption is a layer, detected by the
//! age magic line at the start of a file. age's payload is a sequence of
//! authenticated 64 KiB chunks, so a decrypted file is still seekable and a
//! selective read still goes through the archive's index; a truncated or
//! altered file fails authentication instead of yielding wrong bytes.
//!
//! Recipients are age X25519 public keys (`age1…`), given on the command
//! line or in a recipients file (one per line, `#` comments), as the `age`
//! tool takes them. Identities are age identity files (`AGE-SECRET-KEY-1…`
//! lines), as `age-keygen` writes them. The crypto is the `age` crate's.
//! Like every codec here this reads no file itself: the caller hands in
//! the text of recipients and identity files, with the names to use in
//! messages.

use std::io::{self, BufRead, BufReader, Read, Seek, Write};

use sha2::{Digest, Sha256};

/// The first line of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// How much of a file's start the header summary reads at most: age
/// headers are a few hundred bytes per recipient.
const HEADER_LIMIT: usize = 64 << 10;

/// Why encrypting or decrypting could not be done.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{0:?} is not an age recipient (expected an X25519 public key starting with age1…)")]
    BadRecipient(String),
    #[error("recipients file {0} names no recipient")]
    NoRecipientInFile(String),
    #[error(
        "identity file {name} holds no usable age identity (AGE-SECRET-KEY-1… line): {reason}"
    )]
    BadIdentityFile { name: String, reason: String },
    #[error(
        "{name} is encrypted (age, {recipients}); pass --identity FILE with a matching age \
         identity to read it"
    )]
    NeedsIdentity { name: String, recipients: String },
    #[error(
        "{name} is encrypted (age, {recipients}) and none of the identities given \
         ({}) can open it", .identities.join(", ")
    )]
    NoMatchingIdentity {
        name: String,
        recipients: String,
        identities: Vec<String>,
    },
    #[error("{name}: the age header is damaged or not supported: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Whether `prefix` (the first bytes of a file) starts an age file.
pub fn is_encrypted(prefix: &[u8]) -> bool {
    prefix.starts_with(AGE_MAGIC)
}

/// The recipients an archive is encrypted to. Its `Debug` shows how many.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.keys.len())
    }
}

impl Recipients {
    /// Parses recipients given directly and the texts of recipients
    /// files (`(name, text)`); an empty result is `None` (no encryption
    /// asked for).
    pub fn parse(
        given: &[String],
        files: &[(String, String)],
    ) -> Result<Option<Recipients>, CryptError> {
        let mut keys = given
            .iter()
            .map(|r| parse_recipient(r))
            .collect::<Result<Vec<_>, _>>()?;
        for (name, text) in files {
            keys.extend(recipients_file(name, text)?);
        }
        Ok((!keys.is_empty()).then_some(Recipients { keys }))
    }

    /// How many recipients there are (for the summary).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true for a parsed value: `parse` returns `None` instead.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Starts an encrypted stream into `out`; [`SealedWriter::finish`]
    /// writes the last chunk and hands `out` back.
    pub fn seal<W: Write>(&self, out: W) -> io::Result<SealedWriter<W>> {
        let recipients = self.keys.iter().map(|k| k as &dyn age::Recipient);
        let encryptor = age::Encryptor::with_recipients(recipients)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(SealedWriter {
            inner: encryptor.wrap_output(out)?,
        })
    }
}

impl Recipients {
    /// Whether one of `keys` opens what is sealed to these recipients: a
    /// few bytes are sealed and opened in memory, so a run that will
    /// verify with `--identity` learns before it writes anything that the
    /// identity cannot open its output.
    pub fn opened_by(&self, keys: &Keyring) -> Result<bool, CryptError> {
        let mut probe = self.seal(Vec::new())?;
        probe.write_all(b"probe")?;
        let sealed = probe.finish()?;
        match keys.open("the recipients' probe", "", io::Cursor::new(sealed)) {
            Ok(_) => Ok(true),
            Err(CryptError::NoMatchingIdentity { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, CryptError> {
    text.trim()
        .parse()
        .map_err(|_| CryptError::BadRecipient(text.to_string()))
}

fn recipients_file(name: &str, text: &str) -> Result<Vec<age::x25519::Recipient>, CryptError> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(CryptError::NoRecipientInFile(name.to_string()));
    }
    Ok(keys)
}

/// An archive being written encrypted.
pub struct SealedWriter<W: Write> {
    inner: age::stream::StreamWriter<W>,
}

impl<W: Write> SealedWriter<W> {
    /// Writes the final, authenticated chunk: without it a reader reports
    /// the file as truncated.
    pub fn finish(self) -> io::Result<W> {
        self.inner.finish()
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An output that is encrypted or not, as the command line asked.
pub enum MaybeSealed<W: Write> {
    Clear(W),
    Sealed(SealedWriter<W>),
}

impl<W: Write> MaybeSealed<W> {
    /// Seals `out` to `recipients` when there are any.
    pub fn new(out: W, recipients: Option<&Recipients>) -> io::Result<MaybeSealed<W>> {
        Ok(match recipients {
            Some(r) => MaybeSealed::Sealed(r.seal(out)?),
            None => MaybeSealed::Clear(out),
        })
    }

    /// Ends the encrypted stream (if any) and hands the output back.
    pub fn finish(self) -> io::Result<W> {
        match self {
            MaybeSealed::Clear(out) => Ok(out),
            MaybeSealed::Sealed(sealed) => sealed.finish(),
        }
    }
}

impl<W: Write> Write for MaybeSealed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MaybeSealed::Clear(out) => out.write(buf),
            MaybeSealed::Sealed(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            MaybeSealed::Clear(out) => out.flush(),
            MaybeSealed::Sealed(out) => out.flush(),
        }
    }
}

/// The identities that may open encrypted archives (`--identity`): the
/// text of each identity file with its name. Its `Debug` shows the names
/// only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    files: Vec<(String, String)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Keyring {
    /// Identity files as `(name, text)`.
    pub fn new(files: Vec<(String, String)>) -> Keyring {
        Keyring { files }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Decrypts an age stream (its magic not yet consumed); `recipients`
    /// is the header summary for messages ([`describe_header`]).
    pub fn open<R: Read>(
        &self,
        name: &str,
        recipients: &str,
        input: R,
    ) -> Result<Decrypted<R>, CryptError> {
        if self.files.is_empty() {
            return Err(CryptError::NeedsIdentity {
                name: name.to_string(),
                recipients: recipients.to_string(),
            });
        }
        let identities = self.identities()?;
        let decryptor = age::Decryptor::new(input).map_err(|e| CryptError::BadHeader {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let inner = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => CryptError::NoMatchingIdentity {
                    name: name.to_string(),
                    recipients: recipients.to_string(),
                    identities: self.names(),
                },
                other => CryptError::BadHeader {
                    name: name.to_string(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Decrypted { inner })
    }

    fn identities(&self) -> Result<Vec<Box<dyn age::Identity>>, CryptError> {
        let mut all = Vec::new();
        for (name, text) in &self.files {
            let bad = |reason: String| CryptError::BadIdentityFile {
                name: name.clone(),
                reason,
            };
            let parsed = age::IdentityFile::from_buffer(text.as_bytes())
                .map_err(|e| bad(e.to_string()))?
                .into_identities()
                .map_err(|e| bad(e.to_string()))?;
            if parsed.is_empty() {
                return Err(bad("no identity in it".into()));
            }
            all.extend(parsed);
        }
        Ok(all)
    }

    fn names(&self) -> Vec<String> {
        self.files.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// The clear bytes of an encrypted archive. A chunk that fails
/// authentication is an error that says so in plain words, once.
pub struct Decrypted<R: Read> {
    inner: age::stream::StreamReader<R>,
}

fn authentication(e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::InvalidData {
        return e;
    }
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the encrypted archive fails authentication: it was cut short or altered \
             after it was written (age: {})",
            e.get_ref()
                .map_or_else(|| e.to_string(), |inner| inner.to_string())
        ),
    )
}

impl<R: Read> Read for Decrypted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(authentication)
    }
}

impl<R: Read + Seek> Seek for Decrypted<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos).map_err(authentication)
    }
}

/// The SHA-256 and length of bytes as they go by: what an encrypted
/// backup's summary records, to check the file later without the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lower-case hex, as `sha256sum` prints it.
    pub sha256: String,
    pub bytes: u64,
}

/// A writer that counts what it passes on, and hashes it when asked to
/// (a clear backup has no use for the digest, and it costs CPU).
pub struct DigestWriter<W: Write> {
    inner: W,
    hash: Option<Sha256>,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W, hashing: bool) -> DigestWriter<W> {
        DigestWriter {
            inner,
            hash: hashing.then(Sha256::new),
            bytes: 0,
        }
    }

    /// The inner writer and the fingerprint of everything written to it
    /// (an empty digest when not hashing).
    pub fn finish(self) -> (W, Fingerprint) {
        let fingerprint = Fingerprint {
            sha256: self.hash.map(|h| hex(&h.finalize())).unwrap_or_default(),
            bytes: self.bytes,
        };
        (self.inner, fingerprint)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Only what the inner writer took is hashed.
        let n = self.inner.write(buf)?;
        if let Some(hash) = &mut self.hash {
            hash.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The fingerprint of everything `input` yields, read in 1 MiB pieces.
pub fn fingerprint<R: Read>(mut input: R) -> io::Result<Fingerprint> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(Fingerprint {
        sha256: hex(&hash.finalize()),
        bytes,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an age header says without any key: its recipient stanzas by
/// type, e.g. "2 recipients: X25519, X25519". Reads at most
/// 64 KiB; the caller rewinds.
pub fn describe_header<R: Read>(input: R) -> String {
    let mut lines = BufReader::new(input.take(HEADER_LIMIT as u64)).lines();
    let mut kinds = Vec::new();
    // The first line is the magic; stanzas start with "-> TYPE"; the MAC
    // line "--- " ends the header.
    let _ = lines.next();
    for line in lines.map_while(Result::ok) {
        if line.starts_with("--- ") {
            break;
        }
        // age adds random "…-grease" stanzas to keep parsers tolerant;
        // they name no recipient.
        let kind = line.strip_prefix("-> ").and_then(|s| s.split(' ').next());
        if let Some(kind) = kind.filter(|k| !k.ends_with("-grease")) {
            kinds.push(kind.to_string());
        }
    }
    match kinds.len() {
        0 => "no readable recipient stanza".to_string(),
        1 => format!("1 recipient: {}", kinds[0]),
        n => format!("{n} recipients: {}", kinds.join(", ")),
    }
}

/// Reads a file's first bytes and rewinds: whether it is an age file.
pub fn sniff<R: Read + Seek>(input: &mut R) -> io::Result<bool> {
    let mut prefix = [0u8; AGE_MAGIC.len()];
    let got = read_up_to(input, &mut prefix)?;
    input.rewind()?;
    Ok(is_encrypted(&prefix[..got]))
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
pub fn read_up_to<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Cursor;

    fn keypair() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        let public = identity.to_public().to_string();
        (public, identity.to_string().expose_secret().to_string())
    }

    fn identity_file(secret: &str) -> (String, String) {
        ("id.txt".to_string(), format!("# test key\n{secret}\n"))
    }

    fn sealed(data: &[u8], recipients: &[String]) -> Vec<u8> {
        let r = Recipients::parse(recipients, &[]).unwrap().unwrap();
        let mut w = r.seal(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_sealed_stream_opens_with_a_matching_identity_and_seeks() {
        let (public, secret) = keypair();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = sealed(&data, &[public]);
        assert!(is_encrypted(&bytes));
        let keys = Keyring::new(vec![identity_file(&secret)]);
        let mut reader = keys.open("a.kbd", "", Cursor::new(bytes)).unwrap();
        let mut tail = vec![0u8; 1000];
        reader.seek(io::SeekFrom::End(-1000)).unwrap();
        reader.read_exact(&mut tail).unwrap();
        assert_eq!(tail, data[data.len() - 1000..]);
        reader.rewind().unwrap();
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
    }

    #[test]
    fn no_identity_names_what_is_needed() {
        let (public, _) = keypair();
        let bytes = sealed(b"x", &[public]);
        let summary = describe_header(Cursor::new(&bytes));
        assert_eq!(summary, "1 recipient: X25519");
        let err = Keyring::default()
            .open("a.kbd", &summary, Cursor::new(bytes))
            .err()
            .unwrap();
        assert!(err.to_string().contains("--identity"), "{err}");
    }

    #[test]
    fn a_wrong_identity_is_named() {
        let (public, _) = keypair();
        let (_, other) = keypair();
        let bytes = sealed(b"secret", &[public]);
        let keys = Keyring::new(vec![identity_file(&other)]);
        let err = keys.open("a.kbd", "", Cursor::new(bytes)).err().unwrap();
        assert!(
            matches!(err, CryptError::NoMatchingIdentity { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_cut_or_altered_stream_fails_instead_of_yielding_bytes() {
        let (public, secret) = keypair();
        let data = vec![7u8; 200_000];
        let bytes = sealed(&data, &[public]);
        let keys = Keyring::new(vec![identity_file(&secret)]);
        let cut = bytes[..bytes.len() - 100].to_vec();
        let mut out = Vec::new();
        let read = keys
            .open("a.kbd", "", Cursor::new(cut))
            .unwrap()
            .read_to_end(&mut out);
        assert!(read.is_err());
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        let mut out = Vec::new();
        let read = keys
            .open("a.kbd", "", Cursor::new(flipped))
            .unwrap()
            .read_to_end(&mut out);
        assert!(read.is_err());
    }

    #[test]
    fn recipients_are_checked_and_files_read() {
        assert!(matches!(
            Recipients::parse(&["age1nope".into()], &[]),
            Err(CryptError::BadRecipient(_))
        ));
        assert!(Recipients::parse(&[], &[]).unwrap().is_none());
        let (a, _) = keypair();
        let (b, _) = keypair();
        let file = (
            "recipients.txt".to_string(),
            format!("# team\n{a}\n\n{b}\n"),
        );
        let parsed = Recipients::parse(&[], &[file]).unwrap().unwrap();
        assert_eq!(parsed.len(), 2);
        let empty = ("empty.txt".to_string(), "# nobody\n".to_string());
        assert!(matches!(
            Recipients::parse(&[], &[empty]),
            Err(CryptError::NoRecipientInFile(_))
        ));
    }

    #[test]
    fn the_fingerprint_of_what_was_written_is_the_fingerprint_of_what_is_read() {
        let (public, _) = keypair();
        let r = Recipients::parse(&[public], &[]).unwrap().unwrap();
        let mut w = r.seal(DigestWriter::new(Vec::new(), true)).unwrap();
        w.write_all(&vec![3u8; 150_000]).unwrap();
        let (bytes, written) = w.finish().unwrap().finish();
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written, fingerprint(Cursor::new(&bytes)).unwrap());
        // sha256sum of the empty input.
        assert_eq!(
            fingerprint(Cursor::new(b"")).unwrap().sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert_ne!(written, fingerprint(Cursor::new(&flipped)).unwrap());
    }

    #[test]
    fn a_probe_tells_whether_the_identities_open_the_recipients() {
        let (public, secret) = keypair();
        let (_, other) = keypair();
        let r = Recipients::parse(&[public], &[]).unwrap().unwrap();
        assert!(r
            .opened_by(&Keyring::new(vec![identity_file(&secret)]))
            .unwrap());
        assert!(!r
            .opened_by(&Keyring::new(vec![identity_file(&other)]))
            .unwrap());
    }

    #[test]
    fn a_bad_identity_file_is_named() {
        let (public, _) = keypair();
        let bytes = sealed(b"x", &[public]);
        let bad = ("bad.txt".to_string(), "not a key\n".to_string());
        let err = Keyring::new(vec![bad])
            .open("a.kbd", "", Cursor::new(bytes))
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.txt"), "{err}");
    }
}
