//! The per-camera task: holds the one upstream, takes snapshots at the moments that matter,
//! streams live view while the hub asks for it, and reports the camera's health.
//!
//! - Upstream: continuous sources stay open; on-demand ones (RTSPS, snapshot URLs) open when
//!   a snapshot or live view needs them and close [`LINGER`] after the last need. Failures
//!   reconnect with jittered exponential backoff (1 s to 60 s); a snapshot request retries at
//!   once, so its answer is a real attempt.
//! - Snapshots: the [`SnapshotPlanner`] decides when; a progress snapshot (interval, layer,
//!   first layer) uses the newest frame if it is fresher than [`FRESH`], a moment (job start,
//!   pause, failure, finish, request) always the next one. The JPEG is cut into chunks of at most
//!   `chunk_bytes`, each a `Snapshot` record carrying the whole image's SHA-256, and goes to
//!   the outbox's snapshot class. A snapshot that cannot be taken within [`SNAPSHOT_PATIENCE`]
//!   is reported in a `CameraHealth` record (a requested one is answered, never left waiting).
//! - Live view: `Start` is a lease of [`LIVE_LEASE`] that the hub renews while someone
//!   watches; frames go out no faster than asked, dropped (never queued) when the link is
//!   slow. `Stop`, or a lease that runs out (the hub went away), ends it.

use std::sync::Arc;
use std::time::Duration;

use proto::{
    CameraHealth, CameraId, CameraState, ImageFormat, LiveFrame, LiveViewAction, PrinterEventKind,
    PrinterId, RecordBody, SnapshotChunk, SnapshotId, SnapshotTrigger, UnixMillis,
};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::planner::{SnapshotPlanner, SnapshotPolicy};
use super::{CameraError, CameraSource, Frame, FrameStream};
use crate::backoff::Backoff;
use crate::counters::PrinterCounters;
use proto::PrinterStateV2;

/// A frame younger than this serves a snapshot at once.
pub const FRESH: Duration = Duration::from_secs(2);
/// How long a snapshot waits for a frame before it is reported as not taken.
pub const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(10);
/// How long live view runs after the hub's last `Start`.
pub const LIVE_LEASE: Duration = Duration::from_secs(30);
/// How long an on-demand upstream stays open after the last need.
pub const LINGER: Duration = Duration::from_secs(30);
/// The longest a source may take to connect and log in.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub printer: PrinterId,
    pub camera: CameraId,
    pub policy: SnapshotPolicy,
    /// The fastest live view this agent sends, in thousandths of a frame per second.
    pub live_max_fps_milli: u32,
    /// The largest snapshot chunk (one outbox record).
    pub chunk_bytes: usize,
    pub health_interval: Duration,
}

/// What the manager listens to.
/// For `Camera::want_snapshot`: the next frame serves, whenever it was captured.
const ANY_FRAME: UnixMillis = UnixMillis(i64::MIN);

#[derive(Debug)]
pub struct CameraInputs {
    /// The printer's events, as the recorder sees them.
    pub events: broadcast::Receiver<(UnixMillis, PrinterEventKind)>,
    /// The printer's newest state.
    pub state: watch::Receiver<PrinterStateV2>,
    /// Live view and snapshot requests from the hub, for this camera.
    pub control: mpsc::Receiver<LiveViewAction>,
}

/// Where the manager's output goes.
#[derive(Debug, Clone)]
pub struct CameraOutputs {
    /// The outbox writer.
    pub records: mpsc::Sender<(UnixMillis, RecordBody)>,
    /// The sync client's live channel; a full channel drops the frame.
    pub live: mpsc::Sender<LiveFrame>,
    /// The printer's counters, where camera failures are counted.
    pub counters: Arc<PrinterCounters>,
}

/// The manager's bookkeeping, kept apart from the select loop so it reads plainly.
#[derive(Debug)]
struct Camera {
    config: CameraConfig,
    describe: String,
    continuous: bool,
    outputs: CameraOutputs,
    state: CameraState,
    reported_state: Option<CameraState>,
    latest: Option<(Instant, Frame)>,
    frames_total: u64,
    frames_since_report: u64,
    last_report: Instant,
    last_error: Option<String>,
    /// Snapshots waiting for a frame, with when they were asked for and the earliest
    /// capture time that serves them (a moment's picture is never from before the moment).
    waiting: Vec<(SnapshotTrigger, Instant, UnixMillis)>,
    live_until: Option<Instant>,
    live_interval: Duration,
    last_live: Option<Instant>,
    /// The last moment something needed an on-demand upstream.
    last_need: Option<Instant>,
    backoff: Backoff,
    retry_at: Instant,
}

