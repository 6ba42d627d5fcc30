//! Tests of recovery and damage on real files: unacknowledged tails cut at the last committed
//! group, damage before a committed group refused, sealed segments checked against the manifest,
//! and hostile lengths.

use std::fs;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::format::{self, FRAME_BYTES, HEADER_BYTES, MARKER_BYTES, MAX_RECORD_BYTES, Marker};
use super::tests::{
    Ev, append_raw, encode_group, ev, evs, expect_corrupt, flip_byte, group_len, last_segment,
    len_of, open, open_small, read_all, record_lens, segment, truncate,
};
use super::*;
use crate::history::Share;
use crate::metrics::Metrics;

#[test]
fn torn_tail_in_the_middle_of_the_last_group_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = evs(0..5);
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&all[..3]).expect("append");
        master.append(&all[3..]).expect("append");
    }
    let path = segment(dir.path(), 0);
    let full = len_of(&path);
    let committed_end = HEADER_BYTES + group_len(&all[..3]);
    let last = *record_lens(&all).last().expect("records");
    let cut = full - MARKER_BYTES - last / 2;
    truncate(&path, cut);

    let (master, recovery) = open(dir.path()).expect("reopen");
    // The whole second group goes, its first record too: it was never acknowledged.
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.truncated_bytes, cut - committed_end);
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert_eq!((torn.path, torn.offset), (path.clone(), committed_end));
    assert_eq!(len_of(&path), committed_end);
    assert_eq!(
        Metrics::get(&master.counters().truncated_bytes),
        recovery.truncated_bytes
    );
    assert_eq!(read_all(dir.path()).expect("read"), all[..3]);

    // The log goes on from the cut as if the torn write never happened.
    assert_eq!(master.append(&evs(9..10)).expect("append").first, 3);
    drop(master);
    let (_, recovery) = open(dir.path()).expect("reopen");
    assert_eq!(recovery.truncated_bytes, 0);
    let mut expected = all[..3].to_vec();
    expected.push(ev(9));
    assert_eq!(read_all(dir.path()).expect("read"), expected);
}

#[test]
fn whole_records_without_their_marker_are_cut_off() {
    let all = evs(0..5);
    let committed_end = HEADER_BYTES + group_len(&all[..2]);
    // Cut exactly before the marker, and inside it.
    for short in [MARKER_BYTES, 5] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (master, _) = open(dir.path()).expect("open");
            master.append(&all[..2]).expect("append");
            master.append(&all[2..]).expect("append");
        }
        let path = segment(dir.path(), 0);
        let cut = len_of(&path) - short;
        truncate(&path, cut);
        // Readers skip the uncommitted records, and opening cuts them off.
        assert_eq!(read_all(dir.path()).expect("read"), all[..2]);
        let (_, recovery) = open(dir.path()).expect("reopen");
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.truncated_bytes, cut - committed_end);
        let torn = recovery.torn_tail.expect("torn tail reported");
        assert_eq!(torn.offset, committed_end);
        assert!(
            torn.reason.contains("commit marker") || torn.reason.contains("bytes left"),
            "{}",
            torn.reason
        );
    }
}

#[test]
fn torn_tail_with_a_bad_checksum_is_cut_off() {
    let all = evs(0..4);
    // A byte of the last record, then a byte of the marker's group checksum.
    for from_end in [MARKER_BYTES + 2, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (master, _) = open(dir.path()).expect("open");
            master.append(&all[..3]).expect("append");
            master.append(&all[3..]).expect("append");
        }
        let path = segment(dir.path(), 0);
        flip_byte(&path, len_of(&path) - from_end);

        let (_, recovery) = open(dir.path()).expect("reopen");
        assert_eq!(recovery.records, 3);
        assert_eq!(recovery.truncated_bytes, group_len(&all[3..]));
        let torn = recovery.torn_tail.expect("torn tail reported");
        assert!(torn.reason.contains("checksum"), "{}", torn.reason);
        assert_eq!(read_all(dir.path()).expect("read"), all[..3]);
    }
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
fn an_out_of_order_last_group_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..3)).expect("append");
    }
    let path = segment(dir.path(), 0);
    let committed_end = len_of(&path);
    // The last group's later pages (whole records and its marker) reached the disk, its first
    // did not: it reads as zeros.
    let mut group = encode_group(&evs(10..14));
    let first = record_lens(&evs(10..11))[0] as usize;
    group[..first].fill(0);
    append_raw(&path, &group);

    // Readers see only the committed group, and so does a scrub.
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..3));
    let report = verify(dir.path()).expect("verify");
    assert_eq!((report.groups, report.records), (1, 3));
    assert_eq!(report.unfinished_bytes, group.len() as u64);

    let (master, recovery) = open(dir.path()).expect("a persisted-out-of-order tail recovers");
    assert_eq!(recovery.records, 3);
    assert_eq!(recovery.truncated_bytes, group.len() as u64);
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert_eq!(torn.offset, committed_end);
    assert_eq!(len_of(&path), committed_end);
    master.append(&evs(20..21)).expect("append");
    let mut expected = evs(0..3);
    expected.push(ev(20));
    assert_eq!(read_all(dir.path()).expect("read"), expected);
}

