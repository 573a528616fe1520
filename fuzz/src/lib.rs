//! What the fuzz targets check, shared by `fuzz_targets/*.rs`.
//!
//! Every check must hold for any input: no panic, no hang, no huge
//! allocation. Checksums would stop almost every mutation at the door, so
//! each check also runs on a copy whose checksums are made valid again
//! (the DUMP CRC-64 trailer; the archive frames' CRC-32C), and the archive
//! check also wraps the input as the record stream of an otherwise valid
//! block, which is how the mutations reach the MessagePack record parser
//! and the DUMP decoder behind it.

use std::io::Cursor;

use kbdump::flow::verify as offline;
use kbdump::format::archive::{ArchiveReader, BlockMeta, IndexedArchive, FORMAT_VERSION, MAGIC};
use kbdump::format::dump;
use kbdump::kato::Category;
use kbdump::source::archive::ArchiveSource;

/// `payload` with its last 8 bytes replaced by the CRC-64 of the rest.
pub fn reseal_payload(payload: &[u8]) -> Option<Vec<u8>> {
    let covered = payload.len().checked_sub(8)?;
    let mut out = payload[..covered].to_vec();
    out.extend_from_slice(&dump::crc64(&out).to_le_bytes());
    Some(out)
}

/// Decoding never panics; what decodes survives the JSON round trip, has
/// a consistent canonical form and yields commands.
pub fn check_decode(data: &[u8]) {
    decode_one(data);
    if let Some(sealed) = reseal_payload(data) {
        decode_one(&sealed);
    }
}

fn decode_one(payload: &[u8]) {
    let Ok(value) = dump::decode(payload) else {
        return;
    };
    let text = value.to_json().to_string();
    let back = dump::Value::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back, value, "JSON round trip changed the value");
    assert!(
        value.logically_eq(&value.canonical()),
        "canonical form differs"
    );
    let opts = dump::CommandOptions::default();
    let _ = value.to_commands(b"k", &opts);
    let _ = value.command_gaps(&opts);
}

/// The envelope parser and retagging agree with each other.
pub fn check_envelope(data: &[u8]) {
    envelope_one(data);
    if let Some(sealed) = reseal_payload(data) {
        envelope_one(&sealed);
    }
}

fn envelope_one(payload: &[u8]) {
    let Ok(env) = dump::parse_envelope(payload) else {
        return;
    };
    let retagged = dump::retag(payload, env.rdb_version.wrapping_add(1)).unwrap();
    assert_eq!(dump::parse_envelope(&retagged).unwrap().body, env.body);
    assert_eq!(dump::type_ids_in(payload).unwrap(), vec![env.type_byte]);
    let _ = dump::redis_type(env.type_byte, env.rdb_version);
    let _ = dump::type_id_name(env.type_byte, env.rdb_version);
}

/// Both archive readers and the verifier read any bytes to the end
/// without panicking: the input as is, with its frame checksums repaired,
/// and as the records of a block behind a valid header.
pub fn check_archive_read(data: &[u8]) {
    archive_one(data);
    let mut resealed = data.to_vec();
    reseal_frames(&mut resealed);
    if resealed != data {
        archive_one(&resealed);
    }
    archive_one(&block_around(data));
}

fn archive_one(bytes: &[u8]) {
    stream_read(bytes);
    indexed_read(bytes);
    let check = |r: &kbdump::format::archive::Record| offline::check_payload_decodes(&r.payload);
    let report = offline::verify_stream(Cursor::new(bytes), &check);
    let _ = report.is_clean();
    let _ = offline::verify_file(Cursor::new(bytes), &check).unwrap();
    let owned = bytes.to_vec();
    if let Ok(source) = ArchiveSource::seekable("fuzz".into(), Cursor::new(owned.clone())) {
        if let Ok(overview) = source.overview() {
            let _ = kbdump::plan::gate_report(&overview.blocks);
        }
    }
    if let Ok(source) = ArchiveSource::sequential("fuzz".into(), Cursor::new(owned)) {
        let _ = source.overview();
    }
}

fn stream_read(bytes: &[u8]) {
    let Ok(mut reader) = ArchiveReader::new(Cursor::new(bytes)) else {
        return;
    };
    // A checksum error leaves the reader usable; any other error ends it.
    // Every call consumes at least a frame header, so this terminates.
    for _ in 0..=bytes.len() {
        match reader.next_block() {
            Ok(Some(block)) => read_records(&block),
            Ok(None) => break,
            Err(kbdump::format::archive::Error::Checksum { .. }) => continue,
            Err(_) => break,
        }
    }
}

fn indexed_read(bytes: &[u8]) {
    let Ok(mut archive) = IndexedArchive::open(Cursor::new(bytes)) else {
        return;
    };
    for entry in archive.index().blocks.clone() {
        if let Ok(block) = archive.read_block(&entry) {
            read_records(&block);
        }
    }
}

