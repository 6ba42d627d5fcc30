//! The server's command-line options, as a `clap::Args`: a custom server gets every option of
//! `lambdaflow run` by flattening [`RunArgs`] into its own command line, and builds its
//! [`ServerConfig`] from them.
//!
//! ```no_run
//! use clap::Parser;
//! use lambdaflow::server::args::RunArgs;
//!
//! #[derive(Parser)]
//! #[command(disable_help_flag = true)] // `-h` names the hostfile
//! struct Cli {
//!     #[command(flatten)]
//!     run: RunArgs,
//! }
//!
//! let config = Cli::parse().run.config()?;
//! # Ok::<(), String>(())
//! ```

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::ServerConfig;
use super::import::ImportOptions;
use super::ingest::FutureLimit;
use crate::cluster::Cluster;
use crate::engine::Settings;
use crate::lane::BatchTime;
use crate::live::BacklogLimits;
use crate::master::MasterOptions;
use crate::sql::Schema;
use crate::watermark::LatePolicy;

/// How imported history is checked.
#[derive(clap::Args, Debug)]
pub struct ImportRules {
    /// Refuse lines whose ts is more than this far ahead of this machine's clock ("off": no
    /// limit, for synthetic future data).
    #[arg(long, default_value = "1h", value_parser = parse_optional_duration)]
    pub max_future: Limit,
    /// Append a history file that changed since it was imported: the lines it gained, if it
    /// only grew, else the whole file as new history (without it, a changed file is an error).
    #[arg(long)]
    pub append_changed: bool,
    /// Seal a segment of the master dataset once it holds this many bytes.
    #[arg(long, default_value_t = MasterOptions::default().segment_bytes)]
    pub segment_bytes: u64,
}

impl ImportRules {
    /// The import options these rules give.
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            limit: FutureLimit {
                max_future: self.max_future.0,
            },
            append_changed: self.append_changed,
            ..ImportOptions::default()
        }
    }
}

