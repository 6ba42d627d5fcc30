//! View keys: how a key is read from a query's text and written into an answer.
//!
//! Integers and strings key views as they are. A composite key, a tuple of keys, is written as
//! its parts' texts joined by commas: `1700000000000,1000` is the key `(window start, auction)`.
//! A comma or backslash inside a part is escaped with a backslash (`a\,b`), so every key reads
//! back as itself, and keys of integers read naturally.

use std::hash::Hash;

use differential_dataflow::ExchangeData;

/// A type that can key a view: parsed from and rendered to the text of a query and an answer.
pub trait ViewKey: ExchangeData + Hash {
    /// Reads a key from its text; `None` if no key of this type is written so.
    fn parse_key(text: &str) -> Option<Self>;
    /// Writes the key as text (the inverse of `parse_key`).
    fn key_text(&self) -> String;
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl ViewKey for $t {
            fn parse_key(text: &str) -> Option<Self> { text.parse().ok() }
            fn key_text(&self) -> String { self.to_string() }
        }
    )*};
}
integer_keys!(u32, u64, i32, i64, usize);

impl ViewKey for String {
    fn parse_key(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
    fn key_text(&self) -> String {
        self.clone()
    }
}

/// A part's text with its commas and backslashes escaped.
fn escaped(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if matches!(c, ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The unescaped parts of a composite key's text, split at its unescaped commas.
fn parts(text: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => parts.last_mut()?.push(chars.next()?),
            ',' => parts.push(String::new()),
            c => parts.last_mut()?.push(c),
        }
    }
    Some(parts)
}

macro_rules! tuple_keys {
    ($(($($name:ident . $index:tt),+))*) => {$(
        impl<$($name: ViewKey),+> ViewKey for ($($name,)+) {
            fn parse_key(text: &str) -> Option<Self> {
                let parts = parts(text)?;
                let count = [$(stringify!($name)),+].len();
                if parts.len() != count {
                    return None;
                }
                Some(($($name::parse_key(&parts[$index])?,)+))
            }
            fn key_text(&self) -> String {
                [$(escaped(&self.$index.key_text())),+].join(",")
            }
        }
    )*};
}
tuple_keys! {
    (A.0, B.1)
    (A.0, B.1, C.2)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::ViewKey;

    #[test]
    fn integer_pairs_read_as_written() {
        assert_eq!(
            <(u64, u64)>::parse_key("1700000000000,1000"),
            Some((1_700_000_000_000, 1000))
        );
        assert_eq!((5u64, -3i64).key_text(), "5,-3");
        assert_eq!(<(u64, u64)>::parse_key("1,2,3"), None, "one part too many");
        assert_eq!(
            <(u64, u64, u64)>::parse_key("1,2"),
            None,
            "one part too few"
        );
        assert_eq!(
            <(u64, String)>::parse_key("7,a\\,b"),
            Some((7, "a,b".to_string()))
        );
        assert_eq!(
            <(u64, String)>::parse_key("7,x\\"),
            None,
            "a dangling escape"
        );
    }

    proptest! {
        /// Every composite key reads back as itself, whatever its strings hold.
        #[test]
        fn composite_keys_round_trip(a in ".*", b in any::<u64>(), c in "[,\\\\a]*") {
            let pair = (a.clone(), b);
            prop_assert_eq!(<(String, u64)>::parse_key(&pair.key_text()), Some(pair));
            let triple = (b, a, c);
            prop_assert_eq!(<(u64, String, String)>::parse_key(&triple.key_text()), Some(triple));
        }
    }
}
