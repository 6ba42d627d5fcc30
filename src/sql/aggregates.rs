//! Aggregates: the calls a grouped query makes (`COUNT`, `SUM`, `MIN`, `MAX`, `AVG`, with
//! `DISTINCT` and `FILTER`), found while binding in grouping mode, and whether differential can
//! carry them as differences.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::SqlError;
use super::bind::{Binder, error_at};
use super::expr::Expr;
use super::types::Type;

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

/// The aggregate function a name calls, if it is one.
pub(super) fn aggregate_of(name: &str) -> Option<AggFunc> {
    Some(match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "avg" | "mean" => AggFunc::Avg,
        _ => return None,
    })
}

pub(super) fn function_name(f: &ast::Function) -> String {
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
pub(super) fn visit(e: &ast::Expr, f: &mut dyn FnMut(&ast::Expr)) {
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

impl Binder<'_> {
    pub(super) fn aggregate(
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
}
