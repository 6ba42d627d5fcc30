//! Changelogs: folded from the start they give the view; they come in time order; every
//! retraction retracts what was last told; subscribers see them over SSE and in sink files.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambdaflow::changelog::Change;
use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::prelude::*;
use serde_json::Value;
use support::jsonl;
use support::server::{Server, free_port};
use support::{golden, oracle, read_orders};

/// Applies changes to a folded view, checking each retraction retracts the current value.
fn fold(rows: &mut BTreeMap<String, Value>, change: &Change) {
    if change.diff < 0 {
        assert_eq!(
            rows.remove(&change.key).as_ref(),
            Some(&change.value),
            "a retraction retracts what was told"
        );
    } else {
        assert!(
            rows.insert(change.key.clone(), change.value.clone())
                .is_none(),
            "an insertion follows a retraction"
        );
    }
}

#[test]
fn changelogs_fold_to_the_views() {
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let views = [
        "revenue_by_day",
        "product_stats",
        "customer_spend",
        "events_per_minute",
    ];
    for workers in [1, 3] {
        let settings = Settings {
            changelog: true,
            ..Settings::default()
        };
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            settings,
            History::Events(Arc::new(history.clone())),
            Ecommerce,
        )
        .expect("engine starts");
        let hub = engine.changelog();
        let mut receivers: Vec<_> = views
            .iter()
            .map(|v| hub.subscribe(v).expect("subscribed"))
            .collect();
        let sender = engine.live().expect("live");
        engine.end_live();
        for (i, chunk) in live.chunks(500).enumerate() {
            for e in chunk {
                sender.send(e.clone()).expect("sent");
            }
            let newest = chunk.iter().map(|e| e.ts).max().unwrap_or(0);
            sender
                .watermark(newest - (i as u64 % 3) * 60_000)
                .expect("declared");
        }
        drop(sender);
        let client = engine.client();
        let finals: Vec<Answer> = views
            .iter()
            .map(|v| client.query_final(Query::all(v)).expect("answered"))
            .collect();
        drop(client);
        engine.join().expect("workers finish");
        let mut all = history.clone();
        all.extend(live.iter().cloned());
        let expected = oracle(&all);
        for ((view, receiver), answer) in views.iter().zip(receivers.iter_mut()).zip(finals) {
            let mut rows = BTreeMap::new();
            let mut last_time = 0;
            loop {
                let batch = match receiver.try_recv() {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("{view}: {e:?}");
                        break;
                    }
                };
                assert!(batch.time >= last_time, "{view}: batches in time order");
                last_time = batch.time;
                for change in &batch.changes {
                    fold(&mut rows, change);
                }
            }
            let folded = Value::Object(rows.into_iter().collect());
            assert_eq!(
                folded,
                answer.to_json(),
                "{view}: the changelog folds to the view ({workers} workers)"
            );
            assert_eq!(folded, expected[*view], "{view}");
        }
    }
}

/// A purchase of product 1.
fn purchase(ts: u64, customer: u64, amount: u64) -> Order {
    Order {
        ts,
        kind: Kind::Purchase,
        customer,
        product: 1,
        amount_cents: amount,
        amount_missing: false,
    }
}

