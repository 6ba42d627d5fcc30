//! Restores from checkpoints are invisible: a live stream with checkpoints taken at random
//! points and restarts (each with any number of workers) restoring from the newest one gives,
//! after every restart and at the end, the views an independent fold of the stream implies, as
//! a run without restarts does.
//!
//! The engine runs in this process over a real master dataset and a real checkpoint store in a
//! temporary directory, stopped cleanly and started again on them. Besides the built-in views
//! it serves SQL views of every stateful kind (sums, a reduce, a join, windows, sessions, a
//! ranking over a view): at the end every view's rows equal those of a full replay of the same
//! master dataset, which `tests/sql.rs` checks against DuckDB. A restart may also change the
//! SQL views (one changed, one new, one gone): the views the checkpoint has are restored and
//! the others rebuilt from the master dataset it covers.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lambdaflow::ecommerce::{EcommerceWithWindows, Kind, Order};
use lambdaflow::engine::{Backfill, BackfillSource, Checkpoints, Hooks};
use lambdaflow::history::Share;
use lambdaflow::master::{Entry, Mark, MasterDataset, Position};
use lambdaflow::prelude::*;
use lambdaflow::sql::{SqlViews, WithSql};
use proptest::prelude::*;
use support::{LateModel, oracle};

type Master = Arc<MasterDataset<Entry<Order>>>;

/// SQL views beside the built-in ones: each kind of state a SQL view keeps.
const SQL: &str = "
CREATE VIEW s_spend AS SELECT customer, SUM(amount_cents) AS total, COUNT(*) AS n
  FROM events WHERE kind = 'purchase' GROUP BY customer;
CREATE VIEW s_extremes AS SELECT product, MIN(amount_cents) AS lo, MAX(ts) AS last,
  COUNT(DISTINCT customer) AS buyers FROM events GROUP BY product;
CREATE VIEW s_pairs AS SELECT a.customer, COUNT(*) AS n
  FROM events a JOIN events b ON a.customer = b.customer AND a.product = b.product
  WHERE a.kind = 'view' AND b.kind = 'purchase' GROUP BY a.customer;
CREATE VIEW s_minutes AS SELECT window_start, window_end, COUNT(*) AS n
  FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end;
CREATE VIEW s_sessions AS SELECT customer, window_start, COUNT(*) AS n
  FROM TABLE(SESSION(TABLE events PARTITION BY customer, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
  GROUP BY customer, window_start;
CREATE VIEW s_kinds AS SELECT DISTINCT kind, product FROM events;
CREATE VIEW s_top AS SELECT customer, total FROM s_spend ORDER BY total DESC, customer LIMIT 3;
";

/// The SQL views a restart may change to: `s_spend` changed, `s_kinds` gone, `s_products`
/// new, the others as in [`SQL`].
fn changed_sql() -> String {
    SQL.replace(
        "SUM(amount_cents) AS total, COUNT(*) AS n",
        "SUM(amount_cents) AS total, COUNT(*) AS n, MAX(ts) AS last",
    )
    .replace(
        "CREATE VIEW s_kinds AS SELECT DISTINCT kind, product FROM events;",
        "CREATE VIEW s_products AS SELECT product, SUM(amount_cents) AS total, COUNT(*) AS n
           FROM events WHERE kind <> 'view' GROUP BY product;",
    )
}

/// The built-in views, the SQL ones, and sessions the other way: a reduce over every event
/// time, its input cut with `Views::checkpoint` and the view registered with
/// `register_derived` (as an embedder writes a view over stateful operators).
struct Served(WithSql<EcommerceWithWindows>);

impl Pipeline for Served {
    type Event = Order;

    fn build<'s>(
        &self,
        events: differential_dataflow::VecCollection<'s, Time, Order>,
        views: &mut Views<'s>,
    ) {
        self.0.build(events.clone(), views);
        let visits = views.checkpoint(
            "reduced_sessions.events",
            events.map(|o| (o.customer, o.ts)),
        );
        let sessions = lambdaflow::window::session(30 * 60_000).expect("a gap");
        views.register_derived(
            "reduced_sessions",
            "customer_sessions by a reduce",
            sessions.sessions(visits),
            |_, rows| {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, _)| serde_json::json!({"start": s.start, "end": s.end, "events": s.events}))
                    .collect();
                (!list.is_empty()).then_some(serde_json::Value::Array(list))
            },
        );
    }

    fn checkpointed(&self) -> bool {
        true
    }
}

