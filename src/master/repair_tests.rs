//! Tests of [`repair`]: what it cuts, what it keeps, and what it reports.

use std::fs;
use std::path::Path;

use super::format::{FRAME_BYTES, HEADER_BYTES};
use super::tests::{
    Ev, evs, expect_corrupt, flip_byte, group_len, len_of, open, open_small, read_all, record_lens,
    segment,
};
use super::*;

/// 10 appends of 4 events into segments of 300 bytes: two groups a segment, segments 0 to 4
/// sealed, segment 5 empty.
fn ten_groups(dir: &Path) -> Vec<Ev> {
    let (master, _) = open_small(dir, 300).expect("open");
    let mut all = Vec::new();
    for i in 0..10 {
        let batch = evs(i * 4..i * 4 + 4);
        master.append(&batch).expect("append");
        all.extend(batch);
    }
    assert_eq!(verify(dir).expect("verify").segments, 6);
    all
}

#[test]
fn a_sound_dataset_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_groups(dir.path());
    let report = repair(dir.path()).expect("repair");
    assert!(report.damage.is_empty(), "{report:?}");
    assert!(!report.changed(), "{report:?}");
    assert_eq!(report.kept, verify(dir.path()).expect("verify"));
    assert_eq!(read_all(dir.path()).expect("read"), all);
}

#[test]
fn an_unacknowledged_tail_is_cut_as_opening_cuts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        master.append(&evs(0..3)).expect("append");
        master.append(&evs(3..6)).expect("append");
    }
    let path = segment(dir.path(), 0);
    let full = len_of(&path);
    // The second group without its marker: three whole records nobody acknowledged.
    let keep = HEADER_BYTES + group_len(&evs(0..3));
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(full - 1))
        .expect("truncate");
    let report = repair(dir.path()).expect("repair");
    assert!(report.damage.is_empty(), "a tail is not damage: {report:?}");
    assert_eq!(
        report.cuts,
        vec![Cut {
            path: path.clone(),
            offset: keep,
            bytes: full - 1 - keep,
            records: 3,
            // With no marker, more records may have been meant to follow.
            records_exact: false,
            removed: false,
        }]
    );
    assert!(!report.manifest_rewritten);
    assert_eq!((report.kept.records, report.kept.groups), (3, 1));
    assert_eq!(len_of(&path), keep);
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..3));
}

#[test]
fn damage_cuts_the_log_after_the_last_whole_group_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_groups(dir.path());
    // Damage the second record of the second group of segment 1 (the log's fourth group).
    let damaged = segment(dir.path(), 1);
    let keep = HEADER_BYTES + group_len(&all[8..12]);
    let second = keep + record_lens(&all[12..13])[0];
    flip_byte(&damaged, second + FRAME_BYTES + 1);
    // Opening reads only the last segment; a scrub finds the damage.
    open(dir.path()).expect("open");
    expect_corrupt(verify(dir.path()), &damaged, second);

    let lens: Vec<u64> = (0..6).map(|id| len_of(&segment(dir.path(), id))).collect();
    let report = repair(dir.path()).expect("repair");
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(
        (&report.damage[0].path, report.damage[0].offset),
        (&damaged, second)
    );
    let mut expected = vec![Cut {
        path: damaged.clone(),
        offset: keep,
        bytes: lens[1] - keep,
        // The damaged group's marker says how many records it had.
        records: 4,
        records_exact: true,
        removed: false,
    }];
    for id in 2..6 {
        expected.push(Cut {
            path: segment(dir.path(), id),
            offset: 0,
            bytes: lens[id as usize],
            records: if id < 5 { 8 } else { 0 },
            records_exact: true,
            removed: true,
        });
    }
    assert_eq!(report.cuts, expected);
    assert_eq!(
        report.bytes_cut(),
        lens[1] - keep + lens[2..].iter().sum::<u64>()
    );
    assert_eq!(report.records_cut(), 28);
    assert!(report.records_exact());
    assert!(report.manifest_rewritten);
    assert_eq!((report.kept.segments, report.kept.sealed_segments), (2, 1));
    assert_eq!((report.kept.groups, report.kept.records), (3, 12));
    for id in 2..6 {
        assert!(!segment(dir.path(), id).exists());
    }

    // What is left is a sound log that goes on from the cut.
    assert_eq!(read_all(dir.path()).expect("read"), all[..12]);
    let (master, recovery) = open_small(dir.path(), 300).expect("open");
    assert_eq!((recovery.records, recovery.truncated_bytes), (12, 0));
    assert_eq!(master.append(&evs(100..101)).expect("append").first, 12);
    drop(master);
    verify(dir.path()).expect("verify");
    // A second repair finds nothing to do.
    assert!(!repair(dir.path()).expect("repair").changed());
}

