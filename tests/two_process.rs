//! Two processes, one computation: the e-commerce example run as two processes over localhost
//! TCP (`-n 2 -p 0/1` with a hostfile), each replaying its share of the history and taking part
//! of the live events on its own stdin, prints the same views as the golden expectation (and so
//! as one process).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::binaries::example;
use support::golden;
use support::ports::free_port;

#[test]
fn two_processes_give_the_golden_views() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostfile = dir.path().join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("hostfile");
    let live = std::fs::read_to_string(golden("live.jsonl")).expect("live");
    let lines: Vec<&str> = live.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 3);
    let binary = example("ecommerce");

    let mut children = Vec::new();
    for (process, part) in [(0, first), (1, second)] {
        let mut child = Command::new(&binary)
            .arg("--history")
            .arg(golden("history.jsonl"))
            .args(["-w", "2", "-n", "2", "-p", &process.to_string(), "-h"])
            .arg(&hostfile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("example starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let text = part.join("\n") + "\n";
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
        children.push(child);
    }
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("exits"))
        .collect();
    for output in &outputs {
        assert!(
            output.status.success(),
            "a process failed: {:?}",
            output.status
        );
    }
    let expected: Value =
        serde_json::from_slice(&std::fs::read(golden("expected.json")).expect("expected"))
            .expect("JSON");
    let views: Value = serde_json::from_slice(&outputs[0].stdout).expect("process 0 prints JSON");
    assert_eq!(views, expected);
    assert!(outputs[1].stdout.is_empty(), "only process 0 prints");
}
