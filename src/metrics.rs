//! Counters the engine keeps about its inputs, shared by every worker of a process.
//!
//! They are plain atomics so that any thread (a progress display, the server's `/metrics`) can
//! read them without touching the dataflow.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Event counters for one process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events the batch lane replayed.
    pub history_events: AtomicU64,
    /// Bytes of history files read so far.
    pub history_bytes: AtomicU64,
    /// Events the speed lane took on time.
    pub live_events: AtomicU64,
    /// Lines rejected by a reader.
    pub rejected: AtomicU64,
    /// Late events applied at the current time (policy `correct`).
    pub late_corrected: AtomicU64,
    /// Late events left out (policy `drop`).
    pub late_dropped: AtomicU64,
    /// Updates that reached a window after it retired (see [`retire`](crate::retire)), left out.
    pub retired_late: AtomicU64,
    /// Late drops the master dataset records (replayed, restored or live).
    pub drops_recorded: AtomicU64,
    /// Whether every drop recorded before this start has been handed to the late sink: after
    /// the replay, and after a restore once the master dataset before the checkpoint has been
    /// read for them (in the background).
    pub drops_reported: AtomicBool,
    /// Queries taken.
    pub queries: AtomicU64,
    /// Local workers that have finished replaying their share of history.
    pub replayed_workers: AtomicU64,
    /// The global watermark: every time before it is complete in every view
    /// ([`END_OF_TIME`](crate::event::END_OF_TIME) once all input has ended).
    pub frontier: AtomicU64,
    /// The newest event time any live event of this process carried.
    pub newest_event: AtomicU64,
    /// Ingest requests refused because the workers' backlog was full (HTTP 503).
    pub ingest_refused: AtomicU64,
    /// Dataflows built while the engine runs (views created with SQL, ad-hoc queries) and not
    /// yet freed, on this process's first worker.
    pub dataflows: AtomicU64,
    /// Live events waiting in the workers' mailboxes.
    pub backlog_events: AtomicU64,
    /// Their bytes.
    pub backlog_bytes: AtomicU64,
    /// Whether every view reflects the whole replayed history, views being backfilled
    /// included (the server's `/ready`).
    pub views_ready: AtomicBool,
    /// Whether the views the engine started with reflect the whole replayed history (the
    /// server then reads and ingests).
    pub replayed: AtomicBool,
    /// Checkpoints written since the process started.
    pub checkpoints: AtomicU64,
    /// When the last checkpoint was durable (wall clock ms since the epoch; 0: none yet).
    pub checkpoint_at_ms: AtomicU64,
    /// How long the last checkpoint took, in microseconds.
    pub checkpoint_micros: AtomicU64,
    /// The size of the last checkpoint, in bytes.
    pub checkpoint_bytes: AtomicU64,
    /// Whether the views were restored from a checkpoint when the process started.
    pub restored: AtomicBool,
    /// How many cuts that restore started from their states in the checkpoint.
    pub restored_cuts: AtomicU64,
    /// How many cuts it rebuilt from the history the checkpoint covers (their views were
    /// defined or changed since).
    pub rebuilt_cuts: AtomicU64,
    /// Each local worker's speed-lane time (its watermark), by worker index.
    worker_watermarks: Mutex<BTreeMap<usize, u64>>,
    /// Queries each local worker has taken and not yet answered, by worker index.
    queries_waiting: Mutex<BTreeMap<usize, u64>>,
    /// Updates held by each view's arrangement, per local worker (its shard).
    arrangement_records: Mutex<BTreeMap<(String, usize), u64>>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records worker `worker`'s watermark (its speed lane's time).
    pub fn set_worker_watermark(&self, worker: usize, time: u64) {
        if let Ok(mut map) = self.worker_watermarks.lock() {
            map.insert(worker, time);
        }
    }

    /// Records how many queries worker `worker` has taken and not yet answered.
    pub fn set_queries_waiting(&self, worker: usize, waiting: u64) {
        if let Ok(mut map) = self.queries_waiting.lock() {
            map.insert(worker, waiting);
        }
    }

    /// Queries taken and not yet answered (or withdrawn), over this process's workers.
    pub fn queries_waiting(&self) -> u64 {
        self.queries_waiting
            .lock()
            .map(|m| m.values().sum())
            .unwrap_or_default()
    }

    /// Every local worker's watermark, by worker index.
    pub fn worker_watermarks(&self) -> BTreeMap<usize, u64> {
        self.worker_watermarks
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Records how many updates worker `worker`'s shard of `view`'s arrangement holds.
    pub fn set_arrangement_records(&self, view: &str, worker: usize, records: u64) {
        if let Ok(mut map) = self.arrangement_records.lock() {
            map.insert((view.to_string(), worker), records);
        }
    }

    /// Updates held by each view's arrangement in this process, by view name.
    pub fn arrangement_records(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        if let Ok(map) = self.arrangement_records.lock() {
            for ((view, _), n) in map.iter() {
                *totals.entry(view.clone()).or_insert(0) += n;
            }
        }
        totals
    }

    /// Records a checkpoint written.
    pub fn checkpoint_taken(&self, taken: &crate::checkpoint::Taken) {
        Metrics::add(&self.checkpoints, 1);
        let now = crate::live::wall_clock_ms();
        self.checkpoint_at_ms.store(now, Ordering::Relaxed);
        self.checkpoint_micros
            .store((taken.seconds * 1e6) as u64, Ordering::Relaxed);
        self.checkpoint_bytes.store(taken.bytes, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
