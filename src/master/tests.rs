//! Tests on real files with real fsyncs, in temporary directories.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, OnceLock};

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::format::{self, FRAME_BYTES, HEADER_BYTES, MAX_RECORD_BYTES};
use super::*;
use crate::history::Share;
use crate::metrics::Metrics;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Ev {
    id: u64,
    time: u64,
    name: String,
}

fn ev(id: u64) -> Ev {
    Ev {
        id,
        time: 1_700_000_000_000 + id,
        name: format!("event-{id}"),
    }
}

fn evs(ids: std::ops::Range<u64>) -> Vec<Ev> {
    ids.map(ev).collect()
}

type Master = MasterDataset<Ev>;

fn open(dir: &Path) -> Result<(Master, Recovery)> {
    Master::open(dir, MasterOptions::default())
}

fn open_small(dir: &Path, segment_bytes: u64) -> Result<(Master, Recovery)> {
    Master::open(dir, MasterOptions { segment_bytes })
}

fn read_all(dir: &Path) -> Result<Vec<Ev>> {
    let mut out = Vec::new();
    read_share(dir, Share::WHOLE, |e: Ev| out.push(e))?;
    Ok(out)
}

fn segment(dir: &Path, id: u64) -> PathBuf {
    dir.join(format::segment_name(id))
}

/// The encoded length of each event's record, as written.
fn record_lens(events: &[Ev]) -> Vec<u64> {
    events
        .iter()
        .map(|e| format::encode_record(&mut Vec::new(), e).expect("encodes"))
        .collect()
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).expect("write");
}

fn truncate(path: &Path, len: u64) {
    let file = OpenOptions::new().write(true).open(path).expect("open");
    file.set_len(len).expect("truncate");
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).expect("open");
    file.write_all(bytes).expect("append");
}

/// A record frame around any payload, with a correct checksum.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = len.to_vec();
    out.extend_from_slice(&format::checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T>, path: &Path, offset: u64) {
    let err = result.expect_err("corruption is an error");
    assert!(
        matches!(&err, Error::Corrupt { path: p, offset: o, .. } if p == path && *o == offset),
        "expected corruption in {} at {offset}, got {err:?}",
        path.display()
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {offset}")), "{message}");
}

/// The segment being appended to: the one with the highest id.
fn last_segment(dir: &Path) -> PathBuf {
    let count = fs::read_dir(dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count() as u64;
    segment(dir, count - 1)
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = evs(0..25);
    {
        let (master, recovery) = open(dir.path()).expect("open");
        assert_eq!(
            recovery,
            Recovery {
                segments: 1,
                ..Recovery::default()
            }
        );
        assert!(master.is_empty());
        let first = master.append(&all[..10]).expect("append");
        let second = master.append(&all[10..]).expect("append");
        let empty = master.append(&[]).expect("append nothing");
        assert_eq!((first.first, first.records), (0, 10));
        assert_eq!((second.first, second.records), (10, 15));
        assert_eq!((empty.first, empty.records), (25, 0));
        assert_eq!(master.len(), 25);
        assert_eq!(master.bytes(), record_lens(&all).iter().sum::<u64>());
        assert_eq!(master.bytes(), first.bytes + second.bytes);
        assert_eq!(Metrics::get(&master.counters().fsyncs), 2);
        assert_eq!(Metrics::get(&master.counters().appends), 2);
        // Readable while open for appending.
        assert_eq!(
            master
                .read_share(Share::WHOLE, |_| {})
                .expect("read")
                .records,
            25
        );
    }
    let (master, recovery) = open(dir.path()).expect("reopen");
    assert_eq!(recovery.records, 25);
    assert_eq!(recovery.bytes, master.bytes());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(read_all(dir.path()).expect("read"), all);
    let stats = verify(dir.path()).expect("verify");
    assert_eq!((stats.records, stats.bytes), (25, master.bytes()));
    // Appending after a reopen continues the positions.
    assert_eq!(master.append(&evs(25..26)).expect("append").first, 25);
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..26));
}

