//! The hub: one process's changelogs, where subscribers and sinks read them.
//!
//! Every view's change batches reach the hub in time order (from the first worker of the
//! process), with the frontier they are complete up to. The hub hands them to subscribers
//! through a bounded broadcast channel (a subscriber that falls behind is dropped rather than
//! allowed to grow memory) and keeps the latest of them ([`RETAINED_BATCHES`],
//! [`RETAINED_CHANGES`]), so that a subscriber that reconnects resumes after the last change
//! it saw ([`Changelog::resume`]).
//!
//! With a [`journal`](super::journal) the kept batches outlive the process. A restarted engine
//! replays history at its own (coarse) times, so its batches before the replay's end differ
//! from the ones subscribers were told; from there on every run's batches are alike
//! ([`Changelog::exact_from`]). The journal holds the batches before it: the hub starts with
//! the previous runs' batches, drops the replay's batches of the times they cover, and the
//! engine replays no history at coarse times past what the journal covers
//! ([`Changelog::seal_cap`]), so that a subscriber resumes across a restart, even `kill -9`,
//! with each change told once.
//!
//! A ranked view has no changelog of its own: a subscriber is told how its ranking changed,
//! re-read whenever the view it ranks changes. The hub keeps the latest rankings subscribers
//! were told ([`RETAINED_RANKINGS`], in the journal too), so that one resuming from a ranking
//! the view's arrangement no longer holds (compacted, or before a restart) starts from it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::broadcast;

use super::ChangeBatch;
use super::journal::{Journal, Loaded};
use crate::event::Time;

/// How many change batches a subscriber may fall behind before it is dropped.
pub const SUBSCRIBER_BACKLOG: usize = 4_096;

/// How many of its latest change batches each view's changelog keeps for resuming subscribers.
pub const RETAINED_BATCHES: usize = 4_096;

/// At most this many changes are kept in them (older batches go first).
pub const RETAINED_CHANGES: usize = 1 << 20;

/// How many of its latest rankings, as subscribers were told them, a ranked view keeps.
pub const RETAINED_RANKINGS: usize = 1_024;

/// A ranked view's latest rankings as subscribers were told them, by the time each is as of.
#[derive(Clone, Debug, Default)]
pub(super) struct Rankings(BTreeMap<Time, Arc<Vec<Value>>>);

impl Rankings {
    /// Keeps the ranking as of `as_of` (letting go of the oldest past the bound); whether it
    /// is new.
    pub fn insert(&mut self, as_of: Time, rows: Arc<Vec<Value>>) -> bool {
        if self.0.contains_key(&as_of) {
            return false;
        }
        self.0.insert(as_of, rows);
        while self.0.len() > RETAINED_RANKINGS {
            self.0.pop_first();
        }
        true
    }

    /// The ranking as of `as_of`, if it is kept.
    pub fn get(&self, as_of: Time) -> Option<Arc<Vec<Value>>> {
        self.0.get(&as_of).cloned()
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Each kept ranking with its time, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Time, &Arc<Vec<Value>>)> {
        self.0.iter().map(|(t, rows)| (*t, rows))
    }
}

/// A view's latest batches, as many as are kept.
#[derive(Clone, Debug, Default)]
pub(super) struct Retained {
    pub recent: VecDeque<Arc<ChangeBatch>>,
    changes: usize,
    /// The time of the latest batch no longer kept.
    pub forgotten: Option<Time>,
}

impl Retained {
    /// Keeps `batch`, letting go of the oldest ones past the bounds.
    pub fn push(&mut self, batch: Arc<ChangeBatch>) {
        self.changes += batch.changes.len();
        self.recent.push_back(batch);
        while self.recent.len() > RETAINED_BATCHES
            || (self.changes > RETAINED_CHANGES && self.recent.len() > 1)
        {
            if let Some(old) = self.recent.pop_front() {
                self.changes -= old.changes.len();
                self.forgot(old.time);
            }
        }
    }

    /// Records that the batches up to `time` are no longer kept.
    pub fn forgot(&mut self, time: Time) {
        self.forgotten = self.forgotten.max(Some(time));
    }
}

/// One view's changelog: the channel to its subscribers, and its latest batches.
struct ViewLog {
    sender: broadcast::Sender<Arc<ChangeBatch>>,
    kept: Retained,
    /// The journal's frontier when the process started: every batch before it is a previous
    /// run's, from the journal (this run's batches of those times are dropped).
    journaled: Option<Time>,
    /// The latest frontier written to the journal.
    frontier: Time,
}

impl ViewLog {
    fn new() -> Self {
        ViewLog {
            sender: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            kept: Retained::default(),
            journaled: None,
            frontier: 0,
        }
    }
}

/// The change batches after a position, and a receiver for the ones that follow.
pub type Resumed = (Vec<Arc<ChangeBatch>>, broadcast::Receiver<Arc<ChangeBatch>>);

