//! What the benchmarks share: the three ways of computing the five reference views from
//! in-memory events, and the results they are checked by.
//!
//! * [`lambdaflow_batch`]: the engine, history through the batch lane (one time for all);
//! * [`lambdaflow_speed`]: the engine, every event through the speed lane at its own time;
//! * [`plain_dd`]: a hand-written differential-dataflow program for the same views.
//!
//! The engine runs either [`Ecommerce`] (exactly the five views of `REFERENCE.md`, the same
//! work as the plain program, which [`check_reference`] verifies) or [`EcommerceWithWindows`]
//! (those five and the windowed views).
//!
//! Each returns the time until the final answer was available (not counting the teardown of
//! the workers, which happens after), plus `revenue_by_day` and `top_products` so that the
//! runs can be checked to have done the same work.

// Each bench binary uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::input::Input;
use lambdaflow::ecommerce::{Day, EcommerceWithWindows, Kind, MINUTE_MS, Order, REFERENCE_VIEWS};
use lambdaflow::prelude::*;
use serde_json::{Value, json};
use timely::dataflow::ProbeHandle;

/// The answers a run is checked by.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    /// `revenue_by_day`: day text → net cents.
    pub revenue_by_day: BTreeMap<String, Value>,
    /// `top_products`, ranked.
    pub top_products: Vec<Value>,
}

/// One measured run.
pub struct Run {
    /// From the start of the engine (or dataflow) to the final answer.
    pub elapsed: Duration,
    /// The answers, when asked for.
    pub results: Option<Results>,
}

/// How many events a worker feeds between steps of its dataflow (as the engine's replay does).
const CHUNK: usize = 64 * 1024;

fn rows(answer: Answer) -> Result<BTreeMap<String, Value>, String> {
    match answer.value {
        AnswerValue::Rows(rows) => Ok(rows.render().into_iter().collect()),
        other => Err(format!("expected rows, got {other:?}")),
    }
}

fn ranked(answer: Answer) -> Result<Vec<Value>, String> {
    match answer.value {
        AnswerValue::Ranked(list) => Ok(list),
        other => Err(format!("expected a ranking, got {other:?}")),
    }
}

/// Waits for the final `revenue_by_day` (the timed part), then, if `check`, reads
/// `top_products` too, and joins the engine.
fn finish(engine: Engine<Order>, started: Instant, check: bool) -> Result<Run, String> {
    let client = engine.client();
    let revenue = client
        .query_final(Query::all("revenue_by_day"))
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let results = if check {
        let top = client
            .query_final(Query::all("top_products"))
            .map_err(|e| e.to_string())?;
        Some(Results {
            revenue_by_day: rows(revenue)?,
            top_products: ranked(top)?,
        })
    } else {
        None
    };
    drop(client);
    engine.join()?;
    Ok(Run { elapsed, results })
}

/// Which views the engine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewSet {
    /// [`Ecommerce`]: the five reference views (checked by [`check_reference`]).
    Reference,
    /// [`EcommerceWithWindows`]: the five and the windowed views.
    Windows,
}

fn start(
    workers: usize,
    history: History<Order>,
    views: ViewSet,
) -> Result<(Engine<Order>, usize), String> {
    let cluster = Cluster::threads(workers);
    let engine = match views {
        ViewSet::Reference => Engine::start(&cluster, Settings::default(), history, Ecommerce)?,
        ViewSet::Windows => {
            Engine::start(&cluster, Settings::default(), history, EcommerceWithWindows)?
        }
    };
    let count = engine.client().catalog().len();
    Ok((engine, count))
}

/// The names of the views `views` registers.
pub fn view_names(views: ViewSet) -> Result<Vec<String>, String> {
    let (mut engine, _) = start(1, History::Events(Arc::new(Vec::new())), views)?;
    let names = engine
        .client()
        .catalog()
        .iter()
        .map(|v| v.name.clone())
        .collect();
    engine.end_live();
    engine.join()?;
    Ok(names)
}

/// Checks that [`Ecommerce`] registers exactly the five reference views, the plain program's
/// work: otherwise the comparison would not be of the same work.
pub fn check_reference() -> Result<(), String> {
    let mut names = view_names(ViewSet::Reference)?;
    let mut expected: Vec<String> = REFERENCE_VIEWS.iter().map(|v| v.to_string()).collect();
    names.sort();
    expected.sort();
    if names == expected {
        Ok(())
    } else {
        Err(format!(
            "Ecommerce registers {names:?}, not the five reference views {expected:?}: \
             the comparison with plain differential would not be of the same work"
        ))
    }
}

/// lambdaflow's batch lane: the events as history, `Settings::default()` (one batch time).
pub fn lambdaflow_batch(
    events: &Arc<Vec<Order>>,
    workers: usize,
    views: ViewSet,
    check: bool,
) -> Result<Run, String> {
    let started = Instant::now();
    let (mut engine, _) = start(workers, History::Events(events.clone()), views)?;
    engine.end_live();
    finish(engine, started, check)
}

