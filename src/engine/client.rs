//! Asking questions: the [`Client`], and the time a question reads the views at.
//!
//! ## The time of a query
//! A query reads the views as of one time, and its answer says which (`as_of`): it reflects
//! exactly the events with earlier times. A fresh query reads the last complete time, just
//! before the frontier of the lanes; a query may ask for a later `as_of` (then it waits for the
//! lanes to pass it). Each worker keeps its query input at the fresh read time, so a fresh query
//! is served at once.
//!
//! History replayed at coarse times ([`BatchTime`]) can only be read exactly where its times
//! allow: with one time for the whole replay, not before the time the replay sealed (its
//! *horizon*); with one time per bucket, at bucket boundaries until the frontier has passed the
//! last bucket. [`ReadTimes`] rounds read times accordingly, so an answer's `as_of` is always
//! true: never claiming events it does not hold, never hiding ones it claims.
//!
//! Once every lane of every process has ended, no data can change: query times then follow the
//! wall clock beyond [`END_OF_TIME`], and answers are final.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use super::catalog::{Catalog, Listed, Resolved};
use differential_dataflow::ExchangeData;
use differential_dataflow::difference::Semigroup;

use crate::answer::{Answer, AnswerValue, KeyedValues, Lookup, Query, Reply};
use crate::event::{END_OF_TIME, Time};
use crate::lane::BatchTime;
use crate::serve::QueryMsg;
use crate::view::{ViewInfo, ViewKey};

/// Why a query got no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryError {
    /// No view has this name.
    UnknownView(String),
    /// The view is still being backfilled (this far, from 0 to 1).
    Backfilling(String, f64),
    /// The engine stopped before answering.
    Stopped,
    /// A typed read ([`Client::get`]) named types that are not the view's, or a view that has
    /// no rows by key (a ranking).
    WrongType(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::UnknownView(v) => write!(f, "no view is named {v:?}"),
            QueryError::Backfilling(v, p) => write!(
                f,
                "view {v:?} is being backfilled ({:.0}% done); it answers once ready",
                p * 100.0
            ),
            QueryError::Stopped => write!(f, "the engine stopped before answering"),
            QueryError::WrongType(v) => {
                write!(f, "view {v:?} does not hold rows of the types asked for")
            }
        }
    }
}

impl std::error::Error for QueryError {}

/// A channel to one worker thread, which it wakes when it sends.
pub(super) struct Mailbox<T> {
    sender: Sender<T>,
    worker: Arc<OnceLock<Thread>>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            sender: self.sender.clone(),
            worker: self.worker.clone(),
        }
    }
}

impl<T> Mailbox<T> {
    fn send(&self, item: T) -> bool {
        let sent = self.sender.send(item).is_ok();
        if let Some(thread) = self.worker.get() {
            thread.unpark();
        }
        sent
    }
}

/// The receiving ends, one per local worker, handed to the workers as they start.
pub(super) type Inboxes<T> = Arc<Mutex<Vec<Option<(Receiver<T>, Arc<OnceLock<Thread>>)>>>>;

pub(super) fn mailboxes<T>(n: usize) -> (Vec<Mailbox<T>>, Inboxes<T>) {
    let mut boxes = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..n {
        let (sender, receiver) = mpsc::channel();
        let worker = Arc::new(OnceLock::new());
        boxes.push(Mailbox {
            sender,
            worker: worker.clone(),
        });
        inboxes.push(Some((receiver, worker)));
    }
    (boxes, Arc::new(Mutex::new(inboxes)))
}

pub(super) fn take_inbox<T>(inboxes: &Inboxes<T>, local: usize) -> Option<Receiver<T>> {
    let mut inboxes = inboxes.lock().ok()?;
    let (receiver, worker) = inboxes.get_mut(local)?.take()?;
    let _ = worker.set(std::thread::current());
    Some(receiver)
}

/// What a client asks a worker.
pub(super) enum Request {
    /// A query, whether it reads exactly its time (a page continuing a scan), and where its
    /// answer goes.
    Ask(QueryMsg, bool, Reply),
    /// Withdraw query `id`: its answer is no longer awaited.
    Cancel(u64),
    /// Put this into the log every worker of every process reads in the same order.
    Sequence(Vec<u8>),
}

/// Names a query that was asked, to withdraw it ([`Client::cancel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    worker: usize,
    id: u64,
}

/// Asks this process's workers questions; clone it freely.
#[derive(Clone)]
pub struct Client {
    workers: Vec<Mailbox<Request>>,
    next: Arc<AtomicUsize>,
    ids: Arc<AtomicU64>,
    catalog: Arc<Catalog>,
}

