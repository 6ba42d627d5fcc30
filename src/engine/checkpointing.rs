//! Taking checkpoints while the engine runs (see [`checkpoint`](crate::checkpoint)): the
//! request sequenced with the live events, each worker's part gathered, and the file written
//! off the workers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::catalog::Catalog;
use super::{BackfillSource, Shared};
use crate::checkpoint::{Blob, Checkpoint, Cuts, Encode, Part, Point, Store, Taken};
use crate::event::Event;
use crate::history::{History, Share};
use crate::live::{Control, Inlet, LateDrop};
use crate::master::Entry;
use crate::metrics::Metrics;

/// How long a checkpoint may take before its caller stops waiting (the workers' parts come once
/// the frontier passes its time, which the lanes reach at their next tick).
const TAKE_TIMEOUT: Duration = Duration::from_secs(600);

/// A checkpoint being taken: what every worker is asked for, and where its part goes.
pub(crate) struct Request {
    /// The checkpoint without its workers' parts.
    pub header: Checkpoint,
    /// The dataflows built while running that it cuts besides the engine's own (those whose
    /// views all answered when it was sequenced; a restore rebuilds the others' views).
    pub flows: Vec<u64>,
    started: Instant,
    store: Store,
    metrics: Arc<Metrics>,
    parts: Mutex<Gathering>,
}

/// A worker's part before it is encoded: its kept events, and each cut's contents to encode.
pub(crate) struct Unwritten {
    /// The events kept for the checkpoint (see [`Part::pending`]).
    pub pending: Vec<u8>,
    /// Each cut's contents, encoded by the writer.
    pub states: Vec<Encode>,
}

impl Unwritten {
    fn encode(self) -> Result<Part, String> {
        let states = self
            .states
            .into_iter()
            .map(|encode| encode().map(Blob))
            .collect::<Result<_, _>>()?;
        Ok(Part {
            pending: self.pending,
            states,
        })
    }
}

struct Gathering {
    parts: Vec<Option<Unwritten>>,
    points: Vec<Point>,
    failure: Option<String>,
    reply: Option<Sender<Result<Taken, String>>>,
}

impl Request {
    /// The part of local worker `index`; the last one to come writes the file (on a thread of
    /// its own) and answers the caller.
    /// Every worker's `points` are the same: the cuts of the same dataflow.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        index: usize,
        points: Vec<Point>,
        part: Result<Unwritten, String>,
    ) {
        let mut gathering = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        match part {
            Ok(part) => {
                if let Some(slot) = gathering.parts.get_mut(index) {
                    *slot = Some(part);
                }
                gathering.points = points;
            }
            Err(e) => {
                gathering.failure.get_or_insert(e);
            }
        }
        let complete = gathering.parts.iter().all(Option::is_some);
        if !complete && gathering.failure.is_none() {
            return;
        }
        let Some(reply) = gathering.reply.take() else {
            return;
        };
        if let Some(e) = gathering.failure.clone() {
            let _ = reply.send(Err(e));
            return;
        }
        let mut checkpoint = self.header.clone();
        checkpoint.points = std::mem::take(&mut gathering.points);
        let parts: Vec<Unwritten> = gathering.parts.iter_mut().flat_map(Option::take).collect();
        drop(gathering);
        let request = self.clone();
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                yield_to_the_workers();
                let encoded: Result<Vec<Part>, String> =
                    parts.into_iter().map(Unwritten::encode).collect();
                let taken = encoded.and_then(|parts| {
                    checkpoint.workers = parts;
                    log_sizes(&checkpoint);
                    request.store.write(&checkpoint).map_err(|e| {
                        format!(
                            "cannot write checkpoint {} in {}: {e}",
                            checkpoint.id,
                            request.store.dir().display()
                        )
                    })
                });
                let taken = taken.map(|bytes| Taken {
                    id: checkpoint.id,
                    as_of: checkpoint.time,
                    log_position: checkpoint.position,
                    bytes,
                    seconds: request.started.elapsed().as_secs_f64(),
                });
                if let Ok(taken) = &taken {
                    request.metrics.checkpoint_taken(taken);
                    info!(
                        id = taken.id,
                        as_of = taken.as_of,
                        bytes = taken.bytes,
                        seconds = taken.seconds,
                        "checkpoint written"
                    );
                }
                let _ = reply.send(taken);
            });
        if let Err(e) = spawned {
            warn!("cannot start the checkpoint writer: {e}");
        }
    }
}

