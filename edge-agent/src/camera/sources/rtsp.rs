//! RTSP(S) cameras (X1, X1E, H2, P2S: `rtsps://bblp:<code>@<host>:322/streaming/live/1`)
//! through an `ffmpeg` child process.
//!
//! Why ffmpeg: the stream is H.264 over RTP over RTSP over TLS. A Rust client would need RTSP,
//! RTP depacketisation, an H.264 decoder and a JPEG encoder; ffmpeg does all of it in one
//! well-tested process. It is an optional runtime dependency (`apt install ffmpeg`): an agent
//! without it runs fine and reports [`CameraError::Unavailable`] for RTSP cameras only. The
//! manager keeps at most one pull per printer, and opens it only while frames are needed
//! (`continuous() == false`), since decoding costs CPU on a Pi.
//!
//! The child runs
//! `ffmpeg -hide_banner -loglevel error -nostdin -rtsp_transport tcp -i <url> -an
//! -vf fps=<fps> -f image2pipe -c:v mjpeg -q:v 5 -`, so its stdout is JPEG after JPEG; the
//! [`Scanner`] finds where each ends. Its stderr (errors only) is kept, last lines first to
//! go, with the URL's userinfo blanked out, for the error when it exits: a `401` becomes
//! [`CameraError::AuthRejected`]. The child is killed when the stream is dropped.
//!
//! Caveats, both ffmpeg's: the URL (with the access code) is on ffmpeg's command line, so
//! local users who can read `/proc/<pid>/cmdline` can see it; and ffmpeg does not verify the
//! printer's TLS certificate (it could not: Bambu certificates are X.509 v1 for the serial),
//! so unlike the MQTT link and the port-6000 camera this stream is encrypted but not
//! authenticated.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto::UnixMillis;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::task::AbortOnDropHandle;

use super::{redact_url, userinfo_span};
use crate::camera::jpeg::{Scan, Scanner};
use crate::camera::{BoxFuture, CameraError, CameraSource, Frame, FrameStream, MAX_FRAME_BYTES};

/// The longest wait from starting ffmpeg to its first frame (connection, TLS, RTSP set-up,
/// the first key frame).
pub const DEFAULT_FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait for each later frame (on top of the frame interval).
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The highest frame rate asked of ffmpeg.
pub const MAX_FPS: u32 = 30;

/// How many of ffmpeg's last stderr lines an error quotes.
const STDERR_LINES: usize = 8;
/// Longer stderr lines are cut.
const STDERR_LINE_CHARS: usize = 300;

/// An RTSP or RTSPS URL, decoded by ffmpeg.
#[derive(Clone)]
pub struct RtspSource {
    /// Holds the access code; shown only through [`redact_url`].
    url: String,
    ffmpeg: PathBuf,
    fps: u32,
    /// The longest wait for the first frame after starting ffmpeg.
    pub first_frame_timeout: Duration,
    /// The longest wait for each later frame, on top of `1 / fps`.
    pub frame_timeout: Duration,
}

impl std::fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &redact_url(&self.url))
            .field("ffmpeg", &self.ffmpeg)
            .field("fps", &self.fps)
            .finish_non_exhaustive()
    }
}

impl RtspSource {
    pub fn new(url: String, ffmpeg: PathBuf, fps: u32) -> RtspSource {
        RtspSource {
            url,
            ffmpeg,
            fps,
            first_frame_timeout: DEFAULT_FIRST_FRAME_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
        }
    }

    async fn start(&self) -> Result<RtspStream, CameraError> {
        check_url(&self.url).map_err(|detail| CameraError::Unavailable { detail })?;
        // Looked up first: where spawning cannot report a missing program (qemu-user, some
        // sandboxes) the child would only exit 127, and the operator deserves the real reason.
        if !program_exists(&self.ffmpeg) {
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(spawn_error(&self.ffmpeg, &missing));
        }
        let fps = self.fps.clamp(1, MAX_FPS);
        let mut child = Command::new(&self.ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-rtsp_transport", "tcp", "-i"])
            .arg(&self.url)
            .args(["-an", "-vf", &format!("fps={fps}")])
            .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "5", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| spawn_error(&self.ffmpeg, &error))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let detail = "ffmpeg started without its output pipes".to_owned();
            return Err(CameraError::Unavailable { detail });
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let redactor = Redactor::new(&self.url);
        let collector = {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line: String = redactor
                        .redact(without_context(&line))
                        .chars()
                        .take(STDERR_LINE_CHARS)
                        .collect();
                    tracing::debug!(%line, "ffmpeg said.");
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        };
        Ok(RtspStream {
            target: redact_url(&self.url),
            child,
            stdout,
            stderr_tail: tail,
            stderr_collector: Some(AbortOnDropHandle::new(collector)),
            buffer: BytesMut::with_capacity(256 * 1024),
            scanner: Scanner::new(),
            frame_timeout: self.frame_timeout + Duration::from_secs(1) / fps,
            frames: 0,
            pending: None,
        })
    }
}

