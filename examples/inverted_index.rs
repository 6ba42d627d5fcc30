//! Inverted index: a view whose values are sets, kept by differences.
//!
//! Teaches: a view that is not a sum. Each word's posting list (the ids of the documents
//! containing it) is the set of `(word, doc_id)` records with a positive count; the arrangement
//! keeps it sorted, and the render function turns it into a JSON array. History is loaded into
//! memory (`History::Events`); new documents arrive on stdin through the speed lane.
//!
//! ```text
//! cargo run --example inverted_index -- --history docs.jsonl [--history more.txt] [-w 2]
//! ```
//!
//! A history file holds one document per line: JSON `{"id": 7, "text": "..."}`, or, for a `.txt`
//! file, plain text whose id is its line number (from 1, in each file). Stdin takes documents
//! as JSON lines, and queries: `?word` prints `{"word": "word", "docs": [ids], "as_of": t}`.
//! When stdin ends, a summary computed by a whole-view query is printed:
//! `{"distinct_words": n, "postings": p}`. Bad lines are skipped with a warning on stderr.
//!
//! Times are as in `word_count`: history at time 0, live lines at their ingestion time (strictly
//! increasing wall-clock milliseconds), and a source watermark declared before each query so it
//! is answered as soon as every line before it is in.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use differential_dataflow::VecCollection;
use lambdaflow::event::parse_line;
use lambdaflow::history::read_all;
use lambdaflow::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;

/// A document, at the time it was added.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    time: Time,
    id: u64,
    text: String,
}

impl Event for Doc {
    fn time(&self) -> Time {
        self.time
    }

    /// A JSON line `{"id": .., "text": ..}`, at time 0 (live documents are re-stamped).
    fn parse(line: &[u8], _format: Format) -> Result<Self, String> {
        let doc: Doc = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        Ok(Doc { time: 0, ..doc })
    }
}

/// The words of a text: its runs of alphanumeric characters, lowercased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

struct InvertedIndex;

impl Pipeline for InvertedIndex {
    type Event = Doc;

    fn build<'s>(&self, docs: VecCollection<'s, Time, Doc>, views: &mut Views<'s>) {
        let postings = docs.flat_map(|doc| {
            let id = doc.id;
            words(&doc.text).map(|w| (w, id)).collect::<Vec<_>>()
        });
        // A word's values are its doc ids (sorted) with how often the word occurs in each.
        views.register(
            "postings",
            "the ids of the documents containing each word",
            postings,
            |_, docs: &[(u64, isize)]| {
                let ids: Vec<u64> = docs.iter().filter(|(_, n)| *n > 0).map(|d| d.0).collect();
                (!ids.is_empty()).then(|| json!(ids))
            },
        );
    }
}

#[derive(Parser)]
#[command(about = "An inverted index over documents", disable_help_flag = true)]
struct Args {
    /// Documents to index first: JSON lines, or a .txt file (id = line number); repeatable.
    #[arg(long)]
    history: Vec<PathBuf>,
    #[command(flatten)]
    cluster: Cluster,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Reads every history file into memory.
fn load(paths: &[PathBuf]) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    for path in paths {
        let source = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("cannot open {source}: {e}"))?;
        if Format::from_path(path) == Format::Text {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let (id, text) = (i as u64 + 1, line.map_err(|e| format!("{source}: {e}"))?);
                docs.push(Doc { time: 0, id, text });
            }
        } else {
            let reject = |r: Reject| warn!(reject = %r, "history line rejected");
            read_all(file, &source, Format::JsonLines, |d| docs.push(d), reject)
                .map_err(|e| format!("cannot read {source}: {e}"))?;
        }
    }
    Ok(docs)
}

fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let history = History::Events(Arc::new(load(&args.history)?));
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        ..Settings::default()
    };
    let mut engine = Engine::start(&args.cluster, settings, history, InvertedIndex)?;
    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    let client = engine.client();
    let mut out = std::io::stdout();

    let mut last: Time = 0;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        let time = now.map_or(0, |d| d.as_millis() as Time).max(last + 1);
        last = time;
        if line.trim().is_empty() {
            continue;
        }
        let Some(asked) = line.strip_prefix('?') else {
            match parse_line::<Doc>(line.as_bytes(), Format::JsonLines) {
                Ok(doc) => {
                    live.send(Doc { time, ..doc }).map_err(|e| e.to_string())?;
                }
                Err(e) => warn!("stdin:{}: {e}", i + 1),
            }
            continue;
        };
        let Some(word) = words(asked).next() else {
            warn!("stdin:{}: a query is ?word", i + 1);
            continue;
        };
        live.watermark(time).map_err(|e| e.to_string())?;
        let answer = client.query(Query::key("postings", &word), Some(time));
        let answer = answer.map_err(|e| e.to_string())?;
        let docs = Some(answer.to_json())
            .filter(|d| !d.is_null())
            .unwrap_or(json!([]));
        let printed = json!({"word": word, "docs": docs, "as_of": answer.as_of});
        writeln!(out, "{printed}").map_err(|e| e.to_string())?;
    }
    drop(live);

    if args.cluster.process == 0 {
        let answer = client.query_final(Query::all("postings"));
        let AnswerValue::Rows(rows) = answer.map_err(|e| e.to_string())?.value else {
            return Err("postings answered without rows".into());
        };
        let rows = rows.render();
        let postings: usize = rows
            .iter()
            .filter_map(|(_, v)| v.as_array().map(Vec::len))
            .sum();
        let summary = json!({"distinct_words": rows.len(), "postings": postings});
        writeln!(out, "{summary}").map_err(|e| e.to_string())?;
    }
    drop(client);
    engine.join()
}
