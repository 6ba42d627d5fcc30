//! NEXMark q0-q8: the `nexmark` example's final rows equal DuckDB's answer to the suite's
//! queries (`tests/nexmark/oracle.sql`, batch semantics) over the same generated events, on
//! 1-3 workers, on two processes, from a file or the in-process generator, and with
//! out-of-order events sent live, so that late ones are corrected.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use lambdaflow::nexmark::generate::{NexmarkConfig, write_jsonl};
use serde_json::Value;
use support::binaries::example;
use support::ports::free_port;

const QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"];

/// 30 s of events at 1000 per second: three q7 windows, fifteen q5 windows.
fn config(seed: u64, out_of_order: u64) -> NexmarkConfig {
    NexmarkConfig {
        seed,
        events: 30_000,
        rate: 1_000,
        out_of_order,
        ..NexmarkConfig::default()
    }
}

fn generated(dir: &Path, name: &str, config: &NexmarkConfig) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("created");
    write_jsonl(config, file).expect("written");
    path
}

/// The example with every query and `args`.
fn start(args: &[&str]) -> Child {
    let mut command = Command::new(example("nexmark"));
    for q in QUERIES {
        command.args(["--query", q]);
    }
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts")
}

/// Its rows by query, and its stderr.
fn rows(output: Output) -> (BTreeMap<String, Vec<Value>>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "the example failed: {stderr}");
    let mut rows: BTreeMap<String, Vec<Value>> = QUERIES
        .iter()
        .map(|q| (q.to_string(), Vec::new()))
        .collect();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line: Value = serde_json::from_str(line).expect("a JSON line");
        let query = line["query"].as_str().expect("its query").to_string();
        rows.entry(query).or_default().push(line["row"].clone());
    }
    (rows, stderr)
}

fn run(args: &[&str]) -> (BTreeMap<String, Vec<Value>>, String) {
    rows(start(args).wait_with_output().expect("exits"))
}

/// DuckDB's rows of every query over the events of `events`.
fn duckdb(events: &Path) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nexmark");
    support::duckdb::views_over(
        Some(&dir.join("tables.json")),
        events,
        &dir.join("oracle.sql"),
    )
}

/// Every query's rows equal DuckDB's, and those of `filled` are not empty (so that the
/// comparison can fail).
fn assert_same(what: &str, ours: &BTreeMap<String, Vec<Value>>, duck: &Value, filled: &[&str]) {
    let unranked = BTreeMap::new();
    let failures = support::duckdb::differences(ours, duck, &unranked);
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n"));
    for q in filled {
        assert!(
            !ours[*q].is_empty(),
            "{what}: {q} has rows, so the test can fail"
        );
    }
}

#[test]
fn every_query_equals_duckdb_on_one_to_three_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", &config(1, 1));
    let duck = duckdb(&events);
    let input = events.to_str().expect("path");
    for workers in ["1", "2", "3"] {
        let (ours, _) = run(&["--input", input, "-w", workers]);
        assert_same(&format!("-w {workers}"), &ours, &duck, &QUERIES);
    }
}

/// Late events sent live, corrected: every query ends at the batch answer. With
/// `max_lateness`, q7's and q8's windows also retire (their state given back), which must not
/// change a row.
fn late_events_corrected(max_lateness: Option<&str>) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Groups of 3000 events (3 s) permuted: most live events are older than the watermark,
    // which stays 200 ms behind the newest.
    let all = config(2, 3_000);
    let events = generated(dir.path(), "events.jsonl", &all);
    let text = std::fs::read_to_string(&events).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let (history, live) = lines.split_at(lines.len() / 3);
    let write = |name: &str, lines: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").expect("written");
        path
    };
    let (history, live) = (write("history.jsonl", history), write("live.jsonl", live));
    let mut args = vec![
        "--input",
        history.to_str().expect("path"),
        "--live",
        live.to_str().expect("path"),
        "--allowed-lateness",
        "200",
        "-w",
        "2",
    ];
    if let Some(max) = max_lateness {
        args.extend(["--max-lateness", max]);
    }
    let (ours, stderr) = run(&args);
    let late: u64 = stderr
        .split("late corrected ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the example reports its late events");
    assert!(late > 1_000, "only {late} events were late");
    assert_same("late, corrected", &ours, &duckdb(&events), &QUERIES);
}

