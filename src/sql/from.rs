//! `FROM`: sources, views, `WITH` tables, subqueries, and the equi-joins between them.
//!
//! Each item becomes a [`Relation`] whose columns carry the name they can be qualified with
//! (the table's, or its alias). A join splits its `ON` condition into equalities between the
//! two sides (its keys) and the rest (a residual filter over the joined row).

use sqlparser::ast::{self, TableFactor};

use super::SqlError;
use super::bind::{Binder, error_at};
use super::expr::Expr;
use super::plan::{Ctes, Plan, Planner, Relation};
use super::types::{Column, Datum, Type};

impl Planner<'_, '_> {
    /// The relation of a `FROM` list, and the conjuncts of `selection` (`WHERE`) still to
    /// filter it by. A comma join is an inner join whose keys are the `WHERE` equalities
    /// between its two sides (`FROM a, b WHERE a.x = b.y`): they become its keys and leave
    /// the filter.
    pub(super) fn from<'q>(
        &mut self,
        from: &'q [ast::TableWithJoins],
        ctes: &Ctes<'q>,
        selection: Option<&'q ast::Expr>,
    ) -> Result<(Relation, Vec<&'q ast::Expr>), SqlError> {
        let mut filters = Vec::new();
        if let Some(selection) = selection {
            split_and(selection, &mut filters);
        }
        let Some((first, others)) = from.split_first() else {
            return Err(SqlError::new(
                "a SQL view needs FROM: a source or a view",
                0,
                0,
            ));
        };
        let mut left = self.joined(first, ctes)?;
        for item in others {
            let right = self.joined(item, ctes)?;
            let (keys, rest): (Vec<&ast::Expr>, Vec<&ast::Expr>) = filters
                .into_iter()
                .partition(|c| joins_sides(c, &left.columns, &right.columns));
            let Some(on) = keys
                .into_iter()
                .cloned()
                .reduce(|a, b| ast::Expr::BinaryOp {
                    left: Box::new(a),
                    op: ast::BinaryOperator::And,
                    right: Box::new(b),
                })
            else {
                return Err(error_at(
                    &item.relation,
                    "a comma join needs an equality between its sides in WHERE (a.x = b.y): cross joins are not supported",
                ));
            };
            left = self.join(left, right, &on, false)?;
            filters = rest;
        }
        Ok((left, filters))
    }

    fn joined<'q>(
        &mut self,
        table: &'q ast::TableWithJoins,
        ctes: &Ctes<'q>,
    ) -> Result<Relation, SqlError> {
        let mut left = self.factor(&table.relation, ctes)?;
        for join in &table.joins {
            let right = self.factor(&join.relation, ctes)?;
            let (constraint, outer) = match &join.join_operator {
                ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (c, false),
                ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (c, true),
                other => {
                    let name = match other {
                        ast::JoinOperator::Right(_) | ast::JoinOperator::RightOuter(_) => {
                            "RIGHT JOIN"
                        }
                        ast::JoinOperator::FullOuter(_) => "FULL OUTER JOIN",
                        ast::JoinOperator::CrossJoin(_) => "CROSS JOIN",
                        _ => "this join",
                    };
                    return Err(error_at(
                        &join.relation,
                        format!("{name} is not supported (INNER and LEFT equi-joins are)"),
                    ));
                }
            };
            let ast::JoinConstraint::On(on) = constraint else {
                return Err(error_at(
                    &join.relation,
                    "a join needs ON a.x = b.y (USING and NATURAL are not supported)",
                ));
            };
            left = self.join(left, right, on, outer)?;
        }
        Ok(left)
    }

    fn join(
        &mut self,
        left: Relation,
        right: Relation,
        on: &ast::Expr,
        outer: bool,
    ) -> Result<Relation, SqlError> {
        let mut conjuncts = Vec::new();
        split_and(on, &mut conjuncts);
        let mut columns = left.columns.clone();
        columns.extend(right.columns.iter().cloned());
        let (mut left_keys, mut right_keys, mut residual) = (Vec::new(), Vec::new(), Vec::new());
        for c in conjuncts {
            if let ast::Expr::BinaryOp {
                left: a,
                op: ast::BinaryOperator::Eq,
                right: b,
            } = c
            {
                let sides =
                    |x: &ast::Expr, y: &ast::Expr| -> Option<((Expr, Type), (Expr, Type))> {
                        let l = Binder::plain(&left.columns, "ON").bind(x).ok()?;
                        let r = Binder::plain(&right.columns, "ON").bind(y).ok()?;
                        Some((l, r))
                    };
                // A name found on both sides is ambiguous in the joined columns.
                Binder::plain(&columns, "ON").bind(c)?;
                if let Some(((l, lt), (r, rt))) = sides(a, b).or_else(|| sides(b, a)) {
                    if !lt.comparable(rt) {
                        return Err(error_at(
                            c,
                            format!("type mismatch: cannot join {lt} with {rt}"),
                        ));
                    }
                    let (l, r) = match lt.widen(rt) {
                        Some(w) if w != lt || w != rt => {
                            (Expr::Cast(Box::new(l), w), Expr::Cast(Box::new(r), w))
                        }
                        _ => (l, r),
                    };
                    left_keys.push(l);
                    right_keys.push(r);
                    continue;
                }
            }
            residual.push(Binder::plain(&columns, "ON").predicate(c)?);
        }
        if left_keys.is_empty() {
            return Err(error_at(
                on,
                "a join needs an equality between its two sides (ON a.x = b.y): only equi-joins are supported",
            ));
        }
        let residual = residual
            .into_iter()
            .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)));
        Ok(Relation {
            plan: Plan::Join {
                left: Box::new(left.plan),
                right: Box::new(right.plan),
                left_keys,
                right_keys,
                residual,
                left_outer: outer.then_some(right.columns.len()),
            },
            columns,
        })
    }

    fn factor<'q>(
        &mut self,
        factor: &'q TableFactor,
        ctes: &Ctes<'q>,
    ) -> Result<Relation, SqlError> {
        let (mut relation, alias) = match factor {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => (self.named(name, ctes)?, alias),
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => (self.window(name, &args.args, factor, ctes)?, alias),
            TableFactor::TableFunction {
                expr: ast::Expr::Function(f),
                alias,
            } => {
                let ast::FunctionArguments::List(list) = &f.args else {
                    return Err(error_at(factor, format!("{} needs arguments", f.name)));
                };
                (self.window(&f.name, &list.args, factor, ctes)?, alias)
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                alias,
                ..
            } => (self.query(subquery, ctes)?, alias),
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => (self.joined(table_with_joins, ctes)?, alias),
            TableFactor::Function { name, .. } => {
                return Err(error_at(
                    factor,
                    format!("the table function {name} is not supported"),
                ));
            }
            other => return Err(error_at(other, "this FROM item is not supported")),
        };
        if let Some(alias) = alias {
            if !alias.columns.is_empty() {
                if alias.columns.len() != relation.columns.len() {
                    return Err(error_at(
                        factor,
                        "the alias names a different number of columns",
                    ));
                }
                for (c, name) in relation.columns.iter_mut().zip(&alias.columns) {
                    c.name = name.name.value.clone();
                }
            }
            for c in relation.columns.iter_mut() {
                c.table = Some(alias.name.value.clone());
            }
        }
        Ok(relation)
    }
}

