//! Reading one segment file: its frames, the group commits they form, and the search for a
//! committed group past damage, which tells an unacknowledged tail from damage to acknowledged
//! data.

use std::path::{Path, PathBuf};

use super::format::{
    self, FRAME_BYTES, HEADER_BYTES, MARKER_BYTES, MARKER_FLAG, MARKER_WORD, MAX_RECORD_BYTES,
    Marker, checksum, corrupt, io_at, u32_at,
};
use super::storage::{Access, Storage, StorageFile, read_exact_at};
use super::{Error, Result};

/// How much of a file a reader reads at once (more when one record needs it).
const CHUNK_BYTES: u64 = 1 << 20;

/// What [`SegmentReader::next`] found.
pub(super) enum Frame {
    /// A whole record with a matching checksum, at this offset; its payload is in
    /// [`SegmentReader::payload`].
    Record(u64),
    /// A commit marker with a matching checksum, at this offset (not yet checked against its
    /// group).
    Marker(u64, Marker),
    /// The bytes to read ended exactly after a frame.
    End,
    /// Something that is not a whole frame starts here.
    Bad(BadFrame),
}

/// Where a segment stops holding whole frames, and why.
#[derive(Clone, Debug)]
pub(super) struct BadFrame {
    pub offset: u64,
    pub reason: String,
}

/// A group commit whose marker matched it: records back to back, then the marker.
#[derive(Clone, Copy, Debug)]
pub(super) struct Group {
    /// The offset of its first record.
    pub start: u64,
    /// The offset of its marker.
    pub marker: u64,
    pub records: u64,
}

impl Group {
    /// Bytes of its records, frames included (marker excluded).
    pub fn record_bytes(&self) -> u64 {
        self.marker - self.start
    }

    /// The offset right after its marker.
    pub fn end(&self) -> u64 {
        self.marker + MARKER_BYTES
    }
}

/// What [`SegmentReader::next_group`] found.
pub(super) enum GroupFrame {
    /// A committed group; the reader is positioned after its marker.
    Committed(Group),
    /// The bytes to read ended exactly after a marker.
    End,
    /// The group starting at `start` is not whole and committed, because of `bad`.
    Bad { start: u64, bad: BadFrame },
}

/// Reads the frames of one segment file in order, up to a given length.
pub(super) struct SegmentReader {
    path: PathBuf,
    file: Box<dyn StorageFile>,
    position: u64,
    end: u64,
    /// Bytes of the file from `buf_start` on.
    buf: Vec<u8>,
    buf_start: u64,
    /// Where the payload of the record last returned is, and its length.
    payload: (u64, usize),
}

impl SegmentReader {
    /// Opens segment `id` of `dir` and checks its header. Reads stop at `end` if given (a sealed
    /// segment's length), else at the file's length now: bytes appended later are not read.
    pub(super) fn open(
        storage: &dyn Storage,
        dir: &Path,
        id: u64,
        end: Option<u64>,
    ) -> Result<SegmentReader> {
        let path = format::segment_path(dir, id);
        let file = storage.open(&path, Access::Read).map_err(io_at(&path))?;
        let len = file.len().map_err(io_at(&path))?;
        let end = end.unwrap_or(len);
        if end < HEADER_BYTES || len < HEADER_BYTES {
            return Err(corrupt(&path, 0, "file shorter than a segment header"));
        }
        if end > len {
            return Err(corrupt(
                &path,
                len,
                format!("the file ends at byte {len}, before byte {end}, which was durable"),
            ));
        }
        let mut reader = SegmentReader {
            path,
            file,
            position: HEADER_BYTES,
            end,
            buf: Vec::new(),
            buf_start: 0,
            payload: (0, 0),
        };
        let header = reader.bytes(0, HEADER_BYTES)?;
        let header = header.to_vec();
        format::check_header(&reader.path, &header, id)?;
        Ok(reader)
    }

    /// The file being read.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of the next frame: after a [`Frame::Bad`], where the bad frame starts.
    pub(super) fn position(&self) -> u64 {
        self.position
    }

    /// Moves to `offset`, the start of a frame found before.
    pub(super) fn seek(&mut self, offset: u64) {
        self.position = offset;
    }

