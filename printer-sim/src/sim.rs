//! Starting the simulator, the handle that controls it, and the task that drives the printer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::broker::{self, BrokerShared, CertResolver, Inbound};
use crate::camera::{CameraServer, PrinterView};
use crate::certs::{CertError, LeafCert, PrinterCa};
use crate::config::{
    AccessCode, CameraFault, ConfigError, Fault, FaultKind, JobSpec, MAX_CAMERA_STREAMS, Model,
    PrinterSerial, SimConfig,
};
use crate::emit::EmitLog;
use crate::events::{EVENT_CAPACITY, PublishedKind, SimEvent, SimEvents};
use crate::printer::{DEFAULT_GCODE_FILE, JobRejected, Outgoing, Printer, PrinterSettings};

/// How long `shutdown` waits for connections and tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Requests queued between the broker and the printer.
const INBOUND_CAPACITY: usize = 64;
/// Control messages queued from the handle to the printer.
const CONTROL_CAPACITY: usize = 16;
/// Messages queued per client before a slow one starts losing QoS 0 reports.
const OUTBOUND_CAPACITY: usize = 256;

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds `config.bind` (and the camera's address), issues the printer's certificate and
    /// starts serving. The returned handle controls the running simulator; dropping it stops
    /// the simulator.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        validate(&config)?;
        let ca = match config.ca.clone() {
            Some(ca) => ca,
            None => PrinterCa::bbl()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let leaf = match config.leaf.clone() {
            Some(leaf) => leaf,
            None => ca.issue_leaf(config.serial.as_str())?,
        };
        let resolver = Arc::new(CertResolver::new(certified_key(&provider, leaf.clone())?));
        let tls_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let acceptor = TlsAcceptor::from(Arc::new(tls_config));
        let listener = TcpListener::bind(config.bind).await.map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let camera_listener = match &config.camera {
            Some(camera) => {
                let bind = camera.bind.unwrap_or(SocketAddr::new(addr.ip(), 0));
                Some(TcpListener::bind(bind).await.map_err(SimError::CameraBind)?)
            }
            None => None,
        };
        let ftps_listener = match &config.ftps {
            Some(ftps) => {
                let bind = ftps.bind.unwrap_or(SocketAddr::new(addr.ip(), 0));
                Some(TcpListener::bind(bind).await.map_err(SimError::FtpsBind)?)
            }
            None => None,
        };
        let ftps_addr = ftps_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(SimError::FtpsBind)?;
        let card: crate::ftps::Card = Arc::default();
        let ftps_refusing: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        if let Some(ftps) = &config.ftps {
            let mut files = card.lock().unwrap_or_else(|p| p.into_inner());
            for (name, size) in &ftps.card_files {
                let name = format!("/{}", name.trim_start_matches('/'));
                files.insert(name, crate::ftps::StoredFile { size: *size, md5: String::new() });
            }
        }
        let camera_addr = camera_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(SimError::CameraBind)?;

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (outbound, _) = broadcast::channel(OUTBOUND_CAPACITY);
        let (inbound_sender, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let (control_sender, control) = mpsc::channel(CONTROL_CAPACITY);
        let (generation, generation_receiver) = watch::channel(0);
        let report_topic = format!("device/{}/report", config.serial);
        let report_subscribers = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(BrokerShared {
            access_code: config.access_code.clone(),
            family: config.model.family(),
            report_topic: report_topic.clone(),
            report_subscribers: report_subscribers.clone(),
            request_topic: format!("device/{}/request", config.serial),
            outbound: outbound.clone(),
            inbound: inbound_sender,
            events: events.clone(),
            generation: generation_receiver,
        });

        let mut printer = Printer::new(
            PrinterSettings {
                serial: config.serial.clone(),
                model: config.model,
                report_style: config.report_style,
                layer_interval: config.layer_interval,
                project_file_layers: config.job_layers,
                card: config.ftps.is_some().then(|| card.clone()),
                trays: config.trays.clone(),
                loop_jobs: config.loop_jobs,
            },
            &config.faults,
        );
        if let Some(job) = config.autostart_job.clone() {
            printer.start_job(job, DEFAULT_GCODE_FILE)?;
        }
        let emit_log = match &config.emit_log {
            Some(path) => Some(EmitLog::create(path, &printer).map_err(|source| {
                SimError::EmitLog { path: path.display().to_string(), source }
            })?),
            None => None,
        };
        let (view, view_receiver) = watch::channel(PrinterView::of(&printer));
        let (camera_fault, camera_fault_receiver) =
            watch::channel(config.camera.as_ref().and_then(|camera| camera.fault));
        let driver = PrinterDriver {
            printer,
            replay: config.replay.clone().map(|replay| replay.into_messages().into()),
            report_subscribers,
            inbound,
            control,
            publisher: Publisher { topic: report_topic, outbound, events: events.clone() },
            layer_interval: config.layer_interval,
            report_interval: config.report_interval,
            view,
            emit_log,
        };

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let span = info_span!("printer_sim", serial = %config.serial, model = %config.model);
        tracker.spawn(driver.run(shutdown.clone()).instrument(span.clone()));
        if let (Some(listener), Some(camera)) = (camera_listener, config.camera) {
            let server = CameraServer {
                listener,
                acceptor: acceptor.clone(),
                config: camera,
                serial: config.serial.clone(),
                model: config.model,
                access_code: config.access_code.clone(),
                printer: view_receiver,
                fault: camera_fault_receiver,
                generation: generation.subscribe(),
                events: events.clone(),
            };
            span.in_scope(|| server.spawn(&shutdown, &tracker));
        }
        if let (Some(listener), Some(ftps)) = (ftps_listener, config.ftps.clone()) {
            let server = crate::ftps::FtpsServer {
                listener,
                acceptor: acceptor.clone(),
                access_code: config.access_code.clone(),
                card: card.clone(),
                refusing: ftps_refusing.clone(),
                refuse_left: ftps.refuse_sessions.into(),
                config: ftps,
            };
            span.in_scope(|| server.spawn(&shutdown, &tracker));
        }
        if let Some(interval) = config.announce {
            let announcement = crate::announce::BambuAnnouncement {
                serial: config.serial.as_str().to_owned(),
                model_code: config.model.code().to_owned(),
                name: config.name.clone().unwrap_or_else(|| config.model.product_name().to_owned()),
                address: crate::announce::announced_address(addr),
                firmware: crate::printer::template::firmware_version(config.model).to_owned(),
            };
            tracker.spawn(crate::announce::announce_bambu(
                announcement,
                interval,
                shutdown.clone(),
            ));
        }
        tracker.spawn(
            broker::run(listener, acceptor, shared, shutdown.clone(), tracker.clone())
                .instrument(span),
        );
        info!(
            %addr, camera = ?camera_addr, serial = %config.serial, model = %config.model,
            "Printer simulator listening."
        );
        Ok(SimHandle {
            addr,
            camera_addr,
            ftps_addr,
            card,
            ftps_refusing,
            camera_fault,
            serial: config.serial,
            access_code: config.access_code,
            model: config.model,
            ca,
            leaf: Mutex::new(leaf),
            provider,
            resolver,
            control: control_sender,
            events,
            generation,
            shutdown,
            tracker,
        })
    }
}

/// Controls a running simulator. Dropping it stops the simulator (without waiting).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    camera_addr: Option<SocketAddr>,
    ftps_addr: Option<SocketAddr>,
    card: crate::ftps::Card,
    ftps_refusing: Arc<std::sync::atomic::AtomicBool>,
    camera_fault: watch::Sender<Option<CameraFault>>,
    serial: PrinterSerial,
    access_code: AccessCode,
    model: Model,
    ca: PrinterCa,
    /// The leaf new handshakes present (kept with its key, to restart with the same one).
    leaf: Mutex<LeafCert>,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<SimEvent>,
    generation: watch::Sender<u64>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl SimHandle {
    /// The address the MQTT/TLS server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the FTPS server listens on; `None` when the simulator has none.
    pub fn ftps_addr(&self) -> Option<SocketAddr> {
        self.ftps_addr
    }

    /// The files uploaded over FTPS, by path, with their sizes and MD5s.
    pub fn card(&self) -> std::collections::BTreeMap<String, crate::ftps::StoredFile> {
        self.card.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a file of `size` bytes on the card (as an earlier upload would have), taking its
    /// room; `path` as the card names it (`/old.gcode.3mf`).
    pub fn put_on_card(&self, path: &str, size: u64) {
        let file = crate::ftps::StoredFile { size, md5: String::new() };
        self.card.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), file);
    }

    /// Deletes a file from the card (a person making room); whether it was there.
    pub fn remove_from_card(&self, path: &str) -> bool {
        self.card.lock().unwrap_or_else(|p| p.into_inner()).remove(path).is_some()
    }

    /// While `refusing`, the FTPS server greets every new session with `421` and closes it.
    pub fn set_ftps_refusing(&self, refusing: bool) {
        self.ftps_refusing.store(refusing, std::sync::atomic::Ordering::Relaxed);
    }

    /// The address the camera server listens on; `None` when the simulator has no camera.
    pub fn camera_addr(&self) -> Option<SocketAddr> {
        self.camera_addr
    }

    /// The printer's serial.
    pub fn serial(&self) -> &PrinterSerial {
        &self.serial
    }

    /// The access code (the MQTT password).
    pub fn access_code(&self) -> &AccessCode {
        &self.access_code
    }

    /// The model simulated.
    pub fn model(&self) -> Model {
        self.model
    }

    /// `device/<serial>/report`.
    pub fn report_topic(&self) -> String {
        format!("device/{}/report", self.serial)
    }

    /// `device/<serial>/request`.
    pub fn request_topic(&self) -> String {
        format!("device/{}/request", self.serial)
    }

    /// The CA that issued the printer's certificate.
    pub fn ca(&self) -> &PrinterCa {
        &self.ca
    }

    /// The CA certificate, DER (the client's trust anchor).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.cert_der()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The leaf certificate new connections are served, DER.
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        self.leaf().cert_der().clone()
    }

    /// The leaf certificate and its key (for `SimConfig::leaf`, or a mosquitto stand-in).
    pub fn leaf(&self) -> LeafCert {
        self.leaf.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A receiver of everything the simulator does from now on.
    pub fn events(&self) -> SimEvents {
        SimEvents::new(self.events.subscribe())
    }

    /// Starts a job of `layers` layers named `name`, unless one is in progress.
    pub async fn start_job(&self, name: &str, layers: u32) -> Result<(), SimError> {
        let (reply, answer) = oneshot::channel();
        let spec = JobSpec { name: name.to_owned(), layers };
        self.send(Control::StartJob { spec, reply }).await?;
        answer.await.map_err(|_| SimError::Stopped)?.map_err(SimError::Job)
    }

    /// Arms a fault (replacing one of the same kind). In effect when this returns.
    pub async fn set_fault(&self, fault: Fault) -> Result<(), SimError> {
        validate_fault(&fault)?;
        let (reply, answer) = oneshot::channel();
        self.send(Control::SetFault { fault, reply }).await?;
        answer.await.map_err(|_| SimError::Stopped)
    }

    /// Disarms a fault. In effect when this returns.
    pub async fn clear_fault(&self, kind: FaultKind) -> Result<(), SimError> {
        let (reply, answer) = oneshot::channel();
        self.send(Control::ClearFault { kind, reply }).await?;
        answer.await.map_err(|_| SimError::Stopped)
    }

    /// Arms a camera fault (`Some`) or clears it (`None`), replacing any other. Connections
    /// accepted from now on see it at once; open streams at their next frame, or at once for
    /// [`CameraFault::Off`] (see [`CameraFault`]).
    pub fn set_camera_fault(&self, fault: Option<CameraFault>) {
        self.camera_fault.send_replace(fault);
        info!(?fault, "Set the camera fault.");
    }

    /// The printer's full state, as a `{"print":{…}}` report would show it.
    pub async fn snapshot(&self) -> Result<Value, SimError> {
        let (reply, answer) = oneshot::channel();
        self.send(Control::Snapshot { reply }).await?;
        answer.await.map_err(|_| SimError::Stopped)
    }

    /// Closes every client connection now, camera streams included (without TLS
    /// close_notify). Clients may reconnect.
    pub fn drop_connections(&self) {
        self.generation.send_modify(|generation| *generation += 1);
        let _ = self.events.send(SimEvent::ConnectionsDropped);
        info!("Dropped all client connections.");
    }

    /// Issues a new leaf certificate with a new key; handshakes from now on present it.
    /// Open connections keep the old one: call [`SimHandle::drop_connections`] to force
    /// clients to reconnect and see the change. Returns the new leaf, DER.
    pub fn rotate_certificate(&self) -> Result<CertificateDer<'static>, SimError> {
        let leaf = self.ca.issue_leaf(self.serial.as_str())?;
        let leaf_der = leaf.cert_der().clone();
        self.resolver.set(certified_key(&self.provider, leaf.clone())?);
        *self.leaf.lock().unwrap_or_else(PoisonError::into_inner) = leaf;
        let _ = self.events.send(SimEvent::CertificateRotated);
        info!("Rotated the printer certificate.");
        Ok(leaf_der)
    }

    /// Stops serving, closes connections and waits (up to a few seconds) for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            warn!("Simulator tasks did not stop within the grace period.");
        }
    }

    async fn send(&self, control: Control) -> Result<(), SimError> {
        self.control.send(control).await.map_err(|_| SimError::Stopped)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The simulator could not start, or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// Binding the listening socket failed.
    #[error("cannot listen")]
    Bind(#[source] std::io::Error),
    /// Binding the camera's listening socket failed.
    #[error("cannot listen for the camera")]
    CameraBind(#[source] std::io::Error),
    #[error("cannot listen for FTPS")]
    FtpsBind(#[source] std::io::Error),
    /// Generating the certificates failed.
    #[error("cannot create certificates")]
    Cert(#[from] CertError),
    /// Building the TLS configuration failed.
    #[error("cannot configure TLS")]
    Tls(#[from] rustls::Error),
    /// The printer refused to start a job.
    #[error("job not started")]
    Job(#[from] JobRejected),
    /// The emit log could not be created.
    #[error("cannot create the emit log {path}")]
    EmitLog {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The simulator has stopped.
    #[error("the simulator has stopped")]
    Stopped,
}

#[derive(Debug)]
enum Control {
    StartJob { spec: JobSpec, reply: oneshot::Sender<Result<(), JobRejected>> },
    SetFault { fault: Fault, reply: oneshot::Sender<()> },
    ClearFault { kind: FaultKind, reply: oneshot::Sender<()> },
    Snapshot { reply: oneshot::Sender<Value> },
}

/// Drives the [`Printer`]: steps, reports, requests and control messages.
struct PrinterDriver {
    printer: Printer,
    replay: Option<VecDeque<Value>>,
    /// Clients subscribed to the report topic; a replay waits for one.
    report_subscribers: Arc<AtomicUsize>,
    inbound: mpsc::Receiver<Inbound>,
    control: mpsc::Receiver<Control>,
    publisher: Publisher,
    layer_interval: Duration,
    report_interval: Duration,
    /// What the camera shows, updated after everything that may change the printer.
    view: watch::Sender<PrinterView>,
    /// `--emit-log`: every transition and request, written as it happens.
    emit_log: Option<EmitLog>,
}

impl PrinterDriver {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut steps = interval_at(Instant::now() + self.layer_interval, self.layer_interval);
        steps.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reports = interval_at(Instant::now() + self.report_interval, self.report_interval);
        reports.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = steps.tick() => self.printer.step(),
                _ = reports.tick() => self.report(),
                Some(inbound) = self.inbound.recv() => {
                    if let Some(log) = self.emit_log.as_mut() {
                        log.request(&inbound.request);
                    }
                    for outgoing in self.printer.handle_request(&inbound.request) {
                        match outgoing {
                            // A replay replaces the printer's own reports, pushall included.
                            Outgoing::Report(_) if self.replay.is_some() => {}
                            Outgoing::Report(report) => self.publisher.publish(PublishedKind::Report, report),
                            Outgoing::Reply(reply) => self.publisher.publish(PublishedKind::Reply, reply),
                        }
                    }
                }
                Some(control) = self.control.recv() => self.control(control),
            }
            if let Some(log) = self.emit_log.as_mut() {
                log.observe(&self.printer);
            }
            self.update_view();
        }
    }

    fn update_view(&self) {
        let view = PrinterView::of(&self.printer);
        self.view.send_if_modified(|current| {
            let changed = *current != view;
            if changed {
                *current = view;
            }
            changed
        });
    }

    fn report(&mut self) {
        match self.replay.as_mut() {
            Some(replay) => {
                if self.printer.is_silent() || self.report_subscribers.load(Ordering::Relaxed) == 0
                {
                    return;
                }
                if let Some(message) = replay.pop_front() {
                    self.publisher.publish(PublishedKind::Replay, message);
                }
            }
            None => {
                if let Some(report) = self.printer.report() {
                    self.publisher.publish(PublishedKind::Report, report);
                }
            }
        }
    }

    fn control(&mut self, control: Control) {
        match control {
            Control::StartJob { spec, reply } => {
                let _ = reply.send(self.printer.start_job(spec, DEFAULT_GCODE_FILE));
            }
            Control::SetFault { fault, reply } => {
                self.printer.set_fault(fault);
                let _ = reply.send(());
            }
            Control::ClearFault { kind, reply } => {
                self.printer.clear_fault(kind);
                let _ = reply.send(());
            }
            Control::Snapshot { reply } => {
                let _ = reply.send(self.printer.snapshot());
            }
        }
    }
}

/// Publishes the printer's messages to subscribed clients and to the event stream.
struct Publisher {
    topic: String,
    outbound: broadcast::Sender<Publish>,
    events: broadcast::Sender<SimEvent>,
}

impl Publisher {
    fn publish(&self, kind: PublishedKind, message: Value) {
        match serde_json::to_vec(&message) {
            Ok(payload) => {
                // No connected client is fine: QoS 0 messages are simply not delivered.
                let _ = self.outbound.send(Publish::new(&self.topic, QoS::AtMostOnce, payload));
            }
            Err(error) => warn!(%error, "Cannot serialise a message."),
        }
        let _ = self.events.send(SimEvent::Published { kind, message });
    }
}

fn certified_key(provider: &CryptoProvider, leaf: LeafCert) -> Result<CertifiedKey, SimError> {
    let key = provider.key_provider.load_private_key(leaf.private_key())?;
    Ok(CertifiedKey::new(leaf.chain_der, key))
}

fn validate(config: &SimConfig) -> Result<(), ConfigError> {
    if config.layer_interval.is_zero() {
        return Err(ConfigError::Zero("layer interval"));
    }
    if config.report_interval.is_zero() {
        return Err(ConfigError::Zero("report interval"));
    }
    if config.job_layers == 0 {
        return Err(ConfigError::Zero("job layers"));
    }
    if config.autostart_job.as_ref().is_some_and(|job| job.layers == 0) {
        return Err(ConfigError::Zero("autostart job layers"));
    }
    if let Some(camera) = &config.camera {
        if camera.frame_interval.is_zero() {
            return Err(ConfigError::Zero("camera frame interval"));
        }
        if camera.max_streams == 0 {
            return Err(ConfigError::Zero("camera stream limit"));
        }
        if camera.max_streams > MAX_CAMERA_STREAMS {
            return Err(ConfigError::CameraStreams(camera.max_streams));
        }
    }
    config.faults.iter().try_for_each(validate_fault)
}

fn validate_fault(fault: &Fault) -> Result<(), ConfigError> {
    match fault {
        Fault::FailAtLayer { layer: 0, .. } | Fault::RunoutAtLayer { layer: 0 } => {
            Err(ConfigError::Zero("fault layer"))
        }
        _ => Ok(()),
    }
}
