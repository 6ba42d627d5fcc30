//! Planning: from a parsed `SELECT` to a typed logical plan.
//!
//! A [`Plan`] is a tree of relational operators whose leaves are sources (`events`) and other
//! views; every node's rows are `Vec<Datum>` with known [`Column`]s. A `SELECT` becomes, bottom
//! up: its `FROM` (scans, subqueries, `WITH` tables, equi-joins), `WHERE` as a filter, the
//! aggregate (`GROUP BY` expressions, then one column per aggregate call), `HAVING` as a filter
//! over the aggregate, `ROW_NUMBER()` as a ranking, the select list as a projection, and
//! `DISTINCT`. A view's top-level `ORDER BY .. LIMIT k` is not a node: it makes the view a
//! ranked view ([`ViewPlan::ranking`]), answered by a scatter/gather top-k at read time.

use sqlparser::ast::{self, SelectItem, SetExpr};

use super::SqlError;
use super::aggregates::Agg;
use super::bind::{Binder, Grouping, SortKey, WINDOW_SLOT, WindowCall, error_at};
use super::expr::Expr;
use super::expr::remap;
use super::types::{Column, Type};

/// A relational operator tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The rows of a source, by its index in the catalog.
    Scan(usize),
    /// The rows of another view.
    View(String),
    /// The rows for which the predicate is true.
    Filter(Box<Plan>, Expr),
    /// One output row per input row, of these expressions.
    Project(Box<Plan>, Vec<Expr>),
    /// One row per group: the group's values, then each aggregate's.
    Aggregate {
        /// The input.
        input: Box<Plan>,
        /// The `GROUP BY` expressions.
        group: Vec<Expr>,
        /// The aggregate calls.
        aggs: Vec<Agg>,
    },
    /// Each distinct row once.
    Distinct(Box<Plan>),
    /// An equi-join: the left row's columns, then the right row's.
    Join {
        /// The left input.
        left: Box<Plan>,
        /// The right input.
        right: Box<Plan>,
        /// The left side of each equality.
        left_keys: Vec<Expr>,
        /// The right side of each equality.
        right_keys: Vec<Expr>,
        /// Further conditions, over the joined columns.
        residual: Option<Expr>,
        /// For a `LEFT JOIN`: how many columns the right side has (filled with `NULL`s for a
        /// left row that matches nothing).
        left_outer: Option<usize>,
    },
    /// Each row once per window (of `size` µs, starting every `slide` µs) that holds its
    /// time, with the window's start and end appended (timestamps).
    Windows {
        /// The input.
        input: Box<Plan>,
        /// The row's time.
        time: Expr,
        /// Whether the time is milliseconds (a `BIGINT`) rather than a timestamp.
        millis: bool,
        /// How far apart windows start, in µs.
        slide: i64,
        /// How long a window lasts, in µs.
        size: i64,
    },
    /// Flink's session windows: the rows of each partition grouped into sessions (a row
    /// joins the session whose last row is less than `gap` before it), each row once, with
    /// the `window_start` (its session's first time) and `window_end` (the session's last
    /// time plus the gap) appended; rows without a time are left out.
    Sessions {
        /// The input.
        input: Box<Plan>,
        /// What partitions the rows (none: one partition).
        partition: Vec<Expr>,
        /// The row's time.
        time: Expr,
        /// Whether the time is milliseconds (a `BIGINT`) rather than a timestamp.
        millis: bool,
        /// The gap that ends a session, in µs.
        gap: i64,
    },
    /// Rows ordered within each partition, numbered from 1 (a column appended), at most
    /// `limit` of each.
    Rank {
        /// The input.
        input: Box<Plan>,
        /// The partition expressions (none: the whole relation).
        partition: Vec<Expr>,
        /// The order within a partition.
        order: Vec<SortKey>,
        /// The most rows kept of each partition.
        limit: Option<usize>,
        /// Whether the row number is appended as a column.
        numbered: bool,
    },
}

/// A plan with the columns of its rows.
#[derive(Clone, Debug)]
pub struct Relation {
    /// How the rows are computed.
    pub plan: Plan,
    /// What they hold.
    pub columns: Vec<Column>,
}

/// A view's top-level `ORDER BY .. LIMIT k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    /// The order, over the view's output columns.
    pub order: Vec<SortKey>,
    /// How many rows the view holds.
    pub limit: usize,
}

