//! Windows over event time: reusable, keyed building blocks for views.
//!
//! A window groups events by their *event time* (the `ts` of the event, never the time it
//! arrived). Each block here is ordinary differential code, so it is fed by both lanes and
//! corrected by late data like any other view: an event that arrives after its windows were
//! first reported updates them at the lanes' current time, and answers read after that time
//! reflect it.
//!
//! * [`tumbling`]`(width)`: fixed, non-overlapping windows `[start, start + width)` with
//!   `start = ts - ts % width`; every event is in exactly one.
//! * [`sliding`]`(width, slide)` (hopping): every window `[start, start + width)` whose start
//!   is a multiple of `slide` and that contains `ts`; an event is in `width / slide` of them
//!   (fewer in the first `width` milliseconds of time, as no window starts before 0).
//! * [`session`]`(gap)`: per key, the maximal runs of event times in which consecutive times
//!   are less than `gap` apart. A late event can extend a session or join two into one: the
//!   old rows are retracted and the new one added.
//!
//! Tumbling and sliding windows only *assign* records to windows
//! ([`Tumbling::assign`], [`Sliding::assign`]): the result is `(window start, record)` with the
//! record's own difference, so any aggregate a view computes (counts, [`Sums`](crate::aggregate::Sums),
//! a `reduce`) can follow, keyed by `(key, start)` or by `start` alone. Sessions depend on
//! every event of their key, so [`Sessions::sessions`] is a `reduce` over `(key, ts)` and
//! yields one row per session: its start, its end and its event count; its state holds every
//! event time. When events are only ever added (the lanes never retract one), a key's
//! sessions are also a *difference*: [`SessionSet`] adds two sets of sessions by merging
//! them, so differential consolidates a key's events into its sessions as it goes, and every
//! operator after [`Sessions::of`] keeps one set of sessions per key, not its events.
//!
//! Window widths are checked when a window is made, not when it is used: the constructors
//! return a [`WindowError`] for a zero width, slide or gap, or a width that is not a multiple
//! of the slide. They are `const fn`, so a pipeline's fixed windows are checked at compile
//! time:
//!
//! ```
//! use lambdaflow::window::{self, Sliding};
//!
//! const REVENUE: Sliding = match window::sliding(300_000, 60_000) {
//!     Ok(w) => w,
//!     Err(_) => panic!("five minutes is a whole number of minutes"),
//! };
//! assert_eq!(REVENUE.starts(1_000_000).collect::<Vec<_>>(),
//!            [720_000, 780_000, 840_000, 900_000, 960_000]);
//! assert!(window::sliding(300_000, 70_000).is_err());
//! ```

use std::hash::Hash;

use differential_dataflow::difference::{IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::event::Time;

/// Why a window cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// A window must be at least 1 ms wide.
    ZeroWidth,
    /// Sliding windows must advance by at least 1 ms.
    ZeroSlide,
    /// A session gap must be at least 1 ms.
    ZeroGap,
    /// A sliding window's width must be a whole number of slides.
    WidthNotMultipleOfSlide {
        /// The width asked for.
        width: Time,
        /// The slide asked for.
        slide: Time,
    },
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowError::ZeroWidth => write!(f, "a window must be at least 1 ms wide"),
            WindowError::ZeroSlide => write!(f, "a sliding window must slide by at least 1 ms"),
            WindowError::ZeroGap => write!(f, "a session gap must be at least 1 ms"),
            WindowError::WidthNotMultipleOfSlide { width, slide } => write!(
                f,
                "a sliding window's width ({width} ms) must be a multiple of its slide ({slide} ms)"
            ),
        }
    }
}

impl std::error::Error for WindowError {}

/// Tumbling windows of a fixed width: `[start, start + width)` with `start = ts - ts % width`.
///
/// ```
/// let minutes = lambdaflow::window::tumbling(60_000)?;
/// assert_eq!(minutes.start(0), 0);
/// assert_eq!(minutes.start(59_999), 0);
/// assert_eq!(minutes.start(60_000), 60_000);
/// assert!(lambdaflow::window::tumbling(0).is_err());
/// # Ok::<(), lambdaflow::window::WindowError>(())
/// ```
pub const fn tumbling(width: Time) -> Result<Tumbling, WindowError> {
    if width == 0 {
        return Err(WindowError::ZeroWidth);
    }
    Ok(Tumbling { width })
}

