//! Finding the programs tests run: the `lambdaflow` binary, and the examples.
//!
//! Cargo gives integration tests the path of a `[[bin]]` target (`CARGO_BIN_EXE_lambdaflow`),
//! not of an example, and `cargo run --example` per test is slow. So [`example`] runs
//! `cargo build --examples --message-format=json` once per test binary, in the profile the test
//! was built in, and takes the executables' paths from cargo's own `compiler-artifact`
//! messages: a stale example is rebuilt (a test never runs an old binary), a fresh one costs a
//! fingerprint check, and `CARGO_TARGET_DIR` and profiles are followed without guessing paths.
//! Cargo does not hold the build lock while tests run, so this nested build does not deadlock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The server binary.
pub fn lambdaflow() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lambdaflow"))
}

/// The executable of example `name`, built (or found fresh) by cargo in this test's profile.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--examples",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        let output = cargo.stderr(Stdio::inherit()).output().expect("cargo runs");
        assert!(output.status.success(), "building the examples failed");
        let mut paths = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let exe = message["executable"].as_str();
            let name = message["target"]["name"].as_str();
            if let (Some(exe), Some(name)) = (exe, name) {
                paths.insert(name.to_string(), PathBuf::from(exe));
            }
        }
        paths
    });
    built
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("cargo built no executable for example {name}"))
}