/// One worker taking its part of a checkpoint: the cuts of every dataflow it covers, asked for
/// their contents at its time, and the events kept for it.
pub(super) struct Taking {
    request: Arc<Request>,
    pending: Vec<u8>,
    /// The engine's dataflow first, then each flow of the request, with its contents once given.
    cuts: Vec<(Cuts, Option<Vec<Encode>>)>,
    /// No arrangement is read before this: the worker's own work goes first.
    rest_until: Instant,
}

/// How long a worker leaves the arrangements a checkpoint reads after each read step (of
/// about as long, see [`Cuts::take`]): a query crosses workers and operators in several steps,
/// and if every one of them waited for a read, a client asking every few milliseconds would
/// queue behind the reads. Half the worker's time goes to the reads, half to everything else.
const READ_REST: Duration = Duration::from_millis(1);

impl Taking {
    /// Asks each of `cuts` for its contents at the request's time.
    pub fn start(request: Arc<Request>, pending: Vec<u8>, cuts: Vec<Cuts>) -> Taking {
        for cut in &cuts {
            cut.request(request.header.time);
        }
        Taking {
            request,
            pending,
            cuts: cuts.into_iter().map(|c| (c, None)).collect(),
            rest_until: Instant::now(),
        }
    }

    /// How long the worker may park while a cut reads an arrangement, with more to read
    /// ([`Cuts::reading`]): until its rest after the last read step ends.
    pub fn park(&self) -> Option<Duration> {
        self.cuts
            .iter()
            .any(|(cut, states)| states.is_none() && cut.reading())
            .then(|| self.rest_until.saturating_duration_since(Instant::now()))
    }

    /// Collects what the cuts have given; once every one has (or one failed), delivers this
    /// worker's part and returns `true`. A cut that several dataflows have (a view a flow
    /// builds again for another) is kept once.
    pub fn poll(&mut self, local_index: usize) -> bool {
        if let Some(failure) = self.cuts.iter().find_map(|(c, _)| c.failure()) {
            self.request.deliver(local_index, Vec::new(), Err(failure));
            return true;
        }
        if Instant::now() < self.rest_until {
            return false;
        }
        for (cut, states) in self.cuts.iter_mut().filter(|(_, s)| s.is_none()) {
            *states = cut.take();
        }
        self.rest_until = Instant::now() + READ_REST;
        if self.cuts.iter().any(|(_, s)| s.is_none()) {
            return false;
        }
        let mut points = Vec::new();
        let mut states = Vec::new();
        for (cut, given) in std::mem::take(&mut self.cuts) {
            for (point, state) in cut.points().into_iter().zip(given.into_iter().flatten()) {
                if !points.contains(&point) {
                    points.push(point);
                    states.push(state);
                }
            }
        }
        let part = Unwritten {
            pending: std::mem::take(&mut self.pending),
            states,
        };
        self.request.deliver(local_index, points, Ok(part));
        true
    }
}