/// The changelogs of one process: a bounded broadcast channel per view, and its latest batches.
#[derive(Default)]
pub struct Changelog {
    views: Mutex<HashMap<String, ViewLog>>,
    /// The latest rankings of each ranked view that subscribers were told.
    rankings: Mutex<HashMap<String, Rankings>>,
    /// The views of the dataflows built, whose journaled frontiers bound the replay.
    attached: Mutex<HashSet<String>>,
    /// The first time whose batches are the same in every run of the engine: those before it
    /// are its replay's, at the replay's own (coarse) times, unlike a previous run's.
    exact_from: AtomicU64,
    replayed: AtomicBool,
    journal: Option<Journal>,
}

impl Changelog {
    /// A hub whose batches outlive the process in the journal at `path` (created if missing),
    /// starting with the batches it holds.
    pub fn with_journal(path: &Path) -> Result<Changelog, String> {
        let (journal, loaded) = Journal::open(path)?;
        let Loaded {
            views: journaled,
            rankings,
        } = loaded;
        let views = journaled
            .into_iter()
            .map(|(name, (kept, frontier))| {
                let log = ViewLog {
                    kept,
                    journaled: Some(frontier),
                    frontier,
                    ..ViewLog::new()
                };
                (name, log)
            })
            .collect();
        Ok(Changelog {
            views: Mutex::new(views),
            rankings: Mutex::new(rankings),
            journal: Some(journal),
            ..Changelog::default()
        })
    }

    fn with<T>(&self, view: &str, f: impl FnOnce(&mut ViewLog) -> T) -> T {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        f(views.entry(view.to_string()).or_insert_with(ViewLog::new))
    }

    /// Receives the view's change batches from now on; a receiver that falls more than
    /// [`SUBSCRIBER_BACKLOG`] batches behind gets `Lagged` and should be dropped.
    pub fn subscribe(&self, view: &str) -> Option<broadcast::Receiver<Arc<ChangeBatch>>> {
        Some(self.with(view, |log| log.sender.subscribe()))
    }

    /// Batches of times from `time` on are those of every run over the same events: the replay
    /// of history is over (see [`exact_from`](Self::exact_from)).
    pub fn set_exact_from(&self, time: Time) {
        self.exact_from.fetch_max(time, Ordering::Relaxed);
        self.replayed.store(true, Ordering::Release);
    }

    /// Whether the replay of history is over, so that [`exact_from`](Self::exact_from) is known.
    pub fn replayed(&self) -> bool {
        self.replayed.load(Ordering::Acquire)
    }

    /// The first time whose batches every run of the engine publishes alike. A subscriber that
    /// knows the batches before a time below it (a position from before a restart, whose replay
    /// published its batches at other times) can resume from that position only if the journal
    /// holds the previous run's batches up to it ([`resumes_before`](Self::resumes_before)).
    pub fn exact_from(&self) -> Time {
        self.exact_from.load(Ordering::Relaxed)
    }

    /// Whether the view's batches before [`exact_from`](Self::exact_from) are a previous run's
    /// (from the journal), so that a position before it resumes as it would have then.
    pub fn resumes_before(&self, view: &str) -> bool {
        let exact_from = self.exact_from();
        self.with(view, |log| log.journaled.is_some_and(|f| f >= exact_from))
    }

    /// The view's batches of times after `after` that are still kept, and a receiver for the
    /// later ones, taken together so that none is missed or seen twice; `Err` with the latest
    /// time no longer kept if batches after `after` were forgotten.
    pub fn resume(&self, view: &str, after: Time) -> Result<Resumed, Time> {
        self.resume_from(view, after.saturating_add(1))
    }

    /// Like [`resume`](Self::resume), with the batches of times from `from` on.
    pub fn resume_from(&self, view: &str, from: Time) -> Result<Resumed, Time> {
        self.with(view, |log| {
            if let Some(forgotten) = log.kept.forgotten
                && forgotten >= from
            {
                return Err(forgotten);
            }
            let kept = log
                .kept
                .recent
                .iter()
                .filter(|b| b.time >= from)
                .cloned()
                .collect();
            Ok((kept, log.sender.subscribe()))
        })
    }

    /// The changelog of `view` is built in a dataflow of this process (every worker says so).
    pub(super) fn attach(&self, view: &str) {
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(view.to_string());
    }

    /// How far history may be replayed at coarse times: no further than the journal holds the
    /// batches of every view attached so far, so that the batches after it, which come at
    /// their own times, are those subscribers were told. `None`: no bound.
    pub fn seal_cap(&self) -> Option<Time> {
        let attached = self
            .attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        attached
            .iter()
            .filter_map(|view| views.get(view).and_then(|log| log.journaled))
            .min()
    }

    pub(super) fn publish(&self, batch: ChangeBatch) {
        let batch = Arc::new(batch);
        self.with(&batch.view.clone(), |log| {
            // A time the journal holds a previous run's batch of, which subscribers were told.
            if log.journaled.is_some_and(|f| batch.time < f) {
                return;
            }
            log.kept.push(batch.clone());
            if let Some(journal) = &self.journal {
                journal.batch(batch.clone());
            }
            // No subscriber is not an error.
            let _ = log.sender.send(batch);
        });
    }

