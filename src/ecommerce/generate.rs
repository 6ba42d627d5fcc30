//! A seeded generator of synthetic e-commerce events, for benchmarks, demos and tests.
//!
//! [`Generator`] yields [`Order`]s shaped like a shop's click stream: mostly product views, about
//! a fifth purchases and a few refunds, products drawn from a Zipf distribution (a few best
//! sellers, a long tail), customers uniformly, and event times that advance at a fixed rate with
//! a small share of events arriving out of order (moved back by up to `max_lateness_ms`).
//! [`write_jsonl`] writes events as JSON Lines that [`Order`]'s parser reads back unchanged.
//!
//! The same [`GenConfig`] (same seed) always yields the same events with the same versions of
//! the `rand` and `rand_distr` crates (pinned by `Cargo.lock`): the random source is the named
//! xoshiro256++ algorithm, not an unspecified "standard" one.
//!
//! Why `rand` and `rand_distr`: `rand` provides a fast, seedable, portable generator and
//! uniform sampling of ranges; `rand_distr` provides an exact Zipf sampler (rejection-inversion,
//! constant time per sample), which is easy to get subtly wrong by hand.
//!
//! ```
//! use lambdaflow::ecommerce::generate::{GenConfig, Generator};
//!
//! let config = GenConfig { seed: 7, events: 1_000, ..GenConfig::default() };
//! let events: Vec<_> = Generator::new(config.clone())?.collect();
//! assert_eq!(events.len(), 1_000);
//! assert_eq!(events, Generator::new(config)?.collect::<Vec<_>>());
//! # Ok::<(), String>(())
//! ```

use std::borrow::Borrow;
use std::io::{self, Write};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;

use super::{Kind, Order};
use crate::event::{END_OF_TIME, Time};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// The seed: equal configurations yield equal events.
    pub seed: u64,
    /// How many events the generator yields.
    pub events: u64,
    /// Products are `0..products`, drawn with Zipf skew (product 0 is the most popular).
    pub products: u64,
    /// Customers are `0..customers`, drawn uniformly.
    pub customers: u64,
    /// The Zipf exponent of product popularity (0 is uniform; around 1 is typical of shops).
    pub zipf_exponent: f64,
    /// The share of events that are purchases.
    pub purchase_fraction: f64,
    /// The share of events that are refunds (the rest are views).
    pub refund_fraction: f64,
    /// The share of events that arrive out of order: behind the newest event time so far.
    pub late_fraction: f64,
    /// How far, at most, an out-of-order event is moved back from the newest event time (ms).
    pub max_lateness_ms: Time,
    /// The event time of the first event (ms since the epoch).
    pub start_ts: Time,
    /// How many events happen per second of event time (the clock's rate).
    pub events_per_second: u64,
}

impl Default for GenConfig {
    /// 100k products, 1M customers, Zipf 1.1, 20% purchases, 3% refunds, 2% out of order by up
    /// to 10 s, 100 events per second of event time from 2026-01-01T00:00:00Z; no events.
    fn default() -> Self {
        GenConfig {
            seed: 0,
            events: 0,
            products: 100_000,
            customers: 1_000_000,
            zipf_exponent: 1.1,
            purchase_fraction: 0.20,
            refund_fraction: 0.03,
            late_fraction: 0.02,
            max_lateness_ms: 10_000,
            start_ts: 1_767_225_600_000,
            events_per_second: 100,
        }
    }
}

impl GenConfig {
    /// Checks that the configuration describes events the generator can produce.
    pub fn check(&self) -> Result<(), String> {
        let share = |name: &str, x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(())
            } else {
                Err(format!("{name} {x} is not between 0 and 1"))
            }
        };
        share("purchase_fraction", self.purchase_fraction)?;
        share("refund_fraction", self.refund_fraction)?;
        share("late_fraction", self.late_fraction)?;
        if self.purchase_fraction + self.refund_fraction > 1.0 {
            return Err("purchase_fraction + refund_fraction is above 1".into());
        }
        if self.products == 0 || self.customers == 0 {
            return Err("need at least one product and one customer".into());
        }
        if self.events_per_second == 0 {
            return Err("events_per_second must be positive".into());
        }
        if !(self.zipf_exponent >= 0.0 && self.zipf_exponent.is_finite()) {
            return Err(format!(
                "zipf_exponent {} is not a non-negative number",
                self.zipf_exponent
            ));
        }
        let span = u128::from(self.events) * 1000 / u128::from(self.events_per_second);
        if u128::from(self.start_ts) + span >= u128::from(END_OF_TIME) {
            return Err("the events' times would not stay below 2^53".into());
        }
        Ok(())
    }
}

