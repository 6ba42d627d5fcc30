//! Power loss, simulated: the master dataset on [`SimStorage`], crashed at any operation, must
//! reopen with every acknowledged append, exactly once, in order, and no part of any other.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::{Deserialize, Serialize};

use super::format;
use super::sim::SimStorage;
use super::storage::{Access, Storage};
use super::*;

const DIR: &str = "/sim/data";

fn dir() -> &'static Path {
    Path::new(DIR)
}

/// An event that says who appended it, in which append, at which place, and carries padding so
/// that groups span several pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SimEv {
    thread: u8,
    append: u16,
    index: u16,
    pad: String,
}

fn sim_ev(thread: usize, append: usize, index: usize, pad: usize) -> SimEv {
    let fill = char::from(b'a' + ((thread * 7 + append * 3 + index) % 26) as u8);
    SimEv {
        thread: thread as u8,
        append: append as u16,
        index: index as u16,
        pad: std::iter::repeat_n(fill, pad + index * 37 % 64).collect(),
    }
}

/// What each thread appends: batch sizes, one append each.
#[derive(Clone, Debug)]
struct Plan {
    segment_bytes: u64,
    pad: usize,
    threads: Vec<Vec<usize>>,
}

impl Plan {
    fn options(&self) -> MasterOptions {
        MasterOptions {
            segment_bytes: self.segment_bytes,
            ..MasterOptions::default()
        }
    }

    fn batch(&self, thread: usize, append: usize) -> Vec<SimEv> {
        (0..self.threads[thread][append])
            .map(|index| sim_ev(thread, append, index, self.pad))
            .collect()
    }
}

/// One append a thread tried, and its receipt if it was acknowledged.
type Attempts = Vec<Vec<Option<AppendReceipt>>>;

fn open_sim(storage: &SimStorage, plan: &Plan) -> Result<(MasterDataset<SimEv>, Recovery)> {
    MasterDataset::open_with(Arc::new(storage.clone()), dir(), plan.options())
}

/// Runs the plan's threads at once on `storage`; each stops at its first failed append.
fn run(storage: &SimStorage, plan: &Plan) -> Attempts {
    let Ok((master, _)) = open_sim(storage, plan) else {
        return vec![Vec::new(); plan.threads.len()];
    };
    let master = &master;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..plan.threads.len())
            .map(|t| {
                s.spawn(move || {
                    let mut attempts = Vec::new();
                    for a in 0..plan.threads[t].len() {
                        let receipt = master.append(&plan.batch(t, a)).ok();
                        attempts.push(receipt);
                        if receipt.is_none() {
                            break;
                        }
                    }
                    attempts
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("appending thread"))
            .collect()
    })
}

fn read_with(storage: &SimStorage, share: Share) -> Result<Vec<SimEv>> {
    let mut out = Vec::new();
    read_share_with(storage, dir(), 1, share, &AtomicU64::new(0), |e| {
        out.push(e)
    })?;
    Ok(out)
}

