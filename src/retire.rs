//! Retiring state behind the watermark: windows that can no longer change give their state back.
//!
//! A window's rows are final once the watermark passes its end, yet the operators that computed
//! them (q8's join, q7's maximum and semijoin) still hold every record of every window they have
//! seen, in case a late event changes one. With a maximum lateness `M` (`--max-lateness`) the
//! engine bounds how late an update can come: an event of time `ts` enters the dataflow before
//! `ts + horizon`, where the [`Horizon`] is `M` plus the lanes' slack
//! ([`TARGET_SLACK`](crate::watermark::TARGET_SLACK): how far corrections may be applied past
//! the watermark) plus the batch lane's bucket. A window that ends at `end` then changes no more
//! from its *retirement* time `end + horizon` on.
//!
//! Retiring takes two steps around any computation whose records each belong to one window:
//!
//! * [`Horizon::retire`] on its input: every record comes again, retracted, at its window's
//!   retirement time. Once the frontier passes that time, a record and its retraction
//!   consolidate away, so every arrangement after it (a join's, a reduce's) forgets the window
//!   as it compacts.
//! * [`Horizon::keep`] on its output: only the updates before their window's retirement. The
//!   changes the retirement causes come at or after it and nothing else can, so the output keeps
//!   its final rows while the state behind them is gone.
//!
//! Without a maximum lateness there is no horizon: both steps hand the collection back as it
//! is, and every window's state is kept (any late event is corrected, however late). An update
//! that reaches [`Horizon::retire`] at or after its window's retirement (the bound excludes it
//! for live events; history replayed in buckets, `--history-granularity`, more out of order than
//! the maximum lateness can do it) is left out, and counted in [`Metrics::retired_late`]
//! (`lambdaflow_retired_late`).
//!
//! ```
//! use differential_dataflow::input::Input;
//! use lambdaflow::retire::Horizon;
//!
//! timely::example(|scope| {
//!     let horizon = Horizon::after(60_000);
//!     // Bids per 10 s window: each window's records are retracted at its end plus the horizon.
//!     let bids = scope.new_collection_from(vec![(0u64, 30u64), (10_000, 50)]).1;
//!     let retiring = horizon.retire(bids, |(start, _)| start + 10_000);
//!     let counts = retiring.map(|(start, _)| start).count();
//!     horizon.keep(counts, |(start, _)| start + 10_000); // (0, 1), (10_000, 1), for good
//! });
//! ```

use std::sync::Arc;

use differential_dataflow::difference::Abelian;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::vec::{Filter, Map};

use crate::event::{END_OF_TIME, Time};
use crate::metrics::Metrics;

/// How long after its event time an update may still enter the dataflow, if the engine bounds
/// it: from [`Views::horizon`](crate::view::Views::horizon).
#[derive(Clone, Debug, Default)]
pub struct Horizon {
    after: Option<Time>,
    late: Option<Arc<Metrics>>,
}

impl Horizon {
    /// No bound: nothing retires.
    pub fn none() -> Self {
        Horizon::default()
    }

    /// Every update enters before its event time plus `after` (ms).
    pub fn after(after: Time) -> Self {
        Horizon {
            after: Some(after),
            late: None,
        }
    }

    /// The same horizon, counting updates that came too late in `metrics`.
    pub(crate) fn counted(self, metrics: Arc<Metrics>) -> Self {
        Horizon {
            late: Some(metrics),
            ..self
        }
    }

    /// The bound, if there is one.
    pub fn bound(&self) -> Option<Time> {
        self.after
    }

    /// When a window that ends at `end` retires: `end` plus the horizon (never without one).
    pub fn retires_at(&self, end: Time) -> Time {
        self.after
            .map_or(END_OF_TIME, |after| end.saturating_add(after))
            .min(END_OF_TIME)
    }

