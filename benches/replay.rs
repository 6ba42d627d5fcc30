//! Replay throughput: lambdaflow's batch lane and speed lane against a hand-written plain
//! differential-dataflow program, over the same in-memory synthetic events and the same five
//! reference views.
//!
//! ```text
//! cargo bench --bench replay -- --events 10000000 -w 1
//! cargo bench --bench replay -- --events 10000000 -w 2 --runs 5 --only batch,plain
//! cargo bench --bench replay -- --write-jsonl /tmp/hist10m.jsonl --events 10000000
//! ```
//!
//! The events are generated once (seeded), then every variant runs `--runs` times, the variants
//! interleaved so that a noisy machine hurts them alike. For each it prints the median time to
//! the final answer, events/s (total and per worker), and the peak resident memory of the
//! process during its runs (which includes the events held in memory, printed as the baseline).
//! The plain program's `revenue_by_day` and `top_products` must equal lambdaflow's (batch and
//! speed lane), or the bench exits with an error. Timings are reported, never asserted.
//!
//! Variants (`--only`, comma-separated; default `batch,speed,plain`): `batch` and `speed` run
//! the engine's `Ecommerce` pipeline, which must register exactly the five reference views (the
//! plain program's work; checked, or the bench exits with an error); `plain` is the hand-written
//! program; `batch-windows` and `speed-windows` run `EcommerceWithWindows` (the five views and
//! the windowed ones), for what the windows cost.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only does a quick smoke run.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambdaflow::ecommerce::Order;
use lambdaflow::ecommerce::generate::{GenConfig, Generator, write_jsonl};

use common::{
    Results, Run, ViewSet, check_reference, lambdaflow_batch, lambdaflow_speed, median, plain_dd,
    view_names,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The batch lane, the five reference views.
    Batch,
    /// The speed lane, the five reference views.
    Speed,
    /// The batch lane, the five views and the windowed ones.
    BatchWindows,
    /// The speed lane, the five views and the windowed ones.
    SpeedWindows,
    /// The hand-written differential program.
    Plain,
}

impl Variant {
    fn parse(text: &str) -> Result<Variant, String> {
        match text {
            "batch" => Ok(Variant::Batch),
            "speed" => Ok(Variant::Speed),
            "batch-windows" => Ok(Variant::BatchWindows),
            "speed-windows" => Ok(Variant::SpeedWindows),
            "plain" => Ok(Variant::Plain),
            other => Err(format!(
                "unknown variant {other:?} (batch, speed, plain, batch-windows, speed-windows)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Batch => "lambdaflow batch lane",
            Variant::Speed => "lambdaflow speed lane",
            Variant::BatchWindows => "batch lane + windows",
            Variant::SpeedWindows => "speed lane + windows",
            Variant::Plain => "plain differential",
        }
    }

    fn run(self, events: &Arc<Vec<Order>>, workers: usize, check: bool) -> Result<Run, String> {
        match self {
            Variant::Batch => lambdaflow_batch(events, workers, ViewSet::Reference, check),
            Variant::Speed => lambdaflow_speed(events, workers, ViewSet::Reference, check),
            Variant::BatchWindows => lambdaflow_batch(events, workers, ViewSet::Windows, check),
            Variant::SpeedWindows => lambdaflow_speed(events, workers, ViewSet::Windows, check),
            Variant::Plain => plain_dd(events, workers, check),
        }
    }
}

struct Args {
    events: u64,
    workers: usize,
    runs: usize,
    seed: u64,
    events_per_second: u64,
    only: Vec<Variant>,
    write_jsonl: Option<PathBuf>,
}

const USAGE: &str = "usage: replay [--events N] [-w N] [--runs N] [--seed N] [--eps N] \
                     [--only batch,speed,plain,batch-windows,speed-windows] [--write-jsonl PATH]";

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let text = value.ok_or_else(|| format!("{flag} needs a value"))?;
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))
}

