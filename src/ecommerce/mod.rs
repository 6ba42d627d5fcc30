//! The reference pipeline: e-commerce events and their five views (`docs/REFERENCE.md`), plus two
//! windowed views over event time.
//!
//! It is written with the public API only, the way a user would write their own: an event type
//! with its parsers, and one [`Pipeline::build`] that registers every view. All sums are carried
//! as differences ([`Sums`]), so a key whose net value is 0 still has a row (its event count is
//! not 0), and the arrangements aggregate while they consolidate.
//!
//! The five views of `docs/REFERENCE.md` are [`REFERENCE_VIEWS`]; the pipeline adds
//! `customer_sessions` and `revenue_5min_sliding`, built from [`crate::window`].

use std::borrow::Cow;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::macros::format_description;

use crate::aggregate::Sums;
use crate::engine::Pipeline;
use crate::event::{Event, Format, Time};
use crate::view::{ViewKey, Views};
use crate::window::{self, SessionSet, Sessions, Sliding, Tumbling};

pub mod generate;
mod line;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A customer bought a product.
    Purchase,
    /// A purchase was (partly) refunded.
    Refund,
    /// A customer looked at a product.
    View,
}

impl Kind {
    fn parse(text: &str) -> Result<Kind, String> {
        match text {
            "purchase" => Ok(Kind::Purchase),
            "refund" => Ok(Kind::Refund),
            "view" => Ok(Kind::View),
            other => Err(format!(
                "unknown kind {other:?} (expected purchase, refund or view)"
            )),
        }
    }
}

/// One e-commerce event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Order {
    /// Event time, milliseconds since the epoch.
    pub ts: Time,
    /// What happened.
    pub kind: Kind,
    /// Who did it.
    pub customer: u64,
    /// To which product.
    pub product: u64,
    /// How much money moved (0 for views).
    pub amount_cents: u64,
    /// Whether the line gave no `amount_cents` (a view may leave it out): SQL sees `NULL`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub amount_missing: bool,
}

const MAX_SAFE: u64 = 1 << 53;
const MAX_ID: u64 = 1 << 63;

/// The JSON shape of an event, borrowed from the line where possible.
#[derive(Deserialize)]
struct RawOrder<'a> {
    ts: u64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    customer: u64,
    product: u64,
    amount_cents: Option<u64>,
}

impl Order {
    fn checked(
        ts: u64,
        kind: Kind,
        customer: u64,
        product: u64,
        amount: Option<u64>,
    ) -> Result<Order, String> {
        if ts >= MAX_SAFE {
            return Err(format!("ts {ts} is not below 2^53"));
        }
        if customer >= MAX_ID {
            return Err(format!("customer {customer} is not below 2^63"));
        }
        if product >= MAX_ID {
            return Err(format!("product {product} is not below 2^63"));
        }
        let amount_cents = match (kind, amount) {
            (_, Some(a)) if a >= MAX_SAFE => {
                return Err(format!("amount_cents {a} is not below 2^53"));
            }
            (Kind::View, a) => a.unwrap_or(0),
            (_, Some(a)) => a,
            (_, None) => return Err("amount_cents is required for purchase and refund".into()),
        };
        Ok(Order {
            ts,
            kind,
            customer,
            product,
            amount_cents,
            amount_missing: amount.is_none(),
        })
    }

    fn from_json(line: &[u8]) -> Result<Order, String> {
        if let Some(f) = line::plain(line) {
            return Order::checked(f.ts, f.kind, f.customer, f.product, f.amount_cents);
        }
        let raw: RawOrder = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        Order::checked(
            raw.ts,
            Kind::parse(&raw.kind)?,
            raw.customer,
            raw.product,
            raw.amount_cents,
        )
    }

    fn from_csv(line: &[u8]) -> Result<Order, String> {
        let text = std::str::from_utf8(line).map_err(|e| e.to_string())?;
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields.len() != 5 {
            return Err(format!("expected 5 fields, found {}", fields.len()));
        }
        let number = |name: &str, text: &str| -> Result<u64, String> {
            text.parse::<u64>()
                .map_err(|_| format!("{name} {text:?} is not a non-negative integer"))
        };
        let amount = match fields[4] {
            "" => None,
            a => Some(number("amount_cents", a)?),
        };
        Order::checked(
            number("ts", fields[0])?,
            Kind::parse(fields[1])?,
            number("customer", fields[2])?,
            number("product", fields[3])?,
            amount,
        )
    }

