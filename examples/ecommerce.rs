//! E-commerce revenue: the reference pipeline, history through the batch lane and live events
//! through the speed lane, with one set of views.
//!
//! Teaches: embedding lambdaflow, the two lanes, and reading final answers.
//!
//! ```text
//! cargo run --release --example ecommerce -- --history history.jsonl [-w N] < live.jsonl
//! ```
//!
//! The history file is split between the workers; live events are read as JSON lines from
//! stdin. When stdin ends, the final reference views (`REFERENCE_VIEWS`; `examples/windows.rs`
//! shows the windowed ones) are printed as one JSON document on stdout (logs go to stderr).
//! With several processes (`-n 2 -p 0|1`), each process reads its own stdin and process 0
//! prints.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use lambdaflow::ecommerce::REFERENCE_VIEWS;
use lambdaflow::history::read_all;
use lambdaflow::prelude::*;
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(
    about = "The e-commerce reference pipeline over history and live events",
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
        Ecommerce,
    )?;

    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    let stdin = std::io::stdin().lock();
    let sent = |event| {
        if let Err(e) = live.send(event) {
            tracing::warn!("live event not taken: {e}");
        }
    };
    let reject = |r: Reject| tracing::warn!(%r, "live line rejected");
    read_all(stdin, "stdin", Format::JsonLines, sent, reject).map_err(|e| e.to_string())?;
    drop(live);

    if args.cluster.process == 0 {
        let client = engine.client();
        let mut views = Map::new();
        for view in REFERENCE_VIEWS {
            let answer = client
                .query_final(Query::all(view))
                .map_err(|e| e.to_string())?;
            views.insert(view.to_string(), answer.to_json());
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", Value::Object(views)).map_err(|e| e.to_string())?;
    }
    engine.join()
}
