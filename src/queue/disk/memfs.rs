//! An in-memory [`Fs`] that can crash: each file keeps what was written and
//! what was made durable apart, so a crash (losing whatever was not
//! synced, or keeping a torn prefix of it), a failing `fdatasync`, a full
//! disk and flipped bits can be injected into the disk queue's tests.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fs::{Fs, FsFile};

#[derive(Debug, Default, Clone)]
struct Contents {
    /// What a read sees.
    written: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Lowest offset written since the last sync.
    dirty_from: Option<usize>,
}

#[derive(Debug, Default)]
struct Disk {
    files: BTreeMap<PathBuf, Arc<Mutex<Contents>>>,
    /// Bytes that may still be allocated; `None`: unlimited.
    space_left: Option<u64>,
    /// The next this many syncs fail.
    failing_syncs: u32,
}

/// The shared in-memory disk; clones see the same files.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug)]
struct MemFile {
    contents: Arc<Mutex<Contents>>,
    disk: Arc<Mutex<Disk>>,
}

impl MemFs {
    pub fn new() -> Self {
        MemFs::default()
    }

    /// Power loss: every file goes back to what was synced, plus (for
    /// `torn`, per file) the first `torn(len)` bytes of what was written after it.
    pub fn crash(&self, mut torn: impl FnMut(usize) -> usize) {
        let disk = self.disk.lock().unwrap();
        for file in disk.files.values() {
            let mut c = file.lock().unwrap();
            let mut survived = c.durable.clone();
            if let Some(from) = c.dirty_from.take() {
                // Writes are appends: a prefix of what was written since the sync made it.
                let extra = c.written.len().saturating_sub(from);
                let keep = torn(extra).min(extra);
                if survived.len() < from + keep {
                    survived.resize(from + keep, 0);
                }
                survived[from..from + keep].copy_from_slice(&c.written[from..from + keep]);
            }
            c.written = survived.clone();
            c.durable = survived;
        }
    }

    pub fn fail_next_syncs(&self, n: u32) {
        self.disk.lock().unwrap().failing_syncs = n;
    }

    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.disk.lock().unwrap().space_left = bytes;
    }

    /// Flips a bit at `offset` of `path` (durably).
    pub fn corrupt(&self, path: &Path, offset: usize) {
        let disk = self.disk.lock().unwrap();
        if let Some(file) = disk.files.get(path) {
            let mut c = file.lock().unwrap();
            if offset < c.written.len() {
                c.written[offset] ^= 0x40;
                c.durable = c.written.clone();
            }
        }
    }

    pub fn files(&self) -> Vec<PathBuf> {
        self.disk.lock().unwrap().files.keys().cloned().collect()
    }

    pub fn len_of(&self, path: &Path) -> usize {
        let disk = self.disk.lock().unwrap();
        disk.files
            .get(path)
            .map_or(0, |f| f.lock().unwrap().written.len())
    }
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
}

impl FsFile for MemFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut c = self.contents.lock().unwrap();
        let end = offset as usize + buf.len();
        if end > c.written.len() {
            let grow = (end - c.written.len()) as u64;
            let mut disk = self.disk.lock().unwrap();
            if let Some(left) = &mut disk.space_left {
                if *left < grow {
                    return Err(no_space());
                }
                *left -= grow;
            }
            c.written.resize(end, 0);
        }
        c.written[offset as usize..end].copy_from_slice(buf);
        let from = c
            .dirty_from
            .map_or(offset as usize, |d| d.min(offset as usize));
        c.dirty_from = Some(from);
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let c = self.contents.lock().unwrap();
        let start = (offset as usize).min(c.written.len());
        let n = buf.len().min(c.written.len() - start);
        buf[..n].copy_from_slice(&c.written[start..start + n]);
        Ok(n)
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut disk = self.disk.lock().unwrap();
            if disk.failing_syncs > 0 {
                disk.failing_syncs -= 1;
                return Err(io::Error::other("injected fdatasync failure"));
            }
        }
        let mut c = self.contents.lock().unwrap();
        c.durable = c.written.clone();
        c.dirty_from = None;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.contents.lock().unwrap().written.len() as u64)
    }
}

impl Fs for MemFs {
    fn create(&self, path: &Path, size: u64) -> io::Result<Arc<dyn FsFile>> {
        let mut disk = self.disk.lock().unwrap();
        if let Some(left) = &mut disk.space_left {
            if *left < size {
                return Err(no_space());
            }
            *left -= size;
        }
        // Pre-allocated zeros count as durable (fallocate + the directory sync that follows).
        let contents = Arc::new(Mutex::new(Contents {
            written: vec![0; size as usize],
            durable: vec![0; size as usize],
            dirty_from: None,
        }));
        if let Some(old) = disk.files.insert(path.to_path_buf(), contents.clone()) {
            let freed = old.lock().unwrap().written.len() as u64;
            if let Some(left) = &mut disk.space_left {
                *left += freed;
            }
        }
        Ok(Arc::new(MemFile {
            contents,
            disk: self.disk.clone(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let disk = self.disk.lock().unwrap();
        let contents = disk
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Arc::new(MemFile {
            contents,
            disk: self.disk.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let disk = self.disk.lock().unwrap();
        Ok(disk
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        let file = disk
            .files
            .remove(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let freed = file.lock().unwrap().written.len() as u64;
        if let Some(left) = &mut disk.space_left {
            *left += freed;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        let file = disk
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn available(&self, _dir: &Path) -> io::Result<u64> {
        Ok(self.disk.lock().unwrap().space_left.unwrap_or(u64::MAX))
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}
