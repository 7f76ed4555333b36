//! The agent's end of file delivery (`docs/specs/file-delivery.md`): offers answered from
//! the [`FileCache`](crate::file_cache::FileCache), bytes taken from the hub's
//! unidirectional streams into it, and each transfer's end reported.
//!
//! Everything here runs beside the sync session, never in its way: an offer is answered
//! by a task (resuming a transfer hashes what is already on disk, which takes a while for a
//! large file), the bytes are written by blocking tasks, and answers reach the session
//! through a channel it writes out. One buffer of at most [`WRITE_BYTES`] per transfer is
//! the memory a transfer costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proto::files::{parse_sha256, sha256_hex};
use proto::{AgentMessage, FileOffer, FileRefused, FileStored, FileStreamHeader, FileWant};
use tokio::sync::mpsc;

use crate::commands::SharedFiles;
use crate::file_cache::{CacheError, Receiving};

/// Bytes gathered from the stream before one write to disk.
const WRITE_BYTES: usize = 1 << 20;

/// Transfers offered in this session: those waiting for, or taking, their bytes, and per
/// file the transfers that wait for another transfer of the same file (two jobs of one file
/// on two printers): one `.part` is written by one transfer only, and the others are
/// answered with its outcome.
#[derive(Debug, Default, Clone)]
pub(super) struct Pending(Arc<Mutex<PendingState>>);

#[derive(Debug, Default)]
struct PendingState {
    receiving: HashMap<u64, Receiving>,
    /// Files (SHA-256, hex) being received, with the other transfers waiting on them.
    busy: HashMap<String, Vec<u64>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, transfer: u64, receiving: Receiving) {
        let mut state = self.lock();
        state.busy.entry(receiving.sha256().to_owned()).or_default();
        if let Some(mut old) = state.receiving.insert(transfer, receiving) {
            let _ = old.checkpoint();
        }
    }

    fn take(&self, transfer: u64) -> Option<Receiving> {
        self.lock().receiving.remove(&transfer)
    }

    /// Makes `transfer` wait for a transfer of the same file already under way; `false` when
    /// none is.
    fn wait_for(&self, sha256: &str, transfer: u64) -> bool {
        match self.lock().busy.get_mut(sha256) {
            Some(waiting) => {
                waiting.push(transfer);
                true
            }
            None => false,
        }
    }

    /// The transfer of `sha256` ended: the transfers that waited on it.
    fn done(&self, sha256: &str) -> Vec<u64> {
        self.lock().busy.remove(sha256).unwrap_or_default()
    }

    /// The hub no longer wants `transfer`: what arrived is kept for a later offer.
    pub(super) fn cancel(&self, transfer: u64) {
        if let Some(mut receiving) = self.take(transfer) {
            let _ = receiving.checkpoint();
            let waiting = self.done(receiving.sha256());
            if !waiting.is_empty() {
                tracing::info!(
                    transfer,
                    ?waiting,
                    "A cancelled transfer had others waiting; they are offered again on the next connection."
                );
            }
        }
    }
}

/// Answers `offer` (on a task of its own): stored already, the offset to resume from, or
/// why not. The answer goes to `answers`.
pub(super) fn offer(
    files: SharedFiles,
    pending: Pending,
    offer: FileOffer,
    answers: mpsc::Sender<AgentMessage>,
) {
    tokio::spawn(async move {
        let transfer = offer.transfer;
        let answer = tokio::task::spawn_blocking(move || {
            let sha256 = sha256_hex(&offer.sha256);
            let mut cache = files.lock().unwrap_or_else(|p| p.into_inner());
            if cache.whole(&sha256).is_some() {
                return Some(AgentMessage::FileStored(FileStored { transfer, sha256: offer.sha256 }));
            }
            if pending.wait_for(&sha256, transfer) {
                tracing::info!(transfer, file = %offer.name, "The file is arriving for another job; this one waits for it.");
                return None;
            }
            Some(match cache.receive(&sha256, offer.size) {
                Ok(receiving) => {
                    let from = receiving.from();
                    tracing::info!(transfer, file = %offer.name, size = offer.size, from,
                        "Receiving a file from the hub.");
                    pending.insert(transfer, receiving);
                    AgentMessage::FileWant(FileWant { transfer, from })
                }
                Err(error) => refused(transfer, &error),
            })
        })
        .await
        .unwrap_or_else(|e| {
            Some(AgentMessage::FileRefused(FileRefused {
                transfer,
                reason: format!("the agent failed: {e}"),
            }))
        });
        if let Some(answer) = answer {
            let _ = answers.send(answer).await;
        }
    });
}

