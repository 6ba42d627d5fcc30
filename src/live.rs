//! The live input of one process: producers hand it events, it judges them in stream order,
//! stores the verdicts, and releases the events to the workers' speed lanes in that order.
//!
//! ```text
//! producers ──► judge (one per process, under a lock: the verdicts and the watermark)
//!                 │ ticket k
//!                 ▼
//!               journal (the master dataset: durable before anything is visible; concurrent
//!                 │       batches share fsyncs)
//!                 ▼
//!               release in ticket order ──► worker mailboxes (round robin), then the new
//!                                           watermark is published to every worker
//! ```
//!
//! A worker's speed lane advances to a published watermark only once it has taken every event
//! released to it before that watermark, so an event released on time always finds its lane at
//! or before its time, and a lane never passes an event still in its mailbox. A verdict therefore
//! depends only on the stream (and on the batch boundaries its producers chose), never on tick
//! timing or on which worker took the event.
//!
//! Every mailbox is bounded by a backlog of events and bytes ([`BacklogLimits`]): above it
//! [`LiveSender::try_send_batch`] refuses a whole batch (the server answers 503), and
//! [`LiveSender::send_batch`] waits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::event::{END_OF_TIME, Event, Time};
use crate::master::Entry;
use crate::metrics::Metrics;
use crate::watermark::{DropReason, Judge, LateRules, Verdict};

/// Stores the entries of a batch durably before its events become visible; an error refuses the
/// batch (nothing of it is applied). The server's journal is its master dataset.
pub type Journal<E> = Arc<dyn Fn(&[Entry<E>]) -> Result<(), String> + Send + Sync>;

/// A late event that was left out, as the drop hook hears of it.
#[derive(Debug)]
pub struct LateDrop<'a, E> {
    /// The event.
    pub event: &'a E,
    /// Why it was left out.
    pub reason: DropReason,
    /// The watermark it was behind.
    pub watermark: Time,
    /// Whether it is replayed from the master dataset (decided before a restart) rather than
    /// dropped now.
    pub replayed: bool,
}

/// Hears about each late event that is left out.
pub type LateSink<E> = Arc<dyn Fn(&LateDrop<E>) + Send + Sync>;

/// How much one worker's mailbox may hold before producers are held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Events waiting for the worker.
    pub events: u64,
    /// Their bytes (as the producer sized them: a line's length for the server).
    pub bytes: u64,
}

impl Default for BacklogLimits {
    fn default() -> Self {
        BacklogLimits {
            events: 1 << 20,
            bytes: 256 << 20,
        }
    }
}

/// What became of a batch of events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Applied at their own times.
    pub on_time: u64,
    /// Late, applied at the watermark.
    pub corrected: u64,
    /// Late, left out (and reported).
    pub dropped: u64,
    /// The watermark after the batch.
    pub watermark: Time,
}

/// Why a batch was not taken. Nothing of a refused batch is applied or stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// An event's time is at or beyond [`END_OF_TIME`].
    TimeOutOfRange(Time),
    /// A worker's backlog is full: try again later.
    Backlog,
    /// The journal refused the batch.
    Journal(String),
    /// The engine stopped.
    Stopped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TimeOutOfRange(t) => {
                write!(f, "event time {t} is not below 2^53 (the end of time)")
            }
            SendError::Backlog => write!(f, "the workers' backlog is full; try again later"),
            SendError::Journal(e) => write!(f, "not stored, nothing taken: {e}"),
            SendError::Stopped => write!(f, "the engine stopped"),
        }
    }
}

impl std::error::Error for SendError {}

/// What a worker's mailbox carries.
pub(crate) enum Live<E> {
    /// An event, the time to apply it at, and its size.
    Event(E, Time, u32),
    /// Advance to this watermark (every event before it has been delivered) and answer with
    /// the lane's time.
    Sync(Time, Sender<Time>),
    /// A change of the dataflows, at this point of the stream.
    Control(Control<E>),
    /// No more events will come.
    End,
}

/// A change of the dataflows, sequenced with the events: every worker takes it after every
/// event released before it and before every event released after it.
pub(crate) enum Control<E> {
    /// Build a dataflow while the engine runs (see [`flow`](crate::engine)).
    Build(Arc<crate::engine::FlowSpec<E>>),
    /// Take a checkpoint (see [`checkpoint`](crate::checkpoint)).
    Checkpoint(Arc<crate::engine::CheckpointRequest>),
}

