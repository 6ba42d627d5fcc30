//! The HTTP API (axum): ingest, source watermarks, view reads, health, readiness, metrics.
//!
//! Every handler is a thin translation: ingest parses the body, appends the accepted events to
//! the master dataset (durable before the answer) and hands them to the speed lane; reads ask
//! the serving operator and wait for its answer without blocking a runtime thread.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Path, Query as UrlQuery, Request, State as Shared,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use super::ServerConfig;

use tokio::sync::{Semaphore, watch};

mod read;
mod sql;
mod subscribe;

use super::dead_letter::DeadLetter;
use super::ingest::{self, FutureLimit};
use super::prometheus::Exporter;
use crate::changelog::Changelog;
use crate::engine::{Checkpointer, Client, Engine};
use crate::event::{Decode, END_OF_TIME, Event, Time};
use crate::live::{LiveSender, SendError, Verdicts};
use crate::metrics::Metrics;

/// What every handler shares.
pub struct State<E: Event> {
    changelog: Arc<Changelog>,
    changelogs_kept: bool,
    live: LiveSender<E>,
    client: Client,
    metrics: Arc<Metrics>,
    exporter: Exporter,
    token: Option<String>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    query_timeout: std::time::Duration,
    max_future: FutureLimit,
    ingest: Arc<Semaphore>,
    dead_letter: Arc<DeadLetter>,
    /// Turns true when the server shuts down: subscriptions end.
    shutdown: watch::Receiver<bool>,
    max_body_bytes: usize,
    /// Runs `POST /sql`, on servers with a SQL source.
    statements: Option<Arc<dyn crate::server::sql::Statements>>,
    /// Reads the lines of `POST /events` (and names the sources of `POST /events/{source}`).
    decoder: Arc<dyn Decode<E>>,
    /// Takes `POST /checkpoint`'s checkpoints, unless they are off.
    checkpointer: Option<Checkpointer<E>>,
}

impl<E: Event> State<E> {
    pub(super) fn new(
        config: &ServerConfig,
        engine: &Engine<E>,
        (live, decoder): (LiveSender<E>, Arc<dyn Decode<E>>),
        exporter: Exporter,
        dead_letter: Arc<DeadLetter>,
        shutdown: watch::Receiver<bool>,
        statements: Option<Arc<dyn crate::server::sql::Statements>>,
    ) -> Self {
        let (changelog, client, metrics) = (engine.changelog(), engine.client(), engine.metrics());
        State {
            changelog,
            changelogs_kept: config.settings.changelog || config.sink_dir.is_some(),
            live,
            client,
            metrics,
            exporter,
            token: config.token.clone(),
            limiter: config
                .rate_limit
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            query_timeout: config.query_timeout,
            max_future: config.max_future,
            ingest: Arc::new(Semaphore::new(config.max_ingest_requests.max(1))),
            dead_letter,
            shutdown,
            max_body_bytes: config.max_body_bytes,
            statements,
            decoder,
            checkpointer: engine.checkpointer(),
        }
    }

    /// Whether history is replayed: reads and ingest go on (views created since may still be
    /// backfilling: `/ready` waits for them too).
    fn ready(&self) -> bool {
        self.metrics.replayed.load(Ordering::Relaxed)
    }

    fn watermark(&self) -> Time {
        Metrics::get(&self.metrics.frontier).min(END_OF_TIME)
    }

