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
use crate::event::{Event, Reject, Time};
use crate::history::{Share, read_share_checked};
use crate::live::wall_clock_ms;
use crate::master::{Entry, ImportMark, MasterDataset};
use crate::metrics::Metrics;
use crate::progress::Progress;

/// How many events one durable append carries during an import.
const IMPORT_BATCH: usize = 64 * 1024;

/// How an import treats what it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// How far ahead of this machine's clock an event time may be.
    pub limit: FutureLimit,
    /// Append a file whose content changed since it was imported, as new history (otherwise
    /// that is an error).
    pub append_changed: bool,
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
    done: Vec<ImportMark>,
    /// The last import begun and not ended: its mark, how it judged, and how many events it
    /// appended before it stopped.
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
            } => imports.open = Some((file, clock, max_future, 0)),
            Entry::ImportEnd(file) => {
                imports.open = None;
                imports.done.push(file);
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

/// Identifies a file: its absolute path, size and XXH3-128 hash.
fn mark(path: &Path) -> io::Result<ImportMark> {
    let absolute = std::fs::canonicalize(path)?;
    let mut file = File::open(&absolute)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(ImportMark {
        path: absolute.display().to_string(),
        bytes,
        hash: format!("{:032x}", hasher.digest128()),
    })
}

/// Appends every good line of `files` to `master`, durably, showing progress; each file once.
pub fn import<E: Event>(
    master: &MasterDataset<Entry<E>>,
    files: &[PathBuf],
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
        let file = mark(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if imports.done.contains(&file) {
            info!(file = %path.display(), "already imported; skipped");
            Metrics::add(&bytes, file.bytes);
            summary.skipped += 1;
            continue;
        }
        if let Some(before) = imports.done.iter().find(|d| d.path == file.path)
            && !options.append_changed
        {
            return Err(format!(
                "{} changed since it was imported ({} bytes, hash {}; now {} bytes, hash {}): \
                 pass --append-changed to append it as new history",
                path.display(),
                before.bytes,
                before.hash,
                file.bytes,
                file.hash
            ));
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
                    }])
                    .map_err(|e| format!("appending to the master dataset: {e}"))?;
                (clock, max_future, 0)
            }
        };
        let limit = FutureLimit {
            max_future: max_future.map(Duration::from_millis),
        };
        let stats = import_file(
            master,
            path,
            limit,
            clock,
            skip,
            &bytes,
            &events,
            &mut summary,
        )?;
        master
            .append(&[Entry::ImportEnd(file.clone())])
            .map_err(|e| format!("appending to the master dataset: {e}"))?;
        imports.done.push(file);
        summary.accepted += stats.0;
        summary.rejected += stats.1;
    }
    Ok(summary)
}

/// Appends the events of one file after the first `skip`; returns (appended, rejected).
#[allow(clippy::too_many_arguments)]
fn import_file<E: Event>(
    master: &MasterDataset<Entry<E>>,
    path: &Path,
    limit: FutureLimit,
    clock: Time,
    mut skip: u64,
    bytes: &AtomicU64,
    events: &AtomicU64,
    summary: &mut ImportSummary,
) -> Result<(u64, u64), String> {
    let mut buffer: Vec<Entry<E>> = Vec::with_capacity(IMPORT_BATCH);
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
        |event: &E| limit.check_at(event.time(), clock),
        |event: E| {
            if skip > 0 {
                skip -= 1;
                return;
            }
            buffer.push(Entry::Event(event));
            if buffer.len() >= IMPORT_BATCH {
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
