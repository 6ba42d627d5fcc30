//! The master dataset: the system of record, an immutable, append-only log of every accepted
//! event.
//!
//! In the Lambda architecture the views are derived data: the batch lane can recompute all of
//! them from the whole history, and the speed lane's state is disposable. What must never be
//! lost is the history itself, so an event is acknowledged only once it is durable here, and a
//! restarted engine rebuilds its views by replaying this log through the batch lane
//! ([`read_share`], one share per worker). Nothing in it is ever changed or rewritten in place:
//! a mistake is corrected by appending, which keeps every view reproducible.
//!
//! ## On disk
//!
//! A data directory holds:
//!
//! * **Segments** `00000000000000000000.seg`, `00000000000000000001.seg`, ... (the id in 20
//!   digits, so names sort like numbers). Each starts with a 24-byte header: the magic
//!   `LFSEGMNT`, the format version (`u32` LE, 1), reserved flags (`u32` LE, 0) and the
//!   segment's id (`u64` LE). Records follow back to back, each framed as
//!
//!   ```text
//!   len: u32 LE | crc: u32 LE | payload: len bytes
//!   ```
//!
//!   where the payload is one event in bincode 1 (`bincode::DefaultOptions`: little-endian,
//!   variable-length integers), `len` is at most [`MAX_RECORD_BYTES`], and `crc` is the CRC32C
//!   of the four `len` bytes followed by the payload. A segment is written only at its end; once
//!   it reaches [`MasterOptions::segment_bytes`] it is *sealed* and the next one begins (one
//!   append's records always share a segment, so a segment may overshoot by one group commit).
//!   A new segment is written under a temporary name and renamed once its header is durable,
//!   so no segment has a partial header.
//! * **`MANIFEST`**: the sealed segments. The magic `LFMANFST`, the version (`u32` LE, 1), the
//!   count (`u32` LE), then per sealed segment its id, length in bytes and record count (three
//!   `u64` LE), then the CRC32C of everything before (`u32` LE). It is replaced atomically:
//!   written to `MANIFEST.tmp`, fsync'd, renamed over `MANIFEST`, and the directory fsync'd.
//!   Sealed segments are ids `0..count`; only the segment after them is ever appended to.
//! * **`LOCK`**: an empty file whose lock says a [`MasterDataset`] has the directory open for
//!   writing. Readers take no lock.
//!
//! ## Appending: group commit
//!
//! [`MasterDataset::append`] returns once its events are fsync'd. Many threads append at once
//! (one per HTTP request), and an fsync costs far more than writing a few kilobytes, so they
//! share fsyncs: appends queue their encoded records in one buffer, and whichever caller finds
//! no write in progress becomes the *leader*, writes everything queued so far with one `write`
//! and one `fdatasync`, and wakes the callers whose records that covered. Appends that arrive
//! meanwhile form the next group. Under load each fsync thus carries as many appends as arrived
//! during the previous one, and throughput grows with concurrency instead of collapsing to one
//! fsync per call. A failed write or fsync leaves the file in an unknown state, so it stops the
//! dataset: later appends fail until it is reopened, which recovers the file.
//!
//! ## Recovery
//!
//! A crash can leave the last group commit of the last segment partly written. It was never
//! acknowledged, so [`MasterDataset::open`] cuts it off: it scans the last segment, and at the
//! first record that is cut short or fails its checksum, it looks for any whole record further
//! on. If there is none, the rest is a **torn tail**, truncated (and fsync'd) and reported in
//! [`Recovery`]. If there is one, or the bad record is in a sealed segment, the log is damaged
//! in the middle, and that is an [`Error::Corrupt`] naming the file and byte offset: recovery
//! never drops acknowledged events to make a log readable.
//!
//! ## Replay
//!
//! [`read_share`] splits the records by their position in the whole log: share `i` of `n` takes
//! records `i, i + n, ...`, so shares are even whatever the segment sizes. Every share checks
//! every record's frame and checksum (cheap, with hardware CRC32C) but decodes only its own,
//! and decoding is the cost that workers split. A reader stops at the end of the last whole
//! record of the last segment, so it never sees an append in flight or a torn tail.

