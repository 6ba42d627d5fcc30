//! Whole-view reads that scale: a view of 1M rows (`customer_spend` over one purchase per
//! customer) read as a first page, as a JSON Lines stream and as one JSON object, with the
//! server's extra memory during the read.
//!
//! ```text
//! cargo bench --bench large_view                      # 1M rows, -w 2
//! cargo bench --bench large_view -- --rows 200000 -w 1
//! ```
//!
//! Run without `--bench` (as `cargo test --benches` does) it does a 20 000-row smoke run.

mod process;

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use process::{Server, median};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("large_view: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `read` while sampling the server's memory; returns its result, seconds and the peak
/// extra resident memory (MiB) over the memory before.
fn measured<T>(
    server: &Server,
    read: impl FnOnce() -> Result<T, String>,
) -> Result<(T, f64, f64), String> {
    let before = server.rss_mib();
    let pid = server.child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0f64;
            while !done.load(Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                    })
                    .unwrap_or(0.0);
                peak = peak.max(rss / 1024.0);
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let started = Instant::now();
    let result = read();
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(before);
    Ok((result?, seconds, (peak - before).max(0.0)))
}

fn run() -> Result<(), String> {
    let mut rows: u64 = 1_000_000;
    let mut workers = "2".to_string();
    let mut benching = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bench" => benching = true,
            "--rows" => rows = it.next().and_then(|v| v.parse().ok()).ok_or("--rows N")?,
            "-w" => workers = it.next().ok_or("-w N")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !benching {
        rows = 20_000;
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("history.jsonl");
    {
        let mut out = BufWriter::new(std::fs::File::create(&file).map_err(|e| e.to_string())?);
        for c in 0..rows {
            writeln!(
                out,
                "{{\"ts\":{},\"kind\":\"purchase\",\"customer\":{c},\"product\":{},\"amount_cents\":{}}}",
                1_767_225_600_000 + c,
                c % 1000,
                1 + c % 977
            )
            .map_err(|e| e.to_string())?;
        }
    }
    let data = dir.path().join("data");
    let imported = std::process::Command::new(process::lambdaflow())
        .arg("import")
        .arg("--data-dir")
        .arg(&data)
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    if !imported.status.success() {
        return Err(String::from_utf8_lossy(&imported.stderr).into_owned());
    }
    let server = Server::start(&data, &["-w", &workers], &dir.path().join("server.log"))?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    // Every row complete: declare past the last event.
    http.post(format!("{}/watermark", server.base))
        .body(format!("{{\"ts\":{}}}", 1_767_225_600_000 + rows + 1))
        .send()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/views/customer_spend", server.base);
    let (mut page, mut page_mib) = (Vec::new(), 0f64);
    for _ in 0..7 {
        let (n, seconds, mib) = measured(&server, || {
            let answer: serde_json::Value = http
                .get(format!("{url}?limit=1000"))
                .send()
                .and_then(|r| r.json())
                .map_err(|e| e.to_string())?;
            Ok(answer["rows"].as_array().map_or(0, Vec::len))
        })?;
        if n != 1000.min(rows as usize) {
            return Err(format!("a page of {n} rows"));
        }
        page.push(seconds * 1000.0);
        page_mib = page_mib.max(mib);
    }
    let (mut lines, mut lines_mib) = (Vec::new(), 0f64);
    let (mut whole, mut whole_mib) = (Vec::new(), 0f64);
    for _ in 0..3 {
        let (n, seconds, mib) = measured(&server, || {
            let text = http
                .get(&url)
                .header("accept", "application/x-ndjson")
                .send()
                .and_then(|r| r.text())
                .map_err(|e| e.to_string())?;
            Ok(text.lines().count() as u64)
        })?;
        if n != rows {
            return Err(format!("the stream had {n} rows, not {rows}"));
        }
        lines.push(seconds);
        lines_mib = lines_mib.max(mib);
        let (bytes, seconds, mib) = measured(&server, || {
            http.get(&url)
                .send()
                .and_then(|r| r.bytes())
                .map_err(|e| e.to_string())
        })?;
        // Checked after the clock stopped: parsing 1M rows is the client's cost, not the server's.
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let n = answer["rows"].as_array().map_or(0, Vec::len) as u64;
        if n != rows {
            return Err(format!("the JSON answer had {n} rows, not {rows}"));
        }
        whole.push(seconds);
        whole_mib = whole_mib.max(mib);
    }
    println!(
        "| rows | -w | first 1000-row page (median of 7) | JSON Lines stream (median of 3) | one JSON object (median of 3) | extra server RSS during the read: page / stream / object |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {rows} | {workers} | {:.1} ms | {:.2} s | {:.2} s | {:.0} / {:.0} / {:.0} MiB |",
        median(&mut page),
        median(&mut lines),
        median(&mut whole),
        page_mib,
        lines_mib,
        whole_mib
    );
    Ok(())
}
