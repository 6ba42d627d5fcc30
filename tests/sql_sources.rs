//! SQL views over declared sources (`run --schema`): rows of several tables, typed by a schema,
//! read from a history file and live, must give DuckDB's rows for the same views over the same
//! lines.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lambdaflow::event::{Decode, Format};
use lambdaflow::prelude::*;
use lambdaflow::sql::types::Type;
use lambdaflow::sql::{Record, Schema, SqlViews, WithSql, answer_rows};
use proptest::prelude::*;
use serde_json::{Value, json};

fn sql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql")
}

fn schema() -> Schema {
    let text = std::fs::read_to_string(sql_dir().join("sources.sql")).expect("the schema reads");
    Schema::parse(&text).expect("the schema parses")
}

/// The tables as the oracle loads them (each row under the field named after its source).
fn oracle_tables(schema: &Schema) -> Value {
    let duck = |ty: Type| match ty {
        Type::BigInt => "BIGINT",
        Type::Double => "DOUBLE",
        Type::Varchar => "VARCHAR",
        Type::Boolean => "BOOLEAN",
        other => panic!("no source column is {other:?}"),
    };
    Value::Array(
        schema
            .sources()
            .iter()
            .map(|s| {
                let columns: Vec<Value> = s
                    .columns
                    .iter()
                    .map(|c| json!([c.name, duck(c.ty)]))
                    .collect();
                json!({"name": s.name, "columns": columns, "envelope": true})
            })
            .collect(),
    )
}