/// The views with the SQL of [`SQL`], or [`changed_sql`] if `changed`.
fn pipeline(changed: bool) -> Served {
    let sql = if changed {
        changed_sql()
    } else {
        SQL.to_string()
    };
    Served(WithSql {
        pipeline: EcommerceWithWindows,
        sql: SqlViews::new(&sql).expect("the SQL plans"),
    })
}

/// Backfills (and marks checkpoints) from the master dataset, as the server does.
struct Source(Master);

struct Marked(Master, Mark);

impl BackfillSource<Order> for Source {
    fn mark(&self) -> Arc<dyn Backfill<Order>> {
        Arc::new(Marked(self.0.clone(), self.0.mark()))
    }
}

impl Backfill<Order> for Marked {
    fn bytes(&self) -> u64 {
        self.1.bytes
    }

    fn position(&self) -> Option<Position> {
        Some(self.1.position())
    }

    fn read(
        &self,
        share: Share,
        progress: &AtomicU64,
        on_entry: &mut dyn FnMut(Entry<Order>),
    ) -> Result<(), String> {
        self.0
            .read_mark(&self.1, share, progress, on_entry)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug)]
enum Step {
    Send(Order),
    Declare(u64),
    Checkpoint,
    /// With this many workers, and the changed SQL views if set.
    Restart(usize, bool),
}

