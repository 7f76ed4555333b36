//! The hub's end of file delivery (`docs/specs/file-delivery.md`): jobs in `transferring`
//! offered to their printer's agent, the bytes sent on a unidirectional stream of their own
//! at a lower priority than the control stream (acks and commands go first), and the
//! agent's answers turned into the job's next state.
//!
//! Nothing here is durable but the job's state: a reconnect, on either side, offers again
//! and the agent answers from what it holds.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use proto::files::{parse_sha256, sha256_hex};
use proto::{AgentId, FileOffer, FileStreamHeader, HubMessage, UnixMillis};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::server::{ConnectionError, Shared};
use crate::live::LiveUpdate;
use proto_io as frames;

/// The wire version that carries files.
pub(super) const FILES_SINCE: u16 = 7;

/// Bytes read from disk and written to the stream at a time.
const CHUNK: usize = 256 * 1024;

/// One connection's transfers: what it offered (one at a time), and the stream sending now.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    offered: HashMap<u64, [u8; 32]>,
    sending: HashMap<u64, tokio::task::JoinHandle<()>>,
}

impl Drop for Transfers {
    fn drop(&mut self) {
        for (_, task) in self.sending.drain() {
            task.abort();
        }
    }
}

/// Offers `agent` the files of its jobs in `transferring` that this connection has not
/// offered yet, and cancels those whose job no longer wants them. An agent too old for
/// files fails its jobs with a reason an operator can act on.
pub(super) async fn offer(
    shared: &Shared,
    agent: &AgentId,
    session_version: u16,
    send: &mut quinn::SendStream,
    transfers: &mut Transfers,
) -> Result<(), ConnectionError> {
    let rows = shared.db.transfers_for(agent.as_str()).await?;
    if session_version < FILES_SINCE {
        for row in &rows {
            let detail = format!(
                "agent {agent} speaks wire version {session_version}; receiving files needs \
                 {FILES_SINCE}: upgrade kitt-agent, then retry the job"
            );
            ended(shared, agent, row.job, "failed", &detail).await?;
        }
        return Ok(());
    }
    let wanted: HashSet<u64> = rows.iter().map(|r| r.job as u64).collect();
    let gone: Vec<u64> =
        transfers.offered.keys().filter(|t| !wanted.contains(t)).copied().collect();
    for transfer in gone {
        transfers.offered.remove(&transfer);
        if let Some(task) = transfers.sending.remove(&transfer) {
            task.abort();
        }
        frames::write(send, &HubMessage::FileCancel { transfer }).await?;
    }
    for row in rows {
        let transfer = row.job as u64;
        if transfers.offered.contains_key(&transfer) {
            continue;
        }
        // One file at a time: each transfer costs the agent a write buffer and a stream
        // window, and a Pi has little memory. The next is offered when this one's answer
        // comes (see `stored` and `refused`).
        if !transfers.offered.is_empty() {
            break;
        }
        let Some(sha256) = parse_sha256(&row.file_id) else {
            ended(shared, agent, row.job, "failed", "the job's file has no SHA-256 id").await?;
            continue;
        };
        let offer = FileOffer { transfer, sha256, size: row.size, name: row.name.clone() };
        frames::write(send, &HubMessage::FileOffer(offer)).await?;
        transfers.offered.insert(transfer, sha256);
        tracing::info!(%agent, job = row.job, file = %row.name, size = row.size, "Offered a job's file.");
    }
    Ok(())
}

