//! Replaying the master dataset: every worker reads its share of the records, in log order, and
//! only records of committed groups.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::format::{self, FRAME_BYTES, HEADER_BYTES, Layout, corrupt};
use super::segment::{Frame, Group, GroupFrame, SegmentReader};
use super::storage::{Disk, Storage};
use super::{Error, MasterOptions, Result};
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
    /// Bytes after the last committed group of the last segment that were not read: an append
    /// in flight, or an unacknowledged tail the next [`open`](super::MasterDataset::open) will
    /// cut off.
    pub unfinished_bytes: u64,
}

/// What [`verify`] checked: every frame, checksum and commit marker of every segment, and the
/// sealed segments against the manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u64,
    /// Of those, the sealed ones (listed in the manifest).
    pub sealed_segments: u64,
    /// Committed groups (group commits, one commit marker each).
    pub groups: u64,
    /// Records in those groups.
    pub records: u64,
    /// Bytes of those records, frames included: [`MasterDataset::bytes`] of the dataset.
    ///
    /// [`MasterDataset::bytes`]: super::MasterDataset::bytes
    pub bytes: u64,
    /// Bytes of segment files read: headers, records, commit markers and unfinished bytes.
    pub file_bytes: u64,
    /// Bytes after the last committed group of the last segment: an append in flight, or an
    /// unacknowledged tail that opening the dataset cuts off. Not damage.
    pub unfinished_bytes: u64,
}

/// Replays share `share` of the master dataset in `dir`: hands each event of the share to
/// `on_event`, in log order. Share `i` of `n` takes the records at positions `i, i + n, ...`
/// of the whole log.
///
/// Reads every group that was committed when the call began (and maybe a few more), and never
/// a record of a group whose commit marker is not yet written; runs safely while a
/// [`MasterDataset`](super::MasterDataset) appends. Reads records of schema versions up to
/// [`MasterOptions::default`]'s (see [`read_share_with`] for newer ones). Fails on damage
/// anywhere but the unfinished end of the last segment, naming the file and byte offset.
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
    let schema_version = MasterOptions::default().schema_version;
    read_share_with(
        &Disk,
        dir.as_ref(),
        schema_version,
        share,
        progress,
        on_event,
    )
}

/// [`read_share_with_progress`] on any [`Storage`], reading records of schema versions up to
/// `schema_version` (a newer record is an [`Error::Decode`]).
pub fn read_share_with<E: DeserializeOwned>(
    storage: &dyn Storage,
    dir: &Path,
    schema_version: u32,
    share: Share,
    progress: &AtomicU64,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    read_between(
        storage,
        dir,
        schema_version,
        (None, None),
        share,
        progress,
        on_event,
    )
}

/// [`read_share_with`], of the records from `from` on (a [`Mark`](super::Mark)'s
/// [`position`](super::Mark::position)): what was appended after the mark. Share `i` of `n`
/// takes the records at positions `i, i + n, ...` counted from there.
pub fn read_share_from<E: DeserializeOwned>(
    storage: &dyn Storage,
    dir: &Path,
    schema_version: u32,
    from: Position,
    share: Share,
    progress: &AtomicU64,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    let at = Some((from.segment, from.offset));
    read_between(
        storage,
        dir,
        schema_version,
        (at, None),
        share,
        progress,
        on_event,
    )
}

/// [`read_share_with`], of the records before `until` (a [`Mark`](super::Mark)'s
/// [`position`](super::Mark::position)): what was there at the mark.
pub fn read_share_until<E: DeserializeOwned>(
    storage: &dyn Storage,
    dir: &Path,
    schema_version: u32,
    until: Position,
    share: Share,
    progress: &AtomicU64,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    let at = Some((until.segment, until.offset));
    read_between(
        storage,
        dir,
        schema_version,
        (None, at),
        share,
        progress,
        on_event,
    )
}

/// A point of the log as `Reading` takes it: a segment and an offset.
type At = Option<(u64, u64)>;

/// The records between two points of the log (`None`: its start, its end).
fn read_between<E: DeserializeOwned>(
    storage: &dyn Storage,
    dir: &Path,
    schema_version: u32,
    (from, until): (At, At),
    share: Share,
    progress: &AtomicU64,
    on_event: impl FnMut(E),
) -> Result<ReadStats> {
    let reading = Reading {
        storage,
        dir,
        schema_version,
        until,
        from,
    };
    reading.share(share, progress, on_event)
}

/// A point of the log between two groups: a segment and an offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The segment's id.
    pub segment: u64,
    /// The offset in it, in bytes.
    pub offset: u64,
}

/// Checks every record and commit marker of the master dataset in `dir` (frames, checksums,
/// group checksums, the manifest's lengths and counts) without decoding any: a scrub of the
/// sealed segments, which opening does not read. Fails at the first problem, naming the file
/// and byte offset. Takes no lock: it may run while a [`MasterDataset`](super::MasterDataset)
/// appends.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_with(&Disk, dir.as_ref())
}

/// [`verify`] on any [`Storage`].
pub fn verify_with(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport> {
    scan(storage, dir, None, None, |_, _, _| Ok(()))
}

/// A replay's source: where, up to which schema version, and up to where in the log.
pub(super) struct Reading<'a> {
    pub storage: &'a dyn Storage,
    pub dir: &'a Path,
    pub schema_version: u32,
    /// The durable end of the log as its writer knows it (a segment id and a length in it),
    /// if known.
    pub until: Option<(u64, u64)>,
    /// Where to start: the log from this point on (a segment id and an offset in it, at a
    /// group's boundary), or all of it.
    pub from: Option<(u64, u64)>,
}

