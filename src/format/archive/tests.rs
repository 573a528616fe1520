use std::io::Cursor;

use super::*;
use crate::kato::Category;

fn header() -> Header {
    Header {
        format_version: FORMAT_VERSION,
        tool: "kbdump test".into(),
        created_at_ms: 1_700_000_000_000,
        source: SourceInfo {
            kind: "redis-server".into(),
            address: "127.0.0.1:6379".into(),
            product: "redis".into(),
            version: "7.0.15".into(),
            rdb_version: Some(10),
            mode: "standalone".into(),
            db: 0,
            masters: Vec::new(),
        },
        selection: SelectionSpec::default(),
        snapshot_at_ms: None,
        shards: Vec::new(),
    }
}

fn record(kb: &[u8], category: Category, i: u32) -> Record {
    let mut payload = vec![0u8];
    payload.extend_from_slice(format!("value-{i}").as_bytes());
    payload.extend_from_slice(&[10, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    Record {
        // A key of the category's first variable shape, so that it
        // classifies to its block (readers check that).
        key: match category.shapes().iter().find(|s| s.is_prefix()) {
            Some(shape) => shape.key(kb, &i.to_le_bytes()),
            None => [kb, b":", category.name().as_bytes(), b":", &i.to_le_bytes()].concat(),
        },
        kb_id: kb.to_vec(),
        category,
        redis_type: "string".into(),
        expire_at_ms: i
            .is_multiple_of(3)
            .then_some(1_800_000_000_000 + i64::from(i)),
        payload,
    }
}

fn sample_records() -> Vec<Record> {
    let mut out = Vec::new();
    for kb in [&b"node0"[..], b"kb*\xff"] {
        for (i, cat) in [Category::Emotives, Category::Frequency, Category::Other]
            .into_iter()
            .cycle()
            .take(30)
            .enumerate()
        {
            out.push(record(kb, cat, i as u32));
        }
    }
    out
}

fn write(records: &[Record], options: WriterOptions) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new(), &header(), options).unwrap();
    let mut kb: Option<Vec<u8>> = None;
    for r in records {
        if kb.as_deref() != Some(&r.kb_id[..]) {
            if let Some(done) = kb.take() {
                writer.finish_kb(window(&done)).unwrap();
            }
            kb = Some(r.kb_id.clone());
        }
        writer.push(r).unwrap();
    }
    if let Some(done) = kb {
        writer.finish_kb(window(&done)).unwrap();
    }
    writer.finish().unwrap().0
}

fn window(kb: &[u8]) -> KbWindow {
    KbWindow {
        kb_id: kb.to_vec(),
        scan_started_ms: 1,
        scan_finished_ms: 2,
        keys: 30,
        vanished: 0,
        duplicates: 0,
    }
}

fn read_all_streaming(bytes: &[u8]) -> Result<Vec<Record>> {
    let mut reader = ArchiveReader::new(Cursor::new(bytes))?;
    let mut out = Vec::new();
    while let Some(block) = reader.next_block()? {
        for r in block.records()? {
            out.push(r?);
        }
    }
    Ok(out)
}

fn sorted(mut v: Vec<Record>) -> Vec<Record> {
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

#[test]
fn streaming_round_trip_keeps_every_field() {
    let records = sample_records();
    let bytes = write(&records, WriterOptions::default());
    let back = read_all_streaming(&bytes).unwrap();
    assert_eq!(sorted(back), sorted(records));
}

#[test]
fn small_blocks_split_and_index_lists_them() {
    let records = sample_records();
    let options = WriterOptions {
        block_target: 64,
        ..WriterOptions::default()
    };
    let bytes = write(&records, options);
    let mut archive = IndexedArchive::open(Cursor::new(&bytes)).unwrap();
    assert_eq!(archive.header(), &header());
    let entries = archive.index().blocks.clone();
    assert!(entries.len() > 6, "expected many small blocks");
    assert_eq!(archive.index().kbs.len(), 2);
    let mut back = Vec::new();
    for entry in &entries {
        let block = archive.read_block(entry).unwrap();
        for r in block.records().unwrap() {
            let r = r.unwrap();
            assert_eq!(
                (&r.kb_id, r.category),
                (&entry.meta.kb_id, entry.meta.category)
            );
            back.push(r);
        }
    }
    assert_eq!(sorted(back), sorted(records));
}

#[test]
fn interleaved_kbs_stay_within_the_open_budget() {
    let mut records = sample_records();
    records.sort_by_key(|r| r.key.iter().rev().copied().collect::<Vec<_>>());
    let options = WriterOptions {
        open_budget: 200,
        ..WriterOptions::default()
    };
    let bytes = write(&records, options);
    assert_eq!(sorted(read_all_streaming(&bytes).unwrap()), sorted(records));
}

#[test]
fn every_flipped_byte_is_detected_without_panic() {
    let bytes = write(&sample_records(), WriterOptions::default());
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            read_all_streaming(&bad).is_err(),
            "flip at byte {i} went unnoticed"
        );
        let _ = IndexedArchive::open(Cursor::new(&bad)).map(|mut a| {
            let entries = a.index().blocks.clone();
            entries.iter().for_each(|e| {
                let _ = a.read_block(e).map(|b| b.records().map(|r| r.count()));
            })
        });
    }
}

