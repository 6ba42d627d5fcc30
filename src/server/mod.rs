//! The lambdaflow server: a pipeline served over HTTP, with its master dataset.
//!
//! The server is the Lambda architecture in one process:
//!
//! * the **master dataset** (`DATA_DIR`) is the system of record: every accepted event is
//!   appended to it, durably (fsync, with group commit), before it is acknowledged;
//! * on start the master dataset is replayed through the **batch lane**; `/ready` answers 503
//!   until that replay is done, and ingest waits for it (so no event is both replayed and live);
//! * then `POST /events` feeds the **speed lane**, and `GET /views/...` reads the arranged views
//!   through the serving operator, consistent as of a time.
//!
//! It is generic over the [`Pipeline`]: a user's own event type and views get the same HTTP API,
//! master dataset and metrics ([`serve`]). Several processes (`-n`, `-p`, `--hostfile`) form one
//! timely computation; each has its own data directory and HTTP address and answers every query
//! with the global result.

pub mod args;
pub mod dead_letter;
mod http;
pub mod import;
pub mod ingest;
pub mod prometheus;
pub mod schema;
mod sink;
pub mod sql;

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::engine::{
    Backfill, BackfillSource, Checkpointer, Checkpoints, Client, Engine, Flows, Hooks, OnSequenced,
    Pipeline, Settings,
};
use crate::history::History;
use crate::master::{Entry, Mark, MasterDataset, MasterOptions};
use crate::metrics::Metrics;
use crate::progress::Progress;
use crate::sql::{Schema, SqlSource, SqlViews, WithSql};
use dead_letter::DeadLetter;
use ingest::FutureLimit;

/// How a server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the master dataset lives.
    pub data_dir: PathBuf,
    /// The HTTP address (loopback by default).
    pub listen: SocketAddr,
    /// Threads, processes and hosts.
    pub cluster: Cluster,
    /// Event-time settings.
    pub settings: Settings,
    /// If set, every request but `/health` and `/ready` needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Requests per second allowed to each client address (a token bucket); `None`: no limit.
    pub rate_limit: Option<NonZeroU32>,
    /// The largest request body taken (413 above it).
    pub max_body_bytes: usize,
    /// How long a read with `?as_of=` waits for the watermark before answering 408.
    pub query_timeout: Duration,
    /// Master dataset settings.
    pub master: MasterOptions,
    /// If set, every keyed view's changelog is also written to `DIR/{view}.jsonl`.
    pub sink_dir: Option<PathBuf>,
    /// How far ahead of this server's clock an event time (or a declared watermark) may be.
    pub max_future: FutureLimit,
    /// How many `POST /events` requests may be in progress at once (503 above it): with the
    /// body size, a bound on the memory ingest can take.
    pub max_ingest_requests: usize,
    /// SQL statements (`CREATE VIEW ...`) to start with, besides the catalog of the data
    /// directory (for servers with a SQL source: [`serve_sql`]).
    pub sql: Option<String>,
    /// How often a checkpoint is taken (also one at a clean stop); `None`: none is (the
    /// views then keep no copy of their state for them), though one already in the data
    /// directory is still restored from. See [`checkpoint`](crate::checkpoint).
    pub checkpoint_interval: Option<Duration>,
    /// Whether to ignore the data directory's checkpoints and replay the whole master
    /// dataset.
    pub from_scratch: bool,
}

impl ServerConfig {
    /// Defaults for a data directory: loopback port 8080, one worker, 16 MiB bodies.
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cluster: Cluster::default(),
            settings: Settings::default(),
            token: None,
            rate_limit: None,
            max_body_bytes: 16 << 20,
            query_timeout: Duration::from_secs(10),
            master: MasterOptions::default(),
            sink_dir: None,
            max_future: FutureLimit::default(),
            max_ingest_requests: 64,
            sql: None,
            checkpoint_interval: Some(Duration::from_secs(60)),
            from_scratch: false,
        }
    }
}

/// Builds the runner of SQL statements once the engine runs.
type MakeStatements<E> = Box<dyn FnOnce(Flows<E>, Client) -> Arc<dyn sql::Statements> + Send>;

