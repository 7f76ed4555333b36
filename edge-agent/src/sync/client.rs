//! The QUIC driver around [`SyncMachine`]: connect, resume from the hub's watermark, stream
//! the outbox, apply acknowledgements, pass commands on, renew the certificate, reconnect
//! with jittered backoff.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::frame::MAX_PAYLOAD;
use proto::net::{AGENT_CERT_LIFETIME, HUB_SERVER_NAME, close_code};
use proto::{
    AgentHello, AgentMessage, Capabilities, CertificateRequest, DisconnectReason, HubMessage,
    LiveFrame, LiveViewRequest, PrinterInfo, Record, RecordBody, UnixMillis,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::enroll::{client_endpoint, resolve, software};
use super::identity::Identity;
use super::machine::{SyncAction, SyncMachine};
use super::tls::{self, Timeouts};
use crate::backoff::Backoff;
use crate::clock::HubClock;
use crate::commands::CommandRouter;
use crate::counters::Counters;
use crate::outbox::{Outbox, OutboxError};
use proto_io::{self as frames, FrameError, FrameReader};

/// The outbox, shared by the writer (printer link), the committer and the sync client.
/// Its lock is only taken inside blocking tasks, never across an `.await`.
pub type SharedOutbox = Arc<Mutex<Outbox>>;

#[derive(Debug, Clone)]
pub struct SyncClientConfig {
    pub timeouts: Timeouts,
    /// Most records in flight, sent but not acknowledged.
    pub window: u64,
    /// Most records and bytes in one `Records` message.
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where a renewed certificate is saved.
    pub state_dir: PathBuf,
}

impl SyncClientConfig {
    pub fn new(state_dir: PathBuf) -> SyncClientConfig {
        SyncClientConfig {
            timeouts: Timeouts::default(),
            window: 16_384,
            batch_records: 2_048,
            batch_bytes: 1 << 20,
            backoff_min: Duration::from_millis(100),
            // Data flows again within 5 s of a link returning: the longest wait is 2 s plus
            // jitter, plus a handshake.
            backoff_max: Duration::from_secs(2),
            state_dir,
        }
    }
}

/// What the sync client is doing, for health reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    Connecting,
    Connected {
        acked_through: proto::Seq,
        /// When the certificate in use (renewed ones included) expires.
        certificate_not_after: UnixMillis,
    },
    Disconnected {
        reason: String,
    },
    /// The hub revoked this agent or no longer knows it; retries are slow.
    Refused {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("{0}")]
    Refused(String),
    #[error("the hub broke the protocol: {0}")]
    Protocol(String),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

impl From<FrameError> for SessionError {
    fn from(error: FrameError) -> SessionError {
        match error {
            FrameError::Decode(error) => SessionError::Protocol(error.to_string()),
            error => SessionError::Lost(error.to_string()),
        }
    }
}

/// Where the latest `Welcome.hub_time` is kept, in the state directory: the floor under the
/// time the hub's certificate is judged at (see `tls::sync_config_since`).
const HUB_SEEN_FILE: &str = "hub-seen-at";

/// The latest time the hub's clock was seen to read; `None` if never (or unreadable: then
/// only this machine's clock judges, as before the file existed).
fn hub_seen(state_dir: &std::path::Path) -> Option<rustls_pki_types::UnixTime> {
    let text = std::fs::read_to_string(state_dir.join(HUB_SEEN_FILE)).ok()?;
    let millis: u64 = text.trim().parse().ok()?;
    Some(rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_millis(millis)))
}

fn save_hub_seen(state_dir: &std::path::Path, hub_time: UnixMillis) {
    let Ok(millis) = u64::try_from(hub_time.0) else { return };
    let (path, temporary) = (state_dir.join(HUB_SEEN_FILE), state_dir.join(".hub-seen-at.new"));
    let written = std::fs::write(&temporary, format!("{millis}\n"))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "Cannot save the hub's time.");
    }
}

/// An offset from the hub's clock worth a warning in the log (the dashboard flags it too).
const CLOCK_WARNING_MS: u64 = 5_000;

/// The oldest session version this agent accepts: its outbox may hold `CameraHealth`
/// records (version 2), which have no older form.
const MIN_SESSION_VERSION: u16 = 2;

