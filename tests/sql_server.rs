//! SQL views on the real server: created while it ingests (backfilled from the master dataset,
//! every event counted once across the backfill/live boundary, equal to DuckDB), replaced
//! under concurrent reads (every answer one version's), dropped, refused with reasons, and
//! back after kill -9, from a checkpoint that lacks them or an older version of one.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::server::{Server, free_port, import, start_pair};
use support::{golden, jsonl, read_orders};

/// Views created while events stream in.
const VIEWS: &str = "
CREATE VIEW spend AS
  SELECT customer, SUM(CASE kind WHEN 'purchase' THEN amount_cents ELSE -amount_cents END) AS spend_cents
  FROM events WHERE kind IN ('purchase', 'refund') GROUP BY customer;
CREATE VIEW totals AS
  SELECT COUNT(*) AS events, COUNT(amount_cents) AS with_amount, SUM(amount_cents) AS cents FROM events;
CREATE VIEW per_minute AS
  SELECT ts - ts % 60000 AS minute, kind, COUNT(*) AS n FROM events GROUP BY minute, kind;
CREATE VIEW top_spenders AS
  SELECT customer, spend_cents FROM spend ORDER BY spend_cents DESC, customer LIMIT 5;
";

fn post_sql(server: &Server, sql: &str) -> (u16, Value) {
    server.post("/sql", "application/sql", sql.as_bytes().to_vec())
}

/// Waits until every view is ready.
fn wait_ready(server: &Server) {
    wait_ready_with(server, &[]);
}

