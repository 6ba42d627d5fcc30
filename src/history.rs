//! History: bounded inputs that the batch lane replays.
//!
//! A history file is split into as many byte ranges as there are workers, so every worker reads
//! and parses its own share in parallel (parsing dominates the cost of a replay). A share owns
//! the lines whose first byte falls in its range. Line numbers are only needed to report a bad
//! line, so a share counts the lines before it lazily, on its first rejection.
//!
//! Reading never buffers more than [`MAX_LINE_BYTES`] of one line: a longer line is rejected and
//! skipped, and every other line of the input is still taken.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::event::{Decode, Event, Format, MAX_LINE_BYTES, Parse, Reject, decode_line};

/// What the batch lane replays.
#[derive(Clone, Debug)]
pub enum History<E> {
    /// Files, each read in shares by all workers; the format is guessed from the extension.
    Files(Vec<PathBuf>),
    /// Events already in memory; worker `i` of `n` replays those at positions `i, i + n, ...`.
    Events(Arc<Vec<E>>),
    /// This process's master dataset (a directory), shared among this process's workers only:
    /// every process of a computation has its own.
    Master(PathBuf),
    /// Events made on demand, such as by a seeded generator: each worker replays the share it
    /// asks for, without a file or a copy in memory.
    Generated(Generated<E>),
}

/// A source of events made on demand: given a share, the events of that share, each below
/// [`END_OF_TIME`](crate::event::END_OF_TIME). The shares of one count together make the
/// whole history, whatever the count.
pub struct Generated<E>(Arc<ShareFn<E>>);

type ShareFn<E> = dyn Fn(Share) -> Box<dyn Iterator<Item = E>> + Send + Sync;

impl<E> Generated<E> {
    /// A source whose share `s` is `share(s)`.
    pub fn new(
        share: impl Fn(Share) -> Box<dyn Iterator<Item = E>> + Send + Sync + 'static,
    ) -> Self {
        Generated(Arc::new(share))
    }

    /// The events of one share.
    pub fn share(&self, share: Share) -> Box<dyn Iterator<Item = E>> {
        (self.0)(share)
    }
}

impl<E> Clone for Generated<E> {
    fn clone(&self) -> Self {
        Generated(self.0.clone())
    }
}

impl<E> std::fmt::Debug for Generated<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Generated")
    }
}

impl<E> Default for History<E> {
    fn default() -> Self {
        History::Files(Vec::new())
    }
}

/// One worker's part of an input: share `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// This share's position, `0 <= index < count`.
    pub index: usize,
    /// How many shares the input is split into.
    pub count: usize,
}

impl Share {
    /// The whole input as one share.
    pub const WHOLE: Share = Share { index: 0, count: 1 };
}

/// What reading a share produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Lines that became events.
    pub accepted: u64,
    /// Lines that were rejected.
    pub rejected: u64,
    /// Bytes of the file this share covered.
    pub bytes: u64,
}

/// Reads share `share` of the file at `path`, handing each event to `on_event` and each bad line
/// to `on_reject`. Fails only on I/O errors and on a CSV header the event type rejects.
pub fn read_share<E: Event>(
    path: &Path,
    share: Share,
    on_event: impl FnMut(E),
    on_reject: impl FnMut(Reject),
) -> io::Result<ReadStats> {
    read_share_checked(path, share, &Parse, |_: &E| Ok(()), on_event, on_reject)
}

/// [`read_share`], reading lines through `decode`, where `check` may refuse an event that
/// parsed (a line error like any other, with its line number): the importer refuses times too
/// far in the future this way.
pub fn read_share_checked<E: Event>(
    path: &Path,
    share: Share,
    decode: &dyn Decode<E>,
    check: impl Fn(&E) -> Result<(), String>,
    mut on_event: impl FnMut(E),
    on_reject: impl FnMut(Reject),
) -> io::Result<ReadStats> {
    let format = Format::from_path(path);
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len * share.index as u64 / share.count as u64;
    let end = len * (share.index as u64 + 1) / share.count as u64;

    let mut header_lines = 0;
    if format == Format::Csv {
        let mut first = Vec::new();
        BufReader::new(File::open(path)?)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut first)?;
        let header = trim_line(&first);
        decode.check_csv_header(header).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:1: {e}", path.display()),
            )
        })?;
        header_lines = 1;
    }

    // The share starts at the first line that begins at or after `start`.
    let mut offset = start;
    if start > 0 {
        file.seek(SeekFrom::Start(start - 1))?;
        let mut reader = BufReader::new(&mut file);
        let mut skipped = Vec::new();
        let n = reader.read_until(b'\n', &mut skipped)?;
        offset = start - 1 + n as u64;
    }
    file.seek(SeekFrom::Start(offset))?;

    let source = path.display().to_string();
    let lines = LineReader::new(BufReader::with_capacity(1 << 20, file), offset, end);
    let first_line = || count_newlines(path, offset);
    read_lines(
        lines,
        &source,
        (decode, format),
        header_lines,
        first_line,
        |event| check(&event).map(|()| on_event(event)),
        on_reject,
    )
}

