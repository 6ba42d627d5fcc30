//! Subscriptions that fold: a subscriber's snapshot plus the changes after it is the view, for
//! keyed, windowed and ranked views; a reconnect with `Last-Event-ID` resumes with no gap and
//! no duplicate, across a `kill -9` too; and a server with subscribers shuts down promptly.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::time::{Duration, Instant};

use lambdaflow::ecommerce::{Kind, Order};
use serde_json::Value;
use support::server::{Server, free_port};
use support::{jsonl, oracle};

/// Reads Server-Sent Events: (event, id, data).
struct Events {
    lines: Lines<BufReader<reqwest::blocking::Response>>,
}

impl Events {
    fn open(server: &Server, path: &str, last_id: Option<&str>) -> Events {
        let mut request = server
            .http
            .get(server.url(path))
            .timeout(Duration::from_secs(60));
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().expect("subscribed");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        Events {
            lines: BufReader::new(response).lines(),
        }
    }

    fn next(&mut self) -> (String, Option<String>, Value) {
        let (mut event, mut id, mut data) = (String::from("message"), None, None);
        loop {
            let line = self.lines.next().expect("more events").expect("readable");
            if line.is_empty() {
                if let Some(data) = data.take() {
                    return (event, id, data);
                }
                continue;
            }
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.to_string());
            } else if let Some(text) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(text).expect("JSON data"));
            }
        }
    }
}

/// Folds a change into rows strictly: a retraction retracts what is there, an insertion comes
/// after a retraction (or into a new key).
fn fold(rows: &mut BTreeMap<String, Value>, change: &Value) {
    let key = change["key"].as_str().expect("key").to_string();
    if change["diff"].as_i64() == Some(-1) {
        assert_eq!(
            rows.remove(&key).as_ref(),
            Some(&change["value"]),
            "a retraction retracts what the subscriber holds: {change}"
        );
    } else {
        assert!(
            rows.insert(key, change["value"].clone()).is_none(),
            "an insertion follows a retraction: {change}"
        );
    }
}

fn snapshot_rows(snapshot: &Value) -> BTreeMap<String, Value> {
    snapshot["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("key").to_string(),
                r["value"].clone(),
            )
        })
        .collect()
}

fn view_rows(server: &Server, view: &str, as_of: u64) -> BTreeMap<String, Value> {
    let (status, answer) = server.get(&format!("/views/{view}?as_of={as_of}"));
    assert_eq!(status, 200);
    snapshot_rows(&answer)
}

/// Folds changes until the rows equal `want`.
fn fold_until(
    events: &mut Events,
    rows: &mut BTreeMap<String, Value>,
    want: &BTreeMap<String, Value>,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while rows != want {
        assert!(
            Instant::now() < deadline,
            "never folded: {rows:?} / {want:?}"
        );
        let (event, id, data) = events.next();
        assert_eq!(event, "change", "{data}");
        fold(rows, &data);
        if id.is_some() {
            last = id;
        }
    }
    last
}

fn order(ts: u64, kind: Kind, customer: u64, product: u64, amount: u64) -> Order {
    Order {
        ts,
        kind,
        customer,
        product,
        amount_cents: amount,
        amount_missing: false,
    }
}

/// A purchase of product 1.
fn buy(ts: u64, customer: u64, amount: u64) -> Order {
    order(ts, Kind::Purchase, customer, 1, amount)
}

/// Ten purchases by three customers, posted and visible: the events and the time they are
/// visible as of.
fn first_purchases(server: &Server) -> (Vec<Order>, u64) {
    let sent: Vec<Order> = (0..10).map(|i| buy(1_000 + i, i % 3, 100)).collect();
    server.post("/events", "application/x-ndjson", jsonl(&sent));
    (sent, server.declare(2_000))
}

fn start(dir: &std::path::Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &std::path::Path, more: &[&str]) -> Server {
    let mut args = vec![
        "-w",
        "2",
        "--changelog",
        "--allowed-lateness",
        "0s",
        "--idle-timeout",
        "off",
    ];
    args.extend(more);
    Server::start(dir, free_port(), &args, true)
}

