//! Checkpoint files: written atomically, checksummed, the last two kept.
//!
//! A checkpoint is one file `{id:016}.ckpt` in the store's directory:
//!
//! * a header: an 8-byte magic, the format version, then the CRC32C and the length of the
//!   *description* and of the *states* that follow it (little-endian);
//! * the description: MessagePack of the [`Checkpoint`] with each state's length in its place;
//! * the states, one after the other in the description's order: each cut's contents, as the
//!   cut encoded them.
//!
//! The states are most of a checkpoint (hundreds of MB), so neither side holds them twice:
//! writing puts each cut's bytes in the file as they are, and a restore reads each state
//! straight from the file in the worker that restores it ([`State::reader`]), after the whole
//! file has been checked once with a small buffer.
//!
//! It is written to `{id:016}.ckpt.tmp`, fsynced, renamed and the directory fsynced, so a crash
//! leaves either the whole file or none of it under its name; then all but the newest two are
//! removed. Loading reads the newest first and skips any file that does not check (wrong magic
//! or version, lengths that are not the file's, a checksum), so the previous one serves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::warn;

use super::Checkpoint;

const MAGIC: &[u8; 8] = b"LFCKPT\0\x01";
/// Raised whenever the layout of the file, or the way a cut encodes its state, changes: a
/// file of another version is skipped (a full replay), never misread.
const VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + (4 + 8) * 2;
const SUFFIX: &str = ".ckpt";

/// How much of a checkpoint is written between syncs, and the buffer a restore reads with.
const PACE: usize = 8 << 20;

/// Where a process keeps its checkpoints: a directory (`checkpoints/` in the data directory).
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
}

impl Store {
    /// The store in `data_dir/checkpoints`, keeping the last two checkpoints.
    pub fn in_data_dir(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join("checkpoints"),
            keep: 2,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ids of the checkpoint files, newest first (whether they check or not).
    fn ids(&self) -> Vec<u64> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let id = name.to_str()?.strip_suffix(SUFFIX)?;
                id.parse().ok()
            })
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016}{SUFFIX}"))
    }

    /// The id the next checkpoint takes.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids().first().map_or(1, |id| id + 1)
    }

    /// Writes `checkpoint` atomically and removes all but the newest `keep`; returns its size.
    ///
    /// The file is written and synced in slices of [`PACE`]: a checkpoint is hundreds of MB,
    /// and the master dataset's group commits, which ingest waits for, would otherwise wait
    /// behind all of it when the kernel flushes.
    pub(crate) fn write(&self, checkpoint: &Checkpoint) -> io::Result<u64> {
        let description = checkpoint.map_states_ref(|state| state.0.len() as u64);
        let description = rmp_serde::to_vec(&description).map_err(io::Error::other)?;
        let states = || checkpoint.workers.iter().flat_map(|part| &part.states);
        let states_crc = states().fold(0, |crc, state| crc32c::crc32c_append(crc, &state.0));
        let states_len: u64 = states().map(|state| state.0.len() as u64).sum();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(&description).to_le_bytes());
        header.extend_from_slice(&(description.len() as u64).to_le_bytes());
        header.extend_from_slice(&states_crc.to_le_bytes());
        header.extend_from_slice(&states_len.to_le_bytes());
        fs::create_dir_all(&self.dir)?;
        let path = self.path(checkpoint.id);
        let temporary = path.with_extension("ckpt.tmp");
        {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temporary)?;
            file.write_all(&header)?;
            file.write_all(&description)?;
            let mut unsynced = 0;
            for slice in states().flat_map(|state| state.0.chunks(PACE)) {
                file.write_all(slice)?;
                unsynced += slice.len();
                if unsynced >= PACE {
                    file.sync_data()?;
                    unsynced = 0;
                }
            }
            file.sync_all()?;
        }
        fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()?;
        for old in self.ids().into_iter().skip(self.keep) {
            if let Err(e) = fs::remove_file(self.path(old)) {
                warn!(id = old, "cannot remove an old checkpoint: {e}");
            }
        }
        Ok(HEADER as u64 + description.len() as u64 + states_len)
    }

    /// The checkpoint files, newest first, each read and checked when first asked for
    /// ([`Candidate::get`]): a restore reads the newest that fits, not every one kept.
    pub(crate) fn candidates(&self) -> Vec<Candidate> {
        self.ids()
            .into_iter()
            .map(|id| Candidate {
                id,
                path: self.path(id),
                loaded: OnceLock::new(),
            })
            .collect()
    }
}

