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
//! ## On disk (format version 2)
//!
//! A data directory holds:
//!
//! * **Segments** `00000000000000000000.seg`, `00000000000000000001.seg`, ... (the id in 20
//!   digits, so names sort like numbers). Each starts with a 24-byte header: the magic
//!   `LFSEGMNT`, the format version (`u32` LE, 2), reserved flags (`u32` LE, 0) and the
//!   segment's id (`u64` LE). Frames follow back to back, each
//!
//!   ```text
//!   len: u32 LE | crc: u32 LE | payload
//!   ```
//!
//!   where `crc` is the CRC32C of the four `len` bytes followed by the payload. Frames are of two
//!   kinds, told apart by the top bit of `len`:
//!
//!   * a **record** (top bit clear): `len` is the payload's length, at most
//!     [`MAX_RECORD_BYTES`]. The payload is the writer's schema version
//!     ([`MasterOptions::schema_version`]) as a MessagePack unsigned integer, then the event in
//!     MessagePack, structs as positional arrays (`rmp_serde::encode::write`). Arrays carry
//!     their length, so a struct that gains a trailing field marked `#[serde(default)]` still
//!     reads records written before it had the field.
//!   * a **commit marker** (top bit set): `len` is exactly `0x8000_0014` (the flag and a
//!     20-byte payload), and the payload is `group_bytes: u64 LE | group_records: u64 LE |
//!     group_crc: u32 LE`: the length of the records since the previous marker (or the header),
//!     frames included, how many they are, and the CRC32C of those bytes. Every group commit
//!     ends with one ([`MARKER_BYTES`] in all). Markers are not records: positions, counts,
//!     shares and byte counts of records leave them out.
//!
//!   So a segment is `header | group* | unfinished tail`, a group being `record+ | marker`. A
//!   segment is written only at its end; once it reaches [`MasterOptions::segment_bytes`] it is
//!   *sealed* and the next one begins (a group never spans segments, so a segment may overshoot
//!   by one group commit). A new segment is written under a temporary name and renamed once its
//!   header is durable, so no segment has a partial header.
//! * **`MANIFEST`**: the sealed segments. The magic `LFMANFST`, the version (`u32` LE, 2), the
//!   count (`u32` LE), then per sealed segment its id, length in bytes (header included),
//!   record count and group count (four `u64` LE), then the CRC32C of everything before (`u32`
//!   LE). It is replaced atomically: written to `MANIFEST.tmp`, fsync'd, renamed over
//!   `MANIFEST`, and the directory fsync'd. Sealed segments are ids `0..count`; only the segment
//!   after them is ever appended to.
//! * **`LOCK`**: an empty file whose lock says a [`MasterDataset`] (or [`repair`]) has the
//!   directory open for writing. Readers take no lock.
//!
//! Files of format version 1 (bincode payloads, no commit markers) are refused with an
//! [`Error::Version`]; nothing converts them.
//!
//! ## Appending: group commit
//!
//! [`MasterDataset::append`] returns once its events are fsync'd. Many threads append at once
//! (one per HTTP request), and an fsync costs far more than writing a few kilobytes, so they
//! share fsyncs: appends queue their encoded records in one buffer, and whichever caller finds
//! no write in progress becomes the *leader*, writes everything queued so far and its commit
//! marker with one `write` and one `fdatasync`, and wakes the callers whose records that
//! covered. Appends that arrive meanwhile form the next group. Under load each fsync thus
//! carries as many appends as arrived during the previous one, and throughput grows with
//! concurrency instead of collapsing to one fsync per call. A failed write or fsync leaves the
//! file in an unknown state, so it stops the dataset: later appends fail until it is reopened,
//! which recovers the file.
//!
//! ## Recovery
//!
//! A power loss can leave the last group commit of the last segment partly written, and since
//! the disk may persist the pages of a write in any order, whole records of it may survive
//! behind a hole. That group was never acknowledged, so [`MasterDataset::open`] cuts it off: it
//! scans the last segment group by group, and everything after the last *committed* group (a
//! marker whose group length, record count and checksum match the bytes before it) is an
//! unacknowledged tail, truncated (and fsync'd) and reported in [`Recovery`], even when whole
//! records follow the hole. But if a committed group turns up anywhere after the first bad frame
//! (found by checking every byte offset for a marker), that group was written after the bad one
//! was acknowledged, so the log is damaged in the middle: an [`Error::Corrupt`] naming the file
//! and byte offset. Recovery never drops acknowledged events to make a log readable; [`repair`]
//! does, when told to. Sealed segments are checked against the manifest.
//!
//! ## Replay
//!
//! [`read_share`] splits the records by their position in the whole log: share `i` of `n` takes
//! records `i, i + n, ...`, so shares are even whatever the segment sizes. Every share checks
//! every frame and group checksum (cheap, with hardware CRC32C) but decodes only its own
//! records, and decoding is the cost that workers split. A group's records are handed out only
//! after its marker is checked, so a reader never sees an append in flight or an unacknowledged
//! tail.
//!
//! ## Storage
//!
//! All file and directory operations go through [`Storage`]; [`Disk`] is the file system. The
//! functions taking no storage use [`Disk`]; [`MasterDataset::open_with`], [`read_share_with`],
//! [`verify_with`] and [`repair_with`] take any. The tests run the dataset on a simulated disk
//! that loses power at any operation.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use crate::history::Share;

