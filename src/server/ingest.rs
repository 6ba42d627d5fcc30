//! Reading the body of `POST /events`: JSON Lines, or one JSON array, judged line by line.
//!
//! One bad line (or array element) rejects only itself, with its number and reason; the rest of
//! the body is still taken. Only a body that is not an array at all, when it claims to be JSON,
//! is refused whole.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{Event, Format, Reject, parse_line};
use crate::history::read_all;

/// How many rejections an answer lists; the count covers them all.
pub const MAX_LISTED_REJECTS: usize = 1_000;

/// The events of one request body, and its bad lines.
#[derive(Debug)]
pub struct Batch<E> {
    /// The events accepted, in body order.
    pub events: Vec<E>,
    /// The first [`MAX_LISTED_REJECTS`] bad lines.
    pub rejected: Vec<Rejected>,
    /// How many lines were bad in all.
    pub rejected_total: u64,
}

/// One bad line, as the answer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its number in the body (the element's index + 1 in an array).
    pub line: u64,
    /// What was wrong.
    pub error: String,
}

impl<E> Batch<E> {
    fn new() -> Self {
        Batch {
            events: Vec::new(),
            rejected: Vec::new(),
            rejected_total: 0,
        }
    }

    fn reject(&mut self, line: u64, error: String) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTS {
            self.rejected.push(Rejected { line, error });
        }
    }
}

/// Reads a JSON Lines body.
pub fn json_lines<E: Event>(body: &[u8]) -> Batch<E> {
    let mut batch = Batch::new();
    let mut rejects = Vec::new();
    // Reading from memory cannot fail.
    let _ = read_all(
        body,
        "request",
        Format::JsonLines,
        |e| batch.events.push(e),
        |r: Reject| rejects.push(r),
    );
    for r in rejects {
        batch.reject(r.line, r.error);
    }
    batch
}

/// Reads a body that is one JSON array of events; `Err` if it is not an array.
pub fn json_array<E: Event>(body: &[u8]) -> Result<Batch<E>, String> {
    let elements: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON array: {e}"))?;
    let mut batch = Batch::new();
    for (i, element) in elements.iter().enumerate() {
        match parse_line::<E>(element.get().as_bytes(), Format::JsonLines) {
            Ok(event) => batch.events.push(event),
            Err(error) => batch.reject(i as u64 + 1, error),
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecommerce::Order;

    #[test]
    fn lines_are_judged_one_by_one() {
        let body = b"{\"ts\":1,\"kind\":\"view\",\"customer\":1,\"product\":2}\nnope\n\xff\n{\"ts\":2,\"kind\":\"view\",\"customer\":1,\"product\":2}\n";
        let batch = json_lines::<Order>(body);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(
            batch.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn array_elements_are_judged_one_by_one() {
        let body = br#"[{"ts":1,"kind":"view","customer":1,"product":2}, {"ts":-1}, 7]"#;
        let batch = json_array::<Order>(body).expect("an array");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.rejected_total, 2);
        assert!(json_array::<Order>(b"{\"ts\":1}").is_err());
    }
}
