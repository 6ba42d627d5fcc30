//! The changelog journal: the hub's latest batches, kept in the data directory across restarts.
//!
//! One file, `changelog.log`: a magic header, then records `len (u32) | crc32c (u32) |
//! payload`, each payload a JSON [`Stored`] record: a view's change batch, the frontier its
//! batches are complete up to, the latest time it no longer keeps, or a ranked view's ranking
//! as a subscriber was told it (see [`Rankings`]). A thread of its own
//! appends them as the hub publishes (the workers never wait for the disk, only, when it falls
//! [`BACKLOG`] records behind, for room in its queue), flushes after every burst and makes the
//! file durable at most every [`SYNC_EVERY`].
//!
//! Only a prefix of the records is ever trusted: a torn or damaged record ends the file when it
//! is read, and what follows it is ignored. Of a view's batches, only those before its last
//! recorded frontier are taken back (a later one may have lost its companions); the restarted
//! engine tells the rest again, at the same times (see [`hub`](super::hub)). So a lost tail
//! makes resuming subscribers rely on the new run sooner, never tells them a change twice.
//!
//! A ranking is trusted alone: it is the whole ranking as of its time, and one the journal
//! lost (written after the last intact record) makes a subscriber that was told it get a 410,
//! never a wrong ranking.
//!
//! The journal keeps what the hub keeps ([`Retained`], [`Rankings`]): once it has appended more than twice
//! that (and [`COMPACT_AFTER`] records), it writes the kept batches to a new file, which
//! replaces the old one atomically (temporary file, fsync, rename, directory fsync), as it does
//! on every open.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info};

use super::ChangeBatch;
use super::hub::{Rankings, Retained};
use crate::event::Time;

/// The first bytes of a journal file.
const MAGIC: &[u8; 8] = b"LFCHLOG1";

/// How many records the hub may hand the writer before it waits for it.
pub const BACKLOG: usize = 16_384;

/// How often, at most, the journal is made durable (fsync) while records come.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The journal is compacted once it has appended at least this many records (and more than
/// twice as many as it keeps).
pub const COMPACT_AFTER: usize = 65_536;

/// One record of the file.
#[derive(Deserialize)]
enum Stored {
    Batch(ChangeBatch),
    Frontier {
        view: String,
        time: Time,
    },
    Forgotten {
        view: String,
        time: Time,
    },
    Ranking {
        view: String,
        as_of: Time,
        rows: Vec<Value>,
    },
}

/// [`Stored`], borrowed for writing (the same JSON).
#[derive(Serialize)]
enum StoredRef<'a> {
    Batch(&'a ChangeBatch),
    Frontier {
        view: &'a str,
        time: Time,
    },
    Forgotten {
        view: &'a str,
        time: Time,
    },
    Ranking {
        view: &'a str,
        as_of: Time,
        rows: &'a [Value],
    },
}

/// What the journal held when opened: per view, its kept batches and its frontier; per ranked
/// view, the rankings subscribers were told.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub views: HashMap<String, (Retained, Time)>,
    pub rankings: HashMap<String, Rankings>,
}

enum Message {
    Batch(Arc<ChangeBatch>),
    Frontier(String, Time),
    Ranking(String, Time, Arc<Vec<Value>>),
    Sync(SyncSender<Result<(), String>>),
}

/// The writer of a journal file.
pub(super) struct Journal {
    sender: Option<SyncSender<Message>>,
    writer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Opens the journal at `path` (a new one if there is none): what it holds, and a writer
    /// that appends to it.
    pub fn open(path: &Path) -> Result<(Journal, Loaded), String> {
        let loaded = read(path)?;
        let mut file = Writer {
            path: path.to_path_buf(),
            kept: loaded
                .views
                .iter()
                .map(|(view, (kept, frontier))| (view.clone(), (kept.clone(), *frontier)))
                .collect(),
            rankings: loaded.rankings.clone(),
            out: None,
            appended: 0,
            dirty: false,
            synced: Instant::now(),
        };
        file.compact()
            .map_err(|e| format!("cannot write the changelog journal {}: {e}", path.display()))?;
        let (sender, receiver) = sync_channel(BACKLOG);
        let writer = std::thread::Builder::new()
            .name("changelog journal".into())
            .spawn(move || file.run(receiver))
            .map_err(|e| format!("cannot start the changelog journal: {e}"))?;
        let batches: usize = loaded.views.values().map(|(k, _)| k.recent.len()).sum();
        info!(
            path = %path.display(),
            views = loaded.views.len(),
            batches,
            "changelog journal opened"
        );
        Ok((
            Journal {
                sender: Some(sender),
                writer: Some(writer),
            },
            loaded,
        ))
    }