#[cfg(test)]
mod codec_tests;
mod dataset;
mod entry;
mod format;
mod recover;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod repair_tests;
mod replay;
mod segment;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
mod storage;
#[cfg(test)]
mod tests;

pub use dataset::{Mark, MasterDataset};
pub use entry::{Entry, ImportMark};
pub use format::{FRAME_BYTES, HEADER_BYTES, MARKER_BYTES, MAX_RECORD_BYTES};
pub use recover::{Cut, Damage, RepairReport, repair, repair_with};
pub use replay::{
    Position, ReadStats, VerifyReport, read_share, read_share_from, read_share_until,
    read_share_with, read_share_with_progress, verify, verify_with,
};
pub use storage::{Access, Disk, Storage, StorageFile, StorageLock};

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
    /// A record whose checksum matches but which is not an event of this type, or was written
    /// by a newer schema version than the reader's.
    Decode {
        /// The segment file.
        path: PathBuf,
        /// The record's offset in it.
        offset: u64,
        /// Why it does not decode.
        reason: String,
    },
    /// The segment files do not match the manifest (a segment missing, or a sealed one resized).
    Layout {
        /// The file in question.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A segment or manifest of another format version than this build reads.
    Version {
        /// The file.
        path: PathBuf,
        /// Which version it is, and what to do.
        reason: String,
    },
    /// Another [`MasterDataset`] (or [`repair`]) has this directory open.
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// An event that cannot be encoded.
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
            Error::Layout { path, reason } | Error::Version { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
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
            Error::Corrupt { .. }
            | Error::Decode { .. }
            | Error::Layout { .. }
            | Error::Version { .. } => io::ErrorKind::InvalidData,
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
    /// The schema version of the events, written at the start of every record's payload.
    /// Raise it when the event type changes (adding trailing fields with `#[serde(default)]`
    /// keeps older records readable); a reader refuses records of a version above its own, so
    /// an older build never misreads newer events. Replays through the dataset read up to this
    /// version.
    pub schema_version: u32,
}

impl Default for MasterOptions {
    fn default() -> Self {
        MasterOptions {
            segment_bytes: 64 << 20,
            schema_version: 1,
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
    /// Bytes of those records, frames included (headers and commit markers excluded).
    pub bytes: u64,
    /// Bytes cut off the end of the last segment (an unacknowledged tail); 0 after a clean
    /// shutdown.
    pub truncated_bytes: u64,
    /// Where the unacknowledged tail was, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Files a crash left under a temporary name, removed.
    pub removed_temp_files: u64,
}

/// The end of a group commit that never finished, found and cut off by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where it was cut: the end of its last committed group (or its header).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// What was found instead of a whole, committed group.
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
    /// Bytes written for them, frames included (the group's commit marker excluded).
    pub bytes: u64,
}

/// Counters of a [`MasterDataset`], for metrics; read them with
/// [`Metrics::get`](crate::metrics::Metrics::get).
#[derive(Debug, Default)]
pub struct MasterCounters {
    /// Records in the dataset that are durable.
    pub records: AtomicU64,
    /// Bytes of those records, frames included (commit markers excluded).
    pub bytes: AtomicU64,
    /// Segment files, sealed and the one being appended to.
    pub segments: AtomicU64,
    /// Appends acknowledged since the dataset was opened.
    pub appends: AtomicU64,
    /// Group commits since the dataset was opened: each is one fsync of appended data (the
    /// fsyncs of a rollover's new files are not counted).
    pub fsyncs: AtomicU64,
    /// Bytes of unacknowledged tail cut off when the dataset was opened.
    pub truncated_bytes: AtomicU64,
}