impl<E> Clone for Control<E> {
    fn clone(&self) -> Self {
        match self {
            Control::Build(spec) => Control::Build(spec.clone()),
            Control::Checkpoint(request) => Control::Checkpoint(request.clone()),
        }
    }
}

/// One released batch, waiting for its turn.
struct Batch<E> {
    events: Vec<(E, Time, u32)>,
    drops: Vec<(E, DropReason, Time)>,
    watermark: Time,
    sync: Option<Sender<Time>>,
}

/// The judge and what it needs to hand out tickets.
struct Gate {
    judge: Option<Judge>,
    /// The last watermark journaled.
    journaled: Option<Time>,
    rules: LateRules,
    stopped: bool,
    next_ticket: u64,
    last_event: Instant,
}

/// The release side: batches go out in ticket order.
struct Release<E> {
    /// The next ticket to release: every earlier one is out.
    next: u64,
    waiting: BTreeMap<u64, Batch<E>>,
    round: usize,
    sent: Vec<u64>,
    ending: bool,
    ended: bool,
}

/// One worker's mailbox and what the producers know of it.
struct Outbox<E> {
    sender: Sender<Live<E>>,
    thread: Arc<OnceLock<Thread>>,
    backlog_events: AtomicU64,
    backlog_bytes: AtomicU64,
    /// The newest watermark published, and how many events had been sent to this worker then.
    published: Mutex<(Time, u64)>,
}

/// The live input of a process, shared by its producers and workers.
pub(crate) struct Inlet<E> {
    gate: Mutex<Gate>,
    opened: Condvar,
    release: Mutex<Release<E>>,
    /// Signalled as tickets are released.
    released: Condvar,
    outboxes: Vec<Outbox<E>>,
    limits: BacklogLimits,
    journal: Option<Journal<E>>,
    on_drop: Option<LateSink<E>>,
    metrics: Arc<Metrics>,
    /// The newest event time any process has seen, and the last time (wall clock ms) any took
    /// an event: what the workers hear from each other, for idleness.
    pub(crate) heard_newest: AtomicU64,
    pub(crate) heard_active: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks, so a poisoned lock still guards sound state.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The receiving ends, one per local worker, handed to the workers as they start.
pub(crate) type Inboxes<E> = Mutex<Vec<Option<Receiver<Live<E>>>>>;

impl<E: Event> Inlet<E> {
    /// The live input of a process with `workers` local workers, and their inboxes.
    pub(crate) fn new(
        workers: usize,
        rules: LateRules,
        limits: BacklogLimits,
        journal: Option<Journal<E>>,
        on_drop: Option<LateSink<E>>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Inlet<E>>, Inboxes<E>) {
        let mut outboxes = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..workers {
            let (sender, receiver) = mpsc::channel();
            outboxes.push(Outbox {
                sender,
                thread: Arc::new(OnceLock::new()),
                backlog_events: AtomicU64::new(0),
                backlog_bytes: AtomicU64::new(0),
                published: Mutex::new((0, 0)),
            });
            inboxes.push(Some(receiver));
        }
        let inlet = Inlet {
            gate: Mutex::new(Gate {
                judge: None,
                journaled: None,
                rules,
                stopped: false,
                next_ticket: 0,
                last_event: Instant::now(),
            }),
            opened: Condvar::new(),
            release: Mutex::new(Release {
                next: 0,
                waiting: BTreeMap::new(),
                round: 0,
                sent: vec![0; workers],
                ending: false,
                ended: false,
            }),
            released: Condvar::new(),
            outboxes,
            limits,
            journal,
            on_drop,
            metrics,
            heard_newest: AtomicU64::new(0),
            heard_active: AtomicU64::new(0),
        };
        (Arc::new(inlet), Mutex::new(inboxes))
    }

