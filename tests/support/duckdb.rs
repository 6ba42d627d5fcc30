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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/oracle.py");
    let out = Command::new(python())
        .arg(script)
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