/// Hopping windows: every `[start, start + width)` with `start % slide == 0`. `width` must be
/// a non-zero multiple of `slide`, so that each window is a whole number of slides.
///
/// ```
/// let five_minutes = lambdaflow::window::sliding(300_000, 60_000)?;
/// // 1 ms into the 10th minute: in the windows starting at minutes 6, 7, 8, 9 and 10
/// assert_eq!(five_minutes.starts(600_001).collect::<Vec<_>>(),
///            [360_000, 420_000, 480_000, 540_000, 600_000]);
/// // no window starts before 0
/// assert_eq!(five_minutes.starts(0).collect::<Vec<_>>(), [0]);
/// # Ok::<(), lambdaflow::window::WindowError>(())
/// ```
pub const fn sliding(width: Time, slide: Time) -> Result<Sliding, WindowError> {
    if width == 0 {
        return Err(WindowError::ZeroWidth);
    }
    if slide == 0 {
        return Err(WindowError::ZeroSlide);
    }
    if !width.is_multiple_of(slide) {
        return Err(WindowError::WidthNotMultipleOfSlide { width, slide });
    }
    Ok(Sliding { width, slide })
}

/// Session windows per key: consecutive event times less than `gap` apart are in the same
/// session (`gap` must be at least 1 ms).
///
/// ```
/// let half_hour = lambdaflow::window::session(1_800_000)?;
/// let sessions = half_hour.split([(0, 1), (1_799_999, 2), (3_599_999, 1)]);
/// assert_eq!(sessions.len(), 2, "exactly one gap apart starts a new session");
/// assert_eq!((sessions[0].start, sessions[0].end, sessions[0].events), (0, 1_799_999, 3));
/// # Ok::<(), lambdaflow::window::WindowError>(())
/// ```
pub const fn session(gap: Time) -> Result<Sessions, WindowError> {
    if gap == 0 {
        return Err(WindowError::ZeroGap);
    }
    Ok(Sessions { gap })
}

/// Tumbling windows; made by [`tumbling`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tumbling {
    width: Time,
}

impl Tumbling {
    /// The width of every window, in milliseconds.
    pub const fn width(&self) -> Time {
        self.width
    }

    /// The start of the window that holds `ts`: `ts - ts % width`.
    pub const fn start(&self, ts: Time) -> Time {
        ts - ts % self.width
    }

    /// The end (exclusive) of the window that holds `ts`: its start plus the width.
    pub const fn end(&self, ts: Time) -> Time {
        self.start(ts).saturating_add(self.width)
    }

    /// Pairs every record with the start of its window, keeping its difference: any aggregate
    /// can follow. `time` reads a record's event time.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let minutes = lambdaflow::window::tumbling(60_000)?;
    /// let out = timely::example(move |scope| {
    ///     let (_input, clicks) = scope.new_collection_from(vec![("a", 59_999u64), ("b", 60_000)]);
    ///     minutes.assign(clicks, |(_, ts)| *ts).inner.capture()
    /// });
    /// let rows: Vec<_> = out.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// assert_eq!(rows, [((0, ("a", 59_999)), 0, 1), ((60_000, ("b", 60_000)), 0, 1)]);
    /// # Ok::<(), lambdaflow::window::WindowError>(())
    /// ```
    pub fn assign<'s, D, R, F>(
        self,
        collection: VecCollection<'s, Time, D, R>,
        time: F,
    ) -> VecCollection<'s, Time, (Time, D), R>
    where
        D: Clone + 'static,
        R: Semigroup + 'static,
        F: Fn(&D) -> Time + 'static,
    {
        collection.map(move |record| (self.start(time(&record)), record))
    }
}

/// Sliding (hopping) windows; made by [`sliding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    width: Time,
    slide: Time,
}

impl Sliding {
    /// The width of every window, in milliseconds.
    pub const fn width(&self) -> Time {
        self.width
    }

    /// How far apart the starts of consecutive windows are, in milliseconds.
    pub const fn slide(&self) -> Time {
        self.slide
    }

    /// The starts of the windows that hold `ts`, ascending: the multiples of `slide` in
    /// `(ts - width, ts]`, and none below 0.
    pub fn starts(&self, ts: Time) -> impl Iterator<Item = Time> + use<> {
        let last = ts - ts % self.slide;
        // `width >= slide`, as it is a non-zero multiple of it.
        let first = last.saturating_sub(self.width - self.slide);
        let slide = self.slide;
        std::iter::successors(Some(first), move |s| {
            s.checked_add(slide).filter(|next| *next <= last)
        })
    }