    /// Takes worker `local`'s inbox (once), registering the calling thread to be woken.
    pub(crate) fn inbox(self: &Arc<Self>, inboxes: &Inboxes<E>, local: usize) -> Option<Inbox<E>> {
        let receiver = lock(inboxes).get_mut(local)?.take()?;
        let _ = self.outboxes.get(local)?.thread.set(std::thread::current());
        Some(Inbox {
            receiver,
            inlet: self.clone(),
            local,
            received: 0,
            seen: VecDeque::new(),
        })
    }

    /// Opens the live input once history is replayed: the judge resumes at `watermark`, the
    /// lanes at `target`, having seen events up to `newest`. Producers waiting for it go on.
    pub(crate) fn open(&self, watermark: Time, target: Time, newest: Option<Time>) {
        let mut gate = lock(&self.gate);
        if gate.judge.is_none() {
            let judge = Judge::resume(gate.rules, watermark, target, newest);
            for outbox in &self.outboxes {
                *lock(&outbox.published) = (judge.target(), 0);
            }
            gate.journaled = Some(judge.watermark());
            gate.judge = Some(judge);
            gate.last_event = Instant::now();
        }
        drop(gate);
        self.opened.notify_all();
    }

    /// Whether the live input has ended: every sender is gone and all they sent is out.
    pub(crate) fn ended(&self) -> bool {
        lock(&self.release).ended
    }

    /// Refuses every producer from now on (the engine failed or stopped).
    pub(crate) fn stop(&self) {
        lock(&self.gate).stopped = true;
        self.opened.notify_all();
    }

    /// The judge's newest event and how long it has been idle, once open.
    pub(crate) fn activity(&self) -> Option<(Option<Time>, Duration, Time)> {
        let gate = lock(&self.gate);
        let judge = gate.judge.as_ref()?;
        Some((judge.newest(), gate.last_event.elapsed(), judge.watermark()))
    }

    /// Whether producers may still send (some sender is left and the engine runs).
    pub(crate) fn accepting(&self) -> bool {
        !lock(&self.gate).stopped && !lock(&self.release).ending
    }

    /// The allowed lateness the judge trails the newest event by.
    pub(crate) fn lateness(&self) -> Time {
        lock(&self.gate).rules.allowed_lateness
    }

    fn full(&self) -> bool {
        self.outboxes.iter().any(|o| {
            o.backlog_events.load(Ordering::Relaxed) >= self.limits.events
                || o.backlog_bytes.load(Ordering::Relaxed) >= self.limits.bytes
        })
    }

