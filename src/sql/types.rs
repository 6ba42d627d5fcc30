//! SQL values and types: the compact typed tuples that flow through a SQL view's dataflow.
//!
//! A row is a `Vec<Datum>`: one [`Datum`] per column, in the order of the relation's
//! [`Column`]s. Types follow DuckDB where lambdaflow supports them:
//!
//! | [`Type`] | DuckDB | [`Datum`] | JSON |
//! | --- | --- | --- | --- |
//! | `Boolean` | `BOOLEAN` | `Bool` | `true` / `false` |
//! | `BigInt` | `BIGINT` (every integer type) | `Int(i64)` | integer |
//! | `HugeInt` | `HUGEINT` (what `SUM(BIGINT)` gives) | `Huge(i128)` | exact integer |
//! | `Double` | `DOUBLE` (and decimal literals) | `Float` | number |
//! | `Varchar` | `VARCHAR` | `Text` | string |
//! | `Date` | `DATE` | `Date(days since 1970-01-01)` | `"YYYY-MM-DD"` |
//! | `Timestamp` | `TIMESTAMP` | `Timestamp(µs since the epoch)` | DuckDB's text, `"1970-01-01 00:00:01.123"` |
//! | `Interval` | `INTERVAL` (literals only) | `Interval(µs)` | DuckDB's text |
//!
//! Every value may be `Null`. The derived order of [`Datum`] is the order of keys in an
//! arrangement (and of pages); SQL's comparisons and `ORDER BY` are in [`compare`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smol_str::SmolStr;

use super::time;

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Type {
    /// The type of a bare `NULL`: it fits anywhere.
    Null,
    /// `BOOLEAN`.
    Boolean,
    /// `BIGINT`: a 64-bit signed integer.
    BigInt,
    /// `HUGEINT`: a 128-bit signed integer.
    HugeInt,
    /// `DOUBLE`.
    Double,
    /// `VARCHAR`.
    Varchar,
    /// `DATE`.
    Date,
    /// `TIMESTAMP` (without time zone: UTC).
    Timestamp,
    /// `INTERVAL`.
    Interval,
}

impl Type {
    /// Whether values of this type are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Type::BigInt | Type::HugeInt | Type::Double | Type::Null
        )
    }

    /// The type both of two numeric types widen to (`None` when one is not numeric).
    pub fn widen(self, other: Type) -> Option<Type> {
        use Type::*;
        Some(match (self, other) {
            (Null, t) | (t, Null) => t,
            (Double, _) | (_, Double) => Double,
            (HugeInt, _) | (_, HugeInt) => HugeInt,
            (BigInt, BigInt) => BigInt,
            _ => return None,
        })
    }

    /// Whether values of the two types can be compared (after widening numbers).
    pub fn comparable(self, other: Type) -> bool {
        self == other
            || self == Type::Null
            || other == Type::Null
            || self.widen(other).is_some()
            || matches!(
                (self, other),
                (Type::Date, Type::Timestamp) | (Type::Timestamp, Type::Date)
            )
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Type::Null => "NULL",
            Type::Boolean => "BOOLEAN",
            Type::BigInt => "BIGINT",
            Type::HugeInt => "HUGEINT",
            Type::Double => "DOUBLE",
            Type::Varchar => "VARCHAR",
            Type::Date => "DATE",
            Type::Timestamp => "TIMESTAMP",
            Type::Interval => "INTERVAL",
        };
        f.write_str(name)
    }
}

/// A `DOUBLE` with a total order (`f64::total_cmp`), so rows can be keys.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        // -0.0 and 0.0 are one value, as in SQL.
        let norm = |x: f64| if x == 0.0 { 0.0 } else { x };
        norm(self.0).total_cmp(&norm(other.0))
    }
}
impl Hash for F64 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let x = if self.0 == 0.0 { 0.0 } else { self.0 };
        x.to_bits().hash(state);
    }
}

/// One SQL value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Datum {
    /// `NULL`.
    Null,
    /// A `BOOLEAN`.
    Bool(bool),
    /// A `BIGINT`.
    Int(i64),
    /// A `HUGEINT`.
    Huge(i128),
    /// A `DOUBLE`.
    Float(F64),
    /// A `VARCHAR` (short strings are kept inline).
    Text(SmolStr),
    /// A `DATE`: days since 1970-01-01.
    Date(i32),
    /// A `TIMESTAMP`: microseconds since the epoch (UTC).
    Timestamp(i64),
    /// An `INTERVAL`: microseconds (months are not supported).
    Interval(i64),
}

/// A row: one datum per column.
pub type Row = Vec<Datum>;