/// Lowers this thread's priority (nice 10, on Linux): encoding and writing a checkpoint then
/// waits for the workers and the server's threads on a busy machine instead of taking their
/// time, and ingest and queries keep their latency while one is written.
fn yield_to_the_workers() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` and `setpriority` take plain integers and touch no memory of ours;
        // a failure (no permission) only leaves the priority as it was.
        let done = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
        };
        if done != 0 {
            debug!("cannot lower the checkpoint writer's priority");
        }
    }
}

/// Logs (at debug) the size of each cut's state and of the kept events.
fn log_sizes(checkpoint: &Checkpoint) {
    for (i, point) in checkpoint.points.iter().enumerate() {
        let bytes: usize = checkpoint
            .workers
            .iter()
            .filter_map(|w| w.states.get(i))
            .map(|b| b.0.len())
            .sum();
        debug!(id = checkpoint.id, cut = %point.name, bytes, "checkpoint state");
    }
    let pending: usize = checkpoint.workers.iter().map(|w| w.pending.len()).sum();
    debug!(
        id = checkpoint.id,
        bytes = pending,
        "checkpoint's pending events"
    );
}

/// Counts the late drops recorded before this start and sees that the late sink hears each:
/// the replay hands it those it reads, and after a restore from `restored` a thread of its
/// own reads the master dataset before the checkpoint for the others (the views need not
/// wait for it); [`Metrics::drops_reported`] says when all are told.
pub(super) fn report_drops<E: Event, P>(shared: &Shared<E, P>, restored: Option<&Checkpoint>) {
    let metrics = shared.metrics.clone();
    let Some(checkpoint) = restored else {
        metrics.drops_reported.store(true, Ordering::Relaxed);
        return;
    };
    Metrics::add(&metrics.drops_recorded, checkpoint.drops);
    let (History::Master(dir), Some(sink)) = (&shared.history, &shared.hooks.on_late_drop) else {
        metrics.drops_reported.store(true, Ordering::Relaxed);
        return;
    };
    if checkpoint.drops == 0 {
        metrics.drops_reported.store(true, Ordering::Relaxed);
        return;
    }
    let (dir, sink, until) = (dir.clone(), sink.clone(), checkpoint.position);
    let reader = std::thread::Builder::new()
        .name("late-drops".into())
        .spawn(move || {
            let read = crate::master::read_share_until(
                &crate::master::Disk,
                &dir,
                E::SCHEMA_VERSION,
                until,
                Share { index: 0, count: 1 },
                &std::sync::atomic::AtomicU64::new(0),
                |entry: Entry<E>| {
                    if let Entry::Dropped {
                        event,
                        reason,
                        watermark,
                    } = entry
                    {
                        sink(&LateDrop {
                            event: &event,
                            reason,
                            watermark,
                            replayed: true,
                        });
                    }
                },
            );
            if let Err(e) = read {
                warn!("cannot read the late drops before the checkpoint: {e}");
            }
            metrics.drops_reported.store(true, Ordering::Relaxed);
        });
    if let Err(e) = reader {
        warn!("cannot start reading the late drops before the checkpoint: {e}");
        shared.metrics.drops_reported.store(true, Ordering::Relaxed);
    }
}

/// Takes checkpoints of a running engine; clone it freely.
pub struct Checkpointer<E: Event> {
    pub(super) store: Store,
    pub(super) inlet: Arc<Inlet<E>>,
    pub(super) source: Arc<dyn BackfillSource<E>>,
    pub(super) local: usize,
    pub(super) metrics: Arc<Metrics>,
    pub(super) catalog: Arc<Catalog>,
    /// One checkpoint at a time.
    pub(super) busy: Arc<Mutex<()>>,
}

impl<E: Event> Clone for Checkpointer<E> {
    fn clone(&self) -> Self {
        Checkpointer {
            store: self.store.clone(),
            inlet: self.inlet.clone(),
            source: self.source.clone(),
            local: self.local,
            metrics: self.metrics.clone(),
            catalog: self.catalog.clone(),
            busy: self.busy.clone(),
        }
    }
}

impl<E: Event> Checkpointer<E> {
    /// Takes a checkpoint now and returns once it is durable (waiting for one in progress
    /// first).
    pub fn take(&self) -> Result<Taken, String> {
        self.take_within(TAKE_TIMEOUT)
    }

    /// Like [`take`](Self::take), giving up on waiting after `timeout` (the checkpoint may
    /// still be written).
    pub fn take_within(&self, timeout: Duration) -> Result<Taken, String> {
        let _one = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let (reply, answer) = mpsc::channel();
        if self.source.mark().position().is_none() {
            return Err("the history is not a master dataset: no checkpoint can follow it".into());
        }
        let id = self.store.next_id();
        self.inlet
            .sequence(|judge| {
                let mark = self.source.mark();
                // A source that marks positions marks them all (checked above).
                let position = mark.position().unwrap_or_default();
                let header = Checkpoint {
                    id,
                    time: judge.target(),
                    watermark: judge.watermark(),
                    newest: judge.newest(),
                    position,
                    log_bytes: mark.bytes(),
                    schema_version: E::SCHEMA_VERSION,
                    drops: Metrics::get(&self.metrics.drops_recorded),
                    points: Vec::new(),
                    workers: Vec::new(),
                };
                Control::Checkpoint(Arc::new(Request {
                    header,
                    flows: self.catalog.ready_flows(),
                    started,
                    store: self.store.clone(),
                    metrics: self.metrics.clone(),
                    parts: Mutex::new(Gathering {
                        parts: (0..self.local).map(|_| None).collect(),
                        points: Vec::new(),
                        failure: None,
                        reply: Some(reply),
                    }),
                }))
            })
            .map_err(|e| format!("cannot take a checkpoint: {e}"))?;
        answer
            .recv_timeout(timeout)
            .map_err(|_| "the checkpoint was not complete in time".to_string())?
    }
}
