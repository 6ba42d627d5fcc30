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
//! * a page (at most N rows after a cursor key) is scattered too: each worker reads its first N
//!   keys after the cursor, and the asking worker merges them and keeps the first N. Every page of
//!   one scan reads the scan's time, which stays readable ([`PAGE_HOLD`]) after each page.
//!
//! The [`serve`] operator is a join of a stream of queries with an arrangement, like
//! differential's `join_core`, but it reads each query's answer once at the query's time rather
//! than maintaining it. [`gather`](crate::answer::gather) collects the partial answers and hands
//! the finished [`Answer`](crate::answer::Answer) to whoever asked.

use std::time::{Duration, Instant};

use differential_dataflow::difference::Semigroup;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::{Cursor, cursor_list};
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
use differential_dataflow::trace::{Navigable, TraceReader};
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Antichain;
use timely::progress::frontier::AntichainRef;

use crate::event::Time;

/// A query inside the dataflow, as the asking worker inserted it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueryMsg {
    /// Unique per process.
    pub id: u64,
    /// The asking worker, where the answer is gathered.
    pub origin: usize,
    /// The dataflow that serves the view (0: the engine's first).
    pub flow: u64,
    /// The view's index among its dataflow's views.
    pub view: usize,
    /// The key's text, or `None` for a whole-view query.
    pub key: Option<String>,
    /// For a page: the text of the key it starts after, if any.
    pub after: Option<String>,
    /// For a page: the most keys to read.
    pub limit: Option<u64>,
    /// The time the query reads.
    pub time: Time,
    /// Whether this withdraws query `id` (its wait ran out) rather than asking it.
    pub cancel: bool,
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
    /// For a page: the key it starts after.
    pub after: Option<K>,
    /// For a page: the most keys to read.
    pub limit: Option<usize>,
    /// Whether every worker answers (a whole-view query).
    pub scan: bool,
    /// Whether the key (or the key a page starts after) is not written like a key of the view.
    pub bad_key: bool,
    /// The time the query reads.
    pub time: Time,
    /// Whether this withdraws the query rather than asking it.
    pub cancel: bool,
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
    /// Whether the key asked for cannot be a key of the view.
    pub bad_key: bool,
    /// For a page: the most keys to read.
    pub limit: Option<usize>,
    /// The time it read.
    pub time: Time,
    /// The part itself; `None` when this worker no longer holds the time asked for.
    pub payload: Option<P>,
}

impl<P> Partial<P> {
    /// The part's description and its payload, apart.
    pub fn split(self) -> (Partial<()>, Option<P>) {
        let header = Partial {
            id: self.id,
            origin: self.origin,
            parts: self.parts,
            scan: self.scan,
            bad_key: self.bad_key,
            limit: self.limit,
            time: self.time,
            payload: Some(()),
        };
        (header, self.payload)
    }
}