#[test]
fn concurrent_appends_share_fsyncs() {
    const THREADS: u64 = 8;
    const APPENDS: u64 = 25;
    const BATCH: u64 = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open(dir.path()).expect("open");
    let master = Arc::new(master);
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let master = Arc::clone(&master);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..APPENDS)
                    .map(|a| {
                        let base = (t * APPENDS + a) * BATCH;
                        let batch = evs(base..base + BATCH);
                        let receipt = master.append(&batch).expect("append");
                        (receipt, batch)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acknowledged: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();

    let calls = THREADS * APPENDS;
    let fsyncs = Metrics::get(&master.counters().fsyncs);
    assert_eq!(Metrics::get(&master.counters().appends), calls);
    assert!(fsyncs < calls, "{fsyncs} fsyncs for {calls} appends");

    let read = read_all(dir.path()).expect("read");
    assert_eq!(read.len() as u64, calls * BATCH);
    let distinct: BTreeSet<_> = read.iter().map(|e| e.id).collect();
    assert_eq!(distinct.len(), read.len(), "an event was read twice");
    // Each receipt says exactly where its events are.
    for (receipt, batch) in &acknowledged {
        let start = receipt.first as usize;
        assert_eq!(&read[start..start + batch.len()], &batch[..]);
    }
}

#[test]
fn torn_tail_in_the_middle_of_the_last_record_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = evs(0..5);
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&all[..3]).expect("append");
        master.append(&all[3..]).expect("append");
    }
    let path = segment(dir.path(), 0);
    let full = fs::metadata(&path).expect("stat").len();
    let last = *record_lens(&all).last().expect("records");
    let cut = full - last / 2;
    truncate(&path, cut);

    let (master, recovery) = open(dir.path()).expect("reopen");
    assert_eq!(recovery.records, 4);
    assert_eq!(recovery.truncated_bytes, cut - (full - last));
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert_eq!((torn.path, torn.offset), (path.clone(), full - last));
    assert_eq!(fs::metadata(&path).expect("stat").len(), full - last);
    assert_eq!(
        Metrics::get(&master.counters().truncated_bytes),
        recovery.truncated_bytes
    );
    assert_eq!(read_all(dir.path()).expect("read"), all[..4]);

    // The log goes on from the cut as if the torn write never happened.
    assert_eq!(master.append(&evs(9..10)).expect("append").first, 4);
    drop(master);
    let (_, recovery) = open(dir.path()).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    let mut expected = all[..4].to_vec();
    expected.push(ev(9));
    assert_eq!(read_all(dir.path()).expect("read"), expected);
}

#[test]
fn torn_tail_with_a_bad_checksum_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = evs(0..4);
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&all).expect("append");
    }
    let path = segment(dir.path(), 0);
    let full = fs::metadata(&path).expect("stat").len();
    flip_byte(&path, full - 2);

    let (_, recovery) = open(dir.path()).expect("reopen");
    let last = *record_lens(&all).last().expect("records");
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.truncated_bytes, last);
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert!(torn.reason.contains("checksum"), "{}", torn.reason);
    assert_eq!(read_all(dir.path()).expect("read"), all[..3]);
}

#[test]
fn torn_tail_inside_a_frame_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..2)).expect("append");
    }
    let path = segment(dir.path(), 0);
    append_raw(&path, &[7, 0, 0]);
    let (_, recovery) = open(dir.path()).expect("reopen");
    assert_eq!((recovery.records, recovery.truncated_bytes), (2, 3));
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..2));
}

#[test]
fn corruption_in_a_sealed_segment_names_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir.path(), 100).expect("open");
        for i in 0..4 {
            master.append(&evs(i * 3..i * 3 + 3)).expect("append");
        }
    }
    let path = segment(dir.path(), 0);
    // The second record's payload.
    let first = record_lens(&[ev(0)])[0];
    let second = HEADER_BYTES + first;
    flip_byte(&path, second + FRAME_BYTES + 2);

    // Opening reads only the last segment; reading finds the damage, and so does a scrub.
    let (_master, recovery) = open_small(dir.path(), 100).expect("open");
    assert_eq!(recovery.truncated_bytes, 0);
    expect_corrupt(read_all(dir.path()), &path, second);
    expect_corrupt(verify(dir.path()), &path, second);
    let message = read_all(dir.path()).expect_err("corrupt").to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn bad_record_followed_by_whole_records_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..5)).expect("append");
    }
    let path = segment(dir.path(), 0);
    flip_byte(&path, HEADER_BYTES + FRAME_BYTES + 1);
    expect_corrupt(open(dir.path()), &path, HEADER_BYTES);
    expect_corrupt(read_all(dir.path()), &path, HEADER_BYTES);
    // Nothing was cut off by the failed open.
    assert!(open(dir.path()).is_err());
}

