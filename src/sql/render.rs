//! Rendering: a logical [`Plan`] as differential operators over collections of rows.
//!
//! Each node becomes the operator that maintains it incrementally: filters and projections
//! are `filter`/`map` (no state); `DISTINCT` is `distinct`; joins are `join` on the equality
//! keys (rows with a `NULL` key match nothing, as in SQL), with a `LEFT JOIN`'s unmatched rows
//! kept by subtracting the left rows that matched; rankings are a `reduce` per partition.
//!
//! Aggregates take one of two roads:
//!
//! * **carried as differences** when every call is a count or an integer sum or average
//!   (the reference views, and most dashboards): each row becomes the vector of its
//!   contributions ([`Sums`]), which differential adds up as it consolidates. No operator keeps
//!   the rows: state is one vector per group, as in the typed pipelines;
//! * **reduced** otherwise (`MIN`, `MAX`, `COUNT(DISTINCT)`, sums of doubles): a `reduce`
//!   per group sees the group's rows and computes every aggregate.
//!
//! A global aggregate (no `GROUP BY`) has a row even over no input, as in SQL: one extra
//! record that holds no row keeps its group alive.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::rc::Rc;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::ToStream;

use super::bind::{Agg, AggFunc, SortKey};
use super::expr::Expr;
use super::plan::Plan;
use super::types::{Datum, F64, Row, compare};
use crate::aggregate::Sums;
use crate::event::Time;

/// Rows of a relation in a dataflow.
pub type Rows<'s> = VecCollection<'s, Time, Row>;

/// What a plan's leaves read.
pub struct Inputs<'s> {
    /// The rows of each source, by its catalog index.
    pub sources: Vec<Rows<'s>>,
    /// The output rows of each view built so far.
    pub views: Vec<(String, Rows<'s>)>,
}

/// The rows of `plan`.
pub fn render<'s>(plan: &Plan, inputs: &Inputs<'s>) -> Rows<'s> {
    match plan {
        Plan::Scan(i) => inputs.sources[*i].clone(),
        Plan::View(name) => inputs
            .views
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rows)| rows.clone())
            .expect("the planner resolved the view"),
        Plan::Filter(input, predicate) => {
            let predicate = predicate.clone();
            render(input, inputs).filter(move |row| holds(&predicate, row))
        }
        Plan::Project(input, exprs) => {
            // A projection right over a filter is one pass.
            let exprs = exprs.clone();
            match input.as_ref() {
                Plan::Filter(below, predicate) => {
                    let predicate = predicate.clone();
                    render(below, inputs)
                        .flat_map(move |row| holds(&predicate, &row).then(|| project(&exprs, &row)))
                }
                other => render(other, inputs).map(move |row| project(&exprs, &row)),
            }
        }
        Plan::Distinct(input) => render(input, inputs).distinct(),
        Plan::Aggregate { input, group, aggs } => {
            let rows = render(input, inputs);
            aggregate(rows, group.clone(), aggs.clone())
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

/// Whether a predicate is true for a row (`NULL` is not).
pub fn holds(predicate: &Expr, row: &[Datum]) -> bool {
    predicate.eval(row) == Datum::Bool(true)
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

/// How many difference slots an aggregate carried as differences needs.
fn slots(agg: &Agg) -> usize {
    match agg.func {
        AggFunc::CountStar | AggFunc::Count => 1,
        _ => 2,
    }
}

/// Whether every call can be carried as differences.
fn abelian(aggs: &[Agg]) -> bool {
    aggs.iter().all(Agg::is_abelian)
}

fn aggregate<'s>(rows: Rows<'s>, group: Vec<Expr>, aggs: Vec<Agg>) -> Rows<'s> {
    let global = group.is_empty();
    let needed = 2 + aggs.iter().map(slots).sum::<usize>();
    if abelian(&aggs) {
        if needed <= 4 {
            return summed::<4>(rows, group, aggs, global);
        } else if needed <= 8 {
            return summed::<8>(rows, group, aggs, global);
        } else if needed <= 16 {
            return summed::<16>(rows, group, aggs, global);
        }
    }
    reduced(rows, group, aggs, global)
}

