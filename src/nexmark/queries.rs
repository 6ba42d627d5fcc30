//! NEXMark q0-q8 as the views of one pipeline, written with the library API.
//!
//! Each query is a view named after it (`q0` ... `q8`) whose rows are the query's answer, as
//! `NEXMARK.md` gives their columns: a key's value is the array of its rows (a row may occur
//! more than once: q0-q2, q5 and q7 are multisets). The views are ordinary differential code
//! over the one collection of events, so both lanes feed them and late events correct them:
//! once the input has ended, a view's rows are the query's batch answer.
//!
//! | view | keyed by | how |
//! | --- | --- | --- |
//! | `q0` | auction | every bid, unchanged |
//! | `q1` | auction | every bid, its price times 0.908 |
//! | `q2` | auction | bids whose auction is a multiple of 123 |
//! | `q3` | auction | category-10 auctions joined with sellers from OR, ID or CA |
//! | `q4` | category | mean of the winning prices of its auctions |
//! | `q5` | (window start, auction) | the auctions with the most bids in each 10 s window hopping by 2 s |
//! | `q6` | seller | mean winning price of the seller's last 10 auctions |
//! | `q7` | window start | the highest bids of each 10 s tumbling window |
//! | `q8` | person | people who opened an auction in the 10 s window they registered in |
//!
//! An auction's *winning price* (q4, q6) is its highest bid whose `dateTime` lies in
//! `[auction dateTime, expires]`; an auction without such a bid has none and is left out. The
//! *last 10* auctions of a seller (q6) are those that close last (greatest `expires`, then
//! greatest id) among the auctions with a winning price: once the input has ended every
//! auction has closed. q4 and q6 share the winning prices when both are built.
//!
//! With a maximum lateness (`--max-lateness`), q7 and q8 give each window's state back once no
//! update can reach it any more ([`retire`](crate::retire)): their state stays bounded by the
//! windows within the horizon, and their rows stay.

use differential_dataflow::VecCollection;
use serde_json::{Value, json};
use smol_str::SmolStr;

use super::{Auction, Bid, Nexmark, Person};
use crate::aggregate::{Sums, fold_by_key};
use crate::engine::Pipeline;
use crate::event::Time;
use crate::rank::Rank;
use crate::view::Views;
use crate::window::{self, Sliding, Tumbling};

/// One NEXMark query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Query {
    /// Pass-through: every bid.
    Q0,
    /// Currency conversion: every bid, its price times 0.908.
    Q1,
    /// Selection: bids on auctions whose id is a multiple of 123.
    Q2,
    /// Local item suggestion: category-10 auctions of sellers in OR, ID or CA.
    Q3,
    /// Average price per category, over the auctions' winning prices.
    Q4,
    /// Hot items: the most bid-on auctions of each hopping window.
    Q5,
    /// Average selling price per seller, over the last 10 auctions.
    Q6,
    /// Highest bid of each tumbling window.
    Q7,
    /// New users who opened an auction in the window they registered in.
    Q8,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 9] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q6,
        Query::Q7,
        Query::Q8,
    ];

    /// The view's name: `q0` ... `q8`.
    pub fn name(self) -> &'static str {
        ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"][self as usize]
    }
}

/// The pipeline of the chosen queries over NEXMark events.
#[derive(Clone, Debug)]
pub struct Queries(Vec<Query>);

impl Queries {
    /// Every query, q0 to q8.
    pub fn all() -> Queries {
        Queries(Query::ALL.to_vec())
    }

    /// Only these queries (each once).
    pub fn only(queries: &[Query]) -> Queries {
        let mut queries = queries.to_vec();
        queries.sort();
        queries.dedup();
        Queries(queries)
    }

    /// The queries built.
    pub fn queries(&self) -> &[Query] {
        &self.0
    }
}

/// Ten-second tumbling windows (q7, q8).
const TEN_SECONDS: Tumbling = match window::tumbling(10_000) {
    Ok(w) => w,
    Err(_) => panic!("10 s is a width"),
};

/// Ten-second windows every two seconds (q5).
const HOPPING: Sliding = match window::sliding(10_000, 2_000) {
    Ok(w) => w,
    Err(_) => panic!("10 s is a multiple of 2 s"),
};

/// A key's rows: each value's row as often as its count.
fn multiset<V>(values: &[(V, isize)], row: impl Fn(&V) -> Value) -> Option<Value> {
    let rows: Vec<Value> = values
        .iter()
        .flat_map(|(v, n)| std::iter::repeat_n(row(v), (*n).max(0) as usize))
        .collect();
    (!rows.is_empty()).then_some(Value::Array(rows))
}

/// An auction with its winning price: `(id, (category, seller, expires, price))`.
type Won = (u64, (u64, u64, Time, u64));