/// A windowed view's snapshot holds the rows of windows still open; each is retracted just
/// before its final value is told, so snapshot plus changes folds to the view.
#[test]
fn windowed_snapshots_are_reconciled_when_their_windows_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let minute = 60_000;
    let base = 100 * minute;
    let early: Vec<Order> = (0..30)
        .map(|i| order(base + i * 4_000, Kind::View, i, i % 3, 0))
        .collect();
    server.post("/events", "application/x-ndjson", jsonl(&early));
    // The first minute is final, the second still open.
    let visible = server.declare(base + minute + 30_000);
    let mut events = Events::open(
        &server,
        &format!("/subscribe/events_per_minute?as_of={visible}"),
        None,
    );
    let (kind, _, snapshot) = events.next();
    assert_eq!(kind, "snapshot");
    let mut rows = snapshot_rows(&snapshot);
    assert!(
        rows.contains_key(&(base + minute).to_string()),
        "the open window is in the snapshot"
    );
    let late: Vec<Order> = (0..10)
        .map(|i| order(base + minute + 31_000 + i * 1_000, Kind::Purchase, i, 1, 5))
        .collect();
    server.post("/events", "application/x-ndjson", jsonl(&late));
    let visible = server.declare(base + 3 * minute);
    let want = view_rows(&server, "events_per_minute", visible);
    let mut all = early.clone();
    all.extend(late);
    assert_eq!(
        serde_json::to_value(&want).expect("json"),
        oracle(&all)["events_per_minute"]
    );
    fold_until(&mut events, &mut rows, &want);
}

/// A subscriber that drops and reconnects with the id of the last event it saw gets exactly the
/// changes after it.
#[test]
fn last_event_id_resumes_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let (mut sent, visible) = first_purchases(&server);
    let mut events = Events::open(
        &server,
        &format!("/subscribe/customer_spend?as_of={visible}"),
        None,
    );
    let (_, id, snapshot) = events.next();
    let mut rows = snapshot_rows(&snapshot);
    let mut last = id.expect("the snapshot has an id");
    for round in 0..3u64 {
        let more: Vec<Order> = (0..8)
            .map(|i| buy(3_000 + round * 1_000 + i, i % 5, 7))
            .collect();
        server.post("/events", "application/x-ndjson", jsonl(&more));
        sent.extend(more);
        let visible = server.declare(4_000 + round * 1_000);
        let want = view_rows(&server, "customer_spend", visible);
        if let Some(id) = fold_until(&mut events, &mut rows, &want) {
            last = id;
        }
        // Drop the connection, post more, and reconnect from the last id seen.
        drop(events);
        let gap: Vec<Order> = (0..5)
            .map(|i| buy(4_500 + round * 1_000 + i, 10 + i, 3))
            .collect();
        server.post("/events", "application/x-ndjson", jsonl(&gap));
        sent.extend(gap);
        events = Events::open(&server, "/subscribe/customer_spend", Some(&last));
    }
    let visible = server.declare(10_000);
    let want = view_rows(&server, "customer_spend", visible);
    assert_eq!(
        serde_json::to_value(&want).expect("json"),
        oracle(&sent)["customer_spend"]
    );
    fold_until(&mut events, &mut rows, &want);
}

/// Subscribes to `customer_spend` as of `visible`, folds its changes until they hold the view
/// as of `until` (after `more` is posted), and returns the id of the last event seen.
fn follow(
    server: &Server,
    sent: &mut Vec<Order>,
    visible: u64,
    more: Vec<Order>,
    until: u64,
) -> (BTreeMap<String, Value>, String) {
    let mut events = Events::open(
        server,
        &format!("/subscribe/customer_spend?as_of={visible}"),
        None,
    );
    let (_, id, snapshot) = events.next();
    let mut rows = snapshot_rows(&snapshot);
    server.post("/events", "application/x-ndjson", jsonl(&more));
    sent.extend(more);
    let visible = server.declare(until);
    let want = view_rows(server, "customer_spend", visible);
    let last = fold_until(&mut events, &mut rows, &want)
        .or(id)
        .expect("an id");
    (rows, last)
}