fn parse_args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only a smoke run.
    let bench = raw.iter().any(|a| a == "--bench");
    let mut args = Args {
        events: if bench { 1_000_000 } else { 20_000 },
        workers: 1,
        runs: if bench { 5 } else { 1 },
        seed: 42,
        events_per_second: GenConfig::default().events_per_second,
        only: vec![Variant::Batch, Variant::Speed, Variant::Plain],
        write_jsonl: None,
    };
    let mut iter = raw.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--bench" => {}
            "--events" | "-n" => args.events = number(&arg, iter.next())?,
            "-w" | "--workers" => args.workers = number(&arg, iter.next())?,
            "--runs" => args.runs = number(&arg, iter.next())?,
            "--seed" => args.seed = number(&arg, iter.next())?,
            "--eps" => args.events_per_second = number(&arg, iter.next())?,
            "--write-jsonl" => {
                args.write_jsonl = Some(iter.next().ok_or("--write-jsonl needs a path")?.into())
            }
            "--only" => {
                let list = iter.next().ok_or("--only needs a list")?;
                args.only = list
                    .split(',')
                    .map(|v| Variant::parse(v.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            // Filters and flags cargo or libtest may pass.
            other if !other.starts_with('-') => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.workers == 0 || args.runs == 0 {
        return Err("need at least one worker and one run".into());
    }
    Ok(args)
}

/// The peak resident memory of this process since the last reset, in MiB (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak resident memory to the current one (Linux only).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let config = GenConfig {
        seed: args.seed,
        events: args.events,
        events_per_second: args.events_per_second,
        ..GenConfig::default()
    };

    if let Some(path) = &args.write_jsonl {
        let started = Instant::now();
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = write_jsonl(Generator::new(config)?, file)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "wrote {} events ({:.1} MiB) to {} in {:.2} s",
            args.events,
            bytes as f64 / (1 << 20) as f64,
            path.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    let started = Instant::now();
    let events: Arc<Vec<Order>> = Arc::new(Generator::new(config)?.collect());
    println!(
        "generated {} events (seed {}) in {:.2} s; {} worker(s), {} run(s) each",
        events.len(),
        args.seed,
        started.elapsed().as_secs_f64(),
        args.workers,
        args.runs
    );
    check_reference()?;
    if args
        .only
        .iter()
        .any(|v| matches!(v, Variant::BatchWindows | Variant::SpeedWindows))
    {
        println!(
            "windows variants compute {} views",
            view_names(ViewSet::Windows)?.len()
        );
    }
    let baseline = peak_rss_mib();
    let can_reset = reset_peak_rss();

    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); args.only.len()];
    let mut peaks: Vec<Option<f64>> = vec![None; args.only.len()];
    let mut results: Vec<Option<Results>> = vec![None; args.only.len()];
    for round in 0..args.runs {
        for (i, variant) in args.only.iter().enumerate() {
            if can_reset {
                reset_peak_rss();
            }
            let run = variant.run(&events, args.workers, round == 0)?;
            if can_reset {
                peaks[i] = match (peaks[i], peak_rss_mib()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            println!(
                "  run {}: {:<22} {:>8.3} s",
                round + 1,
                variant.name(),
                run.elapsed.as_secs_f64()
            );
            times[i].push(run.elapsed);
            if let Some(r) = run.results {
                results[i] = Some(r);
            }
        }
    }

    // The same answers, or the comparison is not of the same work.
    let mut reference: Option<(Variant, &Results)> = None;
    for (variant, result) in args.only.iter().zip(&results) {
        let Some(result) = result else { continue };
        match reference {
            None => reference = Some((*variant, result)),
            Some((first, expected)) if expected != result => {
                return Err(format!(
                    "{} and {} disagree:\n  {:?}\n  {:?}",
                    first.name(),
                    variant.name(),
                    expected,
                    result
                ));
            }
            Some(_) => {}
        }
    }
    let checked = results.iter().filter(|r| r.is_some()).count();
    if let Some((_, r)) = reference {
        println!(
            "answers {} ({} days of revenue, top product {})",
            if checked > 1 {
                "agree across variants"
            } else {
                "not compared (one variant)"
            },
            r.revenue_by_day.len(),
            r.top_products
                .first()
                .map_or("none".into(), |v| v.to_string())
        );
    }

    let n = events.len() as f64;
    let w = args.workers as f64;
    println!(
        "\n{:<22} {:>9} {:>9} {:>9} {:>13} {:>13} {:>10}",
        "variant", "median s", "min s", "max s", "events/s", "ev/s/worker", "peak MiB"
    );
    for ((variant, t), peak) in args.only.iter().zip(&times).zip(&peaks) {
        let med = median(t).as_secs_f64();
        let min = t.iter().min().copied().unwrap_or_default().as_secs_f64();
        let max = t.iter().max().copied().unwrap_or_default().as_secs_f64();
        println!(
            "{:<22} {:>9.3} {:>9.3} {:>9.3} {:>13.0} {:>13.0} {:>10}",
            variant.name(),
            med,
            min,
            max,
            n / med,
            n / med / w,
            peak.map_or("n/a".into(), |p| format!("{p:.0}"))
        );
    }
    if let Some(b) = baseline {
        println!(
            "(peak memory: resident peak of the process during a variant's runs, including the \
             {b:.0} MiB it held before them and what earlier runs left allocated; for one \
             variant alone run it with --only under /usr/bin/time -v)"
        );
    }
    let median_of = |v: Variant| {
        args.only
            .iter()
            .position(|x| *x == v)
            .map(|i| median(&times[i]).as_secs_f64())
    };
    if let Some(plain) = median_of(Variant::Plain) {
        for v in [
            Variant::Batch,
            Variant::Speed,
            Variant::BatchWindows,
            Variant::SpeedWindows,
        ] {
            if let Some(t) = median_of(v) {
                println!("ratio {} / plain (time): {:.2}", v.name(), t / plain);
            }
        }
    }
    Ok(())
}