    /// Pairs every record with the start of each window that holds it, keeping its
    /// difference: any aggregate can follow. `time` reads a record's event time.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let windows = lambdaflow::window::sliding(3_000, 1_000)?;
    /// let out = timely::example(move |scope| {
    ///     let (_input, times) = scope.new_collection_from(vec![2_500u64]);
    ///     windows.assign(times, |ts| *ts).inner.capture()
    /// });
    /// let rows: Vec<_> = out.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// assert_eq!(rows, [((0, 2_500), 0, 1), ((1_000, 2_500), 0, 1), ((2_000, 2_500), 0, 1)]);
    /// # Ok::<(), lambdaflow::window::WindowError>(())
    /// ```
    pub fn assign<'s, D, R, F>(
        self,
        collection: VecCollection<'s, Time, D, R>,
        time: F,
    ) -> VecCollection<'s, Time, (Time, D), R>
    where
        D: Clone + 'static,
        R: Semigroup + 'static,
        F: Fn(&D) -> Time + 'static,
    {
        collection.flat_map(move |record| {
            self.starts(time(&record))
                .map(move |start| (start, record.clone()))
        })
    }
}

/// Session windows; made by [`session`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sessions {
    gap: Time,
}

/// One session of a key: its first and last event times, both inclusive (a session of one
/// event has `start == end`), and how many events it holds (equal events count each).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Session {
    /// The time of its first event.
    pub start: Time,
    /// The time of its last event (inclusive: the session is `[start, end]`).
    pub end: Time,
    /// How many events it holds.
    pub events: u64,
}

impl Sessions {
    /// The gap, in milliseconds: events this far apart or more are in different sessions.
    pub const fn gap(&self) -> Time {
        self.gap
    }

    /// Splits event times, with how many events happened at each, into sessions, by start.
    /// The times may come in any order; times with a count of 0 are left out.
    pub fn split(&self, times: impl IntoIterator<Item = (Time, u64)>) -> Vec<Session> {
        let mut times: Vec<(Time, u64)> = times.into_iter().filter(|(_, n)| *n > 0).collect();
        if !times.is_sorted() {
            times.sort_unstable();
        }
        let mut sessions: Vec<Session> = Vec::new();
        for (ts, n) in times {
            match sessions.last_mut() {
                Some(open) if ts - open.end < self.gap => {
                    open.end = ts;
                    open.events = open.events.saturating_add(n);
                }
                _ => sessions.push(Session {
                    start: ts,
                    end: ts,
                    events: n,
                }),
            }
        }
        sessions
    }

    /// The sessions of one event at `ts`, as a difference ([`SessionSet`]): one session of
    /// one event. Summed (by differential, as it consolidates) with the others of its key,
    /// they give the key's sessions.
    pub fn of(&self, ts: Time) -> SessionSet {
        SessionSet {
            gap: self.gap,
            sessions: smallvec::smallvec![Session {
                start: ts,
                end: ts,
                events: 1,
            }],
        }
    }

    /// The sessions of every key of a collection of `(key, event time)`, as `(key, session)`
    /// rows, maintained by a differential `reduce`: when a (late) event changes a key's
    /// sessions, the rows that no longer hold are retracted and the new ones added.
    ///
    /// Each key's sessions are recomputed from all its event times when one of them changes,
    /// so the cost of an update grows with the number of events of its key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use lambdaflow::window::Session;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let half_minute = lambdaflow::window::session(30_000)?;
    /// let out = timely::example(move |scope| {
    ///     // customer 7 at 0 s and 40 s (at time 0), then a late event at 20 s (at time 1)
    ///     let events = vec![((7u64, 0u64), 0, 1), ((7, 40_000), 0, 1), ((7, 20_000), 1, 1)];
    ///     let (_input, clicks) = scope.new_collection_from_raw(events);
    ///     half_minute.sessions(clicks).inner.capture()
    /// });
    /// // (time, (key, session), difference), by time
    /// let mut changes: Vec<_> = out.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|(row, time, diff)| (time, row, diff)).collect();
    /// changes.sort();
    /// let session = |start, end, events| (7, Session { start, end, events });
    /// assert_eq!(changes, [
    ///     (0, session(0, 0, 1), 1),
    ///     (0, session(40_000, 40_000, 1), 1),
    ///     // the late event joins the two sessions into one: the old rows are retracted
    ///     (1, session(0, 0, 1), -1),
    ///     (1, session(0, 40_000, 3), 1),
    ///     (1, session(40_000, 40_000, 1), -1),
    /// ]);
    /// # Ok::<(), lambdaflow::window::WindowError>(())
    /// ```
    pub fn sessions<'s, K>(
        self,
        keyed: VecCollection<'s, Time, (K, Time)>,
    ) -> VecCollection<'s, Time, (K, Session)>
    where
        K: ExchangeData + Hash,
    {
        keyed.reduce_named("Sessions", move |_key, times, output| {
            let counted = times
                .iter()
                .map(|(ts, n)| (**ts, u64::try_from(*n).unwrap_or(0)));
            output.extend(self.split(counted).into_iter().map(|s| (s, 1)));
        })
    }
}

