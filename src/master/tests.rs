//! Tests on real files with real fsyncs, in temporary directories: appending, group commit and
//! replay; and the helpers the other test modules share.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier};

use serde::{Deserialize, Serialize};

use super::format::{self, HEADER_BYTES, MARKER_BYTES, Marker};
use super::*;
use crate::history::Share;
use crate::metrics::Metrics;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct Ev {
    pub id: u64,
    pub time: u64,
    pub name: String,
}

pub(super) fn ev(id: u64) -> Ev {
    Ev {
        id,
        time: 1_700_000_000_000 + id,
        name: format!("event-{id}"),
    }
}

pub(super) fn evs(ids: std::ops::Range<u64>) -> Vec<Ev> {
    ids.map(ev).collect()
}

type Master = MasterDataset<Ev>;

pub(super) fn open(dir: &Path) -> Result<(Master, Recovery)> {
    Master::open(dir, MasterOptions::default())
}

pub(super) fn open_small(dir: &Path, segment_bytes: u64) -> Result<(Master, Recovery)> {
    let options = MasterOptions {
        segment_bytes,
        ..MasterOptions::default()
    };
    Master::open(dir, options)
}

pub(super) fn read_all(dir: &Path) -> Result<Vec<Ev>> {
    let mut out = Vec::new();
    read_share(dir, Share::WHOLE, |e: Ev| out.push(e))?;
    Ok(out)
}

pub(super) fn segment(dir: &Path, id: u64) -> PathBuf {
    dir.join(format::segment_name(id))
}

pub(super) fn len_of(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// The encoded length of each event's record, as written.
pub(super) fn record_lens(events: &[Ev]) -> Vec<u64> {
    events
        .iter()
        .map(|e| format::encode_record(&mut Vec::new(), 1, e).expect("encodes"))
        .collect()
}

/// The bytes one append of `events` writes: its records and its commit marker.
pub(super) fn encode_group(events: &[Ev]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        format::encode_record(&mut out, 1, e).expect("encodes");
    }
    let marker = Marker::of(&out, events.len() as u64);
    out.extend_from_slice(&marker.encode());
    out
}

/// The length of one append of `events` on disk.
pub(super) fn group_len(events: &[Ev]) -> u64 {
    record_lens(events).iter().sum::<u64>() + MARKER_BYTES
}

pub(super) fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).expect("write");
}

pub(super) fn truncate(path: &Path, len: u64) {
    let file = OpenOptions::new().write(true).open(path).expect("open");
    file.set_len(len).expect("truncate");
}

pub(super) fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).expect("open");
    file.write_all(bytes).expect("append");
}

pub(super) fn expect_corrupt<T: std::fmt::Debug>(result: Result<T>, path: &Path, offset: u64) {
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
pub(super) fn last_segment(dir: &Path) -> PathBuf {
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
    // Each append is one group: its records, then its commit marker.
    let path = segment(dir.path(), 0);
    let mut expected = format::encode_header(0).to_vec();
    expected.extend(encode_group(&all[..10]));
    expected.extend(encode_group(&all[10..]));
    assert_eq!(fs::read(&path).expect("read"), expected);

    let (master, recovery) = open(dir.path()).expect("reopen");
    assert_eq!(recovery.records, 25);
    assert_eq!(recovery.bytes, master.bytes());
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(read_all(dir.path()).expect("read"), all);
    let report = verify(dir.path()).expect("verify");
    assert_eq!(
        report,
        VerifyReport {
            segments: 1,
            sealed_segments: 0,
            groups: 2,
            records: 25,
            bytes: master.bytes(),
            file_bytes: len_of(&path),
            unfinished_bytes: 0,
        }
    );
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
    // One commit marker per fsync.
    assert_eq!(verify(dir.path()).expect("verify").groups, fsyncs);

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
fn segments_roll_over_and_replay_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = Vec::new();
    {
        let (master, _) = open_small(dir.path(), 300).expect("open");
        for i in 0..10 {
            let batch = evs(i * 4..i * 4 + 4);
            master.append(&batch).expect("append");
            all.extend(batch);
        }
        assert!(Metrics::get(&master.counters().segments) > 3);
    }
    let (master, recovery) = open_small(dir.path(), 300).expect("reopen");
    assert!(recovery.segments > 3, "{recovery:?}");
    for id in 0..recovery.segments {
        assert!(segment(dir.path(), id).exists());
    }
    assert_eq!(recovery.records, all.len() as u64);
    assert_eq!(recovery.bytes, record_lens(&all).iter().sum::<u64>());
    let report = verify(dir.path()).expect("verify");
    assert_eq!(report.segments, recovery.segments);
    assert_eq!(report.sealed_segments, recovery.segments - 1);
    assert_eq!((report.groups, report.records), (10, 40));
    assert_eq!(report.bytes, master.bytes());
    assert_eq!(read_all(dir.path()).expect("read"), all);

    // Sealed segments hold whole appends and are never written again.
    let sealed_len = len_of(&segment(dir.path(), 0));
    master.append(&evs(100..104)).expect("append");
    assert_eq!(len_of(&segment(dir.path(), 0)), sealed_len);
    let mut expected = HEADER_BYTES;
    let mut groups = 0;
    while expected < 300 {
        expected += group_len(&all[groups * 4..groups * 4 + 4]);
        groups += 1;
    }
    assert!(groups > 1, "a segment holds several groups");
    assert_eq!(sealed_len, expected);
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
fn a_directory_has_one_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_master, _) = open(dir.path()).expect("open");
    assert!(matches!(open(dir.path()), Err(Error::Locked { .. })));
}

#[test]
fn readers_skip_an_append_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (master, _) = open(dir.path()).expect("open");
    master.append(&evs(0..3)).expect("append");
    // What a reader may see of a group still being copied into the file: whole records, and
    // part of the next.
    let mut partial = Vec::new();
    format::encode_record(&mut partial, 1, &ev(3)).expect("encode");
    format::encode_record(&mut partial, 1, &ev(4)).expect("encode");
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
    // A whole committed group that no append acknowledged (as a group commit whose fsync has
    // not returned yet leaves it).
    append_raw(&last_segment(dir.path()), &encode_group(&[ev(99)]));
    let mut read = Vec::new();
    master
        .read_share(Share::WHOLE, |e| read.push(e))
        .expect("read");
    assert_eq!(read, evs(0..8));
    assert_eq!(read_all(dir.path()).expect("read").len(), 9);
}

#[test]
fn a_replay_from_a_mark_reads_exactly_what_came_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small segments, so the marks fall in different segments and at their ends.
    let (master, _) = open_small(dir.path(), 100).expect("open");
    let mut marks = vec![(0, master.mark().position())];
    for chunk in 0..12u64 {
        master
            .append(&evs(chunk * 3..chunk * 3 + 3))
            .expect("append");
        marks.push((chunk * 3 + 3, master.mark().position()));
    }
    assert!(
        marks.last().map(|m| m.1.segment) > marks.first().map(|m| m.1.segment),
        "the test spans segments"
    );
    for (before, position) in marks {
        for count in 1..=3 {
            let mut read = Vec::new();
            for index in 0..count {
                let share = Share { index, count };
                read_share_from(
                    &Disk,
                    dir.path(),
                    MasterOptions::default().schema_version,
                    position,
                    share,
                    &AtomicU64::new(0),
                    |e: Ev| read.push(e),
                )
                .expect("read from the mark");
            }
            read.sort();
            assert_eq!(read, evs(before..36), "from {position:?}, {count} shares");
        }
    }
}
