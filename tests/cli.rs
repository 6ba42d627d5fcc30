//! The `lambdaflow` command line: help, exit codes, the generator, and `query` against a server.

mod support;

use std::process::Command;

use lambdaflow::ecommerce::Order;
use lambdaflow::event::{Format, parse_line};
use support::server::{Server, free_port};

fn lambdaflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lambdaflow"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn every_command_has_help_and_usage_errors_exit_2() {
    for command in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["import", "--help"],
        vec!["gen", "--help"],
        vec!["query", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = lambdaflow(&command);
        assert!(out.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{command:?}"
        );
    }
    assert!(String::from_utf8_lossy(&lambdaflow(&["run", "--help"]).stdout).contains("Examples"));
    assert_eq!(
        lambdaflow(&["run"]).status.code(),
        Some(2),
        "missing --data-dir"
    );
    assert_eq!(
        lambdaflow(&["run", "--data-dir", "x", "--allowed-lateness", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(lambdaflow(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        lambdaflow(&["query", "--url", "http://127.0.0.1:9", "revenue_by_day"])
            .status
            .code(),
        Some(1),
        "runtime failure"
    );
}

#[test]
fn gen_is_seeded_and_its_lines_parse() {
    let a = lambdaflow(&["gen", "--events", "500", "--seed", "3"]);
    let b = lambdaflow(&["gen", "--events", "500", "--seed", "3"]);
    let c = lambdaflow(&["gen", "--events", "500", "--seed", "4"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout, "same seed, same events");
    assert_ne!(a.stdout, c.stdout);
    let lines: Vec<&[u8]> = a
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 500);
    let orders: Vec<Order> = lines
        .iter()
        .map(|l| parse_line(l, Format::JsonLines).expect("parses"))
        .collect();
    let out_of_order = orders.windows(2).filter(|w| w[1].ts < w[0].ts).count();
    assert!(out_of_order > 0, "some events are out of order");
}

#[test]
fn query_pretty_prints_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), free_port(), &[], true);
    let out = lambdaflow(&["query", "--url", &server.base, "top_products"]);
    assert!(out.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["view"], "top_products");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\n  "),
        "pretty-printed"
    );
    let missing = lambdaflow(&["query", "--url", &server.base, "product_stats", "12345"]);
    assert_eq!(missing.status.code(), Some(1));
}
