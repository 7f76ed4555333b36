//! Cameras at the hub: snapshot files on disk, and the live-view fan-out.
//!
//! **Snapshots** arrive as `Snapshot` records, one per chunk, in the agent's order. Each
//! chunk is written to `<dir>/partial/<id>/<index>` (fsynced) before the ingest transaction
//! commits, so an acknowledged chunk is on disk; writing a chunk twice (a resend) is
//! harmless. The last chunk assembles the image, checks its length and SHA-256, and moves it
//! to `<dir>/<printer>/<yyyy-mm-dd>/<id>.jpg`; the projection then records it. A chunk lost
//! at the agent (the snapshot class is capped there) leaves a partial directory that
//! retention removes after a day.
//!
//! **Live view**: the first viewer of a camera asks its agent to stream (a lease the hub
//! renews every [`LIVE_RENEW`] while anyone watches); frames arrive on their own QUIC streams
//! and go into a `watch` channel per camera, so every viewer gets the newest frame and a slow
//! one skips frames instead of slowing the others. When the last viewer leaves, the hub tells
//! the agent to stop.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use proto::{AgentId, CameraId, PrinterId, SnapshotChunk, UnixMillis};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// How often the hub renews a live view lease (the agent's lease is 30 s).
pub const LIVE_RENEW: Duration = Duration::from_secs(10);
/// The live frame rate the hub asks for, in thousandths of a frame per second (the agent
/// caps it at its own configured maximum).
pub const LIVE_FPS_MILLI: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {id}: {detail}")]
    Invalid { id: String, detail: String },
    #[error("snapshot storage at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Snapshot files under the hub's data directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// A snapshot whose image is whole on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Relative to the store's directory.
    pub path: String,
    pub bytes: u64,
}

impl SnapshotStore {
    pub fn new(dir: PathBuf) -> SnapshotStore {
        SnapshotStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a whole snapshot lives, relative to the store.
    pub fn relative_path(chunk: &SnapshotChunk) -> String {
        let day = time::OffsetDateTime::from_unix_timestamp(chunk.captured_at.0.div_euclid(1000))
            .map(|t| t.date())
            .unwrap_or(time::Date::MIN);
        format!(
            "{}/{:04}-{:02}-{:02}/{}.jpg",
            chunk.printer,
            day.year(),
            u8::from(day.month()),
            day.day(),
            chunk.snapshot
        )
    }

    /// Opens a stored snapshot by its relative path (as recorded in the database).
    pub fn read(&self, relative: &str) -> std::io::Result<Vec<u8>> {
        if relative.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad path"));
        }
        std::fs::read(self.dir.join(relative))
    }

