//! Serving: answering queries by joining them against the arranged views, inside the dataflow.
//!
//! Queries are a stream like any other. Each query is timestamped with the time it reads
//! ("as of"), travels to the workers that hold its data, waits there until the arrangement's
//! frontier has passed its time, and is answered from the shared trace at exactly that time, so
//! an answer never sees a half-applied time:
//!
//! * a keyed query is exchanged by the hash of its key, the same function that shards the
//!   arrangement, so it meets the one worker that owns the key;
//! * a whole-view query (all rows, or a top-k ranking) is scattered to every worker, each answers
//!   from its own shard, and the partial answers are gathered and combined at the asking worker.
//!
//! The [`serve`] operator is a join of a stream of queries with an arrangement, like
//! differential's `join_core`, but it reads each query's answer once at the query's time rather
//! than maintaining it. [`gather`] collects the partial answers and hands the finished
//! [`Answer`] to whoever asked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
use differential_dataflow::trace::{Navigable, TraceReader};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Antichain;
use timely::progress::frontier::AntichainRef;

use crate::event::{END_OF_TIME, Time};

/// What a query asks of a view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// The row of one key, written as text (it is parsed by the view's key type).
    Key(String),
    /// Every row of the view, or the ranking of a top-k view.
    All,
}

/// A question for one view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The view's registered name.
    pub view: String,
    /// What to read.
    pub lookup: Lookup,
}

impl Query {
    /// A query for one key of a view.
    pub fn key(view: &str, key: impl ToString) -> Query {
        Query {
            view: view.to_string(),
            lookup: Lookup::Key(key.to_string()),
        }
    }

    /// A query for the whole of a view.
    pub fn all(view: &str) -> Query {
        Query {
            view: view.to_string(),
            lookup: Lookup::All,
        }
    }
}

/// The content of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum AnswerValue {
    /// One key's value, `None` when the key has no row.
    Row {
        /// The key as asked.
        key: String,
        /// Its value.
        value: Option<Value>,
    },
    /// Every row, sorted by key.
    Rows(Vec<(String, Value)>),
    /// A ranked list (top-k views).
    Ranked(Vec<Value>),
}

/// An answer, consistent as of one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The view that answered.
    pub view: String,
    /// The answer reflects exactly the updates at times before `as_of`; [`END_OF_TIME`] means
    /// after all input, i.e. final.
    pub as_of: Time,
    /// What was found.
    pub value: AnswerValue,
}

impl Answer {
    /// The answer as one JSON value: a keyed answer's value (or `null`), an object of every
    /// row keyed by its key's text, or the ranked list.
    pub fn to_json(&self) -> Value {
        match &self.value {
            AnswerValue::Row { value, .. } => value.clone().unwrap_or(Value::Null),
            AnswerValue::Rows(rows) => {
                Value::Object(rows.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            AnswerValue::Ranked(list) => Value::Array(list.clone()),
        }
    }

    /// Whether the answer was read after every input ended.
    pub fn is_final(&self) -> bool {
        self.as_of >= END_OF_TIME
    }
}

/// Receives an answer; called once, on the worker thread that took the query.
pub type Reply = Box<dyn FnOnce(Answer) + Send>;

/// A query inside the dataflow, as the asking worker inserted it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueryMsg {
    /// Unique per asking worker.
    pub id: u64,
    /// The asking worker, where the answer is gathered.
    pub origin: usize,
    /// The view's index in the catalog.
    pub view: usize,
    /// The key's text, or `None` for a whole-view query.
    pub key: Option<String>,
    /// The time the query reads.
    pub time: Time,
}

/// A query on its way to a worker that holds (part of) its answer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Routed<K> {
    /// The query.
    pub id: u64,
    /// Where to gather.
    pub origin: usize,
    /// Chooses the serving worker, exactly as the arrangement's exchange does.
    pub route: u64,
    /// The parsed key; `None` for a whole-view query, or a key that cannot exist.
    pub key: Option<K>,
    /// Whether every worker answers (a whole-view query).
    pub scan: bool,
    /// The time the query reads.
    pub time: Time,
}

