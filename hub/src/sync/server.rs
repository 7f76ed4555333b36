//! The hub's QUIC endpoint: enrollment and sync connections, command delivery, revocation.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::frame::MAX_PAYLOAD;
use proto::{
    AgentId, AgentMessage, CameraId, CertificateIssued, Command, CommandId, DisconnectReason,
    HubMessage, HubWelcome, LiveViewAction, LiveViewRequest, PrinterId, RecordBody, UnixMillis,
};
use quinn::crypto::rustls::QuicServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::session::IngestSession;
use super::{ALPN_ENROLL, ALPN_SYNC, HUB_SERVER_NAME, close_code};
use crate::ca::{AGENT_CERT_LIFETIME, CaError, HubCa};
use crate::camera::{Cameras, LIVE_FPS_MILLI, LIVE_RENEW, LiveImage, SnapshotError, SnapshotStore};
use crate::db::{Db, DbError, StoredSnapshot};
use crate::live::{LiveHub, LiveUpdate};
use proto_io::{self as frames, FrameError, FrameReader};

/// How the sync endpoint behaves.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub listen: SocketAddr,
    /// A connection with no traffic for this long is dropped (agents send keep-alives).
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    /// Lifetime of the certificates issued to agents.
    pub cert_lifetime: Duration,
    /// How often revocations made by another process and command expiries are picked up.
    pub housekeeping: Duration,
    /// How long an agent may take between connecting and saying hello.
    pub hello_timeout: Duration,
    /// Where snapshot images are stored; `None` keeps no images (the records are still
    /// ingested and acknowledged).
    pub snapshot_dir: Option<std::path::PathBuf>,
}

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

impl SyncConfig {
    pub fn new(listen: SocketAddr) -> SyncConfig {
        SyncConfig {
            listen,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            cert_lifetime: AGENT_CERT_LIFETIME,
            housekeeping: Duration::from_secs(2),
            hello_timeout: Duration::from_secs(10),
            snapshot_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncServerError {
    #[error("cannot listen on udp/{addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// What a connection task is told from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signal {
    CommandsPending,
    Revoked,
    Superseded,
    LiveView(LiveViewRequest),
}

#[derive(Debug)]
struct Live {
    connection: u64,
    signals: mpsc::Sender<Signal>,
}

#[derive(Debug)]
struct Shared {
    db: Db,
    ca: HubCa,
    live: LiveHub,
    /// Counts changes to what the hub stores or knows about agents (ingest commits,
    /// connections, commands, expiries, certificates): something to wait on instead of the
    /// clock.
    changes: tokio::sync::watch::Sender<u64>,
    config: SyncConfig,
    agents: Mutex<HashMap<AgentId, Live>>,
    next_connection: std::sync::atomic::AtomicU64,
    cameras: Arc<Cameras>,
    snapshots: Option<SnapshotStore>,
}

impl Shared {
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Live>> {
        self.agents.lock().expect("the live-agent map is never poisoned")
    }

    fn signal(&self, agent: &AgentId, signal: Signal) {
        let live = self.live_map();
        if let Some(live) = live.get(agent) {
            let _ = live.signals.try_send(signal);
        }
    }
}

/// One viewer of a camera's live view; dropping it leaves.
#[derive(Debug)]
pub struct CameraViewer {
    handle: SyncHandle,
    printer: PrinterId,
    camera: CameraId,
    pub frames: tokio::sync::watch::Receiver<Option<LiveImage>>,
}

impl Drop for CameraViewer {
    fn drop(&mut self) {
        if self.handle.shared.cameras.remove_viewer(&self.printer, &self.camera) {
            self.handle.live_view(&self.printer, &self.camera, LiveViewAction::Stop);
        }
    }
}

/// Controls a running sync endpoint from the rest of the hub.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    shared: Arc<Shared>,
}

impl SyncHandle {
    pub fn cameras(&self) -> &Arc<Cameras> {
        &self.shared.cameras
    }

    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.shared.snapshots.as_ref()
    }

    /// Starts watching a camera: the first viewer asks the agent to stream. The returned
    /// guard stops the stream when the last viewer drops it.
    pub fn watch_camera(&self, printer: &PrinterId, camera: &CameraId) -> CameraViewer {
        let (frames, first) = self.shared.cameras.add_viewer(printer, camera);
        if first {
            self.live_view(
                printer,
                camera,
                LiveViewAction::Start { max_fps_milli: LIVE_FPS_MILLI },
            );
        }
        CameraViewer {
            handle: self.clone(),
            printer: printer.clone(),
            camera: camera.clone(),
            frames,
        }
    }

    /// Sends a live view action to the agent serving `printer`; false when it is offline.
    pub fn live_view(
        &self,
        printer: &PrinterId,
        camera: &CameraId,
        action: LiveViewAction,
    ) -> bool {
        let Some(agent) = self.shared.cameras.owner(printer) else { return false };
        if !self.shared.live_map().contains_key(&agent) {
            return false;
        }
        let request = LiveViewRequest { printer: printer.clone(), camera: camera.clone(), action };
        self.shared.signal(&agent, Signal::LiveView(request));
        true
    }

    /// Queues a command for an agent and delivers it now if the agent is connected; otherwise
    /// it is delivered when the agent connects, unless it has expired by then.
    pub async fn send_command(&self, agent: &AgentId, command: &Command) -> Result<(), DbError> {
        self.shared.db.insert_command(agent, command).await?;
        self.shared.changed();
        self.shared.signal(agent, Signal::CommandsPending);
        Ok(())
    }

    /// Revokes an agent and drops its connection at once.
    pub async fn revoke(&self, agent: &AgentId) -> Result<bool, DbError> {
        let known = self.shared.db.revoke_agent(agent.as_str(), UnixMillis::now()).await?;
        self.shared.changed();
        self.shared.signal(agent, Signal::Revoked);
        Ok(known)
    }

    /// Agents connected right now.
    pub fn connected(&self) -> Vec<AgentId> {
        let live = self.shared.live_map();
        let mut agents: Vec<AgentId> = live.keys().cloned().collect();
        agents.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        agents
    }

    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    pub fn live(&self) -> &LiveHub {
        &self.shared.live
    }

    /// A receiver that sees every change the hub commits or learns (see `Shared::changes`).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.shared.live_map().keys().any(|a| a.as_str() == agent)
    }

