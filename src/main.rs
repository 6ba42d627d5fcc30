//! The `lambdaflow` command: run the server, import history, generate events, query, demo.
//!
//! Exit codes: 0 on success, 1 on a runtime failure, 2 on a usage error.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use lambdaflow::cluster::Cluster;
use lambdaflow::ecommerce::generate::{GenConfig, Generator, push_json_line, write_jsonl};
use lambdaflow::ecommerce::{EcommerceWithWindows, Order};
use lambdaflow::event::{Decode, Event, Parse};
use lambdaflow::master::{self, Entry, MasterDataset, MasterOptions, RepairReport, VerifyReport};
use lambdaflow::nexmark::generate::{self as nexmark, NexmarkConfig};
use lambdaflow::nexmark::{Nexmark, Queries};
use lambdaflow::server::args::{ImportRules, RunArgs};
use lambdaflow::server::import::{ImportOptions, import};
use lambdaflow::server::schema;
use lambdaflow::server::{ServerConfig, serve, serve_sources, serve_sql};
use lambdaflow::sql::Record;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "lambdaflow",
    version,
    about = "One dataflow, two lanes: batch and speed views without writing the logic twice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the master dataset (after appending any history files to it), then serve HTTP.
    #[command(
        disable_help_flag = true,
        after_help = "Examples:\n  lambdaflow run --data-dir data\n  lambdaflow run --data-dir data --history old.jsonl -w 2 --listen 127.0.0.1:9000\n  lambdaflow run --data-dir d0 -n 2 -p 0 --hostfile hosts --listen 127.0.0.1:8080   # and -p 1 elsewhere"
    )]
    Run(Box<Run>),
    /// Append JSON Lines or CSV history to the master dataset.
    #[command(after_help = "Example:\n  lambdaflow import --data-dir data history.jsonl more.csv")]
    Import {
        /// The data directory of the master dataset.
        #[arg(long)]
        data_dir: PathBuf,
        /// Files to import (`.csv` is CSV with a header, anything else JSON Lines). A file
        /// already imported (same path, size and content) is skipped.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        rules: ImportRules,
    },
    /// Generate synthetic events as JSON Lines: e-commerce (seeded, Zipf products, out of
    /// order) or, with --nexmark, NEXMark's persons, auctions and bids.
    #[command(
        after_help = "Examples:\n  lambdaflow gen --events 1000000 --seed 7 --out history.jsonl\n  lambdaflow gen --nexmark --events 10000000 --out-of-order 100 --out nexmark.jsonl"
    )]
    Gen(Gen),
    /// Run SQL statements (CREATE VIEW, CREATE OR REPLACE VIEW, DROP VIEW) on a running server.
    #[command(
        after_help = "Examples:\n  lambdaflow sql views.sql\n  echo \"DROP VIEW big_spenders\" | lambdaflow sql -\n  lambdaflow sql -e \"SELECT kind, COUNT(*) AS n FROM events GROUP BY kind\""
    )]
    Sql {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token, if the server wants one.
        #[arg(long)]
        token: Option<String>,
        /// Statements to run (an ad-hoc SELECT prints its rows: a table on a terminal, JSON
        /// Lines otherwise).
        #[arg(short = 'e', long = "execute", conflicts_with = "file")]
        execute: Option<String>,
        /// A file of `;`-separated statements, or `-` for standard input.
        #[arg(required_unless_present = "execute")]
        file: Option<PathBuf>,
    },
    /// Ask a running server for a view, or one key of it, and pretty-print the answer.
    #[command(
        after_help = "Examples:\n  lambdaflow query revenue_by_day\n  lambdaflow query product_stats 42\n  lambdaflow query --url http://127.0.0.1:9000 top_products"
    )]
    Query {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Wait until the watermark passes this time (ms) and answer as of it.
        #[arg(long)]
        as_of: Option<u64>,
        /// Bearer token, if the server wants one.
        #[arg(long)]
        token: Option<String>,
        /// The view.
        view: String,
        /// A key of the view (all rows if absent).
        key: Option<String>,
    },
    /// Check the master dataset (every frame, checksum and commit marker, and the manifest);
    /// with --repair, cut a damaged one after its last whole committed group.
    #[command(
        after_help = "Exit status: 0 if the dataset is sound or was repaired, 1 if damage was found and not repaired (or it could not be read), 2 on a usage error.\n\nExamples:\n  lambdaflow verify data\n  lambdaflow verify data --repair   # stop the server first; events after the damage are lost"
    )]
    Verify {
        /// The data directory of the master dataset.
        data_dir: PathBuf,
        /// If damage is found, cut the dataset after its last whole committed group: the damaged
        /// segment is cut there, later segments are removed, the manifest is rewritten.
        #[arg(long)]
        repair: bool,
    },
    /// Generate history, replay it, serve on 127.0.0.1:8080 and feed live events; Ctrl-C stops.
    #[command(after_help = "Example:\n  cargo run --release -- demo")]
    Demo {
        /// Where to serve.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// History events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Live events per second to post.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
    },
}

