//! Serving a SQL view: its rows arranged by key (or ranked), read as JSON objects.
//!
//! A keyed view is arranged by its key columns, with the other columns as the value; a row
//! that occurs `n` times (a view without aggregation over duplicate events) renders as `n`
//! objects. A ranked view arranges whole rows and answers the top `k` by its `ORDER BY` at read
//! time (scatter/gather, see [`Views::top_k`]).

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SqlSource;
use super::aggregates::Agg;
use super::bind::SortKey;
use super::expr::Expr;
use super::key::{Key, parse_key};
use super::plan::{Plan, ViewPlan};
use super::render::{
    Inputs, Rows, finish, holds, project, render, served_sums, slots_needed, sort_order,
};
use super::types::{Datum, Row, Type};
use crate::aggregate::Sums;
use crate::answer::{Answer, AnswerValue, write_values};
use crate::view::Views;

/// The order a ranked view ranks by, as a value that is greater for rows ranked earlier.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rank {
    /// The row's `ORDER BY` values.
    values: Row,
    /// For each, whether it sorts descending and whether `NULL`s come first.
    flags: Vec<(bool, bool)>,
    /// How many times the row occurs.
    count: isize,
    /// The row, when the ranked key is not the row itself.
    row: Option<Row>,
}

impl Rank {
    fn order(&self, other: &Rank) -> Ordering {
        let keys: Vec<SortKey> = self
            .flags
            .iter()
            .enumerate()
            .map(|(i, (desc, nulls_first))| SortKey {
                expr: super::expr::Expr::Column(i),
                desc: *desc,
                nulls_first: *nulls_first,
            })
            .collect();
        sort_order(&keys, &self.values, &other.values)
    }
}

impl PartialEq for Rank {
    fn eq(&self, other: &Rank) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Rank {}
impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Rank) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Rank {
    fn cmp(&self, other: &Rank) -> Ordering {
        // Earlier in the ORDER BY is greater: the top-k keeps the greatest.
        other.order(self)
    }
}

/// Renders a row as a JSON object, or as an array of `count` objects.
fn objects(names: &[String], row: &[Datum], count: isize) -> Option<Value> {
    if count <= 0 {
        return None;
    }
    let object: Map<String, Value> = names
        .iter()
        .zip(row)
        .map(|(n, d)| (n.clone(), d.to_json()))
        .collect();
    Some(if count == 1 {
        Value::Object(object)
    } else {
        Value::Array(vec![Value::Object(object); count as usize])
    })
}

/// Writes rows as JSON objects: each column's name, written once.
#[derive(Clone)]
struct ObjectWriter {
    /// Per column, the text before its value: `{"name":` for the first, `,"name":` after.
    heads: Arc<Vec<Vec<u8>>>,
}

impl ObjectWriter {
    fn new(names: &[String]) -> ObjectWriter {
        let heads = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut head = vec![if i == 0 { b'{' } else { b',' }];
                // A string always serializes.
                let _ = serde_json::to_writer(&mut head, name);
                head.push(b':');
                head
            })
            .collect();
        ObjectWriter {
            heads: Arc::new(heads),
        }
    }

    /// Hands `out` the row's object `count` times (the text of [`objects`]' values).
    fn write(&self, row: &[Datum], count: isize, out: &mut dyn FnMut(&[u8])) {
        if count <= 0 {
            return;
        }
        let mut text = Vec::with_capacity(16 * row.len() + 2);
        for (head, d) in self.heads.iter().zip(row) {
            text.extend_from_slice(head);
            d.write_json(&mut text);
        }
        if self.heads.is_empty() {
            text.push(b'{');
        }
        text.push(b'}');
        (0..count).for_each(|_| out(&text));
    }
}

/// Builds view `view` in a dataflow: registers it with `views` if `served`, and returns its
/// rows if `as_rows` (a later view reads them).
///
/// A view whose rows are an aggregate carried as differences (and its key the groups) is served
/// straight from the consolidated contributions, as the typed pipelines are: its rows are
/// computed from them when read, and no operator keeps another copy.
pub(super) fn register<'s, E: SqlSource>(
    view: &ViewPlan,
    inputs: &Inputs<'s, E>,
    views: &mut Views<'s>,
    served: bool,
    as_rows: bool,
) -> Option<Rows<'s>> {
    let direct = served && summed_shape(view).is_some();
    if direct {
        inputs.cutter.start_part("sums");
        match summed_shape(view).and_then(|s| slots_needed(s.aggs)) {
            Some(n) if n <= 4 => register_sums::<E, 4>(view, inputs, views),
            Some(n) if n <= 8 => register_sums::<E, 8>(view, inputs, views),
            _ => register_sums::<E, 16>(view, inputs, views),
        }
    }
    let rows = (as_rows || (served && !direct)).then(|| {
        inputs.cutter.start_part("rows");
        render(&view.body.plan, inputs)
    });
    if served
        && !direct
        && let Some(rows) = &rows
    {
        register_rows(view, rows.clone(), views);
    }
    if served {
        views.set_sql(&view.name, &view.sql);
    }
    rows.filter(|_| as_rows)
}

