//! The catalog: which views exist, which dataflow serves each, and whether it is ready.
//!
//! The views of the pipeline an engine starts with live in its first dataflow (flow 0) and are
//! ready once history is replayed. A view created while the engine runs lives in a dataflow of
//! its own ([`FlowSpec`](super::FlowSpec)): it is listed as *backfilling*, with its progress,
//! until that dataflow's frontier passes the time it was created at; then it is *ready*. A new
//! version of a view (`CREATE OR REPLACE`) is backfilled beside the old one, which keeps
//! answering; the switch is one write of the catalog, so a query reads one version or the
//! other, never a mix. A replaced or dropped view's dataflow is *retired*: the workers close
//! its inputs and it winds down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use crate::view::ViewInfo;

/// Whether a view answers yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewState {
    /// Its dataflow is reading the master dataset.
    Backfilling,
    /// It reflects everything.
    Ready,
}

/// How far a backfill has read, in bytes of the master dataset (summed over this process's
/// workers).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub read: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    /// From 0 to 1.
    pub fn fraction(&self) -> f64 {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return 1.0;
        }
        (self.read.load(Ordering::Relaxed) as f64 / total as f64).min(1.0)
    }
}

/// A view as listed: what it is, and whether it answers.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// The view.
    #[serde(flatten)]
    pub info: ViewInfo,
    /// Whether it answers.
    pub state: ViewState,
    /// How far its backfill is, from 0 to 1 (1 once ready).
    pub progress: f64,
}

struct Entry {
    info: ViewInfo,
    flow: u64,
    index: usize,
    state: ViewState,
    progress: Arc<Progress>,
    /// Not listed, and not waited for by `/ready` (an ad-hoc query's dataflow).
    hidden: bool,
}

/// Where a query for a view goes.
pub(crate) enum Resolved {
    /// To view `index` of dataflow `flow`.
    Serve { flow: u64, index: usize },
    /// The view is still backfilling (this far).
    Backfilling(f64),
    /// No view has that name.
    Unknown,
}

/// Every view of this process.
#[derive(Default)]
pub(crate) struct Catalog {
    entries: RwLock<Vec<Entry>>,
    /// Dataflows whose views were all replaced or dropped.
    retired: RwLock<Vec<u64>>,
}

impl Catalog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the views of dataflow `flow`, ready or backfilling.
    pub fn add(
        &self,
        flow: u64,
        views: Vec<ViewInfo>,
        ready: bool,
        progress: Arc<Progress>,
        hidden: bool,
    ) {
        let mut entries = self.write();
        for (index, info) in views.into_iter().enumerate() {
            entries.push(Entry {
                info,
                flow,
                index,
                state: if ready {
                    ViewState::Ready
                } else {
                    ViewState::Backfilling
                },
                progress: progress.clone(),
                hidden,
            });
        }
    }

    /// Where a query for `name` goes: its ready version if it has one.
    pub fn resolve(&self, name: &str) -> Resolved {
        let entries = self.read();
        let mut backfilling = None;
        for e in entries.iter().filter(|e| e.info.name == name) {
            match e.state {
                ViewState::Ready => {
                    return Resolved::Serve {
                        flow: e.flow,
                        index: e.index,
                    };
                }
                ViewState::Backfilling => backfilling = Some(e.progress.fraction()),
            }
        }
        backfilling.map_or(Resolved::Unknown, Resolved::Backfilling)
    }

    /// Every view: the ready version of each name, or its backfilling one.
    pub fn list(&self) -> Vec<Listed> {
        let entries = self.read();
        let mut listed: Vec<Listed> = Vec::new();
        for e in entries.iter().filter(|e| !e.hidden) {
            let item = Listed {
                info: e.info.clone(),
                state: e.state,
                progress: match e.state {
                    ViewState::Ready => 1.0,
                    ViewState::Backfilling => e.progress.fraction(),
                },
            };
            match listed.iter_mut().find(|l| l.info.name == e.info.name) {
                Some(existing) if existing.state == ViewState::Ready => {}
                Some(existing) => *existing = item,
                None => listed.push(item),
            }
        }
        listed
    }

    /// Dataflow `flow` has caught up: its views answer from now on, and the versions they
    /// replace are retired, in one step.
    pub fn ready(&self, flow: u64) {
        let mut entries = self.write();
        let names: Vec<String> = entries
            .iter()
            .filter(|e| e.flow == flow && e.state == ViewState::Backfilling)
            .map(|e| e.info.name.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        let replaced: Vec<u64> = entries
            .iter()
            .filter(|e| e.flow != flow && names.contains(&e.info.name))
            .map(|e| e.flow)
            .collect();
        entries.retain(|e| !(e.flow != flow && names.contains(&e.info.name)));
        for e in entries.iter_mut().filter(|e| e.flow == flow) {
            e.state = ViewState::Ready;
        }
        let left: Vec<u64> = entries.iter().map(|e| e.flow).collect();
        drop(entries);
        let mut retired = self.retired.write().unwrap_or_else(PoisonError::into_inner);
        retired.extend(replaced.into_iter().filter(|f| !left.contains(f)));
    }

    /// Removes view `name` (every version); its dataflow is retired once it serves nothing.
    pub fn drop_view(&self, name: &str) -> bool {
        let mut entries = self.write();
        let flows: Vec<u64> = entries
            .iter()
            .filter(|e| e.info.name == name)
            .map(|e| e.flow)
            .collect();
        entries.retain(|e| e.info.name != name);
        let left: Vec<u64> = entries.iter().map(|e| e.flow).collect();
        drop(entries);
        let mut retired = self.retired.write().unwrap_or_else(PoisonError::into_inner);
        retired.extend(flows.iter().filter(|f| !left.contains(f) && **f != 0));
        !flows.is_empty()
    }

    /// Whether dataflow `flow` is retired.
    pub fn is_retired(&self, flow: u64) -> bool {
        self.retired
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&flow)
    }

    /// Whether dataflow `flow`'s views are listed (ready or not).
    pub fn has_flow(&self, flow: u64) -> bool {
        self.read().iter().any(|e| e.flow == flow)
    }

    /// Whether dataflow `flow` has views and every one answers.
    pub fn flow_ready(&self, flow: u64) -> bool {
        let entries = self.read();
        let mut of_flow = entries.iter().filter(|e| e.flow == flow).peekable();
        of_flow.peek().is_some() && of_flow.all(|e| e.state == ViewState::Ready)
    }

    /// The dataflows built while running (not hidden) whose views all answer and that are not
    /// retired: a checkpoint cuts them, and a restore rebuilds the others' views.
    pub fn ready_flows(&self) -> Vec<u64> {
        let entries = self.read();
        let mut flows: Vec<u64> = entries
            .iter()
            .filter(|e| e.flow != 0 && !e.hidden)
            .map(|e| e.flow)
            .collect();
        flows.sort_unstable();
        flows.dedup();
        drop(entries);
        flows.retain(|f| self.flow_ready(*f) && !self.is_retired(*f));
        flows
    }

    /// Whether every view is ready.
    pub fn all_ready(&self) -> bool {
        self.read()
            .iter()
            .all(|e| e.hidden || e.state == ViewState::Ready)
    }
}
