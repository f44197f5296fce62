//! The few filesystem operations the spool log uses, behind a trait so that the log can be
//! run against a simulated disk that loses un-synced writes at a "crash" (the crash tests).
//!
//! Paths are relative to the spool directory, with at most one level of subdirectory
//! (`dead/…`, `quarantine/…`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file open for appending.
pub trait StorageFile {
    /// Writes all of `buf` at the end.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates to `len` bytes (cutting back a failed write).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// A spool directory.
pub trait Storage {
    /// Its file type.
    type File: StorageFile;
    /// File names in `dir` (`""` for the top level).
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Creates the subdirectory `dir` if it does not exist.
    fn create_dir(&self, dir: &str) -> io::Result<()>;
    /// Creates `path`, which must not exist, for appending.
    fn create(&self, path: &str) -> io::Result<Self::File>;
    /// Opens an existing `path` for appending.
    fn open_append(&self, path: &str) -> io::Result<Self::File>;
    /// Reads all of `path`.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes `path`.
    fn remove(&self, path: &str) -> io::Result<()>;
    /// `fsync`s the directory `dir`, making creations, renames and removals in it durable.
    fn sync_dir(&self, dir: &str) -> io::Result<()>;
    /// Overwrites the start of the existing file `path` in place and syncs it (no new
    /// space needed; used when the disk is full).
    fn overwrite(&self, path: &str, contents: &[u8]) -> io::Result<()>;
    /// Writes `path` whole and makes it durable: temp file, fsync, rename, fsync directory.
    fn replace_durably(&self, path: &str, contents: &[u8]) -> io::Result<()> {
        let tmp = format!("{path}.tmp");
        let _ = self.remove(&tmp);
        let mut f = self.create(&tmp)?;
        f.append(contents)?;
        f.sync_data()?;
        drop(f);
        self.rename(&tmp, path)?;
        self.sync_dir(parent(path))
    }
}

/// The directory part of a spool-relative path.
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The real filesystem.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// The spool directory `root`, created (mode 0700: records hold workspace tokens) if
    /// missing.
    pub fn new(root: &Path) -> io::Result<FsStorage> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        Ok(FsStorage {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

/// A real file.
#[derive(Debug)]
pub struct FsFile(File);

impl StorageFile for FsFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for FsStorage {
    type File = FsFile;

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.path(dir))? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
    fn create_dir(&self, dir: &str) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.path(dir))
    }
    fn create(&self, path: &str) -> io::Result<FsFile> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(path))
            .map(FsFile)
    }
    fn open_append(&self, path: &str) -> io::Result<FsFile> {
        OpenOptions::new()
            .append(true)
            .open(self.path(path))
            .map(FsFile)
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(path))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }
    fn remove(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(path))
    }
    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        File::open(self.path(dir))?.sync_all()
    }
    fn overwrite(&self, path: &str, contents: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new().write(true).open(self.path(path))?;
        f.write_all_at(contents, 0)?;
        f.sync_data()
    }
}

#[cfg(test)]
pub(crate) mod sim {
    //! A simulated disk. Data written but not `sync_data`ed, and directory changes not
    //! followed by `sync_dir`, may vanish at [`SimStorage::crash`]; a crash keeps a random
    //! prefix of each file's un-synced bytes, possibly with garbage in it (a torn write).

    use std::collections::BTreeMap;
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::{Storage, StorageFile, parent};

    #[derive(Debug, Default, Clone)]
    struct Inode {
        data: Vec<u8>,
        synced: usize,
    }

    #[derive(Debug, Default)]
    struct Disk {
        inodes: Vec<Inode>,
        /// path → inode, as the running system sees it.
        names: BTreeMap<String, usize>,
        /// path → inode, as it would be after a crash (updated per directory by sync_dir).
        durable: BTreeMap<String, usize>,
        dirs: Vec<String>,
        /// Fail the next sync_data with EIO.
        fail_next_sync: bool,
        /// Fail writes that would take the total over this many bytes with ENOSPC.
        space: Option<usize>,
    }

    impl Disk {
        fn used(&self) -> usize {
            self.names
                .values()
                .map(|&i| self.inodes[i].data.len())
                .sum()
        }
    }

    /// A simulated spool directory; clones share the disk.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct SimStorage(Arc<Mutex<Disk>>);

    /// A file on the simulated disk.
    #[derive(Debug)]
    pub(crate) struct SimFile {
        disk: SimStorage,
        inode: usize,
    }

    fn not_found() -> io::Error {
        io::Error::from(io::ErrorKind::NotFound)
    }

    impl SimStorage {
        fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// The next `sync_data` fails with EIO.
        pub(crate) fn fail_next_sync(&self) {
            self.disk().fail_next_sync = true;
        }

        /// Writes beyond `bytes` in total fail with ENOSPC (`None`: unlimited).
        pub(crate) fn set_space(&self, bytes: Option<usize>) {
            self.disk().space = bytes;
        }