#[derive(Debug)]
pub struct SyncClient {
    config: SyncClientConfig,
    identity: Identity,
    outbox: SharedOutbox,
    durable: Arc<Notify>,
    commands: CommandRouter,
    status: watch::Sender<SyncStatus>,
    /// The printers announced in each hello; a change (a printer the hub manages was added
    /// or removed) starts a new session, so the hub hears the new list.
    printers: watch::Receiver<Vec<PrinterInfo>>,
    /// Where the hub's managed printers go (`HubMessage::Printers`).
    managed: Option<mpsc::Sender<proto::DesiredPrinters>>,
    /// Live view and snapshot requests go to the cameras here.
    live_requests: Option<mpsc::Sender<LiveViewRequest>>,
    /// Live frames from the cameras, sent while connected, dropped otherwise.
    live_frames: Option<mpsc::Receiver<LiveFrame>>,
    /// Where reconnects and the hub's protocol errors are counted.
    counters: Arc<Counters>,
    /// The hub's clock as measured at each welcome.
    clock: Arc<HubClock>,
    /// Where print files from the hub go; `None`: offers are refused.
    files: Option<crate::commands::SharedFiles>,
    /// Which of the identity's hub addresses the next session tries.
    current: usize,
}

/// How long a replica may be silent before an agent that can move to another gives up on it.
const FAILOVER_IDLE: Duration = Duration::from_secs(4);

/// How long the agent waits before trying another of the hub's replicas.
const FAILOVER_WAIT: Duration = Duration::from_millis(200);

/// Live frames in flight at once; a frame beyond that is dropped (the next is fresher).
const LIVE_IN_FLIGHT: usize = 2;

impl SyncClient {
    /// `durable` is notified after every outbox commit; commands from the hub go through
    /// `commands`, which never makes the connection wait.
    pub fn new(
        config: SyncClientConfig,
        identity: Identity,
        outbox: SharedOutbox,
        durable: Arc<Notify>,
        commands: CommandRouter,
        printers: Vec<PrinterInfo>,
    ) -> (SyncClient, watch::Receiver<SyncStatus>) {
        let (status, status_rx) = watch::channel(SyncStatus::Connecting);
        let client = SyncClient {
            config,
            identity,
            outbox,
            durable,
            commands,
            status,
            printers: watch::channel(printers).1,
            managed: None,
            live_requests: None,
            live_frames: None,
            counters: Arc::default(),
            clock: Arc::default(),
            files: None,
            current: 0,
        };
        (client, status_rx)
    }

    /// Connects the cameras: the hub's requests go to `requests`, and `frames` are sent to
    /// the hub on their own QUIC streams, so a frame never delays a record.
    pub fn with_live(
        mut self,
        requests: mpsc::Sender<LiveViewRequest>,
        frames: mpsc::Receiver<LiveFrame>,
    ) -> SyncClient {
        self.live_requests = Some(requests);
        self.live_frames = Some(frames);
        self
    }

    /// Follows the agent's printers as they change (the hub's managed printers come and
    /// go), and hands the hub's list of managed printers to `managed`.
    pub fn with_managed_printers(
        mut self,
        printers: watch::Receiver<Vec<PrinterInfo>>,
        managed: mpsc::Sender<proto::DesiredPrinters>,
    ) -> SyncClient {
        self.printers = printers;
        self.managed = Some(managed);
        self
    }

