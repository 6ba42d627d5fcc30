//! Binding: from the parser's expression trees to typed [`Expr`]s over column positions.
//!
//! A [`Binder`] resolves names against the columns of one relation and infers types as DuckDB
//! does (numbers widen, `/` is a double, `SUM(BIGINT)` is a `HUGEINT`). In an aggregate query
//! it binds in *grouping* mode: an expression equal to a `GROUP BY` expression becomes a column
//! of the group, an aggregate call becomes a column of its result, and any other column
//! reference is an error that names it ("must appear in the GROUP BY clause").

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, DateTimeField, FunctionArg, FunctionArgExpr,
    FunctionArguments, Spanned, UnaryOperator, Value,
};

use super::SqlError;
use super::expr::{Arith, Cmp, Expr, Func};
use super::time::{self, Part};
use super::types::{Column, Datum, F64, Type};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    /// `COUNT(*)`
    CountStar,
    /// `COUNT(x)`: the non-null values
    Count,
    /// `SUM(x)`
    Sum,
    /// `MIN(x)`
    Min,
    /// `MAX(x)`
    Max,
    /// `AVG(x)`
    Avg,
}

/// One aggregate call of a query: `func([DISTINCT] arg) FILTER (WHERE filter)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    /// The function.
    pub func: AggFunc,
    /// Its argument, over the input columns (`None` for `COUNT(*)`).
    pub arg: Option<Expr>,
    /// Whether only distinct values count.
    pub distinct: bool,
    /// The rows it sees, over the input columns.
    pub filter: Option<Expr>,
    /// The type of its result.
    pub ty: Type,
    /// Whether its argument is an integer (sums and averages of integers are exact).
    pub exact: bool,
}

impl Agg {
    /// Whether the aggregate is a sum of integers that differential can carry as a
    /// difference (see [`aggregate`](crate::aggregate)): counts, sums and averages of integers,
    /// without `DISTINCT`.
    pub fn is_abelian(&self) -> bool {
        !self.distinct
            && match self.func {
                AggFunc::CountStar | AggFunc::Count => true,
                AggFunc::Sum | AggFunc::Avg => self.exact,
                AggFunc::Min | AggFunc::Max => false,
            }
    }
}

/// `ROW_NUMBER() OVER (PARTITION BY .. ORDER BY ..)`, over the relation before the projection.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowCall {
    /// The partition expressions.
    pub partition: Vec<Expr>,
    /// The ordering within a partition.
    pub order: Vec<SortKey>,
}

/// One key of an ordering.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// What is compared.
    pub expr: Expr,
    /// Whether larger values come first.
    pub desc: bool,
    /// Whether `NULL`s come first (DuckDB's default: last, either way).
    pub nulls_first: bool,
}

/// The column a window call's result takes until the relation's width is known.
pub(super) const WINDOW_SLOT: usize = usize::MAX;

/// What grouping mode collects.
#[derive(Default)]
pub(super) struct Grouping {
    /// The `GROUP BY` expressions, bound to the input.
    pub group: Vec<(Expr, Type)>,
    /// The aggregate calls found so far.
    pub aggs: Vec<Agg>,
}

/// Resolves names in one relation's columns.
pub(super) struct Binder<'a> {
    pub columns: &'a [Column],
    /// In an aggregate query: the groups and aggregates.
    pub grouping: Option<&'a mut Grouping>,
    /// Where window calls may appear (the select list), and the one found.
    pub window: Option<&'a mut Option<WindowCall>>,
    /// The clause being bound, for messages ("WHERE").
    pub clause: &'static str,
}

/// An error at the position of `node`.
pub(super) fn error_at(node: &impl Spanned, message: impl Into<String>) -> SqlError {
    let start = node.span().start;
    SqlError::new(message, start.line, start.column)
}

/// The aggregate function a name calls, if it is one.
fn aggregate_of(name: &str) -> Option<AggFunc> {
    Some(match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "avg" | "mean" => AggFunc::Avg,
        _ => return None,
    })
}

fn function_name(f: &ast::Function) -> String {
    f.name.to_string().to_ascii_lowercase()
}

/// Whether `e` calls an aggregate function outside a nested query.
pub(super) fn has_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    visit(e, &mut |node| {
        if let ast::Expr::Function(f) = node
            && f.over.is_none()
            && aggregate_of(&function_name(f)).is_some()
        {
            found = true;
        }
    });
    found
}