fn order() -> impl Strategy<Value = Order> {
    (
        0u64..600_000,
        prop_oneof![Just(Kind::Purchase), Just(Kind::Refund), Just(Kind::View)],
        0u64..5,
        0u64..8,
        1u64..6,
    )
        .prop_map(|(ts, kind, customer, product, amount)| Order {
            ts: 1_000_000 + ts,
            kind,
            customer,
            product,
            amount_cents: amount * 100,
            amount_missing: false,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => order().prop_map(Step::Send),
        1 => (0u64..200_000).prop_map(Step::Declare),
        2 => Just(Step::Checkpoint),
        1 => (1usize..=3, any::<bool>()).prop_map(|(w, changed)| Step::Restart(w, changed)),
    ]
}

fn start(
    dir: &std::path::Path,
    workers: usize,
    settings: &Settings,
    changed: bool,
) -> (Engine<Order>, Master) {
    start_with(dir, workers, settings, true, changed)
}

/// The engine over `dir`'s master dataset, restoring from its checkpoints if `restore` (and
/// then taking them too), with the changed SQL views if `changed`.
fn start_with(
    dir: &std::path::Path,
    workers: usize,
    settings: &Settings,
    restore: bool,
    changed: bool,
) -> (Engine<Order>, Master) {
    engine_over(dir, workers, settings, restore, pipeline(changed))
}

/// `pipeline` over `dir`'s master dataset, restoring from its checkpoints if `restore` (and
/// then taking them too).
fn engine_over<P: Pipeline<Event = Order>>(
    dir: &std::path::Path,
    workers: usize,
    settings: &Settings,
    restore: bool,
    pipeline: P,
) -> (Engine<Order>, Master) {
    let (master, _) = MasterDataset::<Entry<Order>>::open(dir, support::master_options())
        .expect("the master dataset opens");
    let master = Arc::new(master);
    let journal = master.clone();
    let hooks = Hooks {
        journal: Some(Arc::new(move |entries: &[Entry<Order>]| {
            journal.append(entries).map(drop).map_err(|e| e.to_string())
        })),
        backfill: Some(Arc::new(Source(master.clone()))),
        checkpoints: Some(Checkpoints {
            store: lambdaflow::checkpoint::Store::in_data_dir(dir),
            restore,
            take: restore,
        }),
        ..Hooks::default()
    };
    let engine = Engine::start_with(
        &Cluster::threads(workers),
        settings.clone(),
        History::Master(dir.to_path_buf()),
        pipeline,
        hooks,
    )
    .expect("engine starts");
    (engine, master)
}

/// How many restarts restored from a checkpoint, over every case: the test must exercise them.
static RESTORED: AtomicU64 = AtomicU64::new(0);

/// How many of them rebuilt the views the checkpoint lacked while restoring the others.
static REBUILT: AtomicU64 = AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_restore_from_a_checkpoint_answers_as_a_full_replay(
        history in prop::collection::vec(order(), 0..40),
        steps in prop::collection::vec(step(), 0..80),
        first_workers in 1usize..=3,
        lateness in prop_oneof![Just(0u64), Just(5_000), Just(60_000)],
        drop_late in any::<bool>(),
        max_lateness in prop::option::of(prop_oneof![Just(0u64), Just(30_000)]),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        support::import_master(dir.path(), &history);
        let settings = support::stream_settings(lateness, drop_late, max_lateness);
        let mut model = LateModel::new(&history, lateness, drop_late, max_lateness);
        let mut changed = false;
        // The SQL views of the engine that took the newest checkpoint.
        let mut checkpointed = None;
        let (mut engine, mut master) = start(dir.path(), first_workers, &settings, changed);
        let mut live = engine.live().expect("live");
        engine.end_live();
        let mut newest = history.iter().map(|e| e.ts).max().unwrap_or(0);
        for step in &steps {
            match step {
                Step::Send(e) => {
                    live.send(e.clone()).expect("sent");
                    model.send(e);
                    newest = newest.max(e.ts);
                }
                Step::Declare(behind) => {
                    let declared = newest.saturating_sub(*behind);
                    live.watermark(declared).expect("declared");
                    model.declare(declared);
                }
                Step::Checkpoint => {
                    let taken = engine.checkpoint();
                    prop_assert!(taken.is_ok(), "checkpoint: {:?}", taken);
                    checkpointed = Some(changed);
                }
                Step::Restart(workers, now) => {
                    drop(live);
                    engine.join().expect("workers finish");
                    drop(master);
                    changed = *now;
                    (engine, master) = start(dir.path(), *workers, &settings, changed);
                    let metrics = engine.metrics();
                    let restored = metrics.restored.load(Ordering::Relaxed);
                    prop_assert_eq!(restored, checkpointed.is_some(), "restores from the newest checkpoint");
                    let rebuilt = metrics.rebuilt_cuts.load(Ordering::Relaxed);
                    if let Some(then) = checkpointed {
                        RESTORED.fetch_add(1, Ordering::Relaxed);
                        prop_assert!(metrics.restored_cuts.load(Ordering::Relaxed) > 0);
                        // Only s_spend's cuts, and s_kinds' or s_products' (a cut or two each).
                        prop_assert_eq!(rebuilt > 0, then != changed, "rebuilt cuts: {}", rebuilt);
                        prop_assert!(rebuilt <= 3, "rebuilt {} cuts", rebuilt);
                        if rebuilt > 0 {
                            REBUILT.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    live = engine.live().expect("live");
                    engine.end_live();
                    let (tx, rx) = std::sync::mpsc::channel();
                    engine.client().ask(Query::all("customer_spend"), None, Box::new(move |a| drop(tx.send(a)))).expect("asked");
                    let answer = rx.recv_timeout(Duration::from_secs(10));
                    prop_assert!(answer.is_ok(), "a fresh read after a restart is answered");
                    let answer = answer.expect("answered");
                    let seen: Vec<Order> = history
                        .iter()
                        .chain(&model.kept)
                        .filter(|e| e.ts < answer.as_of || model.corrected.contains(e))
                        .cloned()
                        .collect();
                    prop_assert_eq!(answer.to_json(), oracle(&seen)["customer_spend"].clone(), "as of {} after a restart", answer.as_of);
                }
            }
        }
        drop(live);
        let client = engine.client();
        let views = support::final_views(&client);
        let sessions = client.query_final(Query::all("customer_sessions")).expect("sessions").to_json();
        let reduced = client.query_final(Query::all("reduced_sessions")).expect("sessions").to_json();
        drop(client);
        let rows = support::final_sql_rows(engine);
        let mut all = history.clone();
        all.extend(model.kept.iter().cloned());
        prop_assert_eq!(views, oracle(&all));
        prop_assert_eq!(sessions, sessions_oracle(&all));
        prop_assert_eq!(reduced, sessions_oracle(&all));
        drop(master);
        let (mut replayed, master) = start_with(dir.path(), 2, &settings, false, changed);
        replayed.end_live();
        prop_assert_eq!(rows, support::final_sql_rows(replayed), "every view equals a full replay's");
        drop(master);
    }
}

/// Each customer's sessions (events less than 30 minutes apart), folded independently.
fn sessions_oracle(events: &[Order]) -> serde_json::Value {
    let mut by_customer: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for e in events {
        by_customer.entry(e.customer).or_default().push(e.ts);
    }
    let mut rows = serde_json::Map::new();
    for (customer, mut times) in by_customer {
        times.sort_unstable();
        let mut sessions: Vec<serde_json::Value> = Vec::new();
        let mut start = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] - times[i - 1] >= 30 * 60_000 {
                sessions.push(serde_json::json!({
                    "start": times[start], "end": times[i - 1], "events": i - start
                }));
                start = i;
            }
        }
        rows.insert(customer.to_string(), serde_json::Value::Array(sessions));
    }
    serde_json::Value::Object(rows)
}