    /// Every batch of `view` before `frontier` has been published.
    pub(super) fn advance(&self, view: &str, frontier: Time) {
        self.with(view, |log| {
            if frontier <= log.frontier {
                return;
            }
            log.frontier = frontier;
            if let Some(journal) = &self.journal {
                journal.frontier(view, frontier);
            }
        });
    }

    /// Keeps ranked view `view`'s ranking as of `as_of`, which a subscriber is about to be
    /// told, so that one resuming from it later (across a restart too) starts from it.
    pub fn told_ranking(&self, view: &str, as_of: Time, rows: &[Value]) {
        let mut rankings = self.rankings.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = rankings.entry(view.to_string()).or_default();
        if kept.get(as_of).is_some() {
            return;
        }
        let rows = Arc::new(rows.to_vec());
        kept.insert(as_of, rows.clone());
        if let Some(journal) = &self.journal {
            journal.ranking(view, as_of, rows);
        }
    }

    /// Ranked view `view`'s ranking as of `as_of`, if a subscriber was told it and it is kept.
    pub fn ranking(&self, view: &str, as_of: Time) -> Option<Arc<Vec<Value>>> {
        let rankings = self.rankings.lock().unwrap_or_else(PoisonError::into_inner);
        rankings.get(view)?.get(as_of)
    }

    /// Waits until the journal has written what it was given (for tests and a clean stop).
    pub fn sync(&self) -> Result<(), String> {
        match &self.journal {
            Some(journal) => journal.sync(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(time: Time) -> ChangeBatch {
        ChangeBatch {
            view: "v".into(),
            time,
            changes: Vec::new(),
        }
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_and_nothing_grows() {
        let hub = Changelog::default();
        let mut slow = hub.subscribe("v").expect("subscribed");
        for time in 0..(SUBSCRIBER_BACKLOG as u64 + 10) {
            hub.publish(batch(time));
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
        // It resumes at the oldest batch still kept: the backlog is bounded.
        assert_eq!(slow.try_recv().map(|b| b.time).ok(), Some(10));
    }

    #[test]
    fn a_subscriber_resumes_after_a_time_while_it_is_kept() {
        let hub = Changelog::default();
        for time in 0..10 {
            hub.publish(batch(time));
        }
        let (kept, mut receiver) = hub.resume("v", 6).expect("kept");
        assert_eq!(
            kept.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        hub.publish(batch(10));
        assert_eq!(
            receiver.try_recv().map(|b| b.time).ok(),
            Some(10),
            "no gap, no repeat"
        );
        for time in 11..(11 + RETAINED_BATCHES as u64) {
            hub.publish(batch(time));
        }
        assert_eq!(
            hub.resume("v", 6).err(),
            Some(10),
            "what was let go of cannot be resumed after"
        );
        assert!(hub.resume("v", 10).is_ok());
    }

    #[test]
    fn the_rankings_subscribers_were_told_outlive_the_hub() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changelog.log");
        let hub = Changelog::with_journal(&path).expect("opens");
        let total = RETAINED_RANKINGS as Time + 5;
        for as_of in 1..=total {
            hub.told_ranking("top", as_of, &[serde_json::json!({"n": as_of})]);
        }
        // The first ranking as of a time is the one kept: every run ranks a time alike.
        hub.told_ranking("top", total, &[]);
        hub.sync().expect("written");
        drop(hub);
        let hub = Changelog::with_journal(&path).expect("reopens");
        assert_eq!(
            hub.ranking("top", total).as_deref(),
            Some(&vec![serde_json::json!({"n": total})])
        );
        assert!(hub.ranking("top", 5).is_none(), "the oldest are let go of");
        assert!(hub.ranking("top", 6).is_some());
        assert!(hub.ranking("other", total).is_none());
        assert_eq!(hub.seal_cap(), None, "a ranking bounds no replay");
    }

    #[test]
    fn a_restarted_hub_holds_the_journaled_batches_and_drops_the_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changelog.log");
        let hub = Changelog::with_journal(&path).expect("opens");
        hub.attach("v");
        assert_eq!(hub.seal_cap(), None, "an empty journal bounds nothing");
        for time in [3, 5, 8] {
            hub.publish(batch(time));
            hub.advance("v", time + 1);
        }
        // Published, but the frontier past it never reached the journal: not held.
        hub.publish(batch(12));
        hub.sync().expect("written");
        drop(hub);

        let hub = Changelog::with_journal(&path).expect("reopens");
        assert_eq!(
            hub.seal_cap(),
            None,
            "only views of a dataflow bound the replay"
        );
        hub.attach("v");
        assert_eq!(hub.seal_cap(), Some(9));
        // The restarted run's replay tells history at its own times: dropped up to the frontier.
        hub.publish(batch(0));
        hub.publish(batch(8));
        hub.publish(batch(10));
        hub.set_exact_from(9);
        assert!(hub.resumes_before("v"));
        let (kept, _) = hub.resume("v", 3).expect("kept");
        assert_eq!(
            kept.iter().map(|b| b.time).collect::<Vec<_>>(),
            vec![5, 8, 10]
        );
        hub.set_exact_from(10);
        assert!(
            !hub.resumes_before("v"),
            "the journal does not reach the replay's end"
        );
    }
}
