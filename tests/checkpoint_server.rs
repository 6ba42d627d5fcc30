//! Checkpoints end to end: the real binary on loopback, `POST /checkpoint`, `kill -9`, and a
//! restart that restores the views from the checkpoint and replays only the master dataset
//! after it. Every answer is checked against the golden expectation (computed by another
//! engine) or the naive fold of the events, never against the server itself.

mod support;

use lambdaflow::ecommerce::Order;
use serde_json::Value;
use support::jsonl;
use support::server::{Server, free_port, import, restart_pair, start_pair};
use support::{golden, oracle, read_orders};

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(golden("expected.json")).expect("expected.json"))
        .expect("JSON")
}

fn past_the_end(events: &[Order]) -> u64 {
    events.iter().map(|e| e.ts).max().unwrap_or(0) + 1
}

fn post(server: &Server, events: &[Order]) {
    for chunk in events.chunks(500) {
        let (status, answer) = server.post("/events", "application/x-ndjson", jsonl(chunk));
        assert_eq!(status, 200, "{answer}");
    }
}

fn checkpoint(server: &Server) -> Value {
    let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
    assert_eq!(status, 200, "{taken}");
    assert!(taken["as_of"].as_u64().is_some(), "{taken}");
    assert!(taken["bytes"].as_u64().is_some_and(|b| b > 0), "{taken}");
    assert!(taken["seconds"].as_f64().is_some(), "{taken}");
    assert!(
        taken["log_position"]["segment"].as_u64().is_some(),
        "{taken}"
    );
    taken
}

fn checkpoint_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir.join("checkpoints"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A checkpoint, more live events (late ones among them), `kill -9`: the restart restores
/// from the checkpoint (with 2 workers, and with 3) and answers the golden views; so do a
/// restart `--from-scratch` and one whose checkpoints are all corrupt (full replays).
#[test]
fn a_killed_server_restores_its_checkpoint_and_answers_the_golden_views() {
    let live = read_orders(&golden("live.jsonl"));
    let history = read_orders(&golden("history.jsonl"));
    let end = past_the_end(&live).max(past_the_end(&history));
    let dir = tempfile::tempdir().expect("tempdir");
    import(dir.path(), &[golden("history.jsonl")]);
    let (before, after) = live.split_at(live.len() / 2);

    let server = Server::start(dir.path(), free_port(), &["-w", "2"], true);
    post(&server, before);
    let first = checkpoint(&server);
    assert_eq!(server.metric("lambdaflow_checkpoints_total"), 1.0);
    assert!(server.metric("lambdaflow_checkpoint_bytes") > 0.0);
    assert!(server.metric("lambdaflow_checkpoint_age_seconds") >= 0.0);
    assert_eq!(server.metric("lambdaflow_restored"), 0.0);
    post(&server, after);
    server.kill();
    assert_eq!(checkpoint_files(dir.path()).len(), 1);

    for workers in ["2", "3"] {
        let server = Server::start(dir.path(), free_port(), &["-w", workers], true);
        assert_eq!(
            server.metric("lambdaflow_restored"),
            1.0,
            "restored with {workers} workers"
        );
        assert!(
            server.metric("lambdaflow_history_events_total") < (history.len() + live.len()) as f64,
            "only the master dataset after the checkpoint is replayed"
        );
        let visible = server.declare(end);
        assert_eq!(server.views(visible), expected(), "{workers} workers");
        server.kill();
    }

    let server = Server::start(
        dir.path(),
        free_port(),
        &["-w", "2", "--from-scratch"],
        true,
    );
    assert_eq!(server.metric("lambdaflow_restored"), 0.0);
    let visible = server.declare(end);
    assert_eq!(server.views(visible), expected(), "from scratch");
    server.kill();

    for file in checkpoint_files(dir.path()) {
        let mut bytes = std::fs::read(&file).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&file, bytes).expect("write");
    }
    let server = Server::start(dir.path(), free_port(), &["-w", "2"], true);
    assert_eq!(
        server.metric("lambdaflow_restored"),
        0.0,
        "a corrupt checkpoint is not restored from"
    );
    let visible = server.declare(end);
    assert_eq!(
        server.views(visible),
        expected(),
        "after a corrupt checkpoint"
    );
    assert!(first["as_of"].as_u64() <= Some(visible));
}

