//! Flows: dataflows built while the engine runs, backfilled from the master dataset and then
//! fed live, every event exactly once.
//!
//! A new view (a SQL view created at runtime) gets a dataflow of its own, with its own batch,
//! speed and query inputs. Its creation is sequenced with the live events
//! ([`Inlet::sequence`](crate::live)): once every event accepted so far is journaled and
//! released, the source marks the end of the master dataset, and a [`FlowSpec`] goes to every
//! worker in stream order. A worker that takes it builds the dataflow, starts a thread that
//! reads its share of the master up to the mark, and from then on hands every live event it
//! takes to the flow as well. So every event before the mark comes from the backfill and every
//! one after it from the live lane: none is missed, none counted twice.
//!
//! The backfill keeps the recorded verdicts. Events applied before the flow's *horizon* (the
//! lanes' target when it was created, which every later event is applied at or after) go in
//! at one time, as a batch; the others at their own times, as in the speed lane. Reads of the
//! flow's views start at the horizon, and the flow is ready once its frontier passes it.
//!
//! Once ready, a flow is cut by every checkpoint with the engine's own dataflow (its cuts keep
//! their contents like the engine's): a restart builds its views into the engine's dataflow,
//! where the same cuts restore from those states instead of replaying the history.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;
use tracing::error;

use super::Pipeline;
use super::catalog::{Catalog, Progress};
use super::client::ReadTimes;
use crate::answer::Replies;
use crate::changelog::Changelog;
use crate::checkpoint::Cuts;
use crate::event::{END_OF_TIME, Event, Time};
use crate::history::Share;
use crate::lane::{BatchTime, SpeedLane};
use crate::live::{Control, Inlet};
use crate::master::Entry;
use crate::metrics::Metrics;
use crate::serve::QueryMsg;
use crate::view::{ViewInfo, Views};

/// Reads one share of the master dataset as it was when the backfill was marked.
pub trait Backfill<E>: Send + Sync {
    /// The bytes a whole backfill reads (over every share), for progress.
    fn bytes(&self) -> u64;
    /// Where the mark is in the master dataset (what follows it is not read), if it is one:
    /// checkpoints need it.
    fn position(&self) -> Option<crate::master::Position> {
        None
    }
    /// Replays share `share`, adding the bytes read to `progress`.
    fn read(
        &self,
        share: Share,
        progress: &AtomicU64,
        on_entry: &mut dyn FnMut(Entry<E>),
    ) -> Result<(), String>;
}

/// Where backfills come from: the master dataset the live input is journaled to.
pub trait BackfillSource<E>: Send + Sync {
    /// Marks what is durable now: a backfill reads exactly that.
    fn mark(&self) -> Arc<dyn Backfill<E>>;
}

/// A dataflow to build while the engine runs.
pub struct FlowSpec<E> {
    /// Its id (never 0: that is the engine's first dataflow).
    pub(crate) id: u64,
    /// What it computes.
    pub(crate) pipeline: Arc<dyn Pipeline<Event = E>>,
    /// Every live event after it is applied at or after this time.
    pub(crate) horizon: Time,
    /// What happened before it.
    pub(crate) backfill: Arc<dyn Backfill<E>>,
    /// How far this process's backfill has read.
    pub(crate) progress: Arc<Progress>,
    /// Whether its views are left out of the catalog's list (an ad-hoc query).
    pub(crate) hidden: bool,
}

/// How many backfilled events travel from the reading thread to the worker at a time. A
/// worker takes one chunk per loop iteration, so this bounds how long a backfill delays the
/// queries and live events of that iteration: 16K-event chunks gave point queries a p99 of
/// 374 ms during a backfill, 512-event chunks 68 ms, for the same backfill time (see
/// docs/BENCHMARKS.md).
const CHUNK: usize = 512;

/// How many chunks may wait for the worker (64K events).
const BUFFERED: usize = 128;

/// A flow as one worker runs it.
pub(super) struct Flow<E: Event> {
    pub id: u64,
    /// Sealed history, at one time; `None` once the backfill is done.
    batch: Option<InputSession<Time, E, isize>>,
    speed: Option<SpeedLane<E>>,
    pub queries: Option<InputSession<Time, QueryMsg, isize>>,
    /// The frontier of the flow's inputs.
    lanes: ProbeHandle<Time>,
    /// The frontier of its views.
    views: ProbeHandle<Time>,
    filling: Option<Receiver<Vec<(E, Time)>>>,
    pub horizon: Time,
    pub reads: ReadTimes,
    pub names: Vec<String>,
    /// Whether the live input has ended (the speed lane closes once the backfill is done).
    live_ended: bool,
    /// When the catalog retired it: it still answers the queries sent before, for a moment.
    pub retired: Option<std::time::Instant>,
    /// Its cuts, if checkpoints cut it (see [`Context::checkpoints`]).
    pub cuts: Option<Cuts>,
}