#[test]
fn bad_length_followed_by_whole_records_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..5)).expect("append");
    }
    let path = segment(dir.path(), 0);
    let second = HEADER_BYTES + record_lens(&[ev(0)])[0];
    // A length far past the end: the following records cannot be found by their frames.
    flip_byte(&path, second + 3);
    expect_corrupt(open(dir.path()), &path, second);
}

#[test]
fn segments_roll_over_and_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = Vec::new();
    {
        let (master, _) = open_small(dir.path(), 150).expect("open");
        for i in 0..10 {
            let batch = evs(i * 4..i * 4 + 4);
            master.append(&batch).expect("append");
            all.extend(batch);
        }
        assert!(Metrics::get(&master.counters().segments) > 3);
    }
    let (master, recovery) = open_small(dir.path(), 150).expect("reopen");
    assert!(recovery.segments > 3, "{recovery:?}");
    for id in 0..recovery.segments {
        assert!(segment(dir.path(), id).exists());
    }
    assert_eq!(recovery.records, all.len() as u64);
    let stats = verify(dir.path()).expect("verify");
    assert_eq!(stats.segments, recovery.segments);
    assert_eq!(stats.bytes, master.bytes());
    assert_eq!(read_all(dir.path()).expect("read"), all);

    // Sealed segments hold whole appends and are never written again.
    let sealed_len = fs::metadata(segment(dir.path(), 0)).expect("stat").len();
    master.append(&evs(100..104)).expect("append");
    assert_eq!(
        fs::metadata(segment(dir.path(), 0)).expect("stat").len(),
        sealed_len
    );
    assert_eq!(
        sealed_len - HEADER_BYTES,
        record_lens(&evs(0..8)).iter().sum::<u64>()
    );
}

#[test]
fn shares_partition_the_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open_small(dir.path(), 200).expect("open");
    for i in 0..7 {
        master.append(&evs(i * 5..i * 5 + 5)).expect("append");
    }
    let all: BTreeSet<u64> = (0..35).collect();
    for count in 1..=4 {
        let mut union = BTreeSet::new();
        let mut bytes = 0;
        for index in 0..count {
            let progress = AtomicU64::new(0);
            let mut ids = Vec::new();
            let stats =
                read_share_with_progress(dir.path(), Share { index, count }, &progress, |e: Ev| {
                    ids.push(e.id)
                })
                .expect("read");
            assert_eq!(stats.records, ids.len() as u64);
            assert_eq!(Metrics::get(&progress), stats.bytes);
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "log order within a share"
            );
            for id in ids {
                assert!(union.insert(id), "record {id} in two shares of {count}");
            }
            bytes += stats.bytes;
        }
        assert_eq!(union, all, "shares of {count}");
        assert_eq!(bytes, master.bytes());
    }
    let bad = read_share(dir.path(), Share { index: 2, count: 2 }, |_: Ev| {});
    assert!(matches!(bad, Err(Error::InvalidShare(_))));
    let bad = read_share(dir.path(), Share { index: 0, count: 0 }, |_: Ev| {});
    assert!(matches!(bad, Err(Error::InvalidShare(_))));
}