/// `lambdaflow run`: the server's options, and which views it serves.
#[derive(clap::Args)]
struct Run {
    /// Serve NEXMark instead of the e-commerce pipeline: the suite's events (`POST /events`
    /// takes its JSON lines) and the views q0-q8 (see src/nexmark).
    #[arg(long, conflicts_with_all = ["schema", "sql"])]
    nexmark: bool,
    #[command(flatten)]
    args: RunArgs,
}

#[derive(clap::Args)]
struct Gen {
    /// How many events.
    #[arg(long)]
    events: u64,
    /// The seed (equal seeds give equal events).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The share of events that arrive out of order (e-commerce).
    #[arg(long, default_value_t = 0.02, conflicts_with = "nexmark")]
    late_fraction: f64,
    /// How far back (ms) an out-of-order event goes at most (e-commerce).
    #[arg(long, default_value_t = 10_000, conflicts_with = "nexmark")]
    max_lateness: u64,
    /// NEXMark events (the suite's model and JSON shape) instead of e-commerce ones.
    #[arg(long)]
    nexmark: bool,
    /// NEXMark: events per second of event time.
    #[arg(long, default_value_t = 10_000, requires = "nexmark")]
    rate: u64,
    /// NEXMark: permute events within groups of this many (the suite's outOfOrderGroupSize).
    #[arg(long, default_value_t = 1, requires = "nexmark")]
    out_of_order: u64,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// mimalloc (Microsoft's allocator, maintained, thread-local free lists): the dataflow
/// allocates and frees many small buffers on every worker at once, and glibc's allocator spent
/// a third of a 10M-event replay in `malloc`, `free` and their arena locks (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(run) => run_server(*run),
        Command::Import {
            data_dir,
            files,
            rules,
        } => import_files(&data_dir, &files, rules.options(), rules.segment_bytes),
        Command::Gen(args) => generate(args),
        Command::Query {
            url,
            as_of,
            token,
            view,
            key,
        } => query(&url, as_of, token.as_deref(), &view, key.as_deref()),
        Command::Sql {
            url,
            token,
            execute,
            file,
        } => post_sql(&url, token.as_deref(), execute, file.as_deref()),
        Command::Verify { data_dir, repair } => verify_data(&data_dir, repair),
        Command::Demo {
            listen,
            events,
            rate,
        } => demo(listen, events, rate),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Completes on Ctrl-C or SIGTERM (how service managers stop a process).
async fn ctrl_c() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    info!("shutting down");
}

fn run_server(Run { nexmark, args: run }: Run) -> Result<(), String> {
    if nexmark {
        if !run.history.is_empty() {
            let options = run.rules.options();
            let segment_bytes = run.rules.segment_bytes;
            import_as::<Nexmark>(&run.data_dir, &run.history, &Parse, options, segment_bytes)?;
        }
        let config = run.config()?;
        return runtime()?.block_on(serve(config, Queries::all(), |_| {}, ctrl_c()));
    }
    let given = run.schema()?;
    let schema = schema::settle(&run.data_dir, given.as_ref())?;
    if !run.history.is_empty() {
        import_files(
            &run.data_dir,
            &run.history,
            run.rules.options(),
            run.rules.segment_bytes,
        )?;
    }
    let config = run.config()?;
    match schema {
        Some(schema) => runtime()?.block_on(serve_sources(config, schema, |_| {}, ctrl_c())),
        None => runtime()?.block_on(serve_sql(config, EcommerceWithWindows, |_| {}, ctrl_c())),
    }
}

