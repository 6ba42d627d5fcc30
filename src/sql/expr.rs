//! Scalar expressions, bound to column positions and evaluated row by row.
//!
//! The planner ([`plan`](super::plan)) resolves names and checks types once; what is left is
//! a small tree that [`Expr::eval`] walks for each row. Semantics are DuckDB's:
//!
//! * `NULL` propagates through arithmetic, comparisons and functions; `AND`/`OR` use
//!   three-valued logic (`NULL AND false` is `false`); `WHERE` keeps rows whose predicate is
//!   `true`;
//! * `/` divides as doubles; `//` and `%` on integers truncate toward zero, like C;
//! * what DuckDB reports as an error inside a running query (an integer overflow, a division
//!   by zero, a text that is not a number in `CAST`) is `NULL` here, as `TRY(...)` gives in
//!   DuckDB: a live view cannot refuse an event that was accepted. (`x / 0` is ±infinity, as
//!   DuckDB gives with `error_on_division_by_zero` off.)

use std::cmp::Ordering;

use smol_str::SmolStr;

use super::time::{self, Part};
use super::types::{Datum, F64, Type, compare};

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always a double)
    Div,
    /// `//` (integer division)
    IntDiv,
    /// `%`
    Mod,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    pub(super) fn holds(self, order: Ordering) -> bool {
        match self {
            Cmp::Eq => order == Ordering::Equal,
            Cmp::Ne => order != Ordering::Equal,
            Cmp::Lt => order == Ordering::Less,
            Cmp::Le => order != Ordering::Greater,
            Cmp::Gt => order == Ordering::Greater,
            Cmp::Ge => order != Ordering::Less,
        }
    }
}

/// A scalar function.
#[derive(Clone, Debug, PartialEq)]
pub enum Func {
    /// `lower(s)`
    Lower,
    /// `upper(s)`
    Upper,
    /// `length(s)`, in characters
    Length,
    /// `substr(s, start[, length])`, 1-based, in characters
    Substr,
    /// `concat(a, ...)`: `NULL`s are skipped
    Concat,
    /// `coalesce(a, ...)`
    Coalesce,
    /// `nullif(a, b)`
    NullIf,
    /// `abs(x)`
    Abs,
    /// `round(x[, digits])`
    Round,
    /// `floor(x)`
    Floor,
    /// `ceil(x)`
    Ceil,
    /// `greatest(a, ...)`
    Greatest,
    /// `least(a, ...)`
    Least,
    /// `epoch_ms(ms)`: the timestamp `ms` milliseconds after the epoch
    EpochMs,
    /// `epoch_ms(ts)`: milliseconds since the epoch of a timestamp
    ToEpochMs,
    /// `strftime(ts, format)`
    Strftime,
    /// `date_trunc(part, ts)`, with the part bound (its one argument is the timestamp)
    DateTrunc(Part),
    /// `extract(part FROM ts)`, `date_part(part, ts)`
    Extract(Part),
    /// `time_bucket(interval, ts)`
    TimeBucket,
}

/// A bound scalar expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The value of a column of the input row.
    Column(usize),
    /// A constant.
    Literal(Datum),
    /// `-x`
    Neg(Box<Expr>),
    /// `NOT x`
    Not(Box<Expr>),
    /// Arithmetic, with the type of its result.
    Arith(Arith, Box<Expr>, Box<Expr>, Type),
    /// A comparison.
    Compare(Cmp, Box<Expr>, Box<Expr>),
    /// `a AND b`
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`
    Or(Box<Expr>, Box<Expr>),
    /// `a || b` (`NULL` if either is)
    Concat(Box<Expr>, Box<Expr>),
    /// `x IS NULL`, or `x IS NOT NULL` when negated.
    IsNull(Box<Expr>, bool),
    /// `x [NOT] IN (list)`
    In(Box<Expr>, Vec<Expr>, bool),
    /// `x [NOT] BETWEEN low AND high`
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`
    Case {
        /// The value compared with each `WHEN`, for the simple form.
        operand: Option<Box<Expr>>,
        /// The `WHEN` conditions (or values) and their results.
        whens: Vec<(Expr, Expr)>,
        /// The `ELSE` result (`NULL` when absent).
        otherwise: Option<Box<Expr>>,
    },
    /// `CAST(x AS type)`
    Cast(Box<Expr>, Type),
    /// `x [NOT] LIKE pattern`
    Like(Box<Expr>, Box<Expr>, bool),
    /// A scalar function call.
    Call(Func, Vec<Expr>),
}

