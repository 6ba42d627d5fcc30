//! One scan of the sources for every view of a dataflow.
//!
//! Every view that reads a source starts the same way: each event becomes a row of its table,
//! and the view's filters, projections and aggregate contributions run over it. Done by one
//! operator per view, a replay would hand every event to every view's operator (a copy of each
//! batch per view) and make its row once per view. A [`Scan`] is one operator with one output
//! per reader: it makes each event's row once and hands it to every view that reads the table,
//! each applying its own steps and sending its own records. Readers come in two kinds:
//!
//! * a **fold** sums each row's `(key, difference)` by key and time, as
//!   [`fold_by_key`](crate::aggregate::fold_by_key) does, and sends one record per key and
//!   time once the input frontier passes the time;
//! * an **explode** sends what each row becomes, as it comes.
//!
//! Readers are added while the views are built; [`Scan::build`] then makes the operator.

use std::rc::Rc;

use differential_dataflow::difference::{Multiply, Semigroup};
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::MutableAntichain;

use super::SqlSource;
use super::key::Key;
use super::render::{Step, holds, project};
use super::types::{Datum, Row};
use crate::event::Time;

/// Where a reader sends its records.
type Out<D, R> = OutputBuilder<Time, CapacityContainerBuilder<Vec<(D, Time, R)>>>;

/// What one view does with the rows of one table.
trait Read {
    /// The table it reads.
    fn table(&self) -> usize;
    /// A batch of events at `cap` begins.
    fn begin(&mut self, cap: &InputCapability<Time>);
    /// One row of its table, at `time`, `diff` times.
    fn take(&mut self, row: &[Datum], time: Time, diff: isize);
    /// The batch ended.
    fn end(&mut self);
    /// The input frontier is now `frontier`.
    fn flush(&mut self, frontier: &MutableAntichain<Time>);
}

/// The scan of one dataflow's sources, and the readers added so far.
pub(super) struct Scan<'s, E: 'static> {
    events: VecCollection<'s, Time, E>,
    builder: Option<OperatorBuilder<'s, Time>>,
    readers: Vec<Box<dyn Read>>,
}

impl<'s, E: SqlSource> Scan<'s, E> {
    /// A scan of `events`, without readers yet.
    pub(super) fn new(events: VecCollection<'s, Time, E>) -> Scan<'s, E> {
        Scan {
            events,
            builder: None,
            readers: Vec::new(),
        }
    }

    fn output<D: Clone + 'static, R: Clone + 'static>(
        &mut self,
    ) -> (usize, Out<D, R>, VecCollection<'s, Time, D, R>) {
        let events = &self.events;
        let builder = self
            .builder
            .get_or_insert_with(|| OperatorBuilder::new("Scan".into(), events.scope()));
        let (output, stream) = builder.new_output();
        (
            self.readers.len(),
            OutputBuilder::from(output),
            stream.as_collection(),
        )
    }

    /// The rows of `table`, after `steps`, each turned into at most one `(key, difference)`
    /// by `f` (which hands it to its `emit`, borrowing the key), summed by key and time.
    pub(super) fn fold<R, F>(
        &mut self,
        table: usize,
        steps: Rc<Vec<Step>>,
        f: F,
    ) -> VecCollection<'s, Time, Key, R>
    where
        R: Semigroup + Multiply<isize, Output = R> + 'static,
        F: FnMut(&[Datum], &mut dyn FnMut(&[Datum], R)) + 'static,
    {
        let (port, output, collection) = self.output();
        self.readers.push(Box::new(Fold {
            table,
            steps,
            buf: Row::new(),
            f,
            output,
            port,
            pending: Vec::new(),
            held: None,
            ready: Vec::new(),
        }));
        collection
    }

    /// The rows of `table`, after `steps`, each turned by `f` into at most one record.
    pub(super) fn explode<X, R, F>(
        &mut self,
        table: usize,
        steps: Rc<Vec<Step>>,
        f: F,
    ) -> VecCollection<'s, Time, X, R>
    where
        X: Clone + 'static,
        R: Semigroup + Multiply<isize, Output = R> + 'static,
        F: FnMut(&[Datum]) -> Option<(X, R)> + 'static,
    {
        let (port, output, collection) = self.output();
        self.readers.push(Box::new(Explode {
            table,
            steps,
            buf: Row::new(),
            f,
            output,
            port,
            cap: None,
            batch: Vec::new(),
        }));
        collection
    }

    /// Makes the operator (none when no view reads a source).
    pub(super) fn build(self) {
        let Some(mut builder) = self.builder else {
            return;
        };
        let mut input = builder.new_input(self.events.inner, Pipeline);
        let mut readers = self.readers;
        let tables = readers.iter().map(|r| r.table() + 1).max().unwrap_or(0);
        let mut read: Vec<bool> = vec![false; tables];
        for reader in &readers {
            read[reader.table()] = true;
        }
        builder.build(move |_initial| {
            let mut row = Row::new();
            move |frontiers| {
                input.for_each(|cap, data| {
                    readers.iter_mut().for_each(|r| r.begin(&cap));
                    for (event, time, diff) in data.iter() {
                        let table = event.table();
                        if !read.get(table).copied().unwrap_or(false) {
                            continue;
                        }
                        event.fill(&mut row);
                        for reader in readers.iter_mut().filter(|r| r.table() == table) {
                            reader.take(&row, *time, *diff);
                        }
                    }
                    readers.iter_mut().for_each(|r| r.end());
                });
                readers.iter_mut().for_each(|r| r.flush(&frontiers[0]));
            }
        });
    }
}

/// The row after `steps`: in `row`, or made in `buf` by a projection; `None` when a filter
/// drops it.
fn stepped<'a>(steps: &[Step], row: &'a [Datum], buf: &'a mut Row) -> Option<&'a [Datum]> {
    let mut projected = false;
    for step in steps {
        let current: &[Datum] = if projected { buf } else { row };
        match step {
            Step::Filter(p) => {
                if !holds(p, current) {
                    return None;
                }
            }
            Step::Project(exprs) => {
                let next = project(exprs, current);
                *buf = next;
                projected = true;
            }
        }
    }
    Some(if projected { buf } else { row })
}

struct Fold<R: 'static, F> {
    table: usize,
    steps: Rc<Vec<Step>>,
    buf: Row,
    f: F,
    output: Out<Key, R>,
    port: usize,
    /// Per pending time, its sums by key (few times: a short list).
    pending: Vec<(Time, FxHashMap<Key, R>)>,
    /// The capability at the earliest pending time.
    held: Option<Capability<Time>>,
    ready: Vec<(Key, Time, R)>,
}