    /// Counts reconnects and the hub's protocol errors in `counters`.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> SyncClient {
        self.counters = counters;
        self
    }

    /// Measures the hub's clock into `clock` at every welcome (shared with the command
    /// router and the health reporter).
    pub fn with_clock(mut self, clock: Arc<HubClock>) -> SyncClient {
        self.clock = clock;
        self
    }

    /// Takes the print files the hub offers into `files`.
    pub fn with_files(mut self, files: crate::commands::SharedFiles) -> SyncClient {
        self.files = Some(files);
        self
    }

    /// The QUIC timeouts of a session. With several hub replicas to move between, a
    /// replica that died without a word (killed, its host gone) is given up on after a few
    /// seconds, not after the configured idle timeout: keep-alives every second, and 4 s of
    /// silence, unless the configuration asks for shorter.
    fn timeouts(&self) -> Timeouts {
        let configured = self.config.timeouts;
        if self.identity.hubs.len() > 1 && configured.idle > FAILOVER_IDLE {
            Timeouts {
                keep_alive: configured.keep_alive.min(Duration::from_secs(1)),
                idle: FAILOVER_IDLE,
            }
        } else {
            configured
        }
    }

    /// The hub address the next session tries.
    fn hub_address(&self) -> &str {
        self.identity.hubs.get(self.current).map_or(self.identity.hub.as_str(), String::as_str)
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut machine = SyncMachine::new(self.config.window);
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        // Addresses tried since a session last got through: with several replicas, the next
        // is tried at once until each was; then the backoff.
        let mut tried = 0;
        loop {
            self.status.send_replace(SyncStatus::Connecting);
            let result = self.session(&mut machine, &shutdown, &mut backoff).await;
            machine.disconnected();
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(error) = &result {
                self.counters.hub_reconnect();
                if matches!(error, SessionError::Protocol(_)) {
                    self.counters.hub_protocol_error();
                }
            }
            let wait = match result {
                Ok(()) => return,
                Err(SessionError::Refused(reason)) => {
                    tracing::error!(%reason, "The hub refused this agent.");
                    self.status.send_replace(SyncStatus::Refused { reason });
                    Duration::from_secs(60)
                }
                Err(error) => {
                    let reason = error.to_string();
                    let hubs = self.identity.hubs.len().max(1);
                    // A session that got through (then was lost) starts a new round.
                    if !matches!(error, SessionError::Connect(_)) {
                        tried = 0;
                    }
                    tried += 1;
                    let from = self.hub_address().to_owned();
                    self.current = (self.current + 1) % hubs;
                    let wait = if tried < hubs {
                        tracing::warn!(%reason, hub = %from, next = %self.hub_address(),
                            "Hub link down; trying another of the hub's addresses.");
                        FAILOVER_WAIT
                    } else {
                        tried = 0;
                        let wait = backoff.next_wait();
                        tracing::warn!(%reason, hub = %from, retry_ms = wait.as_millis() as u64, "Hub link down.");
                        wait
                    };
                    self.status.send_replace(SyncStatus::Disconnected { reason });
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn session(
        &mut self,
        machine: &mut SyncMachine,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let addr =
            resolve(self.hub_address()).await.map_err(|e| SessionError::Connect(e.to_string()))?;
        let config = tls::sync_config_since(
            &self.identity.hub_ca_der,
            self.identity.chain(),
            self.identity.key(),
            self.timeouts(),
            hub_seen(&self.config.state_dir),
        )
        .map_err(SessionError::Connect)?;
        let endpoint = client_endpoint(addr).map_err(SessionError::Connect)?;
        let connecting = endpoint
            .connect_with(config, addr, HUB_SERVER_NAME)
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| SessionError::Connect(format!("no answer from {addr}")))?
            .map_err(|e| SessionError::Connect(format!("cannot connect to {addr}: {e}")))?;
        machine.connected();
        let result = self.stream(&connection, machine, shutdown, backoff).await;
        let result = match result {
            Err(SessionError::Lost(detail)) => {
                Err(refusal(&connection).unwrap_or(SessionError::Lost(detail)))
            }
            other => other,
        };
        connection.close(0u32.into(), b"bye");
        endpoint.close(0u32.into(), b"bye");
        result
    }

    async fn stream(
        &mut self,
        connection: &quinn::Connection,
        machine: &mut SyncMachine,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let (mut send, recv) =
            connection.open_bi().await.map_err(|e| SessionError::Lost(e.to_string()))?;
        let last_seq = self.with_outbox(|outbox| Ok(outbox.durable_through())).await?;
        let hello = AgentHello {
            agent: self.identity.agent.clone(),
            protocol_version: proto::PROTOCOL_VERSION,
            software: software(),
            capabilities: self.capabilities(),
            printers: self.printers.borrow_and_update().clone(),
            last_seq,
        };
        frames::write(&mut send, &AgentMessage::Hello(hello)).await?;
        let hello_sent = std::time::Instant::now();
        let (messages_tx, mut messages) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, MAX_PAYLOAD);
            loop {
                let message = reader.next::<HubMessage>().await;
                let end = message.is_err();
                if messages_tx.send(message).await.is_err() || end {
                    return;
                }
            }
        });
        let mut live_frames = self.live_frames.take();
        // File delivery: offers answered beside the session, bytes on the hub's streams.
        let pending = super::files::Pending::default();
        let (answers_tx, mut answers) = mpsc::channel::<AgentMessage>(16);
        let file_streams = tokio::spawn(super::files::accept_streams(
            connection.clone(),
            pending.clone(),
            answers_tx.clone(),
        ));
        let live_slots = Arc::new(tokio::sync::Semaphore::new(LIVE_IN_FLIGHT));
        let mut session_version = proto::PROTOCOL_VERSION;
        let result = async {
            let welcome = tokio::time::timeout(Duration::from_secs(10), messages.recv())
                .await
                .map_err(|_| SessionError::Lost("no welcome from the hub".into()))?;
            match welcome {
                Some(Ok(HubMessage::Welcome(welcome)))
                    if welcome.protocol_version < MIN_SESSION_VERSION =>
                {
                    // The outbox may already hold records of a newer version (camera
                    // health): they wait, durable, until the hub is upgraded.
                    return Err(SessionError::Refused(format!(
                        "the hub ({}) speaks wire version {}, this agent needs {}: upgrade the \
                         hub first (agents keep recording meanwhile)",
                        welcome.hub_version, welcome.protocol_version, MIN_SESSION_VERSION
                    )));
                }
                Some(Ok(HubMessage::Welcome(welcome))) => {
                    self.clock.observe(welcome.hub_time, hello_sent.elapsed());
                    save_hub_seen(&self.config.state_dir, welcome.hub_time);
                    if let Some(offset) = self.clock.offset()
                        && offset.offset_ms.unsigned_abs() > CLOCK_WARNING_MS
                    {
                        tracing::warn!(offset_ms = offset.offset_ms,
                            uncertainty_ms = offset.uncertainty_ms,
                            "This machine's clock is off the hub's (offset_ms is the hub's \
                             minus ours). Expiries and the plate check follow the hub's clock, \
                             but the times on this agent's records are its own: set up NTP.");
                    }
                    session_version = welcome.protocol_version.min(proto::PROTOCOL_VERSION);
                    let (SyncAction::Resume(through) | SyncAction::Delete(through)) =
                        machine.welcome(welcome.acked_through);
                    self.with_outbox(move |outbox| outbox.resume(through)).await?;
                    tracing::info!(hub_acked_through = %through, "Connected to the hub.");
                    self.status.send_replace(SyncStatus::Connected {
                        acked_through: through,
                        certificate_not_after: self.identity.not_after,
                    });
                    backoff.reset();
                }
                Some(Ok(HubMessage::Disconnect(reason))) => return Err(disconnected(reason)),
                Some(Ok(other)) => {
                    return Err(SessionError::Protocol(format!("expected a welcome, got {other:?}")));
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Err(SessionError::Lost("the hub closed the stream".into())),
            }
            // At most one renewal per session: a hub that issues very short certificates
            // cannot make the agent ask again and again.
            // When to ask for a new certificate, worked out once per session (the check in
            // the loop below is then a comparison, not a certificate parse per message).
            let renew_at = self.renew_at();
            let mut renewal_key = self.maybe_renew(&mut send, renew_at).await?;
            let mut renewal_asked = renewal_key.is_some();
            loop {
                if let Some((after, room)) = machine.next_batch() {
                    let max_records = room.min(self.config.batch_records);
                    let max_bytes = self.config.batch_bytes;
                    let records = self
                        .with_outbox(move |outbox| outbox.read_after(after, max_records, max_bytes))
                        .await?;
                    if let Some(last) = records.last().map(|r| r.seq) {
                        let records = for_session(records, session_version);
                        frames::write(&mut send, &AgentMessage::Records(records)).await?;
                        machine.sent(last);
                        continue;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    // (An error: nobody changes the list; the branch sleeps.)
                    Ok(()) = self.printers.changed() => {
                        return Err(SessionError::Lost(
                            "the agent's printers changed; announcing them anew".into(),
                        ));
                    }
                    _ = self.durable.notified() => {}
                    Some(answer) = answers.recv() => {
                        frames::write(&mut send, &answer).await?;
                    }
                    Some(frame) = next_live(&mut live_frames) => {
                        send_live(connection, &live_slots, frame);
                    }
                    // A safety net: whatever became durable without a notification (a commit
                    // by another writer) goes out within a second.
                    _ = tokio::time::sleep(Duration::from_secs(1)), if machine.next_batch().is_some() => {}
                    message = messages.recv() => match message {
                        Some(Ok(HubMessage::Ack(ack))) => {
                            match machine.ack(ack.through) {
                                Ok(Some(SyncAction::Delete(through) | SyncAction::Resume(through))) => {
                                    self.with_outbox(move |outbox| outbox.ack(through)).await?;
                                    self.status.send_replace(SyncStatus::Connected {
                        acked_through: through,
                        certificate_not_after: self.identity.not_after,
                    });
                                }
                                Ok(None) => {}
                                Err(error) => return Err(SessionError::Protocol(error.to_string())),
                            }
                        }
                        // Never waits: a full queue is answered with a failed result.
                        Some(Ok(HubMessage::Command(command))) => {
                            self.commands.route(command);
                        }
                        Some(Ok(HubMessage::CertificateIssued(issued))) => {
                            if let Some(key) = renewal_key.take() {
                                self.renewed(key, issued)?;
                            }
                        }
                        Some(Ok(HubMessage::Disconnect(reason))) => return Err(disconnected(reason)),
                        Some(Ok(HubMessage::LiveView(request))) => match &self.live_requests {
                            Some(requests) => {
                                if requests.try_send(request).is_err() {
                                    tracing::warn!("The cameras are busy; dropped a live view request.");
                                }
                            }
                            None => tracing::warn!("The hub asked for live view; this agent has no camera."),
                        },
                        Some(Ok(HubMessage::Printers(desired))) => match &self.managed {
                            Some(managed) => {
                                if managed.try_send(desired).is_err() {
                                    tracing::warn!("Still applying the hub's last printer list; this one comes again on the next connection.");
                                }
                            }
                            None => tracing::warn!("The hub sent printers to manage; this agent runs without managed printers."),
                        },
                        Some(Ok(HubMessage::FileOffer(offer))) => match &self.files {
                            Some(files) => super::files::offer(files.clone(), pending.clone(), offer, answers_tx.clone()),
                            None => {
                                let reason = "this agent keeps no file cache".to_owned();
                                let refused = proto::FileRefused { transfer: offer.transfer, reason };
                                frames::write(&mut send, &AgentMessage::FileRefused(refused)).await?;
                            }
                        },
                        Some(Ok(HubMessage::FileCancel { transfer })) => pending.cancel(transfer),
                        Some(Ok(other)) => {
                            tracing::debug!(?other, "Ignored a hub message this agent does not handle yet.");
                        }
                        Some(Err(error)) => return Err(error.into()),
                        None => return Err(SessionError::Lost("the hub closed the stream".into())),
                    }
                }
                if !renewal_asked {
                    renewal_key = self.maybe_renew(&mut send, renew_at).await?;
                    renewal_asked = renewal_key.is_some();
                }
            }
        }
        .await;
        reader.abort();
        file_streams.abort();
        self.live_frames = live_frames;
        result
    }

    fn capabilities(&self) -> Capabilities {
        let base = Capabilities::PRINTER_CONTROL.with(Capabilities::CERTIFICATE_RENEWAL);
        if self.printers.borrow().iter().any(|p| !p.cameras.is_empty()) {
            base.with(Capabilities::SNAPSHOTS).with(Capabilities::LIVE_VIEW)
        } else {
            base
        }
    }

    /// Asks for a new certificate once two thirds of the current one's life have passed.
    /// Two thirds into the current certificate's life.
    fn renew_at(&self) -> UnixMillis {
        UnixMillis(self.identity.not_after.0 - self.identity_lifetime_ms() / 3)
    }

    async fn maybe_renew(
        &mut self,
        send: &mut quinn::SendStream,
        renew_at: UnixMillis,
    ) -> Result<Option<rcgen::KeyPair>, SessionError> {
        // The certificate's end is on the hub's clock, which issued it.
        if self.clock.hub_now() < renew_at {
            return Ok(None);
        }
        let key = rcgen::KeyPair::generate().map_err(|e| SessionError::Protocol(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, self.identity.agent.as_str());
        let csr =
            params.serialize_request(&key).map_err(|e| SessionError::Protocol(e.to_string()))?;
        let request = CertificateRequest { csr_der: csr.der().to_vec() };
        frames::write(send, &AgentMessage::CertificateRequest(request)).await?;
        tracing::info!(
            expires_at = self.identity.not_after.0,
            "Asked the hub for a new certificate."
        );
        Ok(Some(key))
    }

    fn identity_lifetime_ms(&self) -> i64 {
        let lifetime = self
            .identity
            .chain_der
            .first()
            .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| {
                (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
                    * 1000
            });
        lifetime.unwrap_or(AGENT_CERT_LIFETIME.as_millis() as i64)
    }

    fn renewed(
        &mut self,
        key: rcgen::KeyPair,
        issued: proto::CertificateIssued,
    ) -> Result<(), SessionError> {
        let mut identity = self.identity.clone();
        identity.key_der = key.serialize_der();
        identity.chain_der = issued.chain_der;
        identity.not_after = issued.not_after;
        identity.save(&self.config.state_dir).map_err(|e| {
            SessionError::Protocol(format!("cannot save the renewed certificate: {e}"))
        })?;
        tracing::info!(expires_at = issued.not_after.0, "Renewed the agent certificate.");
        self.identity = identity;
        self.status.send_modify(|status| {
            if let SyncStatus::Connected { certificate_not_after, .. } = status {
                *certificate_not_after = issued.not_after;
            }
        });
        Ok(())
    }

    async fn with_outbox<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Outbox) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, SessionError> {
        let outbox = self.outbox.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut outbox = outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut outbox)
        })
        .await
        .map_err(|e| SessionError::Protocol(format!("outbox task failed: {e}")))?;
        Ok(result?)
    }
}