/// A deterministic stream of synthetic [`Order`]s; see the [module](self) documentation.
pub struct Generator {
    config: GenConfig,
    rng: Xoshiro256PlusPlus,
    zipf: Zipf<f64>,
    /// Events yielded so far.
    index: u64,
    /// The newest event time yielded so far.
    newest: Option<Time>,
}

impl Generator {
    /// A generator for `config`, or why the configuration is unusable.
    pub fn new(config: GenConfig) -> Result<Generator, String> {
        config.check()?;
        let zipf = Zipf::new(config.products as f64, config.zipf_exponent)
            .map_err(|e| format!("bad Zipf parameters: {e}"))?;
        Ok(Generator {
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            zipf,
            index: 0,
            newest: None,
        })
    }

    /// The configuration this generator follows.
    pub fn config(&self) -> &GenConfig {
        &self.config
    }

    /// The unit price of a product in cents (between 1.99 and 201.98), fixed per product.
    pub fn price_cents(product: u64) -> u64 {
        199 + mix(product) % 20_000
    }
}

/// A 64-bit mixing function (splitmix64's finalizer): spreads nearby ids over all bits.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Iterator for Generator {
    type Item = Order;

    fn next(&mut self) -> Option<Order> {
        let config = &self.config;
        if self.index >= config.events {
            return None;
        }
        let clock = config.start_ts + self.index * 1000 / config.events_per_second;
        self.index += 1;

        let ts = match self.newest {
            Some(newest)
                if config.max_lateness_ms > 0 && self.rng.random_bool(config.late_fraction) =>
            {
                newest.saturating_sub(self.rng.random_range(1..=config.max_lateness_ms))
            }
            _ => {
                self.newest = Some(clock);
                clock
            }
        };

        let rank = self.rng.sample(self.zipf) as u64;
        let product = rank.clamp(1, config.products) - 1;
        let customer = self.rng.random_range(0..config.customers);
        let draw: f64 = self.rng.random();
        let (kind, amount_cents) = if draw < config.purchase_fraction {
            let quantity = self.rng.random_range(1..=3u64);
            (Kind::Purchase, Generator::price_cents(product) * quantity)
        } else if draw < config.purchase_fraction + config.refund_fraction {
            (Kind::Refund, Generator::price_cents(product))
        } else {
            (Kind::View, 0)
        };
        Some(Order {
            ts,
            kind,
            customer,
            product,
            amount_cents,
            amount_missing: false,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.config.events - self.index).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Generator {}

/// Appends one event as a JSON line (with its `\n`), in the shape [`Order`]'s parser reads:
/// `{"ts":…,"kind":"purchase","customer":…,"product":…,"amount_cents":…}` (a view
/// without an amount has no `amount_cents`).
pub fn push_json_line(buf: &mut Vec<u8>, order: &Order) {
    let mut number = itoa::Buffer::new();
    buf.extend_from_slice(b"{\"ts\":");
    buf.extend_from_slice(number.format(order.ts).as_bytes());
    buf.extend_from_slice(match order.kind {
        Kind::Purchase => b",\"kind\":\"purchase\",\"customer\":" as &[u8],
        Kind::Refund => b",\"kind\":\"refund\",\"customer\":",
        Kind::View => b",\"kind\":\"view\",\"customer\":",
    });
    buf.extend_from_slice(number.format(order.customer).as_bytes());
    buf.extend_from_slice(b",\"product\":");
    buf.extend_from_slice(number.format(order.product).as_bytes());
    if !order.amount_missing {
        buf.extend_from_slice(b",\"amount_cents\":");
        buf.extend_from_slice(number.format(order.amount_cents).as_bytes());
    }
    buf.extend_from_slice(b"}\n");
}

/// Writes events (owned or borrowed, e.g. straight from a [`Generator`]) as JSON Lines to
/// `out`, buffering internally (no need for a `BufWriter`), and returns how many bytes were
/// written.
pub fn write_jsonl<W: Write>(
    events: impl IntoIterator<Item = impl Borrow<Order>>,
    mut out: W,
) -> io::Result<u64> {
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(CHUNK + 256);
    let mut written = 0u64;
    for order in events {
        push_json_line(&mut buf, order.borrow());
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            written += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    written += buf.len() as u64;
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Format};

    fn config(seed: u64, events: u64) -> GenConfig {
        GenConfig {
            seed,
            events,
            ..GenConfig::default()
        }
    }

    #[test]
    fn same_seed_same_events() {
        let a: Vec<Order> = Generator::new(config(42, 5_000)).unwrap().collect();
        let b: Vec<Order> = Generator::new(config(42, 5_000)).unwrap().collect();
        let c: Vec<Order> = Generator::new(config(43, 5_000)).unwrap().collect();
        assert_eq!(a.len(), 5_000);
        assert_eq!(a, b);
        assert_ne!(a, c, "another seed gives other events");
    }

    #[test]
    fn out_of_order_share_is_about_the_requested_fraction() {
        for fraction in [0.0, 0.02, 0.10] {
            let cfg = GenConfig {
                late_fraction: fraction,
                ..config(1, 100_000)
            };
            let max_lateness = cfg.max_lateness_ms;
            let mut newest = 0;
            let mut late = 0u64;
            for order in Generator::new(cfg).unwrap() {
                if order.ts < newest {
                    late += 1;
                    assert!(newest - order.ts <= max_lateness, "moved back too far");
                }
                newest = newest.max(order.ts);
            }
            let share = late as f64 / 100_000.0;
            assert!(
                (share - fraction).abs() <= 0.005,
                "asked {fraction}, got {share}"
            );
        }
    }

    #[test]
    fn kinds_products_and_customers_are_shaped_as_configured() {
        let cfg = config(3, 100_000);
        let (products, customers) = (cfg.products, cfg.customers);
        let events: Vec<Order> = Generator::new(cfg).unwrap().collect();
        let share = |k: Kind| events.iter().filter(|o| o.kind == k).count() as f64 / 1e5;
        assert!((share(Kind::Purchase) - 0.20).abs() < 0.01);
        assert!((share(Kind::Refund) - 0.03).abs() < 0.005);
        assert!(events.iter().all(|o| o.product < products));
        assert!(events.iter().all(|o| o.customer < customers));
        assert!(
            events
                .iter()
                .all(|o| (o.kind == Kind::View) == (o.amount_cents == 0))
        );
        let top = events.iter().filter(|o| o.product == 0).count();
        let tail = events.iter().filter(|o| o.product == 999).count();
        assert!(top > 20 * tail.max(1), "Zipf skew: {top} vs {tail}");
    }

    #[test]
    fn each_line_parses_back_into_the_same_order() {
        let events: Vec<Order> = Generator::new(config(9, 2_000)).unwrap().collect();
        let mut out = Vec::new();
        let bytes = write_jsonl(&events, &mut out).unwrap();
        assert_eq!(bytes, out.len() as u64);
        let lines: Vec<&[u8]> = out
            .strip_suffix(b"\n")
            .unwrap()
            .split(|b| *b == b'\n')
            .collect();
        assert_eq!(lines.len(), events.len());
        for (line, order) in lines.iter().zip(&events) {
            assert_eq!(&Order::parse(line, Format::JsonLines).unwrap(), order);
        }
    }

    #[test]
    fn rejects_unusable_configurations() {
        assert!(
            Generator::new(GenConfig {
                products: 0,
                ..GenConfig::default()
            })
            .is_err()
        );
        assert!(
            Generator::new(GenConfig {
                late_fraction: 1.5,
                ..GenConfig::default()
            })
            .is_err()
        );
        assert!(
            Generator::new(GenConfig {
                events_per_second: 0,
                ..GenConfig::default()
            })
            .is_err()
        );
    }
}