impl Expr {
    /// The value of the expression for one row, borrowed where it can be (a column, a
    /// constant): comparisons need not copy their operands.
    pub(super) fn value<'a>(&'a self, row: &'a [Datum]) -> std::borrow::Cow<'a, Datum> {
        use std::borrow::Cow;
        match self {
            Expr::Column(i) => row.get(*i).map_or(Cow::Owned(Datum::Null), Cow::Borrowed),
            Expr::Literal(d) => Cow::Borrowed(d),
            other => Cow::Owned(other.eval(row)),
        }
    }

    /// The value of the expression for one row.
    pub fn eval(&self, row: &[Datum]) -> Datum {
        match self {
            Expr::Column(i) => row.get(*i).cloned().unwrap_or(Datum::Null),
            Expr::Literal(d) => d.clone(),
            Expr::Neg(x) => match x.eval(row) {
                Datum::Int(i) => i.checked_neg().map_or(Datum::Null, Datum::Int),
                Datum::Huge(i) => i.checked_neg().map_or(Datum::Null, Datum::Huge),
                Datum::Float(f) => Datum::Float(F64(-f.0)),
                Datum::Interval(i) => Datum::Interval(-i),
                _ => Datum::Null,
            },
            Expr::Arith(op, a, b, ty) => arith(*op, a.eval(row), b.eval(row), *ty),
            // Truth values come from `test` (module `predicate`), which builds no datum.
            Expr::Compare(..)
            | Expr::And(..)
            | Expr::Or(..)
            | Expr::Not(..)
            | Expr::IsNull(..)
            | Expr::In(..) => self.test(row).map_or(Datum::Null, Datum::Bool),
            Expr::Concat(a, b) => match (a.eval(row), b.eval(row)) {
                (Datum::Null, _) | (_, Datum::Null) => Datum::Null,
                (x, y) => Datum::Text(SmolStr::from(x.to_text() + &y.to_text())),
            },
            Expr::Between(x, low, high, negated) => {
                let value = x.value(row);
                let above = compare(&value, &low.value(row)).map(|o| o != Ordering::Less);
                let below = compare(&value, &high.value(row)).map(|o| o != Ordering::Greater);
                let inside = match (above, below) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                inside.map_or(Datum::Null, |b| Datum::Bool(b != *negated))
            }
            Expr::Case { .. } => self.branch(row).map_or(Datum::Null, |e| e.eval(row)),
            Expr::Cast(x, ty) => cast(x.eval(row), *ty),
            Expr::Like(x, pattern, negated) => match (x.eval(row), pattern.eval(row)) {
                (Datum::Text(s), Datum::Text(p)) => Datum::Bool(like(&s, &p) != *negated),
                _ => Datum::Null,
            },
            Expr::Call(func, args) => call(func, args, row),
        }
    }
}