    fn send(&self, message: Message) {
        if let Some(sender) = &self.sender {
            // A writer that stopped has logged why; the hub goes on without it.
            let _ = sender.send(message);
        }
    }

    /// Appends a batch the hub published.
    pub fn batch(&self, batch: Arc<ChangeBatch>) {
        self.send(Message::Batch(batch));
    }

    /// Appends that every batch of `view` before `time` is in.
    pub fn frontier(&self, view: &str, time: Time) {
        self.send(Message::Frontier(view.to_string(), time));
    }

    /// Appends ranked view `view`'s ranking as of `as_of`.
    pub fn ranking(&self, view: &str, as_of: Time, rows: Arc<Vec<Value>>) {
        self.send(Message::Ranking(view.to_string(), as_of, rows));
    }

    /// Waits until everything appended so far is durable.
    pub fn sync(&self) -> Result<(), String> {
        let (tx, rx) = sync_channel(1);
        self.send(Message::Sync(tx));
        rx.recv()
            .map_err(|_| "the changelog journal stopped".to_string())?
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer's side: the file, and what it keeps (to compact it).
struct Writer {
    path: PathBuf,
    kept: HashMap<String, (Retained, Time)>,
    rankings: HashMap<String, Rankings>,
    out: Option<BufWriter<File>>,
    appended: usize,
    dirty: bool,
    synced: Instant,
}

impl Writer {
    fn run(mut self, messages: Receiver<Message>) {
        let mut failed = false;
        loop {
            let first = match messages.recv_timeout(SYNC_EVERY) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let rest = std::iter::from_fn(|| messages.try_recv().ok());
            let burst = first.into_iter().chain(rest).take(BACKLOG);
            let mut syncs = Vec::new();
            let mut written = Ok(());
            for message in burst {
                match message {
                    Message::Sync(reply) => syncs.push(reply),
                    message => written = written.and_then(|()| self.append(message)),
                }
            }
            let written = written
                .and_then(|()| self.flush(!syncs.is_empty()))
                .and_then(|()| self.compact_if_grown())
                .map_err(|e| {
                    format!(
                        "cannot write the changelog journal {}: {e}",
                        self.path.display()
                    )
                });
            if let Err(e) = &written
                && !failed
            {
                error!("{e}; resuming subscribers after a restart may be refused (410)");
                failed = true;
            }
            for reply in syncs {
                let _ = reply.send(written.clone());
            }
        }
        if let Err(e) = self.flush(true) {
            error!(path = %self.path.display(), "cannot write the changelog journal: {e}");
        }
    }

    fn append(&mut self, message: Message) -> std::io::Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no file to append to"))?;
        match message {
            Message::Batch(batch) => {
                write_record(out, &StoredRef::Batch(&batch))?;
                self.kept
                    .entry(batch.view.clone())
                    .or_default()
                    .0
                    .push(batch);
            }
            Message::Frontier(view, time) => {
                write_record(out, &StoredRef::Frontier { view: &view, time })?;
                let frontier = &mut self.kept.entry(view).or_default().1;
                *frontier = (*frontier).max(time);
            }
            Message::Ranking(view, as_of, rows) => {
                let record = StoredRef::Ranking {
                    view: &view,
                    as_of,
                    rows: &rows,
                };
                write_record(out, &record)?;
                self.rankings.entry(view).or_default().insert(as_of, rows);
            }
            Message::Sync(_) => return Ok(()),
        }
        self.appended += 1;
        self.dirty = true;
        Ok(())
    }

    /// Flushes what was appended; makes it durable if `durable` or a while has passed.
    fn flush(&mut self, durable: bool) -> std::io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        out.flush()?;
        if self.dirty && (durable || self.synced.elapsed() >= SYNC_EVERY) {
            out.get_ref().sync_data()?;
            self.dirty = false;
            self.synced = Instant::now();
        }
        Ok(())
    }