#[test]
fn every_truncation_is_reported_as_truncation() {
    let bytes = write(&sample_records(), WriterOptions::default());
    for cut in 0..bytes.len() {
        let err = read_all_streaming(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        let err = IndexedArchive::open(Cursor::new(&bytes[..cut]))
            .err()
            .unwrap();
        assert!(
            matches!(err, Error::Truncated { .. } | Error::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn future_version_and_bad_magic_are_refused_with_their_own_errors() {
    let mut bytes = write(&sample_records(), WriterOptions::default());
    bytes[8] = 2;
    let err = read_all_streaming(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade kbdump"));
    let err = read_all_streaming(b"REDIS0011 not an archive").unwrap_err();
    assert!(matches!(err, Error::BadMagic { .. }), "{err}");
}

#[test]
fn empty_archive_is_valid() {
    let bytes = write(&[], WriterOptions::default());
    assert!(read_all_streaming(&bytes).unwrap().is_empty());
    let archive = IndexedArchive::open(Cursor::new(&bytes)).unwrap();
    assert_eq!(archive.end_info().record_count, 0);
}

#[test]
fn damaged_block_leaves_other_blocks_readable_in_a_stream() {
    let records = sample_records();
    let bytes = write(&records, WriterOptions::default());
    let archive = IndexedArchive::open(Cursor::new(&bytes)).unwrap();
    let victim = archive.index().blocks[1].clone();
    let mut bad = bytes.clone();
    bad[(victim.offset + victim.len - 1) as usize] ^= 0xff;
    let mut reader = ArchiveReader::new(Cursor::new(&bad)).unwrap();
    let (mut good, mut damaged) = (0, 0);
    loop {
        match reader.next_block() {
            Ok(Some(_)) => good += 1,
            Ok(None) => break,
            Err(Error::Checksum { offset, .. }) => {
                assert_eq!(offset, victim.offset);
                damaged += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((good, damaged), (archive.index().blocks.len() - 1, 1));
}

/// Rewrites `bytes` frame by frame, replacing the MessagePack string `from`
/// with `to` in the header, in every block's metadata (not in its
/// compressed records) and in the index, with fresh CRCs: the archive a
/// newer writer that names a category `to` would have written. The names
/// have the same length, so every offset stays right.
fn rename_category(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let (old, new) = (
        rmp_serde::to_vec(from).unwrap(),
        rmp_serde::to_vec(to).unwrap(),
    );
    let replace = |region: &mut [u8]| {
        let mut at = 0;
        while let Some(found) = region[at..].windows(old.len()).position(|w| w == old) {
            region[at + found..at + found + new.len()].copy_from_slice(&new);
            at += found + new.len();
        }
    };
    let preamble = 10;
    let mut out = bytes[..preamble].to_vec();
    let mut input = Cursor::new(&bytes[preamble..]);
    let mut offset = preamble as u64;
    loop {
        let frame = frame::read_frame(&mut input, offset, None)
            .unwrap()
            .unwrap();
        offset += frame.total_len();
        let kind = frame.kind().unwrap();
        let mut payload = frame.payload;
        match kind {
            FrameKind::Block => {
                let meta_len = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
                replace(&mut payload[4..4 + meta_len]);
            }
            FrameKind::Header | FrameKind::Index => replace(&mut payload),
            FrameKind::End => {}
        }
        frame::write_frame(&mut out, kind, &payload).unwrap();
        if kind == FrameKind::End {
            break;
        }
    }
    out.extend_from_slice(&bytes[offset as usize..]);
    out
}

#[test]
fn a_category_this_build_does_not_know_reads_as_other_and_keeps_its_name() {
    let records: Vec<Record> = (0..5)
        .map(|i| record(b"node0", Category::Predictions, i))
        .chain((5..8).map(|i| record(b"node0", Category::Emotives, i)))
        .collect();
    let mut header = header();
    header.selection.categories = vec![Category::Predictions, Category::Emotives];
    let mut writer = ArchiveWriter::new(Vec::new(), &header, WriterOptions::default()).unwrap();
    for r in &records {
        writer.push(r).unwrap();
    }
    writer.finish_kb(window(b"node0")).unwrap();
    let known = writer.finish().unwrap().0;
    let newer = rename_category(&known, "predictions", "forecasting");
    assert_ne!(newer, known, "the rename found the category");
    assert_eq!(newer.len(), known.len());

    let expect = |name: &str, category: Category| -> Vec<(String, Category, Record)> {
        let mut out: Vec<_> = records
            .iter()
            .map(|r| match r.category {
                Category::Predictions => (
                    name.to_string(),
                    category,
                    Record {
                        category,
                        ..r.clone()
                    },
                ),
                c => (c.name().to_string(), c, r.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.2.key.cmp(&b.2.key));
        out
    };
    for (bytes, name, category) in [
        (&known, "predictions", Category::Predictions),
        (&newer, "forecasting", Category::Other),
    ] {
        // Indexed: the index entry and the block agree, and keep the name.
        let mut archive = IndexedArchive::open(Cursor::new(bytes)).unwrap();
        assert_eq!(
            archive.header().selection.categories,
            vec![category, Category::Emotives]
        );
        let mut seen = Vec::new();
        for entry in archive.index().blocks.clone() {
            let block = archive.read_block(&entry).unwrap();
            assert_eq!(block.category_name(), entry.category_name());
            assert_eq!(block.meta.category, entry.meta.category);
            for r in block.records().unwrap() {
                let r = r.unwrap();
                assert_eq!(r.category, entry.meta.category);
                seen.push((entry.category_name().to_string(), r.category, r));
            }
        }
        seen.sort_by(|a, b| a.2.key.cmp(&b.2.key));
        assert_eq!(seen, expect(name, category));
        // Streaming: the same.
        let mut reader = ArchiveReader::new(Cursor::new(bytes)).unwrap();
        let mut seen = Vec::new();
        while let Some(block) = reader.next_block().unwrap() {
            assert!(block.describe().contains(block.category_name()));
            for r in block.records().unwrap() {
                seen.push((
                    block.category_name().to_string(),
                    block.meta.category,
                    r.unwrap(),
                ));
            }
        }
        seen.sort_by(|a, b| a.2.key.cmp(&b.2.key));
        assert_eq!(seen, expect(name, category));
    }
}

const GOLDEN: &[u8] = include_bytes!("../../../fixtures/archive/golden.kbd");
const GOLDEN_RECORDS: &str = include_str!("../../../fixtures/archive/golden.records.jsonl");

#[test]
fn the_golden_archive_decodes_to_its_records() {
    let unhex = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let expected: Vec<Record> = GOLDEN_RECORDS
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Record {
                key: crate::kato::parse_display_bytes(v["key"].as_str().unwrap()),
                kb_id: crate::kato::parse_display_bytes(v["kb_id"].as_str().unwrap()),
                category: v["category"].as_str().unwrap().parse().unwrap(),
                redis_type: v["type"].as_str().unwrap().to_string(),
                expire_at_ms: v["expire_at_ms"].as_i64(),
                payload: unhex(v["payload_hex"].as_str().unwrap()),
            }
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        sorted(read_all_streaming(GOLDEN).unwrap()),
        sorted(expected.clone())
    );
    let mut archive = IndexedArchive::open(Cursor::new(GOLDEN)).unwrap();
    let mut back = Vec::new();
    for entry in archive.index().blocks.clone() {
        assert_eq!(entry.category_name(), entry.meta.category.name());
        for r in archive.read_block(&entry).unwrap().records().unwrap() {
            back.push(r.unwrap());
        }
    }
    assert_eq!(sorted(back), sorted(expected));
}

#[test]
fn the_golden_archive_metadata_encodes_to_the_same_bytes() {
    // Header, block metadata and index, decoded and encoded again by this
    // build, are byte for byte what the fixture holds: categories are
    // stored as the names they always were.
    let mut input = Cursor::new(&GOLDEN[10..]);
    let mut offset = 10;
    let mut kinds = Vec::new();
    loop {
        let frame = frame::read_frame(&mut input, offset, None)
            .unwrap()
            .unwrap();
        offset += frame.total_len();
        let kind = frame.kind().unwrap();
        kinds.push(kind);
        let p = &frame.payload;
        match kind {
            FrameKind::Header => {
                let h: Header = rmp_serde::from_slice(p).unwrap();
                assert_eq!(rmp_serde::to_vec_named(&h).unwrap(), *p);
            }
            FrameKind::Block => {
                let n = u32::from_le_bytes(p[..4].try_into().unwrap()) as usize;
                let meta: BlockMeta = rmp_serde::from_slice(&p[4..4 + n]).unwrap();
                assert_eq!(rmp_serde::to_vec_named(&meta).unwrap(), p[4..4 + n]);
            }
            FrameKind::Index => {
                let index: Index = rmp_serde::from_slice(p).unwrap();
                assert_eq!(rmp_serde::to_vec_named(&index).unwrap(), *p);
            }
            FrameKind::End => break,
        }
    }
    assert!(kinds.contains(&FrameKind::Block) && kinds.contains(&FrameKind::Index));
}

#[test]
fn flushed_batches_read_back_from_a_cut_archive_and_a_rewind_finishes_cleanly() {
    let records = sample_records();
    let mut writer = ArchiveWriter::new(Vec::new(), &header(), Default::default()).unwrap();
    for r in &records[..20] {
        writer.push(r).unwrap();
    }
    writer.flush_blocks().unwrap();
    let good = writer.checkpoint();
    // Every record pushed before the flush is in the bytes written so far.
    let cut = writer.get_mut()[..good.offset as usize].to_vec();
    let mut reader = ArchiveReader::new(Cursor::new(cut)).unwrap();
    let mut seen = 0;
    while let Ok(Some(block)) = reader.next_block() {
        seen += block.records().unwrap().count();
    }
    assert_eq!(seen, 20);
    // A batch that failed halfway is forgotten; the archive still finishes.
    for r in &records[20..] {
        writer.push(r).unwrap();
    }
    writer.flush_blocks().unwrap();
    writer.rewind(good);
    writer.get_mut().truncate(good.offset as usize);
    let (bytes, index) = writer.finish().unwrap();
    assert_eq!(index.blocks.iter().map(|b| b.meta.records).sum::<u64>(), 20);
    let mut archive = IndexedArchive::open(Cursor::new(bytes)).unwrap();
    for entry in archive.index().blocks.clone() {
        archive.read_block(&entry).unwrap();
    }
}

#[test]
fn absent_records_round_trip_and_read_as_type_none_without_the_marker() {
    let gone = Record::absent(
        b"node0:emotives:gone".to_vec(),
        b"node0".to_vec(),
        Category::Emotives,
    );
    let kept = record(b"node0", Category::Emotives, 1);
    let bytes = write(&[gone.clone(), kept.clone()], WriterOptions::default());
    let back = sorted(read_all_streaming(&bytes).unwrap());
    assert_eq!(back, sorted(vec![gone.clone(), kept]));
    assert_eq!(back.iter().filter(|r| r.is_absent()).count(), 1);
    // A reader that predates the marker ignores the field it does not know
    // and sees a record of type `none` with an empty payload.
    #[derive(serde::Deserialize)]
    struct OlderWire {
        #[serde(rename = "type")]
        redis_type: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    }
    let wire = types::RecordWire {
        key: (&gone.key[..]).into(),
        redis_type: (&gone.redis_type[..]).into(),
        expire_at_ms: None,
        payload: (&gone.payload[..]).into(),
        absent: true,
    };
    let older: OlderWire = rmp_serde::from_slice(&rmp_serde::to_vec_named(&wire).unwrap()).unwrap();
    assert_eq!(
        (older.redis_type.as_str(), older.payload.len()),
        ("none", 0)
    );
}
