//! The async driver of one Moonraker connection: a WebSocket to `/websocket`, the
//! [`Session`] fed with what arrives, its actions carried out, reconnection with jittered
//! backoff, a WebSocket ping so an idle printer (which sends nothing) still shows it is there.
//!
//! With an API key, each connection first asks `GET /access/oneshot_token` (header
//! `X-Api-Key`) and opens the WebSocket with `?token=`; the key also goes in the upgrade's
//! `X-Api-Key` header and in `server.connection.identify`, so Moonrakers that predate
//! one-shot tokens (a 404 there) are served too. A refused key (401/403 anywhere) shows
//! the printer offline with the reason and retries slowly.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use proto::{CommandAction, CommandOutcome, PrinterId, UnixMillis};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

use super::session::{
    Action, Input, MAX_MESSAGE_BYTES, Problem, Session, SessionConfig, Ticket, Webcam,
};
use crate::backoff::Backoff;
use crate::printer::link::{
    CameraUrl, LinkHandle, LinkOutput, LinkProblem, PrinterCamera, next_attempt, report,
};

/// Moonraker's port when the URL names none.
pub const DEFAULT_PORT: u16 = 7125;
const USER_AGENT: &str = concat!("kitt-agent/", env!("CARGO_PKG_VERSION"));

/// Where Moonraker listens: `http://host[:port]`, `ws://host[:port]/websocket`, `host` or
/// `host:port` (port 7125 unless named). `https`/`wss` are refused: Moonraker serves plain
/// HTTP on the LAN, and a TLS front is not something this driver speaks yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoonrakerUrl {
    host: String,
    port: u16,
}

