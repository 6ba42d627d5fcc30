//! The HTTP API's conventions, end to end against the real binary: every error is JSON with a
//! code and a message, with the status that says what happened (including the framework's own
//! rejections, and a 413 read before the body is sent); backpressure answers 503 and takes
//! nothing; event times too far ahead are refused by line; metrics pass `promtool`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use lambdaflow::ecommerce::{Kind, Order};
use serde_json::Value;
use support::server::{Server, free_port};
use support::{jsonl, oracle};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn line(ts: u64, customer: u64) -> String {
    format!(
        r#"{{"ts":{ts},"kind":"purchase","customer":{customer},"product":1,"amount_cents":10}}"#
    )
}

fn assert_error(status: u16, answer: &Value, want: u16, code: &str, what: &str) {
    assert_eq!(status, want, "{what}: {answer}");
    assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {answer}"
    );
}

/// Writes a request by hand and reads the status line and the JSON body of the answer.
fn raw(server: &Server, request: &[u8], body_chunks: &[&[u8]]) -> (u16, Value) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(request).expect("headers sent");
    for chunk in body_chunks {
        // The server may answer and close before the body is all sent.
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked answer: the JSON is inside its first chunk.
    let json = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn every_error_is_json_with_a_code_and_the_right_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &["--query-timeout", "300ms", "--max-body", "100000"],
        true,
    );
    let (status, answer) = server.get("/no/such/route");
    assert_error(status, &answer, 404, "not_found", "an unknown route");
    let (status, answer) = server.get("/events");
    assert_error(status, &answer, 405, "method_not_allowed", "GET /events");
    let (status, answer) = server.get("/views/customer_spend?as_of=abc");
    assert_error(status, &answer, 400, "bad_request", "a bad query string");
    let (status, answer) = server.get("/views/nope");
    assert_error(status, &answer, 404, "unknown_view", "an unknown view");
    let response = server
        .http
        .get(server.url(&format!("/views/customer_spend?as_of={}", 1u64 << 50)))
        .send()
        .expect("answered");
    assert!(response.headers().contains_key("retry-after"));
    let status = response.status().as_u16();
    let answer: Value = response.json().expect("JSON");
    assert_error(
        status,
        &answer,
        503,
        "not_complete",
        "a wait that runs out is not 408",
    );
    let (status, answer) = server.post("/events", "text/csv", b"ts,kind\n".to_vec());
    assert_error(status, &answer, 415, "unsupported_media_type", "CSV");
    let (status, answer) = server.post("/events", "application/x-ndjson", Vec::new());
    assert_error(status, &answer, 400, "empty_body", "an empty body");
    let (status, answer) = server.post("/events", "application/json", b"{\"ts\":1}".to_vec());
    assert_error(
        status,
        &answer,
        400,
        "not_an_array",
        "JSON that is not an array",
    );
    let (status, answer) = server.post("/events", "application/x-ndjson", b"nope\nnope\n".to_vec());
    assert_eq!(status, 400, "every line rejected: {answer}");
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["rejected_total"], 2);
    let body = format!("{}\nnope\n", line(1_000, 1));
    let (status, answer) = server.post("/events", "application/x-ndjson", body.into_bytes());
    assert_eq!(status, 200, "partly taken: {answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"][0]["line"], 2);
    let (status, answer) = server.post("/watermark", "application/json", b"{\"ts\":-1}".to_vec());
    assert_error(
        status,
        &answer,
        400,
        "bad_watermark",
        "a negative watermark",
    );

    // 413, read before the body is sent: the server refuses on the length alone.
    let headers = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        100 << 20
    );
    let (status, answer) = raw(&server, headers.as_bytes(), &[]);
    assert_error(
        status,
        &answer,
        413,
        "payload_too_large",
        "a 100 MB Content-Length",
    );
    // And a chunked body that grows past the limit.
    let chunk = vec![b' '; 60_000];
    let framed = format!(
        "{:x}\r\n{}\r\n",
        chunk.len(),
        String::from_utf8_lossy(&chunk)
    );
    let headers = b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let body = [
        framed.as_bytes(),
        framed.as_bytes(),
        framed.as_bytes(),
        b"0\r\n\r\n",
    ];
    let (status, answer) = raw(&server, headers, &body);
    assert_error(
        status,
        &answer,
        413,
        "payload_too_large",
        "a chunked body past the limit",
    );
    let (status, _) = server.get("/health");
    assert_eq!(status, 200, "still serving");
}

#[test]
fn authentication_and_rate_limits_say_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &["--token", "s3cret", "--rate-limit", "2"],
        true,
    );
    let response = server
        .http
        .get(server.url("/views"))
        .send()
        .expect("answered");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response.headers()["www-authenticate"].to_str().ok(),
        Some("Bearer")
    );
    let answer: Value = response.json().expect("JSON");
    assert_eq!(answer["error"]["code"], "unauthorized");
    assert_eq!(server.get("/health").0, 200, "probes need no token");
    assert_eq!(server.get("/ready").0, 200, "probes need no token");
    let authorized = server
        .http
        .get(server.url("/views"))
        .bearer_auth("s3cret")
        .send()
        .expect("answered");
    assert_eq!(authorized.status().as_u16(), 200);
    let mut limited = None;
    for _ in 0..20 {
        let response = server
            .http
            .get(server.url("/views"))
            .bearer_auth("s3cret")
            .send()
            .expect("answered");
        if response.status().as_u16() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the limit is reached");
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().expect("JSON");
    assert_eq!(answer["error"]["code"], "rate_limited");
}