    /// Forgets rate-limit state of clients not seen lately, so it stays bounded.
    pub(super) fn forget_idle_clients(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

type AppState<E> = Shared<Arc<State<E>>>;

/// The routes, with authentication and rate limiting in front of them, and every error as
/// JSON.
pub fn router<E: Event>(state: Arc<State<E>>, max_body_bytes: usize) -> Router {
    let ingest = Router::new()
        .route("/events", post(post_events::<E>))
        .route("/events/{source}", post(post_source_events::<E>))
        .layer(middleware::from_fn_with_state(state.clone(), admit::<E>));
    Router::new()
        .merge(ingest)
        .route("/watermark", post(post_watermark::<E>))
        .route("/checkpoint", post(post_checkpoint::<E>))
        .route("/sql", post(sql::post_sql::<E>))
        .route("/views", get(list_views::<E>))
        .route("/views/{view}", get(read::read_view::<E>))
        .route("/views/{view}/{key}", get(read::read_key::<E>))
        .route("/metrics", get(metrics::<E>))
        .route("/late", get(late::<E>))
        .route("/subscribe/{view}", get(subscribe::subscribe::<E>))
        .layer(middleware::from_fn_with_state(state.clone(), guard::<E>))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready::<E>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, Json(body)).into_response()
}

/// A 503 that says when to try again.
fn unavailable(code: &str, message: impl Into<String>, retry_after: u64) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after.into());
    response
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// Turns the answers the framework makes itself (a bad query string or path, 405, 413, ...)
/// into the same JSON error shape as every other error.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut answer = error(status, code, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Admission to `POST /events`: a bounded number of requests at a time, and none while the
/// workers' backlog is full (503 with `Retry-After`; nothing of the request is taken). Checked
/// before the body is read.
async fn admit<E: Event>(Shared(state): AppState<E>, request: Request, next: Next) -> Response {
    // A body announced larger than the limit is refused before a byte of it is read.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.max_body_bytes as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than the limit of {} bytes (--max-body)",
                state.max_body_bytes
            ),
        );
    }
    if !state.ready() {
        return unavailable(
            "replaying",
            "replaying history; try again when /ready says so",
            1,
        );
    }
    if state.live.is_full() {
        Metrics::add(&state.metrics.ingest_refused, 1);
        return unavailable(
            "backlog_full",
            "the workers' backlog is full; nothing was taken, retry later",
            1,
        );
    }
    let Ok(_permit) = state.ingest.clone().try_acquire_owned() else {
        Metrics::add(&state.metrics.ingest_refused, 1);
        return unavailable(
            "busy",
            "too many ingest requests in progress; nothing was taken, retry later",
            1,
        );
    };
    next.run(request).await
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
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    let limited = state
        .limiter
        .as_ref()
        .and_then(|l| l.check_key(&client_key(peer.ip())).err());
    if let Some(not_until) = limited {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.max(1).into());
        return response;
    }
    next.run(request).await
}

async fn ready<E: Event>(Shared(state): AppState<E>) -> Response {
    if state.metrics.views_ready.load(Ordering::Relaxed) {
        Json(json!({"ready": true})).into_response()
    } else {
        let body = json!({
            "ready": false,
            "replayed_bytes": Metrics::get(&state.metrics.history_bytes),
            "replayed_events": Metrics::get(&state.metrics.history_events),
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `/metrics`: OpenMetrics for a scraper that asks for it, else the Prometheus text format.
async fn metrics<E: Event>(Shared(state): AppState<E>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (
            [(header::CONTENT_TYPE, content_type)],
            state.exporter.render(),
        )
            .into_response()
    } else {
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        (
            [(header::CONTENT_TYPE, content_type)],
            state.exporter.render_text(),
        )
            .into_response()
    }
}

/// How a body of events is written.
enum BodyFormat {
    JsonLines,
    JsonArray,
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::JsonLines);
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson"
        | "application/jsonl"
        | "application/jsonlines"
        | "application/x-jsonlines"
        | "text/plain"
        | "" => Ok(BodyFormat::JsonLines),
        "application/json" => Ok(BodyFormat::JsonArray),
        other => Err(format!(
            "content-type {other:?} is not taken: send application/x-ndjson (JSON Lines) or application/json (an array)"
        )),
    }
}

async fn post_events<E: Event>(
    Shared(state): AppState<E>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decoder = state.decoder.clone();
    ingest_body(state, headers, body, decoder).await
}

/// `POST /events/{source}`: rows of one declared source.
async fn post_source_events<E: Event>(
    Shared(state): AppState<E>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match state.decoder.source(&source) {
        Some(decoder) => ingest_body(state, headers, body, decoder).await,
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_source",
            format!("no source named {source:?} (run --schema declares sources)"),
        ),
    }
}

