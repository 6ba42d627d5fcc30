//! SQL views in a Rust program: the same text DuckDB runs, maintained by the engine.
//!
//! Teaches: `lambdaflow::sql::SqlViews` as a pipeline, and reading a SQL view's rows.
//!
//! ```text
//! cargo run --release --example sql -- --sql examples/sql/reference.sql --history history.jsonl [-w N] < live.jsonl
//! ```
//!
//! The views read the table `events` (docs/REFERENCE.md). History goes through the batch lane,
//! live events (JSON Lines on stdin) through the speed lane; when stdin ends, each view's final
//! rows are printed as one JSON line `{"view": ..., "rows": [...]}` (logs go to stderr).

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use lambdaflow::ecommerce::Order;
use lambdaflow::history::read_all;
use lambdaflow::prelude::*;
use lambdaflow::sql::{SqlViews, write_answer_rows};
use serde_json::json;

#[derive(Parser)]
#[command(
    about = "SQL views over history and live events",
    disable_help_flag = true
)]
struct Args {
    /// The views: `CREATE VIEW name AS SELECT ... FROM events ...;` statements.
    #[arg(long)]
    sql: PathBuf,
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
    let text = std::fs::read_to_string(&args.sql)
        .map_err(|e| format!("cannot read {}: {e}", args.sql.display()))?;
    let views =
        SqlViews::<Order>::new(&text).map_err(|e| format!("{}: {e}", args.sql.display()))?;
    let mut engine = Engine::start(
        &args.cluster,
        Settings::default(),
        History::Files(args.history),
        views,
    )?;

    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    let sent = |event| {
        if let Err(e) = live.send(event) {
            tracing::warn!("live event not taken: {e}");
        }
    };
    let reject = |r: Reject| tracing::warn!(%r, "live line rejected");
    read_all(
        std::io::stdin().lock(),
        "stdin",
        Format::JsonLines,
        sent,
        reject,
    )
    .map_err(|e| e.to_string())?;
    drop(live);

    if args.cluster.process == 0 {
        let client = engine.client();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for info in client.catalog() {
            let answer = client
                .query_final(Query::all(&info.name))
                .map_err(|e| e.to_string())?;
            // One line per view, written row by row as the view writes its rows' text.
            let head = json!({ "view": info.name }).to_string();
            let mut line = format!("{},\"rows\":[", &head[..head.len() - 1]).into_bytes();
            let mut first = true;
            write_answer_rows(&answer, info.limit, |row| {
                if !std::mem::take(&mut first) {
                    line.push(b',');
                }
                line.extend_from_slice(row);
            });
            line.extend_from_slice(b"]}\n");
            out.write_all(&line).map_err(|e| e.to_string())?;
        }
    }
    engine.join()
}
