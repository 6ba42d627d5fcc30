//! The writer: a [`MasterDataset`] open for appending, with group commit.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{error, info};

use super::format::{self, HEADER_BYTES, Layout, Marker, SealedSegment, io_at};
use super::recover;
use super::replay::{Position, ReadStats, Reading};
use super::storage::{Disk, Storage, StorageFile, StorageLock};
use super::{AppendReceipt, Error, MasterCounters, MasterOptions, Recovery, Result};
use crate::history::Share;

/// The master dataset of one data directory, open for appending.
///
/// It is `Send + Sync`: share it in an `Arc` and append from any thread; concurrent appends
/// share fsyncs. Replay with [`read_share`](super::read_share) (or
/// [`MasterDataset::read_share`]), which needs no handle and may run while appends go on.
pub struct MasterDataset<E> {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: MasterOptions,
    state: Mutex<State>,
    /// Signalled whenever a group commit ends, durable or failed.
    committed: Condvar,
    counters: MasterCounters,
    /// Held for the directory's writer lock.
    _lock: StorageLock,
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
    /// The durable end of the log: this segment, up to this length (the end of a commit
    /// marker). Replays through the dataset stop there, so they see exactly the acknowledged
    /// records.
    durable_end: (u64, u64),
    /// The files; a leader takes it while it writes, so no lock is held during I/O.
    writer: Option<Writer>,
    /// Why appends stopped, if they did.
    failed: Option<String>,
}

/// The segment being appended to, and the sealed ones before it.
pub(super) struct Writer {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub file: Box<dyn StorageFile>,
    pub id: u64,
    /// The file's length, header included.
    pub bytes: u64,
    pub records: u64,
    pub groups: u64,
    pub sealed: Vec<SealedSegment>,
}

impl Writer {
    fn path(&self) -> PathBuf {
        format::segment_path(&self.dir, self.id)
    }

    /// Writes one group (its records and marker) with one write, and fsyncs it.
    fn write_durably(&mut self, group: &[u8], records: u64) -> Result<()> {
        let path = self.path();
        self.file.append(group).map_err(io_at(&path))?;
        self.file.sync_data().map_err(io_at(&path))?;
        self.bytes += group.len() as u64;
        self.records += records;
        self.groups += 1;
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
            groups: self.groups,
        });
        format::write_manifest(&*self.storage, &self.dir, &sealed)?;
        self.sealed = sealed;
        let next = self.id + 1;
        self.file = format::create_segment(&*self.storage, &self.dir, next)?;
        self.id = next;
        self.bytes = HEADER_BYTES;
        self.records = 0;
        self.groups = 0;
        Ok(())
    }

    /// Bytes of the records in all segments, frames included.
    fn record_bytes(&self) -> u64 {
        let unsealed = SealedSegment {
            id: self.id,
            bytes: self.bytes,
            records: self.records,
            groups: self.groups,
        };
        self.sealed
            .iter()
            .chain([&unsealed])
            .map(SealedSegment::record_bytes)
            .sum()
    }
}

impl<E: Serialize + DeserializeOwned> MasterDataset<E> {
    /// Opens the master dataset in `dir` on the file system, creating the directory if needed,
    /// and recovers it: an unacknowledged tail of the last segment is cut off and reported.
    ///
    /// Fails if another `MasterDataset` has the directory open, if the segments do not match
    /// the manifest, or if the last segment is damaged before its last committed group. Sealed
    /// segments are checked record by record only when read ([`read_share`](super::read_share),
    /// [`verify`](super::verify)).
    pub fn open(dir: impl AsRef<Path>, options: MasterOptions) -> Result<(Self, Recovery)> {
        Self::open_with(Arc::new(Disk), dir, options)
    }

