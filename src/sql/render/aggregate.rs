//! Aggregates: each `GROUP BY` takes one of three roads.
//!
//! * **Summed**, when every call is a count or an integer sum or average (the reference views,
//!   and most dashboards): each row becomes the vector of its contributions ([`Sums`]), which
//!   differential adds up as it consolidates. No operator keeps the rows: state is one vector
//!   per group, as in the typed pipelines.
//! * **Folded**, when the input only ever grows (a source's rows through filters, projections
//!   and windows: events are never taken back, late ones are added) and the other calls are
//!   `MIN` or `MAX`: the contributions also carry each row's values of those calls, and
//!   consolidating keeps the least or the greatest ([`Folded`]). State is still one record per
//!   group: a `MAX(ts)` per customer keeps each customer's latest time, not all of them.
//! * **Reduced** otherwise (`COUNT(DISTINCT)`, sums of doubles, `MIN`/`MAX` over a view or a
//!   join, whose rows can be retracted): a `reduce` per group sees the group's distinct call
//!   inputs and computes every aggregate.
//!
//! A global aggregate (no `GROUP BY`) has a row even over no input, as in SQL: one extra
//! record that holds no row keeps its group alive.
//!
//! In the first two roads the contributions leave the operator that reads the rows already
//! summed by group and time ([`Lazy::fold`]), which is the view's cut for checkpoints.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::ToStream;

use super::{Inputs, Lazy, Rows, holds, lazy};
use crate::aggregate::Sums;
use crate::event::Time;
use crate::sql::SqlSource;
use crate::sql::aggregates::{Agg, AggFunc};
use crate::sql::expr::Expr;
use crate::sql::key::Key;
use crate::sql::plan::Plan;
use crate::sql::types::{Datum, F64, Row, Type, compare};

/// How many sum slots a call carried as differences needs (`MIN` and `MAX` none: they are
/// [`Folded`]'s extremes).
fn slots(agg: &Agg) -> usize {
    match agg.func {
        AggFunc::CountStar | AggFunc::Count => 1,
        AggFunc::Min | AggFunc::Max => 0,
        AggFunc::Sum | AggFunc::Avg => 2,
    }
}

/// Whether every call can be carried as differences.
fn abelian(aggs: &[Agg]) -> bool {
    aggs.iter().all(Agg::is_abelian)
}

/// The rows of an aggregate over `input` (see the module for the roads).
pub(super) fn aggregate<'s, E: SqlSource>(
    plan: &Plan,
    inputs: &Inputs<'s, E>,
    group: Vec<Expr>,
    aggs: Vec<Agg>,
) -> Rows<'s> {
    let input = lazy(plan, inputs);
    match slots_needed(&aggs) {
        Some(n) if n <= 4 => return summed::<E, 4>(input, group, aggs),
        Some(n) if n <= 8 => return summed::<E, 8>(input, group, aggs),
        Some(n) if n <= 16 => return summed::<E, 16>(input, group, aggs),
        _ => {}
    }
    let foldable = insert_only(plan) && aggs.iter().all(|a| a.is_abelian() || extreme(a));
    let n = 2 + aggs
        .iter()
        .filter(|a| !extreme(a))
        .map(slots)
        .sum::<usize>();
    match n {
        n if foldable && n <= 4 => folded::<E, 4>(input, group, aggs),
        n if foldable && n <= 8 => folded::<E, 8>(input, group, aggs),
        n if foldable && n <= 16 => folded::<E, 16>(input, group, aggs),
        _ => reduced(input, group, aggs),
    }
}

/// How many difference slots the aggregates need, if they can be carried as differences.
pub(in crate::sql) fn slots_needed(aggs: &[Agg]) -> Option<usize> {
    abelian(aggs).then(|| 2 + aggs.iter().map(slots).sum::<usize>())
}

/// Whether a call is a `MIN` or a `MAX` of all values (which [`Folded`] can carry).
fn extreme(agg: &Agg) -> bool {
    matches!(agg.func, AggFunc::Min | AggFunc::Max) && !agg.distinct
}

/// Whether a plan's rows are only ever added, never retracted: a source's (its events are
/// immutable and late ones are added, not corrected by retraction), through filters,
/// projections and windows.
fn insert_only(plan: &Plan) -> bool {
    match plan {
        Plan::Scan(_) => true,
        Plan::Filter(input, _) | Plan::Project(input, _) | Plan::Windows { input, .. } => {
            insert_only(input)
        }
        _ => false,
    }
}