/// How long a retired flow still answers the queries that were on their way to it.
pub(super) const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a flow is built with, besides its spec.
pub(super) struct Context {
    pub replies: std::rc::Rc<std::cell::RefCell<Replies>>,
    pub metrics: Arc<Metrics>,
    pub changelog: Option<(Arc<Changelog>, usize)>,
    pub page_hold: std::time::Duration,
    /// How late an update may come (see [`Settings::horizon`](super::Settings::horizon)).
    pub horizon: Option<crate::event::Time>,
    pub local: usize,
    /// Whether checkpoints are taken: they cut a flow of a checkpointed pipeline once its
    /// views answer, so that a restart restores them rather than rebuilding them.
    pub checkpoints: bool,
}

impl<E: Event> Flow<E> {
    /// Builds the flow's dataflow on this worker, starts its backfill, and returns it with
    /// its views.
    pub fn build(
        worker: &mut Worker,
        spec: &FlowSpec<E>,
        cx: &Context,
    ) -> (Flow<E>, Vec<ViewInfo>) {
        let views_probe = ProbeHandle::new();
        let lanes_probe = ProbeHandle::new();
        let cuts = (cx.checkpoints && spec.pipeline.checkpointed())
            .then(|| Cuts::new(true).reading_arrangements(worker.peers() == cx.local));
        let (batch, speed, queries, catalog) = worker.dataflow::<Time, _, _>(|scope| {
            let (batch_input, batch) = scope.new_collection::<E, isize>();
            let (speed_input, speed) = scope.new_collection::<E, isize>();
            let events = batch.concat(speed).probe_with(&lanes_probe);
            let (query_input, queries) = scope.new_collection::<QueryMsg, isize>();
            let mut views = Views::new(
                queries.inner,
                cx.replies.clone(),
                cx.metrics.clone(),
                cx.changelog.clone(),
                views_probe.clone(),
                cx.page_hold,
                cuts.clone().unwrap_or_else(|| Cuts::new(false)),
            )
            .with_horizon(cx.horizon);
            spec.pipeline.build(events, &mut views);
            (batch_input, speed_input, query_input, views.into_catalog())
        });
        let share = Share {
            index: worker.index() % cx.local,
            count: cx.local,
        };
        let filling = start_backfill(spec, share, worker.index());
        let flow = Flow {
            id: spec.id,
            batch: Some(batch),
            speed: Some(SpeedLane::new(speed)),
            queries: Some(queries),
            lanes: lanes_probe,
            views: views_probe,
            filling: Some(filling),
            horizon: spec.horizon,
            reads: ReadTimes::new(BatchTime::Single, spec.horizon),
            names: catalog.iter().map(|v| v.name.clone()).collect(),
            live_ended: false,
            retired: None,
            cuts,
        };
        (flow, catalog)
    }

    /// Takes one chunk of the backfill, if one is waiting; closes the batch input at its end.
    pub fn fill(&mut self) {
        let Some(rx) = self.filling.as_ref() else {
            return;
        };
        match rx.try_recv() {
            Ok(chunk) => {
                for (event, at) in chunk {
                    if at < self.horizon {
                        if let Some(batch) = self.batch.as_mut() {
                            batch.update(event, 1);
                        }
                    } else if let Some(speed) = self.speed.as_mut() {
                        speed.apply(event, at);
                    }
                }
                if let Some(batch) = self.batch.as_mut() {
                    batch.flush();
                }
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                self.filling = None;
                self.batch = None;
                if self.live_ended {
                    self.end_live();
                }
            }
        }
    }

    /// A live event, as the speed lane takes it.
    pub fn apply(&mut self, event: E, at: Time) {
        if let Some(speed) = self.speed.as_mut() {
            speed.apply(event, at);
        }
    }

    /// Follows the speed lane's time; while backfilling, no further than the horizon (events
    /// of the backfill may still come at it).
    pub fn follow(&mut self, time: Time) {
        let time = if self.filling.is_some() {
            time.min(self.horizon)
        } else {
            time
        };
        if let Some(speed) = self.speed.as_mut() {
            speed.advance_to(time);
        }
    }

    /// The live input ended: the speed lane closes (once the backfill is done).
    pub fn end_live(&mut self) {
        self.live_ended = true;
        if self.filling.is_none()
            && let Some(speed) = self.speed.take()
        {
            speed.close();
        }
    }

    /// Closes every input: the dataflow winds down.
    pub fn retire(&mut self) {
        self.filling = None;
        self.batch = None;
        self.speed = None;
        self.queries = None;
    }

    /// The frontier of the flow's inputs.
    pub fn frontier(&self) -> Option<Time> {
        self.lanes.with_frontier(|f| f.as_option().copied())
    }

    /// Whether its views have passed the horizon: they reflect everything before the flow
    /// was created, and follow the live lane.
    pub fn caught_up(&self) -> bool {
        // A probe reports no frontier until the dataflow has first run: that is not done.
        self.views
            .with_frontier(|f| !f.is_empty() && f.iter().all(|t| *t >= self.horizon))
            || (self.filling.is_none() && self.speed.is_none() && self.lanes.done())
    }

