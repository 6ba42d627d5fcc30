//! `--sink-dir`: every keyed view's changelog written as JSON Lines, `DIR/{view}.jsonl`, one
//! change per line (`{"key", "value", "time", "diff"}`), in time order, each change once
//! across restarts and `kill -9`.
//!
//! A sink resumes where its file ends. A restarted server's hub holds the changes it had told
//! before (its journal) and tells the later ones again at the same times (see
//! [`hub`](crate::changelog)), so the sink reads where its file ends (the time of the last
//! change, and how many changes of that time the file holds), cuts a line a kill left half
//! written, and writes only what follows: the rest of that time's batch, then the later ones.
//! Where the hub cannot tell what followed (its journal is gone or ends before the replay of
//! history does, so the replay told history at other times) the file is moved aside, to
//! `{view}.jsonl.{time}.stale`, and a new one holds the changelog from the start of this run:
//! a reader never folds a change twice or misses one without being told by the file's name.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{error, info, warn};

use crate::changelog::{ChangeBatch, Changelog};
use crate::engine::Client;
use crate::event::Time;
use crate::view::ViewKind;

/// How much of a sink file's end is read first to find where it ends (doubled until enough).
const TAIL_READ: u64 = 64 * 1024;

/// Where a sink file ends: the time of its last change and how many changes of that time end
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tail {
    time: Time,
    count: usize,
}

/// Starts one writer thread per keyed view.
pub fn start(dir: &Path, client: &Client, changelog: Arc<Changelog>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for view in client
        .catalog()
        .iter()
        .filter(|v| v.kind == ViewKind::Keyed)
    {
        let path = dir.join(format!("{}.jsonl", view.name));
        let tail = tail(&path)?;
        // Every batch from the file's end on, and the later ones as they come.
        let from = tail.map_or(0, |t| t.time);
        let (kept, receiver) = resumed(&changelog, &view.name, from, &path);
        let sink = Sink {
            view: view.name.clone(),
            path,
            changelog: changelog.clone(),
        };
        std::thread::Builder::new()
            .name(format!("sink {}", view.name))
            .spawn(move || sink.run(tail, kept, receiver))
            .map_err(|e| format!("cannot start the sink of {}: {e}", view.name))?;
    }
    Ok(())
}

/// The view's batches from `from` on and a receiver for the later ones (if the hub let go of
/// some, it says so and starts from the oldest it has).
fn resumed(
    changelog: &Changelog,
    view: &str,
    from: Time,
    path: &Path,
) -> (Vec<Arc<ChangeBatch>>, Receiver<Arc<ChangeBatch>>) {
    let mut from = from;
    loop {
        match changelog.resume_from(view, from) {
            Ok(resumed) => return resumed,
            Err(forgotten) => {
                error!(file = %path.display(), forgotten, "the changelog no longer holds the changes up to this time; the sink misses them");
                from = forgotten.saturating_add(1);
            }
        }
    }
}

/// One view's sink.
struct Sink {
    view: String,
    path: PathBuf,
    changelog: Arc<Changelog>,
}

