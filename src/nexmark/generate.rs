//! A seeded generator of NEXMark events, after the suite's Java generator.
//!
//! Event number `n` (from 0) is a person when `n % 50 < 1`, an auction when `< 4` and a bid
//! otherwise; its time is `base_time + n * 1000 / rate` ms. Ids grow with the events, from 1000:
//! the `k`-th person has id `1000 + k`, the `k`-th auction `1000 + k`. As in the Java
//! generator:
//!
//! * half the bids go to the current hot auction (the newest multiple of 100), the rest to one
//!   of the last 100 auctions (or up to 10 ahead);
//! * 3/4 of bids come from the hot bidder and 3/4 of auctions from the hot seller, the rest
//!   from one of the last 1000 people (or up to 10 ahead);
//! * prices are log-uniform from 100 to 10^8, `category` is 10 to 14, `state` one of
//!   AZ CA ID OR WA WY, and an auction expires a random time within twice the time of
//!   ~1666 events after it opens;
//! * `extra` pads a person to about 200 bytes, an auction to 500 and a bid to 100.
//!
//! Out of order (`out_of_order = g > 1`): events are permuted within groups of `g` numbers,
//! `n -> base + (n * 953) % g`, as the suite's `outOfOrderGroupSize` does; each event keeps
//! the content and time of its own number, so the file holds the same events, reordered.
//! (The last, shorter group, and any group whose size shares a factor with 953, is kept in
//! order, so that every number occurs once.)
//!
//! Each event is drawn from its own random stream, seeded by `(seed, n)`: the events do not
//! depend on their order, and the same configuration always yields the same file. The stream
//! is xoshiro256++ (`rand`), as in the e-commerce generator.
//!
//! Why not the `nexmark` crate: it has no seed, writes lower-case states (so q3 matches no
//! one), varies its rate as a sine by default and names its fields in snake case. Its model is
//! the Java one, as is this.
//!
//! ```
//! use lambdaflow::nexmark::Nexmark;
//! use lambdaflow::nexmark::generate::{NexmarkConfig, events};
//!
//! let config = NexmarkConfig { events: 100, ..NexmarkConfig::default() };
//! let all: Vec<Nexmark> = events(&config)?.collect();
//! assert_eq!(all.len(), 100);
//! assert!(matches!(all[0], Nexmark::Person(_)));
//! assert_eq!(all, events(&config)?.collect::<Vec<_>>());
//! # Ok::<(), String>(())
//! ```

use std::io::{self, Write};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use smol_str::SmolStr;

use super::{Auction, Bid, Nexmark, Person};
use crate::event::{END_OF_TIME, Time};
use crate::history::{Generated, Share};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// The seed: equal configurations yield equal events.
    pub seed: u64,
    /// How many events.
    pub events: u64,
    /// Events per second of event time.
    pub rate: u64,
    /// Permute events within groups of this many (0 or 1: in order).
    pub out_of_order: u64,
    /// The time of the first event (ms since the epoch).
    pub base_time: Time,
}

impl Default for NexmarkConfig {
    /// 10,000 events per second from 2023-11-14T22:13:20Z, in order; no events.
    fn default() -> Self {
        NexmarkConfig {
            seed: 0,
            events: 0,
            rate: 10_000,
            out_of_order: 1,
            base_time: 1_700_000_000_000,
        }
    }
}

/// The events of `config`, in file order.
pub fn events(config: &NexmarkConfig) -> Result<impl Iterator<Item = Nexmark> + use<>, String> {
    let model = check(config)?;
    let (total, group) = (config.events, config.out_of_order.max(1));
    Ok((0..total).map(move |i| model.event(permuted(i, group, total))))
}

/// The events of `config` as an in-process source: share `i` of `n` is the events at
/// positions `i, i + n, ...` of the file, made by the worker that replays them.
pub fn source(config: &NexmarkConfig) -> Result<Generated<Nexmark>, String> {
    check(config)?;
    let config = config.clone();
    Ok(Generated::new(move |share: Share| {
        let positions = (share.index as u64..config.events).step_by(share.count.max(1));
        let (model, group, total) = (
            Model::of(&config),
            config.out_of_order.max(1),
            config.events,
        );
        Box::new(positions.map(move |i| model.event(permuted(i, group, total))))
    }))
}

