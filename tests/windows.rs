//! Windows over event time: the windowed views of the reference pipeline (`customer_sessions`,
//! `revenue_5min_sliding`), read through the serving operator, equal a naive recomputation for
//! every worker count, split between the lanes, arrival order and lateness; and the window
//! functions' edge cases.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lambdaflow::ecommerce::{EcommerceWithWindows, Kind, Order};
use lambdaflow::prelude::*;
use lambdaflow::window::{self, Session, WindowError};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::{golden, read_orders};

const MINUTE: u64 = 60_000;
const WINDOWED: [&str; 2] = ["customer_sessions", "revenue_5min_sliding"];

/// Per customer, the sessions of all their events: sorted times, a new session whenever the
/// next time is 30 minutes or more after the previous one.
fn sessions_oracle(events: &[Order]) -> Value {
    let mut times: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in events {
        times.entry(e.customer).or_default().push(e.ts);
    }
    let mut rows = serde_json::Map::new();
    for (customer, mut ts) in times {
        ts.sort();
        let mut sessions: Vec<(u64, u64, u64)> = Vec::new();
        let mut previous: Option<u64> = None;
        for t in ts {
            match previous {
                Some(p) if t - p < 30 * MINUTE => {
                    let last = sessions.len() - 1;
                    sessions[last].1 = t;
                    sessions[last].2 += 1;
                }
                _ => sessions.push((t, t, 1)),
            }
            previous = Some(t);
        }
        let list: Vec<Value> = sessions
            .iter()
            .map(|(s, e, n)| json!({"start": s, "end": e, "events": n}))
            .collect();
        rows.insert(customer.to_string(), Value::Array(list));
    }
    Value::Object(rows)
}

/// Net revenue per 5-minute window starting on a whole minute: an event at minute `m` (of the
/// epoch) is in the windows starting at minutes `m - 4 ..= m` that are not before 0.
fn sliding_oracle(events: &[Order]) -> Value {
    let mut windows: BTreeMap<u64, i64> = BTreeMap::new();
    for e in events {
        let net = match e.kind {
            Kind::Purchase => e.amount_cents as i64,
            Kind::Refund => -(e.amount_cents as i64),
            Kind::View => continue,
        };
        let minute = e.ts / MINUTE;
        for back in 0..5 {
            if back <= minute {
                *windows.entry((minute - back) * MINUTE).or_default() += net;
            }
        }
    }
    let rows = windows
        .iter()
        .map(|(start, net)| (start.to_string(), json!(net)))
        .collect();
    Value::Object(rows)
}

fn oracle(events: &[Order]) -> Value {
    json!({"customer_sessions": sessions_oracle(events), "revenue_5min_sliding": sliding_oracle(events)})
}

