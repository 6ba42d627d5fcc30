//! Sums never wrap: a view's sums are 128-bit (as DuckDB's `SUM(BIGINT)` is a `HUGEINT`), and
//! are answered as exact integers however large.

mod support;

use std::sync::Arc;

use differential_dataflow::difference::Semigroup;
use lambdaflow::aggregate::Sums;
use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::prelude::*;
use serde_json::Value;

#[test]
fn sums_past_i64_are_exact() {
    let mut sum = Sums([i128::from(i64::MAX), -1]);
    sum.plus_equals(&Sums([i128::from(i64::MAX), i128::from(i64::MIN)]));
    assert_eq!(sum.0[0], 2 * i128::from(i64::MAX));
    assert_eq!(sum.0[1], i128::from(i64::MIN) - 1);
}

/// One customer's purchases, each within the contract (`amount_cents` < 2^53), add up past
/// 2^63: the view answers the exact decimal integer (computed here with u128 arithmetic).
#[test]
fn a_customer_spending_past_i64_is_answered_exactly() {
    let amount = (1u64 << 53) - 1;
    let events: Vec<Order> = (0..1_100u64)
        .map(|i| Order {
            ts: 1_000 + i,
            kind: Kind::Purchase,
            customer: 7,
            product: 3,
            amount_cents: amount,
            amount_missing: false,
        })
        .collect();
    let total = u128::from(amount) * 1_100;
    assert!(total > u128::from(u64::MAX >> 1), "past i64::MAX");
    let exact = |n: u128| -> Value { serde_json::from_str(&n.to_string()).expect("a JSON number") };
    for workers in [1, 2] {
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            Settings::default(),
            History::Events(Arc::new(events.clone())),
            Ecommerce,
        )
        .expect("engine starts");
        engine.end_live();
        let client = engine.client();
        let spend = client
            .query_final(Query::key("customer_spend", 7))
            .expect("answered");
        assert_eq!(spend.to_json(), exact(total));
        assert_eq!(
            spend.to_json().to_string(),
            total.to_string(),
            "rendered exactly"
        );
        let stats = client
            .query_final(Query::key("product_stats", 3))
            .expect("answered");
        assert_eq!(stats.to_json()["revenue_cents"], exact(total));
        assert_eq!(stats.to_json()["purchases"], exact(1_100));
        let top = client
            .query_final(Query::all("top_products"))
            .expect("answered");
        assert_eq!(top.to_json()[0]["revenue_cents"], exact(total));
        drop(client);
        engine.join().expect("workers finish");
    }
}
