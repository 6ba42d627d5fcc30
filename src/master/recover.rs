//! Recovery when a dataset is opened (cutting off an unacknowledged tail), and [`repair`]
//! (cutting the log after its last whole committed group when it is damaged).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::dataset::Writer;
use super::format::{self, HEADER_BYTES, MARKER_BYTES, SealedSegment, io_at};
use super::replay::{VerifyReport, verify_with};
use super::segment::{BadFrame, Frame, GroupFrame, SegmentReader};
use super::storage::{Access, Disk, Storage};
use super::{Error, Result, TornTail};

/// Scans the unsealed last segment `id`, cuts off its unacknowledged tail if it has one, and
/// opens it for appending.
pub(super) fn recover_segment(
    storage: Arc<dyn Storage>,
    dir: &Path,
    id: u64,
    sealed: Vec<SealedSegment>,
) -> Result<(Writer, Option<TornTail>)> {
    let mut reader = SegmentReader::open(&*storage, dir, id, None)?;
    let (mut records, mut groups) = (0, 0);
    let bad = loop {
        match reader.next_group()? {
            GroupFrame::Committed(group) => {
                records += group.records;
                groups += 1;
            }
            GroupFrame::End => break None,
            GroupFrame::Bad { start, bad } => break Some((start, reader.judge_tail(start, bad)?)),
        }
    };
    let path = reader.path().to_path_buf();
    let end = reader.end();
    drop(reader);

    let mut file = storage.open(&path, Access::Append).map_err(io_at(&path))?;
    let (valid, torn) = match bad {
        None => (end, None),
        Some((valid, bad)) => {
            file.set_len(valid).map_err(io_at(&path))?;
            file.sync_data().map_err(io_at(&path))?;
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
                "cut off the unacknowledged tail of the master dataset: {}",
                torn.reason
            );
            (valid, Some(torn))
        }
    };
    let writer = Writer {
        storage,
        dir: dir.to_path_buf(),
        file,
        id,
        bytes: valid,
        records,
        groups,
        sealed,
    };
    Ok((writer, torn))
}

/// A problem [`repair`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file (or the missing one).
    pub path: PathBuf,
    /// Where in it the damage starts.
    pub offset: u64,
    /// What was found there.
    pub reason: String,
}

/// A segment file [`repair`] cut short or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The segment file.
    pub path: PathBuf,
    /// Where it was cut: the end of its last committed group; 0 if it was removed.
    pub offset: u64,
    /// Bytes cut off (the whole file's if removed).
    pub bytes: u64,
    /// Records in the bytes cut off: those of committed groups, a damaged group's as its commit
    /// marker declares, and, for a group whose marker is lost too (a torn tail, say), its whole
    /// records before the damage.
    pub records: u64,
    /// Whether `records` is exact: `false` if a group without a readable marker may have had
    /// more records past its damage.
    pub records_exact: bool,
    /// Whether the file was removed rather than cut short.
    pub removed: bool,
}

/// What [`repair`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The problems found, in the order of the log: a manifest that cannot be read or that
    /// disagrees with whole segments (rewritten from the segments), then the first damage to
    /// the segments (where the log was cut). Empty if the dataset was sound, though an
    /// unacknowledged tail may still have been cut.
    pub damage: Vec<Damage>,
    /// The segment files cut short or removed, in log order.
    pub cuts: Vec<Cut>,
    /// Whether the manifest was rewritten.
    pub manifest_rewritten: bool,
    /// Files a crash left under a temporary name, removed.
    pub removed_temp_files: u64,
    /// The dataset after the repair, as [`verify`](super::verify) reports it.
    pub kept: VerifyReport,
}

impl RepairReport {
    /// Bytes cut off or removed in all.
    pub fn bytes_cut(&self) -> u64 {
        self.cuts.iter().map(|c| c.bytes).sum()
    }

    /// Records cut off or removed in all (see [`Cut::records`]).
    pub fn records_cut(&self) -> u64 {
        self.cuts.iter().map(|c| c.records).sum()
    }

    /// Whether [`records_cut`](Self::records_cut) is exact (see [`Cut::records_exact`]).
    pub fn records_exact(&self) -> bool {
        self.cuts.iter().all(|c| c.records_exact)
    }

    /// Whether the repair changed anything on disk.
    pub fn changed(&self) -> bool {
        !self.cuts.is_empty() || self.manifest_rewritten || self.removed_temp_files > 0
    }
}

