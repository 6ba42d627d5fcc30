//! Rendering: a logical [`Plan`] as differential operators over collections of rows.
//!
//! Each node becomes the operator that maintains it incrementally: filters and projections
//! are `filter`/`map` (no state); `DISTINCT` is `distinct`; joins are `join` on the equality
//! keys (rows with a `NULL` key match nothing, as in SQL), with a `LEFT JOIN`'s unmatched rows
//! kept by subtracting the left rows that matched; rankings are a `reduce` per partition.
//!
//! Aggregates are carried as differences where they can be, or reduced (see the `aggregate`
//! module inside).
//!
//! Every read of a source is a **cut** for checkpoints ([`checkpoint`](crate::checkpoint)):
//! what leaves the one operator that reads the events (the rows after their filters and
//! projections, or their sums by group and time) is a function of the events without state,
//! and every stateful operator comes after it. Its points are named after the view and
//! fingerprinted with its SQL text, so a checkpoint only fits views defined the same way.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::{ExchangeData, VecCollection};

use super::SqlSource;
use super::bind::SortKey;
use super::expr::Expr;
use super::key::Key;
use super::plan::Plan;
use super::types::{Datum, Row, compare};
use crate::checkpoint::Cuts;
use crate::event::Time;

mod aggregate;

pub(super) use aggregate::{finish, served_sums, slots_needed};

/// Rows of a relation in a dataflow.
pub type Rows<'s> = VecCollection<'s, Time, Row>;

/// What a plan's leaves read.
pub struct Inputs<'s, E: 'static> {
    /// The events of every source (each a row of one of them: [`SqlSource::table`]).
    pub events: VecCollection<'s, Time, E>,
    /// The output rows of each view built so far.
    pub views: Vec<(String, Rows<'s>)>,
    /// Cuts the reads of the sources.
    pub cutter: Cutter,
}

/// Cuts every read of a source (see the module) for the view being built.
#[derive(Clone)]
pub struct Cutter {
    cuts: Cuts,
    /// The view's name and SQL text, the part of it being built, and how many cuts that part
    /// has so far.
    view: Rc<RefCell<(String, String, &'static str, usize)>>,
}

impl Cutter {
    /// A cutter that adds its cuts to `cuts`.
    pub(crate) fn new(cuts: Cuts) -> Cutter {
        Cutter {
            cuts,
            view: Rc::default(),
        }
    }

    /// The cuts from now on are view `name`'s, defined by `sql`.
    pub fn start_view(&self, name: &str, sql: &str) {
        *self.view.borrow_mut() = (name.to_string(), sql.to_string(), "rows", 0);
    }

    /// The cuts from now on are of part `part` of the view (`"sums"` when it is served from
    /// its contributions, `"rows"` when its rows are made): a view's rows are cut alike
    /// whether or not it is also served as sums, so that the dataflow of a view created while
    /// running (which may build another view's rows only) and the engine's after a restart
    /// name the same state the same way.
    pub fn start_part(&self, part: &'static str) {
        let mut view = self.view.borrow_mut();
        view.2 = part;
        view.3 = 0;
    }