/// The parts of an aggregate served from its contributions.
struct Summed<'v> {
    input: &'v Plan,
    group: &'v [Expr],
    having: Option<&'v Expr>,
    aggs: &'v [Agg],
}

/// `SELECT exprs FROM (aggregate) [HAVING predicate]`, keyed by every group, with every call
/// carried as differences in at most 16 slots.
fn summed_shape(view: &ViewPlan) -> Option<Summed<'_>> {
    let Plan::Project(inner, _) = &view.body.plan else {
        return None;
    };
    let (aggregate, having) = match inner.as_ref() {
        Plan::Filter(below, predicate) => (below.as_ref(), Some(predicate)),
        other => (other, None),
    };
    let Plan::Aggregate { input, group, aggs } = aggregate else {
        return None;
    };
    let keyed_by_groups = view.key.len() == group.len();
    let fits = slots_needed(aggs).is_some_and(|n| n <= 16);
    (keyed_by_groups && fits).then_some(Summed {
        input: input.as_ref(),
        group: group.as_slice(),
        having,
        aggs: aggs.as_slice(),
    })
}

fn register_sums<'s, E: SqlSource, const N: usize>(
    view: &ViewPlan,
    inputs: &Inputs<'s, E>,
    views: &mut Views<'s>,
) {
    let Some(Summed {
        input,
        group,
        having,
        aggs,
    }) = summed_shape(view)
    else {
        return;
    };
    let Plan::Project(_, exprs) = &view.body.plan else {
        return;
    };
    let names: Arc<Vec<String>> =
        Arc::new(view.body.columns.iter().map(|c| c.name.clone()).collect());
    let sums = served_sums::<E, N>(input, group, aggs, inputs);
    let (exprs, having, aggs) = (exprs.clone(), having.cloned(), aggs.to_vec());
    // The output row of a group, unless HAVING leaves it out.
    let output = Arc::new(move |key: &Key, sums: &Sums<N>| -> Option<Row> {
        let row = finish(key.to_row(aggs.len()), sums, &aggs);
        if having.as_ref().is_some_and(|h| !holds(h, &row)) {
            return None;
        }
        Some(project(&exprs, &row))
    });
    let keyed = sums.map(|key| (key, ()));
    match &view.ranking {
        None => {
            let types: Vec<Type> = view.key.iter().map(|i| view.body.columns[*i].ty).collect();
            let (writer, write_output) = (ObjectWriter::new(&names), output.clone());
            let registered = views.register_rendered(
                &view.name,
                "SQL view",
                keyed,
                move |text| parse_key(text, &types),
                move |k: &Key, values: &[((), Sums<N>)]| {
                    let (_, sums) = values.first()?;
                    objects(&names, &output(k, sums)?, 1)
                },
                Some(Arc::new(move |k: &Key, values: &[((), Sums<N>)], out| {
                    if let Some(row) = values.first().and_then(|(_, s)| write_output(k, s)) {
                        writer.write(&row, 1, out);
                    }
                })),
            );
            finality(view, registered);
        }
        Some(ranking) => {
            let base = views.arrange_only(&format!("{}.groups", view.name), keyed);
            let order = ranking.order.clone();
            let flags: Vec<(bool, bool)> = order.iter().map(|k| (k.desc, k.nulls_first)).collect();
            views.top_k(
                &view.name,
                "SQL view",
                &base,
                ranking.limit,
                move |k: &Key, values: &[((), Sums<N>)]| {
                    let (_, sums) = values.first()?;
                    let row = output(k, sums)?;
                    Some(Rank {
                        values: order.iter().map(|o| o.expr.eval(&row)).collect(),
                        flags: flags.clone(),
                        count: 1,
                        row: Some(row),
                    })
                },
                move |_: &Key, rank: &Rank| {
                    rank.row
                        .as_ref()
                        .and_then(|row| objects(&names, row, 1))
                        .unwrap_or(Value::Null)
                },
            );
            views.set_limit(&view.name, ranking.limit);
        }
    }
}

/// Where a windowed view's rows become final: its key's `window_end` (from `TUMBLE` or
/// `HOP`), in milliseconds. A row is final once the watermark passes its window's end.
fn window_end(view: &ViewPlan) -> Option<usize> {
    view.key.iter().position(|i| {
        let c = &view.body.columns[*i];
        c.name.eq_ignore_ascii_case("window_end") && c.ty == Type::Timestamp
    })
}

