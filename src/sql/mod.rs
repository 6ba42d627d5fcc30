//! SQL views: DuckDB's SQL, maintained incrementally by differential dataflow.
//!
//! The contract: **a SQL view's rows equal what DuckDB returns for the same `SELECT` over the
//! same events**, at every `as_of`. A view is text, turned into a dataflow in four stages, one
//! module each:
//!
//! 1. [`parse`]: `sqlparser` with DuckDB's dialect reads the statements;
//! 2. [`plan`] (with `from` for sources and joins, `bind` for expressions, `functions` and
//!    `aggregates` for calls): names are resolved against the sources and earlier views, types
//!    inferred as DuckDB does, and the query becomes a logical plan of relational operators;
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

mod aggregates;
mod bind;
pub mod expr;
mod from;
mod functions;
mod key;
pub mod parse;
pub mod plan;
mod predicate;
mod register;
pub mod render;
mod schema;
mod source;
pub mod time;
pub mod types;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use differential_dataflow::VecCollection;

pub use register::{answer_rows, write_answer_rows};
pub use schema::{Schema, SourceDef};
pub use source::{Record, SqlSource, Table};

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

/// SQL views over the events of type `E` (the tables of `E`, or of a [`Schema`]), as a
/// [`Pipeline`].
pub struct SqlViews<E> {
    /// The sources the views read.
    tables: Arc<Vec<Table>>,
    views: Vec<ViewPlan>,
    /// Registers only this view (the others are its inputs), if set.
    serve: Option<String>,
    event: PhantomData<fn() -> E>,
}

impl<E> Clone for SqlViews<E> {
    fn clone(&self) -> Self {
        SqlViews {
            tables: self.tables.clone(),
            views: self.views.clone(),
            serve: self.serve.clone(),
            event: PhantomData,
        }
    }
}

/// What one statement changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A view was defined.
    Created(String),
    /// A view got a new definition.
    Replaced(String),
    /// A view was removed.
    Dropped(String),
}

impl<E: SqlSource> SqlViews<E> {
    /// The views that `text` (`;`-separated `CREATE VIEW` statements) defines, planned; the
    /// first error stops it, and nothing is defined.
    pub fn new(text: &str) -> Result<SqlViews<E>, SqlError> {
        SqlViews::over(E::tables(), text)
    }

    /// The views that `text` defines over the sources `tables` (for [`Record`]s, a
    /// [`Schema`]'s [`tables`](Schema::tables)).
    pub fn over(tables: Vec<Table>, text: &str) -> Result<SqlViews<E>, SqlError> {
        let mut views = SqlViews {
            tables: Arc::new(tables),
            views: Vec::new(),
            serve: None,
            event: PhantomData,
        };
        views.define(text)?;
        Ok(views)
    }

    /// The sources the views read.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Runs the statements of `text` (all of them or, on an error, none), and says what each
    /// changed.
    pub fn define(&mut self, text: &str) -> Result<Vec<Change>, SqlError> {
        let mut next = self.clone();
        let mut changes = Vec::new();
        for statement in parse::parse(text)? {
            changes.push(next.apply(statement)?);
        }
        *self = next;
        Ok(changes)
    }

