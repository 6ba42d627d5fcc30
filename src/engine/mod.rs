//! The engine: one timely computation running a pipeline's dataflow, fed by two lanes and
//! answering queries.
//!
//! [`Engine::start`] starts the workers of this process. Each worker builds the same dataflow
//! (batch lane + speed lane → the pipeline's views → arrangements → serving), replays its share
//! of the history through the batch lane (`engine::replay`), agrees with the others on where live
//! input begins, then loops: take live events from its mailbox into the speed lane, advance the
//! lane to the judge's published watermark every tick ([`live`](crate::live)), take queries into
//! the query input at the right read time (`engine::client`), and step the dataflow.

mod catalog;
mod checkpointing;
mod client;
mod flow;
mod memory;
mod replay;
mod settings;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::VecCollection;
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::Pipeline as Pipelined;
use timely::dataflow::operators::Input as TimelyInput;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::worker::Worker;
use tracing::{error, info};

pub use catalog::{Listed, ViewState};
pub use checkpointing::Checkpointer;
pub(crate) use checkpointing::Request as CheckpointRequest;
pub use client::{Client, QueryError, Ticket};
pub use flow::{Backfill, BackfillSource, FlowSpec, Flows};
pub use settings::{Checkpoints, Hooks, OnSequenced, Settings};

use crate::answer::Replies;
use crate::changelog::Changelog;
use crate::cluster::Cluster;
use crate::event::{Decode, END_OF_TIME, Event, Parse, Time};
use crate::history::History;
use crate::lane::{BatchLane, Replayed, SpeedLane};
use crate::live::{Control, Inbox, Inlet, LiveSender, Taken, wall_clock_ms};
use crate::metrics::Metrics;
use crate::serve::QueryMsg;
use crate::view::Views;
use catalog::{Catalog, Progress};
use client::{ReadTimes, Request, mailboxes, take_inbox};
use flow::Flow;

/// A user's business logic: an event type and the views computed from it, written once for
/// both lanes.
pub trait Pipeline: Send + Sync + 'static {
    /// The events both lanes carry.
    type Event: Event;

    /// Registers the views, as differential code over the collection of all events.
    fn build<'s>(&self, events: VecCollection<'s, Time, Self::Event>, views: &mut Views<'s>);

    /// How lines of input become events; the default is the event type's own
    /// [`Event::parse`].
    fn decoder(&self) -> Arc<dyn Decode<Self::Event>> {
        Arc::new(Parse)
    }

    /// Whether every view's state begins at a cut ([`Views::checkpoint`], or the collection of
    /// [`Views::register`]), so that the views can be restored from a checkpoint (see
    /// [`checkpoint`](crate::checkpoint)). A pipeline says so once it is written that way;
    /// without it, no checkpoint is taken and a restart replays the whole master dataset.
    fn checkpointed(&self) -> bool {
        false
    }
}

/// A running engine: this process's workers, its live input and its query client.
pub struct Engine<E: Event> {
    flows: Flows<E>,
    changelog: Arc<Changelog>,
    live: Option<LiveSender<E>>,
    inlet: Arc<Inlet<E>>,
    client: Client,
    checkpointer: Option<Checkpointer<E>>,
    metrics: Arc<Metrics>,
    failure: Arc<Mutex<Option<String>>>,
    ticker: Option<std::thread::JoinHandle<()>>,
    guards: timely::communication::initialize::WorkerGuards<Result<(), String>>,
}

impl<E: Event> Engine<E> {
    /// Starts this process's workers and returns once their dataflows are built (the history
    /// replay goes on in the background; live events sent meanwhile wait for it).
    pub fn start<P: Pipeline<Event = E>>(
        cluster: &Cluster,
        settings: Settings,
        history: History<E>,
        pipeline: P,
    ) -> Result<Engine<E>, String> {
        Self::start_with(cluster, settings, history, pipeline, Hooks::default())
    }