/// A checkpoint file, read and checked the first time it is asked for.
pub(crate) struct Candidate {
    id: u64,
    path: PathBuf,
    loaded: OnceLock<Option<Loaded>>,
}

impl Candidate {
    /// The checkpoint, if its file checks (one that does not is logged and skipped).
    pub(crate) fn get(&self) -> Option<&Loaded> {
        self.loaded
            .get_or_init(|| match Loaded::read(&self.path) {
                Ok(loaded) if loaded.checkpoint.id == self.id => Some(loaded),
                Ok(loaded) => {
                    warn!(
                        path = %self.path.display(),
                        "checkpoint skipped: it says it is number {}",
                        loaded.checkpoint.id
                    );
                    None
                }
                Err(reason) => {
                    warn!(path = %self.path.display(), "checkpoint skipped: {reason}");
                    None
                }
            })
            .as_ref()
    }
}

/// A checkpoint read from its file: what it says, and each worker part's states until a
/// worker of the restore takes them.
pub(crate) struct Loaded {
    /// The checkpoint, its parts' states taken out.
    pub checkpoint: Checkpoint,
    states: Mutex<Vec<Vec<State>>>,
}

impl Loaded {
    /// The checkpoint in a file, if the file checks: its description read, and every byte of
    /// its states checked (but not kept: each state is read again when it is restored).
    fn read(path: &Path) -> Result<Loaded, String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header)
            .map_err(|_| format!("{size} bytes, shorter than a header"))?;
        if &header[..8] != MAGIC {
            return Err("not a checkpoint file (wrong magic)".into());
        }
        let word = |at: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&header[at..at + 4]);
            u32::from_le_bytes(bytes)
        };
        let long = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let version = word(8);
        if version != VERSION {
            return Err(format!(
                "format version {version}, this build reads {VERSION}"
            ));
        }
        let (description_crc, description_len) = (word(12), long(16));
        let (states_crc, states_len) = (word(24), long(28));
        let expected = description_len
            .checked_add(states_len)
            .and_then(|n| n.checked_add(HEADER as u64));
        if expected != Some(size) {
            return Err(format!(
                "the header says {description_len} + {states_len} bytes after it, the file has {}",
                size.saturating_sub(HEADER as u64)
            ));
        }
        // Bounded by the file's size, checked above.
        let mut description = vec![0u8; description_len as usize];
        file.read_exact(&mut description)
            .map_err(|e| e.to_string())?;
        if crc32c::crc32c(&description) != description_crc {
            return Err("checksum mismatch (description)".into());
        }
        let mut crc = 0;
        let mut buffer = vec![0u8; PACE.min(states_len as usize)];
        let mut left = states_len;
        while left > 0 {
            let slice = &mut buffer[..left.min(PACE as u64) as usize];
            file.read_exact(slice).map_err(|e| e.to_string())?;
            crc = crc32c::crc32c_append(crc, slice);
            left -= slice.len() as u64;
        }
        if crc != states_crc {
            return Err("checksum mismatch (states)".into());
        }
        let description: Checkpoint<u64> =
            rmp_serde::from_slice(&description).map_err(|e| format!("cannot decode: {e}"))?;
        let (checkpoint, lengths) = description.split_states();
        if lengths.iter().flatten().sum::<u64>() != states_len {
            return Err("the states' lengths are not those of the file".into());
        }
        let path: Arc<Path> = Arc::from(path);
        let mut offset = (HEADER as u64) + description_len;
        let states = lengths
            .into_iter()
            .map(|part| {
                part.into_iter()
                    .map(|len| {
                        let state = State {
                            path: path.clone(),
                            offset,
                            len,
                        };
                        offset += len;
                        state
                    })
                    .collect()
            })
            .collect();
        Ok(Loaded {
            checkpoint,
            states: Mutex::new(states),
        })
    }

    /// The states of part `part`, in the order of the points (empty once taken).
    pub(crate) fn take(&self, part: usize) -> Vec<State> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.get_mut(part).map(std::mem::take).unwrap_or_default()
    }
}

