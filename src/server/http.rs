//! The HTTP API (axum): ingest, source watermarks, view reads, health, readiness, metrics.
//!
//! Every handler is a thin translation: ingest parses the body, appends the accepted events to
//! the master dataset (durable before the answer) and hands them to the speed lane; reads ask
//! the serving operator and wait for its answer without blocking a runtime thread.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Path, Query as UrlQuery, Request, State as Shared,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ServerConfig;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use super::dead_letter::DeadLetter;
use super::ingest;
use super::prometheus::Exporter;
use crate::changelog::Changelog;
use crate::engine::{Client, LiveSender, QueryError};
use crate::event::{END_OF_TIME, Event, Time};
use crate::master::MasterDataset;
use crate::metrics::Metrics;
use crate::serve::{Answer, AnswerValue, Query};
use crate::view::ViewKind;

/// What every handler shares.
pub struct State<E: Event> {
    changelog: Arc<Changelog>,
    changelogs_kept: bool,
    master: Arc<MasterDataset<E>>,
    live: LiveSender<E>,
    client: Client,
    metrics: Arc<Metrics>,
    exporter: Exporter,
    workers: u64,
    token: Option<String>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    query_timeout: std::time::Duration,
    dead_letter: Arc<DeadLetter>,
}

impl<E: Event> State<E> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &ServerConfig,
        changelog: Arc<Changelog>,
        master: Arc<MasterDataset<E>>,
        live: LiveSender<E>,
        client: Client,
        metrics: Arc<Metrics>,
        exporter: Exporter,
        dead_letter: Arc<DeadLetter>,
    ) -> Self {
        State {
            changelog,
            changelogs_kept: config.settings.changelog || config.sink_dir.is_some(),
            master,
            live,
            client,
            metrics,
            exporter,
            workers: config.cluster.workers as u64,
            token: config.token.clone(),
            limiter: config
                .rate_limit
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            query_timeout: config.query_timeout,
            dead_letter,
        }
    }

    fn ready(&self) -> bool {
        Metrics::get(&self.metrics.replayed_workers) >= self.workers
    }

    fn watermark(&self) -> Time {
        Metrics::get(&self.metrics.frontier).min(END_OF_TIME)
    }
}

type AppState<E> = Shared<Arc<State<E>>>;

/// The routes, with authentication and rate limiting in front of them.
pub fn router<E: Event>(state: Arc<State<E>>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/events", post(post_events::<E>))
        .route("/watermark", post(post_watermark::<E>))
        .route("/views", get(list_views::<E>))
        .route("/views/{view}", get(read_view::<E>))
        .route("/views/{view}/{key}", get(read_key::<E>))
        .route("/metrics", get(metrics::<E>))
        .route("/late", get(late::<E>))
        .route("/subscribe/{view}", get(subscribe::<E>))
        .layer(middleware::from_fn_with_state(state.clone(), guard::<E>))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready::<E>))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Bearer token and per-client rate limit.
async fn guard<E: Event>(
    Shared(state): AppState<E>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        }
    }
    let limited = state
        .limiter
        .as_ref()
        .and_then(|l| l.check_key(&peer.ip()).err());
    if let Some(not_until) = limited {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.max(1).into());
        return response;
    }
    next.run(request).await
}

async fn ready<E: Event>(Shared(state): AppState<E>) -> Response {
    if state.ready() {
        Json(json!({"ready": true})).into_response()
    } else {
        let done = Metrics::get(&state.metrics.replayed_workers);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "workers_replayed": done, "workers": state.workers})),
        )
            .into_response()
    }
}

async fn metrics<E: Event>(Shared(state): AppState<E>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.exporter.render(),
    )
        .into_response()
}

async fn post_events<E: Event>(
    Shared(state): AppState<E>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "replaying history; try again when /ready says so",
        );
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is empty: send JSON Lines or a JSON array of events",
        );
    }
    let is_array = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = tokio::task::spawn_blocking(move || {
        if is_array {
            ingest::json_array::<E>(&body)
        } else {
            Ok(ingest::json_lines::<E>(&body))
        }
    })
    .await;
    let batch = match parsed {
        Ok(Ok(batch)) => batch,
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    Metrics::add(&state.metrics.rejected, batch.rejected_total);
    let events = batch.events;
    let accepted = events.len();
    if accepted > 0 {
        let appended = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.master.append(&events).map(|_| events)).await
        };
        match appended {
            Ok(Ok(events)) => {
                for event in events {
                    state.live.send(event);
                }
            }
            Ok(Err(e)) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("not stored, nothing accepted: {e}"),
                );
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    Json(json!({
        "accepted": accepted,
        "rejected": batch.rejected,
        "rejected_total": batch.rejected_total,
        "watermark": state.watermark(),
    }))
    .into_response()
}