/// Writes the events of `config` as JSON Lines; returns how many bytes.
pub fn write_jsonl(config: &NexmarkConfig, out: impl Write) -> io::Result<u64> {
    let mut out = io::BufWriter::new(out);
    let mut bytes = 0;
    for event in events(config).map_err(io::Error::other)? {
        let line = event.to_json_line();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        bytes += line.len() as u64 + 1;
    }
    out.flush()?;
    Ok(bytes)
}

/// The model of a usable configuration.
fn check(config: &NexmarkConfig) -> Result<Model, String> {
    if config.rate == 0 {
        return Err("the rate must be at least 1 event per second".into());
    }
    let model = Model::of(config);
    if model.time(config.events) >= END_OF_TIME {
        return Err("the events would end after the last representable time".into());
    }
    Ok(model)
}

/// The event number at position `i` of the file: `i` permuted within its group of `group`.
fn permuted(i: u64, group: u64, total: u64) -> u64 {
    let base = i / group * group;
    let size = group.min(total - base);
    if size <= 1 || size.is_multiple_of(953) {
        return i;
    }
    base + (i - base) * 953 % size
}

const PROPORTION: u64 = 50;
const PERSONS: u64 = 1;
const AUCTIONS: u64 = 3;
const FIRST_ID: u64 = 1000;
const HOT_RATIO: u64 = 100;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const ACTIVE_PEOPLE: u64 = 1000;
const ID_LEAD: u64 = 10;
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS: u64 = 10_000;

/// The generator's model: what event number `n` is.
#[derive(Clone, Copy)]
struct Model {
    seed: u64,
    rate: u64,
    base_time: Time,
}

impl Model {
    fn of(config: &NexmarkConfig) -> Model {
        Model {
            seed: config.seed,
            rate: config.rate,
            base_time: config.base_time,
        }
    }

    fn time(&self, n: u64) -> Time {
        self.base_time + n.saturating_mul(1000) / self.rate
    }

