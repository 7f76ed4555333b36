//! The hub's QUIC endpoint: binds the port, tells enrollment from sync connections by ALPN,
//! and runs each agent's sync connection (hello, welcome, then records up and acks, commands
//! and live-view requests down). The concerns it drives live beside it: [`super::enroll`]
//! (enrollment), [`super::ingest`] (records into the database, then live updates),
//! [`super::camera_intake`] (live frames and viewers), [`super::delivery`] (commands,
//! revocation and other signals to a connected agent).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::frame::MAX_PAYLOAD;
use proto::{
    AgentId, AgentMessage, CameraId, CertificateIssued, DisconnectReason, HubMessage, HubWelcome,
    LiveViewAction, LiveViewRequest, PrinterId, UnixMillis,
};
use quinn::crypto::rustls::QuicServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;

use super::camera_intake::{accept_live_frames, publish_frame};
use super::delivery::{Live, Signal, deliver_commands, deliver_printers};
use super::ingest::{self, MAX_BATCH_RECORDS};
use super::session::IngestSession;
use super::{ALPN_ENROLL, ALPN_SYNC, HUB_SERVER_NAME, close_code};
use crate::ca::{AGENT_CERT_LIFETIME, CaError, HubCa};
use crate::camera::{Cameras, LIVE_FPS_MILLI, LIVE_RENEW, SnapshotStore};
use crate::db::owners::Claim;
use crate::db::{Db, DbError};
use crate::live::{LiveHub, LiveUpdate};
use crate::metrics::{Metrics, Source};
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
    /// Where the print files are stored (`crate::files::FileStore`'s directory), from which
    /// jobs' files are sent to agents; `None`: no files are sent.
    pub file_dir: Option<std::path::PathBuf>,
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
            file_dir: None,
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

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) db: Db,
    pub(super) ca: HubCa,
    pub(super) live: LiveHub,
    /// Counts changes to what the hub stores or knows about agents (ingest commits,
    /// connections, commands, expiries, certificates): something to wait on instead of the
    /// clock.
    pub(super) changes: tokio::sync::watch::Sender<u64>,
    pub(super) config: SyncConfig,
    pub(super) agents: Mutex<HashMap<AgentId, Live>>,
    pub(super) next_connection: std::sync::atomic::AtomicU64,
    pub(super) cameras: Arc<Cameras>,
    pub(super) snapshots: Option<SnapshotStore>,
    pub(super) metrics: Arc<Metrics>,
}

