//! The bytes on disk: segment headers, record and commit-marker frames, payloads, the manifest,
//! and the directory layout.
//!
//! Everything read from disk is checked before it is believed: a length is compared with
//! [`MAX_RECORD_BYTES`] and with the bytes left in the file before anything is allocated for it,
//! and a payload is handed on only once its checksum matches.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::storage::{Access, Storage, StorageFile, StorageLock, read_exact_at};
use super::{Error, Result};

/// The first bytes of every segment file.
const SEGMENT_MAGIC: [u8; 8] = *b"LFSEGMNT";
/// The first bytes of the manifest.
const MANIFEST_MAGIC: [u8; 8] = *b"LFMANFST";
/// The version of both layouts; a reader refuses any other.
pub(super) const FORMAT_VERSION: u32 = 2;

/// Bytes of the header at the start of every segment file.
pub const HEADER_BYTES: u64 = 24;
/// Bytes of the frame before every record's payload: its length and its checksum.
pub const FRAME_BYTES: u64 = 8;
/// The largest payload a record may have. A length above it read from disk is corruption, so a
/// damaged length can never make a reader allocate more than this.
pub const MAX_RECORD_BYTES: u32 = 1 << 20;
/// The flag in a frame's length word that makes it a commit marker rather than a record.
pub(super) const MARKER_FLAG: u32 = 1 << 31;
/// Bytes of a commit marker's payload: the group's length (`u64`), record count (`u64`) and
/// CRC32C (`u32`).
const MARKER_PAYLOAD_BYTES: u32 = 20;
/// The length word of every commit marker.
pub(super) const MARKER_WORD: u32 = MARKER_FLAG | MARKER_PAYLOAD_BYTES;
/// Bytes of a whole commit marker, frame included.
pub const MARKER_BYTES: u64 = FRAME_BYTES + MARKER_PAYLOAD_BYTES as u64;

/// The manifest is tiny (32 bytes a segment); anything far larger is not a manifest.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// Bytes of one manifest entry: id, length, records, groups.
const MANIFEST_ENTRY_BYTES: u64 = 32;
pub(super) const MANIFEST_NAME: &str = "MANIFEST";
const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
const LOCK_NAME: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".tmp";
/// Segment ids are written with this many digits so that names sort like numbers.
const SEGMENT_DIGITS: usize = 20;

/// A segment the manifest lists as sealed: complete and never written again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SealedSegment {
    pub id: u64,
    /// The file's length, header included.
    pub bytes: u64,
    /// Records in it (commit markers are not records).
    pub records: u64,
    /// Group commits in it: one commit marker each.
    pub groups: u64,
}

impl SealedSegment {
    /// Bytes of its records, frames included (header and commit markers excluded).
    pub fn record_bytes(&self) -> u64 {
        self.bytes - HEADER_BYTES - self.groups * MARKER_BYTES
    }
}