/// The records in the form a session of `version` can carry: an `AgentHealthV2` goes to an
/// older hub as the `AgentHealth` inside it (its counters are lost to that hub, nothing
/// else); a `TelemetryV2` goes to a hub older than 5 as `Telemetry` (what has no place there,
/// a Klipper part, a second nozzle, the printer's message, is lost to it). A printer's fault
/// event has no older form: a hub older than 5 is not sent it (its seq is a gap there, as a
/// dropped record's is), and the log says so; nor is a hub older than 8 sent a job's
/// filament count. [`MIN_SESSION_VERSION`] keeps the rest out.
fn for_session(mut records: Vec<Record>, version: u16) -> Vec<Record> {
    if version < 8 {
        // A hub older than 8 cannot read a job's filament count (it deducts by the file) nor
        // a spool's tag (it makes the spool from the tray it sees).
        records.retain(|record| {
            !matches!(
                &record.body,
                RecordBody::PrinterEvent(event)
                    if event.kind.since() >= 8
            )
        });
    }
    if version < 6 {
        // Only a hub of version 6 manages printers or reads discoveries: for an older one
        // these records answer nothing it asked.
        records.retain(|record| {
            !matches!(record.body, RecordBody::PrintersApplied(_) | RecordBody::Discovered(_))
        });
    }
    if version < 5 {
        let before = records.len();
        records.retain(|record| record.body.since() < 5 || !is_event(&record.body));
        let withheld = before - records.len();
        if withheld > 0 {
            tracing::warn!(
                withheld,
                hub_version = version,
                "Not sent to this hub: printer fault events, which it cannot read (upgrade \
                 kitt-hub to see them)."
            );
        }
    }
    for record in &mut records {
        if version < 5
            && let RecordBody::TelemetryV2(telemetry) = &record.body
        {
            record.body = RecordBody::Telemetry(proto::PrinterTelemetry {
                printer: telemetry.printer.clone(),
                state: Box::new(telemetry.state.to_v1()),
            });
        }
        if version < 4
            && let RecordBody::AgentHealthV3(health) = &record.body
        {
            record.body = RecordBody::AgentHealthV2(health.health.clone());
        }
        if version < 3
            && let RecordBody::AgentHealthV2(health) = &record.body
        {
            record.body = RecordBody::AgentHealth(health.health.clone());
        }
    }
    records
}

