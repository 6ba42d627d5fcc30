//! The two lanes: how events enter the one dataflow.
//!
//! Both lanes are differential input sessions whose collections are concatenated before any
//! view, so the view code exists once. They differ only in how they choose timestamps, which is
//! where the cost of differential dataflow lies (it pays per distinct time, not per event):
//!
//! * the [`BatchLane`] replays bounded history at coarse times ([`BatchTime`]): one time for the
//!   whole replay, or one per bucket of event time, so that bulk history consolidates cheaply;
//! * the [`SpeedLane`] keeps every event's own time and advances its input, in processing-time
//!   ticks, to the watermark of the process's judge ([`watermark`](crate::watermark)); events
//!   behind it were judged late and come with the time to apply them at.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::input::InputSession;
use serde::{Deserialize, Serialize};

use crate::event::{END_OF_TIME, Event, Time};
use crate::metrics::Metrics;
use crate::watermark::CEILING;

/// The timestamps the batch lane gives history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchTime {
    /// One time for the whole replay: the cheapest, but answers "as of" a time inside the
    /// history are only available once the whole replay is in.
    #[default]
    Single,
    /// One time per bucket of this many milliseconds of event time (each event at its bucket's
    /// last millisecond, so no answer ever includes an event from its future).
    Every(Time),
}

impl BatchTime {
    /// The dataflow time at which an event of time `ts` is replayed.
    pub fn time_of(self, ts: Time) -> Time {
        match self {
            BatchTime::Single => 0,
            BatchTime::Every(width) if width > 1 => (ts - ts % width)
                .saturating_add(width - 1)
                .min(END_OF_TIME - 1),
            BatchTime::Every(_) => ts,
        }
    }

    /// The latest start of a bucket at or before `ts` (`ts` itself with one time for all):
    /// history sealed no further than it is replayed at times before it.
    pub fn bucket_start(self, ts: Time) -> Time {
        match self {
            BatchTime::Every(width) if width > 1 => ts - ts % width,
            _ => ts,
        }
    }
}

/// The batch lane of one worker: replays history at coarse times, then closes.
///
/// Only history that is *sealed* (behind the watermark the replay has reached: the newest
/// event minus the allowed lateness, or a recorded watermark) goes in at coarse times. The open
/// tail after it is held back, and when the replay ends whatever is still open goes to the speed
/// lane at its own times, exactly as it was before a restart: events not yet complete stay
/// invisible until the watermark passes them.
pub struct BatchLane<E: Event> {
    input: InputSession<Time, E, isize>,
    time: BatchTime,
    lateness: Time,
    /// Times before it are complete: events meant before it enter at coarse times.
    sealed: Time,
    /// The watermark the replay has reached (the newest event minus the lateness, or a recorded
    /// watermark): `sealed` follows it up to `cap`.
    watermark: Time,
    /// How far history may be sealed: where every process's history is complete.
    cap: Time,
    newest: Option<Time>,
    /// Events meant at or after `sealed` when they came: released once it passes them.
    tail: Vec<(E, Time)>,
    /// The latest time an update entered at.
    latest: Option<Time>,
    /// The latest time a live event was applied at after its own (a correction).
    held: Option<Time>,
    /// The lanes resume no earlier than this (a restored checkpoint's time).
    resume: Time,
    /// Events pushed since the last flush, for the metrics.
    unreported: u64,
    metrics: Arc<Metrics>,
}

/// What a worker's replay found: how far its history is sealed, its newest event, and the latest
/// batch time it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Every time before it is complete in this worker's share (up to the cap).
    pub sealed: Time,
    /// The watermark of the share: its newest event minus the lateness, or a recorded one.
    pub watermark: Time,
    /// The newest event time of the share.
    pub newest: Option<Time>,
    /// The latest time the batch lane put an update at.
    pub latest: Option<Time>,
    /// The latest time a replayed live event had been applied at after its own time: the
    /// lanes had passed it before the restart, so they resume past it.
    pub held: Option<Time>,
    /// The time of the checkpoint the views were restored from (0 without one): the lanes
    /// resume there, and reads are exact from there.
    pub resume: Time,
    /// The live input had ended (taking nothing) when the replay did, and no checkpoint is
    /// taken: the history is all there will be.
    pub live_over: bool,
}

