//! Importing history files into the master dataset (`lambdaflow import`, `run --history`).
//!
//! Lines are parsed exactly as the batch lane parses them; bad lines (and event times too far
//! ahead of this machine's clock) are reported with their file and line number and skipped;
//! good lines are appended in large durable batches.
//!
//! An import happens once. Its events are bracketed by an [`Entry::ImportBegin`] and an
//! [`Entry::ImportEnd`] naming the file (its path, size and XXH3-128 content hash), so a file
//! already imported is skipped, a file changed since is an error unless told to append it, and
//! an import cut short by a crash resumes where it stopped: reading a file is deterministic
//! (the begin mark keeps the clock and limit it was judged by), so the events already appended
//! are the first ones the file yields again.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use super::ingest::FutureLimit;
use crate::event::{Decode, Event, Reject, Time};
use crate::history::{Share, read_share_checked};
use crate::live::wall_clock_ms;
use crate::master::{Entry, ImportMark, MasterDataset};
use crate::metrics::Metrics;
use crate::progress::Progress;

/// How an import treats what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// How far ahead of this machine's clock an event time may be.
    pub limit: FutureLimit,
    /// Append a file whose content changed since it was imported: the lines it gained if it
    /// only grew, else the whole file as new history (otherwise that is an error).
    pub append_changed: bool,
    /// How many events one durable append carries.
    pub batch: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            limit: FutureLimit::default(),
            append_changed: false,
            batch: 64 * 1024,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Files read.
    pub files: usize,
    /// Files skipped because they were imported before.
    pub skipped: usize,
    /// Events appended to the master dataset.
    pub accepted: u64,
    /// Lines rejected (each reported with its file and line number).
    pub rejected: u64,
    /// The first rejections, for a report.
    pub first_rejects: Vec<Reject>,
}

/// What the master dataset says about earlier imports.
#[derive(Default)]
struct Imports {
    /// Each import completed, with how many events it appended.
    done: Vec<(ImportMark, u64)>,
    /// The last import begun and not ended: its mark, how it judged, and how many of the
    /// file's events were taken before it stopped (by it and by the imports before it).
    open: Option<(ImportMark, Time, Option<Time>, u64)>,
}

fn earlier_imports<E: Event>(master: &MasterDataset<Entry<E>>) -> Result<Imports, String> {
    let mut imports = Imports::default();
    master
        .read_share(Share::WHOLE, |entry: Entry<E>| match entry {
            Entry::ImportBegin {
                file,
                clock,
                max_future,
                skipped,
            } => imports.open = Some((file, clock, max_future, skipped)),
            Entry::ImportEnd(file) => {
                let appended = match imports.open.take() {
                    Some((open, _, _, appended)) if open == file => appended,
                    _ => 0,
                };
                imports.done.push((file, appended));
            }
            Entry::Event(_) => {
                if let Some(open) = imports.open.as_mut() {
                    open.3 += 1;
                }
            }
            // Live input after an unfinished import: that import is abandoned, not resumable.
            Entry::Watermark(_)
            | Entry::Corrected { .. }
            | Entry::Held { .. }
            | Entry::Dropped { .. } => imports.open = None,
        })
        .map_err(|e| format!("reading the master dataset: {e}"))?;
    Ok(imports)
}

/// Identifies a file: its absolute path, size and XXH3-128 hash; and the mark its first
/// `prefix` bytes would have had, if it is at least that long.
fn mark(path: &Path, prefix: Option<u64>) -> io::Result<(ImportMark, Option<ImportMark>)> {
    let absolute = std::fs::canonicalize(path)?;
    let name = absolute.display().to_string();
    let mut file = File::open(&absolute)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0; 1 << 20];
    let mut bytes = 0u64;
    let mut before = None;
    let hex = |h: &xxhash_rust::xxh3::Xxh3| format!("{:032x}", h.digest128());
    loop {
        let want = prefix
            .filter(|p| *p > bytes)
            .map_or(buf.len() as u64, |p| (p - bytes).min(buf.len() as u64));
        let n = file.read(&mut buf[..want as usize])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        if Some(bytes) == prefix {
            before = Some(ImportMark {
                path: name.clone(),
                bytes,
                hash: hex(&hasher),
            });
        }
    }
    let whole = ImportMark {
        path: name,
        bytes,
        hash: hex(&hasher),
    };
    Ok((whole, before))
}