    /// [`open`](Self::open) on any [`Storage`].
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: MasterOptions,
    ) -> Result<(Self, Recovery)> {
        let dir = dir.as_ref().to_path_buf();
        storage.create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock = format::lock_dir(&*storage, &dir)?;
        let mut recovery = Recovery {
            removed_temp_files: format::remove_temp_files(&*storage, &dir)?,
            ..Recovery::default()
        };
        let layout = Layout::read(&*storage, &dir)?;
        if layout.unsealed.len() > 1 {
            return Err(Error::Layout {
                path: format::segment_path(&dir, layout.unsealed[1]),
                reason: "more than one segment is not sealed".into(),
            });
        }
        let writer = match layout.unsealed.first() {
            Some(&id) => {
                let (writer, torn) =
                    recover::recover_segment(Arc::clone(&storage), &dir, id, layout.sealed)?;
                recovery.truncated_bytes = torn.as_ref().map_or(0, |t| t.bytes);
                recovery.torn_tail = torn;
                writer
            }
            None => {
                let id = layout.sealed.last().map_or(0, |s| s.id + 1);
                Writer {
                    file: format::create_segment(&*storage, &dir, id)?,
                    storage: Arc::clone(&storage),
                    dir: dir.clone(),
                    id,
                    bytes: HEADER_BYTES,
                    records: 0,
                    groups: 0,
                    sealed: layout.sealed,
                }
            }
        };
        recovery.segments = writer.sealed.len() as u64 + 1;
        recovery.records = writer.records + writer.sealed.iter().map(|s| s.records).sum::<u64>();
        recovery.bytes = writer.record_bytes();
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
            storage,
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
    /// must tolerate duplicates. They are never there in part: the events of one append are in
    /// one group commit, which recovery keeps whole or cuts off whole.
    pub fn append(&self, events: &[E]) -> Result<AppendReceipt> {
        // Encoding happens before taking the lock, so concurrent appends encode in parallel.
        let mut encoded = Vec::with_capacity(events.len() * 64);
        for event in events {
            format::encode_record(&mut encoded, self.options.schema_version, event)?;
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

    /// Writes and fsyncs every queued record and their commit marker as one group, as the
    /// leader. Called with no write in progress, so `pending` holds the caller's own records and
    /// the writer is in place.
    fn commit<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let group = state.open_group;
        state.open_group += 1;
        state.writing = true;
        let mut buf = std::mem::take(&mut state.pending);
        let records = std::mem::take(&mut state.pending_records);
        let appends = std::mem::take(&mut state.pending_appends);
        let mut writer = state.writer.take();
        drop(state);

        let record_bytes = buf.len() as u64;
        let marker = Marker::of(&buf, records);
        buf.extend_from_slice(&marker.encode());
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
                    .fetch_add(record_bytes, Ordering::Relaxed);
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

    /// Replays share `share` of the records that were durable when called, as
    /// [`read_share`](super::read_share) does for the directory, but never reading an append
    /// still in flight, and reading schema versions up to [`MasterOptions::schema_version`].
    pub fn read_share(&self, share: Share, on_event: impl FnMut(E)) -> Result<ReadStats> {
        let end = self.lock().durable_end;
        let reading = Reading {
            storage: &*self.storage,
            dir: &self.dir,
            schema_version: self.options.schema_version,
            until: Some(end),
            from: None,
        };
        reading.share(share, &AtomicU64::new(0), on_event)
    }

    /// Marks what is durable now, to read exactly that later ([`read_mark`](Self::read_mark)),
    /// however much is appended meanwhile.
    pub fn mark(&self) -> Mark {
        let until = self.lock().durable_end;
        Mark {
            until,
            bytes: self.bytes(),
        }
    }

    /// Replays share `share` of the records durable at `mark`, adding the bytes read to
    /// `progress`.
    pub fn read_mark(
        &self,
        mark: &Mark,
        share: Share,
        progress: &AtomicU64,
        on_event: impl FnMut(E),
    ) -> Result<ReadStats> {
        let reading = Reading {
            storage: &*self.storage,
            dir: &self.dir,
            schema_version: self.options.schema_version,
            until: Some(mark.until),
            from: None,
        };
        reading.share(share, progress, on_event)
    }
}

/// A point of the log: what was durable when it was taken ([`MasterDataset::mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    until: (u64, u64),
    /// The bytes of the records before it (for progress).
    pub bytes: u64,
}

impl Mark {
    /// Where the mark is in the log: a replay from there reads what came after it
    /// ([`read_share_from`](super::read_share_from)).
    pub fn position(&self) -> Position {
        Position {
            segment: self.until.0,
            offset: self.until.1,
        }
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

    /// Bytes of the durable records, frames included (commit markers excluded): the sum of
    /// [`ReadStats::bytes`] over the shares of a full replay, for progress.
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
