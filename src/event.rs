//! Events: the facts that flow through both lanes.
//!
//! lambdaflow is generic over the user's event type. An event only has to say *when* it happened
//! (its event time, which becomes its timestamp in the dataflow) and how it is read from a line of
//! input. Everything else (what the event means, which views it feeds) belongs to the pipeline.
//!
//! Event time is `u64` milliseconds since the Unix epoch and must be below [`END_OF_TIME`]: the
//! times at and beyond it are reserved for answers read after every input has ended.

use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A point in event time: milliseconds since the Unix epoch (UTC).
pub type Time = u64;

/// The first time no event may carry (2^53, the largest integer a JSON number holds exactly).
///
/// Times at and beyond it mean "after all input": an answer whose `as_of` is `END_OF_TIME` is final.
pub const END_OF_TIME: Time = 1 << 53;

/// The longest line any reader accepts; longer lines are rejected, never buffered whole.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How the lines of an input are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values; the first line of a file is the header.
    Csv,
    /// Free text, one record per line.
    Text,
}

impl Format {
    /// Guesses the format from a file name: `.csv` is CSV, `.txt` is text, anything else JSON Lines.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            Some(e) if e.eq_ignore_ascii_case("txt") => Format::Text,
            _ => Format::JsonLines,
        }
    }
}

/// A user event: data the dataflow can exchange between workers, with an event time.
///
/// The bounds are those of a differential-dataflow record that travels between processes
/// (ordered, hashable, serde-serializable).
pub trait Event:
    Clone + Ord + Hash + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The version of the event's stored form. Raise it when the type gains a field (give the
    /// field `#[serde(default)]`, at the end): records of earlier versions still read, and a
    /// build that only knows earlier versions refuses newer records instead of misreading them.
    const SCHEMA_VERSION: u32 = 1;

    /// When the event happened, in milliseconds; must be below [`END_OF_TIME`].
    fn time(&self) -> Time;

    /// Reads one event from one line of input (without its line terminator).
    ///
    /// Returns a human-readable reason on failure; the caller adds where the line was.
    fn parse(line: &[u8], format: Format) -> Result<Self, String>;

    /// Checks the header line of a CSV input; the default accepts any header.
    fn check_csv_header(_header: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A line of input that was not accepted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// Where the line came from (a file name, `stdin`, `request`).
    pub source: String,
    /// The line's number, counting from 1.
    pub line: u64,
    /// What was wrong with it.
    pub error: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.error)
    }
}

/// How lines of input become events: by the event type's own [`Event::parse`] ([`Parse`]), or
/// by something known only at run time, such as the declared sources of a SQL schema
/// ([`Schema`](crate::sql::Schema)).
///
/// A pipeline names its decoder ([`Pipeline::decoder`](crate::engine::Pipeline::decoder)):
/// every reader of the engine and the server (history files, the master's imports, `POST
/// /events`) reads through it.
pub trait Decode<E>: Send + Sync {
    /// Reads one event from one line of input (without its line terminator); the reason on
    /// failure.
    fn decode(&self, line: &[u8], format: Format) -> Result<E, String>;

    /// Checks the header line of a CSV input; the default accepts any header.
    fn check_csv_header(&self, _header: &[u8]) -> Result<(), String> {
        Ok(())
    }

    /// The decoder of the lines of one named source (`POST /events/{source}`), if there is
    /// such a source; the default has none.
    fn source(&self, _name: &str) -> Option<std::sync::Arc<dyn Decode<E>>> {
        None
    }
}

/// The decoder of self-describing events: [`Event::parse`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Parse;

impl<E: Event> Decode<E> for Parse {
    fn decode(&self, line: &[u8], format: Format) -> Result<E, String> {
        E::parse(line, format)
    }

    fn check_csv_header(&self, header: &[u8]) -> Result<(), String> {
        E::check_csv_header(header)
    }
}

/// Parses one line the way every reader does: length and UTF-8 checks, then [`Event::parse`],
/// then the event-time bound.
pub fn parse_line<E: Event>(line: &[u8], format: Format) -> Result<E, String> {
    decode_line(&Parse, line, format)
}

/// [`parse_line`] through a decoder.
pub fn decode_line<E: Event>(
    decode: &dyn Decode<E>,
    line: &[u8],
    format: Format,
) -> Result<E, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("line is longer than {MAX_LINE_BYTES} bytes"));
    }
    if let Err(e) = std::str::from_utf8(line) {
        return Err(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
    }
    let event = decode.decode(line, format)?;
    if event.time() >= END_OF_TIME {
        return Err(format!("event time {} is not below 2^53", event.time()));
    }
    Ok(event)
}
