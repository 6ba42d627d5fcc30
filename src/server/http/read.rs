//! Reading views over HTTP: one key, one page, or the whole view streamed page by page.
//!
//! * `GET /views/{view}/{key}`: one row (404 if none; 400 if the key cannot be one of the view's).
//! * `GET /views/{view}?limit=N&after=CURSOR`: at most `N` rows in key order and `"next"`, the
//!   cursor to continue from (`null` after the last page). The cursor carries the scan's time,
//!   so every page of one scan is read as of the same time; the view holds that time for
//!   [`PAGE_HOLD`] after each page, after which the cursor has expired (410).
//! * `GET /views/{view}`: every row, in the same JSON shape, streamed: the server reads pages of
//!   [`STREAM_PAGE`] rows and writes each as it comes, so memory stays bounded by a page however
//!   large the view. With `Accept: application/x-ndjson`, one `{"key", "value"}` line per row.
//!
//! Answers are rendered to JSON here, off the dataflow's worker threads. A read whose wait runs
//! out is withdrawn from the dataflow ([`Client::cancel`](crate::engine::Client::cancel)).

use std::convert::Infallible;
use std::fmt::Write as _;

use futures_util::StreamExt;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as UrlQuery, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, State, error, unavailable};
use crate::answer::{Answer, AnswerValue, Query};
use crate::engine::QueryError;
use crate::event::{Event, Time};
use crate::serve::PAGE_HOLD;
use crate::view::ViewKind;

/// How many rows a streamed whole-view read asks for at a time.
pub const STREAM_PAGE: usize = 10_000;

/// The largest page a client may ask for.
pub const MAX_PAGE: usize = 100_000;

/// The page size when `after` is given without `limit`.
const DEFAULT_PAGE: usize = 1_000;

#[derive(Deserialize)]
pub(super) struct ReadParams {
    pub(super) as_of: Option<Time>,
    limit: Option<usize>,
    after: Option<String>,
    /// A key, written as its text (a JSON array for a key of several columns).
    key: Option<String>,
}

/// How a read asks for its time.
#[derive(Clone, Copy)]
pub(super) enum ReadTime {
    /// At least as of this time (or the freshest, `None`).
    AtLeast(Option<Time>),
    /// Exactly as of this time: the next page of a scan.
    Exactly(Time),
}

/// Asks the serving operator and waits for its answer; a wait that runs out withdraws it.
pub(super) async fn ask<E: Event>(
    state: &State<E>,
    query: Query,
    time: ReadTime,
) -> Result<Answer, Response> {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reply = Box::new(move |answer| drop(tx.send(answer)));
    let asked = match time {
        ReadTime::AtLeast(as_of) => state.client.ask(query, as_of, reply),
        ReadTime::Exactly(as_of) => state.client.ask_exactly(query, as_of, reply),
    };
    let ticket = match asked {
        Ok(ticket) => ticket,
        Err(QueryError::UnknownView(view)) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "unknown_view",
                format!("no view is named {view:?}"),
            ));
        }
        Err(e @ QueryError::Backfilling(..)) => {
            return Err(unavailable("backfilling", e.to_string(), 1));
        }
        Err(e) => return Err(unavailable("stopped", e.to_string(), 5)),
    };
    let answer = match tokio::time::timeout(state.query_timeout, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => return Err(unavailable("stopped", "the engine stopped", 5)),
        Err(_) => {
            state.client.cancel(ticket);
            return Err(unavailable(
                "not_complete",
                format!(
                    "the views were not complete as of the time asked within {}; try again later",
                    humantime::format_duration(state.query_timeout)
                ),
                1,
            ));
        }
    };
    state
        .exporter
        .query_latency
        .observe(started.elapsed().as_secs_f64());
    match &answer.value {
        AnswerValue::BadKey(key) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_key",
            format!("{key:?} is not a key of {}", answer.view),
        )),
        AnswerValue::Expired => Err(error(
            StatusCode::GONE,
            "cursor_expired",
            format!(
                "the scan's time is no longer held (it is for {} after each page): start again",
                humantime::format_duration(PAGE_HOLD)
            ),
        )),
        _ => Ok(answer),
    }
}

fn replaying() -> Response {
    unavailable(
        "replaying",
        "replaying history; try again when /ready says so",
        1,
    )
}