    /// `collection` with each record retracted again when its window retires; `end` gives the
    /// end of a record's window. An update that comes at or after that time is left out.
    pub fn retire<'s, D, R, F>(
        &self,
        collection: VecCollection<'s, Time, D, R>,
        end: F,
    ) -> VecCollection<'s, Time, D, R>
    where
        D: Clone + 'static,
        R: Abelian + 'static,
        F: Fn(&D) -> Time + 'static,
    {
        if self.after.is_none() {
            return collection;
        }
        let horizon = self.clone();
        collection
            .inner
            .flat_map(move |(record, time, diff)| {
                let retires = horizon.retires_at(end(&record));
                let taken = time < retires;
                if !taken && let Some(metrics) = &horizon.late {
                    Metrics::add(&metrics.retired_late, 1);
                }
                let mut retraction = diff.clone();
                retraction.negate();
                taken
                    .then(|| [(record.clone(), time, diff), (record, retires, retraction)])
                    .into_iter()
                    .flatten()
            })
            .as_collection()
    }

    /// The updates of `collection` before their window retires (`end`: the end of a record's
    /// window): the output of a computation over [`retire`](Self::retire)d input, without the
    /// retirement's changes.
    pub fn keep<'s, D, R, F>(
        &self,
        collection: VecCollection<'s, Time, D, R>,
        end: F,
    ) -> VecCollection<'s, Time, D, R>
    where
        D: Clone + 'static,
        R: Clone + 'static,
        F: Fn(&D) -> Time + 'static,
    {
        if self.after.is_none() {
            return collection;
        }
        let horizon = self.clone();
        collection
            .inner
            .filter(move |(record, time, _)| *time < horizon.retires_at(end(record)))
            .as_collection()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use differential_dataflow::input::InputSession;
    use differential_dataflow::trace::TraceReader;
    use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
    use timely::dataflow::ProbeHandle;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::progress::Antichain;

    use super::*;

    const WIDTH: Time = 10;
    const WINDOWS: u64 = 300;
    const PER_WINDOW: u64 = 20;

    /// The event time of record `n` sent in step `window`: every fifth belongs to the previous
    /// window (late).
    fn event_time(window: u64, n: u64) -> Time {
        let start = window * WIDTH;
        if n.is_multiple_of(5) && window > 0 {
            start - WIDTH
        } else {
            start
        }
    }

    /// Each window's count, folded naively.
    fn expected() -> BTreeMap<Time, isize> {
        let mut counts = BTreeMap::new();
        for window in 0..WINDOWS {
            for n in 0..PER_WINDOW {
                *counts.entry(event_time(window, n)).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn a_retired_window_keeps_its_rows_and_gives_its_state_back() {
        let (counts, most) = run(Horizon::after(50));
        assert_eq!(counts, expected());
        let all = (WINDOWS * PER_WINDOW) as usize;
        assert!(
            most < all / 4,
            "the arrangement holds the windows within the horizon, not all {all}: {most}"
        );
    }

    #[test]
    fn without_a_horizon_every_window_is_kept() {
        let (counts, most) = run(Horizon::none());
        assert_eq!(counts, expected());
        let all = (WINDOWS * PER_WINDOW) as usize;
        assert!(
            most > all / 2,
            "no retirement: {most} of {all} records held"
        );
    }

    #[test]
    fn an_update_past_its_windows_retirement_is_left_out_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let horizon = Horizon::after(50).counted(metrics.clone());
        let out = timely::example(move |scope| {
            use differential_dataflow::input::Input;
            let (mut input, records) = scope.new_collection::<Time, isize>();
            input.update_at(0, 5, 1); // window [0, 10): retires at 60
            input.update_at(0, 60, 1);
            input.update_at(100, 60, 1);
            horizon
                .retire(records, |ts| ts - ts % WIDTH + WIDTH)
                .inner
                .capture()
        });
        let mut updates: Vec<_> = out.extract().into_iter().flat_map(|(_, u)| u).collect();
        updates.sort();
        assert_eq!(
            updates,
            [(0, 5, 1), (0, 60, -1), (100, 60, 1), (100, 160, -1)]
        );
        assert_eq!(Metrics::get(&metrics.retired_late), 1);
    }

    /// Windows of 10 ms, 20 records each, one window per step of time; a late record now and
    /// then (within the horizon); the horizon 50 ms. Returns each window's count as the kept
    /// output accumulates it, and the most records the retired input's arrangement held after
    /// its first window retired.
    fn run(horizon: Horizon) -> (BTreeMap<Time, isize>, usize) {
        let (most, counts) = timely::execute_directly(move |worker| {
            let mut input: InputSession<Time, (Time, u64), isize> = InputSession::new();
            let probe = ProbeHandle::new();
            let (mut trace, captured) = worker.dataflow::<Time, _, _>(|scope| {
                let records = input.to_collection(scope);
                let retiring = horizon.retire(records, |(start, _)| start + WIDTH);
                let arranged = retiring.clone().arrange_by_self();
                let counts = retiring.map(|(start, _)| start).count();
                let kept = horizon.keep(counts, |(start, _)| start + WIDTH);
                (arranged.trace, kept.inner.probe_with(&probe).capture())
            });
            let mut most = 0;
            for window in 0..WINDOWS {
                let start = window * WIDTH;
                for n in 0..PER_WINDOW {
                    input.update_at((event_time(window, n), n), start, 1);
                }
                input.advance_to(start + WIDTH);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
                let frontier = Antichain::from_elem(*input.time());
                trace.set_logical_compaction(frontier.borrow());
                trace.set_physical_compaction(frontier.borrow());
                let mut upper = Antichain::new();
                trace.read_upper(&mut upper);
                let held: usize = trace
                    .batches_through(upper.borrow())
                    .unwrap_or_default()
                    .iter()
                    .map(|b| SpineBatch::len(&**b))
                    .sum();
                if start > 100 {
                    most = most.max(held);
                }
            }
            input.close();
            while worker.step() {}
            (most, captured)
        });
        let mut totals = BTreeMap::new();
        for (_, updates) in counts.extract() {
            for ((start, n), _, diff) in updates {
                *totals.entry((start, n)).or_insert(0isize) += diff;
            }
        }
        let rows = totals
            .into_iter()
            .filter(|(_, diff)| *diff != 0)
            .map(|((start, n), diff)| {
                assert_eq!(diff, 1, "one count per window");
                (start, n)
            })
            .collect();
        (rows, most)
    }
}
