//! A `lambdaflow` server process for the end-to-end benchmarks: started on a fresh port, waited
//! for until `/ready`, its memory sampled from `/proc`, stopped on drop. The binary and the
//! ports are found as the tests find them (`tests/support`).

#![allow(dead_code)]

pub mod load;

#[path = "../../tests/support/binaries.rs"]
mod binaries;
#[path = "../../tests/support/ports.rs"]
mod ports;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// `lambdaflow run --data-dir DIR ARGS...`, logging to `log`, once `/ready`.
    pub fn start(data: &Path, args: &[&str], log: &Path) -> Result<Server, String> {
        let port = ports::free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let child = Command::new(binaries::lambdaflow())
            .arg("run")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &addr.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let mut server = Server {
            child,
            base: format!("http://{addr}"),
            addr,
        };
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("the server exited: {status}"));
            }
            let ready = http
                .get(format!("{}/ready", server.base))
                .timeout(Duration::from_secs(2))
                .send();
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop();
                return Err("the server never became ready".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        status_kib(self.child.id(), "VmRSS:").unwrap_or(0) as f64 / 1024.0
    }

    /// The server's peak resident memory so far, in MiB.
    pub fn peak_mib(&self) -> f64 {
        status_kib(self.child.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `lambdaflow` binary.
pub fn lambdaflow() -> std::path::PathBuf {
    binaries::lambdaflow()
}

/// The median of some figures.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A Prometheus metric's value from a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