    fn event(&self, n: u64) -> Nexmark {
        let key = [self.seed.to_le_bytes(), n.to_le_bytes()].concat();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&key));
        let time = self.time(n);
        match n % PROPORTION {
            r if r < PERSONS => Nexmark::Person(self.person(n, time, &mut rng)),
            r if r < PERSONS + AUCTIONS => Nexmark::Auction(self.auction(n, time, &mut rng)),
            _ => Nexmark::Bid(self.bid(n, time, &mut rng)),
        }
    }

    fn person(&self, n: u64, time: Time, rng: &mut Xoshiro256PlusPlus) -> Person {
        let name = format!("{} {}", pick(rng, &FIRST_NAMES), pick(rng, &LAST_NAMES));
        let email = format!("{}@{}.com", string(rng, 7), string(rng, 5));
        let card: Vec<String> = (0..4)
            .map(|_| format!("{:04}", rng.random_range(0..10_000)))
            .collect();
        let (city, state) = (pick(rng, &CITIES), pick(rng, &STATES));
        let size = 8 * 2 + name.len() + email.len() + 19 + city.len() + state.len();
        Person {
            id: last_person(n) + FIRST_ID,
            name: name.into(),
            email_address: email.into(),
            credit_card: card.join(" ").into(),
            city: city.into(),
            state: state.into(),
            date_time: time,
            extra: extra(rng, size, 200),
        }
    }

    fn auction(&self, n: u64, time: Time, rng: &mut Xoshiro256PlusPlus) -> Auction {
        let seller = if rng.random_range(0..4) > 0 {
            last_person(n) / HOT_RATIO * HOT_RATIO
        } else {
            next_person(n, rng)
        };
        let category = 10 + rng.random_range(0..5);
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        let horizon = self.time(n + IN_FLIGHT_AUCTIONS * PROPORTION / AUCTIONS) - time;
        let expires = time + 1 + rng.random_range(0..(2 * horizon).max(1));
        let (item_name, description) = (string(rng, 20), string(rng, 100));
        let size = 8 * 7 + item_name.len() + description.len();
        Auction {
            id: last_auction(n) + FIRST_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: time,
            expires,
            seller: seller + FIRST_ID,
            category,
            extra: extra(rng, size, 500),
        }
    }

    fn bid(&self, n: u64, time: Time, rng: &mut Xoshiro256PlusPlus) -> Bid {
        let auction = if rng.random_range(0..2) > 0 {
            last_auction(n) / HOT_RATIO * HOT_RATIO
        } else {
            next_auction(n, rng)
        };
        let bidder = if rng.random_range(0..4) > 0 {
            last_person(n) / HOT_RATIO * HOT_RATIO + 1
        } else {
            next_person(n, rng)
        };
        let price = price(rng);
        let (channel, url) = if rng.random_range(0..2) > 0 {
            let channel = pick(rng, &HOT_CHANNELS);
            let url = format!("https://www.nexmark.com/{}/item.htm?query=1", channel);
            (SmolStr::new(channel), url)
        } else {
            let c = rng.random_range(0..CHANNELS);
            let url = format!("https://www.nexmark.com/channel/item.htm?query=1&channel_id={c}");
            (SmolStr::from(format!("channel-{c}")), url)
        };
        let size = 8 * 4 + channel.len() + url.len();
        Bid {
            auction: auction + FIRST_ID,
            bidder: bidder + FIRST_ID,
            price,
            channel,
            url: url.into(),
            date_time: time,
            extra: extra(rng, size, 100),
        }
    }
}

/// The newest person's base-0 id at event `n`: one person opens every 50 events.
fn last_person(n: u64) -> u64 {
    n / PROPORTION * PERSONS
}

/// The newest auction's base-0 id at event `n` (the auction before, for a person event).
fn last_auction(n: u64) -> u64 {
    let (epoch, offset) = (n / PROPORTION, n % PROPORTION);
    if offset < PERSONS {
        (epoch * AUCTIONS).saturating_sub(1)
    } else {
        epoch * AUCTIONS + (offset - PERSONS).min(AUCTIONS - 1)
    }
}

/// One of the last 1000 persons at event `n`, or up to 10 ahead.
fn next_person(n: u64, rng: &mut Xoshiro256PlusPlus) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.random_range(0..active + ID_LEAD)
}

/// One of the last 100 auctions at event `n`, or up to 10 ahead.
fn next_auction(n: u64, rng: &mut Xoshiro256PlusPlus) -> u64 {
    let newest = last_auction(n);
    let oldest = newest.saturating_sub(IN_FLIGHT_AUCTIONS);
    oldest + rng.random_range(0..newest - oldest + 1 + ID_LEAD)
}

fn price(rng: &mut Xoshiro256PlusPlus) -> u64 {
    let exponent: f64 = rng.random::<f64>() * 6.0;
    (10f64.powf(exponent) * 100.0).round() as u64
}

fn pick<'a>(rng: &mut Xoshiro256PlusPlus, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// Lower-case letters and a few spaces, 3 to `max - 1` characters before trimming.
fn string(rng: &mut Xoshiro256PlusPlus, max: usize) -> SmolStr {
    let len = rng.random_range(3..max);
    let text: String = (0..len)
        .map(|_| {
            if rng.random_range(0..13) == 0 {
                ' '
            } else {
                char::from(b'a' + rng.random_range(0..26u8))
            }
        })
        .collect();
    SmolStr::new(text.trim())
}

