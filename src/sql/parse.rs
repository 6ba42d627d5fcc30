//! Parsing: SQL text to statements, with `sqlparser` and DuckDB's dialect.
//!
//! lambdaflow takes three statements: `CREATE [OR REPLACE] VIEW name AS SELECT ...`,
//! `DROP VIEW [IF EXISTS] name` and a plain `SELECT` (an ad-hoc query). Anything else is
//! refused here, with the statement's position.

use sqlparser::ast::{self, ObjectType, Spanned};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use super::SqlError;
use super::bind::error_at;

/// One statement lambdaflow runs.
#[derive(Debug)]
pub enum Statement {
    /// `CREATE [OR REPLACE] VIEW name AS query`.
    CreateView {
        /// The view's name.
        name: String,
        /// Whether it may replace a view of that name.
        or_replace: bool,
        /// Its query.
        query: Box<ast::Query>,
        /// The statement's text, as lambdaflow keeps it.
        sql: String,
    },
    /// `DROP VIEW [IF EXISTS] name`.
    DropView {
        /// The view's name.
        name: String,
        /// Whether a missing view is fine.
        if_exists: bool,
    },
    /// A `SELECT`, answered once.
    Select(Box<ast::Query>),
}

/// Parses `;`-separated statements.
pub fn parse(text: &str) -> Result<Vec<Statement>, SqlError> {
    let statements = Parser::parse_sql(&DuckDbDialect {}, text).map_err(SqlError::from_parser)?;
    statements.into_iter().map(statement).collect()
}

fn statement(s: ast::Statement) -> Result<Statement, SqlError> {
    match s {
        ast::Statement::CreateView(view) => {
            if view.materialized {
                return Err(error_at(
                    &view.name,
                    "CREATE MATERIALIZED VIEW is not supported: every lambdaflow view is maintained; write CREATE VIEW",
                ));
            }
            if !view.columns.is_empty() {
                return Err(error_at(
                    &view.name,
                    "CREATE VIEW name(columns) is not supported: name the columns with AS in the SELECT",
                ));
            }
            let sql = ast::Statement::CreateView(view.clone()).to_string();
            Ok(Statement::CreateView {
                name: object_name(&view.name)?,
                or_replace: view.or_replace,
                query: view.query,
                sql,
            })
        }
        ast::Statement::Drop {
            object_type: ObjectType::View,
            if_exists,
            names,
            ..
        } => match names.as_slice() {
            [name] => Ok(Statement::DropView {
                name: object_name(name)?,
                if_exists,
            }),
            _ => Err(SqlError::new("DROP VIEW takes one view at a time", 0, 0)),
        },
        ast::Statement::Query(query) => Ok(Statement::Select(query)),
        other => {
            let text = other.to_string();
            let head: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let start = other.span().start;
            Err(SqlError::new(
                format!(
                    "{head} is not supported: lambdaflow takes CREATE VIEW, CREATE OR REPLACE VIEW, DROP VIEW and SELECT"
                ),
                start.line,
                start.column,
            ))
        }
    }
}

fn object_name(name: &ast::ObjectName) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(ident)] => Ok(ident.value.clone()),
        _ => Err(error_at(
            name,
            format!("{name}: a view's name is one identifier"),
        )),
    }
}