    /// The hub CA certificate (DER).
    pub fn ca_der(&self) -> Vec<u8> {
        self.shared.ca.cert_der().to_vec()
    }

    pub fn ca_fingerprint(&self) -> [u8; 32] {
        self.shared.ca.fingerprint()
    }
}

/// The bound endpoint; [`SyncServer::run`] serves it.
#[derive(Debug)]
pub struct SyncServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl SyncServer {
    pub fn bind(config: SyncConfig, db: Db, ca: HubCa) -> Result<SyncServer, SyncServerError> {
        SyncServer::bind_with(config, db, ca, LiveHub::new())
    }

    /// Like [`SyncServer::bind`], publishing ingested state and events to `live`.
    pub fn bind_with(
        config: SyncConfig,
        db: Db,
        ca: HubCa,
        live: LiveHub,
    ) -> Result<SyncServer, SyncServerError> {
        let server_config = server_config(&ca, &config)?;
        let endpoint = quinn::Endpoint::server(server_config, config.listen)
            .map_err(|source| SyncServerError::Bind { addr: config.listen, source })?;
        let snapshots = config.snapshot_dir.clone().map(SnapshotStore::new);
        let shared = Arc::new(Shared {
            db,
            ca,
            live,
            config,
            changes: tokio::sync::watch::Sender::new(0),
            agents: Mutex::new(HashMap::new()),
            next_connection: 0.into(),
            cameras: Arc::default(),
            snapshots,
        });
        Ok(SyncServer { endpoint, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap_or(self.shared.config.listen)
    }

    pub fn handle(&self) -> SyncHandle {
        SyncHandle { shared: self.shared.clone() }
    }

    /// Serves until `shutdown`; then tells every agent and waits briefly for them.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        tasks.spawn(housekeeping(self.shared.clone(), shutdown.clone()));
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(connection) => serve_connection(shared, connection, shutdown).await,
                    Err(error) => {
                        tracing::info!(%remote, %error, "Refused a QUIC connection.");
                    }
                }
            });
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
        self.endpoint.close(close_code::SHUTTING_DOWN.into(), b"hub shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

fn server_config(ca: &HubCa, config: &SyncConfig) -> Result<quinn::ServerConfig, SyncServerError> {
    let tls = |e: &dyn std::fmt::Display| SyncServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).map_err(|e| tls(&e))?;
    // Enrollment connections carry no client certificate; sync connections without one are
    // closed after the handshake (see `serve_connection`).
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let identity = ca.server_identity(&[HUB_SERVER_NAME.to_owned()])?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| tls(&e))?;
    crypto.alpn_protocols = vec![ALPN_SYNC.to_vec(), ALPN_ENROLL.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|e| tls(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(config.idle_timeout.try_into().map_err(|e| tls(&e))?))
        .keep_alive_interval(Some(config.keep_alive))
        // Live frames, one per stream: the agent keeps two in flight, so a few suffice, and a
        // misbehaving agent cannot make the hub buffer many frames at once.
        .max_concurrent_uni_streams(4u32.into())
        // Agents open one bidirectional stream (the sync session); enrollment one too.
        .max_concurrent_bidi_streams(4u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

async fn housekeeping(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.config.housekeeping);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match shared.db.revoked_agents().await {
            Ok(revoked) => {
                for agent in revoked.iter().filter_map(|id| AgentId::new(id.as_str()).ok()) {
                    shared.signal(&agent, Signal::Revoked);
                }
            }
            Err(error) => tracing::warn!(%error, "Cannot read revocations."),
        }
        match shared.db.expire_commands(UnixMillis::now()).await {
            Ok(0) => {}
            Ok(_) => shared.changed(),
            Err(error) => tracing::warn!(%error, "Cannot expire commands."),
        }
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    shutdown: CancellationToken,
) {
    let alpn = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    match alpn.as_deref() {
        Some(ALPN_ENROLL) => enroll_connection(&shared, &connection).await,
        Some(ALPN_SYNC) => {
            let Some(agent) = agent_identity(&connection) else {
                tracing::warn!(remote = %connection.remote_address(), "Refused a sync connection without a client certificate.");
                connection.close(
                    close_code::UNAUTHENTICATED.into(),
                    b"a client certificate issued by this hub is required; enroll first",
                );
                return;
            };
            let span = tracing::info_span!("agent", %agent);
            let _guard = span.enter();
            drop(_guard);
            if let Err(error) = sync_connection(&shared, &connection, agent.clone(), shutdown).await
            {
                tracing::warn!(%agent, %error, "Agent connection ended.");
            }
        }
        _ => connection.close(close_code::PROTOCOL.into(), b"unknown ALPN protocol"),
    }
}

/// The agent named by the verified client certificate's common name.
fn agent_identity(connection: &quinn::Connection) -> Option<AgentId> {
    let chain = connection.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    AgentId::new(cn).ok()
}

async fn enroll_connection(shared: &Shared, connection: &quinn::Connection) {
    let result = async {
        let (mut send, recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
        let mut reader = FrameReader::new(recv, 64 * 1024);
        let message: AgentMessage =
            tokio::time::timeout(shared.config.hello_timeout, reader.next())
                .await
                .map_err(|_| "no enrollment request in time".to_owned())?
                .map_err(|e| e.to_string())?;
        let AgentMessage::Enroll(request) = message else {
            return Err("expected an enrollment request".to_owned());
        };
        let answer = super::enroll::handle(
            &shared.db,
            &shared.ca,
            &request,
            shared.config.cert_lifetime,
            UnixMillis::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        frames::write(&mut send, &answer).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        // Let the agent read the answer and close.
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
        Ok::<_, String>(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(remote = %connection.remote_address(), %error, "Enrollment failed.");
        connection.close(close_code::PROTOCOL.into(), error.as_bytes());
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Lost(#[from] quinn::ConnectionError),
}

async fn sync_connection(
    shared: &Shared,
    connection: &quinn::Connection,
    agent: AgentId,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let row = shared.db.agent(&agent).await?;
    let Some(row) = row else {
        connection.close(close_code::UNAUTHENTICATED.into(), b"unknown agent");
        return Err(ConnectionError::Protocol("unknown agent".into()));
    };
    let (mut send, recv) = connection.accept_bi().await?;
    if row.revoked_at.is_some() {
        let _ = frames::write(&mut send, &HubMessage::Disconnect(DisconnectReason::Revoked)).await;
        let _ = send.finish();
        connection.close(close_code::REVOKED.into(), b"this agent has been revoked");
        tracing::warn!(%agent, "Refused a revoked agent.");
        return Ok(());
    }
    let mut reader = FrameReader::new(recv, MAX_PAYLOAD);
    let hello = tokio::time::timeout(shared.config.hello_timeout, reader.next::<AgentMessage>())
        .await
        .map_err(|_| ConnectionError::Protocol("no hello in time".into()))??;
    let AgentMessage::Hello(hello) = hello else {
        return Err(violation(connection, &mut send, "expected a hello").await);
    };
    if hello.protocol_version < proto::MIN_PROTOCOL_VERSION {
        let reason = DisconnectReason::UnsupportedVersion {
            hub_min: proto::MIN_PROTOCOL_VERSION,
            hub_max: proto::PROTOCOL_VERSION,
        };
        let _ = frames::write(&mut send, &HubMessage::Disconnect(reason)).await;
        connection.close(close_code::PROTOCOL.into(), b"unsupported protocol version");
        return Ok(());
    }
    if hello.agent != agent {
        return Err(violation(connection, &mut send, "hello names another agent").await);
    }
    let software = format!("{} ({})", hello.software.version, hello.software.target);
    shared.db.touch_agent(&agent, UnixMillis::now(), &software).await?;
    shared.cameras.serves(&agent, hello.printers.iter().map(|p| p.id.clone()));
    let cameras: Arc<HashSet<(PrinterId, CameraId)>> = Arc::new(
        hello
            .printers
            .iter()
            .flat_map(|p| p.cameras.iter().map(|c| (p.id.clone(), c.clone())))
            .collect(),
    );
    let printers: Vec<PrinterId> = hello.printers.iter().map(|p| p.id.clone()).collect();
    for printer in &hello.printers {
        shared
            .db
            .announce_printer(
                printer.id.as_str(),
                agent.as_str(),
                printer.name.as_deref(),
                printer.model.as_deref(),
                UnixMillis::now(),
            )
            .await?;
    }
    let watermark = shared.db.watermark(&agent).await?;
    let welcome = HubWelcome {
        protocol_version: proto::PROTOCOL_VERSION.min(hello.protocol_version),
        hub_version: env!("CARGO_PKG_VERSION").into(),
        acked_through: watermark,
        hub_time: UnixMillis::now(),
    };
    frames::write(&mut send, &HubMessage::Welcome(welcome)).await?;
    tracing::info!(%agent, %watermark, remote = %connection.remote_address(), "Agent connected.");

    let (signals_tx, mut signals) = mpsc::channel(16);
    let id = shared.next_connection.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    {
        let mut live = shared.live_map();
        if let Some(previous) =
            live.insert(agent.clone(), Live { connection: id, signals: signals_tx })
        {
            let _ = previous.signals.try_send(Signal::Superseded);
        }
    }
    shared.live.publish(LiveUpdate::Agent { agent: agent.to_string(), online: true });
    shared.changed();
    let mut session = IngestSession::new(watermark);
    let mut delivered = HashSet::new();
    let frames_task = tokio::spawn(accept_live_frames(
        connection.clone(),
        shared.cameras.clone(),
        cameras.clone(),
    ));
    let mut renew = tokio::time::interval(LIVE_RENEW);
    let result = async {
        deliver_commands(shared, &agent, &mut send, &mut delivered).await?;
        loop {
            tokio::select! {
                // Live view leases: renewed while anyone watches (and at once on connect).
                _ = renew.tick() => {
                    for (printer, camera) in shared.cameras.watched(&printers) {
                        let action = LiveViewAction::Start { max_fps_milli: LIVE_FPS_MILLI };
                        let request = LiveViewRequest { printer, camera, action };
                        frames::write(&mut send, &HubMessage::LiveView(request)).await?;
                    }
                }
                _ = shutdown.cancelled() => {
                    let _ = frames::write(&mut send, &HubMessage::Disconnect(DisconnectReason::ShuttingDown)).await;
                    connection.close(close_code::SHUTTING_DOWN.into(), b"hub shutting down");
                    return Ok(());
                }
                signal = signals.recv() => match signal {
                    Some(Signal::CommandsPending) => {
                        deliver_commands(shared, &agent, &mut send, &mut delivered).await?;
                    }
                    Some(Signal::LiveView(request)) => {
                        frames::write(&mut send, &HubMessage::LiveView(request)).await?;
                    }
                    Some(Signal::Revoked) => {
                        let _ = frames::write(&mut send, &HubMessage::Disconnect(DisconnectReason::Revoked)).await;
                        connection.close(close_code::REVOKED.into(), b"this agent has been revoked");
                        tracing::warn!(%agent, "Disconnected a revoked agent.");
                        return Ok(());
                    }
                    Some(Signal::Superseded) | None => {
                        let _ = frames::write(&mut send, &HubMessage::Disconnect(DisconnectReason::Superseded)).await;
                        connection.close(close_code::SUPERSEDED.into(), b"superseded by a newer connection");
                        return Ok(());
                    }
                },
                message = reader.next::<AgentMessage>() => {
                    let message = match message {
                        Ok(message) => message,
                        Err(FrameError::Closed) => return Ok(()),
                        Err(FrameError::Decode(error)) => {
                            return Err(violation(connection, &mut send, &error.to_string()).await);
                        }
                        Err(error) => return Err(error.into()),
                    };
                    // Take every message already received, so one commit covers them all.
                    let mut batch = Vec::new();
                    let mut others = Vec::new();
                    let mut next = Some(message);
                    while let Some(message) = next {
                        match message {
                            AgentMessage::Records(records) => batch.extend(records),
                            other => others.push(other),
                        }
                        if batch.len() >= 20_000 {
                            break;
                        }
                        next = reader.ready::<AgentMessage>()?;
                    }
                    if !batch.is_empty() {
                        ingest(shared, &agent, &mut session, batch, &mut send, connection).await?;
                    }
                    for message in others {
                        handle_other(shared, &agent, message, &mut send, connection).await?;
                    }
                }
            }
        }
    }
    .await;
    frames_task.abort();
    let mut live = shared.live_map();
    let gone = live.get(&agent).is_some_and(|l| l.connection == id);
    if gone {
        live.remove(&agent);
    }
    drop(live);
    if gone {
        shared.live.publish(LiveUpdate::Agent { agent: agent.to_string(), online: false });
        shared.changed();
    }
    if session.duplicates > 0 {
        tracing::info!(%agent, duplicates = session.duplicates, "Skipped resent records.");
    }
    result
}

async fn ingest(
    shared: &Shared,
    agent: &AgentId,
    session: &mut IngestSession,
    batch: Vec<proto::Record>,
    send: &mut quinn::SendStream,
    connection: &quinn::Connection,
) -> Result<(), ConnectionError> {
    let fresh = match session.accept(batch) {
        Ok(fresh) => fresh,
        Err(error) => return Err(violation(connection, send, &error.to_string()).await),
    };
    if fresh.is_empty() {
        return Ok(());
    }
    let stored = match store_snapshots(shared, &fresh).await {
        Ok(stored) => stored,
        Err(error) => {
            // Nothing is acknowledged; the agent resends once the disk has room again.
            tracing::error!(%agent, %error, "Cannot store snapshot chunks.");
            connection.close(close_code::INTERNAL.into(), b"hub snapshot storage unavailable");
            return Err(ConnectionError::Protocol(error.to_string()));
        }
    };
    let now = UnixMillis::now();
    let watermark = match shared.db.ingest_with(agent, &fresh, now, stored.clone()).await {
        Ok(watermark) => watermark,
        Err(error) => {
            // Nothing is acknowledged; the agent resends from the watermark next time.
            connection.close(close_code::INTERNAL.into(), b"hub storage unavailable");
            return Err(error.into());
        }
    };
    publish(&shared.live, agent, &fresh, &stored);
    shared.changed();
    if let Some(through) = session.committed_through(watermark) {
        frames::write(send, &HubMessage::Ack(proto::Ack { through })).await?;
    }
    Ok(())
}

/// Tells live subscribers what was just committed: each printer's newest state and every
/// event.
fn publish(live: &LiveHub, agent: &AgentId, records: &[proto::Record], stored: &[StoredSnapshot]) {
    if live.subscribers() == 0 {
        return;
    }
    // Each printer's newest state first (as the agent emits a state before the events that
    // led to it), then every event and result in order.
    let mut newest: HashMap<&str, (i64, &proto::PrinterState)> = HashMap::new();
    let mut others = Vec::new();
    for record in records {
        match &record.body {
            RecordBody::Telemetry(t) => {
                newest.insert(t.printer.as_str(), (record.observed_at.0, &t.state));
            }
            RecordBody::PrinterEvent(e) => others.push(LiveUpdate::Event {
                printer: e.printer.to_string(),
                agent: agent.to_string(),
                at: record.observed_at.0,
                event: proto::json::printer_event(&e.kind),
            }),
            RecordBody::CommandResult(r) => others.push(LiveUpdate::CommandResult {
                command: r.command.to_string(),
                printer: r.printer.to_string(),
                outcome: crate::db::outcome_text(&r.outcome),
            }),
            RecordBody::Snapshot(chunk) => {
                if chunk.chunk_index + 1 == chunk.chunk_count
                    && let Some(file) = stored.iter().find(|s| s.id == chunk.snapshot)
                {
                    others.push(LiveUpdate::Snapshot {
                        id: chunk.snapshot.to_string(),
                        printer: chunk.printer.to_string(),
                        camera: chunk.camera.to_string(),
                        trigger: crate::db::trigger_name(chunk.trigger).to_owned(),
                        captured_at: chunk.captured_at.0,
                        bytes: file.bytes,
                    });
                }
            }
            RecordBody::CameraHealth(health) => others.push(LiveUpdate::Camera {
                printer: health.printer.to_string(),
                camera: health.camera.to_string(),
                state: crate::db::camera_state_name(health.state).to_owned(),
                fps: f64::from(health.fps_milli) / 1000.0,
                last_frame_at: health.last_frame_at.map(|t| t.0),
                last_error: health.last_error.clone(),
                live: health.live,
                source: health.source.clone(),
                width: health.width,
                height: health.height,
                frames_total: health.frames_total,
            }),
            RecordBody::AgentHealth(_) | RecordBody::AgentHealthV2(_) => {}
        }
    }
    for (printer, (at, state)) in newest {
        live.publish(LiveUpdate::PrinterState {
            printer: printer.to_owned(),
            at,
            state: proto::json::printer_state(state),
        });
    }
    for update in others {
        live.publish(update);
    }
}

async fn handle_other(
    shared: &Shared,
    agent: &AgentId,
    message: AgentMessage,
    send: &mut quinn::SendStream,
    connection: &quinn::Connection,
) -> Result<(), ConnectionError> {
    match message {
        AgentMessage::CertificateRequest(request) => {
            match shared.ca.issue_agent(agent, &request.csr_der, shared.config.cert_lifetime) {
                Ok(issued) => {
                    shared
                        .db
                        .set_agent_certificate(agent, &issued.serial_hex, issued.not_after)
                        .await?;
                    shared.changed();
                    let message = HubMessage::CertificateIssued(CertificateIssued {
                        chain_der: issued.chain_der,
                        not_after: issued.not_after,
                    });
                    frames::write(send, &message).await?;
                    tracing::info!(%agent, "Renewed an agent certificate.");
                    Ok(())
                }
                Err(error) => Err(violation(connection, send, &error.to_string()).await),
            }
        }
        // Frames normally come on their own streams; one on the record stream is served too.
        AgentMessage::LiveFrame(frame) => {
            publish_frame(&shared.cameras, frame);
            Ok(())
        }
        AgentMessage::Hello(_) | AgentMessage::Enroll(_) | AgentMessage::Records(_) => {
            Err(violation(connection, send, "unexpected message on a sync stream").await)
        }
    }
}

/// Writes every snapshot chunk in `records` to disk (fsynced) before the ingest commits;
/// returns the snapshots that are now whole. A snapshot that cannot be assembled (a chunk
/// dropped at the agent, a hash that does not match) is logged and left out; only a storage
/// failure is an error.
async fn store_snapshots(
    shared: &Shared,
    records: &[proto::Record],
) -> Result<Vec<StoredSnapshot>, SnapshotError> {
    let chunks: Vec<proto::SnapshotChunk> = records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::Snapshot(chunk) => Some(chunk.clone()),
            _ => None,
        })
        .collect();
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let Some(store) = shared.snapshots.clone() else { return Ok(Vec::new()) };
    let stored = tokio::task::spawn_blocking(move || {
        let mut stored = Vec::new();
        for chunk in &chunks {
            match store.put_chunk(chunk) {
                Ok(Some(file)) => stored.push(StoredSnapshot {
                    id: chunk.snapshot,
                    path: file.path,
                    bytes: file.bytes,
                }),
                Ok(None) => {}
                Err(SnapshotError::Invalid { id, detail }) => {
                    tracing::warn!(snapshot = %id, %detail, printer = %chunk.printer,
                        "Dropped a snapshot that cannot be assembled.");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(stored)
    })
    .await
    .map_err(|e| SnapshotError::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })??;
    Ok(stored)
}

/// The largest live frame message accepted (the agent's frame limit plus framing).
const MAX_LIVE_FRAME: u32 = 9 * 1024 * 1024;

/// Reads live frames, one per unidirectional stream, for as long as the connection lives.
/// A frame for a camera the agent did not announce, or bytes that are not a frame, end that
/// stream only: live view is best effort and never disturbs the records.
async fn accept_live_frames(
    connection: quinn::Connection,
    cameras: Arc<Cameras>,
    announced: Arc<HashSet<(PrinterId, CameraId)>>,
) {
    while let Ok(recv) = connection.accept_uni().await {
        let cameras = cameras.clone();
        let announced = announced.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, MAX_LIVE_FRAME);
            let message =
                tokio::time::timeout(Duration::from_secs(10), reader.next::<AgentMessage>());
            match message.await {
                Ok(Ok(AgentMessage::LiveFrame(frame))) => {
                    if announced.contains(&(frame.printer.clone(), frame.camera.clone())) {
                        publish_frame(&cameras, frame);
                    } else {
                        tracing::warn!(printer = %frame.printer, camera = %frame.camera,
                            "A live frame for a camera the agent did not announce.");
                    }
                }
                Ok(Ok(_)) => tracing::warn!("Unexpected message on a live frame stream."),
                Ok(Err(error)) => tracing::debug!(%error, "A live frame stream failed."),
                Err(_) => tracing::debug!("A live frame stream stalled."),
            }
        });
    }
}

fn publish_frame(cameras: &Cameras, frame: proto::LiveFrame) {
    let image = LiveImage {
        captured_at: frame.captured_at,
        received: std::time::Instant::now(),
        jpeg: frame.data.into(),
    };
    cameras.publish(frame.printer, frame.camera, image);
}

async fn deliver_commands(
    shared: &Shared,
    agent: &AgentId,
    send: &mut quinn::SendStream,
    delivered: &mut HashSet<CommandId>,
) -> Result<(), ConnectionError> {
    let now = UnixMillis::now();
    for command in shared.db.open_commands(agent, now).await? {
        if delivered.insert(command.id) {
            frames::write(send, &HubMessage::Command(command.clone())).await?;
            shared.db.mark_delivered(command.id, now).await?;
        }
    }
    Ok(())
}

async fn violation(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    detail: &str,
) -> ConnectionError {
    let reason = DisconnectReason::ProtocolViolation { detail: detail.to_owned() };
    let _ = frames::write(send, &HubMessage::Disconnect(reason)).await;
    connection.close(close_code::PROTOCOL.into(), detail.as_bytes());
    ConnectionError::Protocol(detail.to_owned())
}