/// A key's sessions as a difference: adding two sets merges them (sessions that overlap or lie
/// less than the gap apart become one, their events counted together), which is associative
/// and commutative, so differential may add a key's events in any grouping and order.
///
/// Sessions only grow: a set cannot be subtracted, and a multiple `n` of a set counts each
/// event `n` times (`n <= 0` gives the empty set). Use it where events are only added, as the
/// lanes add them.
///
/// ```
/// use differential_dataflow::difference::Semigroup;
///
/// let half_minute = lambdaflow::window::session(30_000)?;
/// let mut sessions = half_minute.of(0);
/// sessions.plus_equals(&half_minute.of(40_000));
/// assert_eq!(sessions.sessions().len(), 2);
/// // a late event at 20 s joins them
/// sessions.plus_equals(&half_minute.of(20_000));
/// let joined = sessions.sessions();
/// assert_eq!((joined.len(), joined[0].start, joined[0].end, joined[0].events), (1, 0, 40_000, 3));
/// # Ok::<(), lambdaflow::window::WindowError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionSet {
    gap: Time,
    /// By start, none within the gap of the next. Inline when one (`smallvec`): every event
    /// starts as a set of one, so consolidating events allocates only for keys of several sessions.
    sessions: SmallVec<[Session; 1]>,
}

impl SessionSet {
    /// The sessions, by start.
    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }
}

impl IsZero for SessionSet {
    fn is_zero(&self) -> bool {
        self.sessions.is_empty()
    }
}

impl Semigroup for SessionSet {
    fn plus_equals(&mut self, rhs: &Self) {
        if rhs.sessions.is_empty() {
            return;
        }
        self.gap = self.gap.max(rhs.gap);
        let mut all = std::mem::take(&mut self.sessions);
        all.extend_from_slice(&rhs.sessions);
        all.sort_unstable();
        for next in all {
            match self.sessions.last_mut() {
                Some(open) if next.start < open.end.saturating_add(self.gap) => {
                    open.end = open.end.max(next.end);
                    open.events = open.events.saturating_add(next.events);
                }
                _ => self.sessions.push(next),
            }
        }
    }
}

impl Monoid for SessionSet {
    fn zero() -> Self {
        SessionSet::default()
    }
}

impl Multiply<isize> for SessionSet {
    type Output = SessionSet;

    fn multiply(mut self, rhs: &isize) -> SessionSet {
        let n = u64::try_from(*rhs).unwrap_or(0);
        if n == 0 {
            self.sessions.clear();
        }
        for session in &mut self.sessions {
            session.events = session.events.saturating_mul(n);
        }
        self
    }
}

#[cfg(test)]
mod session_set_tests {
    use differential_dataflow::difference::Semigroup;
    use proptest::prelude::*;

    use super::{SessionSet, session};

    proptest! {
        /// Adding the events one set at a time, in any order and grouping, gives the sessions
        /// that splitting all their times at once gives.
        #[test]
        fn merged_sets_are_the_sessions_of_all_their_events(
            times in prop::collection::vec(0u64..10_000, 0..40),
            gap in 1u64..2_000,
            split in 0usize..40,
        ) {
            let sessions = session(gap).expect("a gap");
            let split = split.min(times.len());
            let mut left = SessionSet::default();
            for t in &times[..split] {
                left.plus_equals(&sessions.of(*t));
            }
            let mut right = SessionSet::default();
            for t in times[split..].iter().rev() {
                right.plus_equals(&sessions.of(*t));
            }
            right.plus_equals(&left);
            let expected = sessions.split(times.iter().map(|t| (*t, 1)));
            prop_assert_eq!(right.sessions(), expected.as_slice());
        }
    }
}