#[test]
fn late_events_sent_live_are_corrected_to_the_batch_answer() {
    late_events_corrected(None);
}

/// A maximum lateness of 4 s (no event here is that late): windows retire 4 s + the lanes'
/// 10 s slack after their end, so the first ones retire while the live events still come.
#[test]
fn windows_that_retire_keep_the_batch_answer() {
    late_events_corrected(Some("4000"));
}

#[test]
fn two_processes_generating_in_process_equal_duckdb_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let same = config(3, 500);
    let events = generated(dir.path(), "events.jsonl", &same);
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("hostfile");
    let (count, seed) = (same.events.to_string(), same.seed.to_string());
    let hosts = hosts.to_str().expect("path");
    let children: Vec<Child> = ["0", "1"]
        .iter()
        .map(|p| {
            start(&[
                "--generate",
                &count,
                "--seed",
                &seed,
                "--rate",
                "1000",
                "--out-of-order",
                "500",
                "-w",
                "2",
                "-n",
                "2",
                "-p",
                p,
                "-h",
                hosts,
            ])
        })
        .collect();
    let mut outputs = children
        .into_iter()
        .map(|c| rows(c.wait_with_output().expect("exits")));
    let (ours, _) = outputs.next().expect("process 0");
    let (second, _) = outputs.next().expect("process 1");
    assert!(second.values().all(Vec::is_empty), "only process 0 prints");
    assert_same("two processes", &ours, &duckdb(&events), &QUERIES);
}