impl Sink {
    fn run(
        self,
        tail: Option<Tail>,
        kept: Vec<Arc<ChangeBatch>>,
        mut receiver: Receiver<Arc<ChangeBatch>>,
    ) {
        let mut pending: VecDeque<Arc<ChangeBatch>> = kept.into();
        let mut skip = tail;
        if let Some(end) = tail {
            // Whether the batches after the file's end are the ones told before is known once
            // the replay of history is over; until then they wait.
            while !self.changelog.replayed() {
                match receiver.try_recv() {
                    Ok(batch) => pending.push_back(batch),
                    Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(20)),
                    Err(TryRecvError::Lagged(n)) => self.lagged(n),
                    Err(TryRecvError::Closed) => return,
                }
            }
            let exact_from = self.changelog.exact_from();
            if end.time < exact_from && !self.changelog.resumes_before(&self.view) {
                let stale = self
                    .path
                    .with_extension(format!("jsonl.{}.stale", end.time));
                warn!(
                    file = %self.path.display(),
                    moved_to = %stale.display(),
                    exact_from,
                    "the changelog journal does not hold what followed the sink file's end: it is moved aside and a new one starts"
                );
                if let Err(e) = std::fs::rename(&self.path, &stale) {
                    error!(file = %self.path.display(), "cannot move the sink file aside: {e}");
                    return;
                }
                let (kept, fresh) = resumed(&self.changelog, &self.view, 0, &self.path);
                pending = kept.into();
                receiver = fresh;
                skip = None;
            } else {
                info!(file = %self.path.display(), after = end.time, "the sink resumes");
            }
        }
        let file = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(e) => {
                error!(file = %self.path.display(), "cannot open the sink file: {e}");
                return;
            }
        };
        let mut out = BufWriter::new(file);
        loop {
            let batch = match pending.pop_front() {
                Some(batch) => batch,
                None => match receiver.blocking_recv() {
                    Ok(batch) => batch,
                    Err(RecvError::Lagged(n)) => {
                        self.lagged(n);
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            // What the file already holds: the batches before its end, and the first changes
            // of the batch at it.
            let written = match skip {
                Some(end) if batch.time < end.time => continue,
                Some(end) if batch.time == end.time => end.count,
                _ => 0,
            };
            skip = None;
            let wrote = batch
                .changes
                .iter()
                .skip(written)
                .try_for_each(|c| {
                    serde_json::to_writer(&mut out, c)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"))
                })
                .and_then(|()| out.flush());
            if let Err(e) = wrote {
                error!(file = %self.path.display(), "cannot write the changelog: {e}");
            }
        }
    }

    fn lagged(&self, missed: u64) {
        error!(file = %self.path.display(), missed, "the changelog sink fell behind; changes were lost");
    }
}

/// Where the sink file at `path` ends (`None`: it holds no change), after cutting a last line
/// that a kill left half written.
fn tail(path: &Path) -> Result<Option<Tail>, String> {
    let failed = |e: std::io::Error| format!("cannot resume the sink {}: {e}", path.display());
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let len = file.metadata().map_err(failed)?.len();
    let mut size = TAIL_READ;
    loop {
        let start = len.saturating_sub(size);
        let bytes = read_at(&mut file, start, len).map_err(failed)?;
        // The whole lines of what was read: after the first newline (unless it starts the
        // file), up to the last.
        let Some(last_newline) = bytes.iter().rposition(|b| *b == b'\n') else {
            if start == 0 {
                // Not one whole line: all of it is torn.
                file.set_len(0).map_err(failed)?;
                return Ok(None);
            }
            size = size.saturating_mul(2);
            continue;
        };
        let end = start + last_newline as u64 + 1;
        let first = if start == 0 {
            0
        } else {
            match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None => bytes.len(),
            }
        };
        let whole = &bytes[first.min(last_newline + 1)..=last_newline];
        match last_time(whole, start == 0) {
            Ok(Some(found)) => {
                cut(&mut file, len, end).map_err(failed)?;
                return Ok(Some(found));
            }
            Ok(None) if start == 0 => {
                cut(&mut file, len, end).map_err(failed)?;
                return Ok(None);
            }
            Ok(None) => size = size.saturating_mul(2),
            Err(reason) => {
                return Err(format!(
                    "cannot resume the sink {}: {reason} (a line near its end is not a change)",
                    path.display()
                ));
            }
        }
    }
}

/// The time of the last change of `lines` (whole lines) and how many changes of that time end
/// them, if they also hold an earlier time or are all there is (`whole_file`); `None` if that
/// takes more lines.
fn last_time(lines: &[u8], whole_file: bool) -> Result<Option<Tail>, String> {
    let mut found: Option<Tail> = None;
    for line in lines.split(|b| *b == b'\n').rev().filter(|l| !l.is_empty()) {
        #[derive(serde::Deserialize)]
        struct Timed {
            time: Time,
        }
        let time = serde_json::from_slice::<Timed>(line)
            .map_err(|e| e.to_string())?
            .time;
        match &mut found {
            None => found = Some(Tail { time, count: 1 }),
            Some(tail) if tail.time == time => tail.count += 1,
            Some(_) => return Ok(found),
        }
    }
    Ok(if whole_file { found } else { None })
}

fn read_at(file: &mut File, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(end - start).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Cuts the file to `end` if it is longer (a torn last line), durably.
fn cut(file: &mut File, len: u64, end: u64) -> std::io::Result<()> {
    if end < len {
        file.set_len(end)?;
        file.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: Time, key: &str) -> String {
        format!("{{\"key\":\"{key}\",\"value\":1,\"time\":{time},\"diff\":1}}\n")
    }

    #[test]
    fn a_file_ends_at_its_last_time_and_loses_only_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.jsonl");
        assert_eq!(tail(&path), Ok(None), "no file");
        std::fs::write(&path, "{\"key\":").expect("written");
        assert_eq!(tail(&path), Ok(None), "only a torn line");
        assert_eq!(std::fs::read(&path).expect("read").len(), 0);
        let mut text = String::new();
        for (time, key) in [(5, "a"), (7, "a"), (7, "b"), (7, "c")] {
            text.push_str(&line(time, key));
        }
        std::fs::write(&path, format!("{text}{{\"key\":\"d\",\"va")).expect("written");
        assert_eq!(tail(&path), Ok(Some(Tail { time: 7, count: 3 })));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        // A last time whose changes take more than one read of the end.
        let long: String = (0..5_000).map(|i| line(9, &format!("k{i}"))).collect();
        std::fs::write(&path, format!("{text}{long}")).expect("written");
        assert_eq!(
            tail(&path),
            Ok(Some(Tail {
                time: 9,
                count: 5_000
            }))
        );
        std::fs::write(&path, &long).expect("written");
        assert_eq!(
            tail(&path),
            Ok(Some(Tail {
                time: 9,
                count: 5_000
            }))
        );
        std::fs::write(&path, "not json\n").expect("written");
        assert!(
            tail(&path).is_err(),
            "a file that is no changelog is refused"
        );
    }
}
