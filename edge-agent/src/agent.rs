//! `kitt-agent run`: the agent's subsystems wired together.
//!
//! ```text
//! printer link ─outputs─▶ recorder ─records─▶ writer ─append+commit (≤ 50 ms)─▶ outbox
//!                          (coalesces telemetry)        │ notify                  │
//!                                                       ▼                         ▼
//!           command executor per printer ◀─commands── sync client ◀──acks── hub, ──records──▶
//!           (ledger, expiry, preconditions, printer link; see `commands`)
//! ```
//!
//! Every channel is bounded. The outbox lock is only taken inside blocking tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{
    AgentHealth, AgentHealthV2, AgentHealthV3, CameraId, LiveViewAction, LiveViewRequest,
    PrintState, PrinterEvent, PrinterEventKind, PrinterId, PrinterInfo, PrinterStateV2,
    PrinterTelemetryV2, RecordBody, UnixMillis,
};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::camera::manager::{CameraConfig, CameraInputs, CameraOutputs};
use crate::camera::{self, SourceConfig};
use crate::clock::HubClock;
use crate::commands::{self, PrinterTarget, PrinterView, SharedFiles, Uploader};
use crate::config::{AgentConfig, CameraSourceSpec, PrinterConfig, PrinterLinkConfig};
use crate::counters::{Counters, PrinterCounters};
use crate::file_cache::FileCache;
use crate::outbox::{Outbox, OutboxConfig, OutboxError};
use crate::printer::bambu::ftps::FtpsTarget;
use crate::printer::bambu::link as bambu_link;
use crate::printer::bambu::tls::Trust;
use crate::printer::link::LinkOutput;
use crate::printer::moonraker::link as moonraker_link;
use crate::sync::client::{SharedOutbox, SyncClient, SyncClientConfig, SyncStatus};
use crate::sync::identity::{Identity, IdentityError};
use crate::sync::tls::Timeouts;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot open the outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("printer {printer}: {detail}")]
    Printer { printer: PrinterId, detail: String },
    #[error("cannot open the file cache: {0}")]
    Files(String),
}

/// A running agent.
#[derive(Debug)]
pub struct RunningAgent {
    pub status: watch::Receiver<SyncStatus>,
    pub outbox: SharedOutbox,
    pub identity: Identity,
    tasks: TaskTracker,
}