/// One worker's part of an answer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partial<P> {
    /// The query.
    pub id: u64,
    /// Where to gather.
    pub origin: usize,
    /// How many parts make the whole answer.
    pub parts: usize,
    /// Whether it is a whole-view query.
    pub scan: bool,
    /// The time it read.
    pub time: Time,
    /// The part itself.
    pub payload: P,
}

/// The trace type of every view arrangement.
pub type ViewTrace<K, V, R> = TraceAgent<ValSpine<K, V, Time, R>>;

/// Read access to one worker's shard of a view, at one time.
pub struct Reader<'a, K, V, R>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + Semigroup,
{
    cursor: &'a mut ViewCursor<K, V, R>,
    storage: &'a Vec<ViewBatch<K, V, R>>,
    time: Time,
}

type ViewBatch<K, V, R> = <ValSpine<K, V, Time, R> as TraceReader>::Batch;
type ViewCursor<K, V, R> =
    differential_dataflow::trace::cursor::CursorList<<ViewBatch<K, V, R> as Navigable>::Cursor>;

impl<K, V, R> Reader<'_, K, V, R>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + Semigroup,
{
    /// The values of `key` with their accumulated differences (zero ones left out).
    pub fn get(&mut self, key: &K) -> Vec<(V, R)> {
        // Cursors only seek forward, and one cursor serves every query ready in an activation,
        // in arrival order: start each lookup from the first key.
        self.cursor.rewind_keys(self.storage);
        self.cursor.seek_key(self.storage, key);
        match self.cursor.get_key(self.storage) {
            Some(found) if found == key => self.values(),
            _ => Vec::new(),
        }
    }

    /// Calls `logic` with every key that has a value, in key order.
    pub fn for_each(&mut self, mut logic: impl FnMut(&K, Vec<(V, R)>)) {
        self.cursor.rewind_keys(self.storage);
        while let Some(key) = self.cursor.get_key(self.storage) {
            let key = key.clone();
            let values = self.values();
            if !values.is_empty() {
                logic(&key, values);
            }
            self.cursor.step_key(self.storage);
        }
    }

    fn values(&mut self) -> Vec<(V, R)> {
        let mut values = Vec::new();
        let time = self.time;
        while let Some(val) = self.cursor.get_val(self.storage) {
            let mut sum: Option<R> = None;
            self.cursor.map_times(self.storage, |t, d| {
                if *t <= time {
                    match &mut sum {
                        Some(s) => s.plus_equals(d),
                        None => sum = Some(d.clone()),
                    }
                }
            });
            if let Some(sum) = sum.filter(|s| !s.is_zero()) {
                values.push((val.clone(), sum));
            }
            self.cursor.step_val(self.storage);
        }
        values
    }
}

/// Answers routed queries from one arrangement, each once the arrangement is complete at its
/// time; `read` computes this worker's part of the answer. `on_records` hears how many updates
/// this worker's shard of the trace holds, whenever new batches arrive.
pub fn serve<'s, K, V, R, P, F>(
    queries: Stream<'s, Time, Vec<Routed<K>>>,
    arranged: Arranged<'s, ViewTrace<K, V, R>>,
    name: &str,
    mut read: F,
    mut on_records: impl FnMut(usize) + 'static,
) -> Stream<'s, Time, Vec<Partial<P>>>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + Semigroup,
    P: Clone + 'static,
    F: FnMut(&Routed<K>, &mut Reader<K, V, R>) -> P + 'static,
{
    let peers = queries.scope().peers();
    let mut trace = arranged.trace;
    queries.binary_frontier(
        arranged.stream,
        Exchange::new(|q: &Routed<K>| q.route),
        Pipeline,
        &format!("Serve({name})"),
        move |_cap, _info| {
            let mut pending: Vec<(Capability<Time>, Routed<K>)> = Vec::new();
            let mut upper = Antichain::new();
            move |(queries, query_frontier), (batches, view_frontier), output| {
                queries.for_each(|cap, data| {
                    for q in data.drain(..) {
                        pending.push((cap.delayed(&q.time, 0), q));
                    }
                });
                let mut grew = false;
                batches.for_each(|_, _| grew = true);
                if grew {
                    trace.read_upper(&mut upper);
                    let batches = trace.batches_through(upper.borrow()).unwrap_or_default();
                    on_records(batches.iter().map(|b| SpineBatch::len(&**b)).sum());
                }

                let view_frontier = view_frontier.frontier();
                let ready = |q: &Routed<K>| !view_frontier.less_equal(&q.time);
                if pending.iter().any(|(_, q)| ready(q)) {
                    trace.read_upper(&mut upper);
                    let batches = trace.batches_through(upper.borrow()).unwrap_or_default();
                    let (mut cursor, storage) = cursor_list(batches);
                    pending.retain(|(cap, q)| {
                        if !ready(q) {
                            return true;
                        }
                        let mut reader = Reader {
                            cursor: &mut cursor,
                            storage: &storage,
                            time: q.time,
                        };
                        let payload = read(q, &mut reader);
                        let parts = if q.scan { peers } else { 1 };
                        output.session(cap).give(Partial {
                            id: q.id,
                            origin: q.origin,
                            parts,
                            scan: q.scan,
                            time: q.time,
                            payload,
                        });
                        false
                    });
                }

                // Hold compaction back to the oldest time a query may still read.
                let mut lower: Option<Time> = pending.iter().map(|(_, q)| q.time).min();
                for t in query_frontier.frontier().iter().chain(view_frontier.iter()) {
                    lower = Some(lower.map_or(*t, |l| l.min(*t)));
                }
                let frontier = match lower {
                    Some(t) => Antichain::from_elem(t),
                    None => Antichain::new(),
                };
                compact(&mut trace, frontier.borrow());
            }
        },
    )
}

