//! Scalar functions and `ROW_NUMBER()`: their names, arities and result types, as DuckDB has
//! them, bound to [`Func`] calls.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::SqlError;
use super::aggregates::function_name;
use super::bind::{Binder, SortKey, WINDOW_SLOT, WindowCall, error_at};
use super::expr::{Arith, Expr, Func};
use super::time::{self, Part};
use super::types::{Datum, F64, Type};

impl Binder<'_> {
    pub(super) fn function(
        &mut self,
        f: &ast::Function,
        at: &ast::Expr,
    ) -> Result<(Expr, Type), SqlError> {
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
        if name == "mod" {
            // DuckDB's `mod(a, b)` is `a % b` (Flink's NEXMark q2 writes it so).
            arity(2..=2)?;
            let modulo = ast::Expr::BinaryOp {
                left: Box::new(asts[0].clone()),
                op: ast::BinaryOperator::Modulo,
                right: Box::new(asts[1].clone()),
            };
            return self.bind(&modulo);
        }
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
