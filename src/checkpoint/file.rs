//! Checkpoint files: written atomically, checksummed, the last two kept.
//!
//! A checkpoint is one file `{id:016}.ckpt` in the store's directory: an 8-byte magic, the
//! format version, the CRC32C of the payload and its length (little-endian), then the payload
//! (MessagePack of [`Checkpoint`]). It is written to `{id:016}.ckpt.tmp`, fsynced, renamed and the
//! directory fsynced, so a crash leaves either the whole file or none of it under its name;
//! then all but the newest two are removed. Loading reads the newest first and skips any file
//! that does not check (wrong magic or version, short, checksum), so the previous one serves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::warn;

use super::{Blob, Checkpoint};

const MAGIC: &[u8; 8] = b"LFCKPT\0\x01";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;
const SUFFIX: &str = ".ckpt";

/// How much of a checkpoint is written between syncs.
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
        let payload = rmp_serde::to_vec(checkpoint).map_err(io::Error::other)?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
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
            for slice in payload.chunks(PACE) {
                file.write_all(slice)?;
                file.sync_data()?;
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
        Ok((header.len() + payload.len()) as u64)
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
            .get_or_init(|| {
                let read = fs::read(&self.path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| decode(&bytes));
                match read {
                    Ok(checkpoint) if checkpoint.id == self.id => Some(Loaded::new(checkpoint)),
                    Ok(checkpoint) => {
                        warn!(
                            path = %self.path.display(),
                            "checkpoint skipped: it says it is number {}",
                            checkpoint.id
                        );
                        None
                    }
                    Err(reason) => {
                        warn!(path = %self.path.display(), "checkpoint skipped: {reason}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// A checkpoint read from its file: what it says, and each worker part's states until a
/// worker of the restore takes them (so that they are not copied, nor kept once restored).
pub(crate) struct Loaded {
    /// The checkpoint, its parts' states taken out.
    pub checkpoint: Checkpoint,
    states: Mutex<Vec<Vec<Blob>>>,
}

impl Loaded {
    fn new(mut checkpoint: Checkpoint) -> Loaded {
        let states = checkpoint
            .workers
            .iter_mut()
            .map(|part| std::mem::take(&mut part.states))
            .collect();
        Loaded {
            checkpoint,
            states: Mutex::new(states),
        }
    }

    /// The states of part `part`, in the order of the points (empty once taken).
    pub(crate) fn take(&self, part: usize) -> Vec<Blob> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.get_mut(part).map(std::mem::take).unwrap_or_default()
    }
}

/// A checkpoint from a file's bytes, if they check.
fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < HEADER {
        return Err(format!("{} bytes, shorter than a header", bytes.len()));
    }
    let (header, payload) = bytes.split_at(HEADER);
    if &header[..8] != MAGIC {
        return Err("not a checkpoint file (wrong magic)".into());
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = word(8);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let crc = word(12);
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[16..24]);
    let len = u64::from_le_bytes(len);
    if len != payload.len() as u64 {
        return Err(format!(
            "the header says {len} bytes of payload, the file has {}",
            payload.len()
        ));
    }
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".into());
    }
    rmp_serde::from_slice(payload).map_err(|e| format!("cannot decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::{Part, Point};
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
                    part.states = loaded.take(index);
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
