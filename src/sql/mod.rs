//! SQL views: DuckDB's SQL, maintained incrementally by differential dataflow.
//!
//! The contract: **a SQL view's rows equal what DuckDB returns for the same `SELECT` over the
//! same events**, at every `as_of`. A view is text, turned into a dataflow in four stages, one
//! module each:
//!
//! 1. [`parse`]: `sqlparser` with DuckDB's dialect reads the statements;
//! 2. [`plan`] (with `bind` for expressions): names are resolved against the sources and
//!    earlier views, types inferred as DuckDB does, and the query becomes a logical plan of
//!    relational operators;
//! 3. [`expr`]: the scalar expressions that plan carries, evaluated per row, with DuckDB's
//!    `NULL` semantics (dates and times in `time`);
//! 4. [`render`]: the plan as differential operators, aggregates carried as differences
//!    where they can be.
//!
//! Rows are compact typed tuples ([`types::Datum`]), not JSON: a view's rows become JSON
//! objects (every output column by name) only when they are read. A view is keyed by its
//! `GROUP BY` columns (every column without aggregation or with `DISTINCT`); a top-level
//! `ORDER BY .. LIMIT k` makes it a ranked view. `docs/SQL.md` lists what is supported.
//!
//! ```
//! use lambdaflow::prelude::*;
//! use lambdaflow::ecommerce::Order;
//! use lambdaflow::sql::SqlViews;
//!
//! let views = SqlViews::<Order>::new(
//!     "CREATE VIEW spend AS SELECT customer, SUM(amount_cents) AS cents
//!      FROM events WHERE kind = 'purchase' GROUP BY customer",
//! ).expect("valid SQL");
//! let history: Vec<Order> = Vec::new();
//! let mut engine = Engine::start(&Cluster::threads(1), Settings::default(),
//!                                History::Events(std::sync::Arc::new(history)), views)?;
//! engine.end_live();
//! let answer = engine.client().query_final(Query::all("spend")).expect("answered");
//! assert!(lambdaflow::sql::answer_rows(&answer, None).is_empty());
//! engine.join()?;
//! # Ok::<(), String>(())
//! ```

mod bind;
pub mod expr;
pub mod parse;
pub mod plan;
mod register;
pub mod render;
mod source;
pub mod time;
pub mod types;

use std::fmt;
use std::marker::PhantomData;

use differential_dataflow::VecCollection;

pub use register::answer_rows;
pub use source::SqlSource;

use crate::engine::Pipeline;
use crate::event::Time;
use crate::view::Views;
use parse::Statement;
use plan::{Catalog, ViewPlan};
use types::Column;

/// What is wrong with a statement, and where (line and column from 1; 0 when unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// What is wrong, naming the culprit.
    pub message: String,
    /// The line of the culprit.
    pub line: u64,
    /// Its column.
    pub column: u64,
}

impl SqlError {
    /// An error at a position.
    pub fn new(message: impl Into<String>, line: u64, column: u64) -> SqlError {
        SqlError {
            message: message.into(),
            line,
            column,
        }
    }

    /// The parser's error, with the position it names taken out of its text.
    fn from_parser(e: sqlparser::parser::ParserError) -> SqlError {
        let text = match e {
            sqlparser::parser::ParserError::ParserError(t)
            | sqlparser::parser::ParserError::TokenizerError(t) => t,
            other => other.to_string(),
        };
        let (message, line, column) = match text.rsplit_once(" at Line: ") {
            Some((message, at)) => {
                let mut parts = at.split(", Column: ");
                let line = parts
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                let column = parts
                    .next()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(0);
                (message.to_string(), line, column)
            }
            None => (text, 0, 0),
        };
        SqlError::new(format!("syntax error: {message}"), line, column)
    }

