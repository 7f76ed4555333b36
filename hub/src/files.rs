//! Where print files' bytes live: `<data_dir>/files/<first two hex digits>/<sha256>`, each
//! file once, by content.
//!
//! An upload is written to `files/tmp/` as it arrives, hashed (SHA-256, its id, and MD5) on
//! the way, flushed to disk, and only then renamed into place, so a file under its hash is
//! always whole. A failed or abandoned upload leaves nothing: its temporary file is removed
//! when the [`Upload`] is dropped, and whatever a crash left in `tmp/` is removed at start.
//! The store keeps [`FileSettings::reserve_bytes`] free on its disk: an upload that would eat
//! into it is refused, so a full disk never stops ingest or the database.

use std::path::{Path, PathBuf};

use md5::Digest as _;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

/// Limits of the store.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The largest file accepted, bytes.
    pub max_bytes: u64,
    /// Free space kept on the store's disk, bytes.
    pub reserve_bytes: u64,
}

impl Default for FileSettings {
    fn default() -> FileSettings {
        FileSettings { max_bytes: 2 << 30, reserve_bytes: 512 << 20 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the file is larger than the {} MiB this hub accepts (files.max_upload_mb)", .max / (1 << 20))]
    TooLarge { max: u64 },
    #[error("the hub's disk is full: {} MiB free, and {} MiB are kept free for the database", .free / (1 << 20), .reserve / (1 << 20))]
    DiskFull { free: u64, reserve: u64 },
    #[error("cannot store the file: {0}")]
    Io(String),
}

fn io(error: std::io::Error) -> StoreError {
    if error.raw_os_error() == Some(28) {
        // ENOSPC.
        return StoreError::DiskFull { free: 0, reserve: 0 };
    }
    StoreError::Io(error.to_string())
}

/// The file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Where this process's unfinished uploads go.
    tmp: PathBuf,
    settings: FileSettings,
}

/// An upload being written.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    sha256: Sha256,
    md5: md5::Md5,
    size: u64,
    max: u64,
    reserve: u64,
    /// Bytes written since free space was last checked.
    unchecked: u64,
    kept: bool,
}

/// A whole upload on disk, not yet in place.
#[derive(Debug)]
pub struct Received {
    upload: Upload,
    pub sha256: String,
    pub md5: String,
    pub size: u64,
}

impl Received {
    /// The temporary file, to read what it says.
    pub fn path(&self) -> &Path {
        &self.upload.path
    }
}

/// Free space is checked again after this many bytes.
const CHECK_EVERY: u64 = 64 << 20;

impl FileStore {
    /// A store under `dir` (created if needed), with whatever a crash left in its `tmp/`
    /// removed.
    pub fn open(dir: PathBuf, settings: FileSettings) -> Result<FileStore, StoreError> {
        let tmp = dir.join("tmp");
        FileStore::open_with_tmp(dir, tmp, settings)
    }

    /// A store under `dir` shared by several hub replicas: this one's unfinished uploads go
    /// to `tmp/<replica>/`, so a replica starting never removes another's.
    pub fn open_shared(
        dir: PathBuf,
        replica: &str,
        settings: FileSettings,
    ) -> Result<FileStore, StoreError> {
        let tmp = dir.join("tmp").join(replica);
        FileStore::open_with_tmp(dir, tmp, settings)
    }