/// Appends history files to the master dataset of `data_dir`: rows of its declared sources if
/// it keeps a schema, else e-commerce events.
fn import_files(
    data_dir: &std::path::Path,
    files: &[PathBuf],
    options: ImportOptions,
    segment_bytes: u64,
) -> Result<(), String> {
    match schema::stored(data_dir)? {
        Some(schema) => import_as::<Record>(data_dir, files, &schema, options, segment_bytes),
        None => import_as::<Order>(data_dir, files, &Parse, options, segment_bytes),
    }
}

fn import_as<E: Event>(
    data_dir: &std::path::Path,
    files: &[PathBuf],
    decode: &dyn Decode<E>,
    options: ImportOptions,
    segment_bytes: u64,
) -> Result<(), String> {
    let stored = MasterOptions {
        schema_version: E::SCHEMA_VERSION,
        segment_bytes,
    };
    let (master, _) = MasterDataset::<Entry<E>>::open(data_dir, stored).map_err(|e| {
        format!(
            "cannot open the master dataset in {}: {e}",
            data_dir.display()
        )
    })?;
    let summary = import(&master, files, decode, options)?;
    info!(
        files = summary.files,
        skipped = summary.skipped,
        accepted = summary.accepted,
        rejected = summary.rejected,
        "import done"
    );
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "imported {} events from {} files ({} already imported, skipped); {} lines rejected",
        summary.accepted,
        summary.files - summary.skipped,
        summary.skipped,
        summary.rejected
    )
    .map_err(|e| e.to_string())
}

/// `lambdaflow verify`: prints a short report; an error (exit status 1) when damage is found and
/// not repaired, or the dataset cannot be read.
fn verify_data(data_dir: &std::path::Path, repair: bool) -> Result<(), String> {
    let dir = data_dir.display();
    let mut out = std::io::stdout().lock();
    let damage = match master::verify(data_dir) {
        Ok(report) => {
            let mut text = format!("{dir}: sound: {}\n", describe(&report));
            if report.unfinished_bytes > 0 {
                text.push_str(&format!(
                    "  {} bytes after the last committed group are not committed (an append in \
                     flight, or a torn or damaged last group): opening the dataset cuts them off\n",
                    report.unfinished_bytes
                ));
            }
            return out.write_all(text.as_bytes()).map_err(|e| e.to_string());
        }
        Err(e @ (master::Error::Corrupt { .. } | master::Error::Layout { .. })) => e,
        Err(e) => return Err(format!("cannot verify {dir}: {e}")),
    };
    writeln!(out, "{dir}: damaged: {damage}").map_err(|e| e.to_string())?;
    if !repair {
        writeln!(
            out,
            "  `lambdaflow verify {dir} --repair` cuts the dataset after its last whole \
             committed group (the events after it are lost)"
        )
        .map_err(|e| e.to_string())?;
        return Err(format!("{dir}: the master dataset is damaged"));
    }
    let report = master::repair(data_dir).map_err(|e| format!("cannot repair {dir}: {e}"))?;
    out.write_all(describe_repair(&report).as_bytes())
        .map_err(|e| e.to_string())
}

fn describe(report: &VerifyReport) -> String {
    format!(
        "{} segments ({} sealed), {} groups, {} records, {} bytes",
        report.segments, report.sealed_segments, report.groups, report.records, report.file_bytes
    )
}

fn describe_repair(report: &RepairReport) -> String {
    let mut text = String::from("repaired:\n");
    for damage in &report.damage {
        text.push_str(&format!(
            "  damage: {} at byte {}: {}\n",
            damage.path.display(),
            damage.offset,
            damage.reason
        ));
    }
    for cut in &report.cuts {
        let what = if cut.removed {
            format!("removed {}", cut.path.display())
        } else {
            format!("cut {} at byte {}", cut.path.display(), cut.offset)
        };
        let at_least = if cut.records_exact { "" } else { "at least " };
        text.push_str(&format!(
            "  {what}: {} bytes, {at_least}{} records\n",
            cut.bytes, cut.records
        ));
    }
    if report.manifest_rewritten {
        text.push_str("  rewrote the manifest\n");
    }
    let at_least = if report.records_exact() {
        ""
    } else {
        "at least "
    };
    text.push_str(&format!(
        "  cut {} bytes and {at_least}{} records in all; kept {}\n",
        report.bytes_cut(),
        report.records_cut(),
        describe(&report.kept)
    ));
    text
}

