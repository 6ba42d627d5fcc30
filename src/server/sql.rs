//! SQL views while the server runs: `POST /sql`, and the catalog kept in the data directory.
//!
//! A statement is planned against the views defined so far (all statements of a request, or
//! none). Each view created or replaced gets a dataflow of its own
//! ([`Flows::create`](crate::engine::Flows::create)): backfilled from the master dataset while
//! ingest and reads go on, then fed live. The views' definitions are kept in
//! `DATA_DIR/catalog.json` (written to a temporary file, synced, renamed, the directory
//! synced); on start they are built with the typed views, in one replay.
//!
//! Replacing or dropping a view that another view reads is refused: the reader would go on
//! reading the old definition. Drop or replace the readers first.
//!
//! A plain `SELECT` is answered once: planned like a view over the views defined so far, built
//! in a temporary dataflow (which reads the master dataset, like a new view's backfill), read,
//! and dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::info;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::answer::Query;
use crate::engine::{Client, Flows};
use crate::event::Time;
use crate::sql::{Change, SqlError, SqlSource, SqlViews, answer_rows};

/// The file the catalog is kept in, in the data directory.
const CATALOG: &str = "catalog.json";

/// What one statement did.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The view.
    pub view: String,
    /// `created`, `replaced` or `dropped`.
    pub action: &'static str,
    /// Its state: `backfilling` for a new definition, `dropped`.
    pub state: &'static str,
    /// The dataflow that builds it.
    #[serde(skip)]
    pub flow: Option<u64>,
}

/// Why statements were not run.
#[derive(Debug)]
pub enum Refusal {
    /// A statement is malformed, unsupported or names something unknown.
    Sql(SqlError),
    /// It cannot be done here (a multi-process server, a failed dataflow).
    Unavailable(String),
}

/// What statements gave.
#[derive(Debug)]
pub enum Ran {
    /// Views were created, replaced or dropped.
    Changes(Vec<Outcome>),
    /// An ad-hoc `SELECT` was answered.
    Rows {
        /// Its rows (at most the limit asked for).
        rows: Vec<serde_json::Value>,
        /// The time they were read at.
        as_of: Time,
    },
}

/// Runs SQL statements against a server's views.
pub trait Statements: Send + Sync {
    /// Runs every statement of `text`, or none. An ad-hoc `SELECT` is answered with at most
    /// `limit` rows, as of `as_of` or later.
    fn run(&self, text: &str, limit: Option<usize>, as_of: Option<Time>) -> Result<Ran, Refusal>;
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    views: Vec<StoredView>,
}

#[derive(Serialize, Deserialize)]
struct StoredView {
    name: String,
    sql: String,
}

/// Reads the catalog of `data_dir`, then applies `extra` (the `--sql` file): a view the
/// catalog already holds with the same definition is left as it is.
/// `empty` names the sources the views read.
pub fn load<E: SqlSource>(
    data_dir: &Path,
    empty: SqlViews<E>,
    extra: Option<&str>,
) -> Result<SqlViews<E>, String> {
    let path = data_dir.join(CATALOG);
    let stored: Stored = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a catalog: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut views = empty.clone();
    for view in &stored.views {
        views
            .define(&view.sql)
            .map_err(|e| format!("{}: view {}: {e}", path.display(), view.name))?;
    }
    if let Some(text) = extra {
        let mut fresh = empty;
        fresh.define(text).map_err(|e| format!("--sql: {e}"))?;
        for view in fresh.views() {
            let same = views
                .views()
                .iter()
                .any(|v| v.name == view.name && v.sql == view.sql);
            if !same {
                views
                    .define(&view.sql)
                    .map_err(|e| format!("--sql: view {}: {e}", view.name))?;
            }
        }
    }
    save(data_dir, &views).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(views)
}

