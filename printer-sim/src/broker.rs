//! A minimal MQTT 3.1.1 broker over TLS, shaped like the one inside a Bambu printer.
//!
//! - TLS 1.2 and 1.3 (rustls, ring); the certificate comes from a swappable resolver so the
//!   leaf can be rotated while running.
//! - CONNECT must carry username `bblp` and the access code as password, else CONNACK return
//!   code 5 (not authorized) and the connection closes.
//! - SUBSCRIBE: every filter is granted QoS 0. On P1/A1, a filter that matches
//!   `device/<serial>/request` drops the connection (as the real firmware does). On X1,
//!   requests are forwarded to such subscribers.
//! - PUBLISH on `device/<serial>/request`, QoS 0/1/2, is parsed as JSON and handed to the
//!   printer; invalid JSON is logged and ignored. Other topics are ignored.
//! - Everything the printer publishes goes out QoS 0 to each client whose filters match.
//! - Keep-alive: a client silent for 1.5 × its keep-alive is disconnected.
//! - A malformed or oversized packet closes that client only. Framing uses rumqttc's v4
//!   codec. No sessions survive a disconnect; no retained messages; no wills.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{AccessCode, Family};
use crate::events::SimEvent;

/// MQTT username a Bambu printer accepts.
pub const USERNAME: &str = "bblp";
/// Largest packet a client may send (requests are a few KiB at most).
const MAX_INCOMING_PACKET: usize = 128 * 1024;
/// Largest packet the broker sends (a full report is a few KiB; replays may be larger).
const MAX_OUTGOING_PACKET: usize = 4 * 1024 * 1024;
/// Time allowed for the TLS handshake and for CONNECT.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a TLS close_notify on the way out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A request on its way from a client to the printer.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) request: Value,
}

/// What every session shares.
#[derive(Debug)]
pub(crate) struct BrokerShared {
    pub(crate) access_code: AccessCode,
    pub(crate) family: Family,
    pub(crate) report_topic: String,
    pub(crate) request_topic: String,
    /// Clients currently subscribed to the report topic.
    pub(crate) report_subscribers: Arc<AtomicUsize>,
    /// Messages to deliver to matching subscribers.
    pub(crate) outbound: broadcast::Sender<Publish>,
    /// Requests for the printer.
    pub(crate) inbound: mpsc::Sender<Inbound>,
    pub(crate) events: broadcast::Sender<SimEvent>,
    /// Bumped to close every connection at once.
    pub(crate) generation: watch::Receiver<u64>,
}