/// A planned view.
#[derive(Clone, Debug)]
pub struct ViewPlan {
    /// Its name.
    pub name: String,
    /// The statement that defined it.
    pub sql: String,
    /// Its output rows.
    pub body: Relation,
    /// The output columns that key its rows: the `GROUP BY` columns, or every column.
    pub key: Vec<usize>,
    /// For a ranked view, its order and size.
    pub ranking: Option<Ranking>,
}

impl ViewPlan {
    /// The views this view reads.
    pub fn reads(&self) -> Vec<String> {
        let mut out = Vec::new();
        reads(&self.body.plan, &mut out);
        out
    }
}

fn reads(plan: &Plan, out: &mut Vec<String>) {
    match plan {
        Plan::Scan(_) => {}
        Plan::View(name) => {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        Plan::Filter(input, _)
        | Plan::Project(input, _)
        | Plan::Distinct(input)
        | Plan::Aggregate { input, .. }
        | Plan::Windows { input, .. }
        | Plan::Sessions { input, .. }
        | Plan::Rank { input, .. } => reads(input, out),
        Plan::Join { left, right, .. } => {
            reads(left, out);
            reads(right, out);
        }
    }
}

/// What names a query can read: sources and earlier views.
pub struct Catalog<'a> {
    /// Each source's name and columns.
    pub sources: &'a [(String, Vec<Column>)],
    /// Each view's name and columns.
    pub views: &'a [(String, Vec<Column>)],
}

/// The `WITH` tables in scope.
pub(super) type Ctes<'q> = Vec<(String, &'q ast::Query)>;

/// Plans the body of `CREATE VIEW name AS query`.
pub fn plan_view(
    catalog: &Catalog<'_>,
    name: &str,
    sql: &str,
    query: &ast::Query,
) -> Result<ViewPlan, SqlError> {
    let mut planner = Planner { catalog };
    let (body, ranking, key) = planner.top(query)?;
    Ok(ViewPlan {
        name: name.to_string(),
        sql: sql.to_string(),
        body,
        key,
        ranking,
    })
}

pub(super) struct Planner<'a, 'c> {
    pub(super) catalog: &'a Catalog<'c>,
}

/// Which output columns key a select's rows (`None`: every column).
type Keys = Option<Vec<usize>>;

impl Planner<'_, '_> {
    fn top(
        &mut self,
        query: &ast::Query,
    ) -> Result<(Relation, Option<Ranking>, Vec<usize>), SqlError> {
        let ctes = self.with(query, Vec::new())?;
        let (mut body, keys) = self.body(&query.body, &ctes)?;
        let limit = limit_of(query)?;
        let order = order_of(query);
        let ranking = match (order, limit) {
            (None, None) => None,
            (Some(order), Some(limit)) => Some(Ranking {
                order: self.output_order(&body, order)?,
                limit,
            }),
            (Some(order), None) => {
                return Err(error_at(
                    &order[0].expr,
                    "ORDER BY without LIMIT: a view's rows are kept by key; add LIMIT k for a ranked view",
                ));
            }
            (None, Some(_)) => {
                return Err(error_at(
                    &*query.body,
                    "LIMIT without ORDER BY picks arbitrary rows: add an ORDER BY with a total order",
                ));
            }
        };
        let key = keys.unwrap_or_else(|| (0..body.columns.len()).collect());
        unique_names(&body.columns, &query.body)?;
        for c in body.columns.iter_mut() {
            c.table = None;
        }
        Ok((body, ranking, key))
    }