impl<R, F> Read for Fold<R, F>
where
    R: Semigroup + Multiply<isize, Output = R> + 'static,
    F: FnMut(&[Datum], &mut dyn FnMut(&[Datum], R)) + 'static,
{
    fn table(&self) -> usize {
        self.table
    }

    fn begin(&mut self, cap: &InputCapability<Time>) {
        if let Some(least) = cap.least()
            && self.held.as_ref().is_none_or(|h| least < h.time())
        {
            self.held = cap.retain_least(self.port);
        }
    }

    fn take(&mut self, row: &[Datum], time: Time, diff: isize) {
        let Some(row) = stepped(&self.steps, row, &mut self.buf) else {
            return;
        };
        // The newest time is the likeliest: search from the end.
        let at = match self.pending.iter().rposition(|(t, _)| *t == time) {
            Some(at) => at,
            None => {
                self.pending.push((time, FxHashMap::default()));
                self.pending.len() - 1
            }
        };
        let map = &mut self.pending[at].1;
        (self.f)(row, &mut |key, add: R| {
            let add = add.multiply(&diff);
            match map.get_mut(key) {
                Some(sum) => sum.plus_equals(&add),
                None => {
                    map.insert(Key::of(key), add);
                }
            }
        });
    }

    fn end(&mut self) {}

    fn flush(&mut self, frontier: &MutableAntichain<Time>) {
        let frontier = frontier.frontier();
        let Some(cap) = self.held.as_mut() else {
            return;
        };
        if frontier.less_equal(cap.time()) {
            return;
        }
        let mut left: Option<Time> = None;
        for (time, map) in self.pending.extract_if(.., |(t, _)| {
            let keep = frontier.less_equal(t);
            if keep {
                left = Some(left.map_or(*t, |l| l.min(*t)));
            }
            !keep
        }) {
            self.ready.extend(
                map.into_iter()
                    .filter(|(_, diff)| !diff.is_zero())
                    .map(|(key, diff)| (key, time, diff)),
            );
        }
        if !self.ready.is_empty() {
            self.output
                .activate()
                .session(&*cap)
                .give_iterator(self.ready.drain(..));
        }
        match left {
            Some(t) => cap.downgrade(&t),
            None => self.held = None,
        }
    }
}

struct Explode<X: 'static, R: 'static, F> {
    table: usize,
    steps: Rc<Vec<Step>>,
    buf: Row,
    f: F,
    output: Out<X, R>,
    port: usize,
    /// The capability of the batch being read.
    cap: Option<Capability<Time>>,
    batch: Vec<(X, Time, R)>,
}

impl<X, R, F> Read for Explode<X, R, F>
where
    X: Clone + 'static,
    R: Semigroup + Multiply<isize, Output = R> + 'static,
    F: FnMut(&[Datum]) -> Option<(X, R)> + 'static,
{
    fn table(&self) -> usize {
        self.table
    }

    fn begin(&mut self, cap: &InputCapability<Time>) {
        self.cap = cap.retain_least(self.port);
    }

    fn take(&mut self, row: &[Datum], time: Time, diff: isize) {
        let Some(row) = stepped(&self.steps, row, &mut self.buf) else {
            return;
        };
        if let Some((x, r)) = (self.f)(row) {
            self.batch.push((x, time, r.multiply(&diff)));
        }
    }

    fn end(&mut self) {
        if let Some(cap) = self.cap.take()
            && !self.batch.is_empty()
        {
            self.output
                .activate()
                .session(&cap)
                .give_iterator(self.batch.drain(..));
        }
    }

    fn flush(&mut self, _frontier: &MutableAntichain<Time>) {}
}
