//! Questions and answers: what a query asks of a view, and the answer it gets, consistent as of
//! one time.
//!
//! The parts of an answer are gathered at the worker that took the query ([`gather`]) and handed
//! to whoever asked through a [`Reply`]. Rows are handed over as the view's own typed values
//! with the view's renderer ([`Rows`]): they are turned into JSON by whoever reads them, off the
//! dataflow's worker threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

use crate::event::{END_OF_TIME, Time};
use crate::serve::{Partial, QueryMsg};

/// What a query asks of a view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// The row of one key, written as text (it is parsed by the view's key type).
    Key(String),
    /// Every row of the view, or the ranking of a ranked view.
    All,
    /// At most `limit` rows in key order, after the key `after` (written as text) if given.
    Page {
        /// The last key of the previous page.
        after: Option<String>,
        /// The most rows to answer.
        limit: usize,
    },
}

/// A question for one view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The view's registered name.
    pub view: String,
    /// What to read.
    pub lookup: Lookup,
}

impl Query {
    /// A query for one key of a view.
    pub fn key(view: &str, key: impl ToString) -> Query {
        Query {
            view: view.to_string(),
            lookup: Lookup::Key(key.to_string()),
        }
    }

    /// A query for the whole of a view.
    pub fn all(view: &str) -> Query {
        Query {
            view: view.to_string(),
            lookup: Lookup::All,
        }
    }

    /// A query for one page of a view's rows, in key order after `after`.
    pub fn page(view: &str, after: Option<String>, limit: usize) -> Query {
        Query {
            view: view.to_string(),
            lookup: Lookup::Page { after, limit },
        }
    }
}

/// Rows read from a view, still in the view's own types: rendered as JSON when asked.
pub trait RenderRows: Send {
    /// How many keys were read.
    fn len(&self) -> usize;
    /// Whether none was.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows as `(key text, JSON value)`, in key order (keys the view shows no row for are
    /// left out).
    fn render(&self) -> Vec<(String, Value)>;
    /// The rows' JSON values alone, in key order (no key text is written).
    fn values(&self) -> Vec<Value> {
        self.render().into_iter().map(|(_, v)| v).collect()
    }
    /// Hands each row to `out` as JSON text, in key order: a value that is an array (a key
    /// with several rows) as one call per element, a `null` as none. Faster than
    /// [`values`](RenderRows::values) for views that write their text straight from their own
    /// types.
    fn write_rows(&self, out: &mut dyn FnMut(&[u8])) {
        write_values(self.values(), out)
    }
    /// The text of the last key read.
    fn last_key(&self) -> Option<String>;
    /// The rows themselves, for reading them in their own types ([`Rows::typed`]).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Hands each value to `out` as JSON text, an array as its elements (`null`s left out).
pub(crate) fn write_values(values: Vec<Value>, out: &mut dyn FnMut(&[u8])) {
    for value in values {
        match value {
            Value::Array(many) => many.iter().for_each(|v| out(v.to_string().as_bytes())),
            Value::Null => {}
            one => out(one.to_string().as_bytes()),
        }
    }
}

/// Rows in a view's own types: each key with its values and their differences, in key order.
pub type KeyedValues<K, V, R> = Vec<(K, Vec<(V, R)>)>;

/// The rows of an answer (see [`RenderRows`]); cheap to clone.
#[derive(Clone)]
pub struct Rows(Arc<Mutex<Box<dyn RenderRows>>>);

impl Rows {
    /// Wraps rows read from a view.
    pub fn new(rows: impl RenderRows + 'static) -> Rows {
        Rows(Arc::new(Mutex::new(Box::new(rows))))
    }

    fn with<T>(&self, f: impl FnOnce(&dyn RenderRows) -> T) -> T {
        let rows = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&**rows)
    }

    /// How many keys were read.
    pub fn len(&self) -> usize {
        self.with(|r| r.len())
    }

    /// Whether no key was read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as `(key text, JSON value)`, in key order.
    pub fn render(&self) -> Vec<(String, Value)> {
        self.with(|r| r.render())
    }

    /// The rows' JSON values alone, in key order.
    pub fn values(&self) -> Vec<Value> {
        self.with(|r| r.values())
    }

    /// Each row as JSON text, in key order (see [`RenderRows::write_rows`]).
    pub fn write_rows(&self, mut out: impl FnMut(&[u8])) {
        self.with(|r| r.write_rows(&mut out))
    }

    /// The text of the last key read.
    pub fn last_key(&self) -> Option<String> {
        self.with(|r| r.last_key())
    }

    /// The rows in the view's own types: each key with its values and their differences, in
    /// key order (no JSON on the way). `None` if the view's types are not `K`, `V` and `R`.
    pub fn typed<K, V, R>(&self) -> Option<KeyedValues<K, V, R>>
    where
        K: crate::view::ViewKey,
        V: differential_dataflow::ExchangeData,
        R: differential_dataflow::ExchangeData + differential_dataflow::difference::Semigroup,
    {
        self.with(|r| crate::view::typed_rows(r.as_any()))
    }
}

impl PartialEq for Rows {
    fn eq(&self, other: &Rows) -> bool {
        self.render() == other.render()
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rows({} keys)", self.len())
    }
}