    /// Judges a batch, journals it, and releases it in ticket order. `declare` moves the
    /// watermark forward after the batch; `bump` moves the lanes' target past the events that
    /// wait at it; `sync` (which implies `bump`) is answered by every worker once its lane has
    /// taken the batch.
    fn submit(
        &self,
        events: Vec<(E, u32)>,
        declare: Option<Time>,
        bump: bool,
        sync: Option<Sender<Time>>,
    ) -> Result<Verdicts, SendError> {
        if let Some((e, _)) = events.iter().find(|(e, _)| e.time() >= END_OF_TIME) {
            return Err(SendError::TimeOutOfRange(e.time()));
        }
        let mut gate = lock(&self.gate);
        while gate.judge.is_none() && !gate.stopped {
            gate = self
                .opened
                .wait(gate)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if gate.stopped {
            return Err(SendError::Stopped);
        }
        let Some(judge) = gate.judge.as_mut() else {
            return Err(SendError::Stopped);
        };
        let mut verdicts = Verdicts::default();
        let mut entries = Vec::with_capacity(events.len() + 1);
        let mut sizes = Vec::with_capacity(events.len());
        let had_events = !events.is_empty();
        for (event, bytes) in events {
            let ts = event.time();
            match judge.judge(ts) {
                Verdict::OnTime(at) => {
                    verdicts.on_time += 1;
                    sizes.push(bytes);
                    entries.push(if at == ts {
                        Entry::Event(event)
                    } else {
                        Entry::Held { event, at }
                    });
                }
                Verdict::Correct(at) => {
                    verdicts.corrected += 1;
                    sizes.push(bytes);
                    entries.push(Entry::Corrected { event, at });
                }
                Verdict::Drop(reason, watermark) => {
                    verdicts.dropped += 1;
                    entries.push(Entry::Dropped {
                        event,
                        reason,
                        watermark,
                    });
                }
            }
        }
        if let Some(time) = declare {
            judge.declare(time);
        }
        if bump || sync.is_some() {
            judge.bump();
        }
        let watermark = judge.watermark();
        let target = judge.target();
        verdicts.watermark = watermark;
        if had_events || gate.journaled != Some(watermark) {
            entries.push(Entry::Watermark(watermark));
            gate.journaled = Some(watermark);
        }
        let ticket = gate.next_ticket;
        gate.next_ticket += 1;
        if had_events {
            gate.last_event = Instant::now();
        }
        drop(gate);

        let stored = match (&self.journal, entries.is_empty()) {
            (Some(journal), false) => journal(&entries),
            _ => Ok(()),
        };
        let mut batch = Batch {
            events: Vec::with_capacity(sizes.len()),
            drops: Vec::new(),
            watermark: target,
            sync,
        };
        if stored.is_ok() {
            let mut sizes = sizes.into_iter();
            for entry in entries {
                let (event, at) = match entry {
                    Entry::Event(event) => {
                        let ts = event.time();
                        (event, ts)
                    }
                    Entry::Held { event, at } | Entry::Corrected { event, at } => (event, at),
                    Entry::Dropped {
                        event,
                        reason,
                        watermark,
                    } => {
                        batch.drops.push((event, reason, watermark));
                        continue;
                    }
                    _ => continue,
                };
                batch.events.push((event, at, sizes.next().unwrap_or(0)));
            }
        }
        // A refused batch still takes its turn (with only its target, a promise already made),
        // so the batches after it are not held up.
        self.release(ticket, batch);
        match stored {
            Ok(()) => {
                Metrics::add(&self.metrics.live_events, verdicts.on_time);
                Metrics::add(&self.metrics.late_corrected, verdicts.corrected);
                Metrics::add(&self.metrics.late_dropped, verdicts.dropped);
                Ok(verdicts)
            }
            Err(e) => Err(SendError::Journal(e)),
        }
    }

    fn release(&self, ticket: u64, batch: Batch<E>) {
        let mut release = lock(&self.release);
        release.waiting.insert(ticket, batch);
        loop {
            let next = release.next;
            let Some(batch) = release.waiting.remove(&next) else {
                break;
            };
            release.next += 1;
            self.push(&mut release, batch);
        }
        if release.ending && release.waiting.is_empty() {
            self.push_end(&mut release);
        }
        drop(release);
        self.released.notify_all();
    }

    /// Sequences a change of the dataflows: once every batch judged so far is journaled and
    /// released (and while no other is judged), `make` is called with the judge (its target:
    /// every later event is applied at or after it) and its change goes to every worker, after
    /// every event released before and before every event released after.
    pub(crate) fn sequence(
        &self,
        make: impl FnOnce(&Judge) -> Control<E>,
    ) -> Result<(), SendError> {
        let mut gate = lock(&self.gate);
        while gate.judge.is_none() && !gate.stopped {
            gate = self
                .opened
                .wait(gate)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if gate.stopped || gate.judge.is_none() {
            return Err(SendError::Stopped);
        }
        let issued = gate.next_ticket;
        let mut release = lock(&self.release);
        while release.next < issued {
            release = self
                .released
                .wait(release)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if release.ended {
            return Err(SendError::Stopped);
        }
        let Some(judge) = gate.judge.as_ref() else {
            return Err(SendError::Stopped);
        };
        let control = make(judge);
        for (i, outbox) in self.outboxes.iter().enumerate() {
            // Counted like an event: no worker advances past a later watermark before it has
            // taken the change.
            if outbox.sender.send(Live::Control(control.clone())).is_ok() {
                release.sent[i] += 1;
            }
            if let Some(thread) = outbox.thread.get() {
                thread.unpark();
            }
        }
        drop(release);
        drop(gate);
        Ok(())
    }

    fn push(&self, release: &mut Release<E>, batch: Batch<E>) {
        if release.ended {
            return;
        }
        let workers = self.outboxes.len();
        let mut bytes_total = 0u64;
        let events_total = batch.events.len() as u64;
        for (event, at, bytes) in batch.events {
            let i = release.round;
            release.round = (i + 1) % workers;
            let outbox = &self.outboxes[i];
            outbox.backlog_events.fetch_add(1, Ordering::Relaxed);
            outbox
                .backlog_bytes
                .fetch_add(u64::from(bytes), Ordering::Relaxed);
            bytes_total += u64::from(bytes);
            if outbox.sender.send(Live::Event(event, at, bytes)).is_ok() {
                release.sent[i] += 1;
            }
        }
        Metrics::add(&self.metrics.backlog_events, events_total);
        Metrics::add(&self.metrics.backlog_bytes, bytes_total);
        for (i, outbox) in self.outboxes.iter().enumerate() {
            *lock(&outbox.published) = (batch.watermark, release.sent[i]);
            if let Some(ack) = &batch.sync {
                let _ = outbox.sender.send(Live::Sync(batch.watermark, ack.clone()));
            }
            if let Some(thread) = outbox.thread.get() {
                thread.unpark();
            }
        }
        Metrics::add(&self.metrics.drops_recorded, batch.drops.len() as u64);
        for (event, reason, watermark) in batch.drops {
            warn!(event = ?event, watermark, %reason, "late event dropped");
            if let Some(sink) = &self.on_drop {
                sink(&LateDrop {
                    event: &event,
                    reason,
                    watermark,
                    replayed: false,
                });
            }
        }
    }

    fn push_end(&self, release: &mut Release<E>) {
        if release.ended {
            return;
        }
        release.ended = true;
        for outbox in &self.outboxes {
            let _ = outbox.sender.send(Live::End);
            if let Some(thread) = outbox.thread.get() {
                thread.unpark();
            }
        }
    }

    /// The last producer is gone: the speed lanes end once everything released has arrived.
    fn end(&self) {
        let mut release = lock(&self.release);
        release.ending = true;
        if release.waiting.is_empty() {
            self.push_end(&mut release);
        }
    }

    /// One tick of processing time: the lanes' target moves past corrections waiting at it,
    /// and a process idle for `idle` follows `follow` (the newest event time heard, or past it
    /// when everyone is idle). An advance of the watermark is journaled like a declaration.
    pub(crate) fn tick(&self, follow: Option<Time>) {
        let (bump, advance) = {
            let gate = lock(&self.gate);
            let Some(judge) = gate.judge.as_ref() else {
                return;
            };
            let advance =
                follow.filter(|t| (*t).min(crate::watermark::CEILING) > judge.watermark());
            (judge.holds(), advance)
        };
        if (bump || advance.is_some()) && !lock(&self.release).ending {
            let _ = self.submit(Vec::new(), advance, bump, None);
        }
    }
}

/// Feeds live events to this process's workers; clone it for every producer. The speed lanes
/// end when every clone is dropped.
///
/// Events are judged by the process's one [`Judge`] in the order they are sent (see
/// [`watermark`](crate::watermark)); sending waits until history has been replayed.
pub struct LiveSender<E: Event> {
    token: Arc<Token<E>>,
}

/// Ends the live input when the last sender is dropped.
struct Token<E: Event> {
    inlet: Arc<Inlet<E>>,
}

impl<E: Event> Drop for Token<E> {
    fn drop(&mut self) {
        self.inlet.end();
    }
}

impl<E: Event> Clone for LiveSender<E> {
    fn clone(&self) -> Self {
        LiveSender {
            token: self.token.clone(),
        }
    }
}

impl<E: Event> LiveSender<E> {
    pub(crate) fn new(inlet: Arc<Inlet<E>>) -> Self {
        LiveSender {
            token: Arc::new(Token { inlet }),
        }
    }

    fn inlet(&self) -> &Inlet<E> {
        &self.token.inlet
    }

    /// Sends one live event; waits while the workers' backlog is full.
    pub fn send(&self, event: E) -> Result<Verdicts, SendError> {
        self.send_batch(vec![event])
    }

    /// Sends a batch of events, judged in order and stored (if there is a journal) as one
    /// durable unit; waits while the workers' backlog is full.
    pub fn send_batch(&self, events: Vec<E>) -> Result<Verdicts, SendError> {
        while self.inlet().full() {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inlet().submit(sized(events), None, false, None)
    }

    /// Sends a batch unless a worker's backlog is full ([`SendError::Backlog`]: nothing sent).
    pub fn try_send_batch(&self, events: Vec<E>) -> Result<Verdicts, SendError> {
        self.try_send_sized(sized(events))
    }

    /// [`try_send_batch`](Self::try_send_batch) with each event's size in bytes for the
    /// backlog's byte bound (the server passes each line's length).
    pub fn try_send_sized(&self, events: Vec<(E, u32)>) -> Result<Verdicts, SendError> {
        if self.inlet().full() {
            return Err(SendError::Backlog);
        }
        self.inlet().submit(events, None, false, None)
    }

    /// Whether a worker's backlog is at its bound (a batch sent now would be refused).
    pub fn is_full(&self) -> bool {
        self.inlet().full()
    }

    /// Declares that no more events with a time before `time` will be sent: the watermark
    /// moves to at least `time` (journaled like a batch), and the lanes past every correction
    /// sent before. Events sent after it with earlier times are late.
    ///
    /// Waits until every worker of this process has taken everything sent before, and returns
    /// the time from which answers reflect it all (at least `time`, unless `time` is beyond
    /// [`CEILING`](crate::watermark::CEILING)).
    pub fn watermark(&self, time: Time) -> Result<Time, SendError> {
        let (tx, rx) = mpsc::channel();
        let workers = self.inlet().outboxes.len();
        self.inlet()
            .submit(Vec::new(), Some(time), true, Some(tx))?;
        let mut reached = 0;
        for _ in 0..workers {
            reached = reached.max(rx.recv().map_err(|_| SendError::Stopped)?);
        }
        Ok(reached)
    }
}

fn sized<E>(events: Vec<E>) -> Vec<(E, u32)> {
    let bytes = std::mem::size_of::<E>() as u32;
    events.into_iter().map(|e| (e, bytes)).collect()
}

/// What one worker takes from its mailbox.
pub(crate) struct Inbox<E: Event> {
    receiver: Receiver<Live<E>>,
    inlet: Arc<Inlet<E>>,
    local: usize,
    received: u64,
    /// Watermarks published, with how many events this worker had been sent by then.
    seen: VecDeque<(Time, u64)>,
}

/// A message taken from a mailbox.
pub(crate) enum Taken<E> {
    /// An event to apply at a time.
    Event(E, Time),
    /// Advance to this time, then answer with the lane's time.
    Sync(Time, Sender<Time>),
    /// A change of the dataflows.
    Control(Control<E>),
    /// Nothing waiting now.
    Empty,
    /// The live input has ended.
    Ended,
}

impl<E: Event> Inbox<E> {
    /// Takes the next message.
    pub(crate) fn take(&mut self) -> Taken<E> {
        match self.receiver.try_recv() {
            Ok(Live::Event(event, at, bytes)) => {
                self.received += 1;
                let outbox = &self.inlet.outboxes[self.local];
                outbox.backlog_events.fetch_sub(1, Ordering::Relaxed);
                outbox
                    .backlog_bytes
                    .fetch_sub(u64::from(bytes), Ordering::Relaxed);
                self.inlet
                    .metrics
                    .backlog_events
                    .fetch_sub(1, Ordering::Relaxed);
                self.inlet
                    .metrics
                    .backlog_bytes
                    .fetch_sub(u64::from(bytes), Ordering::Relaxed);
                Taken::Event(event, at)
            }
            Ok(Live::Sync(time, ack)) => Taken::Sync(time, ack),
            Ok(Live::Control(control)) => {
                self.received += 1;
                Taken::Control(control)
            }
            Ok(Live::End) | Err(TryRecvError::Disconnected) => Taken::Ended,
            Err(TryRecvError::Empty) => Taken::Empty,
        }
    }

    /// The newest published watermark whose events this worker has all taken: how far its
    /// lane may advance.
    pub(crate) fn target(&mut self) -> Option<Time> {
        let (watermark, sent) = *lock(&self.inlet.outboxes[self.local].published);
        match self.seen.back_mut() {
            Some(back) if back.1 == sent => back.0 = back.0.max(watermark),
            _ => self.seen.push_back((watermark, sent)),
        }
        let mut target = None;
        while let Some(&(time, sent)) = self.seen.front() {
            if sent > self.received {
                break;
            }
            target = Some(time);
            self.seen.pop_front();
        }
        target
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn wall_clock_ms() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Time)
}
