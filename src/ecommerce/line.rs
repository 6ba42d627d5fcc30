//! Reading an event line fast when it has the plain shape most producers write.
//!
//! Half of a replay of e-commerce history was `serde_json` reading lines like
//! `{"ts":1767225600000,"kind":"view","customer":983894,"product":2268,"amount_cents":0}`:
//! checking the UTF-8 of every key, matching the keys as strings, and driving a visitor per
//! field. [`plain`] reads exactly that shape in one pass over the bytes: the five keys in any
//! order, each once (`amount_cents` may be left out), unsigned integers of plain digits, and a
//! kind without escapes, with nothing else on the line (no whitespace, no other field).
//!
//! It never decides anything `serde_json` would decide differently: on any other shape it
//! answers `None` and the line goes through `serde_json`, which accepts or rejects it with its
//! own message. So the fast path only ever accepts lines `serde_json` reads to the same fields
//! (the property test below checks it over lines near and far from the shape).

use super::Kind;

/// The fields of a line, as `serde_json` would read them into the event's JSON shape.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fields {
    pub ts: u64,
    pub kind: Kind,
    pub customer: u64,
    pub product: u64,
    pub amount_cents: Option<u64>,
}

/// The line's fields if it has the plain shape (see the module); `None` for any other line.
pub(super) fn plain(line: &[u8]) -> Option<Fields> {
    let mut at = 1;
    if line.first() != Some(&b'{') {
        return None;
    }
    let (mut ts, mut kind, mut customer, mut product, mut amount) = (None, None, None, None, None);
    loop {
        let key = quoted(line, &mut at)?;
        if line.get(at) != Some(&b':') {
            return None;
        }
        at += 1;
        let slot = match key {
            b"kind" => {
                if kind.is_some() {
                    return None;
                }
                kind = Some(match quoted(line, &mut at)? {
                    b"purchase" => Kind::Purchase,
                    b"refund" => Kind::Refund,
                    b"view" => Kind::View,
                    _ => return None,
                });
                None
            }
            b"ts" => Some(&mut ts),
            b"customer" => Some(&mut customer),
            b"product" => Some(&mut product),
            b"amount_cents" => Some(&mut amount),
            _ => return None,
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                return None;
            }
            *slot = Some(digits(line, &mut at)?);
        }
        match line.get(at) {
            Some(b',') => at += 1,
            Some(b'}') if at + 1 == line.len() => break,
            _ => return None,
        }
    }
    Some(Fields {
        ts: ts?,
        kind: kind?,
        customer: customer?,
        product: product?,
        amount_cents: amount,
    })
}

/// The bytes of a string starting at `at` (which must be its opening quote); `at` moves past
/// its closing quote.
fn quoted<'a>(line: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    if line.get(*at) != Some(&b'"') {
        return None;
    }
    let start = *at + 1;
    let len = memchr::memchr(b'"', line.get(start..)?)?;
    *at = start + len + 1;
    // The raw bytes: the caller only compares them with fixed words, which a string with an
    // escape (or ending in one) never equals.
    Some(&line[start..start + len])
}