    /// Keeps the query input at the fresh read time.
    pub fn advance_queries(&mut self) -> Option<Time> {
        let target = match self.frontier() {
            Some(t) => self.reads.fresh(t),
            None => Some(END_OF_TIME + crate::live::wall_clock_ms()),
        };
        if let (Some(t), Some(q)) = (target, self.queries.as_mut())
            && t > *q.time()
        {
            q.advance_to(t);
        }
        target
    }
}

/// Starts the thread that reads this worker's share of the backfill.
fn start_backfill<E: Event>(
    spec: &FlowSpec<E>,
    share: Share,
    worker: usize,
) -> Receiver<Vec<(E, Time)>> {
    let (tx, rx) = sync_channel::<Vec<(E, Time)>>(BUFFERED);
    let backfill = spec.backfill.clone();
    let progress = spec.progress.clone();
    let id = spec.id;
    if share.index == 0 {
        progress.total.store(backfill.bytes(), Ordering::Relaxed);
    }
    let spawned = std::thread::Builder::new()
        .name(format!("backfill-{id}-{worker}"))
        .spawn(move || run_backfill(&*backfill, share, &progress, tx));
    if let Err(e) = spawned {
        error!(flow = id, "cannot start a backfill thread: {e}");
    }
    rx
}

fn run_backfill<E: Event>(
    backfill: &dyn Backfill<E>,
    share: Share,
    progress: &Progress,
    tx: SyncSender<Vec<(E, Time)>>,
) {
    let chunk = Mutex::new(Vec::with_capacity(CHUNK));
    let mut on_entry = |entry: Entry<E>| {
        let (event, at) = match entry {
            Entry::Event(event) => {
                let ts = event.time();
                (event, ts)
            }
            Entry::Held { event, at } | Entry::Corrected { event, at } => (event, at),
            _ => return,
        };
        let mut chunk = chunk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        chunk.push((event, at));
        if chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut *chunk, Vec::with_capacity(CHUNK));
            let _ = tx.send(full);
        }
    };
    if let Err(e) = backfill.read(share, &progress.read, &mut on_entry) {
        error!("a backfill failed: {e}");
    }
    let rest = chunk.into_inner().unwrap_or_default();
    if !rest.is_empty() {
        let _ = tx.send(rest);
    }
}

/// Builds dataflows while the engine runs and drops views; clone it freely.
pub struct Flows<E: Event> {
    pub(super) catalog: Arc<Catalog>,
    pub(super) backfill: Option<Arc<dyn BackfillSource<E>>>,
    pub(super) inlet: Arc<Inlet<E>>,
    pub(super) next: Arc<std::sync::atomic::AtomicU64>,
}

impl<E: Event> Clone for Flows<E> {
    fn clone(&self) -> Self {
        Flows {
            catalog: self.catalog.clone(),
            backfill: self.backfill.clone(),
            inlet: self.inlet.clone(),
            next: self.next.clone(),
        }
    }
}

impl<E: Event> Flows<E> {
    /// Builds a dataflow for `pipeline`'s views while the engine runs: backfilled from the
    /// master dataset, then fed live, every event exactly once (see `engine::flow`). Its views are
    /// listed as backfilling until they reflect everything, then they answer, replacing views
    /// of the same names in one step. Returns the dataflow's id once every worker of this
    /// process has it in its stream (see [`wait_listed`](Self::wait_listed)).
    pub fn create(&self, pipeline: Arc<dyn Pipeline<Event = E>>) -> Result<u64, String> {
        self.build(pipeline, false)
    }

    /// Like [`create`](Self::create), for views that are not listed (nor waited for by
    /// readiness): an ad-hoc query's, read once and dropped.
    pub fn create_hidden(&self, pipeline: Arc<dyn Pipeline<Event = E>>) -> Result<u64, String> {
        self.build(pipeline, true)
    }

    fn build(&self, pipeline: Arc<dyn Pipeline<Event = E>>, hidden: bool) -> Result<u64, String> {
        let source = self
            .backfill
            .as_ref()
            .ok_or("this engine has no master dataset to backfill new views from")?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        self.inlet
            .sequence(|judge| {
                Control::Build(Arc::new(FlowSpec {
                    id,
                    pipeline,
                    horizon: judge.target(),
                    backfill: source.mark(),
                    progress,
                    hidden,
                }))
            })
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Waits until dataflow `flow`'s views are listed (backfilling or ready): each worker builds
    /// it as it takes it from its stream, so not on a worker thread. `false` if they are not
    /// within `timeout`.
    pub fn wait_listed(&self, flow: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.catalog.has_flow(flow) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Removes a view (every version of it); a dataflow left serving nothing winds down.
    pub fn drop_view(&self, name: &str) -> bool {
        self.catalog.drop_view(name)
    }

    /// Whether every view of dataflow `flow` answers (false until it is built).
    pub fn ready(&self, flow: u64) -> bool {
        self.catalog.flow_ready(flow)
    }
}