/// A cut's state in a checked checkpoint file: where its bytes are.
#[derive(Clone, Debug)]
pub(crate) struct State {
    path: Arc<Path>,
    offset: u64,
    len: u64,
}

impl State {
    /// How many bytes it has.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Its bytes (the cut's `Vec<(record, difference)>`, encoded by the cut), read from the
    /// file as they are asked for.
    pub(crate) fn reader(&self) -> io::Result<impl Read> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        Ok(BufReader::with_capacity(1 << 16, file.take(self.len)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Blob, Part, Point};
    use super::*;
    use crate::master::Position;

    fn checkpoint(id: u64) -> Checkpoint {
        Checkpoint {
            id,
            time: 1_000 * id,
            watermark: 900 * id,
            newest: Some(1_100 * id),
            position: Position {
                segment: id,
                offset: 24 + id,
            },
            log_bytes: 77 * id,
            schema_version: 2,
            drops: 3,
            points: vec![Point {
                name: "v".into(),
                fingerprint: "(u64, ()) isize".into(),
            }],
            workers: vec![Part {
                pending: vec![1, 2, 3],
                states: vec![super::super::Blob(vec![id as u8; 100])],
            }],
        }
    }

    /// Every checkpoint that checks, newest first, whole again.
    fn load(store: &Store) -> Vec<Checkpoint> {
        store
            .candidates()
            .iter()
            .filter_map(|c| c.get())
            .map(|loaded| {
                let mut checkpoint = loaded.checkpoint.clone();
                for (index, part) in checkpoint.workers.iter_mut().enumerate() {
                    part.states = loaded
                        .take(index)
                        .iter()
                        .map(|state| {
                            let mut bytes = Vec::new();
                            state
                                .reader()
                                .and_then(|mut r| r.read_to_end(&mut bytes))
                                .expect("read a state");
                            Blob(bytes)
                        })
                        .collect();
                }
                checkpoint
            })
            .collect()
    }

    fn ids(store: &Store) -> Vec<u64> {
        load(store).iter().map(|c| c.id).collect()
    }

    #[test]
    fn checkpoints_round_trip_and_only_the_last_two_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_data_dir(dir.path());
        assert!(load(&store).is_empty());
        assert_eq!(store.next_id(), 1);
        for id in 1..=4 {
            let bytes = store.write(&checkpoint(id)).expect("write");
            assert_eq!(bytes, fs::metadata(store.path(id)).expect("file").len());
        }
        assert_eq!(load(&store), vec![checkpoint(4), checkpoint(3)]);
        assert_eq!(store.next_id(), 5);
        let files = fs::read_dir(store.dir()).expect("dir").count();
        assert_eq!(files, 2, "no temporary file left");
    }

    /// The newest checkpoint damaged in every way a crash or a disk can (cut anywhere, a bit
    /// flipped anywhere): the previous one is loaded instead.
    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_data_dir(dir.path());
        store.write(&checkpoint(1)).expect("write");
        store.write(&checkpoint(2)).expect("write");
        let good = fs::read(store.path(2)).expect("read");
        for cut in 0..good.len() {
            fs::write(store.path(2), &good[..cut]).expect("truncate");
            assert_eq!(ids(&store), vec![1], "cut at {cut}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            fs::write(store.path(2), &bad).expect("flip");
            assert_eq!(ids(&store), vec![1], "bit flipped at {at}");
        }
        fs::write(store.path(2), &good).expect("restore");
        assert_eq!(ids(&store), vec![2, 1]);
    }

    /// A crash while writing leaves a temporary file, which is never loaded, and the previous
    /// checkpoint usable.
    #[test]
    fn a_crash_while_writing_leaves_the_previous_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::in_data_dir(dir.path());
        store.write(&checkpoint(1)).expect("write");
        fs::write(store.path(2).with_extension("ckpt.tmp"), b"LFCKPT").expect("partial");
        assert_eq!(ids(&store), vec![1]);
        assert_eq!(store.next_id(), 2);
        store
            .write(&checkpoint(2))
            .expect("a later write replaces the partial file");
        assert_eq!(ids(&store), vec![2, 1]);
    }
}