fn generate(args: Gen) -> Result<(), String> {
    if args.nexmark {
        return generate_nexmark(args);
    }
    let events = Generator::new(GenConfig {
        seed: args.seed,
        events: args.events,
        late_fraction: args.late_fraction,
        max_lateness_ms: args.max_lateness,
        ..GenConfig::default()
    })?;
    let written = match args.out {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            write_jsonl(events, file)
        }
        None => write_jsonl(events, std::io::stdout().lock()),
    };
    written.map(drop).map_err(|e| e.to_string())
}

fn generate_nexmark(args: Gen) -> Result<(), String> {
    let config = NexmarkConfig {
        seed: args.seed,
        events: args.events,
        rate: args.rate,
        out_of_order: args.out_of_order,
        ..NexmarkConfig::default()
    };
    let written = match args.out {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            nexmark::write_jsonl(&config, file)
        }
        None => nexmark::write_jsonl(&config, std::io::stdout().lock()),
    };
    written.map(drop).map_err(|e| e.to_string())
}

/// Sends a request and pretty-prints its JSON answer; an error status fails.
fn print_answer(
    request: reqwest::blocking::RequestBuilder,
    url: &str,
    target: &str,
) -> Result<(), String> {
    let response = request
        .send()
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let pretty = serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?;
    writeln!(std::io::stdout().lock(), "{pretty}").map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{target}: {status}"))
    }
}