/// How a restart in [`an_id_from_before_a_kill_resumes_exactly`] is made.
#[derive(Clone, Copy, Debug)]
enum Restart {
    /// A full replay of the master dataset, in one time.
    Replay,
    /// From a checkpoint taken before the kill.
    Checkpoint,
    /// A full replay at coarse times (one per second of event time), some after the last
    /// change the subscriber saw.
    Coarse,
    /// A full replay after the journal lost its tail (cut just after the first frontier past
    /// the subscriber's last change, as a torn write would).
    TornJournal,
}

/// Cuts the changelog journal in `dir` just after its first frontier of `customer_spend`
/// past `time`: the records are `len (u32) | crc32c (u32) | JSON`.
fn tear_journal(dir: &std::path::Path, time: u64) {
    let path = dir.join("changelog.log");
    let bytes = std::fs::read(&path).expect("the journal");
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let record: Value = serde_json::from_slice(&bytes[at + 8..at + 8 + len]).expect("JSON");
        at += 8 + len;
        let frontier = &record["Frontier"];
        if frontier["view"] == "customer_spend" && frontier["time"].as_u64() > Some(time) {
            // A few bytes of the next record, torn.
            let end = (at + 5).min(bytes.len());
            std::fs::write(&path, &bytes[..end]).expect("torn");
            return;
        }
    }
    panic!("no frontier past {time} in the journal");
}

/// A subscriber that saw changes before the server was killed (`kill -9`) resumes after it
/// with the id of the last one: the changes it missed, those of the events the dead server
/// took after it left and those after the restart, each once, with no gap (the fold is
/// strict), whether the restart replays the whole master dataset (in one time or at coarse
/// times), restores a checkpoint, or finds the journal's tail torn.
#[test]
fn an_id_from_before_a_kill_resumes_exactly() {
    for restart in [
        Restart::Replay,
        Restart::Checkpoint,
        Restart::Coarse,
        Restart::TornJournal,
    ] {
        eprintln!("restart: {restart:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let coarse = ["--history-granularity", "1s"];
        let args: &[&str] = match restart {
            Restart::Coarse => &coarse,
            _ => &[],
        };
        let server = start_with(dir.path(), args);
        let (mut sent, visible) = first_purchases(&server);
        let more = (0..8).map(|i| buy(3_000 + i, i % 5, 7)).collect();
        let (mut rows, last) = follow(&server, &mut sent, visible, more, 4_000);
        // Changes the subscriber does not see before the kill, one time each.
        for i in 0..6 {
            let unseen = vec![buy(4_500 + i, 2 + i % 4, 13)];
            server.post("/events", "application/x-ndjson", jsonl(&unseen));
            sent.extend(unseen);
            server.declare(4_501 + i);
        }
        server.declare(5_000);
        if let Restart::Checkpoint = restart {
            let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
            assert_eq!(status, 200, "{taken}");
            let after: Vec<Order> = (0..3).map(|i| buy(5_500 + i, 1 + i, 5)).collect();
            server.post("/events", "application/x-ndjson", jsonl(&after));
            sent.extend(after);
            server.declare(6_000);
        }
        server.kill();
        if let Restart::TornJournal = restart {
            let (time, _) = last.split_once('-').expect("an id is time-index");
            tear_journal(dir.path(), time.parse().expect("a time"));
        }

        let server = start_with(dir.path(), args);
        let later: Vec<Order> = (0..4).map(|i| buy(7_000 + i, i, 11)).collect();
        server.post("/events", "application/x-ndjson", jsonl(&later));
        sent.extend(later);
        let visible = server.declare(8_000);
        let want = view_rows(&server, "customer_spend", visible);
        assert_eq!(
            serde_json::to_value(&want).expect("json"),
            oracle(&sent)["customer_spend"],
            "{restart:?}"
        );
        let mut events = Events::open(&server, "/subscribe/customer_spend", Some(&last));
        fold_until(&mut events, &mut rows, &want);
    }
}

/// Without the journal of what subscribers were told (a run with changelogs off removes it,
/// rather than leave it behind the master), a restarted server cannot resume from an id before
/// its replay's end: it says so (410), never handing the replay's batches over as if they
/// followed that id; one subscribing again folds to the view.
#[test]
fn an_id_the_journal_does_not_hold_is_refused_not_misread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let (mut sent, visible) = first_purchases(&server);
    let more = (0..8).map(|i| buy(3_000 + i, i % 5, 7)).collect();
    let (_, last) = follow(&server, &mut sent, visible, more, 4_000);
    server.kill();
    let journal = dir.path().join("changelog.log");
    assert!(journal.exists(), "the journal is there");
    let without = [
        "-w",
        "2",
        "--allowed-lateness",
        "0s",
        "--idle-timeout",
        "off",
    ];
    Server::start(dir.path(), free_port(), &without, true).kill();
    assert!(
        !journal.exists(),
        "a run without changelogs removes their journal"
    );

    let server = start(dir.path());
    let response = server
        .http
        .get(server.url("/subscribe/customer_spend"))
        .header("last-event-id", &last)
        .send()
        .expect("answered");
    assert_eq!(response.status().as_u16(), 410);
    let body: Value = response.json().expect("JSON");
    assert_eq!(body["error"]["code"], "changelog_restarted", "{body}");

    let mut events = Events::open(&server, "/subscribe/customer_spend", None);
    let (kind, _, snapshot) = events.next();
    assert_eq!(kind, "snapshot");
    let mut rows = snapshot_rows(&snapshot);
    let late: Vec<Order> = (0..4).map(|i| buy(5_000 + i, i, 11)).collect();
    server.post("/events", "application/x-ndjson", jsonl(&late));
    sent.extend(late);
    let visible = server.declare(6_000);
    let want = view_rows(&server, "customer_spend", visible);
    assert_eq!(
        serde_json::to_value(&want).expect("json"),
        oracle(&sent)["customer_spend"]
    );
    fold_until(&mut events, &mut rows, &want);
}