/// A full backlog answers 503 with `Retry-After` and takes nothing of that request; every
/// request answered 200 is counted exactly once.
#[test]
fn a_full_backlog_refuses_whole_requests_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        free_port(),
        &[
            "-w",
            "1",
            "--max-backlog-events",
            "1",
            "--allowed-lateness",
            "0s",
            "--idle-timeout",
            "off",
        ],
        true,
    );
    let base = server.base.clone();
    let results: Vec<(u64, u16, bool)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8u64)
            .map(|c| {
                let base = base.clone();
                scope.spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    let mut results = Vec::new();
                    for n in 0..40u64 {
                        let customer = 1 + c * 1_000 + n;
                        let body: String = (0..200)
                            .map(|i| {
                                line(10_000 + customer, customer) + if i < 199 { "\n" } else { "" }
                            })
                            .collect();
                        let response = http
                            .post(format!("{base}/events"))
                            .header("content-type", "application/x-ndjson")
                            .body(body)
                            .send();
                        match response {
                            Ok(r) => {
                                let retry = r.headers().contains_key("retry-after");
                                results.push((customer, r.status().as_u16(), retry));
                            }
                            // Answered before the body was read: not taken, like a 503.
                            Err(_) => results.push((customer, 503, true)),
                        }
                    }
                    results
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client"))
            .collect()
    });
    let refused = results.iter().filter(|(_, s, _)| *s == 503).count();
    assert!(refused > 0, "the backlog filled");
    assert!(
        results
            .iter()
            .filter(|(_, s, _)| *s == 503)
            .all(|(_, _, retry)| *retry),
        "503 says when to retry"
    );
    let acked: Vec<u64> = results
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(c, _, _)| *c)
        .collect();
    assert!(!acked.is_empty());
    let visible = server.declare(100_000);
    let (status, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
    assert_eq!(status, 200);
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), acked.len(), "exactly the acknowledged requests");
    for row in rows {
        let customer: u64 = row["key"]
            .as_str()
            .and_then(|k| k.parse().ok())
            .expect("key");
        assert!(
            acked.contains(&customer),
            "customer {customer} was refused, yet there"
        );
        assert_eq!(row["value"], 2_000, "request {customer} whole");
    }
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let refusals = text
        .lines()
        .find_map(|l| l.strip_prefix("lambdaflow_ingest_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the refusals are counted");
    assert!(refusals >= 1.0);
    assert!(text.contains("lambdaflow_live_backlog_events"));
}

/// An event time, or a declared watermark, further ahead of the server's clock than
/// `--max-future` is refused, by line, saying by how much; the rest is taken.
#[test]
fn times_too_far_ahead_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), free_port(), &["--allowed-lateness", "0s"], true);
    let now = now_ms();
    let body = format!(
        "{}\n{}\n{}\n",
        line(now, 1),
        line(now + 2 * 3_600_000 + 60_000, 2),
        line(now + 1_000, 3)
    );
    let (status, answer) = server.post("/events", "application/x-ndjson", body.into_bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["line"], 2);
    assert_eq!(
        answer["rejected"][0]["error"],
        "ts is 2h 1m ahead of the server clock; the limit is --max-future 1h"
    );
    let (status, answer) = server.post(
        "/watermark",
        "application/json",
        format!("{{\"ts\":{}}}", now + 2 * 3_600_000).into_bytes(),
    );
    assert_error(
        status,
        &answer,
        400,
        "too_far_ahead",
        "a watermark 2 h ahead",
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .expect("message")
            .contains("--max-future 1h")
    );
    drop(server);

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), free_port(), &["--max-future", "off"], true);
    let (status, answer) = server.post(
        "/events",
        "application/x-ndjson",
        line(now + 1_000 * 3_600_000, 4).into_bytes(),
    );
    assert_eq!(
        (status, answer["accepted"].clone()),
        (200, Value::from(1)),
        "off: {answer}"
    );

    // Imports check against the importing machine's clock, by line.
    let file = dir.path().join("h.jsonl");
    std::fs::write(
        &file,
        format!("{}\n{}\n", line(now, 5), line(now + 5 * 3_600_000, 6)),
    )
    .expect("write");
    let out = std::process::Command::new(support::binaries::lambdaflow())
        .args(["import", "--data-dir"])
        .arg(dir.path().join("imported"))
        .arg(&file)
        .output()
        .expect("import runs");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(":2:") && log.contains("ahead of the server clock"),
        "{log}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1 events"));
}

/// `promtool check metrics` (Debian's `prometheus` package) finds no problem in `/metrics`.
#[test]
fn metrics_pass_promtool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), free_port(), &[], true);
    let events: Vec<Order> = (0..5)
        .map(|i| Order {
            ts: 1_000 + i,
            kind: Kind::Purchase,
            customer: i,
            product: 1,
            amount_cents: 5,
            amount_missing: false,
        })
        .collect();
    server.post("/events", "application/x-ndjson", jsonl(&events));
    let visible = server.declare(2_000);
    let (_, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(5));
    let _ = oracle(&events);
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(text.contains("lambdaflow_watermark_seconds"), "base units");
    assert!(!text.contains("_ms"), "no milliseconds in a name");
    let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: the check was skipped");
        return;
    };
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("written");
    let out = promtool.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenMetrics for a scraper that asks for it.
    let open = server
        .http
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .expect("metrics");
    assert!(
        open.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/openmetrics-text"))
    );
    assert!(open.text().expect("text").ends_with("# EOF\n"));
}
