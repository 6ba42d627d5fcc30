//! Restarts are invisible: a live stream judged across any number of restarts, each with any
//! number of workers, gives the verdicts of an independent model of the late policy that knows
//! nothing of restarts, and after every restart the views are what the stream so far implies.
//!
//! The engine runs in this process over a real master dataset in a temporary directory (the
//! journal of its live verdicts), stopped cleanly and started again on it; a restart of the
//! real binary after `kill -9` is checked in `tests/server.rs` and `tests/late.rs`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::engine::Hooks;
use lambdaflow::live::LateDrop;
use lambdaflow::master::{Entry, MasterDataset};
use lambdaflow::prelude::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use support::{LateModel, oracle};

/// One step of a live stream.
#[derive(Clone, Debug)]
enum Step {
    /// An event.
    Send(Order),
    /// A source watermark this far behind the newest event sent.
    Declare(u64),
    /// Stop the engine and start it again on the same master dataset with this many workers.
    Restart(usize),
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
        1 => (1usize..=3).prop_map(Step::Restart),
    ]
}

/// An engine over the master dataset in `dir`, journaling its verdicts there; the drops it
/// hears of are pushed to `dropped` (new ones) or `replayed`.
fn start(
    dir: &std::path::Path,
    workers: usize,
    settings: &Settings,
    dropped: &Arc<Mutex<Vec<Order>>>,
    replayed: &Arc<Mutex<Vec<Order>>>,
) -> (Engine<Order>, Arc<MasterDataset<Entry<Order>>>) {
    let (master, _) = MasterDataset::<Entry<Order>>::open(dir, support::master_options())
        .expect("the master dataset opens");
    let master = Arc::new(master);
    let journal = master.clone();
    let (dropped, replayed) = (dropped.clone(), replayed.clone());
    let hooks = Hooks {
        journal: Some(Arc::new(move |entries: &[Entry<Order>]| {
            journal.append(entries).map(drop).map_err(|e| e.to_string())
        })),
        on_late_drop: Some(Arc::new(move |d: &LateDrop<Order>| {
            let to = if d.replayed { &replayed } else { &dropped };
            to.lock().expect("lock").push(d.event.clone());
        })),
        ..Hooks::default()
    };
    let engine = Engine::start_with(
        &Cluster::threads(workers),
        settings.clone(),
        History::Master(dir.to_path_buf()),
        Ecommerce,
        hooks,
    )
    .expect("engine starts");
    (engine, master)
}

fn sorted(mut events: Vec<Order>) -> Vec<Order> {
    events.sort();
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn restarts_change_no_verdict_and_no_view(
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
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let replayed = Arc::new(Mutex::new(Vec::new()));
        let mut model = LateModel::new(&history, lateness, drop_late, max_lateness);
        let (mut engine, mut master) = start(dir.path(), first_workers, &settings, &dropped, &replayed);
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
                    let visible = live.watermark(declared).expect("declared");
                    model.declare(declared);
                    prop_assert!(visible >= model.watermark);
                }
                Step::Restart(workers) => {
                    drop(live);
                    engine.join().expect("workers finish");
                    drop(master);
                    let before = dropped.lock().expect("lock").clone();
                    replayed.lock().expect("lock").clear();
                    (engine, master) = start(dir.path(), *workers, &settings, &dropped, &replayed);
                    live = engine.live().expect("live");
                    engine.end_live();
                    // A fresh answer after the restart (so after its replay) holds exactly what
                    // the stream implies as of its time: events before it, and every correction.
                    let (tx, rx) = std::sync::mpsc::channel();
                    engine.client().ask(Query::all("customer_spend"), None, Box::new(move |a| drop(tx.send(a)))).expect("asked");
                    let answer = rx.recv_timeout(Duration::from_secs(10));
                    prop_assert!(answer.is_ok(), "a fresh read after a restart is answered");
                    let answer = answer.expect("answered");
                    // Every drop decided before is replayed, none is decided again.
                    prop_assert_eq!(sorted(replayed.lock().expect("lock").clone()), sorted(before));
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
        drop(client);
        engine.join().expect("workers finish");
        let mut all = history.clone();
        all.extend(model.kept.iter().cloned());
        prop_assert_eq!(views, oracle(&all));
        prop_assert_eq!(dropped.lock().expect("lock").clone(), model.dropped.clone(), "the drops are the model's");
        drop(master);
    }
}

/// The test above produces every verdict (so that it checks something).
#[test]
fn the_streams_have_late_and_dropped_events() {
    let mut model = LateModel::new(&[], 0, false, Some(300_000));
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = prop::collection::vec(step(), 80)
        .new_tree(&mut runner)
        .expect("a stream")
        .current();
    for step in &steps {
        if let Step::Send(e) = step {
            model.send(e);
        }
    }
    assert!(
        !model.corrected.is_empty() && !model.dropped.is_empty(),
        "{} steps, {} corrected, {} dropped",
        steps.len(),
        model.corrected.len(),
        model.dropped.len()
    );
}