/// Arithmetic on two values, producing `ty` (the planner's verdict on the operands' types).
fn arith(op: Arith, a: Datum, b: Datum, ty: Type) -> Datum {
    use Datum::*;
    if a.is_null() || b.is_null() {
        return Null;
    }
    match (&a, &b) {
        (Timestamp(t), Interval(i)) => {
            return match op {
                Arith::Add => t.checked_add(*i).map_or(Null, Timestamp),
                Arith::Sub => t.checked_sub(*i).map_or(Null, Timestamp),
                _ => Null,
            };
        }
        (Interval(i), Timestamp(t)) if op == Arith::Add => {
            return t.checked_add(*i).map_or(Null, Timestamp);
        }
        (Timestamp(x), Timestamp(y)) if op == Arith::Sub => {
            return x.checked_sub(*y).map_or(Null, Interval);
        }
        (Date(d), Int(n)) => {
            let n = i32::try_from(*n).ok();
            return match (op, n) {
                (Arith::Add, Some(n)) => d.checked_add(n).map_or(Null, Date),
                (Arith::Sub, Some(n)) => d.checked_sub(n).map_or(Null, Date),
                _ => Null,
            };
        }
        (Date(x), Date(y)) if op == Arith::Sub => return Int(i64::from(*x) - i64::from(*y)),
        _ => {}
    }
    if op == Arith::Div || ty == Type::Double {
        let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
            return Null;
        };
        let value = match op {
            Arith::Add => x + y,
            Arith::Sub => x - y,
            Arith::Mul => x * y,
            Arith::Div => x / y,
            Arith::IntDiv if y == 0.0 => return Null,
            Arith::IntDiv => (x / y).trunc(),
            Arith::Mod if y == 0.0 => return Null,
            Arith::Mod => x % y,
        };
        return Float(F64(value));
    }
    let (Some(x), Some(y)) = (a.as_i128(), b.as_i128()) else {
        return Null;
    };
    let value = match op {
        Arith::Add => x.checked_add(y),
        Arith::Sub => x.checked_sub(y),
        Arith::Mul => x.checked_mul(y),
        Arith::IntDiv | Arith::Div => x.checked_div(y),
        Arith::Mod => x.checked_rem(y),
    };
    match (value, ty) {
        (Some(v), Type::HugeInt) => Huge(v),
        (Some(v), _) => i64::try_from(v).map_or(Null, Int),
        (None, _) => Null,
    }
}

/// `CAST(value AS ty)`; a value that does not convert is `NULL` (DuckDB's `TRY_CAST`).
pub fn cast(value: Datum, ty: Type) -> Datum {
    use Datum::*;
    match (value, ty) {
        (Null, _) => Null,
        (v, Type::Null) => v,
        (Bool(b), Type::Boolean) => Bool(b),
        (Int(i), Type::Boolean) => Bool(i != 0),
        (Text(s), Type::Boolean) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Bool(true),
            "false" | "f" | "0" => Bool(false),
            _ => Null,
        },
        (Bool(b), Type::BigInt) => Int(i64::from(b)),
        (Int(i), Type::BigInt) => Int(i),
        (Huge(i), Type::BigInt) => i64::try_from(i).map_or(Null, Int),
        // DuckDB rounds a double to an integer half to even.
        (Float(f), Type::BigInt) => {
            let r = f.0.round_ties_even();
            if r.is_finite() && r >= i64::MIN as f64 && r < i64::MAX as f64 {
                Int(r as i64)
            } else {
                Null
            }
        }
        (Text(s), Type::BigInt) => s.trim().parse().map_or(Null, Int),
        (v @ (Int(_) | Huge(_) | Bool(_)), Type::HugeInt) => match v {
            Bool(b) => Huge(i128::from(b)),
            other => other.as_i128().map_or(Null, Huge),
        },
        (Float(f), Type::HugeInt) => {
            let r = f.0.round_ties_even();
            if r.is_finite() && r.abs() < 1.7e38 {
                Huge(r as i128)
            } else {
                Null
            }
        }
        (Text(s), Type::HugeInt) => s.trim().parse().map_or(Null, Huge),
        (v @ (Int(_) | Huge(_) | Float(_)), Type::Double) => {
            v.as_f64().map_or(Null, |f| Float(F64(f)))
        }
        (Bool(b), Type::Double) => Float(F64(f64::from(u8::from(b)))),
        (Text(s), Type::Double) => s.trim().parse().map_or(Null, |f| Float(F64(f))),
        (Text(s), Type::Varchar) => Text(s),
        (v, Type::Varchar) => Text(SmolStr::from(v.to_text())),
        (Date(d), Type::Date) => Date(d),
        (Timestamp(t), Type::Date) => Date(time::date_of_timestamp(t)),
        (Text(s), Type::Date) => time::parse_date(&s).map_or(Null, Date),
        (Timestamp(t), Type::Timestamp) => Timestamp(t),
        (Date(d), Type::Timestamp) => Timestamp(i64::from(d) * time::MICROS_PER_DAY),
        (Text(s), Type::Timestamp) => time::parse_timestamp(&s).map_or(Null, Timestamp),
        (Interval(i), Type::Interval) => Interval(i),
        _ => Null,
    }
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one.
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matching with backtracking to the last `%`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < t.len() {
        if j < p.len() && (p[j] == '_' || p[j] == t[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '%')
}

fn text(s: impl Into<SmolStr>) -> Datum {
    Datum::Text(s.into())
}

fn call(func: &Func, args: &[Expr], row: &[Datum]) -> Datum {
    use Datum::*;
    let value = |i: usize| args.get(i).map_or(Null, |e| e.eval(row));
    match func {
        Func::Coalesce => args
            .iter()
            .map(|e| e.eval(row))
            .find(|d| !d.is_null())
            .unwrap_or(Null),
        Func::Concat => {
            let mut out = String::new();
            for arg in args {
                let d = arg.eval(row);
                if !d.is_null() {
                    out.push_str(&d.to_text());
                }
            }
            text(out)
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Datum> = None;
            for d in args.iter().map(|e| e.eval(row)).filter(|d| !d.is_null()) {
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let order = compare(&d, b);
                        if *func == Func::Greatest {
                            order == Some(Ordering::Greater)
                        } else {
                            order == Some(Ordering::Less)
                        }
                    }
                };
                if better {
                    best = Some(d);
                }
            }
            best.unwrap_or(Null)
        }
        Func::NullIf => {
            let a = value(0);
            if compare(&a, &value(1)) == Some(Ordering::Equal) {
                Null
            } else {
                a
            }
        }
        _ => {
            let a = value(0);
            if a.is_null() {
                return Null;
            }
            strict(func, a, args, row)
        }
    }
}

