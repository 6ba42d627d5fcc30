//! Criterion figures for the five reference views over 200k synthetic events (one worker):
//! lambdaflow's batch lane against a hand-written plain differential-dataflow program.
//!
//! ```text
//! cargo bench --bench views
//! ```
//!
//! For the full comparison (10M events, the speed lane, several workers) see `benches/replay.rs`.

mod common;

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lambdaflow::ecommerce::Order;
use lambdaflow::ecommerce::generate::{GenConfig, Generator};

const EVENTS: u64 = 200_000;

fn views(c: &mut Criterion) {
    let config = GenConfig {
        seed: 42,
        events: EVENTS,
        ..GenConfig::default()
    };
    let events: Arc<Vec<Order>> = match Generator::new(config) {
        Ok(generator) => Arc::new(generator.collect()),
        Err(e) => panic!("bad generator configuration: {e}"),
    };
    let mut group = c.benchmark_group("views_200k");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("lambdaflow_batch_lane", |b| {
        b.iter(|| {
            common::lambdaflow_batch(&events, 1, common::ViewSet::Reference, false)
                .expect("batch lane run")
        })
    });
    group.bench_function("plain_differential", |b| {
        b.iter(|| common::plain_dd(&events, 1, false).expect("plain differential run"))
    });
    group.finish();
}

criterion_group!(benches, views);
criterion_main!(benches);