impl<E: Event> BatchLane<E> {
    /// Wraps a worker's batch input session; history is sealed up to its newest event minus
    /// `lateness`.
    pub fn new(
        input: InputSession<Time, E, isize>,
        time: BatchTime,
        lateness: Time,
        metrics: Arc<Metrics>,
    ) -> Self {
        BatchLane {
            input,
            time,
            lateness,
            sealed: 0,
            watermark: 0,
            cap: CEILING,
            newest: None,
            tail: Vec::new(),
            latest: None,
            held: None,
            resume: 0,
            unreported: 0,
            metrics,
        }
    }

    /// Replays one event, meant at `at` (its own time, or the watermark a correction applied it
    /// at). An event meant before the lane's input time (further behind than the disorder the
    /// lane allows) enters at that time, like a corrected late event.
    pub fn push(&mut self, event: E, at: Time) {
        self.unreported += 1;
        if at != event.time() {
            self.held = self.held.max(Some(at));
        }
        self.observe(event.time());
        if at < self.sealed {
            self.insert(event, at);
        } else {
            self.tail.push((event, at));
        }
    }

    /// Takes a recorded watermark: every time before it is complete.
    pub fn seal(&mut self, watermark: Time) {
        self.watermark = self.watermark.max(watermark.min(CEILING));
        self.sealed = self.watermark.min(self.cap);
    }

    /// Replays one event of the history a restored checkpoint covers, at time 0 (where the
    /// restored states are): only the cuts the checkpoint lacks take it (see
    /// [`checkpoint`](crate::checkpoint)). Call it before [`resume`](Self::resume).
    pub(crate) fn rebuild(&mut self, event: E) {
        self.unreported += 1;
        self.input.update_at(event, 0, 1);
    }

    /// Resumes where a checkpoint of time `time` left off: its judge's `watermark` and
    /// `newest` event, as if the history before it had been replayed. The lane goes on from
    /// time 1: time 0 is the restored states'.
    pub fn resume(&mut self, time: Time, watermark: Time, newest: Option<Time>) {
        if *self.input.time() < 1 {
            self.input.advance_to(1);
        }
        self.seal(watermark);
        self.newest = self.newest.max(newest);
        self.resume = self.resume.max(time);
    }

    /// Seals history no further than `at_most`, whatever its own watermark: when several
    /// processes replay their own history, only what all of them have sealed is complete.
    pub fn cap(&mut self, at_most: Time) {
        self.cap = at_most;
        self.sealed = self.watermark.min(self.cap);
    }

    fn observe(&mut self, ts: Time) {
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        self.seal(ts.saturating_sub(self.lateness));
    }

    fn insert(&mut self, event: E, at: Time) {
        let time = self.time.time_of(at).max(*self.input.time());
        self.latest = Some(self.latest.map_or(time, |l| l.max(time)));
        self.input.update_at(event, time, 1);
    }

    fn release_sealed(&mut self, sealed: Time) {
        // One pass over the tail per flush: cheaper than keeping it ordered for every event.
        let mut tail = std::mem::take(&mut self.tail);
        for (event, at) in tail.extract_if(.., |(_, at)| *at < sealed) {
            self.insert(event, at);
        }
        self.tail = tail;
    }