/// Letters that pad a record of `size` bytes to about `average` (within 20 %).
fn extra(rng: &mut Xoshiro256PlusPlus, size: usize, average: usize) -> SmolStr {
    let Some(want) = average.checked_sub(size) else {
        return SmolStr::default();
    };
    let delta = (want as f64 * 0.2).round() as usize;
    let len = want - delta
        + if delta == 0 {
            0
        } else {
            rng.random_range(0..2 * delta)
        };
    (0..len)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn config(events: u64) -> NexmarkConfig {
        NexmarkConfig {
            events,
            ..NexmarkConfig::default()
        }
    }

    #[test]
    fn the_mix_ids_and_times_follow_the_model() {
        let all: Vec<Nexmark> = events(&config(100_000)).unwrap().collect();
        let persons: Vec<&Person> = all
            .iter()
            .filter_map(|e| match e {
                Nexmark::Person(p) => Some(p),
                _ => None,
            })
            .collect();
        let auctions: Vec<&Auction> = all
            .iter()
            .filter_map(|e| match e {
                Nexmark::Auction(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!((persons.len(), auctions.len()), (2_000, 6_000));
        assert!(
            persons
                .iter()
                .enumerate()
                .all(|(k, p)| p.id == 1000 + k as u64)
        );
        assert!(
            auctions
                .iter()
                .enumerate()
                .all(|(k, a)| a.id == 1000 + k as u64)
        );
        assert!(auctions.iter().all(|a| (10..15).contains(&a.category)));
        assert!(
            auctions
                .iter()
                .all(|a| a.expires > a.date_time && a.expires - a.date_time <= 334)
        );
        assert!(persons.iter().all(|p| STATES.contains(&p.state.as_str())));
        let span = all.last().map(Event::time).unwrap() - all[0].time();
        assert_eq!(span, 9_999, "10 s of event time at 10,000 events/s");
        let bids: Vec<&Bid> = all
            .iter()
            .filter_map(|e| match e {
                Nexmark::Bid(b) => Some(b),
                _ => None,
            })
            .collect();
        let hot = bids
            .iter()
            .filter(|b| (b.auction - 1000) % 100 == 0)
            .count();
        let share = hot as f64 / bids.len() as f64;
        assert!((0.45..0.6).contains(&share), "hot auction share {share}");
        assert!(bids.iter().all(|b| (100..=100_000_000).contains(&b.price)));
        let size = |e: &Nexmark| e.to_json_line().len() as f64;
        let mean = bids
            .iter()
            .map(|b| size(&Nexmark::Bid((*b).clone())))
            .sum::<f64>()
            / bids.len() as f64;
        assert!((150.0..300.0).contains(&mean), "a bid line is {mean} bytes");
    }

    #[test]
    fn seeds_and_out_of_order_are_deterministic() {
        let a: Vec<Nexmark> = events(&config(5_000)).unwrap().collect();
        assert_eq!(a, events(&config(5_000)).unwrap().collect::<Vec<_>>());
        let other = NexmarkConfig {
            seed: 1,
            ..config(5_000)
        };
        assert_ne!(a, events(&other).unwrap().collect::<Vec<_>>());
        let shuffled = NexmarkConfig {
            out_of_order: 100,
            ..config(5_050)
        };
        let b: Vec<Nexmark> = events(&shuffled).unwrap().collect();
        assert!(
            b.windows(2).any(|w| w[0].time() > w[1].time()),
            "out of order"
        );
        let mut sorted = b.clone();
        sorted.sort();
        let mut in_order: Vec<Nexmark> = events(&config(5_050)).unwrap().collect();
        in_order.sort();
        assert_eq!(sorted, in_order, "the same events, reordered");
    }

    #[test]
    fn lines_parse_back() {
        use crate::event::Format;
        let mut out = Vec::new();
        write_jsonl(&config(500), &mut out).unwrap();
        let back: Vec<Nexmark> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Nexmark::parse(l, Format::JsonLines).unwrap())
            .collect();
        assert_eq!(back, events(&config(500)).unwrap().collect::<Vec<_>>());
        let zero = NexmarkConfig {
            rate: 0,
            ..config(1)
        };
        assert!(events(&zero).is_err());
    }
}