/// Reads every line of `input` (stdin, a request body) as events of `format`.
pub fn read_all<E: Event, R: Read>(
    input: R,
    source: &str,
    format: Format,
    mut on_event: impl FnMut(E),
    on_reject: impl FnMut(Reject),
) -> io::Result<ReadStats> {
    let lines = LineReader::new(BufReader::with_capacity(1 << 16, input), 0, u64::MAX);
    let header_lines = u64::from(format == Format::Csv);
    read_lines(
        lines,
        source,
        (&Parse, format),
        header_lines,
        || Ok(0),
        |event| {
            on_event(event);
            Ok(())
        },
        on_reject,
    )
}

/// The shared loop: numbers lines, skips headers and blank lines, parses, hands on (the taker
/// may still refuse an event, which is then a bad line), reports.
fn read_lines<E: Event, R: Read>(
    mut lines: LineReader<R>,
    source: &str,
    (decode, format): (&dyn Decode<E>, Format),
    header_lines: u64,
    lines_before: impl FnOnce() -> io::Result<u64>,
    mut on_event: impl FnMut(E) -> Result<(), String>,
    mut on_reject: impl FnMut(Reject),
) -> io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    let mut index = 0u64; // lines read by this share, counting from 0
    let mut before: Option<u64> = None;
    let mut lines_before = Some(lines_before);
    let start = lines.position;
    while let Some(line) = lines.next_line()? {
        index += 1;
        let numbered = match line {
            Line::TooLong => Err(format!("line is longer than {MAX_LINE_BYTES} bytes")),
            Line::Complete(bytes) => {
                if start == 0 && index <= header_lines {
                    continue;
                }
                let bytes = trim_line(bytes);
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                decode_line(decode, bytes, format).and_then(&mut on_event)
            }
        };
        match numbered {
            Ok(()) => stats.accepted += 1,
            Err(error) => {
                if before.is_none() {
                    let count = lines_before.take().map(|f| f()).transpose()?;
                    before = Some(count.unwrap_or_default());
                }
                stats.rejected += 1;
                let line = index + before.unwrap_or_default();
                on_reject(Reject {
                    source: source.to_string(),
                    line,
                    error,
                });
            }
        }
    }
    stats.bytes = lines.position - start;
    Ok(stats)
}

/// A line without its terminator (`\n` or `\r\n`).
pub(crate) fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Counts the line terminators in the first `upto` bytes of a file.
fn count_newlines(path: &Path, upto: u64) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?.take(upto));
    let mut count = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(count);
        }
        count += memchr::memchr_iter(b'\n', buf).count() as u64;
        let n = buf.len();
        reader.consume(n);
    }
}

/// One line handed out by a [`LineReader`].
enum Line<'a> {
    /// A whole line, with its terminator if it had one.
    Complete(&'a [u8]),
    /// A line over the limit, already skipped.
    TooLong,
}

/// Splits a byte stream into lines, stopping at the first line that begins at or after `end`,
/// and never holding more than [`MAX_LINE_BYTES`] of a line.
struct LineReader<R> {
    reader: BufReader<R>,
    position: u64,
    end: u64,
    buf: Vec<u8>,
}

impl<R: Read> LineReader<R> {
    fn new(reader: BufReader<R>, position: u64, end: u64) -> Self {
        LineReader {
            reader,
            position,
            end,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.position >= self.end {
            return Ok(None);
        }
        self.buf.clear();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE_BYTES + 2 {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&available[..take]);
                }
            }
            self.reader.consume(take);
            self.position += take as u64;
            if done {
                break;
            }
        }
        if too_long {
            Ok(Some(Line::TooLong))
        } else if self.buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Line::Complete(&self.buf)))
        }
    }
}