    /// Net revenue of this event: `+amount` for a purchase, `-amount` for a refund, else 0.
    pub fn net(&self) -> i64 {
        match self.kind {
            Kind::Purchase => self.amount_cents as i64,
            Kind::Refund => -(self.amount_cents as i64),
            Kind::View => 0,
        }
    }

    /// Whether the event moves money (and so appears in the revenue views).
    pub fn is_money(&self) -> bool {
        self.kind != Kind::View
    }
}

impl Event for Order {
    /// Version 2 added `amount_missing` (version 1 records read as given amounts).
    const SCHEMA_VERSION: u32 = 2;

    fn time(&self) -> Time {
        self.ts
    }

    fn parse(line: &[u8], format: Format) -> Result<Self, String> {
        match format {
            Format::JsonLines => Order::from_json(line),
            Format::Csv => Order::from_csv(line),
            Format::Text => Err("e-commerce events are JSON Lines or CSV, not text".into()),
        }
    }

    fn check_csv_header(header: &[u8]) -> Result<(), String> {
        let expected = "ts,kind,customer,product,amount_cents";
        let found: String = String::from_utf8_lossy(header)
            .split(',')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(",");
        if found == expected {
            Ok(())
        } else {
            Err(format!("CSV header must be {expected:?}, found {found:?}"))
        }
    }
}

/// A UTC calendar day, as days since 1970-01-01; written `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Day(pub i64);

const MS_PER_DAY: u64 = 86_400_000;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

impl Day {
    /// The day of an event time.
    pub fn of(ts: Time) -> Day {
        Day((ts / MS_PER_DAY) as i64)
    }
}

impl ViewKey for Day {
    fn parse_key(text: &str) -> Option<Self> {
        let date = time::Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?;
        Some(Day(i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY))
    }

    fn key_text(&self) -> String {
        i32::try_from(self.0 + UNIX_EPOCH_JULIAN_DAY)
            .ok()
            .and_then(|jd| time::Date::from_julian_day(jd).ok())
            .and_then(|d| d.format(format_description!("[year]-[month]-[day]")).ok())
            .unwrap_or_else(|| format!("day {}", self.0))
    }
}

/// The width of an `events_per_minute` window.
pub const MINUTE_MS: Time = 60_000;

/// The views of `docs/REFERENCE.md`, the contract the golden dataset checks. The pipeline has more.
pub const REFERENCE_VIEWS: [&str; 5] = [
    "revenue_by_day",
    "product_stats",
    "customer_spend",
    "events_per_minute",
    "top_products",
];

/// The windows of `events_per_minute`: one minute, tumbling.
const MINUTES: Tumbling = match window::tumbling(MINUTE_MS) {
    Ok(w) => w,
    Err(_) => panic!("a minute is a valid width"),
};

/// The windows of `revenue_5min_sliding`: five minutes, sliding by one minute.
const FIVE_MINUTES_BY_MINUTE: Sliding = match window::sliding(5 * MINUTE_MS, MINUTE_MS) {
    Ok(w) => w,
    Err(_) => panic!("five minutes is a whole number of minutes"),
};

/// The sessions of `customer_sessions`: a customer's events less than 30 minutes apart.
const HALF_HOUR_SESSIONS: Sessions = match window::session(30 * MINUTE_MS) {
    Ok(s) => s,
    Err(_) => panic!("half an hour is a valid gap"),
};

/// The built-in pipeline: the views of `docs/REFERENCE.md` ([`REFERENCE_VIEWS`]: `revenue_by_day`,
/// `product_stats`, `customer_spend`, `events_per_minute` and `top_products`). The rows of
/// `events_per_minute` are final (in the changelog) once the watermark passes the minute's end.
/// [`EcommerceWithWindows`] adds two windowed views.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ecommerce;

/// A count and a net sum, for views whose rows must exist even when the sum is 0.
fn net_row(net: i64) -> Sums<2> {
    Sums([1, i128::from(net)])
}

fn net_value(values: &[((), Sums<2>)]) -> Option<Value> {
    values.first().map(|(_, s)| json!(s.0[1]))
}

impl Pipeline for Ecommerce {
    type Event = Order;

    fn checkpointed(&self) -> bool {
        true
    }

