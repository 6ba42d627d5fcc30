//! The file and directory operations of the master dataset, behind one small trait.
//!
//! Everything the master dataset reads or writes goes through [`Storage`]: [`Disk`] is the real
//! file system, and the tests put a simulated disk under the same code, one that loses power at
//! any operation (losing what was not fsync'd, tearing writes, persisting pages out of order),
//! to check that what was acknowledged survives.
//!
//! The operations are the few the on-disk format needs: files are only appended to, read at an
//! offset, cut short and fdatasync'd; directories are listed, entries created, renamed and
//! removed, and the directory fsync'd to make those durable.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// How [`Storage::open`] opens an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// For reading only.
    Read,
    /// For reading and for appending at its end (and cutting it short).
    Append,
}

/// A held lock; dropping it releases the lock.
pub type StorageLock = Box<dyn Any + Send + Sync>;

/// The file and directory operations the master dataset uses.
///
/// Paths are whole paths (a data directory joined with a file name); the master dataset keeps all
/// its files directly in one directory.
pub trait Storage: Send + Sync {
    /// Creates `dir` and its parents if they do not exist.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Opens an existing file.
    fn open(&self, path: &Path, access: Access) -> io::Result<Box<dyn StorageFile>>;

    /// Creates a file, or empties an existing one, and opens it for appending. The new
    /// directory entry is durable only after [`sync_dir`](Self::sync_dir).
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;

    /// Renames `from` to `to`, replacing `to` if it exists; durable only after
    /// [`sync_dir`](Self::sync_dir). Open files keep naming the renamed file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file; durable only after [`sync_dir`](Self::sync_dir).
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// The names of the files in `dir` (names that are not UTF-8 are left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Makes the entries of `dir` created, renamed or removed so far durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes the exclusive lock of the file `path` (creating it if needed) without waiting:
    /// fails with [`io::ErrorKind::WouldBlock`] while another holder has it.
    fn lock(&self, path: &Path) -> io::Result<StorageLock>;
}

/// An open file of a [`Storage`].
#[expect(
    clippy::len_without_is_empty,
    reason = "nothing asks whether a file is empty; `len` pairs with `set_len`"
)]
pub trait StorageFile: Send + Sync {
    /// Writes all of `buf` at the end of the file. Durable only after
    /// [`sync_data`](Self::sync_data).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;

    /// Reads bytes at `offset` into `buf`; returns how many, fewer than asked only at the end of
    /// the file (0 at or past it).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Cuts the file to `len` bytes (or extends it with zeros). Durable only after
    /// [`sync_data`](Self::sync_data).
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, failing if the file ends first.
pub(super) fn read_exact_at(file: &dyn StorageFile, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(offset + done as u64, &mut buf[done..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended at byte {} while reading {} bytes at {offset}",
                        offset + done as u64,
                        buf.len()
                    ),
                ));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The real file system, through `std::fs`: what [`MasterDataset::open`] and the other
/// functions without a storage argument use.
///
/// [`MasterDataset::open`]: super::MasterDataset::open
#[derive(Clone, Copy, Debug, Default)]
pub struct Disk;

impl Storage for Disk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path, access: Access) -> io::Result<Box<dyn StorageFile>> {
        let file = match access {
            Access::Read => File::open(path)?,
            Access::Append => OpenOptions::new().read(true).append(true).open(path)?,
        };
        Ok(Box::new(DiskFile(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(DiskFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<StorageLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A file of [`Disk`]. Created files are written at their end only, so appending through the
/// shared file position is appending.
struct DiskFile(File);

impl StorageFile for DiskFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.0, buf, offset)
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}