fn post_sql(
    url: &str,
    token: Option<&str>,
    execute: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<(), String> {
    let text = match (execute, file) {
        (Some(text), _) => text,
        (None, Some(file)) if file.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| format!("cannot read stdin: {e}"))?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        (None, None) => return Err("give statements with -e or a file".into()),
    };
    let target = format!("{}/sql", url.trim_end_matches('/'));
    let mut request = reqwest::blocking::Client::new()
        .post(&target)
        .header("content-type", "application/sql")
        .body(text);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let mut out = std::io::stdout().lock();
    match body["rows"].as_array() {
        Some(rows) if status.is_success() => print_rows(&mut out, rows),
        _ => {
            let pretty = serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?;
            writeln!(out, "{pretty}").map_err(|e| e.to_string())?;
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{target}: {status}"))
    }
}

/// An ad-hoc query's rows: an aligned table on a terminal, JSON Lines otherwise.
fn print_rows(out: &mut impl Write, rows: &[serde_json::Value]) {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        for row in rows {
            let _ = writeln!(out, "{row}");
        }
        return;
    }
    let columns: Vec<String> = rows
        .first()
        .and_then(|r| r.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut widths: Vec<usize> = columns.iter().map(String::len).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(&columns) {
            *w = (*w).max(cell(&row[c]).len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "{}", line(columns.clone()));
    let _ = writeln!(
        out,
        "{}",
        line(widths.iter().map(|w| "-".repeat(*w)).collect())
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{}",
            line(columns.iter().map(|c| cell(&row[c])).collect())
        );
    }
    let _ = writeln!(out, "({} rows)", rows.len());
}

fn query(
    url: &str,
    as_of: Option<u64>,
    token: Option<&str>,
    view: &str,
    key: Option<&str>,
) -> Result<(), String> {
    let mut target = format!("{}/views/{view}", url.trim_end_matches('/'));
    if let Some(key) = key {
        target.push('/');
        target.push_str(key);
    }
    if let Some(t) = as_of {
        target.push_str(&format!("?as_of={t}"));
    }
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(&target);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    print_answer(request, url, &target)
}

fn demo(listen: SocketAddr, events: u64, rate: u64) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("lambdaflow-demo-{}", std::process::id()));
    let history = dir.join("history.jsonl");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    info!(events, file = %history.display(), "generating history");
    let config = GenConfig {
        seed: 42,
        events,
        ..GenConfig::default()
    };
    let live_start = config.start_ts + events * 1000 / config.events_per_second;
    let file = std::fs::File::create(&history).map_err(|e| e.to_string())?;
    write_jsonl(Generator::new(config)?, file).map_err(|e| e.to_string())?;
    let data_dir = dir.join("data");
    import_files(
        &data_dir,
        &[history],
        ImportOptions::default(),
        MasterOptions::default().segment_bytes,
    )?;

    let server = ServerConfig {
        listen,
        cluster: Cluster::threads(2),
        ..ServerConfig::new(data_dir)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let feeder_stop = stop.clone();
    let on_listening = move |address: SocketAddr| {
        let base = format!("http://{address}");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\nlambdaflow demo: serving the e-commerce views on {base}\n  \
             curl {base}/views\n  curl {base}/views/top_products\n  curl {base}/views/revenue_by_day\n  \
             curl {base}/views/product_stats/0\n  curl {base}/metrics\n  \
             cargo run --release -- query top_products\n  \
             cargo run --release -- sql -e \"SELECT kind, COUNT(*) AS n FROM events GROUP BY kind\"\n\
             Live events are posted at {rate}/s. Ctrl-C stops.\n"
        );
        std::thread::spawn(move || feed_live(&base, live_start, rate, &feeder_stop));
    };
    let shutdown = async move {
        ctrl_c().await;
        stop.store(true, Ordering::Relaxed);
    };
    let result = runtime()?.block_on(serve_sql(
        server,
        EcommerceWithWindows,
        on_listening,
        shutdown,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The SQL view the demo creates while it serves.
const DEMO_VIEW: &str = "CREATE VIEW big_spenders AS
  SELECT customer, COUNT(*) AS purchases, SUM(amount_cents) AS spent_cents
  FROM events WHERE kind = 'purchase'
  GROUP BY customer HAVING SUM(amount_cents) > 100000";

/// Creates a SQL view on the running demo server and shows its backfill.
fn create_sql_view(client: &reqwest::blocking::Client, base: &str) {
    let started = std::time::Instant::now();
    let posted = client
        .post(format!("{base}/sql"))
        .header("content-type", "application/sql")
        .body(DEMO_VIEW)
        .send();
    if !posted.is_ok_and(|r| r.status().is_success()) {
        return tracing::warn!("the demo's SQL view was not created");
    }
    println!(
        "created a SQL view while serving:\n  {DEMO_VIEW}\nbackfilling it from the master dataset..."
    );
    loop {
        let views: Option<serde_json::Value> = client
            .get(format!("{base}/views"))
            .send()
            .ok()
            .and_then(|r| r.json().ok());
        let view = views.as_ref().and_then(|v| {
            v["views"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == "big_spenders")
                .cloned()
        });
        match view {
            Some(v) if v["state"] == "ready" => break,
            Some(v) => println!(
                "  big_spenders: {:.0}%",
                v["progress"].as_f64().unwrap_or(0.0) * 100.0
            ),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "big_spenders is ready after {:.2} s: curl {base}/views/big_spenders",
        started.elapsed().as_secs_f64()
    );
}

/// Posts generated live events to the demo server, in batches every 100 ms.
fn feed_live(base: &str, start_ts: u64, rate: u64, stop: &AtomicBool) {
    let client = reqwest::blocking::Client::new();
    while !stop.load(Ordering::Relaxed) {
        match client.get(format!("{base}/ready")).send() {
            Ok(r) if r.status().is_success() => break,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    create_sql_view(&client, base);
    let config = GenConfig {
        seed: 43,
        events: u64::MAX / 2_000_000,
        start_ts,
        events_per_second: rate.max(1),
        ..GenConfig::default()
    };
    let mut events = match Generator::new(config) {
        Ok(g) => g,
        Err(e) => return tracing::error!("live generator: {e}"),
    };
    let per_batch = (rate / 10).max(1);
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        body.clear();
        for order in events.by_ref().take(per_batch as usize) {
            push_json_line(&mut body, &order);
        }
        let sent = client
            .post(format!("{base}/events"))
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send();
        if let Err(e) = sent {
            tracing::warn!("posting live events: {e}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