/// Every option of `lambdaflow run`: flatten it into a custom server's command line (with
/// `disable_help_flag = true`, since `-h` names the hostfile), then [`config`](RunArgs::config).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The data directory of the master dataset.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// History to append to the master dataset before the replay (repeatable); a file already
    /// imported is skipped.
    #[arg(long)]
    pub history: Vec<PathBuf>,
    /// SQL views to serve (`CREATE VIEW name AS SELECT ... FROM events ...;`), besides those
    /// the data directory's catalog keeps (see docs/SQL.md).
    #[arg(long)]
    pub sql: Option<PathBuf>,
    /// Sources to read instead of the built-in `events`, declared in SQL
    /// (`CREATE SOURCE name (columns) WITH (event_time = 'column');`, see docs/SQL.md): the
    /// server then serves SQL views only. The data directory keeps the schema: a later start
    /// may leave this out, or add sources.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    #[command(flatten)]
    pub rules: ImportRules,
    /// The HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub cluster: Cluster,
    /// How far the watermark trails the newest event (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub allowed_lateness: Duration,
    /// What to do with events behind the watermark: correct or drop.
    #[arg(long, default_value = "correct")]
    pub late_policy: LatePolicy,
    /// Beyond this far behind the watermark even `correct` drops late events (default: no limit).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_lateness: Option<Duration>,
    /// A worker with no live events for this long stops holding the watermark back ("off": never).
    #[arg(long, default_value = "5s", value_parser = parse_idle)]
    pub idle_timeout: Idle,
    /// How often the speed lane advances its frontier (latency vs throughput).
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// Replay history at one time per this much event time (default: one time for all).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub history_granularity: Option<Duration>,
    /// Keep every view's changelog, for `GET /subscribe/{view}` (costs a copy of each view).
    #[arg(long)]
    pub changelog: bool,
    /// Also write every view's changelog as JSON Lines, one file per view, in this directory
    /// (implies --changelog).
    #[arg(long)]
    pub sink_dir: Option<PathBuf>,
    /// Require `Authorization: Bearer TOKEN` (except on /health and /ready).
    #[arg(long)]
    pub token: Option<String>,
    /// Requests per second per client address (429 above it).
    #[arg(long)]
    pub rate_limit: Option<NonZeroU32>,
    /// Largest request body in bytes (413 above it).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: usize,
    /// How long an `?as_of=` read waits before 503.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
    /// Live events that may wait for each worker; above it `POST /events` answers 503.
    #[arg(long, default_value_t = BacklogLimits::default().events)]
    pub max_backlog_events: u64,
    /// Bytes of live events (as posted) that may wait for each worker; above it 503.
    #[arg(long, default_value_t = BacklogLimits::default().bytes)]
    pub max_backlog_bytes: u64,
    /// How long the time of a paged read stays readable after each page (its cursor expires
    /// then: 410).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub page_hold: Duration,
    /// `POST /events` requests in progress at once; above it 503.
    #[arg(long, default_value_t = 64)]
    pub max_ingest_requests: usize,
    /// How often to checkpoint the views (and once at a clean stop), so that a restart
    /// replays only the master dataset after the newest checkpoint ("off": none is taken,
    /// and the views keep no copy of their state for them).
    #[arg(long, default_value = "60s", value_parser = parse_optional_duration)]
    pub checkpoint_interval: Limit,
    /// Ignore the data directory's checkpoints: replay the whole master dataset.
    #[arg(long)]
    pub from_scratch: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl RunArgs {
    /// The server's configuration from these options (reading the `--sql` file).
    pub fn config(&self) -> Result<ServerConfig, String> {
        Ok(ServerConfig {
            listen: self.listen,
            cluster: self.cluster.clone(),
            settings: Settings {
                allowed_lateness: self.allowed_lateness,
                late_policy: self.late_policy,
                tick: self.tick,
                max_lateness: self.max_lateness,
                idle_timeout: self.idle_timeout.0,
                changelog: self.changelog,
                batch_time: self.history_granularity.map_or(BatchTime::Single, |d| {
                    BatchTime::Every(d.as_millis().max(1) as u64)
                }),
                backlog: BacklogLimits {
                    events: self.max_backlog_events,
                    bytes: self.max_backlog_bytes,
                },
                page_hold: self.page_hold,
            },
            token: self.token.clone(),
            rate_limit: self.rate_limit,
            max_body_bytes: self.max_body,
            query_timeout: self.query_timeout,
            sink_dir: self.sink_dir.clone(),
            max_future: FutureLimit {
                max_future: self.rules.max_future.0,
            },
            max_ingest_requests: self.max_ingest_requests,
            checkpoint_interval: self.checkpoint_interval.0,
            from_scratch: self.from_scratch,
            master: MasterOptions {
                segment_bytes: self.rules.segment_bytes,
                ..MasterOptions::default()
            },
            sql: match &self.sql {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            },
            ..ServerConfig::new(self.data_dir.clone())
        })
    }

    /// The sources the `--schema` file declares, if it is given.
    pub fn schema(&self) -> Result<Option<Schema>, String> {
        Ok(match &self.schema {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|text| {
                        Schema::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
                    })?,
            ),
            None => None,
        })
    }
}

/// An idle timeout, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct Idle(pub Option<Duration>);

/// A duration limit, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct Limit(pub Option<Duration>);

fn parse_optional_duration(text: &str) -> Result<Limit, humantime::DurationError> {
    if text == "off" {
        Ok(Limit(None))
    } else {
        humantime::parse_duration(text).map(|d| Limit(Some(d)))
    }
}

fn parse_idle(text: &str) -> Result<Idle, humantime::DurationError> {
    if text == "off" {
        Ok(Idle(None))
    } else {
        humantime::parse_duration(text).map(|d| Idle(Some(d)))
    }
}
