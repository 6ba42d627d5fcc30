//! The engine: one timely computation running a pipeline's dataflow, fed by two lanes and
//! answering queries.
//!
//! [`Engine::start`] starts the workers of this process. Each worker builds the same dataflow
//! (batch lane + speed lane → the pipeline's views → arrangements → serving), replays its share
//! of the history through the batch lane, then loops: take live events from its mailbox into
//! the speed lane, advance the lane to its watermark every tick, take queries into the query
//! input, and step the dataflow.
//!
//! ## The time of a query
//! A query reads the views as of the time its worker inserts it at: the last complete time,
//! just before the frontier of the lanes, or later if the query asks for a later `as_of`
//! (then it waits for the lanes to pass it). Each worker keeps its query input at that time, so
//! a query for the freshest answer is served at once: the serving operator waits only for the
//! arrangement's frontier, which depends on the lanes alone. Once every lane of every worker
//! has ended, no data can change: query times then follow the wall clock beyond
//! [`END_OF_TIME`], and answers are final.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use differential_dataflow::VecCollection;
use differential_dataflow::input::Input;
use timely::dataflow::channels::pact::Pipeline as Pipelined;
use timely::dataflow::operators::Input as TimelyInput;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::worker::Worker;
use tracing::{info, warn};

use crate::changelog::Changelog;
use crate::cluster::Cluster;
use crate::event::{END_OF_TIME, Event, Reject, Time};
use crate::history::{History, Share, read_share};
use crate::lane::{BatchLane, BatchTime, LateSink, SpeedLane};
use crate::metrics::Metrics;
use crate::serve::{Answer, Lookup, Query, QueryMsg, Replies, Reply};
use crate::view::{ViewInfo, Views};
use crate::watermark::{LatePolicy, LateRules};

/// A user's business logic: an event type and the views computed from it, written once for
/// both lanes.
pub trait Pipeline: Send + Sync + 'static {
    /// The events both lanes carry.
    type Event: Event;

    /// Registers the views, as differential code over the collection of all events.
    fn build<'s>(&self, events: VecCollection<'s, Time, Self::Event>, views: &mut Views<'s>);
}

/// How the engine treats time.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How far behind the newest event the speed lane's watermark trails.
    pub allowed_lateness: Duration,
    /// What happens to events behind the watermark.
    pub late_policy: LatePolicy,
    /// The timestamps history is replayed at.
    pub batch_time: BatchTime,
    /// How often (processing time) the speed lane advances its frontier: the micro-batch
    /// trade-off between latency and throughput.
    pub tick: Duration,
    /// Beyond this far behind the watermark even `Correct` drops a late event (so state for
    /// old windows can be compacted); `None`: no horizon.
    pub max_lateness: Option<Duration>,
    /// A worker whose speed lane has taken nothing for this long (processing time) stops
    /// holding the watermark back: it follows the newest event any worker has seen (minus the
    /// allowed lateness), and once every worker is idle, the watermark passes the newest event
    /// seen, so a quiet stream still finalizes its windows. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Whether to keep every view's changelog (for subscriptions and sinks; see
    /// [`changelog`](crate::changelog)): it costs a copy of each view's state.
    pub changelog: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_lateness: Duration::from_secs(5),
            late_policy: LatePolicy::Correct,
            batch_time: BatchTime::Single,
            tick: Duration::from_millis(10),
            max_lateness: None,
            idle_timeout: Some(Duration::from_secs(5)),
            changelog: false,
        }
    }
}

/// Callbacks for what the engine leaves out, beyond logging and counting it.
pub struct Hooks<E> {
    /// Every history line that was rejected.
    pub on_reject: Option<Arc<dyn Fn(Reject) + Send + Sync>>,
    /// Every late event the speed lane left out (policy `drop`, or beyond the maximum lateness).
    pub on_late_drop: Option<LateSink<E>>,
}

impl<E> Default for Hooks<E> {
    fn default() -> Self {
        Hooks {
            on_reject: None,
            on_late_drop: None,
        }
    }
}

/// Why a query got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// No view has this name.
    UnknownView(String),
    /// The engine stopped before answering.
    Stopped,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::UnknownView(v) => write!(f, "no view is named {v:?}"),
            QueryError::Stopped => write!(f, "the engine stopped before answering"),
        }
    }
}