impl Planner<'_, '_> {
    /// A `WITH` table, a view or a source, by name; its columns qualified by the name.
    fn named<'q>(&mut self, name: &ast::ObjectName, ctes: &Ctes<'q>) -> Result<Relation, SqlError> {
        let text = name.to_string();
        let mut relation = if let Some((_, q)) = ctes
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(&text))
        {
            let earlier: Ctes<'q> = ctes
                .iter()
                .take_while(|(n, _)| !n.eq_ignore_ascii_case(&text))
                .cloned()
                .collect();
            self.query(q, &earlier)?
        } else if let Some((n, cols)) = self
            .catalog
            .views
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&text))
        {
            Relation {
                plan: Plan::View(n.clone()),
                columns: cols.clone(),
            }
        } else if let Some(i) = self
            .catalog
            .sources
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&text))
        {
            Relation {
                plan: Plan::Scan(i),
                columns: self.catalog.sources[i].1.clone(),
            }
        } else {
            return Err(error_at(name, format!("unknown table or view {text}")));
        };
        for c in relation.columns.iter_mut() {
            c.table = Some(text.clone());
        }
        Ok(relation)
    }

    /// Flink's window table functions: `TUMBLE(t, DESCRIPTOR(time), size)` and
    /// `HOP(t, DESCRIPTOR(time), slide, size)`: the rows of `t`, each once per window that
    /// holds its time; `SESSION(t [PARTITION BY keys], DESCRIPTOR(time), gap)`: each row once,
    /// in the session of its partition that holds it. With the columns `window_start` and
    /// `window_end` (timestamps; a `BIGINT` time column is read as milliseconds since the
    /// epoch).
    fn window<'q>(
        &mut self,
        name: &ast::ObjectName,
        args: &[ast::FunctionArg],
        at: &TableFactor,
        ctes: &Ctes<'q>,
    ) -> Result<Relation, SqlError> {
        let function = name.to_string().to_ascii_lowercase();
        let arity = match function.as_str() {
            "tumble" | "session" => 3,
            "hop" => 4,
            other => {
                return Err(error_at(
                    at,
                    format!("the table function {other} is not supported"),
                ));
            }
        };
        let mut exprs: Vec<&ast::Expr> = args
            .iter()
            .filter_map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        // A session's `PARTITION BY` (read as `PARTITIONED(keys)`, see `parse`).
        let partitioned = match exprs.get(1) {
            Some(ast::Expr::Function(f))
                if function == "session"
                    && f.name.to_string().eq_ignore_ascii_case("partitioned") =>
            {
                let keys = match &f.args {
                    ast::FunctionArguments::List(list) => list.args.clone(),
                    _ => Vec::new(),
                };
                exprs.remove(1);
                Some(keys)
            }
            _ => None,
        };
        let given = args.len() - usize::from(partitioned.is_some());
        if exprs.len() != arity || given != arity {
            return Err(error_at(
                at,
                format!(
                    "wrong number of arguments: {} takes {arity}: TABLE t, DESCRIPTOR(time), {}",
                    function.to_uppercase(),
                    match function.as_str() {
                        "hop" => "slide, size",
                        "session" => "gap (and PARTITION BY after the table)",
                        _ => "size",
                    }
                ),
            ));
        }
        let table = match exprs[0] {
            ast::Expr::Identifier(ident) => ast::ObjectName::from(vec![ident.clone()]),
            other => {
                return Err(error_at(
                    other,
                    "a window's input is a table, a view or a WITH table",
                ));
            }
        };
        let input = self.named(&table, ctes)?;
        let ast::Expr::Function(descriptor) = exprs[1] else {
            return Err(error_at(
                exprs[1],
                "the time column is given as DESCRIPTOR(column)",
            ));
        };
        let column = match &descriptor.args {
            ast::FunctionArguments::List(list)
                if descriptor
                    .name
                    .to_string()
                    .eq_ignore_ascii_case("descriptor")
                    && list.args.len() == 1 =>
            {
                match &list.args[0] {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => e,
                    _ => return Err(error_at(exprs[1], "DESCRIPTOR takes one column")),
                }
            }
            _ => {
                return Err(error_at(
                    exprs[1],
                    "the time column is given as DESCRIPTOR(column)",
                ));
            }
        };
        let (time, ty) = Binder::plain(&input.columns, "DESCRIPTOR").bind(column)?;
        let millis = match ty {
            Type::BigInt => true,
            Type::Timestamp => false,
            other => {
                return Err(error_at(
                    column,
                    format!("a window's time is a TIMESTAMP or BIGINT milliseconds, not {other}"),
                ));
            }
        };
        let mut lengths = Vec::new();
        for e in &exprs[2..] {
            match Binder::plain(&input.columns, "a window's length").bind(e)? {
                (Expr::Literal(Datum::Interval(us)), _) if us > 0 => lengths.push(us),
                _ => return Err(error_at(*e, "a window's length is a positive INTERVAL")),
            }
        }
        if let Some(keys) = partitioned {
            let mut partition = Vec::new();
            for key in &keys {
                let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = key else {
                    return Err(error_at(at, "a session is partitioned by columns"));
                };
                partition.push(Binder::plain(&input.columns, "PARTITION BY").bind(e)?.0);
            }
            return Ok(windowed(input, |input| Plan::Sessions {
                input,
                partition,
                time,
                millis,
                gap: lengths[0],
            }));
        }
        if function == "session" {
            return Ok(windowed(input, |input| Plan::Sessions {
                input,
                partition: Vec::new(),
                time,
                millis,
                gap: lengths[0],
            }));
        }
        let (slide, size) = match lengths.as_slice() {
            [size] => (*size, *size),
            [slide, size] => (*slide, *size),
            _ => return Err(error_at(at, "a window needs its lengths")),
        };
        if size % slide != 0 {
            return Err(error_at(
                at,
                "a HOP window's size must be a whole number of slides",
            ));
        }
        Ok(windowed(input, |input| Plan::Windows {
            input,
            time,
            millis,
            slide,
            size,
        }))
    }
}

/// The rows of `input` in windows: its columns, then `window_start` and `window_end`.
fn windowed(input: Relation, plan: impl FnOnce(Box<Plan>) -> Plan) -> Relation {
    let mut columns = input.columns;
    columns.push(Column::new("window_start", Type::Timestamp));
    columns.push(Column::new("window_end", Type::Timestamp));
    Relation {
        plan: plan(Box::new(input.plan)),
        columns,
    }
}

/// Whether `c` is an equality between a column expression of `left` and one of `right`.
fn joins_sides(c: &ast::Expr, left: &[Column], right: &[Column]) -> bool {
    let ast::Expr::BinaryOp {
        left: a,
        op: ast::BinaryOperator::Eq,
        right: b,
    } = c
    else {
        return false;
    };
    let binds = |x: &ast::Expr, columns: &[Column]| Binder::plain(columns, "WHERE").bind(x).is_ok();
    (binds(a, left) && binds(b, right)) || (binds(b, left) && binds(a, right))
}

fn split_and<'e>(e: &'e ast::Expr, into: &mut Vec<&'e ast::Expr>) {
    match e {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(left, into);
            split_and(right, into);
        }
        ast::Expr::Nested(inner) => split_and(inner, into),
        other => into.push(other),
    }
}