/// One generated line: a row of one source, as NEXMark writes it.
#[derive(Clone, Debug)]
struct Line {
    source: usize,
    fields: Vec<(&'static str, Value)>,
}

impl Line {
    /// The line: persons leave their NULL fields out, the others write them as `null` (both
    /// read as NULL).
    fn text(&self) -> String {
        let names = ["person", "auction", "bid"];
        let row: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .filter(|(_, v)| !v.is_null() || self.source != 0)
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        json!({"event_type": self.source, names[self.source]: row}).to_string()
    }
}

fn nullable<T: Into<Value>>(x: Option<T>) -> Value {
    x.map_or(Value::Null, Into::into)
}

/// Rows over small domains (so joins match and groups repeat), with NULLs.
fn line() -> impl Strategy<Value = Line> {
    let time = 0u64..40_000;
    let id = 0i64..8;
    let person = (
        id.clone(),
        prop::option::of(0usize..3),
        prop::option::of(0usize..4),
        time.clone(),
    )
        .prop_map(|(id, name, state, t)| Line {
            source: 0,
            fields: vec![
                ("id", id.into()),
                ("name", nullable(name.map(|n| ["ann", "bob", "cy"][n]))),
                ("city", json!("town")),
                (
                    "state",
                    nullable(state.map(|s| ["OR", "CA", "WA", "ID"][s])),
                ),
                ("dateTime", t.into()),
            ],
        });
    let auction = (
        id.clone(),
        prop::option::of(0i64..8),
        0i64..3,
        prop::option::of(-2.5f64..10.0),
        time.clone(),
        0u64..20_000,
    )
        .prop_map(|(id, seller, category, reserve, t, length)| Line {
            source: 1,
            fields: vec![
                ("id", id.into()),
                ("seller", nullable(seller)),
                ("category", category.into()),
                ("reserve", nullable(reserve)),
                ("dateTime", t.into()),
                ("expires", (t + length).into()),
            ],
        });
    let bid = (
        prop::option::of(id.clone()),
        0i64..5,
        prop::option::of(0i64..100),
        prop::option::of(0usize..3),
        prop::option::of(any::<bool>()),
        time,
    )
        .prop_map(|(auction, bidder, price, channel, urgent, t)| Line {
            source: 2,
            fields: vec![
                ("auction", nullable(auction)),
                ("bidder", bidder.into()),
                ("price", nullable(price)),
                (
                    "channel",
                    nullable(channel.map(|c| ["Google", "google", "Apple"][c])),
                ),
                ("urgent", nullable(urgent)),
                ("dateTime", t.into()),
            ],
        });
    prop_oneof![1 => person, 2 => auction, 5 => bid]
}

/// Every view's final rows: `history` replayed from a file, `live` sent as records.
fn engine_rows(
    schema: &Schema,
    sql: &str,
    workers: usize,
    history: &Path,
    live: &[String],
) -> BTreeMap<String, Vec<Value>> {
    let views = SqlViews::<Record>::over(schema.tables(), sql)
        .unwrap_or_else(|e| panic!("the SQL plans: {e}"));
    let pipeline = WithSql {
        pipeline: schema.clone(),
        sql: views,
    };
    let mut engine = Engine::start(
        &Cluster::threads(workers),
        Settings::default(),
        History::Files(vec![history.to_path_buf()]),
        pipeline,
    )
    .expect("engine starts");
    let sender = engine.live().expect("live input");
    engine.end_live();
    for line in live {
        let record = schema
            .decode(line.as_bytes(), Format::JsonLines)
            .expect("a generated line reads");
        sender.send(record).expect("sent");
    }
    drop(sender);
    support::final_sql_rows(engine)
}

/// Runs the views over `history` (replayed) then `live`, in the engine and in DuckDB.
fn differences(workers: usize, history: &[String], live: &[String]) -> Vec<String> {
    let schema = schema();
    let views_path = sql_dir().join("sources_views.sql");
    let sql = std::fs::read_to_string(&views_path).expect("the views read");
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).expect("written");
        path
    };
    let history_path = write("history.jsonl", history);
    let all: Vec<String> = history.iter().chain(live).cloned().collect();
    let all_path = write("all.jsonl", &all);
    let tables = dir.path().join("tables.json");
    std::fs::write(&tables, oracle_tables(&schema).to_string()).expect("written");
    let duck = support::duckdb::views_over(Some(&tables), &all_path, &views_path);
    let ranked: BTreeMap<String, bool> = SqlViews::<Record>::over(schema.tables(), &sql)
        .expect("plans")
        .views()
        .iter()
        .map(|v| (v.name.clone(), v.ranking.is_some()))
        .collect();
    let ours = engine_rows(&schema, &sql, workers, &history_path, live);
    support::duckdb::differences(&ours, &duck, &ranked)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random rows of three sources, split between the history file and the live lane (live
    /// rows out of order, so some are late and corrected), on 1-3 workers.
    #[test]
    fn views_over_declared_sources_equal_duckdb(
        lines in prop::collection::vec(line(), 0..160),
        split in 0.0f64..1.0,
        workers in 1usize..=3,
    ) {
        let text: Vec<String> = lines.iter().map(Line::text).collect();
        let at = (text.len() as f64 * split) as usize;
        let failures = differences(workers, &text[..at], &text[at..]);
        prop_assert!(failures.is_empty(), "{} views differ:\n{}", failures.len(), failures.join("\n"));
    }
}

#[test]
fn a_line_of_no_source_is_rejected_with_its_number_and_the_rest_kept() {
    let schema = schema();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.jsonl");
    let lines = [
        r#"{"bid": {"auction": 1, "bidder": 2, "price": 3, "dateTime": 10}}"#,
        r#"{"price": 1, "dateTime": 10}"#,
        r#"{"bid": {"auction": 1, "price": "3", "dateTime": 10}}"#,
        r#"{"auction": 1, "dateTime": 10}"#,
        r#"{"person": {"id": 4, "dateTime": 11}}"#,
    ];
    std::fs::write(&path, lines.join("\n")).expect("written");
    let rejects = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut hooks = lambdaflow::engine::Hooks::default();
    let kept = rejects.clone();
    hooks.on_reject = Some(Arc::new(move |r: Reject| {
        kept.lock().expect("lock").push(r)
    }));
    let views = SqlViews::<Record>::over(
        schema.tables(),
        "CREATE VIEW n AS SELECT COUNT(*) AS bids FROM bid;
         CREATE VIEW p AS SELECT id FROM person",
    )
    .expect("plans");
    let mut engine = Engine::start_with(
        &Cluster::threads(1),
        Settings::default(),
        History::Files(vec![path]),
        WithSql {
            pipeline: schema,
            sql: views,
        },
        hooks,
    )
    .expect("starts");
    engine.end_live();
    let client = engine.client();
    let rows = |view: &str| {
        answer_rows(
            &client.query_final(Query::all(view)).expect("answered"),
            None,
        )
    };
    assert_eq!(rows("n"), vec![json!({"bids": 1})]);
    assert_eq!(rows("p"), vec![json!({"id": 4})]);
    drop(client);
    engine.join().expect("finishes");
    let rejects = rejects.lock().expect("lock");
    let numbered: Vec<(u64, &str)> = rejects.iter().map(|r| (r.line, r.error.as_str())).collect();
    let expected = [
        (2, "names no source"),
        (3, "price is BIGINT"),
        (4, "a row of auction"),
    ];
    assert_eq!(numbered.len(), expected.len(), "{rejects:?}");
    for ((line, error), (want_line, want)) in numbered.iter().zip(expected) {
        assert_eq!(*line, want_line);
        assert!(error.contains(want), "line {line}: {error}");
    }
}

