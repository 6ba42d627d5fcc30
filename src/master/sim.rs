//! A simulated disk that loses power: [`SimStorage`], the [`Storage`] the crash tests run the
//! master dataset on.
//!
//! Files live in memory, each with the contents a reader sees now and the contents that are
//! durable (as of its last `sync_data`); directory entries likewise, with a log of the creates,
//! renames and removes since the last `sync_dir`. The machine can be told to die after a number
//! of operations: every later operation fails, as on a machine without power. What survives is
//! then [`SimStorage::crash_image`], drawn at random from what a real disk may keep:
//!
//! * every write that was fsync'd, and nothing else for sure;
//! * the last write, half the time, torn at a random byte (the rest of it never reached the
//!   disk);
//! * of the 4 KiB pages written since the file's last fsync, any subset, whatever the order
//!   they were written in: a page that did not persist holds its durable contents, or zeros
//!   past the durable end; the file's length is its durable one or its new one;
//! * a random prefix of the directory operations since the last `sync_dir`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::storage::{Access, Storage, StorageFile, StorageLock};

/// The unit in which a disk persists a file's unsynced data.
const PAGE_BYTES: usize = 4096;

/// A small deterministic random number generator (SplitMix64), so that a crash image is a
/// function of its seed.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next() % n,
            None => self.next(),
        }
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// What a reader sees now.
    data: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(PathBuf, usize),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Link(path, _) | DirOp::Unlink(path) | DirOp::Rename(path, _) => path.parent(),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, usize>) {
        match self {
            DirOp::Link(path, inode) => {
                names.insert(path.clone(), *inode);
            }
            DirOp::Unlink(path) => {
                names.remove(path);
            }
            DirOp::Rename(from, to) => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Sim {
    /// Operations attempted so far.
    ops: u64,
    /// Operations that may succeed before the machine dies.
    crash_after: Option<u64>,
    inodes: Vec<Inode>,
    /// Directory entries as a reader sees them now.
    names: BTreeMap<PathBuf, usize>,
    /// Directory entries that survive a crash for sure.
    durable_names: BTreeMap<PathBuf, usize>,
    /// Directory operations since the last `sync_dir` of their directory, in order.
    dir_log: Vec<DirOp>,
    /// The last write not yet fsync'd: its file, and where it started and ended.
    last_write: Option<(usize, usize, usize)>,
    locks: BTreeSet<PathBuf>,
}

impl Sim {
    /// Counts an operation, failing it if the machine is dead.
    fn op(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.crash_after {
            Some(limit) if self.ops > limit => Err(io::Error::other("simulated power loss")),
            _ => Ok(()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<usize> {
        self.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            )
        })
    }

    /// What of `inode` a crash leaves.
    fn crashed_contents(&self, inode: usize, rng: &mut Rng) -> Vec<u8> {
        let Inode { data, durable } = &self.inodes[inode];
        let mut new = data.clone();
        if let Some((file, start, end)) = self.last_write
            && file == inode
            && rng.coin()
        {
            new.truncate(start + rng.up_to((end - start) as u64) as usize);
        }
        if new == *durable {
            return new;
        }
        let len = if rng.coin() { durable.len() } else { new.len() };
        let mut out = vec![0; len];
        for start in (0..len).step_by(PAGE_BYTES) {
            let end = (start + PAGE_BYTES).min(len);
            let source = if rng.coin() { &new } else { durable };
            let have = end.min(source.len());
            if start < have {
                out[start..have].copy_from_slice(&source[start..have]);
            }
        }
        out
    }
}

/// The simulated disk; clones share it.
#[derive(Clone, Debug, Default)]
pub(super) struct SimStorage {
    sim: Arc<Mutex<Sim>>,
}

impl SimStorage {
    /// An empty disk that never dies.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets `ops` more operations succeed, then fails every later one.
    pub fn crash_after(&self, ops: u64) {
        let mut sim = self.sim();
        sim.crash_after = Some(sim.ops + ops);
    }

    /// Operations attempted so far.
    pub fn ops(&self) -> u64 {
        self.sim().ops
    }

    /// What a disk may hold after power is lost now, drawn from `seed`: a new disk that never
    /// dies, everything on it durable.
    pub fn crash_image(&self, seed: u64) -> SimStorage {
        let sim = self.sim();
        let mut rng = Rng::new(seed);
        let mut names = sim.durable_names.clone();
        let survive = rng.up_to(sim.dir_log.len() as u64) as usize;
        for op in &sim.dir_log[..survive] {
            op.apply(&mut names);
        }
        let mut image = Sim::default();
        let mut copied = BTreeMap::new();
        for (path, inode) in names {
            let new = *copied.entry(inode).or_insert_with(|| {
                let contents = sim.crashed_contents(inode, &mut rng);
                image.inodes.push(Inode {
                    data: contents.clone(),
                    durable: contents,
                });
                image.inodes.len() - 1
            });
            image.names.insert(path, new);
        }
        image.durable_names = image.names.clone();
        SimStorage {
            sim: Arc::new(Mutex::new(image)),
        }
    }

    /// The contents of the file `path` as a reader sees them now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let sim = self.sim();
        let inode = sim.names.get(path)?;
        Some(sim.inodes[*inode].data.clone())
    }

    /// Replaces the contents of the file `path` (which must exist), durably: damage for tests.
    pub fn set_contents(&self, path: &Path, bytes: &[u8]) {
        let mut sim = self.sim();
        if let Some(&inode) = sim.names.get(path) {
            sim.inodes[inode] = Inode {
                data: bytes.to_vec(),
                durable: bytes.to_vec(),
            };
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.sim().op()
    }

    fn open(&self, path: &Path, access: Access) -> io::Result<Box<dyn StorageFile>> {
        let mut sim = self.sim();
        sim.op()?;
        let inode = sim.inode(path)?;
        Ok(Box::new(SimFile {
            sim: Arc::clone(&self.sim),
            inode,
            writable: access == Access::Append,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut sim = self.sim();
        sim.op()?;
        let inode = match sim.names.get(path) {
            Some(&inode) => {
                sim.inodes[inode].data.clear();
                if sim.last_write.is_some_and(|(file, ..)| file == inode) {
                    sim.last_write = None;
                }
                inode
            }
            None => {
                sim.inodes.push(Inode::default());
                let inode = sim.inodes.len() - 1;
                sim.names.insert(path.to_path_buf(), inode);
                sim.dir_log.push(DirOp::Link(path.to_path_buf(), inode));
                inode
            }
        };
        Ok(Box::new(SimFile {
            sim: Arc::clone(&self.sim),
            inode,
            writable: true,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut sim = self.sim();
        sim.op()?;
        let inode = sim.inode(from)?;
        sim.names.remove(from);
        sim.names.insert(to.to_path_buf(), inode);
        sim.dir_log
            .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.sim();
        sim.op()?;
        sim.inode(path)?;
        sim.names.remove(path);
        sim.dir_log.push(DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut sim = self.sim();
        sim.op()?;
        Ok(sim
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(String::from))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.sim();
        sim.op()?;
        let log = std::mem::take(&mut sim.dir_log);
        let (synced, pending): (Vec<_>, Vec<_>) =
            log.into_iter().partition(|op| op.dir() == Some(dir));
        for op in &synced {
            op.apply(&mut sim.durable_names);
        }
        sim.dir_log = pending;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<StorageLock> {
        let mut sim = self.sim();
        sim.op()?;
        if !sim.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            sim: Arc::clone(&self.sim),
            path: path.to_path_buf(),
        }))
    }
}

/// A lock of [`SimStorage`], released when dropped.
struct SimLock {
    sim: Arc<Mutex<Sim>>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut sim = self.sim.lock().unwrap_or_else(PoisonError::into_inner);
        sim.locks.remove(&self.path);
    }
}

/// An open file of [`SimStorage`]: it names its inode, so it survives renames.
struct SimFile {
    sim: Arc<Mutex<Sim>>,
    inode: usize,
    writable: bool,
}

impl SimFile {
    /// The disk, with an operation counted.
    fn op(&self, write: bool) -> io::Result<MutexGuard<'_, Sim>> {
        let mut sim = self.sim.lock().unwrap_or_else(PoisonError::into_inner);
        sim.op()?;
        if write && !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened for reading",
            ));
        }
        Ok(sim)
    }
}

impl StorageFile for SimFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let inode = self.inode;
        let mut sim = self.op(true)?;
        let data = &mut sim.inodes[inode].data;
        let start = data.len();
        data.extend_from_slice(buf);
        let end = data.len();
        sim.last_write = Some((inode, start, end));
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let sim = self.op(false)?;
        let data = &sim.inodes[self.inode].data;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        let sim = self.op(false)?;
        Ok(sim.inodes[self.inode].data.len() as u64)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let inode = self.inode;
        let mut sim = self.op(true)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        sim.inodes[inode].data.resize(len, 0);
        if sim.last_write.is_some_and(|(file, ..)| file == inode) {
            sim.last_write = None;
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let inode = self.inode;
        let mut sim = self.op(false)?;
        let node = &mut sim.inodes[inode];
        node.durable = node.data.clone();
        if sim.last_write.is_some_and(|(file, ..)| file == inode) {
            sim.last_write = None;
        }
        Ok(())
    }
}