impl std::error::Error for QueryError {}

/// A channel to one worker thread, which it wakes when it sends.
struct Mailbox<T> {
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
type Inboxes<T> = Arc<Mutex<Vec<Option<(Receiver<T>, Arc<OnceLock<Thread>>)>>>>;

fn mailboxes<T>(n: usize) -> (Vec<Mailbox<T>>, Inboxes<T>) {
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

fn take_inbox<T>(inboxes: &Inboxes<T>, local: usize) -> Option<Receiver<T>> {
    let mut inboxes = inboxes.lock().ok()?;
    let (receiver, worker) = inboxes.get_mut(local)?.take()?;
    let _ = worker.set(std::thread::current());
    Some(receiver)
}

/// What a producer says to the speed lane.
enum Live<E> {
    /// A live event.
    Event(E),
    /// No more events before this time will be sent (a source watermark); the worker answers
    /// with its speed lane's new time.
    Watermark(Time, Sender<Time>),
}

/// Feeds live events to this process's workers (round robin); clone it for every producer.
/// The speed lane ends when every clone is dropped.
pub struct LiveSender<E> {
    workers: Vec<Mailbox<Live<E>>>,
    next: Arc<AtomicUsize>,
}

impl<E> Clone for LiveSender<E> {
    fn clone(&self) -> Self {
        LiveSender {
            workers: self.workers.clone(),
            next: self.next.clone(),
        }
    }
}

impl<E: Event> LiveSender<E> {
    /// Sends one live event; `false` if the engine has stopped.
    pub fn send(&self, event: E) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.workers[i].send(Live::Event(event))
    }

    /// Declares that no more events with a time before `time` will be sent: every worker of
    /// this process advances its speed lane to at least `time` at once. Events sent after it
    /// with earlier times are late and follow the late policy.
    ///
    /// Waits for the workers and returns the time from which answers reflect every event sent
    /// before the declaration (`as_of` at least this; late events corrected at the lanes'
    /// current time can put it past `time`), or `None` if the engine stopped.
    pub fn watermark(&self, time: Time) -> Option<Time> {
        // A worker that corrected late events moves one past its time; the others then follow it,
        // so that every lane of this process ends at the same time.
        let mut target = time;
        loop {
            let reached = self.declare_round(target)?;
            if reached == target {
                return Some(reached);
            }
            target = reached;
        }
    }

    fn declare_round(&self, time: Time) -> Option<Time> {
        let (tx, rx) = mpsc::channel();
        for worker in &self.workers {
            if !worker.send(Live::Watermark(time, tx.clone())) {
                return None;
            }
        }
        drop(tx);
        let mut reached = time;
        for _ in &self.workers {
            reached = reached.max(rx.recv().ok()?);
        }
        Some(reached)
    }
}

/// A query with the place its answer goes.
type Request = (QueryMsg, Option<String>, Reply);

/// Asks this process's workers questions; clone it freely.
#[derive(Clone)]
pub struct Client {
    workers: Vec<Mailbox<Request>>,
    next: Arc<AtomicUsize>,
    catalog: Arc<Vec<ViewInfo>>,
}

impl Client {
    /// The views that can be queried.
    pub fn catalog(&self) -> &[ViewInfo] {
        &self.catalog
    }