impl Shared {
    pub(super) fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    pub(super) fn live_map(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Live>> {
        // A panic while it was held (caught, see `supervise`) leaves the map as it was.
        self.agents.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Controls a running sync endpoint from the rest of the hub.
#[derive(Debug, Clone)]
pub struct SyncHandle {
    pub(super) shared: Arc<Shared>,
}

impl SyncHandle {
    /// The hub's metrics, which the sync endpoint counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Agents connected right now, here or to another replica.
    pub fn connected(&self) -> Vec<AgentId> {
        let live = self.shared.live_map();
        let mut agents: Vec<AgentId> = live.keys().cloned().collect();
        for agent in self.shared.live.elsewhere().into_keys() {
            if let Ok(agent) = AgentId::new(agent)
                && !live.contains_key(&agent)
            {
                agents.push(agent);
            }
        }
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

    /// Tells the receivers of [`SyncHandle::changes`] that something the hub stores changed
    /// outside the sync server (a job of the queue assigned by the dispatcher).
    pub fn changed(&self) {
        self.shared.changed();
    }

    /// Whether the agent is connected to this replica.
    pub fn is_connected_here(&self, agent: &str) -> bool {
        self.shared.live_map().keys().any(|a| a.as_str() == agent)
    }

    /// Whether the agent is connected: here, or to another replica.
    pub fn is_connected(&self, agent: &str) -> bool {
        self.shared.live_map().keys().any(|a| a.as_str() == agent)
            || self.shared.live.connected_elsewhere(agent)
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
        SyncServer::bind_with(config, db, ca, LiveHub::new(), Arc::default())
    }

    /// Like [`SyncServer::bind`], publishing ingested state and events to `live`.
    pub fn bind_with(
        config: SyncConfig,
        db: Db,
        ca: HubCa,
        live: LiveHub,
        metrics: Arc<Metrics>,
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
            metrics,
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
        tasks.spawn(signals_from_elsewhere(self.shared.clone(), shutdown.clone()));
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
                let metrics = shared.metrics.clone();
                let remote = incoming.remote_address();
                let work = async move {
                    match incoming.await {
                        Ok(connection) => serve_connection(shared, connection, shutdown).await,
                        Err(error) => {
                            shared.metrics.refused(
                                Source::Quic,
                                "handshake",
                                &format_args!("{remote}: {error}"),
                            );
                        }
                    }
                };
                crate::supervise::contained(&metrics, "sync_connection", work).await;
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

/// Signals other replicas sent (through the cluster's log) for agents connected here.
async fn signals_from_elsewhere(shared: Arc<Shared>, shutdown: CancellationToken) {
    use crate::live::SignalKind;
    let mut signals = shared.live.subscribe_signals();
    loop {
        let signal = tokio::select! {
            _ = shutdown.cancelled() => return,
            signal = signals.recv() => match signal {
                Ok(signal) => signal,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let Ok(agent) = AgentId::new(signal.agent) else { continue };
        shared.changed();
        shared.signal(
            &agent,
            match signal.kind {
                SignalKind::Commands => Signal::CommandsPending,
                SignalKind::Files => Signal::FilesPending,
                SignalKind::Printers => Signal::PrintersChanged,
                SignalKind::Revoked => Signal::Revoked,
            },
        );
    }
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
        Some(ALPN_ENROLL) => {
            let span = tracing::info_span!("enroll", remote = %connection.remote_address());
            super::enroll::serve(&shared, &connection).instrument(span).await;
        }
        Some(ALPN_SYNC) => {
            let Some(agent) = agent_identity(&connection) else {
                shared.metrics.refused(
                    Source::Quic,
                    "no_client_certificate",
                    &format_args!(
                        "a sync connection from {} without a client certificate",
                        connection.remote_address()
                    ),
                );
                connection.close(
                    close_code::UNAUTHENTICATED.into(),
                    b"a client certificate issued by this hub is required; enroll first",
                );
                return;
            };
            // Every log line of this connection's work carries the agent and its address.
            let span = tracing::info_span!("agent", %agent, remote = %connection.remote_address());
            let result = sync_connection(&shared, &connection, agent.clone(), shutdown)
                .instrument(span.clone())
                .await;
            if let Err(error) = result {
                span.in_scope(|| tracing::warn!(%error, "Agent connection ended."));
            }
        }
        _ => {
            shared.metrics.refused(Source::Quic, "alpn", &connection.remote_address());
            connection.close(close_code::PROTOCOL.into(), b"unknown ALPN protocol");
        }
    }
}

/// The agent named by the verified client certificate's common name.
fn agent_identity(connection: &quinn::Connection) -> Option<AgentId> {
    let chain = connection.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    AgentId::new(cn).ok()
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectionError {
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
    shared: &Arc<Shared>,
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
        shared.metrics.refused(Source::Sync, "revoked", &agent);
        return Ok(());
    }
    let mut reader = FrameReader::new(recv, MAX_PAYLOAD);
    let hello = tokio::time::timeout(shared.config.hello_timeout, reader.next::<AgentMessage>())
        .await
        .map_err(|_| ConnectionError::Protocol("no hello in time".into()))??;
    let AgentMessage::Hello(hello) = hello else {
        return Err(violation(shared, connection, &mut send, "expected a hello").await);
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
        return Err(violation(shared, connection, &mut send, "hello names another agent").await);
    }
    let software = format!("{} ({})", hello.software.version, hello.software.target);
    shared.db.touch_agent(&agent, UnixMillis::now(), &software).await?;
    // Each printer belongs to one agent: a claim on another agent's printer is refused (its
    // records are kept in the ingest log but never shown or used) and listed for admins.
    let mut owned = Vec::new();
    for printer in &hello.printers {
        match shared.db.claim_printer(&agent, printer, UnixMillis::now()).await? {
            Claim::Owned { approved, new } => {
                if new && !approved {
                    tracing::warn!(%agent, printer = %printer.id,
                        "A new printer awaits an admin's approval before it takes commands.");
                }
                owned.push(printer);
            }
            Claim::Refused { owner } => {
                let detail = format_args!(
                    "agent {agent} announced printer {}, which belongs to agent {owner}; an \
                     admin can move it (dashboard: Agents, Printer ownership)",
                    printer.id
                );
                shared.metrics.refused(Source::Sync, "printer_not_owned", &detail);
            }
        }
    }
    shared.db.set_announced(&agent, &owned, UnixMillis::now()).await?;
    shared.cameras.serves(&agent, owned.iter().map(|p| p.id.clone()));
    let cameras: Arc<HashSet<(PrinterId, CameraId)>> = Arc::new(
        owned.iter().flat_map(|p| p.cameras.iter().map(|c| (p.id.clone(), c.clone()))).collect(),
    );
    let printers: Vec<PrinterId> = owned.iter().map(|p| p.id.clone()).collect();
    let watermark = shared.db.watermark(&agent).await?;
    let session_version = proto::PROTOCOL_VERSION.min(hello.protocol_version);
    let welcome = HubWelcome {
        protocol_version: session_version,
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
    let mut transfers = super::files::Transfers::default();
    let frames_task = tokio::spawn(
        accept_live_frames(
            connection.clone(),
            shared.cameras.clone(),
            cameras.clone(),
            shared.metrics.clone(),
        )
        .in_current_span(),
    );
    let mut renew = tokio::time::interval(LIVE_RENEW);
    // Records received and not yet committing, and when the first of them arrived.
    let mut waiting: Vec<proto::Record> = Vec::new();
    let mut waiting_since = std::time::Instant::now();
    // The batch committing now, if any: one at a time (see `ingest`). A task of its own, so
    // it goes on while this loop waits in an arm: a command's delivery or a file's progress
    // may wait on a row the batch's transaction holds, and a commit polled only here would
    // never be polled again. Aborted if the connection ends first, as dropping it was.
    let mut committing: Option<AbortOnDropHandle<Result<ingest::Commit, ConnectionError>>> = None;
    let result = async {
        deliver_commands(shared, &agent, session_version, &mut send, &mut delivered).await?;
        deliver_printers(shared, &agent, session_version, &mut send).await?;
        super::files::offer(shared, &agent, session_version, &mut send, &mut transfers).await?;
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
                        deliver_commands(shared, &agent, session_version, &mut send, &mut delivered).await?;
                    }
                    Some(Signal::FilesPending) => {
                        super::files::offer(shared, &agent, session_version, &mut send, &mut transfers).await?;
                    }
                    Some(Signal::PrintersChanged) => {
                        deliver_printers(shared, &agent, session_version, &mut send).await?;
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
                // Read on while a batch commits, up to one batch ahead.
                message = reader.next::<AgentMessage>(), if waiting.len() < MAX_BATCH_RECORDS => {
                    let message = match message {
                        Ok(message) => message,
                        Err(FrameError::Closed) => return Ok(()),
                        Err(FrameError::Decode(error)) => {
                            return Err(violation(shared, connection, &mut send, &error.to_string()).await);
                        }
                        Err(error) => return Err(error.into()),
                    };
                    if waiting.is_empty() {
                        waiting_since = std::time::Instant::now();
                    }
                    // Take every message already received, so one commit covers them all.
                    let mut others = Vec::new();
                    let mut next = Some(message);
                    while let Some(message) = next {
                        match message {
                            AgentMessage::Records(records) => waiting.extend(records),
                            other => others.push(other),
                        }
                        if waiting.len() >= MAX_BATCH_RECORDS {
                            break;
                        }
                        next = reader.ready::<AgentMessage>()?;
                    }
                    for message in others {
                        let transfers = &mut transfers;
                        handle_other(shared, &agent, session_version, message, &mut send, connection, transfers).await?;
                    }
                }
                committed = async { committing.as_mut().expect("guarded").await }, if committing.is_some() => {
                    committing = None;
                    let committed = committed.map_err(|error| {
                        ConnectionError::Protocol(format!("the batch's commit ended: {error}"))
                    })?;
                    ingest::acknowledge(shared, &agent, &mut session, committed?, &mut send).await?;
                }
            }
            if committing.is_none() && !waiting.is_empty() {
                let fresh = match session.accept(std::mem::take(&mut waiting)) {
                    Ok(fresh) => fresh,
                    Err(error) => return Err(violation(shared, connection, &mut send, &error.to_string()).await),
                };
                if !fresh.is_empty() {
                    let (shared, agent, connection) = (shared.clone(), agent.clone(), connection.clone());
                    let commit = async move {
                        ingest::commit(&shared, &agent, fresh, waiting_since, &connection).await
                    };
                    committing = Some(AbortOnDropHandle::new(tokio::spawn(commit.in_current_span())));
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

async fn handle_other(
    shared: &Shared,
    agent: &AgentId,
    session_version: u16,
    message: AgentMessage,
    send: &mut quinn::SendStream,
    connection: &quinn::Connection,
    transfers: &mut super::files::Transfers,
) -> Result<(), ConnectionError> {
    match message {
        AgentMessage::FileWant(want) => {
            super::files::want(shared, agent, connection, transfers, want).await
        }
        // A transfer's end: the next file, if any waits.
        AgentMessage::FileStored(stored) => {
            super::files::stored(shared, agent, transfers, stored).await?;
            super::files::offer(shared, agent, session_version, send, transfers).await
        }
        AgentMessage::FileRefused(refused) => {
            super::files::refused(shared, agent, transfers, refused).await?;
            super::files::offer(shared, agent, session_version, send, transfers).await
        }
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
                Err(error) => Err(violation(shared, connection, send, &error.to_string()).await),
            }
        }
        // Frames normally come on their own streams; one on the record stream is served too.
        AgentMessage::LiveFrame(frame) => {
            publish_frame(&shared.cameras, frame);
            Ok(())
        }
        AgentMessage::Hello(_) | AgentMessage::Enroll(_) | AgentMessage::Records(_) => {
            Err(violation(shared, connection, send, "unexpected message on a sync stream").await)
        }
    }
}

pub(super) async fn violation(
    shared: &Shared,
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    detail: &str,
) -> ConnectionError {
    shared.metrics.refused(Source::Sync, "protocol", &detail);
    let reason = DisconnectReason::ProtocolViolation { detail: detail.to_owned() };
    let _ = frames::write(send, &HubMessage::Disconnect(reason)).await;
    connection.close(close_code::PROTOCOL.into(), detail.as_bytes());
    ConnectionError::Protocol(detail.to_owned())
}