#[test]
fn huge_lengths_from_disk_allocate_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir.path(), 100).expect("open");
        master.append(&evs(0..5)).expect("append");
        master.append(&evs(5..10)).expect("append");
    }
    // At the tail of the last segment: lengths at, past and far past the limit are torn tails.
    let last = last_segment(dir.path());
    for len in [MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1, u32::MAX] {
        let mut garbage = len.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xab; 12]);
        append_raw(&last, &garbage);
        let stats = read_share(dir.path(), Share::WHOLE, |_: Ev| {}).expect("read");
        assert_eq!((stats.records, stats.unfinished_bytes), (10, 16));
        let (_, recovery) = open_small(dir.path(), 100).expect("reopen");
        assert_eq!(recovery.truncated_bytes, 16);
    }
    // In a sealed segment, the same is corruption.
    let sealed = segment(dir.path(), 0);
    let mut bytes = fs::read(&sealed).expect("read");
    bytes[HEADER_BYTES as usize..HEADER_BYTES as usize + 4]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&sealed, bytes).expect("write");
    expect_corrupt(read_all(dir.path()), &sealed, HEADER_BYTES);
}

#[test]
fn hostile_payload_with_a_good_checksum_is_a_decode_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..1)).expect("append");
    }
    // id 1, time 2, then a string claiming u64::MAX bytes (bincode varint: 0xfd, then 8 bytes).
    let mut payload = vec![1, 2, 0xfd];
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    let path = segment(dir.path(), 0);
    let offset = fs::metadata(&path).expect("stat").len();
    append_raw(&path, &frame(&payload));
    match read_all(dir.path()) {
        Err(Error::Decode {
            path: p, offset: o, ..
        }) => assert_eq!((p, o), (path, offset)),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn a_directory_has_one_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_master, _) = open(dir.path()).expect("open");
    assert!(matches!(open(dir.path()), Err(Error::Locked { .. })));
}

#[test]
fn leftovers_of_a_crash_during_rollover_are_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir.path(), 100).expect("open");
        master.append(&evs(0..5)).expect("append");
    }
    // A crash after sealing segment 1 but before creating segment 2 under its own name.
    fs::remove_file(segment(dir.path(), 1)).expect("remove");
    fs::write(dir.path().join("00000000000000000001.seg.tmp"), b"LFSEG").expect("write");
    fs::write(dir.path().join("MANIFEST.tmp"), b"half a manifest").expect("write");
    let (master, recovery) = open_small(dir.path(), 100).expect("reopen");
    assert_eq!(recovery.removed_temp_files, 2);
    assert_eq!((recovery.segments, recovery.records), (2, 5));
    master.append(&evs(5..6)).expect("append");
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..6));
}

#[test]
fn a_missing_or_resized_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir.path(), 100).expect("open");
        master.append(&evs(0..5)).expect("append");
        master.append(&evs(5..10)).expect("append");
    }
    let sealed = segment(dir.path(), 0);
    let len = fs::metadata(&sealed).expect("stat").len();
    truncate(&sealed, len - 1);
    assert!(matches!(open(dir.path()), Err(Error::Layout { path, .. }) if path == sealed));
    fs::remove_file(&sealed).expect("remove");
    assert!(matches!(read_all(dir.path()), Err(Error::Layout { .. })));

    let dir2 = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir2.path(), 100).expect("open");
        master.append(&evs(0..5)).expect("append");
    }
    let manifest2 = dir2.path().join("MANIFEST");
    flip_byte(&manifest2, 20);
    assert!(matches!(open(dir2.path()), Err(Error::Corrupt { path, .. }) if path == manifest2));
}

#[test]
fn readers_skip_an_append_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open(dir.path()).expect("open");
    master.append(&evs(0..3)).expect("append");
    // What a reader may see of a write still being copied into the file.
    let mut partial = Vec::new();
    format::encode_record(&mut partial, &ev(3)).expect("encode");
    partial.truncate(partial.len() - 1);
    append_raw(&segment(dir.path(), 0), &partial);
    let mut read = Vec::new();
    let stats = read_share(dir.path(), Share::WHOLE, |e: Ev| read.push(e)).expect("read");
    assert_eq!(read, evs(0..3));
    assert_eq!(stats.unfinished_bytes, partial.len() as u64);
    // Through the dataset, a replay stops at the durable end and sees no unfinished bytes.
    let mut read = Vec::new();
    let stats = master
        .read_share(Share::WHOLE, |e| read.push(e))
        .expect("read");
    assert_eq!(read, evs(0..3));
    assert_eq!(stats.unfinished_bytes, 0);
}

