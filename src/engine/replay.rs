//! Replaying history through the batch lane, and agreeing on where live input begins.
//!
//! Every worker replays its share of the history (files in byte-range shares, events in memory
//! by position, this process's master dataset by record), in chunks: after each, the dataflow
//! steps and the speed lane follows the sealed time, so replayed windows finalize during the
//! replay. Then the workers tell each other what they found ([`Replayed`]) and each computes
//! the same [`Plan`]: the watermark the live judge resumes from, where the open tail of history
//! is cut off into the speed lane, and the horizon from which reads are exact.

use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashMap;
use timely::worker::Worker;
use tracing::warn;

use super::Shared;
use crate::checkpoint::Checkpoint;
use crate::event::{END_OF_TIME, Event, Time};
use crate::history::{History, Share, read_share_checked};
use crate::lane::{BatchLane, BatchTime, Replayed, SpeedLane};
use crate::live::LateDrop;
use crate::master::Entry;
use crate::metrics::Metrics;

/// How many history events a worker replays between steps of its dataflow.
const REPLAY_CHUNK: u64 = 64 * 1024;

/// What a restore from a checkpoint replays.
#[derive(Clone, Copy)]
pub(super) struct Restore<'c> {
    /// The checkpoint the views are restored from.
    pub checkpoint: &'c Checkpoint,
    /// Whether some cuts lack a state in it: the history it covers is then replayed at time 0
    /// for them (see [`checkpoint`](crate::checkpoint)).
    pub rebuild: bool,
}

/// The events a checkpoint kept (see [`Part::pending`](crate::checkpoint::Part)), which the
/// history it covers holds too. The cuts rebuilt from that history must have them once, at
/// their own times, like the restored ones: the replay at time 0 leaves out one copy of each.
/// Equal events are alike, so it does not matter which worker's share holds the copy it leaves
/// out; the count is shared by this process's workers.
pub(super) struct Kept<E> {
    /// How many copies of each are still to leave out (shared without a lock: the replay asks
    /// for every event, and most are not kept).
    left: FxHashMap<E, AtomicUsize>,
}

impl<E: Event> Kept<E> {
    fn new(kept: Vec<(E, Time)>) -> Self {
        let mut left: FxHashMap<E, AtomicUsize> = FxHashMap::default();
        for (event, _) in kept {
            *left.entry(event).or_default().get_mut() += 1;
        }
        Kept { left }
    }

