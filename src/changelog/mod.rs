//! Changelogs: every view's changes, in time order, once each time is final.
//!
//! A view's changelog is *accumulating and retracting* (the Dataflow model's term): when the
//! frontier passes a time, every row that time changed is emitted as a retraction of the value
//! subscribers knew (`diff: -1`) and the new value (`diff: +1`). Folding the changelog from the
//! start gives the view. A view may say when each of its rows becomes final (a window's end):
//! such a row is emitted once the frontier passes that point, and afterwards only a late-data
//! correction emits it again (a retraction plus the corrected row).
//!
//! Changes are computed on the worker that owns the key, broadcast, and collected by the first
//! worker of every process into the process's [`Changelog`] hub, where subscribers (the
//! server's `GET /subscribe/{view}`, `--sink-dir`) read them through bounded channels: a
//! subscriber that falls behind is dropped rather than allowed to grow memory. The hub keeps
//! the latest batches of every view ([`RETAINED_BATCHES`], [`RETAINED_CHANGES`]), so that a
//! subscriber that reconnects resumes after the last change it saw ([`Changelog::resume`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use differential_dataflow::difference::Semigroup;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;
use tokio::sync::broadcast;

use crate::event::Time;
use crate::view::ViewKey;

/// How many change batches a subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_BACKLOG: usize = 4_096;

/// How many of its latest change batches each view's changelog keeps for resuming subscribers.
pub const RETAINED_BATCHES: usize = 4_096;

/// At most this many changes are kept in them (older batches go first).
pub const RETAINED_CHANGES: usize = 1 << 20;

/// One row's change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// The row's key, as text.
    pub key: String,
    /// The row's value (the old one for a retraction).
    pub value: Value,
    /// The time whose completion emitted it.
    pub time: Time,
    /// `-1`: the row no longer has this value; `+1`: it now has it.
    pub diff: i8,
}

/// The changes of one view that one completed time emitted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChangeBatch {
    /// The view.
    pub view: String,
    /// The time that completed.
    pub time: Time,
    /// Sorted by key; each key's changes in the order they happened (a retraction before the
    /// value that replaces it).
    pub changes: Vec<Change>,
}

/// One view's changelog: the channel to its subscribers, and its latest batches.
struct ViewLog {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
    recent: VecDeque<Arc<ChangeBatch>>,
    changes: usize,
    /// The time of the latest batch no longer kept.
    forgotten: Option<Time>,
}

impl ViewLog {
    fn new() -> Self {
        ViewLog {
            sender: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            recent: VecDeque::new(),
            changes: 0,
            forgotten: None,
        }
    }
}

/// The change batches after a position, and a receiver for the ones that follow.
pub type Resumed = (Vec<Arc<ChangeBatch>>, broadcast::Receiver<Arc<ChangeBatch>>);

/// The changelogs of one process: a bounded broadcast channel per view, and its latest batches.
#[derive(Default)]
pub struct Changelog {
    views: Mutex<HashMap<String, ViewLog>>,
    /// The first time whose batches are the same in every run of the engine: those before it
    /// are its replay's, at the replay's own (coarse) times, unlike a previous run's.
    exact_from: std::sync::atomic::AtomicU64,
}

impl Changelog {
    fn with<T>(&self, view: &str, f: impl FnOnce(&mut ViewLog) -> T) -> Option<T> {
        let mut views = self.views.lock().ok()?;
        Some(f(views
            .entry(view.to_string())
            .or_insert_with(ViewLog::new)))
    }

    /// Receives the view's change batches from now on; a receiver that falls more than
    /// [`SUBSCRIBER_BACKLOG`] batches behind gets `Lagged` and should be dropped.
    pub fn subscribe(&self, view: &str) -> Option<broadcast::Receiver<Arc<ChangeBatch>>> {
        self.with(view, |log| log.sender.subscribe())
    }

    /// Batches of times from `time` on are those of every run over the same events: the replay
    /// of history is over (see [`exact_from`](Self::exact_from)).
    pub fn set_exact_from(&self, time: Time) {
        self.exact_from
            .fetch_max(time, std::sync::atomic::Ordering::Relaxed);
    }