    /// Reads no further than `end` from now on (if it is before the end so far).
    pub(super) fn limit(&mut self, end: u64) {
        self.end = self.end.min(end.max(self.position));
    }

    /// How many bytes this reader was opened to read, header included.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// The payload of the record [`next`](Self::next) last returned.
    pub(super) fn payload(&self) -> &[u8] {
        let (offset, len) = self.payload;
        let at = (offset - self.buf_start) as usize;
        &self.buf[at..at + len]
    }

    /// `len` bytes at `offset`, which the caller has checked end by [`end`](Self::end); read
    /// into the buffer unless it holds them already.
    fn bytes(&mut self, offset: u64, len: u64) -> Result<&[u8]> {
        let held =
            offset >= self.buf_start && offset + len <= self.buf_start + self.buf.len() as u64;
        if !held {
            // The caller keeps `len` within one frame (at most a record's frame and payload)
            // or one chunk, so this allocation is bounded whatever the file holds.
            let n = len.max(CHUNK_BYTES).min(self.end - offset);
            self.buf.resize(n as usize, 0);
            read_exact_at(&*self.file, offset, &mut self.buf).map_err(io_at(&self.path))?;
            self.buf_start = offset;
        }
        let at = (offset - self.buf_start) as usize;
        Ok(&self.buf[at..at + len as usize])
    }

    /// Reads the next frame. After [`Frame::Bad`] the reader stays at the bad frame.
    pub(super) fn next(&mut self) -> Result<Frame> {
        let offset = self.position;
        let left = self.end - offset;
        if left == 0 {
            return Ok(Frame::End);
        }
        let bad = |reason: String| Ok(Frame::Bad(BadFrame { offset, reason }));
        if left < FRAME_BYTES {
            return bad(format!("only {left} bytes left, a frame is {FRAME_BYTES}"));
        }
        let frame = self.bytes(offset, FRAME_BYTES)?;
        let word = u32_at(frame, 0);
        let crc = u32_at(frame, 4);
        if word & MARKER_FLAG != 0 {
            if word != MARKER_WORD {
                return bad(format!("unknown frame kind (length word {word:#010x})"));
            }
            if MARKER_BYTES > left {
                return bad(format!(
                    "a commit marker runs past the end ({} bytes left)",
                    left - FRAME_BYTES
                ));
            }
            let mut payload = [0; (MARKER_BYTES - FRAME_BYTES) as usize];
            payload.copy_from_slice(self.bytes(offset + FRAME_BYTES, MARKER_BYTES - FRAME_BYTES)?);
            if checksum(word.to_le_bytes(), &payload) != crc {
                return bad("checksum mismatch in a commit marker".into());
            }
            self.position = offset + MARKER_BYTES;
            return Ok(Frame::Marker(offset, Marker::decode(&payload)));
        }
        let len = word;
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
        // Both checks above bound this read: by the limit and by the file itself.
        let record = self.bytes(offset, FRAME_BYTES + u64::from(len))?;
        if checksum(len.to_le_bytes(), &record[FRAME_BYTES as usize..]) != crc {
            return bad(format!("checksum mismatch in a record of {len} bytes"));
        }
        self.payload = (offset + FRAME_BYTES, len as usize);
        self.position = offset + FRAME_BYTES + u64::from(len);
        Ok(Frame::Record(offset))
    }

    /// Reads the next group commit: its records, checked frame by frame and summed into the
    /// group's checksum, then its marker, checked against them. Payloads are not kept; read the
    /// records again with [`seek`](Self::seek) and [`next`](Self::next) to use them.
    pub(super) fn next_group(&mut self) -> Result<GroupFrame> {
        let start = self.position;
        let mut crc = 0;
        let mut records = 0u64;
        loop {
            let offset = self.position;
            let bad = match self.next()? {
                Frame::Record(_) => {
                    let bytes = self.bytes(offset, self.position - offset)?;
                    crc = crc32c::crc32c_append(crc, bytes);
                    records += 1;
                    continue;
                }
                Frame::Marker(at, marker) => {
                    let expected = Marker {
                        bytes: at - start,
                        records,
                        crc,
                    };
                    if records > 0 && marker == expected {
                        return Ok(GroupFrame::Committed(Group {
                            start,
                            marker: at,
                            records,
                        }));
                    }
                    self.position = at;
                    BadFrame {
                        offset: at,
                        reason: format!(
                            "a commit marker for {} records in {} bytes (crc {:#010x}) ends \
                             {records} records in {} bytes (crc {crc:#010x})",
                            marker.records,
                            marker.bytes,
                            marker.crc,
                            at - start
                        ),
                    }
                }
                Frame::End if records == 0 => return Ok(GroupFrame::End),
                Frame::End => BadFrame {
                    offset,
                    reason: format!("{records} records without their commit marker"),
                },
                Frame::Bad(bad) => bad,
            };
            return Ok(GroupFrame::Bad { start, bad });
        }
    }