/// Parses, judges and stores a body of events read by `decoder`.
async fn ingest_body<E: Event>(
    state: Arc<State<E>>,
    headers: HeaderMap,
    body: Bytes,
    decoder: Arc<dyn Decode<E>>,
) -> Response {
    let format = match body_format(&headers) {
        Ok(format) => format,
        Err(message) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            );
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the body is empty: send JSON Lines or a JSON array of events",
        );
    }
    // Parsing, judging and storing run to completion on a blocking thread, even if the client
    // goes away: a request is taken whole or not at all.
    let limit = state.max_future;
    let task = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let batch = match format {
                BodyFormat::JsonArray => ingest::json_array(&body, &*decoder, limit)?,
                BodyFormat::JsonLines => ingest::json_lines(&body, &*decoder, limit),
            };
            let events = batch.events;
            let sent = if events.is_empty() {
                Ok(Verdicts::default())
            } else {
                state.live.try_send_sized(events)
            };
            Ok::<_, String>((batch.rejected, batch.rejected_total, sent))
        })
    };
    let (rejected, rejected_total, sent) = match task.await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, "not_an_array", message),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    Metrics::add(&state.metrics.rejected, rejected_total);
    let verdicts = match sent {
        Ok(verdicts) => verdicts,
        Err(SendError::Backlog) => {
            Metrics::add(&state.metrics.ingest_refused, 1);
            return unavailable(
                "backlog_full",
                "the workers' backlog is full; nothing was taken, retry later",
                1,
            );
        }
        Err(SendError::Stopped) => {
            return unavailable("stopped", "the engine stopped; nothing was taken", 5);
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not_stored",
                e.to_string(),
            );
        }
    };
    let accepted = verdicts.on_time + verdicts.corrected + verdicts.dropped;
    let status = if accepted == 0 && rejected_total > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = json!({
        "accepted": accepted,
        "late": {"corrected": verdicts.corrected, "dropped": verdicts.dropped},
        "rejected": rejected,
        "rejected_total": rejected_total,
        "watermark": verdicts.watermark,
    });
    (status, Json(body)).into_response()
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
        "dropped_total": state.dead_letter.total(),
        "recent": state.dead_letter.recent(limit),
        // False while the drops recorded before this start are still being read (after a
        // restore from a checkpoint, in the background).
        "complete": state.ready() && state.metrics.drops_reported.load(Ordering::Relaxed),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct WatermarkBody {
    ts: Time,
}

/// Takes a checkpoint now and answers once it is durable.
async fn post_checkpoint<E: Event>(Shared(state): AppState<E>) -> Response {
    if !state.ready() {
        return unavailable(
            "replaying",
            "replaying history; a checkpoint can be taken once /ready says so",
            1,
        );
    }
    let Some(checkpointer) = state.checkpointer.clone() else {
        return error(
            StatusCode::CONFLICT,
            "checkpoints_off",
            "this server takes no checkpoints (--checkpoint-interval off)",
        );
    };
    match tokio::task::spawn_blocking(move || checkpointer.take()).await {
        Ok(Ok(taken)) => Json(json!(taken)).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "checkpoint_failed", e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "checkpoint_failed",
            e.to_string(),
        ),
    }
}

async fn post_watermark<E: Event>(Shared(state): AppState<E>, body: Bytes) -> Response {
    if !state.ready() {
        return unavailable(
            "replaying",
            "replaying history; try again when /ready says so",
            1,
        );
    }
    let ts = match serde_json::from_slice::<WatermarkBody>(&body) {
        Ok(WatermarkBody { ts }) => ts,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_watermark",
                format!("expected {{\"ts\": T}} with T a non-negative integer: {e}"),
            );
        }
    };
    if let Err(message) = state.max_future.check(ts) {
        let message = message.replacen("ts is", "the watermark is", 1);
        return error(StatusCode::BAD_REQUEST, "too_far_ahead", message);
    }
    if ts > END_OF_TIME {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_watermark",
            "ts must not be above 2^53",
        );
    }
    let live = state.live.clone();
    match tokio::task::spawn_blocking(move || live.watermark(ts)).await {
        Ok(Ok(visible)) => Json(json!({
            "declared": ts,
            "visible_as_of": visible,
            "watermark": state.watermark(),
        }))
        .into_response(),
        Ok(Err(SendError::Journal(e))) => error(StatusCode::INTERNAL_SERVER_ERROR, "not_stored", e),
        _ => unavailable("stopped", "the engine stopped", 5),
    }
}

async fn list_views<E: Event>(Shared(state): AppState<E>) -> Response {
    Json(json!({"views": state.client.views()})).into_response()
}

/// The rate limiter's key for a client: its IPv4 address, or the /64 network of an IPv6 one
/// (one host can hold a whole /64), so that its state stays bounded by the clients there are.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}