    /// The first time whose batches every run of the engine publishes alike. A subscriber that
    /// knows the batches before a time below it (a position from before a restart, whose replay
    /// published its batches at other times) cannot resume from that position.
    pub fn exact_from(&self) -> Time {
        self.exact_from.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The view's batches of times after `after` that are still kept, and a receiver for the
    /// later ones, taken together so that none is missed or seen twice; `Err` with the latest
    /// time no longer kept if batches after `after` were forgotten. `None`: no changelog.
    pub fn resume(&self, view: &str, after: Time) -> Option<Result<Resumed, Time>> {
        self.with(view, |log| {
            if let Some(forgotten) = log.forgotten
                && forgotten > after
            {
                return Err(forgotten);
            }
            let kept = log
                .recent
                .iter()
                .filter(|b| b.time > after)
                .cloned()
                .collect();
            Ok((kept, log.sender.subscribe()))
        })
    }

    fn publish(&self, batch: ChangeBatch) {
        let batch = Arc::new(batch);
        self.with(&batch.view.clone(), |log| {
            log.changes += batch.changes.len();
            log.recent.push_back(batch.clone());
            while log.recent.len() > RETAINED_BATCHES
                || (log.changes > RETAINED_CHANGES && log.recent.len() > 1)
            {
                if let Some(old) = log.recent.pop_front() {
                    log.changes -= old.changes.len();
                    log.forgotten = Some(old.time);
                }
            }
            // No subscriber is not an error.
            let _ = log.sender.send(batch);
        });
    }
}

/// A change on its way from the worker owning the key to every process's hub.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Wire {
    time: Time,
    key: String,
    /// The value as JSON text (JSON values do not travel through bincode).
    value: String,
    diff: i8,
}

/// A worker's shard of a view, as its changelog knows it.
struct Rows<K, V, R> {
    /// The accumulated values of each key.
    values: HashMap<K, Vec<(V, R)>>,
    /// The value subscribers were last told, per key.
    published: HashMap<K, Value>,
    render: Render<K, V, R>,
}

impl<K: ViewKey, V: ExchangeData, R: ExchangeData + Semigroup> Rows<K, V, R> {
    /// Applies one time's updates; returns the keys they changed, sorted.
    fn apply(&mut self, updates: Vec<((K, V), R)>) -> Vec<K> {
        let mut changed = Vec::with_capacity(updates.len());
        for ((k, v), r) in updates {
            let row = self.values.entry(k.clone()).or_default();
            match row.iter_mut().find(|(v2, _)| *v2 == v) {
                Some((_, sum)) => sum.plus_equals(&r),
                None => row.push((v, r)),
            }
            row.retain(|(_, sum)| !sum.is_zero());
            row.sort_by(|a, b| a.0.cmp(&b.0));
            changed.push(k);
        }
        changed.sort();
        changed.dedup();
        changed
    }

    /// Tells subscribers a key's row changed (retraction, then the new value), if it did.
    fn emit(&mut self, k: K, time: Time, mut give: impl FnMut(Wire)) {
        let row = self.values.get(&k).filter(|row| !row.is_empty());
        let now = row.and_then(|row| (self.render)(&k, row));
        if row.is_none() {
            self.values.remove(&k);
        }
        let before = self.published.get(&k);
        if before == now.as_ref() {
            return;
        }
        let key = k.key_text();
        if let Some(old) = before {
            give(Wire {
                time,
                key: key.clone(),
                value: old.to_string(),
                diff: -1,
            });
        }
        match now {
            Some(new) => {
                give(Wire {
                    time,
                    key,
                    value: new.to_string(),
                    diff: 1,
                });
                self.published.insert(k, new);
            }
            None => {
                self.published.remove(&k);
            }
        }
    }
}

/// Emits the waiting rows whose window has ended (`still_open(end)` false), labelled `time`.
fn release<K: ViewKey, V: ExchangeData, R: ExchangeData + Semigroup>(
    waiting: &mut BTreeMap<Time, Vec<K>>,
    rows: &mut Rows<K, V, R>,
    time: Time,
    still_open: impl Fn(Time) -> bool,
    give: &mut impl FnMut(Wire),
) {
    while let Some(entry) = waiting.first_entry() {
        if still_open(*entry.key()) {
            break;
        }
        let mut keys = entry.remove();
        keys.sort();
        keys.dedup();
        for k in keys {
            rows.emit(k, time, &mut *give);
        }
    }
}

/// How a view renders a key's accumulated values as the JSON value of its row.
pub type Render<K, V, R> = Arc<dyn Fn(&K, &[(V, R)]) -> Option<Value> + Send + Sync>;

/// A time's pending updates, with the capability to emit their changes.
type Pending<K, V, R> = BTreeMap<Time, (Capability<Time>, Vec<((K, V), R)>)>;

/// When each row of a view becomes final: the first time its value can no longer change but
/// by late data (a window's end). Shared with the view's registration.
pub type Finality<K> = Rc<RefCell<Option<Box<dyn Fn(&K) -> Time>>>>;