/// Wraps an I/O error with the path it happened on.
pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// The file name of segment `id`.
pub(super) fn segment_name(id: u64) -> String {
    format!("{id:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

/// The path of segment `id` in `dir`.
pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// The id of a segment file name, or `None` for any other file.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The ids of the segment files in `dir`, in order.
pub(super) fn segment_ids(storage: &dyn Storage, dir: &Path) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = storage
        .list(dir)
        .map_err(io_at(dir))?
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Appends one record (frame and payload) for `event` to `out`; returns its length in bytes.
///
/// The payload is the schema version as a MessagePack unsigned integer, then the event in
/// MessagePack with structs as positional arrays (`rmp_serde`'s compact form).
pub(super) fn encode_record<E: Serialize>(
    out: &mut Vec<u8>,
    schema_version: u32,
    event: &E,
) -> Result<u64> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES as usize]);
    let encoded = rmp_serde::encode::write(&mut *out, &schema_version)
        .and_then(|()| rmp_serde::encode::write(&mut *out, event));
    if let Err(e) = encoded {
        out.truncate(start);
        return Err(Error::Encode(e.to_string()));
    }
    let payload_len = out.len() - start - FRAME_BYTES as usize;
    let len = match u32::try_from(payload_len) {
        Ok(len) if len <= MAX_RECORD_BYTES => len,
        _ => {
            out.truncate(start);
            return Err(Error::RecordTooLarge {
                bytes: payload_len as u64,
            });
        }
    };
    let len_bytes = len.to_le_bytes();
    let crc = checksum(len_bytes, &out[start + FRAME_BYTES as usize..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(FRAME_BYTES + u64::from(len))
}

/// The checksum of a frame covers its length word too, so that a damaged length is caught even
/// when it still points inside the file.
pub(super) fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Decodes a record's payload whose checksum matched. Decoding reads the payload slice only, so
/// a length inside it (a string's, a vector's) cannot claim more memory than the record holds.
pub(super) fn decode_record<E: DeserializeOwned>(
    path: &Path,
    offset: u64,
    schema_version: u32,
    payload: &[u8],
) -> Result<E> {
    let decode_error = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    let version =
        u32::deserialize(&mut de).map_err(|e| decode_error(format!("no schema version: {e}")))?;
    if version > schema_version {
        return Err(decode_error(format!(
            "written by schema version {version}, this build reads up to {schema_version}"
        )));
    }
    E::deserialize(&mut de).map_err(|e| decode_error(e.to_string()))
}

/// What a commit marker says about the group of records before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Marker {
    /// Bytes of the group's records, frames included.
    pub bytes: u64,
    /// How many records the group has.
    pub records: u64,
    /// The CRC32C of those bytes.
    pub crc: u32,
}

impl Marker {
    /// The marker of the records `group` (whole frames, back to back).
    pub fn of(group: &[u8], records: u64) -> Marker {
        Marker {
            bytes: group.len() as u64,
            records,
            crc: crc32c::crc32c(group),
        }
    }

    /// The marker's whole frame.
    pub fn encode(&self) -> [u8; MARKER_BYTES as usize] {
        let mut out = [0; MARKER_BYTES as usize];
        let len_bytes = MARKER_WORD.to_le_bytes();
        out[..4].copy_from_slice(&len_bytes);
        out[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        out[16..24].copy_from_slice(&self.records.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc.to_le_bytes());
        let crc = checksum(len_bytes, &out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a marker's payload (whose frame checksum matched).
    pub fn decode(payload: &[u8; MARKER_PAYLOAD_BYTES as usize]) -> Marker {
        Marker {
            bytes: u64_at(payload, 0),
            records: u64_at(payload, 8),
            crc: u32_at(payload, 16),
        }
    }

    /// Whether a group with these numbers could sit between the header and `offset` at all.
    pub fn plausible(&self, offset: u64) -> bool {
        self.records > 0
            && self.records <= self.bytes / FRAME_BYTES
            && offset
                .checked_sub(HEADER_BYTES)
                .is_some_and(|room| self.bytes <= room)
    }
}

pub(super) fn encode_header(id: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16 are reserved flags, zero in version 2.
    header[16..24].copy_from_slice(&id.to_le_bytes());
    header
}

/// The error for a file of another format version.
fn version_error(path: &Path, what: &str, found: u32) -> Error {
    Error::Version {
        path: path.to_path_buf(),
        reason: if found < FORMAT_VERSION {
            format!(
                "{what} format version {found}, written by an older lambdaflow (version 1: \
                 bincode payloads, no commit markers); this build reads only version \
                 {FORMAT_VERSION}: re-import the events into a new data directory"
            )
        } else {
            format!(
                "{what} format version {found}, written by a newer lambdaflow; this build reads \
                 only version {FORMAT_VERSION}"
            )
        },
    }
}

pub(super) fn check_header(path: &Path, header: &[u8], id: u64) -> Result<()> {
    if header[..8] != SEGMENT_MAGIC {
        return Err(corrupt(path, 0, "not a segment file (bad magic)"));
    }
    let version = u32_at(header, 8);
    if version != FORMAT_VERSION {
        return Err(version_error(path, "segment", version));
    }
    if u32_at(header, 12) != 0 {
        return Err(corrupt(path, 12, "unknown segment flags"));
    }
    let found = u64_at(header, 16);
    if found != id {
        return Err(corrupt(
            path,
            16,
            format!("header names segment {found}, the file name segment {id}"),
        ));
    }
    Ok(())
}

pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Makes the directory's entries (a created, renamed or removed file) durable.
pub(super) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(io_at(dir))
}

/// Takes the directory's writer lock, held until the returned guard is dropped.
pub(super) fn lock_dir(storage: &dyn Storage, dir: &Path) -> Result<StorageLock> {
    let path = dir.join(LOCK_NAME);
    storage.lock(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            Error::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            io_at(&path)(e)
        }
    })
}

