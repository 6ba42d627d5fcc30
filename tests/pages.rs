//! Whole-view reads that scale: pages in key order that together are exactly the view as of one
//! time, even while live events change it between pages; cursors that expire; the whole view
//! streamed over HTTP in pages; malformed keys and cursors refused.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::prelude::*;
use serde_json::{Map, Value};
use support::oracle;
use support::server::{Server, free_port};

fn purchase(ts: u64, customer: u64, amount: u64) -> Order {
    Order {
        ts,
        kind: Kind::Purchase,
        customer,
        product: customer % 7,
        amount_cents: amount,
        amount_missing: false,
    }
}

fn rows_of(answer: &Answer) -> Vec<(String, Value)> {
    match &answer.value {
        AnswerValue::Rows(rows) => rows.render(),
        other => panic!("expected rows, got {other:?}"),
    }
}

/// Pages of every size, read while live events keep changing the view, are the view as of the
/// first page's time: no key twice, none missing, in key order.
#[test]
fn pages_are_one_consistent_scan_while_the_view_changes() {
    let history: Vec<Order> = (0..300).map(|c| purchase(1_000 + c, c, 100 + c)).collect();
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        idle_timeout: None,
        ..Settings::default()
    };
    for workers in [1, 3] {
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            settings.clone(),
            History::Events(Arc::new(history.clone())),
            Ecommerce,
        )
        .expect("engine starts");
        let live = engine.live().expect("live");
        engine.end_live();
        let client = engine.client();
        let as_of = live.watermark(10_000).expect("declared");
        let mut sent: Vec<Order> = Vec::new();
        for limit in [1, 7, 100, 300, 5_000] {
            let mut answer = client
                .query(Query::page("customer_spend", None, limit), Some(as_of))
                .expect("answered");
            let scan_as_of = answer.as_of;
            let before: Vec<Order> = history
                .iter()
                .chain(&sent)
                .filter(|e| e.ts < scan_as_of)
                .cloned()
                .collect();
            let expected = oracle(&before)["customer_spend"].clone();
            let mut all: Vec<(String, Value)> = Vec::new();
            let mut pages = 0;
            let mut ts = 20_000 + limit as u64 * 10_000;
            loop {
                let rows = rows_of(&answer);
                assert!(rows.len() <= limit);
                assert_eq!(answer.as_of, scan_as_of, "every page as of the same time");
                all.extend(rows);
                pages += 1;
                // The view changes between pages: every customer spends more.
                let more: Vec<Order> = (0..300).map(|c| purchase(ts, c, 1)).collect();
                live.send_batch(more.clone()).expect("sent");
                sent.extend(more);
                ts += 1;
                live.watermark(ts).expect("declared");
                let Some(next) = answer.next.clone() else {
                    break;
                };
                answer = client
                    .ask_exactly_wait(Query::page("customer_spend", Some(next), limit), scan_as_of)
                    .expect("answered");
            }
            // A full last page says there may be more; the page after it is empty.
            assert_eq!(pages, 300 / limit + 1, "pages of {limit}");
            let keys: Vec<u64> = all.iter().map(|(k, _)| k.parse().expect("key")).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(keys, sorted, "key order, no key twice (pages of {limit})");
            let got = Value::Object(all.into_iter().collect::<Map<_, _>>());
            // Exactly the view as of the scan's time, none of the events sent during the scan.
            assert!(got == expected, "pages of {limit} with {workers} workers");
        }
        drop((live, client));
        engine.join().expect("workers finish");
    }
}

/// A cursor whose time the view has since let go of is refused, not answered wrongly.
#[test]
fn a_cursor_expires_after_the_hold() {
    let history: Vec<Order> = (0..50).map(|c| purchase(1_000 + c, c, 100)).collect();
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        idle_timeout: None,
        page_hold: Duration::from_millis(200),
        ..Settings::default()
    };
    let mut engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(history)),
        Ecommerce,
    )
    .expect("engine starts");
    let live = engine.live().expect("live");
    engine.end_live();
    let client = engine.client();
    let as_of = live.watermark(5_000).expect("declared");
    let first = client
        .query(Query::page("customer_spend", None, 10), Some(as_of))
        .expect("answered");
    let next = first.next.clone().expect("more pages");
    // Within the hold the next page reads the same time, whatever happens meanwhile.
    live.send(purchase(6_000, 1, 5)).expect("sent");
    live.watermark(7_000).expect("declared");
    let second = client
        .ask_exactly_wait(
            Query::page("customer_spend", Some(next.clone()), 10),
            first.as_of,
        )
        .expect("answered");
    assert_eq!(second.as_of, first.as_of);
    assert!(matches!(second.value, AnswerValue::Rows(_)));
    // After the hold, and once the view has compacted past that time, the cursor expired.
    std::thread::sleep(Duration::from_millis(400));
    live.send(purchase(8_000, 2, 5)).expect("sent");
    live.watermark(9_000).expect("declared");
    client
        .query(Query::all("customer_spend"), Some(9_000))
        .expect("answered");
    let late = client
        .ask_exactly_wait(Query::page("customer_spend", Some(next), 10), first.as_of)
        .expect("answered");
    assert_eq!(late.value, AnswerValue::Expired);
    drop((live, client));
    engine.join().expect("workers finish");
}

