//! Watermarks: how far event time has progressed, and what to do with events behind it.
//!
//! In lambdaflow the dataflow frontier *is* the watermark. Each worker's speed lane advances its
//! input to `max event time seen − allowed lateness`; the frontier of the whole dataflow is the
//! minimum over workers and lanes, and an answer as of `t` is complete once it has passed `t`.
//!
//! An event whose time is already behind its lane's input time is *late*. It can never be
//! inserted at its own time (that time is sealed), so the [`LatePolicy`] decides: `Correct`
//! applies it at the lane's current time with its fields intact, so every view still equals a
//! recomputation over all events; `Drop` leaves it out and reports it.

use std::str::FromStr;

use crate::event::Time;

/// What happens to an event that arrives after its time has passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatePolicy {
    /// Apply it at the current input time; views are corrected (retraction plus new value).
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

/// How a speed lane judges event times against its own time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LateRules {
    /// How far behind the newest event the watermark trails (ms).
    pub allowed_lateness: Time,
    /// What happens to events behind the watermark.
    pub policy: LatePolicy,
    /// Beyond this far behind the lane's time (ms), even `Correct` drops, so that state for old
    /// windows can be forgotten; `None`: no horizon.
    pub max_lateness: Option<Time>,
}

/// The verdict on one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lateness {
    /// At or after the lane's time: taken at its own time.
    OnTime,
    /// Behind it: applied at the lane's time.
    Correct,
    /// Behind it and left out, for this reason.
    Drop(&'static str),
}

impl LateRules {
    /// Judges an event of time `ts` arriving when the lane's time is `now`.
    pub fn judge(&self, ts: Time, now: Time) -> Lateness {
        if ts >= now {
            return Lateness::OnTime;
        }
        if self.max_lateness.is_some_and(|horizon| now - ts > horizon) {
            return Lateness::Drop("beyond the maximum lateness");
        }
        match self.policy {
            LatePolicy::Correct => Lateness::Correct,
            LatePolicy::Drop => Lateness::Drop("behind the watermark"),
        }
    }
}

/// A bounded-out-of-orderness watermark: the newest event time seen, minus the allowed lateness,
/// or a time a source declared explicitly, whichever is later.
#[derive(Clone, Copy, Debug)]
pub struct Watermark {
    lateness: Time,
    newest: Option<Time>,
    declared: Time,
}

impl Watermark {
    /// A watermark that trails the newest event by `lateness` milliseconds.
    pub fn new(lateness: Time) -> Self {
        Watermark {
            lateness,
            newest: None,
            declared: 0,
        }
    }

    /// Takes note of an event time.
    pub fn observe(&mut self, time: Time) {
        self.newest = Some(self.newest.map_or(time, |n| n.max(time)));
    }

    /// Takes a source's promise that it sends no more events before `time`.
    pub fn declare(&mut self, time: Time) {
        self.declared = self.declared.max(time);
    }

    /// The newest event time seen so far, if any.
    pub fn newest(&self) -> Option<Time> {
        self.newest
    }

    /// The time below which no more events are expected.
    pub fn value(&self) -> Time {
        self.newest
            .map_or(0, |n| n.saturating_sub(self.lateness))
            .max(self.declared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_newest_event() {
        let mut w = Watermark::new(5_000);
        assert_eq!(w.value(), 0);
        w.observe(3_000);
        assert_eq!(w.value(), 0, "no underflow below the lateness");
        w.observe(20_000);
        w.observe(10_000);
        assert_eq!(w.value(), 15_000, "an older event does not move it back");
        w.declare(18_000);
        assert_eq!(w.value(), 18_000, "a declared watermark moves it ahead");
        w.declare(1_000);
        assert_eq!(w.value(), 18_000, "and never back");
    }

    #[test]
    fn judges_lateness() {
        let rules = LateRules {
            allowed_lateness: 0,
            policy: LatePolicy::Correct,
            max_lateness: Some(1_000),
        };
        assert_eq!(rules.judge(500, 500), Lateness::OnTime);
        assert_eq!(rules.judge(499, 500), Lateness::Correct);
        assert_eq!(
            rules.judge(2_000, 3_000),
            Lateness::Correct,
            "exactly at the horizon"
        );
        assert!(matches!(rules.judge(1_999, 3_000), Lateness::Drop(_)));
        let dropping = LateRules {
            policy: LatePolicy::Drop,
            max_lateness: None,
            ..rules
        };
        assert!(matches!(dropping.judge(0, 1), Lateness::Drop(_)));
    }

    #[test]
    fn parses_policies() {
        assert_eq!("drop".parse::<LatePolicy>(), Ok(LatePolicy::Drop));
        assert!("later".parse::<LatePolicy>().is_err());
    }
}