/// The three streams of a NEXMark input, split once.
struct Streams<'s> {
    persons: VecCollection<'s, Time, Person>,
    auctions: VecCollection<'s, Time, Auction>,
    bids: VecCollection<'s, Time, Bid>,
}

impl<'s> Streams<'s> {
    fn new(events: VecCollection<'s, Time, Nexmark>) -> Self {
        Streams {
            persons: events.clone().flat_map(|e| match e {
                Nexmark::Person(p) => Some(p),
                _ => None,
            }),
            auctions: events.clone().flat_map(|e| match e {
                Nexmark::Auction(a) => Some(a),
                _ => None,
            }),
            bids: events.flat_map(|e| match e {
                Nexmark::Bid(b) => Some(b),
                _ => None,
            }),
        }
    }

    /// Every auction with a winning price.
    fn winning(&self) -> VecCollection<'s, Time, Won> {
        let auctions = self
            .auctions
            .clone()
            .map(|a| (a.id, (a.category, a.seller, a.date_time, a.expires)));
        let bids = self
            .bids
            .clone()
            .map(|b| (b.auction, (b.price, b.date_time)));
        auctions
            .join_map(
                bids,
                |id, (category, seller, opened, expires), (price, at)| {
                    (
                        (*id, (*category, *seller, *expires)),
                        (*opened..=*expires).contains(at).then_some(*price),
                    )
                },
            )
            .flat_map(|(key, price)| price.map(|p| (key, p)))
            .max_by_key()
            .map(|((id, (category, seller, expires)), price)| {
                (id, (category, seller, expires, price))
            })
    }
}

impl Pipeline for Queries {
    type Event = Nexmark;