/// Waits until every view is ready and `names` are among them (a `POST /sql` may answer
/// before the workers have listed its views).
fn wait_ready_with(server: &Server, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = server.get("/views");
        let views = list["views"].as_array().cloned().unwrap_or_default();
        let listed = names
            .iter()
            .all(|n| views.iter().any(|v| v["name"].as_str() == Some(n)));
        if listed && !views.is_empty() && views.iter().all(|v| v["state"] == "ready") {
            return;
        }
        assert!(Instant::now() < deadline, "views never got ready: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows_of(server: &Server, view: &str, as_of: u64) -> Vec<Value> {
    let (status, answer) = server.get(&format!("/views/{view}?as_of={as_of}"));
    assert_eq!(status, 200, "{view}: {answer}");
    answer["rows"].as_array().cloned().unwrap_or_default()
}

/// The SQL views equal DuckDB over `events`.
fn check_against_duckdb(server: &Server, events: &std::path::Path, as_of: u64) {
    check_views_against_duckdb(server, VIEWS, events, as_of);
}

/// The views `views` defines equal DuckDB over `events`.
fn check_views_against_duckdb(server: &Server, views: &str, events: &std::path::Path, as_of: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sql = dir.path().join("views.sql");
    std::fs::write(&sql, views).expect("sql written");
    let duck = support::duckdb::views(events, &sql);
    for (name, rows) in duck.as_object().expect("views") {
        let ours = rows_of(server, name, as_of);
        let theirs = rows.as_array().cloned().unwrap_or_default();
        let ranked = name == "top_spenders";
        if let Err(e) = support::duckdb::compare(name, ranked, &ours, &theirs) {
            panic!("{e}");
        }
    }
}

#[test]
fn views_created_during_ingest_count_every_event_once_and_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    import(&data, &[golden("history.jsonl")]);
    let port = free_port();
    let server = Server::start(&data, port, &["-w", "2", "--idle-timeout", "off"], true);
    let live = read_orders(&golden("live.jsonl"));
    let history = read_orders(&golden("history.jsonl"));
    let newest = live.iter().chain(&history).map(|e| e.ts).max().unwrap_or(0);
    let chunks: Vec<Vec<u8>> = live.chunks(150).map(jsonl).collect();
    let third = chunks.len() / 3;
    for chunk in &chunks[..third] {
        let (status, answer) = server.post("/events", "application/x-ndjson", chunk.clone());
        assert_eq!(status, 200, "{answer}");
    }
    // Create the views while another thread keeps posting.
    let posting = {
        let base = server.base.clone();
        let rest: Vec<Vec<u8>> = chunks[third..].to_vec();
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            for chunk in rest {
                let r = http
                    .post(format!("{base}/events"))
                    .header("content-type", "application/x-ndjson")
                    .body(chunk)
                    .send()
                    .expect("posted");
                assert_eq!(r.status().as_u16(), 200);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (status, answer) = post_sql(&server, VIEWS);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["statements"].as_array().map(Vec::len), Some(4));
    posting.join().expect("posting thread");
    let visible = server.declare(newest + 1);
    wait_ready(&server);

    let events = dir.path().join("all.jsonl");
    let mut all = std::fs::read(golden("history.jsonl")).expect("history");
    all.extend(jsonl(&live));
    std::fs::write(&events, all).expect("events written");
    check_against_duckdb(&server, &events, visible);
    let totals = rows_of(&server, "totals", visible);
    let expected = history.len() + live.len();
    assert_eq!(totals[0]["events"], expected as u64, "every event once");

    // kill -9: the catalog brings every view back, with the same rows.
    server.kill();
    let server = Server::start(
        &data,
        free_port(),
        &["-w", "2", "--idle-timeout", "off"],
        true,
    );
    wait_ready(&server);
    check_against_duckdb(&server, &events, visible);
}

/// Views created after the newest checkpoint, and a view replaced after it: a restart restores
/// what the checkpoint has and rebuilds only those views from the master dataset, and every
/// view equals DuckDB.
#[test]
fn a_restore_rebuilds_only_the_views_its_checkpoint_lacks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    import(&data, &[golden("history.jsonl")]);
    let args = ["-w", "2", "--idle-timeout", "off"];
    let live = read_orders(&golden("live.jsonl"));
    let history = read_orders(&golden("history.jsonl"));
    let newest = live.iter().chain(&history).map(|e| e.ts).max().unwrap_or(0);
    let (first, rest) = live.split_at(live.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let post = |server: &Server, events: &[lambdaflow::ecommerce::Order]| {
        for chunk in events.chunks(150) {
            let (status, answer) = server.post("/events", "application/x-ndjson", jsonl(chunk));
            assert_eq!(status, 200, "{answer}");
        }
    };
    // A checkpoint, then `sql` posted and `events` after it; then kill -9.
    let checkpoint_then = |server: Server, sql: &str, events: &[lambdaflow::ecommerce::Order]| {
        let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
        assert_eq!(status, 200, "{taken}");
        let (status, answer) = post_sql(&server, sql);
        assert_eq!(status, 200, "{answer}");
        post(&server, events);
        wait_ready(&server);
        server.kill();
    };

    // A checkpoint of the built-in views only, then the SQL views and more events.
    let server = Server::start(&data, free_port(), &args, true);
    post(&server, first);
    checkpoint_then(server, VIEWS, second);

    let server = Server::start(&data, free_port(), &args, true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    assert!(server.metric("lambdaflow_restored_cuts") > 0.0);
    let rebuilt = server.metric("lambdaflow_rebuilt_cuts");
    assert!(rebuilt > 0.0, "the SQL views are rebuilt");

    // A checkpoint with them, then one view replaced.
    let replaced = "CREATE OR REPLACE VIEW per_minute AS
      SELECT ts - ts % 120000 AS minute, kind, COUNT(*) AS n FROM events GROUP BY minute, kind;";
    checkpoint_then(server, replaced, third);

    let server = Server::start(&data, free_port(), &args, true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    let again = server.metric("lambdaflow_rebuilt_cuts");
    assert!(
        again > 0.0 && again < rebuilt,
        "only per_minute is rebuilt: {again} cuts of {rebuilt}"
    );
    let visible = server.declare(newest + 1);
    let events = dir.path().join("all.jsonl");
    let mut all = std::fs::read(golden("history.jsonl")).expect("history");
    all.extend(jsonl(&live));
    std::fs::write(&events, all).expect("events written");
    let views = VIEWS.replace(
        "SELECT ts - ts % 60000 AS minute",
        "SELECT ts - ts % 120000 AS minute",
    );
    check_views_against_duckdb(&server, &views, &events, visible);
    assert_eq!(
        server.views(visible),
        serde_json::from_slice::<Value>(
            &std::fs::read(golden("expected.json")).expect("expected.json")
        )
        .expect("JSON"),
        "the restored built-in views"
    );
}

/// Views created while the server runs are in the next checkpoint once they answer: a restart
/// after kill -9 restores them with the built-in views, rebuilds nothing, and every view
/// equals DuckDB and the golden answers.
#[test]
fn views_created_while_running_are_restored_not_rebuilt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    import(&data, &[golden("history.jsonl")]);
    let args = ["-w", "2", "--idle-timeout", "off"];
    let live = read_orders(&golden("live.jsonl"));
    let history = read_orders(&golden("history.jsonl"));
    let newest = live.iter().chain(&history).map(|e| e.ts).max().unwrap_or(0);
    let (first, rest) = live.split_at(live.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let post = |server: &Server, events: &[lambdaflow::ecommerce::Order]| {
        for chunk in events.chunks(150) {
            let (status, answer) = server.post("/events", "application/x-ndjson", jsonl(chunk));
            assert_eq!(status, 200, "{answer}");
        }
    };
    let server = Server::start(&data, free_port(), &args, true);
    let built_in = server.get("/views").1["views"]
        .as_array()
        .map_or(0, Vec::len);
    post(&server, first);
    let (status, answer) = post_sql(&server, VIEWS);
    assert_eq!(status, 200, "{answer}");
    wait_ready_with(&server, &["spend", "totals", "per_minute", "top_spenders"]);
    post(&server, second);
    let (status, taken) = server.post("/checkpoint", "application/json", Vec::new());
    assert_eq!(status, 200, "{taken}");
    post(&server, third);
    server.kill();

    let server = Server::start(&data, free_port(), &args, true);
    assert_eq!(server.metric("lambdaflow_restored"), 1.0);
    assert_eq!(
        server.metric("lambdaflow_rebuilt_cuts"),
        0.0,
        "the views created while running are in the checkpoint"
    );
    assert!(
        server.metric("lambdaflow_restored_cuts") > built_in as f64,
        "the built-in views' cuts and the SQL views' are restored"
    );
    wait_ready(&server);
    let visible = server.declare(newest + 1);
    let events = dir.path().join("all.jsonl");
    let mut all = std::fs::read(golden("history.jsonl")).expect("history");
    all.extend(jsonl(&live));
    std::fs::write(&events, all).expect("events written");
    check_against_duckdb(&server, &events, visible);
    let totals = rows_of(&server, "totals", visible);
    assert_eq!(
        totals[0]["events"],
        (history.len() + live.len()) as u64,
        "every event once"
    );
    assert_eq!(
        server.views(visible),
        serde_json::from_slice::<Value>(
            &std::fs::read(golden("expected.json")).expect("expected.json")
        )
        .expect("JSON"),
        "the restored built-in views"
    );
}

#[test]
fn a_replaced_view_switches_at_once_and_reads_never_mix_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    import(&data, &[golden("history.jsonl")]);
    let server = Arc::new(Server::start(&data, free_port(), &["-w", "2"], true));
    let v1 =
        "CREATE VIEW kinds AS SELECT kind, COUNT(*) AS n, 1 AS version FROM events GROUP BY kind";
    let v2 = "CREATE OR REPLACE VIEW kinds AS SELECT kind, COUNT(*) AS n, 2 AS version FROM events GROUP BY kind";
    assert_eq!(post_sql(&server, v1).0, 200);
    wait_ready_with(&server, &["kinds"]);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            // Reads until told to stop, and once more after: at least one read follows the
            // switch, however slowly this thread is scheduled.
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                let (status, answer) = server.get("/views/kinds");
                assert_eq!(
                    status, 200,
                    "the old version answers until the switch: {answer}"
                );
                let versions: Vec<u64> = answer["rows"]
                    .as_array()
                    .expect("rows")
                    .iter()
                    .map(|r| r["version"].as_u64().expect("version"))
                    .collect();
                assert_eq!(versions.len(), 3, "one row per kind");
                assert!(
                    versions.windows(2).all(|w| w[0] == w[1]),
                    "mixed: {versions:?}"
                );
                if seen.last() != Some(&versions[0]) {
                    seen.push(versions[0]);
                }
                if stopping {
                    break;
                }
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(post_sql(&server, v2).0, 200);
    // The old version is listed (ready) until the switch: wait for the new one's text.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = server.get("/views");
        let switched = list["views"].as_array().is_some_and(|views| {
            views.iter().any(|v| {
                v["name"] == "kinds"
                    && v["state"] == "ready"
                    && v["sql"]
                        .as_str()
                        .is_some_and(|s| s.contains("2 AS version"))
            })
        });
        if switched {
            break;
        }
        assert!(Instant::now() < deadline, "never switched: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader");
    assert_eq!(seen, vec![1, 2], "version 1, then version 2 for good");

    // A view that another reads is neither replaced nor dropped; a dropped view is gone.
    let over = "CREATE VIEW purchases AS SELECT n FROM kinds WHERE kind = 'purchase'";
    assert_eq!(post_sql(&server, over).0, 200);
    let (status, answer) = post_sql(&server, "DROP VIEW kinds");
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("purchases")
    );
    assert_eq!(post_sql(&server, "DROP VIEW purchases").0, 200);
    assert_eq!(post_sql(&server, "DROP VIEW kinds").0, 200);
    assert_eq!(server.get("/views/kinds").0, 404);
}

#[test]
fn bad_statements_are_refused_whole_with_their_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data"), free_port(), &[], true);
    let (status, answer) = post_sql(
        &server,
        "CREATE VIEW fine AS SELECT kind, COUNT(*) AS n FROM events GROUP BY kind;\nCREATE VIEW bad AS SELECT nope AS x FROM events",
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_sql");
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("unknown column nope")
    );
    assert_eq!(answer["error"]["line"], 2);
    assert_eq!(
        server.get("/views/fine").0,
        404,
        "nothing of a refused request is created"
    );
    let (status, _) = server.post("/sql", "application/json", b"{}".to_vec());
    assert_eq!(status, 415);
    let (status, answer) = post_sql(&server, "SELEC 1");
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("syntax")
    );
}