/// Opens the image left by a crash and checks it against what was acknowledged.
fn check_recovery(
    plan: &Plan,
    attempts: &Attempts,
    image: &SimStorage,
) -> std::result::Result<Recovery, TestCaseError> {
    let (master, recovery) = match open_sim(image, plan) {
        Ok(opened) => opened,
        Err(e) => return Err(TestCaseError::fail(format!("reopening failed: {e}"))),
    };
    let mut log = Vec::new();
    master
        .read_share(Share::WHOLE, |e| log.push(e))
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
    prop_assert_eq!(recovery.records, log.len() as u64);

    // Where each append's events are: all of them, back to back, in order, once.
    let mut appends: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
    for (position, e) in log.iter().enumerate() {
        let (t, a, i) = (e.thread as usize, e.append as usize, e.index as usize);
        prop_assert!(
            t < attempts.len() && a < attempts[t].len(),
            "event {:?} was never appended",
            (t, a, i)
        );
        prop_assert_eq!(e, &sim_ev(t, a, i, plan.pad));
        let (first, seen) = appends.entry((t, a)).or_insert((position, 0));
        prop_assert_eq!(
            (*first + *seen, *seen),
            (position, i),
            "append {:?} is not whole, in order and once",
            (t, a)
        );
        *seen += 1;
    }
    for (&(t, a), &(_, seen)) in &appends {
        prop_assert_eq!(seen, plan.threads[t][a], "part of append {:?}", (t, a));
    }
    for (t, tried) in attempts.iter().enumerate() {
        for (a, receipt) in tried.iter().enumerate() {
            if let Some(receipt) = receipt {
                let found = appends.get(&(t, a)).map(|&(first, _)| first as u64);
                prop_assert_eq!(
                    found,
                    Some(receipt.first),
                    "acknowledged append {:?} lost or moved",
                    (t, a)
                );
            }
        }
        // A thread's appends are in the order it made them.
        let firsts: Vec<usize> = (0..tried.len())
            .filter_map(|a| appends.get(&(t, a)).map(|&(first, _)| first))
            .collect();
        prop_assert!(firsts.windows(2).all(|w| w[0] < w[1]));
    }

    // Reading the directory agrees, and so do the shares of 1 to 3 readers.
    let whole = read_with(image, Share::WHOLE).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&whole, &log);
    for count in 1..=3 {
        for index in 0..count {
            let share = read_with(image, Share { index, count })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected: Vec<_> = log.iter().skip(index).step_by(count).cloned().collect();
            prop_assert_eq!(share, expected, "share {} of {}", index, count);
        }
    }
    let report = verify_with(image, dir()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        (report.records, report.unfinished_bytes),
        (log.len() as u64, 0)
    );

    // And the log goes on.
    let extra = sim_ev(9, 0, 0, 3);
    let receipt = master
        .append(std::slice::from_ref(&extra))
        .map_err(|e| TestCaseError::fail(format!("append after recovery: {e}")))?;
    prop_assert_eq!(receipt.first, log.len() as u64);
    Ok(recovery)
}