impl CameraSource for RtspSource {
    fn describe(&self) -> String {
        format!("RTSP stream {} via ffmpeg at {} fps", redact_url(&self.url), self.fps)
    }

    fn continuous(&self) -> bool {
        false
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        Box::pin(async move {
            let mut stream = self.start().await?;
            // The first frame proves the whole chain (connection, login, decoding).
            let timeout = self.first_frame_timeout;
            let first = match tokio::time::timeout(timeout, stream.read_frame()).await {
                Ok(first) => first?,
                Err(_) => {
                    let tail = stream.stderr_tail();
                    tracing::debug!(stderr = %tail, "No first frame from ffmpeg in time.");
                    return Err(CameraError::Timeout(timeout));
                }
            };
            stream.pending = Some(first);
            Ok(Box::new(stream) as Box<dyn FrameStream>)
        })
    }
}

/// Checks that `url` is an `rtsp://` or `rtsps://` URL with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let shown = redact_url(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{shown} is not an rtsp:// or rtsps:// URL"));
    };
    if !scheme.eq_ignore_ascii_case("rtsp") && !scheme.eq_ignore_ascii_case("rtsps") {
        return Err(format!("{shown} is not an rtsp:// or rtsps:// URL"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{shown} has no host"));
    }
    Ok(())
}

/// Whether `program` names a file: itself when it has a slash, else somewhere on `PATH`.
fn program_exists(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn spawn_error(ffmpeg: &Path, error: &std::io::Error) -> CameraError {
    let shown = ffmpeg.display();
    let detail = match error.kind() {
        std::io::ErrorKind::NotFound => format!(
            "ffmpeg not found at {shown}; install it with `apt install ffmpeg` to use RTSPS \
             cameras"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot run ffmpeg at {shown}: permission denied")
        }
        _ => format!("cannot start ffmpeg at {shown}: {error}"),
    };
    CameraError::Unavailable { detail }
}

/// `line` without ffmpeg's `[rtsp @ 0x55d0e5936980] ` prefix.
fn without_context(line: &str) -> &str {
    match line.split_once("] ") {
        Some((context, rest)) if context.starts_with('[') && context.contains(" @ 0x") => rest,
        _ => line,
    }
}

/// Blanks the URL's userinfo (and the password alone) out of ffmpeg's messages.
#[derive(Debug, Clone)]
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn new(url: &str) -> Redactor {
        let mut secrets = Vec::new();
        if let Some((start, end)) = userinfo_span(url) {
            let userinfo = &url[start..end];
            secrets.push(userinfo.to_owned());
            if let Some((_, password)) = userinfo.split_once(':')
                && !password.is_empty()
            {
                secrets.push(password.to_owned());
                secrets.push(super::percent_decode(password));
            }
        }
        secrets.retain(|secret| !secret.is_empty());
        Redactor { secrets }
    }

    fn redact(&self, line: &str) -> String {
        self.secrets.iter().fold(line.to_owned(), |line, secret| line.replace(secret, "***"))
    }
}

struct RtspStream {
    /// The URL without userinfo.
    target: String,
    child: Child,
    stdout: ChildStdout,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_collector: Option<AbortOnDropHandle<()>>,
    /// Bytes of ffmpeg's output not yet returned (so `next_frame` is cancel-safe).
    buffer: BytesMut,
    scanner: Scanner,
    frame_timeout: Duration,
    frames: u64,
    /// The first frame, read by `open`.
    pending: Option<Frame>,
}

impl std::fmt::Debug for RtspStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspStream")
            .field("target", &self.target)
            .field("ffmpeg_pid", &self.child.id())
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl FrameStream for RtspStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        Box::pin(async move {
            if let Some(frame) = self.pending.take() {
                return Ok(frame);
            }
            crate::camera::within(self.frame_timeout, self.read_frame()).await
        })
    }
}

