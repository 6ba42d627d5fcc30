//! Windows over event time, corrected by late data.
//!
//! Teaches: the windowed views of the reference pipeline (`src/window.rs`) group events by
//! their own timestamp, not by when they arrive. A live event older than the watermark (5 s
//! behind the newest event) is late, yet it still lands in its own windows: it extends a
//! customer's session or joins two sessions into one (the old rows are retracted), and it
//! corrects the revenue of the five sliding windows that hold it.
//!
//! ```text
//! cargo run --release --example windows -- --history tests/data/golden/history.jsonl < tests/data/golden/live.jsonl
//! ```
//!
//! The history (JSON Lines) goes through the batch lane, stdin's lines through the speed lane.
//! When stdin ends, `{"customer_sessions": {customer: [{"start", "end", "events"}, ...]},
//! "revenue_5min_sliding": {window start ms: net cents}}` is printed on stdout, and how many
//! live events were late on stderr.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use lambdaflow::ecommerce::EcommerceWithWindows;
use lambdaflow::history::read_all;
use lambdaflow::metrics::Metrics;
use lambdaflow::prelude::*;
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(
    about = "Session and sliding windows over history and live events",
    disable_help_flag = true
)]
struct Args {
    /// History to replay through the batch lane (JSON Lines or .csv); repeatable.
    #[arg(long)]
    history: Vec<PathBuf>,
    #[command(flatten)]
    cluster: Cluster,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut engine = Engine::start(
        &args.cluster,
        Settings::default(),
        History::Files(args.history),
        EcommerceWithWindows,
    )?;

    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    let send = |event| {
        if let Err(e) = live.send(event) {
            tracing::warn!("live event not taken: {e}");
        }
    };
    let reject = |r: Reject| tracing::warn!(%r, "live line rejected");
    read_all(
        std::io::stdin().lock(),
        "stdin",
        Format::JsonLines,
        send,
        reject,
    )
    .map_err(|e| e.to_string())?;
    drop(live);

    // Final answers: every late event has been applied to the windows of its own time.
    let client = engine.client();
    let mut views = Map::new();
    for view in ["customer_sessions", "revenue_5min_sliding"] {
        let answer = client
            .query_final(Query::all(view))
            .map_err(|e| e.to_string())?;
        views.insert(view.to_string(), answer.to_json());
    }
    drop(client); // the workers finish once every client is gone
    let late = Metrics::get(&engine.metrics().late_corrected);
    if args.cluster.process == 0 {
        writeln!(std::io::stdout().lock(), "{}", Value::Object(views))
            .map_err(|e| e.to_string())?;
    }
    eprintln!("{late} live events were late and corrected their windows");
    engine.join()
}