fn read_records(block: &kbdump::format::archive::Block) {
    let Ok(records) = block.records() else {
        return;
    };
    for record in records.flatten() {
        let _ = dump::decode(&record.payload);
    }
}

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Recomputes the CRC-32C of every frame that lies fully inside `bytes`,
/// walking frames from the end of the preamble as a reader would.
pub fn reseal_frames(bytes: &mut [u8]) {
    let mut at = 10;
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        let Some(end) = (at + 9).checked_add(len).filter(|&e| e <= bytes.len()) else {
            return;
        };
        let mut digest = CASTAGNOLI.digest();
        digest.update(&bytes[at..at + 5]);
        digest.update(&bytes[at + 9..end]);
        let crc = digest.finalize();
        bytes[at + 5..at + 9].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// A valid preamble and header, then one block frame whose compressed
/// record stream is `records` (record count from its first byte), then
/// nothing: readers must handle the records, then report the truncation.
pub fn block_around(records: &[u8]) -> Vec<u8> {
    let count = records.first().map_or(0, |&b| u64::from(b % 8));
    let meta = BlockMeta {
        kb_id: b"kb".to_vec(),
        category: Category::Other,
        records: count,
        payload_bytes: 0,
        raw_len: records.len() as u64,
        rdb_versions: vec![10],
        type_bytes: vec![0],
    };
    let meta = rmp_serde::to_vec_named(&meta).unwrap();
    let compressed = zstd::bulk::compress(records, 1).unwrap();
    let mut block = (meta.len() as u32).to_le_bytes().to_vec();
    block.extend_from_slice(&meta);
    block.extend_from_slice(&compressed);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    push_frame(&mut out, b'H', &header_bytes());
    push_frame(&mut out, b'B', &block);
    out
}

fn header_bytes() -> Vec<u8> {
    let header = kbdump::format::archive::Header {
        format_version: FORMAT_VERSION,
        tool: "fuzz".into(),
        created_at_ms: 0,
        source: Default::default(),
        selection: Default::default(),
        snapshot_at_ms: None,
        shards: Vec::new(),
    };
    rmp_serde::to_vec_named(&header).unwrap()
}

fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    let mut digest = CASTAGNOLI.digest();
    digest.update(&out[start..start + 5]);
    digest.update(payload);
    let crc = digest.finalize();
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
}

/// An RDB file holding `keys` (name, DUMP payload) in db 0, written the
/// way a server writes one: the payload's trailer version picks the
/// magic, the body goes after the type byte and the key, and the file
/// ends with EOF and its CRC-64. `None` for a payload too short to have
/// a trailer.
pub fn rdb_file_of(keys: &[(&[u8], &[u8])]) -> Option<Vec<u8>> {
    let version = dump::peek_type_and_version(keys.first()?.1)?.1;
    let mut out = if version >= 80 {
        format!("VALKEY{version:03}").into_bytes()
    } else {
        format!("REDIS{version:04}").into_bytes()
    };
    out.extend_from_slice(&[0xfe, 0]);
    for (key, payload) in keys {
        let body = payload.get(..payload.len().checked_sub(10)?)?;
        out.push(*body.first()?);
        push_rdb_string(&mut out, key);
        out.extend_from_slice(&body[1..]);
    }
    out.push(0xff);
    let crc = dump::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

fn push_rdb_string(out: &mut Vec<u8>, s: &[u8]) {
    // Lengths up to 16383 in the 1- and 2-byte forms, else 32 bits.
    match s.len() {
        n if n < 64 => out.push(n as u8),
        n if n < 16384 => out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]),
        n => {
            out.push(0x80);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s);
}

/// The RDB reader reads any bytes to an end without panicking, and what
/// it yields is sound: every key's payload has a valid CRC-64 trailer
/// carrying the file's version, keys come in file order, nothing follows
/// an error or the end. Checked on the input as is, with its trailing
/// CRC-64 repaired, and behind a valid header (so mutations reach the
/// opcode loop); the decoder then runs on every payload.
pub fn check_rdb_read(data: &[u8]) {
    rdb_one(data);
    let mut resealed = data.to_vec();
    if let Some(covered) = resealed.len().checked_sub(8) {
        let crc = dump::crc64(&resealed[..covered]);
        resealed[covered..].copy_from_slice(&crc.to_le_bytes());
        rdb_one(&resealed);
    }
    for header in [&b"REDIS0011"[..], b"VALKEY080", b"REDIS0013"] {
        let mut framed = header.to_vec();
        framed.extend_from_slice(data);
        rdb_one(&framed);
    }
}