/// A sale of `product` by customer 1.
fn sale(ts: u64, product: u64, amount: u64) -> Order {
    order(ts, Kind::Purchase, 1, product, amount)
}

/// Twelve sales of products 0-11, visible, and a subscription to `top_products` as of them:
/// the sales, the subscription, and its snapshot's id and rows.
fn opening_sales(server: &Server) -> (Vec<Order>, Events, Option<String>, BTreeMap<String, Value>) {
    let sent: Vec<Order> = (0..12).map(|p| sale(1_000 + p, p, 100 + p)).collect();
    server.post("/events", "application/x-ndjson", jsonl(&sent));
    let visible = server.declare(2_000);
    let mut events = Events::open(
        server,
        &format!("/subscribe/top_products?as_of={visible}"),
        None,
    );
    let (kind, id, snapshot) = events.next();
    assert_eq!(kind, "snapshot");
    let rows = snapshot_rows(&snapshot);
    (sent, events, id, rows)
}

/// A ranked view can be subscribed to: its rows are ranks, and they fold to the ranking.
#[test]
fn a_ranking_can_be_subscribed_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let (mut sent, mut events, _, mut rows) = opening_sales(&server);
    let mut visible = 0;
    for round in 0..3u64 {
        let more: Vec<Order> = (0..4)
            .map(|i| {
                sale(
                    3_000 + round * 100 + i,
                    20 + (round * 4 + i) % 7,
                    50 * (round + 1) * (i + 1),
                )
            })
            .collect();
        server.post("/events", "application/x-ndjson", jsonl(&more));
        sent.extend(more);
        visible = server.declare(3_050 + round * 100);
    }
    let (_, served) = server.get(&format!("/views/top_products?as_of={visible}"));
    assert_eq!(served["rows"], oracle(&sent)["top_products"]);
    fold_until(&mut events, &mut rows, &ranks(&sent));
    // An id past every time is answered with what it is.
    let response = server
        .http
        .get(server.url("/subscribe/top_products"))
        .header("last-event-id", format!("{}-0", u64::MAX))
        .timeout(Duration::from_secs(60))
        .send()
        .expect("answered");
    let status = response.status().as_u16();
    let body: Value = response.json().expect("JSON");
    eprintln!("{status} {body}");
    assert!((400..500).contains(&status), "{status} {body}");
}

