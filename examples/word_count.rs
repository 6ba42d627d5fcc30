//! Word count: the classic batch job, made continuous.
//!
//! Teaches: one view fed by both lanes, and reading it consistently "as of" a time. Text files
//! are counted through the batch lane, lines typed on stdin through the speed lane, into the
//! same `word_count` view; a query typed on stdin sees every line typed before it.
//!
//! ```text
//! cargo run --example word_count -- --history book.txt [--history more.txt] [-w 2]
//! ```
//!
//! Every stdin line is text to count, or a query: `?word` prints
//! `{"word": "word", "count": n, "as_of": t}`, `?` alone prints the top words as
//! `{"top_words": [{"word": .., "count": ..}, ..], "as_of": t}`, and when stdin ends the final
//! top words are printed so (`as_of` 2^53: final). stdout carries only these JSON lines; logs go
//! to stderr. Words are the runs of alphanumeric characters, lowercased.
//!
//! ## Time, and why a query does not wait
//! History lines happen at time 0; a live line at its ingestion time (wall-clock milliseconds,
//! made strictly increasing). A query read at time `t` asks `as_of` `t` (every update before `t`)
//! and is answered once the dataflow frontier reaches `t`. The frontier follows the speed lanes'
//! watermark, which trails the newest event by the allowed lateness and moves only when events
//! arrive: a query after the last line typed would wait for the next line. So before asking we
//! declare a source watermark (`LiveSender::watermark(t)`: no more lines before `t`), which
//! moves every worker's lane to `t` at once. The allowed lateness is zero: we stamp the times
//! ourselves, in order, so no line is ever late. (With several processes, `-n`, a query also
//! waits for the other processes' lanes; the final answer never waits.)

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use differential_dataflow::VecCollection;
use lambdaflow::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One line of text, at the time it was written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Line {
    time: Time,
    text: String,
}

impl Event for Line {
    fn time(&self) -> Time {
        self.time
    }

    /// A history line (the batch lane): any text, at time 0.
    fn parse(line: &[u8], _format: Format) -> Result<Self, String> {
        let text = String::from_utf8(line.to_vec()).map_err(|e| e.to_string())?;
        Ok(Line { time: 0, text })
    }
}

/// The words of a text: its runs of alphanumeric characters, lowercased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

struct WordCount;

impl Pipeline for WordCount {
    type Event = Line;

    fn build<'s>(&self, lines: VecCollection<'s, Time, Line>, views: &mut Views<'s>) {
        // One `(word, ())` record per occurrence: the count is the record's difference.
        let words = lines.flat_map(|line| words(&line.text).map(|w| (w, ())).collect::<Vec<_>>());
        let count = |values: &[((), isize)]| values.first().map(|(_, n)| *n);
        let counts = views.register(
            "word_count",
            "occurrences of each word",
            words,
            move |_, v| count(v).map(|n| json!(n)),
        );
        views.top_k(
            "top_words",
            "the 10 most frequent words (ties: alphabetical)",
            &counts,
            10,
            move |_, v| count(v),
            |word, n| json!({"word": word, "count": n}),
        );
    }
}

#[derive(Parser)]
#[command(
    about = "Word count over text files and stdin",
    disable_help_flag = true
)]
struct Args {
    /// A text file (.txt) to count through the batch lane; repeatable.
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
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        ..Settings::default()
    };
    let history = History::Files(args.history);
    let mut engine = Engine::start(&args.cluster, settings, history, WordCount)?;
    let live = engine.live().ok_or("live input already ended")?;
    engine.end_live();
    let client = engine.client();

    let mut last: Time = 0;
    for line in std::io::stdin().lock().lines() {
        let text = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        // Ingestion time: the wall clock, strictly increasing.
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        let time = now.map_or(0, |d| d.as_millis() as Time).max(last + 1);
        last = time;
        let Some(asked) = text.strip_prefix('?') else {
            live.send(Line { time, text }).map_err(|e| e.to_string())?;
            continue;
        };
        // No more lines before `time`: every worker's lane moves there now.
        live.watermark(time).map_err(|e| e.to_string())?;
        let query = match words(asked).next() {
            Some(word) => Query::key("word_count", word),
            None => Query::all("top_words"),
        };
        let answer = client.query(query, Some(time)).map_err(|e| e.to_string())?;
        print(&answer)?;
    }
    drop(live);

    if args.cluster.process == 0 {
        let answer = client.query_final(Query::all("top_words"));
        print(&answer.map_err(|e| e.to_string())?)?;
    }
    drop(client);
    engine.join()
}

/// Prints an answer as one JSON line: a word's count, or the top words.
fn print(answer: &Answer) -> Result<(), String> {
    let line = match &answer.value {
        AnswerValue::Row { key, value, .. } => {
            let count = value.clone().unwrap_or(json!(0));
            json!({"word": key, "count": count, "as_of": answer.as_of})
        }
        _ => json!({"top_words": answer.to_json(), "as_of": answer.as_of}),
    };
    writeln!(std::io::stdout(), "{line}").map_err(|e| format!("cannot write stdout: {e}"))
}
