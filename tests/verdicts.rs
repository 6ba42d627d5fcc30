//! Late verdicts are decided once, the same everywhere: a stream gets the verdicts of the
//! independent model of the policy whatever the worker count, and a server killed with
//! `kill -9` comes back with the same views and the same `GET /late`.
//! (The in-process property test over restarts is `tests/restart.rs`.)

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::event::END_OF_TIME;
use lambdaflow::live::SendError;
use lambdaflow::prelude::*;
use serde_json::Value;
use support::server::{Server, free_port};
use support::{LateModel, jsonl, oracle, rows};

/// A producer's stream: in order but for some events far behind, deterministic.
fn stream() -> Vec<Order> {
    stream_of(7)
}

/// A producer's stream from a seed.
fn stream_of(seed: u64) -> Vec<Order> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut events = Vec::new();
    for i in 0..1_500u64 {
        let behind = if next() % 10 == 0 { next() % 40_000 } else { 0 };
        events.push(Order {
            ts: (1_000_000 + i * 50).saturating_sub(behind),
            kind: if next() % 4 == 0 {
                Kind::Refund
            } else {
                Kind::Purchase
            },
            customer: next() % 40,
            product: next() % 13,
            amount_cents: 1 + next() % 500,
            amount_missing: false,
        });
    }
    events
}

fn post(server: &Server, events: &[Order]) {
    for chunk in events.chunks(50) {
        let (status, answer) = server.post("/events", "application/x-ndjson", jsonl(chunk));
        assert_eq!(status, 200, "{answer}");
    }
}

fn late(server: &Server) -> (u64, Vec<Value>) {
    let (status, answer) = server.get("/late?limit=1000");
    assert_eq!(status, 200);
    let mut recent: Vec<Value> = answer["recent"].as_array().expect("recent").clone();
    recent.sort_by_key(|v| v.to_string());
    (answer["dropped_total"].as_u64().expect("total"), recent)
}

fn dropped_events(listed: &[Value]) -> Vec<Order> {
    let mut events: Vec<Order> = listed
        .iter()
        .map(|l| serde_json::from_value(l["event"].clone()).expect("an event"))
        .collect();
    events.sort();
    events
}

