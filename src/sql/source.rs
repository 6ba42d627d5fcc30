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
    /// Makes `row` this event's row. `row` is a buffer reused for every event: it holds what
    /// the last call left there (or anything else), which an implementation may overwrite in
    /// place.
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
        let int = |x: u64| x as i64;
        // The last event's row is overwritten in place where it has this shape: only the
        // values are written (building the datums, then moving them, was a tenth of a replay).
        if let [
            Datum::Int(ts),
            Datum::Text(text),
            Datum::Int(customer),
            Datum::Int(product),
            amount,
        ] = row.as_mut_slice()
        {
            *ts = int(self.ts);
            if text.as_str() != kind {
                *text = SmolStr::new_static(kind);
            }
            *customer = int(self.customer);
            *product = int(self.product);
            match amount {
                _ if self.amount_missing => *amount = Datum::Null,
                Datum::Int(cents) => *cents = int(self.amount_cents),
                other => *other = Datum::Int(int(self.amount_cents)),
            }
            return;
        }
        let int = |x: u64| Datum::Int(x as i64);
        row.clear();
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
        row.clear();
        row.extend_from_slice(&self.values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event's row, whatever the buffer held before: a row of another event (each kind,
    /// with and without an amount), a row of another shape, nothing.
    #[test]
    fn a_row_filled_over_another_is_the_events_row() {
        let order = |kind, amount_missing| Order {
            ts: 5,
            kind,
            customer: 6,
            product: 7,
            amount_cents: 8,
            amount_missing,
        };
        let events: Vec<Order> = [Kind::Purchase, Kind::Refund, Kind::View]
            .into_iter()
            .flat_map(|k| [order(k, false), order(k, true)])
            .collect();
        let expected = |o: &Order| {
            let kind = ["purchase", "refund", "view"][o.kind as usize];
            let amount = if o.amount_missing {
                Datum::Null
            } else {
                Datum::Int(8)
            };
            vec![
                Datum::Int(5),
                Datum::Text(kind.into()),
                Datum::Int(6),
                Datum::Int(7),
                amount,
            ]
        };
        let mut leftovers: Vec<Row> = events.iter().map(expected).collect();
        leftovers.push(Vec::new());
        leftovers.push(vec![Datum::Bool(true)]);
        leftovers.push(vec![Datum::Text("x".into()); 5]);
        for event in &events {
            for left in &leftovers {
                let mut row = left.clone();
                event.fill(&mut row);
                assert_eq!(row, expected(event), "{event:?} over {left:?}");
            }
        }
    }
}