    /// Decides what a bad group in the last segment is. If a committed group (a marker whose
    /// length and checksum match the bytes before it) follows the bad frame, the damage is to
    /// data that was acknowledged before that group was written, and is an error. If none does,
    /// everything from `start` on is the tail of a group commit that was never acknowledged,
    /// and `Ok` is returned so that the caller can cut it off or ignore it.
    pub(super) fn judge_tail(&mut self, start: u64, bad: BadFrame) -> Result<BadFrame> {
        match self.find_committed_group(bad.offset + 1)? {
            Some(group) => Err(corrupt(
                &self.path,
                bad.offset,
                format!(
                    "{}, yet a committed group ends at byte {}, so this is damage to \
                     acknowledged data, not an unacknowledged tail (the last committed group \
                     before it ends at byte {start})",
                    bad.reason,
                    group.end()
                ),
            )),
            None => Ok(bad),
        }
    }

    /// Turns a bad frame where none may be (a sealed segment) into an error.
    pub(super) fn error(&self, bad: BadFrame) -> Error {
        corrupt(&self.path, bad.offset, bad.reason)
    }

    /// Looks for a commit marker at any byte from `from` on whose frame checksum matches and
    /// whose group (the bytes it says precede it) has the checksum it says, so that a committed
    /// group is found even when damage hides where the frames before it start.
    ///
    /// Memory stays within one chunk whatever the file holds.
    pub(super) fn find_committed_group(&mut self, from: u64) -> Result<Option<Group>> {
        let word = MARKER_WORD.to_le_bytes();
        let mut at = from;
        while at + MARKER_BYTES <= self.end {
            let n = (self.end - at).min(CHUNK_BYTES);
            let hit = self.bytes(at, n)?.windows(4).position(|w| w == word);
            let Some(i) = hit else {
                // A marker's word may straddle the end of this window.
                at += n - 3;
                continue;
            };
            let candidate = at + i as u64;
            if candidate + MARKER_BYTES > self.end {
                break;
            }
            if let Some(marker) = self.marker_at(candidate)?
                && marker.plausible(candidate)
                && self.group_crc(candidate - marker.bytes, candidate)? == marker.crc
            {
                return Ok(Some(Group {
                    start: candidate - marker.bytes,
                    marker: candidate,
                    records: marker.records,
                }));
            }
            at = candidate + 1;
        }
        Ok(None)
    }

    /// The commit marker at `at`, if a whole marker frame with a matching checksum is there
    /// (whether or not it matches its group).
    pub(super) fn marker_at(&mut self, at: u64) -> Result<Option<Marker>> {
        if at < HEADER_BYTES || at + MARKER_BYTES > self.end {
            return Ok(None);
        }
        let frame = self.bytes(at, MARKER_BYTES)?;
        let payload = &frame[FRAME_BYTES as usize..];
        if u32_at(frame, 0) != MARKER_WORD
            || checksum(MARKER_WORD.to_le_bytes(), payload) != u32_at(frame, 4)
        {
            return Ok(None);
        }
        let mut fields = [0; (MARKER_BYTES - FRAME_BYTES) as usize];
        fields.copy_from_slice(payload);
        Ok(Some(Marker::decode(&fields)))
    }

    /// The CRC32C of the bytes `from..to`, read a chunk at a time.
    fn group_crc(&mut self, from: u64, to: u64) -> Result<u32> {
        let mut crc = 0;
        let mut offset = from;
        while offset < to {
            let n = (to - offset).min(CHUNK_BYTES);
            crc = crc32c::crc32c_append(crc, self.bytes(offset, n)?);
            offset += n;
        }
        Ok(crc)
    }
}
