//! Predicates and integer results, evaluated without building datums.
//!
//! [`Expr::eval`] answers a [`Datum`], a 32-byte value that travels through memory on every
//! call: cheap once, but a replay evaluates each view's `WHERE`, `FILTER` and `CASE` for every
//! event. Most of those ask for less: a `WHERE` wants a truth value, a `SUM` argument an
//! integer. [`Expr::test`] and [`Expr::int`] answer exactly that (three-valued, `None` for
//! `NULL`), borrowing the row's values, and fall back to [`Expr::eval`] for every other
//! shape, so they always agree with it:
//! `e.test(row) == e.eval(row).as_bool()` and `e.int(row) == e.eval(row).as_i128()`.

use super::expr::{Cmp, Expr};
use super::types::{Datum, compare, equal};

impl Expr {
    /// The truth of the expression for one row (`None` for `NULL`): the value of a predicate.
    pub fn test(&self, row: &[Datum]) -> Option<bool> {
        match self {
            Expr::Compare(op @ (Cmp::Eq | Cmp::Ne), a, b) => {
                equal(&a.value(row), &b.value(row)).map(|same| same == (*op == Cmp::Eq))
            }
            Expr::Compare(op, a, b) => compare(&a.value(row), &b.value(row)).map(|o| op.holds(o)),
            Expr::And(a, b) => match a.test(row) {
                Some(false) => Some(false),
                left => match (left, b.test(row)) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
            },
            Expr::Or(a, b) => match a.test(row) {
                Some(true) => Some(true),
                left => match (left, b.test(row)) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
            },
            Expr::Not(x) => x.test(row).map(|b| !b),
            Expr::IsNull(x, negated) => Some(x.value(row).is_null() != *negated),
            Expr::In(x, list, negated) => {
                let value = x.value(row);
                if value.is_null() {
                    return None;
                }
                let mut unknown = false;
                for item in list {
                    match equal(&value, &item.value(row)) {
                        Some(true) => return Some(!negated),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                (!unknown).then_some(*negated)
            }
            Expr::Column(i) => row.get(*i).and_then(Datum::as_bool),
            Expr::Case { .. } => self.branch(row).and_then(|e| e.test(row)),
            other => other.eval(row).as_bool(),
        }
    }

    /// The expression's value for one row as an integer (`None` for `NULL` or a value that is
    /// not an integer): the argument of an integer `SUM`.
    pub fn int(&self, row: &[Datum]) -> Option<i128> {
        match self {
            Expr::Column(i) => row.get(*i).and_then(Datum::as_i128),
            Expr::Literal(d) => d.as_i128(),
            // As `eval` negates: within the operand's own width.
            Expr::Neg(x) => match &*x.value(row) {
                Datum::Int(i) => i.checked_neg().map(i128::from),
                Datum::Huge(i) => i.checked_neg(),
                _ => None,
            },
            Expr::Case { .. } => self.branch(row).and_then(|e| e.int(row)),
            other => other.eval(row).as_i128(),
        }
    }

    /// For a `CASE`, the result that applies to the row (`None` when no `WHEN` matches and
    /// there is no `ELSE`: `NULL`); for any other expression, itself.
    pub(super) fn branch(&self, row: &[Datum]) -> Option<&Expr> {
        let Expr::Case {
            operand,
            whens,
            otherwise,
        } = self
        else {
            return Some(self);
        };
        let subject = operand.as_ref().map(|o| o.value(row));
        for (when, then) in whens {
            let hit = match &subject {
                Some(value) => equal(value, &when.value(row)) == Some(true),
                None => when.test(row) == Some(true),
            };
            if hit {
                return Some(then);
            }
        }
        otherwise.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::types::F64;

    /// Every expression built from these atoms, two levels deep, over rows with `NULL`s,
    /// booleans, texts and extreme integers: `test` and `int` say what `eval` says. (`eval`
    /// takes truth values from `test`: their SQL semantics are checked against DuckDB by the
    /// corpus in tests/sql.rs.)
    #[test]
    fn test_and_int_agree_with_eval() {
        let rows: Vec<Vec<Datum>> = vec![
            vec![
                Datum::Int(3),
                Datum::Text("a".into()),
                Datum::Null,
                Datum::Bool(true),
                Datum::Huge(i128::MIN),
            ],
            vec![
                Datum::Int(i64::MIN),
                Datum::Text("b".into()),
                Datum::Bool(false),
                Datum::Null,
                Datum::Float(F64(3.0)),
            ],
        ];
        let mut atoms: Vec<Expr> = (0..6).map(Expr::Column).collect();
        atoms.extend(
            [
                Datum::Int(3),
                Datum::Text("a".into()),
                Datum::Null,
                Datum::Bool(true),
                Datum::Bool(false),
            ]
            .map(Expr::Literal),
        );
        let b = |e: &Expr| Box::new(e.clone());
        let ops = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];
        let mut exprs: Vec<Expr> = atoms.clone();
        for x in &atoms {
            exprs.push(Expr::Neg(b(x)));
            exprs.push(Expr::Not(b(x)));
            exprs.push(Expr::IsNull(b(x), false));
            exprs.push(Expr::In(b(x), atoms[6..].to_vec(), false));
            exprs.push(Expr::In(b(x), atoms[7..9].to_vec(), true));
            for y in &atoms {
                exprs.extend(ops.map(|op| Expr::Compare(op, b(x), b(y))));
            }
        }
        let first = exprs.clone();
        for (x, y) in first.iter().step_by(7).zip(first.iter().skip(3).step_by(5)) {
            exprs.push(Expr::And(b(x), b(y)));
            exprs.push(Expr::Or(b(x), b(y)));
            exprs.push(Expr::Case {
                operand: Some(b(x)),
                whens: vec![(y.clone(), Expr::Column(0)), (atoms[7].clone(), y.clone())],
                otherwise: Some(Box::new(Expr::Neg(b(y)))),
            });
            exprs.push(Expr::Case {
                operand: None,
                whens: vec![(y.clone(), x.clone())],
                otherwise: None,
            });
        }
        for row in &rows {
            for e in &exprs {
                let value = e.eval(row);
                assert_eq!(e.test(row), value.as_bool(), "{e:?} over {row:?}");
                assert_eq!(e.int(row), value.as_i128(), "{e:?} over {row:?}");
            }
        }
    }
}
