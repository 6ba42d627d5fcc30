//! Event time at the edges: idle sources, the drop policy's dead-letter file, the maximum
//! lateness, and per-worker watermarks.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::prelude::*;
use serde_json::Value;
use support::jsonl;
use support::oracle;
use support::server::{Server, free_port};

fn purchase(ts: u64, customer: u64) -> Order {
    Order {
        ts,
        kind: Kind::Purchase,
        customer,
        product: 1,
        amount_cents: 100,
        amount_missing: false,
    }
}

/// Asks for an answer as of `as_of`; `None` if it does not come within `wait`.
fn answer_within(client: &Client, as_of: u64, wait: Duration) -> Option<Answer> {
    let (tx, rx) = std::sync::mpsc::channel();
    client
        .ask(
            Query::all("customer_spend"),
            Some(as_of),
            Box::new(move |a| drop(tx.send(a))),
        )
        .expect("asked");
    rx.recv_timeout(wait).ok()
}

/// One worker gets the only live event, the other none: without idleness the idle worker holds
/// the watermark back for ever; with an idle timeout the event's time is finalized soon after.
#[test]
fn an_idle_worker_does_not_hold_the_watermark_back() {
    for idle_timeout in [None, Some(Duration::from_millis(200))] {
        let settings = Settings {
            idle_timeout,
            tick: Duration::from_millis(5),
            ..Settings::default()
        };
        let mut engine = Engine::start(
            &Cluster::threads(2),
            settings,
            History::Events(Arc::new(Vec::new())),
            Ecommerce,
        )
        .expect("engine starts");
        let live = engine.live().expect("live");
        let client = engine.client();
        live.send(purchase(1_000_000, 7)).expect("sent");
        let wait = if idle_timeout.is_some() {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(2)
        };
        let answer = answer_within(&client, 1_000_001, wait);
        match idle_timeout {
            None => assert!(
                answer.is_none(),
                "nothing moves the idle worker's watermark"
            ),
            Some(_) => {
                let answer = answer.expect("finalized within the idle timeout");
                assert_eq!(
                    answer.to_json(),
                    oracle(&[purchase(1_000_000, 7)])["customer_spend"]
                );
            }
        }
        drop((live, client));
        engine.end_live();
        engine.join().expect("workers finish");
    }
}

fn dead_letters(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn customer_spend(server: &Server, as_of: u64) -> Value {
    let (status, answer) = server.get(&format!("/views/customer_spend?as_of={as_of}"));
    assert_eq!(status, 200);
    support::rows(&answer)
}

/// Under `drop`, late events are left out of every view, counted, listed by `GET /late`, and
/// appended to the dead-letter file: exactly those, nothing else.
#[test]
fn dropped_events_go_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &[
            "--late-policy",
            "drop",
            "--allowed-lateness",
            "0s",
            "--idle-timeout",
            "off",
        ],
        true,
    );
    let on_time: Vec<Order> = (0..50).map(|i| purchase(100_000 + i * 10, i % 5)).collect();
    let late: Vec<Order> = (0..7).map(|i| purchase(50_000 + i, 100 + i)).collect();
    assert_eq!(
        server
            .post("/events", "application/x-ndjson", jsonl(&on_time))
            .0,
        200
    );
    server.declare(200_000);
    assert_eq!(
        server
            .post("/events", "application/x-ndjson", jsonl(&late))
            .0,
        200
    );
    let visible = server.declare(200_001);
    assert_eq!(
        customer_spend(&server, visible),
        oracle(&on_time)["customer_spend"],
        "the late events are left out"
    );
    let (_, listed) = server.get("/late");
    assert_eq!(listed["dropped_total"], 7);
    assert_eq!(listed["recent"].as_array().map(Vec::len), Some(7));
    // The dead-letter file is written (and fsync'd) by its own thread, soon after the drop.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dead_letters(dir.path()).len() < 7 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let letters = dead_letters(dir.path());
    let mut customers: Vec<u64> = letters
        .iter()
        .map(|l| l["event"]["customer"].as_u64().expect("customer"))
        .collect();
    customers.sort();
    assert_eq!(customers, (100..107).collect::<Vec<_>>());
    assert!(
        letters
            .iter()
            .all(|l| l["event"]["kind"] == "purchase" && l["watermark"].as_u64() >= Some(200_000))
    );
}