/// The test above restores from checkpoints (so that it checks something): run after it in
/// the same process, or on its own it runs the property first.
#[test]
fn restarts_restore_from_checkpoints() {
    a_restore_from_a_checkpoint_answers_as_a_full_replay();
    assert!(
        RESTORED.load(Ordering::Relaxed) > 5,
        "only {} restarts restored from a checkpoint",
        RESTORED.load(Ordering::Relaxed)
    );
    assert!(
        REBUILT.load(Ordering::Relaxed) > 2,
        "only {} restores rebuilt a changed view",
        REBUILT.load(Ordering::Relaxed)
    );
}

/// A checkpoint reads a view's arrangement a bounded number of keys per step of the worker:
/// views of more keys than one step reads (21 000 customers, one worker) are
/// checkpointed whole, and events sent while the checkpoint is read and written land once.
#[test]
fn views_larger_than_a_read_step_are_checkpointed_whole() {
    let order = |i: u64| Order {
        ts: 1_000_000 + i,
        kind: if i.is_multiple_of(3) {
            Kind::Refund
        } else {
            Kind::Purchase
        },
        customer: i,
        product: i % 8,
        amount_cents: 100 + i % 7,
        amount_missing: false,
    };
    let history: Vec<Order> = (0..20_000).map(order).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    support::import_master(dir.path(), &history);
    let settings = support::stream_settings(0, false, None);
    let (mut engine, master) = start(dir.path(), 1, &settings, false);
    let live = engine.live().expect("live");
    engine.end_live();
    let sent: Vec<Order> = (20_000..21_000).map(order).collect();
    let (before, during) = sent.split_at(500);
    for e in before {
        live.send(e.clone()).expect("sent");
    }
    let checkpointer = engine.checkpointer().expect("checkpoints are taken");
    std::thread::scope(|scope| {
        let checkpoint = scope.spawn(|| checkpointer.take());
        for e in during {
            live.send(e.clone()).expect("sent");
        }
        assert!(checkpoint.join().expect("joined").is_ok());
    });
    drop(checkpointer);
    drop(live);
    engine.join().expect("workers finish");
    drop(master);

    let (mut engine, master) = start(dir.path(), 2, &settings, false);
    let metrics = engine.metrics();
    assert!(metrics.restored.load(Ordering::Relaxed));
    assert_eq!(metrics.rebuilt_cuts.load(Ordering::Relaxed), 0);
    engine.end_live();
    let client = engine.client();
    let views = support::final_views(&client);
    let sessions = client
        .query_final(Query::all("customer_sessions"))
        .expect("sessions")
        .to_json();
    drop(client);
    let all: Vec<Order> = history.iter().chain(&sent).cloned().collect();
    assert_eq!(views, oracle(&all));
    assert_eq!(sessions, sessions_oracle(&all));
    drop(engine);
    drop(master);
}

