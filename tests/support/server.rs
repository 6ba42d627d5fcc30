//! Running the real `lambdaflow` binary as a server on loopback, for end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

#[allow(unused_imports)]
pub use super::ports::free_port;

/// Where a server's log goes: nowhere, or with `LF_TEST_LOG=PREFIX` to the file `PREFIX-PORT`
/// (`RUST_LOG` chooses what it logs), to see what a failing test's server said.
fn log_for(port: u16) -> Stdio {
    let Some(prefix) = std::env::var_os("LF_TEST_LOG") else {
        return Stdio::null();
    };
    let path = format!("{}-{port}", prefix.to_string_lossy());
    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// `lambdaflow import --data-dir DIR FILE...`.
pub fn import(data_dir: &Path, files: &[PathBuf]) {
    let status = Command::new(super::binaries::lambdaflow())
        .arg("import")
        .arg("--data-dir")
        .arg(data_dir)
        .args(files)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("import runs");
    assert!(status.success(), "import failed");
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub http: reqwest::blocking::Client,
}

impl Server {
    /// Starts `lambdaflow run --data-dir DIR --listen 127.0.0.1:PORT ARGS...`, and waits until
    /// it is ready (unless `wait_ready` is false: then until it answers `/health`).
    pub fn start(data_dir: &Path, port: u16, args: &[&str], wait_ready: bool) -> Server {
        let child = Command::new(super::binaries::lambdaflow())
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_for(port))
            .spawn()
            .expect("server starts");
        Server::attach_waiting(child, port, if wait_ready { "/ready" } else { "/health" })
    }

    /// Takes charge of a server process started some other way, once it is ready.
    pub fn attach(child: Child, port: u16) -> Server {
        Server::attach_waiting(child, port, "/ready")
    }

    fn attach_waiting(child: Child, port: u16, path: &str) -> Server {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        server.wait_for(path);
        server
    }

    fn wait_for(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited before answering {path}: {status}");
            }
            let answer = self
                .http
                .get(self.url(path))
                .timeout(Duration::from_secs(1))
                .send();
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} never answered {path}", self.base);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a body; returns the status and the JSON answer.
    pub fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("posted");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The names `GET /views` lists.
    pub fn view_names(&self) -> Vec<String> {
        let (status, list) = self.get("/views");
        assert_eq!(status, 200, "{list}");
        list["views"]
            .as_array()
            .expect("views")
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().expect("answered");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Every reference view (`REFERENCE_VIEWS`) as of `as_of`, in the shape of
    /// `golden/expected.json`.
    pub fn views(&self, as_of: u64) -> Value {
        let (status, list) = self.get("/views");
        assert_eq!(status, 200);
        let mut views = Map::new();
        for view in list["views"].as_array().expect("views") {
            let name = view["name"].as_str().expect("name");
            if !lambdaflow::ecommerce::REFERENCE_VIEWS.contains(&name) {
                continue;
            }
            let (status, answer) = self.get(&format!("/views/{name}?as_of={as_of}"));
            assert_eq!(status, 200, "{name}: {:?}", answer.get("error"));
            assert!(answer["as_of"].as_u64().expect("as_of") >= as_of);
            let rows = answer["rows"].as_array().expect("rows").clone();
            let value = if view["kind"] == "ranked" {
                Value::Array(rows)
            } else {
                Value::Object(
                    rows.into_iter()
                        .map(|r| {
                            (
                                r["key"].as_str().expect("key").to_string(),
                                r["value"].clone(),
                            )
                        })
                        .collect(),
                )
            };
            views.insert(name.to_string(), value);
        }
        Value::Object(views)
    }

    /// Declares a source watermark; returns the time from which answers reflect everything sent.
    pub fn declare(&self, ts: u64) -> u64 {
        let (status, answer) = self.post(
            "/watermark",
            "application/json",
            format!("{{\"ts\":{ts}}}").into_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
        let visible = answer["visible_as_of"].as_u64().expect("visible_as_of");
        assert!(visible >= ts);
        visible
    }

    /// The value of metric `name` (with its labels, as `/metrics` writes it).
    pub fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .filter(|rest| rest.starts_with(' '))
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two server processes of one computation (`-n 2` over a hostfile on loopback), each with its
/// own data directory holding its half of `history`, started with `args` too; both ready.
/// The directories live as long as the returned guard.
pub fn start_pair(
    history: &[lambdaflow::ecommerce::Order],
    args: &[&str],
) -> ([Server; 2], Vec<tempfile::TempDir>) {
    let dirs = vec![
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let (first, second) = history.split_at(history.len() / 2);
    for (dir, part) in dirs.iter().zip([first, second]) {
        let file = dir.path().join("history.jsonl");
        std::fs::write(&file, super::jsonl(part)).expect("write");
        import(&dir.path().join("data"), &[file]);
    }
    let hosts = dirs[0].path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .expect("hosts");
    let servers = restart_pair(&dirs, args);
    (servers, dirs)
}

/// Starts again the two processes of [`start_pair`] on their directories (the same hosts),
/// both ready.
pub fn restart_pair(dirs: &[tempfile::TempDir], args: &[&str]) -> [Server; 2] {
    let hosts = dirs[0].path().join("hosts");
    let hosts = hosts.to_str().expect("path").to_string();
    let start = |p: usize| {
        let data = dirs[p].path().join("data");
        let (process, hosts, port) = (p.to_string(), hosts.clone(), free_port());
        let mut all: Vec<String> = ["-n", "2", "-p", &process, "-h", &hosts]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        std::thread::spawn(move || {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            Server::start(&data, port, &all, true)
        })
    };
    let (a, b) = (start(0), start(1));
    [a.join().expect("process 0"), b.join().expect("process 1")]
}