impl Client {
    pub(super) fn new(workers: Vec<Mailbox<Request>>, catalog: Arc<Catalog>) -> Self {
        Client {
            workers,
            next: Arc::new(AtomicUsize::new(0)),
            ids: Arc::new(AtomicU64::new(0)),
            catalog,
        }
    }

    /// The views that can be queried (or soon: some may be backfilling).
    pub fn catalog(&self) -> Vec<ViewInfo> {
        self.catalog.list().into_iter().map(|l| l.info).collect()
    }

    /// Every view with its state and the progress of its backfill.
    pub fn views(&self) -> Vec<Listed> {
        self.catalog.list()
    }

    /// Sends a query; `reply` is called with the answer once the views are complete at its time.
    /// `as_of` asks for an answer reflecting at least every event before that time.
    pub fn ask(
        &self,
        query: Query,
        as_of: Option<Time>,
        reply: Reply,
    ) -> Result<Ticket, QueryError> {
        self.send(
            query,
            as_of.map_or(0, |t| t.saturating_sub(1)),
            false,
            reply,
        )
    }

    /// Sends a query that reads exactly as of `as_of` (a time an earlier answer was read at:
    /// the next page of a scan). If the view no longer holds that time, the answer says
    /// [`AnswerValue::Expired`](crate::answer::AnswerValue::Expired).
    pub fn ask_exactly(
        &self,
        query: Query,
        as_of: Time,
        reply: Reply,
    ) -> Result<Ticket, QueryError> {
        self.send(query, as_of.saturating_sub(1), true, reply)
    }

    fn send(
        &self,
        query: Query,
        time: Time,
        exact: bool,
        reply: Reply,
    ) -> Result<Ticket, QueryError> {
        let (flow, view) = match self.catalog.resolve(&query.view) {
            Resolved::Serve { flow, index } => (flow, index),
            Resolved::Backfilling(progress) => {
                return Err(QueryError::Backfilling(query.view.clone(), progress));
            }
            Resolved::Unknown => return Err(QueryError::UnknownView(query.view.clone())),
        };
        let (key, after, limit) = match query.lookup {
            Lookup::Key(key) => (Some(key), None, None),
            Lookup::All => (None, None, None),
            Lookup::Page { after, limit } => (None, after, Some(limit as u64)),
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let msg = QueryMsg {
            id,
            origin: 0,
            flow,
            view,
            key,
            after,
            limit,
            time,
            cancel: false,
        };
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        if self.workers[worker].send(Request::Ask(msg, exact, reply)) {
            Ok(Ticket { worker, id })
        } else {
            Err(QueryError::Stopped)
        }
    }

    /// Withdraws a query whose answer is no longer awaited (its wait ran out): the dataflow
    /// forgets it, and its reply is never called.
    pub fn cancel(&self, ticket: Ticket) {
        if let Some(worker) = self.workers.get(ticket.worker) {
            worker.send(Request::Cancel(ticket.id));
        }
    }

    /// Appends `item` to the log that every process reads in the same order (each process's
    /// [`Hooks::on_sequenced`](super::Hooks::on_sequenced) hears every item): how a catalog
    /// change reaches every process in one order.
    pub fn sequence(&self, item: Vec<u8>) -> Result<(), QueryError> {
        let leader = self.workers.first().ok_or(QueryError::Stopped)?;
        if leader.send(Request::Sequence(item)) {
            Ok(())
        } else {
            Err(QueryError::Stopped)
        }
    }

    /// Sends a query and waits for its answer.
    pub fn query(&self, query: Query, as_of: Option<Time>) -> Result<Answer, QueryError> {
        let (tx, rx) = mpsc::channel();
        self.ask(query, as_of, Box::new(move |answer| drop(tx.send(answer))))?;
        rx.recv().map_err(|_| QueryError::Stopped)
    }

    /// [`ask_exactly`](Self::ask_exactly) and wait for the answer.
    pub fn ask_exactly_wait(&self, query: Query, as_of: Time) -> Result<Answer, QueryError> {
        let (tx, rx) = mpsc::channel();
        self.ask_exactly(query, as_of, Box::new(move |answer| drop(tx.send(answer))))?;
        rx.recv().map_err(|_| QueryError::Stopped)
    }

    /// Waits for the final answer: the one after every input of every process has ended.
    pub fn query_final(&self, query: Query) -> Result<Answer, QueryError> {
        self.query(query, Some(END_OF_TIME))
    }

    /// One key's values in the view's own types, each with its difference (none when the key
    /// has no row), read as [`query`](Self::query) reads: no JSON on the way. `K`, `V` and `R`
    /// are the types the view was registered with.
    ///
    /// ```no_run
    /// # use lambdaflow::prelude::*;
    /// # fn read(client: &Client) -> Result<(), QueryError> {
    /// // NEXMark q2: each auction's bid prices.
    /// let prices: Vec<(u64, isize)> = client.get::<u64, u64, isize>("q2", &1230, None)?;
    /// # Ok(()) }
    /// ```
    pub fn get<K, V, R>(
        &self,
        view: &str,
        key: &K,
        as_of: Option<Time>,
    ) -> Result<Vec<(V, R)>, QueryError>
    where
        K: ViewKey,
        V: ExchangeData,
        R: ExchangeData + Semigroup,
    {
        let rows = self.rows::<K, V, R>(Query::key(view, key.key_text()), as_of)?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(_, values)| values)
            .unwrap_or_default())
    }

    /// The rows a query reads (one key, every key or a page), in the view's own types, in key
    /// order.
    pub fn rows<K, V, R>(
        &self,
        query: Query,
        as_of: Option<Time>,
    ) -> Result<KeyedValues<K, V, R>, QueryError>
    where
        K: ViewKey,
        V: ExchangeData,
        R: ExchangeData + Semigroup,
    {
        let view = query.view.clone();
        match self.query(query, as_of)?.value {
            AnswerValue::Row { rows, .. } | AnswerValue::Rows(rows) => rows.typed::<K, V, R>(),
            _ => None,
        }
        .ok_or(QueryError::WrongType(view))
    }
}