/// lambdaflow's speed lane: every event sent live, at its own millisecond, no history.
pub fn lambdaflow_speed(
    events: &Arc<Vec<Order>>,
    workers: usize,
    views: ViewSet,
    check: bool,
) -> Result<Run, String> {
    let started = Instant::now();
    let (mut engine, _) = start(workers, History::Events(Arc::new(Vec::new())), views)?;
    let live = engine.live().ok_or("the live input has already ended")?;
    engine.end_live();
    for chunk in events.chunks(1024) {
        live.send_batch(chunk.to_vec())
            .map_err(|e| format!("live events not taken: {e}"))?;
    }
    drop(live);
    finish(engine, started, check)
}

/// The top 10 of `(net, product)` by net descending, ties by smaller product.
fn top10(input: &[(&(isize, u64), isize)]) -> Vec<(u64, isize)> {
    let mut all: Vec<(isize, u64)> = input.iter().map(|((net, p), _)| (*net, *p)).collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(10).map(|(net, p)| (p, net)).collect()
}

type Collected<T> = Arc<Mutex<Vec<(T, isize)>>>;

/// A plain differential-dataflow program for the five views: each worker inserts the events
/// at positions `index, index + peers, ...` at one time, and each view is `explode` (the sums
/// become the differences) then `count`; `top_products` is a `reduce` of all products to the
/// top 10. It feeds its input exactly like the engine's replay (a step every 64K events).
pub fn plain_dd(events: &Arc<Vec<Order>>, workers: usize, check: bool) -> Result<Run, String> {
    let started = Instant::now();
    let revenue: Collected<(Day, isize)> = Arc::default();
    let top: Collected<Vec<(u64, isize)>> = Arc::default();
    let (revenue_out, top_out) = (revenue.clone(), top.clone());
    let events = events.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let probe = ProbeHandle::new();
        let (revenue_out, top_out) = (revenue_out.clone(), top_out.clone());
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, events) = scope.new_collection::<Order, isize>();
            let money = events.clone().filter(|o| o.kind != Kind::View);

            let revenue_by_day = money
                .clone()
                .explode(|o| Some((Day::of(o.ts), (1isize, o.net() as isize))))
                .count();
            let product_stats = money
                .clone()
                .explode(|o| {
                    let purchase = isize::from(o.kind == Kind::Purchase);
                    Some((o.product, (purchase, 1 - purchase, o.net() as isize)))
                })
                .count();
            let customer_spend = money
                .explode(|o| Some((o.customer, (1isize, o.net() as isize))))
                .count();
            let events_per_minute = events
                .explode(|o| {
                    let mut counts = [0isize; 3];
                    counts[o.kind as usize] = 1;
                    Some((o.ts - o.ts % MINUTE_MS, (counts[0], counts[1], counts[2])))
                })
                .count();
            let top_products = product_stats
                .clone()
                .map(|(product, (_, _, net))| ((), (net, product)))
                .reduce(|_, input, output| output.push((top10(input), 1isize)));

            revenue_by_day
                .inspect(move |((day, (_, net)), _, diff)| {
                    if check {
                        revenue_out.lock().unwrap().push(((*day, *net), *diff));
                    }
                })
                .probe_with(&probe);
            top_products
                .inspect(move |(((), list), _, diff)| {
                    if check {
                        top_out.lock().unwrap().push((list.clone(), *diff));
                    }
                })
                .probe_with(&probe);
            product_stats.probe_with(&probe);
            customer_spend.probe_with(&probe);
            events_per_minute.probe_with(&probe);
            input
        });
        for (n, event) in events.iter().skip(index).step_by(peers).enumerate() {
            input.insert(event.clone());
            if (n + 1) % CHUNK == 0 {
                input.flush();
                worker.step();
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        Instant::now()
    })?;
    let mut finished = started;
    for result in guards.join() {
        finished = finished.max(result?);
    }
    let elapsed = finished - started;

    let results = if check {
        let mut revenue = std::mem::take(&mut *revenue.lock().unwrap());
        consolidate(&mut revenue);
        let mut top = std::mem::take(&mut *top.lock().unwrap());
        consolidate(&mut top);
        if revenue.iter().any(|(_, d)| *d != 1) || top.iter().any(|(_, d)| *d != 1) {
            return Err("plain differential dataflow left a record with multiplicity != 1".into());
        }
        let top = match top.as_slice() {
            [] => Vec::new(),
            [(list, _)] => list
                .iter()
                .map(|(product, net)| json!({"product": product, "revenue_cents": net}))
                .collect(),
            _ => return Err("plain differential dataflow ranked twice".into()),
        };
        Some(Results {
            revenue_by_day: revenue
                .into_iter()
                .map(|((day, net), _)| (day.key_text(), json!(net)))
                .collect(),
            top_products: top,
        })
    } else {
        None
    };
    Ok(Run { elapsed, results })
}

/// The median of some durations (the mean of the middle two for an even count).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}