/// After a restore from a checkpoint, `GET /late` and the dead-letter file list the drops from
/// before the checkpoint (read in the background) and after it (replayed), each once: the same
/// as before the crash.
#[test]
fn drops_before_a_checkpoint_are_listed_after_a_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--late-policy",
        "drop",
        "--allowed-lateness",
        "0s",
        "--idle-timeout",
        "off",
    ];
    let server = Server::start(dir.path(), free_port(), &args, true);
    let on_time: Vec<Order> = (0..50).map(|i| purchase(100_000 + i * 10, i % 5)).collect();
    let post = |server: &Server, events: &[Order]| {
        assert_eq!(
            server
                .post("/events", "application/x-ndjson", jsonl(events))
                .0,
            200
        );
    };
    post(&server, &on_time);
    server.declare(200_000);
    post(
        &server,
        &(0..7)
            .map(|i| purchase(50_000 + i, 100 + i))
            .collect::<Vec<_>>(),
    );
    let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
    assert_eq!(status, 200, "{taken}");
    post(
        &server,
        &(0..3)
            .map(|i| purchase(60_000 + i, 200 + i))
            .collect::<Vec<_>>(),
    );
    let (_, before) = server.get("/late");
    assert_eq!(before["dropped_total"], 10);
    server.kill();

    let server = Server::start(dir.path(), free_port(), &args, true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (_, listed) = server.get("/late");
        if listed["complete"] == true {
            break listed;
        }
        assert!(std::time::Instant::now() < deadline, "/late never complete");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(after["dropped_total"], 10);
    assert_eq!(after["recent"], before["recent"]);
    let visible = server.declare(200_001);
    assert_eq!(
        customer_spend(&server, visible),
        oracle(&on_time)["customer_spend"]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dead_letters(dir.path()).len() != 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut customers: Vec<u64> = dead_letters(dir.path())
        .iter()
        .map(|l| l["event"]["customer"].as_u64().expect("customer"))
        .collect();
    customers.sort();
    assert_eq!(customers, (100..107).chain(200..203).collect::<Vec<_>>());
}

/// Under `correct`, a late event within the maximum lateness is corrected; beyond it, dropped.
#[test]
fn the_maximum_lateness_bounds_corrections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &[
            "--allowed-lateness",
            "0s",
            "--max-lateness",
            "1s",
            "--idle-timeout",
            "off",
        ],
        true,
    );
    let on_time = vec![purchase(100_000, 1)];
    assert_eq!(
        server
            .post("/events", "application/x-ndjson", jsonl(&on_time))
            .0,
        200
    );
    server.declare(100_001);
    let slightly = purchase(99_500, 2);
    let far = purchase(90_000, 3);
    assert_eq!(
        server
            .post(
                "/events",
                "application/x-ndjson",
                jsonl(&[slightly.clone(), far])
            )
            .0,
        200
    );
    let visible = server.declare(100_002);
    assert_eq!(
        customer_spend(&server, visible),
        oracle(&[on_time[0].clone(), slightly])["customer_spend"]
    );
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(text.contains("lambdaflow_late_corrected_total 1"), "{text}");
    assert!(text.contains("lambdaflow_late_dropped_total 1"));
    assert!(text.contains("lambdaflow_worker_watermark_seconds{worker=\"0\"}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dead_letters(dir.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let letters = dead_letters(dir.path());
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event"]["customer"], 3);
    assert!(
        letters[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("maximum lateness")
    );
}