/// The functions that are `NULL` when their first argument is.
fn strict(func: &Func, a: Datum, args: &[Expr], row: &[Datum]) -> Datum {
    use Datum::*;
    let value = |i: usize| args.get(i).map_or(Null, |e| e.eval(row));
    match (func, a) {
        (Func::Lower, Text(s)) => text(s.to_lowercase()),
        (Func::Upper, Text(s)) => text(s.to_uppercase()),
        (Func::Length, Text(s)) => Int(s.chars().count() as i64),
        (Func::Substr, Text(s)) => {
            let Some(start) = value(1).as_i128() else {
                return Null;
            };
            let count = s.chars().count() as i128;
            let length = match args.len() {
                3 => match value(2).as_i128() {
                    Some(l) => l,
                    None => return Null,
                },
                _ => count,
            };
            // DuckDB: 1-based; 0 and negatives count from the end.
            let begin = if start > 0 {
                start - 1
            } else if start < 0 {
                count + start
            } else {
                0
            };
            let (from, to) = if length >= 0 {
                (begin, begin.saturating_add(length))
            } else {
                (begin.saturating_add(length), begin)
            };
            let (from, to) = (from.clamp(0, count), to.clamp(0, count));
            text(
                s.chars()
                    .skip(from as usize)
                    .take((to - from) as usize)
                    .collect::<String>(),
            )
        }
        (Func::Abs, Int(i)) => i.checked_abs().map_or(Null, Int),
        (Func::Abs, Huge(i)) => i.checked_abs().map_or(Null, Huge),
        (Func::Abs, Float(f)) => Float(F64(f.0.abs())),
        (Func::Round, Float(f)) => {
            let digits = value(1).as_i128().unwrap_or(0).clamp(-300, 300) as i32;
            let scale = 10f64.powi(digits);
            Float(F64((f.0 * scale).round() / scale))
        }
        (Func::Round | Func::Floor | Func::Ceil, v @ (Int(_) | Huge(_))) => v,
        (Func::Floor, Float(f)) => Float(F64(f.0.floor())),
        (Func::Ceil, Float(f)) => Float(F64(f.0.ceil())),
        (Func::EpochMs, v) => match v.as_i128() {
            Some(ms) => i64::try_from(ms)
                .ok()
                .and_then(|ms| ms.checked_mul(1_000))
                .map_or(Null, Timestamp),
            None => Null,
        },
        (Func::ToEpochMs, Timestamp(t)) => Int(t.div_euclid(1_000)),
        (Func::Strftime, v) => match (timestamp_of(&v), value(1)) {
            (Some(t), Text(format)) => time::strftime(t, &format).map_or(Null, text),
            _ => Null,
        },
        (Func::DateTrunc(part), v) => match timestamp_of(&v) {
            Some(t) => Timestamp(time::date_trunc(*part, t)),
            None => Null,
        },
        (Func::Extract(Part::Epoch), v) => match timestamp_of(&v) {
            Some(t) => Float(F64(time::epoch_seconds(t))),
            None => Null,
        },
        (Func::Extract(part), v) => match timestamp_of(&v) {
            Some(t) => Int(time::extract(*part, t)),
            None => Null,
        },
        (Func::TimeBucket, Interval(width)) => match timestamp_of(&value(1)) {
            Some(t) => time::time_bucket(width, t).map_or(Null, Timestamp),
            None => Null,
        },
        _ => Null,
    }
}