pub(super) async fn read_key<E: Event>(
    Shared(state): AppState<E>,
    Path((view, key)): Path<(String, String)>,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    if !state.ready() {
        return replaying();
    }
    read_one(&state, view, key, params.as_of).await
}

/// The row of one key.
async fn read_one<E: Event>(
    state: &State<E>,
    view: String,
    key: String,
    as_of: Option<Time>,
) -> Response {
    let time = ReadTime::AtLeast(as_of);
    let answer = match ask(state, Query::key(&view, &key), time).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    match answer.value {
        AnswerValue::Row {
            value: Some(value), ..
        } => Json(json!({"view": view, "key": key, "value": value, "as_of": answer.as_of}))
            .into_response(),
        AnswerValue::Row { value: None, .. } => error(
            StatusCode::NOT_FOUND,
            "no_row",
            format!("{view} has no row for key {key:?} as of {}", answer.as_of),
        ),
        AnswerValue::Ranked(list) => {
            Json(json!({"view": view, "key": key, "value": list, "as_of": answer.as_of}))
                .into_response()
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a keyed read answered with rows",
        ),
    }
}

/// A page cursor: the scan's time and the last key read, as `{as_of}.{hex of the key's text}`.
pub(super) fn cursor(as_of: Time, key: &str) -> String {
    let mut text = format!("{as_of}.");
    for byte in key.as_bytes() {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn parse_cursor(text: &str) -> Option<(Time, String)> {
    let (as_of, key) = text.split_once('.')?;
    let as_of = as_of.parse().ok()?;
    if key.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect();
    Some((as_of, String::from_utf8(bytes?).ok()?))
}

/// The rows of an answer as JSON: `{"key", "value"}` objects, or for a SQL view the rows
/// themselves (objects with every column; a row that occurs `n` times, `n` times).
fn rows_json(rows: Vec<(String, Value)>, sql: bool) -> Vec<Value> {
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        match value {
            Value::Array(many) if sql => out.extend(many),
            value if sql => out.push(value),
            value => out.push(json!({"key": key, "value": value})),
        }
    }
    out
}

/// Renders an answer's rows on a blocking thread.
async fn render(answer: Answer) -> Result<(Answer, Vec<(String, Value)>), Response> {
    tokio::task::spawn_blocking(move || {
        let rows = match &answer.value {
            AnswerValue::Rows(rows) => rows.render(),
            _ => Vec::new(),
        };
        (answer, rows)
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

pub(super) async fn read_view<E: Event>(
    Shared(state): AppState<E>,
    Path(view): Path<String>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    if !state.ready() {
        return replaying();
    }
    let catalog = state.client.catalog();
    let Some(info) = catalog.iter().find(|v| v.name == view) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_view",
            format!("no view is named {view:?}"),
        );
    };
    let sql = info.sql.is_some();
    if let Some(key) = params.key {
        return read_one(&state, view, key, params.as_of).await;
    }
    if info.kind == ViewKind::Ranked {
        let time = ReadTime::AtLeast(params.as_of);
        let limit = info.limit;
        return match ask(&state, Query::all(&view), time).await {
            Ok(Answer {
                as_of,
                value: AnswerValue::Ranked(list),
                ..
            }) => {
                let list = if sql {
                    let mut rows =
                        rows_json(list.into_iter().map(|v| (String::new(), v)).collect(), true);
                    rows.truncate(limit.unwrap_or(usize::MAX));
                    rows
                } else {
                    list
                };
                Json(json!({"view": view, "as_of": as_of, "rows": list})).into_response()
            }
            Ok(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "a ranked view answered rows",
            ),
            Err(response) => response,
        };
    }
    let lines = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if params.limit.is_some() || params.after.is_some() {
        return read_page(&state, view, params, sql).await;
    }
    stream_view(state.clone(), view, params.as_of, lines, sql).await
}

/// One page of a keyed view.
async fn read_page<E: Event>(
    state: &State<E>,
    view: String,
    params: ReadParams,
    sql: bool,
) -> Response {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        );
    }
    let (time, after) = match params.after.as_deref() {
        None => (ReadTime::AtLeast(params.as_of), None),
        Some(text) => match parse_cursor(text) {
            Some((as_of, key)) => (ReadTime::Exactly(as_of), Some(key)),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_cursor",
                    format!("{text:?} is not a cursor this server gave"),
                );
            }
        },
    };
    let answer = match ask(state, Query::page(&view, after, limit), time).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let (answer, rows) = match render(answer).await {
        Ok(rendered) => rendered,
        Err(response) => return response,
    };
    let next = answer.next.as_deref().map(|k| cursor(answer.as_of, k));
    Json(json!({"view": view, "as_of": answer.as_of, "rows": rows_json(rows, sql), "next": next}))
        .into_response()
}