fn plans() -> impl Strategy<Value = Plan> {
    (
        1024u64..24 * 1024,
        0usize..2500,
        prop::collection::vec(prop::collection::vec(1usize..=8, 1..=6), 2..=4),
    )
        .prop_map(|(segment_bytes, pad, threads)| Plan {
            segment_bytes,
            pad,
            threads,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Appends from several threads, a power loss at any operation (the machine is dead from
    /// then on), and recovery on what the disk kept; sometimes a second power loss during that
    /// recovery, and recovery again.
    #[test]
    fn power_loss_at_any_operation_loses_no_acknowledged_append(
        plan in plans(),
        crash_at in 0.0f64..1.05,
        seed in any::<u64>(),
        recovery_crash in prop::option::of(0u64..40),
    ) {
        // A run without a crash says how many operations the plan takes (about: threads
        // interleave differently each time).
        let calibration = SimStorage::new();
        run(&calibration, &plan);
        let storage = SimStorage::new();
        storage.crash_after((calibration.ops() as f64 * crash_at) as u64);
        let attempts = run(&storage, &plan);
        let mut image = storage.crash_image(seed);
        if let Some(ops) = recovery_crash {
            image.crash_after(ops);
            drop(open_sim(&image, &plan));
            image = image.crash_image(seed.rotate_left(17));
        }
        check_recovery(&plan, &attempts, &image)?;
    }
}

/// The simulation is only worth something if crashes leave what the rules are about: cut
/// tails, unacknowledged appends that survive whole and ones that are lost. This sweeps every
/// crash point of one plan and counts them; one thread, so that the sweep is the same each run.
#[test]
fn crashes_reach_torn_and_out_of_order_tails() {
    let plan = Plan {
        segment_bytes: 16 * 1024,
        pad: 1800,
        threads: vec![vec![5, 3, 6, 2, 4, 7, 1, 3]],
    };
    let calibration = SimStorage::new();
    run(&calibration, &plan);
    let (mut torn, mut survived, mut lost, mut holes) = (0, 0, 0, 0);
    for crash in 0..calibration.ops() {
        for seed in 0..8 {
            let storage = SimStorage::new();
            storage.crash_after(crash);
            let attempts = run(&storage, &plan);
            let image = storage.crash_image(seed * 7919 + crash);
            holes += u64::from(has_a_hole_before_whole_records(&image));
            let recovery = check_recovery(&plan, &attempts, &image).expect("recovers");
            torn += u64::from(recovery.torn_tail.is_some());
            let log = read_with(&image, Share::WHOLE).expect("read");
            for (t, tried) in attempts.iter().enumerate() {
                if let Some((a, None)) = tried.iter().enumerate().next_back() {
                    let there = log
                        .iter()
                        .any(|e| (e.thread as usize, e.append as usize) == (t, a));
                    survived += u64::from(there);
                    lost += u64::from(!there);
                }
            }
        }
    }
    assert!(torn > 0, "no crash left a tail to cut");
    assert!(holes > 0, "no crash persisted a group out of order");
    assert!(survived > 0 && lost > 0, "survived {survived}, lost {lost}");
}

/// Whether the last segment of `image` has a page of zeros followed by a page that is not
/// (before recovery cuts it): a group commit persisted out of order.
fn has_a_hole_before_whole_records(image: &SimStorage) -> bool {
    let mut names = image.list(dir()).expect("list");
    names.retain(|n| n.ends_with(".seg"));
    names.sort();
    let Some(last) = names.last() else {
        return false;
    };
    let bytes = image.contents(&dir().join(last)).expect("contents");
    let pages: Vec<bool> = bytes
        .chunks(4096)
        .map(|page| page.iter().all(|&b| b == 0))
        .collect();
    pages
        .iter()
        .enumerate()
        .any(|(i, &zero)| zero && pages[i + 1..].iter().any(|&z| !z))
}

#[test]
fn a_crash_keeps_what_was_synced_and_may_lose_or_tear_the_rest() {
    let storage = SimStorage::new();
    let path = dir().join("f");
    let mut file = storage.create(&path).expect("create");
    storage.sync_dir(dir()).expect("sync dir");
    file.append(b"durable").expect("append");
    file.sync_data().expect("sync");
    file.append(b" and then some").expect("append");
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let bytes = storage
            .crash_image(seed)
            .contents(&path)
            .expect("a synced entry survives");
        // Past the durable bytes: what was written (maybe torn), or zeros where the page did
        // not persist though the length did.
        let (durable, rest) = bytes.split_at(7);
        assert_eq!(durable, b"durable");
        let written = &b" and then some"[..rest.len()];
        assert!(rest == written || rest.iter().all(|&b| b == 0), "{bytes:?}");
        lengths.insert((bytes.len(), rest == written));
    }
    assert!(
        lengths.contains(&(7, true)),
        "the unsynced write is sometimes lost"
    );
    assert!(lengths.contains(&(21, true)), "and sometimes kept whole");
    assert!(
        lengths
            .iter()
            .any(|&(n, written)| n > 7 && n < 21 && written),
        "and sometimes torn"
    );
    assert!(
        lengths.iter().any(|&(n, written)| n > 7 && !written),
        "and sometimes its page is lost but not the length"
    );
}

#[test]
fn unsynced_pages_persist_in_any_order() {
    let storage = SimStorage::new();
    let path = dir().join("f");
    let mut file = storage.create(&path).expect("create");
    storage.sync_dir(dir()).expect("sync dir");
    file.append(&[1; 4096]).expect("append");
    file.append(&[2; 4096]).expect("append");
    file.append(&[3; 100]).expect("append");
    let out_of_order = (0..64).any(|seed| {
        let bytes = storage.crash_image(seed).contents(&path).expect("file");
        bytes.len() > 8192 && bytes[..4096].iter().all(|&b| b == 0) && bytes[4096] == 2
    });
    assert!(
        out_of_order,
        "a later page persisted without an earlier one"
    );
}

#[test]
fn directory_operations_need_a_directory_sync() {
    let storage = SimStorage::new();
    let (a, b) = (dir().join("a"), dir().join("b"));
    let mut file = storage.create(&a).expect("create");
    file.sync_data().expect("sync");
    let present = |storage: &SimStorage, path: &Path| {
        (0..32)
            .map(|seed| storage.crash_image(seed).contents(path).is_some())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        present(&storage, &a).len(),
        2,
        "a create may or may not survive"
    );
    storage.sync_dir(dir()).expect("sync dir");
    assert_eq!(present(&storage, &a), [true].into());
    storage.rename(&a, &b).expect("rename");
    assert_eq!(
        present(&storage, &b).len(),
        2,
        "a rename may or may not survive"
    );
    storage.sync_dir(dir()).expect("sync dir");
    assert_eq!(present(&storage, &b), [true].into());
    assert_eq!(present(&storage, &a), [false].into());
}

#[test]
fn a_dead_machine_fails_every_operation() {
    let storage = SimStorage::new();
    let path = dir().join("f");
    let mut file = storage.create(&path).expect("create");
    storage.crash_after(1);
    file.append(b"x")
        .expect("the last operation before the crash");
    assert!(file.append(b"y").is_err());
    assert!(file.sync_data().is_err());
    assert!(storage.open(&path, Access::Read).is_err());
    assert!(storage.crash_image(0).open(&path, Access::Read).is_ok());
}

#[test]
fn the_dataset_runs_on_the_simulated_disk_and_finds_damage_there() {
    let storage = SimStorage::new();
    let plan = Plan {
        segment_bytes: 1 << 20,
        pad: 10,
        threads: vec![vec![3, 2]],
    };
    let attempts = run(&storage, &plan);
    assert!(attempts[0].iter().all(Option::is_some));
    let path = dir().join("00000000000000000000.seg");
    let mut bytes = storage.contents(&path).expect("segment");
    // Damage the first group, which the second group's marker proves was acknowledged.
    bytes[format::HEADER_BYTES as usize + 9] ^= 1;
    storage.set_contents(&path, &bytes);
    assert!(matches!(
        open_sim(&storage, &plan),
        Err(Error::Corrupt { offset, .. }) if offset == format::HEADER_BYTES
    ));
    let report = repair_with(&storage, dir()).expect("repair");
    assert_eq!(report.kept.records, 0);
    // The damaged group's marker and the committed group after it count what was cut.
    assert_eq!((report.records_cut(), report.records_exact()), (5, true));
}

/// A power loss at any operation of a repair, then a repair again, ends where one repair does.
#[test]
fn a_repair_interrupted_by_a_crash_finishes_when_run_again() {
    let plan = Plan {
        segment_bytes: 6 * 1024,
        pad: 900,
        threads: vec![vec![3, 4, 2, 5, 3, 4, 2, 3]],
    };
    let base = SimStorage::new();
    let attempts = run(&base, &plan);
    assert!(attempts[0].iter().all(Option::is_some));
    let ids = base.list(dir()).expect("list");
    assert!(
        ids.iter().filter(|n| n.ends_with(".seg")).count() > 3,
        "{ids:?}"
    );
    // Damage segment 1 in the middle of its first record.
    let path = dir().join("00000000000000000001.seg");
    let mut bytes = base.contents(&path).expect("segment 1");
    bytes[format::HEADER_BYTES as usize + 40] ^= 0x10;
    base.set_contents(&path, &bytes);

    // Everything on `base` is durable, so a crash image of it now is a copy.
    let once = base.crash_image(0);
    let expected = repair_with(&once, dir()).expect("repair");
    assert!(!expected.damage.is_empty() && !expected.cuts.is_empty());
    let kept = read_with(&once, Share::WHOLE).expect("read");
    let counting = base.crash_image(0);
    let before = counting.ops();
    repair_with(&counting, dir()).expect("repair");
    let ops = counting.ops() - before;

    for crash in 0..ops {
        for seed in 0..3 {
            let disk = base.crash_image(0);
            disk.crash_after(crash);
            assert!(repair_with(&disk, dir()).is_err(), "the crash stops it");
            let image = disk.crash_image(seed * 31 + crash);
            let again = repair_with(&image, dir())
                .unwrap_or_else(|e| panic!("repair after a crash at {crash}: {e}"));
            assert_eq!(again.kept, expected.kept, "crash at {crash}, seed {seed}");
            assert_eq!(read_with(&image, Share::WHOLE).expect("read"), kept);
            let (master, _) = open_sim(&image, &plan).expect("opens after the repair");
            master.append(&plan.batch(0, 0)).expect("appends");
        }
    }
}