fn compact<Tr: TraceReader<Time = Time>>(trace: &mut Tr, frontier: AntichainRef<Time>) {
    if trace.get_logical_compaction() != frontier {
        trace.set_logical_compaction(frontier);
        trace.set_physical_compaction(frontier);
    }
}

/// The answers this worker waits for, by query id.
#[derive(Default)]
pub struct Replies {
    waiting: HashMap<u64, (String, Option<String>, Reply)>,
}

impl Replies {
    /// Remembers who asked query `id` about `view` (and which key, for a keyed query).
    pub fn wait(&mut self, id: u64, view: String, key: Option<String>, reply: Reply) {
        self.waiting.insert(id, (view, key, reply));
    }

    /// How many answers are outstanding.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no answer is outstanding.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn answer(&mut self, id: u64, time: Time, combined: Combined) {
        if let Some((view, key, reply)) = self.waiting.remove(&id) {
            let value = match combined {
                Combined::Row(value) => AnswerValue::Row {
                    key: key.unwrap_or_default(),
                    value,
                },
                Combined::Rows(rows) => AnswerValue::Rows(rows),
                Combined::Ranked(list) => AnswerValue::Ranked(list),
            };
            let as_of = time.saturating_add(1).min(END_OF_TIME);
            reply(Answer { view, as_of, value });
        }
    }
}

/// What a view makes of all the parts of one answer.
pub enum Combined {
    /// One key's value.
    Row(Option<Value>),
    /// Every row, sorted by key.
    Rows(Vec<(String, Value)>),
    /// A ranking.
    Ranked(Vec<Value>),
}

/// Gathers the parts of each answer at the asking worker and, once all have arrived, combines
/// them and replies.
pub fn gather<'s, P, F>(
    partials: Stream<'s, Time, Vec<Partial<P>>>,
    replies: Rc<RefCell<Replies>>,
    name: &str,
    mut combine: F,
) where
    P: timely::ExchangeData,
    F: FnMut(bool, Vec<P>) -> Combined + 'static,
{
    let mut parts: HashMap<u64, Vec<P>> = HashMap::new();
    partials.sink(
        Exchange::new(|p: &Partial<P>| p.origin as u64),
        &format!("Gather({name})"),
        move |(input, _frontier)| {
            input.for_each(|_, data| {
                for partial in data.drain(..) {
                    let received = parts.entry(partial.id).or_default();
                    received.push(partial.payload);
                    if received.len() == partial.parts {
                        let received = parts.remove(&partial.id).unwrap_or_default();
                        let combined = combine(partial.scan, received);
                        replies
                            .borrow_mut()
                            .answer(partial.id, partial.time, combined);
                    }
                }
            });
        },
    );
}
