//! Subscriptions: `GET /subscribe/{view}`, a view's changes as Server-Sent Events.
//!
//! A subscriber first gets a consistent snapshot of the view (event `snapshot`, as of a time),
//! then every change after it in time order (events `change`: `{"key", "value", "time",
//! "diff"}`), so that folding the changes into the snapshot gives the view:
//!
//! * keyed views follow their changelog; in a windowed view a row is only told once its window
//!   is final, so a snapshot row of a window still open is retracted (an extra `change` with
//!   `diff: -1`) just before its final value is told;
//! * ranked views are told by rank: the key is the position (`"1"`, `"2"`, ...), re-read
//!   whenever the view they rank changes. The hub keeps the rankings it told
//!   ([`Changelog::told_ranking`](crate::changelog::Changelog::told_ranking)), so a
//!   subscriber resumes from the one it had even where the arrangement is compacted past it.
//!
//! Every event carries an `id:` (`{time}-{index}`); a subscriber that reconnects with
//! `Last-Event-ID` gets exactly the changes after it while the changelog still holds them, and
//! a 410 saying so when it does not. The changelog outlives a restart (its journal in the data
//! directory), so an id from before one resumes alike; only when the journal lacks what the
//! replay told at its own (coarse) times is it refused (`changelog_restarted`). A subscriber
//! that falls behind gets an `error` event and is dropped; when the server shuts down, every
//! subscription ends.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query as UrlQuery, State as Shared};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::read::{ReadParams, ReadTime, ask};
use super::{AppState, State, error, unavailable};
use crate::answer::{AnswerValue, Query};
use crate::changelog::ChangeBatch;
use crate::event::{Event, Time};
use crate::view::{ViewInfo, ViewKind};

/// A place in a changelog: after the change `index` of the batch of `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    time: Time,
    index: u32,
}

impl Position {
    /// Just before everything at `as_of` and later: where a snapshot as of `as_of` leaves off.
    fn before(as_of: Time) -> Position {
        Position {
            time: as_of.saturating_sub(1),
            index: u32::MAX,
        }
    }

    fn id(self) -> String {
        format!("{}-{}", self.time, self.index)
    }

    fn parse(text: &str) -> Option<Position> {
        let (time, index) = text.trim().split_once('-')?;
        Some(Position {
            time: time.parse().ok()?,
            index: index.parse().ok()?,
        })
    }
}

type Events = Vec<Result<SseEvent, Infallible>>;

fn change_event(position: Option<Position>, data: Value) -> Result<SseEvent, Infallible> {
    let event = SseEvent::default().event("change").data(data.to_string());
    Ok(match position {
        Some(p) => event.id(p.id()),
        None => event,
    })
}

fn lagged(missed: u64) -> Events {
    let message = format!(
        "this subscriber fell {missed} change batches behind and was dropped; subscribe again"
    );
    let data = json!({"error": {"code": "lagged", "message": message}});
    vec![Ok(SseEvent::default()
        .event("error")
        .data(data.to_string()))]
}

fn gone(view: &str, after: Time, forgotten: Time) -> Response {
    error(
        StatusCode::GONE,
        "changelog_gone",
        format!(
            "the changelog of {view} no longer holds the changes after time {after} (it has let go up to {forgotten}): subscribe again without Last-Event-ID for a snapshot"
        ),
    )
}

fn restarted(view: &str, after: Position, exact_from: Time) -> Response {
    error(
        StatusCode::GONE,
        "changelog_restarted",
        format!(
            "the server restarted after event {} of {view}, and its changelog journal does not hold the changes before time {exact_from}, where the replay of history ends: they are not told again; subscribe again without Last-Event-ID for a snapshot",
            after.id()
        ),
    )
}

pub(super) async fn subscribe<E: Event>(
    Shared(state): AppState<E>,
    Path(view): Path<String>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<ReadParams>,
) -> Response {
    let Some(info) = state
        .client
        .catalog()
        .iter()
        .find(|v| v.name == view)
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_view",
            format!("no view is named {view:?}"),
        );
    };
    if !state.changelogs_kept {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "changelogs_off",
            "changelogs are off: start the server with --changelog",
        );
    }
    if !state.ready() {
        return unavailable(
            "replaying",
            "replaying history; try again when /ready says so",
            1,
        );
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|text| Position::parse(text).ok_or(text.to_string()));
    let last = match last {
        Some(Err(text)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_event_id",
                format!("Last-Event-ID {text:?} is not an id this server gave"),
            );
        }
        Some(Ok(position)) => Some(position),
        None => None,
    };
    match info.kind {
        ViewKind::Keyed => keyed(state, info, last, params.as_of).await,
        ViewKind::Ranked => ranked(state, info, last, params.as_of).await,
    }
}

/// Where a keyed subscription is.
struct Keyed {
    receiver: Option<Receiver<Arc<ChangeBatch>>>,
    backlog: VecDeque<Arc<ChangeBatch>>,
    after: Position,
    /// Snapshot rows of a windowed view not yet changed: retracted before their final value.
    open: HashMap<String, Value>,
}