/// Corner cases the generator rarely makes, against DuckDB: a bid at a q7 window's end that
/// equals the window's highest price (it belongs to both windows), bids exactly at an
/// auction's open and close (q4, q6: inclusive) and one after it, ties for q5's hottest
/// auction, a seller with more than 10 auctions (q6), and a person and an auction in the same
/// window but not the same one (q8).
#[test]
fn window_and_interval_edges_equal_duckdb() {
    let t0: u64 = 1_700_000_000_000; // a multiple of 10 s
    let person = |id: u64, at: u64| {
        format!(
            r#"{{"event_type":0,"person":{{"id":{id},"name":"p{id}","emailAddress":"e","creditCard":"c","city":"Bend","state":"OR","dateTime":{at},"extra":""}}}}"#
        )
    };
    let auction = |id: u64, seller: u64, at: u64, expires: u64| {
        format!(
            r#"{{"event_type":1,"auction":{{"id":{id},"itemName":"i","description":"d","initialBid":1,"reserve":2,"dateTime":{at},"expires":{expires},"seller":{seller},"category":10,"extra":""}}}}"#
        )
    };
    let bid = |auction: u64, price: u64, at: u64| {
        format!(
            r#"{{"event_type":2,"bid":{{"auction":{auction},"bidder":7,"price":{price},"channel":"c","url":"u","dateTime":{at},"extra":""}}}}"#
        )
    };
    let mut lines = vec![
        person(1, t0),
        person(2, t0 + 9_999),
        person(3, t0 + 12_000),
        auction(100, 1, t0 + 5, t0 + 1_000),
        auction(101, 2, t0 + 10_000, t0 + 11_000),
        bid(100, 50, t0 + 5),
        bid(100, 60, t0 + 1_000),
        bid(100, 90, t0 + 1_001),
        bid(101, 90, t0 + 10_000),
        bid(101, 40, t0 + 10_500),
        bid(100, 90, t0 + 4_000),
        bid(101, 70, t0 + 17_000),
        bid(101, 70, t0 + 18_000),
    ];
    for k in 0..14 {
        let (id, at) = (200 + k, t0 + 20_000 + 100 * k);
        lines.push(auction(id, 3, at, at + 50));
        lines.push(bid(id, 10 * (k + 1), at + 50));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("edges.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").expect("written");
    for workers in ["1", "2"] {
        let (ours, _) = run(&["--input", events.to_str().expect("path"), "-w", workers]);
        let filled = ["q0", "q3", "q4", "q5", "q6", "q7", "q8"];
        assert_same(
            &format!("edges, -w {workers}"),
            &ours,
            &duckdb(&events),
            &filled,
        );
        let q7: Vec<u64> = ours["q7"]
            .iter()
            .filter_map(|r| r["dateTime"].as_u64())
            .collect();
        assert!(
            q7.contains(&(t0 + 10_000)),
            "the bid at a window's end counts for it: {q7:?}"
        );
    }
}

/// The suite's own SQL text (`tests/nexmark/flink.sql`, only `INSERT INTO` made `CREATE VIEW`)
/// as SQL views over the declared sources (`tests/nexmark/schema.sql`), on 1 and 2 workers:
/// the same rows as DuckDB's oracle, and so as the Rust queries.
#[test]
fn the_suites_sql_equals_duckdb() {
    use lambdaflow::prelude::{Cluster, Engine, History, Settings};
    use lambdaflow::sql::{Record, Schema, SqlViews, WithSql};

    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nexmark");
    let read = |name: &str| std::fs::read_to_string(here.join(name)).expect("read");
    let schema = Schema::parse(&read("schema.sql")).expect("the schema parses");
    let sql = read("flink.sql");
    let dir = tempfile::tempdir().expect("temp dir");
    // Half the events at half the rate: the same 30 s of windows.
    let half = NexmarkConfig {
        events: 15_000,
        rate: 500,
        ..config(4, 1)
    };
    let events = generated(dir.path(), "events.jsonl", &half);
    let duck = duckdb(&events);
    for workers in [1, 2] {
        let views = SqlViews::<Record>::over(schema.tables(), &sql)
            .unwrap_or_else(|e| panic!("the suite's SQL plans: {e}"));
        let pipeline = WithSql {
            pipeline: schema.clone(),
            sql: views,
        };
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            Settings::default(),
            History::Files(vec![events.clone()]),
            pipeline,
        )
        .expect("engine starts");
        engine.end_live();
        let mut ours = support::final_sql_rows(engine);
        ours.values_mut().flatten().for_each(timestamps_as_ms);
        let mut duck = duck.clone();
        if let Some(all) = duck.as_object_mut() {
            all.retain(|name, _| ours.contains_key(name));
        }
        let filled: Vec<&str> = ours.keys().map(String::as_str).collect();
        assert_same(&format!("SQL, -w {workers}"), &ours, &duck, &filled);
    }
}

/// A SQL row's timestamps (DuckDB's text) as the oracle's milliseconds since the epoch.
fn timestamps_as_ms(row: &mut Value) {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    for column in ["dateTime", "starttime"] {
        if let Some(text) = row[column].as_str() {
            let at = time::PrimitiveDateTime::parse(text, format).expect("a timestamp");
            let ms = at.assume_utc().unix_timestamp_nanos() / 1_000_000;
            row[column] = Value::from(ms as u64);
        }
    }
}