/// Calls `f` on `e` and its sub-expressions (those the binder knows).
fn visit(e: &ast::Expr, f: &mut dyn FnMut(&ast::Expr)) {
    use ast::Expr as E;
    f(e);
    let mut go = |x: &ast::Expr| visit(x, f);
    match e {
        E::BinaryOp { left, right, .. } => {
            go(left);
            go(right);
        }
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::Cast { expr, .. }
        | E::Extract { expr, .. }
        | E::Ceil { expr, .. }
        | E::Floor { expr, .. } => go(expr),
        E::In { expr, target, .. } => {
            go(expr);
            if let ast::InTarget::List(list) = target {
                list.iter().for_each(go);
            }
        }
        E::Between {
            expr, low, high, ..
        } => {
            go(expr);
            go(low);
            go(high);
        }
        E::Like { expr, pattern, .. } => {
            go(expr);
            go(pattern);
        }
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.iter().for_each(|x| go(x));
            for c in conditions {
                go(&c.condition);
                go(&c.result);
            }
            else_result.iter().for_each(|x| go(x));
        }
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            go(expr);
            substring_from.iter().for_each(|x| go(x));
            substring_for.iter().for_each(|x| go(x));
        }
        E::Function(func) => {
            if let FunctionArguments::List(list) = &func.args {
                for arg in &list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = arg {
                        go(x);
                    }
                }
            }
            if let Some(filter) = &func.filter {
                go(filter);
            }
        }
        _ => {}
    }
}

/// The SQL type a `CAST` names.
pub(super) fn cast_type(data_type: &DataType, at: &impl Spanned) -> Result<Type, SqlError> {
    use DataType as D;
    Ok(match data_type {
        D::TinyInt(_)
        | D::SmallInt(_)
        | D::Int(_)
        | D::Int2(_)
        | D::Int4(_)
        | D::Int8(_)
        | D::Int16
        | D::Int32
        | D::Int64
        | D::Integer(_)
        | D::BigInt(_) => Type::BigInt,
        D::HugeInt | D::Int128 => Type::HugeInt,
        D::Float(_)
        | D::Float4
        | D::Float8
        | D::Float32
        | D::Float64
        | D::Real
        | D::Double(_)
        | D::DoublePrecision
        | D::Decimal(_)
        | D::Numeric(_) => Type::Double,
        D::Varchar(_) | D::Text | D::String(_) => Type::Varchar,
        D::Bool | D::Boolean => Type::Boolean,
        D::Date => Type::Date,
        D::Timestamp(_, _) | D::Datetime(_) | D::TimestampNtz(_) => Type::Timestamp,
        D::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "ubigint" | "uinteger" | "usmallint" | "utinyint" => Type::BigInt,
            "hugeint" => Type::HugeInt,
            other => return Err(error_at(at, format!("the type {other} is not supported"))),
        },
        other => return Err(error_at(at, format!("the type {other} is not supported"))),
    })
}

/// The length of an interval literal in µs: `INTERVAL '5 minutes'`, `INTERVAL 5 MINUTE`,
/// `INTERVAL '10' SECOND`.
fn interval_micros(interval: &ast::Interval, at: &ast::Expr) -> Result<i64, SqlError> {
    let text = match interval.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            _ => return Err(error_at(at, "an INTERVAL needs a constant length")),
        },
        _ => return Err(error_at(at, "an INTERVAL needs a constant length")),
    };
    let (amount, unit) = match &interval.leading_field {
        Some(field) => (text.trim().to_string(), field_name(field)),
        None => {
            let mut words = text.split_whitespace();
            let amount = words.next().unwrap_or("").to_string();
            (amount, words.next().unwrap_or("").to_ascii_lowercase())
        }
    };
    let bad = || error_at(at, format!("{text:?} is not an interval lambdaflow reads"));
    let amount: f64 = amount.parse().map_err(|_| bad())?;
    let unit = Part::parse(&unit)
        .and_then(Part::fixed_micros)
        .ok_or_else(bad)?;
    let us = amount * unit as f64;
    if us.is_finite() && us.abs() < 9e18 {
        Ok(us.round() as i64)
    } else {
        Err(bad())
    }
}

fn field_name(field: &DateTimeField) -> String {
    field.to_string().to_ascii_lowercase()
}

