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
        },
        selection: SelectionSpec::default(),
    }
}

fn record(kb: &[u8], category: Category, i: u32) -> Record {
    let mut payload = vec![0u8];
    payload.extend_from_slice(format!("value-{i}").as_bytes());
    payload.extend_from_slice(&[10, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    Record {
        key: [kb, b":", category.name().as_bytes(), b":", &i.to_le_bytes()].concat(),
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