/// The times at which the views can be read exactly, given how history was replayed.
#[derive(Clone, Copy, Debug)]
pub(super) struct ReadTimes {
    batch_time: BatchTime,
    /// Reads at or after `horizon - 1` see every replayed update at a time it is meant at.
    horizon: Time,
}

impl ReadTimes {
    pub(super) fn new(batch_time: BatchTime, horizon: Time) -> Self {
        ReadTimes {
            batch_time,
            horizon,
        }
    }

    fn exact(&self, read: Time) -> bool {
        read.saturating_add(1) >= self.horizon
    }

    /// The time a fresh query reads at when the lanes' frontier is `frontier` (`None` while
    /// no time can be read exactly yet).
    pub(super) fn fresh(&self, frontier: Time) -> Option<Time> {
        let read = frontier.saturating_sub(1);
        if self.exact(read) {
            return Some(read);
        }
        match self.batch_time {
            BatchTime::Single => None,
            BatchTime::Every(width) if width > 1 => {
                let boundary = (read + 1) - (read + 1) % width;
                boundary.checked_sub(1)
            }
            BatchTime::Every(_) => Some(read),
        }
    }

    /// The time a query that asks to read at `read` (at least) reads at.
    pub(super) fn requested(&self, read: Time) -> Time {
        if self.exact(read) {
            return read;
        }
        match self.batch_time {
            BatchTime::Single => self.horizon.saturating_sub(1),
            BatchTime::Every(width) if width > 1 => {
                let end = read + 1;
                let boundary = end.div_ceil(width).saturating_mul(width);
                boundary.saturating_sub(1)
            }
            BatchTime::Every(_) => read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_time_history_is_read_from_its_horizon_on() {
        let reads = ReadTimes::new(BatchTime::Single, 1_000);
        assert_eq!(reads.fresh(500), None);
        assert_eq!(reads.fresh(1_000), Some(999));
        assert_eq!(reads.fresh(2_000), Some(1_999));
        assert_eq!(reads.requested(10), 999);
        assert_eq!(reads.requested(1_500), 1_500);
    }

    #[test]
    fn bucketed_history_is_read_at_bucket_boundaries_until_its_horizon() {
        let reads = ReadTimes::new(BatchTime::Every(100), 1_000);
        assert_eq!(reads.fresh(50), None, "no bucket is complete");
        assert_eq!(
            reads.fresh(250),
            Some(199),
            "as of 200: the last whole bucket"
        );
        assert_eq!(reads.fresh(300), Some(299));
        assert_eq!(reads.requested(149), 199, "as of 150 waits for as of 200");
        assert_eq!(reads.requested(199), 199);
        assert_eq!(reads.fresh(1_234), Some(1_233), "past the horizon: exact");
        assert_eq!(reads.requested(1_111), 1_111);
    }
}
