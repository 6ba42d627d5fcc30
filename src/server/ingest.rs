//! Reading the body of `POST /events`: JSON Lines, or one JSON array, judged line by line.
//!
//! One bad line (or array element) rejects only itself, with its number and reason; the rest of
//! the body is still taken. Only a body that is not an array at all, when it claims to be JSON,
//! is refused whole. An event time too far ahead of the server's clock ([`FutureLimit`]) is a
//! bad line too: one such event would otherwise move the watermark to its time, and every later
//! event would be late.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{Decode, Event, Format, Time, decode_line};
use crate::history::trim_line;
use crate::live::wall_clock_ms;

/// How many rejections an answer lists; the count covers them all.
pub const MAX_LISTED_REJECTS: usize = 1_000;

/// How far ahead of the receiving machine's clock an event time may be (`--max-future`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FutureLimit {
    /// The limit; `None`: any time below 2^53 (`--max-future off`, for synthetic data).
    pub max_future: Option<Duration>,
}

impl Default for FutureLimit {
    /// One hour, as Kafka (since 3.6) bounds record timestamps ahead of the broker's clock.
    fn default() -> Self {
        FutureLimit {
            max_future: Some(Duration::from_secs(3600)),
        }
    }
}

impl FutureLimit {
    /// Checks `ts` against the clock now; the error says how far ahead it is.
    pub fn check(&self, ts: Time) -> Result<(), String> {
        self.check_at(ts, wall_clock_ms())
    }

    /// Checks `ts` against the clock reading `now` (ms).
    pub fn check_at(&self, ts: Time, now: Time) -> Result<(), String> {
        let Some(limit) = self.max_future else {
            return Ok(());
        };
        // Whole seconds, rounded: "2h 1m", not "2h 59s" for a time a few ms short of it.
        let ahead = ts.saturating_sub(now);
        if ahead > limit.as_millis() as Time {
            return Err(format!(
                "ts is {} ahead of the server clock; the limit is --max-future {}",
                humantime::format_duration(Duration::from_secs((ahead + 500) / 1000)),
                humantime::format_duration(limit)
            ));
        }
        Ok(())
    }
}

/// The events of one request body, and its bad lines.
#[derive(Debug)]
pub struct Batch<E> {
    /// The events accepted, in body order, each with the length of its line.
    pub events: Vec<(E, u32)>,
    /// The first [`MAX_LISTED_REJECTS`] bad lines.
    pub rejected: Vec<Rejected>,
    /// How many lines were bad in all.
    pub rejected_total: u64,
}

/// One bad line, as the answer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its number in the body (the element's index + 1 in an array).
    pub line: u64,
    /// What was wrong.
    pub error: String,
}

impl<E: Event> Batch<E> {
    fn new() -> Self {
        Batch {
            events: Vec::new(),
            rejected: Vec::new(),
            rejected_total: 0,
        }
    }

    fn reject(&mut self, line: u64, error: String) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTS {
            self.rejected.push(Rejected { line, error });
        }
    }

    fn take(&mut self, line: u64, event: E, bytes: usize, limit: FutureLimit, now: Time) {
        match limit.check_at(event.time(), now) {
            Ok(()) => self
                .events
                .push((event, u32::try_from(bytes).unwrap_or(u32::MAX))),
            Err(error) => self.reject(line, error),
        }
    }
}

/// Reads a JSON Lines body (lines end with `\n` or `\r\n`; blank lines are skipped).
pub fn json_lines<E: Event>(body: &[u8], decode: &dyn Decode<E>, limit: FutureLimit) -> Batch<E> {
    let now = wall_clock_ms();
    let mut batch = Batch::new();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let text = trim_line(raw);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode_line(decode, text, Format::JsonLines) {
            Ok(event) => batch.take(line, event, raw.len(), limit, now),
            Err(error) => batch.reject(line, error),
        }
    }
    batch
}

/// Reads a body that is one JSON array of events; `Err` if it is not an array.
pub fn json_array<E: Event>(
    body: &[u8],
    decode: &dyn Decode<E>,
    limit: FutureLimit,
) -> Result<Batch<E>, String> {
    let now = wall_clock_ms();
    let elements: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON array: {e}"))?;
    let mut batch = Batch::new();
    for (i, element) in elements.iter().enumerate() {
        let line = i as u64 + 1;
        let text = element.get().as_bytes();
        match decode_line(decode, text, Format::JsonLines) {
            Ok(event) => batch.take(line, event, text.len(), limit, now),
            Err(error) => batch.reject(line, error),
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecommerce::Order;
    use crate::event::Parse;

    const OFF: FutureLimit = FutureLimit { max_future: None };

    #[test]
    fn lines_are_judged_one_by_one() {
        let body = b"{\"ts\":1,\"kind\":\"view\",\"customer\":1,\"product\":2}\nnope\n\xff\n{\"ts\":2,\"kind\":\"view\",\"customer\":1,\"product\":2}\n";
        let batch = json_lines::<Order>(body, &Parse, OFF);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(
            batch.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn array_elements_are_judged_one_by_one() {
        let body = br#"[{"ts":1,"kind":"view","customer":1,"product":2}, {"ts":-1}, 7]"#;
        let batch = json_array::<Order>(body, &Parse, OFF).expect("an array");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.rejected_total, 2);
        assert!(json_array::<Order>(b"{\"ts\":1}", &Parse, OFF).is_err());
    }

    #[test]
    fn times_too_far_ahead_are_refused_and_say_by_how_much() {
        let limit = FutureLimit::default();
        let now = 1_767_300_000_000;
        assert!(limit.check_at(now + 3_600_000, now).is_ok());
        let error = limit
            .check_at(now + 2 * 3_600_000, now)
            .expect_err("two hours ahead");
        assert_eq!(
            error,
            "ts is 2h ahead of the server clock; the limit is --max-future 1h"
        );
        assert!(OFF.check_at(now * 100, now).is_ok());
    }

    #[test]
    fn only_the_first_rejections_are_listed_but_all_are_counted() {
        let body = "nope\n".repeat(MAX_LISTED_REJECTS * 3);
        let batch = json_lines::<Order>(body.as_bytes(), &Parse, OFF);
        assert_eq!(batch.rejected.len(), MAX_LISTED_REJECTS);
        assert_eq!(batch.rejected_total, 3 * MAX_LISTED_REJECTS as u64);
    }
}
