//! The dead-letter file: every late event the speed lane leaves out, appended durably to
//! `DATA_DIR/dead-letter.jsonl` as `{"event": {...}, "reason": "...", "watermark": W}`.
//!
//! Dropping happens on a worker thread, which must not wait for a disk, so a writer thread
//! takes the entries from a channel and writes whatever has queued with one `fdatasync` (group
//! commit, as the master dataset does). The most recent entries stay in memory for `GET /late`.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use tracing::error;

use crate::event::{Event, Time};
use crate::lane::LateSink;

/// How many entries `GET /late` can list.
pub const RECENT: usize = 1_000;

/// The dead-letter file of one server.
pub struct DeadLetter {
    sender: Mutex<Option<Sender<Value>>>,
    recent: Mutex<VecDeque<Value>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl DeadLetter {
    /// Opens (appends to) `dir/dead-letter.jsonl` and starts its writer.
    pub fn open(dir: &Path) -> io::Result<Arc<DeadLetter>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dead-letter.jsonl"))?;
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("dead-letter".into())
            .spawn(move || write_all(file, receiver))?;
        Ok(Arc::new(DeadLetter {
            sender: Mutex::new(Some(sender)),
            recent: Mutex::new(VecDeque::new()),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// The hook the engine calls for each dropped event.
    pub fn sink<E: Event>(self: &Arc<Self>) -> LateSink<E> {
        let letters = self.clone();
        Arc::new(move |event: &E, reason: &'static str, watermark: Time| {
            let event = serde_json::to_value(event).unwrap_or(Value::Null);
            letters.add(json!({"event": event, "reason": reason, "watermark": watermark}));
        })
    }

    fn add(&self, entry: Value) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(entry.clone());
        }
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        if let Some(sender) = sender {
            let _ = sender.send(entry);
        }
    }

    /// The most recent entries, newest last.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let recent = self.recent.lock().map(|r| r.clone()).unwrap_or_default();
        recent.into_iter().rev().take(limit).rev().collect()
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

fn write_all(mut file: File, entries: Receiver<Value>) {
    while let Ok(first) = entries.recv() {
        let mut batch = vec![first];
        batch.extend(entries.try_iter());
        let mut bytes = Vec::new();
        for entry in &batch {
            bytes.extend(entry.to_string().into_bytes());
            bytes.push(b'\n');
        }
        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
            error!("cannot write the dead-letter file: {e}");
        }
    }
}