    /// Like [`start`](Engine::start), with `hooks` for what the engine leaves out (also logged
    /// and counted) and for storing live verdicts.
    pub fn start_with<P: Pipeline<Event = E>>(
        cluster: &Cluster,
        settings: Settings,
        history: History<E>,
        pipeline: P,
        hooks: Hooks<E>,
    ) -> Result<Engine<E>, String> {
        if let History::Events(events) = &history
            && let Some(e) = events.iter().find(|e| e.time() >= END_OF_TIME)
        {
            return Err(format!(
                "a history event's time {} is not below 2^53 (the end of time)",
                e.time()
            ));
        }
        let (allocators, guard) = cluster.allocators()?;
        let local = cluster.workers;
        let metrics = Arc::new(Metrics::default());
        let changelog = Arc::new(match &hooks.changelog_journal {
            Some(path) if settings.changelog => Changelog::with_journal(path)?,
            _ => Changelog::default(),
        });
        let (inlet, live_inboxes) = Inlet::new(
            local,
            settings.rules(),
            settings.backlog,
            hooks.journal.clone(),
            hooks.on_late_drop.clone(),
            metrics.clone(),
        );
        let (query_boxes, query_inboxes) = mailboxes::<Request>(local);
        let (catalog_tx, catalog_rx) = mpsc::channel();
        let catalog_tx = Mutex::new(catalog_tx);
        let catalog = Arc::new(Catalog::default());
        let backfill = hooks.backfill.clone();
        let failure = Arc::new(Mutex::new(None));
        let checkpointed = pipeline.checkpointed() && matches!(history, History::Master(_));
        let checkpointer = match (&hooks.checkpoints, &backfill) {
            (Some(c), Some(source)) if checkpointed && c.take => Some(Checkpointer {
                store: c.store.clone(),
                inlet: inlet.clone(),
                source: source.clone(),
                local,
                metrics: metrics.clone(),
                catalog: catalog.clone(),
                busy: Arc::default(),
            }),
            _ => None,
        };
        let (candidates, master_end) = match (&hooks.checkpoints, &backfill) {
            (Some(c), Some(source)) if checkpointed && c.restore => {
                (c.store.candidates(), source.mark().position())
            }
            _ => (Vec::new(), None),
        };
        let (idle, tick_every) = (settings.idle_timeout, settings.tick);
        let shared = Arc::new(Shared {
            local,
            settings,
            history,
            pipeline,
            hooks,
            metrics: metrics.clone(),
            changelog: changelog.clone(),
            inlet: inlet.clone(),
            failure: failure.clone(),
            catalog: catalog.clone(),
            checkpoints: checkpointer.is_some(),
            candidates,
            master_end,
            kept: std::sync::OnceLock::new(),
        });

        let config = timely::WorkerConfig::default();
        let guards = timely::execute::execute_from(allocators, guard, config, move |worker| {
            let index = worker.index() % local;
            let live = shared
                .inlet
                .inbox(&live_inboxes, index)
                .ok_or("live inbox taken twice")?;
            let queries = take_inbox(&query_inboxes, index).ok_or("query inbox taken twice")?;
            let result = run_worker(worker, &shared, live, queries, || {
                if let Ok(tx) = catalog_tx.lock() {
                    let _ = tx.send(());
                }
            });
            if let Err(e) = &result {
                shared.fail(e);
            }
            result
        })?;
        catalog_rx
            .recv()
            .map_err(|_| "the workers stopped before building their dataflow".to_string())?;
        let ticker = tick(inlet.clone(), idle, tick_every);
        Ok(Engine {
            flows: Flows {
                catalog: catalog.clone(),
                backfill,
                inlet: inlet.clone(),
                next: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            },
            changelog,
            live: Some(LiveSender::new(inlet.clone())),
            inlet,
            client: Client::new(query_boxes, catalog),
            checkpointer,
            metrics,
            failure,
            ticker,
            guards,
        })
    }

    /// A sender for live events (the speed lanes end when all senders, and the engine's own,
    /// are dropped: see [`end_live`](Engine::end_live)).
    pub fn live(&self) -> Option<LiveSender<E>> {
        self.live.clone()
    }

    /// Drops the engine's own live sender, so the speed lanes end with the last clone.
    pub fn end_live(&mut self) {
        self.live = None;
    }

    /// Builds dataflows while the engine runs, and drops views (see [`Flows`]).
    pub fn flows(&self) -> Flows<E> {
        self.flows.clone()
    }

    /// Takes checkpoints, if this engine has a store for them and its pipeline can be
    /// restored from them ([`Hooks::checkpoints`]).
    pub fn checkpointer(&self) -> Option<Checkpointer<E>> {
        self.checkpointer.clone()
    }