/// A date or timestamp as a timestamp (dates at midnight).
fn timestamp_of(d: &Datum) -> Option<i64> {
    match d {
        Datum::Timestamp(t) => Some(*t),
        Datum::Date(days) => Some(i64::from(*days) * time::MICROS_PER_DAY),
        _ => None,
    }
}

/// Calls `f` on `e` and every sub-expression.
pub fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
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
pub fn remap(e: &mut Expr, f: &dyn Fn(usize) -> usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(d: Datum) -> Box<Expr> {
        Box::new(Expr::Literal(d))
    }

    #[test]
    fn three_valued_logic() {
        let and = Expr::And(lit(Datum::Null), lit(Datum::Bool(false)));
        assert_eq!(and.eval(&[]), Datum::Bool(false));
        let or = Expr::Or(lit(Datum::Null), lit(Datum::Bool(false)));
        assert_eq!(or.eval(&[]), Datum::Null);
        let not_in = Expr::In(
            lit(Datum::Int(1)),
            vec![Expr::Literal(Datum::Int(2)), Expr::Literal(Datum::Null)],
            true,
        );
        assert_eq!(not_in.eval(&[]), Datum::Null);
    }

    #[test]
    fn integer_division_truncates_like_duckdb() {
        let div = |op, a, b| arith(op, Datum::Int(a), Datum::Int(b), Type::BigInt);
        assert_eq!(div(Arith::IntDiv, -7, 2), Datum::Int(-3));
        assert_eq!(div(Arith::Mod, -7, 3), Datum::Int(-1));
        assert_eq!(div(Arith::Mod, 5, 0), Datum::Null);
        assert_eq!(div(Arith::Add, i64::MAX, 1), Datum::Null);
        assert_eq!(
            arith(Arith::Div, Datum::Int(7), Datum::Int(2), Type::Double),
            Datum::Float(F64(3.5))
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("purchase", "p%"));
        assert!(like("purchase", "%chas_"));
        assert!(!like("view", "p%"));
        assert!(like("", "%"));
        assert!(like("a%b", "a%b"));
    }

    #[test]
    fn casts_round_half_to_even() {
        assert_eq!(cast(Datum::Float(F64(2.5)), Type::BigInt), Datum::Int(2));
        assert_eq!(cast(Datum::Float(F64(-3.5)), Type::BigInt), Datum::Int(-4));
        assert_eq!(cast(Datum::Text("x".into()), Type::BigInt), Datum::Null);
    }

    #[test]
    fn substr_counts_characters_from_one() {
        let s = |args: Vec<Datum>| {
            let args: Vec<Expr> = args.into_iter().map(Expr::Literal).collect();
            call(&Func::Substr, &args, &[])
        };
        let hello = || Datum::Text("héllo".into());
        assert_eq!(s(vec![hello(), Datum::Int(2), Datum::Int(3)]), text("éll"));
        assert_eq!(s(vec![hello(), Datum::Int(-2)]), text("lo"));
    }
}