    /// Whether `event` is one of the kept events not yet left out (it is then left out).
    fn leave_out(&self, event: &E) -> bool {
        self.left.get(event).is_some_and(|n| {
            n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }
}

/// Replays this worker's share of the history into `batch`; returns how many events it took.
/// With a checkpoint the views are restored from, the master dataset is replayed from the
/// checkpoint's position on, after the events it kept (see [`checkpoint`](crate::checkpoint)),
/// and before them, if some cuts are rebuilt, what precedes that position.
pub(super) fn replay<E: Event, P: super::Pipeline<Event = E>>(
    worker: &mut Worker,
    shared: &Shared<E, P>,
    batch: &mut BatchLane<E>,
    speed: &mut SpeedLane<E>,
    restore: Option<Restore<'_>>,
    cuts: &crate::checkpoint::Cuts,
) -> Result<u64, String> {
    let restored = restore.map(|r| r.checkpoint);
    if restored.is_some() {
        // Time 0 is the restored states' (see `BatchLane::resume`).
        speed.advance_to(1);
    }
    let metrics = &shared.metrics;
    let mut replayed = 0u64;
    let mut since_step = 0u64;
    let mut chunked = |batch: &mut BatchLane<E>, worker: &mut Worker| {
        since_step += 1;
        if since_step == REPLAY_CHUNK {
            speed.advance_to(batch.flush());
            // No checkpoint is taken before the lanes' time: the views may compact up to it.
            cuts.hold(speed.time().saturating_sub(1));
            since_step = 0;
            worker.step();
        }
    };
    let share = Share {
        index: worker.index(),
        count: worker.peers(),
    };
    let decoder = shared.pipeline.decoder();
    let result = match &shared.history {
        History::Files(paths) => paths.iter().try_for_each(|path| {
            let stats = read_share_checked(
                path,
                share,
                &*decoder,
                |_: &E| Ok(()),
                |event: E| {
                    let ts = event.time();
                    batch.push(event, ts);
                    chunked(batch, worker);
                },
                |reject| {
                    warn!(%reject, "history line rejected");
                    Metrics::add(&metrics.rejected, 1);
                    if let Some(hook) = &shared.hooks.on_reject {
                        hook(reject);
                    }
                },
            )
            .map_err(|e| format!("cannot read history {}: {e}", path.display()))?;
            Metrics::add(&metrics.history_bytes, stats.bytes);
            replayed += stats.accepted;
            Ok(())
        }),
        History::Events(events) => {
            for event in events.iter().skip(share.index).step_by(share.count) {
                batch.push(event.clone(), event.time());
                chunked(batch, worker);
                replayed += 1;
            }
            Ok(())
        }
        History::Generated(source) => {
            for event in source.share(share) {
                let ts = event.time();
                if ts >= END_OF_TIME {
                    warn!(
                        ts,
                        "a generated event at or after the end of time is left out"
                    );
                    Metrics::add(&metrics.rejected, 1);
                    continue;
                }
                batch.push(event, ts);
                chunked(batch, worker);
                replayed += 1;
            }
            Ok(())
        }
        History::Master(dir) => {
            let local = Share {
                index: worker.index() % shared.local,
                count: shared.local,
            };
            let on_drop = shared.hooks.on_late_drop.clone();
            if let Some(Restore {
                checkpoint,
                rebuild,
            }) = restore
            {
                if rebuild {
                    let kept = shared.kept.get_or_init(|| {
                        kept_events::<E>(checkpoint, Share { index: 0, count: 1 }).map(Kept::new)
                    });
                    let kept = kept.as_ref().map_err(Clone::clone)?;
                    crate::master::read_share_until(
                        &crate::master::Disk,
                        dir,
                        E::SCHEMA_VERSION,
                        checkpoint.position,
                        local,
                        &metrics.history_bytes,
                        |entry: Entry<E>| {
                            if let Entry::Event(event)
                            | Entry::Corrected { event, .. }
                            | Entry::Held { event, .. } = entry
                                && !kept.leave_out(&event)
                            {
                                batch.rebuild(event);
                                replayed += 1;
                                chunked(batch, worker);
                            }
                        },
                    )
                    .map_err(|e| format!("cannot replay the master dataset: {e}"))?;
                } else if local.index == 0 {
                    Metrics::add(&metrics.history_bytes, checkpoint.log_bytes);
                }
                for (event, at) in kept_events::<E>(checkpoint, local)? {
                    batch.push(event, at);
                    replayed += 1;
                }
                batch.resume(checkpoint.time, checkpoint.watermark, checkpoint.newest);
            }
            read_master(
                dir,
                restored,
                local,
                &metrics.history_bytes,
                |entry: Entry<E>| {
                    match entry {
                        Entry::Event(event) => {
                            let ts = event.time();
                            batch.push(event, ts);
                            replayed += 1;
                        }
                        Entry::Corrected { event, at } | Entry::Held { event, at } => {
                            batch.push(event, at);
                            replayed += 1;
                        }
                        Entry::Dropped {
                            event,
                            reason,
                            watermark,
                        } => {
                            Metrics::add(&metrics.drops_recorded, 1);
                            if let Some(sink) = &on_drop {
                                sink(&LateDrop {
                                    event: &event,
                                    reason,
                                    watermark,
                                    replayed: true,
                                });
                            }
                        }
                        Entry::Watermark(watermark) => batch.seal(watermark),
                        Entry::ImportBegin { .. } | Entry::ImportEnd(_) => {}
                    }
                    chunked(batch, worker);
                },
            )
        }
    };
    speed.advance_to(batch.flush());
    result.map(|()| replayed)
}

/// Reads share `local` of the master dataset in `dir`: all of it, or what follows the
/// position of the checkpoint the views were `restored` from.
fn read_master<E: Event>(
    dir: &std::path::Path,
    restored: Option<&Checkpoint>,
    local: Share,
    progress: &std::sync::atomic::AtomicU64,
    on_entry: impl FnMut(Entry<E>),
) -> Result<(), String> {
    let disk = &crate::master::Disk;
    match restored {
        Some(c) => crate::master::read_share_from(
            disk,
            dir,
            E::SCHEMA_VERSION,
            c.position,
            local,
            progress,
            on_entry,
        ),
        None => {
            crate::master::read_share_with(disk, dir, E::SCHEMA_VERSION, local, progress, on_entry)
        }
    }
    .map(drop)
    .map_err(|e| format!("cannot replay the master dataset: {e}"))
}

/// The events a checkpoint kept (applied at or after its time) of the workers whose parts
/// share `local` takes.
fn kept_events<E: Event>(checkpoint: &Checkpoint, local: Share) -> Result<Vec<(E, Time)>, String> {
    let mut events = Vec::new();
    for (_, part) in checkpoint
        .workers
        .iter()
        .enumerate()
        .filter(|(worker, _)| worker % local.count == local.index)
    {
        let kept: Vec<(E, Time)> = rmp_serde::from_slice(&part.pending)
            .map_err(|e| format!("cannot read checkpoint {}'s events: {e}", checkpoint.id))?;
        events.extend(kept);
    }
    Ok(events)
}

/// How far this worker's share of its process's master dataset is sealed (its recorded
/// watermarks, and its events' times minus `lateness`), read before the replay: processes that
/// replay their own master datasets seal their history no further than the least of theirs,
/// so that what one process had not passed yet stays open in all of them.
pub(super) fn seal_cap<E: Event, P>(
    worker: &Worker,
    shared: &Shared<E, P>,
    lateness: Time,
    restored: Option<&Checkpoint>,
) -> Result<Time, String> {
    let History::Master(dir) = &shared.history else {
        return Ok(crate::watermark::CEILING);
    };
    let local = Share {
        index: worker.index() % shared.local,
        count: shared.local,
    };
    let mut watermark = 0;
    let mut observe = |ts: Time| watermark = watermark.max(ts.saturating_sub(lateness));
    if let Some(checkpoint) = restored {
        for (event, _) in kept_events::<E>(checkpoint, local)? {
            observe(event.time());
        }
        observe(checkpoint.newest.unwrap_or(0));
    }
    let mut recorded = restored.map_or(0, |c| c.watermark);
    read_master(
        dir,
        restored,
        local,
        &std::sync::atomic::AtomicU64::new(0),
        |entry: Entry<E>| match entry {
            Entry::Event(event) | Entry::Corrected { event, .. } | Entry::Held { event, .. } => {
                observe(event.time());
            }
            Entry::Watermark(w) => recorded = recorded.max(w),
            _ => {}
        },
    )?;
    Ok(watermark.max(recorded).min(crate::watermark::CEILING))
}

/// What every worker computes from what all of them replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// The watermark this process's judge resumes from.
    pub watermark: Time,
    /// Where this process's lanes resume: past every replayed correction.
    pub target: Time,
    /// The newest event this process's judge has seen.
    pub newest: Option<Time>,
    /// Replayed events meant before it stay in the batch lane; the rest go to the speed lane at
    /// their own times (before it resumes at `target`).
    pub cut: Time,
    /// Reads at or after `horizon - 1` are exact (see
    /// [`ReadTimes`](super::client::ReadTimes)).
    pub horizon: Time,
}

/// The plan of worker `me` (with `local` workers per process) from every worker's
/// [`Replayed`]. With `per_process` (each process replays its own master dataset, its own live
/// stream), a process resumes its own watermark; otherwise (shared history files) the
/// watermark is the same everywhere. `cap`: how far history was sealed at most (see
/// [`seal_cap`]). When every worker found the live input over, the whole history stays in the
/// batch lane.
pub(super) fn plan(
    replayed: &[Replayed],
    me: usize,
    local: usize,
    per_process: bool,
    batch_time: BatchTime,
    cap: Option<Time>,
) -> Plan {
    let process = me / local;
    let ours = |i: &usize| !per_process || i / local == process;
    let mut watermark = 0;
    let mut newest: Option<Time> = None;
    let mut held: Option<Time> = None;
    for (_, r) in replayed.iter().enumerate().filter(|(i, _)| ours(i)) {
        watermark = watermark.max(r.watermark);
        newest = newest.max(r.newest);
        held = held.max(r.held);
    }
    let resume = replayed.iter().map(|r| r.resume).max().unwrap_or(0);
    // At least 1, so that time 0 is complete and a fresh read always has a time to read at.
    let target = held
        .map_or(watermark, |h| watermark.max(h + 1))
        .max(resume)
        .max(1);
    let sealed = replayed.iter().map(|r| r.sealed).max().unwrap_or(0);
    let horizon = match batch_time {
        BatchTime::Single => sealed,
        BatchTime::Every(_) => {
            let latest = replayed.iter().filter_map(|r| r.latest).max();
            let tail = sealed.checked_sub(1).map(|t| batch_time.time_of(t));
            latest.max(tail).map_or(0, |t| t + 1)
        }
    };
    let cut = cap.map_or(watermark, |c| c.min(watermark));
    // With no live input anywhere the history is final: its open tail need not wait for a
    // watermark, so it joins the batch lane at coarse times rather than each event at its own
    // (the price of a time is paid per operator, per distinct time). Reads are exact only past
    // its last event then.
    if replayed.iter().all(|r| r.live_over) {
        let last = replayed.iter().filter_map(|r| r.newest.max(r.held)).max();
        let tail = last.map_or(0, |t| match batch_time {
            BatchTime::Single => t.saturating_add(1),
            BatchTime::Every(_) => batch_time.time_of(t).saturating_add(1),
        });
        return Plan {
            watermark,
            target,
            newest,
            cut: END_OF_TIME,
            horizon: horizon.max(tail).max(resume),
        };
    }
    Plan {
        watermark,
        target,
        newest,
        cut,
        horizon: horizon.max(resume),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sealed: Time, newest: Time, latest: Time) -> Replayed {
        Replayed {
            sealed,
            watermark: sealed,
            newest: Some(newest),
            latest: Some(latest),
            held: None,
            resume: 0,
            live_over: false,
        }
    }

    #[test]
    fn each_process_resumes_its_own_watermark_and_reads_wait_for_the_highest() {
        // Two processes of two workers; process 1 is further ahead.
        let all = [r(100, 105, 0), r(90, 95, 0), r(300, 305, 0), r(200, 205, 0)];
        let p0 = plan(&all, 1, 2, true, BatchTime::Single, None);
        assert_eq!((p0.watermark, p0.newest, p0.cut), (100, Some(105), 100));
        let p1 = plan(&all, 2, 2, true, BatchTime::Single, None);
        assert_eq!((p1.watermark, p1.cut), (300, 300));
        assert_eq!((p0.horizon, p1.horizon), (300, 300));
        let shared = plan(&all, 0, 2, false, BatchTime::Single, None);
        assert_eq!((shared.watermark, shared.newest), (300, Some(305)));
    }

    #[test]
    fn with_a_cap_every_process_cuts_where_all_are_sealed() {
        // Process 1 had sealed up to 300 but process 0 only to 100: both keep their own
        // watermarks for judging, and cut their history at 100.
        let capped = |sealed: Time, watermark: Time| Replayed {
            sealed,
            watermark,
            newest: Some(watermark + 5),
            latest: None,
            held: None,
            resume: 0,
            live_over: false,
        };
        let all = [
            capped(100, 100),
            capped(90, 90),
            capped(100, 300),
            capped(100, 200),
        ];
        let p1 = plan(&all, 2, 2, true, BatchTime::Single, Some(100));
        assert_eq!((p1.watermark, p1.cut, p1.horizon), (300, 100, 100));
        let p0 = plan(&all, 0, 2, true, BatchTime::Single, Some(100));
        assert_eq!((p0.watermark, p0.cut, p0.horizon), (100, 100, 100));
    }

    #[test]
    fn bucketed_history_is_exact_past_its_last_bucket() {
        let all = [r(1_050, 1_060, 999), r(500, 510, 499)];
        let p = plan(&all, 0, 1, false, BatchTime::Every(100), None);
        assert_eq!(
            p.horizon, 1_100,
            "the tail before 1050 lands in the bucket ending 1099"
        );
    }

    #[test]
    fn without_live_input_the_whole_history_stays_in_the_batch_lane() {
        let over = |r: Replayed| Replayed {
            live_over: true,
            ..r
        };
        let all = [over(r(100, 105, 0)), over(r(90, 120, 0))];
        let p = plan(&all, 0, 1, false, BatchTime::Single, None);
        assert_eq!(
            (p.cut, p.horizon),
            (END_OF_TIME, 121),
            "exact past the newest event"
        );
        let p = plan(&all, 0, 1, false, BatchTime::Every(100), None);
        assert_eq!(p.horizon, 200, "past the bucket of the newest event");
        let some = [over(r(100, 105, 0)), r(90, 120, 0)];
        let p = plan(&some, 0, 1, false, BatchTime::Single, None);
        assert_eq!(
            (p.cut, p.horizon),
            (100, 100),
            "one live input open: the tail waits"
        );
    }
}