/// One record at the first time, on one worker: the group of a global aggregate exists even
/// when no row does.
fn keep_alive<'s, D, R>(
    like: &VecCollection<'s, Time, D, R>,
    record: D,
    diff: R,
) -> VecCollection<'s, Time, D, R>
where
    D: timely::ExchangeData + Ord + Clone,
    R: Semigroup + timely::ExchangeData,
{
    let scope = like.scope();
    let items = if scope.index() == 0 {
        vec![(record, Time::default(), diff)]
    } else {
        Vec::new()
    };
    items.to_stream(scope).as_collection()
}

/// Each row's contribution to its group's aggregates, as a difference: slot 0 counts the
/// group's rows, slot 1 marks the keep-alive record of a global aggregate, then each call's
/// slots. Consolidated by group, they are the aggregates' state; they leave the operator that
/// reads the rows already summed by group and time.
fn contributions<'s, E: SqlSource, const N: usize>(
    input: Lazy<'s, E>,
    group: Vec<Expr>,
    aggs: Vec<Agg>,
) -> VecCollection<'s, Time, Key, Sums<N>> {
    let global = group.is_empty();
    let mut key: Row = Vec::new();
    let contributions = input.fold(move |row, emit| {
        group_into(&mut key, &group, row);
        emit(&key, row_sums(&aggs, row));
    });
    if global {
        let mut alive = [0i128; N];
        alive[1] = 1;
        let alive = keep_alive(&contributions, Key::Many(Row::new()), Sums(alive));
        contributions.concat(alive)
    } else {
        contributions
    }
}

/// Makes `row`'s group (the values of the `GROUP BY` expressions) in `key`.
fn group_into(key: &mut Row, group: &[Expr], row: &[Datum]) {
    key.clear();
    key.extend(group.iter().map(|e| e.eval(row)));
}

/// One row's value of each `MIN` and `MAX` call, in their order (see [`Folded`]).
fn row_extremes(aggs: &[Agg], row: &[Datum]) -> Vec<Extreme> {
    aggs.iter()
        .filter(|a| extreme(a))
        .map(|agg| {
            let value = call_input(agg, row);
            if agg.func == AggFunc::Min {
                Extreme::Least(value)
            } else {
                Extreme::Greatest(value)
            }
        })
        .collect()
}

/// One row's sums: slot 0 counts it, then each call's slots (see [`contributions`]).
fn row_sums<const N: usize>(aggs: &[Agg], row: &[Datum]) -> Sums<N> {
    let mut sums = [0i128; N];
    sums[0] = 1;
    let mut slot = 2;
    for agg in aggs {
        let passes = agg.filter.as_ref().is_none_or(|f| holds(f, row));
        if passes {
            match (agg.func, &agg.arg) {
                (AggFunc::CountStar, _) => sums[slot] = 1,
                (AggFunc::Count, Some(a)) => sums[slot] = i128::from(!a.value(row).is_null()),
                (AggFunc::Sum | AggFunc::Avg, Some(a)) => {
                    if let Some(v) = a.int(row) {
                        sums[slot] = v;
                        sums[slot + 1] = 1;
                    }
                }
                _ => {}
            }
        }
        slot += slots(agg);
    }
    Sums(sums)
}

/// A group's row (its values, then each aggregate's) from its consolidated contributions.
pub(in crate::sql) fn finish<const N: usize>(key: Row, sums: &Sums<N>, aggs: &[Agg]) -> Row {
    finish_with(key, sums, &[], aggs)
}

/// [`finish`], with the values of the `MIN` and `MAX` calls (in their order; `NULL` for any
/// missing).
fn finish_with<const N: usize>(
    mut key: Row,
    sums: &Sums<N>,
    extremes: &[Extreme],
    aggs: &[Agg],
) -> Row {
    let s = &sums.0;
    let mut slot = 2;
    let mut extremes = extremes.iter();
    for agg in aggs {
        key.push(match agg.func {
            AggFunc::Min | AggFunc::Max => {
                extremes.next().map_or(Datum::Null, |e| e.value().clone())
            }
            AggFunc::CountStar | AggFunc::Count => Datum::Int(s[slot] as i64),
            AggFunc::Sum if s[slot + 1] == 0 => Datum::Null,
            AggFunc::Sum => Datum::Huge(s[slot]),
            AggFunc::Avg if s[slot + 1] == 0 => Datum::Null,
            _ => Datum::Float(F64(s[slot] as f64 / s[slot + 1] as f64)),
        });
        slot += slots(agg);
    }
    key
}

