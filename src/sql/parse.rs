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
    let text = window_tables(text);
    let statements = Parser::parse_sql(&DuckDbDialect {}, &text).map_err(SqlError::from_parser)?;
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

/// Flink writes a window table function's input as `TUMBLE(TABLE bid, ...)`, and a session's
/// partition as `SESSION(TABLE bid PARTITION BY bidder, ...)`, neither of which sqlparser
/// reads: the `TABLE` keyword right after `TUMBLE(`, `HOP(` or `SESSION(` is dropped, and
/// `t PARTITION BY k` (or `PARTITION BY (k1, k2)`) becomes the arguments `t, PARTITIONED(k)`
/// (a position after them on that line is then a few columns off in a message).
fn window_tables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, session)) = find_window_call(rest) {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let trimmed = tail.trim_start();
        let keyword = trimmed.len() >= 6 && trimmed[..5].eq_ignore_ascii_case("table");
        if keyword && trimmed[5..].starts_with(|c: char| c.is_whitespace()) {
            out.push_str(&tail[..tail.len() - trimmed.len()]);
            rest = trimmed[5..].trim_start();
        } else {
            rest = tail;
        }
        if session && let Some((table, keys, after)) = session_partition(rest) {
            out.push_str(table);
            out.push_str(", PARTITIONED(");
            out.push_str(keys);
            out.push(')');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `t PARTITION BY k` or `t PARTITION BY (k1, k2)` at the start of `text`: the table, the
/// keys, and what follows them.
fn session_partition(text: &str) -> Option<(&str, &str, &str)> {
    let word = |s: &str| {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"'))
            .unwrap_or(s.len())
    };
    let table_end = word(text);
    let (table, after_table) = text.split_at(table_end);
    let rest = after_table.trim_start();
    let by = rest
        .get(..9)
        .filter(|w| w.eq_ignore_ascii_case("partition"))
        .map(|_| rest[9..].trim_start())?;
    let keys = by
        .get(..2)
        .filter(|w| w.eq_ignore_ascii_case("by"))
        .map(|_| by[2..].trim_start())?;
    if table.is_empty() {
        return None;
    }
    if let Some(inner) = keys.strip_prefix('(') {
        let close = inner.find(')')?;
        Some((table, &inner[..close], &inner[close + 1..]))
    } else {
        let end = keys.find([',', ')']).unwrap_or(keys.len());
        Some((table, keys[..end].trim_end(), &keys[end..]))
    }
}

/// Where the arguments of the next `TUMBLE(`, `HOP(` or `SESSION(` begin, and whether it is a
/// `SESSION`.
fn find_window_call(text: &str) -> Option<(usize, bool)> {
    let upper = text.to_ascii_uppercase();
    ["TUMBLE", "HOP", "SESSION"]
        .iter()
        .filter_map(|name| {
            let mut from = 0;
            while let Some(i) = upper[from..].find(name) {
                let start = from + i;
                let before = upper[..start].chars().next_back();
                let after = upper[start + name.len()..].trim_start();
                let word = before.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
                if word && after.starts_with('(') {
                    let paren = upper.len() - after.len();
                    return Some((paren + 1, *name == "SESSION"));
                }
                from = start + name.len();
            }
            None
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_window_tables_lose_their_table_keyword() {
        assert_eq!(
            window_tables("FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(t), INTERVAL '1' SECOND))"),
            "FROM TABLE(TUMBLE(bid, DESCRIPTOR(t), INTERVAL '1' SECOND))"
        );
        assert_eq!(
            window_tables("hop (  table b, x) and tumble(tablet)"),
            "hop (  b, x) and tumble(tablet)"
        );
        assert_eq!(
            window_tables("SELECT tumbled FROM t"),
            "SELECT tumbled FROM t"
        );
        assert_eq!(
            window_tables("TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(t), g))"),
            "TABLE(SESSION(bid, PARTITIONED(bidder), DESCRIPTOR(t), g))"
        );
        assert_eq!(
            window_tables("SESSION(bid partition by (a, b), DESCRIPTOR(t), g)"),
            "SESSION(bid, PARTITIONED(a, b), DESCRIPTOR(t), g)"
        );
        assert_eq!(
            window_tables("SESSION(bid, DESCRIPTOR(t), g)"),
            "SESSION(bid, DESCRIPTOR(t), g)"
        );
    }
}