#[test]
fn a_marker_that_does_not_match_its_group_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..2)).expect("append");
    }
    let path = segment(dir.path(), 0);
    let committed_end = len_of(&path);
    let mut records = Vec::new();
    for e in evs(5..8) {
        format::encode_record(&mut records, 1, &e).expect("encode");
    }
    // A whole marker frame, but for a different record count.
    let mut bytes = records.clone();
    bytes.extend_from_slice(&Marker::of(&records, 2).encode());
    append_raw(&path, &bytes);
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..2));
    let (_, recovery) = open(dir.path()).expect("reopen");
    let torn = recovery.torn_tail.expect("torn tail reported");
    assert_eq!(
        (torn.offset, torn.bytes),
        (committed_end, bytes.len() as u64)
    );
    assert!(
        torn.reason.contains("commit marker for 2 records"),
        "{}",
        torn.reason
    );
}

#[test]
fn damage_before_a_committed_group_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..2)).expect("append");
        master.append(&evs(2..5)).expect("append");
        master.append(&evs(5..6)).expect("append");
    }
    let path = segment(dir.path(), 0);
    let second = HEADER_BYTES + group_len(&evs(0..2));
    // The second group's first record reads as zeros, yet the third group is committed after
    // it: the second was acknowledged, so this is not a tail to cut.
    let mut bytes = fs::read(&path).expect("read");
    let first = record_lens(&evs(2..3))[0];
    bytes[second as usize..(second + first) as usize].fill(0);
    fs::write(&path, &bytes).expect("write");
    expect_corrupt(open(dir.path()), &path, second);
    let message = open(dir.path()).expect_err("corrupt").to_string();
    assert!(
        message.contains("committed group ends at byte"),
        "{message}"
    );
    expect_corrupt(read_all(dir.path()), &path, second);
    expect_corrupt(verify(dir.path()), &path, second);
    // Nothing was cut off by the failed opens.
    assert_eq!(len_of(&path), bytes.len() as u64);
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
}

#[test]
fn bad_record_followed_by_a_committed_group_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..5)).expect("append");
        master.append(&evs(5..6)).expect("append");
    }
    let path = segment(dir.path(), 0);
    flip_byte(&path, HEADER_BYTES + FRAME_BYTES + 1);
    expect_corrupt(open(dir.path()), &path, HEADER_BYTES);
    expect_corrupt(read_all(dir.path()), &path, HEADER_BYTES);
    // Nothing was cut off by the failed open.
    assert!(open(dir.path()).is_err());
}