    fn open_with_tmp(
        dir: PathBuf,
        tmp: PathBuf,
        settings: FileSettings,
    ) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(&tmp).map_err(io)?;
        for entry in std::fs::read_dir(&tmp).map_err(io)?.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(FileStore { dir, tmp, settings })
    }

    pub fn settings(&self) -> &FileSettings {
        &self.settings
    }

    /// Where the file with this SHA-256 lives.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.dir.join(prefix).join(sha256)
    }

    /// Starts an upload; `expected` is its size if the client said (refused at once when it
    /// is too big or would not fit).
    pub async fn begin(&self, expected: Option<u64>) -> Result<Upload, StoreError> {
        if let Some(size) = expected
            && size > self.settings.max_bytes
        {
            return Err(StoreError::TooLarge { max: self.settings.max_bytes });
        }
        self.check_space(expected.unwrap_or(0))?;
        let name = format!("{:016x}.part", rand::random::<u64>());
        let path = self.tmp.join(name);
        let file = tokio::fs::File::create(&path).await.map_err(io)?;
        Ok(Upload {
            file: Some(file),
            path,
            sha256: Sha256::new(),
            md5: md5::Md5::new(),
            size: 0,
            max: self.settings.max_bytes,
            reserve: self.settings.reserve_bytes,
            unchecked: 0,
            kept: false,
        })
    }

    fn check_space(&self, more: u64) -> Result<(), StoreError> {
        check_space(&self.dir, more, self.settings.reserve_bytes)
    }

    /// Moves a whole upload into place under its hash; returns where.
    pub async fn keep(&self, mut received: Received) -> Result<PathBuf, StoreError> {
        let target = self.path_of(&received.sha256);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        tokio::fs::rename(&received.upload.path, &target).await.map_err(io)?;
        received.upload.kept = true;
        if let Some(parent) = target.parent()
            && let Ok(dir) = tokio::fs::File::open(parent).await
        {
            let _ = dir.sync_all().await;
        }
        Ok(target)
    }

    /// Removes a file's bytes (a missing file is not an error).
    pub async fn remove(&self, sha256: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path_of(sha256)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

fn check_space(dir: &Path, more: u64, reserve: u64) -> Result<(), StoreError> {
    let Ok(stat) = rustix::fs::statvfs(dir) else { return Ok(()) };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < more.saturating_add(reserve) {
        return Err(StoreError::DiskFull { free, reserve });
    }
    Ok(())
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(StoreError::TooLarge { max: self.max });
        }
        self.unchecked += chunk.len() as u64;
        if self.unchecked >= CHECK_EVERY {
            self.unchecked = 0;
            if let Some(dir) = self.path.parent() {
                check_space(dir, CHECK_EVERY, self.reserve)?;
            }
        }
        self.sha256.update(chunk);
        self.md5.update(chunk);
        let file =
            self.file.as_mut().ok_or_else(|| StoreError::Io("the upload was closed".into()))?;
        file.write_all(chunk).await.map_err(io)
    }

    /// Flushes the upload to disk.
    pub async fn finish(mut self) -> Result<Received, StoreError> {
        let mut file =
            self.file.take().ok_or_else(|| StoreError::Io("the upload was closed".into()))?;
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        let sha256 = hex::encode(std::mem::take(&mut self.sha256).finalize());
        let md5 = hex::encode(std::mem::take(&mut self.md5).finalize());
        let size = self.size;
        Ok(Received { upload: self, sha256, md5, size })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_is_kept_whole_under_its_hash_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FileSettings { max_bytes: 10, reserve_bytes: 0 };
        let store = FileStore::open(dir.path().join("files"), settings).unwrap();
        let mut upload = store.begin(None).await.unwrap();
        upload.write(b"G28\n").await.unwrap();
        upload.write(b"G1 X1\n").await.unwrap();
        let received = upload.finish().await.unwrap();
        assert_eq!(received.size, 10);
        assert_eq!(received.md5, "f9071b52cf6c3fa2b457829893d01e7c");
        assert_eq!(
            received.sha256,
            "eed02f91a56ca124ecb7062afac5e54a5c5aa5e02647dcd02e406979b79edeb8"
        );
        let path = store.keep(received).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"G28\nG1 X1\n");
        assert!(path.starts_with(dir.path().join("files")));

        // Too big: refused, and its temporary file gone.
        let mut upload = store.begin(None).await.unwrap();
        upload.write(b"0123456789").await.unwrap();
        assert!(matches!(upload.write(b"x").await, Err(StoreError::TooLarge { max: 10 })));
        drop(upload);
        assert_eq!(std::fs::read_dir(dir.path().join("files/tmp")).unwrap().count(), 0);
        assert!(matches!(store.begin(Some(11)).await, Err(StoreError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_disk_without_room_for_the_reserve_refuses_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FileSettings { max_bytes: 1 << 40, reserve_bytes: u64::MAX / 2 };
        let store = FileStore::open(dir.path().join("files"), settings).unwrap();
        let error = store.begin(Some(1)).await.unwrap_err();
        assert!(matches!(error, StoreError::DiskFull { .. }), "{error}");
        assert!(error.to_string().contains("disk is full"), "{error}");
    }
}