    /// Sends what is buffered, and with per-bucket times advances the lane to the bucket of the
    /// sealed time, so history's windows finalize during the replay and state stays bounded by
    /// the disorder, not by the size of history. Returns the sealed time: how far the speed
    /// lane may follow.
    pub fn flush(&mut self) -> Time {
        Metrics::add(
            &self.metrics.history_events,
            std::mem::take(&mut self.unreported),
        );
        self.release_sealed(self.sealed);
        if let (BatchTime::Every(_), Some(last)) = (self.time, self.sealed.checked_sub(1)) {
            let target = self.time.time_of(last);
            if target > *self.input.time() {
                self.input.advance_to(target);
            }
        }
        self.input.flush();
        self.sealed
    }

    /// What the replay found so far.
    pub fn replayed(&self) -> Replayed {
        Replayed {
            sealed: self.sealed,
            watermark: self.watermark,
            newest: self.newest,
            latest: self.latest,
            held: self.held,
            resume: self.resume,
            live_over: false,
        }
    }

    /// Ends the replay: events meant before `cut` enter the lane, which then closes; the rest
    /// are returned, for the speed lane at their own times. Returns also the latest time the
    /// lane used.
    pub fn close(mut self, cut: Time) -> (Vec<(E, Time)>, Option<Time>) {
        self.release_sealed(cut);
        let latest = self.latest;
        self.input.close();
        (self.tail, latest)
    }
}

/// The speed lane of one worker: live events at the times the judge gave them, advanced to the
/// watermark the judge publishes (see [`live`](crate::live)).
pub struct SpeedLane<E: Event> {
    input: InputSession<Time, E, isize>,
    /// If kept: the events applied at times the lane has not passed yet, by time.
    pending: Option<BTreeMap<Time, Vec<E>>>,
}

impl<E: Event> SpeedLane<E> {
    /// Wraps a worker's speed input session.
    pub fn new(input: InputSession<Time, E, isize>) -> Self {
        SpeedLane {
            input,
            pending: None,
        }
    }

    /// Keeps a copy of every event applied at a time the lane has not passed yet, for
    /// checkpoints ([`pending_from`](Self::pending_from)).
    pub fn keep_pending(&mut self) {
        self.pending.get_or_insert_with(BTreeMap::new);
    }

    /// The events applied at `time` or later, with their times (if they are kept).
    pub fn pending_from(&self, time: Time) -> Vec<(E, Time)> {
        let Some(pending) = &self.pending else {
            return Vec::new();
        };
        pending
            .range(time..)
            .flat_map(|(at, events)| events.iter().map(|e| (e.clone(), *at)))
            .collect()
    }

    /// The time below which this lane takes no more events.
    pub fn time(&self) -> Time {
        *self.input.time()
    }

    /// Applies an event at `at` (never before the lane's time, nor at the end of time).
    pub fn apply(&mut self, event: E, at: Time) {
        let time = at.max(self.time()).min(END_OF_TIME - 1);
        if let Some(pending) = &mut self.pending {
            pending.entry(time).or_default().push(event.clone());
        }
        self.input.update_at(event, time, 1);
    }

    /// Advances the lane to `time` (never back, never to the end of time) and sends what is
    /// buffered.
    pub fn advance_to(&mut self, time: Time) {
        let time = time.min(END_OF_TIME - 1);
        if time > self.time() {
            self.input.advance_to(time);
            if let Some(pending) = &mut self.pending {
                *pending = pending.split_off(&time);
            }
        }
        self.input.flush();
    }

    /// Ends the live input: the lane no longer holds the frontier back.
    pub fn close(self) {
        self.input.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_times_never_precede_the_event() {
        let hourly = BatchTime::Every(3_600_000);
        for ts in [0, 1, 3_599_999, 3_600_000, 7_200_001] {
            let t = hourly.time_of(ts);
            assert!(t >= ts);
            assert_eq!(t / 3_600_000, ts / 3_600_000, "same bucket");
        }
        assert_eq!(BatchTime::Single.time_of(12345), 0);
        assert_eq!(BatchTime::Every(1).time_of(12345), 12345);
    }
}