/// A key that cannot be a key of the view is told apart from a key without a row.
#[test]
fn malformed_keys_are_not_missing_rows() {
    let mut engine = Engine::start(
        &Cluster::threads(2),
        Settings::default(),
        History::Events(Arc::new(vec![purchase(1_000, 7, 100)])),
        Ecommerce,
    )
    .expect("engine starts");
    engine.end_live();
    let client = engine.client();
    let bad = client
        .query_final(Query::key("customer_spend", "seven"))
        .expect("answered");
    assert_eq!(bad.value, AnswerValue::BadKey("seven".into()));
    let missing = client
        .query_final(Query::key("customer_spend", "8"))
        .expect("answered");
    assert!(matches!(
        missing.value,
        AnswerValue::Row { value: None, .. }
    ));
    let bad_day = client
        .query_final(Query::key("revenue_by_day", "2026-13-45"))
        .expect("answered");
    assert!(matches!(bad_day.value, AnswerValue::BadKey(_)));
    drop(client);
    engine.join().expect("workers finish");
}

fn page(server: &Server, path: &str) -> (u16, Value) {
    server.get(path)
}

/// Over HTTP: `?limit=&after=` pages with `next`, the whole view streamed (as one JSON object
/// and as JSON Lines) equal to the pages, and clear errors for bad input.
#[test]
fn pages_and_streams_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &[
            "-w",
            "2",
            "--allowed-lateness",
            "0s",
            "--idle-timeout",
            "off",
        ],
        true,
    );
    let events: Vec<Order> = (0..25_123)
        .map(|c| purchase(1_000 + c % 1_000, c, 10 + c % 91))
        .collect();
    for chunk in events.chunks(5_000) {
        let (status, _) = server.post("/events", "application/x-ndjson", support::jsonl(chunk));
        assert_eq!(status, 200);
    }
    let visible = server.declare(3_000);
    let expected = oracle(&events)["customer_spend"].clone();

    let mut all = Map::new();
    let mut path = format!("/views/customer_spend?limit=4000&as_of={visible}");
    let mut as_of = None;
    let mut pages = 0;
    loop {
        let (status, answer) = page(&server, &path);
        assert_eq!(status, 200, "{answer}");
        assert!(answer["rows"].as_array().expect("rows").len() <= 4000);
        assert!(
            as_of.is_none_or(|a| a == answer["as_of"]),
            "one scan, one time"
        );
        as_of = Some(answer["as_of"].clone());
        for row in answer["rows"].as_array().expect("rows") {
            let key = row["key"].as_str().expect("key").to_string();
            assert!(
                all.insert(key, row["value"].clone()).is_none(),
                "no key twice"
            );
        }
        pages += 1;
        match answer["next"].as_str() {
            Some(next) => path = format!("/views/customer_spend?limit=4000&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 7);
    assert_eq!(Value::Object(all), expected, "the pages make the view");

    // The whole view, streamed in pages of 10 000 rows behind the scenes.
    let (status, whole) = server.get(&format!("/views/customer_spend?as_of={visible}"));
    assert_eq!(status, 200);
    let rows: Map<String, Value> = whole["rows"]
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
    assert_eq!(Value::Object(rows), expected);
    let lines = server
        .http
        .get(server.url(&format!("/views/customer_spend?as_of={visible}")))
        .header("accept", "application/x-ndjson")
        .send()
        .expect("answered");
    assert_eq!(lines.status().as_u16(), 200);
    assert_eq!(
        lines.headers()["content-type"].to_str().ok(),
        Some("application/x-ndjson")
    );
    let text = lines.text().expect("text");
    let rows: Map<String, Value> = text
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).expect("a JSON line");
            (
                row["key"].as_str().expect("key").to_string(),
                row["value"].clone(),
            )
        })
        .collect();
    assert_eq!(Value::Object(rows), expected);

    for (path, status, code) in [
        ("/views/customer_spend/seven", 400, "bad_key"),
        ("/views/customer_spend?limit=0", 400, "bad_limit"),
        (
            "/views/customer_spend?limit=10&after=nope",
            400,
            "bad_cursor",
        ),
        (
            "/views/customer_spend?limit=10&after=5.zz",
            400,
            "bad_cursor",
        ),
        ("/views/revenue_by_day/yesterday", 400, "bad_key"),
    ] {
        let (got, answer) = server.get(path);
        assert_eq!(got, status, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path}");
    }
}
