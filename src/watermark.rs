//! Watermarks: how far event time has progressed, and the verdict on events behind it.
//!
//! In lambdaflow the dataflow frontier *is* the watermark: an answer as of `t` is complete once
//! the frontier has passed `t`. The frontier follows the speed lanes, and the speed lanes follow
//! one [`Judge`] per process: the single place where live events are judged, in the order they
//! were accepted, before they are stored.
//!
//! The judge keeps one number for its verdicts, its watermark `W`, and sees the live stream in
//! order:
//!
//! * an event with `ts >= W` is **on time**: it is applied at its own time;
//! * an event with `ts < W` is **late**: its time is sealed (answers as of it were given), so the
//!   [`LatePolicy`] decides: `Correct` applies it at the lanes' current target with its fields
//!   intact (every view still equals a recomputation over all events), `Drop` leaves it out and
//!   reports it; beyond the maximum lateness even `Correct` drops;
//! * after judging an event, `W = max(W, ts - allowed lateness)` (bounded out-of-orderness);
//! * a source may declare `W` forward (a source watermark), and an idle process is moved forward.
//!
//! Because a verdict is a function of the stream alone (not of tick timing, nor of which worker
//! a round robin hands an event to), it is the same for every worker count, and it is recorded
//! with the event in the master dataset: a restart replays the verdicts instead of judging again.
//!
//! The lanes follow a second number, the *target* `T >= W`. Corrections are applied at `T`, and
//! so they only become visible once the lanes pass `T`: at the next tick (or declaration) the
//! judge moves `T` one past them ([`Judge::bump`]). That costs one dataflow time per tick rather
//! than per late event, and it never changes a verdict, which depends on `W` alone. An on-time
//! event that arrives after such a bump passed its time is applied at `T` as well (it is late
//! for the lanes, not for the verdict).
//!
//! `W` never passes [`CEILING`], which keeps headroom below [`END_OF_TIME`]: whatever time an
//! accepted event carries, later corrections always have times left to become visible at.
//!
//! With a maximum lateness `M`, the target also stays within [`TARGET_SLACK`] of `W` (a bump
//! that would pass it waits for `W` to move on, or for a declaration). Then every accepted
//! event of time `ts` is applied before `ts + M + TARGET_SLACK`: a bound on how late an update
//! can reach a window, so a window's state can be retired once the frontier passes its end
//! plus that bound (see [`retire`](crate::retire)).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::{END_OF_TIME, Time};

/// The highest watermark the events and declarations of a stream can reach: `2^40` ms (about 35
/// years) below [`END_OF_TIME`], left for corrections (one time per corrected batch).
pub const CEILING: Time = END_OF_TIME - (1 << 40);

/// With a maximum lateness, how far the lanes' target may run ahead of the watermark (ms): ten
/// seconds of ticks with corrections and no newer event before corrections wait for one.
pub const TARGET_SLACK: Time = 10_000;

/// What happens to an event that arrives after its time has passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatePolicy {
    /// Apply it at the current watermark; views are corrected (retraction plus new value).
    #[default]
    Correct,
    /// Leave it out; count it and report it.
    Drop,
}

impl FromStr for LatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "correct" => Ok(LatePolicy::Correct),
            "drop" => Ok(LatePolicy::Drop),
            other => Err(format!(
                "unknown late policy {other:?} (expected correct or drop)"
            )),
        }
    }
}

/// How a judge treats event times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateRules {
    /// How far behind the newest event the watermark trails (ms).
    pub allowed_lateness: Time,
    /// What happens to events behind the watermark.
    pub policy: LatePolicy,
    /// Beyond this far behind the watermark (ms), even `Correct` drops, so that state for old
    /// windows can be forgotten; `None`: no horizon.
    pub max_lateness: Option<Time>,
}

/// Why a late event was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DropReason {
    /// The policy is `drop` and the event was behind the watermark.
    BehindWatermark,
    /// The event was further behind the watermark than the maximum lateness.
    BeyondMaxLateness,
}

