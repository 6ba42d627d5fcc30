//! SQL views against DuckDB: the same `CREATE VIEW` text, run by lambdaflow's engine (history in
//! the batch lane, the rest live, out of order and late) and by DuckDB over the same events,
//! must give the same rows.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::prelude::*;
use lambdaflow::sql::{SqlViews, answer_rows};
use proptest::prelude::*;
use serde_json::Value;

use support::{golden, jsonl, read_orders};

fn corpus_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/corpus.sql")
}

/// Every view's rows, read once the engine has taken every event.
fn engine_rows(
    sql: &str,
    workers: usize,
    history: Vec<Order>,
    live: &[Order],
) -> BTreeMap<String, Vec<Value>> {
    let views = SqlViews::<Order>::new(sql).unwrap_or_else(|e| panic!("the SQL plans: {e}"));
    let mut engine = Engine::start(
        &Cluster::threads(workers),
        Settings::default(),
        History::Events(Arc::new(history)),
        views,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    for e in live {
        sender.send(e.clone()).expect("sent");
    }
    drop(sender);
    support::final_sql_rows(engine)
}

/// Runs `sql` over `history` + `live` in the engine and in DuckDB, and compares every view.
fn check(sql_path: &Path, workers: usize, history: Vec<Order>, live: &[Order]) -> Vec<String> {
    check_with(sql_path, sql_path, workers, history, live)
}

/// [`check`], with DuckDB running `duck_path`: the same views in its own SQL.
fn check_with(
    sql_path: &Path,
    duck_path: &Path,
    workers: usize,
    history: Vec<Order>,
    live: &[Order],
) -> Vec<String> {
    let sql = std::fs::read_to_string(sql_path).expect("the SQL reads");
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let mut all = jsonl(&history);
    all.extend(jsonl(live));
    std::fs::write(&events, all).expect("events written");
    let duck = support::duckdb::views(&events, duck_path);
    let plans = SqlViews::<Order>::new(&sql).expect("plans");
    let ranked: BTreeMap<String, bool> = plans
        .views()
        .iter()
        .map(|v| (v.name.clone(), v.ranking.is_some()))
        .collect();
    let ours = engine_rows(&sql, workers, history, live);
    support::duckdb::differences(&ours, &duck, &ranked)
}

#[test]
fn the_corpus_equals_duckdb_over_golden_data() {
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let failures = check(&corpus_path(), 2, history, &live);
    assert!(
        failures.is_empty(),
        "{} views differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn flink_window_table_functions_equal_their_duckdb_rewrites() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let failures = check_with(
        &dir.join("windows.sql"),
        &dir.join("windows_duckdb.sql"),
        2,
        history,
        &live,
    );
    assert!(
        failures.is_empty(),
        "{} views differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_view_of_the_corpus_plans() {
    let sql = std::fs::read_to_string(corpus_path()).expect("corpus");
    let mut views = SqlViews::<Order>::new("").expect("nothing plans");
    let mut failures = Vec::new();
    for statement in sql.split(";\n").filter(|s| s.contains("CREATE")) {
        if let Err(e) = views.define(statement) {
            failures.push(format!("{e}\n  in {}", statement.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} views do not plan:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(views.views().len() >= 60, "at least 60 views");
}

fn order() -> impl Strategy<Value = Order> {
    (
        0u64..4 * 3_600_000,
        0..3u8,
        0u64..12,
        0u64..8,
        0u64..5_000,
        0..8u8,
    )
        .prop_map(|(ts, kind, customer, product, amount, odd)| {
            let kind = [Kind::Purchase, Kind::Refund, Kind::View][kind as usize];
            Order {
                ts: 1_767_225_600_000 + ts,
                kind,
                customer,
                product,
                amount_cents: if kind == Kind::View { 0 } else { amount },
                amount_missing: kind == Kind::View && odd == 0,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random events (duplicates, views without amounts, out-of-order and late live events),
    /// a random split between the lanes, 1-3 workers: every corpus view equals DuckDB.
    #[test]
    fn random_streams_equal_duckdb(
        events in prop::collection::vec(order(), 0..400),
        split in 0usize..=100,
        workers in 1usize..=3,
    ) {
        let cut = events.len() * split / 100;
        let (history, live) = events.split_at(cut);
        let failures = check(&corpus_path(), workers, history.to_vec(), live);
        prop_assert!(failures.is_empty(), "{} views differ:\n{}", failures.len(), failures.join("\n"));
    }
}

#[test]
fn malformed_and_unsupported_statements_are_refused_with_their_reason() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/errors.sql");
    let text = std::fs::read_to_string(path).expect("errors.sql");
    let mut wrong = Vec::new();
    let mut count = 0;
    for line in text.lines().filter(|l| l.contains("-- expect:")) {
        let (statement, expect) = line.split_once("-- expect:").expect("an expectation");
        let expect = expect.trim().to_lowercase();
        count += 1;
        match SqlViews::<Order>::new(statement) {
            Ok(_) => wrong.push(format!("accepted: {statement}")),
            Err(e) if !e.to_string().to_lowercase().contains(&expect) => {
                wrong.push(format!("{statement}\n  said {e:?}, expected {expect:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(count >= 20, "at least 20 statements");
    assert!(
        wrong.is_empty(),
        "{} of {count}:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A SQL view keyed by its window's end is windowed: its changelog tells each window once, when
/// the watermark passes its end, and then only a late correction.
#[test]
fn windowed_sql_rows_are_told_once_final() {
    let sql = "CREATE VIEW per_minute AS
        SELECT window_start, window_end, COUNT(*) AS n
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end";
    let settings = Settings {
        changelog: true,
        allowed_lateness: std::time::Duration::ZERO,
        ..Settings::default()
    };
    let mut engine = Engine::start(
        &Cluster::threads(2),
        settings,
        History::Events(Arc::new(Vec::new())),
        SqlViews::<Order>::new(sql).expect("plans"),
    )
    .expect("engine starts");
    assert!(engine.client().catalog()[0].windowed, "a windowed view");
    let mut changes = engine
        .changelog()
        .subscribe("per_minute")
        .expect("subscribed");
    let live = engine.live().expect("live");
    engine.end_live();
    support::five_minutes_and_two_late(&live);
    drop(live);
    engine.join().expect("workers finish");

    let mut told: BTreeMap<u64, Vec<(i8, u64, u64)>> = BTreeMap::new();
    while let Ok(batch) = changes.try_recv() {
        for change in &batch.changes {
            let start = change.value["window_start"].as_str().expect("start");
            let minute: u64 = start[14..16].parse().expect("a minute");
            let n = change.value["n"].as_u64().expect("n");
            told.entry(minute)
                .or_default()
                .push((change.diff, n, change.time));
        }
    }
    for minute in 0..5u64 {
        let history = &told[&minute];
        let end = (minute + 1) * 60_000;
        assert!(
            history.iter().all(|(_, _, t)| *t + 1 >= end),
            "minute {minute} is told only once final: {history:?}"
        );
        let got: Vec<(i8, u64)> = history.iter().map(|(d, n, _)| (*d, *n)).collect();
        let expected = match minute {
            1 | 4 => vec![(1, 60), (-1, 60), (1, 61)],
            _ => vec![(1, 60)],
        };
        assert_eq!(got, expected, "minute {minute}");
    }
}

/// A master dataset in memory: the journal appends to it, and a backfill reads it up to a mark,
/// each share taking every `count`-th entry.
#[derive(Clone, Default)]
struct Memory {
    entries: Arc<std::sync::Mutex<Vec<lambdaflow::master::Entry<Order>>>>,
}

struct MemoryMark {
    memory: Memory,
    end: usize,
}

impl lambdaflow::engine::BackfillSource<Order> for Memory {
    fn mark(&self) -> Arc<dyn lambdaflow::engine::Backfill<Order>> {
        let end = self.entries.lock().expect("entries").len();
        Arc::new(MemoryMark {
            memory: self.clone(),
            end,
        })
    }
}

impl lambdaflow::engine::Backfill<Order> for MemoryMark {
    fn bytes(&self) -> u64 {
        self.end as u64
    }

    fn read(
        &self,
        share: lambdaflow::history::Share,
        progress: &std::sync::atomic::AtomicU64,
        on_entry: &mut dyn FnMut(lambdaflow::master::Entry<Order>),
    ) -> Result<(), String> {
        let entries = self.memory.entries.lock().expect("entries")[..self.end].to_vec();
        for entry in entries.into_iter().skip(share.index).step_by(share.count) {
            progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            on_entry(entry);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// A SQL view created at a random point of a random live stream (in random batches, out
    /// of order and late), 1-3 workers: its final rows count every event exactly once, as the
    /// independent fold of all events says.
    #[test]
    fn a_view_created_mid_stream_counts_every_event_once(
        events in prop::collection::vec(order(), 1..300),
        split in 0usize..=100,
        create in 0usize..=100,
        batch in 1usize..40,
        workers in 1usize..=3,
    ) {
        let cut = events.len() * split / 100;
        let (history, live) = events.split_at(cut);
        let memory = Memory::default();
        memory
            .entries
            .lock()
            .expect("entries")
            .extend(history.iter().cloned().map(lambdaflow::master::Entry::Event));
        let journal = {
            let memory = memory.clone();
            Arc::new(move |entries: &[lambdaflow::master::Entry<Order>]| {
                memory.entries.lock().expect("entries").extend_from_slice(entries);
                Ok(())
            })
        };
        let hooks = lambdaflow::engine::Hooks {
            journal: Some(journal),
            backfill: Some(Arc::new(memory.clone())),
            ..Default::default()
        };
        let mut engine = Engine::start_with(
            &Cluster::threads(workers),
            Settings::default(),
            History::Events(Arc::new(history.to_vec())),
            lambdaflow::ecommerce::Ecommerce,
            hooks,
        )
        .expect("engine starts");
        let sender = engine.live().expect("live");
        engine.end_live();
        let at = live.len() * create / 100;
        for chunk in live[..at].chunks(batch) {
            sender.send_batch(chunk.to_vec()).expect("sent");
        }
        let views = SqlViews::<Order>::new(
            "CREATE VIEW spend AS SELECT customer,
               SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS cents,
               COUNT(*) AS n
             FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer",
        )
        .expect("plans");
        let pipeline = views.pipeline_for("spend").expect("the view");
        let flows = engine.flows();
        let flow = flows.create(Arc::new(pipeline)).expect("created");
        for chunk in live[at..].chunks(batch) {
            sender.send_batch(chunk.to_vec()).expect("sent");
        }
        drop(sender);
        while !flows.ready(flow) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let client = engine.client();
        let answer = client.query_final(Query::all("spend")).expect("answered");
        drop(client);
        engine.join().expect("workers finish");

        let mut expected: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
        for e in &events {
            if e.kind != Kind::View {
                let entry = expected.entry(e.customer).or_default();
                entry.0 += e.net();
                entry.1 += 1;
            }
        }
        let got: BTreeMap<u64, (i64, i64)> = answer_rows(&answer, None)
            .iter()
            .map(|r| {
                let customer = r["customer"].as_u64().expect("customer");
                (customer, (r["cents"].as_i64().expect("cents"), r["n"].as_i64().expect("n")))
            })
            .collect();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn ad_hoc_reads_of_a_view_as_it_is_go_to_its_arrangement() {
    let views = SqlViews::<Order>::new(
        "CREATE VIEW kinds AS SELECT kind, COUNT(*) AS n FROM events GROUP BY kind",
    )
    .expect("plans");
    let direct = |sql: &str| {
        let adhoc = views.adhoc("q", sql).expect("plans").expect("a SELECT");
        views.direct_read(&adhoc)
    };
    assert_eq!(
        direct("SELECT * FROM kinds WHERE kind = 'view'"),
        Some(("kinds".into(), Some("view".into())))
    );
    assert_eq!(direct("SELECT * FROM kinds"), Some(("kinds".into(), None)));
    assert_eq!(direct("SELECT kind FROM kinds"), None, "a projection");
    assert_eq!(
        direct("SELECT * FROM kinds WHERE n = 3"),
        None,
        "not the key"
    );
    assert_eq!(
        direct("SELECT kind, COUNT(*) AS c FROM events GROUP BY kind"),
        None
    );
}
