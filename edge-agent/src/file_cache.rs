//! The agent's cache of print files from the hub (issue 17, item 2; the design is
//! `docs/specs/file-delivery.md`): `<state>/files/<sha256>` when whole and verified,
//! `<sha256>.part` while arriving, with `<sha256>.ckpt` naming the offset through which the
//! `.part` is on disk for sure.
//!
//! A transfer resumes from the checkpoint, never from the start: after a link cut, a hub
//! restart or an agent crash, [`FileCache::receive`] truncates the `.part` to its checkpoint
//! and hashes that prefix again from disk (a read of what is there, not a transfer). A file
//! is whole only once its SHA-256 matches the name it was offered under; a mismatch removes
//! it. The cache holds at most its capacity: whole files are evicted least recently used
//! (by modification time, refreshed on use), never one a job still needs ([`FileCache::pin`]).
//!
//! Blocking I/O: the async side calls it from a blocking task.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bytes between checkpoints: what a crash can cost a transfer, at most.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the file ({size} bytes) is larger than the agent's file cache ({capacity} bytes)")]
    TooLarge { size: u64, capacity: u64 },
    #[error("no room in the file cache: {needed} bytes needed, and the files there are in use")]
    Full { needed: u64 },
    #[error("the file arrived damaged: its SHA-256 is {found}, not {expected}")]
    Mismatch { expected: String, found: String },
    #[error("more bytes than the {size} offered")]
    Overrun { size: u64 },
    #[error("{0:?} is not a SHA-256")]
    BadName(String),
    #[error("file cache: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct FileCache {
    dir: PathBuf,
    capacity: u64,
    pinned: BTreeSet<String>,
}

/// A file arriving.
#[derive(Debug)]
pub struct Receiving {
    sha256: String,
    size: u64,
    file: File,
    part: PathBuf,
    checkpoint: PathBuf,
    target: PathBuf,
    hasher: Sha256,
    written: u64,
    checkpointed: u64,
}

fn valid(sha256: &str) -> Result<(), CacheError> {
    if sha256.len() == 64
        && sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(CacheError::BadName(sha256.to_owned()))
    }
}

impl FileCache {
    pub fn open(dir: PathBuf, capacity: u64) -> Result<FileCache, CacheError> {
        fs::create_dir_all(&dir)?;
        Ok(FileCache { dir, capacity, pinned: BTreeSet::new() })
    }

    /// Where a whole file is, if it is here.
    pub fn whole(&self, sha256: &str) -> Option<PathBuf> {
        valid(sha256).ok()?;
        let path = self.dir.join(sha256);
        path.is_file().then(|| {
            touch(&path);
            path
        })
    }

    /// Keeps `sha256` from eviction (a job needs it).
    pub fn pin(&mut self, sha256: &str) {
        self.pinned.insert(sha256.to_owned());
    }

    pub fn unpin(&mut self, sha256: &str) {
        self.pinned.remove(sha256);
    }

    /// Starts or resumes receiving `sha256` of `size` bytes; [`Receiving::from`] says where
    /// the bytes must resume.
    pub fn receive(&mut self, sha256: &str, size: u64) -> Result<Receiving, CacheError> {
        valid(sha256)?;
        if size > self.capacity {
            return Err(CacheError::TooLarge { size, capacity: self.capacity });
        }
        let part = self.dir.join(format!("{sha256}.part"));
        let checkpoint = self.dir.join(format!("{sha256}.ckpt"));
        let from = read_checkpoint(&checkpoint).filter(|&at| at <= size).unwrap_or(0);
        self.make_room(size.saturating_sub(from), sha256)?;
        let mut file =
            OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&part)?;
        // Whatever lies past the checkpoint may not have reached the disk whole.
        file.set_len(from)?;
        let mut hasher = Sha256::new();
        file.seek(SeekFrom::Start(0))?;
        let mut prefix = (&mut file).take(from);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = prefix.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        file.seek(SeekFrom::Start(from))?;
        Ok(Receiving {
            sha256: sha256.to_owned(),
            size,
            file,
            part,
            checkpoint,
            target: self.dir.join(sha256),
            hasher,
            written: from,
            checkpointed: from,
        })
    }

    /// Evicts whole, unpinned files, least recently used first, until `needed` more bytes fit.
    fn make_room(&self, needed: u64, keep: &str) -> Result<(), CacheError> {
        let mut files: Vec<(std::time::SystemTime, PathBuf, u64, String)> = Vec::new();
        let mut used = 0u64;
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            used += meta.len();
            if valid(&name).is_ok() && !self.pinned.contains(&name) && name != keep {
                files.push((
                    meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    entry.path(),
                    meta.len(),
                    name,
                ));
            }
        }
        files.sort();
        let mut evictable = files.into_iter();
        while used + needed > self.capacity {
            let Some((_, path, size, name)) = evictable.next() else {
                return Err(CacheError::Full { needed });
            };
            tracing::info!(file = %name, size, "Evicting a file from the cache.");
            fs::remove_file(&path)?;
            used -= size;
        }
        Ok(())
    }
}