    fn cut<'s, D, R>(
        &self,
        collection: VecCollection<'s, Time, D, R>,
    ) -> VecCollection<'s, Time, D, R>
    where
        D: ExchangeData + Hash,
        R: ExchangeData + Semigroup,
    {
        let mut view = self.view.borrow_mut();
        view.3 += 1;
        let name = format!("sql {} {} #{}", view.0, view.2, view.3);
        self.cuts.cut(&name, &view.1, collection)
    }
}

/// A filter, a projection or a window assignment still to apply to a source's rows.
#[derive(Clone)]
enum Step {
    Filter(Expr),
    Project(Vec<Expr>),
    Windows(Windowing),
}

/// Tumbling and hopping windows: each row once per window that holds its time.
#[derive(Clone)]
struct Windowing {
    /// The row's time.
    time: Expr,
    /// Whether the time is milliseconds (a `BIGINT`) rather than a timestamp.
    millis: bool,
    /// How far apart windows start, in µs.
    slide: i64,
    /// How long a window lasts, in µs.
    size: i64,
}

impl Windowing {
    /// Hands `row` to `emit` once per window, with the window's start and end appended.
    fn assign(&self, row: &[Datum], emit: &mut dyn FnMut(Row)) {
        let at = match self.time.eval(row) {
            Datum::Int(ms) if self.millis => ms.checked_mul(1_000),
            Datum::Timestamp(us) => Some(us),
            _ => None,
        };
        for start in windows(at, self.slide, self.size) {
            let mut row = row.to_vec();
            row.push(Datum::Timestamp(start));
            row.push(Datum::Timestamp(start.saturating_add(self.size)));
            emit(row);
        }
    }
}

/// A relation's rows, perhaps not made yet: the events of one source (the table at a
/// position) with the filters, projections and windows over them, applied in the one operator
/// that reads them (no row is built for an event of another table or that a filter drops, nor
/// copied between the steps). A windowed aggregate's contributions then leave that operator
/// summed by window, and its cut keeps them rather than the rows.
enum Lazy<'s, E: 'static> {
    Rows(Rows<'s>),
    Source(VecCollection<'s, Time, E>, usize, Rc<Vec<Step>>, Cutter),
}

impl<'s, E: SqlSource> Lazy<'s, E> {
    /// The rows, each handed to `f` (which may keep it or not).
    fn explode<X, R, F>(self, mut f: F) -> VecCollection<'s, Time, X, R>
    where
        X: ExchangeData + Hash,
        R: ExchangeData
            + Semigroup
            + differential_dataflow::difference::Multiply<isize, Output = R>
            + 'static,
        F: FnMut(&[Datum]) -> Option<(X, R)> + 'static,
    {
        match self {
            Lazy::Rows(rows) => rows.explode(move |row| f(&row)),
            Lazy::Source(events, table, steps, cutter)
                if steps.iter().any(|s| matches!(s, Step::Windows(_))) =>
            {
                let mut buf: Row = Vec::new();
                cutter.cut(events.explode(move |event| {
                    let mut out = Vec::new();
                    source_rows(&event, table, &steps, &mut buf, &mut |row| {
                        out.extend(f(row));
                    });
                    out
                }))
            }
            Lazy::Source(events, table, steps, cutter) => {
                let mut buf: Row = Vec::new();
                cutter.cut(events.explode(move |event| {
                    if !source_row(&event, table, &steps, &mut buf) {
                        return None;
                    }
                    f(&buf)
                }))
            }
        }
    }

    /// Each row's `(key, difference)` from `f` (at most one, handed to its `emit` with the key
    /// borrowed), summed by key and time in the operator that reads the rows: for a source,
    /// no row or key is allocated per event, and one record per key and time leaves it.
    fn fold<R, F>(self, mut f: F) -> VecCollection<'s, Time, Key, R>
    where
        R: ExchangeData
            + Semigroup
            + differential_dataflow::difference::Multiply<isize, Output = R>
            + 'static,
        F: FnMut(&[Datum], &mut dyn FnMut(&[Datum], R)) + 'static,
    {
        match self {
            Lazy::Rows(rows) => {
                crate::aggregate::fold_by_key(rows, Key::of, move |row: &Row, n: &isize, add| {
                    f(row, &mut |key, r: R| add(key, r.multiply(n)));
                })
            }
            Lazy::Source(events, table, steps, cutter) => {
                let mut buf: Row = Vec::new();
                cutter.cut(crate::aggregate::fold_by_key(
                    events,
                    Key::of,
                    move |event: &E, n: &isize, add| {
                        source_rows(event, table, &steps, &mut buf, &mut |row| {
                            f(row, &mut |key, r: R| add(key, r.multiply(n)));
                        });
                    },
                ))
            }
        }
    }

    /// The rows, made.
    fn rows(self) -> Rows<'s> {
        match self {
            Lazy::Rows(rows) => rows,
            source => source.explode(|row| Some((row.to_vec(), 1isize))),
        }
    }

    fn then(self, step: Step) -> Lazy<'s, E> {
        match self {
            Lazy::Source(events, table, steps, cutter) => {
                let mut steps = (*steps).clone();
                steps.push(step);
                Lazy::Source(events, table, Rc::new(steps), cutter)
            }
            Lazy::Rows(rows) => Lazy::Rows(match step {
                Step::Filter(p) => rows.filter(move |row| holds(&p, row)),
                Step::Project(exprs) => rows.map(move |row| project(&exprs, &row)),
                Step::Windows(w) => rows.flat_map(move |row| {
                    let mut out = Vec::new();
                    w.assign(&row, &mut |row| out.push(row));
                    out
                }),
            }),
        }
    }
}

/// Makes an event's row of table `table` in `buf`, with the steps applied; `false` when the
/// event is of another table or a filter drops it.
/// (For steps without windows: at most one row per event.)
fn source_row<E: SqlSource>(event: &E, table: usize, steps: &[Step], buf: &mut Row) -> bool {
    if event.table() != table {
        return false;
    }
    event.fill(buf);
    for step in steps {
        match step {
            Step::Filter(p) => {
                if !holds(p, buf) {
                    return false;
                }
            }
            Step::Project(exprs) => *buf = project(exprs, buf),
            Step::Windows(_) => return false,
        }
    }
    true
}

/// Hands each of an event's rows of table `table` (the steps applied; a window step makes one
/// per window) to `emit`.
fn source_rows<E: SqlSource>(
    event: &E,
    table: usize,
    steps: &[Step],
    buf: &mut Row,
    emit: &mut dyn FnMut(&[Datum]),
) {
    if event.table() != table {
        return;
    }
    event.fill(buf);
    apply(steps, buf, emit);
}

/// Applies `steps` to the row in `buf`, handing each row that comes out to `emit`.
fn apply(steps: &[Step], buf: &mut Row, emit: &mut dyn FnMut(&[Datum])) {
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Filter(p) => {
                if !holds(p, buf) {
                    return;
                }
            }
            Step::Project(exprs) => *buf = project(exprs, buf),
            Step::Windows(w) => {
                w.assign(buf, &mut |mut row| {
                    apply(&steps[i + 1..], &mut row, &mut *emit)
                });
                return;
            }
        }
    }
    emit(buf);
}

