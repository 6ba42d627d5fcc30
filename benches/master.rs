//! Master dataset append throughput: batches of 1000 events appended durably from 1, 4 and 16
//! threads at once, to show group commit at work (fsyncs shared by concurrent appends).
//!
//! ```text
//! cargo bench --bench master
//! cargo bench --bench master -- --seconds 5 --dir /var/tmp
//! ```
//!
//! For each thread count it prints events/s, appends/s, fsyncs/s and appends per fsync, and
//! then the replay rate of what was written. The data directory is a fresh temporary directory
//! (under `--dir` if given: put it on the disk to measure). Timings are reported, never
//! asserted. Run without `--bench` (as `cargo test --benches` does) it only does a quick smoke
//! run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lambdaflow::history::Share;
use lambdaflow::master::{MasterDataset, MasterOptions, read_share};
use lambdaflow::metrics::Metrics;
use serde::{Deserialize, Serialize};

/// An order-like event, about the size of the reference pipeline's.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    time: u64,
    customer: u32,
    product: u32,
    quantity: u16,
    cents: u64,
    country: String,
}

const BATCH: usize = 1000;

fn batch(thread: usize, n: u64) -> Vec<Order> {
    (0..BATCH as u64)
        .map(|i| {
            let id = ((thread as u64) << 40) | (n * BATCH as u64 + i);
            Order {
                id,
                time: 1_700_000_000_000 + id % 86_400_000,
                customer: (id % 100_003) as u32,
                product: (id % 5_003) as u32,
                quantity: (id % 7) as u16 + 1,
                cents: 199 + id % 10_000,
                country: ["DE", "FR", "US", "JP", "BR"][(id % 5) as usize].to_string(),
            }
        })
        .collect()
}

struct Args {
    seconds: f64,
    dir: Option<PathBuf>,
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 3.0,
        dir: None,
        smoke: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => args.smoke = false,
            "--seconds" => {
                let value = it.next().ok_or("--seconds needs a value")?;
                args.seconds = value
                    .parse()
                    .map_err(|e| format!("--seconds {value}: {e}"))?;
            }
            "--dir" => args.dir = Some(it.next().ok_or("--dir needs a value")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.smoke {
        args.seconds = 0.05;
    }
    Ok(args)
}

fn run(threads: usize, args: &Args) -> Result<(), String> {
    let tmp = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .map_err(|e| format!("temporary directory: {e}"))?;
    let (master, _) = MasterDataset::<Order>::open(tmp.path(), MasterOptions::default())
        .map_err(|e| e.to_string())?;
    let master = Arc::new(master);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let master = Arc::clone(&master);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let events = batch(t, n);
                    master.append(&events).map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok::<u64, String>(n)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .join()
            .map_err(|_| "an appending thread panicked")??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let counters = master.counters();
    let events = Metrics::get(&counters.records) as f64;
    let appends = Metrics::get(&counters.appends) as f64;
    let fsyncs = Metrics::get(&counters.fsyncs) as f64;
    let bytes = Metrics::get(&counters.bytes) as f64;
    println!(
        "{threads:>2} threads: {:>10.0} events/s {:>7.1} MB/s {:>7.0} appends/s {:>7.0} fsyncs/s {:>5.2} appends/fsync",
        events / elapsed,
        bytes / elapsed / 1e6,
        appends / elapsed,
        fsyncs / elapsed,
        appends / fsyncs.max(1.0),
    );

    let start = Instant::now();
    let mut read = 0u64;
    let stats =
        read_share(tmp.path(), Share::WHOLE, |_: Order| read += 1).map_err(|e| e.to_string())?;
    let elapsed = start.elapsed().as_secs_f64();
    if stats.records as f64 != events {
        return Err(format!("replayed {} events of {events}", stats.records));
    }
    println!(
        "            replay (1 share): {:>10.0} events/s {:>7.1} MB/s",
        read as f64 / elapsed,
        stats.bytes as f64 / elapsed / 1e6
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "master dataset appends of {BATCH}-event batches, {} s per thread count{}",
        args.seconds,
        if args.smoke { " (smoke run)" } else { "" }
    );
    for threads in [1, 4, 16] {
        if let Err(e) = run(threads, &args) {
            eprintln!("{threads} threads: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