#[test]
fn replay_through_the_dataset_stops_at_the_durable_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open_small(dir.path(), 100).expect("open");
    master.append(&evs(0..3)).expect("append");
    master.append(&evs(3..8)).expect("append");
    // Whole records that no append acknowledged (as a torn group commit may leave them).
    let mut stray = Vec::new();
    format::encode_record(&mut stray, &ev(99)).expect("encode");
    append_raw(&last_segment(dir.path()), &stray);
    let mut read = Vec::new();
    master
        .read_share(Share::WHOLE, |e| read.push(e))
        .expect("read");
    assert_eq!(read, evs(0..8));
    assert_eq!(read_all(dir.path()).expect("read").len(), 9);
}

#[test]
fn oversized_events_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open(dir.path()).expect("open");
    let mut big = ev(0);
    big.name = "x".repeat(MAX_RECORD_BYTES as usize + 1);
    assert!(matches!(
        master.append(&[ev(1), big]),
        Err(Error::RecordTooLarge { .. })
    ));
    assert!(master.is_empty());
    master.append(&[ev(2)]).expect("append after a refusal");
    assert_eq!(read_all(dir.path()).expect("read"), vec![ev(2)]);
}

/// A segment of a few appends, written once, that each case damages a copy of.
struct Sample {
    bytes: Vec<u8>,
    events: Vec<Ev>,
    /// Where each record ends.
    ends: Vec<u64>,
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (master, _) = open(dir.path()).expect("open");
        let mut events = Vec::new();
        for (i, n) in [1u64, 3, 2, 4].into_iter().enumerate() {
            let base = i as u64 * 10;
            let mut batch = evs(base..base + n);
            batch[0].name = "y".repeat(i * 7);
            master.append(&batch).expect("append");
            events.extend(batch);
        }
        let ends = record_lens(&events)
            .into_iter()
            .scan(HEADER_BYTES, |end, len| {
                *end += len;
                Some(*end)
            })
            .collect();
        let bytes = fs::read(segment(dir.path(), 0)).expect("read");
        Sample {
            bytes,
            events,
            ends,
        }
    })
}

/// Opens a copy of the sample segment with `damage` done to it.
fn reopen_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, Result<Recovery>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = sample().bytes.clone();
    damage(&mut bytes);
    fs::write(segment(dir.path(), 0), &bytes).expect("write");
    let opened = open(dir.path()).map(|(_, recovery)| recovery);
    (dir, opened)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_truncation_recovers_a_prefix(cut in HEADER_BYTES..=sample().bytes.len() as u64) {
        let sample = sample();
        let (dir, opened) = reopen_damaged(|bytes| bytes.truncate(cut as usize));
        let recovery = opened.expect("a truncated tail always recovers");
        let whole = sample.ends.iter().take_while(|&&end| end <= cut).count();
        let valid = sample.ends[..whole].last().copied().unwrap_or(HEADER_BYTES);
        prop_assert_eq!(recovery.records, whole as u64);
        prop_assert_eq!(recovery.truncated_bytes, cut - valid);
        prop_assert_eq!(read_all(dir.path()).expect("read"), &sample.events[..whole]);
    }

    #[test]
    fn any_flipped_byte_is_cut_off_or_refused(at in HEADER_BYTES..sample().bytes.len() as u64, mask in 1u8..) {
        let sample = sample();
        let (dir, opened) = reopen_damaged(|bytes| bytes[at as usize] ^= mask);
        match opened {
            Ok(recovery) => {
                let read = read_all(dir.path()).expect("read after recovery");
                prop_assert_eq!(recovery.records, read.len() as u64);
                prop_assert_eq!(&read[..], &sample.events[..read.len()]);
                // Only the last record can be dropped: anything earlier has whole records after it.
                prop_assert!(read.len() + 1 >= sample.events.len());
            }
            Err(Error::Corrupt { offset, .. }) => prop_assert!(offset <= at),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