#[test]
fn subscribers_see_a_snapshot_then_the_changes_and_sinks_write_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sinks = dir.path().join("sinks");
    let sink_arg = sinks.to_str().expect("path").to_string();
    let server = Server::start(
        &dir.path().join("data"),
        free_port(),
        &["-w", "2", "--sink-dir", &sink_arg],
        true,
    );
    let first: Vec<Order> = (0..20)
        .map(|i| purchase(1_000_000 + i, i % 4, 100))
        .collect();
    assert_eq!(
        server
            .post("/events", "application/x-ndjson", jsonl(&first))
            .0,
        200
    );
    let visible = server.declare(1_000_100);
    // Subscribe after the first events: they come in the snapshot.
    let response = server
        .http
        .get(server.url(&format!("/subscribe/customer_spend?as_of={visible}")))
        .timeout(Duration::from_secs(30))
        .send()
        .expect("subscribed");
    assert_eq!(response.status().as_u16(), 200);
    let mut lines = BufReader::new(response).lines();
    let mut next_event = || -> (String, Value) {
        let mut event = String::new();
        loop {
            let line = lines.next().expect("more events").expect("readable");
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return (
                    event.clone(),
                    serde_json::from_str(data).expect("JSON data"),
                );
            }
        }
    };
    let (kind, snapshot) = next_event();
    assert_eq!(kind, "snapshot");
    assert!(snapshot["as_of"].as_u64().expect("as_of") >= visible);
    let mut rows: BTreeMap<String, Value> = snapshot["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("key").to_string(),
                r["value"].clone(),
            )
        })
        .collect();
    let second: Vec<Order> = (0..30).map(|i| purchase(2_000_000 + i, i % 6, 7)).collect();
    assert_eq!(
        server
            .post("/events", "application/x-ndjson", jsonl(&second))
            .0,
        200
    );
    let visible = server.declare(2_000_100);
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    let want = oracle(&all)["customer_spend"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Value::Object(rows.clone().into_iter().collect()) != want {
        assert!(
            Instant::now() < deadline,
            "the changes never folded to the view: {rows:?}"
        );
        let (kind, data) = next_event();
        assert_eq!(kind, "change");
        let change = Change {
            key: data["key"].as_str().expect("key").to_string(),
            value: data["value"].clone(),
            time: data["time"].as_u64().expect("time"),
            diff: data["diff"].as_i64().expect("diff") as i8,
        };
        assert!(change.time < visible);
        fold(&mut rows, &change);
    }
    // The sink file holds the whole changelog from the start.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(sinks.join("customer_spend.jsonl")).unwrap_or_default();
        let mut folded = BTreeMap::new();
        for line in text.lines() {
            let c: Value = serde_json::from_str(line).expect("a JSON line");
            let change = Change {
                key: c["key"].as_str().expect("key").to_string(),
                value: c["value"].clone(),
                time: c["time"].as_u64().expect("time"),
                diff: c["diff"].as_i64().expect("diff") as i8,
            };
            fold(&mut folded, &change);
        }
        if Value::Object(folded.into_iter().collect()) == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink file never folded to the view"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Folds the sink file `path` strictly (each retraction retracts what is there, no insertion
/// over a value, times in order) until it holds `want`.
fn sink_folds_to(path: &std::path::Path, want: &Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut folded = BTreeMap::new();
        let mut time = 0;
        for line in text.lines() {
            let change: Change = serde_json::from_str(line).expect("a change per line");
            assert!(change.time >= time, "in time order: {line}");
            time = change.time;
            fold(&mut folded, &change);
        }
        if Value::Object(folded.into_iter().collect()) == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the sink file never folded to the view"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How [`a_sink_writes_each_change_once_across_kills`] breaks the server and its files.
#[derive(Clone, Copy, Debug)]
enum Break {
    /// `kill -9`.
    Kill,
    /// `kill -9` after a checkpoint and events after it.
    AfterCheckpoint,
    /// `kill -9`, and the sink file lost its last lines, the one before them torn.
    TornSink,
    /// `kill -9`, and the changelog journal is gone.
    NoJournal,
}

/// A sink file holds each change once, in time order, across `kill -9`: the restarted server
/// writes exactly what follows the file's end (a line cut short dropped and written again),
/// whether it replays the master dataset or restores a checkpoint. Without the journal of what
/// was told, the file is moved aside and a new one holds this run's changelog.
#[test]
fn a_sink_writes_each_change_once_across_kills() {
    for broken in [
        Break::Kill,
        Break::AfterCheckpoint,
        Break::TornSink,
        Break::NoJournal,
    ] {
        eprintln!("{broken:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, sinks) = (dir.path().join("data"), dir.path().join("sinks"));
        let sink_arg = sinks.to_str().expect("path").to_string();
        let args = [
            "-w",
            "2",
            "--sink-dir",
            &sink_arg,
            "--allowed-lateness",
            "0s",
            "--idle-timeout",
            "off",
        ];
        let file = sinks.join("customer_spend.jsonl");
        let server = Server::start(&data, free_port(), &args, true);
        let mut sent = Vec::new();
        for round in 0..4u64 {
            let orders: Vec<Order> = (0..6)
                .map(|i| purchase(1_000 + round * 100 + i, (round + i) % 5, 10 + i))
                .collect();
            server.post("/events", "application/x-ndjson", jsonl(&orders));
            sent.extend(orders);
            server.declare(1_050 + round * 100);
        }
        sink_folds_to(&file, &oracle(&sent)["customer_spend"]);
        if let Break::AfterCheckpoint = broken {
            let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
            assert_eq!(status, 200, "{taken}");
            let after: Vec<Order> = (0..4).map(|i| purchase(2_000 + i, i, 7)).collect();
            server.post("/events", "application/x-ndjson", jsonl(&after));
            sent.extend(after);
            server.declare(2_100);
            sink_folds_to(&file, &oracle(&sent)["customer_spend"]);
        }
        server.kill();
        match broken {
            Break::TornSink => {
                let text = std::fs::read_to_string(&file).expect("the sink file");
                let lines: Vec<&str> = text.lines().collect();
                let kept = lines.len() - 4;
                let mut cut: String = lines[..kept].iter().map(|l| format!("{l}\n")).collect();
                cut.push_str(&lines[kept][..lines[kept].len() / 2]);
                std::fs::write(&file, cut).expect("torn");
            }
            Break::NoJournal => {
                std::fs::remove_file(data.join("changelog.log")).expect("the journal");
            }
            Break::Kill | Break::AfterCheckpoint => {}
        }

        let server = Server::start(&data, free_port(), &args, true);
        let later: Vec<Order> = (0..5).map(|i| purchase(3_000 + i, i + 2, 9)).collect();
        server.post("/events", "application/x-ndjson", jsonl(&later));
        sent.extend(later);
        server.declare(3_100);
        sink_folds_to(&file, &oracle(&sent)["customer_spend"]);
        let stale = std::fs::read_dir(&sinks)
            .expect("the sink dir")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".stale"));
        assert_eq!(
            stale,
            matches!(broken, Break::NoJournal),
            "{broken:?}: a file is moved aside only when what followed it is unknown"
        );
        server.kill();
    }
}

/// A pipeline with one windowed view whose rows are final at the window's end.
struct Minutes;

impl Pipeline for Minutes {
    type Event = Order;

    fn build<'s>(
        &self,
        events: differential_dataflow::VecCollection<'s, Time, Order>,
        views: &mut Views<'s>,
    ) {
        let minutes = views.register(
            "per_minute",
            "events per minute",
            events.explode(|o| Some(((o.ts - o.ts % 60_000, ()), Sums([1])))),
            |_, values| values.first().map(|(_, s)| serde_json::json!(s.0[0])),
        );
        minutes.final_after(|start| start + 60_000);
    }
}

