//! Keys: the values a SQL view is arranged and grouped by, as one compact value.
//!
//! Most views group by one column, so a [`Key`] keeps one datum inline and only a composite key
//! on the heap. That matters because keys are what the engine touches most: every event looks
//! its group up in a hash map, and the arrangements sort and merge the groups. A key inline is
//! compared and hashed without following a pointer.
//!
//! A key is the slice of its values in every respect that counts: it hashes, compares and
//! orders as that slice does (so a hash map of keys can be searched by a borrowed `&[Datum]`),
//! and it is written as a single value's text or as a JSON array (a query's `/views/{view}/{key}`
//! or `?key=[...]`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::types::{Datum, F64, Row, Type};
use crate::view::ViewKey;

/// The values of a view's key columns.
#[derive(Clone, Debug)]
pub enum Key {
    /// A key of one column.
    One(Datum),
    /// A key of none or several columns.
    Many(Row),
}

impl Key {
    /// The key of these values.
    pub fn of(values: &[Datum]) -> Key {
        match values {
            [one] => Key::One(one.clone()),
            many => Key::Many(many.to_vec()),
        }
    }

    /// The key of a row of key values.
    pub fn from_row(mut row: Row) -> Key {
        match row.len() {
            1 => Key::One(row.pop().unwrap_or(Datum::Null)),
            _ => Key::Many(row),
        }
    }

    /// The key's values.
    pub fn as_slice(&self) -> &[Datum] {
        match self {
            Key::One(one) => std::slice::from_ref(one),
            Key::Many(many) => many,
        }
    }

    /// The key's values as a row, with room for `more` values after them.
    pub fn to_row(&self, more: usize) -> Row {
        let mut row = Vec::with_capacity(self.as_slice().len() + more);
        row.extend_from_slice(self.as_slice());
        row
    }
}

impl Borrow<[Datum]> for Key {
    fn borrow(&self) -> &[Datum] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::One(a), Key::One(b)) => a == b,
            _ => self.as_slice() == other.as_slice(),
        }
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the slice hashes: a key is found by its borrowed values.
        self.as_slice().hash(state)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::One(a), Key::One(b)) => a.cmp(b),
            _ => self.as_slice().cmp(other.as_slice()),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        Row::deserialize(deserializer).map(Key::from_row)
    }
}

/// A key written as its one value's text, or as a JSON array for several columns. Read without
/// knowing the columns' types (a value's JSON type says it); a view reads its keys with
/// [`parse_key`].
impl ViewKey for Key {
    fn parse_key(text: &str) -> Option<Self> {
        let values: Vec<Value> = serde_json::from_str(text).ok()?;
        values
            .iter()
            .map(untyped)
            .collect::<Option<Row>>()
            .map(Key::from_row)
    }

    fn key_text(&self) -> String {
        match self.as_slice() {
            [one] => one.to_text(),
            many => Value::Array(many.iter().map(Datum::to_json).collect()).to_string(),
        }
    }
}

fn untyped(v: &Value) -> Option<Datum> {
    Some(match v {
        Value::Null => Datum::Null,
        Value::Bool(b) => Datum::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Datum::Int(i),
            None => Datum::Float(F64(n.as_f64()?)),
        },
        Value::String(s) => Datum::Text(s.as_str().into()),
        _ => return None,
    })
}

/// Reads a value of type `ty` from its text (as [`Datum::to_text`] writes it).
fn parse_datum(text: &str, ty: Type) -> Option<Datum> {
    if text == "NULL" {
        return Some(Datum::Null);
    }
    let d = super::expr::cast(Datum::Text(text.into()), ty);
    (!d.is_null()).then_some(d)
}

/// Reads a key of the given column types: one value's text, or a JSON array of them.
pub(super) fn parse_key(text: &str, types: &[Type]) -> Option<Key> {
    if let [ty] = types {
        return parse_datum(text, *ty).map(Key::One);
    }
    let values: Vec<Value> = serde_json::from_str(text).ok()?;
    if values.len() != types.len() {
        return None;
    }
    values
        .iter()
        .zip(types)
        .map(|(v, ty)| match v {
            Value::String(s) => parse_datum(s, *ty),
            Value::Null => Some(Datum::Null),
            other => parse_datum(&other.to_string(), *ty),
        })
        .collect::<Option<Row>>()
        .map(Key::from_row)
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn hash(x: &(impl Hash + ?Sized)) -> u64 {
        let mut h = DefaultHasher::new();
        x.hash(&mut h);
        h.finish()
    }

    #[test]
    fn a_key_is_its_values() {
        let rows: Vec<Row> = vec![
            vec![],
            vec![Datum::Null],
            vec![Datum::Int(-3)],
            vec![Datum::Int(2)],
            vec![Datum::Text("a".into())],
            vec![Datum::Int(2), Datum::Null],
            vec![Datum::Int(2), Datum::Text("b".into())],
        ];
        for a in &rows {
            let key = Key::of(a);
            assert_eq!(key.as_slice(), &a[..]);
            assert_eq!(hash(&key), hash(&a[..]), "{a:?}");
            assert_eq!(Key::from_row(a.clone()), key);
            let text = serde_json::to_string(&key).unwrap();
            assert_eq!(text, serde_json::to_string(a).unwrap());
            assert_eq!(serde_json::from_str::<Key>(&text).unwrap(), key);
            for b in &rows {
                assert_eq!(key.cmp(&Key::of(b)), a.cmp(b), "{a:?} against {b:?}");
                assert_eq!(key == Key::of(b), a == b);
            }
        }
    }

    #[test]
    fn keys_read_by_their_columns_types() {
        assert_eq!(
            parse_key("7", &[Type::BigInt]),
            Some(Key::One(Datum::Int(7)))
        );
        assert_eq!(parse_key("x", &[Type::BigInt]), None);
        assert_eq!(
            parse_key(r#"[7, "a"]"#, &[Type::BigInt, Type::Varchar]),
            Some(Key::of(&[Datum::Int(7), Datum::Text("a".into())]))
        );
        assert_eq!(parse_key("[7]", &[Type::BigInt, Type::Varchar]), None);
        let key = Key::of(&[Datum::Int(7), Datum::Null]);
        assert_eq!(key.key_text(), "[7,null]");
        assert_eq!(Key::parse_key(&key.key_text()), Some(key));
    }
}
