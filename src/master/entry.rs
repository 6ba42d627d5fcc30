//! What a server's master dataset holds: the facts, with what was decided about them.
//!
//! Every live event is judged once, against the process's watermark, before it is stored (see
//! [`watermark`](crate::watermark)); its verdict is stored with it, and so is the watermark after
//! each batch. A restart replays the verdicts rather than judging again, so the views, the late
//! events and the watermark are what they were before, whatever the timing of the replay.
//! Imported history files are bracketed by marks that make an import happen once.

use serde::{Deserialize, Serialize};

use crate::event::Time;
use crate::watermark::DropReason;

/// One record of a server's master dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry<E> {
    /// An event in every view, at its own time: imported history, or a live event on time.
    Event(E),
    /// A live event that came behind the watermark and was applied at `at` (policy `correct`).
    Corrected {
        /// The event.
        event: E,
        /// The watermark it was applied at.
        at: Time,
    },
    /// A live event on time that was applied at `at`, after its own time: the lanes had
    /// already moved past it (to make corrections visible).
    Held {
        /// The event.
        event: E,
        /// The time it was applied at.
        at: Time,
    },
    /// A live event that was left out.
    Dropped {
        /// The event.
        event: E,
        /// Why.
        reason: DropReason,
        /// The watermark it was behind.
        watermark: Time,
    },
    /// The live watermark after the batch before it: the judge's state, restored on replay.
    Watermark(Time),
    /// An import of a history file begins: its events follow (up to the next mark or live
    /// watermark). What the import judged by is kept, so an interrupted import resumes exactly.
    ImportBegin {
        /// The file.
        file: ImportMark,
        /// The importing machine's clock (ms) that event times were checked against.
        clock: Time,
        /// The `--max-future` limit (ms) the import used; `None`: off.
        max_future: Option<Time>,
        /// How many of the file's events earlier imports took (the file grew since): this
        /// import appends the ones after them.
        skipped: u64,
    },
    /// The import of a history file is complete.
    ImportEnd(ImportMark),
}

/// Which file an import read: enough to know the same file when it is offered again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportMark {
    /// The file's path, as given.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// A 128-bit hash of its content (XXH3-128), in hex.
    pub hash: String,
}