use std::fmt;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use crate::history::Share;

mod entry;
mod format;
mod replay;
#[cfg(test)]
mod tests;

pub use entry::{Entry, ImportMark};
pub use format::{FRAME_BYTES, HEADER_BYTES, MAX_RECORD_BYTES};
pub use replay::{ReadStats, read_share, read_share_with_progress, verify};

use format::{Frame, Layout, SealedSegment, SegmentReader, io_at};

/// What can go wrong with a master dataset.
#[derive(Debug)]
pub enum Error {
    /// An I/O error on a file or directory.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Bytes on disk that are not what was written: damage that recovery must not paper over.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in it the damage starts.
        offset: u64,
        /// What was found there.
        reason: String,
    },
    /// A record whose checksum matches but which is not an event of this type.
    Decode {
        /// The segment file.
        path: PathBuf,
        /// The record's offset in it.
        offset: u64,
        /// Why bincode refused it.
        reason: String,
    },
    /// The segment files do not match the manifest (a segment missing, or a sealed one resized).
    Layout {
        /// The file in question.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another [`MasterDataset`] has this directory open.
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// An event that bincode cannot encode.
    Encode(String),
    /// An event whose encoding is over [`MAX_RECORD_BYTES`].
    RecordTooLarge {
        /// Its encoded length.
        bytes: u64,
    },
    /// An earlier write or fsync failed, so this dataset takes no more appends until reopened.
    Stopped(String),
    /// A share with `count == 0` or `index >= count`.
    InvalidShare(Share),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => write!(f, "{}: corrupt at byte {offset}: {reason}", path.display()),
            Error::Decode {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{}: record at byte {offset} does not decode: {reason}",
                path.display()
            ),
            Error::Layout { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Locked { dir } => write!(
                f,
                "{}: the master dataset is already open for writing",
                dir.display()
            ),
            Error::Encode(reason) => write!(f, "cannot encode an event: {reason}"),
            Error::RecordTooLarge { bytes } => write!(
                f,
                "an event encodes to {bytes} bytes, over the limit of {MAX_RECORD_BYTES}"
            ),
            Error::Stopped(reason) => write!(
                f,
                "the master dataset stopped taking appends after a failure: {reason}"
            ),
            Error::InvalidShare(share) => {
                write!(f, "share {} of {} does not exist", share.index, share.count)
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
            Error::Encode(_) | Error::RecordTooLarge { .. } | Error::InvalidShare(_) => {
                io::ErrorKind::InvalidInput
            }
            Error::Stopped(_) => io::ErrorKind::Other,
            Error::Corrupt { .. } | Error::Decode { .. } | Error::Layout { .. } => {
                io::ErrorKind::InvalidData
            }
        };
        io::Error::new(kind, e)
    }
}

/// The result of a master dataset operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Settings of a [`MasterDataset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterOptions {
    /// The length at which a segment is sealed and the next begins. Smaller segments make a
    /// sealed, immutable unit (to copy, back up, check) sooner; larger ones mean fewer files.
    pub segment_bytes: u64,
}

impl Default for MasterOptions {
    fn default() -> Self {
        MasterOptions {
            segment_bytes: 64 << 20,
        }
    }
}

/// What [`MasterDataset::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files, sealed and the one being appended to.
    pub segments: u64,
    /// Records in the dataset after recovery.
    pub records: u64,
    /// Bytes of those records, frames included (headers excluded).
    pub bytes: u64,
    /// Bytes cut off the end of the last segment (a torn tail); 0 after a clean shutdown.
    pub truncated_bytes: u64,
    /// Where the torn tail was, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Files a crash left under a temporary name, removed.
    pub removed_temp_files: u64,
}

/// The end of a write that never finished, found and cut off by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where it was cut: the end of its last whole record.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// What was found at `offset`.
    pub reason: String,
}

/// Where an acknowledged append went: its events are records `first .. first + records` of the
/// dataset, in order, and are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The position of the first event in the whole dataset (the position [`read_share`] shares
    /// by).
    pub first: u64,
    /// How many events were appended.
    pub records: u64,
    /// Bytes written for them, frames included.
    pub bytes: u64,
}