/// The agent wants `transfer`'s bytes from `from`: sends them on a stream of their own.
/// A resumed transfer is noted in the job's history, from where.
pub(super) async fn want(
    shared: &Shared,
    agent: &AgentId,
    connection: &quinn::Connection,
    transfers: &mut Transfers,
    want: proto::FileWant,
) -> Result<(), ConnectionError> {
    let Some(sha256) = transfers.offered.get(&want.transfer).copied() else {
        tracing::warn!(
            transfer = want.transfer,
            "The agent wants a file this connection did not offer."
        );
        return Ok(());
    };
    let Some(dir) = shared.config.file_dir.clone() else {
        tracing::error!("This hub keeps no files; it cannot send one.");
        return Ok(());
    };
    if want.from > 0 {
        let detail = format!(
            "the transfer resumes from byte {} (the agent already holds that much)",
            want.from
        );
        let actor = format!("agent {agent}");
        let job = want.transfer as i64;
        shared.db.job_note(job, "transferring", &actor, &detail, UnixMillis::now()).await?;
        tracing::info!(%agent, job, from = want.from, "Resuming a job's file transfer.");
    }
    let path = stored_path(&dir, &sha256_hex(&sha256));
    let connection = connection.clone();
    let header = FileStreamHeader { transfer: want.transfer, from: want.from };
    let task = tokio::spawn(async move {
        if let Err(error) = stream(&connection, &path, header).await {
            tracing::info!(transfer = header.transfer, %error, "A file transfer stopped; it resumes at the next offer.");
        }
    });
    if let Some(previous) = transfers.sending.insert(want.transfer, task) {
        previous.abort();
    }
    Ok(())
}

/// Where the hub's file store keeps a file (see `crate::files::FileStore::path_of`).
fn stored_path(dir: &std::path::Path, sha256: &str) -> PathBuf {
    dir.join(sha256.get(..2).unwrap_or("xx")).join(sha256)
}

async fn stream(
    connection: &quinn::Connection,
    path: &std::path::Path,
    header: FileStreamHeader,
) -> Result<(), String> {
    let mut file =
        tokio::fs::File::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let size = file.metadata().await.map_err(|e| e.to_string())?.len();
    if header.from > size {
        return Err(format!("the agent wants bytes from {}, the file has {size}", header.from));
    }
    file.seek(std::io::SeekFrom::Start(header.from)).await.map_err(|e| e.to_string())?;
    let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
    // Below the control stream (0): acks and commands are never queued behind file bytes.
    let _ = stream.set_priority(-1);
    stream.write_all(&header.encode()).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        stream.write_all(&buffer[..n]).await.map_err(|e| e.to_string())?;
    }
    stream.finish().map_err(|e| e.to_string())?;
    // Wait until the agent has everything (or the connection ends).
    let _ = stream.stopped().await;
    Ok(())
}

/// The agent holds the file whole: the job goes on to `uploading`.
pub(super) async fn stored(
    shared: &Shared,
    agent: &AgentId,
    transfers: &mut Transfers,
    stored: proto::FileStored,
) -> Result<(), ConnectionError> {
    if let Some(task) = transfers.sending.remove(&stored.transfer) {
        task.abort();
    }
    match transfers.offered.remove(&stored.transfer) {
        Some(sha256) if sha256 == stored.sha256 => {
            tracing::info!(%agent, job = stored.transfer, "A job's file is on the agent.");
            let detail = "the file is on the agent; it goes to the printer next";
            ended(shared, agent, stored.transfer as i64, "uploading", detail).await
        }
        Some(_) => {
            let detail = "the agent reported another file stored than the one offered";
            ended(shared, agent, stored.transfer as i64, "failed", detail).await
        }
        None => Ok(()),
    }
}

/// The agent cannot take the file: the job fails with its reason.
pub(super) async fn refused(
    shared: &Shared,
    agent: &AgentId,
    transfers: &mut Transfers,
    refused: proto::FileRefused,
) -> Result<(), ConnectionError> {
    if let Some(task) = transfers.sending.remove(&refused.transfer) {
        task.abort();
    }
    if transfers.offered.remove(&refused.transfer).is_none() {
        return Ok(());
    }
    tracing::warn!(%agent, job = refused.transfer, reason = %refused.reason, "The agent refused a job's file.");
    let detail = format!("the agent cannot take the file: {}", refused.reason);
    ended(shared, agent, refused.transfer as i64, "failed", &detail).await
}

async fn ended(
    shared: &Shared,
    agent: &AgentId,
    job: i64,
    to: &str,
    detail: &str,
) -> Result<(), ConnectionError> {
    let changed =
        shared.db.transfer_ended(job, agent.as_str(), to, detail, UnixMillis::now()).await?;
    if changed {
        let printer = shared.db.job(job).await?.and_then(|row| row.printer_id);
        shared.live.publish(LiveUpdate::Job { id: job, state: to.to_owned(), printer });
        shared.changed();
    }
    Ok(())
}