    fn compact_if_grown(&mut self) -> std::io::Result<()> {
        let kept: usize = self
            .kept
            .values()
            .map(|(k, _)| k.recent.len() + 2)
            .sum::<usize>()
            + self.rankings.values().map(Rankings::len).sum::<usize>();
        if self.appended >= COMPACT_AFTER && self.appended > 2 * kept {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes what is kept to a new file that replaces the old one, and appends to it.
    fn compact(&mut self) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("log.tmp");
        let mut out = BufWriter::new(File::create(&tmp)?);
        out.write_all(MAGIC)?;
        // A view with no frontier yet holds nothing a restart would take.
        for (view, (kept, frontier)) in self.kept.iter().filter(|(_, (_, f))| *f > 0) {
            if let Some(time) = kept.forgotten {
                write_record(&mut out, &StoredRef::Forgotten { view, time })?;
            }
            for batch in &kept.recent {
                write_record(&mut out, &StoredRef::Batch(batch))?;
            }
            write_record(
                &mut out,
                &StoredRef::Frontier {
                    view,
                    time: *frontier,
                },
            )?;
        }
        for (view, rankings) in &self.rankings {
            for (as_of, rows) in rankings.iter() {
                let record = StoredRef::Ranking { view, as_of, rows };
                write_record(&mut out, &record)?;
            }
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()?;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.out = Some(BufWriter::new(file));
        self.appended = 0;
        self.dirty = false;
        Ok(())
    }
}

fn write_record(out: &mut impl Write, record: &StoredRef) -> std::io::Result<()> {
    let payload = serde_json::to_vec(record)?;
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc32c::crc32c(&payload).to_le_bytes())?;
    out.write_all(&payload)
}

/// Reads the journal at `path`: its records up to the first that is torn or damaged.
fn read(path: &Path) -> Result<Loaded, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.is_empty() {
        return Ok(Loaded::default());
    }
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(format!(
            "{} is not a changelog journal (move it away to start a new one)",
            path.display()
        ));
    };
    let mut batches: HashMap<String, Vec<ChangeBatch>> = HashMap::new();
    let mut frontiers: HashMap<String, Time> = HashMap::new();
    let mut forgotten: HashMap<String, Time> = HashMap::new();
    let mut rankings: HashMap<String, Rankings> = HashMap::new();
    while let Some(record) = next_record(&mut rest) {
        match record {
            Stored::Batch(batch) => batches.entry(batch.view.clone()).or_default().push(batch),
            Stored::Frontier { view, time } => {
                let frontier = frontiers.entry(view).or_default();
                *frontier = (*frontier).max(time);
            }
            Stored::Forgotten { view, time } => {
                let latest = forgotten.entry(view).or_default();
                *latest = (*latest).max(time);
            }
            Stored::Ranking { view, as_of, rows } => {
                rankings
                    .entry(view)
                    .or_default()
                    .insert(as_of, Arc::new(rows));
            }
        }
    }
    let views = frontiers
        .into_iter()
        .filter(|(_, frontier)| *frontier > 0)
        .map(|(view, frontier)| {
            let mut kept = Retained::default();
            if let Some(time) = forgotten.get(&view) {
                kept.forgot(*time);
            }
            for batch in batches.remove(&view).unwrap_or_default() {
                if batch.time < frontier {
                    kept.push(Arc::new(batch));
                }
            }
            (view, (kept, frontier))
        })
        .collect();
    Ok(Loaded { views, rankings })
}