    pub(super) fn with<'q>(
        &mut self,
        query: &'q ast::Query,
        mut ctes: Ctes<'q>,
    ) -> Result<Ctes<'q>, SqlError> {
        if let Some(with) = &query.with {
            if with.recursive {
                return Err(error_at(&*query.body, "WITH RECURSIVE is not supported"));
            }
            for cte in &with.cte_tables {
                if !cte.alias.columns.is_empty() {
                    return Err(error_at(&*cte.query, "WITH name(columns) is not supported"));
                }
                ctes.push((cte.alias.name.value.clone(), &cte.query));
            }
        }
        Ok(ctes)
    }

    /// A query used as a table: `ORDER BY .. LIMIT` becomes a ranking node.
    pub(super) fn query<'q>(
        &mut self,
        query: &'q ast::Query,
        ctes: &Ctes<'q>,
    ) -> Result<Relation, SqlError> {
        let ctes = self.with(query, ctes.clone())?;
        let (body, _) = self.body(&query.body, &ctes)?;
        match (order_of(query), limit_of(query)?) {
            (Some(order), Some(limit)) => {
                let order = self.output_order(&body, order)?;
                Ok(Relation {
                    plan: Plan::Rank {
                        input: Box::new(body.plan),
                        partition: Vec::new(),
                        order,
                        limit: Some(limit),
                        numbered: false,
                    },
                    columns: body.columns,
                })
            }
            (None, Some(_)) => Err(error_at(
                &*query.body,
                "LIMIT without ORDER BY picks arbitrary rows: add an ORDER BY with a total order",
            )),
            // An order without a limit does not change a relation.
            _ => Ok(body),
        }
    }

    fn body<'q>(
        &mut self,
        body: &'q SetExpr,
        ctes: &Ctes<'q>,
    ) -> Result<(Relation, Keys), SqlError> {
        match body {
            SetExpr::Select(select) => self.select(select, ctes),
            SetExpr::Query(q) => Ok((self.query(q, ctes)?, None)),
            SetExpr::SetOperation { op, .. } => Err(error_at(
                body,
                format!("{op} is not supported in a SQL view"),
            )),
            other => Err(error_at(
                other,
                "only SELECT queries are supported in a SQL view",
            )),
        }
    }

    /// The order keys of a ranking, over the output columns (by name, alias or position).
    fn output_order(
        &mut self,
        body: &Relation,
        order: &[ast::OrderByExpr],
    ) -> Result<Vec<SortKey>, SqlError> {
        let mut keys = Vec::with_capacity(order.len());
        for o in order {
            if let ast::Expr::Value(v) = &o.expr
                && let ast::Value::Number(n, _) = &v.value
            {
                let position: usize = n.parse().unwrap_or(0);
                if position == 0 || position > body.columns.len() {
                    return Err(error_at(
                        &o.expr,
                        format!("ORDER BY {n} is not an output column"),
                    ));
                }
                keys.push(SortKey {
                    expr: Expr::Column(position - 1),
                    desc: matches!(o.options.sort, Some(ast::OrderBySort::Desc)),
                    nulls_first: o.options.nulls_first.unwrap_or(false),
                });
                continue;
            }
            let mut binder = Binder::plain(&body.columns, "ORDER BY");
            keys.push(
                binder
                    .sort_key(o)
                    .map_err(|e| e.context("a ranked view orders by its output columns"))?,
            );
        }
        Ok(keys)
    }

    fn select<'q>(
        &mut self,
        select: &'q ast::Select,
        ctes: &Ctes<'q>,
    ) -> Result<(Relation, Keys), SqlError> {
        refuse_extras(select)?;
        let (input, filters) = self.from(&select.from, ctes, select.selection.as_ref())?;
        let mut plan = input.plan;
        let columns = input.columns;
        let mut predicate = None;
        for filter in filters {
            let filter = Binder::plain(&columns, "WHERE").predicate(filter)?;
            predicate = Some(match predicate {
                None => filter,
                Some(before) => Expr::And(Box::new(before), Box::new(filter)),
            });
        }
        if let Some(predicate) = predicate {
            plan = Plan::Filter(Box::new(plan), predicate);
        }

        // The select list, with `*` expanded into column references, and each item's name.
        let mut owned: Vec<(ast::Expr, String)> = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(e) => owned.push((e.clone(), default_name(e))),
                SelectItem::ExprWithAlias { expr, alias } => {
                    owned.push((expr.clone(), alias.value.clone()))
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    let before = owned.len();
                    owned.extend(star_refs(&columns, item));
                    if owned.len() == before {
                        return Err(error_at(item, format!("{item} matches no column")));
                    }
                }
                other => return Err(error_at(other, "this select item is not supported")),
            }
        }
        let items: Vec<(&ast::Expr, String)> = owned.iter().map(|(e, n)| (e, n.clone())).collect();

        let group_by = match &select.group_by {
            ast::GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                exprs.as_slice()
            }
            other => {
                return Err(error_at(
                    &select.projection[0],
                    format!("{other} is not supported"),
                ));
            }
        };
        let aggregated = !group_by.is_empty()
            || items
                .iter()
                .any(|(e, _)| super::aggregates::has_aggregate(e))
            || select
                .having
                .as_ref()
                .is_some_and(super::aggregates::has_aggregate);

        let mut window: Option<WindowCall> = None;
        let mut outputs: Vec<(Expr, Type)> = Vec::with_capacity(items.len());
        let (mut plan, width, keys) = if aggregated {
            let mut grouping = Grouping::default();
            let mut group_columns = Vec::new();
            for g in group_by {
                let resolved = self.group_target(g, &columns, &items)?;
                let (bound, ty) = Binder::plain(&columns, "GROUP BY").bind(resolved)?;
                let name = match &bound {
                    Expr::Column(i) => columns[*i].clone(),
                    _ => Column::new(&resolved.to_string(), ty),
                };
                if !grouping.group.iter().any(|(e, _)| *e == bound) {
                    grouping.group.push((bound, ty));
                    group_columns.push(name);
                }
            }
            for (e, _) in &items {
                let mut binder = Binder {
                    columns: &columns,
                    grouping: Some(&mut grouping),
                    window: Some(&mut window),
                    clause: "SELECT",
                };
                outputs.push(binder.bind(e)?);
            }
            let having = match &select.having {
                Some(h) => Some(
                    Binder {
                        columns: &columns,
                        grouping: Some(&mut grouping),
                        window: None,
                        clause: "HAVING",
                    }
                    .predicate(h)?,
                ),
                None => None,
            };
            let group_len = grouping.group.len();
            let mut agg_columns = group_columns;
            for (i, agg) in grouping.aggs.iter().enumerate() {
                agg_columns.push(Column::new(&format!("#agg{i}"), agg.ty));
            }
            let mut plan = Plan::Aggregate {
                input: Box::new(plan),
                group: grouping.group.into_iter().map(|(e, _)| e).collect(),
                aggs: grouping.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter(Box::new(plan), h);
            }
            // The key: the outputs that are group columns, if they cover every group.
            let mut key = Vec::new();
            for g in 0..group_len {
                if let Some(pos) = outputs.iter().position(|(e, _)| *e == Expr::Column(g)) {
                    key.push(pos);
                }
            }
            let keys = if key.len() == group_len {
                Some(key)
            } else {
                None
            };
            let width = agg_columns.len();
            (plan, width, keys)
        } else {
            if let Some(h) = &select.having {
                return Err(error_at(h, "HAVING needs GROUP BY or an aggregate"));
            }
            for (e, _) in &items {
                let mut binder = Binder {
                    columns: &columns,
                    grouping: None,
                    window: Some(&mut window),
                    clause: "SELECT",
                };
                outputs.push(binder.bind(e)?);
            }
            (plan, columns.len(), None)
        };
        if let Some(call) = window {
            plan = Plan::Rank {
                input: Box::new(plan),
                partition: call.partition,
                order: call.order,
                limit: None,
                numbered: true,
            };
            for (e, _) in outputs.iter_mut() {
                remap(e, &|i| if i == WINDOW_SLOT { width } else { i });
            }
        }
        let mut out_columns = Vec::with_capacity(items.len());
        for ((e, ty), (_, name)) in outputs.iter().zip(&items) {
            let table = match e {
                Expr::Column(i) if !aggregated => columns.get(*i).and_then(|c| c.table.clone()),
                _ => None,
            };
            out_columns.push(Column {
                name: name.clone(),
                table,
                ty: *ty,
            });
        }
        let identity = !aggregated
            && outputs.len() == columns.len()
            && outputs
                .iter()
                .enumerate()
                .all(|(i, (e, _))| *e == Expr::Column(i))
            && out_columns
                .iter()
                .zip(&columns)
                .all(|(o, c)| o.name == c.name);
        if !identity {
            plan = Plan::Project(
                Box::new(plan),
                outputs.into_iter().map(|(e, _)| e).collect(),
            );
        }
        let mut keys = keys;
        if let Some(distinct) = &select.distinct {
            match distinct {
                ast::Distinct::Distinct => {
                    plan = Plan::Distinct(Box::new(plan));
                    keys = None;
                }
                ast::Distinct::All => {}
                ast::Distinct::On(_) => {
                    return Err(error_at(
                        &select.projection[0],
                        "DISTINCT ON is not supported",
                    ));
                }
            }
        }
        Ok((
            Relation {
                plan,
                columns: out_columns,
            },
            keys,
        ))
    }

    /// What a `GROUP BY` item groups by: an input expression, an output alias or a position.
    fn group_target<'e>(
        &self,
        g: &'e ast::Expr,
        columns: &[Column],
        items: &[(&'e ast::Expr, String)],
    ) -> Result<&'e ast::Expr, SqlError> {
        if let ast::Expr::Value(v) = g
            && let ast::Value::Number(n, _) = &v.value
        {
            let position: usize = n.parse().unwrap_or(0);
            return items
                .get(position.wrapping_sub(1))
                .map(|(e, _)| *e)
                .ok_or_else(|| error_at(g, format!("GROUP BY {n} is not a select item")));
        }
        if let ast::Expr::Identifier(ident) = g
            && !columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&ident.value))
            && let Some((e, _)) = items
                .iter()
                .find(|(_, name)| name.eq_ignore_ascii_case(&ident.value))
        {
            if super::aggregates::has_aggregate(e) {
                return Err(error_at(g, format!("GROUP BY {ident} names an aggregate")));
            }
            return Ok(e);
        }
        Ok(g)
    }
}