impl RunningAgent {
    /// Waits for every task after the shutdown token fired.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts every subsystem; they stop when `shutdown` fires (the outbox commits last).
pub fn start(config: AgentConfig, shutdown: CancellationToken) -> Result<RunningAgent, AgentError> {
    crate::state::migrate(&config.state_dir)?;
    let identity = Identity::load(&config.state_dir)?;
    let mut outbox_config = OutboxConfig::new(config.state_dir.join("outbox.db"));
    outbox_config.capacity_bytes = config.capacity_bytes;
    outbox_config.snapshot_capacity_bytes = config.snapshot_capacity_bytes;
    let (outbox, report) = Outbox::open(outbox_config)?;
    tracing::info!(records = report.records, bytes = report.bytes, last_seq = %report.last_seq,
        "Opened the outbox.");
    let outbox: SharedOutbox = Arc::new(Mutex::new(outbox));
    let durable = Arc::new(Notify::new());
    let tasks = TaskTracker::new();
    let (records_tx, records_rx) = mpsc::channel(4096);
    let counters = Arc::new(Counters::new(config.printers.iter().map(|p| p.id.clone())));
    let clock = Arc::new(HubClock::default());

    // Small: a live frame that cannot go out at once is dropped, not queued.
    let (live_tx, live_rx) = mpsc::channel(2);
    let cameras = SharedCameras::default();
    let context = PrinterContext {
        state_dir: config.state_dir.clone(),
        records: records_tx.clone(),
        outbox: outbox.clone(),
        counters: counters.clone(),
        live: live_tx,
        telemetry_interval: config.telemetry_interval,
        health_interval: config.health_interval,
        tasks: tasks.clone(),
    };
    let mut targets = HashMap::new();
    let mut infos = Vec::new();
    for printer in &config.printers {
        let running = spawn_printer(printer, &context, shutdown.child_token())?;
        cameras.add(&printer.id, running.cameras);
        targets.insert(printer.id.clone(), running.target);
        infos.push(running.info);
    }
    let (live_requests_tx, live_requests_rx) = mpsc::channel(16);
    tasks.spawn(route_live_requests(live_requests_rx, cameras.clone()));

    tasks.spawn(writer(outbox.clone(), records_rx, durable.clone()));
    tasks.spawn(health(
        outbox.clone(),
        config.health_interval,
        config.state_dir.clone(),
        identity.not_after,
        counters.clone(),
        clock.clone(),
        shutdown.clone(),
    ));
    let files = FileCache::open(config.state_dir.join("files"), config.file_cache_bytes)
        .map_err(|error| AgentError::Files(error.to_string()))?;
    let files: SharedFiles = Arc::new(Mutex::new(files));
    let commands = commands::start(
        targets,
        outbox.clone(),
        records_tx.clone(),
        counters.clone(),
        clock.clone(),
        Some(files.clone()),
        &tasks,
    );
    drop(records_tx);

    // The printers the hub manages: the last list it sent, at once (the hub may be away),
    // then every new one.
    let stored = crate::managed::load(&config.state_dir).unwrap_or_else(|error| {
        tracing::error!(%error, "The hub's managed printers cannot be read; none run until it sends them again.");
        None
    });
    if let Some(interval) = config.discovery_interval {
        tasks.spawn(discover(context.records.clone(), interval, shutdown.clone()));
    }
    let (infos_tx, infos_rx) = watch::channel(infos.clone());
    let (managed_tx, managed_rx) = mpsc::channel(4);
    let fleet = Fleet {
        local: config.printers.iter().map(|p| p.id.clone()).collect(),
        base: infos.clone(),
        context,
        commands: commands.clone(),
        cameras,
        infos: infos_tx,
        running: HashMap::new(),
        version: 0,
    };
    tasks.spawn(fleet.run(managed_rx, stored, shutdown.clone()));

    let mut sync_config = SyncClientConfig::new(config.state_dir.clone());
    sync_config.timeouts = Timeouts { keep_alive: config.keep_alive, idle: config.idle_timeout };
    let (client, status) =
        SyncClient::new(sync_config, identity.clone(), outbox.clone(), durable, commands, infos);
    let client = client
        .with_live(live_requests_tx, live_rx)
        .with_counters(counters)
        .with_clock(clock)
        .with_managed_printers(infos_rx, managed_tx)
        .with_files(files);
    tasks.spawn(client.run(shutdown.clone()));
    Ok(RunningAgent { status, outbox, identity, tasks })
}

/// How long each listening spell lasts: a Bambu printer announces about once a minute.
const DISCOVERY_SPELL: Duration = Duration::from_secs(65);

/// Listens for the printers on the LAN now and then, and records what it heard whenever
/// that changed: a couple of seconds after the last new printer (so a person adding printers
/// from the dashboard sees them within seconds of the agent starting), and at each spell's end.
async fn discover(
    records: mpsc::Sender<(UnixMillis, RecordBody)>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    /// Quiet this long after a new printer before recording.
    const SETTLE: Duration = Duration::from_secs(2);
    let mut recorded: Vec<proto::DiscoveredPrinter> = Vec::new();
    loop {
        let (found_tx, mut found_rx) = mpsc::channel(64);
        let spell = tokio::spawn(crate::discovery::listen(DISCOVERY_SPELL, found_tx));
        let mut heard: Vec<proto::DiscoveredPrinter> = Vec::new();
        let mut flush_at: Option<Instant> = None;
        loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {
                    spell.abort();
                    return;
                }
                () = flush => {
                    flush_at = None;
                    if !record_heard(&records, &mut heard, &mut recorded).await {
                        return;
                    }
                }
                printer = found_rx.recv() => match printer {
                    Some(printer) => {
                        heard.push(wire_discovered(printer));
                        flush_at = Some(Instant::now() + SETTLE);
                    }
                    None => break,
                },
            }
        }
        if let Ok(Err(error)) = spell.await {
            tracing::warn!(%error, "Cannot listen for printers on the LAN.");
        }
        if !record_heard(&records, &mut heard, &mut recorded).await {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Records `heard` (deduplicated, newest sighting of each printer) if it differs from what
/// was recorded last; false when the writer has stopped.
async fn record_heard(
    records: &mpsc::Sender<(UnixMillis, RecordBody)>,
    heard: &mut Vec<proto::DiscoveredPrinter>,
    recorded: &mut Vec<proto::DiscoveredPrinter>,
) -> bool {
    // The newest sighting of each printer wins.
    heard.reverse();
    heard.sort_by(|a, b| a.key.cmp(&b.key));
    heard.dedup_by(|a, b| a.key == b.key);
    if heard.is_empty() || heard == recorded {
        return true;
    }
    tracing::info!(printers = heard.len(), "Heard printers on the LAN.");
    let body = RecordBody::Discovered(proto::DiscoveredPrinters { printers: heard.clone() });
    *recorded = heard.clone();
    records.send((UnixMillis::now(), body)).await.is_ok()
}

/// A discovered printer in the wire's terms.
fn wire_discovered(found: crate::discovery::Discovered) -> proto::DiscoveredPrinter {
    match found {
        crate::discovery::Discovered::Bambu(bambu) => proto::DiscoveredPrinter {
            vendor: proto::Vendor::BambuLab,
            key: bambu.serial,
            name: bambu.name,
            model: bambu.model,
            address: bambu.address.to_string(),
            url: None,
            connection: bambu.connection,
            bind: bambu.bind,
        },
        crate::discovery::Discovered::Moonraker(moonraker) => proto::DiscoveredPrinter {
            vendor: proto::Vendor::Moonraker,
            key: moonraker.url.clone(),
            name: Some(moonraker.name),
            model: None,
            address: moonraker.address.to_string(),
            url: Some(moonraker.url),
            connection: None,
            bind: None,
        },
    }
}

/// What every printer's tasks are given.
#[derive(Debug, Clone)]
struct PrinterContext {
    state_dir: std::path::PathBuf,
    records: mpsc::Sender<(UnixMillis, RecordBody)>,
    outbox: SharedOutbox,
    counters: Arc<Counters>,
    live: mpsc::Sender<proto::LiveFrame>,
    telemetry_interval: Duration,
    health_interval: Duration,
    tasks: TaskTracker,
}

/// A printer's tasks as started: what commands and the hub need to reach it.
#[derive(Debug)]
struct RunningPrinter {
    target: PrinterTarget,
    cameras: Vec<(CameraId, mpsc::Sender<LiveViewAction>)>,
    info: PrinterInfo,
}

/// Starts one printer: its driver, its recorder and its cameras, all ending with `stop`.
fn spawn_printer(
    printer: &PrinterConfig,
    context: &PrinterContext,
    stop: CancellationToken,
) -> Result<RunningPrinter, AgentError> {
    // The job the outbox recorded in progress: the link goes on with it (a restart neither
    // announces it again nor misses its end).
    let resume = context
        .outbox
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .open_job(&printer.id)
        .map(|job| crate::printer::events::ResumedJob { name: job.name });
    if let Some(job) = &resume {
        tracing::info!(printer = %printer.id, job = ?job.name, "Resuming the job in progress.");
    }
    let (handle, outputs, task, trust, uploader) = match &printer.link {
        PrinterLinkConfig::Bambu { host, port, ftps_port, access_code, ca } => {
            let trust = match ca {
                Some(path) => Trust::ca_file(path).map_err(|error| AgentError::Printer {
                    printer: printer.id.clone(),
                    detail: error.to_string(),
                })?,
                None => Trust::FirstUse {
                    pin_file: context.state_dir.join("pins").join(format!("{}.sha256", printer.id)),
                },
            };
            let mut link_config = bambu_link::LinkConfig::new(
                host.clone(),
                printer.id.clone(),
                access_code.clone(),
                trust.clone(),
            );
            link_config.port = *port;
            link_config.session.model = printer.model.clone();
            link_config.session.resume = resume;
            let (handle, outputs, task) = bambu_link::spawn(link_config, stop.clone());
            let uploader = Uploader::Bambu(FtpsTarget {
                host: host.clone(),
                port: *ftps_port,
                serial: printer.id.to_string(),
                access_code: access_code.clone(),
                trust: trust.clone(),
                reuse_session: true,
            });
            (handle, outputs, task, Some(trust), Some(uploader))
        }
        PrinterLinkConfig::Moonraker { url, api_key, web_port } => {
            let mut link_config =
                moonraker_link::LinkConfig::new(printer.id.clone(), url.clone(), api_key.clone());
            link_config.web_port = *web_port;
            link_config.session.model = printer.model.clone();
            link_config.session.resume = resume;
            let (handle, outputs, task) = moonraker_link::spawn(link_config, stop.clone());
            let uploader = Uploader::Moonraker { url: url.clone(), api_key: api_key.clone() };
            (handle, outputs, task, None, Some(uploader))
        }
    };
    let tasks = &context.tasks;
    tasks.spawn(async move {
        let _ = task.await;
    });
    let counters = context.counters.add_printer(&printer.id);
    let (view_tx, view_rx) = watch::channel(PrinterView::default());
    let (events_tx, _) = broadcast::channel(64);
    let (camera_state_tx, camera_state_rx) = watch::channel(PrinterStateV2::default());
    let (listed_tx, listed_rx) = watch::channel(None);
    tasks.spawn(recorder(
        printer.id.clone(),
        outputs,
        Sinks { records: context.records.clone(), outbox: context.outbox.clone(), view: view_tx },
        Watchers { events: events_tx.clone(), state: camera_state_tx, listed: listed_tx },
        counters.clone(),
        context.telemetry_interval,
    ));
    let mut cameras = Vec::new();
    for camera in &printer.cameras {
        let Some(source) = source_config(printer, &camera.source, trust.as_ref(), &listed_rx)
        else {
            tracing::error!(printer = %printer.id, camera = %camera.id,
                "A Bambu camera on a printer that is not Bambu; left out.");
            continue;
        };
        let (control_tx, control_rx) = mpsc::channel(16);
        cameras.push((camera.id.clone(), control_tx));
        let source = camera::open_source(&source);
        let camera_config = CameraConfig {
            printer: printer.id.clone(),
            camera: camera.id.clone(),
            policy: camera.policy.clone(),
            live_max_fps_milli: camera.live_max_fps_milli,
            chunk_bytes: SNAPSHOT_CHUNK_BYTES,
            health_interval: context.health_interval,
        };
        let inputs = CameraInputs {
            events: events_tx.subscribe(),
            state: camera_state_rx.clone(),
            control: control_rx,
        };
        let outputs = CameraOutputs {
            records: context.records.clone(),
            live: context.live.clone(),
            counters: counters.clone(),
        };
        tasks.spawn(camera::manager::run(camera_config, source, inputs, outputs, stop.clone()));
    }
    Ok(RunningPrinter {
        target: PrinterTarget { link: handle, view: view_rx, uploader },
        cameras,
        info: PrinterInfo {
            id: printer.id.clone(),
            vendor: printer.vendor(),
            model: printer.model.clone(),
            name: printer.name.clone(),
            cameras: printer.cameras.iter().map(|c| c.id.clone()).collect(),
        },
    })
}

/// The cameras live view requests can reach, as printers come and go.
#[derive(Debug, Clone, Default)]
struct SharedCameras(Arc<Mutex<CameraControls>>);

/// Each camera's control channel, by printer and camera.
type CameraControls = HashMap<(PrinterId, CameraId), mpsc::Sender<LiveViewAction>>;

impl SharedCameras {
    fn add(&self, printer: &PrinterId, cameras: Vec<(CameraId, mpsc::Sender<LiveViewAction>)>) {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (camera, control) in cameras {
            map.insert((printer.clone(), camera), control);
        }
    }

    fn remove(&self, printer: &PrinterId) {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.retain(|(p, _), _| p != printer);
    }

    fn get(&self, printer: &PrinterId, camera: &CameraId) -> Option<mpsc::Sender<LiveViewAction>> {
        let map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(&(printer.clone(), camera.clone())).cloned()
    }
}

/// The printers the hub manages, running beside `agent.toml`'s: each list the hub sends is
/// checked, kept, applied (printers that went or changed stop, new ones start; no restart)
/// and answered with a `PrintersApplied` record.
struct Fleet {
    local: Vec<PrinterId>,
    /// `agent.toml`'s printers, announced first in every hello.
    base: Vec<PrinterInfo>,
    context: PrinterContext,
    commands: commands::CommandRouter,
    cameras: SharedCameras,
    infos: watch::Sender<Vec<PrinterInfo>>,
    running: HashMap<PrinterId, (proto::ManagedPrinter, CancellationToken, PrinterInfo)>,
    /// The version in force.
    version: u64,
}

impl Fleet {
    async fn run(
        mut self,
        mut lists: mpsc::Receiver<proto::DesiredPrinters>,
        stored: Option<proto::DesiredPrinters>,
        shutdown: CancellationToken,
    ) {
        if let Some(stored) = stored {
            // Applied and answered before the restart; just run it again.
            self.apply(&stored, &shutdown);
        }
        loop {
            let desired = tokio::select! {
                () = shutdown.cancelled() => return,
                desired = lists.recv() => match desired {
                    Some(desired) => desired,
                    None => return,
                },
            };
            if desired.version <= self.version {
                tracing::debug!(
                    version = desired.version,
                    applied = self.version,
                    "The hub's printer list is no newer than the one in force."
                );
                continue;
            }
            let state_dir = self.context.state_dir.clone();
            let kept = desired.clone();
            let saved =
                tokio::task::spawn_blocking(move || crate::managed::save(&state_dir, &kept))
                    .await
                    .unwrap_or_else(|error| Err(std::io::Error::other(error)));
            if let Err(error) = saved {
                // Applied anyway: the hub sends the list again after a restart.
                tracing::error!(%error, "Cannot keep the hub's printer list in the state directory.");
            }
            let applied = self.apply(&desired, &shutdown);
            for printer in &applied.printers {
                match &printer.error {
                    Some(error) => {
                        tracing::warn!(printer = %printer.id, %error, "A managed printer does not run.")
                    }
                    None => tracing::info!(printer = %printer.id, "A managed printer runs."),
                }
            }
            let record = RecordBody::PrintersApplied(applied);
            if self.context.records.send((UnixMillis::now(), record)).await.is_err() {
                return;
            }
        }
    }

    /// Stops what went or changed, starts what is new; returns each printer's outcome.
    fn apply(
        &mut self,
        desired: &proto::DesiredPrinters,
        shutdown: &CancellationToken,
    ) -> proto::PrintersApplied {
        let (configs, mut applied) = crate::managed::plan(desired, &self.local);
        let wanted: HashMap<&PrinterId, &proto::ManagedPrinter> =
            desired.printers.iter().map(|p| (&p.id, p)).collect();
        let stale: Vec<PrinterId> = self
            .running
            .iter()
            .filter(|(id, (managed, _, _))| {
                wanted.get(id).is_none_or(|now| *now != managed)
                    || !configs.iter().any(|c| &c.id == *id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some((_, stop, _)) = self.running.remove(&id) {
                tracing::info!(printer = %id, "Stopping a managed printer.");
                stop.cancel();
                self.commands.remove_printer(&id);
                self.cameras.remove(&id);
                self.context.counters.remove_printer(&id);
            }
        }
        for config in &configs {
            if self.running.contains_key(&config.id) {
                continue;
            }
            let stop = shutdown.child_token();
            match spawn_printer(config, &self.context, stop.clone()) {
                Ok(running) => {
                    self.commands.add_printer(config.id.clone(), running.target);
                    self.cameras.add(&config.id, running.cameras);
                    let managed = wanted.get(&config.id).map(|m| (*m).clone());
                    if let Some(managed) = managed {
                        self.running.insert(config.id.clone(), (managed, stop, running.info));
                    }
                }
                Err(error) => {
                    if let Some(outcome) = applied.printers.iter_mut().find(|p| p.id == config.id) {
                        outcome.error = Some(error.to_string());
                    }
                }
            }
        }
        self.version = desired.version;
        let mut infos = self.base.clone();
        let mut managed: Vec<&PrinterInfo> =
            self.running.values().map(|(_, _, info)| info).collect();
        managed.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        infos.extend(managed.into_iter().cloned());
        self.infos.send_if_modified(|current| {
            let changed = *current != infos;
            *current = infos;
            changed
        });
        applied
    }
}

/// The largest snapshot chunk: one outbox record, well inside a sync batch.
const SNAPSHOT_CHUNK_BYTES: usize = 128 * 1024;

/// Where a printer's recorder puts what its link reports: records for the writer, job ends
/// it did not see straight into the outbox, and the view its command executor reads.
#[derive(Debug)]
struct Sinks {
    records: mpsc::Sender<(UnixMillis, RecordBody)>,
    outbox: SharedOutbox,
    view: watch::Sender<PrinterView>,
}

/// What the printer's cameras hear from its recorder.
#[derive(Debug)]
struct Watchers {
    events: broadcast::Sender<(UnixMillis, PrinterEventKind)>,
    state: watch::Sender<PrinterStateV2>,
    /// The first camera the printer names (Moonraker's webcams).
    listed: watch::Sender<Option<SourceConfig>>,
}

/// Completes a camera's source with what the printer's configuration knows; `None` for a
/// Bambu camera on a printer of another kind (which the configuration refuses).
fn source_config(
    printer: &PrinterConfig,
    spec: &CameraSourceSpec,
    trust: Option<&Trust>,
    listed: &watch::Receiver<Option<SourceConfig>>,
) -> Option<SourceConfig> {
    let bambu = match (&printer.link, trust) {
        (PrinterLinkConfig::Bambu { host, access_code, .. }, Some(trust)) => {
            Some((host, access_code, trust))
        }
        _ => None,
    };
    Some(match spec.clone() {
        CameraSourceSpec::Bambu { port } => match bambu {
            Some((host, access_code, trust)) => SourceConfig::Bambu {
                host: host.clone(),
                port,
                serial: printer.id.clone(),
                access_code: access_code.clone(),
                trust: trust.clone(),
            },
            None => return None,
        },
        CameraSourceSpec::Rtsp { url, ffmpeg, fps } => SourceConfig::Rtsp {
            url: url.unwrap_or_else(|| match bambu {
                Some((host, access_code, _)) => {
                    format!("rtsps://bblp:{}@{}:322/streaming/live/1", access_code.expose(), host)
                }
                None => String::new(),
            }),
            ffmpeg,
            fps,
        },
        CameraSourceSpec::Mjpeg { url } => SourceConfig::Mjpeg { url },
        CameraSourceSpec::Snapshot { url, interval } => SourceConfig::Snapshot { url, interval },
        CameraSourceSpec::Usb { device, width, height, fps } => {
            SourceConfig::Usb { device, width, height, fps }
        }
        CameraSourceSpec::Moonraker => SourceConfig::Listed { camera: listed.clone() },
    })
}

/// Hands the hub's live view and snapshot requests to the camera they name.
async fn route_live_requests(
    mut requests: mpsc::Receiver<LiveViewRequest>,
    cameras: SharedCameras,
) {
    while let Some(request) = requests.recv().await {
        match cameras.get(&request.printer, &request.camera) {
            Some(camera) => {
                if camera.try_send(request.action).is_err() {
                    tracing::warn!(printer = %request.printer, camera = %request.camera,
                        "The camera is busy; dropped a live view request.");
                }
            }
            None => tracing::warn!(printer = %request.printer, camera = %request.camera,
                "The hub asked for a camera this agent does not have."),
        }
    }
}

/// Turns one printer's link outputs into records: every event, and telemetry at most once
/// per `interval` (the newest state wins; nothing in between is lost that matters, since
/// every change of state also yields an event).
async fn recorder(
    printer: PrinterId,
    mut outputs: mpsc::Receiver<LinkOutput>,
    sinks: Sinks,
    watchers: Watchers,
    counters: Arc<PrinterCounters>,
    interval: Duration,
) {
    let Sinks { records, outbox, view } = sinks;
    let mut last_sample: Option<Instant> = None;
    let mut dirty = false;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let output = tokio::select! {
            output = outputs.recv() => output,
            _ = tick.tick() => {
                if dirty {
                    dirty = false;
                    last_sample = Some(Instant::now());
                    let state = Box::new(view.borrow().state.clone());
                    let body = RecordBody::TelemetryV2(PrinterTelemetryV2 { printer: printer.clone(), state });
                    if records.send((UnixMillis::now(), body)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        let Some(output) = output else { return };
        let record = match output {
            LinkOutput::State(state) => {
                // Found idle or finished when the agent starts watching (at start, after a
                // lost link): a job may have ended while nobody watched. Counted with the
                // state, then marked in the outbox, so the plate check refuses a start
                // confirmed before now (see `commands`, "The plate check").
                let unseen_end = view.borrow().state.state == PrintState::Offline
                    && matches!(
                        state.state,
                        PrintState::Idle | PrintState::Finished | PrintState::Failed
                    );
                view.send_modify(|view| {
                    view.state = (*state).clone();
                    view.job_ends += u64::from(unseen_end);
                });
                if unseen_end {
                    let (outbox, printer) = (outbox.clone(), printer.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        let mut outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
                        outbox.note_unseen_job_end(&printer, UnixMillis::now());
                    })
                    .await;
                }
                if watchers.state.receiver_count() > 0 {
                    watchers.state.send_replace((*state).clone());
                }
                let due = last_sample.is_none_or(|t| t.elapsed() >= interval);
                if !due {
                    dirty = true;
                    continue;
                }
                dirty = false;
                last_sample = Some(Instant::now());
                RecordBody::TelemetryV2(PrinterTelemetryV2 { printer: printer.clone(), state })
            }
            LinkOutput::Event { at, kind } => {
                // Counted before the record goes on, so the plate check never misses a job
                // end on its way to the outbox (see `commands`).
                if matches!(kind, PrinterEventKind::JobFinished { .. }) {
                    view.send_modify(|view| view.job_ends += 1);
                }
                // No camera listening is fine.
                let _ = watchers.events.send((at, kind.clone()));
                let body =
                    RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind });
                if records.send((at, body)).await.is_err() {
                    return;
                }
                continue;
            }
            LinkOutput::Problem(problem) => {
                counters.link_problem(&problem);
                tracing::warn!(printer = %printer, %problem, "Printer link problem.");
                continue;
            }
            LinkOutput::Nozzle(micrometres) => {
                view.send_modify(|view| view.nozzle_um = micrometres);
                continue;
            }
            LinkOutput::Cameras(cameras) => {
                let first = cameras.first().map(|camera| camera.url.source());
                tracing::info!(printer = %printer, cameras = cameras.len(),
                    first = first.as_ref().map(SourceConfig::summary), "The printer lists its cameras.");
                watchers.listed.send_replace(first);
                continue;
            }
        };
        if records.send((UnixMillis::now(), record)).await.is_err() {
            return;
        }
    }
}

/// Appends records and commits them in groups, each within [`COMMIT_INTERVAL`](crate::outbox::COMMIT_INTERVAL) of its first
/// record's arrival (in practice one fsync); tells the sync client after each commit.
async fn writer(
    outbox: SharedOutbox,
    mut records: mpsc::Receiver<(UnixMillis, RecordBody)>,
    durable: Arc<Notify>,
) {
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            record = records.recv() => match record {
                Some(record) => batch.push(record),
                None => {
                    // Every producer is gone: the agent is stopping. Commit what is left.
                    commit(&outbox, Vec::new()).await;
                    return;
                }
            },
            // A commit that failed (disk full) keeps its records pending; try again.
            _ = retry.tick() => {}
        }
        // Natural batching: take whatever is already waiting and commit at once. Under load,
        // records pile up during a commit and the next one carries them all; when quiet, a
        // record is durable (and on its way to the hub) within one fsync, well inside
        // COMMIT_INTERVAL.
        while batch.len() < 8192 {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if commit(&outbox, batch).await {
            durable.notify_one();
        }
    }
}

/// Appends and commits; returns whether anything became durable.
async fn commit(outbox: &SharedOutbox, batch: Vec<(UnixMillis, RecordBody)>) -> bool {
    let outbox = outbox.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
        for (at, body) in batch {
            if let Err(error) = outbox.append(at, body) {
                tracing::warn!(%error, "Outbox refused a record.");
            }
        }
        if outbox.pending() == 0 {
            return Ok(false);
        }
        outbox.commit().map(|_| true)
    })
    .await;
    match result {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => {
            tracing::error!(%error, "Outbox commit failed; the records stay pending.");
            false
        }
        Err(error) => {
            tracing::error!(%error, "Outbox task failed.");
            false
        }
    }
}

/// How long the command ledger keeps a command past its expiry (the hub's clock): the hub
/// never delivers a command after its expiry, so a day of margin covers any offset error.
const LEDGER_KEEP_MS: i64 = 24 * 3_600_000;

/// Appends an `AgentHealthV3` record every `interval`: the outbox's depth and its drop
/// totals since it was created, the agent's counters, and its clock's offset from the hub's;
/// prunes the command ledger of commands long expired.
async fn health(
    outbox: SharedOutbox,
    interval: Duration,
    state_dir: std::path::PathBuf,
    certificate_expires_at: UnixMillis,
    counters: Arc<Counters>,
    clock: Arc<HubClock>,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let uptime_s = started.elapsed().as_secs();
        let outbox = outbox.clone();
        let state_dir = state_dir.clone();
        let counters = counters.snapshot();
        // Ledger entries can go once their command can never come again, judged on the hub's
        // clock (which wrote the expiry), so only once the offset is known.
        let prune_before = clock.offset().map(|_| clock.hub_now().plus_millis(-LEDGER_KEEP_MS));
        let clock = clock.offset();
        let _ = tokio::task::spawn_blocking(move || {
            // Renewals rewrite identity.toml; read the current expiry from it.
            let certificate_expires_at = Identity::load(&state_dir)
                .map(|identity| identity.not_after)
                .unwrap_or(certificate_expires_at);
            let disk_free_bytes = rustix::fs::statvfs(&state_dir)
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .unwrap_or(0);
            let mut outbox = outbox.lock().unwrap_or_else(|p| p.into_inner());
            let stats = outbox.stats();
            // Cumulative totals, as `AgentHealth.drops` is specified: a health record that is
            // itself evicted loses nothing, the next one carries the same totals.
            let health = AgentHealth {
                outbox_records: stats.records,
                outbox_bytes: stats.bytes,
                drops: stats.drops_total,
                disk_free_bytes,
                uptime_s,
                software: crate::sync::enroll::software(),
                certificate_expires_at: Some(certificate_expires_at),
            };
            let health = AgentHealthV2 { health, counters };
            let body = RecordBody::AgentHealthV3(AgentHealthV3 { health, clock });
            if let Err(error) = outbox.append(UnixMillis::now(), body) {
                tracing::warn!(%error, "Cannot record the agent's health.");
            }
            if let Some(before) = prune_before {
                match outbox.prune_commands(before) {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(pruned, "Pruned the command ledger."),
                    Err(error) => tracing::warn!(%error, "Cannot prune the command ledger."),
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: PrintState) -> LinkOutput {
        LinkOutput::State(Box::new(PrinterStateV2 { state, ..PrinterStateV2::default() }))
    }

    /// The recorder of one printer over a fresh outbox; the test plays the printer link.
    struct Recorder {
        outputs: mpsc::Sender<LinkOutput>,
        records: mpsc::Receiver<(UnixMillis, RecordBody)>,
        view: watch::Receiver<PrinterView>,
        outbox: SharedOutbox,
        printer: PrinterId,
        _dir: tempfile::TempDir,
    }

    fn recorder() -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, _) = Outbox::open(OutboxConfig::new(dir.path().join("outbox.db"))).unwrap();
        let outbox: SharedOutbox = Arc::new(Mutex::new(outbox));
        let printer = PrinterId::new("01P00A391800001").unwrap();
        let (outputs_tx, outputs) = mpsc::channel(16);
        let (records_tx, records) = mpsc::channel(16);
        let (view_tx, view) = watch::channel(PrinterView::default());
        let (events, _) = broadcast::channel(16);
        let (camera_state, _) = watch::channel(PrinterStateV2::default());
        tokio::spawn(super::recorder(
            printer.clone(),
            outputs,
            Sinks { records: records_tx, outbox: outbox.clone(), view: view_tx },
            Watchers { events, state: camera_state, listed: watch::channel(None).0 },
            Arc::default(),
            Duration::from_millis(10),
        ));
        Recorder { outputs: outputs_tx, records, view, outbox, printer, _dir: dir }
    }

    impl Recorder {
        /// Sends `output` and waits until its record comes out (so the recorder is done with
        /// it).
        async fn feed(&mut self, output: LinkOutput) {
            self.outputs.send(output).await.unwrap();
            self.records.recv().await.expect("the recorder is running");
        }

        fn facts(&self) -> crate::outbox::JobEndFacts {
            self.outbox.lock().unwrap().job_ends(&self.printer)
        }
    }

    #[tokio::test]
    async fn a_printer_found_finished_when_the_agent_starts_watching_counts_as_a_job_end_unseen() {
        let mut recorder = recorder();
        // Found printing: the end will be seen when it comes.
        recorder.feed(state(PrintState::Printing)).await;
        assert_eq!(recorder.view.borrow().job_ends, 0);
        assert_eq!(recorder.facts().latest, None);
        // The link is lost and comes back with the printer finished: whatever ended in
        // between was not seen. Marked (counted in the view and the outbox alike).
        recorder.feed(state(PrintState::Offline)).await;
        recorder.feed(state(PrintState::Finished)).await;
        assert_eq!(recorder.view.borrow().job_ends, 1);
        let facts = recorder.facts();
        assert_eq!(facts.appended, 1);
        let end = facts.latest.expect("a job end marked");
        assert!(!end.seen);
        // Watching on: nothing more is marked for states that follow.
        recorder.feed(state(PrintState::Idle)).await;
        assert_eq!(recorder.view.borrow().job_ends, 1);
        assert_eq!(recorder.facts().latest, Some(end));
    }
}
