//! The server under load: the real release binary (`lambdaflow`), real HTTP on loopback, real
//! files and fsyncs in temporary data directories.
//!
//! ```text
//! cargo bench --bench server_load -- --replay-events 10000000 -w 2
//! cargo bench --bench server_load -- --only ingest --clients 1,4,16 --seconds 10
//! cargo bench --bench server_load -- --only freshness --lateness 0s,5s --tick 10ms
//! cargo bench --bench server_load -- --replay-events 1000000 --only replay,queries --rounds 1
//! cargo bench --bench server_load -- --binary /elsewhere/target/release/lambdaflow  # A/B
//! ```
//!
//! Four measurements, each printed as a Markdown table:
//!
//! 1. **replay**: `lambdaflow gen` writes N events, `lambdaflow import` appends them to a data
//!    directory (timed: events/s), then `lambdaflow run -w W` is started (`--replay-runs` times)
//!    and timed until `/ready` answers 200; peak resident memory (`VmHWM`) of the server.
//! 2. **queries**: on that replayed server, while a paced producer posts `--query-rate`
//!    events/s, Q client threads ask `GET /views/product_stats/{uniform random product}` as fast
//!    as they can: queries/s and latency percentiles (plus `GET /health` as the HTTP floor).
//!    Every 404 for a product that the history has a row for is counted as a wrong answer.
//! 3. **ingest**: for 1 and 2 workers, C client threads post batches of `--batch` events
//!    (JSON Lines) as fast as acknowledgements come back: acknowledged (durable) events/s, POST
//!    latency, fsyncs/s and appends per fsync from `/metrics`, and how long the workers then
//!    take to drain their mailboxes.
//! 4. **freshness**: a producer paced at `--fresh-rate` events/s with wall-clock event times;
//!    every `--probe-ms` a marker purchase with a fresh customer id is posted, and the time from
//!    its acknowledgement until `GET /views/customer_spend/{id}` answers 200 is measured, for
//!    each `--lateness`.
//!
//! Queries, ingest and freshness are measured `--rounds` times, interleaved (so that a noisy
//! machine hurts every configuration alike), and printed as the median over the rounds.
//! Every request goes through a small keep-alive HTTP/1.1 client over `TcpStream` (one
//! connection per client thread), so that the client costs little CPU on a small machine. The
//! server's and the bench's own CPU use are printed (in cores) for every row: on two cores
//! they share the machine. Figures are reported, never asserted. With the defaults the whole
//! bench takes about seven minutes; `--rounds 1 --seconds 3 --replay-events 1000000` about one.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only does a smoke run of a few
//! seconds with tiny sizes.

#[path = "../tests/support/binaries.rs"]
#[allow(dead_code)]
mod binaries;
#[path = "../tests/support/ports.rs"]
mod ports;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambdaflow::ecommerce::generate::{GenConfig, Generator, push_json_line};
use lambdaflow::ecommerce::{Kind, Order};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// How long a server may take to stop after SIGTERM before it is killed (and reported).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the ingest step waits for the workers to take the acknowledged events (∞ beyond).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The binary driven: the `lambdaflow` binary cargo built with this bench (found as the tests
/// find it), or `--binary PATH` (e.g. to compare two builds).
static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn binary() -> &'static Path {
    BIN.get_or_init(binaries::lambdaflow)
}

const USAGE: &str = "usage: server_load [--replay-events N] [-w N] [--replay-runs N] [--rounds N] \
[--ingest-workers 1,2] [--clients 1,4,16] [--batch N] [--seconds S] [--warmup S] \
[--query-clients 4,16] [--query-rate N] [--fresh-rate N] [--fresh-seconds S] [--probe-ms N] \
[--lateness 0s,5s] [--tick 10ms] [--poll-us N] [--seed N] [--tmp DIR] [--binary PATH] \
[--only replay,queries,ingest,freshness]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Replay,
    Queries,
    Ingest,
    Freshness,
}

struct Args {
    replay_events: u64,
    workers: usize,
    replay_runs: usize,
    rounds: usize,
    ingest_workers: Vec<usize>,
    clients: Vec<usize>,
    batch: usize,
    seconds: f64,
    warmup: f64,
    query_clients: Vec<usize>,
    query_rate: u64,
    fresh_rate: u64,
    fresh_seconds: f64,
    probe_ms: u64,
    lateness: Vec<Duration>,
    tick: Duration,
    poll_us: u64,
    seed: u64,
    tmp: PathBuf,
    only: Vec<Phase>,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let text = value.ok_or_else(|| format!("{flag} needs a value"))?;
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))
}

