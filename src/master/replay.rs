//! Replaying the master dataset: every worker reads its share of the records, in log order.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use tracing::debug;

use super::format::{self, FRAME_BYTES, Frame, Layout, SegmentReader};
use super::{Error, Result};
use crate::history::Share;

/// How often a share adds to a progress counter: often enough for a display, seldom enough
/// that workers sharing a counter do not contend on it.
const PROGRESS_STEP: u64 = 1 << 20;

/// What reading a share of the master dataset produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records of this share, each decoded and handed on as an event.
    pub records: u64,
    /// Bytes of those records, frames included; over all shares of a replay, these add up to
    /// [`MasterDataset::bytes`](super::MasterDataset::bytes).
    pub bytes: u64,
    /// Segment files read.
    pub segments: u64,
    /// Bytes after the last whole record of the last segment that were not read: an append in
    /// flight, or a torn tail the next [`open`](super::MasterDataset::open) will cut off.
    pub unfinished_bytes: u64,
}

/// Replays share `share` of the master dataset in `dir`: hands each event of the share to
/// `on_event`, in log order. Share `i` of `n` takes the records at positions `i, i + n, ...`
/// of the whole log.
///
/// Reads every record that was whole when the call began (and maybe a few more); runs safely
/// while a [`MasterDataset`](super::MasterDataset) appends. Fails on damage anywhere but the
/// unfinished end of the last segment, naming the file and byte offset.
pub fn read_share<E: DeserializeOwned>(
    dir: impl AsRef<Path>,
    share: Share,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    read_share_with_progress(dir, share, &AtomicU64::new(0), on_event)
}

/// [`read_share`], also adding the bytes of this share's records to `progress` as it goes (for
/// instance to [`Metrics::history_bytes`](crate::metrics::Metrics::history_bytes)), to compare
/// with [`MasterDataset::bytes`](super::MasterDataset::bytes).
pub fn read_share_with_progress<E: DeserializeOwned>(
    dir: impl AsRef<Path>,
    share: Share,
    progress: &AtomicU64,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    read_share_until(dir.as_ref(), share, progress, None, on_event)
}

/// [`read_share_with_progress`], stopping at `until` (a segment id and a length in it) if
/// given: the durable end of the log as its writer knows it.
pub(super) fn read_share_until<E: DeserializeOwned>(
    dir: &Path,
    share: Share,
    progress: &AtomicU64,
    until: Option<(u64, u64)>,
    mut on_event: impl FnMut(E),
) -> Result<ReadStats> {
    if share.count == 0 || share.index >= share.count {
        return Err(Error::InvalidShare(share));
    }
    let (index, count) = (share.index as u64, share.count as u64);
    let mut unreported = 0;
    let stats = scan(dir, until, |position, reader, offset| {
        if position % count != index {
            return Ok(None);
        }
        let event = format::decode_record(reader.path(), offset, reader.payload())?;
        on_event(event);
        let bytes = FRAME_BYTES + reader.payload().len() as u64;
        unreported += bytes;
        if unreported >= PROGRESS_STEP {
            progress.fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
        }
        Ok(Some(bytes))
    });
    progress.fetch_add(unreported, Ordering::Relaxed);
    stats
}

/// Checks every record of the master dataset in `dir` (frames, checksums, the manifest's
/// counts) without decoding any: a scrub of the sealed segments, which opening does not read.
/// The stats count every record.
pub fn verify(dir: impl AsRef<Path>) -> Result<ReadStats> {
    scan(dir.as_ref(), None, |_, reader, _| {
        Ok(Some(FRAME_BYTES + reader.payload().len() as u64))
    })
}

/// Reads every whole record of every segment in order (up to `until`, a segment id and a length
/// in it, if given), handing `on_record` its position in the log, the reader (holding its
/// payload) and its offset in its file. `on_record` returns the bytes to count if the record
/// belongs to the caller.
fn scan(
    dir: &Path,
    until: Option<(u64, u64)>,
    mut on_record: impl FnMut(u64, &SegmentReader, u64) -> Result<Option<u64>>,
) -> Result<ReadStats> {
    let layout = Layout::read(dir)?;
    let mut stats = ReadStats::default();
    let mut position = 0u64;
    let segments = layout
        .sealed
        .iter()
        .map(|s| (s.id, Some((s.bytes, s.records))))
        .chain(layout.unsealed.iter().map(|&id| (id, None)));
    let last = layout.sealed.len() + layout.unsealed.len();
    for (n, (id, mut sealed)) in segments.enumerate() {
        let mut is_last = n + 1 == last;
        let mut end = sealed.map(|(bytes, _)| bytes);
        if let Some((until_id, until_bytes)) = until {
            if id > until_id {
                break;
            }
            if id == until_id {
                // Everything up to there is durable, so it is read strictly, as if sealed; the
                // manifest's count (if the segment was sealed since) covers more.
                end = Some(until_bytes);
                sealed = None;
                is_last = false;
            }
        }
        let mut reader = SegmentReader::open(dir, id, end)?;
        stats.segments += 1;
        let mut records = 0u64;
        loop {
            match reader.next()? {
                Frame::Record(offset) => {
                    if let Some(bytes) = on_record(position, &reader, offset)? {
                        stats.records += 1;
                        stats.bytes += bytes;
                    }
                    position += 1;
                    records += 1;
                }
                Frame::End => break,
                // Only the last segment can be unfinished: a segment before it was complete
                // before the next one was created.
                Frame::Bad(bad) if is_last && sealed.is_none() => {
                    let bad = reader.judge_tail(bad)?;
                    stats.unfinished_bytes = reader.end() - bad.offset;
                    debug!(
                        path = %reader.path().display(),
                        offset = bad.offset,
                        "master dataset replay stops before an unfinished record: {}",
                        bad.reason
                    );
                    break;
                }
                Frame::Bad(bad) => return Err(reader.error(bad)),
            }
        }
        if let Some((_, expected)) = sealed
            && records != expected
        {
            return Err(Error::Corrupt {
                path: reader.path().to_path_buf(),
                offset: reader.position(),
                reason: format!(
                    "sealed segment holds {records} records, the manifest says {expected}"
                ),
            });
        }
    }
    Ok(stats)
}