#[test]
fn bad_length_followed_by_a_committed_group_is_an_error() {
    // A length far past the end, and a length word with the marker flag but no marker's length:
    // the following frames cannot be found by their frames, only by searching.
    for mask in [0x5a, 0x80] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (master, _) = open(dir.path()).expect("open");
            master.append(&evs(0..5)).expect("append");
            master.append(&evs(5..6)).expect("append");
        }
        let path = segment(dir.path(), 0);
        let second = HEADER_BYTES + record_lens(&[ev(0)])[0];
        let mut bytes = fs::read(&path).expect("read");
        bytes[second as usize + 3] ^= mask;
        fs::write(&path, bytes).expect("write");
        expect_corrupt(open(dir.path()), &path, second);
    }
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
    // A group length far past the start of the file, in a marker with a good frame checksum.
    let huge = Marker {
        bytes: u64::MAX,
        records: 1,
        crc: 0,
    };
    append_raw(&last, &huge.encode());
    let (_, recovery) = open_small(dir.path(), 100).expect("reopen");
    assert_eq!(recovery.truncated_bytes, MARKER_BYTES);
    // In a sealed segment, the same is corruption.
    let sealed = segment(dir.path(), 0);
    let mut bytes = fs::read(&sealed).expect("read");
    bytes[HEADER_BYTES as usize..HEADER_BYTES as usize + 4]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&sealed, bytes).expect("write");
    expect_corrupt(read_all(dir.path()), &sealed, HEADER_BYTES);
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
    let len = len_of(&sealed);
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
fn a_sealed_segment_must_match_the_manifest_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open_small(dir.path(), 100).expect("open");
        master.append(&evs(0..5)).expect("append");
        master.append(&evs(5..10)).expect("append");
    }
    // Rewrite the manifest with one record fewer in segment 0 (but a valid checksum).
    let path = dir.path().join("MANIFEST");
    let mut bytes = fs::read(&path).expect("read");
    let records_at = 16 + 16;
    bytes[records_at] -= 1;
    let body = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, bytes).expect("write");
    let sealed = segment(dir.path(), 0);
    expect_corrupt(verify(dir.path()), &sealed, len_of(&sealed));
}

/// A segment of a few appends, written once, that each case damages a copy of.
struct Sample {
    bytes: Vec<u8>,
    events: Vec<Ev>,
    /// Where each group ends, and how many events are in the groups up to it.
    ends: Vec<(u64, usize)>,
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (master, _) = open(dir.path()).expect("open");
        let mut events = Vec::new();
        let mut ends = Vec::new();
        let mut end = HEADER_BYTES;
        for (i, n) in [1u64, 3, 2, 4].into_iter().enumerate() {
            let base = i as u64 * 10;
            let mut batch = evs(base..base + n);
            batch[0].name = "y".repeat(i * 7);
            master.append(&batch).expect("append");
            end += group_len(&batch);
            events.extend(batch);
            ends.push((end, events.len()));
        }
        let bytes = fs::read(segment(dir.path(), 0)).expect("read");
        assert_eq!(bytes.len() as u64, end);
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
    fn any_truncation_recovers_a_prefix_of_groups(cut in HEADER_BYTES..=sample().bytes.len() as u64) {
        let sample = sample();
        let (dir, opened) = reopen_damaged(|bytes| bytes.truncate(cut as usize));
        let recovery = opened.expect("a truncated tail always recovers");
        let (valid, whole) = sample
            .ends
            .iter()
            .take_while(|(end, _)| *end <= cut)
            .last()
            .copied()
            .unwrap_or((HEADER_BYTES, 0));
        prop_assert_eq!(recovery.records, whole as u64);
        prop_assert_eq!(recovery.truncated_bytes, cut - valid);
        prop_assert_eq!(read_all(dir.path()).expect("read"), &sample.events[..whole]);
    }

    #[test]
    fn any_flipped_byte_is_cut_off_or_refused(at in HEADER_BYTES..sample().bytes.len() as u64, mask in 1u8..) {
        let sample = sample();
        let (dir, opened) = reopen_damaged(|bytes| bytes[at as usize] ^= mask);
        let (last_start, _) = sample.ends[sample.ends.len() - 2];
        match opened {
            Ok(recovery) => {
                let read = read_all(dir.path()).expect("read after recovery");
                prop_assert_eq!(recovery.records, read.len() as u64);
                prop_assert_eq!(&read[..], &sample.events[..read.len()]);
                // Only the last group can be dropped, and only for damage in it: anything
                // earlier has a committed group after it.
                let (_, before_last) = sample.ends[sample.ends.len() - 2];
                prop_assert!(read.len() == sample.events.len() || read.len() == before_last);
                prop_assert!(read.len() == sample.events.len() || at >= last_start);
            }
            Err(Error::Corrupt { offset, .. }) => {
                prop_assert!(offset <= at);
                prop_assert!(at < last_start, "damage in the last group is a tail");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