/// Marks a registered view's rows final after their window's end, if they have one.
fn finality<V, R>(view: &ViewPlan, registered: crate::view::ViewRef<'_, Key, V, R>)
where
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + differential_dataflow::difference::Semigroup,
{
    if let Some(at) = window_end(view) {
        registered.final_after(move |key: &Key| match key.as_slice().get(at) {
            Some(Datum::Timestamp(us)) => us.div_euclid(1_000).max(0) as crate::event::Time,
            _ => crate::event::END_OF_TIME,
        });
    }
}

/// Registers a view's rows: arranged by key, or ranked.
fn register_rows<'s>(view: &ViewPlan, rows: Rows<'s>, views: &mut Views<'s>) {
    let names: Arc<Vec<String>> =
        Arc::new(view.body.columns.iter().map(|c| c.name.clone()).collect());
    let description = "SQL view";
    match &view.ranking {
        None => {
            let width = view.body.columns.len();
            let key = view.key.clone();
            let rest: Vec<usize> = (0..width).filter(|i| !key.contains(i)).collect();
            // Where each output column is: in the key or in the value, at which position.
            let slots: Vec<(bool, usize)> = (0..width)
                .map(|i| match key.iter().position(|k| *k == i) {
                    Some(p) => (true, p),
                    None => (false, rest.iter().position(|r| *r == i).unwrap_or(0)),
                })
                .collect();
            let types: Vec<Type> = key.iter().map(|i| view.body.columns[*i].ty).collect();
            let keyed = crate::aggregate::pre_aggregate(rows.map(move |row| {
                let pick = |cols: &[usize]| cols.iter().map(|i| row[*i].clone()).collect::<Row>();
                (Key::from_row(pick(&key)), pick(&rest))
            }));
            // A row from its key and value.
            let whole = Arc::new(move |k: &Key, v: &Row| -> Row {
                let k = k.as_slice();
                slots
                    .iter()
                    .map(|(in_key, p)| if *in_key { &k[*p] } else { &v[*p] })
                    .cloned()
                    .collect()
            });
            let (writer, write_whole) = (ObjectWriter::new(&names), whole.clone());
            let registered = views.register_rendered(
                &view.name,
                description,
                keyed,
                move |text| parse_key(text, &types),
                move |k: &Key, values: &[(Row, isize)]| {
                    let mut out: Vec<Value> = Vec::new();
                    for (v, count) in values {
                        match objects(&names, &whole(k, v), *count) {
                            Some(Value::Array(many)) => out.extend(many),
                            Some(one) => out.push(one),
                            None => {}
                        }
                    }
                    match out.len() {
                        0 => None,
                        1 => out.pop(),
                        _ => Some(Value::Array(out)),
                    }
                },
                Some(Arc::new(move |k: &Key, values: &[(Row, isize)], out| {
                    for (v, count) in values {
                        writer.write(&write_whole(k, v), *count, out);
                    }
                })),
            );
            finality(view, registered);
        }
        Some(ranking) => {
            let whole_rows = rows.map(|row| (Key::from_row(row), ()));
            let base = views.arrange_only(&format!("{}.rows", view.name), whole_rows);
            let order = ranking.order.clone();
            let flags: Vec<(bool, bool)> = order.iter().map(|k| (k.desc, k.nulls_first)).collect();
            let render_names = names.clone();
            views.top_k(
                &view.name,
                description,
                &base,
                ranking.limit,
                move |row: &Key, values: &[((), isize)]| {
                    let count: isize = values.iter().map(|(_, n)| n).sum();
                    (count > 0).then(|| Rank {
                        values: order.iter().map(|k| k.expr.eval(row.as_slice())).collect(),
                        flags: flags.clone(),
                        count,
                        row: None,
                    })
                },
                move |row: &Key, rank: &Rank| {
                    objects(&render_names, row.as_slice(), rank.count).unwrap_or(Value::Null)
                },
            );
            views.set_limit(&view.name, ranking.limit);
        }
    }
}

/// A SQL view's answer as its rows, each handed to `out` as JSON text (the text of
/// [`answer_rows`]' values, written without building them).
pub fn write_answer_rows(answer: &Answer, limit: Option<usize>, mut out: impl FnMut(&[u8])) {
    let mut left = limit.unwrap_or(usize::MAX);
    let mut take = |text: &[u8]| {
        if left > 0 {
            left -= 1;
            out(text);
        }
    };
    match &answer.value {
        AnswerValue::Rows(rows) => rows.write_rows(&mut take),
        AnswerValue::Row { value: Some(v), .. } => write_values(vec![v.clone()], &mut take),
        AnswerValue::Ranked(list) => write_values(list.clone(), &mut take),
        _ => {}
    }
}

/// A SQL view's answer as its rows (JSON objects): repeated rows spread out, a ranking cut
/// at its limit.
pub fn answer_rows(answer: &Answer, limit: Option<usize>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push = |v: Value| match v {
        Value::Array(many) => out.extend(many),
        Value::Null => {}
        one => out.push(one),
    };
    match &answer.value {
        AnswerValue::Rows(rows) => rows.values().into_iter().for_each(push),
        AnswerValue::Row { value: Some(v), .. } => push(v.clone()),
        AnswerValue::Ranked(list) => list.iter().cloned().for_each(&mut push),
        _ => {}
    }
    if let Some(k) = limit {
        out.truncate(k);
    }
    out
}