/// Counters of a [`MasterDataset`], for metrics; read them with
/// [`Metrics::get`](crate::metrics::Metrics::get).
#[derive(Debug, Default)]
pub struct MasterCounters {
    /// Records in the dataset that are durable.
    pub records: AtomicU64,
    /// Bytes of those records, frames included.
    pub bytes: AtomicU64,
    /// Segment files, sealed and the one being appended to.
    pub segments: AtomicU64,
    /// Appends acknowledged since the dataset was opened.
    pub appends: AtomicU64,
    /// Group commits since the dataset was opened: each is one fsync of appended data (the
    /// fsyncs of a rollover's new files are not counted).
    pub fsyncs: AtomicU64,
    /// Bytes of torn tail cut off when the dataset was opened.
    pub truncated_bytes: AtomicU64,
}

/// The master dataset of one data directory, open for appending.
///
/// It is `Send + Sync`: share it in an `Arc` and append from any thread; concurrent appends
/// share fsyncs. Replay with [`read_share`] (or [`MasterDataset::read_share`]), which needs no
/// handle and may run while appends go on.
pub struct MasterDataset<E> {
    dir: PathBuf,
    options: MasterOptions,
    state: Mutex<State>,
    /// Signalled whenever a group commit ends, durable or failed.
    committed: Condvar,
    counters: MasterCounters,
    /// Held open for its lock.
    _lock: File,
    _event: PhantomData<fn(E) -> E>,
}

/// The group commit's shared state.
struct State {
    /// Encoded records waiting for the next group commit.
    pending: Vec<u8>,
    pending_records: u64,
    pending_appends: u64,
    /// The number of the group that `pending` will be written in.
    open_group: u64,
    /// Every group up to this one is durable.
    durable_group: u64,
    /// Whether a leader is writing a group now.
    writing: bool,
    /// The position the next appended record will have.
    next_record: u64,
    /// The durable end of the log: this segment, up to this length. Replays through the
    /// dataset stop there, so they see exactly the acknowledged records.
    durable_end: (u64, u64),
    /// The files; a leader takes it while it writes, so no lock is held during I/O.
    writer: Option<Writer>,
    /// Why appends stopped, if they did.
    failed: Option<String>,
}

/// The segment being appended to, and the sealed ones before it.
struct Writer {
    dir: PathBuf,
    file: File,
    id: u64,
    /// The file's length, header included.
    bytes: u64,
    records: u64,
    sealed: Vec<SealedSegment>,
}

impl Writer {
    fn path(&self) -> PathBuf {
        self.dir.join(format::segment_name(self.id))
    }

    fn write_durably(&mut self, buf: &[u8], records: u64) -> Result<()> {
        use std::io::Write;
        let path = self.path();
        self.file.write_all(buf).map_err(io_at(&path))?;
        self.file.sync_data().map_err(io_at(&path))?;
        self.bytes += buf.len() as u64;
        self.records += records;
        Ok(())
    }

    /// Seals the current segment and starts the next. The manifest is written first, so a
    /// crash in between leaves a sealed last segment, and opening simply starts the next.
    fn roll(&mut self) -> Result<()> {
        let mut sealed = self.sealed.clone();
        sealed.push(SealedSegment {
            id: self.id,
            bytes: self.bytes,
            records: self.records,
        });
        format::write_manifest(&self.dir, &sealed)?;
        self.sealed = sealed;
        let next = self.id + 1;
        self.file = format::create_segment(&self.dir, next)?;
        self.id = next;
        self.bytes = HEADER_BYTES;
        self.records = 0;
        Ok(())
    }
}