/// The next whole, intact record of `rest`, if there is one.
fn next_record(rest: &mut &[u8]) -> Option<Stored> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let (crc, tail) = tail.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    let payload = tail.get(..len)?;
    if crc32c::crc32c(payload) != u32::from_le_bytes(*crc) {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    *rest = &tail[len..];
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::Change;

    fn batch(view: &str, time: Time) -> Arc<ChangeBatch> {
        Arc::new(ChangeBatch {
            view: view.into(),
            time,
            changes: vec![Change {
                key: format!("k{time}"),
                value: serde_json::json!({"n": time}),
                time,
                diff: 1,
            }],
        })
    }

    fn times(loaded: &Loaded, view: &str) -> (Vec<Time>, Time) {
        let (kept, frontier) = &loaded.views[view];
        (kept.recent.iter().map(|b| b.time).collect(), *frontier)
    }

    #[test]
    fn batches_before_the_last_frontier_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changelog.log");
        let (journal, loaded) = Journal::open(&path).expect("opens");
        assert!(loaded.views.is_empty());
        for time in [1, 2, 4] {
            journal.batch(batch("a", time));
            journal.frontier("a", time + 1);
        }
        journal.batch(batch("b", 7));
        journal.batch(batch("a", 9));
        journal.sync().expect("durable");
        drop(journal);
        let (_, loaded) = Journal::open(&path).expect("reopens");
        assert_eq!(times(&loaded, "a"), (vec![1, 2, 4], 5));
        assert_eq!(loaded.views["a"].0.recent[2], batch("a", 4));
        assert!(
            !loaded.views.contains_key("b"),
            "a view with no frontier holds nothing"
        );
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changelog.log");
        let (journal, _) = Journal::open(&path).expect("opens");
        for time in 1..=6 {
            journal.batch(batch("a", time));
            journal.frontier("a", time + 1);
        }
        drop(journal);
        let whole = std::fs::read(&path).expect("read");
        // Every cut of the file holds a prefix of what was written, never anything else.
        let mut seen = Vec::new();
        for len in 0..=whole.len() {
            std::fs::write(&path, &whole[..len]).expect("cut");
            match Journal::open(&path) {
                Ok((_, loaded)) => {
                    let (times, frontier) = loaded
                        .views
                        .get("a")
                        .map(|(k, f)| (k.recent.iter().map(|b| b.time).collect(), *f))
                        .unwrap_or((Vec::new(), 0));
                    assert_eq!(times, (1..frontier).collect::<Vec<_>>(), "cut at {len}");
                    seen.push(frontier);
                }
                Err(e) => assert!(len < MAGIC.len(), "cut at {len}: {e}"),
            }
        }
        assert_eq!(seen.last(), Some(&7));
        let mut flipped = whole.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        std::fs::write(&path, &flipped).expect("damaged");
        let (_, loaded) = Journal::open(&path).expect("opens");
        let frontier = loaded.views.get("a").map_or(0, |(_, f)| *f);
        assert!(frontier < 7, "nothing after the damage is trusted");
        std::fs::write(&path, b"not a journal").expect("foreign");
        assert!(
            Journal::open(&path).is_err(),
            "a foreign file is not overwritten"
        );
    }

    #[test]
    fn compaction_keeps_what_the_hub_keeps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changelog.log");
        let (journal, _) = Journal::open(&path).expect("opens");
        let total = crate::changelog::RETAINED_BATCHES as u64 * 20;
        for time in 0..total {
            journal.batch(batch("a", time));
            journal.frontier("a", time + 1);
        }
        journal.sync().expect("durable");
        drop(journal);
        let size = std::fs::metadata(&path).expect("stat").len() as usize;
        let mut uncompacted = Vec::new();
        for time in 0..total {
            write_record(&mut uncompacted, &StoredRef::Batch(&batch("a", time))).expect("written");
            let frontier = StoredRef::Frontier {
                view: "a",
                time: time + 1,
            };
            write_record(&mut uncompacted, &frontier).expect("written");
        }
        let (_, loaded) = Journal::open(&path).expect("reopens");
        let (kept, frontier) = &loaded.views["a"];
        assert_eq!(*frontier, total);
        assert_eq!(kept.recent.len(), crate::changelog::RETAINED_BATCHES);
        assert_eq!(kept.recent.front().map(|b| b.time), Some(total - 4_096));
        assert_eq!(kept.forgotten, Some(total - 4_097));
        assert!(
            size < uncompacted.len() / 2,
            "{size} of {}",
            uncompacted.len()
        );
    }
}
