//! The engine's core invariant, checked against an independent recomputation: every view, read
//! through the serving operator, is the same for every worker count and every split of events
//! between the lanes and every arrival order, and equals the naive fold of all events.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::live::LateDrop;
use lambdaflow::prelude::*;
use proptest::prelude::*;
use serde_json::Value;
use support::{LateModel, golden, oracle, read_orders, run, run_with_watermarks};

#[test]
fn golden_views_for_one_two_and_three_workers() {
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(golden("expected.json")).expect("expected.json"))
            .expect("valid JSON");
    for workers in 1..=3 {
        let views = run(workers, Settings::default(), history.clone(), &live);
        assert_eq!(views, expected, "golden views with {workers} workers");
    }
}

#[test]
fn oracle_agrees_with_golden() {
    // The oracle itself is checked against the independently computed golden views.
    let mut all = read_orders(&golden("history.jsonl"));
    all.extend(read_orders(&golden("live.jsonl")));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(golden("expected.json")).expect("expected.json"))
            .expect("valid JSON");
    assert_eq!(oracle(&all), expected);
}

fn order() -> impl Strategy<Value = Order> {
    (
        0u64..(3 * 86_400_000),
        prop_oneof![Just(Kind::Purchase), Just(Kind::Refund), Just(Kind::View)],
        0u64..6,
        0u64..16,
        // coarse amounts, so that revenues tie and nets reach exactly 0
        0u64..8,
    )
        .prop_map(|(ts, kind, customer, product, amount)| Order {
            ts,
            kind,
            customer,
            product,
            amount_cents: amount * 250,
            amount_missing: false,
        })
}

/// Events, a lane for each (true: history), a shuffled arrival order of the live ones, source
/// watermarks declared after some of them (how far behind the newest event), workers.
type Scenario = (Vec<Order>, Vec<bool>, Vec<usize>, Vec<Option<u64>>, usize);