impl Reading<'_> {
    /// Replays share `share`; see [`read_share`].
    pub(super) fn share<E: DeserializeOwned>(
        &self,
        share: Share,
        progress: &AtomicU64,
        mut on_event: impl FnMut(E),
    ) -> Result<ReadStats> {
        if share.count == 0 || share.index >= share.count {
            return Err(Error::InvalidShare(share));
        }
        let (index, count) = (share.index as u64, share.count as u64);
        let mut stats = ReadStats::default();
        let mut unreported = 0;
        let scanned = scan(
            self.storage,
            self.dir,
            self.until,
            self.from,
            |reader, group, first| {
                // Skip the second pass over a group none of whose records is this share's.
                let ahead = (index + count - first % count) % count;
                if ahead >= group.records {
                    return Ok(());
                }
                reader.seek(group.start);
                for position in first..first + group.records {
                    let Frame::Record(offset) = reader.next()? else {
                        return Err(corrupt(
                            reader.path(),
                            reader.position(),
                            "a committed group changed while it was read",
                        ));
                    };
                    if position % count != index {
                        continue;
                    }
                    let payload = reader.payload();
                    let event =
                        format::decode_record(reader.path(), offset, self.schema_version, payload)?;
                    let bytes = FRAME_BYTES + payload.len() as u64;
                    on_event(event);
                    stats.records += 1;
                    stats.bytes += bytes;
                    unreported += bytes;
                    if unreported >= PROGRESS_STEP {
                        progress.fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
                    }
                }
                Ok(())
            },
        );
        progress.fetch_add(unreported, Ordering::Relaxed);
        let scanned = scanned?;
        stats.segments = scanned.segments;
        stats.unfinished_bytes = scanned.unfinished_bytes;
        Ok(stats)
    }
}

/// Reads every committed group of every segment in order (from `from` and up to `until`, each
/// a segment id and an offset in it, if given), handing `on_group` the reader, the group and
/// the position of its first record among those read; the reader may be moved, and is put
/// after the group's marker again.
fn scan(
    storage: &dyn Storage,
    dir: &Path,
    until: Option<(u64, u64)>,
    from: Option<(u64, u64)>,
    mut on_group: impl FnMut(&mut SegmentReader, &Group, u64) -> Result<()>,
) -> Result<VerifyReport> {
    let layout = Layout::read(storage, dir)?;
    let mut report = VerifyReport::default();
    let segments = layout
        .sealed
        .iter()
        .map(|s| (s.id, Some(*s)))
        .chain(layout.unsealed.iter().map(|&id| (id, None)));
    let last = layout.sealed.len() + layout.unsealed.len();
    for (n, (id, mut sealed)) in segments.enumerate() {
        if from.is_some_and(|(from_id, _)| id < from_id) {
            continue;
        }
        let mut is_last = n + 1 == last;
        let mut end = sealed.map(|s| s.bytes);
        if let Some((until_id, until_bytes)) = until {
            if id > until_id {
                break;
            }
            if id == until_id {
                // Everything up to there is durable, so it is read strictly, as if sealed; the
                // manifest's counts (if the segment was sealed since) cover more.
                end = Some(until_bytes);
                sealed = None;
                is_last = false;
            }
        }
        let mut reader = SegmentReader::open(storage, dir, id, end)?;
        if let Some((from_id, offset)) = from
            && id == from_id
        {
            // The manifest's counts are of the whole segment: part of it is not checked.
            sealed = None;
            reader.seek(offset.clamp(HEADER_BYTES, reader.end()));
        }
        report.segments += 1;
        report.sealed_segments += u64::from(sealed.is_some());
        report.file_bytes += reader.end();
        let (mut records, mut groups) = (0u64, 0u64);
        loop {
            match reader.next_group()? {
                GroupFrame::Committed(group) => {
                    on_group(&mut reader, &group, report.records)?;
                    reader.seek(group.end());
                    report.records += group.records;
                    report.bytes += group.record_bytes();
                    report.groups += 1;
                    records += group.records;
                    groups += 1;
                }
                GroupFrame::End => break,
                // Only the last segment can be unfinished: a segment before it was complete
                // before the next one was created.
                GroupFrame::Bad { start, bad } if is_last && sealed.is_none() => {
                    let bad = reader.judge_tail(start, bad)?;
                    report.unfinished_bytes = reader.end() - start;
                    debug!(
                        path = %reader.path().display(),
                        offset = start,
                        "master dataset replay stops before an unfinished group: {}",
                        bad.reason
                    );
                    break;
                }
                GroupFrame::Bad { bad, .. } => return Err(reader.error(bad)),
            }
        }
        if let Some(s) = sealed
            && (records, groups) != (s.records, s.groups)
        {
            return Err(corrupt(
                reader.path(),
                reader.position(),
                format!(
                    "sealed segment holds {records} records in {groups} groups, the manifest \
                     says {} in {}",
                    s.records, s.groups
                ),
            ));
        }
    }
    Ok(report)
}