/// Typed reads: `Client::get` hands a key's values in the view's own types, and `Client::rows`
/// a whole view keyed by a composite key, equal to a naive fold of the events and to DuckDB.
#[test]
fn typed_reads_and_composite_keys_equal_the_oracles() {
    use lambdaflow::nexmark::Queries;
    use lambdaflow::prelude::{Cluster, Engine, History, Query, QueryError, Settings};

    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", &config(6, 1));
    // The oracle of q2: each multiple-of-123 auction's bid prices, folded from the file.
    let mut prices: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in std::fs::read_to_string(&events).expect("read").lines() {
        let event: Value = serde_json::from_str(line).expect("a JSON line");
        let bid = &event["bid"];
        if let (Some(auction), Some(price)) = (bid["auction"].as_u64(), bid["price"].as_u64())
            && auction % 123 == 0
        {
            prices.entry(auction).or_default().push(price);
        }
    }
    assert!(
        prices.len() > 2,
        "some auctions have q2 bids, so the test can fail"
    );
    let duck = duckdb(&events);
    for workers in [1, 2] {
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            Settings::default(),
            History::Files(vec![events.clone()]),
            Queries::all(),
        )
        .expect("engine starts");
        engine.end_live();
        let client = engine.client();
        let end = Some(lambdaflow::event::END_OF_TIME);
        for (auction, expected) in &prices {
            let got = client
                .get::<u64, u64, isize>("q2", auction, end)
                .expect("q2 holds u64 prices by u64 auction");
            let mut got: Vec<u64> = got
                .into_iter()
                .flat_map(|(price, n)| std::iter::repeat_n(price, n as usize))
                .collect();
            got.sort();
            let mut expected = expected.clone();
            expected.sort();
            assert_eq!(got, expected, "-w {workers}: auction {auction}'s q2 prices");
        }
        let none = client.get::<u64, u64, isize>("q2", &1, end);
        assert_eq!(
            none,
            Ok(Vec::new()),
            "an auction with no q2 bids has no values"
        );
        assert_eq!(
            client.get::<u64, String, isize>("q2", &123, end),
            Err(QueryError::WrongType("q2".into())),
            "types that are not the view's are refused"
        );
        // q5 by (window start, auction): its rows are DuckDB's, and one reads by its key text.
        let q5 = client
            .rows::<(u64, u64), isize, isize>(Query::all("q5"), end)
            .expect("q5 holds counts by (window start, auction)");
        let mut ours: Vec<(u64, u64)> = q5
            .iter()
            .flat_map(|((_, auction), values)| values.iter().map(|(n, _)| (*auction, *n as u64)))
            .collect();
        ours.sort();
        let mut expected: Vec<(u64, u64)> = duck["q5"]
            .as_array()
            .expect("DuckDB's q5 rows")
            .iter()
            .map(|row| {
                let field = |name: &str| row[name].as_u64().expect("an integer");
                (field("auction"), field("num"))
            })
            .collect();
        expected.sort();
        assert!(!expected.is_empty(), "q5 has rows, so the test can fail");
        assert_eq!(ours, expected, "-w {workers}: q5 read typed");
        let ((start, auction), values) = q5.last().expect("a row").clone();
        let text = format!("{start},{auction}");
        let by_text = client
            .rows::<(u64, u64), isize, isize>(Query::key("q5", &text), end)
            .expect("read by its key text");
        assert_eq!(by_text, vec![((start, auction), values)]);
        drop(client);
        engine.join().expect("engine ends");
    }
}

/// `lambdaflow run --nexmark`: the queries served as views. Two thirds of the events come as
/// `--history`, the rest is posted live in chunks; once the source declares its watermark past
/// the last event, every view's rows as of the visible time equal DuckDB's.
#[test]
fn the_server_serves_every_query_as_duckdb_answers() {
    use support::server::Server;

    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", &config(7, 1));
    let text = std::fs::read_to_string(&events).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    let (history, live) = lines.split_at(lines.len() * 2 / 3);
    let history_file = dir.path().join("history.jsonl");
    std::fs::write(&history_file, history.join("\n") + "\n").expect("written");
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        free_port(),
        &[
            "--nexmark",
            "--history",
            history_file.to_str().expect("path"),
            "-w",
            "2",
        ],
        true,
    );
    let mut last = 0;
    for chunk in live.chunks(2_000) {
        let body = chunk.join("\n") + "\n";
        let (status, answer) = server.post("/events", "application/x-ndjson", body.into_bytes());
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["accepted"].as_u64(),
            Some(chunk.len() as u64),
            "{answer}"
        );
    }
    for line in live {
        let event: Value = serde_json::from_str(line).expect("a JSON line");
        let at = ["person", "auction", "bid"]
            .iter()
            .find_map(|kind| event[kind]["dateTime"].as_u64())
            .expect("an event time");
        last = last.max(at);
    }
    let visible = server.declare(last + 1);
    let mut ours = BTreeMap::new();
    for q in QUERIES {
        // The live events are at their own times, one each: a debug build may take longer
        // than the server's query timeout to compute them, and answers 503 until then.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let body = loop {
            let response = server
                .http
                .get(server.url(&format!("/views/{q}?as_of={visible}")))
                .header("accept", "application/x-ndjson")
                .send()
                .expect("answered");
            let status = response.status().as_u16();
            let body = response.text().expect("a body");
            if status == 503
                && body.contains("not_complete")
                && std::time::Instant::now() < deadline
            {
                continue;
            }
            assert_eq!(status, 200, "{q}: {body}");
            break body;
        };
        let rows: Vec<Value> = body
            .lines()
            .flat_map(|line| {
                let row: Value = serde_json::from_str(line).expect("a JSON line");
                row["value"].as_array().cloned().unwrap_or_default()
            })
            .collect();
        ours.insert(q.to_string(), rows);
    }
    assert_same("run --nexmark", &ours, &duckdb(&events), &QUERIES);
}