impl MoonrakerUrl {
    pub fn parse(text: &str) -> Result<MoonrakerUrl, String> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some(("http" | "ws", rest)) => rest,
            Some(("https" | "wss", _)) => {
                return Err(format!(
                    "{text}: https/wss is not supported; give Moonraker's plain address, \
                     e.g. http://printer.local:7125"
                ));
            }
            Some((scheme, _)) => return Err(format!("{text}: unknown scheme {scheme:?}")),
            None => text,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(format!("{text}: put the API key in api_key, not in the URL"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            // [v6]:port
            Some(v6) => match v6.split_once(']') {
                Some((host, port)) => (host, port.strip_prefix(':')),
                None => return Err(format!("{text}: unclosed [ in the address")),
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                _ => (authority, None),
            },
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
            return Err(format!("{text}: no host"));
        }
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text}: {port:?} is not a port"))?,
            None => DEFAULT_PORT,
        };
        Ok(MoonrakerUrl { host: host.to_owned(), port })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` with IPv6 brackets, for URLs and the `Host` header.
    pub(crate) fn authority(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    fn websocket(&self, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("ws://{}/websocket?token={token}", self.authority(self.port)),
            None => format!("ws://{}/websocket", self.authority(self.port)),
        }
    }

    /// A webcam URL from `server.webcams.list`: absolute ones as they are; relative ones
    /// against the host's web server (port `web_port`, 80 unless set), which is where
    /// Mainsail and Fluidd resolve them; Moonraker's own port does not serve them.
    pub fn resolve_web(&self, url: &str, web_port: u16) -> String {
        if url.contains("://") {
            return url.to_owned();
        }
        let base = if web_port == 80 {
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
        } else {
            self.authority(web_port)
        };
        format!("http://{base}/{}", url.trim_start_matches('/'))
    }
}

impl std::fmt::Display for MoonrakerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority(self.port))
    }
}

/// Moonraker's API key. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: &str) -> Result<ApiKey, String> {
        let key = key.trim();
        if key.is_empty() || key.len() > 256 || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the API key must be Moonraker's key (Settings > Authorization), \
                        printable characters without spaces"
                .into());
        }
        Ok(ApiKey(key.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub id: PrinterId,
    pub url: MoonrakerUrl,
    pub api_key: Option<ApiKey>,
    /// Where relative webcam URLs resolve (the host's web server).
    pub web_port: u16,
    pub session: SessionConfig,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The delay after a refused key: slow, so a misconfigured agent never hammers Moonraker.
    pub refused_retry: Duration,
    /// A WebSocket ping this often; its pong counts as hearing from Moonraker.
    pub ping_interval: Duration,
    /// Connecting, the one-shot token and the WebSocket upgrade each get this long.
    pub connect_timeout: Duration,
}

impl LinkConfig {
    pub fn new(id: PrinterId, url: MoonrakerUrl, api_key: Option<ApiKey>) -> LinkConfig {
        let session =
            SessionConfig { api_key: api_key.as_ref().map(|k| k.0.clone()), ..Default::default() };
        LinkConfig {
            id,
            url,
            api_key,
            web_port: 80,
            session,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refused_retry: Duration::from_secs(60),
            ping_interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Starts the link in a task. Outputs arrive on the returned receiver.
pub fn spawn(
    config: LinkConfig,
    shutdown: CancellationToken,
) -> (LinkHandle, mpsc::Receiver<LinkOutput>, tokio::task::JoinHandle<()>) {
    let (commands_tx, commands) = mpsc::channel(16);
    let (outputs, outputs_rx) = mpsc::channel(256);
    let session = Session::new(config.session.clone());
    let link = Link {
        config,
        outputs,
        commands,
        replies: Vec::new(),
        next_ticket: 1,
        session,
        key_refused: false,
    };
    let span = tracing::info_span!("printer", id = %link.config.id);
    let task = tokio::spawn(tracing::Instrument::instrument(link.run(shutdown), span));
    (LinkHandle::new(commands_tx), outputs_rx, task)
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

struct Link {
    config: LinkConfig,
    outputs: mpsc::Sender<LinkOutput>,
    commands: mpsc::Receiver<(CommandAction, oneshot::Sender<CommandOutcome>)>,
    replies: Vec<(Ticket, oneshot::Sender<CommandOutcome>)>,
    next_ticket: Ticket,
    session: Session,
    /// Moonraker refused the key on this connection: the next attempt waits long.
    key_refused: bool,
}

enum Ending {
    Shutdown,
    /// Retry after the backoff (`reset`: the connection worked, start the backoff over), or
    /// after `delay` when set.
    Retry {
        delay: Option<Duration>,
        problem: Option<LinkProblem>,
        reset: bool,
    },
}

impl Ending {
    fn failed(problem: LinkProblem) -> Ending {
        Ending::Retry { delay: None, problem: Some(problem), reset: false }
    }
}

impl Link {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            let (delay, problem) = match self.connection(&shutdown).await {
                Ending::Shutdown => return,
                Ending::Retry { delay, problem, reset } => {
                    next_attempt(&mut backoff, delay, problem, reset)
                }
            };
            if !report(&self.outputs, problem).await || !self.wait(delay, &shutdown).await {
                return;
            }
        }
    }

    /// Waits between connections; commands are answered (not connected) meanwhile.
    async fn wait(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return true,
                () = shutdown.cancelled() => return false,
                Some((action, reply)) = self.commands.recv() => {
                    let ticket = self.ticket(reply);
                    if self.act(Input::Submit { ticket, action }, None).await.is_some() {
                        return false;
                    }
                }
            }
        }
    }

    fn ticket(&mut self, reply: oneshot::Sender<CommandOutcome>) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.replies.push((ticket, reply));
        ticket
    }

    async fn connection(&mut self, shutdown: &CancellationToken) -> Ending {
        let timeout = self.config.connect_timeout;
        self.key_refused = false;
        let opened = tokio::select! {
            () = shutdown.cancelled() => return Ending::Shutdown,
            opened = tokio::time::timeout(timeout, self.open()) => opened,
        };
        let mut socket = match opened {
            Ok(Ok(socket)) => socket,
            Ok(Err(ending)) => return ending,
            Err(_) => {
                return Ending::failed(LinkProblem::Connection {
                    detail: format!("{} did not answer within {timeout:?}", self.config.url),
                    retry_ms: 0,
                });
            }
        };
        tracing::info!(url = %self.config.url, "Connected to Moonraker.");
        if let Some(ending) = self.act(Input::Connected, Some(&mut socket)).await {
            return ending;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.reset();
        loop {
            let input = tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = socket.close(None).await;
                    return Ending::Shutdown;
                }
                _ = tick.tick() => Incoming::Tick,
                _ = ping.tick() => {
                    if let Err(error) = socket.send(Message::Ping(Bytes::new())).await {
                        Incoming::Closed(format!("cannot send a ping: {error}"))
                    } else {
                        continue;
                    }
                }
                Some((action, reply)) = self.commands.recv() => {
                    let ticket = self.ticket(reply);
                    Incoming::Submit(ticket, action)
                }
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => Incoming::Text(text),
                    Some(Ok(Message::Pong(_) | Message::Ping(_))) => Incoming::Alive,
                    Some(Ok(Message::Binary(bytes))) => Incoming::Garbage(format!(
                        "a binary frame of {} bytes (Moonraker speaks JSON text)", bytes.len()
                    )),
                    Some(Ok(Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => Incoming::Closed(match frame {
                        Some(frame) => format!("Moonraker closed the connection ({}: {})", frame.code, frame.reason),
                        None => "Moonraker closed the connection".into(),
                    }),
                    Some(Err(tungstenite::Error::Capacity(error))) => Incoming::Oversized(error.to_string()),
                    Some(Err(error)) => Incoming::Closed(error.to_string()),
                    None => Incoming::Closed("the connection ended".into()),
                }
            };
            let input = match &input {
                Incoming::Tick => Input::Tick,
                Incoming::Alive => Input::Alive,
                Incoming::Text(text) => Input::Text(text.as_str()),
                Incoming::Submit(ticket, action) => {
                    Input::Submit { ticket: *ticket, action: action.clone() }
                }
                Incoming::Garbage(detail) => {
                    self.count_bad(detail.clone()).await;
                    continue;
                }
                Incoming::Oversized(detail) => {
                    // The socket cannot go on after a frame it refused to read.
                    let detail = format!("a message too large to read ({detail})");
                    self.count_bad(detail.clone()).await;
                    return self.lost(detail).await;
                }
                Incoming::Closed(reason) => return self.lost(reason.clone()).await,
            };
            if let Some(ending) = self.act(input, Some(&mut socket)).await {
                let _ = socket.close(None).await;
                return ending;
            }
        }
    }

    /// The connection is gone: the session hears it, the link retries after the backoff.
    async fn lost(&mut self, reason: String) -> Ending {
        tracing::warn!(%reason, "Lost the connection to Moonraker.");
        if self.act(Input::Disconnected { reason: reason.clone() }, None).await.is_some() {
            return Ending::Shutdown;
        }
        Ending::failed(LinkProblem::Connection { detail: reason, retry_ms: 0 })
    }

    async fn count_bad(&mut self, detail: String) {
        tracing::warn!(%detail, "Ignored a malformed message from Moonraker.");
        let _ = self.outputs.send(LinkOutput::Problem(LinkProblem::BadReport(detail))).await;
    }

    /// TCP, the one-shot token when a key is set, the WebSocket upgrade.
    async fn open(&self) -> Result<Socket, Ending> {
        let url = &self.config.url;
        let token = match &self.config.api_key {
            Some(key) => match oneshot_token(url, key).await {
                Ok(token) => token,
                Err(TokenError::Refused(detail)) => return Err(self.refused(detail)),
                Err(TokenError::Failed(detail)) => {
                    return Err(Ending::failed(LinkProblem::Connection { detail, retry_ms: 0 }));
                }
            },
            None => None,
        };
        let tcp = TcpStream::connect((url.host(), url.port())).await.map_err(|error| {
            Ending::failed(LinkProblem::Connection {
                detail: format!("cannot connect to {url}: {error}"),
                retry_ms: 0,
            })
        })?;
        let _ = tcp.set_nodelay(true);
        let mut request = url.websocket(token.as_deref()).into_client_request().map_err(|e| {
            Ending::failed(LinkProblem::Connection {
                detail: format!("cannot build the WebSocket request: {e}"),
                retry_ms: 0,
            })
        })?;
        request.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if let Some(key) = &self.config.api_key
            && let Ok(mut value) = HeaderValue::from_str(key.expose())
        {
            value.set_sensitive(true);
            request.headers_mut().insert("x-api-key", value);
        }
        // Room above the session's limit, so an oversized message reaches the session and
        // is refused there while the connection stays; only far beyond does the socket give up.
        let limits = WebSocketConfig::default()
            .max_message_size(Some(4 * MAX_MESSAGE_BYTES))
            .max_frame_size(Some(4 * MAX_MESSAGE_BYTES));
        match tokio_tungstenite::client_async_with_config(request, tcp, Some(limits)).await {
            Ok((socket, _response)) => Ok(socket),
            Err(tungstenite::Error::Http(response))
                if matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) =>
            {
                Err(self.refused(format!("the WebSocket upgrade answered {}", response.status())))
            }
            Err(error) => Err(Ending::failed(LinkProblem::Connection {
                detail: format!("WebSocket to {url}: {error}"),
                retry_ms: 0,
            })),
        }
    }

    fn refused(&self, detail: String) -> Ending {
        Ending::Retry {
            delay: Some(self.config.refused_retry),
            problem: Some(LinkProblem::KeyRefused {
                detail,
                retry_s: self.config.refused_retry.as_secs(),
            }),
            reset: false,
        }
    }

    /// Feeds the session and carries out its actions; `Some` ends the connection.
    async fn act(&mut self, input: Input<'_>, mut socket: Option<&mut Socket>) -> Option<Ending> {
        let actions = self.session.handle(Instant::now().into_std(), UnixMillis::now(), input);
        let mut ending = None;
        let mut why = String::new();
        for action in actions {
            match action {
                Action::Send(text) => {
                    if let Some(socket) = socket.as_deref_mut()
                        && let Err(error) = socket.send(Message::text(text)).await
                    {
                        tracing::warn!(%error, "Cannot send to Moonraker.");
                    }
                }
                Action::Reconnect { reason } => {
                    if ending.is_none() {
                        tracing::warn!(%reason, "Reconnecting to Moonraker.");
                        why = reason;
                        ending = Some(if self.key_refused {
                            Ending::Retry {
                                delay: Some(self.config.refused_retry),
                                problem: None,
                                reset: false,
                            }
                        } else {
                            Ending::Retry { delay: None, problem: None, reset: true }
                        });
                    }
                }
                other => {
                    if !self.emit(other).await {
                        return Some(Ending::Shutdown);
                    }
                }
            }
        }
        if let Some(ending) = &ending
            && socket.is_some()
        {
            // The session must hear that this connection is over, and why, before the next.
            let reason = match ending {
                Ending::Retry { .. } => why,
                Ending::Shutdown => "stopping".to_owned(),
            };
            let actions = self.session.handle(
                Instant::now().into_std(),
                UnixMillis::now(),
                Input::Disconnected { reason },
            );
            for action in actions {
                if !matches!(action, Action::Send(_) | Action::Reconnect { .. })
                    && !self.emit(action).await
                {
                    return Some(Ending::Shutdown);
                }
            }
        }
        ending
    }

    /// Passes an action on to the link's user; false when nobody listens any more.
    async fn emit(&mut self, action: Action) -> bool {
        let output = match action {
            Action::State(state) => LinkOutput::State(state),
            Action::Event(kind) => LinkOutput::Event { at: UnixMillis::now(), kind },
            Action::CommandDone { ticket, outcome } => {
                if let Some(index) = self.replies.iter().position(|(t, _)| *t == ticket) {
                    let (_, reply) = self.replies.swap_remove(index);
                    let _ = reply.send(outcome);
                }
                return true;
            }
            Action::Problem(problem) => {
                tracing::warn!(%problem, "Moonraker problem.");
                LinkOutput::Problem(match problem {
                    Problem::KeyRefused(detail) => {
                        self.key_refused = true;
                        LinkProblem::KeyRefused {
                            detail,
                            retry_s: self.config.refused_retry.as_secs(),
                        }
                    }
                    Problem::BadMessage(detail) => LinkProblem::BadReport(detail),
                    Problem::RequestFailed { .. } => LinkProblem::Connection {
                        detail: problem.to_string(),
                        retry_ms: self.config.backoff_min.as_millis() as u64,
                    },
                })
            }
            Action::Webcams(webcams) => LinkOutput::Cameras(self.cameras(&webcams)),
            Action::Send(_) | Action::Reconnect { .. } => return true,
        };
        self.outputs.send(output).await.is_ok()
    }

    fn cameras(&self, webcams: &[Webcam]) -> Vec<PrinterCamera> {
        let resolve = |url: &str| self.config.url.resolve_web(url, self.config.web_port);
        webcams
            .iter()
            .filter_map(|webcam| {
                let url = match (&webcam.stream_url, &webcam.snapshot_url) {
                    (Some(stream), _) => CameraUrl::Mjpeg(resolve(stream)),
                    (None, Some(snapshot)) => CameraUrl::Snapshot(resolve(snapshot)),
                    (None, None) => return None,
                };
                Some(PrinterCamera { name: webcam.name.clone(), url })
            })
            .collect()
    }
}

/// What the connection loop got, owned, so the session can borrow the text.
enum Incoming {
    Tick,
    Alive,
    Text(tungstenite::Utf8Bytes),
    Submit(Ticket, CommandAction),
    Garbage(String),
    Oversized(String),
    Closed(String),
}

enum TokenError {
    Refused(String),
    Failed(String),
}

/// `GET /access/oneshot_token` with the key: the token, `None` when this Moonraker has no
/// such endpoint (404), or why the connection cannot go on.
async fn oneshot_token(url: &MoonrakerUrl, key: &ApiKey) -> Result<Option<String>, TokenError> {
    let failed = TokenError::Failed;
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|error| failed(format!("cannot connect to {url}: {error}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|error| failed(format!("HTTP to {url}: {error}")))?;
    let driver = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(connection));
    let mut key_header = HeaderValue::from_str(key.expose())
        .map_err(|_| failed("the API key is not valid in a header".into()))?;
    key_header.set_sensitive(true);
    let request = Request::get("/access/oneshot_token")
        .header(header::HOST, url.authority(url.port()))
        .header(header::USER_AGENT, USER_AGENT)
        .header("x-api-key", key_header)
        .body(Empty::<Bytes>::new())
        .map_err(|error| failed(format!("cannot build the token request: {error}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| failed(format!("no answer to the token request: {error}")))?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(TokenError::Refused(format!("GET /access/oneshot_token answered {status}")));
    }
    if status != StatusCode::OK {
        return Err(failed(format!("GET /access/oneshot_token answered {status}")));
    }
    let body = Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|error| failed(format!("reading the token failed: {error}")))?
        .to_bytes();
    drop(driver);
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("result").and_then(Value::as_str).map(str::to_owned))
        .filter(|t| {
            !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .ok_or_else(|| failed("the token answer is not {\"result\": \"<token>\"}".into()))?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moonraker_addresses_are_read_as_people_write_them() {
        for (text, host, port) in [
            ("http://voron.local:7125", "voron.local", 7125),
            ("http://voron.local", "voron.local", 7125),
            ("ws://10.0.0.7:7126/websocket", "10.0.0.7", 7126),
            ("10.0.0.7", "10.0.0.7", 7125),
            ("10.0.0.7:80/", "10.0.0.7", 80),
            ("http://[fd00::7]:7125/", "fd00::7", 7125),
            ("fd00::7", "fd00::7", 7125),
        ] {
            let url = MoonrakerUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((url.host(), url.port()), (host, port), "{text}");
        }
        for bad in ["https://voron:7125", "http://", "ftp://x", "x:0", "x:port", "http://u:p@x"] {
            assert!(MoonrakerUrl::parse(bad).is_err(), "{bad}");
        }
        let url = MoonrakerUrl::parse("http://voron.local:7125").unwrap();
        assert_eq!(url.websocket(Some("abc")), "ws://voron.local:7125/websocket?token=abc");
        assert_eq!(
            url.resolve_web("/webcam/?action=stream", 80),
            "http://voron.local/webcam/?action=stream"
        );
        assert_eq!(
            url.resolve_web("webcam/?action=snapshot", 8080),
            "http://voron.local:8080/webcam/?action=snapshot"
        );
        assert_eq!(url.resolve_web("http://cam:8081/stream", 80), "http://cam:8081/stream");
        assert_eq!(
            MoonrakerUrl::parse("[fd00::7]:7125").unwrap().resolve_web("/w", 80),
            "http://[fd00::7]/w"
        );
    }

    #[test]
    fn a_key_never_shows() {
        let key = ApiKey::new(" 0123456789abcdef ").unwrap();
        assert_eq!(key.expose(), "0123456789abcdef");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!(ApiKey::new("has space").is_err());
        assert!(ApiKey::new("").is_err());
    }
}
