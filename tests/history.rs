//! History that is imported once, resumes where a crash stopped it, and fails loudly when it
//! cannot be replayed; and `/ready` only once every view reflects all of it.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lambdaflow::ecommerce::{Kind, Order};
use lambdaflow::history::Share;
use lambdaflow::master::{Entry, MasterDataset};
use lambdaflow::server::import::{ImportOptions, import};
use support::server::{Server, free_port};
use support::{golden, jsonl, oracle, read_orders};

fn lambdaflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lambdaflow"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The events in a master dataset, in log order.
fn stored(dir: &Path) -> Vec<Order> {
    let (master, _) =
        MasterDataset::<Entry<Order>>::open(dir, support::master_options()).expect("opens");
    let mut events = Vec::new();
    master
        .read_share(Share::WHOLE, |entry: Entry<Order>| {
            if let Entry::Event(e) = entry {
                events.push(e);
            }
        })
        .expect("reads");
    events
}

fn order(ts: u64, customer: u64) -> Order {
    Order {
        ts,
        kind: Kind::Purchase,
        customer,
        product: 3,
        amount_cents: 100 + customer,
        amount_missing: false,
    }
}

fn sorted(mut events: Vec<Order>) -> Vec<Order> {
    events.sort();
    events
}

#[test]
fn a_file_is_imported_once_and_a_grown_file_adds_only_its_new_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path");
    let file = dir.path().join("h.jsonl");
    let first: Vec<Order> = (0..40).map(|i| order(1_000 + i, i)).collect();
    std::fs::write(&file, jsonl(&first)).expect("write");
    let file_arg = file.to_str().expect("path");

    let out = lambdaflow(&["import", "--data-dir", data_arg, file_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lambdaflow(&["import", "--data-dir", data_arg, file_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 already imported, skipped"),
        "{}",
        text(&out)
    );
    assert_eq!(stored(&data), first, "imported once");

    // The file grows: it is an error, unless told to append, and then only the new lines go in.
    let more: Vec<Order> = (40..45).map(|i| order(1_000 + i, i)).collect();
    let mut grown = jsonl(&first);
    grown.extend(jsonl(&more));
    std::fs::write(&file, grown).expect("write");
    let out = lambdaflow(&["import", "--data-dir", data_arg, file_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("changed since it was imported"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("--append-changed"), "{}", text(&out));
    assert_eq!(stored(&data), first, "nothing appended");
    let out = lambdaflow(&[
        "import",
        "--data-dir",
        data_arg,
        "--append-changed",
        file_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut both = first.clone();
    both.extend(more.iter().cloned());
    assert_eq!(stored(&data), both, "only the lines it gained");
    let out = lambdaflow(&["import", "--data-dir", data_arg, file_arg]);
    assert!(
        out.status.success(),
        "the grown file is now known: {}",
        text(&out)
    );
    assert_eq!(stored(&data), both);

    // Changed in the middle: with --append-changed it is new history, appended whole.
    let mut edited = both.clone();
    edited[3].amount_cents += 1;
    std::fs::write(&file, jsonl(&edited)).expect("write");
    let out = lambdaflow(&[
        "import",
        "--data-dir",
        data_arg,
        "--append-changed",
        file_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut all = both.clone();
    all.extend(edited.iter().cloned());
    assert_eq!(stored(&data), all);
}

/// `run --history FILE` twice does not double a view.
#[test]
fn run_with_history_imports_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let history = read_orders(&golden("history.jsonl"));
    let end = history.iter().map(|e| e.ts).max().unwrap_or(0) + 1;
    let expected = oracle(&history)["customer_spend"].clone();
    let file = golden("history.jsonl");
    let args = ["--history", file.to_str().expect("path")];
    for run in 0..2 {
        let server = Server::start(&data, free_port(), &args, true);
        let visible = server.declare(end);
        let (status, answer) = server.get(&format!("/views/customer_spend?as_of={visible}"));
        assert_eq!(status, 200);
        let rows = support::rows(&answer);
        assert_eq!(rows, expected, "start {run}");
        server.kill();
    }
}

/// An import cut short anywhere (a crash loses whatever was not committed) resumes where it
/// stopped: the file's events are in the master dataset exactly once.
#[test]
fn an_interrupted_import_resumes_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("h.jsonl");
    let events: Vec<Order> = (0..60).map(|i| order(2_000 + i, i % 9)).collect();
    std::fs::write(&file, jsonl(&events)).expect("write");
    let options = ImportOptions {
        batch: 7,
        ..ImportOptions::default()
    };
    let whole = dir.path().join("whole");
    {
        let (master, _) =
            MasterDataset::<Entry<Order>>::open(&whole, support::master_options()).expect("opens");
        import(
            &master,
            std::slice::from_ref(&file),
            &lambdaflow::event::Parse,
            options,
        )
        .expect("imported");
    }
    let segment = std::fs::read_dir(&whole)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let bytes = std::fs::read(&segment).expect("read");
    let mut cuts = 0;
    // Every group of 7 events is some 300 bytes: cuts every 53 bytes land in each group and
    // between groups.
    for cut in (24..=bytes.len()).step_by(53) {
        let copy = dir.path().join(format!("cut-{cut}"));
        std::fs::create_dir(&copy).expect("dir");
        std::fs::write(copy.join(segment.file_name().expect("name")), &bytes[..cut])
            .expect("write");
        let (master, _) = MasterDataset::<Entry<Order>>::open(&copy, support::master_options())
            .expect("recovers");
        import(
            &master,
            std::slice::from_ref(&file),
            &lambdaflow::event::Parse,
            options,
        )
        .expect("resumed");
        drop(master);
        assert_eq!(stored(&copy), events, "cut at byte {cut}");
        std::fs::remove_dir_all(&copy).expect("cleaned");
        cuts += 1;
    }
    assert!(cuts > 30, "{cuts} cuts");
}

/// A master dataset that cannot be replayed (a sealed segment damaged) stops the server with
/// exit status 1, saying which file and where, instead of serving a partial view.
#[test]
fn a_replay_that_fails_stops_the_server_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path");
    let out = lambdaflow(&[
        "import",
        "--data-dir",
        data_arg,
        "--segment-bytes",
        "65536",
        golden("history.jsonl").to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // One import is one group: the first segment holds it, sealed once the import rolled over.
    let sealed = data.join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&sealed).expect("a sealed segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&sealed, bytes).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambdaflow"))
        .args(["run", "--data-dir", data_arg, "-w", "2"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut log)
        .expect("read");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("00000000000000000000.seg"),
        "names the file: {log}"
    );
    assert!(log.contains("byte"), "and where: {log}");
}

/// `/ready` turns 200 only once a fresh read reflects the whole replayed history (as far as its
/// watermark has passed it).
#[test]
fn ready_means_the_views_reflect_the_master_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let history = read_orders(&golden("history.jsonl"));
    support::server::import(&data, &[golden("history.jsonl")]);
    let server = Server::start(&data, free_port(), &["-w", "2"], true);
    let (status, answer) = server.get("/views/customer_spend");
    assert_eq!(status, 200);
    let as_of = answer["as_of"].as_u64().expect("as_of");
    let newest = history.iter().map(|e| e.ts).max().expect("events");
    assert!(
        as_of >= newest - 5_000,
        "as of {as_of}: the replay's watermark"
    );
    let before: Vec<Order> = history.iter().filter(|e| e.ts < as_of).cloned().collect();
    let rows = support::rows(&answer);
    assert_eq!(rows, oracle(&before)["customer_spend"]);
    assert_eq!(sorted(stored_after_kill(server, &data)), sorted(history));
}

fn stored_after_kill(server: Server, data: &Path) -> Vec<Order> {
    server.kill();
    stored(data)
}
