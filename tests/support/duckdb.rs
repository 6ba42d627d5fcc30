//! DuckDB, the oracle of the SQL views: the same `CREATE VIEW` text run by DuckDB (its Python
//! client, in a virtual environment under `target/`) over the same events.
//!
//! `.ci/run` prepares the environment first; a plain `cargo test` prepares it on first use
//! (`python3 -m venv` and `pip install duckdb`, once per machine, under a file lock), or uses
//! the interpreter named by `LAMBDAFLOW_PYTHON`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The DuckDB release the oracle pins.
const DUCKDB: &str = "duckdb==2.0.1";

fn has_duckdb(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A Python interpreter that can `import duckdb`.
pub fn python() -> PathBuf {
    if let Ok(named) = std::env::var("LAMBDAFLOW_PYTHON") {
        return PathBuf::from(named);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/duckdb-venv");
    let python = dir.join("bin/python");
    if has_duckdb(&python) {
        return python;
    }
    std::fs::create_dir_all(dir.parent().expect("target/")).expect("target/ is writable");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.with_extension("lock"))
        .expect("the venv lock opens");
    lock.lock().expect("the venv lock locks");
    if !has_duckdb(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 runs (the SQL tests need Python 3 for DuckDB)");
        assert!(made.success(), "python3 -m venv {} failed", dir.display());
        let installed = Command::new(dir.join("bin/pip"))
            .args(["install", "-q", DUCKDB])
            .status()
            .expect("pip runs");
        assert!(
            installed.success(),
            "pip install {DUCKDB} failed (is PyPI reachable?)"
        );
    }
    python
}

/// DuckDB's rows of every view `sql` creates, over the events of the JSON Lines file `events`:
/// `{view: [row objects, in DuckDB's order]}`.
pub fn views(events: &Path, sql: &Path) -> Value {
    views_over(None, events, sql)
}

/// [`views`] over the tables that the JSON file `tables` describes (see `oracle.py`) instead
/// of `events`.
pub fn views_over(tables: Option<&Path>, events: &Path, sql: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/oracle.py");
    let mut command = Command::new(python());
    command.arg(script);
    if let Some(tables) = tables {
        command.arg("--tables").arg(tables);
    }
    let out = command
        .arg(events)
        .arg(sql)
        .output()
        .expect("the oracle runs");
    assert!(
        out.status.success(),
        "DuckDB refused the SQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle writes JSON")
}

/// Whether two JSON values are the same answer (doubles to 1e-9, relative).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
            } else {
                x.to_string() == y.to_string()
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A row's text for sorting, with doubles rounded so that near-equal rows sort together.
pub fn sort_text(row: &Value) -> String {
    match row {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", sort_text(v)))
            .collect::<Vec<_>>()
            .join(","),
        Value::Number(n) if n.is_f64() => format!("{:.6e}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}

/// Compares one view's rows: in order for a ranked view, as multisets otherwise.
pub fn compare(name: &str, ranked: bool, ours: &[Value], duck: &[Value]) -> Result<(), String> {
    let (mut ours, mut duck) = (ours.to_vec(), duck.to_vec());
    if !ranked {
        ours.sort_by_key(sort_text);
        duck.sort_by_key(sort_text);
    }
    if ours.len() != duck.len() {
        let texts = |rows: &[Value]| -> Vec<String> { rows.iter().map(sort_text).collect() };
        let (mine, theirs) = (texts(&ours), texts(&duck));
        let only_ours: Vec<&String> = mine
            .iter()
            .filter(|r| !theirs.contains(r))
            .take(3)
            .collect();
        let only_duck: Vec<&String> = theirs
            .iter()
            .filter(|r| !mine.contains(r))
            .take(3)
            .collect();
        return Err(format!(
            "{name}: {} rows, DuckDB has {}; only ours: {only_ours:?}; only DuckDB's: {only_duck:?}",
            ours.len(),
            duck.len(),
        ));
    }
    for (i, (a, b)) in ours.iter().zip(&duck).enumerate() {
        if !same(a, b) {
            return Err(format!("{name}: row {i} is {a}, DuckDB has {b}"));
        }
    }
    Ok(())
}

/// Every view's rows against DuckDB's (`duck`: the oracle's object), `ranked` naming the views
/// whose order counts: one message per view that differs.
pub fn differences(
    ours: &std::collections::BTreeMap<String, Vec<Value>>,
    duck: &Value,
    ranked: &std::collections::BTreeMap<String, bool>,
) -> Vec<String> {
    let duck = duck.as_object().expect("the oracle answers an object");
    assert_eq!(ours.len(), duck.len(), "both have every view");
    let mut failures = Vec::new();
    for (name, rows) in duck {
        let theirs = rows.as_array().cloned().unwrap_or_default();
        let mine = ours.get(name).cloned().unwrap_or_default();
        let ordered = ranked.get(name).copied().unwrap_or(false);
        if let Err(e) = compare(name, ordered, &mine, &theirs) {
            failures.push(e);
        }
    }
    failures
}