/// Window finality: a window's row is emitted once, when the watermark passes its end, and
/// again only when a late event corrects it (as a retraction and the corrected row).
#[test]
fn windows_are_emitted_once_final_and_then_only_corrected() {
    let settings = Settings {
        changelog: true,
        allowed_lateness: Duration::ZERO,
        ..Settings::default()
    };
    let mut engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(Vec::new())),
        Minutes,
    )
    .expect("engine starts");
    let mut changes = engine
        .changelog()
        .subscribe("per_minute")
        .expect("subscribed");
    let live = engine.live().expect("live");
    engine.end_live();
    support::five_minutes_and_two_late(&live);
    drop(live);
    let client = engine.client();
    let last = client
        .query_final(Query::all("per_minute"))
        .expect("answered");
    drop(client);
    engine.join().expect("workers finish");

    let mut emitted: BTreeMap<String, Vec<(i8, Value, u64)>> = BTreeMap::new();
    let mut rows = BTreeMap::new();
    while let Ok(batch) = changes.try_recv() {
        for change in &batch.changes {
            fold(&mut rows, change);
            emitted.entry(change.key.clone()).or_default().push((
                change.diff,
                change.value.clone(),
                change.time,
            ));
        }
    }
    assert_eq!(Value::Object(rows.into_iter().collect()), last.to_json());
    for minute in 0..5u64 {
        let key = (minute * 60_000).to_string();
        let history = &emitted[&key];
        let end = (minute + 1) * 60_000;
        assert!(
            history.iter().all(|(_, _, t)| *t + 1 >= end),
            "minute {minute} is emitted only once final: {history:?}"
        );
        let expected: Vec<(i8, Value)> = match minute {
            1 | 4 => vec![
                (1, Value::from(60)),
                (-1, Value::from(60)),
                (1, Value::from(61)),
            ],
            _ => vec![(1, Value::from(60))],
        };
        let got: Vec<(i8, Value)> = history.iter().map(|(d, v, _)| (*d, v.clone())).collect();
        assert_eq!(got, expected, "minute {minute}");
    }
}

#[test]
fn subscriptions_need_changelogs_switched_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), free_port(), &[], true);
    let (status, answer) = server.get("/subscribe/customer_spend");
    assert_eq!(status, 503);
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("error")
            .contains("--changelog")
    );
}