impl Receiving {
    /// The SHA-256 the file was offered under (lower-case hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The offset the bytes resume from.
    pub fn from(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        if self.written + bytes.len() as u64 > self.size {
            return Err(CacheError::Overrun { size: self.size });
        }
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        if self.written - self.checkpointed >= CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes what was written durable and records how far.
    pub fn checkpoint(&mut self) -> Result<(), CacheError> {
        self.file.sync_data()?;
        let temporary = self.checkpoint.with_extension("ckpt.new");
        fs::write(&temporary, self.written.to_string())?;
        fs::rename(&temporary, &self.checkpoint)?;
        self.checkpointed = self.written;
        Ok(())
    }

    /// The whole file, verified and in place; a damaged one is removed.
    pub fn finish(mut self) -> Result<PathBuf, CacheError> {
        if self.written != self.size {
            self.checkpoint()?;
            return Err(CacheError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} of {} bytes arrived", self.written, self.size),
            )));
        }
        self.file.sync_all()?;
        let found = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let _ = fs::remove_file(&self.checkpoint);
        if found != self.sha256 {
            let _ = fs::remove_file(&self.part);
            return Err(CacheError::Mismatch { expected: self.sha256.clone(), found });
        }
        fs::rename(&self.part, &self.target)?;
        Ok(self.target.clone())
    }
}

fn read_checkpoint(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Marks a file as just used (eviction goes by modification time).
fn touch(path: &Path) {
    if let Ok(file) = OpenOptions::new().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn content(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn a_file_arrives_whole_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::open(dir.path().join("files"), 1 << 30).unwrap();
        let data = content(100_000);
        let id = sha(&data);
        assert_eq!(cache.whole(&id), None);
        let mut receiving = cache.receive(&id, data.len() as u64).unwrap();
        assert_eq!(receiving.from(), 0);
        for chunk in data.chunks(7_000) {
            receiving.write(chunk).unwrap();
        }
        let path = receiving.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(cache.whole(&id), Some(path));
    }

    #[test]
    fn a_cut_transfer_resumes_from_its_checkpoint_not_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::open(dir.path().join("files"), 1 << 30).unwrap();
        let data = content((CHECKPOINT_BYTES as usize) * 2 + 12_345);
        let id = sha(&data);
        {
            let mut receiving = cache.receive(&id, data.len() as u64).unwrap();
            // 64 KiB at a time, as off the network: one checkpoint at 8 MiB, then more
            // bytes, then the crash (no finish).
            for chunk in data[..CHECKPOINT_BYTES as usize + 5_000].chunks(64 * 1024) {
                receiving.write(chunk).unwrap();
            }
        }
        let mut receiving = cache.receive(&id, data.len() as u64).unwrap();
        assert_eq!(receiving.from(), CHECKPOINT_BYTES, "resumes at the checkpoint");
        receiving.write(&data[receiving.from() as usize..]).unwrap();
        let path = receiving.finish().unwrap();
        assert_eq!(fs::read(path).unwrap(), data);
    }

    #[test]
    fn damage_too_much_and_no_room_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::open(dir.path().join("files"), 300_000).unwrap();
        let data = content(100_000);
        let id = sha(&data);
        // Damaged on the way: refused and removed.
        let mut receiving = cache.receive(&id, data.len() as u64).unwrap();
        let mut damaged = data.clone();
        damaged[500] ^= 1;
        receiving.write(&damaged).unwrap();
        assert!(matches!(receiving.finish(), Err(CacheError::Mismatch { .. })));
        assert_eq!(cache.whole(&id), None);
        // More than offered.
        let mut receiving = cache.receive(&id, 10).unwrap();
        assert!(matches!(receiving.write(&data[..11]), Err(CacheError::Overrun { size: 10 })));
        // Larger than the cache.
        assert!(matches!(cache.receive(&id, 400_000), Err(CacheError::TooLarge { .. })));
        assert!(matches!(cache.receive("not-a-hash", 1), Err(CacheError::BadName(_))));
    }

    #[test]
    fn the_least_recently_used_file_goes_first_and_a_pinned_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FileCache::open(dir.path().join("files"), 250_000).unwrap();
        let store = |cache: &mut FileCache, data: &[u8]| {
            let mut receiving = cache.receive(&sha(data), data.len() as u64).unwrap();
            receiving.write(data).unwrap();
            receiving.finish().unwrap();
        };
        let (a, b, c) = (content(100_000), content(100_001), content(100_002));
        store(&mut cache, &a);
        store(&mut cache, &b);
        cache.pin(&sha(&a));
        // c needs room: b goes (a is pinned, though older).
        store(&mut cache, &c);
        assert!(cache.whole(&sha(&a)).is_some());
        assert!(cache.whole(&sha(&b)).is_none());
        assert!(cache.whole(&sha(&c)).is_some());
        // With both pinned, nothing can go.
        cache.pin(&sha(&c));
        let d = content(100_003);
        assert!(matches!(cache.receive(&sha(&d), d.len() as u64), Err(CacheError::Full { .. })));
    }
}