    fn build<'s>(&self, events: VecCollection<'s, Time, Nexmark>, views: &mut Views<'s>) {
        let streams = Streams::new(events);
        let needs_winning = self.0.iter().any(|q| matches!(q, Query::Q4 | Query::Q6));
        let winning = needs_winning.then(|| streams.winning());
        for query in &self.0 {
            let bids = streams.bids.clone();
            match query {
                Query::Q0 => {
                    views.register(
                        "q0",
                        "NEXMark q0: every bid",
                        bids.map(|b| (b.auction, (b.bidder, b.price, b.date_time, b.extra))),
                        |auction, values| {
                            multiset(values, |(bidder, price, at, extra)| {
                                json!({"auction": auction, "bidder": bidder, "price": price, "dateTime": at, "extra": extra})
                            })
                        },
                    );
                }
                Query::Q1 => {
                    views.register(
                        "q1",
                        "NEXMark q1: every bid, its price in euros (0.908 x price)",
                        bids.map(|b| (b.auction, (b.bidder, b.price, b.date_time, b.extra))),
                        |auction, values| {
                            multiset(values, |(bidder, price, at, extra)| {
                                // Exact: `price * 908` is an integer below 2^53, and one
                                // division rounds once, as DuckDB's DECIMAL to DOUBLE does.
                                let euros = (*price as f64 * 908.0) / 1000.0;
                                json!({"auction": auction, "bidder": bidder, "price": euros, "dateTime": at, "extra": extra})
                            })
                        },
                    );
                }
                Query::Q2 => {
                    views.register(
                        "q2",
                        "NEXMark q2: the bids on auctions whose id is a multiple of 123",
                        bids.filter(|b| b.auction % 123 == 0)
                            .map(|b| (b.auction, b.price)),
                        |auction, values| {
                            multiset(values, |price| json!({"auction": auction, "price": price}))
                        },
                    );
                }
                Query::Q3 => {
                    let sellers = streams
                        .auctions
                        .clone()
                        .filter(|a| a.category == 10)
                        .map(|a| (a.seller, a.id));
                    let people = streams
                        .persons
                        .clone()
                        .filter(|p| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
                        .map(|p| (p.id, (p.name, p.city, p.state)));
                    views.register_derived(
                        "q3",
                        "NEXMark q3: category-10 auctions of sellers in OR, ID or CA",
                        sellers.join_map(people, |_, id, person| (*id, person.clone())),
                        |id, values: &[((SmolStr, SmolStr, SmolStr), isize)]| {
                            multiset(values, |(name, city, state)| {
                                json!({"name": name, "city": city, "state": state, "id": id})
                            })
                        },
                    );
                }
                Query::Q4 => {
                    let Some(winning) = winning.clone() else {
                        continue;
                    };
                    views.register_derived(
                        "q4",
                        "NEXMark q4: the mean winning price of each category's auctions",
                        winning.explode(|(_, (category, _, _, price))| {
                            Some(((category, ()), Sums([i128::from(price), 1])))
                        }),
                        |category, values: &[((), Sums<2>)]| {
                            let Sums([total, count]) = values.first()?.1;
                            (count > 0).then(|| json!([{"category": category, "final": total as f64 / count as f64}]))
                        },
                    );
                }
                Query::Q5 => {
                    // Bids counted per window and auction as they arrive, before any
                    // arrangement: five windows per bid become one record per auction.
                    let counts = fold_by_key(
                        bids,
                        |key: &(Time, u64)| *key,
                        |b: &Bid, diff: &isize, add| {
                            for start in HOPPING.starts(b.date_time) {
                                add(&(start, b.auction), *diff);
                            }
                        },
                    )
                    .count();
                    let hottest = counts
                        .map(|((start, auction), n)| (start, (n, auction)))
                        .argmax_by_key(|(n, _)| *n);
                    views.register_derived(
                        "q5",
                        "NEXMark q5: the auctions with the most bids in each 10 s window hopping by 2 s",
                        hottest.map(|(start, (n, auction))| ((start, auction), n)),
                        |(_start, auction), values| {
                            multiset(values, |n| json!({"auction": auction, "num": n}))
                        },
                    );
                }
                Query::Q6 => {
                    let Some(winning) = winning.clone() else {
                        continue;
                    };
                    let last_ten = winning
                        .map(|(id, (_, seller, expires, price))| (seller, (expires, id, price)))
                        .top_k_by_key(10)
                        .explode(|(seller, (_, _, price))| {
                            Some(((seller, ()), Sums([i128::from(price), 1])))
                        });
                    views.register_derived(
                        "q6",
                        "NEXMark q6: the mean winning price of each seller's last 10 auctions",
                        last_ten,
                        |seller, values: &[((), Sums<2>)]| {
                            let Sums([total, count]) = values.first()?.1;
                            (count > 0).then(|| json!([{"seller": seller, "avg_price": total as f64 / count as f64}]))
                        },
                    );
                }
                Query::Q7 => {
                    // Every operator here is keyed by window: each window's state retires
                    // once no update can reach it (with a maximum lateness).
                    let horizon = views.horizon();
                    let bids = horizon.retire(bids, |b| TEN_SECONDS.end(b.date_time));
                    let tops = bids
                        .clone()
                        .map(|b| (TEN_SECONDS.start(b.date_time), b.price))
                        .max_by_key();
                    // A window's highest bids are those at its highest price within
                    // [end - 10 s, end]: a bid at a window's end is a candidate of that window too.
                    let candidates = bids.flat_map(|b| {
                        let start = TEN_SECONDS.start(b.date_time);
                        let previous = (b.date_time == start && start >= TEN_SECONDS.width())
                            .then(|| start - TEN_SECONDS.width());
                        std::iter::once(start)
                            .chain(previous)
                            .map(move |s| {
                                (
                                    (s, b.price),
                                    (b.auction, b.bidder, b.date_time, b.extra.clone()),
                                )
                            })
                            .collect::<Vec<_>>()
                    });
                    let highest = candidates.semijoin(tops).map(
                        |((start, price), (auction, bidder, at, extra))| {
                            (start, (price, auction, bidder, at, extra))
                        },
                    );
                    views.register_derived(
                        "q7",
                        "NEXMark q7: the highest bids of each 10 s tumbling window",
                        horizon.keep(highest, |(start, _)| start + TEN_SECONDS.width()),
                        |_start, values| {
                            multiset(values, |(price, auction, bidder, at, extra)| {
                                json!({"auction": auction, "price": price, "bidder": bidder, "dateTime": at, "extra": extra})
                            })
                        },
                    );
                }
                Query::Q8 => {
                    // A windowed join: each window's people and sellers retire once no update
                    // can reach it (with a maximum lateness), and its rows stay.
                    let horizon = views.horizon();
                    let persons =
                        horizon.retire(streams.persons.clone(), |p| TEN_SECONDS.end(p.date_time));
                    let auctions =
                        horizon.retire(streams.auctions.clone(), |a| TEN_SECONDS.end(a.date_time));
                    let people = TEN_SECONDS
                        .assign(persons, |p| p.date_time)
                        .map(|(start, p)| ((p.id, start), p.name))
                        .distinct();
                    let sellers = TEN_SECONDS
                        .assign(auctions, |a| a.date_time)
                        .map(|(start, a)| (a.seller, start))
                        .distinct();
                    let joined = people
                        .semijoin(sellers)
                        .map(|((id, start), name)| (id, (name, start)));
                    views.register_derived(
                        "q8",
                        "NEXMark q8: people who opened an auction in the 10 s window they registered in",
                        horizon.keep(joined, |(_, (_, start))| start + TEN_SECONDS.width()),
                        |id, values| {
                            multiset(values, |(name, start)| json!({"id": id, "name": name, "starttime": start}))
                        },
                    );
                }
            }
        }
    }
}