/// Server-Sent Events: a consistent snapshot of the view (event `snapshot`), then every change
/// from its `as_of` on, in time order (events `change`: `{"key", "value", "time", "diff"}`).
/// `?as_of=T` starts from a snapshot reflecting at least every event before `T`.
/// A subscriber that falls behind gets an `error` event and is dropped.
async fn subscribe<E: Event>(
    Shared(state): AppState<E>,
    Path(view): Path<String>,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    let keyed = state
        .client
        .catalog()
        .iter()
        .any(|v| v.name == view && v.kind == ViewKind::Keyed);
    if !keyed {
        return error(
            StatusCode::NOT_FOUND,
            format!("no keyed view is named {view:?}"),
        );
    }
    if !state.changelogs_kept {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "changelogs are off: start the server with --changelog",
        );
    }
    let Some(changes) = state.changelog.subscribe(&view) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the changelog is unavailable",
        );
    };
    // The snapshot is as of the requested time, or at least the newest watermark this process
    // knows of, and the changes follow from there.
    let as_of = params.as_of.unwrap_or_else(|| state.watermark());
    let answer = match ask(&state, Query::all(&view), Some(as_of)).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let rows: Vec<Value> = match answer.value {
        AnswerValue::Rows(rows) => rows
            .into_iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect(),
        _ => Vec::new(),
    };
    let snapshot = SseEvent::default()
        .event("snapshot")
        .data(json!({"view": view, "as_of": answer.as_of, "rows": rows}).to_string());
    let as_of = answer.as_of;
    let changes = futures_util::stream::unfold(Some(changes), move |receiver| async move {
        let mut receiver = receiver?;
        loop {
            match receiver.recv().await {
                Ok(batch) if batch.time < as_of => continue,
                Ok(batch) => {
                    let events: Vec<Result<SseEvent, Infallible>> = batch
                        .changes
                        .iter()
                        .map(|c| Ok(SseEvent::default().event("change").data(json!(c).to_string())))
                        .collect();
                    return Some((futures_util::stream::iter(events), Some(receiver)));
                }
                Err(RecvError::Lagged(missed)) => {
                    let message = format!("this subscriber fell {missed} change batches behind and was dropped; subscribe again");
                    let event = SseEvent::default().event("error").data(json!({"error": message}).to_string());
                    return Some((futures_util::stream::iter(vec![Ok(event)]), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .flatten();
    let stream =
        futures_util::stream::once(async move { Ok::<_, Infallible>(snapshot) }).chain(changes);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct LateParams {
    limit: Option<usize>,
}

/// The most recent late events left out (policy `drop`, or beyond the maximum lateness).
async fn late<E: Event>(
    Shared(state): AppState<E>,
    UrlQuery(params): UrlQuery<LateParams>,
) -> Response {
    let limit = params.limit.unwrap_or(100).min(super::dead_letter::RECENT);
    Json(json!({
        "dropped_total": Metrics::get(&state.metrics.late_dropped),
        "recent": state.dead_letter.recent(limit),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct WatermarkBody {
    ts: Time,
}

async fn post_watermark<E: Event>(Shared(state): AppState<E>, body: Bytes) -> Response {
    match serde_json::from_slice::<WatermarkBody>(&body) {
        Ok(WatermarkBody { ts }) if ts <= END_OF_TIME => {
            let live = state.live.clone();
            match tokio::task::spawn_blocking(move || live.watermark(ts)).await {
                Ok(Some(visible)) => Json(json!({
                    "declared": ts,
                    "visible_as_of": visible,
                    "watermark": state.watermark(),
                }))
                .into_response(),
                _ => error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped"),
            }
        }
        Ok(_) => error(StatusCode::BAD_REQUEST, "ts must not be above 2^53"),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"ts\": T}}: {e}"),
        ),
    }
}

async fn list_views<E: Event>(Shared(state): AppState<E>) -> Response {
    Json(json!({"views": state.client.catalog()})).into_response()
}

#[derive(Deserialize)]
struct ReadParams {
    as_of: Option<Time>,
}

/// Asks the serving operator and waits for its answer.
async fn ask<E: Event>(
    state: &State<E>,
    query: Query,
    as_of: Option<Time>,
) -> Result<Answer, Response> {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    match state
        .client
        .ask(query, as_of, Box::new(move |answer| drop(tx.send(answer))))
    {
        Ok(()) => {}
        Err(QueryError::UnknownView(view)) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                format!("no view is named {view:?}"),
            ));
        }
        Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
    let answer = match tokio::time::timeout(state.query_timeout, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped")),
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the watermark did not pass as_of within {:?}",
                    state.query_timeout
                ),
            ));
        }
    };
    state
        .exporter
        .query_latency
        .observe(started.elapsed().as_secs_f64());
    Ok(answer)
}

async fn read_key<E: Event>(
    Shared(state): AppState<E>,
    Path((view, key)): Path<(String, String)>,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    let answer = match ask(&state, Query::key(&view, &key), params.as_of).await {
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
            format!("{view} has no row for key {key:?} as of {}", answer.as_of),
        ),
        AnswerValue::Ranked(list) => {
            Json(json!({"view": view, "key": key, "value": list, "as_of": answer.as_of}))
                .into_response()
        }
        AnswerValue::Rows(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a keyed read answered with rows",
        ),
    }
}

async fn read_view<E: Event>(
    Shared(state): AppState<E>,
    Path(view): Path<String>,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    let answer = match ask(&state, Query::all(&view), params.as_of).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let rows: Vec<Value> = match answer.value {
        AnswerValue::Rows(rows) => rows
            .into_iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect(),
        AnswerValue::Ranked(list) => list,
        AnswerValue::Row { .. } => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "a whole-view read answered one row",
            );
        }
    };
    Json(json!({"view": view, "as_of": answer.as_of, "rows": rows})).into_response()
}
