//! Bad input to the file readers: every bad line is rejected with its line number and a
//! reason, every good line before and after it is still taken, and nothing panics. Files are
//! read in shares (one per worker) and the shares together take every line exactly once.

use std::io::Write;

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::event::{Format, MAX_LINE_BYTES, Reject};
use lambdaflow::history::{Share, read_all, read_share};
use proptest::prelude::*;

/// Lines with what the reader must make of them: `Ok(ts)` for a good event, `Err(part of the
/// reason)` for a bad one.
fn corpus() -> Vec<(Vec<u8>, Result<u64, &'static str>)> {
    let good = |ts: u64| {
        (
            format!(
                r#"{{"ts":{ts},"kind":"purchase","customer":1,"product":2,"amount_cents":300}}"#
            )
            .into_bytes(),
            Ok(ts),
        )
    };
    let mut long = br#"{"ts":9,"kind":"view","customer":1,"product":2,"pad":""#.to_vec();
    long.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    long.extend(br#""}"#);
    vec![
        good(1),
        (b"{not json".to_vec(), Err("key must be a string")),
        good(2),
        (
            br#"{"ts":"3","kind":"view","customer":1,"product":2}"#.to_vec(),
            Err("invalid type"),
        ),
        (
            br#"{"ts":4,"kind":"refund","customer":1,"product":2,"amount_cents":-5}"#.to_vec(),
            Err("invalid value"),
        ),
        (
            br#"{"ts":5,"kind":"purchase","customer":1,"product":2,"amount_cents":1.5}"#.to_vec(),
            Err("invalid type"),
        ),
        (
            br#"{"ts":6,"kind":"gift","customer":1,"product":2,"amount_cents":1}"#.to_vec(),
            Err("unknown kind"),
        ),
        (
            br#"{"ts":7,"kind":"purchase","customer":1,"product":2}"#.to_vec(),
            Err("amount_cents is required"),
        ),
        (
            b"{\"ts\":8,\"kind\":\"vi\xffew\",\"customer\":1,\"product\":2}".to_vec(),
            Err("invalid UTF-8"),
        ),
        (long, Err("longer than")),
        (
            br#"{"ts":9007199254740993,"kind":"view","customer":1,"product":2}"#.to_vec(),
            Err("2^53"),
        ),
        (
            br#"{"ts":10,"kind":"view","customer":9223372036854775808,"product":2}"#.to_vec(),
            Err("2^63"),
        ),
        (br#"[1,2,3]"#.to_vec(), Err("invalid type")),
        good(3),
        (
            br#"{"ts":11,"kind":"view","customer":1,"product":2,"extra":{"nested":[1]}}"#.to_vec(),
            Ok(11),
        ),
        good(4),
    ]
}

fn write_corpus(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("bad.jsonl");
    let mut file = std::fs::File::create(&path).expect("create");
    for (line, _) in corpus() {
        file.write_all(&line).expect("write");
        file.write_all(b"\n").expect("write");
    }
    path
}

fn check(events: &[Order], rejects: &[Reject]) {
    let corpus = corpus();
    let mut want_ts: Vec<u64> = corpus
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    let mut got_ts: Vec<u64> = events.iter().map(|e| e.ts).collect();
    want_ts.sort();
    got_ts.sort();
    assert_eq!(got_ts, want_ts, "every good line is taken, once");
    let mut rejects = rejects.to_vec();
    rejects.sort_by_key(|r| r.line);
    let bad: Vec<(u64, &str)> = corpus
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| r.as_ref().err().map(|why| (i as u64 + 1, *why)))
        .collect();
    assert_eq!(rejects.len(), bad.len(), "{rejects:#?}");
    for (reject, (line, why)) in rejects.iter().zip(bad) {
        assert_eq!(reject.line, line, "{reject}");
        assert!(
            reject.error.contains(why),
            "line {line}: {:?} should say {why:?}",
            reject.error
        );
    }
}

#[test]
fn bad_lines_are_rejected_with_their_line_numbers_in_every_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_corpus(dir.path());
    for count in 1..=4 {
        let mut events = Vec::new();
        let mut rejects = Vec::new();
        for index in 0..count {
            read_share(
                &path,
                Share { index, count },
                |e: Order| events.push(e),
                |r| rejects.push(r),
            )
            .expect("readable");
        }
        check(&events, &rejects);
    }
}

#[test]
fn a_stream_reader_takes_the_same_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(write_corpus(dir.path())).expect("read");
    let (mut events, mut rejects) = (Vec::new(), Vec::new());
    read_all(
        &bytes[..],
        "stdin",
        Format::JsonLines,
        |e: Order| events.push(e),
        |r| rejects.push(r),
    )
    .expect("readable");
    check(&events, &rejects);
    assert!(rejects.iter().all(|r| r.source == "stdin"));
}

#[test]
fn csv_history_with_header_and_bad_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.csv");
    std::fs::write(&path, "ts,kind,customer,product,amount_cents\n1,purchase,1,2,300\n2,view,1,2,\nx,view,1,2,\n3,refund,1,2,-4\n4,refund,1,2,40\n")
        .expect("write");
    for count in 1..=3 {
        let (mut events, mut rejects) = (Vec::new(), Vec::new());
        for index in 0..count {
            read_share(
                &path,
                Share { index, count },
                |e: Order| events.push(e),
                |r| rejects.push(r),
            )
            .expect("readable");
        }
        events.sort();
        assert_eq!(
            events.iter().map(|e| (e.ts, e.kind)).collect::<Vec<_>>(),
            vec![(1, Kind::Purchase), (2, Kind::View), (4, Kind::Refund)]
        );
        rejects.sort_by_key(|r| r.line);
        assert_eq!(
            rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }
    std::fs::write(&path, "when,what\n1,purchase,1,2,300\n").expect("write");
    let err = read_share(&path, Share::WHOLE, |_: Order| {}, |_| {}).expect_err("bad header");
    assert!(err.to_string().contains("header"), "{err}");
}

proptest! {
    /// Arbitrary bytes never panic a reader, and the shares of a file take each line once.
    #[test]
    fn arbitrary_bytes_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..40), count in 1usize..4) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.jsonl");
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend(line.iter().filter(|b| **b != b'\n'));
            bytes.push(b'\n');
        }
        std::fs::write(&path, &bytes).expect("write");
        let whole = {
            let (mut n, mut r) = (0, Vec::new());
            read_share(&path, Share::WHOLE, |_: Order| n += 1, |x| r.push(x.line)).expect("readable");
            (n, r)
        };
        let (mut n, mut r) = (0, Vec::new());
        for index in 0..count {
            read_share(&path, Share { index, count }, |_: Order| n += 1, |x| r.push(x.line)).expect("readable");
        }
        r.sort();
        prop_assert_eq!((n, r), whole);
    }
}