impl DropReason {
    /// The reason in words, as reports and logs give it.
    pub fn text(self) -> &'static str {
        match self {
            DropReason::BehindWatermark => "behind the watermark",
            DropReason::BeyondMaxLateness => "beyond the maximum lateness",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// The verdict on one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At or after the watermark: applied at this time (its own, or the lanes' target if they
    /// have passed it).
    OnTime(Time),
    /// Behind it: applied at this time (the lanes' target when it was judged).
    Correct(Time),
    /// Behind it and left out, for this reason; the watermark it was behind.
    Drop(DropReason, Time),
}

impl LateRules {
    /// Judges an event of time `ts` against the watermark `watermark`.
    pub fn judge(&self, ts: Time, watermark: Time) -> Verdict {
        if ts >= watermark {
            return Verdict::OnTime(ts);
        }
        if self
            .max_lateness
            .is_some_and(|horizon| watermark - ts > horizon)
        {
            return Verdict::Drop(DropReason::BeyondMaxLateness, watermark);
        }
        match self.policy {
            LatePolicy::Correct => Verdict::Correct(watermark),
            LatePolicy::Drop => Verdict::Drop(DropReason::BehindWatermark, watermark),
        }
    }
}

/// The judge of one live stream: its watermark, the lanes' target, and the verdict on each
/// event in stream order.
#[derive(Clone, Copy, Debug)]
pub struct Judge {
    rules: LateRules,
    watermark: Time,
    target: Time,
    newest: Option<Time>,
    /// The latest time an event was applied at the target (waiting for a bump to be visible).
    held: Option<Time>,
}

impl Judge {
    /// A judge whose watermark (and target) start at `watermark`.
    pub fn new(rules: LateRules, watermark: Time) -> Self {
        let watermark = watermark.min(CEILING);
        Judge {
            rules,
            watermark,
            target: watermark,
            newest: None,
            held: None,
        }
    }

    /// A judge resumed after a replay: the watermark it had reached, the lanes' target, and
    /// the newest event time it had seen.
    pub fn resume(rules: LateRules, watermark: Time, target: Time, newest: Option<Time>) -> Self {
        let judge = Judge::new(rules, watermark);
        Judge {
            target: target.max(judge.watermark).min(END_OF_TIME - 1),
            newest,
            ..judge
        }
    }

    /// The rules it judges by.
    pub fn rules(&self) -> &LateRules {
        &self.rules
    }

    /// The watermark: events before it are late.
    pub fn watermark(&self) -> Time {
        self.watermark
    }

    /// Where the lanes may advance to: the watermark, or past it after corrections.
    pub fn target(&self) -> Time {
        self.target
    }

    /// The newest event time judged, if any.
    pub fn newest(&self) -> Option<Time> {
        self.newest
    }

    /// Judges the next event of the stream, then lets the watermark follow it.
    pub fn judge(&mut self, ts: Time) -> Verdict {
        let mut verdict = self.rules.judge(ts, self.watermark);
        match &mut verdict {
            Verdict::OnTime(at) if *at < self.target => {
                *at = self.target;
                self.hold();
            }
            Verdict::Correct(at) => {
                *at = self.target;
                self.hold();
            }
            _ => {}
        }
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        self.declare(ts.saturating_sub(self.rules.allowed_lateness));
        verdict
    }

    fn hold(&mut self) {
        self.held = Some(self.target);
    }

    /// Moves the watermark forward to `time` (never back): a source's promise that no events
    /// before it will come, or an idle stream's.
    pub fn declare(&mut self, time: Time) {
        self.watermark = self.watermark.max(time.min(CEILING));
        self.target = self.target.max(self.watermark);
    }