fn lazy<'s, E: SqlSource>(plan: &Plan, inputs: &Inputs<'s, E>) -> Lazy<'s, E> {
    match plan {
        Plan::Scan(table) => Lazy::Source(
            inputs.events.clone(),
            *table,
            Rc::new(Vec::new()),
            inputs.cutter.clone(),
        ),
        Plan::Filter(input, predicate) => lazy(input, inputs).then(Step::Filter(predicate.clone())),
        Plan::Project(input, exprs) => lazy(input, inputs).then(Step::Project(exprs.clone())),
        Plan::Windows {
            input,
            time,
            millis,
            slide,
            size,
        } => lazy(input, inputs).then(Step::Windows(Windowing {
            time: time.clone(),
            millis: *millis,
            slide: *slide,
            size: *size,
        })),
        other => Lazy::Rows(render(other, inputs)),
    }
}

/// The rows of `plan`.
pub fn render<'s, E: SqlSource>(plan: &Plan, inputs: &Inputs<'s, E>) -> Rows<'s> {
    match plan {
        Plan::Scan(_) | Plan::Filter(..) | Plan::Project(..) | Plan::Windows { .. } => {
            lazy(plan, inputs).rows()
        }
        Plan::View(name) => inputs
            .views
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rows)| rows.clone())
            .expect("the planner resolved the view"),
        Plan::Distinct(input) => render(input, inputs).distinct(),
        Plan::Aggregate { input, group, aggs } => {
            aggregate::aggregate(input, inputs, group.clone(), aggs.clone())
        }
        Plan::Join {
            left,
            right,
            left_keys,
            right_keys,
            residual,
            left_outer,
        } => {
            let left = render(left, inputs);
            let right = render(right, inputs);
            join(
                left,
                right,
                left_keys.clone(),
                right_keys.clone(),
                residual.clone(),
                *left_outer,
            )
        }
        Plan::Sessions {
            input,
            partition,
            time,
            millis,
            gap,
        } => {
            let (partition, time, millis, gap) = (partition.clone(), time.clone(), *millis, *gap);
            render(input, inputs)
                .flat_map(move |row| {
                    let at = match time.eval(&row) {
                        Datum::Int(ms) if millis => ms.checked_mul(1_000),
                        Datum::Timestamp(us) => Some(us),
                        _ => None,
                    };
                    at.map(|at| (project(&partition, &row), (at, row)))
                })
                .reduce_named("Sessions", move |_key, rows, out| {
                    sessions(rows, gap, out);
                })
                .map(|(_, row)| row)
        }
        Plan::Rank {
            input,
            partition,
            order,
            limit,
            numbered,
        } => {
            let partition = partition.clone();
            let order = Rc::new(order.clone());
            let (limit, numbered) = (*limit, *numbered);
            render(input, inputs)
                .map(move |row| (project(&partition, &row), row))
                .reduce_named("Rank", move |_key, rows, out| {
                    let mut all: Vec<&Row> = Vec::new();
                    for (row, count) in rows {
                        for _ in 0..(*count).max(0) {
                            all.push(row);
                        }
                    }
                    all.sort_by(|a, b| sort_order(&order, a, b).then_with(|| a.cmp(b)));
                    for (n, row) in all
                        .into_iter()
                        .take(limit.unwrap_or(usize::MAX))
                        .enumerate()
                    {
                        let mut row = (*row).clone();
                        if numbered {
                            row.push(Datum::Int(n as i64 + 1));
                        }
                        out.push((row, 1));
                    }
                })
                .map(|(_, row)| row)
        }
    }
}