fn rdb_one(bytes: &[u8]) {
    use kbdump::format::rdb::{Item, RdbReader, ReaderOptions};
    // A limit well above any fuzz input: what bounds memory here is that
    // nothing is allocated beyond the bytes actually present.
    let options = ReaderOptions {
        max_value_bytes: 64 << 20,
    };
    let Ok(mut reader) = RdbReader::with_options(bytes, options) else {
        return;
    };
    let version = reader.header().version;
    let mut last_offset = 0;
    loop {
        match reader.next_item() {
            Ok(Some(Item::Key(k))) => {
                assert!(k.offset >= last_offset, "keys out of file order");
                last_offset = k.offset;
                let env = dump::parse_envelope(&k.payload).expect("a payload with a valid trailer");
                assert_eq!(env.rdb_version, version, "payload version = file version");
                let _ = dump::decode(&k.payload);
            }
            Ok(Some(Item::End { .. })) => {
                assert!(
                    matches!(reader.next_item(), Ok(None)),
                    "an item after the end"
                );
                return;
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                assert!(e.offset().is_none_or(|o| o <= bytes.len() as u64), "{e}");
                assert!(
                    matches!(reader.next_item(), Ok(None)),
                    "an item after an error"
                );
                return;
            }
        }
    }
}

/// A few AOF command sequences in the shapes servers write (SELECT,
/// MULTI/EXEC, strings, collections, expiries, renames, an annotation):
/// the seeds of the AOF target.
pub fn aof_seeds() -> Vec<Vec<u8>> {
    use kbdump::format::aof::encode_command as c;
    let session: Vec<Vec<&[u8]>> = vec![
        vec![b"SELECT", b"0"],
        vec![b"SET", b"kb:frequency:p", b"1", b"NX"],
        vec![b"MULTI"],
        vec![b"INCR", b"kb:frequency:p"],
        vec![b"HSET", b"kb:affinity:s", b"joy", b"0.4"],
        vec![b"EXEC"],
        vec![b"SADD", b"kb:symbol_to_patterns:s", b"p", b"q"],
        vec![b"ZADD", b"z", b"1", b"a"],
        vec![b"RPUSH", b"l", b"a", b"b"],
        vec![b"LTRIM", b"l", b"0", b"0"],
        vec![b"PEXPIREAT", b"kb:frequency:p", b"1800000000000"],
        vec![b"SET", b"k", b"v", b"PXAT", b"1800000000000"],
        vec![b"RENAME", b"k", b"k2"],
        vec![b"DEL", b"l"],
        vec![b"XADD", b"stm:events:kb", b"1-1", b"f", b"v"],
        vec![b"FLUSHDB"],
    ];
    let mut all = b"#TS:1700000000\r\n".to_vec();
    let mut seeds = Vec::new();
    for args in &session {
        let one = c(args);
        seeds.push(one.clone());
        all.extend(one);
    }
    seeds.push(all);
    seeds
}

/// The AOF reader and the replay take any bytes without panicking: the
/// reader's offsets grow and stay inside the input, nothing follows an
/// error, the commands read re-encode to bytes that read back the same;
/// the replay of them (every key selected) yields payloads with valid
/// trailers. The manifest parser takes the bytes as text.
pub fn check_aof_read(data: &[u8]) {
    use kbdump::format::aof::{encode_command, manifest, CommandReader, Limits, Replay};
    let limits = Limits {
        max_arg_bytes: 16 << 20,
        max_args: 1 << 16,
        max_command_bytes: 64 << 20,
    };
    let mut reader = CommandReader::with_limits(data, 0, limits);
    let mut commands = Vec::new();
    let mut last = None;
    loop {
        match reader.next_command() {
            Ok(Some(cmd)) => {
                assert!(last.is_none_or(|l| cmd.offset > l), "offsets go back");
                assert!(cmd.offset < data.len() as u64);
                last = Some(cmd.offset);
                commands.push(cmd);
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.offset().is_none_or(|o| o <= data.len() as u64), "{e}");
                assert!(
                    matches!(reader.next_command(), Ok(None)),
                    "a command after an error"
                );
                break;
            }
        }
    }
    let mut again = Vec::new();
    for cmd in &commands {
        let args: Vec<&[u8]> = cmd.args.iter().map(Vec::as_slice).collect();
        again.extend(encode_command(&args));
    }
    let reread: Vec<_> = CommandReader::new(&again[..], 0)
        .map(|c| c.expect("re-encoded commands read back").args)
        .collect();
    assert_eq!(reread.len(), commands.len());
    assert!(reread.iter().zip(&commands).all(|(a, b)| *a == b.args));
    let mut replay = Replay::new(Box::new(|_, _: &[u8]| true), 1_700_000_000_000, 11);
    for cmd in commands {
        replay.command(cmd, "fuzz");
    }
    for key in replay.finish().keys {
        if let Ok((payload, _)) = key.outcome {
            dump::parse_envelope(&payload).expect("a payload with a valid trailer");
            let _ = dump::decode(&payload);
        }
    }
    let _ = manifest::parse(&String::from_utf8_lossy(data));
}