impl Binder<'_> {
    /// A binder with no grouping and no window calls.
    pub fn plain<'a>(columns: &'a [Column], clause: &'static str) -> Binder<'a> {
        Binder {
            columns,
            grouping: None,
            window: None,
            clause,
        }
    }

    /// Binds a predicate: its type must be boolean.
    pub fn predicate(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        let (expr, ty) = self.bind(e)?;
        if !matches!(ty, Type::Boolean | Type::Null) {
            return Err(error_at(
                e,
                format!("{} needs a boolean condition, not {ty}", self.clause),
            ));
        }
        Ok(expr)
    }

    /// Binds `e`, with its type.
    pub fn bind(&mut self, e: &ast::Expr) -> Result<(Expr, Type), SqlError> {
        if self.grouping.is_some() {
            return self.bind_grouped(e);
        }
        if let ast::Expr::Function(f) = e
            && f.over.is_none()
            && aggregate_of(&function_name(f)).is_some()
        {
            return Err(error_at(
                e,
                format!("aggregate functions are not allowed in {}", self.clause),
            ));
        }
        self.bind_node(e)
    }

    /// Binding in an aggregate query.
    fn bind_grouped(&mut self, e: &ast::Expr) -> Result<(Expr, Type), SqlError> {
        if let ast::Expr::Function(f) = e
            && f.over.is_none()
            && let Some(func) = aggregate_of(&function_name(f))
        {
            return self.aggregate(func, f, e);
        }
        let is_window = matches!(e, ast::Expr::Function(f) if f.over.is_some());
        if !is_window && !has_aggregate(e) {
            let (bound, ty) = Binder::plain(self.columns, self.clause).bind(e)?;
            let groups = self
                .grouping
                .as_deref()
                .map(|g| &g.group[..])
                .unwrap_or(&[]);
            if let Some(i) = groups.iter().position(|(g, _)| *g == bound) {
                return Ok((Expr::Column(i), groups[i].1));
            }
            let leaf = matches!(
                e,
                ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
            );
            if leaf && let Some(column) = first_column(&bound) {
                let name = self
                    .columns
                    .get(column)
                    .map_or("?".to_string(), |c| c.name.clone());
                return Err(error_at(
                    e,
                    format!(
                        "column {name} must appear in the GROUP BY clause or be used in an aggregate function"
                    ),
                ));
            }
            if first_column(&bound).is_none() {
                return Ok((bound, ty));
            }
        }
        self.bind_node(e)
    }

    fn aggregate(
        &mut self,
        func: AggFunc,
        f: &ast::Function,
        at: &ast::Expr,
    ) -> Result<(Expr, Type), SqlError> {
        let name = function_name(f);
        let (args, distinct) = match &f.args {
            FunctionArguments::List(list) => (
                list.args.as_slice(),
                matches!(
                    list.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                ),
            ),
            _ => (&[][..], false),
        };
        if f.over.is_some() || !f.within_group.is_empty() {
            return Err(error_at(at, format!("{name}(...) OVER is not supported")));
        }
        let mut plain = Binder::plain(self.columns, "an aggregate's argument");
        let (func, arg, ty, exact) = match (func, args) {
            (AggFunc::Count, [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]) if !distinct => {
                (AggFunc::CountStar, None, Type::BigInt, true)
            }
            (_, [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))]) => {
                let (arg, ty) = plain.bind(x)?;
                let out = match func {
                    AggFunc::Count | AggFunc::CountStar => Type::BigInt,
                    AggFunc::Min | AggFunc::Max => ty,
                    AggFunc::Avg if ty.is_numeric() => Type::Double,
                    AggFunc::Sum if ty == Type::Double => Type::Double,
                    AggFunc::Sum if ty.is_numeric() => Type::HugeInt,
                    _ => {
                        return Err(error_at(
                            x,
                            format!(
                                "type mismatch: {}({ty}) is not supported, it needs a number",
                                name.to_uppercase()
                            ),
                        ));
                    }
                };
                let exact = matches!(ty, Type::BigInt | Type::HugeInt | Type::Null);
                (func, Some(arg), out, exact)
            }
            _ => {
                return Err(error_at(
                    at,
                    format!("{name} takes one argument (or * for count)"),
                ));
            }
        };
        let filter = match &f.filter {
            Some(condition) => Some(Binder::plain(self.columns, "FILTER").predicate(condition)?),
            None => None,
        };
        let agg = Agg {
            func,
            arg,
            distinct,
            filter,
            ty,
            exact,
        };
        let grouping = self
            .grouping
            .as_deref_mut()
            .ok_or_else(|| error_at(at, "an aggregate outside an aggregate query"))?;
        let index = match grouping.aggs.iter().position(|a| *a == agg) {
            Some(i) => i,
            None => {
                grouping.aggs.push(agg);
                grouping.aggs.len() - 1
            }
        };
        Ok((Expr::Column(grouping.group.len() + index), ty))
    }

    fn column(&self, parts: &[ast::Ident], at: &ast::Expr) -> Result<(Expr, Type), SqlError> {
        let (table, name) = match parts {
            [name] => (None, name),
            [table, name] => (Some(table), name),
            _ => {
                return Err(error_at(
                    at,
                    format!("{at} is not a column lambdaflow resolves"),
                ));
            }
        };
        let matches: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.name.eq_ignore_ascii_case(&name.value)
                    && table.is_none_or(|t| {
                        c.table
                            .as_deref()
                            .is_some_and(|ct| ct.eq_ignore_ascii_case(&t.value))
                    })
            })
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [i] => Ok((Expr::Column(*i), self.columns[*i].ty)),
            [] => Err(error_at(at, format!("unknown column {at}"))),
            _ => Err(error_at(
                at,
                format!("column {at} is ambiguous: qualify it with its table"),
            )),
        }
    }

    fn bind_node(&mut self, e: &ast::Expr) -> Result<(Expr, Type), SqlError> {
        use ast::Expr as E;
        let boxed = Box::new;
        Ok(match e {
            E::Identifier(ident) => self.column(std::slice::from_ref(ident), e)?,
            E::CompoundIdentifier(parts) => self.column(parts, e)?,
            E::Nested(inner) => self.bind(inner)?,
            E::Value(v) => literal(&v.value, e)?,
            E::TypedString(typed) => {
                let ty = cast_type(&typed.data_type, e)?;
                let Value::SingleQuotedString(text) = &typed.value.value else {
                    return Err(error_at(e, "a typed literal needs a string"));
                };
                let value = super::expr::cast(Datum::Text(text.as_str().into()), ty);
                if value.is_null() {
                    return Err(error_at(e, format!("{text:?} is not a {ty}")));
                }
                (Expr::Literal(value), ty)
            }
            E::Interval(interval) => (
                Expr::Literal(Datum::Interval(interval_micros(interval, e)?)),
                Type::Interval,
            ),
            E::UnaryOp { op, expr } => {
                let (x, ty) = self.bind(expr)?;
                match op {
                    UnaryOperator::Not => {
                        self.expect(expr, ty, Type::Boolean, "NOT")?;
                        (Expr::Not(boxed(x)), Type::Boolean)
                    }
                    UnaryOperator::Minus if ty.is_numeric() || ty == Type::Interval => {
                        (Expr::Neg(boxed(x)), ty)
                    }
                    UnaryOperator::Plus if ty.is_numeric() => (x, ty),
                    _ => return Err(error_at(e, format!("cannot apply {op} to {ty}"))),
                }
            }
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right)?,
            E::IsNull(x) => (Expr::IsNull(boxed(self.bind(x)?.0), false), Type::Boolean),
            E::IsNotNull(x) => (Expr::IsNull(boxed(self.bind(x)?.0), true), Type::Boolean),
            E::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let (x, ty) = self.bind(expr)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let (bound, item_ty) = self.bind(item)?;
                    let bound = self.coerce_literal(bound, item_ty, ty);
                    self.comparable(item, ty, item_ty)?;
                    items.push(bound);
                }
                (Expr::In(boxed(x), items, *negated), Type::Boolean)
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, ty) = self.bind(expr)?;
                let (lo, lo_ty) = self.bind(low)?;
                let (hi, hi_ty) = self.bind(high)?;
                self.comparable(low, ty, lo_ty)?;
                self.comparable(high, ty, hi_ty)?;
                let lo = self.coerce_literal(lo, lo_ty, ty);
                let hi = self.coerce_literal(hi, hi_ty, ty);
                (
                    Expr::Between(boxed(x), boxed(lo), boxed(hi), *negated),
                    Type::Boolean,
                )
            }
            E::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => {
                let (x, ty) = self.bind(expr)?;
                let (p, pty) = self.bind(pattern)?;
                self.expect(expr, ty, Type::Varchar, "LIKE")?;
                self.expect(pattern, pty, Type::Varchar, "LIKE")?;
                (Expr::Like(boxed(x), boxed(p), *negated), Type::Boolean)
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(e, operand.as_deref(), conditions, else_result.as_deref())?,
            E::Cast {
                kind: CastKind::Cast | CastKind::TryCast | CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
            } => {
                let (x, _) = self.bind(expr)?;
                let ty = cast_type(data_type, e)?;
                (Expr::Cast(boxed(x), ty), ty)
            }
            E::Extract { field, expr, .. } => {
                let name = field_name(field);
                let part = Part::parse(&name)
                    .ok_or_else(|| error_at(e, format!("extract({name}) is not supported")))?;
                let (x, ty) = self.bind(expr)?;
                self.expect_time(expr, ty, "extract")?;
                let out = if part == Part::Epoch {
                    Type::Double
                } else {
                    Type::BigInt
                };
                (Expr::Call(Func::Extract(part), vec![x]), out)
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.bind(expr)?.0];
                if let Some(from) = substring_from {
                    args.push(self.bind(from)?.0);
                } else {
                    args.push(Expr::Literal(Datum::Int(1)));
                }
                if let Some(count) = substring_for {
                    args.push(self.bind(count)?.0);
                }
                (Expr::Call(Func::Substr, args), Type::Varchar)
            }
            E::Ceil { expr, .. } | E::Floor { expr, .. } => {
                let (x, ty) = self.bind(expr)?;
                self.numeric(expr, ty)?;
                let func = if matches!(e, E::Ceil { .. }) {
                    Func::Ceil
                } else {
                    Func::Floor
                };
                (Expr::Call(func, vec![x]), ty)
            }
            E::Function(f) => self.function(f, e)?,
            other => {
                return Err(error_at(
                    e,
                    format!("{} is not supported in a SQL view", construct_name(other)),
                ));
            }
        })
    }

    fn expect(&self, at: &ast::Expr, ty: Type, want: Type, what: &str) -> Result<(), SqlError> {
        if ty == want || ty == Type::Null {
            Ok(())
        } else {
            Err(error_at(at, format!("{what} needs {want}, not {ty}")))
        }
    }

    fn numeric(&self, at: &ast::Expr, ty: Type) -> Result<(), SqlError> {
        if ty.is_numeric() {
            Ok(())
        } else {
            Err(error_at(
                at,
                format!("type mismatch: {at} is {ty}, not a number"),
            ))
        }
    }

    fn expect_time(&self, at: &ast::Expr, ty: Type, what: &str) -> Result<(), SqlError> {
        if matches!(ty, Type::Timestamp | Type::Date | Type::Null) {
            Ok(())
        } else {
            Err(error_at(
                at,
                format!("{what} needs a TIMESTAMP or DATE, not {ty} (epoch_ms(ts) makes one)"),
            ))
        }
    }

    fn comparable(&self, at: &ast::Expr, a: Type, b: Type) -> Result<(), SqlError> {
        let literal_time = matches!(
            (a, b),
            (Type::Timestamp | Type::Date, Type::Varchar)
                | (Type::Varchar, Type::Timestamp | Type::Date)
        );
        if a.comparable(b) || literal_time {
            Ok(())
        } else {
            Err(error_at(
                at,
                format!("type mismatch: cannot compare {a} with {b}"),
            ))
        }
    }

    /// A text literal compared with a date or timestamp is read as one (DuckDB's implicit cast).
    fn coerce_literal(&self, e: Expr, ty: Type, to: Type) -> Expr {
        match (&e, ty, to) {
            (Expr::Literal(Datum::Text(_)), Type::Varchar, Type::Timestamp | Type::Date) => {
                Expr::Literal(super::expr::cast(
                    match e {
                        Expr::Literal(d) => d,
                        _ => Datum::Null,
                    },
                    to,
                ))
            }
            _ => e,
        }
    }

    fn binary(
        &mut self,
        at: &ast::Expr,
        left: &ast::Expr,
        op: &BinaryOperator,
        right: &ast::Expr,
    ) -> Result<(Expr, Type), SqlError> {
        use BinaryOperator as B;
        let (l, lt) = self.bind(left)?;
        let (r, rt) = self.bind(right)?;
        let (l, r) = (
            self.coerce_literal(l, lt, rt),
            self.coerce_literal(r, rt, lt),
        );
        let boxed = Box::new;
        let cmp = |c| {
            (
                Expr::Compare(c, boxed(l.clone()), boxed(r.clone())),
                Type::Boolean,
            )
        };
        Ok(match op {
            B::And | B::Or => {
                self.expect(left, lt, Type::Boolean, &op.to_string())?;
                self.expect(right, rt, Type::Boolean, &op.to_string())?;
                let e = if *op == B::And {
                    Expr::And(boxed(l), boxed(r))
                } else {
                    Expr::Or(boxed(l), boxed(r))
                };
                (e, Type::Boolean)
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                self.comparable(at, lt, rt)?;
                cmp(match op {
                    B::Eq => Cmp::Eq,
                    B::NotEq => Cmp::Ne,
                    B::Lt => Cmp::Lt,
                    B::LtEq => Cmp::Le,
                    B::Gt => Cmp::Gt,
                    _ => Cmp::Ge,
                })
            }
            B::StringConcat => (Expr::Concat(boxed(l), boxed(r)), Type::Varchar),
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::DuckIntegerDivide => {
                let arith = match op {
                    B::Plus => Arith::Add,
                    B::Minus => Arith::Sub,
                    B::Multiply => Arith::Mul,
                    B::Divide => Arith::Div,
                    B::Modulo => Arith::Mod,
                    _ => Arith::IntDiv,
                };
                let ty = match (lt, rt, arith) {
                    (Type::Timestamp, Type::Interval, Arith::Add | Arith::Sub)
                    | (Type::Interval, Type::Timestamp, Arith::Add) => Type::Timestamp,
                    (Type::Timestamp, Type::Timestamp, Arith::Sub) => Type::Interval,
                    (Type::Date, Type::BigInt, Arith::Add | Arith::Sub) => Type::Date,
                    (Type::Date, Type::Date, Arith::Sub) => Type::BigInt,
                    (_, _, Arith::Div) if lt.is_numeric() && rt.is_numeric() => Type::Double,
                    _ => match lt.widen(rt) {
                        Some(Type::Null) => Type::BigInt,
                        Some(t) => t,
                        None => {
                            return Err(error_at(
                                at,
                                format!("type mismatch: cannot apply {op} to {lt} and {rt}"),
                            ));
                        }
                    },
                };
                (Expr::Arith(arith, boxed(l), boxed(r), ty), ty)
            }
            other => {
                return Err(error_at(
                    at,
                    format!("the operator {other} is not supported"),
                ));
            }
        })
    }

    fn case(
        &mut self,
        at: &ast::Expr,
        operand: Option<&ast::Expr>,
        conditions: &[ast::CaseWhen],
        otherwise: Option<&ast::Expr>,
    ) -> Result<(Expr, Type), SqlError> {
        let operand = match operand {
            Some(o) => Some(self.bind(o)?),
            None => None,
        };
        let mut whens = Vec::with_capacity(conditions.len());
        let mut ty = Type::Null;
        let mut widen = |t: Type, e: &ast::Expr| -> Result<(), SqlError> {
            ty = if t == ty || t == Type::Null {
                ty
            } else if ty == Type::Null {
                t
            } else {
                ty.widen(t).ok_or_else(|| {
                    error_at(
                        e,
                        format!("type mismatch: CASE results {ty} and {t} differ"),
                    )
                })?
            };
            Ok(())
        };
        for c in conditions {
            let when = match &operand {
                Some((_, oty)) => {
                    let (w, wty) = self.bind(&c.condition)?;
                    self.comparable(&c.condition, *oty, wty)?;
                    w
                }
                None => self.predicate(&c.condition)?,
            };
            let (then, tty) = self.bind(&c.result)?;
            widen(tty, &c.result)?;
            whens.push((when, then));
        }
        let otherwise = match otherwise {
            Some(e) => {
                let (x, xty) = self.bind(e)?;
                widen(xty, e)?;
                Some(Box::new(x))
            }
            None => None,
        };
        if whens.is_empty() {
            return Err(error_at(at, "CASE needs a WHEN"));
        }
        // Numbers of different widths meet at the widest.
        if matches!(ty, Type::HugeInt | Type::Double) {
            for (_, then) in whens.iter_mut() {
                *then = Expr::Cast(Box::new(then.clone()), ty);
            }
        }
        Ok((
            Expr::Case {
                operand: operand.map(|(o, _)| Box::new(o)),
                whens,
                otherwise: otherwise.map(|o| {
                    if matches!(ty, Type::HugeInt | Type::Double) {
                        Box::new(Expr::Cast(o, ty))
                    } else {
                        o
                    }
                }),
            },
            ty,
        ))
    }

    fn function(&mut self, f: &ast::Function, at: &ast::Expr) -> Result<(Expr, Type), SqlError> {
        let name = function_name(f);
        if let Some(over) = &f.over {
            return self.window_call(&name, over, at);
        }
        if f.filter.is_some() {
            return Err(error_at(
                at,
                format!("FILTER applies to aggregates, not {name}"),
            ));
        }
        let list = match &f.args {
            FunctionArguments::List(list) if list.duplicate_treatment.is_none() => &list.args[..],
            FunctionArguments::None => &[][..],
            _ => {
                return Err(error_at(
                    at,
                    format!("{name}(...) with these arguments is not supported"),
                ));
            }
        };
        let mut args = Vec::with_capacity(list.len());
        let mut types = Vec::with_capacity(list.len());
        let mut asts = Vec::with_capacity(list.len());
        for arg in list {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = arg else {
                return Err(error_at(at, format!("{name}(...) takes plain arguments")));
            };
            let (bound, ty) = self.bind(x)?;
            args.push(bound);
            types.push(ty);
            asts.push(x);
        }
        let arity = |range: std::ops::RangeInclusive<usize>| -> Result<(), SqlError> {
            if range.contains(&args.len()) {
                Ok(())
            } else {
                Err(error_at(
                    at,
                    format!(
                        "wrong number of arguments: {name} takes {} argument(s), not {}",
                        if range.start() == range.end() {
                            range.start().to_string()
                        } else {
                            format!("{} to {}", range.start(), range.end())
                        },
                        args.len()
                    ),
                ))
            }
        };
        let text = |i: usize| self.expect(asts[i], types[i], Type::Varchar, &name);
        let (func, ty) = match name.as_str() {
            "lower" | "lcase" => {
                arity(1..=1)?;
                text(0)?;
                (Func::Lower, Type::Varchar)
            }
            "upper" | "ucase" => {
                arity(1..=1)?;
                text(0)?;
                (Func::Upper, Type::Varchar)
            }
            "length" | "len" | "char_length" | "character_length" => {
                arity(1..=1)?;
                text(0)?;
                (Func::Length, Type::BigInt)
            }
            "substr" | "substring" => {
                arity(2..=3)?;
                text(0)?;
                (Func::Substr, Type::Varchar)
            }
            "concat" => {
                arity(1..=usize::MAX)?;
                (Func::Concat, Type::Varchar)
            }
            "coalesce" | "ifnull" | "greatest" | "least" => {
                arity(if name == "ifnull" {
                    2..=2
                } else {
                    1..=usize::MAX
                })?;
                let mut ty = Type::Null;
                for (t, x) in types.iter().zip(&asts) {
                    ty = if *t == ty || *t == Type::Null {
                        ty
                    } else if ty == Type::Null {
                        *t
                    } else {
                        ty.widen(*t).ok_or_else(|| {
                            error_at(*x, format!("type mismatch: {name} of {ty} and {t}"))
                        })?
                    };
                }
                if matches!(ty, Type::HugeInt | Type::Double) {
                    args = args
                        .into_iter()
                        .map(|a| Expr::Cast(Box::new(a), ty))
                        .collect();
                }
                let func = match name.as_str() {
                    "greatest" => Func::Greatest,
                    "least" => Func::Least,
                    _ => Func::Coalesce,
                };
                (func, ty)
            }
            "nullif" => {
                arity(2..=2)?;
                (Func::NullIf, types[0])
            }
            "abs" | "floor" | "ceil" | "ceiling" | "round" => {
                arity(if name == "round" { 1..=2 } else { 1..=1 })?;
                self.numeric(asts[0], types[0])?;
                let func = match name.as_str() {
                    "abs" => Func::Abs,
                    "floor" => Func::Floor,
                    "round" => Func::Round,
                    _ => Func::Ceil,
                };
                (func, types[0])
            }
            "epoch_ms" => {
                arity(1..=1)?;
                match types[0] {
                    Type::Timestamp | Type::Date => (Func::ToEpochMs, Type::BigInt),
                    t if t.is_numeric() => (Func::EpochMs, Type::Timestamp),
                    t => {
                        return Err(error_at(
                            asts[0],
                            format!("epoch_ms needs a number, not {t}"),
                        ));
                    }
                }
            }
            "to_timestamp" => {
                // Seconds since the epoch: the same as epoch_ms(x * 1000).
                arity(1..=1)?;
                self.numeric(asts[0], types[0])?;
                let ms = Expr::Cast(
                    Box::new(Expr::Arith(
                        Arith::Mul,
                        Box::new(args[0].clone()),
                        Box::new(Expr::Literal(Datum::Float(F64(1000.0)))),
                        Type::Double,
                    )),
                    Type::BigInt,
                );
                args = vec![ms];
                (Func::EpochMs, Type::Timestamp)
            }
            "strftime" => {
                arity(2..=2)?;
                self.expect_time(asts[0], types[0], "strftime")?;
                text(1)?;
                if let Expr::Literal(Datum::Text(format)) = &args[1]
                    && time::strftime(0, format).is_none()
                {
                    return Err(error_at(
                        asts[1],
                        format!(
                            "strftime format {format:?} uses a specifier lambdaflow does not know (it knows %{})",
                            time::STRFTIME_SPECIFIERS
                                .chars()
                                .map(String::from)
                                .collect::<Vec<_>>()
                                .join(" %")
                        ),
                    ));
                }
                (Func::Strftime, Type::Varchar)
            }
            "date_trunc" | "datetrunc" | "date_part" | "datepart" => {
                arity(2..=2)?;
                let Expr::Literal(Datum::Text(part_name)) = args[0].clone() else {
                    return Err(error_at(
                        asts[0],
                        format!("{name} needs a constant part, like 'day'"),
                    ));
                };
                let part = Part::parse(&part_name).ok_or_else(|| {
                    error_at(asts[0], format!("{part_name:?} is not a date part"))
                })?;
                self.expect_time(asts[1], types[1], &name)?;
                args.remove(0);
                if name.starts_with("date_part") || name == "datepart" {
                    let out = if part == Part::Epoch {
                        Type::Double
                    } else {
                        Type::BigInt
                    };
                    (Func::Extract(part), out)
                } else {
                    if !part.truncates() {
                        return Err(error_at(
                            asts[0],
                            format!("date_trunc cannot truncate to {part_name:?}"),
                        ));
                    }
                    (Func::DateTrunc(part), Type::Timestamp)
                }
            }
            "time_bucket" => {
                arity(2..=2)?;
                if types[0] != Type::Interval {
                    return Err(error_at(
                        asts[0],
                        "time_bucket needs an INTERVAL width first",
                    ));
                }
                self.expect_time(asts[1], types[1], "time_bucket")?;
                (Func::TimeBucket, Type::Timestamp)
            }
            other => {
                return Err(error_at(at, format!("unknown function {other}")));
            }
        };
        Ok((Expr::Call(func, args), ty))
    }

    fn window_call(
        &mut self,
        name: &str,
        over: &ast::WindowType,
        at: &ast::Expr,
    ) -> Result<(Expr, Type), SqlError> {
        if name != "row_number" {
            return Err(error_at(
                at,
                format!("the window function {name} is not supported (only ROW_NUMBER() is)"),
            ));
        }
        let ast::WindowType::WindowSpec(spec) = over else {
            return Err(error_at(at, "named windows are not supported"));
        };
        if spec.window_frame.is_some() {
            return Err(error_at(at, "window frames are not supported"));
        }
        if spec.order_by.is_empty() {
            return Err(error_at(
                at,
                "ROW_NUMBER() needs ORDER BY in its OVER (...): without it the numbering is arbitrary",
            ));
        }
        if self.window.as_deref().is_some_and(Option::is_some) {
            return Err(error_at(
                at,
                "only one ROW_NUMBER() per SELECT is supported",
            ));
        }
        if self.window.is_none() {
            return Err(error_at(
                at,
                format!("window functions are not allowed in {}", self.clause),
            ));
        }
        let mut partition = Vec::with_capacity(spec.partition_by.len());
        for p in &spec.partition_by {
            partition.push(self.bind(p)?.0);
        }
        let mut order = Vec::with_capacity(spec.order_by.len());
        for o in &spec.order_by {
            order.push(self.sort_key(o)?);
        }
        if let Some(slot) = self.window.as_deref_mut() {
            *slot = Some(WindowCall { partition, order });
        }
        Ok((Expr::Column(WINDOW_SLOT), Type::BigInt))
    }

    /// One `ORDER BY` key.
    pub fn sort_key(&mut self, o: &ast::OrderByExpr) -> Result<SortKey, SqlError> {
        let desc = matches!(o.options.sort, Some(ast::OrderBySort::Desc));
        if let Some(ast::OrderBySort::Using(_)) = o.options.sort {
            return Err(error_at(&o.expr, "ORDER BY ... USING is not supported"));
        }
        Ok(SortKey {
            expr: self.bind(&o.expr)?.0,
            desc,
            nulls_first: o.options.nulls_first.unwrap_or(false),
        })
    }
}