impl RtspStream {
    async fn read_frame(&mut self) -> Result<Frame, CameraError> {
        loop {
            if !self.buffer.is_empty() {
                match self.scanner.advance(&self.buffer)? {
                    Scan::Complete { len, width, height } => {
                        let jpeg = self.buffer.split_to(len).freeze();
                        self.scanner = Scanner::new();
                        self.frames += 1;
                        return Ok(Frame { captured_at: UnixMillis::now(), jpeg, width, height });
                    }
                    Scan::Incomplete if self.buffer.len() > MAX_FRAME_BYTES => {
                        return Err(CameraError::FrameTooLarge {
                            claimed: self.buffer.len() as u64,
                            max: MAX_FRAME_BYTES as u64,
                        });
                    }
                    Scan::Incomplete => {}
                }
            }
            let read = self.stdout.read_buf(&mut self.buffer).await.map_err(|error| {
                CameraError::Unavailable { detail: format!("reading ffmpeg's output: {error}") }
            })?;
            if read == 0 {
                return Err(self.exited().await);
            }
        }
    }

    /// Why ffmpeg stopped, once its output has ended.
    async fn exited(&mut self) -> CameraError {
        let status = match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(_)) | Err(_) => {
                let _ = self.child.start_kill();
                None
            }
        };
        // ffmpeg has exited, so its stderr ends: let the collector read the last lines.
        if let Some(collector) = self.stderr_collector.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), collector).await;
        }
        exit_error(&self.target, status, &self.stderr_tail(), self.frames)
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().map(String::as_str).collect::<Vec<_>>().join(" / ")
    }
}

fn exit_error(target: &str, status: Option<ExitStatus>, said: &str, frames: u64) -> CameraError {
    let exit = match status {
        Some(status) => format!("ffmpeg exited ({status})"),
        None => "ffmpeg closed its output but did not exit".to_owned(),
    };
    let exit = if said.is_empty() { exit } else { format!("{exit}: {said}") };
    if says_unauthorized(said) {
        return CameraError::AuthRejected { detail: exit };
    }
    if status.is_some_and(|status| status.success()) {
        return CameraError::Ended;
    }
    if frames == 0 {
        return CameraError::Connect { target: target.to_owned(), detail: exit };
    }
    CameraError::Unavailable { detail: format!("after {frames} frames, {exit}") }
}

/// Whether ffmpeg's words say the camera refused the credentials: a `401` status (a word of
/// its own, not digits inside a port or an address such as `127.0.0.1:40163`) or
/// "Unauthorized".
fn says_unauthorized(said: &str) -> bool {
    said.contains("Unauthorized")
        || said.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word == "401")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(check_url("rtsps://bblp:code@10.0.0.5:322/streaming/live/1"), Ok(()));
        assert_eq!(check_url("RTSP://cam/stream"), Ok(()));
        assert!(check_url("http://cam/stream").is_err());
        assert!(check_url("rtsp:///stream").is_err());
        let error = check_url("rtsp://bblp:secret@:322/").unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn ffmpeg_messages_lose_the_access_code() {
        let redactor = Redactor::new("rtsps://bblp:12%3A34@10.0.0.5:322/streaming/live/1");
        let line = "rtsps://bblp:12%3A34@10.0.0.5:322/streaming/live/1: Connection refused";
        assert_eq!(
            redactor.redact(line),
            "rtsps://***@10.0.0.5:322/streaming/live/1: Connection refused"
        );
        assert_eq!(redactor.redact("password 12:34"), "password ***");
        assert_eq!(Redactor::new("rtsp://cam/x").redact("as is"), "as is");
        let line = "[rtsp @ 0x55d0e5936980] method DESCRIBE failed: 401 Unauthorized";
        assert_eq!(without_context(line), "method DESCRIBE failed: 401 Unauthorized");
        assert_eq!(without_context("[not] context"), "[not] context");
    }

    #[test]
    fn exits_are_told_apart() {
        use std::os::unix::process::ExitStatusExt;
        let failed = Some(ExitStatus::from_raw(1 << 8));
        let auth = exit_error("t", failed, "method DESCRIBE failed: 401 Unauthorized", 0);
        assert!(matches!(auth, CameraError::AuthRejected { .. }), "{auth:?}");
        let refused = exit_error("t", failed, "Connection refused", 0);
        assert!(matches!(refused, CameraError::Connect { .. }), "{refused:?}");
        // A port with 401 in it is no 401 (this failed CI when the OS chose port 40163).
        let port = "Connection to tcp://127.0.0.1:40163?timeout=0 failed: Connection refused";
        let refused = exit_error("t", failed, port, 0);
        assert!(matches!(refused, CameraError::Connect { .. }), "{refused:?}");
        let status = exit_error("t", failed, "Server returned 401 (authorization failed)", 0);
        assert!(matches!(status, CameraError::AuthRejected { .. }), "{status:?}");
        let later = exit_error("t", failed, "Connection reset", 3);
        assert!(matches!(later, CameraError::Unavailable { .. }), "{later:?}");
        assert_eq!(exit_error("t", Some(ExitStatus::from_raw(0)), "", 3), CameraError::Ended);
    }
}