    /// Takes a checkpoint now and returns once it is durable (see
    /// [`checkpoint`](crate::checkpoint)).
    pub fn checkpoint(&self) -> Result<crate::checkpoint::Taken, String> {
        self.checkpointer
            .as_ref()
            .ok_or("this engine takes no checkpoints (no store, or a pipeline that is not checkpointed)")?
            .take()
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

    /// Why a worker of this process failed (a history that cannot be replayed), if one did.
    /// The engine goes on with what it has, but takes no live events.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// A way to ask, from any thread, whether a worker has failed (see
    /// [`failure`](Engine::failure)).
    pub fn failure_watch(&self) -> impl Fn() -> Option<String> + Send + Sync + 'static {
        let failure = self.failure.clone();
        move || failure.lock().ok().and_then(|f| f.clone())
    }

    /// Ends this process's inputs and waits for its workers: they finish once every input of
    /// every process has ended and every query has been answered.
    pub fn join(self) -> Result<(), String> {
        let Engine {
            live,
            inlet,
            client,
            ticker,
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
        inlet.stop();
        if let Some(ticker) = ticker {
            let _ = ticker.join();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// What every worker of a process shares.
struct Shared<E: Event, P> {
    local: usize,
    settings: Settings,
    history: History<E>,
    pipeline: P,
    hooks: Hooks<E>,
    metrics: Arc<Metrics>,
    changelog: Arc<Changelog>,
    inlet: Arc<Inlet<E>>,
    failure: Arc<Mutex<Option<String>>>,
    catalog: Arc<Catalog>,
    /// Whether checkpoints are taken (the speed lanes keep their pending events).
    checkpoints: bool,
    /// The checkpoints to restore from, newest first: the first with a state for one of the
    /// dataflow's cuts.
    candidates: Vec<crate::checkpoint::Candidate>,
    /// Where the master dataset ends: a checkpoint past it is of another master.
    master_end: Option<crate::master::Position>,
    /// The events the restored checkpoint kept, when its history is replayed to rebuild the
    /// cuts it lacks (made by the first worker that needs them).
    kept: std::sync::OnceLock<Result<replay::Kept<E>, String>>,
}

impl<E: Event, P> Shared<E, P> {
    fn fail(&self, reason: &str) {
        error!("{reason}");
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| reason.to_string());
        }
        self.inlet.stop();
    }
}

fn run_worker<E, P>(
    worker: &mut Worker,
    shared: &Shared<E, P>,
    mut live: Inbox<E>,
    requests: Receiver<Request>,
    built: impl FnOnce(),
) -> Result<(), String>
where
    E: Event,
    P: Pipeline<Event = E>,
{
    let settings = &shared.settings;
    let metrics = &shared.metrics;
    let replies = Rc::new(RefCell::new(Replies::default()));
    let summaries: Rc<RefCell<Vec<Option<Replayed>>>> =
        Rc::new(RefCell::new(vec![None; worker.peers()]));
    let caps: Rc<RefCell<Vec<Option<Time>>>> = Rc::new(RefCell::new(vec![None; worker.peers()]));
    let views_probe = ProbeHandle::new();
    let (
        batch_input,
        speed_input,
        mut query_input,
        mut gossip_input,
        mut summary_input,
        mut cap_input,
        lanes,
        catalog,
    ) = worker.dataflow::<Time, _, _>(|scope| {
        let (batch_input, batch) = scope.new_collection::<E, isize>();
        let (speed_input, speed) = scope.new_collection::<E, isize>();
        let (lanes, events) = batch.concat(speed).probe();
        let (query_input, queries) = scope.new_collection::<QueryMsg, isize>();
        let (gossip_input, gossip) = scope.new_input::<Vec<(Time, Time)>>();
        listen(gossip, shared.inlet.clone());
        let (summary_input, summary) = scope.new_input::<Vec<(usize, Replayed)>>();
        gather_all(summary, summaries.clone());
        let (cap_input, cap) = scope.new_input::<Vec<(usize, Time)>>();
        gather_all(cap, caps.clone());
        let changelog = settings
            .changelog
            .then(|| (shared.changelog.clone(), shared.local));
        let mut views = Views::new(
            queries.inner,
            replies.clone(),
            metrics.clone(),
            changelog,
            views_probe.clone(),
            settings.page_hold,
            crate::checkpoint::Cuts::new(shared.checkpoints)
                .reading_arrangements(scope.peers() == shared.local),
        )
        .with_horizon(settings.horizon());
        shared.pipeline.build(events, &mut views);
        let cuts = views.cuts();
        (
            batch_input,
            speed_input,
            query_input,
            gossip_input,
            summary_input,
            cap_input,
            (lanes, cuts),
            views.into_catalog(),
        )
    });
    let (lanes, cuts) = lanes;
    let names: Vec<String> = catalog.iter().map(|v| v.name.clone()).collect();
    let leader = worker.index().is_multiple_of(shared.local);
    // The newest checkpoint with a state for at least one cut; the cuts it lacks are rebuilt.
    let restored = shared
        .candidates
        .iter()
        .filter_map(|c| c.get())
        .filter(|loaded| {
            let c = &loaded.checkpoint;
            c.schema_version == E::SCHEMA_VERSION
                && shared.master_end.is_some_and(|end| c.position <= end)
        })
        .map(|loaded| (loaded, cuts.fit(&loaded.checkpoint)))
        .find(|(_, fit)| fit.restored > 0);
    let rebuild = restored
        .as_ref()
        .is_some_and(|(_, fit)| !fit.rebuilt.is_empty());
    if let Some((loaded, fit)) = &restored {
        cuts.restore_from(loaded, worker.index() % shared.local, shared.local);
        let checkpoint = &loaded.checkpoint;
        if leader {
            info!(
                id = checkpoint.id,
                as_of = checkpoint.time,
                restored = fit.restored,
                "restoring the views from a checkpoint; replaying the master dataset after it"
            );
            if rebuild {
                info!(
                    cuts = ?fit.rebuilt,
                    "the checkpoint lacks these cuts (their views are new or changed): \
                     rebuilding them from the master dataset before it"
                );
            }
            metrics.restored.store(true, Ordering::Relaxed);
            Metrics::add(&metrics.restored_cuts, fit.restored as u64);
            Metrics::add(&metrics.rebuilt_cuts, fit.rebuilt.len() as u64);
        }
    } else if leader && !shared.candidates.is_empty() {
        info!("no checkpoint fits the views (they changed): replaying the whole master dataset");
    }
    let restored = restored.map(|(loaded, _)| &loaded.checkpoint);
    if leader {
        checkpointing::report_drops(shared, restored);
        shared
            .catalog
            .add(0, catalog, true, Arc::new(Progress::default()), false);
        built();
    }
    let context = flow::Context {
        replies: replies.clone(),
        metrics: metrics.clone(),
        changelog: settings
            .changelog
            .then(|| (shared.changelog.clone(), shared.local)),
        page_hold: settings.page_hold,
        horizon: settings.horizon(),
        local: shared.local,
        checkpoints: shared.checkpoints,
    };
    let mut flows: Vec<Flow<E>> = Vec::new();
    // The log every worker of every process reads in one order (built by all, in this place).
    let mut sequencer =
        timely::synchronization::Sequencer::<Vec<u8>>::new(worker, std::time::Instant::now());
    let mut sequenced: std::collections::VecDeque<Vec<u8>> = Default::default();

    // The batch lane: this worker's share of history.
    let started = Instant::now();
    let rules = settings.rules();
    let mut batch = BatchLane::new(
        batch_input,
        settings.batch_time,
        rules.allowed_lateness,
        metrics.clone(),
    );
    let mut speed = SpeedLane::new(speed_input);
    if shared.checkpoints {
        speed.keep_pending();
    }
    // Processes replaying their own master datasets first agree how far all of them are sealed.
    let per_process = matches!(shared.history, History::Master(_));
    // No further than the changelogs' journal holds what subscribers were told, either.
    let journaled = settings
        .changelog
        .then(|| shared.changelog.seal_cap())
        .flatten()
        .filter(|_| per_process)
        .map(|at_most| settings.batch_time.bucket_start(at_most));
    let mut cap = journaled;
    if let Some(at_most) = journaled {
        batch.cap(at_most);
    }
    let mut outcome = Ok(0);
    if per_process && worker.peers() > shared.local {
        let own = replay::seal_cap(worker, shared, rules.allowed_lateness, restored)
            .map(|own| journaled.map_or(own, |j| own.min(j)));
        cap_input.send((worker.index(), *own.as_ref().unwrap_or(&0)));
        cap_input.flush();
        while caps.borrow().iter().any(Option::is_none) {
            worker.step_or_park(Some(settings.tick));
        }
        let caps = caps.borrow();
        let local = shared.local;
        let least = caps
            .chunks(local)
            .map(|process| process.iter().flatten().copied().max().unwrap_or(0))
            .min()
            .unwrap_or(0);
        batch.cap(least);
        cap = Some(least);
        outcome = own.map(|_| 0);
    }
    drop(cap_input);
    let outcome = outcome.and_then(|_| {
        let restore = restored.map(|checkpoint| replay::Restore {
            checkpoint,
            rebuild,
        });
        replay::replay(worker, shared, &mut batch, &mut speed, restore, &cuts)
    });

    // Every worker tells every other what it replayed, and all compute the same plan.
    // Before the live input opens, it can only have ended by taking nothing.
    let replayed = Replayed {
        live_over: !shared.checkpoints && shared.inlet.ended(),
        ..batch.replayed()
    };
    summary_input.send((worker.index(), replayed));
    summary_input.flush();
    while summaries.borrow().iter().any(Option::is_none) {
        worker.step_or_park(Some(settings.tick));
    }
    let replayed: Vec<Replayed> = summaries.borrow().iter().flatten().copied().collect();
    let plan = replay::plan(
        &replayed,
        worker.index(),
        shared.local,
        per_process,
        settings.batch_time,
        cap,
    );
    let (open, _) = batch.close(plan.cut);
    for (event, at) in open {
        speed.apply(event, at);
    }
    speed.advance_to(plan.target);
    drop(summary_input);
    // A state that a cut could not read (its operator ran during the replay) fails the restore.
    let outcome = match (restored, cuts.failure()) {
        (Some(_), Some(e)) => outcome.and(Err(e)),
        _ => outcome,
    };
    let failure = outcome.as_ref().err().cloned();
    match &outcome {
        Ok(events) => info!(
            worker = worker.index(),
            events,
            seconds = started.elapsed().as_secs_f64(),
            "history replayed"
        ),
        Err(e) => shared.fail(e),
    }
    if worker.index().is_multiple_of(shared.local) && failure.is_none() {
        shared.changelog.set_exact_from(plan.horizon);
        shared.inlet.open(plan.watermark, plan.target, plan.newest);
    }
    Metrics::add(&metrics.replayed_workers, 1);
    let reads = ReadTimes::new(settings.batch_time, plan.horizon);

    // The speed lane and the queries, until both have ended.
    let gossips = worker.index().is_multiple_of(shared.local);
    let mut told = (0, 0);
    let mut speed = Some(speed);
    let mut requests = Some(requests);
    let mut held: Vec<(QueryMsg, bool, crate::answer::Reply)> = Vec::new();
    let mut last_tick = Instant::now();
    // A checkpoint being taken: its request and this worker's events kept for it.
    let mut checkpointing: Option<checkpointing::Taking> = None;
    let local_index = worker.index() % shared.local;
    let mut release = memory::Release::new(shared.hooks.release_memory.clone());
    loop {
        if let Some(lane) = speed.as_mut() {
            let mut ended = false;
            for _ in 0..LIVE_CHUNK {
                match live.take() {
                    Taken::Event(event, at) => {
                        for flow in flows.iter_mut() {
                            flow.apply(event.clone(), at);
                        }
                        lane.apply(event, at);
                    }
                    Taken::Sync(time, ack) => {
                        lane.advance_to(time);
                        for flow in flows.iter_mut() {
                            flow.follow(lane.time());
                        }
                        let _ = ack.send(lane.time());
                    }
                    Taken::Control(Control::Build(spec)) => {
                        let (flow, views) = Flow::build(worker, &spec, &context);
                        if leader {
                            shared.catalog.add(
                                spec.id,
                                views,
                                false,
                                spec.progress.clone(),
                                spec.hidden,
                            );
                        }
                        flows.push(flow);
                    }
                    Taken::Control(Control::Checkpoint(request)) => {
                        let time = request.header.time;
                        let mut of = vec![cuts.clone()];
                        let mut missing = None;
                        for id in &request.flows {
                            match flows.iter().find(|f| f.id == *id && f.retired.is_none()) {
                                Some(flow) => of.extend(flow.cuts.clone()),
                                None => missing = Some(*id),
                            }
                        }
                        let pending = rmp_serde::to_vec(&lane.pending_from(time))
                            .map_err(|e| format!("cannot write the kept events: {e}"));
                        match (pending, missing) {
                            (Ok(pending), None) => {
                                checkpointing =
                                    Some(checkpointing::Taking::start(request, pending, of));
                            }
                            (Err(e), _) => request.deliver(local_index, Vec::new(), Err(e)),
                            (_, Some(id)) => request.deliver(
                                local_index,
                                Vec::new(),
                                Err(format!(
                                    "dataflow {id} was replaced or dropped while the \
                                     checkpoint was taken; take another"
                                )),
                            ),
                        }
                    }
                    Taken::Empty => break,
                    Taken::Ended => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                if let Some(lane) = speed.take() {
                    lane.close();
                }
                for flow in flows.iter_mut() {
                    flow.end_live();
                }
            } else if last_tick.elapsed() >= settings.tick {
                let target = live.target().unwrap_or(0);
                lane.advance_to(target);
                for flow in flows.iter_mut() {
                    flow.follow(lane.time());
                }
                metrics.set_worker_watermark(worker.index(), lane.time());
                last_tick = Instant::now();
                if gossips && let Some((newest, idle_for, _)) = shared.inlet.activity() {
                    let news = (
                        newest.unwrap_or(0),
                        wall_clock_ms().saturating_sub(idle_for.as_millis() as Time),
                    );
                    if news != told {
                        gossip_input.send(news);
                        gossip_input.flush();
                        told = news;
                    }
                }
            }
        }

        if checkpointing
            .as_mut()
            .is_some_and(|taking| taking.poll(local_index))
        {
            checkpointing = None;
        }

        // Keep the query input at the fresh read time, or on the wall clock once the lanes ended.
        let frontier = lanes.with_frontier(|f| f.as_option().copied());
        metrics
            .frontier
            .fetch_max(frontier.unwrap_or(END_OF_TIME), Ordering::Relaxed);
        let target = match frontier {
            Some(t) => reads.fresh(t),
            None => Some(END_OF_TIME + wall_clock_ms()),
        };
        if let Some(t) = target
            && t > *query_input.time()
        {
            query_input.advance_to(t);
        }
        for item in sequencer.by_ref() {
            if leader {
                sequenced.push_back(item);
            }
        }
        if let Some(hook) = &shared.hooks.on_sequenced {
            while sequenced.front().is_some_and(|item| hook(item)) {
                sequenced.pop_front();
            }
        }
        for flow in flows.iter_mut() {
            flow.fill();
            flow.advance_queries();
            if leader && flow.caught_up() {
                shared.catalog.ready(flow.id);
            }
        }
        flows.retain_mut(|flow| {
            if flow.retired.is_none() && shared.catalog.is_retired(flow.id) {
                flow.retired = Some(Instant::now());
            }
            let gone = flow
                .retired
                .is_some_and(|at| at.elapsed() >= flow::RETIRE_GRACE);
            if gone {
                flow.retire();
            }
            !gone
        });
        if leader {
            metrics
                .dataflows
                .store(flows.len() as u64, Ordering::Relaxed);
            let main = views_probe.with_frontier(|f| f.iter().all(|t| *t >= plan.horizon));
            if main {
                metrics.replayed.store(true, Ordering::Relaxed);
            }
            metrics
                .views_ready
                .store(main && shared.catalog.all_ready(), Ordering::Relaxed);
        }
        if let Some(inbox) = requests.as_ref() {
            loop {
                match inbox.try_recv() {
                    Ok(Request::Ask(msg, exact, reply)) => held.push((msg, exact, reply)),
                    Ok(Request::Sequence(item)) => sequencer.push(item),
                    Ok(Request::Cancel(id)) => {
                        held.retain(|(msg, _, _)| msg.id != id);
                        if let Some(mut msg) = replies.borrow_mut().cancel(id) {
                            // Where the query went, its withdrawal follows.
                            msg.cancel = true;
                            let time = *query_input.time();
                            query_input.update_at(msg, time, 1);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        requests = None;
                        break;
                    }
                }
            }
        }
        if target.is_some() {
            for (mut msg, exact, reply) in held.drain(..) {
                msg.origin = worker.index();
                let (input, reads, names) = if msg.flow == 0 {
                    (&mut query_input, &reads, &names)
                } else {
                    match flows.iter_mut().find(|f| f.id == msg.flow) {
                        Some(Flow {
                            queries: Some(input),
                            reads,
                            names,
                            ..
                        }) => (input, &*reads, &*names),
                        // Retired meanwhile: the asker hears that it stopped, and asks again.
                        _ => continue,
                    }
                };
                if !exact {
                    msg.time = reads.requested(msg.time).max(*input.time());
                }
                let name = names.get(msg.view).cloned().unwrap_or_default();
                replies.borrow_mut().wait(&msg, name, reply);
                Metrics::add(&metrics.queries, 1);
                let time = *input.time();
                input.update_at(msg, time, 1);
            }
        }
        query_input.flush();
        for flow in flows.iter_mut() {
            if let Some(q) = flow.queries.as_mut() {
                q.flush();
            }
        }
        metrics.set_queries_waiting(worker.index(), (held.len() + replies.borrow().len()) as u64);

        // Checkpoints read the views' arrangements at a time no earlier than the lanes'.
        let hold = speed
            .as_ref()
            .map_or(END_OF_TIME, |lane| lane.time().saturating_sub(1));
        for of in std::iter::once(&cuts).chain(flows.iter().filter_map(|f| f.cuts.as_ref())) {
            of.hold(hold);
        }

        if speed.is_none() && requests.is_none() && held.is_empty() && replies.borrow().is_empty() {
            break;
        }
        // A checkpoint's cuts read the views a step at a time, with a rest after each: the
        // worker parks no longer than that.
        let park = checkpointing
            .as_ref()
            .and_then(checkpointing::Taking::park)
            .unwrap_or(settings.tick);
        worker.step_or_park(Some(park));
        release.tick();
    }
    drop(query_input);
    drop(gossip_input);
    drop(flows);
    drop(sequencer);
    while worker.step_or_park(Some(settings.tick)) {}
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// How many live messages a worker takes between steps of its dataflow.
const LIVE_CHUNK: usize = 64 * 1024;

/// Every process tells every other the newest event time its judge has seen and when it last
/// took an event (wall clock ms); the inlet keeps the maxima. This small broadcast is how an
/// idle process learns where the others are.
fn listen<'s, E: Event>(
    gossip: timely::dataflow::Stream<'s, Time, Vec<(Time, Time)>>,
    inlet: Arc<Inlet<E>>,
) {
    gossip
        .broadcast()
        .sink(Pipelined, "Gossip", move |(input, _)| {
            input.for_each(|_, data| {
                for (newest, active) in data.drain(..) {
                    inlet.heard_newest.fetch_max(newest, Ordering::Relaxed);
                    inlet.heard_active.fetch_max(active, Ordering::Relaxed);
                }
            });
        });
}

/// Collects what every worker sends on `stream` (one value each), by worker index.
fn gather_all<'s, T: timely::ExchangeData + Copy>(
    stream: timely::dataflow::Stream<'s, Time, Vec<(usize, T)>>,
    into: Rc<RefCell<Vec<Option<T>>>>,
) {
    stream
        .broadcast()
        .sink(Pipelined, "GatherAll", move |(input, _)| {
            input.for_each(|_, data| {
                let mut into = into.borrow_mut();
                for (worker, value) in data.drain(..) {
                    if let Some(slot) = into.get_mut(worker) {
                        *slot = Some(value);
                    }
                }
            });
        });
}

/// The live input's processing-time clock, on its own thread (an advance is journaled): every
/// tick the lanes' target moves past corrections waiting at it; and a process whose live input
/// has been idle for `idle` stops holding the watermark back: it follows the newest event any
/// process has seen (minus the lateness), or passes it once every process has been idle.
fn tick<E: Event>(
    inlet: Arc<Inlet<E>>,
    idle: Option<Duration>,
    every: Duration,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("live-tick".into())
        .spawn(move || {
            while inlet.accepting() {
                std::thread::sleep(every);
                let follow = idle.and_then(|timeout| {
                    let (newest, idle_for, _) = inlet.activity()?;
                    if idle_for < timeout {
                        return None;
                    }
                    let newest = inlet
                        .heard_newest
                        .load(Ordering::Relaxed)
                        .max(newest.unwrap_or(0));
                    let active = inlet.heard_active.load(Ordering::Relaxed);
                    let everyone_idle =
                        wall_clock_ms().saturating_sub(active) >= timeout.as_millis() as Time;
                    Some(if everyone_idle {
                        newest.saturating_add(1)
                    } else {
                        newest.saturating_sub(inlet.lateness())
                    })
                });
                inlet.tick(follow);
            }
        });
    spawned
        .map_err(|e| error!("cannot start the live-tick thread: {e}"))
        .ok()
}