    /// Sends a query; `reply` is called with the answer once the views are complete at its time.
    /// `as_of` asks for an answer reflecting at least every event before that time.
    pub fn ask(&self, query: Query, as_of: Option<Time>, reply: Reply) -> Result<(), QueryError> {
        let view = self
            .catalog
            .iter()
            .position(|v| v.name == query.view)
            .ok_or_else(|| QueryError::UnknownView(query.view.clone()))?;
        let key = match query.lookup {
            Lookup::Key(key) => Some(key),
            Lookup::All => None,
        };
        let msg = QueryMsg {
            id: 0,
            origin: 0,
            view,
            key: key.clone(),
            time: as_of.map_or(0, |t| t.saturating_sub(1)),
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        if self.workers[i].send((msg, key, reply)) {
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

    /// Waits for the final answer: the one after every input of every process has ended.
    pub fn query_final(&self, query: Query) -> Result<Answer, QueryError> {
        self.query(query, Some(END_OF_TIME))
    }
}

/// A running engine: this process's workers, its live input and its query client.
pub struct Engine<E: Event> {
    changelog: Arc<Changelog>,
    live: Option<LiveSender<E>>,
    client: Client,
    metrics: Arc<Metrics>,
    guards: timely::communication::initialize::WorkerGuards<Result<(), String>>,
}

impl<E: Event> Engine<E> {
    /// Starts this process's workers and returns once their dataflows are built (the history
    /// replay goes on in the background).
    pub fn start<P: Pipeline<Event = E>>(
        cluster: &Cluster,
        settings: Settings,
        history: History<E>,
        pipeline: P,
    ) -> Result<Engine<E>, String> {
        Self::start_with(cluster, settings, history, pipeline, Hooks::default())
    }

    /// Like [`start`](Engine::start), and calls `hooks` with what the engine leaves out
    /// (rejected history lines, dropped late events), which it also logs and counts.
    pub fn start_with<P: Pipeline<Event = E>>(
        cluster: &Cluster,
        settings: Settings,
        history: History<E>,
        pipeline: P,
        hooks: Hooks<E>,
    ) -> Result<Engine<E>, String> {
        let (allocators, guard) = cluster.allocators()?;
        let local = cluster.workers;
        let metrics = Arc::new(Metrics::default());
        let changelog = Arc::new(Changelog::default());
        let (live_boxes, live_inboxes) = mailboxes::<Live<E>>(local);
        let (query_boxes, query_inboxes) = mailboxes::<Request>(local);
        let (catalog_tx, catalog_rx) = mpsc::channel();
        let catalog_tx = Mutex::new(catalog_tx);
        let shared = Arc::new(Shared {
            local,
            settings,
            history,
            pipeline,
            hooks,
            metrics: metrics.clone(),
            changelog: changelog.clone(),
        });

        let config = timely::WorkerConfig::default();
        let guards = timely::execute::execute_from(allocators, guard, config, move |worker| {
            let index = worker.index() % local;
            let live = take_inbox(&live_inboxes, index).ok_or("live inbox taken twice")?;
            let queries = take_inbox(&query_inboxes, index).ok_or("query inbox taken twice")?;
            run_worker(worker, &shared, live, queries, |catalog| {
                if let Ok(tx) = catalog_tx.lock() {
                    let _ = tx.send(catalog);
                }
            })
        })?;
        let catalog = catalog_rx
            .recv()
            .map_err(|_| "the workers stopped before building their dataflow".to_string())?;
        let next = Arc::new(AtomicUsize::new(0));
        Ok(Engine {
            changelog,
            live: Some(LiveSender {
                workers: live_boxes,
                next: next.clone(),
            }),
            client: Client {
                workers: query_boxes,
                next,
                catalog: Arc::new(catalog),
            },
            metrics,
            guards,
        })
    }

    /// A sender for live events (the speed lane ends when all senders, and the engine's own,
    /// are dropped: see [`end_live`](Engine::end_live)).
    pub fn live(&self) -> Option<LiveSender<E>> {
        self.live.clone()
    }

    /// Drops the engine's own live sender, so the speed lane ends with the last clone.
    pub fn end_live(&mut self) {
        self.live = None;
    }

    /// A query client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// This process's changelogs (kept when [`Settings::changelog`] is set).
    pub fn changelog(&self) -> Arc<Changelog> {
        self.changelog.clone()
    }

    /// This process's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Ends this process's inputs and waits for its workers: they finish once every input of
    /// every process has ended and every query has been answered.
    pub fn join(self) -> Result<(), String> {
        let Engine {
            live,
            client,
            guards,
            ..
        } = self;
        drop(live);
        drop(client);
        let mut errors = Vec::new();
        for result in guards.join() {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// What every worker of a process shares.
struct Shared<E, P> {
    local: usize,
    settings: Settings,
    history: History<E>,
    pipeline: P,
    hooks: Hooks<E>,
    metrics: Arc<Metrics>,
    changelog: Arc<Changelog>,
}

/// How many history events a worker replays between steps of its dataflow.
const REPLAY_CHUNK: u64 = 64 * 1024;

fn run_worker<E, P>(
    worker: &mut Worker,
    shared: &Shared<E, P>,
    live: Receiver<Live<E>>,
    requests: Receiver<Request>,
    publish_catalog: impl FnOnce(Vec<ViewInfo>),
) -> Result<(), String>
where
    E: Event,
    P: Pipeline<Event = E>,
{
    let settings = &shared.settings;
    let metrics = &shared.metrics;
    let replies = Rc::new(RefCell::new(Replies::default()));
    let heard = Rc::new(Cell::new((0, 0)));
    let (batch_input, speed_input, mut query_input, mut gossip_input, lanes, catalog) = worker
        .dataflow::<Time, _, _>(|scope| {
            let (batch_input, batch) = scope.new_collection::<E, isize>();
            let (speed_input, speed) = scope.new_collection::<E, isize>();
            let (lanes, events) = batch.concat(speed).probe();
            let (query_input, queries) = scope.new_collection::<QueryMsg, isize>();
            let (gossip_input, gossip) = scope.new_input::<Vec<(Time, Time)>>();
            listen(gossip, heard.clone());
            let changelog = settings
                .changelog
                .then(|| (shared.changelog.clone(), shared.local));
            let mut views = Views::new(queries.inner, replies.clone(), metrics.clone(), changelog);
            shared.pipeline.build(events, &mut views);
            (
                batch_input,
                speed_input,
                query_input,
                gossip_input,
                lanes,
                views.into_catalog(),
            )
        });
    let names: Vec<String> = catalog.iter().map(|v| v.name.clone()).collect();
    publish_catalog(catalog);

    // The batch lane: this worker's share of history, then closed.
    let started = Instant::now();
    let rules = LateRules {
        allowed_lateness: settings.allowed_lateness.as_millis() as Time,
        policy: settings.late_policy,
        max_lateness: settings.max_lateness.map(|d| d.as_millis() as Time),
    };
    let mut lane = SpeedLane::new(
        speed_input,
        rules,
        shared.hooks.on_late_drop.clone(),
        metrics.clone(),
    );
    let mut batch = BatchLane::new(
        batch_input,
        settings.batch_time,
        rules.allowed_lateness,
        metrics.clone(),
    );
    let share = Share {
        index: worker.index(),
        count: worker.peers(),
    };
    let mut replayed = 0u64;
    let mut since_step = 0u64;
    // History enters in chunks: after each, the dataflow steps and the speed lane follows the
    // batch lane, so replayed windows can finalize during the replay.
    let mut replay = |event: E, worker: &mut Worker| {
        batch.push(event);
        since_step += 1;
        if since_step == REPLAY_CHUNK {
            lane.declare(batch.flush(since_step));
            since_step = 0;
            worker.step();
        }
    };
    match &shared.history {
        History::Files(paths) => {
            for path in paths {
                let stats = read_share(
                    path,
                    share,
                    |event| replay(event, worker),
                    |reject| {
                        warn!(%reject, "history line rejected");
                        Metrics::add(&metrics.rejected, 1);
                        if let Some(hook) = &shared.hooks.on_reject {
                            hook(reject);
                        }
                    },
                )
                .map_err(|e| format!("cannot read history {}: {e}", path.display()))?;
                Metrics::add(&metrics.history_bytes, stats.bytes);
                replayed += stats.accepted;
            }
        }
        History::Events(events) => {
            for event in events.iter().skip(share.index).step_by(share.count) {
                replay(event.clone(), worker);
                replayed += 1;
            }
        }
        History::Master(dir) => {
            let local = Share {
                index: worker.index() % shared.local,
                count: shared.local,
            };
            let stats = crate::master::read_share_with_progress(
                dir,
                local,
                &metrics.history_bytes,
                |event| replay(event, worker),
            )
            .map_err(|e| format!("cannot replay the master dataset: {e}"))?;
            replayed += stats.records;
        }
    }
    batch.flush(since_step);
    let live_start = batch.close();
    Metrics::add(&metrics.replayed_workers, 1);
    info!(
        worker = worker.index(),
        events = replayed,
        seconds = started.elapsed().as_secs_f64(),
        views = names.len(),
        "history replayed"
    );

    // The speed lane and the queries, until both have ended.
    lane.declare(live_start);
    let mut told = (0, 0);
    let mut speed = Some(lane);
    let mut requests = Some(requests);
    let mut next_id = 0u64;
    let mut last_tick = Instant::now();
    loop {
        if let Some(lane) = speed.as_mut() {
            let mut ended = false;
            for _ in 0..REPLAY_CHUNK {
                match live.try_recv() {
                    Ok(Live::Event(event)) => lane.push(event),
                    Ok(Live::Watermark(time, ack)) => drop(ack.send(lane.declare(time))),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                if let Some(mut lane) = speed.take() {
                    lane.tick();
                    lane.close();
                }
            } else if last_tick.elapsed() >= settings.tick {
                if let Some(timeout) = settings.idle_timeout {
                    follow_when_idle(lane, timeout, rules.allowed_lateness, &heard);
                }
                lane.tick();
                metrics.set_worker_watermark(worker.index(), lane.time());
                last_tick = Instant::now();
                let news = (
                    lane.newest().unwrap_or(0),
                    wall_clock_ms() - lane.idle_for().as_millis() as Time,
                );
                if news != told {
                    gossip_input.send(news);
                    gossip_input.flush();
                    told = news;
                }
            }
        }

        // Keep the query input at the last complete time, or on the wall clock once the lanes ended.
        let frontier = lanes.with_frontier(|f| f.as_option().copied());
        metrics
            .frontier
            .fetch_max(frontier.unwrap_or(END_OF_TIME), Ordering::Relaxed);
        let target = match frontier {
            Some(t) => t.saturating_sub(1),
            None => END_OF_TIME + wall_clock_ms(),
        };
        if target > *query_input.time() {
            query_input.advance_to(target);
        }
        if let Some(inbox) = requests.as_ref() {
            loop {
                match inbox.try_recv() {
                    Ok((mut msg, key, reply)) => {
                        msg.id = next_id;
                        msg.origin = worker.index();
                        msg.time = msg.time.max(*query_input.time());
                        next_id += 1;
                        let name = names.get(msg.view).cloned().unwrap_or_default();
                        replies.borrow_mut().wait(msg.id, name, key, reply);
                        Metrics::add(&metrics.queries, 1);
                        let time = msg.time;
                        query_input.update_at(msg, time, 1);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        requests = None;
                        break;
                    }
                }
            }
        }
        query_input.flush();

        if speed.is_none() && requests.is_none() && replies.borrow().is_empty() {
            break;
        }
        worker.step_or_park(Some(settings.tick));
    }
    drop(query_input);
    drop(gossip_input);
    while worker.step_or_park(Some(settings.tick)) {}
    Ok(())
}

/// Every worker tells every other the newest event time its speed lane has seen and when it
/// last took an event (wall clock ms); `heard` keeps the maxima. This small broadcast is how an
/// idle worker learns where the others are, across processes.
fn listen<'s>(
    gossip: timely::dataflow::Stream<'s, Time, Vec<(Time, Time)>>,
    heard: Rc<Cell<(Time, Time)>>,
) {
    gossip
        .broadcast()
        .sink(Pipelined, "Gossip", move |(input, _)| {
            input.for_each(|_, data| {
                for (newest, active) in data.drain(..) {
                    let (n, a) = heard.get();
                    heard.set((n.max(newest), a.max(active)));
                }
            });
        });
}

/// An idle lane stops holding the watermark back: it follows the newest event any worker has
/// seen (minus the lateness), or passes it once every worker has been idle for `timeout`.
fn follow_when_idle<E: Event>(
    lane: &mut SpeedLane<E>,
    timeout: Duration,
    lateness: Time,
    heard: &Cell<(Time, Time)>,
) {
    if lane.idle_for() < timeout {
        return;
    }
    let (newest, active) = heard.get();
    let everyone_idle = wall_clock_ms().saturating_sub(active) >= timeout.as_millis() as Time;
    let target = if everyone_idle {
        newest.saturating_add(1)
    } else {
        newest.saturating_sub(lateness)
    };
    if target > lane.time() {
        lane.declare(target);
    }
}

fn wall_clock_ms() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Time)
}