fn is_event(body: &RecordBody) -> bool {
    matches!(body, RecordBody::PrinterEvent(_))
}

async fn next_live(frames: &mut Option<mpsc::Receiver<LiveFrame>>) -> Option<LiveFrame> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one live frame on its own unidirectional stream, unless [`LIVE_IN_FLIGHT`] are
/// already on their way: then the frame is dropped, since the next one will be fresher.
fn send_live(
    connection: &quinn::Connection,
    slots: &Arc<tokio::sync::Semaphore>,
    frame: proto::LiveFrame,
) {
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        tracing::debug!("Dropped a live frame: the link is busy.");
        return;
    };
    let connection = connection.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let result = async {
            let mut send = connection.open_uni().await.map_err(|e| e.to_string())?;
            frames::write(&mut send, &AgentMessage::LiveFrame(frame))
                .await
                .map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "A live frame did not go out.");
        }
    });
}

/// What a revoked agent's log says after the hub's reason: the way back, in two commands.
const ENROLL_AGAIN: &str = "to bring it back, create a token on the hub (`kitt-hub token \
     create --name NAME --hub HOST:PORT`) and run `kitt-agent enroll --hub HOST:PORT --token \
     TOKEN --state-dir DIR` here, then restart the agent";

/// The hub's reason, when it closed the connection on purpose.
fn refusal(connection: &quinn::Connection) -> Option<SessionError> {
    match connection.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match code as u32 {
                close_code::REVOKED => {
                    Some(SessionError::Refused(format!("{reason}; {ENROLL_AGAIN}")))
                }
                close_code::UNAUTHENTICATED => Some(SessionError::Refused(reason)),
                _ => Some(SessionError::Lost(format!("the hub closed the connection: {reason}"))),
            }
        }
        _ => None,
    }
}