/// The ranking `top_products` should hold over `sent`, keyed by rank as a subscriber folds it.
fn ranks(sent: &[Order]) -> BTreeMap<String, Value> {
    oracle(sent)["top_products"]
        .as_array()
        .expect("a ranking")
        .iter()
        .enumerate()
        .map(|(i, entry)| ((i + 1).to_string(), entry.clone()))
        .collect()
}

/// A subscriber to a ranked view resumes across a `kill -9` too: from the ranking it was last
/// told (which the restarted server's arrangement no longer holds, but its journal does), with
/// each change of rank after it told once, whether the restart replays the master dataset or
/// restores a checkpoint.
#[test]
fn a_ranked_id_from_before_a_kill_resumes_exactly() {
    for restart in [Restart::Replay, Restart::Checkpoint] {
        eprintln!("restart: {restart:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start(dir.path());
        let (mut sent, mut events, id, mut rows) = opening_sales(&server);
        let mut last = id.expect("the snapshot has an id");
        for round in 0..2u64 {
            let more: Vec<Order> = (0..4)
                .map(|i| sale(3_000 + round * 100 + i, 20 + round * 4 + i, 60 * (i + 1)))
                .collect();
            server.post("/events", "application/x-ndjson", jsonl(&more));
            sent.extend(more);
            server.declare(3_050 + round * 100);
            if let Some(id) = fold_until(&mut events, &mut rows, &ranks(&sent)) {
                last = id;
            }
        }
        drop(events);
        // Rank changes the subscriber does not see before the kill.
        for i in 0..4u64 {
            let unseen = vec![sale(4_000 + i, 30 + i, 150 + 10 * i)];
            server.post("/events", "application/x-ndjson", jsonl(&unseen));
            sent.extend(unseen);
            server.declare(4_001 + i);
        }
        if let Restart::Checkpoint = restart {
            let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
            assert_eq!(status, 200, "{taken}");
            let after = vec![sale(5_000, 2, 400)];
            server.post("/events", "application/x-ndjson", jsonl(&after));
            sent.extend(after);
            server.declare(5_001);
        }
        server.kill();

        let server = start(dir.path());
        let later: Vec<Order> = (0..3)
            .map(|i| sale(6_000 + i, 40 + i, 90 * (i + 1)))
            .collect();
        server.post("/events", "application/x-ndjson", jsonl(&later));
        sent.extend(later);
        let visible = server.declare(7_000);
        let want = ranks(&sent);
        let (_, served) = server.get(&format!("/views/top_products?as_of={visible}"));
        assert_eq!(served["rows"], oracle(&sent)["top_products"], "{restart:?}");
        let mut events = Events::open(&server, "/subscribe/top_products", Some(&last));
        fold_until(&mut events, &mut rows, &want);
    }
}

/// SIGTERM stops a server with subscribers connected within two seconds.
#[test]
fn sigterm_ends_subscriptions_and_the_server_promptly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    server.post(
        "/events",
        "application/x-ndjson",
        jsonl(&[order(1_000, Kind::Purchase, 1, 1, 10)]),
    );
    let mut subscribers: Vec<Events> = (0..3)
        .map(|_| Events::open(&server, "/subscribe/customer_spend", None))
        .collect();
    for s in &mut subscribers {
        let (kind, _, _) = s.next();
        assert_eq!(kind, "snapshot");
    }
    let pid = server.child.id();
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exited = loop {
        if let Some(status) = server.child.try_wait().expect("waits") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never stopped");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    assert!(exited.success(), "{exited}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
