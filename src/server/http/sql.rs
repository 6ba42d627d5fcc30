//! `POST /sql`: statements that create, replace and drop SQL views while the server runs.
//!
//! The body is one or more `;`-separated statements (`Content-Type: application/sql` or
//! `text/plain`). Either all of them run or none: an error answers 400 with the statement's
//! problem and its position (`line`, `column`). A view created or replaced answers at once,
//! in state `backfilling`; `GET /views` shows its progress, and it answers once ready. A plain
//! `SELECT` is answered once: `{"rows": [...], "as_of": T}`, at most `?limit=N` rows, as of
//! `?as_of=T` or later.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State as Shared};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, error, unavailable};
use crate::event::Event;
use crate::server::sql::{Ran, Refusal};

/// `?limit=N&as_of=T` for an ad-hoc `SELECT`.
#[derive(serde::Deserialize)]
pub(super) struct SelectParams {
    limit: Option<usize>,
    as_of: Option<crate::event::Time>,
}

pub(super) async fn post_sql<E: Event>(
    Shared(state): AppState<E>,
    UrlQuery(params): UrlQuery<SelectParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let essence = kind
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/sql" && essence != "text/plain" {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send SQL as application/sql or text/plain, not {kind}"),
        );
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "bad_sql", "the body is not UTF-8");
    };
    let Some(statements) = state.statements.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_sql",
            "this server has no SQL source: its views are compiled in",
        );
    };
    let (limit, as_of) = (params.limit, params.as_of);
    let ran = tokio::task::spawn_blocking(move || statements.run(&text, limit, as_of)).await;
    match ran {
        Ok(Ok(Ran::Changes(outcomes))) => Json(json!({"statements": outcomes})).into_response(),
        Ok(Ok(Ran::Rows { rows, as_of })) => {
            Json(json!({"rows": rows, "as_of": as_of})).into_response()
        }
        Ok(Err(Refusal::Sql(e))) => {
            let body = json!({"error": {
                "code": "bad_sql",
                "message": e.to_string(),
                "line": e.line,
                "column": e.column,
            }});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Ok(Err(Refusal::Unavailable(why))) => unavailable("sql_unavailable", why, 5),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