fn disconnected(reason: DisconnectReason) -> SessionError {
    match reason {
        DisconnectReason::Revoked => {
            SessionError::Refused(format!("the hub says this agent is revoked; {ENROLL_AGAIN}"))
        }
        DisconnectReason::UnsupportedVersion { hub_min, hub_max } => {
            SessionError::Refused(format!(
                "the hub speaks protocol versions {hub_min}..={hub_max}, this agent {}; upgrade one of them",
                proto::PROTOCOL_VERSION
            ))
        }
        DisconnectReason::ProtocolViolation { detail } => SessionError::Protocol(detail),
        DisconnectReason::ShuttingDown => SessionError::Lost("the hub is shutting down".into()),
        DisconnectReason::Superseded => {
            SessionError::Lost("a newer connection of this agent replaced this one".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::{
        AgentCounters, AgentHealth, AgentHealthV2, AgentHealthV3, ClockOffset, Seq, SoftwareVersion,
    };

    use super::*;

    fn health_v2() -> Record {
        let health = AgentHealth {
            outbox_records: 3,
            outbox_bytes: 300,
            drops: Vec::new(),
            disk_free_bytes: 1 << 30,
            uptime_s: 60,
            software: SoftwareVersion { version: "0.1.0".into(), commit: None, target: "t".into() },
            certificate_expires_at: None,
        };
        let counters = AgentCounters { hub_reconnects: 2, ..AgentCounters::default() };
        Record {
            seq: Seq(1),
            observed_at: UnixMillis(1),
            body: RecordBody::AgentHealthV2(AgentHealthV2 { health, counters }),
        }
    }

    fn health_v3() -> Record {
        let RecordBody::AgentHealthV2(health) = health_v2().body else { unreachable!() };
        let clock =
            ClockOffset { offset_ms: 10_800_000, uncertainty_ms: 3, measured_at: UnixMillis(1) };
        Record {
            body: RecordBody::AgentHealthV3(AgentHealthV3 { health, clock: Some(clock) }),
            ..health_v2()
        }
    }

    /// The frame's version, as an older hub's decoder checks it.
    fn frame_version(records: Vec<Record>) -> u16 {
        let bytes = proto::frame::encode(&AgentMessage::Records(records)).unwrap();
        u16::from_le_bytes([bytes[2], bytes[3]])
    }

    #[test]
    fn a_version_2_hub_gets_the_health_without_its_counters() {
        let records = for_session(vec![health_v2()], 2);
        let RecordBody::AgentHealth(health) = &records[0].body else { panic!("{records:?}") };
        assert_eq!(health.outbox_records, 3);
        // Labelled 1: a version 2 hub (which reads 1 and 2) takes it.
        assert_eq!(frame_version(records), 1);
    }

    #[test]
    fn each_hub_gets_the_newest_health_it_reads() {
        let records = for_session(vec![health_v3()], 2);
        assert!(matches!(records[0].body, RecordBody::AgentHealth(_)), "{records:?}");
        assert_eq!(frame_version(records), 1);
        let records = for_session(vec![health_v3()], 3);
        assert_eq!(records, [health_v2()]);
        assert_eq!(frame_version(records), 3);
        let records = for_session(vec![health_v3()], proto::PROTOCOL_VERSION);
        assert_eq!(records, [health_v3()]);
        assert_eq!(frame_version(records), 4);
    }

    #[test]
    fn a_hub_older_than_8_is_not_sent_a_jobs_filament_count() {
        use proto::{PrinterEvent, PrinterEventKind, PrinterId};
        let printer = PrinterId::new("voron-1").unwrap();
        let event = |seq, kind| Record {
            seq: Seq(seq),
            observed_at: UnixMillis(1),
            body: RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind }),
        };
        let used = event(1, PrinterEventKind::FilamentUsed { millimetres: 10.0 });
        let ended = event(
            2,
            PrinterEventKind::JobFinished { job_name: None, outcome: proto::JobOutcome::Succeeded },
        );
        let both = vec![used.clone(), ended.clone()];
        assert_eq!(for_session(both.clone(), 7), [ended]);
        assert_eq!(for_session(both.clone(), 8), both);
        assert_eq!(frame_version(vec![used]), 8);
    }

    #[test]
    fn a_version_4_hub_gets_telemetry_in_its_terms_and_no_fault_events() {
        use proto::{
            PrintState, PrinterEvent, PrinterEventKind, PrinterId, PrinterStateV2,
            PrinterTelemetryV2,
        };
        let printer = PrinterId::new("01P00A391800123").unwrap();
        let state = PrinterStateV2 { state: PrintState::Printing, ..PrinterStateV2::default() };
        let telemetry = Record {
            seq: Seq(7),
            observed_at: UnixMillis(1),
            body: RecordBody::TelemetryV2(PrinterTelemetryV2 {
                printer: printer.clone(),
                state: Box::new(state.clone()),
            }),
        };
        let event = |seq, kind| Record {
            seq: Seq(seq),
            observed_at: UnixMillis(1),
            body: RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind }),
        };
        let fault = event(8, PrinterEventKind::Fault { message: "Klipper shut down".into() });
        let resumed = event(9, PrinterEventKind::JobResumed);
        let batch = vec![telemetry.clone(), fault.clone(), resumed.clone()];

        let old = for_session(batch.clone(), 4);
        let seqs: Vec<u64> = old.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [7, 9], "the fault event is withheld, nothing else");
        let RecordBody::Telemetry(v1) = &old[0].body else { panic!("{old:?}") };
        assert_eq!(*v1.state, state.to_v1());
        assert_eq!(frame_version(old), 1);

        let new = for_session(batch.clone(), 5);
        assert_eq!(new, batch);
        assert_eq!(frame_version(new), 5);

        // The managed printers' answer and the discoveries go to a hub of version 6 only.
        let applied = Record {
            seq: Seq(10),
            observed_at: UnixMillis(1),
            body: RecordBody::PrintersApplied(proto::PrintersApplied {
                version: 2,
                printers: Vec::new(),
            }),
        };
        let discovered = Record {
            seq: Seq(11),
            observed_at: UnixMillis(1),
            body: RecordBody::Discovered(proto::DiscoveredPrinters { printers: Vec::new() }),
        };
        let batch = vec![resumed.clone(), applied, discovered];
        let seqs: Vec<u64> = for_session(batch.clone(), 5).iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, [9]);
        assert_eq!(for_session(batch.clone(), 6), batch);
    }

    #[test]
    fn a_revoked_agent_is_told_how_to_come_back() {
        let SessionError::Refused(reason) = disconnected(DisconnectReason::Revoked) else {
            panic!("a revoked agent is refused, not retried quickly")
        };
        assert!(reason.contains("kitt-agent enroll --hub"), "{reason}");
        assert!(reason.contains("kitt-hub token create"), "{reason}");
    }
}