/// The first column an expression reads, if any.
fn first_column(e: &Expr) -> Option<usize> {
    let mut found = None;
    walk(e, &mut |x| {
        if let Expr::Column(i) = x
            && found.is_none()
        {
            found = Some(*i);
        }
    });
    found
}

/// Calls `f` on `e` and every sub-expression.
pub(super) fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Column(_) | Expr::Literal(_) => {}
        Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) => walk(x, f),
        Expr::Arith(_, a, b, _)
        | Expr::Compare(_, a, b)
        | Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Concat(a, b)
        | Expr::Like(a, b, _) => {
            walk(a, f);
            walk(b, f);
        }
        Expr::In(x, list, _) => {
            walk(x, f);
            list.iter().for_each(|i| walk(i, f));
        }
        Expr::Between(x, lo, hi, _) => {
            walk(x, f);
            walk(lo, f);
            walk(hi, f);
        }
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            operand.iter().for_each(|o| walk(o, f));
            for (w, t) in whens {
                walk(w, f);
                walk(t, f);
            }
            otherwise.iter().for_each(|o| walk(o, f));
        }
        Expr::Call(_, args) => args.iter().for_each(|a| walk(a, f)),
    }
}

/// Rewrites the column references of `e` with `f`.
pub(super) fn remap(e: &mut Expr, f: &dyn Fn(usize) -> usize) {
    match e {
        Expr::Column(i) => *i = f(*i),
        Expr::Literal(_) => {}
        Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) => remap(x, f),
        Expr::Arith(_, a, b, _)
        | Expr::Compare(_, a, b)
        | Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Concat(a, b)
        | Expr::Like(a, b, _) => {
            remap(a, f);
            remap(b, f);
        }
        Expr::In(x, list, _) => {
            remap(x, f);
            list.iter_mut().for_each(|i| remap(i, f));
        }
        Expr::Between(x, lo, hi, _) => {
            remap(x, f);
            remap(lo, f);
            remap(hi, f);
        }
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            if let Some(o) = operand {
                remap(o, f);
            }
            for (w, t) in whens {
                remap(w, f);
                remap(t, f);
            }
            if let Some(o) = otherwise {
                remap(o, f);
            }
        }
        Expr::Call(_, args) => args.iter_mut().for_each(|a| remap(a, f)),
    }
}