fn scenario() -> impl Strategy<Value = Scenario> {
    prop::collection::vec(order(), 0..120).prop_flat_map(|events| {
        let n = events.len();
        (
            Just(events),
            prop::collection::vec(any::<bool>(), n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec(prop::option::weighted(0.25, 0u64..3_600_000), n),
            1usize..=3,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random events, random lane split, random (late) arrival order, 1-3 workers, random
    /// batch-lane granularity: every view equals the recomputation.
    #[test]
    fn views_equal_the_recomputation(
        (events, in_history, order, watermarks, workers) in scenario(),
        hourly in any::<bool>(),
        lateness in 0u64..10_000,
    ) {
        let history: Vec<Order> =
            events.iter().zip(&in_history).filter(|(_, h)| **h).map(|(e, _)| e.clone()).collect();
        let live: Vec<(Order, Option<u64>)> = order
            .iter()
            .zip(&watermarks)
            .filter(|(i, _)| !in_history[**i])
            .map(|(i, w)| (events[*i].clone(), *w))
            .collect();
        let settings = Settings {
            allowed_lateness: Duration::from_millis(lateness),
            batch_time: if hourly { BatchTime::Every(3_600_000) } else { BatchTime::Single },
            tick: Duration::from_millis(1),
            ..Settings::default()
        };
        let (views, late) = run_with_watermarks(workers, settings, history, &live);
        LATE_SEEN.fetch_add(late, std::sync::atomic::Ordering::Relaxed);
        prop_assert_eq!(views, oracle(&events));
    }
}

/// Late events the property test produced, so the test can show it exercised them.
static LATE_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[test]
fn the_property_test_produces_late_events() {
    views_equal_the_recomputation();
    assert!(LATE_SEEN.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// Keyed reads go to the worker that owns the key; they agree with the whole-view reads and
/// report a missing (or unparseable) key as no row.
#[test]
fn keyed_queries_agree_with_whole_view() {
    let events = read_orders(&golden("history.jsonl"));
    let expected = oracle(&events);
    for workers in [1, 3] {
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            Settings::default(),
            History::Events(Arc::new(events.clone())),
            Ecommerce,
        )
        .expect("engine starts");
        engine.end_live();
        let client = engine.client();
        for view in [
            "revenue_by_day",
            "product_stats",
            "customer_spend",
            "events_per_minute",
        ] {
            let rows = expected[view].as_object().expect("rows");
            for (key, value) in rows.iter().take(25) {
                let answer = client.query_final(Query::key(view, key)).expect("answered");
                assert_eq!(
                    &answer.to_json(),
                    value,
                    "{view}/{key} with {workers} workers"
                );
            }
            for missing in ["999999999", "not-a-key", "2031-02-30"] {
                let answer = client
                    .query_final(Query::key(view, missing))
                    .expect("answered");
                assert_eq!(answer.to_json(), Value::Null, "{view}/{missing} has no row");
            }
        }
        assert_eq!(
            client.query(Query::all("no_such_view"), None),
            Err(QueryError::UnknownView("no_such_view".into()))
        );
        drop(client);
        engine.join().expect("workers finish");
    }
}

/// An answer is consistent as of its time: with in-order live events it reflects exactly the
/// events before `as_of`, never part of a time.
#[test]
fn answers_are_consistent_as_of_their_time() {
    let day = 86_400_000;
    let history: Vec<Order> = (0..200)
        .map(|i| Order {
            ts: i * 1_000,
            kind: Kind::Purchase,
            customer: i % 7,
            product: i % 5,
            amount_cents: 100 + i,
            amount_missing: false,
        })
        .collect();
    let live: Vec<Order> = (0..2_000)
        .map(|i| Order {
            ts: day + i * 500,
            kind: if i % 9 == 0 {
                Kind::Refund
            } else {
                Kind::Purchase
            },
            customer: i % 11,
            product: i % 13,
            amount_cents: i,
            amount_missing: false,
        })
        .collect();
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        tick: Duration::from_millis(1),
        ..Settings::default()
    };
    let mut engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(history.clone())),
        Ecommerce,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    let client = engine.client();
    let mut checked = 0;
    for (i, e) in live.iter().enumerate() {
        sender.send(e.clone()).expect("sent");
        if i % 400 == 399 {
            let want = e.ts - 10_000;
            let answer = client
                .query(Query::all("customer_spend"), Some(want))
                .expect("answered");
            assert!(answer.as_of >= want);
            let mut seen = history.clone();
            seen.extend(live.iter().filter(|l| l.ts < answer.as_of).cloned());
            assert_eq!(
                answer.to_json(),
                oracle(&seen)["customer_spend"],
                "as of {}",
                answer.as_of
            );
            checked += 1;
        }
    }
    drop(sender);
    assert_eq!(checked, 5);
    drop(client);
    engine.join().expect("workers finish");
}

/// Under the drop policy, late events are counted, handed to the hook and left out; everything
/// else is kept.
#[test]
fn drop_policy_leaves_out_exactly_the_late_events() {
    let on_time: Vec<Order> = (0..3_000u64)
        .map(|i| Order {
            ts: 10 * 3_600_000 + i * 100,
            kind: Kind::Purchase,
            customer: i % 3,
            product: i % 4,
            amount_cents: 10,
            amount_missing: false,
        })
        .collect();
    let late: Vec<Order> = (0..40u64)
        .map(|i| Order {
            ts: 3_600_000 + i,
            kind: Kind::Refund,
            customer: 100 + i,
            product: 1,
            amount_cents: 5,
            amount_missing: false,
        })
        .collect();
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        late_policy: LatePolicy::Drop,
        ..Settings::default()
    };
    let dropped = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = dropped.clone();
    let hooks = lambdaflow::engine::Hooks {
        on_late_drop: Some(Arc::new(move |d: &LateDrop<Order>| {
            seen.lock().expect("lock").push(d.event.clone())
        })),
        ..Default::default()
    };
    let mut engine = Engine::start_with(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(Vec::new())),
        Ecommerce,
        hooks,
    )
    .expect("engine starts");
    let metrics = engine.metrics();
    let sender = engine.live().expect("live input");
    engine.end_live();
    let mut model = LateModel::new(&[], 0, true, None);
    for chunk in on_time.chunks(500) {
        for e in chunk {
            sender.send(e.clone()).expect("sent");
            model.send(e);
        }
        sender.watermark(chunk[0].ts).expect("declared");
        model.declare(chunk[0].ts);
    }
    for e in &late {
        sender.send(e.clone()).expect("sent");
        model.send(e);
    }
    assert_eq!(
        model.dropped, late,
        "the model drops exactly the late events"
    );
    drop(sender);
    let views = support::final_views(&engine.client());
    engine.join().expect("workers finish");
    assert_eq!(
        views,
        oracle(&on_time),
        "the views hold exactly the on-time events"
    );
    let mut dropped = dropped.lock().expect("lock").clone();
    dropped.sort();
    assert_eq!(dropped, late, "the hook heard exactly the late events");
    assert_eq!(
        lambdaflow::metrics::Metrics::get(&metrics.late_dropped),
        late.len() as u64
    );
    assert_eq!(
        lambdaflow::metrics::Metrics::get(&metrics.live_events),
        on_time.len() as u64
    );
}

/// A query for the freshest answer never waits for new events: it reads the last complete
/// time. Replayed history is complete up to its newest event minus the allowed lateness, so a
/// fresh answer reflects exactly the events before its `as_of`; once the idle live input lets
/// the watermark pass the newest event, all of history.
#[test]
fn fresh_queries_are_answered_while_live_input_is_idle() {
    let events = read_orders(&golden("history.jsonl"));
    let newest = events.iter().map(|e| e.ts).max().expect("events");
    let settings = Settings {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Settings::default()
    };
    let engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(events.clone())),
        Ecommerce,
    )
    .expect("engine starts");
    let client = engine.client();
    let (tx, rx) = std::sync::mpsc::channel();
    client
        .ask(
            Query::all("revenue_by_day"),
            None,
            Box::new(move |a| drop(tx.send(a))),
        )
        .expect("asked");
    let answer = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("answered without new events");
    assert!(answer.as_of >= newest - 5_000, "as of {}", answer.as_of);
    let before: Vec<Order> = events
        .iter()
        .filter(|e| e.ts < answer.as_of)
        .cloned()
        .collect();
    assert_eq!(answer.to_json(), oracle(&before)["revenue_by_day"]);
    assert!(!answer.is_final(), "the live input is still open");
    let all = client
        .query(Query::all("revenue_by_day"), Some(newest + 1))
        .expect("answered once idle");
    assert_eq!(all.to_json(), oracle(&events)["revenue_by_day"]);
    drop(client);
    let mut engine = engine;
    engine.end_live();
    engine.join().expect("workers finish");
}