    /// Moves the target one past the events applied at it, so the lanes pass them and they
    /// become visible. Returns whether the target moved. With a maximum lateness the target
    /// stays within [`TARGET_SLACK`] of the watermark: past it, the events wait.
    pub fn bump(&mut self) -> bool {
        if !self.holds() {
            return false;
        }
        self.held = None;
        self.target = (self.target + 1).min(END_OF_TIME - 1);
        true
    }

    /// Whether events wait at the target for a bump that may happen now.
    pub fn holds(&self) -> bool {
        self.held.is_some_and(|at| at >= self.target) && self.target < self.highest_target()
    }

    /// How far the target may go: with a maximum lateness, [`TARGET_SLACK`] past the watermark.
    fn highest_target(&self) -> Time {
        let slack = match self.rules.max_lateness {
            Some(_) => TARGET_SLACK,
            None => END_OF_TIME,
        };
        self.watermark.saturating_add(slack).min(END_OF_TIME - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lateness: Time, policy: LatePolicy, max: Option<Time>) -> LateRules {
        LateRules {
            allowed_lateness: lateness,
            policy,
            max_lateness: max,
        }
    }

    #[test]
    fn trails_the_newest_event() {
        let mut judge = Judge::new(rules(5_000, LatePolicy::Correct, None), 0);
        assert_eq!(judge.judge(3_000), Verdict::OnTime(3_000));
        assert_eq!(judge.watermark(), 0, "no underflow below the lateness");
        judge.judge(20_000);
        judge.judge(16_000);
        assert_eq!(
            judge.watermark(),
            15_000,
            "an older event does not move it back"
        );
        judge.declare(18_000);
        assert_eq!(
            judge.watermark(),
            18_000,
            "a declared watermark moves it ahead"
        );
        judge.declare(1_000);
        assert_eq!(judge.watermark(), 18_000, "and never back");
        assert_eq!(judge.newest(), Some(20_000));
    }

    #[test]
    fn corrections_wait_at_the_target_until_a_bump_without_changing_verdicts() {
        let mut judge = Judge::new(rules(0, LatePolicy::Correct, None), 100);
        assert_eq!(judge.judge(50), Verdict::Correct(100));
        assert_eq!(judge.judge(60), Verdict::Correct(100), "one time for both");
        assert_eq!(judge.judge(100), Verdict::OnTime(100));
        assert!(judge.holds());
        assert!(judge.bump());
        assert_eq!((judge.watermark(), judge.target()), (100, 101));
        assert!(!judge.bump(), "nothing more waits");
        // The verdict depends on the watermark alone; the time on the target.
        assert_eq!(judge.judge(100), Verdict::OnTime(101));
        assert_eq!(judge.judge(99), Verdict::Correct(101));
        judge.declare(500);
        assert_eq!(judge.target(), 500);
        assert!(!judge.holds(), "the declaration passed them");
    }

    #[test]
    fn with_a_maximum_lateness_the_target_stays_near_the_watermark() {
        let mut judge = Judge::new(rules(0, LatePolicy::Correct, Some(60_000)), 100);
        let mut bumps = 0;
        for _ in 0..TARGET_SLACK + 5 {
            assert!(matches!(judge.judge(50), Verdict::Correct(_)));
            bumps += u64::from(judge.bump());
        }
        assert_eq!(bumps, TARGET_SLACK, "one bump per time of slack, then none");
        assert_eq!(judge.target(), 100 + TARGET_SLACK);
        assert!(
            !judge.holds(),
            "the waiting corrections do not ask for a bump"
        );
        assert_eq!(judge.judge(50), Verdict::Correct(100 + TARGET_SLACK));
        judge.declare(200);
        assert!(
            judge.bump(),
            "once the watermark moves, they become visible"
        );
        assert_eq!(judge.target(), 101 + TARGET_SLACK);
    }

    #[test]
    fn parses_policies() {
        assert_eq!("drop".parse::<LatePolicy>(), Ok(LatePolicy::Drop));
        assert!("later".parse::<LatePolicy>().is_err());
    }
}