    /// Stores one chunk; returns the whole snapshot once its last chunk is in.
    pub fn put_chunk(
        &self,
        chunk: &SnapshotChunk,
    ) -> Result<Option<StoredSnapshot>, SnapshotError> {
        let id = chunk.snapshot.to_string();
        let invalid = |detail: String| SnapshotError::Invalid { id: id.clone(), detail };
        if chunk.chunk_count == 0 || chunk.chunk_index >= chunk.chunk_count {
            return Err(invalid(format!(
                "chunk {} of {} does not exist",
                chunk.chunk_index, chunk.chunk_count
            )));
        }
        let relative = SnapshotStore::relative_path(chunk);
        let whole = self.dir.join(&relative);
        if whole.exists() {
            // Assembled before (this is a resend after a crash or a lost acknowledgement).
            return Ok(Some(StoredSnapshot { path: relative, bytes: u64::from(chunk.total_len) }));
        }
        let partial = self.dir.join("partial").join(&id);
        create_dir(&partial)?;
        write_durably(&partial.join(chunk.chunk_index.to_string()), &chunk.data)?;
        if chunk.chunk_index + 1 != chunk.chunk_count {
            return Ok(None);
        }
        let mut image = Vec::with_capacity(chunk.total_len as usize);
        for index in 0..chunk.chunk_count {
            let path = partial.join(index.to_string());
            match std::fs::read(&path) {
                Ok(data) => image.extend_from_slice(&data),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_dir_all(&partial);
                    return Err(invalid(format!(
                        "chunk {index} of {} never arrived (dropped at the agent?)",
                        chunk.chunk_count
                    )));
                }
                Err(source) => return Err(SnapshotError::Io { path, source }),
            }
        }
        let sha256: [u8; 32] = Sha256::digest(&image).into();
        if image.len() != chunk.total_len as usize || sha256 != chunk.sha256 {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(invalid(format!(
                "assembled {} bytes that do not match the announced {} bytes and hash",
                image.len(),
                chunk.total_len
            )));
        }
        if let Some(parent) = whole.parent() {
            create_dir(parent)?;
        }
        let temp = whole.with_extension("jpg.tmp");
        write_durably(&temp, &image)?;
        std::fs::rename(&temp, &whole)
            .map_err(|source| SnapshotError::Io { path: whole.clone(), source })?;
        let _ = std::fs::remove_dir_all(&partial);
        Ok(Some(StoredSnapshot { path: relative, bytes: image.len() as u64 }))
    }

    /// Removes a stored snapshot file (retention).
    pub fn remove(&self, relative: &str) {
        if !relative.split('/').any(|part| part == "..") {
            let _ = std::fs::remove_file(self.dir.join(relative));
        }
    }

    /// Removes partial snapshots untouched for longer than `age`; returns how many.
    pub fn sweep_partials(&self, age: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.dir.join("partial")) else { return 0 };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if old && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

fn create_dir(path: &Path) -> Result<(), SnapshotError> {
    std::fs::create_dir_all(path)
        .map_err(|source| SnapshotError::Io { path: path.to_owned(), source })
}

fn write_durably(path: &Path, data: &[u8]) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io { path: path.to_owned(), source };
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)
}

/// One live frame as viewers get it.
#[derive(Debug, Clone)]
pub struct LiveImage {
    pub captured_at: UnixMillis,
    pub received: std::time::Instant,
    pub jpeg: Bytes,
}

type CameraKey = (PrinterId, CameraId);

#[derive(Debug)]
struct Feed {
    frames: watch::Sender<Option<LiveImage>>,
    viewers: usize,
}

/// The live-view fan-out and the latest snapshot round trips, shared by the sync server and
/// the API.
#[derive(Debug, Default)]
pub struct Cameras {
    feeds: Mutex<HashMap<CameraKey, Feed>>,
    /// Which agent serves each printer, from the agents' hellos.
    owners: Mutex<HashMap<PrinterId, AgentId>>,
    round_trips: Mutex<HashMap<CameraKey, (u64, UnixMillis)>>,
}

