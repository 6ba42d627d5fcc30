//! Binding: from the parser's expression trees to typed [`Expr`]s over column positions.
//!
//! A [`Binder`] resolves names against the columns of one relation and infers types as DuckDB
//! does (numbers widen, `/` is a double, `SUM(BIGINT)` is a `HUGEINT`). In an aggregate query
//! it binds in *grouping* mode: an expression equal to a `GROUP BY` expression becomes a column
//! of the group, an aggregate call becomes a column of its result, and any other column
//! reference is an error that names it ("must appear in the GROUP BY clause").

use sqlparser::ast::{
    self, BinaryOperator, CastKind, DataType, DateTimeField, Spanned, UnaryOperator, Value,
};

use super::SqlError;
use super::aggregates::{Agg, aggregate_of, function_name, has_aggregate};
use super::expr::{Arith, Cmp, Expr, Func, walk};
use super::time::Part;
use super::types::{Column, Datum, F64, Type};

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

    pub(super) fn expect(
        &self,
        at: &ast::Expr,
        ty: Type,
        want: Type,
        what: &str,
    ) -> Result<(), SqlError> {
        if ty == want || ty == Type::Null {
            Ok(())
        } else {
            Err(error_at(at, format!("{what} needs {want}, not {ty}")))
        }
    }

    pub(super) fn numeric(&self, at: &ast::Expr, ty: Type) -> Result<(), SqlError> {
        if ty.is_numeric() {
            Ok(())
        } else {
            Err(error_at(
                at,
                format!("type mismatch: {at} is {ty}, not a number"),
            ))
        }
    }

    pub(super) fn expect_time(&self, at: &ast::Expr, ty: Type, what: &str) -> Result<(), SqlError> {
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
