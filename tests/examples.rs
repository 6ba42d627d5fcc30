//! The teaching examples `word_count` and `inverted_index`, run as real processes with one and
//! two workers over generated history files and stdin, their every answer checked against a
//! naive in-memory recomputation (an oracle), never against recorded outputs.
//!
//! The examples are found (and built in this test's profile) by `support::binaries`.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::binaries::example;

/// Runs an example with `args`, feeding it `stdin`; returns its stdout as JSON lines. Fails
/// the test if it exits unsuccessfully or runs for over a minute.
fn run(name: &str, args: &[&str], stdin: &str) -> Vec<Value> {
    let mut child = Command::new(example(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = stdout.join().unwrap_or_default();
            let stderr = stderr.join().unwrap_or_default();
            panic!("{name} {args:?} ran for over a minute\n{stdout}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "{name} {args:?} failed: {status}\n{stderr}"
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A deterministic pseudo-random sequence (an LCG), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    /// A line of words from a skewed vocabulary, in mixed case, with punctuation between.
    fn text(&mut self) -> String {
        const VOCABULARY: [&str; 16] = [
            "the",
            "River",
            "flows",
            "DATA",
            "stream",
            "time",
            "Café",
            "x86",
            "batch",
            "speed",
            "lane",
            "view",
            "42",
            "Ünïcode",
            "frontier",
            "watermark",
        ];
        const GAPS: [&str; 5] = [" ", ", ", " -- ", "! ", "\t"];
        let n = self.below(9);
        let mut text = String::new();
        for _ in 0..n {
            let skewed = self
                .below(VOCABULARY.len())
                .min(self.below(VOCABULARY.len()));
            let mut word = VOCABULARY[skewed].to_string();
            if self.below(4) == 0 {
                word = word.to_uppercase();
            }
            text.push_str(&word);
            text.push_str(GAPS[self.below(GAPS.len())]);
        }
        text
    }
}

/// The oracle's words: lowercased maximal runs of alphanumeric characters, char by char.
fn oracle_words(text: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    for c in text.chars() {
        if c.is_alphanumeric() {
            words.last_mut().expect("one word").extend(c.to_lowercase());
        } else if !words.last().expect("one word").is_empty() {
            words.push(String::new());
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// The ten most frequent words, ties by smaller word, as the example prints them.
fn oracle_top(counts: &HashMap<String, i64>) -> Value {
    let mut ranked: Vec<(&String, &i64)> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    ranked.truncate(10);
    json!(
        ranked
            .iter()
            .map(|(w, n)| json!({"word": w, "count": n}))
            .collect::<Vec<_>>()
    )
}

fn write_file(dir: &Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("history written");
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// Answers' `as_of` times: strictly increasing, and the last one final (2^53).
fn check_times(answers: &[Value]) {
    let times: Vec<u64> = answers
        .iter()
        .map(|a| a["as_of"].as_u64().expect("as_of"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "as_of not increasing: {times:?}"
    );
    assert_eq!(times.last(), Some(&(1 << 53)), "the last answer is final");
}

#[test]
fn word_count_answers_like_a_naive_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(7);
    let books: Vec<Vec<String>> = (0..2)
        .map(|_| (0..150).map(|_| rng.text()).collect())
        .collect();
    let first = write_file(dir.path(), "first.txt", &books[0]);
    let second = write_file(dir.path(), "second.txt", &books[1]);

    // Stdin: live lines, with queries between them, and what the oracle expects of each.
    let mut counts: HashMap<String, i64> = HashMap::new();
    for word in books.iter().flatten().flat_map(|line| oracle_words(line)) {
        *counts.entry(word).or_default() += 1;
    }
    let mut stdin = String::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        let line = match i % 4 {
            0 => "?".to_string(),
            1 => ["?the", "?RIVER", "?café", "?unknown", "?x86", "?42"][i / 4 % 6].to_string(),
            _ => rng.text(),
        };
        if let Some(asked) = line.strip_prefix('?') {
            expected.push(match oracle_words(asked).first() {
                Some(word) => {
                    let count = counts.get(word).copied().unwrap_or(0);
                    json!({"word": word, "count": count})
                }
                None => json!({"top_words": oracle_top(&counts)}),
            });
        } else {
            for word in oracle_words(&line) {
                *counts.entry(word).or_default() += 1;
            }
        }
        stdin.push_str(&line);
        stdin.push('\n');
    }
    expected.push(json!({"top_words": oracle_top(&counts)}));

    for workers in ["1", "2"] {
        let args = ["--history", &first, "--history", &second, "-w", workers];
        let mut answers = run("word_count", &args, &stdin);
        assert_eq!(
            answers.len(),
            expected.len(),
            "one line per query, then the final top"
        );
        check_times(&answers);
        for (answer, expected) in answers.iter_mut().zip(&expected) {
            answer.as_object_mut().expect("an object").remove("as_of");
            assert_eq!(answer, expected, "with {workers} workers");
        }
    }
}

#[test]
fn inverted_index_answers_like_a_naive_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(11);
    let mut index: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let add = |index: &mut BTreeMap<String, BTreeSet<u64>>, id: u64, text: &str| {
        for word in oracle_words(text) {
            index.entry(word).or_default().insert(id);
        }
    };

    // JSON history with ids from 1000, one bad line and one blank line.
    let mut docs = Vec::new();
    for i in 0..120 {
        let (id, text) = (1000 + i, rng.text());
        add(&mut index, id, &text);
        docs.push(json!({"id": id, "text": text}).to_string());
    }
    docs.insert(
        50,
        "{\"id\": \"not a number\", \"text\": \"ignored words\"}".into(),
    );
    docs.insert(70, String::new());
    let json_history = write_file(dir.path(), "docs.jsonl", &docs);
    // Text history: each line is a document whose id is its line number (blank lines count).
    let notes: Vec<String> = (0..80)
        .map(|i| {
            if i % 9 == 4 {
                String::new()
            } else {
                rng.text()
            }
        })
        .collect();
    for (i, text) in notes.iter().enumerate() {
        add(&mut index, i as u64 + 1, text);
    }
    let text_history = write_file(dir.path(), "notes.txt", &notes);

    // Stdin: new documents (one reusing a history id), bad lines and queries.
    let mut stdin = String::new();
    let mut queries = Vec::new();
    for i in 0..60u64 {
        let line = match i % 3 {
            0 => ["?the", "?Stream", "?café", "?unknown", "?42", "?ünïcode"][i as usize / 3 % 6]
                .to_string(),
            _ if i == 10 => "not a document".to_string(),
            _ if i == 20 => String::new(),
            _ => {
                let (id, text) = (if i == 31 { 1000 } else { 5000 + i }, rng.text());
                let line = json!({"id": id, "text": text}).to_string();
                add(&mut index, id, &text);
                line
            }
        };
        if let Some(asked) = line.strip_prefix('?') {
            let word = oracle_words(asked).remove(0);
            let docs: Vec<u64> = index.get(&word).into_iter().flatten().copied().collect();
            queries.push(json!({"word": word, "docs": docs}));
        }
        stdin.push_str(&line);
        stdin.push('\n');
    }
    let postings: usize = index.values().map(BTreeSet::len).sum();
    let summary = json!({"distinct_words": index.len(), "postings": postings});

    for workers in ["1", "2"] {
        let args = [
            "--history",
            &json_history,
            "--history",
            &text_history,
            "-w",
            workers,
        ];
        let mut answers = run("inverted_index", &args, &stdin);
        assert_eq!(
            answers.len(),
            queries.len() + 1,
            "one line per query, then a summary"
        );
        assert_eq!(
            answers.pop().as_ref(),
            Some(&summary),
            "with {workers} workers"
        );
        let times: Vec<u64> = answers
            .iter()
            .map(|a| a["as_of"].as_u64().expect("as_of"))
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "as_of not increasing: {times:?}"
        );
        for (answer, expected) in answers.iter_mut().zip(&queries) {
            answer.as_object_mut().expect("an object").remove("as_of");
            assert_eq!(answer, expected, "with {workers} workers");
        }
    }
}