        /// Bytes in use.
        pub(crate) fn used(&self) -> usize {
            self.disk().used()
        }

        /// Simulates power loss: `choose(n)` picks a number in `0..=n` (the test's randomness).
        pub(crate) fn crash(&self, choose: &mut dyn FnMut(usize) -> usize) {
            let mut d = self.disk();
            // Each directory keeps either all or none of its un-synced changes.
            let mut names = BTreeMap::new();
            let mut dirs: Vec<String> = d.dirs.clone();
            dirs.push(String::new());
            for dir in dirs {
                let keep_new = choose(1) == 1;
                let source = if keep_new { &d.names } else { &d.durable };
                for (path, &inode) in source.iter().filter(|(p, _)| parent(p) == dir) {
                    names.insert(path.clone(), inode);
                }
            }
            for inode in &mut d.inodes {
                let unsynced = inode.data.len() - inode.synced;
                let keep = choose(unsynced);
                let garbage = keep > 0 && choose(3) == 0;
                inode.data.truncate(inode.synced + keep);
                if garbage {
                    let at = inode.synced + choose(keep - 1);
                    inode.data[at] ^= 0x5a;
                }
                inode.synced = inode.data.len();
            }
            d.durable = names.clone();
            d.names = names;
            d.fail_next_sync = false;
            d.space = None;
        }
    }

    impl StorageFile for SimFile {
        fn append(&mut self, buf: &[u8]) -> io::Result<()> {
            let mut d = self.disk.disk();
            if let Some(space) = d.space {
                let room = space.saturating_sub(d.used());
                if buf.len() > room {
                    // A partial write, as a real full disk gives.
                    let part = buf[..room].to_vec();
                    d.inodes[self.inode].data.extend_from_slice(&part);
                    return Err(io::Error::from_raw_os_error(28));
                }
            }
            d.inodes[self.inode].data.extend_from_slice(buf);
            Ok(())
        }
        fn sync_data(&mut self) -> io::Result<()> {
            let mut d = self.disk.disk();
            if std::mem::take(&mut d.fail_next_sync) {
                return Err(io::Error::from_raw_os_error(5));
            }
            let inode = &mut d.inodes[self.inode];
            inode.synced = inode.data.len();
            Ok(())
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            let mut d = self.disk.disk();
            let inode = &mut d.inodes[self.inode];
            inode.data.truncate(len as usize);
            inode.synced = inode.synced.min(inode.data.len());
            Ok(())
        }
    }

    impl Storage for SimStorage {
        type File = SimFile;

        fn list(&self, dir: &str) -> io::Result<Vec<String>> {
            let d = self.disk();
            Ok(d.names
                .keys()
                .filter(|p| parent(p) == dir)
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                .collect())
        }
        fn create_dir(&self, dir: &str) -> io::Result<()> {
            let mut d = self.disk();
            if !d.dirs.iter().any(|x| x == dir) {
                d.dirs.push(dir.to_string());
            }
            Ok(())
        }
        fn create(&self, path: &str) -> io::Result<SimFile> {
            let mut d = self.disk();
            if d.names.contains_key(path) {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            d.inodes.push(Inode::default());
            let inode = d.inodes.len() - 1;
            d.names.insert(path.to_string(), inode);
            Ok(SimFile {
                disk: self.clone(),
                inode,
            })
        }
        fn open_append(&self, path: &str) -> io::Result<SimFile> {
            let d = self.disk();
            let inode = *d.names.get(path).ok_or_else(not_found)?;
            Ok(SimFile {
                disk: self.clone(),
                inode,
            })
        }
        fn read(&self, path: &str) -> io::Result<Vec<u8>> {
            let d = self.disk();
            let inode = *d.names.get(path).ok_or_else(not_found)?;
            Ok(d.inodes[inode].data.clone())
        }
        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            let mut d = self.disk();
            let inode = d.names.remove(from).ok_or_else(not_found)?;
            d.names.insert(to.to_string(), inode);
            Ok(())
        }
        fn remove(&self, path: &str) -> io::Result<()> {
            let mut d = self.disk();
            d.names.remove(path).map(|_| ()).ok_or_else(not_found)
        }
        fn overwrite(&self, path: &str, contents: &[u8]) -> io::Result<()> {
            let mut d = self.disk();
            let inode = *d.names.get(path).ok_or_else(not_found)?;
            let data = &mut d.inodes[inode].data;
            if data.len() < contents.len() {
                data.resize(contents.len(), 0);
            }
            data[..contents.len()].copy_from_slice(contents);
            d.inodes[inode].synced = d.inodes[inode].data.len();
            Ok(())
        }
        fn sync_dir(&self, dir: &str) -> io::Result<()> {
            let mut d = self.disk();
            let current: Vec<(String, usize)> = d
                .names
                .iter()
                .filter(|(p, _)| parent(p) == dir)
                .map(|(p, &i)| (p.clone(), i))
                .collect();
            d.durable.retain(|p, _| parent(p) != dir);
            d.durable.extend(current);
            Ok(())
        }
    }
}