impl Datum {
    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The value as a 128-bit integer, if it is an integer.
    pub fn as_i128(&self) -> Option<i128> {
        match self {
            Datum::Int(i) => Some(i128::from(*i)),
            Datum::Huge(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as a double, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Datum::Int(i) => Some(*i as f64),
            Datum::Huge(i) => Some(*i as f64),
            Datum::Float(f) => Some(f.0),
            _ => None,
        }
    }

    /// The value as a boolean: SQL's three-valued logic reads `NULL` as `None`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Datum::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as JSON, as the oracle (DuckDB through its Python client) writes it.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Null => Value::Null,
            Datum::Bool(b) => Value::Bool(*b),
            Datum::Int(i) => Value::from(*i),
            Datum::Huge(i) => match i64::try_from(*i) {
                Ok(small) => Value::from(small),
                // Exact beyond 64 bits: serde_json keeps the digits (arbitrary_precision).
                Err(_) => serde_json::from_str(&i.to_string()).unwrap_or(Value::Null),
            },
            Datum::Float(f) => float_json(f.0),
            other => Value::String(other.to_text()),
        }
    }

    /// Writes the value as JSON text (the text of [`to_json`](Datum::to_json)) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a vector cannot fail.
        let _ = match self {
            Datum::Null => out.write_all(b"null"),
            Datum::Bool(b) => write!(out, "{b}"),
            Datum::Int(i) => write!(out, "{i}"),
            Datum::Huge(i) => write!(out, "{i}"),
            Datum::Float(f) => serde_json::to_writer(out, &float_json(f.0)).map_err(Into::into),
            Datum::Text(s) => serde_json::to_writer(out, s.as_str()).map_err(Into::into),
            other => serde_json::to_writer(out, &other.to_text()).map_err(Into::into),
        };
    }

    /// The value as text, as DuckDB's `CAST(x AS VARCHAR)` writes it (`NULL` as `"NULL"`).
    pub fn to_text(&self) -> String {
        match self {
            Datum::Null => "NULL".into(),
            Datum::Bool(b) => b.to_string(),
            Datum::Int(i) => i.to_string(),
            Datum::Huge(i) => i.to_string(),
            Datum::Float(f) => float_text(f.0),
            Datum::Text(s) => s.to_string(),
            Datum::Date(d) => time::date_text(*d),
            Datum::Timestamp(t) => time::timestamp_text(*t),
            Datum::Interval(us) => time::interval_text(*us),
        }
    }
}

/// A double as JSON: non-finite values as the strings DuckDB's client shows.
fn float_json(x: f64) -> Value {
    if x.is_nan() {
        Value::String("NaN".into())
    } else if x.is_infinite() {
        Value::String(if x > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A double as text: the shortest text that reads back as the same double.
fn float_text(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:?}")
    }
}

/// SQL comparison of two non-null values of comparable types (numbers widen, dates compare
/// with timestamps at midnight); `None` when either is `NULL`.
pub fn compare(a: &Datum, b: &Datum) -> Option<Ordering> {
    use Datum::*;
    Some(match (a, b) {
        (Null, _) | (_, Null) => return None,
        (Int(x), Int(y)) => x.cmp(y),
        (Float(_), _) | (_, Float(_)) => a.as_f64()?.total_cmp(&b.as_f64()?),
        (Int(_) | Huge(_), Int(_) | Huge(_)) => a.as_i128()?.cmp(&b.as_i128()?),
        (Date(x), Timestamp(y)) => (i64::from(*x) * time::MICROS_PER_DAY).cmp(y),
        (Timestamp(x), Date(y)) => x.cmp(&(i64::from(*y) * time::MICROS_PER_DAY)),
        _ => a.cmp(b),
    })
}

/// SQL equality of two values (as [`compare`] finds them equal), quicker for the common
/// cases: two strings are equal without being ordered, which `IN`, `=` and a simple `CASE` on
/// a text column ask for every row.
pub fn equal(a: &Datum, b: &Datum) -> Option<bool> {
    match (a, b) {
        (Datum::Text(x), Datum::Text(y)) => Some(x == y),
        (Datum::Int(x), Datum::Int(y)) => Some(x == y),
        _ => compare(a, b).map(|o| o == Ordering::Equal),
    }
}

/// A column of a relation: its name, the table (or alias) it belongs to, and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name, as written (matched case-insensitively).
    pub name: String,
    /// The relation it can be qualified with (`e.ts`), if any.
    pub table: Option<String>,
    /// Its type.
    pub ty: Type,
}

impl Column {
    /// A column named `name` of type `ty`.
    pub fn new(name: &str, ty: Type) -> Column {
        Column {
            name: name.to_string(),
            table: None,
            ty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_widths() {
        assert_eq!(
            compare(&Datum::Int(2), &Datum::Float(F64(2.5))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&Datum::Huge(5), &Datum::Int(5)),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&Datum::Null, &Datum::Int(5)), None);
        assert_eq!(F64(0.0), F64(-0.0));
    }

    #[test]
    fn huge_integers_stay_exact_in_json() {
        let big = Datum::Huge(i128::from(i64::MAX) * 4);
        assert_eq!(big.to_json().to_string(), "36893488147419103228");
        assert_eq!(Datum::Float(F64(0.5)).to_json(), Value::from(0.5));
        assert_eq!(Datum::Float(F64(f64::NAN)).to_json(), Value::from("NaN"));
    }

    #[test]
    fn json_text_is_the_json_values_text() {
        let data = [
            Datum::Null,
            Datum::Bool(false),
            Datum::Int(-7),
            Datum::Huge(i128::MIN),
            Datum::Float(F64(0.1)),
            Datum::Float(F64(1e300)),
            Datum::Float(F64(f64::NEG_INFINITY)),
            Datum::Text("a \"quoted\"\n\u{1} line".into()),
            Datum::Date(-1),
            Datum::Timestamp(1_700_000_000_123_456),
            Datum::Interval(90_000_000),
        ];
        for d in data {
            let mut text = Vec::new();
            d.write_json(&mut text);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                d.to_json().to_string(),
                "{d:?}"
            );
        }
    }
}