/// Where a streamed read is.
struct Scan<E: Event> {
    state: std::sync::Arc<State<E>>,
    view: String,
    time: ReadTime,
    after: Option<String>,
    lines: bool,
    /// Whether the view is a SQL view (rows are written as themselves).
    sql: bool,
    /// Rows written so far (for the separators of the JSON array).
    written: u64,
    done: bool,
}

/// The whole view, page by page, as one JSON object or as JSON Lines. The first page is read
/// before the answer starts, so that an error is an ordinary error answer.
async fn stream_view<E: Event>(
    state: std::sync::Arc<State<E>>,
    view: String,
    as_of: Option<Time>,
    lines: bool,
    sql: bool,
) -> Response {
    let query = Query::page(&view, None, STREAM_PAGE);
    let first = match ask(&state, query, ReadTime::AtLeast(as_of)).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let (first, rows) = match render(first).await {
        Ok(rendered) => rendered,
        Err(response) => return response,
    };
    let mut scan = Scan {
        state,
        view,
        time: ReadTime::Exactly(first.as_of),
        after: None,
        lines,
        sql,
        written: 0,
        done: false,
    };
    let mut head = String::new();
    if !lines {
        // `{"as_of":..,"view":..` without its closing brace, then the rows.
        let object = json!({"view": scan.view, "as_of": first.as_of}).to_string();
        head.push_str(&object[..object.len() - 1]);
        head.push_str(",\"rows\":[");
    }
    let first_chunk = scan.write(head, first, rows);
    let rest = futures_util::stream::unfold(scan, |mut scan| async move {
        if scan.done {
            return None;
        }
        let chunk = scan.next_chunk().await;
        Some((Ok::<Bytes, Infallible>(chunk), scan))
    });
    let body =
        futures_util::stream::once(async move { Ok::<Bytes, Infallible>(first_chunk) }).chain(rest);
    let content_type = if lines {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

impl<E: Event> Scan<E> {
    async fn next_chunk(&mut self) -> Bytes {
        let query = Query::page(&self.view, self.after.take(), STREAM_PAGE);
        let answer = match ask(&self.state, query, self.time).await {
            Ok(answer) => render(answer).await.ok(),
            Err(_) => None,
        };
        match answer {
            Some((answer, rows)) => self.write(String::new(), answer, rows),
            None => {
                // Nothing more can be read: end the body (a client sees it cut short).
                tracing::warn!(view = %self.view, "a streamed read ended early");
                self.done = true;
                Bytes::new()
            }
        }
    }

    /// Appends a page's rows to `out`, and the end of the answer after the last page.
    fn write(&mut self, mut out: String, answer: Answer, rows: Vec<(String, Value)>) -> Bytes {
        for row in rows_json(rows, self.sql) {
            let row = row.to_string();
            if !self.lines && self.written > 0 {
                out.push(',');
            }
            out.push_str(&row);
            if self.lines {
                out.push('\n');
            }
            self.written += 1;
        }
        match answer.next {
            Some(next) => self.after = Some(next),
            None => {
                self.done = true;
                if !self.lines {
                    out.push_str("]}");
                }
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_carry_any_key_text() {
        for key in ["42", "2026-01-01", "a.b", "", "ünïcode ☃"] {
            let text = cursor(1_767_300_000_000, key);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
            assert_eq!(
                parse_cursor(&text),
                Some((1_767_300_000_000, key.to_string()))
            );
        }
        assert_eq!(parse_cursor("nope"), None);
        assert_eq!(parse_cursor("12.zz"), None);
        assert_eq!(parse_cursor("12.abc"), None);
    }
}