/// Runs one camera until `shutdown`.
pub async fn run(
    config: CameraConfig,
    source: Box<dyn CameraSource>,
    mut inputs: CameraInputs,
    outputs: CameraOutputs,
    shutdown: CancellationToken,
) {
    let mut planner = SnapshotPlanner::new(config.policy.clone());
    let continuous = source.continuous();
    let mut camera = Camera {
        describe: source.describe(),
        continuous,
        state: if continuous { CameraState::Connecting } else { CameraState::Idle },
        reported_state: None,
        latest: None,
        frames_total: 0,
        frames_since_report: 0,
        last_report: Instant::now(),
        last_error: None,
        waiting: Vec::new(),
        live_until: None,
        live_interval: Duration::from_secs(1),
        last_live: None,
        last_need: None,
        backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        retry_at: Instant::now(),
        outputs,
        config,
    };
    let mut upstream: Option<Box<dyn FrameStream>> = None;
    let period = camera.config.health_interval;
    let mut health = tokio::time::interval_at(Instant::now() + period, period);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    let mut control_open = true;
    let mut state_open = true;
    loop {
        let now = Instant::now();
        if camera.live_until.is_some_and(|until| until <= now) {
            tracing::info!(camera = %camera.config.camera, "Live view lease ran out.");
            camera.live_until = None;
        }
        let needed = camera.needs_upstream(now);
        if !needed && upstream.is_some() {
            tracing::debug!(camera = %camera.config.camera, "Closing the idle upstream.");
            upstream = None;
            camera.set_state(CameraState::Idle).await;
        }
        if needed && upstream.is_none() && camera.retry_at <= now {
            camera.set_state(CameraState::Connecting).await;
            let opened = tokio::select! {
                _ = shutdown.cancelled() => return,
                opened = tokio::time::timeout(OPEN_TIMEOUT, source.open()) => opened,
            };
            match opened {
                Ok(Ok(stream)) => {
                    tracing::info!(camera = %camera.config.camera, source = %camera.describe,
                        "Camera connected.");
                    upstream = Some(stream);
                }
                Ok(Err(error)) => camera.failed(error).await,
                Err(_) => camera.failed(CameraError::Timeout(OPEN_TIMEOUT)).await,
            }
            continue;
        }
        let retry = camera.retry_at;
        let waiting_deadline = camera.waiting.first().map(|(_, at, _)| *at + SNAPSHOT_PATIENCE);
        let planner_due = planner.next_due().map(|due| {
            let wait = due.0.saturating_sub(UnixMillis::now().0).max(0) as u64;
            now + Duration::from_millis(wait)
        });
        let linger_end = camera.linger_end();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            frame = next_frame(&mut upstream) => match frame {
                Ok(frame) => camera.frame(frame).await,
                Err(error) => {
                    upstream = None;
                    camera.failed(error).await;
                }
            },
            _ = tokio::time::sleep_until(retry), if needed && upstream.is_none() => {}
            _ = sleep_until_opt(linger_end), if linger_end.is_some() => {}
            _ = sleep_until_opt(camera.live_until), if camera.live_until.is_some() => {}
            _ = sleep_until_opt(waiting_deadline), if waiting_deadline.is_some() => {
                let error = match &camera.last_error {
                    Some(error) => format!("no frame within {SNAPSHOT_PATIENCE:?} ({error})"),
                    None => format!("no frame within {SNAPSHOT_PATIENCE:?}"),
                };
                camera.snapshots_not_taken(&error).await;
            }
            _ = sleep_until_opt(planner_due), if planner_due.is_some() => {
                if let Some(trigger) = planner.tick(UnixMillis::now()) {
                    camera.want_snapshot(trigger, ANY_FRAME).await;
                }
            }
            action = inputs.control.recv(), if control_open => match action {
                Some(action) => camera.control(action).await,
                None => control_open = false,
            },
            event = inputs.events.recv(), if events_open => match event {
                Ok((at, kind)) => {
                    if let Some(trigger) = planner.on_event(&kind, at) {
                        camera.want_snapshot(trigger, at).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(camera = %camera.config.camera, missed,
                        "The camera fell behind the printer's events.");
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            changed = inputs.state.changed(), if state_open => match changed {
                Ok(()) => {
                    let state = inputs.state.borrow_and_update().clone();
                    if let Some(trigger) = planner.on_state(&state, UnixMillis::now()) {
                        camera.want_snapshot(trigger, ANY_FRAME).await;
                    }
                }
                Err(_) => state_open = false,
            },
            _ = health.tick() => camera.report().await,
        }
    }
}

async fn next_frame(upstream: &mut Option<Box<dyn FrameStream>>) -> Result<Frame, CameraError> {
    match upstream {
        Some(stream) => stream.next_frame().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Camera {
    fn live(&self) -> bool {
        self.live_until.is_some()
    }

    fn needs_upstream(&self, now: Instant) -> bool {
        self.continuous
            || !self.waiting.is_empty()
            || self.live()
            || self.last_need.is_some_and(|at| now.duration_since(at) < LINGER)
    }

    fn linger_end(&self) -> Option<Instant> {
        if self.continuous || !self.waiting.is_empty() || self.live() {
            return None;
        }
        self.last_need.map(|at| at + LINGER)
    }

    /// Wants a snapshot for `trigger`, of a frame captured at `moment` or later (an event's
    /// time; [`ANY_FRAME`] where the next frame will do).
    async fn want_snapshot(&mut self, trigger: SnapshotTrigger, moment: UnixMillis) {
        let now = Instant::now();
        self.last_need = Some(now);
        if trigger == SnapshotTrigger::Requested {
            // A person is waiting: try the camera now, whatever the backoff says.
            self.retry_at = now;
        }
        // Progress snapshots may use a frame from the last moments; a moment (a job's start,
        // a pause, the end, a request) gets a frame captured at the moment or after (not
        // one decoded just before and still on its way), so the picture is not from before
        // the moment and its time sorts after the event's.
        let progress = matches!(
            trigger,
            SnapshotTrigger::Interval | SnapshotTrigger::Layer(_) | SnapshotTrigger::FirstLayerDone
        );
        let not_before = if progress { UnixMillis(i64::MIN) } else { moment };
        self.waiting.push((trigger, now, not_before));
        if let Some((at, frame)) = &self.latest
            && progress
            && now.duration_since(*at) < FRESH
        {
            let frame = frame.clone();
            self.take_snapshots(&frame).await;
        }
    }

    async fn control(&mut self, action: LiveViewAction) {
        let now = Instant::now();
        match action {
            LiveViewAction::Start { max_fps_milli } => {
                let fps = max_fps_milli.clamp(1, self.config.live_max_fps_milli.max(1));
                self.live_interval = Duration::from_micros(1_000_000_000 / u64::from(fps));
                let started = self.live_until.is_none();
                self.live_until = Some(now + LIVE_LEASE);
                self.last_need = Some(now);
                if started {
                    tracing::info!(camera = %self.config.camera, fps_milli = fps,
                        "Live view started.");
                    self.retry_at = self.retry_at.min(now);
                    // The hub (and whoever watches its camera health) sees live view begin.
                    self.report().await;
                }
            }
            LiveViewAction::Stop => {
                self.last_need = Some(now);
                if self.live_until.take().is_some() {
                    tracing::info!(camera = %self.config.camera, "Live view stopped.");
                    self.report().await;
                }
            }
            LiveViewAction::Snapshot => {
                self.want_snapshot(SnapshotTrigger::Requested, ANY_FRAME).await;
            }
        }
    }

    async fn frame(&mut self, frame: Frame) {
        let now = Instant::now();
        self.frames_total += 1;
        self.frames_since_report += 1;
        self.backoff.reset();
        self.latest = Some((now, frame.clone()));
        if self.state != CameraState::Streaming {
            self.last_error = None;
            self.set_state(CameraState::Streaming).await;
        }
        if self.live()
            // A tenth of slack: a camera sending at exactly the asked rate, with jitter,
            // would otherwise lose each frame that arrives a little early (half the rate).
            && self.last_live.is_none_or(|at| {
                now.duration_since(at) + self.live_interval / 10 >= self.live_interval
            })
        {
            self.last_live = Some(now);
            let live = LiveFrame {
                printer: self.config.printer.clone(),
                camera: self.config.camera.clone(),
                captured_at: frame.captured_at,
                format: ImageFormat::Jpeg,
                data: frame.jpeg.to_vec(),
            };
            // A slow link drops frames here rather than queueing stale ones.
            let _ = self.outputs.live.try_send(live);
        }
        if !self.waiting.is_empty() {
            self.take_snapshots(&frame).await;
        }
    }

    /// Serves every waiting snapshot that `frame` is recent enough for.
    async fn take_snapshots(&mut self, frame: &Frame) {
        let (served, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, _, not_before)| frame.captured_at >= *not_before);
        self.waiting = waiting;
        for (trigger, _, _) in served {
            let records = snapshot_records(&self.config, trigger, frame);
            tracing::info!(camera = %self.config.camera, ?trigger, bytes = frame.jpeg.len(),
                chunks = records.len(), "Snapshot taken.");
            for body in records {
                // Fails only when the writer is gone, that is when the agent stops.
                let _ = self.outputs.records.send((frame.captured_at, body)).await;
            }
        }
    }

    async fn failed(&mut self, error: CameraError) {
        let detail = error.to_string();
        self.outputs.counters.camera_error();
        if self.last_error.as_deref() != Some(detail.as_str()) {
            tracing::warn!(camera = %self.config.camera, source = %self.describe, %detail,
                "Camera failed.");
        }
        self.last_error = Some(detail.clone());
        // A frame from before the failure must not pass for a fresh one.
        self.latest = None;
        self.retry_at = Instant::now() + self.backoff.next_wait();
        if self.waiting.is_empty() {
            self.set_state(CameraState::Failed).await;
        } else {
            self.state = CameraState::Failed;
            self.snapshots_not_taken(&detail).await;
        }
    }

    /// Answers every waiting snapshot with a health record that says why it was not taken.
    async fn snapshots_not_taken(&mut self, error: &str) {
        let waiting = std::mem::take(&mut self.waiting);
        let triggers: Vec<String> = waiting.iter().map(|(t, _, _)| format!("{t:?}")).collect();
        tracing::warn!(camera = %self.config.camera, ?triggers, %error, "Snapshot not taken.");
        self.last_error = Some(format!("snapshot not taken: {error}"));
        self.report().await;
    }

    async fn set_state(&mut self, state: CameraState) {
        self.state = state;
        // Connecting is transient: report where a connection attempt ends up instead.
        if state != CameraState::Connecting && self.reported_state != Some(state) {
            self.report().await;
        }
    }

    async fn report(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_report).as_secs_f64();
        let fps_milli = if elapsed > 0.0 {
            (self.frames_since_report as f64 * 1000.0 / elapsed).round() as u32
        } else {
            0
        };
        self.frames_since_report = 0;
        self.last_report = now;
        self.reported_state = Some(self.state);
        let (width, height) =
            self.latest.as_ref().map(|(_, f)| (f.width, f.height)).unwrap_or_default();
        let health = CameraHealth {
            printer: self.config.printer.clone(),
            camera: self.config.camera.clone(),
            source: self.describe.clone(),
            state: self.state,
            fps_milli,
            last_frame_at: self.latest.as_ref().map(|(_, f)| f.captured_at),
            width,
            height,
            frames_total: self.frames_total,
            last_error: self.last_error.clone(),
            live: self.live(),
        };
        let _ =
            self.outputs.records.send((UnixMillis::now(), RecordBody::CameraHealth(health))).await;
    }
}

/// Cuts a frame into snapshot records.
pub fn snapshot_records(
    config: &CameraConfig,
    trigger: SnapshotTrigger,
    frame: &Frame,
) -> Vec<RecordBody> {
    let sha256: [u8; 32] = Sha256::digest(&frame.jpeg).into();
    let snapshot = SnapshotId(rand::random());
    let chunk_bytes = config.chunk_bytes.max(1);
    let chunks: Vec<&[u8]> = frame.jpeg.chunks(chunk_bytes).collect();
    let chunk_count = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    chunks
        .into_iter()
        .take(usize::from(chunk_count))
        .enumerate()
        .map(|(index, data)| {
            RecordBody::Snapshot(SnapshotChunk {
                snapshot,
                printer: config.printer.clone(),
                camera: config.camera.clone(),
                trigger,
                format: ImageFormat::Jpeg,
                captured_at: frame.captured_at,
                total_len: frame.jpeg.len() as u32,
                sha256,
                chunk_index: index as u16,
                chunk_count,
                data: data.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