/// Aggregates carried as differences, as rows.
fn summed<'s, E: SqlSource, const N: usize>(
    input: Lazy<'s, E>,
    group: Vec<Expr>,
    aggs: Vec<Agg>,
) -> Rows<'s> {
    contributions::<E, N>(input, group, aggs.clone())
        .count()
        .map(move |(key, sums)| finish(key.to_row(aggs.len()), &sums, &aggs))
}

/// The contributions of an aggregate plan (over its input), for a view served straight from
/// them: `None` unless every call can be carried as differences in `N` slots.
pub(in crate::sql) fn served_sums<'s, E: SqlSource, const N: usize>(
    input: &Plan,
    group: &[Expr],
    aggs: &[Agg],
    inputs: &Inputs<'s, E>,
) -> VecCollection<'s, Time, Key, Sums<N>> {
    contributions::<E, N>(lazy(input, inputs), group.to_vec(), aggs.to_vec())
}

/// Aggregates folded as differences with their extremes ([`Folded`]), as rows.
fn folded<'s, E: SqlSource, const N: usize>(
    input: Lazy<'s, E>,
    group: Vec<Expr>,
    aggs: Vec<Agg>,
) -> Rows<'s> {
    let global = group.is_empty();
    let calls = aggs.clone();
    let mut key: Row = Vec::new();
    let contributions = input.fold(move |row, emit| {
        group_into(&mut key, &group, row);
        let folded = Folded {
            sums: row_sums(&calls, row),
            extremes: row_extremes(&calls, row),
        };
        emit(&key, folded);
    });
    let contributions = if global {
        let mut alive = [0i128; N];
        alive[1] = 1;
        let alive = Folded {
            sums: Sums(alive),
            extremes: Vec::new(),
        };
        let alive = keep_alive(&contributions, Key::Many(Row::new()), alive);
        contributions.concat(alive)
    } else {
        contributions
    };
    contributions.count().map(move |(key, folded)| {
        finish_with(
            key.to_row(aggs.len()),
            &folded.sums,
            &folded.extremes,
            &aggs,
        )
    })
}

/// A group's aggregates as one difference, for an input that only ever grows (a source's
/// events): `N` sums, as [`Sums`], and for each `MIN` or `MAX` call the least or greatest
/// value so far. Differential combines them as it consolidates, so a group's state is one
/// record whatever the number of distinct values it saw (a `MAX(ts)` keeps one time, not all).
///
/// A value can only win, never be taken back: the road is taken only for inputs that are never
/// retracted (see [`insert_only`]), and a multiplicity scales the sums alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Folded<const N: usize> {
    sums: Sums<N>,
    extremes: Vec<Extreme>,
}

/// One `MIN` or `MAX` call's value so far (`NULL`: none yet).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Extreme {
    Least(Datum),
    Greatest(Datum),
}

impl Extreme {
    fn value(&self) -> &Datum {
        match self {
            Extreme::Least(v) | Extreme::Greatest(v) => v,
        }
    }

    fn take(&mut self, other: &Extreme) {
        let (mine, theirs, want) = match (&mut *self, other) {
            (Extreme::Least(a), Extreme::Least(b)) => (a, b, Ordering::Less),
            (Extreme::Greatest(a), Extreme::Greatest(b)) => (a, b, Ordering::Greater),
            _ => return,
        };
        if theirs.is_null() {
            return;
        }
        if mine.is_null() || compare(theirs, mine) == Some(want) {
            *mine = theirs.clone();
        }
    }
}

impl<const N: usize> IsZero for Folded<N> {
    fn is_zero(&self) -> bool {
        self.sums.is_zero() && self.extremes.iter().all(|e| e.value().is_null())
    }
}

impl<const N: usize> Semigroup for Folded<N> {
    fn plus_equals(&mut self, rhs: &Self) {
        self.sums.plus_equals(&rhs.sums);
        if self.extremes.is_empty() {
            self.extremes.clone_from(&rhs.extremes);
            return;
        }
        for (mine, theirs) in self.extremes.iter_mut().zip(&rhs.extremes) {
            mine.take(theirs);
        }
    }
}

