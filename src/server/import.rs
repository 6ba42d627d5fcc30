//! Importing history files into the master dataset (`lambdaflow import`, `run --history`).
//!
//! Lines are parsed exactly as the batch lane parses them; bad lines are reported with their
//! file and line number and skipped; good lines are appended in large durable batches.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use tracing::warn;

use crate::event::{Event, Reject};
use crate::history::{Share, read_share};
use crate::master::MasterDataset;
use crate::metrics::Metrics;
use crate::progress::Progress;

/// How many events one durable append carries during an import.
const IMPORT_BATCH: usize = 64 * 1024;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Files read.
    pub files: usize,
    /// Events appended to the master dataset.
    pub accepted: u64,
    /// Lines rejected (each reported with its file and line number).
    pub rejected: u64,
    /// The first rejections, for a report.
    pub first_rejects: Vec<Reject>,
}

/// Appends every good line of `files` to `master`, durably, showing progress.
pub fn import<E: Event>(
    master: &MasterDataset<E>,
    files: &[PathBuf],
) -> Result<ImportSummary, String> {
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
        let mut buffer: Vec<E> = Vec::with_capacity(IMPORT_BATCH);
        let mut failure: Option<String> = None;
        let append = |buffer: &mut Vec<E>, failure: &mut Option<String>| {
            if failure.is_none() && !buffer.is_empty() {
                match master.append(buffer) {
                    Ok(receipt) => {
                        Metrics::add(&events, receipt.records);
                        Metrics::add(&bytes, receipt.bytes);
                    }
                    Err(e) => *failure = Some(format!("appending to the master dataset: {e}")),
                }
            }
            buffer.clear();
        };
        let stats = read_share(
            path,
            Share::WHOLE,
            |event| {
                buffer.push(event);
                if buffer.len() >= IMPORT_BATCH {
                    append(&mut buffer, &mut failure);
                }
            },
            |reject| {
                warn!(%reject, "line rejected");
                if summary.first_rejects.len() < 100 {
                    summary.first_rejects.push(reject);
                }
            },
        )
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        append(&mut buffer, &mut failure);
        if let Some(failure) = failure {
            return Err(failure);
        }
        summary.accepted += stats.accepted;
        summary.rejected += stats.rejected;
    }
    Ok(summary)
}