/// Opens the master dataset, starts the engine replaying it, serves HTTP until `shutdown`
/// completes, then stops cleanly (the engine finishes once every process has stopped).
///
/// `on_listening` is called with the bound address once the server accepts connections.
pub async fn serve<P: Pipeline>(
    config: ServerConfig,
    pipeline: P,
    on_listening: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    serve_with(config, pipeline, None, on_listening, shutdown).await
}

/// [`serve`], with SQL views over the pipeline's events beside its own: those of the data
/// directory's catalog and of [`ServerConfig::sql`] from the start, and any created with
/// `POST /sql` while it runs (see [`sql`]).
pub async fn serve_sql<P>(
    config: ServerConfig,
    pipeline: P,
    on_listening: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String>
where
    P: Pipeline,
    P::Event: SqlSource,
{
    let empty = SqlViews::new("").map_err(|e| e.to_string())?;
    serve_sql_over(config, pipeline, empty, on_listening, shutdown).await
}

/// [`serve_sql`] for the sources a [`Schema`] declares (`run --schema`): no views but SQL
/// views, rows read by the schema (`POST /events/{source}`), and the schema stored beside the
/// master dataset ([`schema::settle`] checks a data directory against it).
pub async fn serve_sources(
    config: ServerConfig,
    schema: Schema,
    on_listening: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    schema::settle(&config.data_dir, Some(&schema))?;
    let empty = SqlViews::over(schema.tables(), "").map_err(|e| e.to_string())?;
    serve_sql_over(config, schema, empty, on_listening, shutdown).await
}

/// Serves `pipeline` with the SQL views of the catalog over the sources of `empty`.
async fn serve_sql_over<P>(
    config: ServerConfig,
    pipeline: P,
    empty: SqlViews<P::Event>,
    on_listening: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String>
where
    P: Pipeline,
    P::Event: SqlSource,
{
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let views: SqlViews<P::Event> = sql::load(&config.data_dir, empty, config.sql.as_deref())?;
    let data_dir = config.data_dir.clone();
    let defined = views.clone();
    let timeout = config.query_timeout;
    let cluster = config.cluster.clone();
    // Catalog changes come out of the log every process reads in one order; the catalog that
    // applies them exists once the engine runs (until then they wait in the log).
    let applier: Arc<std::sync::OnceLock<std::sync::Weak<sql::SqlCatalog<P::Event>>>> =
        Arc::default();
    let hook = {
        let applier = applier.clone();
        Arc::new(
            move |item: &[u8]| match applier.get().map(std::sync::Weak::upgrade) {
                Some(Some(catalog)) => {
                    catalog.apply(item);
                    true
                }
                // Stopping: nothing is left to change.
                Some(None) => true,
                None => false,
            },
        )
    };
    let make: MakeStatements<P::Event> = Box::new(move |flows, client| {
        let catalog = sql::SqlCatalog::new(defined, flows, client, timeout, data_dir, &cluster);
        let _ = applier.set(Arc::downgrade(&catalog));
        catalog as Arc<dyn sql::Statements>
    });
    let pipeline = WithSql {
        pipeline,
        sql: views,
    };
    serve_with(config, pipeline, Some((make, hook)), on_listening, shutdown).await
}

/// Backfills from the master dataset, as it was when marked.
struct MasterBackfill<E> {
    master: Arc<MasterDataset<Entry<E>>>,
}

struct Marked<E> {
    master: Arc<MasterDataset<Entry<E>>>,
    mark: Mark,
}

impl<E: crate::event::Event> BackfillSource<E> for MasterBackfill<E> {
    fn mark(&self) -> Arc<dyn Backfill<E>> {
        Arc::new(Marked {
            master: self.master.clone(),
            mark: self.master.mark(),
        })
    }
}

impl<E: crate::event::Event> Backfill<E> for Marked<E> {
    fn bytes(&self) -> u64 {
        self.mark.bytes
    }

    fn position(&self) -> Option<crate::master::Position> {
        Some(self.mark.position())
    }

    fn read(
        &self,
        share: crate::history::Share,
        progress: &std::sync::atomic::AtomicU64,
        on_entry: &mut dyn FnMut(Entry<E>),
    ) -> Result<(), String> {
        self.master
            .read_mark(&self.mark, share, progress, on_entry)
            .map(drop)
            .map_err(|e| format!("cannot backfill from the master dataset: {e}"))
    }
}

async fn serve_with<P: Pipeline>(
    config: ServerConfig,
    pipeline: P,
    statements: Option<(MakeStatements<P::Event>, OnSequenced)>,
    on_listening: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let options = MasterOptions {
        schema_version: <P::Event as crate::event::Event>::SCHEMA_VERSION,
        ..config.master.clone()
    };
    let (master, recovery) = MasterDataset::<Entry<P::Event>>::open(&config.data_dir, options)
        .map_err(|e| {
            format!(
                "cannot open the master dataset in {}: {e}",
                config.data_dir.display()
            )
        })?;
    if let Some(torn) = &recovery.torn_tail {
        warn!(
            file = %torn.path.display(),
            offset = torn.offset,
            bytes = torn.bytes,
            reason = %torn.reason,
            "torn tail of the master dataset cut off"
        );
    }
    info!(
        records = recovery.records,
        bytes = recovery.bytes,
        segments = recovery.segments,
        "master dataset opened"
    );
    let master = Arc::new(master);
    let total_bytes = master.bytes();

    let cluster = config.cluster.clone();
    let settings = Settings {
        // Changelogs cost a copy of every view's state and a change batch for the whole replay:
        // kept only when asked for (`--changelog`) or needed by a sink.
        changelog: config.settings.changelog || config.sink_dir.is_some(),
        ..config.settings.clone()
    };
    let changelog_journal = config.data_dir.join("changelog.log");
    if !settings.changelog {
        // A journal this run does not keep would hold a frontier far behind the master, and a
        // later run with changelogs would replay everything after it at fine times.
        match std::fs::remove_file(&changelog_journal) {
            Ok(()) => {
                info!(path = %changelog_journal.display(), "changelogs are off: their journal removed")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove {}: {e}",
                    changelog_journal.display()
                ));
            }
        }
    }
    let history = History::Master(config.data_dir.clone());
    let dead_letter = DeadLetter::open(&config.data_dir).map_err(|e| {
        format!(
            "cannot open the dead-letter file in {}: {e}",
            config.data_dir.display()
        )
    })?;
    let journal = {
        let master = master.clone();
        Arc::new(move |entries: &[Entry<P::Event>]| {
            master.append(entries).map(drop).map_err(|e| e.to_string())
        })
    };
    let hooks = Hooks {
        on_late_drop: Some(dead_letter.sink()),
        journal: Some(journal),
        backfill: Some(Arc::new(MasterBackfill {
            master: master.clone(),
        })),
        on_sequenced: statements.as_ref().map(|(_, hook)| hook.clone()),
        checkpoints: Some(Checkpoints {
            store: crate::checkpoint::Store::in_data_dir(&config.data_dir),
            restore: !config.from_scratch,
            take: config.checkpoint_interval.is_some(),
        }),
        changelog_journal: Some(changelog_journal),
        release_memory: Some(Arc::new(release_memory)),
        ..Hooks::default()
    };
    let decoder = pipeline.decoder();
    let mut engine = tokio::task::spawn_blocking(move || {
        Engine::start_with(&cluster, settings, history, pipeline, hooks)
    })
    .await
    .map_err(|e| e.to_string())??;
    let live = engine.live().ok_or("the live input ended before serving")?;
    engine.end_live();

    let metrics = engine.metrics();
    let workers = config.cluster.workers as u64;
    if let Some(dir) = &config.sink_dir {
        sink::start(dir, &engine.client(), engine.changelog())?;
    }
    let progress = {
        let metrics = metrics.clone();
        Progress::start(
            "replaying the master dataset",
            total_bytes,
            Box::new(move || {
                let done = metrics.replayed.load(Ordering::Relaxed);
                (
                    Metrics::get(&metrics.history_bytes),
                    Metrics::get(&metrics.history_events),
                    done,
                )
            }),
        )
    };

    let exporter = prometheus::Exporter::new(metrics.clone(), master.clone(), total_bytes, workers);
    let (stopping, shutdown_watch) = tokio::sync::watch::channel(false);
    let statements = statements.map(|(make, _)| make(engine.flows(), engine.client()));
    let state = Arc::new(http::State::new(
        &config,
        &engine,
        (live, decoder),
        exporter,
        dead_letter.clone(),
        shutdown_watch,
        statements,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    info!(%address, "serving HTTP");
    on_listening(address);
    let app = http::router(state.clone(), config.max_body_bytes);
    // The replay's outcome: once every view reflects the master dataset, the dead-letter file
    // is complete; if the replay failed, the server stops and says why.
    let failed = Arc::new(Mutex::new(None));
    let watch = {
        let (metrics, dead_letter, failed) = (metrics.clone(), dead_letter.clone(), failed.clone());
        let failure = engine.failure_watch();
        async move {
            loop {
                if let Some(reason) = failure() {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(reason);
                    }
                    return;
                }
                if metrics.replayed.load(Ordering::Relaxed)
                    && metrics.drops_reported.load(Ordering::Relaxed)
                {
                    dead_letter.replayed();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            loop {
                if let Some(reason) = failure() {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(reason);
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let forget = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                state.forget_idle_clients();
            }
        })
    };
    let checkpointer = engine.checkpointer();
    let periodic = match (&checkpointer, config.checkpoint_interval) {
        (Some(checkpointer), Some(every)) => Some(tokio::spawn(take_checkpoints(
            checkpointer.clone(),
            metrics.clone(),
            every,
        ))),
        _ => None,
    };
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            () = watch => {}
        }
        // Subscriptions never end by themselves: tell them to.
        let _ = stopping.send(true);
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .map_err(|e| format!("HTTP server failed: {e}"))?;
    drop(progress);
    forget.abort();
    if let Some(periodic) = periodic {
        periodic.abort();
    }
    // A clean stop leaves a checkpoint of everything, so the next start is quick.
    if let Some(checkpointer) = checkpointer
        && metrics.replayed.load(Ordering::Relaxed)
        && failed.lock().is_ok_and(|f| f.is_none())
    {
        info!("taking a checkpoint before stopping");
        let taken = tokio::task::spawn_blocking(move || checkpointer.take_within(STOP_CHECKPOINT))
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = taken {
            warn!("no checkpoint at the stop: {e}");
        }
    }
    drop(state);
    info!("stopping: waiting for the workers (and the other processes) to finish");
    let joined = tokio::task::spawn_blocking(move || engine.join())
        .await
        .map_err(|e| e.to_string())?;
    dead_letter.close();
    if let Some(reason) = failed.lock().ok().and_then(|mut f| f.take()) {
        return Err(reason);
    }
    joined
}

/// How long a stop waits for its checkpoint.
const STOP_CHECKPOINT: Duration = Duration::from_secs(30);

/// Takes a checkpoint every `every` once the views reflect the master dataset (a failure is
/// logged, and the next one tried in time).
async fn take_checkpoints<E: crate::event::Event>(
    checkpointer: Checkpointer<E>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if !metrics.replayed.load(Ordering::Relaxed) {
            continue;
        }
        let checkpointer = checkpointer.clone();
        match tokio::task::spawn_blocking(move || checkpointer.take()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("checkpoint failed: {e}"),
            Err(e) => warn!("checkpoint failed: {e}"),
        }
    }
}

/// Writes a file of the data directory atomically: a temporary file, synced, renamed over the
/// old one, and the directory synced.
fn write_durably(data_dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(name);
    let temporary = data_dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Hands back the pages mimalloc (the binary's allocator, see main.rs) holds freed for this
/// thread (see [`Hooks::release_memory`]).
fn release_memory() {
    // SAFETY: `mi_collect` has no preconditions; where mimalloc is not the global allocator it
    // collects a heap that is empty. (Not forced: a forced collection walks every page.)
    unsafe { libmimalloc_sys::mi_collect(false) }
}