/// Accepts connections until `shutdown`, one task per client.
pub(crate) async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<BrokerShared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let session =
                    session(tcp, peer, acceptor.clone(), shared.clone(), shutdown.clone());
                tracker.spawn(session.instrument(info_span!("mqtt_client", %peer)));
            }
            Err(error) => {
                warn!(%error, "Accept failed.");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the current leaf certificate; [`CertResolver::set`] swaps it for new handshakes.
#[derive(Debug)]
pub(crate) struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub(crate) fn new(key: CertifiedKey) -> CertResolver {
        CertResolver { current: RwLock::new(Arc::new(key)) }
    }

    pub(crate) fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Protocol(#[from] mqttbytes::Error),
    #[error("connection closed in the middle of a packet")]
    Truncated,
    #[error("timed out")]
    Timeout,
    #[error("unexpected {0}")]
    Unexpected(&'static str),
}

async fn session(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<BrokerShared>,
    shutdown: CancellationToken,
) {
    let mut generation = shared.generation.clone();
    generation.mark_unchanged();
    let tls = match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            info!(%error, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            info!("TLS handshake timed out.");
            return;
        }
    };
    let mut connection = Connection::new(tls);
    let mut client = Client {
        id: String::new(),
        subscriptions: Vec::new(),
        report_subscribers: shared.report_subscribers.clone(),
        counted: false,
    };
    let reason = tokio::select! {
        () = shutdown.cancelled() => "simulator shutting down".to_owned(),
        _ = generation.changed() => {
            // Drop the stream without close_notify: like a printer losing its network.
            emit(&shared, SimEvent::ClientDisconnected {
                client_id: client.id.clone(),
                reason: "connections dropped".into(),
            });
            return;
        }
        end = serve(&mut connection, &mut client, peer, &shared) => match end {
            Ok(reason) => reason,
            Err(error) => {
                info!(client_id = %client.id, %error, "Closing client connection.");
                error.to_string()
            }
        },
    };
    let _ = timeout(CLOSE_TIMEOUT, connection.stream.shutdown()).await;
    debug!(client_id = %client.id, %reason, "Client disconnected.");
    emit(&shared, SimEvent::ClientDisconnected { client_id: client.id.clone(), reason });
}

struct Client {
    id: String,
    subscriptions: Vec<String>,
    report_subscribers: Arc<AtomicUsize>,
    /// Whether this client is counted in `report_subscribers`.
    counted: bool,
}

impl Client {
    /// Keeps `report_subscribers` in step with this client's filters.
    fn recount(&mut self, report_topic: &str) {
        let subscribed =
            self.subscriptions.iter().any(|filter| topic_matches(filter, report_topic));
        match (subscribed, self.counted) {
            (true, false) => {
                self.report_subscribers.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.report_subscribers.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.counted = subscribed;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.counted {
            self.report_subscribers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Runs one client's MQTT session; returns why it ended normally.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    client: &mut Client,
    peer: SocketAddr,
    shared: &BrokerShared,
) -> Result<String, SessionError> {
    let connect = match timeout(HANDSHAKE_TIMEOUT, connection.read_packet()).await {
        Err(_) => return Err(SessionError::Timeout),
        Ok(Ok(Some(Packet::Connect(connect)))) => connect,
        Ok(Ok(Some(_))) => return Err(SessionError::Unexpected("packet before CONNECT")),
        Ok(Ok(None)) => return Ok("closed before CONNECT".into()),
        Ok(Err(error)) => return Err(error),
    };
    client.id.clone_from(&connect.client_id);
    let authorized = connect.login.as_ref().is_some_and(|login| {
        login.username == USERNAME && login.password == shared.access_code.as_str()
    });
    if !authorized {
        info!(client_id = %client.id, "Refusing CONNECT: wrong username or access code.");
        connection
            .write_packet(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false)))
            .await?;
        emit(shared, SimEvent::ConnectRefused { client_id: client.id.clone(), peer });
        return Ok("not authorized".into());
    }
    connection
        .write_packet(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))
        .await?;
    info!(client_id = %client.id, keep_alive = connect.keep_alive, "Client connected.");
    emit(shared, SimEvent::ClientConnected { client_id: client.id.clone(), peer });

    let mut outbound = shared.outbound.subscribe();
    let keep_alive = Duration::from_secs(u64::from(connect.keep_alive)) * 3 / 2;
    let mut deadline = Instant::now() + keep_alive;
    loop {
        tokio::select! {
            packet = connection.read_packet() => {
                let Some(packet) = packet? else { return Ok("client closed the connection".into()) };
                deadline = Instant::now() + keep_alive;
                if let Some(reason) = handle_packet(connection, client, shared, packet).await? {
                    return Ok(reason);
                }
            }
            message = outbound.recv() => match message {
                Ok(publish) => {
                    if client.subscriptions.iter().any(|filter| topic_matches(filter, &publish.topic)) {
                        connection.write_packet(&Packet::Publish(publish)).await?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    warn!(client_id = %client.id, skipped, "Slow client; dropped QoS 0 messages.");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok("simulator stopped".into()),
            },
            () = sleep_until(deadline), if !keep_alive.is_zero() => {
                return Ok("keep-alive timeout".into());
            }
        }
    }
}

/// Handles one packet from a connected client; `Some(reason)` ends the session.
async fn handle_packet<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    client: &mut Client,
    shared: &BrokerShared,
    packet: Packet,
) -> Result<Option<String>, SessionError> {
    match packet {
        Packet::Publish(publish) => {
            let pkid = publish.pkid;
            let qos = publish.qos;
            handle_publish(client, shared, publish).await;
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    connection.write_packet(&Packet::PubAck(PubAck::new(pkid))).await?
                }
                QoS::ExactlyOnce => {
                    connection.write_packet(&Packet::PubRec(PubRec::new(pkid))).await?
                }
            }
        }
        Packet::PubRel(pubrel) => {
            connection.write_packet(&Packet::PubComp(PubComp::new(pubrel.pkid))).await?;
        }
        Packet::Subscribe(subscribe) => {
            let mut return_codes = Vec::with_capacity(subscribe.filters.len());
            for filter in subscribe.filters {
                if !valid_filter(&filter.path) {
                    return_codes.push(SubscribeReasonCode::Failure);
                    continue;
                }
                if shared.family != Family::X1 && topic_matches(&filter.path, &shared.request_topic)
                {
                    info!(client_id = %client.id, filter = %filter.path, "Subscription to the request topic; dropping the client like P1/A1 firmware.");
                    return Ok(Some("subscribed to the request topic".into()));
                }
                emit(
                    shared,
                    SimEvent::Subscribed {
                        client_id: client.id.clone(),
                        filter: filter.path.clone(),
                    },
                );
                if !client.subscriptions.contains(&filter.path) {
                    client.subscriptions.push(filter.path);
                }
                return_codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
            }
            client.recount(&shared.report_topic);
            connection
                .write_packet(&Packet::SubAck(SubAck::new(subscribe.pkid, return_codes)))
                .await?;
        }
        Packet::Unsubscribe(unsubscribe) => {
            client.subscriptions.retain(|filter| !unsubscribe.topics.contains(filter));
            client.recount(&shared.report_topic);
            connection.write_packet(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await?;
        }
        Packet::PingReq => connection.write_packet(&Packet::PingResp).await?,
        Packet::Disconnect => return Ok(Some("client sent DISCONNECT".into())),
        // Acknowledgements of QoS > 0 deliveries: the broker only sends QoS 0.
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
        Packet::Connect(_) => return Err(SessionError::Unexpected("second CONNECT")),
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
            return Err(SessionError::Unexpected("server-to-client packet from a client"));
        }
    }
    Ok(None)
}

async fn handle_publish(client: &Client, shared: &BrokerShared, publish: Publish) {
    if publish.topic != shared.request_topic {
        info!(client_id = %client.id, topic = %publish.topic, "Ignoring a publish outside the request topic.");
        emit(
            shared,
            SimEvent::RequestIgnored {
                client_id: client.id.clone(),
                topic: publish.topic,
                reason: "not the request topic".into(),
            },
        );
        return;
    }
    let request = match serde_json::from_slice::<Value>(&publish.payload) {
        Ok(request) => request,
        Err(error) => {
            // The real printer ignores what it cannot parse.
            warn!(client_id = %client.id, %error, "Ignoring a request that is not JSON.");
            emit(
                shared,
                SimEvent::RequestIgnored {
                    client_id: client.id.clone(),
                    topic: publish.topic,
                    reason: format!("invalid JSON: {error}"),
                },
            );
            return;
        }
    };
    if shared.family == Family::X1 {
        // X1 brokers let clients watch the request topic.
        let _ = shared.outbound.send(Publish::new(
            &shared.request_topic,
            QoS::AtMostOnce,
            publish.payload.to_vec(),
        ));
    }
    emit(
        shared,
        SimEvent::RequestReceived { client_id: client.id.clone(), request: request.clone() },
    );
    if shared.inbound.send(Inbound { request }).await.is_err() {
        debug!("Printer task gone; dropping a request.");
    }
}

fn emit(shared: &BrokerShared, event: SimEvent) {
    // No receivers is fine: nobody is watching.
    let _ = shared.events.send(event);
}

/// A TLS stream with MQTT framing.
struct Connection<S> {
    stream: S,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            read_buffer: BytesMut::with_capacity(4096),
            write_buffer: BytesMut::new(),
        }
    }

    /// The next packet; `None` on a clean end of stream. Cancel-safe: partial reads stay in
    /// the buffer.
    async fn read_packet(&mut self) -> Result<Option<Packet>, SessionError> {
        loop {
            match Packet::read(&mut self.read_buffer, MAX_INCOMING_PACKET) {
                Ok(packet) => return Ok(Some(packet)),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(error) => return Err(error.into()),
            }
            self.read_buffer.reserve(4096);
            if self.stream.read_buf(&mut self.read_buffer).await? == 0 {
                return if self.read_buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(SessionError::Truncated)
                };
            }
        }
    }

    async fn write_packet(&mut self, packet: &Packet) -> Result<(), SessionError> {
        self.write_buffer.clear();
        packet.write(&mut self.write_buffer, MAX_OUTGOING_PACKET)?;
        self.stream.write_all(&self.write_buffer).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

/// Whether an MQTT topic filter (`+`, `#` wildcards) matches a topic.
pub(crate) fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(expected), Some(actual)) if expected == actual => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a topic filter is well formed: wildcards take a whole level, `#` only the last.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(index, level)| match *level {
        "#" => index + 1 == levels.len(),
        "+" => true,
        other => !other.contains(['#', '+']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_mqtt() {
        assert!(topic_matches("device/S1/report", "device/S1/report"));
        assert!(topic_matches("device/+/report", "device/S1/report"));
        assert!(topic_matches("device/#", "device/S1/request"));
        assert!(topic_matches("#", "device/S1/report"));
        assert!(!topic_matches("device/+/report", "device/S1/request"));
        assert!(!topic_matches("device/S2/report", "device/S1/report"));
        assert!(!topic_matches("device/S1", "device/S1/report"));
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(valid_filter("device/+/report"));
        assert!(valid_filter("#"));
        assert!(!valid_filter("device/#/report"));
        assert!(!valid_filter("device/a+/report"));
        assert!(!valid_filter(""));
    }
}