/// Writes the catalog atomically.
fn save<E: SqlSource>(data_dir: &Path, views: &SqlViews<E>) -> std::io::Result<()> {
    let stored = Stored {
        views: views
            .views()
            .iter()
            .map(|v| StoredView {
                name: v.name.clone(),
                sql: v.sql.clone(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
    super::write_durably(data_dir, CATALOG, &bytes)
}

/// The SQL views of a running server.
pub struct SqlCatalog<E: SqlSource> {
    views: Mutex<SqlViews<E>>,
    flows: Flows<E>,
    client: Client,
    /// This process's index, and whether there are others.
    process: usize,
    several: bool,
    /// Requests of this process waiting for their statements to come out of the log.
    waiting:
        Mutex<std::collections::HashMap<u64, std::sync::mpsc::Sender<Result<Applied, Refusal>>>>,
    next_request: AtomicU64,
    /// How long an ad-hoc query may take.
    timeout: Duration,
    /// Numbers the ad-hoc queries.
    adhoc: AtomicU64,
    data_dir: PathBuf,
}

/// Statements as they travel through the log every process reads in one order.
#[derive(Serialize, Deserialize)]
struct Sequenced {
    /// The process that was asked, and its number for the request.
    origin: usize,
    request: u64,
    sql: String,
    /// For an ad-hoc `SELECT` on several processes: the name of the hidden view that answers
    /// it, built by every process (then `sql` is the query) or, with `done`, dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    adhoc: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    done: bool,
}

/// What applying a sequenced item gave the process that asked for it.
enum Applied {
    /// Statements ran.
    Ran(Ran),
    /// An ad-hoc query's dataflow was created: this one.
    Flow(u64),
}

impl<E: SqlSource> SqlCatalog<E> {
    /// The catalog of a server whose views are `views`.
    pub fn new(
        views: SqlViews<E>,
        flows: Flows<E>,
        client: Client,
        timeout: Duration,
        data_dir: PathBuf,
        cluster: &crate::cluster::Cluster,
    ) -> Arc<SqlCatalog<E>> {
        Arc::new(SqlCatalog {
            views: Mutex::new(views),
            flows,
            client,
            process: cluster.process,
            several: cluster.processes > 1,
            waiting: Mutex::new(Default::default()),
            next_request: AtomicU64::new(0),
            timeout,
            adhoc: AtomicU64::new(0),
            data_dir,
        })
    }

    /// Statements that came out of the log (on this process's first worker): applied here
    /// as on every process, and answered if this process was asked.
    pub fn apply(&self, item: &[u8]) {
        let Ok(sequenced) = serde_json::from_slice::<Sequenced>(item) else {
            tracing::warn!("a catalog change that is not one was sequenced");
            return;
        };
        let result = match (&sequenced.adhoc, sequenced.done) {
            (None, _) => self.change(&sequenced.sql).map(Applied::Ran),
            (Some(name), false) => self.build_adhoc(name, &sequenced.sql).map(Applied::Flow),
            (Some(name), true) => {
                self.flows.drop_view(name);
                return;
            }
        };
        if let Err(Refusal::Unavailable(why) | Refusal::Sql(SqlError { message: why, .. })) =
            &result
        {
            tracing::warn!(sql = %sequenced.sql, "a sequenced catalog change failed: {why}");
        }
        if sequenced.origin == self.process {
            let waiting = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&sequenced.request);
            if let Some(tx) = waiting {
                let _ = tx.send(result);
            }
        }
    }

    /// An ad-hoc `SELECT` that reads a view as it is: answered from its arrangement.
    fn read(
        &self,
        view: &str,
        key: Option<String>,
        limit: Option<usize>,
        as_of: Option<Time>,
    ) -> Result<Ran, Refusal> {
        let query = match key {
            Some(key) => Query::key(view, key),
            None => Query::all(view),
        };
        let answer = self
            .client
            .query(query, as_of)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut rows = answer_rows(&answer, None);
        rows.truncate(limit.unwrap_or(usize::MAX));
        Ok(Ran::Rows {
            rows,
            as_of: answer.as_of,
        })
    }

    /// Builds the hidden view of an ad-hoc query that came out of the log (planned against
    /// this process's catalog, which every process has in the same state at this point).
    fn build_adhoc(&self, name: &str, sql: &str) -> Result<u64, Refusal> {
        let pipeline = {
            let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            views.adhoc(name, sql).map_err(Refusal::Sql)?
        };
        let pipeline = pipeline
            .ok_or_else(|| Refusal::Unavailable(format!("the query {name} is not a SELECT")))?;
        self.flows
            .create_hidden(Arc::new(pipeline))
            .map_err(Refusal::Unavailable)
    }

    /// Sends an item through the log every process reads in one order, and waits for what
    /// applying it on this process gave.
    fn sequence(&self, sql: &str, adhoc: Option<&str>) -> Result<Applied, Refusal> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request, tx);
        let item = Sequenced {
            origin: self.process,
            request,
            sql: sql.to_string(),
            adhoc: adhoc.map(str::to_string),
            done: false,
        };
        let bytes = serde_json::to_vec(&item).map_err(|e| Refusal::Unavailable(e.to_string()))?;
        self.client
            .sequence(bytes)
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        rx.recv_timeout(self.timeout.max(Duration::from_secs(30)))
            .map_err(|_| {
                Refusal::Unavailable("the catalog change did not come back in time".into())
            })?
    }

    /// Drops an ad-hoc query's hidden view: here, or on every process through the log.
    fn drop_adhoc(&self, name: &str) {
        if !self.several {
            self.flows.drop_view(name);
            return;
        }
        let item = Sequenced {
            origin: self.process,
            request: u64::MAX,
            sql: String::new(),
            adhoc: Some(name.to_string()),
            done: true,
        };
        let sent = serde_json::to_vec(&item)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.client.sequence(bytes).map_err(|e| e.to_string()));
        if let Err(e) = sent {
            tracing::warn!(query = %name, "an ad-hoc query's dataflow was not dropped: {e}");
        }
    }

    /// An ad-hoc `SELECT`: planned as a view over the views defined so far, built in a
    /// dataflow of its own (backfilled from the master dataset like any new view; on several
    /// processes, built by each through the log), read once, and dropped.
    fn select(
        &self,
        pipeline: SqlViews<E>,
        text: &str,
        name: &str,
        limit: Option<usize>,
        as_of: Option<Time>,
    ) -> Result<Ran, Refusal> {
        let flow = if self.several {
            match self.sequence(text, Some(name))? {
                Applied::Flow(flow) => flow,
                Applied::Ran(_) => {
                    return Err(Refusal::Unavailable("the query was not built".into()));
                }
            }
        } else {
            self.flows
                .create_hidden(Arc::new(pipeline))
                .map_err(Refusal::Unavailable)?
        };
        let deadline = Instant::now() + self.timeout;
        while !self.flows.ready(flow) {
            if Instant::now() > deadline {
                self.drop_adhoc(name);
                return Err(Refusal::Unavailable(format!(
                    "the query did not finish within {}",
                    humantime::format_duration(self.timeout)
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let answer = self.client.query(Query::all(name), as_of);
        let limit_of = self
            .client
            .catalog()
            .into_iter()
            .find(|v| v.name == name)
            .and_then(|v| v.limit);
        self.drop_adhoc(name);
        let answer = answer.map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let mut rows = answer_rows(&answer, limit_of);
        rows.truncate(limit.unwrap_or(usize::MAX));
        Ok(Ran::Rows {
            rows,
            as_of: answer.as_of,
        })
    }
}

impl<E: SqlSource> Statements for SqlCatalog<E> {
    fn run(&self, text: &str, limit: Option<usize>, as_of: Option<Time>) -> Result<Ran, Refusal> {
        let name = format!(
            "adhoc-{}-{}",
            self.process,
            self.adhoc.fetch_add(1, Ordering::Relaxed)
        );
        let (adhoc, checked, direct) = {
            let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            let adhoc = views.adhoc(&name, text).map_err(Refusal::Sql)?;
            let direct = adhoc.as_ref().and_then(|p| views.direct_read(p));
            // Refuse what cannot run before it goes to every process.
            let checked = if adhoc.is_none() {
                views.clone().define(text).map(drop).map_err(Refusal::Sql)
            } else {
                Ok(())
            };
            (adhoc, checked, direct)
        };
        if let Some((view, key)) = direct {
            return self.read(&view, key, limit, as_of);
        }
        if let Some(pipeline) = adhoc {
            return self.select(pipeline, text, &name, limit, as_of);
        }
        checked?;
        // Every process applies the statements in the order the log gives them.
        match self.sequence(text, None)? {
            Applied::Ran(ran) => Ok(ran),
            Applied::Flow(_) => Err(Refusal::Unavailable("a statement built a query".into())),
        }
    }
}

impl<E: SqlSource> SqlCatalog<E> {
    /// Applies statements to this process's catalog: plans them against it, builds the
    /// dataflows, saves the catalog.
    fn change(&self, text: &str) -> Result<Ran, Refusal> {
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = views.clone();
        let changes = next.define(text).map_err(Refusal::Sql)?;
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            let (view, action) = match change {
                Change::Created(name) => (name, "created"),
                Change::Replaced(name) => (name, "replaced"),
                Change::Dropped(name) => {
                    self.flows.drop_view(&name);
                    info!(view = %name, "SQL view dropped");
                    outcomes.push(Outcome {
                        view: name,
                        action: "dropped",
                        state: "dropped",
                        flow: None,
                    });
                    continue;
                }
            };
            let pipeline = next
                .pipeline_for(&view)
                .ok_or_else(|| Refusal::Unavailable(format!("view {view} vanished")))?;
            let flow = self
                .flows
                .create(Arc::new(pipeline))
                .map_err(Refusal::Unavailable)?;
            info!(view = %view, flow, action, "SQL view backfilling");
            outcomes.push(Outcome {
                view,
                action,
                state: "backfilling",
                flow: Some(flow),
            });
        }
        save(&self.data_dir, &next).map_err(|e| {
            Refusal::Unavailable(format!(
                "the views were built but the catalog not saved: {e}"
            ))
        })?;
        *views = next;
        Ok(Ran::Changes(outcomes))
    }
}