/// `*` or `t.*` as column references, with their names.
fn star_refs(columns: &[Column], item: &SelectItem) -> Vec<(ast::Expr, String)> {
    let table = match item {
        SelectItem::QualifiedWildcard(kind, _) => Some(kind.to_string()),
        _ => None,
    };
    columns
        .iter()
        .filter(|c| {
            table.as_ref().is_none_or(|t| {
                c.table
                    .as_deref()
                    .is_some_and(|ct| ct.eq_ignore_ascii_case(t))
            })
        })
        .map(|c| {
            let name = ast::Ident::new(&c.name);
            let e = match &c.table {
                Some(t) => ast::Expr::CompoundIdentifier(vec![ast::Ident::new(t), name]),
                None => ast::Expr::Identifier(name),
            };
            (e, c.name.clone())
        })
        .collect()
}

/// The name DuckDB gives an unnamed select item: a column's name, or the expression's text.
fn default_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(ident) => ident.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map_or(String::new(), |p| p.value.clone())
        }
        other => other.to_string(),
    }
}

fn order_of(query: &ast::Query) -> Option<&[ast::OrderByExpr]> {
    match &query.order_by {
        Some(ast::OrderBy {
            kind: ast::OrderByKind::Expressions(exprs),
            ..
        }) if !exprs.is_empty() => Some(exprs),
        _ => None,
    }
}

