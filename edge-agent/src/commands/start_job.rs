//! A job of the hub's queue on its printer: the file from the agent's cache onto the
//! printer's storage (Bambu over FTPS, Klipper through Moonraker's upload), then the start.
//!
//! The preconditions are checked twice: before the upload (so a printer that is busy or
//! holds the wrong filament costs no minutes of upload) and again at the moment of the
//! start, after the upload, when the printer may have changed (a person loaded another
//! spool, a job ended, the plate confirmation went stale). Nothing starts unless both hold
//! and the command has not expired in between.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::{Command, CommandAction, CommandOutcome, PrinterId, StartJob};

use super::PrinterTarget;
use crate::file_cache::FileCache;
use crate::printer::bambu::ftps::{self, FtpsError, FtpsTarget};
use crate::printer::moonraker::link::{ApiKey, MoonrakerUrl};
use crate::printer::moonraker::upload::{self as moonraker_upload, UploadError};
use crate::sync::client::SharedOutbox;

/// The agent's file cache, shared by the sync client (which fills it) and the executors
/// (which upload from it). Its lock is only taken inside blocking tasks or briefly.
pub type SharedFiles = Arc<Mutex<FileCache>>;

/// How the agent puts a file on a printer.
#[derive(Debug, Clone)]
pub enum Uploader {
    /// Bambu: FTPS on the printer, the certificate checked as for MQTT.
    Bambu(FtpsTarget),
    /// Klipper: Moonraker's `POST /server/files/upload`.
    Moonraker { url: MoonrakerUrl, api_key: Option<ApiKey> },
}

pub(super) async fn run(
    command: &Command,
    job: &StartJob,
    deadline: Instant,
    printer_id: &PrinterId,
    printer: &PrinterTarget,
    outbox: &SharedOutbox,
    files: Option<&SharedFiles>,
) -> CommandOutcome {
    if let Some(failed) = super::check(command, printer_id, printer, outbox).await {
        return failed;
    }
    let Some(uploader) = &printer.uploader else {
        return CommandOutcome::Unsupported {
            detail: format!("kitt cannot put files on printer {printer_id}'s kind yet"),
        };
    };
    let Some(files) = files else {
        return CommandOutcome::Failed { detail: "this agent keeps no file cache".into() };
    };
    let name = job.print.file.trim_start_matches('/');
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return CommandOutcome::Failed {
            detail: format!("{:?} is not a file name for the printer's storage", job.print.file),
        };
    }
    let sha256 = proto::files::sha256_hex(&job.sha256);
    let Some(path) = pin(files, &sha256) else {
        return CommandOutcome::Failed {
            detail: "the file is not on the agent (it never arrived whole, or was evicted); \
                     the hub delivers it again when the job is retried"
                .into(),
        };
    };
    tracing::info!(
        job = job.job,
        file = name,
        bytes = job.size,
        "Uploading a job's file to the printer."
    );
    let started = Instant::now();
    let uploaded = upload(uploader, &path, name, job.size).await;
    unpin(files, &sha256);
    let on_printer = match uploaded {
        Ok(on_printer) => on_printer,
        Err(detail) => return CommandOutcome::Failed { detail },
    };
    tracing::info!(job = job.job, file = %on_printer, seconds = started.elapsed().as_secs_f32(),
        "The job's file is on the printer.");
    // The moment of execution: the printer as it is now, not as it was before the upload.
    if Instant::now() >= deadline {
        return CommandOutcome::Expired;
    }
    if let Some(failed) = super::check(command, printer_id, printer, outbox).await {
        return failed;
    }
    let mut start = job.clone();
    start.print.file = on_printer;
    printer.link.send(CommandAction::StartJob(start)).await
}

/// The whole file's path, pinned so that eviction leaves it while it uploads.
fn pin(files: &SharedFiles, sha256: &str) -> Option<PathBuf> {
    let mut cache = files.lock().unwrap_or_else(|p| p.into_inner());
    let path = cache.whole(sha256)?;
    cache.pin(sha256);
    Some(path)
}

fn unpin(files: &SharedFiles, sha256: &str) {
    files.lock().unwrap_or_else(|p| p.into_inner()).unpin(sha256);
}

/// Puts the file on the printer; its name there, or why not (in an operator's words).
async fn upload(
    uploader: &Uploader,
    path: &PathBuf,
    name: &str,
    size: u64,
) -> Result<String, String> {
    let source = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read the file from the agent's cache: {e}"))?;
    let mut last_logged = 0u64;
    let progress = move |sent: u64| {
        // A line a quarter of the way, for the agent's log.
        if size > 0 && sent.saturating_mul(4) / size > last_logged.saturating_mul(4) / size {
            tracing::debug!(sent, size, "Uploading.");
        }
        last_logged = sent;
    };
    match uploader {
        Uploader::Bambu(target) => ftps::upload(target, name, source, progress)
            .await
            .map(|_| name.to_owned())
            .map_err(|error| match error {
                FtpsError::Full(answer) => format!(
                    "the printer's storage is full (it answered \"{answer}\"): delete files \
                     from its card, then retry the job"
                ),
                other => format!("upload to the printer failed: {other}"),
            }),
        Uploader::Moonraker { url, api_key } => {
            moonraker_upload::upload(url, api_key.as_ref(), name, source, size, progress)
                .await
                .map(|uploaded| uploaded.path)
                .map_err(|error: UploadError| format!("upload to Moonraker failed: {error}"))
        }
    }
}