/// A later stage joins against a view's arrangement (`ViewRef::arranged`): q2's bids, by
/// auction, joined with each auction's item name, equal to a naive fold of the file.
#[test]
fn a_view_s_arrangement_is_joined_against() {
    use lambdaflow::nexmark::Nexmark;
    use lambdaflow::prelude::{Cluster, Engine, History, Pipeline, Query, Settings, Time};
    use lambdaflow::view::Views;

    struct BidItems;
    impl Pipeline for BidItems {
        type Event = Nexmark;
        fn build<'s>(
            &self,
            events: differential_dataflow::VecCollection<'s, Time, Nexmark>,
            views: &mut Views<'s>,
        ) {
            let bids = events.clone().flat_map(|e| match e {
                Nexmark::Bid(b) if b.auction % 123 == 0 => Some((b.auction, b.price)),
                _ => None,
            });
            let q2 = views.register("q2", "q2's bids", bids, |_, _| None);
            let items = events
                .flat_map(|e| match e {
                    Nexmark::Auction(a) => Some((a.id, a.item_name.to_string())),
                    _ => None,
                })
                .arrange_by_key();
            let joined = q2.arranged().join_core(items, |auction, price, item| {
                Some((*auction, (*price, item.clone())))
            });
            views.register_derived("bid_items", "q2's bids with items", joined, |_, _| None);
        }
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", &config(8, 1));
    let (mut names, mut bids) = (BTreeMap::new(), Vec::new());
    for line in std::fs::read_to_string(&events).expect("read").lines() {
        let event: Value = serde_json::from_str(line).expect("a JSON line");
        if let (Some(id), Some(name)) = (
            event["auction"]["id"].as_u64(),
            event["auction"]["itemName"].as_str(),
        ) {
            names.insert(id, name.to_string());
        }
        if let (Some(auction), Some(price)) = (
            event["bid"]["auction"].as_u64(),
            event["bid"]["price"].as_u64(),
        ) && auction % 123 == 0
        {
            bids.push((auction, price));
        }
    }
    let mut expected: Vec<(u64, u64, String)> = bids
        .into_iter()
        .filter_map(|(a, p)| names.get(&a).map(|n| (a, p, n.clone())))
        .collect();
    expected.sort();
    assert!(expected.len() > 2, "some bids join, so the test can fail");
    for workers in [1, 2] {
        let mut engine = Engine::start(
            &Cluster::threads(workers),
            Settings::default(),
            History::Files(vec![events.clone()]),
            BidItems,
        )
        .expect("engine starts");
        engine.end_live();
        let rows = engine
            .client()
            .rows::<u64, (u64, String), isize>(
                Query::all("bid_items"),
                Some(lambdaflow::event::END_OF_TIME),
            )
            .expect("bid_items holds (price, item) by auction");
        let mut ours: Vec<(u64, u64, String)> = rows
            .into_iter()
            .flat_map(|(auction, values)| {
                values.into_iter().flat_map(move |((price, item), n)| {
                    std::iter::repeat_n((auction, price, item), n as usize)
                })
            })
            .collect();
        ours.sort();
        assert_eq!(ours, expected, "-w {workers}");
    }
}
