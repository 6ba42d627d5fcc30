//! A SQL view created while the server ingests: how long its backfill over the master dataset
//! takes against a replay of the same master from scratch, and what ingest and point queries
//! see meanwhile (p50/p99 before and during the backfill).
//!
//! ```text
//! cargo run --release -- gen --events 10000000 --seed 42 --out /tmp/hist10m.jsonl
//! cargo bench --bench sql_backfill -- /tmp/hist10m.jsonl [--rate 50000] [-w 2]
//! ```

mod process;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use process::load::{import, ingest, query};

/// The view created while serving.
const VIEW: &str = "CREATE VIEW spend_sql AS
  SELECT customer, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS spend_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer";

struct Args {
    history: PathBuf,
    rate: u64,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut history = None;
    let (mut rate, mut workers) = (50_000, 2);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--rate" => {
                rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "-w" => workers = value("-w")?.parse().map_err(|e| format!("-w: {e}"))?,
            other if !other.starts_with('-') => history = Some(PathBuf::from(other)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        history: history.ok_or("give the history file (JSON Lines)")?,
        rate,
        workers,
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    import(&data, &args.history)?;
    let workers = args.workers.to_string();
    let flags = ["-w", workers.as_str(), "--idle-timeout", "off"];

    // A replay of the whole master with the view defined from the start.
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let sql = dir.path().join("view.sql");
    std::fs::write(&sql, VIEW).map_err(|e| e.to_string())?;
    let copy = dir.path().join("copy");
    import(&copy, &args.history)?;
    let started = Instant::now();
    let sql_arg = sql.to_string_lossy().to_string();
    let mut with_view = process::Server::start(
        &copy,
        &[&flags[..], &["--sql", &sql_arg]].concat(),
        &scratch.join("replay.log"),
    )?;
    let replay = started.elapsed().as_secs_f64();
    with_view.stop();
    // The view is in the copy's catalog now: without it, the replay of the built-in views.
    std::fs::remove_file(copy.join("catalog.json")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut without = process::Server::start(&copy, &flags, &scratch.join("replay2.log"))?;
    let replay_without = started.elapsed().as_secs_f64();
    without.stop();

    // The server that gets the view while it ingests.
    let server = process::Server::start(&data, &flags, &scratch.join("server.log"))?;
    // 0 before the view is created, 1 while it backfills, 2 after.
    let clock = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ingesting = {
        let (base, clock, stop) = (server.base.clone(), clock.clone(), stop.clone());
        let rate = args.rate;
        std::thread::spawn(move || ingest(base, rate, clock, stop))
    };
    let querying = {
        let (base, clock, stop) = (server.base.clone(), clock.clone(), stop.clone());
        std::thread::spawn(move || query(base, clock, stop))
    };
    std::thread::sleep(Duration::from_secs(10));
    let http = reqwest::blocking::Client::new();
    clock.store(1, Ordering::Relaxed);
    let created = Instant::now();
    let posted = http
        .post(format!("{}/sql", server.base))
        .header("content-type", "application/sql")
        .body(VIEW)
        .send()
        .map_err(|e| e.to_string())?;
    if !posted.status().is_success() {
        return Err(format!("POST /sql: {}", posted.status()));
    }
    loop {
        let listed: serde_json::Value = http
            .get(format!("{}/views", server.base))
            .send()
            .and_then(|r| r.json())
            .map_err(|e| e.to_string())?;
        let ready = listed["views"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["name"] == "spend_sql" && v["state"] == "ready");
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let backfill = created.elapsed().as_secs_f64();
    clock.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut ingested = ingesting.join().map_err(|_| "the ingest thread failed")?;
    let mut queried = querying.join().map_err(|_| "the query thread failed")?;
    println!(
        "master: {}; -w {}; live ingest {} events/s",
        args.history.display(),
        args.workers,
        args.rate
    );
    println!(
        "replay from scratch with the view: {replay:.2} s to /ready (without it: {replay_without:.2} s)"
    );
    println!("backfill of the view while ingesting: {backfill:.2} s from POST /sql to ready");
    println!("server peak RSS {:.0} MiB", server.peak_mib());
    let phases = ["before", "during"];
    ingested.report("ingest POST", phases);
    queried.report("point query", phases);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sql_backfill: {e}");
            ExitCode::FAILURE
        }
    }
}