fn literal(v: &Value, at: &ast::Expr) -> Result<(Expr, Type), SqlError> {
    Ok(match v {
        Value::Number(text, _) => {
            if let Ok(i) = text.parse::<i64>() {
                (Expr::Literal(Datum::Int(i)), Type::BigInt)
            } else if let Ok(i) = text.parse::<i128>() {
                (Expr::Literal(Datum::Huge(i)), Type::HugeInt)
            } else if let Ok(f) = text.parse::<f64>() {
                (Expr::Literal(Datum::Float(F64(f))), Type::Double)
            } else {
                return Err(error_at(
                    at,
                    format!("{text} is not a number lambdaflow reads"),
                ));
            }
        }
        Value::SingleQuotedString(s) => {
            (Expr::Literal(Datum::Text(s.as_str().into())), Type::Varchar)
        }
        Value::Boolean(b) => (Expr::Literal(Datum::Bool(*b)), Type::Boolean),
        Value::Null => (Expr::Literal(Datum::Null), Type::Null),
        other => {
            return Err(error_at(
                at,
                format!("the literal {other} is not supported"),
            ));
        }
    })
}

/// What to call an unsupported expression in a message.
fn construct_name(e: &ast::Expr) -> String {
    use ast::Expr as E;
    match e {
        E::Subquery(_) | E::Exists { .. } | E::In { .. } => "a subquery in an expression".into(),
        E::Wildcard(_) | E::QualifiedWildcard(..) => "* here".into(),
        other => {
            let text = other.to_string();
            let short: String = text.chars().take(40).collect();
            format!("the expression {short}")
        }
    }
}