    /// Runs one statement.
    fn apply(&mut self, statement: Statement) -> Result<Change, SqlError> {
        match statement {
            Statement::CreateView {
                name,
                or_replace,
                query,
                sql,
            } => {
                if self
                    .tables
                    .iter()
                    .any(|(t, _)| name.eq_ignore_ascii_case(t))
                {
                    return Err(SqlError::new(
                        format!("{name} is a source: a view needs another name (it is reserved)"),
                        0,
                        0,
                    ));
                }
                let existing = self.position(&name);
                if existing.is_some() && !or_replace {
                    return Err(SqlError::new(
                        format!(
                            "a view named {name} already exists (CREATE OR REPLACE VIEW replaces it)"
                        ),
                        0,
                        0,
                    ));
                }
                if existing.is_some() {
                    self.refuse_if_read(&name, "replace")?;
                }
                let known: Vec<(String, Vec<Column>)> = self
                    .views
                    .iter()
                    .filter(|v| !v.name.eq_ignore_ascii_case(&name))
                    .map(|v| (v.name.clone(), v.body.columns.clone()))
                    .collect();
                let catalog = Catalog {
                    sources: &self.tables,
                    views: &known,
                };
                let view = plan::plan_view(&catalog, &name, &sql, &query)?;
                Ok(match existing {
                    Some(i) => {
                        self.views[i] = view;
                        Change::Replaced(name)
                    }
                    None => {
                        self.views.push(view);
                        Change::Created(name)
                    }
                })
            }
            Statement::DropView { name, if_exists } => match self.position(&name) {
                Some(i) => {
                    self.refuse_if_read(&name, "drop")?;
                    let name = self.views.remove(i).name;
                    Ok(Change::Dropped(name))
                }
                None if if_exists => Ok(Change::Dropped(name)),
                None => Err(SqlError::new(format!("unknown view {name}"), 0, 0)),
            },
            Statement::Select(_) => Err(SqlError::new(
                "a plain SELECT is an ad-hoc query, not a view: write CREATE VIEW name AS SELECT ...",
                0,
                0,
            )),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.views
            .iter()
            .position(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// A view that others read is neither replaced nor dropped: they would keep reading the
    /// old definition. (Drop or replace the readers first.)
    fn refuse_if_read(&self, name: &str, what: &str) -> Result<(), SqlError> {
        let readers: Vec<&str> = self
            .views
            .iter()
            .filter(|v| v.reads().iter().any(|r| r.eq_ignore_ascii_case(name)))
            .map(|v| v.name.as_str())
            .collect();
        if readers.is_empty() {
            Ok(())
        } else {
            Err(SqlError::new(
                format!(
                    "cannot {what} view {name}: {} read it (drop or replace them first)",
                    readers.join(", ")
                ),
                0,
                0,
            ))
        }
    }

    /// Plans an ad-hoc `SELECT` as a view named `name` over the views defined so far: a
    /// pipeline that serves only it (see [`pipeline_for`](Self::pipeline_for)). `None` when
    /// `text` is not one plain `SELECT`.
    pub fn adhoc(&self, name: &str, text: &str) -> Result<Option<SqlViews<E>>, SqlError> {
        let mut statements = parse::parse(text)?;
        let (1, Some(Statement::Select(query))) = (statements.len(), statements.pop()) else {
            return Ok(None);
        };
        let known: Vec<(String, Vec<Column>)> = self
            .views
            .iter()
            .map(|v| (v.name.clone(), v.body.columns.clone()))
            .collect();
        let catalog = Catalog {
            sources: &self.tables,
            views: &known,
        };
        let view = plan::plan_view(&catalog, name, text, &query)?;
        let mut with = self.clone();
        with.views.push(view);
        Ok(with.pipeline_for(name))
    }

    /// A read that an ad-hoc query's plan (the last view of `pipeline`, from
    /// [`adhoc`](Self::adhoc)) amounts to, if it reads a defined view as it is: the whole view
    /// (`SELECT * FROM v`) or one key of it (`... WHERE key = constant`). Such a query is
    /// answered from the view's arrangement, without a dataflow of its own.
    pub fn direct_read(&self, pipeline: &SqlViews<E>) -> Option<(String, Option<String>)> {
        let query = pipeline.views.last()?;
        if query.ranking.is_some() {
            return None;
        }
        let (name, key) = match &query.body.plan {
            plan::Plan::View(name) => (name, None),
            plan::Plan::Filter(input, expr::Expr::Compare(expr::Cmp::Eq, a, b)) => {
                let plan::Plan::View(name) = input.as_ref() else {
                    return None;
                };
                match (a.as_ref(), b.as_ref()) {
                    (expr::Expr::Column(i), expr::Expr::Literal(d))
                    | (expr::Expr::Literal(d), expr::Expr::Column(i))
                        if !d.is_null() =>
                    {
                        (name, Some((*i, d.clone())))
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        let view = self.views.iter().find(|v| v.name == *name)?;
        if view.ranking.is_some() {
            return None;
        }
        match key {
            None => Some((name.clone(), None)),
            Some((column, value)) if view.key == [column] => {
                // The constant as the key column's type writes it.
                let ty = view.body.columns[column].ty;
                let typed = expr::cast(value, ty);
                (!typed.is_null()).then(|| (name.clone(), Some(typed.to_text())))
            }
            Some(_) => None,
        }
    }

    /// The planned views, in definition order.
    pub fn views(&self) -> &[ViewPlan] {
        &self.views
    }

    /// A pipeline that serves only view `name`, computing the views it reads as its inputs.
    pub fn pipeline_for(&self, name: &str) -> Option<SqlViews<E>> {
        let target = self.views.iter().find(|v| v.name == name)?;
        let mut needed = vec![target.name.clone()];
        let mut i = 0;
        while i < needed.len() {
            if let Some(v) = self.views.iter().find(|v| v.name == needed[i]) {
                for r in v.reads() {
                    if !needed.contains(&r) {
                        needed.push(r);
                    }
                }
            }
            i += 1;
        }
        Some(SqlViews {
            tables: self.tables.clone(),
            views: self
                .views
                .iter()
                .filter(|v| needed.contains(&v.name))
                .cloned()
                .collect(),
            serve: Some(name.to_string()),
            event: PhantomData,
        })
    }

    /// Builds every view over `events`, registering each in `views` (or only the one this
    /// pipeline serves).
    pub fn build_over<'s>(&self, events: VecCollection<'s, Time, E>, views: &mut Views<'s>) {
        let mut inputs = render::Inputs {
            events: events.clone(),
            views: Vec::new(),
            cutter: render::Cutter::new(views.cuts()),
        };
        let read_later: Vec<String> = self.views.iter().flat_map(|v| v.reads()).collect();
        let cuts = views.cuts();
        for view in &self.views {
            let served = self.serve.as_ref().is_none_or(|s| *s == view.name);
            inputs.cutter.start_view(&view.name, &view.sql);
            // Each view behind its own gate: a restore that rebuilds one view replays the
            // history through that view only.
            let (gated, gate) = cuts.gate(events.clone());
            inputs.events = gated;
            // A view that no later view reads is built only as it is served.
            let rows = register::register(
                view,
                &inputs,
                views,
                served,
                read_later.contains(&view.name),
            );
            gate.close();
            if let Some(rows) = rows {
                inputs.views.push((view.name.clone(), rows));
            }
        }
    }
}

impl<E: SqlSource> Pipeline for SqlViews<E> {
    type Event = E;

    fn build<'s>(&self, events: VecCollection<'s, Time, E>, views: &mut Views<'s>) {
        self.build_over(events, views);
    }

    /// Every read of a source is a cut (see `sql::render`).
    fn checkpointed(&self) -> bool {
        true
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
        let (typed, gate) = views.cuts().gate(events.clone());
        self.pipeline.build(typed, views);
        gate.close();
        self.sql.build_over(events, views);
    }

    fn decoder(&self) -> Arc<dyn crate::event::Decode<P::Event>> {
        self.pipeline.decoder()
    }

    fn checkpointed(&self) -> bool {
        self.pipeline.checkpointed()
    }
}