impl Keyed {
    /// The events of one batch: its changes after the position, each with its id.
    fn events(&mut self, batch: &ChangeBatch) -> Events {
        let mut events = Vec::new();
        let mut retracted = std::collections::HashSet::new();
        for (index, change) in batch.changes.iter().enumerate() {
            let position = Position {
                time: batch.time,
                index: index as u32,
            };
            if (position.time, position.index) <= (self.after.time, self.after.index) {
                continue;
            }
            if change.diff < 0 {
                retracted.insert(change.key.clone());
                self.open.remove(&change.key);
            } else if let Some(old) = self.open.remove(&change.key)
                && !retracted.contains(&change.key)
            {
                let data =
                    json!({"key": change.key, "value": old, "time": change.time, "diff": -1});
                events.push(change_event(None, data));
            }
            events.push(change_event(Some(position), json!(change)));
        }
        events
    }

    async fn next(&mut self) -> Option<Events> {
        loop {
            if let Some(batch) = self.backlog.pop_front() {
                return Some(self.events(&batch));
            }
            match self.receiver.as_mut()?.recv().await {
                Ok(batch) if batch.time <= self.after.time && self.after.index == u32::MAX => {
                    continue;
                }
                Ok(batch) => return Some(self.events(&batch)),
                Err(RecvError::Lagged(missed)) => {
                    self.receiver = None;
                    return Some(lagged(missed));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

async fn keyed<E: Event>(
    state: Arc<State<E>>,
    info: ViewInfo,
    last: Option<Position>,
    as_of: Option<Time>,
) -> Response {
    let view = info.name.clone();
    let (snapshot, after, open) = match last {
        Some(position) => (None, position, HashMap::new()),
        None => {
            // At least as of the newest watermark this process knows of.
            let as_of = as_of.unwrap_or_else(|| state.watermark());
            let answer = match ask(&state, Query::all(&view), ReadTime::AtLeast(Some(as_of))).await
            {
                Ok(answer) => answer,
                Err(response) => return response,
            };
            let rendered = tokio::task::spawn_blocking(move || match &answer.value {
                AnswerValue::Rows(rows) => (answer.as_of, rows.render()),
                _ => (answer.as_of, Vec::new()),
            })
            .await;
            let Ok((as_of, rows)) = rendered else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "rendering failed",
                );
            };
            let open: HashMap<String, Value> = if info.windowed {
                rows.iter().cloned().collect()
            } else {
                HashMap::new()
            };
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|(key, value)| json!({"key": key, "value": value}))
                .collect();
            let position = Position::before(as_of);
            let data = json!({"view": view, "as_of": as_of, "rows": rows});
            let event = SseEvent::default()
                .event("snapshot")
                .id(position.id())
                .data(data.to_string());
            (Some(event), position, open)
        }
    };
    // The batches before `known` are the subscriber's: they must be this run's.
    let known = if after.index == u32::MAX {
        after.time.saturating_add(1)
    } else {
        after.time
    };
    if known < state.changelog.exact_from() && !state.changelog.resumes_before(&view) {
        return restarted(&view, after, state.changelog.exact_from());
    }
    let (kept, receiver) = match state.changelog.resume(&view, after.time) {
        Ok(resumed) => resumed,
        Err(forgotten) => return gone(&view, after.time, forgotten),
    };
    let subscription = Keyed {
        receiver: Some(receiver),
        backlog: kept.into(),
        after,
        open,
    };
    let changes = futures_util::stream::unfold(subscription, |mut s| async move {
        let events = s.next().await?;
        Some((futures_util::stream::iter(events), s))
    })
    .flatten();
    respond(&state, snapshot, changes)
}

fn respond<E: Event>(
    state: &State<E>,
    snapshot: Option<SseEvent>,
    changes: impl futures_util::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
) -> Response {
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let stream = futures_util::stream::iter(snapshot.map(Ok))
        .chain(changes)
        .take_until(stopped);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A ranking as rows keyed by rank, `"1"` first.
fn ranks(list: &[Value]) -> Vec<(String, Value)> {
    list.iter()
        .enumerate()
        .map(|(i, entry)| ((i + 1).to_string(), entry.clone()))
        .collect()
}

/// Where a ranked subscription is.
struct Ranked<E: Event> {
    state: Arc<State<E>>,
    view: String,
    receiver: Option<Receiver<Arc<ChangeBatch>>>,
    /// Changes of the ranked view already kept when subscribing: re-read once.
    pending: bool,
    told: Vec<Value>,
    time: Time,
}

impl<E: Event> Ranked<E> {
    async fn next(&mut self) -> Option<Events> {
        loop {
            // Wait for the ranked view to change, then take every change already there.
            let mut latest = None;
            if !self.pending {
                match self.receiver.as_mut()?.recv().await {
                    Ok(batch) => latest = Some(batch.time),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
            self.pending = false;
            while let Some(receiver) = self.receiver.as_mut() {
                match receiver.try_recv() {
                    Ok(batch) => latest = latest.max(Some(batch.time)),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            let at_least = latest.unwrap_or(self.time).max(self.time).saturating_add(1);
            let query = Query::all(&self.view);
            let Ok(answer) = ask(&self.state, query, ReadTime::AtLeast(Some(at_least))).await
            else {
                return None;
            };
            let AnswerValue::Ranked(list) = answer.value else {
                return None;
            };
            let time = answer.as_of.saturating_sub(1);
            self.time = time;
            let as_of = answer.as_of;
            let mut events = Vec::new();
            let width = self.told.len().max(list.len());
            let mut index = 0u32;
            for rank in 0..width {
                let (old, new) = (self.told.get(rank), list.get(rank));
                if old == new {
                    continue;
                }
                let key = (rank + 1).to_string();
                for (entry, diff) in [(old, -1), (new, 1)] {
                    if let Some(entry) = entry {
                        let position = Position { time, index };
                        index += 1;
                        let data = json!({"key": key, "value": entry, "time": time, "diff": diff});
                        events.push(change_event(Some(position), data));
                    }
                }
            }
            self.told = list;
            if !events.is_empty() {
                // Kept before it is told, for a subscriber resuming from these events.
                self.state
                    .changelog
                    .told_ranking(&self.view, as_of, &self.told);
                return Some(events);
            }
        }
    }
}

/// Ranked view `view`'s ranking read at `time`: the time it is as of and its rows; `Err` with
/// the answer if it could not be read, `Ok(Err)` with an internal error if it is no ranking.
async fn ranking<E: Event>(
    state: &Arc<State<E>>,
    view: &str,
    time: ReadTime,
) -> Result<Result<(Time, Vec<Value>), Response>, Response> {
    let answer = ask(state, Query::all(view), time).await?;
    Ok(match answer.value {
        AnswerValue::Ranked(list) => Ok((answer.as_of, list)),
        _ => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "not a ranking",
        )),
    })
}

async fn ranked<E: Event>(
    state: Arc<State<E>>,
    info: ViewInfo,
    last: Option<Position>,
    as_of: Option<Time>,
) -> Response {
    let view = info.name.clone();
    let Some(base) = info.ranks.clone() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a ranking of no view",
        );
    };
    // Resuming starts from the ranking the subscriber had (as of its last change): as the hub
    // kept it when it was told (across a restart too), or read again exactly.
    let (as_of, list) = match last {
        Some(position) => {
            let as_of = position.time.saturating_add(1);
            match state.changelog.ranking(&view, as_of) {
                Some(rows) => (as_of, rows.to_vec()),
                None => match ranking(&state, &view, ReadTime::Exactly(as_of)).await {
                    Ok(Ok(read)) => read,
                    Ok(Err(response)) => return response,
                    Err(_) => return gone(&view, position.time, 0),
                },
            }
        }
        None => {
            let time = ReadTime::AtLeast(Some(as_of.unwrap_or_else(|| state.watermark())));
            match ranking(&state, &view, time).await {
                Ok(Ok(read)) => read,
                Ok(Err(response)) | Err(response) => return response,
            }
        }
    };
    let after = as_of.saturating_sub(1);
    // The base view's batches after it must be this run's, or the journaled ones.
    if let Some(position) = last
        && as_of < state.changelog.exact_from()
        && !state.changelog.resumes_before(&base)
    {
        return restarted(&view, position, state.changelog.exact_from());
    }
    let (kept, receiver) = match state.changelog.resume(&base, after) {
        Ok(resumed) => resumed,
        Err(forgotten) => return gone(&view, after, forgotten),
    };
    let snapshot = last.is_none().then(|| {
        let rows: Vec<Value> = ranks(&list)
            .into_iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let data = json!({"view": view, "as_of": as_of, "rows": rows});
        SseEvent::default()
            .event("snapshot")
            .id(Position::before(as_of).id())
            .data(data.to_string())
    });
    if last.is_none() {
        state.changelog.told_ranking(&view, as_of, &list);
    }
    let subscription = Ranked {
        state: state.clone(),
        view,
        receiver: Some(receiver),
        pending: !kept.is_empty(),
        told: list,
        time: after,
    };
    let changes = futures_util::stream::unfold(subscription, |mut s| async move {
        let events = s.next().await?;
        Some((futures_util::stream::iter(events), s))
    })
    .flatten();
    respond(&state, snapshot, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        let p = Position {
            time: 1_767_300_000_000,
            index: 3,
        };
        assert_eq!(Position::parse(&p.id()), Some(p));
        assert_eq!(Position::parse("x-1"), None);
        assert_eq!(Position::parse("12"), None);
        let before = Position::before(100);
        assert_eq!((before.time, before.index), (99, u32::MAX));
    }
}