mod server {
    use super::*;
    use support::server::{Server, free_port};

    const VIEWS: &str = "
        CREATE VIEW bids AS SELECT auction, COUNT(*) AS n, MAX(price) AS top FROM bid GROUP BY auction;
        CREATE VIEW sellers AS
          SELECT p.name, a.id FROM auction AS a JOIN person AS p ON a.seller = p.id;";

    fn post(server: &Server, path: &str, lines: &[&str]) -> (u16, Value) {
        let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        server.post(path, "application/x-ndjson", body.into_bytes())
    }

    /// The rows of every view of `VIEWS` as of `as_of`, by name.
    fn rows(server: &Server, as_of: u64) -> BTreeMap<String, Vec<Value>> {
        ["bids", "sellers"]
            .iter()
            .map(|view| {
                let (status, answer) = server.get(&format!("/views/{view}?as_of={as_of}"));
                assert_eq!(status, 200, "{view}: {answer}");
                (
                    view.to_string(),
                    answer["rows"].as_array().cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn expected(lines: &[&str]) -> BTreeMap<String, Vec<Value>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let events = dir.path().join("all.jsonl");
        std::fs::write(&events, lines.join("\n")).expect("written");
        let sql = dir.path().join("views.sql");
        std::fs::write(&sql, VIEWS).expect("written");
        let tables = dir.path().join("tables.json");
        std::fs::write(&tables, oracle_tables(&schema()).to_string()).expect("written");
        let duck = support::duckdb::views_over(Some(&tables), &events, &sql);
        duck.as_object()
            .expect("views")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().cloned().unwrap_or_default()))
            .collect()
    }

    fn same(ours: &BTreeMap<String, Vec<Value>>, duck: &BTreeMap<String, Vec<Value>>) {
        assert_eq!(ours.len(), duck.len());
        for (name, rows) in duck {
            if let Err(e) = support::duckdb::compare(name, false, &ours[name], rows) {
                panic!("{e}");
            }
        }
    }

    /// `run --schema`: history imported through the schema, rows posted per source and in
    /// envelopes, bad lines refused by number, SQL views equal to DuckDB, and all of it back
    /// after kill -9 with the schema taken from the data directory.
    #[test]
    fn a_server_of_declared_sources() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let history = dir.path().join("history.jsonl");
        let old = [
            r#"{"person": {"id": 1, "name": "ann", "dateTime": 1000}}"#,
            r#"{"auction": {"id": 10, "seller": 1, "category": 1, "dateTime": 1500, "expires": 9000}}"#,
            r#"{"bid": {"auction": 10, "bidder": 1, "price": 5, "dateTime": 2000}}"#,
        ];
        std::fs::write(&history, old.join("\n")).expect("written");
        let views = dir.path().join("views.sql");
        std::fs::write(&views, VIEWS).expect("written");
        let schema_file = sql_dir().join("sources.sql");
        let args = [
            "--schema",
            schema_file.to_str().expect("utf-8"),
            "--history",
            history.to_str().expect("utf-8"),
            "--sql",
            views.to_str().expect("utf-8"),
            "--idle-timeout",
            "off",
        ];
        let port = free_port();
        let server = Server::start(&data, port, &args, true);

        let (status, answer) = post(
            &server,
            "/events/bid",
            &[
                r#"{"auction": 10, "bidder": 2, "price": 9, "dateTime": 3000}"#,
                r#"{"auction": 10, "bidder": 2, "price": "high", "dateTime": 3000}"#,
                r#"{"auction": 11, "bidder": 3, "price": 4, "dateTime": 3100, "extra": "x"}"#,
            ],
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 2, "{answer}");
        assert_eq!(answer["rejected"][0]["line"], 2, "{answer}");
        let reason = answer["rejected"][0]["error"].as_str().unwrap_or_default();
        assert!(reason.contains("price is BIGINT"), "{answer}");
        let (status, answer) = post(
            &server,
            "/events",
            &[
                r#"{"event_type": 0, "person": {"id": 2, "name": "bob", "dateTime": 3200}, "bid": null}"#,
            ],
        );
        assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
        let (status, answer) = post(
            &server,
            "/events/auction",
            &[r#"{"id": 11, "seller": 2, "dateTime": 3300, "expires": 9000}"#],
        );
        assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
        let (status, answer) = post(&server, "/events/bids", &[r#"{"dateTime": 1}"#]);
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["error"]["code"], "unknown_source");

        let (status, answer) = server.post(
            "/sql",
            "application/sql",
            b"CREATE VIEW busy AS SELECT bidder, COUNT(*) AS n FROM bid GROUP BY bidder".to_vec(),
        );
        assert_eq!(status, 200, "{answer}");
        let (status, answer) = server.post(
            "/sql",
            "application/sql",
            b"CREATE VIEW bad AS SELECT kind FROM events".to_vec(),
        );
        assert_eq!(status, 400, "{answer}");

        let as_of = server.declare(10_000);
        let all = [
            old[0],
            old[1],
            old[2],
            r#"{"bid": {"auction": 10, "bidder": 2, "price": 9, "dateTime": 3000}}"#,
            r#"{"bid": {"auction": 11, "bidder": 3, "price": 4, "dateTime": 3100}}"#,
            r#"{"person": {"id": 2, "name": "bob", "dateTime": 3200}}"#,
            r#"{"auction": {"id": 11, "seller": 2, "dateTime": 3300, "expires": 9000}}"#,
        ];
        let duck = expected(&all);
        same(&rows(&server, as_of), &duck);
        server.kill();

        // Back after kill -9, the schema and the catalog from the data directory.
        let server = Server::start(&data, port, &["--idle-timeout", "off"], true);
        let names = server.view_names();
        assert!(names.iter().any(|n| n == "busy"), "{names:?}");
        same(&rows(&server, as_of), &duck);
        drop(server);

        // A schema that changes a stored source is refused.
        let changed = dir.path().join("changed.sql");
        let text = std::fs::read_to_string(&schema_file).expect("reads");
        std::fs::write(&changed, text.replace("urgent BOOLEAN", "urgent BIGINT")).expect("written");
        let status = std::process::Command::new(support::binaries::lambdaflow())
            .args(["run", "--data-dir"])
            .arg(&data)
            .arg("--schema")
            .arg(&changed)
            .output()
            .expect("runs");
        assert!(!status.status.success());
        let stderr = String::from_utf8_lossy(&status.stderr);
        assert!(stderr.contains("the source bid changed"), "{stderr}");
    }

    /// A data directory of e-commerce events takes no schema.
    #[test]
    fn a_schema_is_refused_over_events_of_the_built_in_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        support::server::import(dir.path(), &[support::golden("history.jsonl")]);
        let out = std::process::Command::new(support::binaries::lambdaflow())
            .args(["run", "--data-dir"])
            .arg(dir.path())
            .arg("--schema")
            .arg(sql_dir().join("sources.sql"))
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("holds events of the built-in source"),
            "{stderr}"
        );
    }
}
