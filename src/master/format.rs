//! The bytes on disk: segment headers, record frames, the manifest, the directory layout, and the
//! scan that finds where a segment's whole records end.
//!
//! Everything read from disk is checked before it is believed: a length is compared with
//! [`MAX_RECORD_BYTES`] and with the bytes left in the file before anything is allocated for it,
//! and a payload is handed on only once its checksum matches.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, Result};

/// The first bytes of every segment file.
const SEGMENT_MAGIC: [u8; 8] = *b"LFSEGMNT";
/// The first bytes of the manifest.
const MANIFEST_MAGIC: [u8; 8] = *b"LFMANFST";
/// The version of both layouts; a reader refuses any other.
const FORMAT_VERSION: u32 = 1;

/// Bytes of the header at the start of every segment file.
pub const HEADER_BYTES: u64 = 24;
/// Bytes of the frame before every record's payload: its length and its checksum.
pub const FRAME_BYTES: u64 = 8;
/// The largest payload a record may have. A length above it read from disk is corruption, so a
/// damaged length can never make a reader allocate more than this.
pub const MAX_RECORD_BYTES: u32 = 1 << 20;

/// The manifest is tiny (24 bytes a segment); anything far larger is not a manifest.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;
const MANIFEST_NAME: &str = "MANIFEST";
const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
const LOCK_NAME: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".tmp";
/// Segment ids are written with this many digits so that names sort like numbers.
const SEGMENT_DIGITS: usize = 20;
/// How much of a file the resynchronising scan of [`find_whole_record`] reads at once.
const RESYNC_WINDOW: u64 = 2 * (FRAME_BYTES + MAX_RECORD_BYTES as u64);

/// A segment the manifest lists as sealed: complete and never written again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SealedSegment {
    pub id: u64,
    /// The file's length, header included.
    pub bytes: u64,
    pub records: u64,
}

/// Wraps an I/O error with the path it happened on.
pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
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

/// The id of a segment file name, or `None` for any other file.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The bincode configuration of payloads. Decoding is always bounded by the payload's length,
/// so a length inside a payload (a string's, a vector's) cannot claim more memory than the
/// record itself holds.
fn codec() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Appends one record (frame and payload) for `event` to `out`; returns its length in bytes.
pub(super) fn encode_record<E: Serialize>(out: &mut Vec<u8>, event: &E) -> Result<u64> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_BYTES as usize]);
    if let Err(e) = codec().serialize_into(&mut *out, event) {
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

/// The checksum of a record covers its length too, so that a damaged length is caught even when
/// it still points inside the file.
pub(super) fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Decodes a payload whose checksum matched.
pub(super) fn decode_record<E: DeserializeOwned>(
    path: &Path,
    offset: u64,
    payload: &[u8],
) -> Result<E> {
    codec()
        .with_limit(payload.len() as u64)
        .deserialize(payload)
        .map_err(|e| Error::Decode {
            path: path.to_path_buf(),
            offset,
            reason: e.to_string(),
        })
}

fn encode_header(id: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16 are reserved flags, zero in version 1.
    header[16..24].copy_from_slice(&id.to_le_bytes());
    header
}

fn check_header(path: &Path, header: &[u8; HEADER_BYTES as usize], id: u64) -> Result<()> {
    if header[..8] != SEGMENT_MAGIC {
        return Err(corrupt(path, 0, "not a segment file (bad magic)"));
    }
    let version = u32_at(header, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            8,
            format!("segment format version {version}, this build reads {FORMAT_VERSION}"),
        ));
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

fn u32_at(bytes: &[u8], at: usize) -> u32 {
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
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    Ok(())
}

/// Takes the directory's writer lock, held for as long as the returned file is open.
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_at(&path)(e)),
    }
}

/// Removes what a crash left of a file being written under a temporary name; returns how many.
pub(super) fn remove_temp_files(dir: &Path) -> Result<u64> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TMP_SUFFIX));
        if is_temp {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_at(&path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Creates segment `id` holding only its header, under its final name only once the header is
/// durable, so that no segment file ever has a partial header. Returns it open for appending.
pub(super) fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let path = dir.join(segment_name(id));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", segment_name(id)));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    file.write_all(&encode_header(id)).map_err(io_at(&tmp))?;
    file.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)?;
    // The handle still names the renamed file, and its position is right after the header.
    Ok(file)
}