#[test]
fn an_ad_hoc_select_is_answered_once_as_duckdb_would() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    import(&data, &[golden("history.jsonl")]);
    let server = Server::start(&data, free_port(), &["-w", "2"], true);
    let select = "SELECT kind, COUNT(*) AS n, SUM(amount_cents) AS cents FROM events GROUP BY kind";
    let (status, answer) = post_sql(&server, select);
    assert_eq!(status, 200, "{answer}");
    let as_of = answer["as_of"].as_u64().expect("as_of");
    let ours = answer["rows"].as_array().cloned().unwrap_or_default();

    // DuckDB over the events before `as_of` (the newest ones are still beyond the watermark).
    let sql = dir.path().join("q.sql");
    std::fs::write(&sql, format!("CREATE VIEW q AS {select};")).expect("sql written");
    let before: Vec<_> = read_orders(&golden("history.jsonl"))
        .into_iter()
        .filter(|e| e.ts < as_of)
        .collect();
    let events = dir.path().join("before.jsonl");
    std::fs::write(&events, jsonl(&before)).expect("events written");
    let duck = support::duckdb::views(&events, &sql);
    let theirs = duck["q"].as_array().cloned().unwrap_or_default();
    support::duckdb::compare("q", false, &ours, &theirs).unwrap_or_else(|e| panic!("{e}"));

    // Over a view, with a limit; nothing of it stays behind.
    let view = "CREATE VIEW kinds AS SELECT kind, COUNT(*) AS n FROM events GROUP BY kind";
    assert_eq!(post_sql(&server, view).0, 200);
    // A view answers ad-hoc queries once its backfill is done.
    wait_ready_with(&server, &["kinds"]);
    let (status, answer) = server.post(
        "/sql?limit=1",
        "application/sql",
        b"SELECT kind, n FROM kinds ORDER BY n DESC, kind LIMIT 2".to_vec(),
    );
    assert_eq!(status, 200, "{answer}");
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    let most = theirs
        .iter()
        .max_by_key(|r| r["n"].as_u64())
        .expect("a kind");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["kind"], most["kind"]);
    // Reads of a view as it is, whole or by its key, come from its arrangement.
    let (status, answer) = post_sql(&server, "SELECT * FROM kinds WHERE kind = 'purchase'");
    assert_eq!(status, 200, "{answer}");
    let purchase = theirs
        .iter()
        .find(|r| r["kind"] == "purchase")
        .expect("purchases");
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(answer["rows"][0]["n"], purchase["n"]);
    let (status, answer) = post_sql(&server, "SELECT * FROM kinds");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(theirs.len()));
    let (status, answer) = post_sql(&server, "SELECT * FROM kinds WHERE kind = 'nothing'");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"], serde_json::json!([]));

    let names = server.view_names();
    assert!(!names.iter().any(|n| n.starts_with("adhoc")), "{names:?}");
}

