//! Event time under load: watermark lag, how soon a one-minute tumbling window is final, and
//! whether memory stays flat over a long run.
//!
//! ```text
//! cargo bench --bench event_time -- --rate 100000 --minutes 30 -w 2
//! ```
//!
//! A producer thread sends live events at `--rate` events/s through the speed lane, with event
//! times on the wall clock and `--late` (default 2%) of them late by up to 10 s. The pipeline is
//! one view, `events_per_minute` (the reference view: a 1-minute tumbling window, its rows
//! declared final once the watermark passes the window's end). The bench subscribes to its
//! changelog and measures, for every window, the
//! time from the wall clock passing the window's end to its final row arriving (finalization
//! latency). Every 10 s it samples the watermark lag (newest event time minus the global
//! watermark) and the resident memory. Figures are printed; nothing is asserted.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only does a quick smoke run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use differential_dataflow::VecCollection;
use lambdaflow::ecommerce::{Kind, MINUTE_MS, Order};
use lambdaflow::metrics::Metrics;
use lambdaflow::prelude::*;
use rand::{RngExt, SeedableRng};
use tokio::sync::broadcast::error::TryRecvError;

/// The 1-minute tumbling window of the reference pipeline, alone, with its finality.
struct Minutes;

impl Pipeline for Minutes {
    type Event = Order;

    fn build<'s>(&self, events: VecCollection<'s, Time, Order>, views: &mut Views<'s>) {
        let minutes = views.register(
            "events_per_minute",
            "events of each kind per minute",
            events.explode(|o| {
                let mut counts = [0; 3];
                counts[o.kind as usize] = 1;
                Some(((o.ts - o.ts % MINUTE_MS, ()), Sums(counts)))
            }),
            |_, values| values.first().map(|(_, s)| serde_json::json!(s.0)),
        );
        minutes.final_after(|start| start + MINUTE_MS);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let smoke = !args.iter().any(|a| a == "--bench");
    let rate = flag("--rate", if smoke { 2_000.0 } else { 100_000.0 }) as u64;
    let minutes = flag("--minutes", if smoke { 0.05 } else { 30.0 });
    let late = flag("--late", 0.02);
    let workers = flag("-w", 2.0) as usize;
    let tick = flag("--tick-ms", 10.0) as u64;
    let lateness = flag("--lateness-ms", 1_000.0) as u64;

    let settings = Settings {
        changelog: !args.iter().any(|a| a == "--no-changelog"),
        tick: Duration::from_millis(tick),
        allowed_lateness: Duration::from_millis(lateness),
        ..Settings::default()
    };
    let mut engine = match Engine::start(
        &Cluster::threads(workers),
        settings,
        History::Events(Arc::new(Vec::new())),
        Minutes,
    ) {
        Ok(engine) => engine,
        Err(e) => return eprintln!("engine: {e}"),
    };
    let mut changes = match engine.changelog().subscribe("events_per_minute") {
        Some(rx) => rx,
        None => return eprintln!("no changelog"),
    };
    let metrics = engine.metrics();
    let Some(live) = engine.live() else { return };
    engine.end_live();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let ts = now_ms();
                let batch = due.min(sent + 10_000) - sent;
                for _ in 0..batch {
                    let behind = if rng.random::<f64>() < late {
                        rng.random_range(1..10_000)
                    } else {
                        0
                    };
                    let kind = match rng.random_range(0..100) {
                        0..20 => Kind::Purchase,
                        20..23 => Kind::Refund,
                        _ => Kind::View,
                    };
                    let order = Order {
                        ts: ts.saturating_sub(behind),
                        kind,
                        customer: rng.random_range(0..1_000_000),
                        product: rng.random_range(0..100_000),
                        amount_cents: rng.random_range(1..10_000),
                        amount_missing: false,
                    };
                    if live.send(order).is_err() {
                        return sent;
                    }
                }
                sent += batch;
            }
            sent
        })
    };

    let run = Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let mut finalization = Vec::new();
    let mut lags = Vec::new();
    let mut memory = Vec::new();
    let mut next_sample = Instant::now();
    let mut corrections = 0u64;
    let mut seen = std::collections::HashSet::new();
    while started.elapsed() < run {
        loop {
            match changes.try_recv() {
                Ok(batch) => {
                    let arrived = now_ms();
                    for change in batch.changes.iter().filter(|c| c.diff > 0) {
                        let Ok(start) = change.key.parse::<u64>() else {
                            continue;
                        };
                        if seen.insert(start) {
                            if std::env::var_os("LF_DEBUG").is_some() {
                                eprintln!(
                                    "window {start} first emitted at time {} (wall {arrived}): {}",
                                    change.time, change.value
                                );
                            }
                            finalization.push(arrived.saturating_sub(start + MINUTE_MS) as f64);
                        } else {
                            corrections += 1;
                        }
                    }
                }
                Err(TryRecvError::Lagged(n)) => eprintln!("the bench fell {n} batches behind"),
                Err(_) => break,
            }
        }
        if Instant::now() >= next_sample {
            let frontier = Metrics::get(&metrics.frontier);
            let newest = Metrics::get(&metrics.newest_event);
            lags.push(newest.saturating_sub(frontier) as f64);
            memory.push((started.elapsed().as_secs(), rss_mib()));
            next_sample += Duration::from_secs(if smoke { 1 } else { 10 });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().unwrap_or(0);
    let elapsed = started.elapsed().as_secs_f64();
    finalization.sort_by(f64::total_cmp);
    lags.sort_by(f64::total_cmp);
    println!(
        "rate: {:.0} events/s sent over {elapsed:.0} s with {workers} workers, tick {tick} ms, allowed lateness {lateness} ms, {:.0}% late",
        sent as f64 / elapsed,
        late * 100.0
    );
    println!(
        "late events corrected: {}, dropped: {}",
        Metrics::get(&metrics.late_corrected),
        Metrics::get(&metrics.late_dropped)
    );
    println!(
        "watermark lag (newest event - watermark), ms: p50 {:.0}, p99 {:.0}, max {:.0}",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "1-minute windows finalized: {}; latency after the window's end, ms: p50 {:.0}, p99 {:.0}; later corrections: {corrections}",
        finalization.len(),
        percentile(&finalization, 0.5),
        percentile(&finalization, 0.99)
    );
    let mib: Vec<String> = memory.iter().map(|(s, m)| format!("{s}s:{m:.0}")).collect();
    println!("resident memory (MiB) over time: {}", mib.join(" "));
    drop(changes);
    let _ = engine.join();
}