impl<E: Serialize + DeserializeOwned> MasterDataset<E> {
    /// Opens the master dataset in `dir`, creating the directory if needed, and recovers it:
    /// a torn tail of the last segment is cut off and reported.
    ///
    /// Fails if another `MasterDataset` has the directory open, if the segments do not match
    /// the manifest, or if the last segment is damaged before its tail. Sealed segments are
    /// checked record by record only when read ([`read_share`], [`verify`]).
    pub fn open(dir: impl AsRef<Path>, options: MasterOptions) -> Result<(Self, Recovery)> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock = format::lock_dir(&dir)?;
        let mut recovery = Recovery {
            removed_temp_files: format::remove_temp_files(&dir)?,
            ..Recovery::default()
        };
        let layout = Layout::read(&dir)?;
        if layout.unsealed.len() > 1 {
            return Err(Error::Layout {
                path: dir.join(format::segment_name(layout.unsealed[1])),
                reason: "more than one segment is not sealed".into(),
            });
        }
        let writer = match layout.unsealed.first() {
            Some(&id) => {
                let (writer, torn) = recover_segment(&dir, id, layout.sealed)?;
                recovery.truncated_bytes = torn.as_ref().map_or(0, |t| t.bytes);
                recovery.torn_tail = torn;
                writer
            }
            None => {
                let id = layout.sealed.last().map_or(0, |s| s.id + 1);
                Writer {
                    file: format::create_segment(&dir, id)?,
                    dir: dir.clone(),
                    id,
                    bytes: HEADER_BYTES,
                    records: 0,
                    sealed: layout.sealed,
                }
            }
        };
        recovery.segments = writer.sealed.len() as u64 + 1;
        recovery.records = writer.records + writer.sealed.iter().map(|s| s.records).sum::<u64>();
        recovery.bytes = (writer.bytes - HEADER_BYTES)
            + writer
                .sealed
                .iter()
                .map(|s| s.bytes - HEADER_BYTES)
                .sum::<u64>();
        info!(
            dir = %dir.display(),
            segments = recovery.segments,
            records = recovery.records,
            truncated_bytes = recovery.truncated_bytes,
            "master dataset open"
        );

        let counters = MasterCounters::default();
        counters.records.store(recovery.records, Ordering::Relaxed);
        counters.bytes.store(recovery.bytes, Ordering::Relaxed);
        counters
            .segments
            .store(recovery.segments, Ordering::Relaxed);
        counters
            .truncated_bytes
            .store(recovery.truncated_bytes, Ordering::Relaxed);
        let state = State {
            pending: Vec::new(),
            pending_records: 0,
            pending_appends: 0,
            open_group: 1,
            durable_group: 0,
            writing: false,
            next_record: recovery.records,
            durable_end: (writer.id, writer.bytes),
            writer: Some(writer),
            failed: None,
        };
        let dataset = MasterDataset {
            dir,
            options,
            state: Mutex::new(state),
            committed: Condvar::new(),
            counters,
            _lock: lock,
            _event: PhantomData,
        };
        Ok((dataset, recovery))
    }

    /// Appends `events`, in order, as consecutive records; returns once they are durable.
    ///
    /// On an error nothing is acknowledged, but the events may still have reached the disk (an
    /// fsync that failed may have written them): as with any database, a caller that retries
    /// must tolerate duplicates.
    pub fn append(&self, events: &[E]) -> Result<AppendReceipt> {
        // Encoding happens before taking the lock, so concurrent appends encode in parallel.
        let mut encoded = Vec::with_capacity(events.len() * 64);
        for event in events {
            format::encode_record(&mut encoded, event)?;
        }
        let records = events.len() as u64;
        let bytes = encoded.len() as u64;

        let mut state = self.lock();
        if let Some(reason) = &state.failed {
            return Err(Error::Stopped(reason.clone()));
        }
        let receipt = AppendReceipt {
            first: state.next_record,
            records,
            bytes,
        };
        if records == 0 {
            return Ok(receipt);
        }
        state.next_record += records;
        if state.pending.is_empty() {
            state.pending = encoded;
        } else {
            state.pending.extend_from_slice(&encoded);
        }
        state.pending_records += records;
        state.pending_appends += 1;
        let group = state.open_group;
        loop {
            if state.durable_group >= group {
                return Ok(receipt);
            }
            if let Some(reason) = &state.failed {
                return Err(Error::Stopped(reason.clone()));
            }
            state = if state.writing {
                self.committed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner)
            } else {
                self.commit(state)
            };
        }
    }

    /// Writes and fsyncs every queued record as one group, as the leader. Called with no write
    /// in progress, so `pending` holds the caller's own records and the writer is in place.
    fn commit<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let group = state.open_group;
        state.open_group += 1;
        state.writing = true;
        let buf = std::mem::take(&mut state.pending);
        let records = std::mem::take(&mut state.pending_records);
        let appends = std::mem::take(&mut state.pending_appends);
        let mut writer = state.writer.take();
        drop(state);

        let written = match writer.as_mut() {
            Some(w) => w.write_durably(&buf, records),
            None => Err(Error::Stopped("no segment to append to".into())),
        };
        // The group is durable whatever happens to the rollover, so a failed rollover stops
        // later appends but does not fail this group's.
        let rolled = match (&written, writer.as_mut()) {
            (Ok(()), Some(w)) if w.bytes >= self.options.segment_bytes => Some(w.roll()),
            _ => None,
        };

        let mut state = self.lock();
        state.writing = false;
        if let Some(w) = &writer {
            state.durable_end = (w.id, w.bytes);
        }
        state.writer = writer;
        match written {
            Ok(()) => {
                self.counters.records.fetch_add(records, Ordering::Relaxed);
                self.counters
                    .bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                self.counters.appends.fetch_add(appends, Ordering::Relaxed);
                self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                state.durable_group = group;
            }
            Err(e) => {
                error!(dir = %self.dir.display(), "master dataset append failed: {e}");
                state.failed = Some(e.to_string());
            }
        }
        match rolled {
            Some(Ok(())) => {
                self.counters.segments.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                error!(dir = %self.dir.display(), "master dataset rollover failed: {e}");
                state.failed = Some(e.to_string());
            }
            None => {}
        }
        self.committed.notify_all();
        state
    }

    /// The group commit's state. No code panics while holding the lock, so a poisoned lock
    /// still guards consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replays share `share` of the records that were durable when called, as [`read_share`]
    /// does for the directory, but never reading an append still in flight.
    pub fn read_share(&self, share: Share, on_event: impl FnMut(E)) -> Result<ReadStats> {
        let end = self.lock().durable_end;
        replay::read_share_until(&self.dir, share, &AtomicU64::new(0), Some(end), on_event)
    }
}