#[test]
fn two_processes_build_every_view_in_one_order_and_answer_alike() {
    let history = read_orders(&golden("history.jsonl"));
    let live = read_orders(&golden("live.jsonl"));
    let (servers, _dirs) = start_pair(&history, &["-w", "2", "--idle-timeout", "off"]);
    let chunks: Vec<Vec<u8>> = live.chunks(300).map(jsonl).collect();
    let half = chunks.len() / 2;
    for (i, chunk) in chunks[..half].iter().enumerate() {
        let (status, answer) =
            servers[i % 2].post("/events", "application/x-ndjson", chunk.clone());
        assert_eq!(status, 200, "{answer}");
    }
    // Asked of the second process, built by both, in the same order.
    let (status, answer) = post_sql(&servers[1], VIEWS);
    assert_eq!(status, 200, "{answer}");
    for (i, chunk) in chunks[half..].iter().enumerate() {
        let (status, answer) =
            servers[i % 2].post("/events", "application/x-ndjson", chunk.clone());
        assert_eq!(status, 200, "{answer}");
    }
    let end = live.iter().chain(&history).map(|e| e.ts).max().unwrap_or(0) + 1;
    let first = servers.iter().map(|s| s.declare(end)).max().unwrap_or(end);
    let visible = servers
        .iter()
        .map(|s| s.declare(first))
        .max()
        .unwrap_or(first);
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("all.jsonl");
    let mut all = jsonl(&history);
    all.extend(jsonl(&live));
    std::fs::write(&events, all).expect("events written");
    for server in &servers {
        wait_ready(server);
        check_against_duckdb(server, &events, visible);
    }

    // An ad-hoc SELECT, asked of either process, is built by both and answered alike; its
    // dataflow is dropped on both.
    let select = "SELECT kind, COUNT(*) AS n, SUM(amount_cents) AS cents FROM events GROUP BY kind";
    let sql = dir.path().join("q.sql");
    std::fs::write(&sql, format!("CREATE VIEW q AS {select};")).expect("sql written");
    let duck = support::duckdb::views(&events, &sql);
    let theirs = duck["q"].as_array().cloned().unwrap_or_default();
    let dataflows = |server: &Server| -> Option<u64> {
        let text = server
            .http
            .get(server.url("/metrics"))
            .send()
            .ok()?
            .text()
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("lambdaflow_dataflows "))
            .and_then(|v| v.trim().parse().ok())
    };
    let before: Vec<Option<u64>> = servers.iter().map(dataflows).collect();
    assert!(
        before.iter().all(|n| n.is_some_and(|n| n > 0)),
        "{before:?}"
    );
    for server in servers.iter().chain(servers.iter().rev()) {
        let (status, answer) = server.post(
            &format!("/sql?as_of={visible}"),
            "application/sql",
            select.as_bytes().to_vec(),
        );
        assert_eq!(status, 200, "{answer}");
        let ours = answer["rows"].as_array().cloned().unwrap_or_default();
        support::duckdb::compare("q", false, &ours, &theirs).unwrap_or_else(|e| panic!("{e}"));
    }
    // The queries' dataflows are freed on both processes once answered (after a grace period
    // for reads in flight): the views' own dataflows are left.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (server, before) in servers.iter().zip(&before) {
        loop {
            let left = dataflows(server);
            if left == *before {
                break;
            }
            assert!(Instant::now() < deadline, "dataflows left: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