/// One partition's rows `(time, row)` (in time order, as the reduce hands them) in sessions:
/// a row at least `gap` after the last one before it starts a new session. Each row comes
/// out with its session's start and end (the last time plus the gap) appended.
fn sessions(rows: &[(&(i64, Row), isize)], gap: i64, out: &mut Vec<(Row, isize)>) {
    let mut start = 0;
    while start < rows.len() {
        let mut end = start + 1;
        while end < rows.len() && rows[end].0.0 - rows[end - 1].0.0 < gap {
            end += 1;
        }
        let first = rows[start].0.0;
        let last = rows[end - 1].0.0;
        for ((_, row), count) in &rows[start..end] {
            let mut row = row.clone();
            row.push(Datum::Timestamp(first));
            row.push(Datum::Timestamp(last.saturating_add(gap)));
            out.push((row, *count));
        }
        start = end;
    }
}

/// The starts of the windows (every `slide` µs, `size` long) that hold time `at`: those in
/// `(at - size, at]`. None for a row without a time.
fn windows(at: Option<i64>, slide: i64, size: i64) -> impl Iterator<Item = i64> {
    let last = at.map(|t| t - t.rem_euclid(slide));
    let count = if slide > 0 { size / slide } else { 0 };
    (0..count).filter_map(move |k| last.and_then(|l| l.checked_sub(k * slide)))
}

/// Whether a predicate is true for a row (`NULL` is not).
pub fn holds(predicate: &Expr, row: &[Datum]) -> bool {
    predicate.test(row) == Some(true)
}

/// The values of `exprs` for a row.
pub fn project(exprs: &[Expr], row: &[Datum]) -> Row {
    exprs.iter().map(|e| e.eval(row)).collect()
}

/// SQL's order of two rows by `keys`: `NULL`s last unless asked first, in either direction.
pub fn sort_order(keys: &[SortKey], a: &[Datum], b: &[Datum]) -> Ordering {
    for key in keys {
        let (x, y) = (key.expr.eval(a), key.expr.eval(b));
        let order = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if key.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if key.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = compare(&x, &y).unwrap_or(Ordering::Equal);
                if key.desc { o.reverse() } else { o }
            }
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn join<'s>(
    left: Rows<'s>,
    right: Rows<'s>,
    left_keys: Vec<Expr>,
    right_keys: Vec<Expr>,
    residual: Option<Expr>,
    left_outer: Option<usize>,
) -> Rows<'s> {
    let keyed = |rows: Rows<'s>, keys: Vec<Expr>| {
        rows.flat_map(move |row| {
            let key = project(&keys, &row);
            (!key.iter().any(Datum::is_null)).then_some((key, row))
        })
    };
    let matched = keyed(left.clone(), left_keys)
        .join(keyed(right, right_keys))
        .flat_map(move |(_, (l, r))| {
            let mut row = l;
            row.extend(r);
            residual
                .as_ref()
                .is_none_or(|p| holds(p, &row))
                .then_some(row)
        });
    let Some(right_width) = left_outer else {
        return matched;
    };
    // A left row matched if any joined row begins with it.
    let matched_left = matched
        .clone()
        .map(move |row| row[..row.len() - right_width].to_vec())
        .distinct();
    let unmatched = left
        .clone()
        .concat(
            left.map(|row| (row, ()))
                .semijoin(matched_left)
                .map(|(row, ())| row)
                .negate(),
        )
        .map(move |mut row| {
            row.extend(std::iter::repeat_n(Datum::Null, right_width));
            row
        });
    matched.concat(unmatched)
}
