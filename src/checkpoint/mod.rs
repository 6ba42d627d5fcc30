//! Checkpoints: the state of every view at one time, so that a restart replays only what came
//! after it instead of the whole master dataset.
//!
//! Timely and differential keep no state of their own on disk, so what a checkpoint holds is
//! ours to choose. We cut each view where its state begins: a **cut**
//! ([`Views::checkpoint`](crate::view::Views::checkpoint), and the one every
//! [`Views::register`](crate::view::Views::register) puts after its pre-aggregation) is a
//! collection that is a function of the events *without state* (maps, filters, window
//! assignment, sums by key and time), with every stateful operator (arrangements, reduces,
//! joins) after it. Its consolidated contents at a time `H` (one record per key for a sum)
//! are then all that the operators after it need: fed back at the restored dataflow's first
//! time, they rebuild the same arrangements, and the events applied at or after `H`, replayed
//! through the same stateless code, add the same differences as before.
//!
//! Taking one ([`Engine::checkpoint`](crate::engine::Engine::checkpoint)) is sequenced with the
//! live events like the creation of a view: once every accepted batch is journaled and
//! released, the master dataset is marked and the lanes' target `H` noted, and every worker
//! takes the request after every event before the mark and before every event after it. Each
//! worker then keeps:
//!
//! * each cut's contents of everything applied before `H`, once its frontier passes `H`
//!   (the cut keeps them consolidated as the frontier moves, so this costs a copy of the
//!   state, not a pause of the dataflow);
//! * the events it took that are applied at or after `H` (on time but not yet passed by the
//!   watermark): they are before the mark, so no replay of what follows the mark has them.
//!
//! A restore ([`engine`](crate::engine)) feeds each cut its contents at time 0, the events kept
//! at their times, and the master dataset from the mark on, with the judge resuming where it
//! was: answers from `H` on equal a full replay's. A cut restores only a state of the same
//! name and fingerprint (types and, for SQL views, their text). A cut the checkpoint lacks (a
//! view defined or changed since) is rebuilt: the master dataset before the mark is replayed
//! at time 0, where restored cuts drop their input, less one copy of each kept event (those
//! come again at their own times); its contents at time 0 are then those it would have had.
//! Checkpoints are per process (each has its own master dataset), and the
//! cuts sit before any exchange, so each worker's state holds only its own events and processes
//! need not agree on when they checkpoint.

mod cut;
mod file;

use serde::{Deserialize, Serialize};

pub(crate) use cut::{Cuts, Encode};
pub use file::Store;
pub(crate) use file::{Candidate, Loaded, State};

use crate::event::Time;
use crate::master::Position;

/// A checkpoint of one process: the state of its workers' cuts at one time.
///
/// `S` is how a cut's state is held: its bytes when written ([`Blob`]), its length in the
/// file's description of it ([`file`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint<S = Blob> {
    /// Its number: later checkpoints have higher ones.
    pub id: u64,
    /// The state is of everything applied before this time; later events are not in it.
    pub time: Time,
    /// The judge's watermark when it was taken.
    pub watermark: Time,
    /// The newest event time the judge had seen.
    pub newest: Option<Time>,
    /// The master dataset's end when it was taken: a restore replays what follows.
    pub position: Position,
    /// The bytes of the master dataset's records before `position` (for progress).
    pub log_bytes: u64,
    /// The event type's schema version.
    pub schema_version: u32,
    /// How many late drops the master dataset records before `position`.
    pub drops: u64,
    /// The cuts, in the order the dataflow builds them.
    pub points: Vec<Point>,
    /// Each worker's part, by local index.
    pub workers: Vec<Part<S>>,
}

impl<S> Checkpoint<S> {
    /// The same checkpoint with each state made by `f` from the one held now.
    fn map_states_ref<T>(&self, mut f: impl FnMut(&S) -> T) -> Checkpoint<T> {
        Checkpoint {
            id: self.id,
            time: self.time,
            watermark: self.watermark,
            newest: self.newest,
            position: self.position,
            log_bytes: self.log_bytes,
            schema_version: self.schema_version,
            drops: self.drops,
            points: self.points.clone(),
            workers: self
                .workers
                .iter()
                .map(|part| Part {
                    pending: part.pending.clone(),
                    states: part.states.iter().map(&mut f).collect(),
                })
                .collect(),
        }
    }

    /// The checkpoint without its states (each part's `states` empty), and the states by part.
    fn split_states(self) -> (Checkpoint, Vec<Vec<S>>) {
        let mut states = Vec::with_capacity(self.workers.len());
        let workers = self
            .workers
            .into_iter()
            .map(|part| {
                states.push(part.states);
                Part {
                    pending: part.pending,
                    states: Vec::new(),
                }
            })
            .collect();
        let checkpoint = Checkpoint {
            id: self.id,
            time: self.time,
            watermark: self.watermark,
            newest: self.newest,
            position: self.position,
            log_bytes: self.log_bytes,
            schema_version: self.schema_version,
            drops: self.drops,
            points: self.points,
            workers,
        };
        (checkpoint, states)
    }
}

/// A cut of the dataflow: its name and what it must be for a state to fit it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Point {
    /// Unique in the dataflow (a view's name, and a suffix for its other cuts).
    pub name: String,
    /// Its record and difference types, and the definition behind it (a SQL view's text).
    pub fingerprint: String,
}

/// One worker's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part<S = Blob> {
    /// The events it had taken that are applied at or after the checkpoint's time, with
    /// those times (MessagePack of `Vec<(E, Time)>`).
    #[serde(with = "serde_bytes")]
    pub pending: Vec<u8>,
    /// Each cut's consolidated contents (its `Vec<(record, difference)>`, encoded by the
    /// cut), in the order of [`Checkpoint::points`].
    pub states: Vec<S>,
}

/// Bytes stored as one MessagePack `bin` (not an array of numbers: `serde_bytes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Blob(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// What [`Engine::checkpoint`](crate::engine::Engine::checkpoint) answers once a checkpoint is
/// durable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Taken {
    /// Its number.
    pub id: u64,
    /// Everything applied before this time is in it.
    pub as_of: Time,
    /// Where in the master dataset a restore from it resumes.
    pub log_position: Position,
    /// Its size on disk.
    pub bytes: u64,
    /// How long it took, from the request to the directory's fsync.
    pub seconds: f64,
}
