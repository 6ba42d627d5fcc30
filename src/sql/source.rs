//! Sources: the tables a SQL view reads, and how an event becomes a row of one.

use smol_str::SmolStr;

use super::types::{Column, Datum, Row, Type};
use crate::ecommerce::{Kind, Order};
use crate::event::Event;

/// An event type that SQL can read as the rows of a table.
pub trait SqlSource: Event {
    /// The table's name in SQL.
    const NAME: &'static str;
    /// Its columns.
    fn columns() -> Vec<Column>;
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
    const NAME: &'static str = "events";

    fn columns() -> Vec<Column> {
        vec![
            Column::new("ts", Type::BigInt),
            Column::new("kind", Type::Varchar),
            Column::new("customer", Type::BigInt),
            Column::new("product", Type::BigInt),
            Column::new("amount_cents", Type::BigInt),
        ]
    }

    fn fill(&self, row: &mut Row) {
        let kind = match self.kind {
            Kind::Purchase => "purchase",
            Kind::Refund => "refund",
            Kind::View => "view",
        };
        // Every field below 2^63 (the reader checks it), so the conversions are exact.
        let int = |x: u64| Datum::Int(x as i64);
        row.extend([
            int(self.ts),
            Datum::Text(SmolStr::new_static(kind)),
            int(self.customer),
            int(self.product),
            if self.amount_missing {
                Datum::Null
            } else {
                int(self.amount_cents)
            },
        ]);
    }
}