/// State grows with the answers, not with the events: a view of `MIN`, `MAX` and a filtered
/// count over the events keeps one record per group, not its rows nor its distinct values
/// (every event has a time of its own, and `MAX(ts)` takes each), and so does one per
/// tumbling window. Ten times the events (each at its own time) make a checkpoint no larger,
/// and the views answer what a fold of the events gives.
#[test]
fn aggregates_over_the_events_keep_one_record_per_group() {
    const SQL: &str = "CREATE VIEW extremes AS SELECT product, MIN(amount_cents) AS lo,
        MAX(amount_cents) AS hi, MAX(ts) AS last_seen, MIN(customer) FILTER (WHERE kind = 'refund')
        AS first_refunder, COUNT(*) FILTER (WHERE kind = 'refund') AS refunds
        FROM events GROUP BY product;
        CREATE VIEW per_minute AS SELECT window_start, COUNT(*) AS n, MAX(amount_cents) AS top
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end;";
    let order = |i: u64| Order {
        ts: 1_000_000 + i,
        kind: if i.is_multiple_of(5) {
            Kind::Refund
        } else {
            Kind::Purchase
        },
        customer: i,
        product: i % 3,
        amount_cents: 100 * (1 + i % 2),
        amount_missing: false,
    };
    let checkpoint_of = |events: u64| {
        let history: Vec<Order> = (0..events).map(order).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        support::import_master(dir.path(), &history);
        let settings = support::stream_settings(0, false, None);
        let views = SqlViews::<Order>::new(SQL).expect("the view plans");
        let (mut engine, master) = engine_over(dir.path(), 2, &settings, true, views);
        let live = engine.live().expect("live");
        engine.end_live();
        let bytes = engine.checkpoint().expect("a checkpoint").bytes;
        drop(live);
        let rows = support::final_sql_rows(engine);
        drop(master);
        let mut expected = Vec::new();
        for product in 0..3 {
            let of: Vec<&Order> = history.iter().filter(|o| o.product == product).collect();
            let amounts = of.iter().map(|o| o.amount_cents);
            let refunders = of.iter().filter(|o| o.kind == Kind::Refund);
            expected.push(serde_json::json!({
                "product": product,
                "lo": amounts.clone().min(),
                "hi": amounts.max(),
                "last_seen": of.iter().map(|o| o.ts).max(),
                "first_refunder": refunders.clone().map(|o| o.customer).min(),
                "refunds": refunders.count(),
            }));
        }
        let mut got = rows.get("extremes").cloned().unwrap_or_default();
        got.sort_by_key(|row| row["product"].as_u64());
        assert_eq!(got, expected, "over {events} events");
        // Windowed: the rows are summed by window in the operator that reads the events.
        let minutes = rows.get("per_minute").cloned().unwrap_or_default();
        let mut per_minute = std::collections::BTreeMap::new();
        for o in &history {
            let (n, top) = per_minute.entry(o.ts / 60_000).or_insert((0u64, 0u64));
            *n += 1;
            *top = (*top).max(o.amount_cents);
        }
        let mut got: Vec<(u64, u64)> = minutes
            .iter()
            .map(|r| (r["n"].as_u64().unwrap_or(0), r["top"].as_u64().unwrap_or(0)))
            .collect();
        got.sort();
        let mut want: Vec<(u64, u64)> = per_minute.into_values().collect();
        want.sort();
        assert_eq!(got, want, "per minute over {events} events");
        bytes
    };
    let (small, large) = (checkpoint_of(2_000), checkpoint_of(20_000));
    assert!(
        large < small + 1_024,
        "a checkpoint of 20 000 events takes {large} bytes, of 2 000 {small}"
    );
}