#[test]
fn the_same_stream_gets_the_same_verdicts_on_one_and_two_workers_and_after_kill_9() {
    let events = stream();
    for (policy, max_lateness) in [("drop", None), ("correct", Some("20s")), ("correct", None)] {
        let mut model = LateModel::new(&[], 1_000, policy == "drop", max_lateness.map(|_| 20_000));
        for e in &events {
            model.send(e);
        }
        let mut expected_dropped = model.dropped.clone();
        expected_dropped.sort();
        assert_eq!(
            expected_dropped.is_empty(),
            policy == "correct" && max_lateness.is_none(),
            "the stream has late events for every policy to judge"
        );
        assert!(!model.corrected.is_empty() || policy == "drop");
        let expected_views = oracle(&model.kept);
        let mut first: Option<(Value, (u64, Vec<Value>))> = None;
        for workers in ["1", "2"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut args = vec![
                "-w",
                workers,
                "--late-policy",
                policy,
                "--allowed-lateness",
                "1s",
                "--idle-timeout",
                "off",
            ];
            if let Some(max) = max_lateness {
                args.extend(["--max-lateness", max]);
            }
            let port = free_port();
            let server = Server::start(dir.path(), port, &args, true);
            post(&server, &events);
            let visible = server.declare(10_000_000);
            let (status, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
            assert_eq!(status, 200);
            let views = rows(&answer);
            let listed = late(&server);
            assert_eq!(
                views, expected_views["customer_spend"],
                "{policy} on {workers} workers"
            );
            assert_eq!(
                listed.0,
                expected_dropped.len() as u64,
                "{policy}: dropped in all"
            );
            assert_eq!(
                dropped_events(&listed.1),
                expected_dropped,
                "{policy}: the model's drops"
            );
            match &first {
                None => first = Some((views.clone(), listed.clone())),
                Some(seen) => assert_eq!(
                    seen,
                    &(views.clone(), listed.clone()),
                    "{policy}: 1 and 2 workers"
                ),
            }
            // kill -9, and the same views and late events come back.
            server.kill();
            let server = Server::start(dir.path(), port, &args, true);
            let (status, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
            assert_eq!(status, 200);
            assert_eq!(
                answer["as_of"].as_u64(),
                Some(visible),
                "{policy}: as of the same time"
            );
            assert_eq!(rows(&answer), views, "{policy}: the views after kill -9");
            assert_eq!(late(&server), listed, "{policy}: GET /late after kill -9");
            let letters =
                std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap_or_default();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut lines = letters.lines().count();
            while lines < expected_dropped.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                lines = std::fs::read_to_string(dir.path().join("dead-letter.jsonl"))
                    .unwrap_or_default()
                    .lines()
                    .count();
            }
            assert_eq!(
                lines,
                expected_dropped.len(),
                "{policy}: the dead-letter file, rebuilt"
            );
        }
    }
}

fn purchase(ts: u64, customer: u64) -> Order {
    Order {
        ts,
        kind: Kind::Purchase,
        customer,
        product: 1,
        amount_cents: 10,
        amount_missing: false,
    }
}

/// Events at or beyond the end of time are refused, and an event just before it cannot keep
/// later events from becoming visible: they are corrected, and seen within a tick.
#[test]
fn time_cannot_be_poisoned_in_the_library() {
    let refused = Engine::start(
        &Cluster::threads(1),
        Settings::default(),
        History::Events(Arc::new(vec![purchase(END_OF_TIME, 1)])),
        Ecommerce,
    );
    assert!(refused.is_err_and(|e| e.contains("2^53")));

    let mut engine = Engine::start(
        &Cluster::threads(2),
        Settings {
            idle_timeout: None,
            tick: Duration::from_millis(5),
            ..Settings::default()
        },
        History::Events(Arc::new(Vec::new())),
        Ecommerce,
    )
    .expect("engine starts");
    let live = engine.live().expect("live");
    engine.end_live();
    let client = engine.client();
    assert_eq!(
        live.send(purchase(END_OF_TIME, 1)),
        Err(SendError::TimeOutOfRange(END_OF_TIME))
    );
    live.send(purchase(END_OF_TIME - 1, 1))
        .expect("the last time is a time");
    let ordinary: Vec<Order> = (0..20).map(|i| purchase(1_000 + i, 2 + i % 3)).collect();
    let verdicts = live.send_batch(ordinary.clone()).expect("sent");
    assert_eq!(
        verdicts.corrected, 20,
        "behind the watermark the far event moved"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = oracle(&ordinary)["customer_spend"].clone();
    loop {
        let answer = client
            .query(Query::all("customer_spend"), None)
            .expect("answered");
        if answer.to_json() == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "corrections never became visible"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop((live, client));
    engine.join().expect("workers finish");
}

/// Two processes, each judging the stream its own producers send it (as a Kafka partition's
/// stream time is its own), both killed in the middle of their streams and restarted: every
/// process's drops are its model's (a model that knows nothing of the restart), and so are the
/// global views.
#[test]
fn two_processes_judge_their_own_streams_and_survive_kill_9() {
    // Random streams, split at random between the processes, a kill -9 of both at a random
    // point of the stream, under both policies.
    for (seed, policy) in [(1u64, "drop"), (2, "correct"), (3, "drop"), (4, "correct")] {
        let events = stream_of(seed * 7919);
        let kill_at = (seed as usize * 331) % events.len();
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let hosts = dirs[0].path().join("hosts");
        let mesh = [free_port(), free_port()];
        std::fs::write(
            &hosts,
            format!("127.0.0.1:{}\n127.0.0.1:{}\n", mesh[0], mesh[1]),
        )
        .expect("hosts");
        let hosts = hosts.to_str().expect("path").to_string();
        let ports = [free_port(), free_port()];
        let start = |p: usize| {
            let data = dirs[p].path().join("data");
            let (hosts, port, process) = (hosts.clone(), ports[p], p.to_string());
            let policy = policy.to_string();
            std::thread::spawn(move || {
                let args = [
                    "-w",
                    "2",
                    "-n",
                    "2",
                    "-p",
                    &process,
                    "-h",
                    &hosts,
                    "--late-policy",
                    &policy,
                    "--max-lateness",
                    "30s",
                    "--allowed-lateness",
                    "1s",
                    "--idle-timeout",
                    "off",
                ];
                Server::start(&data, port, &args, true)
            })
        };
        // Split the stream between the processes (each part stays in order), and where each
        // part is when both processes are killed.
        let mut parts: [Vec<Order>; 2] = [Vec::new(), Vec::new()];
        let mut split = [0usize; 2];
        for (i, e) in events.iter().enumerate() {
            let p = ((i as u64).wrapping_mul(seed * 2654435761) >> 7) as usize % 2;
            parts[p].push(e.clone());
            if i < kill_at {
                split[p] = parts[p].len();
            }
        }
        let models: Vec<LateModel> = parts
            .iter()
            .map(|part| {
                let mut model = LateModel::new(&[], 1_000, policy == "drop", Some(30_000));
                for e in part {
                    model.send(e);
                }
                model
            })
            .collect();
        let kept: Vec<Order> = models.iter().flat_map(|m| m.kept.iter().cloned()).collect();
        let expected = oracle(&kept)["customer_spend"].clone();
        let post_all = |servers: &[Server; 2], range: &dyn Fn(usize) -> std::ops::Range<usize>| {
            std::thread::scope(|scope| {
                for (p, (server, part)) in servers.iter().zip(&parts).enumerate() {
                    let events = &part[range(p)];
                    scope.spawn(move || post(server, events));
                }
            });
        };
        let (a, b) = (start(0), start(1));
        let servers = [a.join().expect("process 0"), b.join().expect("process 1")];
        post_all(&servers, &|p| 0..split[p]);
        let [s0, s1] = servers;
        s0.kill();
        s1.kill();
        let (a, b) = (start(0), start(1));
        let servers = [a.join().expect("process 0"), b.join().expect("process 1")];
        post_all(&servers, &|p| split[p]..parts[p].len());
        let visible = servers
            .iter()
            .map(|s| s.declare(10_000_000))
            .max()
            .unwrap_or(0);
        for (p, server) in servers.iter().enumerate() {
            let (status, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
            assert_eq!(status, 200);
            assert_eq!(
                rows(&answer),
                expected,
                "{policy} (seed {seed}): global views, process {p}"
            );
            let (total, listed) = late(server);
            let mut want = models[p].dropped.clone();
            want.sort();
            assert_eq!(
                total,
                want.len() as u64,
                "{policy} (seed {seed}): process {p} dropped"
            );
            assert_eq!(
                dropped_events(&listed),
                want,
                "{policy} (seed {seed}): process {p}'s drops"
            );
        }
    }
}