/// Builds the changelog of one view from its pre-aggregated updates.
pub fn changelog<'s, K, V, R>(
    updates: VecCollection<'s, Time, (K, V), R>,
    view: &str,
    render: Render<K, V, R>,
    finality: Finality<K>,
    hub: Option<Arc<Changelog>>,
    local_workers: usize,
) where
    K: ViewKey,
    V: ExchangeData + std::hash::Hash,
    R: ExchangeData + Semigroup,
{
    let view_name = view.to_string();
    let changes = updates.inner.unary_frontier(
        Exchange::new(|((k, _), _, _): &((K, V), Time, R)| k.hashed()),
        &format!("Changelog({view})"),
        move |_cap, _info| {
            let mut pending: Pending<K, V, R> = BTreeMap::new();
            let mut rows = Rows {
                values: HashMap::new(),
                published: HashMap::new(),
                render,
            };
            // Keys changed but not yet final, by the time they become final, and a capability
            // (at the earliest time not complete when last seen) to emit them with.
            let mut waiting: BTreeMap<Time, Vec<K>> = BTreeMap::new();
            let mut hold: Option<Capability<Time>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for ((k, v), t, r) in data.drain(..) {
                        pending
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                            .1
                            .push(((k, v), r));
                    }
                });
                let frontier = frontier.frontier();
                let open = |end: Time| frontier.less_equal(&end.saturating_sub(1));
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, updates)) = entry.remove_entry();
                    let mut session = output.session(&cap);
                    // Rows whose window ended by this time are final as they stand, before
                    // this time's updates (which can then only be corrections).
                    release(&mut waiting, &mut rows, time, |end| end > time, &mut |w| {
                        session.give(w)
                    });
                    let mut ready = Vec::new();
                    for k in rows.apply(updates) {
                        match finality.borrow().as_ref().map(|end| end(&k)) {
                            Some(end) if end > time + 1 => waiting.entry(end).or_default().push(k),
                            _ => ready.push(k),
                        }
                    }
                    for k in ready {
                        rows.emit(k, time, |w| session.give(w));
                    }
                    drop(session);
                    if !waiting.is_empty() && hold.as_ref().is_none_or(|h| *h.time() > time) {
                        hold = Some(cap.clone());
                    }
                }
                if let Some(cap) = hold.take() {
                    // Each window's rows, labelled with the last time of the window.
                    while let Some(end) = waiting
                        .first_key_value()
                        .map(|(end, _)| *end)
                        .filter(|end| !open(*end))
                    {
                        let label = cap.delayed(&(end - 1).max(*cap.time()));
                        let mut session = output.session(&label);
                        release(
                            &mut waiting,
                            &mut rows,
                            *label.time(),
                            |e| e > end,
                            &mut |w| session.give(w),
                        );
                    }
                    hold = match (waiting.is_empty(), frontier.iter().next()) {
                        (false, Some(t)) => Some(cap.delayed(t.max(cap.time()))),
                        _ => None,
                    };
                }
            }
        },
    );
    // Every process's first worker collects the changes, per time, in time order.
    let mut batches: BTreeMap<Time, Vec<Wire>> = BTreeMap::new();
    let collects = changes.scope().index() % local_workers.max(1) == 0;
    changes.broadcast().sink(
        Pipeline,
        &format!("Publish({view_name})"),
        move |(input, frontier)| {
            input.for_each(|_, data| {
                if collects {
                    for wire in data.drain(..) {
                        batches.entry(wire.time).or_default().push(wire);
                    }
                }
            });
            let frontier = frontier.frontier();
            while let Some(entry) = batches.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (time, mut wires) = entry.remove_entry();
                // Stable: a key's changes keep the order its worker emitted them in.
                wires.sort_by(|a, b| a.key.cmp(&b.key));
                let changes = wires
                    .into_iter()
                    .map(|w| Change {
                        key: w.key,
                        value: serde_json::from_str(&w.value).unwrap_or(Value::Null),
                        time,
                        diff: w.diff,
                    })
                    .collect();
                if let Some(hub) = &hub {
                    hub.publish(ChangeBatch {
                        view: view_name.clone(),
                        time,
                        changes,
                    });
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_that_falls_behind_is_told_and_nothing_grows() {
        let hub = Changelog::default();
        let mut slow = hub.subscribe("v").expect("subscribed");
        for time in 0..(SUBSCRIBER_BACKLOG as u64 + 10) {
            hub.publish(ChangeBatch {
                view: "v".into(),
                time,
                changes: Vec::new(),
            });
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        // It resumes at the oldest batch still kept: the backlog is bounded.
        assert_eq!(slow.try_recv().map(|b| b.time).ok(), Some(10));
    }

    #[test]
    fn a_subscriber_resumes_after_a_time_while_it_is_kept() {
        let hub = Changelog::default();
        let batch = |time| ChangeBatch {
            view: "v".into(),
            time,
            changes: Vec::new(),
        };
        for time in 0..10 {
            hub.publish(batch(time));
        }
        let (kept, mut receiver) = hub.resume("v", 6).expect("a changelog").expect("kept");
        assert_eq!(
            kept.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        hub.publish(batch(10));
        assert_eq!(
            receiver.try_recv().map(|b| b.time).ok(),
            Some(10),
            "no gap, no repeat"
        );
        for time in 11..(11 + RETAINED_BATCHES as u64) {
            hub.publish(batch(time));
        }
        assert_eq!(
            hub.resume("v", 6).expect("a changelog").err(),
            Some(10),
            "what was let go of cannot be resumed after"
        );
        assert!(hub.resume("v", 10).expect("a changelog").is_ok());
    }
}
