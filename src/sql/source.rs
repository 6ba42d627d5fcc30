//! Sources: the tables a SQL view reads, and how an event becomes a row of one.
//!
//! An event type is a source when it can be read as the rows of tables ([`SqlSource`]): the
//! built-in [`Order`] is the table `events`; a [`Record`] is a row of a source declared at run
//! time ([`Schema`](super::Schema)).

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::types::{Column, Datum, Row, Type};
use crate::ecommerce::{Kind, Order};
use crate::event::{Event, Format, Time};

/// A table: its name and its columns.
pub type Table = (String, Vec<Column>);

/// An event type that SQL can read as the rows of tables.
pub trait SqlSource: Event {
    /// The tables of this type as it is (for [`Record`], none: a [`Schema`](super::Schema)
    /// declares them).
    fn tables() -> Vec<Table>;
    /// Which of the tables this event is a row of (its position among them).
    fn table(&self) -> usize {
        0
    }
    /// This event as a row of the table.
    fn row(&self) -> Row {
        let mut row = Row::new();
        self.fill(&mut row);
        row
    }
    /// Appends this event's row to `row` (which is empty): a buffer reused for every event.
    fn fill(&self, row: &mut Row);
}

/// The built-in source `events` (docs/REFERENCE.md): `ts BIGINT` (the event time),
/// `kind VARCHAR`, `customer BIGINT`, `product BIGINT`, `amount_cents BIGINT` (`NULL` when the
/// line gave none).
impl SqlSource for Order {
    fn tables() -> Vec<Table> {
        let columns = vec![
            Column::new("ts", Type::BigInt),
            Column::new("kind", Type::Varchar),
            Column::new("customer", Type::BigInt),
            Column::new("product", Type::BigInt),
            Column::new("amount_cents", Type::BigInt),
        ];
        vec![("events".to_string(), columns)]
    }

    fn fill(&self, row: &mut Row) {
        let kind = match self.kind {
            Kind::Purchase => "purchase",
            Kind::Refund => "refund",
            Kind::View => "view",
        };
        // Every field below 2^63 (the reader checks it), so the conversions are exact.
        let int = |x: u64| Datum::Int(x as i64);
        // One push per column: each datum is written in place (an array extended would be
        // built, then copied: a measurable share of a replay).
        row.reserve(5);
        row.push(int(self.ts));
        row.push(Datum::Text(SmolStr::new_static(kind)));
        row.push(int(self.customer));
        row.push(int(self.product));
        row.push(if self.amount_missing {
            Datum::Null
        } else {
            int(self.amount_cents)
        });
    }
}

/// A row of a declared source: which source, its event time, and its values in the order of
/// the source's columns (the event time among them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The event time, in milliseconds (the value of the source's `event_time` column).
    pub ts: Time,
    /// The source's position in the schema.
    pub source: u16,
    /// The row.
    pub values: Row,
}

impl Event for Record {
    fn time(&self) -> Time {
        self.ts
    }

    /// A record's line is read by its schema (see [`Schema`](super::Schema)): without it, a
    /// line cannot be read.
    fn parse(_line: &[u8], _format: Format) -> Result<Self, String> {
        Err("rows of declared sources are read through their schema (run --schema)".into())
    }
}

impl SqlSource for Record {
    fn tables() -> Vec<Table> {
        Vec::new()
    }

    fn table(&self) -> usize {
        usize::from(self.source)
    }

    fn fill(&self, row: &mut Row) {
        row.extend_from_slice(&self.values);
    }
}