#[test]
fn an_unreadable_manifest_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_groups(dir.path());
    let manifest = dir.path().join("MANIFEST");
    flip_byte(&manifest, 30);
    assert!(matches!(verify(dir.path()), Err(Error::Corrupt { .. })));
    let report = repair(dir.path()).expect("repair");
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].path, manifest);
    assert!(report.cuts.is_empty(), "no event is lost: {report:?}");
    assert!(report.manifest_rewritten);
    assert_eq!(report.kept.sealed_segments, 5);
    assert_eq!(read_all(dir.path()).expect("read"), all);
}

#[test]
fn segments_after_a_missing_one_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_groups(dir.path());
    fs::remove_file(segment(dir.path(), 2)).expect("remove");
    assert!(matches!(read_all(dir.path()), Err(Error::Layout { .. })));
    let report = repair(dir.path()).expect("repair");
    assert_eq!(report.damage[0].path, segment(dir.path(), 2));
    assert!(report.damage[0].reason.contains("missing"), "{report:?}");
    let removed: Vec<_> = report.cuts.iter().map(|c| (c.removed, c.records)).collect();
    assert_eq!(removed, vec![(true, 8), (true, 8), (true, 0)]);
    assert_eq!(report.kept.records, 16);
    assert_eq!(read_all(dir.path()).expect("read"), all[..16]);
    let (master, _) = open_small(dir.path(), 300).expect("open");
    assert_eq!(master.append(&evs(100..101)).expect("append").first, 16);
}

#[test]
fn a_damaged_header_removes_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = ten_groups(dir.path());
    flip_byte(&segment(dir.path(), 3), 2);
    let report = repair(dir.path()).expect("repair");
    assert_eq!(
        (&report.damage[0].path, report.damage[0].offset),
        (&segment(dir.path(), 3), 0)
    );
    assert_eq!(report.cuts.len(), 3);
    assert!(report.cuts.iter().all(|c| c.removed));
    // Past a damaged header nothing can be counted.
    assert!(!report.cuts[0].records_exact);
    assert_eq!(
        report.cuts[1..]
            .iter()
            .map(|c| c.records)
            .collect::<Vec<_>>(),
        [8, 0]
    );
    assert_eq!(report.kept.records, 24);
    assert_eq!(read_all(dir.path()).expect("read"), all[..24]);
}

#[test]
fn repair_needs_the_writer_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_master, _) = open(dir.path()).expect("open");
    assert!(matches!(repair(dir.path()), Err(Error::Locked { .. })));
}

#[test]
fn records_behind_damage_are_counted_by_their_markers() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (master, _) = open(dir.path()).expect("open");
        for i in 0..4 {
            master.append(&evs(i * 5..i * 5 + 5)).expect("append");
        }
    }
    // Damage the length of the second group's first record: its frames cannot be followed,
    // but its marker and the two committed groups after it still say how many records they
    // hold.
    let path = segment(dir.path(), 0);
    let keep = HEADER_BYTES + group_len(&evs(0..5));
    flip_byte(&path, keep + 2);
    let report = repair(dir.path()).expect("repair");
    assert_eq!(report.cuts.len(), 1, "{report:?}");
    assert_eq!((report.cuts[0].offset, report.cuts[0].records), (keep, 15));
    assert!(report.records_exact());
    assert_eq!(read_all(dir.path()).expect("read"), evs(0..5));
}
