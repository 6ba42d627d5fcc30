//! Shared by the integration tests: an independent, naive recomputation of the reference views
//! (the oracle), and ways to run the engine over in-memory events.

#![allow(dead_code)]

pub mod binaries;
pub mod duckdb;
pub mod ports;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use lambdaflow::ecommerce::{Kind, Order, REFERENCE_VIEWS};
use lambdaflow::prelude::*;
use serde_json::{Value, json};

/// The five reference views folded naively from a list of events, in the shape of
/// `golden/expected.json`.
pub fn oracle(events: &[Order]) -> Value {
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    let mut products: BTreeMap<u64, (i64, i64, i64)> = BTreeMap::new();
    let mut customers: BTreeMap<u64, i64> = BTreeMap::new();
    let mut minutes: BTreeMap<u64, [i64; 3]> = BTreeMap::new();
    for e in events {
        let counts = minutes.entry(e.ts / 60_000 * 60_000).or_default();
        match e.kind {
            Kind::Purchase => counts[0] += 1,
            Kind::Refund => counts[1] += 1,
            Kind::View => counts[2] += 1,
        }
        let net = match e.kind {
            Kind::Purchase => e.amount_cents as i64,
            Kind::Refund => -(e.amount_cents as i64),
            Kind::View => continue,
        };
        *by_day.entry(civil_date(e.ts)).or_default() += net;
        let p = products.entry(e.product).or_default();
        if e.kind == Kind::Purchase {
            p.0 += 1
        } else {
            p.1 += 1
        }
        p.2 += net;
        *customers.entry(e.customer).or_default() += net;
    }
    let mut ranked: Vec<(u64, i64)> = products.iter().map(|(p, s)| (*p, s.2)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(10);
    json!({
        "revenue_by_day": by_day,
        "product_stats": products.iter().map(|(p, s)| (p.to_string(), json!({"purchases": s.0, "refunds": s.1, "revenue_cents": s.2}))).collect::<serde_json::Map<_, _>>(),
        "customer_spend": customers.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "events_per_minute": minutes.iter().map(|(m, c)| (m.to_string(), json!({"purchase": c[0], "refund": c[1], "view": c[2]}))).collect::<serde_json::Map<_, _>>(),
        "top_products": ranked.iter().map(|(p, r)| json!({"product": p, "revenue_cents": r})).collect::<Vec<_>>(),
    })
}

/// `YYYY-MM-DD` of a millisecond time, by Howard Hinnant's civil-from-days algorithm
/// (independent of the date library the engine uses).
pub fn civil_date(ts: u64) -> String {
    let z = (ts / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The reference views of a running engine (those of `REFERENCE.md`), read through the serving
/// operator once all input ended.
pub fn final_views(client: &Client) -> Value {
    let mut views = serde_json::Map::new();
    for view in REFERENCE_VIEWS {
        let answer = client.query_final(Query::all(view)).expect("answered");
        assert!(
            answer.is_final(),
            "a final query is answered as of the end of time"
        );
        views.insert(view.to_string(), answer.to_json());
    }
    Value::Object(views)
}

/// Runs the reference pipeline: `history` through the batch lane, `live` through the speed
/// lane in the given order, and returns the final views.
pub fn run(workers: usize, settings: Settings, history: Vec<Order>, live: &[Order]) -> Value {
    let live: Vec<(Order, Option<u64>)> = live.iter().map(|e| (e.clone(), None)).collect();
    run_with_watermarks(workers, settings, history, &live).0
}

/// Like [`run`], and after each live event with `Some(behind)` the producer declares a watermark
/// `behind` milliseconds before the newest time it sent, so the events after it may be late.
/// Returns the views and how many events the speed lane took as late.
pub fn run_with_watermarks(
    workers: usize,
    settings: Settings,
    history: Vec<Order>,
    live: &[(Order, Option<u64>)],
) -> (Value, u64) {
    let mut engine = Engine::start(
        &Cluster::threads(workers),
        settings,
        History::Events(Arc::new(history)),
        Ecommerce,
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
    let metrics = engine.metrics();
    let views = final_views(&engine.client());
    engine.join().expect("workers finish");
    let late = lambdaflow::metrics::Metrics::get(&metrics.late_corrected);
    (views, late)
}

/// The `rows` of a view's JSON answer (`[{"key", "value"}, ...]`) as one object by key, in the
/// shape of `golden/expected.json`.
pub fn rows(answer: &Value) -> Value {
    Value::Object(
        answer["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().expect("key").to_string(),
                    r["value"].clone(),
                )
            })
            .collect(),
    )
}

/// Events as a JSON Lines body.
pub fn jsonl(events: &[Order]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in events {
        lambdaflow::ecommerce::generate::push_json_line(&mut body, e);
    }
    body
}

/// The golden dataset, copied into the repository (`tests/data/golden`).
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

/// Reads a JSONL file of orders, panicking on any bad line (for trusted test data).
pub fn read_orders(path: &std::path::Path) -> Vec<Order> {
    let mut events = Vec::new();
    lambdaflow::history::read_share(
        path,
        lambdaflow::history::Share::WHOLE,
        |e| events.push(e),
        |r| panic!("{r}"),
    )
    .expect("readable");
    events
}

/// An independent model of the late policy as documented (`watermark` module): one watermark
/// `W` per live stream, starting behind the newest history event by the allowed lateness; an
/// event before `W` is late (kept and corrected, or dropped; beyond the maximum lateness always
/// dropped), and then `W` follows `ts - lateness`; a declaration moves `W` forward. Written apart
/// from the engine, so that tests never take the expected verdicts from the code under test.
#[derive(Clone, Debug)]
pub struct LateModel {
    pub watermark: u64,
    pub lateness: u64,
    pub drop: bool,
    pub max_lateness: Option<u64>,
    /// The live events kept (on time or corrected), in stream order.
    pub kept: Vec<Order>,
    /// The live events dropped, in stream order.
    pub dropped: Vec<Order>,
    /// The live events kept although late (corrected), in stream order.
    pub corrected: Vec<Order>,
}

/// The highest watermark events and declarations reach (2^53 - 2^40).
pub const CEILING: u64 = (1 << 53) - (1 << 40);

impl LateModel {
    pub fn new(history: &[Order], lateness: u64, drop: bool, max_lateness: Option<u64>) -> Self {
        let watermark = history
            .iter()
            .map(|e| e.ts.saturating_sub(lateness))
            .max()
            .unwrap_or(0);
        LateModel {
            watermark,
            lateness,
            drop,
            max_lateness,
            kept: Vec::new(),
            dropped: Vec::new(),
            corrected: Vec::new(),
        }
    }

    /// One live event.
    pub fn send(&mut self, e: &Order) {
        let w = self.watermark;
        let late = e.ts < w;
        if late && (self.drop || self.max_lateness.is_some_and(|m| w - e.ts > m)) {
            self.dropped.push(e.clone());
        } else {
            if late {
                self.corrected.push(e.clone());
            }
            self.kept.push(e.clone());
        }
        self.declare(e.ts.saturating_sub(self.lateness));
    }

    /// A declared watermark.
    pub fn declare(&mut self, time: u64) {
        self.watermark = self.watermark.max(time.min(CEILING));
    }
}

/// Options to open a master dataset of orders as the server writes it (their schema version).
/// Appends `history` to a new master dataset in `dir`, as imported events.
pub fn import_master(dir: &std::path::Path, history: &[Order]) {
    use lambdaflow::master::{Entry, MasterDataset};
    let (master, _) =
        MasterDataset::<Entry<Order>>::open(dir, master_options()).expect("the master opens");
    let entries: Vec<Entry<Order>> = history.iter().cloned().map(Entry::Event).collect();
    master.append(&entries).expect("history imported");
}

/// The settings of a stream test: its late rules, no idleness (processing time), a 2 ms tick.
pub fn stream_settings(lateness: u64, drop_late: bool, max_lateness: Option<u64>) -> Settings {
    Settings {
        allowed_lateness: std::time::Duration::from_millis(lateness),
        late_policy: if drop_late {
            LatePolicy::Drop
        } else {
            LatePolicy::Correct
        },
        max_lateness: max_lateness.map(std::time::Duration::from_millis),
        idle_timeout: None,
        tick: std::time::Duration::from_millis(2),
        ..Settings::default()
    }
}

pub fn master_options() -> lambdaflow::master::MasterOptions {
    lambdaflow::master::MasterOptions {
        schema_version: <Order as Event>::SCHEMA_VERSION,
        ..lambdaflow::master::MasterOptions::default()
    }
}

/// Five minutes of views, one a second, in order, the watermark declared every
/// 10 s (with lateness 0 each window is final at its end); then two late events, for minute 1
/// (final by then) and minute 4. Windowed views see 60 per minute, 61 in minutes 1 and 4.
pub fn five_minutes_and_two_late(live: &LiveSender<Order>) {
    let at = |ts: u64| Order {
        ts,
        kind: Kind::View,
        customer: 1,
        product: 1,
        amount_cents: 0,
        amount_missing: false,
    };
    for second in 0..300u64 {
        live.send(at(second * 1_000)).expect("sent");
        if second % 10 == 9 {
            live.watermark(second * 1_000 + 1).expect("declared");
        }
    }
    live.watermark(300_000).expect("declared");
    live.send(at(61_000)).expect("sent");
    live.send(at(250_000)).expect("sent");
    live.watermark(300_001).expect("declared");
}

/// Every SQL view's final rows (by name) once the engine has taken every event; then the
/// engine is joined. The rows are read both as JSON values and as the text a view writes
/// straight from its types, which must say the same.
pub fn final_sql_rows<E: Event>(engine: Engine<E>) -> BTreeMap<String, Vec<Value>> {
    let client = engine.client();
    let mut out = BTreeMap::new();
    for info in client.catalog() {
        let answer = client
            .query_final(Query::all(&info.name))
            .expect("answered");
        let rows = lambdaflow::sql::answer_rows(&answer, info.limit);
        let mut texts = Vec::new();
        lambdaflow::sql::write_answer_rows(&answer, info.limit, |text| {
            texts.push(serde_json::from_slice::<Value>(text).expect("rows are written as JSON"))
        });
        assert_eq!(
            texts, rows,
            "view {}: its rows' text and values differ",
            info.name
        );
        out.insert(info.name.clone(), rows);
    }
    drop(client);
    engine.join().expect("workers finish");
    out
}
