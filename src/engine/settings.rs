//! What an engine is started with: its event-time [`Settings`], and the [`Hooks`] for what it
//! leaves out, where it stores live verdicts and where it keeps checkpoints.

use std::sync::Arc;
use std::time::Duration;

use crate::event::{Reject, Time};
use crate::lane::BatchTime;
use crate::live::{BacklogLimits, Journal, LateSink};
use crate::watermark::{LatePolicy, LateRules};

use super::BackfillSource;

/// How the engine treats time.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How far behind the newest event the live watermark trails.
    pub allowed_lateness: Duration,
    /// What happens to events behind the watermark.
    pub late_policy: LatePolicy,
    /// The timestamps history is replayed at.
    pub batch_time: BatchTime,
    /// How often (processing time) the speed lanes advance to the watermark: the micro-batch
    /// trade-off between latency and throughput.
    pub tick: Duration,
    /// Beyond this far behind the watermark even `Correct` drops a late event (so state for
    /// old windows can be compacted); `None`: no horizon.
    pub max_lateness: Option<Duration>,
    /// A process whose live input has taken nothing for this long (processing time) stops
    /// holding the watermark back: it follows the newest event any process has seen (minus the
    /// allowed lateness), and once every process is idle, the watermark passes the newest event
    /// seen, so a quiet stream still finalizes its windows. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Whether to keep every view's changelog (for subscriptions and sinks; see
    /// [`changelog`](crate::changelog)): it costs a copy of each view's state.
    pub changelog: bool,
    /// How much live input may wait for each worker (see [`live`](crate::live)).
    pub backlog: BacklogLimits,
    /// How long a page's time stays readable after the page (the next page of a scan reads the
    /// same time; see [`serve`](crate::serve)).
    pub page_hold: Duration,
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
            backlog: BacklogLimits::default(),
            page_hold: crate::serve::PAGE_HOLD,
        }
    }
}

impl Settings {
    /// How long after its event time an update may still enter the dataflow (see
    /// [`retire`](crate::retire)): with a maximum lateness, it plus
    /// [`TARGET_SLACK`](crate::watermark::TARGET_SLACK) (corrections are applied at most that far
    /// past the watermark) plus the batch lane's bucket; without one, no bound.
    pub fn horizon(&self) -> Option<Time> {
        let bucket = match self.batch_time {
            BatchTime::Single => 1,
            BatchTime::Every(width) => width.max(1),
        };
        self.max_lateness.map(|m| {
            (m.as_millis() as Time)
                .saturating_add(crate::watermark::TARGET_SLACK)
                .saturating_add(bucket)
        })
    }

    pub(super) fn rules(&self) -> LateRules {
        LateRules {
            allowed_lateness: self.allowed_lateness.as_millis() as Time,
            policy: self.late_policy,
            max_lateness: self.max_lateness.map(|d| d.as_millis() as Time),
        }
    }
}

/// Callbacks for what the engine leaves out, and where it stores live verdicts.
pub struct Hooks<E> {
    /// Every history line that was rejected.
    pub on_reject: Option<Arc<dyn Fn(Reject) + Send + Sync>>,
    /// Every late event left out (policy `drop`, or beyond the maximum lateness), and, when
    /// replaying a master dataset, every one left out before.
    pub on_late_drop: Option<LateSink<E>>,
    /// Stores each live batch with its verdicts before it becomes visible (the server's master
    /// dataset); see [`Journal`].
    pub journal: Option<Journal<E>>,
    /// Where dataflows created while the engine runs read what came before them (the
    /// journal's master dataset); without it, [`Flows::create`](super::Flows::create) is refused.
    pub backfill: Option<Arc<dyn BackfillSource<E>>>,
    /// Hears every item of the log all processes read in one order ([`Client::sequence`](super::Client::sequence)),
    /// on this process's first worker; `false` leaves the item (and those after it) to be
    /// heard again later.
    pub on_sequenced: Option<OnSequenced>,
    /// Where checkpoints are kept (with a master dataset as the history and a
    /// [`backfill`](Self::backfill) source of it, for a pipeline that is
    /// [`checkpointed`](super::Pipeline::checkpointed)); see [`checkpoint`](crate::checkpoint).
    pub checkpoints: Option<Checkpoints>,
    /// Where the changelogs' latest batches are kept across restarts (with
    /// [`Settings::changelog`]), so that a subscriber resumes after one; see
    /// [`Changelog::with_journal`](crate::changelog::Changelog::with_journal).
    pub changelog_journal: Option<std::path::PathBuf>,
    /// Hands memory freed on a worker back to the operating system; called on every worker
    /// thread about once a second once its replay is done. An allocator
    /// that purges freed pages only when its thread allocates again (mimalloc) otherwise keeps
    /// a replay's transient buffers resident for as long as the views serve without change.
    pub release_memory: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Where checkpoints are kept, and whether to start from them.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    /// The store.
    pub store: crate::checkpoint::Store,
    /// Whether to restore the views from the newest checkpoint that fits them (else the
    /// history is replayed in full: `run --from-scratch`).
    pub restore: bool,
    /// Whether checkpoints are taken (then the views keep a copy of their state's inputs for
    /// them, and the speed lanes their pending events); if not, one already stored can still
    /// be restored from.
    pub take: bool,
}

/// Hears an item of the log all processes read in one order; `false`: not yet.
pub type OnSequenced = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

impl<E> Default for Hooks<E> {
    fn default() -> Self {
        Hooks {
            on_reject: None,
            on_late_drop: None,
            journal: None,
            backfill: None,
            on_sequenced: None,
            checkpoints: None,
            changelog_journal: None,
            release_memory: None,
        }
    }
}
