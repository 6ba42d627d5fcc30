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
//! worker of every process into the process's [`Changelog`] hub, where subscribers
//! (the server's `GET /subscribe/{view}`, `--sink-dir`) read them and a reconnecting one
//! resumes; a journal in the data directory keeps the hub's batches across restarts, so that
//! one resumes after a restart too.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;

use crate::event::Time;
use crate::view::ViewKey;

mod hub;
mod journal;

pub use hub::{
    Changelog, RETAINED_BATCHES, RETAINED_CHANGES, RETAINED_RANKINGS, Resumed, SUBSCRIBER_BACKLOG,
};

/// One row's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// The view.
    pub view: String,
    /// The time that completed.
    pub time: Time,
    /// Sorted by key; each key's changes in the order they happened (a retraction before the
    /// value that replaces it).
    pub changes: Vec<Change>,
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
    if let Some(hub) = &hub {
        hub.attach(view);
    }
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
            // An empty frontier (the dataflow is over) tells no time: the next run's batches
            // come at times after the last one told.
            if collects && let (Some(hub), Some(time)) = (&hub, frontier.first()) {
                hub.advance(&view_name, *time);
            }
        },
    );
}
