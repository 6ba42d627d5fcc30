//! NEXMark q0-q8 over a file or the in-process generator, on any number of workers.
//!
//! Teaches: a pipeline of several event kinds (`lambdaflow::nexmark::Queries`), an in-process
//! source (`History::Generated`), and reading a large view a page at a time.
//!
//! ```text
//! cargo run --release -- gen --nexmark --events 1000000 --out nexmark.jsonl
//! cargo run --release --example nexmark -- --query q5 --input nexmark.jsonl [-w N] [-n -p -h]
//! cargo run --release --example nexmark -- --query q4 --query q7 --generate 10000000 -w 2
//! ```
//!
//! Once the input has been replayed, the final rows of the query are printed on stdout as JSON
//! Lines, objects with NEXMARK.md's column names (in no particular order). With several
//! `--query`, each line is `{"query": "q4", "row": {...}}`. How many events were replayed, in
//! how long, and the rate per worker go to stderr. With several processes, process 0 prints.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use lambdaflow::history::read_all;
use lambdaflow::nexmark::generate::{self, NexmarkConfig};
use lambdaflow::nexmark::{Queries, Query};
use lambdaflow::prelude::*;

#[derive(Parser)]
#[command(
    about = "NEXMark queries over a file or the generator",
    disable_help_flag = true
)]
struct Args {
    /// The query to answer; repeatable.
    #[arg(long, value_enum, required = true)]
    query: Vec<Query>,
    /// Events to replay (the suite's JSON Lines, `lambdaflow gen --nexmark`); repeatable.
    #[arg(long, conflicts_with = "generate")]
    input: Vec<PathBuf>,
    /// Generate this many events in-process instead of reading a file.
    #[arg(long)]
    generate: Option<u64>,
    /// The generator's seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The generator's events per second of event time.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// The generator's out-of-order group size.
    #[arg(long, default_value_t = 1)]
    out_of_order: u64,
    /// Events to send through the speed lane after the history, in file order: those older
    /// than the watermark are late, and corrected.
    #[arg(long)]
    live: Option<PathBuf>,
    /// How far (ms) the watermark stays behind the newest live event.
    #[arg(long, default_value_t = 5_000)]
    allowed_lateness: u64,
    /// Beyond this far (ms) behind the watermark a late event is dropped, and the windows of
    /// q7 and q8 give their state back once no event can reach them.
    #[arg(long)]
    max_lateness: Option<u64>,
    #[command(flatten)]
    cluster: Cluster,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Keys read per page of a view.
const PAGE: usize = 10_000;

fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let history = match args.generate {
        Some(events) => History::Generated(generate::source(&NexmarkConfig {
            seed: args.seed,
            events,
            rate: args.rate,
            out_of_order: args.out_of_order,
            ..NexmarkConfig::default()
        })?),
        None => History::Files(args.input),
    };
    let started = Instant::now();
    let settings = Settings {
        allowed_lateness: Duration::from_millis(args.allowed_lateness),
        max_lateness: args.max_lateness.map(Duration::from_millis),
        ..Settings::default()
    };
    let mut engine = Engine::start(&args.cluster, settings, history, Queries::only(&args.query))?;
    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    if let Some(path) = &args.live {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let send = |event| {
            if let Err(e) = live.send(event) {
                tracing::warn!("live event not taken: {e}");
            }
        };
        let reject = |r: Reject| tracing::warn!(%r, "live line rejected");
        read_all(
            BufReader::new(file),
            &path.display().to_string(),
            Format::JsonLines,
            send,
            reject,
        )
        .map_err(|e| e.to_string())?;
    }
    drop(live);
    let client = engine.client();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let several = args.query.len() > 1;
    for (i, query) in Queries::only(&args.query).queries().iter().enumerate() {
        let name = query.name();
        let (mut after, mut first) = (None, true);
        loop {
            let answer = client
                .query_final(lambdaflow::prelude::Query::page(name, after, PAGE))
                .map_err(|e| e.to_string())?;
            if i == 0 && std::mem::take(&mut first) {
                let seconds = started.elapsed().as_secs_f64();
                let events = engine.metrics().history_events.load(Relaxed);
                let workers = args.cluster.workers;
                let metrics = engine.metrics();
                let events = events
                    + metrics.live_events.load(Relaxed)
                    + metrics.late_corrected.load(Relaxed);
                eprintln!(
                    "process {} took {events} events in {seconds:.2} s: {:.0} events/s, {:.0} per worker; late corrected {}",
                    args.cluster.process,
                    events as f64 / seconds,
                    events as f64 / seconds / workers as f64,
                    metrics.late_corrected.load(Relaxed),
                );
            }
            if args.cluster.process == 0
                && let AnswerValue::Rows(rows) = &answer.value
            {
                let mut failed = Ok(());
                rows.write_rows(|row| {
                    let line = if several {
                        let row = String::from_utf8_lossy(row);
                        format!("{{\"query\":\"{name}\",\"row\":{row}}}\n")
                    } else {
                        format!("{}\n", String::from_utf8_lossy(row))
                    };
                    if failed.is_ok() {
                        failed = out.write_all(line.as_bytes());
                    }
                });
                failed.map_err(|e| e.to_string())?;
            }
            match answer.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    drop((out, client));
    engine.join()
}