impl<E> MasterDataset<E> {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings it was opened with.
    pub fn options(&self) -> &MasterOptions {
        &self.options
    }

    /// Durable records: the total a full replay reads, for progress.
    pub fn len(&self) -> u64 {
        self.counters.records.load(Ordering::Relaxed)
    }

    /// Whether no record is durable yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the durable records, frames included: the sum of [`ReadStats::bytes`] over the
    /// shares of a full replay, for progress.
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// The counters, for metrics.
    pub fn counters(&self) -> &MasterCounters {
        &self.counters
    }
}

impl<E> fmt::Debug for MasterDataset<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterDataset")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Scans the unsealed last segment `id`, cuts off its torn tail if it has one, and opens it for
/// appending.
fn recover_segment(
    dir: &Path,
    id: u64,
    sealed: Vec<SealedSegment>,
) -> Result<(Writer, Option<TornTail>)> {
    let mut reader = SegmentReader::open(dir, id, None)?;
    let mut records = 0;
    let bad = loop {
        match reader.next()? {
            Frame::Record(_) => records += 1,
            Frame::End => break None,
            Frame::Bad(bad) => break Some(reader.judge_tail(bad)?),
        }
    };
    let path = reader.path().to_path_buf();
    let valid = reader.position();
    let end = reader.end();
    drop(reader);

    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_at(&path))?;
    let torn = match bad {
        None => None,
        Some(bad) => {
            file.set_len(valid).map_err(io_at(&path))?;
            file.sync_all().map_err(io_at(&path))?;
            let torn = TornTail {
                path: path.clone(),
                offset: valid,
                bytes: end - valid,
                reason: bad.reason,
            };
            warn!(
                path = %path.display(),
                offset = valid,
                bytes = torn.bytes,
                "cut off the torn tail of the master dataset: {}",
                torn.reason
            );
            Some(torn)
        }
    };
    let writer = Writer {
        dir: dir.to_path_buf(),
        file,
        id,
        bytes: valid,
        records,
        sealed,
    };
    Ok((writer, torn))
}