/// Removes what a crash left of a file being written under a temporary name; returns how many.
pub(super) fn remove_temp_files(storage: &dyn Storage, dir: &Path) -> Result<u64> {
    let mut removed = 0;
    for name in storage.list(dir).map_err(io_at(dir))? {
        if name.ends_with(TMP_SUFFIX) {
            let path = dir.join(name);
            storage.remove(&path).map_err(io_at(&path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(storage, dir)?;
    }
    Ok(removed)
}

/// Writes `bytes` to a new file `tmp`, makes it durable, renames it to `path` and makes the
/// rename durable: a reader sees the old file or the whole new one, never part of it. Returns
/// the file, open for appending.
fn write_atomically(
    storage: &dyn Storage,
    dir: &Path,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<Box<dyn StorageFile>> {
    let mut file = storage.create(tmp).map_err(io_at(tmp))?;
    file.append(bytes).map_err(io_at(tmp))?;
    file.sync_data().map_err(io_at(tmp))?;
    storage.rename(tmp, path).map_err(io_at(path))?;
    sync_dir(storage, dir)?;
    Ok(file)
}

/// Creates segment `id` holding only its header, under its final name only once the header is
/// durable, so that no segment file ever has a partial header. Returns it open for appending.
pub(super) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    id: u64,
) -> Result<Box<dyn StorageFile>> {
    let path = segment_path(dir, id);
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", segment_name(id)));
    // The handle still names the renamed file, and appends go after the header.
    write_atomically(storage, dir, &tmp, &path, &encode_header(id))
}

fn encode_manifest(sealed: &[SealedSegment]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + MANIFEST_ENTRY_BYTES as usize * sealed.len() + 4);
    out.extend_from_slice(&MANIFEST_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // `sealed` has at most as many entries as there are segment ids handed out in memory; the
    // manifest is refused long before its count could overflow.
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    for s in sealed {
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&s.bytes.to_le_bytes());
        out.extend_from_slice(&s.records.to_le_bytes());
        out.extend_from_slice(&s.groups.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_manifest(path: &Path, bytes: &[u8]) -> Result<Vec<SealedSegment>> {
    if bytes.len() < 20 {
        return Err(corrupt(path, 0, "manifest shorter than its header"));
    }
    if bytes[..8] != MANIFEST_MAGIC {
        return Err(corrupt(path, 0, "not a manifest (bad magic)"));
    }
    let version = u32_at(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(version_error(path, "manifest", version));
    }
    let count = u64::from(u32_at(bytes, 12));
    let expected = 16 + MANIFEST_ENTRY_BYTES * count + 4;
    if bytes.len() as u64 != expected {
        return Err(corrupt(
            path,
            12,
            format!(
                "manifest lists {count} segments, so it should be {expected} bytes, not {}",
                bytes.len()
            ),
        ));
    }
    let body = bytes.len() - 4;
    if crc32c::crc32c(&bytes[..body]) != u32_at(bytes, body) {
        return Err(corrupt(path, body as u64, "manifest checksum mismatch"));
    }
    let mut sealed = Vec::with_capacity(count as usize);
    for (i, entry) in bytes[16..body]
        .chunks_exact(MANIFEST_ENTRY_BYTES as usize)
        .enumerate()
    {
        let segment = SealedSegment {
            id: u64_at(entry, 0),
            bytes: u64_at(entry, 8),
            records: u64_at(entry, 16),
            groups: u64_at(entry, 24),
        };
        let offset = 16 + MANIFEST_ENTRY_BYTES * i as u64;
        // Segment ids are handed out 0, 1, 2, ...; a gap would be a lost segment.
        if segment.id != i as u64 {
            return Err(corrupt(
                path,
                offset,
                format!("entry {i} names segment {}", segment.id),
            ));
        }
        // Every group has at least one record and one marker; the header and all frames fit.
        let fits = segment
            .records
            .checked_mul(FRAME_BYTES)
            .zip(segment.groups.checked_mul(MARKER_BYTES))
            .and_then(|(r, g)| r.checked_add(g))
            .and_then(|framing| framing.checked_add(HEADER_BYTES))
            .is_some_and(|least| least <= segment.bytes);
        if !fits
            || segment.groups > segment.records
            || (segment.records > 0) != (segment.groups > 0)
        {
            return Err(corrupt(
                path,
                offset,
                format!(
                    "segment {} cannot hold {} records in {} groups in {} bytes",
                    segment.id, segment.records, segment.groups, segment.bytes
                ),
            ));
        }
        sealed.push(segment);
    }
    Ok(sealed)
}

/// Reads the list of sealed segments; no manifest means none is sealed yet.
pub(super) fn read_manifest(storage: &dyn Storage, dir: &Path) -> Result<Vec<SealedSegment>> {
    let path = dir.join(MANIFEST_NAME);
    let file = match storage.open(&path, Access::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(&path)(e)),
    };
    let len = file.len().map_err(io_at(&path))?;
    if len > MAX_MANIFEST_BYTES {
        return Err(corrupt(&path, 0, format!("manifest is {len} bytes")));
    }
    // The length was checked above, so this allocation is bounded.
    let mut bytes = vec![0; len as usize];
    read_exact_at(&*file, 0, &mut bytes).map_err(io_at(&path))?;
    decode_manifest(&path, &bytes)
}

/// Replaces the manifest atomically: a reader sees the old list or the new one, never a mix.
pub(super) fn write_manifest(
    storage: &dyn Storage,
    dir: &Path,
    sealed: &[SealedSegment],
) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP_NAME);
    let path = dir.join(MANIFEST_NAME);
    write_atomically(storage, dir, &tmp, &path, &encode_manifest(sealed)).map(drop)
}

/// The segments of a directory, checked against its manifest.
pub(super) struct Layout {
    /// Sealed segments, from the manifest, each checked to exist with its recorded length.
    pub sealed: Vec<SealedSegment>,
    /// The ids of the segments after them, in order: normally one, the segment being appended
    /// to. A reader racing a rollover may see two.
    pub unsealed: Vec<u64>,
}

impl Layout {
    /// Reads the manifest, then lists the directory. In that order a concurrent rollover can
    /// only make a sealed segment look unsealed, never the reverse.
    pub(super) fn read(storage: &dyn Storage, dir: &Path) -> Result<Layout> {
        let sealed = read_manifest(storage, dir)?;
        let ids = segment_ids(storage, dir)?;
        for (i, &id) in ids.iter().enumerate() {
            if id != i as u64 {
                let missing = i as u64;
                return Err(Error::Layout {
                    path: segment_path(dir, missing),
                    reason: format!("segment {missing} is missing, yet segment {id} exists"),
                });
            }
        }
        if ids.len() < sealed.len() {
            return Err(Error::Layout {
                path: segment_path(dir, ids.len() as u64),
                reason: "the manifest lists this sealed segment, but it is missing".into(),
            });
        }
        for s in &sealed {
            let path = segment_path(dir, s.id);
            let len = storage
                .open(&path, Access::Read)
                .and_then(|file| file.len())
                .map_err(io_at(&path))?;
            if len != s.bytes {
                return Err(Error::Layout {
                    path,
                    reason: format!(
                        "sealed segment is {len} bytes, the manifest says {}",
                        s.bytes
                    ),
                });
            }
        }
        let unsealed = ids[sealed.len()..].to_vec();
        Ok(Layout { sealed, unsealed })
    }
}