/// How long a page's time stays readable after the page was answered, by default: the next page
/// of the same scan reads the same time ([`Settings::page_hold`](crate::engine::Settings)).
pub const PAGE_HOLD: Duration = Duration::from_secs(60);

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
    pub fn for_each(&mut self, logic: impl FnMut(&K, Vec<(V, R)>)) {
        self.range(None, usize::MAX, logic);
    }

    /// Calls `logic` with the first `limit` keys after `after` (all keys if `None`) that have a
    /// value, in key order.
    pub fn range(
        &mut self,
        after: Option<&K>,
        limit: usize,
        mut logic: impl FnMut(&K, Vec<(V, R)>),
    ) {
        self.cursor.rewind_keys(self.storage);
        if let Some(after) = after {
            self.cursor.seek_key(self.storage, after);
            if self.cursor.get_key(self.storage) == Some(after) {
                self.cursor.step_key(self.storage);
            }
        }
        let mut found = 0;
        while found < limit {
            let Some(key) = self.cursor.get_key(self.storage) else {
                break;
            };
            let key = key.clone();
            let values = self.values();
            if !values.is_empty() {
                logic(&key, values);
                found += 1;
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

/// Every record of this worker's shard of a view's trace with its difference accumulated over
/// the times before a time, read a slice of time at a time ([`read`](Self::read)), so
/// that a worker copying a large view for a checkpoint goes on with its other work between
/// the steps. It holds the batches it reads (they stay as they were while the trace merges
/// on), so the trace's compaction only needs to stay at or before `time - 1` until it starts
/// (see [`Cuts`](crate::checkpoint)).
pub(crate) struct Contents<K, V, R>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + Semigroup,
{
    cursor: ViewCursor<K, V, R>,
    storage: Vec<ViewBatch<K, V, R>>,
    /// The last time read; `None` reads nothing (the contents before time 0).
    last: Option<Time>,
    /// The records read, in chunks of at most [`CHUNK`]: no large vector grows (and moves)
    /// while the worker reads.
    records: Vec<Vec<((K, V), R)>>,
}

/// How many records a chunk of [`Contents`] holds.
const CHUNK: usize = 4096;

impl<K, V, R> Contents<K, V, R>
where
    K: differential_dataflow::ExchangeData + std::hash::Hash,
    V: differential_dataflow::ExchangeData,
    R: differential_dataflow::ExchangeData + Semigroup,
{
    /// Starts reading the contents of `trace` before `time`, once the trace holds all of them
    /// (`None` before).
    pub(crate) fn before(trace: &mut ViewTrace<K, V, R>, time: Time) -> Option<Self> {
        let mut upper = Antichain::new();
        trace.read_upper(&mut upper);
        if upper.less_than(&time) {
            return None;
        }
        let batches = trace.batches_through(upper.borrow())?;
        let (cursor, storage) = cursor_list(batches);
        Some(Contents {
            cursor,
            storage,
            last: time.checked_sub(1),
            records: Vec::new(),
        })
    }

    /// Reads more keys, until `until` or the last key; `true` once every key is read.
    pub(crate) fn read(&mut self, until: Instant) -> bool {
        let Some(last) = self.last else {
            return true;
        };
        let mut reader = Reader {
            cursor: &mut self.cursor,
            storage: &self.storage,
            time: last,
        };
        for read in 0usize.. {
            // A key may hold many values (a customer's sessions): the clock is read often.
            if read % 8 == 7 && Instant::now() >= until {
                break;
            }
            let Some(key) = reader.cursor.get_key(reader.storage) else {
                return true;
            };
            let key = key.clone();
            let values = reader.values();
            for (v, r) in values {
                match self.records.last_mut() {
                    Some(chunk) if chunk.len() < CHUNK => chunk.push(((key.clone(), v), r)),
                    _ => {
                        let mut chunk = Vec::with_capacity(CHUNK);
                        chunk.push(((key.clone(), v), r));
                        self.records.push(chunk);
                    }
                }
            }
            reader.cursor.step_key(reader.storage);
        }
        !reader.cursor.key_valid(reader.storage)
    }

    /// The records read, in chunks.
    pub(crate) fn into_records(self) -> Vec<Vec<((K, V), R)>> {
        self.records
    }
}

/// Answers routed queries from one arrangement, each once the arrangement is complete at its
/// time; `read` computes this worker's part of the answer. `on_records` hears how many updates
/// this worker's shard of the trace holds, whenever new batches arrive. A page's time stays
/// readable for `page_hold` after the page.
pub fn serve<'s, K, V, R, P, F>(
    queries: Stream<'s, Time, Vec<Routed<K>>>,
    arranged: Arranged<'s, ViewTrace<K, V, R>>,
    name: &str,
    mut read: F,
    mut on_records: impl FnMut(usize) + 'static,
    page_hold: Duration,
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
            // Times pages were read at, kept readable until then.
            let mut holds: Vec<(Time, Instant)> = Vec::new();
            let mut upper = Antichain::new();
            move |(queries, query_frontier), (batches, view_frontier), output| {
                queries.for_each(|cap, data| {
                    let Some(least) = cap.least().copied() else {
                        return;
                    };
                    for q in data.drain(..) {
                        if q.cancel {
                            pending.retain(|(_, p)| (p.origin, p.id) != (q.origin, q.id));
                        } else {
                            // A page may read a time before the query's own (its scan's time).
                            let at = q.time.max(least);
                            pending.push((cap.delayed(&at, 0), q));
                        }
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
                    let compacted = trace.get_logical_compaction().to_owned();
                    let now = Instant::now();
                    pending.retain(|(cap, q)| {
                        if !ready(q) {
                            return true;
                        }
                        // A time compaction has passed cannot be read any more.
                        let payload = compacted.less_equal(&q.time).then(|| {
                            let mut reader = Reader {
                                cursor: &mut cursor,
                                storage: &storage,
                                time: q.time,
                            };
                            read(q, &mut reader)
                        });
                        if q.limit.is_some() {
                            holds.push((q.time, now + page_hold));
                        }
                        let parts = if q.scan { peers } else { 1 };
                        output.session(cap).give(Partial {
                            id: q.id,
                            origin: q.origin,
                            parts,
                            scan: q.scan,
                            bad_key: q.bad_key,
                            limit: q.limit,
                            time: q.time,
                            payload,
                        });
                        false
                    });
                }

                // Hold compaction back to the oldest time a query may still read.
                let now = Instant::now();
                holds.retain(|(_, until)| *until > now);
                let mut lower: Option<Time> = pending
                    .iter()
                    .map(|(_, q)| q.time)
                    .chain(holds.iter().map(|(t, _)| *t))
                    .min();
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
    // Compaction only moves forward; a hold that came too late cannot pull it back.
    let current = trace.get_logical_compaction();
    let forward = frontier.iter().all(|t| current.less_equal(t));
    if forward && current != frontier {
        trace.set_logical_compaction(frontier);
        trace.set_physical_compaction(frontier);
    }
}