fn refused(transfer: u64, error: &CacheError) -> AgentMessage {
    tracing::warn!(transfer, %error, "Refused a file from the hub.");
    AgentMessage::FileRefused(FileRefused { transfer, reason: error.to_string() })
}

/// Takes the hub's file streams for as long as the connection lasts.
pub(super) async fn accept_streams(
    connection: quinn::Connection,
    pending: Pending,
    answers: mpsc::Sender<AgentMessage>,
) {
    while let Ok(stream) = connection.accept_uni().await {
        tokio::spawn(receive(stream, pending.clone(), answers.clone()));
    }
}

async fn receive(
    mut stream: quinn::RecvStream,
    pending: Pending,
    answers: mpsc::Sender<AgentMessage>,
) {
    let mut header = [0u8; FileStreamHeader::LEN];
    if stream.read_exact(&mut header).await.is_err() {
        return;
    }
    let Some(header) = FileStreamHeader::decode(&header) else {
        tracing::warn!("The hub opened a stream that is not a file's; ignored.");
        let _ = stream.stop(0u32.into());
        return;
    };
    let transfer = header.transfer;
    let Some(mut receiving) = pending.take(transfer) else {
        tracing::warn!(transfer, "Bytes for a transfer this session did not take; ignored.");
        let _ = stream.stop(0u32.into());
        return;
    };
    let sha256_hex = receiving.sha256().to_owned();
    if receiving.from() != header.from {
        let reason = format!(
            "the hub sent bytes from {}, the agent wanted them from {}",
            header.from,
            receiving.from()
        );
        let waiting = pending.done(&sha256_hex);
        for transfer in std::iter::once(transfer).chain(waiting) {
            let reason = reason.clone();
            let _ = answers.send(AgentMessage::FileRefused(FileRefused { transfer, reason })).await;
        }
        return;
    }
    let sha256 = parse_sha256(&sha256_hex).unwrap_or_default();
    let mut buffer: Vec<u8> = Vec::with_capacity(WRITE_BYTES);
    let outcome = loop {
        match stream.read_chunk(WRITE_BYTES - buffer.len(), true).await {
            Ok(Some(chunk)) => {
                buffer.extend_from_slice(&chunk.bytes);
                if buffer.len() < WRITE_BYTES {
                    continue;
                }
                match write(receiving, buffer).await {
                    Ok((back, emptied)) => (receiving, buffer) = (back, emptied),
                    Err(error) => break Err(error),
                }
            }
            Ok(None) => {
                // The stream's end: the last bytes, then the check.
                let finished = tokio::task::spawn_blocking(move || {
                    receiving.write(&buffer)?;
                    receiving.finish()
                })
                .await;
                break match finished {
                    Ok(result) => result.map(|_| ()),
                    Err(e) => Err(CacheError::Io(std::io::Error::other(e.to_string()))),
                };
            }
            Err(error) => {
                // A cut link or a cancelled transfer: keep what arrived for the next offer.
                tracing::info!(transfer, %error, "A file transfer stopped; it resumes at the next offer.");
                let _ = tokio::task::spawn_blocking(move || {
                    if receiving.write(&buffer).is_ok() {
                        let _ = receiving.checkpoint();
                    }
                })
                .await;
                // Those waiting on it are offered again with it, on the next connection.
                pending.done(&sha256_hex);
                return;
            }
        }
    };
    // This transfer's outcome is also that of those that waited for the same file.
    let waiting = pending.done(&sha256_hex);
    for transfer in std::iter::once(transfer).chain(waiting) {
        let answer = match &outcome {
            Ok(()) => {
                tracing::info!(transfer, "A file from the hub is whole.");
                AgentMessage::FileStored(FileStored { transfer, sha256 })
            }
            Err(error) => refused(transfer, error),
        };
        let _ = answers.send(answer).await;
    }
}

/// Writes `buffer` on a blocking task; hands both back (the buffer emptied) for the next.
async fn write(
    mut receiving: Receiving,
    mut buffer: Vec<u8>,
) -> Result<(Receiving, Vec<u8>), CacheError> {
    tokio::task::spawn_blocking(move || {
        receiving.write(&buffer)?;
        buffer.clear();
        Ok((receiving, buffer))
    })
    .await
    .map_err(|e| CacheError::Io(std::io::Error::other(e.to_string())))?
}