/// One record at the first time, on one worker: the group of a global aggregate exists even
/// when no row does.
fn keep_alive<
    's,
    D: timely::ExchangeData + Ord + Clone,
    R: differential_dataflow::difference::Semigroup + timely::ExchangeData,
>(
    like: &VecCollection<'s, Time, D, R>,
    record: D,
    diff: R,
) -> VecCollection<'s, Time, D, R> {
    let scope = like.scope();
    let items = if scope.index() == 0 {
        vec![(record, Time::default(), diff)]
    } else {
        Vec::new()
    };
    items.to_stream(scope).as_collection()
}

/// Aggregates carried as differences. Slot 0 counts the group's rows, slot 1 marks the
/// keep-alive record; then each call's slots.
fn summed<'s, const N: usize>(
    rows: Rows<'s>,
    group: Vec<Expr>,
    aggs: Vec<Agg>,
    global: bool,
) -> Rows<'s> {
    let contributions = {
        let aggs = aggs.clone();
        rows.explode(move |row| {
            let mut sums = [0i128; N];
            sums[0] = 1;
            let mut slot = 2;
            for agg in &aggs {
                let passes = agg.filter.as_ref().is_none_or(|f| holds(f, &row));
                let value = agg.arg.as_ref().map(|a| a.eval(&row));
                match agg.func {
                    AggFunc::CountStar => sums[slot] = i128::from(passes),
                    AggFunc::Count => {
                        sums[slot] =
                            i128::from(passes && value.as_ref().is_some_and(|v| !v.is_null()))
                    }
                    _ => {
                        if passes && let Some(v) = value.as_ref().and_then(Datum::as_i128) {
                            sums[slot] = v;
                            sums[slot + 1] = 1;
                        }
                    }
                }
                slot += slots(agg);
            }
            Some((project(&group, &row), Sums(sums)))
        })
    };
    let contributions = if global {
        let mut alive = [0i128; N];
        alive[1] = 1;
        let alive = keep_alive(&contributions, Row::new(), Sums(alive));
        contributions.concat(alive)
    } else {
        contributions
    };
    crate::aggregate::pre_aggregate(contributions)
        .count()
        .map(move |(mut key, sums)| {
            let mut slot = 2;
            for agg in &aggs {
                let s = &sums.0;
                key.push(match agg.func {
                    AggFunc::CountStar | AggFunc::Count => Datum::Int(s[slot] as i64),
                    AggFunc::Sum if s[slot + 1] == 0 => Datum::Null,
                    AggFunc::Sum => Datum::Huge(s[slot]),
                    AggFunc::Avg if s[slot + 1] == 0 => Datum::Null,
                    _ => Datum::Float(F64(s[slot] as f64 / s[slot + 1] as f64)),
                });
                slot += slots(agg);
            }
            key
        })
}

/// Aggregates computed by a `reduce` over each group's rows.
fn reduced<'s>(rows: Rows<'s>, group: Vec<Expr>, aggs: Vec<Agg>, global: bool) -> Rows<'s> {
    let keyed = rows.map(move |row| (project(&group, &row), Some(row)));
    let keyed = if global {
        {
            let alive = keep_alive(&keyed, (Row::new(), None), 1);
            keyed.concat(alive)
        }
    } else {
        keyed
    };
    keyed
        .reduce_named("Aggregate", move |key, rows, out| {
            let mut result = key.clone();
            for agg in &aggs {
                result.push(compute(agg, rows));
            }
            out.push((result, 1));
        })
        .map(|(_, row)| row)
}

/// One aggregate over a group's rows (with their multiplicities).
fn compute(agg: &Agg, rows: &[(&Option<Row>, isize)]) -> Datum {
    let values = rows.iter().filter_map(|(row, n)| {
        let row = row.as_ref()?;
        if !agg.filter.as_ref().is_none_or(|f| holds(f, row)) {
            return None;
        }
        let value = agg.arg.as_ref().map_or(Datum::Bool(true), |a| a.eval(row));
        (!value.is_null()).then_some((value, *n))
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
        AggFunc::Sum if agg.ty == super::types::Type::Double => {
            Datum::Float(F64(float_sum + int_sum as f64))
        }
        AggFunc::Sum => Datum::Huge(int_sum),
        AggFunc::Avg => Datum::Float(F64((float_sum + int_sum as f64) / count as f64)),
    }
}