fn encode_manifest(sealed: &[SealedSegment]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 24 * sealed.len() + 4);
    out.extend_from_slice(&MANIFEST_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // `sealed` has at most as many entries as there are segment ids handed out in memory; the
    // manifest is refused long before its count could overflow.
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    for s in sealed {
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&s.bytes.to_le_bytes());
        out.extend_from_slice(&s.records.to_le_bytes());
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
        return Err(corrupt(
            path,
            8,
            format!("manifest format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    let count = u64::from(u32_at(bytes, 12));
    let expected = 16 + 24 * count + 4;
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
    for (i, entry) in bytes[16..body].chunks_exact(24).enumerate() {
        let segment = SealedSegment {
            id: u64_at(entry, 0),
            bytes: u64_at(entry, 8),
            records: u64_at(entry, 16),
        };
        let offset = 16 + 24 * i as u64;
        // Segment ids are handed out 0, 1, 2, ...; a gap would be a lost segment.
        if segment.id != i as u64 {
            return Err(corrupt(
                path,
                offset,
                format!("entry {i} names segment {}", segment.id),
            ));
        }
        let room = segment.bytes.checked_sub(HEADER_BYTES);
        if room.is_none_or(|room| segment.records > room / FRAME_BYTES) {
            return Err(corrupt(
                path,
                offset,
                format!(
                    "segment {} cannot hold {} records in {} bytes",
                    segment.id, segment.records, segment.bytes
                ),
            ));
        }
        sealed.push(segment);
    }
    Ok(sealed)
}

/// Reads the list of sealed segments; no manifest means none is sealed yet.
fn read_manifest(dir: &Path) -> Result<Vec<SealedSegment>> {
    let path = dir.join(MANIFEST_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(&path)(e)),
    };
    let len = file.metadata().map_err(io_at(&path))?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(corrupt(&path, 0, format!("manifest is {len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(&path))?;
    decode_manifest(&path, &bytes)
}

/// Replaces the manifest atomically: a reader sees the old list or the new one, never a mix.
pub(super) fn write_manifest(dir: &Path, sealed: &[SealedSegment]) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP_NAME);
    let path = dir.join(MANIFEST_NAME);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    file.write_all(&encode_manifest(sealed))
        .map_err(io_at(&tmp))?;
    file.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    sync_dir(dir)
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
    pub(super) fn read(dir: &Path) -> Result<Layout> {
        let sealed = read_manifest(dir)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        for (i, &id) in ids.iter().enumerate() {
            if id != i as u64 {
                let missing = i as u64;
                return Err(Error::Layout {
                    path: dir.join(segment_name(missing)),
                    reason: format!("segment {missing} is missing, yet segment {id} exists"),
                });
            }
        }
        if ids.len() < sealed.len() {
            let missing = ids.len() as u64;
            return Err(Error::Layout {
                path: dir.join(segment_name(missing)),
                reason: "the manifest lists this sealed segment, but it is missing".into(),
            });
        }
        for s in &sealed {
            let path = dir.join(segment_name(s.id));
            let len = fs::metadata(&path).map_err(io_at(&path))?.len();
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

/// What [`SegmentReader::next`] found.
pub(super) enum Frame {
    /// A whole record with a matching checksum, starting at this offset; its payload is in
    /// [`SegmentReader::payload`].
    Record(u64),
    /// The bytes to read ended exactly after a record.
    End,
    /// Something that is not a whole record starts at this offset.
    Bad(BadFrame),
}

/// Where a segment stops holding whole records, and why.
pub(super) struct BadFrame {
    pub offset: u64,
    pub reason: String,
}

/// Reads the records of one segment file in order, up to a given length.
pub(super) struct SegmentReader {
    path: PathBuf,
    reader: BufReader<File>,
    position: u64,
    end: u64,
    payload: Vec<u8>,
}

impl SegmentReader {
    /// Opens segment `id` of `dir` and checks its header. Reads stop at `end` if given (a sealed
    /// segment's length), else at the file's length now: bytes appended later are not read.
    pub(super) fn open(dir: &Path, id: u64, end: Option<u64>) -> Result<SegmentReader> {
        let path = dir.join(segment_name(id));
        let file = File::open(&path).map_err(io_at(&path))?;
        let end = match end {
            Some(end) => end,
            None => file.metadata().map_err(io_at(&path))?.len(),
        };
        if end < HEADER_BYTES {
            return Err(corrupt(&path, 0, "file shorter than a segment header"));
        }
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut header = [0; HEADER_BYTES as usize];
        reader.read_exact(&mut header).map_err(io_at(&path))?;
        check_header(&path, &header, id)?;
        Ok(SegmentReader {
            path,
            reader,
            position: HEADER_BYTES,
            end,
            payload: Vec::new(),
        })
    }

    /// The file being read.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of the next record: after a [`Frame::Bad`], the end of the last whole record.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    /// How many bytes this reader was opened to read, header included.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// The payload of the record [`next`](Self::next) last returned.
    pub(super) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Reads the next record. After [`Frame::Bad`] the reader must not be used again.
    pub(super) fn next(&mut self) -> Result<Frame> {
        let offset = self.position;
        let left = self.end - offset;
        if left == 0 {
            return Ok(Frame::End);
        }
        let bad = |reason: String| Ok(Frame::Bad(BadFrame { offset, reason }));
        if left < FRAME_BYTES {
            return bad(format!(
                "only {left} bytes left, a record frame is {FRAME_BYTES}"
            ));
        }
        let mut frame = [0; FRAME_BYTES as usize];
        self.reader
            .read_exact(&mut frame)
            .map_err(io_at(&self.path))?;
        let len = u32_at(&frame, 0);
        let crc = u32_at(&frame, 4);
        if len > MAX_RECORD_BYTES {
            return bad(format!(
                "record length {len} is over the limit of {MAX_RECORD_BYTES}"
            ));
        }
        if u64::from(len) > left - FRAME_BYTES {
            return bad(format!(
                "record length {len} runs past the end ({} bytes left)",
                left - FRAME_BYTES
            ));
        }
        // Both checks above bound this allocation: by the limit and by the file itself.
        self.payload.resize(len as usize, 0);
        self.reader
            .read_exact(&mut self.payload)
            .map_err(io_at(&self.path))?;
        if checksum(len.to_le_bytes(), &self.payload) != crc {
            return bad(format!("checksum mismatch in a record of {len} bytes"));
        }
        self.position = offset + FRAME_BYTES + u64::from(len);
        Ok(Frame::Record(offset))
    }

    /// Decides what a bad frame in the last segment is. If any whole record follows it, the
    /// damage is in the middle of the log and is an error. If none does, it is the tail of a
    /// write that never finished (no append that wrote it was acknowledged), and `Ok` is
    /// returned so that the caller can cut it off or ignore it.
    pub(super) fn judge_tail(&self, bad: BadFrame) -> Result<BadFrame> {
        match find_whole_record(&self.path, bad.offset + 1, self.end)? {
            Some(next) => Err(corrupt(
                &self.path,
                bad.offset,
                format!(
                    "{}, yet a whole record follows at byte {next}, so this is not a torn tail",
                    bad.reason
                ),
            )),
            None => Ok(bad),
        }
    }

    /// Turns a bad frame where none may be (a sealed segment) into an error.
    pub(super) fn error(&self, bad: BadFrame) -> Error {
        corrupt(&self.path, bad.offset, bad.reason)
    }
}

/// Looks for a whole record (a plausible length and a matching checksum) starting at any byte
/// from `from` on, which tells damage in the middle of a log from a torn tail even when the
/// damage is in a length, so that following records can no longer be found by their frames.
///
/// Memory stays within [`RESYNC_WINDOW`] whatever the file holds.
fn find_whole_record(path: &Path, from: u64, end: u64) -> Result<Option<u64>> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut window = Vec::new();
    let mut base = from;
    let mut at = from;
    while at + FRAME_BYTES <= end {
        // The window always reaches a full frame and payload past `at` (or the end of the
        // file), so one refill per window's worth of progress suffices.
        let window_end = base + window.len() as u64;
        if window.is_empty()
            || (window_end < end && at + FRAME_BYTES + u64::from(MAX_RECORD_BYTES) > window_end)
        {
            let n = RESYNC_WINDOW.min(end - at);
            window.resize(n as usize, 0);
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut window))
                .map_err(io_at(path))?;
            base = at;
        }
        let i = (at - base) as usize;
        let len = u32_at(&window, i);
        let crc = u32_at(&window, i + 4);
        if len <= MAX_RECORD_BYTES && u64::from(len) <= end - at - FRAME_BYTES {
            let payload =
                &window[i + FRAME_BYTES as usize..i + FRAME_BYTES as usize + len as usize];
            if checksum(len.to_le_bytes(), payload) == crc {
                return Ok(Some(at));
            }
        }
        at += 1;
    }
    Ok(None)
}