fn limit_of(query: &ast::Query) -> Result<Option<usize>, SqlError> {
    let limit = match &query.limit_clause {
        None => return Ok(None),
        Some(ast::LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => limit,
        Some(ast::LimitClause::LimitOffset {
            limit: None,
            offset: None,
            ..
        }) => return Ok(None),
        Some(_) => {
            return Err(error_at(
                &*query.body,
                "OFFSET is not supported in a SQL view",
            ));
        }
    };
    match limit {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n
                .parse::<usize>()
                .ok()
                .filter(|k| *k > 0 && *k <= 1_000_000)
                .map(Some)
                .ok_or_else(|| error_at(limit, "LIMIT needs a whole number from 1 to 1000000")),
            _ => Err(error_at(limit, "LIMIT needs a number")),
        },
        other => Err(error_at(other, "LIMIT needs a constant number")),
    }
}

fn refuse_extras(select: &ast::Select) -> Result<(), SqlError> {
    let at = select.projection.first();
    let refuse = |what: &str| -> Result<(), SqlError> {
        Err(match at {
            Some(item) => error_at(item, format!("{what} is not supported in a SQL view")),
            None => SqlError::new(format!("{what} is not supported in a SQL view"), 0, 0),
        })
    };
    if select.top.is_some() {
        return refuse("TOP");
    }
    if select.into.is_some() {
        return refuse("SELECT INTO");
    }
    if !select.lateral_views.is_empty() {
        return refuse("LATERAL VIEW");
    }
    if select.qualify.is_some() {
        return refuse("QUALIFY");
    }
    if !select.named_window.is_empty() {
        return refuse("WINDOW");
    }
    if select.projection.is_empty() {
        return refuse("an empty select list");
    }
    Ok(())
}

/// Every output column needs its own name: rows are JSON objects.
fn unique_names(columns: &[Column], at: &SetExpr) -> Result<(), SqlError> {
    for (i, c) in columns.iter().enumerate() {
        if columns[..i]
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(&c.name))
        {
            return Err(error_at(
                at,
                format!(
                    "duplicate output column {}: give each column its own name (AS ...)",
                    c.name
                ),
            ));
        }
    }
    Ok(())
}