/// Repairs the master dataset in `dir` on the file system: cuts the log after its last whole
/// committed group before the first damage, and reports exactly what was cut.
///
/// The segment holding the first damage is cut at the end of its last committed group before
/// the damage (removed if its header is damaged) and becomes the segment appended to; every
/// later segment is removed; an unacknowledged tail of the last segment is cut as opening does;
/// the manifest is rewritten atomically if it changed (a manifest that cannot be read is rebuilt
/// from the segments, which are all there is to it). Events after the damage are lost: this is
/// for an operator who has decided that a shorter log is better than none.
///
/// Takes the writer lock, so it fails with [`Error::Locked`] while a
/// [`MasterDataset`](super::MasterDataset) has the directory open. A directory of another format
/// version is refused ([`Error::Version`]) and left alone. Running it again after a crash during
/// a repair finishes the repair.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport> {
    repair_with(&Disk, dir.as_ref())
}

/// [`repair`] on any [`Storage`].
pub fn repair_with(storage: &dyn Storage, dir: &Path) -> Result<RepairReport> {
    let _lock = format::lock_dir(storage, dir)?;
    let mut report = RepairReport {
        removed_temp_files: format::remove_temp_files(storage, dir)?,
        ..RepairReport::default()
    };
    let manifest = match format::read_manifest(storage, dir) {
        Ok(manifest) => Some(manifest),
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => {
            report.damage.push(Damage {
                path,
                offset,
                reason: format!("{reason} (rebuilt from the segments)"),
            });
            None
        }
        Err(e) => return Err(e),
    };
    let ids = format::segment_ids(storage, dir)?;

    // Decide first, then change the files, so that the report counts what was there.
    let mut sealed = Vec::new();
    // The segment to cut short (its id and the length to keep), and the ones to remove.
    let mut cut: Option<(u64, u64)> = None;
    let mut removed = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        if !removed.is_empty() || cut.is_some() {
            removed.push(id);
            continue;
        }
        if id != i as u64 {
            report.damage.push(Damage {
                path: format::segment_path(dir, i as u64),
                offset: 0,
                reason: format!("segment {i} is missing, yet segment {id} exists"),
            });
            removed.push(id);
            continue;
        }
        let entry = manifest.as_ref().and_then(|m| m.get(i)).copied();
        let is_last = i + 1 == ids.len();
        match check_segment(storage, dir, id, entry, is_last)? {
            Checked::Whole(segment) => {
                if let Some(entry) = entry
                    && entry != segment
                {
                    report.damage.push(Damage {
                        path: dir.join(format::MANIFEST_NAME),
                        offset: 0,
                        reason: format!(
                            "the manifest says segment {id} holds {} records in {} groups, it \
                             holds {} in {} (rewritten from the segment)",
                            entry.records, entry.groups, segment.records, segment.groups
                        ),
                    });
                }
                if !is_last || entry.is_some() {
                    sealed.push(segment);
                }
            }
            Checked::Tail(segment) => cut = Some((id, segment.bytes)),
            Checked::Damaged(kept, damage) => {
                report.damage.push(damage);
                match kept {
                    Some(segment) => cut = Some((id, segment.bytes)),
                    None => removed.push(id),
                }
            }
        }
    }
    if let Some(manifest) = &manifest
        && removed.is_empty()
        && cut.is_none()
        && manifest.len() > ids.len()
    {
        report.damage.push(Damage {
            path: format::segment_path(dir, ids.len() as u64),
            offset: 0,
            reason: "the manifest lists this sealed segment, but it is missing".into(),
        });
    }

    if let Some((id, keep)) = cut {
        let path = format::segment_path(dir, id);
        let len = file_len(storage, &path)?;
        if keep < len {
            let (records, records_exact) = count_records(storage, dir, id, keep)?;
            report.cuts.push(Cut {
                records,
                records_exact,
                path,
                offset: keep,
                bytes: len - keep,
                removed: false,
            });
        }
    }
    for &id in &removed {
        let path = format::segment_path(dir, id);
        let (records, records_exact) = count_records(storage, dir, id, HEADER_BYTES)?;
        report.cuts.push(Cut {
            records,
            records_exact,
            bytes: file_len(storage, &path)?,
            path,
            offset: 0,
            removed: true,
        });
    }

    // The last segment goes first, so no step leaves a gap in the ids.
    for cut in report.cuts.iter().rev() {
        if cut.removed {
            storage.remove(&cut.path).map_err(io_at(&cut.path))?;
        } else {
            let mut file = storage
                .open(&cut.path, Access::Append)
                .map_err(io_at(&cut.path))?;
            file.set_len(cut.offset).map_err(io_at(&cut.path))?;
            file.sync_data().map_err(io_at(&cut.path))?;
        }
    }
    if !removed.is_empty() {
        format::sync_dir(storage, dir)?;
    }
    if manifest.as_ref() != Some(&sealed) {
        format::write_manifest(storage, dir, &sealed)?;
        report.manifest_rewritten = true;
    }
    report.kept = verify_with(storage, dir)?;
    if report.changed() {
        info!(
            dir = %dir.display(),
            bytes_cut = report.bytes_cut(),
            records_cut = report.records_cut(),
            manifest_rewritten = report.manifest_rewritten,
            "repaired the master dataset"
        );
    }
    Ok(report)
}

