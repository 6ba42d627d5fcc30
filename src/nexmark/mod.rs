//! NEXMark: the online-auction benchmark that Flink, Feldera, RisingWave and Arroyo report,
//! as lambdaflow events and views.
//!
//! People register ([`Person`]), open auctions ([`Auction`]) and bid on them ([`Bid`]); one
//! [`Nexmark`] event is one of the three. A line of input is the suite's JSON shape, with the
//! Flink suite's field names so that its SQL reads them unchanged:
//!
//! ```text
//! {"event_type":2,"bid":{"auction":1000,"bidder":1001,"price":1234,"channel":"Google","url":"https://...","dateTime":1700000000000,"extra":"..."}}
//! ```
//!
//! `event_type` 0, 1, 2 is person, auction, bid, and exactly that one nested object is present.
//! Every time is milliseconds since the epoch and the event time is the record's `dateTime`.
//!
//! * [`generate`]: a seeded generator of the suite's model (`lambdaflow gen --nexmark`);
//! * [`queries`]: q0-q8 as views of one pipeline ([`Queries`]), written with the library API.
//!
//! ```
//! use lambdaflow::event::{Event, Format};
//! use lambdaflow::nexmark::Nexmark;
//!
//! let line = br#"{"event_type":2,"bid":{"auction":1000,"bidder":1001,"price":1234,"channel":"Google","url":"u","dateTime":1700000000000,"extra":""}}"#;
//! let event = Nexmark::parse(line, Format::JsonLines)?;
//! assert_eq!(event.time(), 1_700_000_000_000);
//! assert_eq!(event.to_json_line(), std::str::from_utf8(line).unwrap());
//! # Ok::<(), String>(())
//! ```

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::event::{Event, Format, Time};

pub mod generate;
pub mod queries;

pub use queries::{Queries, Query};

/// A person who registered: a seller of auctions and a bidder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// The person's id (from 1000).
    pub id: u64,
    /// First and last name.
    pub name: SmolStr,
    /// An e-mail address.
    pub email_address: SmolStr,
    /// A credit card number: four groups of four digits.
    pub credit_card: SmolStr,
    /// A US city.
    pub city: SmolStr,
    /// A US state: one of AZ CA ID OR WA WY.
    pub state: SmolStr,
    /// When the person registered (ms since the epoch).
    pub date_time: Time,
    /// Padding to the suite's record size.
    pub extra: SmolStr,
}

/// An auction that a person opened.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// The auction's id (from 1000).
    pub id: u64,
    /// What is sold.
    pub item_name: SmolStr,
    /// Its description.
    pub description: SmolStr,
    /// The opening price.
    pub initial_bid: u64,
    /// The lowest price the seller accepts.
    pub reserve: u64,
    /// When the auction opened (ms since the epoch).
    pub date_time: Time,
    /// When it closes (ms since the epoch).
    pub expires: Time,
    /// The person who sells.
    pub seller: u64,
    /// The category: 10 to 14.
    pub category: u64,
    /// Padding to the suite's record size.
    pub extra: SmolStr,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction bid on.
    pub auction: u64,
    /// The person who bids.
    pub bidder: u64,
    /// The price offered.
    pub price: u64,
    /// Where the bid came from.
    pub channel: SmolStr,
    /// The page it was made on.
    pub url: SmolStr,
    /// When the bid was made (ms since the epoch).
    pub date_time: Time,
    /// Padding to the suite's record size.
    pub extra: SmolStr,
}

/// One NEXMark event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Nexmark {
    /// `event_type` 0.
    Person(Person),
    /// `event_type` 1.
    Auction(Auction),
    /// `event_type` 2.
    Bid(Bid),
}

/// A line of input as the suite writes it.
#[derive(Serialize, Deserialize)]
struct Line {
    event_type: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    person: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auction: Option<Auction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bid: Option<Bid>,
}

impl Nexmark {
    /// The event as one line of the suite's JSON (without a line terminator).
    pub fn to_json_line(&self) -> String {
        let line = match self {
            Nexmark::Person(p) => Line {
                event_type: 0,
                person: Some(p.clone()),
                auction: None,
                bid: None,
            },
            Nexmark::Auction(a) => Line {
                event_type: 1,
                person: None,
                auction: Some(a.clone()),
                bid: None,
            },
            Nexmark::Bid(b) => Line {
                event_type: 2,
                person: None,
                auction: None,
                bid: Some(b.clone()),
            },
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

impl Event for Nexmark {
    fn time(&self) -> Time {
        match self {
            Nexmark::Person(p) => p.date_time,
            Nexmark::Auction(a) => a.date_time,
            Nexmark::Bid(b) => b.date_time,
        }
    }

    fn parse(line: &[u8], format: Format) -> Result<Self, String> {
        if format != Format::JsonLines {
            return Err("NEXMark events are JSON Lines".into());
        }
        let line: Line = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        match (line.event_type, line.person, line.auction, line.bid) {
            (0, Some(p), None, None) => Ok(Nexmark::Person(p)),
            (1, None, Some(a), None) => Ok(Nexmark::Auction(a)),
            (2, None, None, Some(b)) => Ok(Nexmark::Bid(b)),
            (t @ 0..=2, ..) => Err(format!(
                "event_type {t} needs exactly its own object ({}) and no other",
                ["person", "auction", "bid"][usize::from(t)]
            )),
            (t, ..) => Err(format!(
                "unknown event_type {t} (0 person, 1 auction, 2 bid)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_type_and_carries_exactly_its_object() {
        let person = r#"{"id":1000,"name":"Peter White","emailAddress":"a@b.com","creditCard":"1 2 3 4","city":"Bend","state":"OR","dateTime":5,"extra":""}"#;
        let ok = format!(r#"{{"event_type":0,"person":{person}}}"#);
        let event = Nexmark::parse(ok.as_bytes(), Format::JsonLines).unwrap();
        assert_eq!(event.time(), 5);
        assert_eq!(event.to_json_line(), ok);
        for bad in [
            format!(r#"{{"event_type":1,"person":{person}}}"#),
            format!(r#"{{"event_type":7,"person":{person}}}"#),
            r#"{"event_type":0}"#.to_string(),
            r#"{"event_type":2,"bid":{"auction":1}}"#.to_string(),
        ] {
            assert!(
                Nexmark::parse(bad.as_bytes(), Format::JsonLines).is_err(),
                "{bad}"
            );
        }
        assert!(Nexmark::parse(b"1,2", Format::Csv).is_err());
    }
}
