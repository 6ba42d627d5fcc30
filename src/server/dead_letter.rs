//! The dead-letter file: every late event left out, as `DATA_DIR/dead-letter.jsonl`, one
//! `{"event": {...}, "reason": "...", "watermark": W}` per line, and `GET /late`.
//!
//! The verdicts themselves are stored in the master dataset (a dropped event is a record there,
//! with its reason and watermark), which is what makes them durable and the same after a
//! restart. The file is their readable export, and it is rebuilt on every start: the replay
//! hands every recorded drop to [`DeadLetter`], which writes them to `dead-letter.jsonl.tmp` and,
//! once the replay is done, renames it over the file; drops after that are appended. A crash at
//! any point leaves a file that the next start replaces with the complete one.
//!
//! Dropping happens on a worker or producer thread, which must not wait for a disk, so a writer
//! thread takes the entries from a bounded channel (a full channel holds the dropping thread
//! back) and writes whatever has queued with one `fdatasync`. `GET /late` lists the latest
//! [`RECENT`] drops by watermark (ties by event), the same before and after a restart.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use tracing::error;

use crate::event::{Event, Time};
use crate::live::{LateDrop, LateSink};

/// How many entries `GET /late` can list.
pub const RECENT: usize = 1_000;

/// How many entries may wait for the writer.
const QUEUE: usize = 16 * 1024;

const FILE: &str = "dead-letter.jsonl";
const TEMP: &str = "dead-letter.jsonl.tmp";

enum Message {
    Entry(String),
    /// The replay is done: the rebuilt file replaces the old one.
    Replayed,
}

/// One listed drop: by watermark, then the event's JSON, then the reason.
type Key = (Time, String, &'static str);

/// The dead-letter file of one server.
pub struct DeadLetter {
    sender: Mutex<Option<SyncSender<Message>>>,
    /// The latest drops, with how many times each was dropped.
    recent: Mutex<BTreeMap<Key, u64>>,
    total: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl DeadLetter {
    /// Starts rebuilding `dir/dead-letter.jsonl` (the replay's drops go to a new file, which
    /// replaces it at [`replayed`](Self::replayed)).
    pub fn open(dir: &Path) -> io::Result<Arc<DeadLetter>> {
        let temp = dir.join(TEMP);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&temp)?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let dir = dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("dead-letter".into())
            .spawn(move || write_all(file, &dir, receiver))?;
        Ok(Arc::new(DeadLetter {
            sender: Mutex::new(Some(sender)),
            recent: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// The hook the engine calls for each dropped event (replayed or new).
    pub fn sink<E: Event>(self: &Arc<Self>) -> LateSink<E> {
        let letters = self.clone();
        Arc::new(move |drop: &LateDrop<E>| {
            let event = serde_json::to_value(drop.event).unwrap_or(Value::Null);
            letters.add(event, drop.reason.text(), drop.watermark);
        })
    }

    fn add(&self, event: Value, reason: &'static str, watermark: Time) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let line = json!({"event": event, "reason": reason, "watermark": watermark}).to_string();
        if let Ok(mut recent) = self.recent.lock() {
            *recent
                .entry((watermark, event.to_string(), reason))
                .or_insert(0) += 1;
            if recent.len() > RECENT {
                recent.pop_first();
            }
        }
        self.send(Message::Entry(line));
    }

    fn send(&self, message: Message) {
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        if let Some(sender) = sender {
            let _ = sender.send(message);
        }
    }

    /// The replay is done: the rebuilt file (every drop recorded so far) replaces the old one.
    pub fn replayed(&self) {
        self.send(Message::Replayed);
    }

    /// How many events were dropped in all (before restarts too).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The latest `limit` drops, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let Ok(recent) = self.recent.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((watermark, event, reason), count) in recent.iter().rev() {
            let event: Value = serde_json::from_str(event).unwrap_or(Value::Null);
            for _ in 0..*count {
                if out.len() == limit {
                    break;
                }
                out.push(json!({"event": event, "reason": reason, "watermark": watermark}));
            }
        }
        out.reverse();
        out
    }

    /// Writes what is queued and stops the writer.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = writer.join();
        }
    }
}

fn write_all(mut file: File, dir: &Path, messages: Receiver<Message>) {
    let path: PathBuf = dir.join(FILE);
    while let Ok(first) = messages.recv() {
        let mut bytes = Vec::new();
        let mut replace = false;
        for message in std::iter::once(first).chain(messages.try_iter()) {
            match message {
                Message::Entry(line) => {
                    bytes.extend(line.into_bytes());
                    bytes.push(b'\n');
                }
                Message::Replayed => replace = true,
            }
        }
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            error!(file = %path.display(), "cannot write the dead-letter file: {e}");
        }
        if replace {
            let renamed = std::fs::rename(dir.join(TEMP), &path)
                .and_then(|()| File::open(dir).and_then(|d| d.sync_all()));
            if let Err(e) = renamed {
                error!(file = %path.display(), "cannot replace the dead-letter file: {e}");
            }
        }
    }
}