fn list<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<Vec<T>, String> {
    let text = value.ok_or_else(|| format!("{flag} needs a list"))?;
    text.split(',')
        .map(|x| number(flag, Some(x.trim().to_string())))
        .collect()
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{flag}: {text:?}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only a smoke run.
    let bench = raw.iter().any(|a| a == "--bench");
    let mut args = Args {
        replay_events: if bench { 10_000_000 } else { 5_000 },
        workers: 2,
        replay_runs: if bench { 5 } else { 1 },
        rounds: if bench { 3 } else { 1 },
        ingest_workers: if bench { vec![1, 2] } else { vec![1] },
        clients: if bench { vec![1, 4, 16] } else { vec![1, 4] },
        batch: 1000,
        seconds: if bench { 10.0 } else { 0.5 },
        warmup: if bench { 1.0 } else { 0.2 },
        query_clients: if bench { vec![4, 16] } else { vec![2] },
        query_rate: 20_000,
        fresh_rate: if bench { 50_000 } else { 5_000 },
        fresh_seconds: if bench { 10.0 } else { 1.0 },
        probe_ms: 50,
        lateness: if bench {
            vec![Duration::ZERO, Duration::from_secs(5)]
        } else {
            vec![Duration::ZERO]
        },
        tick: Duration::from_millis(10),
        poll_us: 1000,
        seed: 42,
        tmp: std::env::temp_dir(),
        only: vec![
            Phase::Replay,
            Phase::Queries,
            Phase::Ingest,
            Phase::Freshness,
        ],
    };
    let mut iter = raw.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--bench" => {}
            "--replay-events" | "--events" => args.replay_events = number(&arg, iter.next())?,
            "-w" | "--workers" => args.workers = number(&arg, iter.next())?,
            "--replay-runs" => args.replay_runs = number(&arg, iter.next())?,
            "--rounds" => args.rounds = number(&arg, iter.next())?,
            "--ingest-workers" => args.ingest_workers = list(&arg, iter.next())?,
            "--clients" => args.clients = list(&arg, iter.next())?,
            "--batch" => args.batch = number(&arg, iter.next())?,
            "--seconds" => args.seconds = number(&arg, iter.next())?,
            "--warmup" => args.warmup = number(&arg, iter.next())?,
            "--query-clients" => args.query_clients = list(&arg, iter.next())?,
            "--query-rate" => args.query_rate = number(&arg, iter.next())?,
            "--fresh-rate" => args.fresh_rate = number(&arg, iter.next())?,
            "--fresh-seconds" => args.fresh_seconds = number(&arg, iter.next())?,
            "--probe-ms" => args.probe_ms = number(&arg, iter.next())?,
            "--poll-us" => args.poll_us = number(&arg, iter.next())?,
            "--seed" => args.seed = number(&arg, iter.next())?,
            "--tick" => {
                args.tick = duration(&arg, &iter.next().ok_or("--tick needs a duration")?)?;
            }
            "--lateness" => {
                let text = iter.next().ok_or("--lateness needs a list of durations")?;
                args.lateness = text
                    .split(',')
                    .map(|d| duration("--lateness", d))
                    .collect::<Result<_, _>>()?;
            }
            "--tmp" => args.tmp = iter.next().ok_or("--tmp needs a directory")?.into(),
            "--binary" => {
                let path = PathBuf::from(iter.next().ok_or("--binary needs a path")?);
                BIN.set(path)
                    .map_err(|_| "--binary given twice".to_string())?;
            }
            "--only" => {
                let text = iter.next().ok_or("--only needs a list")?;
                args.only = text
                    .split(',')
                    .map(|p| match p.trim() {
                        "replay" => Ok(Phase::Replay),
                        "queries" => Ok(Phase::Queries),
                        "ingest" => Ok(Phase::Ingest),
                        "freshness" => Ok(Phase::Freshness),
                        other => Err(format!("unknown phase {other:?}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            // Filters and flags cargo or libtest may pass.
            other if !other.starts_with('-') => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.workers == 0
        || args.replay_runs == 0
        || args.rounds == 0
        || args.batch == 0
        || args.ingest_workers.contains(&0)
        || args.clients.contains(&0)
        || args.query_clients.contains(&0)
        || args.fresh_rate == 0
        || args.query_rate == 0
        || args.probe_ms == 0
        || args.seconds <= 0.0
        || args.fresh_seconds <= 0.0
        || args.warmup < 0.0
    {
        return Err(format!(
            "counts, rates and durations must be positive\n{USAGE}"
        ));
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client.

/// One keep-alive connection to the server; reconnects when the server closed it.
struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    out: Vec<u8>,
    line: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            conn: None,
            out: Vec::with_capacity(128 << 10),
            line: String::new(),
        }
    }

    fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        // A GET is safe to retry once on a connection the server may have closed meanwhile.
        let reused = self.conn.is_some();
        match self.exchange("GET", path, None) {
            Err(_) if reused => self.exchange("GET", path, None),
            other => other,
        }
    }

    /// Posts a body; never retried (an event batch must not be sent twice).
    fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.exchange("POST", path, Some((content_type, body)))
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> io::Result<(u16, Vec<u8>)> {
        let result = self.exchange_once(method, path, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> io::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.conn = Some(BufReader::with_capacity(64 << 10, stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::Error::other("not connected"));
        };
        self.out.clear();
        write!(self.out, "{method} {path} HTTP/1.1\r\nhost: bench\r\n")?;
        if let Some((content_type, bytes)) = body {
            write!(
                self.out,
                "content-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                bytes.len()
            )?;
            self.out.extend_from_slice(bytes);
        } else {
            self.out.extend_from_slice(b"\r\n");
        }
        conn.get_mut().write_all(&self.out)?;

        let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
        self.line.clear();
        if conn.read_line(&mut self.line)? == 0 {
            return Err(eof());
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {:?}", self.line)))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            self.line.clear();
            if conn.read_line(&mut self.line)? == 0 {
                return Err(eof());
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut response = Vec::new();
        if chunked {
            loop {
                self.line.clear();
                if conn.read_line(&mut self.line)? == 0 {
                    return Err(eof());
                }
                let size_text = self.line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| io::Error::other("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        self.line.clear();
                        if conn.read_line(&mut self.line)? == 0 || self.line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = response.len();
                response.resize(start + size, 0);
                conn.read_exact(&mut response[start..])?;
                let mut crlf = [0u8; 2];
                conn.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            response.resize(n, 0);
            conn.read_exact(&mut response)?;
        } else if method != "HEAD" && status != 204 && status != 304 {
            // No length: the body runs to the end of the connection.
            conn.read_to_end(&mut response)?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        Ok((status, response))
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// A `lambdaflow run` process; killed if dropped without [`Server::stop`].
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    started: Instant,
}

/// What stopping a server showed.
struct Stopped {
    graceful: bool,
    seconds: f64,
    warnings: Vec<String>,
    errors: Vec<String>,
}

fn free_port() -> Result<u16, String> {
    Ok(ports::free_port())
}

impl Server {
    /// Starts `lambdaflow run --data-dir DIR --listen 127.0.0.1:PORT -w W ARGS...`, logging to
    /// `LOG`, and returns once it answers `/ready` (with the time that took from the spawn).
    fn start(
        data_dir: &Path,
        workers: usize,
        args: &[String],
        log: &Path,
    ) -> Result<Server, String> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary())
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &addr.to_string(), "-w", &workers.to_string()])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary().display()))?;
        Ok(Server {
            child,
            addr,
            log: log.to_path_buf(),
            started,
        })
    }

    /// Waits until `/ready` answers 200; returns the time since the spawn.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let mut http = Http::new(self.addr);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the server exited ({status}) before it was ready; see {}",
                    self.log.display()
                ));
            }
            if let Ok((200, _)) = http.get("/ready") {
                return Ok(self.started.elapsed());
            }
            if self.started.elapsed() > timeout {
                return Err(format!(
                    "the server was not ready within {timeout:?}; see {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
    fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(&format!("/proc/{}/status", self.pid()), field)
    }

    /// CPU seconds (user + system) the server has used so far.
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    fn metrics(&self, http: &mut Http) -> Result<Metrics, String> {
        let (status, body) = http.get("/metrics").map_err(|e| format!("/metrics: {e}"))?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        Ok(Metrics::parse(&String::from_utf8_lossy(&body)))
    }

    /// SIGTERM, then waits (up to [`STOP_TIMEOUT`], then SIGKILL); returns what the log says
    /// was wrong.
    fn stop(mut self) -> Stopped {
        let asked = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let mut graceful = false;
        while asked.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                graceful = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let seconds = asked.elapsed().as_secs_f64();
        if !graceful {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let pick = |level: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains(level))
                .map(str::to_string)
                .collect()
        };
        Stopped {
            graceful,
            seconds,
            warnings: pick(" WARN "),
            errors: pick(" ERROR "),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

fn self_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

/// A scrape of `/metrics`: `name{labels}` → value.
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.trim().to_string(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// The sum of a metric over its labels.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Live events the workers have taken from their mailboxes (on time, corrected or dropped).
    fn taken_live(&self) -> f64 {
        self.get("lambdaflow_live_events_total")
            + self.get("lambdaflow_late_corrected_total")
            + self.get("lambdaflow_late_dropped_total")
    }
}

// ---------------------------------------------------------------------------------------------
// Events, statistics, pacing.

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Generated events whose times follow the wall clock: each event's time is now minus how far
/// the generator put it behind its newest event (2% are out of order by up to 10 s).
struct Feed {
    events: Generator,
    newest: u64,
}

impl Feed {
    fn new(seed: u64) -> Result<Feed, String> {
        Ok(Feed {
            events: Generator::new(GenConfig {
                seed,
                events: 1 << 40,
                ..GenConfig::default()
            })?,
            newest: 0,
        })
    }

    /// A JSON Lines body of `n` events, in `body`.
    fn body(&mut self, n: usize, body: &mut Vec<u8>) {
        body.clear();
        let now = wall_ms();
        for mut order in self.events.by_ref().take(n) {
            let behind = self.newest.saturating_sub(order.ts);
            self.newest = self.newest.max(order.ts);
            order.ts = now - behind;
            push_json_line(body, &order);
        }
    }
}

/// Whether a `POST /events` answer accepted `n` events.
fn accepted(body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["accepted"].as_u64()
}

/// The `p`-th percentile (0-100, nearest rank) of sorted microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0}", k as f64 / 1024.0))
}

/// One acknowledged request: when, how many events, how long it took.
#[derive(Clone, Copy)]
struct Ack {
    at: Instant,
    events: u32,
    latency_us: u32,
}

/// What one client thread saw.
#[derive(Default)]
struct ClientLog {
    acks: Vec<Ack>,
    errors: u64,
    first_error: Option<String>,
    statuses: HashMap<u16, u64>,
    /// Keyed reads answered 404 for a key that the history holds (wrong answers).
    wrong: u64,
    first_wrong: Option<String>,
}

impl ClientLog {
    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

/// The acknowledgements of some logs within `[t0, t1)`: events, requests, sorted latencies, and
/// events per whole second of the window.
struct Window {
    events: u64,
    requests: u64,
    latencies: Vec<u32>,
    per_second: Vec<f64>,
    seconds: f64,
}

impl Window {
    fn of<'a>(logs: impl IntoIterator<Item = &'a ClientLog>, t0: Instant, t1: Instant) -> Window {
        let seconds = (t1 - t0).as_secs_f64();
        let mut bins = vec![0u64; seconds.floor().max(0.0) as usize];
        let mut window = Window {
            events: 0,
            requests: 0,
            latencies: Vec::new(),
            per_second: Vec::new(),
            seconds,
        };
        for log in logs {
            for ack in log.acks.iter().filter(|a| a.at >= t0 && a.at < t1) {
                window.events += u64::from(ack.events);
                window.requests += 1;
                window.latencies.push(ack.latency_us);
                let bin = (ack.at - t0).as_secs() as usize;
                if let Some(b) = bins.get_mut(bin) {
                    *b += u64::from(ack.events);
                }
            }
        }
        window.latencies.sort_unstable();
        window.per_second = bins.into_iter().map(|b| b as f64).collect();
        window
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    /// The median of the per-second rates (the window's mean if it is under two seconds).
    fn median_rate(&self) -> f64 {
        if self.per_second.len() >= 2 {
            median(&self.per_second)
        } else {
            self.rate()
        }
    }
}

fn errors_text<'a>(logs: impl IntoIterator<Item = &'a ClientLog>) -> String {
    let mut errors = 0;
    let mut first = None;
    for log in logs {
        errors += log.errors;
        if first.is_none() {
            first.clone_from(&log.first_error);
        }
    }
    match first {
        Some(message) if errors > 0 => format!("{errors} ({message})"),
        _ => "0".into(),
    }
}

/// Posts batches paced at `rate` events/s from one thread until `stop`; logs every answer.
fn paced_producer(
    addr: SocketAddr,
    rate: f64,
    batch: usize,
    offset: Duration,
    seed: u64,
    stop: &AtomicBool,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut feed = match Feed::new(seed) {
        Ok(feed) => feed,
        Err(e) => {
            log.error(e);
            return log;
        }
    };
    let mut http = Http::new(addr);
    let mut body = Vec::new();
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    let mut next = Instant::now() + offset;
    while !stop.load(Ordering::Relaxed) {
        sleep_until(next);
        feed.body(batch, &mut body);
        let sent = Instant::now();
        match http.post("/events", "application/x-ndjson", &body) {
            Ok((200, answer)) => log.acks.push(Ack {
                at: Instant::now(),
                events: accepted(&answer).unwrap_or(0) as u32,
                latency_us: micros(sent.elapsed()),
            }),
            Ok((status, answer)) => {
                log.error(format!("{status}: {}", String::from_utf8_lossy(&answer)));
            }
            Err(e) => log.error(e.to_string()),
        }
        next += interval;
        // Fallen more than a second behind: the server cannot take this rate; do not burst.
        if Instant::now() > next + Duration::from_secs(1) {
            next = Instant::now();
        }
    }
    log
}

/// Starts `threads` paced producers sharing `rate`, in a scope; returns their handles.
fn spawn_producers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    addr: SocketAddr,
    rate: u64,
    batch: usize,
    threads: usize,
    seed: u64,
    stop: &'scope AtomicBool,
) -> Vec<std::thread::ScopedJoinHandle<'scope, ClientLog>> {
    let per_thread = rate as f64 / threads as f64;
    let interval = batch as f64 / per_thread;
    (0..threads)
        .map(|i| {
            let offset = Duration::from_secs_f64(interval * i as f64 / threads as f64);
            scope.spawn(move || {
                paced_producer(addr, per_thread, batch, offset, seed + i as u64, stop)
            })
        })
        .collect()
}

/// Waits until the workers have taken every acknowledged live event from their mailboxes;
/// returns how long that took, or `None` after `timeout`.
fn drain(server: &Server, http: &mut Http, timeout: Duration) -> Option<f64> {
    let began = Instant::now();
    while began.elapsed() < timeout {
        let m = server.metrics(http).ok()?;
        let acknowledged =
            m.get("lambdaflow_log_records") - m.get("lambdaflow_history_events_total");
        if m.taken_live() >= acknowledged {
            return Some(began.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

// ---------------------------------------------------------------------------------------------
// Tables measured in rounds.

/// Rows measured in rounds, printed as the median of each value over the rounds (the first
/// value with its range too).
struct Table {
    keys: Vec<&'static str>,
    columns: Vec<(&'static str, usize)>,
    rows: Vec<(Vec<String>, Vec<Vec<f64>>)>,
    notes: Vec<String>,
}

impl Table {
    /// A table with these key columns and value columns (header, decimals).
    fn new(keys: &[&'static str], columns: &[(&'static str, usize)]) -> Table {
        Table {
            keys: keys.to_vec(),
            columns: columns.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// One round's values for the row with these keys.
    fn add(&mut self, keys: Vec<String>, values: Vec<f64>) {
        println!(
            "  {}: {}",
            keys.join(" "),
            self.columns
                .iter()
                .zip(&values)
                .map(|((name, decimals), v)| format!("{name} {}", number_text(*v, *decimals)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let row = match self.rows.iter().position(|(k, _)| *k == keys) {
            Some(i) => i,
            None => {
                self.rows.push((keys, vec![Vec::new(); self.columns.len()]));
                self.rows.len() - 1
            }
        };
        for (samples, v) in self.rows[row].1.iter_mut().zip(values) {
            samples.push(v);
        }
    }

    fn note(&mut self, note: String) {
        println!("  {note}");
        self.notes.push(note);
    }

    fn print(&self) {
        let rounds = self.rows.iter().map(|(_, v)| v[0].len()).max().unwrap_or(0);
        println!();
        if rounds > 1 {
            println!("median of {rounds} rounds (first value: median [min – max])\n");
        }
        let headers: Vec<&str> = self
            .keys
            .iter()
            .chain(self.columns.iter().map(|(h, _)| h))
            .copied()
            .collect();
        println!("| {} |", headers.join(" | "));
        println!(
            "|{}",
            headers
                .iter()
                .enumerate()
                .map(|(i, _)| if i < self.keys.len() {
                    " --- |"
                } else {
                    " ---: |"
                })
                .collect::<String>()
        );
        for (keys, samples) in &self.rows {
            let mut cells = keys.clone();
            for (i, (values, (_, decimals))) in samples.iter().zip(&self.columns).enumerate() {
                let mid = number_text(median(values), *decimals);
                if i == 0 && values.len() > 1 {
                    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    cells.push(format!(
                        "{mid} [{} – {}]",
                        number_text(lo, *decimals),
                        number_text(hi, *decimals)
                    ));
                } else {
                    cells.push(mid);
                }
            }
            println!("| {} |", cells.join(" | "));
        }
        if !self.notes.is_empty() {
            println!();
            for note in &self.notes {
                println!("* {note}");
            }
        }
    }
}

fn number_text(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.is_infinite() {
        "∞".into()
    } else {
        format!("{v:.decimals$}")
    }
}

// ---------------------------------------------------------------------------------------------
// The phases.

fn run_command(args: &[&std::ffi::OsStr]) -> Result<Duration, String> {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
    if !output.status.success() {
        return Err(format!(
            "lambdaflow {:?} failed: {}",
            args,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(started.elapsed())
}

/// Generates and imports the history; returns the data directory.
fn prepare_history(args: &Args, dir: &Path) -> Result<PathBuf, String> {
    let history = dir.join("history.jsonl");
    let data = dir.join("replay-data");
    let n = args.replay_events as f64;
    let gen_time = run_command(&[
        "gen".as_ref(),
        "--events".as_ref(),
        args.replay_events.to_string().as_ref(),
        "--seed".as_ref(),
        args.seed.to_string().as_ref(),
        "--out".as_ref(),
        history.as_os_str(),
    ])?;
    let bytes = std::fs::metadata(&history).map_or(0, |m| m.len());
    let import_time = run_command(&[
        "import".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        history.as_os_str(),
    ])?;
    let log_bytes: u64 = std::fs::read_dir(&data)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = std::fs::remove_file(&history);
    println!(
        "\n## replay: {} events (seed {})\n",
        args.replay_events, args.seed
    );
    let mib_of = |b: u64| b as f64 / 1048576.0;
    println!("| step | seconds | events/s | MiB/s of JSON |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| `lambdaflow gen` ({:.0} MiB of JSON Lines) | {:.2} | {:.0} | {:.0} |",
        mib_of(bytes),
        gen_time.as_secs_f64(),
        n / gen_time.as_secs_f64(),
        mib_of(bytes) / gen_time.as_secs_f64()
    );
    println!(
        "| `lambdaflow import` (to a {:.0} MiB master dataset, fsync'd) | {:.2} | {:.0} | {:.0} |",
        mib_of(log_bytes),
        import_time.as_secs_f64(),
        n / import_time.as_secs_f64(),
        mib_of(bytes) / import_time.as_secs_f64()
    );
    Ok(data)
}

/// Starts the server on the replayed data `--replay-runs` times; returns the last one, running.
fn replay(args: &Args, dir: &Path, data: &Path) -> Result<Server, String> {
    let n = args.replay_events as f64;
    println!(
        "\n`lambdaflow run -w {}` on it (page cache warm), from the spawn until `/ready` \
         answers 200 (includes the process start, opening the master dataset and building the \
         dataflow):",
        args.workers
    );
    let mut table = Table::new(
        &["workers"],
        &[
            ("to ready, s", 2),
            ("events/s", 0),
            ("events/s/worker", 0),
            ("server CPU s", 1),
            ("VmHWM MiB", 0),
        ],
    );
    let mut last = None;
    for run in 0..args.replay_runs {
        let log = dir.join(format!("replay-{run}.log"));
        let tick = humantime::format_duration(args.tick).to_string();
        let mut server = Server::start(data, args.workers, &["--tick".into(), tick], &log)?;
        let ready = server.wait_ready(Duration::from_secs(1800))?.as_secs_f64();
        let hwm = server.status_kib("VmHWM:");
        let cpu = server.cpu_seconds().unwrap_or(f64::NAN);
        let mut http = Http::new(server.addr);
        let m = server.metrics(&mut http)?;
        let replayed = m.get("lambdaflow_history_events_total");
        if replayed as u64 != args.replay_events {
            return Err(format!(
                "the server replayed {replayed} events, not {}",
                args.replay_events
            ));
        }
        table.add(
            vec![args.workers.to_string()],
            vec![
                ready,
                n / ready,
                n / ready / args.workers as f64,
                cpu,
                hwm.map_or(f64::NAN, |k| k as f64 / 1024.0),
            ],
        );
        if run + 1 < args.replay_runs {
            let stopped = server.stop();
            stop_notes(&mut table, "replay", &stopped);
        } else {
            last = Some(server);
        }
    }
    table.print();
    last.ok_or_else(|| "no replay run".into())
}

/// Notes what stopping a server showed, if anything was wrong.
fn stop_notes(table: &mut Table, what: &str, stopped: &Stopped) {
    if !stopped.graceful {
        table.note(format!(
            "the {what} server did not stop gracefully on SIGTERM within {:.0} s (killed)",
            stopped.seconds
        ));
    }
    if !stopped.errors.is_empty() || !stopped.warnings.is_empty() {
        table.note(format!(
            "the {what} server logged {} errors and {} warnings, first: {}",
            stopped.errors.len(),
            stopped.warnings.len(),
            stopped
                .errors
                .first()
                .or(stopped.warnings.first())
                .map_or("", String::as_str)
        ));
    }
}

/// Point queries against the replayed server while it ingests at `--query-rate`; returns how
/// many answers were wrong.
fn queries(args: &Args, server: Server) -> Result<u64, String> {
    let addr = server.addr;
    let products = GenConfig::default().products;
    // The products the replayed history has a `product_stats` row for (a purchase or a
    // refund): the same generator as `lambdaflow gen`, so a 404 for one of them is wrong.
    let started = Instant::now();
    let mut known = vec![false; products as usize];
    let history = Generator::new(GenConfig {
        seed: args.seed,
        events: args.replay_events,
        ..GenConfig::default()
    })?;
    for order in history.filter(|o| o.kind != Kind::View) {
        known[order.product as usize] = true;
    }
    let known_share = known.iter().filter(|k| **k).count() as f64 / products as f64;
    let known = &known;
    println!(
        "\n## point queries: `GET /views/product_stats/{{uniform random of {products} products}}` \
         on the replayed server ({} workers, {} events), while a producer posts {} events/s\n",
        args.workers, args.replay_events, args.query_rate
    );
    println!(
        "{:.1}% of the products have a row in the history (recomputed in {:.1} s): a 404 for \
         one of them is a wrong answer (column \"wrong\", must be 0). `/health` is the floor of \
         the HTTP stack.\n",
        100.0 * known_share,
        started.elapsed().as_secs_f64()
    );
    let mut table = Table::new(
        &["path", "client threads"],
        &[
            ("queries/s", 0),
            ("p50 ms", 2),
            ("p99 ms", 2),
            ("200", 0),
            ("404", 0),
            ("wrong", 0),
            ("errors", 0),
            ("ingest ev/s", 0),
            ("server CPU", 2),
            ("bench CPU", 2),
        ],
    );
    let stop = AtomicBool::new(false);
    let mut wrong_total = 0;
    let producer_logs = std::thread::scope(|scope| -> Result<Vec<ClientLog>, String> {
        let producers = spawn_producers(
            scope,
            addr,
            args.query_rate,
            args.batch,
            2,
            args.seed + 100,
            &stop,
        );
        let max_clients = args.query_clients.iter().copied().max().unwrap_or(1);
        let mut plan: Vec<(&'static str, usize)> = args
            .query_clients
            .iter()
            .map(|&q| ("/views/product_stats/{p}", q))
            .collect();
        plan.push(("/health", max_clients));
        let mut cell = 0u64;
        let mut measured = Vec::new();
        for _round in 0..args.rounds {
            for &(path, clients) in &plan {
                cell += 1;
                let finish = AtomicBool::new(false);
                let t0 = Instant::now() + Duration::from_secs_f64(args.warmup);
                let t1 = t0 + Duration::from_secs_f64(args.seconds);
                let (logs, server_cpu, bench_cpu) = std::thread::scope(|inner| {
                    let handles: Vec<_> = (0..clients)
                        .map(|c| {
                            let finish = &finish;
                            let seed = args.seed + 1000 * cell + c as u64;
                            inner.spawn(move || query_client(addr, path, known, seed, finish))
                        })
                        .collect();
                    sleep_until(t0);
                    let (s0, b0) = (server.cpu_seconds(), self_cpu_seconds());
                    sleep_until(t1);
                    let (s1, b1) = (server.cpu_seconds(), self_cpu_seconds());
                    finish.store(true, Ordering::Relaxed);
                    let logs: Vec<ClientLog> = handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_default())
                        .collect();
                    let span = (t1 - t0).as_secs_f64();
                    let server_cpu = match (s0, s1) {
                        (Some(a), Some(b)) => (b - a) / span,
                        _ => f64::NAN,
                    };
                    (logs, server_cpu, (b1 - b0) / span)
                });
                let w = Window::of(&logs, t0, t1);
                let count = |s: u16| {
                    logs.iter()
                        .map(|l| l.statuses.get(&s).copied().unwrap_or(0))
                        .sum::<u64>() as f64
                };
                let wrong: u64 = logs.iter().map(|l| l.wrong).sum();
                wrong_total += wrong;
                let errors: u64 = logs.iter().map(|l| l.errors).sum();
                table.add(
                    vec![format!("`{path}`"), clients.to_string()],
                    vec![
                        w.requests as f64 / w.seconds,
                        percentile_ms(&w.latencies, 50.0),
                        percentile_ms(&w.latencies, 99.0),
                        count(200),
                        count(404),
                        wrong as f64,
                        errors as f64,
                        f64::NAN, // the producer's rate, filled in once it has stopped
                        server_cpu,
                        bench_cpu,
                    ],
                );
                measured.push((path, clients, t0, t1));
                if let Some(example) = logs.iter().find_map(|l| l.first_wrong.clone()) {
                    table.note(format!("WRONG ANSWER: {example}"));
                }
                if errors > 0 {
                    table.note(format!("errors: {}", errors_text(&logs)));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let producer_logs: Vec<ClientLog> = producers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        // The producer's rate within each window, now that its log is complete.
        let ingest_column = 7;
        for (path, clients, t0, t1) in &measured {
            let rate = Window::of(&producer_logs, *t0, *t1).rate();
            let keys = vec![format!("`{path}`"), clients.to_string()];
            if let Some((_, samples)) = table.rows.iter_mut().find(|(k, _)| *k == keys)
                && let Some(slot) = samples[ingest_column].iter_mut().find(|v| v.is_nan())
            {
                *slot = rate;
            }
        }
        Ok(producer_logs)
    })?;
    if producer_logs.iter().any(|l| l.errors > 0) {
        table.note(format!("producer errors: {}", errors_text(&producer_logs)));
    }
    table.note(format!(
        "server memory after the replay and the queries: VmHWM {} MiB, VmRSS {} MiB",
        mib(server.status_kib("VmHWM:")),
        mib(server.status_kib("VmRSS:"))
    ));
    let stopped = server.stop();
    stop_notes(&mut table, "replay/queries", &stopped);
    table.print();
    Ok(wrong_total)
}

fn query_client(
    addr: SocketAddr,
    path: &str,
    known: &[bool],
    seed: u64,
    finish: &AtomicBool,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut http = Http::new(addr);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut target = String::new();
    while !finish.load(Ordering::Relaxed) {
        target.clear();
        let mut product = None;
        match path.strip_suffix("{p}") {
            Some(prefix) => {
                let p = rng.random_range(0..known.len());
                target.push_str(prefix);
                target.push_str(&p.to_string());
                product = Some(p);
            }
            None => target.push_str(path),
        }
        let sent = Instant::now();
        match http.get(&target) {
            Ok((status, body)) => {
                *log.statuses.entry(status).or_default() += 1;
                if status == 404 && product.is_some_and(|p| known[p]) {
                    log.wrong += 1;
                    if log.first_wrong.is_none() {
                        log.first_wrong = Some(format!(
                            "GET {target} answered 404 {} though the history has a row for it",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                }
                if status == 200 || status == 404 {
                    log.acks.push(Ack {
                        at: Instant::now(),
                        events: 0,
                        latency_us: micros(sent.elapsed()),
                    });
                } else {
                    log.error(format!("{target}: {status}"));
                }
            }
            Err(e) => {
                log.error(e.to_string());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log
}

/// Acknowledged ingest with C clients posting as fast as they are answered.
fn ingest(args: &Args, dir: &Path) -> Result<(), String> {
    println!(
        "\n## ingest: C clients post batches of {} events (JSON Lines) back to back; \
         acknowledged = durable (fsync'd); a fresh data directory per round and worker count; \
         `--tick {}`\n",
        args.batch,
        humantime::format_duration(args.tick)
    );
    let mut table = Table::new(
        &["workers", "clients"],
        &[
            ("events/s", 0),
            ("median of 1 s", 0),
            ("POSTs/s", 0),
            ("p50 ms", 2),
            ("p99 ms", 2),
            ("fsyncs/s", 0),
            ("appends/fsync", 2),
            ("drain s", 2),
            ("server CPU", 2),
            ("bench CPU", 2),
            ("errors", 0),
            ("arranged M", 2),
            ("VmHWM MiB", 0),
        ],
    );
    for round in 0..args.rounds {
        for &workers in &args.ingest_workers {
            let name = format!("ingest-r{round}-w{workers}");
            let tick = humantime::format_duration(args.tick).to_string();
            let mut server = Server::start(
                &dir.join(&name),
                workers,
                &["--tick".into(), tick],
                &dir.join(format!("{name}.log")),
            )?;
            server.wait_ready(Duration::from_secs(60))?;
            let mut http = Http::new(server.addr);
            for &clients in &args.clients {
                let stop = AtomicBool::new(false);
                let t0 = Instant::now() + Duration::from_secs_f64(args.warmup);
                let t1 = t0 + Duration::from_secs_f64(args.seconds);
                let addr = server.addr;
                let batch = args.batch;
                let (logs, m0, m1, cpu0, cpu1) = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..clients)
                        .map(|c| {
                            let stop = &stop;
                            let seed = args.seed + 10_000 + c as u64;
                            scope.spawn(move || ingest_client(addr, batch, seed, stop))
                        })
                        .collect();
                    sleep_until(t0);
                    let m0 = server.metrics(&mut http);
                    let cpu0 = (server.cpu_seconds(), self_cpu_seconds());
                    sleep_until(t1);
                    let m1 = server.metrics(&mut http);
                    let cpu1 = (server.cpu_seconds(), self_cpu_seconds());
                    stop.store(true, Ordering::Relaxed);
                    let logs: Vec<ClientLog> = handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_default())
                        .collect();
                    (logs, m0, m1, cpu0, cpu1)
                });
                let (m0, m1) = (m0?, m1?);
                let drained = drain(&server, &mut http, DRAIN_TIMEOUT);
                let w = Window::of(&logs, t0, t1);
                let span = w.seconds;
                let delta = |name: &str| m1.get(name) - m0.get(name);
                let fsyncs = delta("lambdaflow_log_fsyncs_total");
                let appends = delta("lambdaflow_log_appends_total");
                let server_cpu = match (cpu0.0, cpu1.0) {
                    (Some(a), Some(b)) => (b - a) / span,
                    _ => f64::NAN,
                };
                let errors: u64 = logs.iter().map(|l| l.errors).sum();
                table.add(
                    vec![workers.to_string(), clients.to_string()],
                    vec![
                        w.rate(),
                        w.median_rate(),
                        w.requests as f64 / span,
                        percentile_ms(&w.latencies, 50.0),
                        percentile_ms(&w.latencies, 99.0),
                        fsyncs / span,
                        if fsyncs > 0.0 {
                            appends / fsyncs
                        } else {
                            f64::NAN
                        },
                        drained.unwrap_or(f64::INFINITY),
                        server_cpu,
                        (cpu1.1 - cpu0.1) / span,
                        errors as f64,
                        server
                            .metrics(&mut http)
                            .map_or(f64::NAN, |m| m.sum("lambdaflow_arrangement_records") / 1e6),
                        server
                            .status_kib("VmHWM:")
                            .map_or(f64::NAN, |k| k as f64 / 1024.0),
                    ],
                );
                if errors > 0 {
                    table.note(format!(
                        "-w {workers}, {clients} clients: errors {}",
                        errors_text(&logs)
                    ));
                }
            }
            let stopped = server.stop();
            stop_notes(&mut table, &format!("ingest -w {workers}"), &stopped);
        }
    }
    table.print();
    println!(
        "\n(\"drain s\": after the clients stop, how long until the workers have taken every \
         acknowledged event from their mailboxes, ∞ if not within {} s; \"arranged M\": \
         millions of updates held by the views' arrangements afterwards; VmHWM: the server's \
         peak so far)",
        DRAIN_TIMEOUT.as_secs()
    );
    Ok(())
}

fn ingest_client(addr: SocketAddr, batch: usize, seed: u64, stop: &AtomicBool) -> ClientLog {
    let mut log = ClientLog::default();
    let mut feed = match Feed::new(seed) {
        Ok(feed) => feed,
        Err(e) => {
            log.error(e);
            return log;
        }
    };
    let mut http = Http::new(addr);
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        feed.body(batch, &mut body);
        let sent = Instant::now();
        match http.post("/events", "application/x-ndjson", &body) {
            Ok((200, answer)) => log.acks.push(Ack {
                at: Instant::now(),
                events: accepted(&answer).unwrap_or(0) as u32,
                latency_us: micros(sent.elapsed()),
            }),
            Ok((status, answer)) => {
                log.error(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                log.error(e.to_string());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log
}

/// What one freshness run saw.
struct Freshness {
    /// Microseconds from each marker's acknowledgement to its first 200, sorted.
    seen: Vec<u32>,
    not_seen: u64,
    /// Microseconds each marker's POST took, sorted.
    posts: Vec<u32>,
    producer_rate: f64,
    server_cpu: f64,
    producer_errors: String,
}

/// From a marker's acknowledgement to the first `200` for its customer.
fn freshness(args: &Args, dir: &Path) -> Result<(), String> {
    let tick = humantime::format_duration(args.tick).to_string();
    println!(
        "\n## freshness: producer paced at {} events/s (batches of {}, event time = wall clock), \
         a marker purchase every {} ms; time from the marker's acknowledgement until \
         `GET /views/customer_spend/{{id}}` answers 200 (polled every {} µs); {} workers, \
         `--tick {tick}`\n",
        args.fresh_rate, args.batch, args.probe_ms, args.poll_us, args.workers
    );
    let mut table = Table::new(
        &["allowed lateness"],
        &[
            ("p50 ms", 1),
            ("p90 ms", 1),
            ("p99 ms", 1),
            ("max ms", 1),
            ("markers", 0),
            ("not seen", 0),
            ("marker POST p50 ms", 2),
            ("producer ev/s", 0),
            ("server CPU", 2),
        ],
    );
    for round in 0..args.rounds {
        for (i, &lateness) in args.lateness.iter().enumerate() {
            let late_text = if lateness.is_zero() {
                "0s".to_string()
            } else {
                humantime::format_duration(lateness).to_string()
            };
            let name = format!("fresh-r{round}-{i}");
            let mut server = Server::start(
                &dir.join(&name),
                args.workers,
                &[
                    "--tick".into(),
                    tick.clone(),
                    "--allowed-lateness".into(),
                    late_text.clone(),
                ],
                &dir.join(format!("{name}.log")),
            )?;
            server.wait_ready(Duration::from_secs(60))?;
            let base_id = 1_000_000_000_000 + 1_000_000 * (round * args.lateness.len() + i) as u64;
            let run = freshness_run(args, &server, lateness, base_id)?;
            table.add(
                vec![format!("`{late_text}`")],
                vec![
                    percentile_ms(&run.seen, 50.0),
                    percentile_ms(&run.seen, 90.0),
                    percentile_ms(&run.seen, 99.0),
                    percentile_ms(&run.seen, 100.0),
                    run.seen.len() as f64,
                    run.not_seen as f64,
                    percentile_ms(&run.posts, 50.0),
                    run.producer_rate,
                    run.server_cpu,
                ],
            );
            if run.producer_errors != "0" {
                table.note(format!("producer errors: {}", run.producer_errors));
            }
            let stopped = server.stop();
            stop_notes(&mut table, &format!("freshness {late_text}"), &stopped);
        }
    }
    table.print();
    Ok(())
}

fn freshness_run(
    args: &Args,
    server: &Server,
    lateness: Duration,
    base_id: u64,
) -> Result<Freshness, String> {
    let addr = server.addr;
    let stop_producers = AtomicBool::new(false);
    let stop_probes = AtomicBool::new(false);
    let give_up = lateness + Duration::from_secs(10);
    let poll = Duration::from_micros(args.poll_us);
    let cpu0 = server.cpu_seconds();
    let started = Instant::now();
    let (mut seen, not_seen, mut posts, producer_logs) = std::thread::scope(|scope| {
        let producers = spawn_producers(
            scope,
            addr,
            args.fresh_rate,
            args.batch,
            2,
            base_id,
            &stop_producers,
        );
        let (tx, rx) = mpsc::channel::<(u64, Instant)>();
        let stop = &stop_probes;
        let prober = scope.spawn(move || {
            let mut http = Http::new(addr);
            let mut posts = Vec::new();
            let mut body = Vec::new();
            std::thread::sleep(Duration::from_secs_f64(args.warmup));
            let interval = Duration::from_millis(args.probe_ms);
            let mut next = Instant::now();
            let mut id = base_id;
            while !stop.load(Ordering::Relaxed) {
                sleep_until(next);
                next += interval;
                id += 1;
                body.clear();
                let marker = Order {
                    ts: wall_ms(),
                    kind: Kind::Purchase,
                    customer: id,
                    product: 0,
                    amount_cents: 1,
                    amount_missing: false,
                };
                push_json_line(&mut body, &marker);
                let sent = Instant::now();
                if let Ok((200, _)) = http.post("/events", "application/x-ndjson", &body) {
                    let acked = Instant::now();
                    posts.push(micros(acked - sent));
                    let _ = tx.send((id, acked));
                }
            }
            posts
        });
        // Markers become visible in the order of their times, so the oldest is polled first.
        let poller = scope.spawn(move || {
            let mut http = Http::new(addr);
            let mut seen = Vec::new();
            let mut not_seen = 0u64;
            let mut path = String::new();
            for (id, acked) in rx {
                path.clear();
                path.push_str("/views/customer_spend/");
                path.push_str(&id.to_string());
                loop {
                    if let Ok((200, _)) = http.get(&path) {
                        seen.push(micros(acked.elapsed()));
                        break;
                    }
                    if acked.elapsed() > give_up {
                        not_seen += 1;
                        break;
                    }
                    std::thread::sleep(poll);
                }
            }
            (seen, not_seen)
        });
        std::thread::sleep(Duration::from_secs_f64(args.warmup + args.fresh_seconds));
        stop_probes.store(true, Ordering::Relaxed);
        let posts = prober.join().unwrap_or_default();
        // The producers keep the watermark moving until the last marker is seen.
        let (seen, not_seen) = poller.join().unwrap_or_default();
        stop_producers.store(true, Ordering::Relaxed);
        let logs: Vec<ClientLog> = producers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (seen, not_seen, posts, logs)
    });
    let span = started.elapsed();
    let server_cpu = match (cpu0, server.cpu_seconds()) {
        (Some(a), Some(b)) => (b - a) / span.as_secs_f64(),
        _ => f64::NAN,
    };
    seen.sort_unstable();
    posts.sort_unstable();
    let t0 = started + Duration::from_secs_f64(args.warmup);
    Ok(Freshness {
        seen,
        not_seen,
        posts,
        producer_rate: Window::of(&producer_logs, t0, started + span).rate(),
        server_cpu,
        producer_errors: errors_text(&producer_logs),
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("lambdaflow-server-load-")
        .tempdir_in(&args.tmp)
        .map_err(|e| format!("temporary directory in {}: {e}", args.tmp.display()))?;
    println!(
        "# lambdaflow server load\n\nbinary {}; data in {}; {} round(s); load average at start {}",
        binary().display(),
        dir.path().display(),
        args.rounds,
        load_average()
    );
    let wants = |p: Phase| args.only.contains(&p);
    let mut wrong = 0;
    if wants(Phase::Replay) || wants(Phase::Queries) {
        let data = prepare_history(&args, dir.path())?;
        let server = replay(&args, dir.path(), &data)?;
        if wants(Phase::Queries) {
            wrong = queries(&args, server)?;
        } else {
            let stopped = server.stop();
            if !stopped.graceful {
                println!("the replay server did not stop gracefully (killed)");
            }
        }
        let _ = std::fs::remove_dir_all(&data);
    }
    if wants(Phase::Ingest) {
        ingest(&args, dir.path())?;
    }
    if wants(Phase::Freshness) {
        freshness(&args, dir.path())?;
    }
    println!(
        "\ndone in {:.0} s; load average at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    if wrong > 0 {
        // Timings are never asserted, but answers must be right.
        return Err(format!(
            "{wrong} point queries answered 404 for a key that has a row (see WRONG ANSWER)"
        ));
    }
    Ok(())
}