/// An unsigned integer of plain digits starting at `at` (no sign, no leading zero, no fraction
/// or exponent after it), if it fits in 64 bits; `at` moves past it.
fn digits(line: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value: u64 = 0;
    while let Some(&b @ b'0'..=b'9') = line.get(*at) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        *at += 1;
    }
    let len = *at - start;
    if len == 0 || (len > 1 && line[start] == b'0') {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The line's fields as `serde_json` reads them: the reference for [`plain`].
    fn by_serde(line: &[u8]) -> Option<Fields> {
        let raw: super::super::RawOrder = serde_json::from_slice(line).ok()?;
        Some(Fields {
            ts: raw.ts,
            kind: Kind::parse(&raw.kind).ok()?,
            customer: raw.customer,
            product: raw.product,
            amount_cents: raw.amount_cents,
        })
    }

    #[test]
    fn the_plain_shape_is_read() {
        let line = br#"{"ts":1767225600010,"kind":"refund","customer":605122,"product":88,"amount_cents":13994}"#;
        let fields = plain(line).expect("plain");
        assert_eq!(fields.ts, 1767225600010);
        assert_eq!(fields.kind, Kind::Refund);
        assert_eq!((fields.customer, fields.product), (605122, 88));
        assert_eq!(fields.amount_cents, Some(13994));
        let without = br#"{"kind":"view","product":0,"ts":5,"customer":7}"#;
        assert_eq!(plain(without).and_then(|f| f.amount_cents), None);
        assert!(plain(without).is_some());
    }

    #[test]
    fn other_shapes_are_left_to_serde() {
        for line in [
            &br#"{"ts":1, "kind":"view","customer":1,"product":1}"#[..],
            br#"{"ts":01,"kind":"view","customer":1,"product":1}"#,
            br#"{"ts":1.0,"kind":"view","customer":1,"product":1}"#,
            br#"{"ts":1,"kind":"vi\u0065w","customer":1,"product":1}"#,
            br#"{"ts":1,"kind":"view","customer":1,"product":1,"x":2}"#,
            br#"{"ts":1,"ts":2,"kind":"view","customer":1,"product":1}"#,
            br#"{"ts":1,"kind":"view","customer":1,"product":1,"amount_cents":null}"#,
            br#"{"ts":18446744073709551616,"kind":"view","customer":1,"product":1}"#,
            br#"{"ts":1,"kind":"view","customer":1,"product":1} "#,
            br#"{"ts":1,"kind":"view","customer":1}"#,
            br#"{"ts":1,"kind":"view","customer":1,"product":1"#,
        ] {
            assert_eq!(plain(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    /// A field of a line near the plain shape: right, or wrong in one of the ways a producer
    /// (or an attacker) writes it.
    fn field() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("ts"),
            Just("kind"),
            Just("customer"),
            Just("product"),
            Just("amount_cents"),
            Just("other"),
            Just("t\\u0073"),
        ];
        let value = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..1000).prop_map(|n| n.to_string()),
            Just("\"purchase\"".to_string()),
            Just("\"refund\"".to_string()),
            Just("\"view\"".to_string()),
            Just("\"vie\\u0077\"".to_string()),
            Just("\"other\"".to_string()),
            Just("null".to_string()),
            Just("007".to_string()),
            Just("-1".to_string()),
            Just("1e3".to_string()),
            Just("2.5".to_string()),
            Just("18446744073709551616".to_string()),
            Just(" 4".to_string()),
        ];
        (key, value).prop_map(|(k, v)| format!("\"{k}\":{v}"))
    }

    /// The fields of a line of the plain shape, in any order, with or without an amount.
    fn plain_fields() -> impl Strategy<Value = Vec<String>> {
        (
            any::<u64>(),
            any::<u64>(),
            0u64..1000,
            proptest::option::of(any::<u64>()),
            0usize..3,
            Just(vec![0, 1, 2, 3, 4]).prop_shuffle(),
        )
            .prop_map(|(ts, customer, product, amount, kind, order)| {
                let kind = ["purchase", "refund", "view"][kind];
                order
                    .iter()
                    .filter_map(|&k| match k {
                        0 => Some(format!("\"ts\":{ts}")),
                        1 => Some(format!("\"kind\":\"{kind}\"")),
                        2 => Some(format!("\"customer\":{customer}")),
                        3 => Some(format!("\"product\":{product}")),
                        _ => amount.map(|a| format!("\"amount_cents\":{a}")),
                    })
                    .collect()
            })
    }

    proptest! {
        /// Whatever the fast path reads, `serde_json` reads to the same fields: over lines of
        /// the plain shape with fields replaced, added or removed, cut short or followed by
        /// more.
        #[test]
        fn plain_agrees_with_serde(mut fields in plain_fields(),
                                   changes in proptest::collection::vec((0usize..3, 0usize..6, field()), 0..3),
                                   cut in proptest::option::of(0usize..120),
                                   tail in prop_oneof![Just(""), Just(""), Just(" "), Just("}"), Just(",")]) {
            for (how, at, field) in changes {
                let at = at % (fields.len() + 1);
                match how {
                    0 if at < fields.len() => fields[at] = field,
                    1 if at < fields.len() => { fields.remove(at); }
                    _ => fields.insert(at, field),
                }
            }
            let mut line = format!("{{{}}}{tail}", fields.join(","));
            if let Some(cut) = cut.filter(|_| tail.is_empty()) {
                line.truncate(cut.min(line.len()));
            }
            let line = line.as_bytes();
            let fast = plain(line);
            if fast.is_some() {
                prop_assert_eq!(fast, by_serde(line), "{}", String::from_utf8_lossy(line));
            }
        }

        /// Every line of the plain shape is read fast.
        #[test]
        fn the_plain_shape_is_always_read_fast(fields in plain_fields()) {
            let line = format!("{{{}}}", fields.join(","));
            let fast = plain(line.as_bytes());
            prop_assert!(fast.is_some(), "{}", line);
            prop_assert_eq!(fast, by_serde(line.as_bytes()));
        }
    }
}