impl<const N: usize> Multiply<isize> for Folded<N> {
    type Output = Folded<N>;
    fn multiply(self, rhs: &isize) -> Folded<N> {
        Folded {
            sums: self.sums.multiply(rhs),
            extremes: self.extremes,
        }
    }
}

/// Aggregates computed by a `reduce` over each group's inputs.
///
/// The reduce does not see the rows: each row becomes its group and one value per call (the
/// call's argument, `NULL` where its filter leaves the row out; `TRUE` for a `COUNT(*)` that
/// counts it), and equal ones are counted together before they are exchanged. A group's state
/// is then its distinct combinations of values (a `MAX(amount)` keeps the distinct amounts),
/// not every row that reached it.
fn reduced<'s, E: SqlSource>(input: Lazy<'s, E>, group: Vec<Expr>, aggs: Vec<Agg>) -> Rows<'s> {
    let global = group.is_empty();
    let width = group.len();
    let calls = aggs.clone();
    let mut key: Row = Vec::new();
    let inputs = input.fold(move |row, emit| {
        group_into(&mut key, &group, row);
        key.extend(calls.iter().map(|agg| call_input(agg, row)));
        emit(&key, 1isize);
    });
    let keyed = inputs.map(move |key| {
        let mut group = key.to_row(0);
        let values = group.split_off(width);
        (group, Some(values))
    });
    let keyed = if global {
        let alive = keep_alive(&keyed, (Row::new(), None), 1);
        keyed.concat(alive)
    } else {
        keyed
    };
    keyed
        .reduce_named("Aggregate", move |key, inputs, out| {
            let mut result = key.clone();
            for (i, agg) in aggs.iter().enumerate() {
                result.push(compute(agg, i, inputs));
            }
            out.push((result, 1));
        })
        .map(|(_, row)| row)
}

/// What one call takes from a row: its argument's value (`TRUE` for `COUNT(*)`), or `NULL`
/// where its filter leaves the row out.
fn call_input(agg: &Agg, row: &[Datum]) -> Datum {
    if !agg.filter.as_ref().is_none_or(|f| holds(f, row)) {
        return Datum::Null;
    }
    agg.arg.as_ref().map_or(Datum::Bool(true), |a| a.eval(row))
}

/// Call `i` over its group's inputs (with their multiplicities; see [`reduced`]).
fn compute(agg: &Agg, i: usize, inputs: &[(&Option<Row>, isize)]) -> Datum {
    let values = inputs.iter().filter_map(|(values, n)| {
        let value = values.as_ref()?.get(i)?;
        (!value.is_null()).then(|| (value.clone(), *n))
    });
    if agg.distinct {
        let set: BTreeSet<Datum> = values.filter(|(_, n)| *n > 0).map(|(v, _)| v).collect();
        return fold(agg, set.into_iter().map(|v| (v, 1)));
    }
    fold(agg, values)
}

fn fold(agg: &Agg, values: impl Iterator<Item = (Datum, isize)>) -> Datum {
    let mut count: i64 = 0;
    let mut int_sum: i128 = 0;
    let mut float_sum: f64 = 0.0;
    let mut best: Option<Datum> = None;
    for (v, n) in values {
        count += n as i64;
        match agg.func {
            AggFunc::Sum | AggFunc::Avg => match &v {
                Datum::Float(f) => float_sum += f.0 * n as f64,
                other => int_sum = int_sum.wrapping_add(other.as_i128().unwrap_or(0) * n as i128),
            },
            AggFunc::Min | AggFunc::Max => {
                let better = best.as_ref().is_none_or(|b| {
                    let o = compare(&v, b).unwrap_or(Ordering::Equal);
                    if agg.func == AggFunc::Min {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                });
                if better {
                    best = Some(v);
                }
            }
            _ => {}
        }
    }
    match agg.func {
        AggFunc::CountStar | AggFunc::Count => Datum::Int(count),
        _ if count == 0 => Datum::Null,
        AggFunc::Min | AggFunc::Max => best.unwrap_or(Datum::Null),
        AggFunc::Sum if agg.ty == Type::Double => Datum::Float(F64(float_sum + int_sum as f64)),
        AggFunc::Sum => Datum::Huge(int_sum),
        AggFunc::Avg => Datum::Float(F64((float_sum + int_sum as f64) / count as f64)),
    }
}