/// A clean stop takes a checkpoint of its own; `--checkpoint-interval off` takes none (and
/// answers `POST /checkpoint` with 409) but still restores from one already there; a short
/// interval takes them by itself.
#[test]
fn a_clean_stop_checkpoints_and_intervals_take_them_by_themselves() {
    let live = read_orders(&golden("live.jsonl"));
    let history = read_orders(&golden("history.jsonl"));
    let end = past_the_end(&live).max(past_the_end(&history));
    let dir = tempfile::tempdir().expect("tempdir");
    import(dir.path(), &[golden("history.jsonl")]);

    let server = Server::start(
        dir.path(),
        free_port(),
        &["--checkpoint-interval", "200ms"],
        true,
    );
    post(&server, &live);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.metric("lambdaflow_checkpoints_total") < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoints by themselves"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.kill();
    assert!(
        checkpoint_files(dir.path()).len() <= 2,
        "only the last two are kept"
    );

    let mut server = Server::start(
        dir.path(),
        free_port(),
        &["--checkpoint-interval", "off"],
        true,
    );
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    let (status, answer) = server.post("/checkpoint", "application/json", Vec::new());
    assert_eq!(status, 409, "{answer}");
    let visible = server.declare(end);
    assert_eq!(
        server.views(visible),
        expected(),
        "restored, checkpoints off"
    );
    let kept = checkpoint_files(dir.path());

    // SIGINT: a clean stop, which takes a checkpoint (unless they are off: then none).
    stop(&mut server);
    assert_eq!(checkpoint_files(dir.path()), kept, "none taken when off");
    let mut server = Server::start(dir.path(), free_port(), &[], true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    stop(&mut server);
    let newest = checkpoint_files(dir.path());
    assert_ne!(newest, kept, "the clean stop took a checkpoint");
    let server = Server::start(dir.path(), free_port(), &[], true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    let visible = server.declare(end);
    assert_eq!(server.views(visible), expected(), "after the clean stop");
}

/// Stops a server with SIGINT and waits for it to exit.
fn stop(server: &mut Server) {
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = server.child.wait().expect("the server exits");
    assert!(status.success(), "a clean stop: {status}");
}

/// Two processes, each with its own master dataset and checkpoints: both checkpointed, more
/// events to each, both killed: restarted, they restore and answer the global views.
#[test]
fn two_processes_restore_their_checkpoints() {
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let end = past_the_end(&live).max(past_the_end(&history));
    let (servers, dirs) = start_pair(&history, &["-w", "2"]);
    let (before, after) = live.split_at(live.len() / 2);
    for (i, chunk) in before.chunks(700).enumerate() {
        post(&servers[i % 2], chunk);
    }
    for server in &servers {
        checkpoint(server);
    }
    for (i, chunk) in after.chunks(700).enumerate() {
        post(&servers[i % 2], chunk);
    }
    let [a, b] = servers;
    a.kill();
    b.kill();
    let servers = restart_pair(&dirs, &["-w", "2"]);
    for server in &servers {
        assert_eq!(server.metric("lambdaflow_restored"), 1.0, "{}", server.base);
    }
    let first = servers.iter().map(|s| s.declare(end)).max().unwrap_or(end);
    let visible = servers
        .iter()
        .map(|s| s.declare(first))
        .max()
        .unwrap_or(first);
    let mut all = history.clone();
    all.extend(live.iter().cloned());
    for server in &servers {
        let views = server.views(visible);
        assert_eq!(views, expected(), "answered by {}", server.base);
        assert_eq!(views["customer_spend"], oracle(&all)["customer_spend"]);
    }
}
