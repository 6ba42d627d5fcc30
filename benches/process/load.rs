//! Load for the end-to-end benchmarks: live ingest and point queries, each on a fixed
//! schedule, each request's latency recorded in the phase a benchmark is in (0 or 1; any other
//! phase is not recorded), and the import of a history file.
//!
//! A latency is measured from when the schedule meant the request to be sent, not from when
//! it was sent: a server that stalls for a second delays every request the schedule meant for
//! that second, and the figures count all of them, not only the one that was waiting
//! ("coordinated omission", as wrk2 and HdrHistogram measure).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use lambdaflow::ecommerce::generate::{GenConfig, Generator, push_json_line};

/// Latencies (ms) of one kind of request, in phase 0 and in phase 1.
#[derive(Default)]
pub struct Phases {
    first: Vec<f64>,
    second: Vec<f64>,
}

impl Phases {
    fn record(&mut self, phase: &AtomicU8, ms: f64) {
        match phase.load(Ordering::Relaxed) {
            0 => self.first.push(ms),
            1 => self.second.push(ms),
            _ => {}
        }
    }

    /// Prints the count, p50 and p99 of each phase, named by `names`.
    pub fn report(&mut self, what: &str, names: [&str; 2]) {
        for (name, values) in names.into_iter().zip([&mut self.first, &mut self.second]) {
            values.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{what:>12} {name}: n={:<7} p50={:.2} ms p99={:.2} ms",
                values.len(),
                percentile(values, 0.5),
                percentile(values, 0.99)
            );
        }
    }
}

/// The `p` quantile of sorted figures (NaN if none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Posts `rate` generated events/s to `base`'s `/events` (one POST every 20 ms) until `stop`.
pub fn ingest(base: String, rate: u64, phase: Arc<AtomicU8>, stop: Arc<AtomicBool>) -> Phases {
    let http = reqwest::blocking::Client::new();
    let config = GenConfig {
        seed: 99,
        events: u64::MAX / 2_000_000,
        start_ts: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        events_per_second: rate,
        ..GenConfig::default()
    };
    let mut events = Generator::new(config).expect("a generator");
    let per_batch = (rate / 50).max(1) as usize;
    let (mut body, mut phases, mut next) = (Vec::new(), Phases::default(), Instant::now());
    while !stop.load(Ordering::Relaxed) {
        body.clear();
        for order in events.by_ref().take(per_batch) {
            push_json_line(&mut body, &order);
        }
        let meant = next;
        let ok = http
            .post(format!("{base}/events"))
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ok {
            phases.record(&phase, meant.elapsed().as_secs_f64() * 1e3);
        }
        next += Duration::from_millis(20);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    phases
}

/// Asks `base` for `GET /views/product_stats/{id}` every 3 ms until `stop`.
pub fn query(base: String, phase: Arc<AtomicU8>, stop: Arc<AtomicBool>) -> Phases {
    let http = reqwest::blocking::Client::new();
    let (mut phases, mut product, mut next) = (Phases::default(), 0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        product = (product * 7 + 13) % 1000;
        let meant = next;
        let ok = http
            .get(format!("{base}/views/product_stats/{product}"))
            .send()
            .is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 404);
        if ok {
            phases.record(&phase, meant.elapsed().as_secs_f64() * 1e3);
        }
        next += Duration::from_millis(3);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    phases
}

/// `lambdaflow import --data-dir DATA HISTORY`.
pub fn import(data: &Path, history: &Path) -> Result<(), String> {
    let status = Command::new(super::lambdaflow())
        .arg("import")
        .arg("--data-dir")
        .arg(data)
        .arg(history)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    status.success().then_some(()).ok_or("import failed".into())
}