/// History replayed at per-bucket times advances the batch lane as it goes (behind the newest
/// event by the allowed lateness); history further out of order than that is applied at the
/// lane's time. The views are the same as ever.
#[test]
fn progressive_replay_of_disordered_history_keeps_the_views() {
    let mut history: Vec<Order> = (0..200_000u64)
        .map(|i| Order {
            ts: 1_000_000 + i * 37
                - if i % 50 == 7 {
                    3_600_000.min(1_000_000 + i * 37)
                } else {
                    0
                },
            kind: if i % 5 == 0 {
                Kind::Purchase
            } else {
                Kind::View
            },
            customer: i % 101,
            product: i % 13,
            amount_cents: i % 1_000,
            amount_missing: false,
        })
        .collect();
    history.rotate_left(7);
    let expected = oracle(&history);
    // One worker, so that its share spans several replay chunks.
    {
        let workers = 1;
        let settings = Settings {
            batch_time: BatchTime::Every(60_000),
            allowed_lateness: Duration::from_secs(1),
            ..Settings::default()
        };
        assert_eq!(
            run(workers, settings, history.clone(), &[]),
            expected,
            "{workers} workers"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Answers as of a declared watermark `W`, mid-stream: under `correct` they reflect exactly
    /// history and the live events sent so far with `ts < W` (late ones were applied before
    /// `W`); under `drop`, the same without the dropped ones, and the hook heard exactly those.
    #[test]
    fn answers_as_of_a_watermark_equal_the_recomputation(
        (events, in_history, order, watermarks, workers) in scenario(),
        drop_late in any::<bool>(),
    ) {
        let history: Vec<Order> =
            events.iter().zip(&in_history).filter(|(_, h)| **h).map(|(e, _)| e.clone()).collect();
        let dropped = Arc::new(std::sync::Mutex::new(Vec::new()));
        let heard = dropped.clone();
        let hooks = lambdaflow::engine::Hooks {
            on_late_drop: Some(Arc::new(move |d: &LateDrop<Order>| heard.lock().expect("lock").push(d.event.clone()))),
            ..Default::default()
        };
        let settings = Settings {
            // Only declarations move the lanes, so the test knows every lane's time.
            allowed_lateness: Duration::from_secs(1 << 40),
            idle_timeout: None,
            late_policy: if drop_late { LatePolicy::Drop } else { LatePolicy::Correct },
            ..Settings::default()
        };
        let mut engine = Engine::start_with(&Cluster::threads(workers), settings, History::Events(Arc::new(history.clone())), Ecommerce, hooks)
            .expect("engine starts");
        let live = engine.live().expect("live");
        engine.end_live();
        let client = engine.client();
        let mut model = LateModel::new(&history, 1 << 40, drop_late, None);
        let mut newest = 0;
        for (i, behind) in order.iter().zip(&watermarks) {
            if in_history[*i] {
                continue;
            }
            live.send(events[*i].clone()).expect("sent");
            model.send(&events[*i]);
            newest = newest.max(events[*i].ts);
            if let Some(behind) = behind {
                let declared = newest.saturating_sub(*behind);
                let visible = live.watermark(declared).expect("declared");
                model.declare(declared);
                prop_assert!(visible >= model.watermark, "visible from the model's watermark on");
                let answer = client.query(Query::all("customer_spend"), Some(visible)).expect("answered");
                // History the watermark had not passed is as open as live events: both count
                // exactly when their time is before `as_of`.
                let seen: Vec<Order> = history.iter().chain(&model.kept).filter(|e| e.ts < answer.as_of).cloned().collect();
                prop_assert_eq!(answer.to_json(), oracle(&seen)["customer_spend"].clone(), "as of {}", answer.as_of);
            }
        }
        drop((live, client));
        engine.join().expect("workers finish");
        prop_assert_eq!(dropped.lock().expect("lock").clone(), model.dropped.clone(), "the hook heard what the model dropped");
    }
}

/// Many keyed queries answered in one activation, in descending key order and after a
/// whole-view query, each find their row (one cursor serves them all).
#[test]
fn concurrent_keyed_queries_all_find_their_rows() {
    let events = read_orders(&golden("history.jsonl"));
    let expected = oracle(&events);
    let mut engine = Engine::start(
        &Cluster::threads(2),
        Settings::default(),
        History::Events(Arc::new(events)),
        Ecommerce,
    )
    .expect("engine starts");
    engine.end_live();
    let client = engine.client();
    let rows = expected["product_stats"].as_object().expect("rows");
    let mut keys: Vec<u64> = rows.keys().filter_map(|k| k.parse().ok()).collect();
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let (tx, rx) = std::sync::mpsc::channel();
    let all = tx.clone();
    client
        .ask(
            Query::all("product_stats"),
            Some(lambdaflow::event::END_OF_TIME),
            Box::new(move |a| drop(all.send((None, a)))),
        )
        .expect("asked");
    for key in &keys {
        let tx = tx.clone();
        let key = *key;
        client
            .ask(
                Query::key("product_stats", key),
                Some(lambdaflow::event::END_OF_TIME),
                Box::new(move |a| drop(tx.send((Some(key), a)))),
            )
            .expect("asked");
    }
    drop(tx);
    let mut answered = 0;
    for (key, answer) in rx.iter() {
        match key {
            Some(key) => {
                assert_eq!(answer.to_json(), rows[&key.to_string()], "product {key}");
                answered += 1;
            }
            None => assert_eq!(answer.to_json(), expected["product_stats"]),
        }
    }
    assert_eq!(answered, keys.len());
    drop(client);
    engine.join().expect("workers finish");
}

/// A query whose wait is given up is withdrawn inside the dataflow: its reply is never called
/// and nothing of it stays behind.
#[test]
fn withdrawn_queries_leave_nothing_behind() {
    let mut engine = Engine::start(
        &Cluster::threads(2),
        Settings {
            idle_timeout: None,
            ..Settings::default()
        },
        History::Events(Arc::new(read_orders(&golden("history.jsonl")))),
        Ecommerce,
    )
    .expect("engine starts");
    let live = engine.live().expect("live");
    engine.end_live();
    let client = engine.client();
    let metrics = engine.metrics();
    let (tx, rx) = std::sync::mpsc::channel();
    let far = 1 << 50;
    let mut tickets = Vec::new();
    for i in 0..200u64 {
        let tx = tx.clone();
        let query = if i % 2 == 0 {
            Query::all("customer_spend")
        } else {
            Query::key("product_stats", i)
        };
        let ticket = client
            .ask(query, Some(far), Box::new(move |a| drop(tx.send(a))))
            .expect("asked");
        tickets.push(ticket);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics.queries_waiting() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        metrics.queries_waiting(),
        200,
        "the queries wait for their time"
    );
    for ticket in tickets {
        client.cancel(ticket);
    }
    while metrics.queries_waiting() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        metrics.queries_waiting(),
        0,
        "every withdrawn query is gone"
    );
    // Even once their time comes, nobody hears from them.
    live.watermark(far + 1).expect("declared");
    client
        .query(Query::all("customer_spend"), Some(far + 1))
        .expect("a later query is answered");
    drop(tx);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    drop((live, client));
    engine.join().expect("workers finish");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// History replayed at one time per bucket, read mid-stream: every fresh answer reflects
    /// exactly the events (history and live) before its `as_of`, never a bucket in part, and
    /// the final views all of them. (Under `drop`, so that what is kept is the model's.)
    #[test]
    fn bucketed_history_is_read_exactly_mid_stream(
        (events, in_history, order, watermarks, workers) in scenario(),
        bucket in prop_oneof![Just(60_000u64), Just(3_600_000)],
        lateness in prop_oneof![Just(0u64), Just(5_000), Just(3_600_000)],
    ) {
        let history: Vec<Order> =
            events.iter().zip(&in_history).filter(|(_, h)| **h).map(|(e, _)| e.clone()).collect();
        let settings = Settings {
            allowed_lateness: Duration::from_millis(lateness),
            batch_time: BatchTime::Every(bucket),
            late_policy: LatePolicy::Drop,
            idle_timeout: None,
            tick: Duration::from_millis(1),
            ..Settings::default()
        };
        let mut engine = Engine::start(&Cluster::threads(workers), settings, History::Events(Arc::new(history.clone())), Ecommerce)
            .expect("engine starts");
        let live = engine.live().expect("live");
        engine.end_live();
        let client = engine.client();
        let mut model = LateModel::new(&history, lateness, true, None);
        let mut newest = history.iter().map(|e| e.ts).max().unwrap_or(0);
        let check = |answer: &Answer, model: &LateModel| {
            let seen: Vec<Order> = history.iter().chain(&model.kept).filter(|e| e.ts < answer.as_of).cloned().collect();
            (answer.to_json(), oracle(&seen)["customer_spend"].clone())
        };
        let fresh = client.query(Query::all("customer_spend"), None).expect("answered");
        let (got, want) = check(&fresh, &model);
        prop_assert_eq!(got, want, "fresh after the replay, as of {}", fresh.as_of);
        for (i, behind) in order.iter().zip(&watermarks) {
            if in_history[*i] {
                continue;
            }
            live.send(events[*i].clone()).expect("sent");
            model.send(&events[*i]);
            newest = newest.max(events[*i].ts);
            if let Some(behind) = behind {
                let declared = newest.saturating_sub(*behind);
                live.watermark(declared).expect("declared");
                model.declare(declared);
                let answer = client.query(Query::all("customer_spend"), None).expect("answered");
                let (got, want) = check(&answer, &model);
                prop_assert_eq!(got, want, "as of {} (bucket {})", answer.as_of, bucket);
            }
        }
        drop(live);
        let views = support::final_views(&client);
        drop(client);
        engine.join().expect("workers finish");
        let mut all = history.clone();
        all.extend(model.kept.iter().cloned());
        prop_assert_eq!(views, oracle(&all));
    }
}

/// The release hook (the server hands freed memory back to the operating system with it) is
/// called on every worker thread while the views serve, with no event coming.
#[test]
fn every_worker_calls_the_release_hook_while_idle() {
    let threads = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen = threads.clone();
    let hooks = lambdaflow::engine::Hooks {
        release_memory: Some(Arc::new(move || {
            let name = std::thread::current().name().map(str::to_string);
            seen.lock().expect("lock").insert(name);
        })),
        ..Default::default()
    };
    let mut engine = Engine::start_with(
        &Cluster::threads(2),
        Settings::default(),
        History::Events(Arc::new(Vec::new())),
        Ecommerce,
        hooks,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while threads.lock().expect("lock").len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(sender);
    engine.join().expect("workers finish");
    let threads = threads.lock().expect("lock");
    assert_eq!(threads.len(), 2, "called on the threads {threads:?}");
}
