//! Restart from a checkpoint against a full replay: how long the server takes to `/ready`
//! (every view reflecting the whole master dataset) each way, how big a checkpoint is against
//! the master dataset, how long one takes, and what ingest and point queries see while one is
//! taken (p50/p99 before and during).
//!
//! ```text
//! cargo run --release -- gen --events 10000000 --seed 42 --out /tmp/hist10m.jsonl
//! cargo bench --bench restart -- /tmp/hist10m.jsonl [--runs 3] [-w 2] [--rate 50000]
//! ```
//!
//! The master is the file imported, plus 10 s of live ingest at `--rate` before the checkpoint
//! and 5 s after it (the tail a restore replays). The restarts alternate: a full replay
//! (`--from-scratch`), then a restore, `--runs` times each, every one killed with SIGKILL (so
//! no checkpoint is taken at the stop and each restore reads the same one).

mod process;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use process::load::{import, ingest, query};

struct Args {
    history: PathBuf,
    runs: usize,
    workers: usize,
    rate: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut history = None;
    let (mut runs, mut workers, mut rate) = (3, 2, 50_000);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "-w" => workers = value("-w")?.parse().map_err(|e| format!("-w: {e}"))?,
            "--rate" => {
                rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            other if !other.starts_with('-') => history = Some(PathBuf::from(other)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        history: history.ok_or("give the history file (JSON Lines)")?,
        runs,
        workers,
        rate,
    })
}

fn metrics(server: &process::Server) -> Result<String, String> {
    reqwest::blocking::get(format!("{}/metrics", server.base))
        .and_then(|r| r.text())
        .map_err(|e| e.to_string())
}

/// Starts the server and times it to `/ready`; returns the seconds, its peak RSS (MiB) and
/// whether it restored from a checkpoint.
fn restart(data: &Path, flags: &[&str], log: &Path) -> Result<(f64, f64, bool), String> {
    let started = Instant::now();
    let mut server = process::Server::start(data, flags, log)?;
    let seconds = started.elapsed().as_secs_f64();
    let restored = process::metric(&metrics(&server)?, "lambdaflow_restored") == Some(1.0);
    let peak = server.peak_mib();
    server.stop();
    Ok((seconds, peak, restored))
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    import(&data, &args.history)?;
    let workers = args.workers.to_string();
    let flags = ["-w", workers.as_str(), "--idle-timeout", "off"];
    let log = |name: &str| dir.path().join(format!("{name}.log"));

    // Serve, ingest, take a checkpoint while ingesting, ingest some more, crash.
    let server = process::Server::start(&data, &flags, &log("first"))?;
    let checkpointing = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ingesting = {
        let (base, c, stop, rate) = (
            server.base.clone(),
            checkpointing.clone(),
            stop.clone(),
            args.rate,
        );
        std::thread::spawn(move || ingest(base, rate, c, stop))
    };
    let querying = {
        let (base, c, stop) = (server.base.clone(), checkpointing.clone(), stop.clone());
        std::thread::spawn(move || query(base, c, stop))
    };
    std::thread::sleep(Duration::from_secs(10));
    checkpointing.store(1, Ordering::Relaxed);
    let asked = Instant::now();
    let taken: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/checkpoint", server.base))
        .timeout(Duration::from_secs(600))
        .send()
        .and_then(|r| r.json())
        .map_err(|e| format!("POST /checkpoint: {e}"))?;
    let took = asked.elapsed().as_secs_f64();
    checkpointing.store(0, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let mut ingested = ingesting.join().map_err(|_| "the ingest thread failed")?;
    let mut queried = querying.join().map_err(|_| "the query thread failed")?;
    let text = metrics(&server)?;
    let log_bytes = process::metric(&text, "lambdaflow_log_bytes").unwrap_or(f64::NAN);
    let log_records = process::metric(&text, "lambdaflow_log_records").unwrap_or(f64::NAN);
    let peak_serving = server.peak_mib();
    drop(server);

    let (mut replays, mut restores) = (Vec::new(), Vec::new());
    let (mut replay_peak, mut restore_peak) = (0f64, 0f64);
    let scratch = [&flags[..], &["--from-scratch"]].concat();
    for run in 0..args.runs {
        let (seconds, peak, restored) = restart(&data, &scratch, &log(&format!("replay{run}")))?;
        if restored {
            return Err("--from-scratch restored from a checkpoint".into());
        }
        replays.push(seconds);
        replay_peak = replay_peak.max(peak);
        let (seconds, peak, restored) = restart(&data, &flags, &log(&format!("restore{run}")))?;
        if !restored {
            return Err("the restart did not restore from the checkpoint".into());
        }
        restores.push(seconds);
        restore_peak = restore_peak.max(peak);
        println!(
            "run {run}: full replay {:.2} s, restore {seconds:.2} s",
            replays[run]
        );
    }
    let (replay, restore) = (
        process::median(&mut replays),
        process::median(&mut restores),
    );
    println!(
        "master: {} ({log_records} records, {:.0} MiB) + live ingest {} events/s; -w {}",
        args.history.display(),
        log_bytes / 1048576.0,
        args.rate,
        args.workers
    );
    println!(
        "checkpoint: {:.1} MiB ({:.1}% of the master), POST /checkpoint answered in {took:.2} s \
         (its own figure {:.2} s), as of {}",
        taken["bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0,
        100.0 * taken["bytes"].as_f64().unwrap_or(f64::NAN) / log_bytes,
        taken["seconds"].as_f64().unwrap_or(f64::NAN),
        taken["as_of"]
    );
    println!(
        "to /ready, median of {}: full replay {replay:.2} s (peak RSS {replay_peak:.0} MiB), \
         restore {restore:.2} s (peak RSS {restore_peak:.0} MiB): {:.1}x faster",
        args.runs,
        replay / restore
    );
    println!("serving peak RSS {peak_serving:.0} MiB");
    let phases = ["outside a checkpoint", "during a checkpoint"];
    ingested.report("ingest POST", phases);
    queried.report("point query", phases);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restart: {e}");
            ExitCode::FAILURE
        }
    }
}