    /// The same error, with a hint appended.
    pub fn context(mut self, hint: &str) -> SqlError {
        self.message = format!("{} ({hint})", self.message);
        self
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for SqlError {}

/// SQL views over the events of type `E` (the source `E::NAME`), as a [`Pipeline`].
pub struct SqlViews<E> {
    views: Vec<ViewPlan>,
    event: PhantomData<fn() -> E>,
}

impl<E: SqlSource> SqlViews<E> {
    /// The views that `text` (`;`-separated `CREATE VIEW` statements) defines, planned; the
    /// first error stops it, and nothing is defined.
    pub fn new(text: &str) -> Result<SqlViews<E>, SqlError> {
        let mut views = SqlViews {
            views: Vec::new(),
            event: PhantomData,
        };
        views.define(text)?;
        Ok(views)
    }

    /// Adds the views of `text` (all of them or, on an error, none).
    pub fn define(&mut self, text: &str) -> Result<(), SqlError> {
        let mut planned = self.views.clone();
        for statement in parse::parse(text)? {
            match statement {
                Statement::CreateView {
                    name,
                    or_replace,
                    query,
                    sql,
                } => {
                    if name.eq_ignore_ascii_case(E::NAME) {
                        return Err(SqlError::new(
                            format!(
                                "{name} is a source: a view needs another name (it is reserved)"
                            ),
                            0,
                            0,
                        ));
                    }
                    let existing = planned
                        .iter()
                        .position(|v| v.name.eq_ignore_ascii_case(&name));
                    if existing.is_some() && !or_replace {
                        return Err(SqlError::new(
                            format!(
                                "a view named {name} already exists (CREATE OR REPLACE VIEW replaces it)"
                            ),
                            0,
                            0,
                        ));
                    }
                    let sources = [(E::NAME.to_string(), E::columns())];
                    let known: Vec<(String, Vec<Column>)> = planned
                        .iter()
                        .filter(|v| !v.name.eq_ignore_ascii_case(&name))
                        .map(|v| (v.name.clone(), v.body.columns.clone()))
                        .collect();
                    let catalog = Catalog {
                        sources: &sources,
                        views: &known,
                    };
                    let view = plan::plan_view(&catalog, &name, &sql, &query)?;
                    match existing {
                        Some(i) => planned[i] = view,
                        None => planned.push(view),
                    }
                }
                Statement::DropView { name, if_exists } => {
                    match planned
                        .iter()
                        .position(|v| v.name.eq_ignore_ascii_case(&name))
                    {
                        Some(i) => {
                            planned.remove(i);
                        }
                        None if if_exists => {}
                        None => {
                            return Err(SqlError::new(format!("unknown view {name}"), 0, 0));
                        }
                    }
                }
                Statement::Select(_) => {
                    return Err(SqlError::new(
                        "a plain SELECT is an ad-hoc query, not a view: write CREATE VIEW name AS SELECT ...",
                        0,
                        0,
                    ));
                }
            }
        }
        self.views = planned;
        Ok(())
    }

    /// The planned views, in definition order.
    pub fn views(&self) -> &[ViewPlan] {
        &self.views
    }

    /// Builds every view over `events`, registering each in `views`.
    pub fn build_over<'s>(&self, events: VecCollection<'s, Time, E>, views: &mut Views<'s>) {
        let rows = events.map(|e| e.row());
        let mut inputs = render::Inputs {
            sources: vec![rows],
            views: Vec::new(),
        };
        for view in &self.views {
            let rows = render::render(&view.body.plan, &inputs);
            register::register(view, rows.clone(), views);
            inputs.views.push((view.name.clone(), rows));
        }
    }
}

impl<E: SqlSource> Pipeline for SqlViews<E> {
    type Event = E;

    fn build<'s>(&self, events: VecCollection<'s, Time, E>, views: &mut Views<'s>) {
        self.build_over(events, views);
    }
}

/// A pipeline's own views and SQL views over its events, served side by side.
pub struct WithSql<P: Pipeline> {
    /// The typed pipeline.
    pub pipeline: P,
    /// The SQL views.
    pub sql: SqlViews<P::Event>,
}

impl<P> Pipeline for WithSql<P>
where
    P: Pipeline,
    P::Event: SqlSource,
{
    type Event = P::Event;

    fn build<'s>(&self, events: VecCollection<'s, Time, P::Event>, views: &mut Views<'s>) {
        self.pipeline.build(events.clone(), views);
        self.sql.build_over(events, views);
    }
}