/// Appends every good line of `files` (read through `decode`) to `master`, durably, showing
/// progress; each file once.
pub fn import<E: Event>(
    master: &MasterDataset<Entry<E>>,
    files: &[PathBuf],
    decode: &dyn Decode<E>,
    options: ImportOptions,
) -> Result<ImportSummary, String> {
    let mut imports = earlier_imports(master)?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bytes = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let _progress = {
        let (bytes, events) = (bytes.clone(), events.clone());
        Progress::start(
            "importing",
            total,
            Box::new(move || (Metrics::get(&bytes), Metrics::get(&events), false)),
        )
    };
    let mut summary = ImportSummary {
        files: files.len(),
        ..ImportSummary::default()
    };
    for path in files {
        let unreadable = |e: io::Error| format!("cannot read {}: {e}", path.display());
        let name = std::fs::canonicalize(path).map_err(unreadable)?;
        let name = name.display().to_string();
        // The latest import of a file at this path, if any: a file that only grew since is
        // recognised by the hash of its first bytes.
        let latest = imports
            .done
            .iter()
            .rev()
            .find(|(d, _)| d.path == name)
            .cloned();
        let (file, prefix) =
            mark(path, latest.as_ref().map(|(d, _)| d.bytes)).map_err(unreadable)?;
        if imports.done.iter().any(|(d, _)| *d == file) {
            info!(file = %path.display(), "already imported; skipped");
            Metrics::add(&bytes, file.bytes);
            summary.skipped += 1;
            continue;
        }
        // A file that grew by whole lines appends only what it gained.
        let mut grown = 0;
        if let Some((before, appended)) = &latest {
            if !options.append_changed {
                return Err(format!(
                    "{} changed since it was imported ({} bytes, hash {}; now {} bytes, hash {}): \
                     pass --append-changed to append it (only the lines it gained, if it grew)",
                    path.display(),
                    before.bytes,
                    before.hash,
                    file.bytes,
                    file.hash
                ));
            }
            if prefix.as_ref() == Some(before) && ends_a_line(path, before.bytes) {
                info!(file = %path.display(), "the file grew: appending the lines it gained");
                grown = *appended;
            } else {
                info!(file = %path.display(), "the file changed: appending it as new history");
            }
        }
        // Resume an import this file began, judged as it was then; or begin one.
        let (clock, max_future, skip) = match imports.open.take() {
            Some((open, clock, max_future, appended)) if open == file => {
                info!(file = %path.display(), appended, "resuming an interrupted import");
                (clock, max_future, appended)
            }
            _ => {
                let clock = wall_clock_ms();
                let max_future = options.limit.max_future.map(|d| d.as_millis() as Time);
                master
                    .append(&[Entry::ImportBegin {
                        file: file.clone(),
                        clock,
                        max_future,
                        skipped: grown,
                    }])
                    .map_err(|e| format!("appending to the master dataset: {e}"))?;
                (clock, max_future, grown)
            }
        };
        let limit = FutureLimit {
            max_future: max_future.map(Duration::from_millis),
        };
        let stats = import_file(
            master,
            path,
            decode,
            (limit, clock, options.batch.max(1)),
            skip,
            (&bytes, &events),
            &mut summary,
        )?;
        master
            .append(&[Entry::ImportEnd(file.clone())])
            .map_err(|e| format!("appending to the master dataset: {e}"))?;
        imports.done.push((file, stats.0 + skip));
        summary.accepted += stats.0;
        summary.rejected += stats.1;
    }
    Ok(summary)
}

/// Whether the byte before `offset` in the file is a line's end (or `offset` is 0).
fn ends_a_line(path: &Path, offset: u64) -> bool {
    use std::io::{Seek, SeekFrom};
    if offset == 0 {
        return true;
    }
    let mut byte = [0u8; 1];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(offset - 1))?;
            f.read_exact(&mut byte)
        })
        .is_ok_and(|()| byte[0] == b'\n')
}

/// Appends the events of one file after the first `skip`, checked against `limit` at `clock`,
/// in appends of `batch`; counts into `progress` (bytes, events). Returns (appended, rejected).
fn import_file<E: Event>(
    master: &MasterDataset<Entry<E>>,
    path: &Path,
    decode: &dyn Decode<E>,
    (limit, clock, batch): (FutureLimit, Time, usize),
    mut skip: u64,
    (bytes, events): (&AtomicU64, &AtomicU64),
    summary: &mut ImportSummary,
) -> Result<(u64, u64), String> {
    let mut buffer: Vec<Entry<E>> = Vec::with_capacity(batch);
    let mut failure: Option<String> = None;
    let mut appended = 0u64;
    let mut append = |buffer: &mut Vec<Entry<E>>, failure: &mut Option<String>| {
        if failure.is_none() && !buffer.is_empty() {
            match master.append(buffer) {
                Ok(receipt) => {
                    Metrics::add(events, receipt.records);
                    appended += receipt.records;
                }
                Err(e) => *failure = Some(format!("appending to the master dataset: {e}")),
            }
        }
        buffer.clear();
    };
    let report = |reject: Reject, summary: &mut ImportSummary| {
        warn!(%reject, "line rejected");
        if summary.first_rejects.len() < 100 {
            summary.first_rejects.push(reject);
        }
    };
    let stats = read_share_checked(
        path,
        Share::WHOLE,
        decode,
        |event: &E| limit.check_at(event.time(), clock),
        |event: E| {
            if skip > 0 {
                skip -= 1;
                return;
            }
            buffer.push(Entry::Event(event));
            if buffer.len() >= batch {
                append(&mut buffer, &mut failure);
            }
        },
        |reject| report(reject, summary),
    )
    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    append(&mut buffer, &mut failure);
    if let Some(failure) = failure {
        return Err(failure);
    }
    Metrics::add(bytes, stats.bytes);
    Ok((appended, stats.rejected))
}
