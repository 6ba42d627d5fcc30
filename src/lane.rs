//! The two lanes: how events enter the one dataflow.
//!
//! Both lanes are differential input sessions whose collections are concatenated before any
//! view, so the view code exists once. They differ only in how they choose timestamps, which is
//! where the cost of differential dataflow lies (it pays per distinct time, not per event):
//!
//! * the [`BatchLane`] replays bounded history at coarse times ([`BatchTime`]): one time for the
//!   whole replay, or one per bucket of event time, so that bulk history consolidates cheaply;
//! * the [`SpeedLane`] keeps every event's own time and advances its input, in processing-time
//!   ticks, to its [`Watermark`]; events behind it are late and follow the [`LatePolicy`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use tracing::warn;

use crate::event::{END_OF_TIME, Event, Time};
use crate::metrics::Metrics;
use crate::watermark::{LateRules, Lateness, Watermark};

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
}

/// The batch lane of one worker: replays history at coarse times, then closes.
pub struct BatchLane<E: Event> {
    input: InputSession<Time, E, isize>,
    time: BatchTime,
    /// How far behind the newest replayed event history may still arrive (ms).
    disorder: Time,
    newest: Time,
    metrics: Arc<Metrics>,
}

impl<E: Event> BatchLane<E> {
    /// Wraps a worker's batch input session; history arrives at most `disorder` ms behind its
    /// newest event (further behind, it is applied at the lane's time).
    pub fn new(
        input: InputSession<Time, E, isize>,
        time: BatchTime,
        disorder: Time,
        metrics: Arc<Metrics>,
    ) -> Self {
        BatchLane {
            input,
            time,
            disorder,
            newest: 0,
            metrics,
        }
    }

    /// Replays one event of history (one further behind than the lane's time, which its
    /// disorder bound has passed, is applied at the lane's time, like a corrected late event).
    pub fn push(&mut self, event: E) {
        self.newest = self.newest.max(event.time());
        let time = self.time.time_of(event.time()).max(*self.input.time());
        self.input.update_at(event, time, 1);
    }

    /// Sends what is buffered, and with per-bucket times advances the lane behind the newest
    /// event by the disorder bound, so history's windows finalize during the replay and state
    /// stays bounded by the disorder, not by the size of history. Returns the lane's time.
    pub fn flush(&mut self, replayed: u64) -> Time {
        Metrics::add(&self.metrics.history_events, replayed);
        if let BatchTime::Every(_) = self.time {
            let target = self.time.time_of(self.newest.saturating_sub(self.disorder));
            if target > *self.input.time() {
                self.input.advance_to(target);
            }
        }
        self.input.flush();
        *self.input.time()
    }

    /// Ends the replay: the lane no longer holds the frontier back. Returns the time live
    /// events start at: just after the newest event replayed (history is the past).
    pub fn close(self) -> Time {
        self.input.close();
        self.newest.saturating_add(1)
    }
}

/// Hears about each late event the speed lane leaves out: the event, why, and the lane's time.
pub type LateSink<E> = Arc<dyn Fn(&E, &'static str, Time) + Send + Sync>;

/// The speed lane of one worker: live events at their own times, advanced by the watermark.
pub struct SpeedLane<E: Event> {
    input: InputSession<Time, E, isize>,
    watermark: Watermark,
    rules: LateRules,
    /// Whether late events were applied at the current time since the last tick.
    corrected_at_now: bool,
    /// When this lane last took an event (processing time), for idleness.
    last_event: Instant,
    on_drop: Option<LateSink<E>>,
    metrics: Arc<Metrics>,
}

impl<E: Event> SpeedLane<E> {
    /// Wraps a worker's speed input session.
    pub fn new(
        input: InputSession<Time, E, isize>,
        rules: LateRules,
        on_drop: Option<LateSink<E>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        SpeedLane {
            input,
            watermark: Watermark::new(rules.allowed_lateness),
            rules,
            corrected_at_now: false,
            last_event: Instant::now(),
            on_drop,
            metrics,
        }
    }

    /// The time below which this lane accepts no more events at their own time.
    pub fn time(&self) -> Time {
        *self.input.time()
    }

    /// How long since this lane last took an event.
    pub fn idle_for(&self) -> Duration {
        self.last_event.elapsed()
    }

    /// The newest event time this lane has seen.
    pub fn newest(&self) -> Option<Time> {
        self.watermark.newest()
    }

    /// Takes one live event; a late one follows the late rules.
    pub fn push(&mut self, event: E) {
        let ts = event.time();
        self.last_event = Instant::now();
        self.watermark.observe(ts);
        self.metrics.newest_event.fetch_max(ts, Ordering::Relaxed);
        let now = self.time();
        match self.rules.judge(ts, now) {
            Lateness::OnTime => {
                Metrics::add(&self.metrics.live_events, 1);
                self.input.update_at(event, ts, 1);
            }
            Lateness::Correct => {
                Metrics::add(&self.metrics.late_corrected, 1);
                self.input.update_at(event, now, 1);
                self.corrected_at_now = true;
            }
            Lateness::Drop(reason) => {
                Metrics::add(&self.metrics.late_dropped, 1);
                warn!(event = ?event, watermark = now, reason, "late event dropped");
                if let Some(sink) = &self.on_drop {
                    sink(&event, reason, now);
                }
            }
        }
    }

    /// Takes a source's promise that no events before `time` will come, and advances at once.
    /// Returns the lane's new time: answers as of it reflect every event this lane has taken.
    pub fn declare(&mut self, time: Time) -> Time {
        self.watermark.declare(time);
        self.tick();
        self.time()
    }

    /// Advances the lane to its watermark and sends what is buffered: one tick. Late events
    /// corrected at the current time move the lane one past it, so they become visible within
    /// a tick even when the watermark stands still.
    pub fn tick(&mut self) {
        let mut target = self.watermark.value();
        if self.corrected_at_now {
            target = target.max(self.time() + 1);
            self.corrected_at_now = false;
        }
        let target = target.min(END_OF_TIME - 1);
        if target > self.time() {
            self.input.advance_to(target);
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
