//! Overload: clients post as fast as they can to a one-worker server, beyond what its dataflow
//! sustains. What it shows: memory stays bounded (the workers' backlog has a bound and the
//! server answers 503 with `Retry-After` above it, taking nothing of that request), the backlog
//! drains once the load stops, and every acknowledged event is counted exactly once.
//!
//! ```text
//! cargo bench --bench overload                                   # 60 s, 16 clients, -w 1
//! cargo bench --bench overload -- --seconds 20 --clients 8 --batch 500 -w 2
//! ```
//!
//! Each request carries `--batch` purchases of one new customer, amounts 1..=batch, so the view
//! `customer_spend` tells afterwards whether a request is there whole (batch*(batch+1)/2) or not
//! at all. Run without `--bench` (as `cargo test --benches` does) it does a 2-second smoke run.

mod process;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process::{Server, metric};
use serde_json::Value;

struct Args {
    seconds: f64,
    clients: usize,
    batch: u64,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60.0,
        clients: 16,
        batch: 1_000,
        workers: 1,
    };
    let mut benching = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bench" => benching = true,
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--clients" => args.clients = value()?.parse().map_err(|e| format!("{e}"))?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("{e}"))?,
            "-w" => args.workers = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !benching {
        args.seconds = 2.0;
        args.clients = 4;
    }
    Ok(args)
}

const BASE_TS: u64 = 1_700_000_000_000;

fn request(id: u64, batch: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 1..=batch {
        body.extend(
            format!(
                "{{\"ts\":{},\"kind\":\"purchase\",\"customer\":{id},\"product\":{},\"amount_cents\":{i}}}\n",
                BASE_TS + id,
                i % 7
            )
            .into_bytes(),
        );
    }
    body
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let workers = args.workers.to_string();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "-w",
            &workers,
            "--allowed-lateness",
            "0s",
            "--idle-timeout",
            "off",
        ],
        &dir.path().join("server.log"),
    )?;
    let base = server.base.clone();
    let before_mib = server.rss_mib();
    let next_id = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let (base, next_id, stop, acked) =
            (base.clone(), next_id.clone(), stop.clone(), acked.clone());
        let (refused, failed, batch) = (refused.clone(), failed.clone(), args.batch);
        clients.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a client");
            let mut mine = Vec::new();
            // A refused request is sent again at once (nothing of it was taken): a client that
            // ignores `Retry-After`, the worst case for the server.
            let mut pending: Option<(u64, Vec<u8>)> = None;
            while !stop.load(Ordering::Relaxed) {
                let (id, body) = pending.take().unwrap_or_else(|| {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    (id, request(id, batch))
                });
                let sent = http
                    .post(format!("{base}/events"))
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send();
                match sent.map(|r| r.status().as_u16()) {
                    Ok(200) => mine.push(id),
                    Ok(503) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        pending = Some((id, body));
                    }
                    // A 503 answered before the body was read closes the connection: a client
                    // still sending sees it cut. Nothing was taken; send it again (the check at
                    // the end would find a duplicate if it had been).
                    Err(e) if e.is_request() => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        pending = Some((id, body));
                    }
                    other => {
                        eprintln!("overload: a request failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            acked.lock().expect("lock").extend(mine);
        }));
    }
    // Sample memory and the backlog while the load runs.
    let http = reqwest::blocking::Client::new();
    let mut peak_backlog = 0f64;
    let mut peak_rss = before_mib;
    while started.elapsed().as_secs_f64() < args.seconds {
        std::thread::sleep(Duration::from_millis(250));
        peak_rss = peak_rss.max(server.rss_mib());
        if let Ok(text) = http
            .get(format!("{base}/metrics"))
            .send()
            .and_then(|r| r.text())
        {
            peak_backlog =
                peak_backlog.max(metric(&text, "lambdaflow_live_backlog_events").unwrap_or(0.0));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let load_seconds = started.elapsed().as_secs_f64();
    // Drain: a declared watermark past every event answers once every worker has taken all.
    let drain = Instant::now();
    let last = next_id.load(Ordering::Relaxed);
    let declared: Value = http
        .post(format!("{base}/watermark"))
        .body(format!("{{\"ts\":{}}}", BASE_TS + last + 1))
        .timeout(Duration::from_secs(600))
        .send()
        .and_then(|r| r.json())
        .map_err(|e| format!("declaring: {e}"))?;
    let visible = declared["visible_as_of"]
        .as_u64()
        .ok_or("no visible_as_of")?;
    let answer: Value = http
        .get(format!("{base}/views/customer_spend?as_of={visible}"))
        .timeout(Duration::from_secs(600))
        .send()
        .and_then(|r| r.json())
        .map_err(|e| format!("reading: {e}"))?;
    let drain_seconds = drain.elapsed().as_secs_f64();
    peak_rss = peak_rss.max(server.peak_mib());
    let whole = (args.batch * (args.batch + 1) / 2) as i64;
    let acked = acked.lock().expect("lock").clone();
    let mut spend = std::collections::HashMap::new();
    for row in answer["rows"].as_array().ok_or("no rows")? {
        let key: u64 = row["key"]
            .as_str()
            .and_then(|k| k.parse().ok())
            .ok_or("a key")?;
        spend.insert(key, row["value"].as_i64().unwrap_or(-1));
    }
    let exactly_once =
        acked.iter().all(|id| spend.get(id) == Some(&whole)) && spend.len() == acked.len();
    let refused = refused.load(Ordering::Relaxed);
    let attempts = acked.len() as u64 + refused;
    let events = |requests: u64| (requests * args.batch) as f64 / load_seconds;
    println!(
        "| -w | clients | seconds | offered events/s | accepted events/s | offered / accepted | 503 share | peak backlog (events) | RSS before → peak | drain | every acknowledged event once |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1}% | {:.0} | {:.0} → {:.0} MiB | {:.1} s | {} ({} requests; {} cut off after a 503, sent again) |",
        args.workers,
        args.clients,
        load_seconds,
        events(attempts),
        events(acked.len() as u64),
        attempts as f64 / (acked.len().max(1)) as f64,
        100.0 * refused as f64 / attempts.max(1) as f64,
        peak_backlog,
        before_mib,
        peak_rss,
        drain_seconds,
        if exactly_once { "yes" } else { "NO" },
        acked.len(),
        failed.load(Ordering::Relaxed),
    );
    if exactly_once {
        Ok(())
    } else {
        Err("an acknowledged event is missing or counted twice".into())
    }
}