/// What [`check_segment`] found.
enum Checked {
    /// Whole: committed groups to its end (and, if sealed, as the manifest says but maybe for
    /// its counts).
    Whole(SealedSegment),
    /// Whole up to an unacknowledged tail (the last, unsealed segment only); the part to keep.
    Tail(SealedSegment),
    /// Damaged; the whole part before the damage (`None`: the header is damaged).
    Damaged(Option<SealedSegment>, Damage),
}

/// Reads segment `id` group by group (a sealed one up to the length the manifest entry gives)
/// and says how much of it is whole.
fn check_segment(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
    entry: Option<SealedSegment>,
    is_last: bool,
) -> Result<Checked> {
    let mut reader = match SegmentReader::open(storage, dir, id, None) {
        Ok(reader) => reader,
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => {
            return Ok(Checked::Damaged(
                None,
                Damage {
                    path,
                    offset,
                    reason,
                },
            ));
        }
        Err(e) => return Err(e),
    };
    let len = reader.end();
    if let Some(entry) = entry {
        reader.limit(entry.bytes.clamp(HEADER_BYTES, len));
    }
    let mut whole = SealedSegment {
        id,
        bytes: HEADER_BYTES,
        records: 0,
        groups: 0,
    };
    let damage = |offset, reason| Damage {
        path: format::segment_path(dir, id),
        offset,
        reason,
    };
    loop {
        match reader.next_group()? {
            GroupFrame::Committed(group) => {
                whole.bytes = group.end();
                whole.records += group.records;
                whole.groups += 1;
            }
            GroupFrame::End => break,
            GroupFrame::Bad { start, bad } if is_last && entry.is_none() => {
                return match reader.judge_tail(start, bad) {
                    Ok(_) => Ok(Checked::Tail(whole)),
                    Err(Error::Corrupt { offset, reason, .. }) => {
                        Ok(Checked::Damaged(Some(whole), damage(offset, reason)))
                    }
                    Err(e) => Err(e),
                };
            }
            GroupFrame::Bad {
                bad: BadFrame { offset, reason },
                ..
            } => return Ok(Checked::Damaged(Some(whole), damage(offset, reason))),
        }
    }
    match entry {
        Some(entry) if entry.bytes != len => {
            let reason = format!(
                "sealed segment is {len} bytes, the manifest says {}",
                entry.bytes
            );
            Ok(Checked::Damaged(
                Some(whole),
                damage(len.min(entry.bytes), reason),
            ))
        }
        _ => Ok(Checked::Whole(whole)),
    }
}

fn file_len(storage: &dyn Storage, path: &Path) -> Result<u64> {
    storage
        .open(path, Access::Read)
        .and_then(|file| file.len())
        .map_err(io_at(path))
}

/// Records of segment `id` from `from` on: those of committed groups (found past damage by
/// their markers), a damaged group's as its marker declares, and where a group's marker is lost
/// too, its whole records before the damage; then the count is a lower bound, and `false` comes
/// with it.
fn count_records(storage: &dyn Storage, dir: &Path, id: u64, from: u64) -> Result<(u64, bool)> {
    let mut reader = match SegmentReader::open(storage, dir, id, None) {
        Ok(reader) => reader,
        Err(Error::Corrupt { .. }) => return Ok((0, false)),
        Err(e) => return Err(e),
    };
    reader.seek(from);
    let (mut records, mut exact) = (0, true);
    loop {
        let (start, bad) = match reader.next_group()? {
            GroupFrame::Committed(group) => {
                records += group.records;
                continue;
            }
            GroupFrame::End => return Ok((records, exact)),
            GroupFrame::Bad { start, bad } => (start, bad),
        };
        let next = reader.find_committed_group(bad.offset + 1)?;
        let end = next.map_or(reader.end(), |group| group.start);
        let declared = match end.checked_sub(MARKER_BYTES) {
            Some(at) => reader
                .marker_at(at)?
                .filter(|marker| at.checked_sub(marker.bytes) == Some(start)),
            None => None,
        };
        match declared {
            Some(marker) => records += marker.records,
            None => {
                records += whole_records(&mut reader, start)?;
                exact = false;
            }
        }
        match next {
            // Always forward, whatever a marker claims.
            Some(group) if group.start > start => reader.seek(group.start),
            Some(group) => {
                records += group.records;
                exact = false;
                reader.seek(group.end());
            }
            None => return Ok((records, exact)),
        }
    }
}

/// Whole records from `from` on, up to the first frame that is not a record.
fn whole_records(reader: &mut SegmentReader, from: u64) -> Result<u64> {
    reader.seek(from);
    let mut records = 0;
    while let Frame::Record(_) = reader.next()? {
        records += 1;
    }
    Ok(records)
}