    fn build<'s>(&self, events: VecCollection<'s, Time, Order>, views: &mut Views<'s>) {
        let money = events.clone().filter(Order::is_money);

        views.register(
            "revenue_by_day",
            "net revenue (purchases minus refunds, cents) per UTC day",
            money
                .clone()
                .explode(|o| Some(((Day::of(o.ts), ()), net_row(o.net())))),
            |_, values| net_value(values),
        );

        let products = views.register(
            "product_stats",
            "purchases, refunds and net revenue (cents) per product",
            money.clone().explode(|o| {
                let (p, r) = if o.kind == Kind::Purchase {
                    (1, 0)
                } else {
                    (0, 1)
                };
                Some(((o.product, ()), Sums([p, r, i128::from(o.net())])))
            }),
            |_, values| {
                values.first().map(|(_, s)| {
                    json!({"purchases": s.0[0], "refunds": s.0[1], "revenue_cents": s.0[2]})
                })
            },
        );

        views.register(
            "customer_spend",
            "net spend (cents) per customer",
            money
                .clone()
                .explode(|o| Some(((o.customer, ()), net_row(o.net())))),
            |_, values| net_value(values),
        );

        let minutes = views.register(
            "events_per_minute",
            "events of each kind per one-minute tumbling window of event time",
            events.clone().explode(|o| {
                let mut counts = [0; 3];
                counts[o.kind as usize] = 1;
                Some(((MINUTES.start(o.ts), ()), Sums(counts)))
            }),
            |_, values| {
                values.first().map(|(_, s)| {
                    json!({"purchase": s.0[Kind::Purchase as usize], "refund": s.0[Kind::Refund as usize], "view": s.0[Kind::View as usize]})
                })
            },
        );

        minutes.final_after(|start| start + MINUTE_MS);

        views.top_k(
            "top_products",
            "the 10 products with the highest net revenue (ties: smaller id first)",
            &products,
            10,
            |_, values: &[((), Sums<3>)]| values.first().map(|(_, s)| s.0[2]),
            |product, revenue| json!({"product": product, "revenue_cents": revenue}),
        );
    }
}

/// The reference pipeline plus two windowed views, as `lambdaflow run` and `demo` serve it:
///
/// * `customer_sessions`: per customer, the sessions of all their events (events less than 30
///   minutes apart), as a list by start of `{"start", "end", "events"}` (`end` is the time of
///   the last event, inclusive);
/// * `revenue_5min_sliding`: net revenue (cents) per 5-minute window sliding by 1 minute, keyed
///   by the window's start in ms; a window has a row when it holds a purchase or refund, even
///   at net 0. Its rows are final (in the changelog) once the watermark passes the window's end.
///
/// Sessions are kept as one set of sessions per customer ([`SessionSet`]), so their state
/// grows with the sessions, not the events; the benchmarks measure [`Ecommerce`] alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct EcommerceWithWindows;

impl Pipeline for EcommerceWithWindows {
    type Event = Order;

    fn checkpointed(&self) -> bool {
        true
    }

    fn build<'s>(&self, events: VecCollection<'s, Time, Order>, views: &mut Views<'s>) {
        Ecommerce.build(events.clone(), views);
        let money = events.clone().filter(Order::is_money);
        // Each event is a session of its own, which differential merges with the others of
        // its customer as it consolidates: state is one set of sessions per customer.
        let visits = events.explode(|o| Some(((o.customer, ()), HALF_HOUR_SESSIONS.of(o.ts))));
        views.register(
            "customer_sessions",
            "sessions of each customer (events less than 30 minutes apart): start, end (last event, inclusive), events",
            visits,
            |_, values: &[((), SessionSet)]| {
                let list: Vec<Value> = values
                    .iter()
                    .flat_map(|(_, set)| set.sessions())
                    .map(|s| json!({"start": s.start, "end": s.end, "events": s.events}))
                    .collect();
                (!list.is_empty()).then_some(Value::Array(list))
            },
        );

        let sliding = views.register(
            "revenue_5min_sliding",
            "net revenue (cents) per 5-minute window of event time sliding by 1 minute, by window start (ms)",
            FIVE_MINUTES_BY_MINUTE
                .assign(money, |o| o.ts)
                .explode(|(start, o)| Some(((start, ()), net_row(o.net())))),
            |_, values| net_value(values),
        );
        sliding.final_after(|start| start + FIVE_MINUTES_BY_MINUTE.width());
    }
}