/// Runs the reference pipeline with `history` through the batch lane and `live` through the
/// speed lane in order, declaring after each live event with `Some(behind)` a watermark that
/// far behind the newest time sent. Returns the windowed views, read once all input ended, and
/// how many live events were late.
fn run(
    workers: usize,
    settings: Settings,
    history: Vec<Order>,
    live: &[(Order, Option<u64>)],
) -> (Value, u64) {
    let mut engine = Engine::start(
        &Cluster::threads(workers),
        settings,
        History::Events(Arc::new(history)),
        EcommerceWithWindows,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    let mut newest = 0;
    for (e, behind) in live {
        sender.send(e.clone()).expect("sent");
        newest = newest.max(e.ts);
        if let Some(behind) = behind {
            sender
                .watermark(newest.saturating_sub(*behind))
                .expect("declared");
        }
    }
    drop(sender);
    let client = engine.client();
    let mut views = serde_json::Map::new();
    for view in WINDOWED {
        let answer = client.query_final(Query::all(view)).expect("answered");
        assert!(answer.is_final());
        views.insert(view.to_string(), answer.to_json());
    }
    drop(client);
    let late = lambdaflow::metrics::Metrics::get(&engine.metrics().late_corrected);
    engine.join().expect("workers finish");
    (Value::Object(views), late)
}

/// Event times that hit window and session boundaries often: whole minutes, the last
/// millisecond of a minute, and anything between, over six hours from time 0.
fn event_time() -> impl Strategy<Value = u64> {
    (
        0u64..360,
        prop_oneof![Just(0u64), Just(MINUTE - 1), 0..MINUTE],
    )
        .prop_map(|(minute, offset)| minute * MINUTE + offset)
}

fn order() -> impl Strategy<Value = Order> {
    (
        event_time(),
        prop_oneof![Just(Kind::Purchase), Just(Kind::Refund), Just(Kind::View)],
        0u64..4,
        0u64..5,
        // coarse amounts, so that nets reach exactly 0
        0u64..4,
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
    prop::collection::vec(order(), 0..80).prop_flat_map(|events| {
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

/// Late events the property test produced, so the test can show it exercised them.
static LATE_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random events, lane split, (late) arrival order, lateness, 1-3 workers: the windowed
    /// views equal the recomputation.
    #[test]
    fn windowed_views_equal_the_recomputation(
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
        let (views, late) = run(workers, settings, history, &live);
        LATE_SEEN.fetch_add(late, std::sync::atomic::Ordering::Relaxed);
        prop_assert_eq!(views, oracle(&events));
    }
}

#[test]
fn the_property_test_produces_late_events() {
    windowed_views_equal_the_recomputation();
    assert!(LATE_SEEN.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

/// The golden dataset (history, then live with its late events), with one and three workers.
#[test]
fn golden_windowed_views() {
    let history = read_orders(&golden("history.jsonl"));
    let live: Vec<(Order, Option<u64>)> = read_orders(&golden("live.jsonl"))
        .into_iter()
        .map(|e| (e, None))
        .collect();
    let mut all = history.clone();
    all.extend(live.iter().map(|(e, _)| e.clone()));
    let expected = oracle(&all);
    for workers in [1, 3] {
        let (views, _) = run(workers, Settings::default(), history.clone(), &live);
        assert_eq!(views, expected, "{workers} workers");
    }
}

/// A late event that falls between two sessions of a customer joins them: an answer before it
/// shows two sessions, an answer after it one, and the sliding windows it falls in change.
#[test]
fn a_late_event_joins_two_sessions() {
    let order = |ts, kind, amount_cents| Order {
        ts,
        kind,
        customer: 7,
        product: 1,
        amount_cents,
        amount_missing: false,
    };
    let history = vec![
        order(10 * MINUTE, Kind::Purchase, 100),
        order(50 * MINUTE, Kind::View, 0),
    ];
    let settings = Settings {
        allowed_lateness: Duration::ZERO,
        tick: Duration::from_millis(1),
        ..Settings::default()
    };
    let mut engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(history)),
        EcommerceWithWindows,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    let client = engine.client();
    let read = |view: &str, as_of: u64| {
        client
            .query(Query::key(view, "7"), Some(as_of))
            .expect("answered")
            .to_json()
    };
    let read_window = |start: u64, as_of: u64| {
        client
            .query(Query::key("revenue_5min_sliding", start), Some(as_of))
            .expect("answered")
            .to_json()
    };

    let before = sender.watermark(2 * 60 * MINUTE).expect("declared");
    assert_eq!(
        read("customer_sessions", before),
        json!([
            {"start": 10 * MINUTE, "end": 10 * MINUTE, "events": 1},
            {"start": 50 * MINUTE, "end": 50 * MINUTE, "events": 1},
        ])
    );
    assert_eq!(read_window(26 * MINUTE, before), Value::Null);

    // 30 minutes late: 20 minutes after the first session and before the second.
    sender
        .send(order(30 * MINUTE, Kind::Refund, 40))
        .expect("sent");
    let after = sender.watermark(2 * 60 * MINUTE).expect("declared");
    assert!(after > before, "the correction is applied at a later time");
    assert_eq!(
        read("customer_sessions", after),
        json!([{"start": 10 * MINUTE, "end": 50 * MINUTE, "events": 3}])
    );
    for start in [26, 27, 28, 29, 30] {
        assert_eq!(
            read_window(start * MINUTE, after),
            json!(-40),
            "window {start}"
        );
    }
    assert_eq!(read_window(25 * MINUTE, after), Value::Null);
    assert_eq!(read_window(31 * MINUTE, after), Value::Null);
    assert_eq!(read_window(10 * MINUTE, after), json!(100));

    drop(sender);
    drop(client);
    engine.join().expect("workers finish");
}

/// `examples/windows.rs` over the golden dataset, as a process: it prints the windowed views
/// and exits.
#[test]
fn the_example_prints_the_windowed_views() {
    let exe = support::binaries::example("windows");
    let live = std::fs::File::open(golden("live.jsonl")).expect("live.jsonl");
    let mut child = std::process::Command::new(exe)
        .arg("--history")
        .arg(golden("history.jsonl"))
        .args(["-w", "2"])
        .stdin(live)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the example runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).map(|_| text)
    });
    // it must exit by itself once stdin ends (a client left alive would keep it running)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example ran for over a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the example failed: {status}");
    let stdout = reader.join().expect("reader").expect("stdout read");
    let printed: Value = serde_json::from_slice(&stdout).expect("one JSON document");
    let mut all = read_orders(&golden("history.jsonl"));
    all.extend(read_orders(&golden("live.jsonl")));
    assert_eq!(printed, oracle(&all));
}

#[test]
fn window_arguments_are_checked() {
    assert_eq!(window::tumbling(0), Err(WindowError::ZeroWidth));
    assert_eq!(window::sliding(0, 1), Err(WindowError::ZeroWidth));
    assert_eq!(window::sliding(5, 0), Err(WindowError::ZeroSlide));
    assert_eq!(
        window::sliding(5 * MINUTE, 2 * MINUTE),
        Err(WindowError::WidthNotMultipleOfSlide {
            width: 5 * MINUTE,
            slide: 2 * MINUTE
        })
    );
    assert_eq!(
        window::sliding(MINUTE, 5 * MINUTE),
        Err(WindowError::WidthNotMultipleOfSlide {
            width: MINUTE,
            slide: 5 * MINUTE
        })
    );
    assert_eq!(window::session(0), Err(WindowError::ZeroGap));
    let message = window::sliding(7, 2).map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("multiple"), "{message}");
    assert!(window::sliding(MINUTE, MINUTE).is_ok());
    assert!(window::tumbling(1).is_ok() && window::session(1).is_ok());
}

#[test]
fn tumbling_boundaries() {
    let w = window::tumbling(MINUTE).expect("valid");
    assert_eq!(w.width(), MINUTE);
    assert_eq!(w.start(0), 0);
    assert_eq!(w.start(1), 0);
    assert_eq!(w.start(MINUTE - 1), 0);
    assert_eq!(w.start(MINUTE), MINUTE);
    assert_eq!(w.start(u64::MAX), u64::MAX - u64::MAX % MINUTE);
    let ms = window::tumbling(1).expect("valid");
    assert_eq!(ms.start(12_345), 12_345);
}

#[test]
fn sliding_boundaries() {
    let starts = |w: &window::Sliding, ts| w.starts(ts).collect::<Vec<u64>>();
    let w = window::sliding(5 * MINUTE, MINUTE).expect("valid");
    assert_eq!((w.width(), w.slide()), (5 * MINUTE, MINUTE));
    // near 0, no window starts before 0
    assert_eq!(starts(&w, 0), [0]);
    assert_eq!(starts(&w, MINUTE - 1), [0]);
    assert_eq!(starts(&w, MINUTE), [0, MINUTE]);
    assert_eq!(
        starts(&w, 4 * MINUTE),
        [0, MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE]
    );
    // a window's end is exclusive: the first millisecond after it is in the next ones only
    assert_eq!(
        starts(&w, 5 * MINUTE),
        [MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE, 5 * MINUTE]
    );
    assert_eq!(
        starts(&w, 5 * MINUTE - 1),
        [0, MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE]
    );
    // width = slide is tumbling
    let t = window::sliding(MINUTE, MINUTE).expect("valid");
    let tumbling = window::tumbling(MINUTE).expect("valid");
    for ts in [0, 1, MINUTE - 1, MINUTE, 7 * MINUTE + 3] {
        assert_eq!(starts(&t, ts), [tumbling.start(ts)]);
    }
    // the largest times do not overflow
    let last = u64::MAX - u64::MAX % MINUTE;
    assert_eq!(starts(&w, u64::MAX).len(), 5);
    assert_eq!(starts(&w, u64::MAX).last(), Some(&last));
}

#[test]
fn session_boundaries() {
    let gap = 30 * MINUTE;
    let s = window::session(gap).expect("valid");
    assert_eq!(s.gap(), gap);
    let session = |start, end, events| Session { start, end, events };
    assert_eq!(s.split([]), []);
    assert_eq!(s.split([(0, 1)]), [session(0, 0, 1)]);
    // one millisecond less than the gap apart joins; exactly the gap apart does not
    assert_eq!(s.split([(0, 1), (gap - 1, 1)]), [session(0, gap - 1, 2)]);
    assert_eq!(
        s.split([(0, 1), (gap, 1)]),
        [session(0, 0, 1), session(gap, gap, 1)]
    );
    // equal times count each; any order; zero counts are left out
    assert_eq!(
        s.split([(gap + 5, 2), (0, 0), (2 * gap, 1), (5, 3)]),
        [session(5, 5, 3), session(gap + 5, 2 * gap, 3)]
    );
    // a chain of events each less than the gap apart is one session however long it lasts
    let chain: Vec<(u64, u64)> = (0..10).map(|i| (i * (gap - 1), 1)).collect();
    assert_eq!(s.split(chain), [session(0, 9 * (gap - 1), 10)]);
    // a gap of 1 ms: only equal times share a session
    let ms = window::session(1).expect("valid");
    assert_eq!(
        ms.split([(3, 1), (3, 1), (4, 1)]),
        [session(3, 3, 2), session(4, 4, 1)]
    );
}