impl Cameras {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<CameraKey, Feed>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that `agent` serves `printers` (on each hello).
    pub fn serves(&self, agent: &AgentId, printers: impl IntoIterator<Item = PrinterId>) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        for printer in printers {
            owners.insert(printer, agent.clone());
        }
    }

    pub fn owner(&self, printer: &PrinterId) -> Option<AgentId> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner()).get(printer).cloned()
    }

    /// Adds a viewer; returns its frame receiver and whether it is the first (so the agent
    /// must be asked to stream).
    pub fn add_viewer(
        &self,
        printer: &PrinterId,
        camera: &CameraId,
    ) -> (watch::Receiver<Option<LiveImage>>, bool) {
        let mut feeds = self.feeds();
        let feed = feeds
            .entry((printer.clone(), camera.clone()))
            .or_insert_with(|| Feed { frames: watch::Sender::new(None), viewers: 0 });
        feed.viewers += 1;
        (feed.frames.subscribe(), feed.viewers == 1)
    }

    /// Removes a viewer; returns whether it was the last.
    pub fn remove_viewer(&self, printer: &PrinterId, camera: &CameraId) -> bool {
        let mut feeds = self.feeds();
        let key = (printer.clone(), camera.clone());
        let Some(feed) = feeds.get_mut(&key) else { return false };
        feed.viewers = feed.viewers.saturating_sub(1);
        feed.viewers == 0
    }

    /// Hands a live frame to every viewer. Frames nobody watches are dropped.
    pub fn publish(&self, printer: PrinterId, camera: CameraId, image: LiveImage) {
        let feeds = self.feeds();
        if let Some(feed) = feeds.get(&(printer, camera))
            && feed.viewers > 0
        {
            feed.frames.send_replace(Some(image));
        }
    }

    /// The cameras of `printers` that someone is watching.
    pub fn watched(&self, printers: &[PrinterId]) -> Vec<(PrinterId, CameraId)> {
        self.feeds()
            .iter()
            .filter(|((printer, _), feed)| feed.viewers > 0 && printers.contains(printer))
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn viewers(&self, printer: &PrinterId, camera: &CameraId) -> usize {
        self.feeds().get(&(printer.clone(), camera.clone())).map_or(0, |f| f.viewers)
    }

    pub fn record_round_trip(&self, printer: &PrinterId, camera: &CameraId, millis: u64) {
        self.round_trips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((printer.clone(), camera.clone()), (millis, UnixMillis::now()));
    }

    /// The last measured snapshot round trip, in milliseconds, and when.
    pub fn round_trip(&self, printer: &PrinterId, camera: &CameraId) -> Option<(u64, UnixMillis)> {
        self.round_trips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(printer.clone(), camera.clone()))
            .copied()
    }
}

/// Shared handle.
pub type SharedCameras = Arc<Cameras>;

#[cfg(test)]
mod tests {
    use proto::{ImageFormat, SnapshotId, SnapshotTrigger};

    use super::*;

    fn chunks(image: &[u8], size: usize) -> Vec<SnapshotChunk> {
        let sha256: [u8; 32] = Sha256::digest(image).into();
        let count = image.len().div_ceil(size) as u16;
        image
            .chunks(size)
            .enumerate()
            .map(|(i, data)| SnapshotChunk {
                snapshot: SnapshotId([9; 16]),
                printer: PrinterId::new("SIM1").unwrap(),
                camera: CameraId::new("chamber").unwrap(),
                trigger: SnapshotTrigger::Interval,
                format: ImageFormat::Jpeg,
                captured_at: UnixMillis(1_764_000_000_000),
                total_len: image.len() as u32,
                sha256,
                chunk_index: i as u16,
                chunk_count: count,
                data: data.to_vec(),
            })
            .collect()
    }

    #[test]
    fn chunks_assemble_once_and_resends_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path().to_owned());
        let image: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let parts = chunks(&image, 300);
        assert_eq!(store.put_chunk(&parts[0]).unwrap(), None);
        assert_eq!(store.put_chunk(&parts[0]).unwrap(), None, "a resent chunk");
        assert_eq!(store.put_chunk(&parts[1]).unwrap(), None);
        assert_eq!(store.put_chunk(&parts[2]).unwrap(), None);
        let stored = store.put_chunk(&parts[3]).unwrap().expect("whole");
        assert_eq!(stored.path, "SIM1/2025-11-24/09090909090909090909090909090909.jpg");
        assert_eq!(store.read(&stored.path).unwrap(), image);
        assert_eq!(store.put_chunk(&parts[3]).unwrap(), Some(stored), "resent after assembly");
        assert!(store.read("../etc/passwd").is_err());
    }

    #[test]
    fn a_missing_chunk_or_a_wrong_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(dir.path().to_owned());
        let parts = chunks(&[7; 100], 40);
        store.put_chunk(&parts[0]).unwrap();
        let error = store.put_chunk(&parts[2]).unwrap_err().to_string();
        assert!(error.contains("chunk 1 of 3 never arrived"), "{error}");

        let mut bad = chunks(&[7; 100], 60);
        bad[1].data[0] = 8;
        store.put_chunk(&bad[0]).unwrap();
        let error = store.put_chunk(&bad[1]).unwrap_err().to_string();
        assert!(error.contains("do not match"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
    }
}