/// The content of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum AnswerValue {
    /// One key's value, `None` when the key has no row.
    Row {
        /// The key as asked.
        key: String,
        /// Its value.
        value: Option<Value>,
        /// The key's row in the view's own types (none or one key; see [`Rows::typed`]).
        rows: Rows,
    },
    /// Rows in key order: every row, or one page.
    Rows(Rows),
    /// A ranked list (top-k views).
    Ranked(Vec<Value>),
    /// The key asked for (or the key a page starts after) is not written like a key of this
    /// view.
    BadKey(String),
    /// The page asked for reads a time the view has since forgotten (its cursor expired).
    Expired,
}

/// An answer, consistent as of one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The view that answered.
    pub view: String,
    /// The answer reflects exactly the updates at times before `as_of`; [`END_OF_TIME`] means
    /// after all input, i.e. final.
    pub as_of: Time,
    /// What was found.
    pub value: AnswerValue,
    /// For a full page: the text of its last key, after which the next page starts.
    pub next: Option<String>,
}

impl Answer {
    /// The answer as one JSON value: a keyed answer's value (or `null`), an object of every
    /// row keyed by its key's text, or the ranked list.
    pub fn to_json(&self) -> Value {
        match &self.value {
            AnswerValue::Row { value, .. } => value.clone().unwrap_or(Value::Null),
            AnswerValue::Rows(rows) => Value::Object(rows.render().into_iter().collect()),
            AnswerValue::Ranked(list) => Value::Array(list.clone()),
            AnswerValue::BadKey(_) | AnswerValue::Expired => Value::Null,
        }
    }

    /// Whether the answer was read after every input ended.
    pub fn is_final(&self) -> bool {
        self.as_of >= END_OF_TIME
    }
}

/// Receives an answer; called once, on the worker thread that took the query.
pub type Reply = Box<dyn FnOnce(Answer) + Send>;

/// A query waiting for its answer.
struct Waiting {
    view: String,
    query: QueryMsg,
    reply: Reply,
}

/// The answers this worker waits for, by query id.
#[derive(Default)]
pub struct Replies {
    waiting: HashMap<u64, Waiting>,
}

impl Replies {
    /// Remembers who asked `query` about the view named `view`.
    pub fn wait(&mut self, query: &QueryMsg, view: String, reply: Reply) {
        let waiting = Waiting {
            view,
            query: query.clone(),
            reply,
        };
        self.waiting.insert(query.id, waiting);
    }

    /// Forgets query `id`: its answer, if it comes, goes nowhere. Returns the query, if it was
    /// still waiting.
    pub fn cancel(&mut self, id: u64) -> Option<QueryMsg> {
        self.waiting.remove(&id).map(|w| w.query)
    }

    /// How many answers are outstanding.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no answer is outstanding.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn answer(&mut self, id: u64, time: Time, combined: Combined) {
        if let Some(Waiting { view, query, reply }) = self.waiting.remove(&id) {
            let key = query.key;
            let mut next = None;
            let value = match combined {
                Combined::Row(value, rows) => AnswerValue::Row {
                    key: key.unwrap_or_default(),
                    value,
                    rows,
                },
                Combined::Rows(rows) => AnswerValue::Rows(rows),
                Combined::Page(rows, full) => {
                    if full {
                        next = rows.last_key();
                    }
                    AnswerValue::Rows(rows)
                }
                Combined::Ranked(list) => AnswerValue::Ranked(list),
                Combined::BadKey => AnswerValue::BadKey(key.unwrap_or_default()),
                Combined::Expired => AnswerValue::Expired,
            };
            let as_of = time.saturating_add(1).min(END_OF_TIME);
            reply(Answer {
                view,
                as_of,
                value,
                next,
            });
        }
    }
}

/// What a view makes of all the parts of one answer.
pub enum Combined {
    /// One key's value, rendered and in its own types.
    Row(Option<Value>, Rows),
    /// Every row, in key order.
    Rows(Rows),
    /// One page of rows in key order, and whether it is full (more may follow).
    Page(Rows, bool),
    /// A ranking.
    Ranked(Vec<Value>),
    /// The key asked for cannot be a key of the view.
    BadKey,
    /// The time asked for is no longer held.
    Expired,
}

/// Gathers the parts of each answer at the asking worker and, once all have arrived, combines
/// them and replies. A part is `None` when its worker no longer held the time asked for.
pub fn gather<'s, P, F>(
    partials: Stream<'s, Time, Vec<Partial<P>>>,
    replies: Rc<RefCell<Replies>>,
    name: &str,
    mut combine: F,
) where
    P: timely::ExchangeData,
    F: FnMut(&Partial<()>, Vec<P>) -> Combined + 'static,
{
    // Per query: the payloads so far, how many parts arrived, whether one was expired.
    let mut parts: HashMap<u64, (Vec<P>, usize, bool)> = HashMap::new();
    partials.sink(
        Exchange::new(|p: &Partial<P>| p.origin as u64),
        &format!("Gather({name})"),
        move |(input, _frontier)| {
            input.for_each(|_, data| {
                for partial in data.drain(..) {
                    let (header, payload) = partial.split();
                    let received = parts.entry(header.id).or_default();
                    received.1 += 1;
                    match payload {
                        Some(payload) => received.0.push(payload),
                        None => received.2 = true,
                    }
                    if received.1 < header.parts {
                        continue;
                    }
                    let (payloads, _, expired) = parts.remove(&header.id).unwrap_or_default();
                    let combined = if expired {
                        Combined::Expired
                    } else if header.bad_key {
                        Combined::BadKey
                    } else {
                        combine(&header, payloads)
                    };
                    replies
                        .borrow_mut()
                        .answer(header.id, header.time, combined);
                }
            });
        },
    );
}
