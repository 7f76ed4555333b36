//! The simulated Moonraker's sockets: HTTP and the WebSocket JSON-RPC on one port (7125 on
//! a real host), and a web server on another (port 80 on a real host, where nginx serves
//! Mainsail and the webcam) for the webcam's MJPEG stream and snapshots.
//!
//! Moonraker's behaviour kept here (`docs/printer-protocols.md` §6): JSON-RPC 2.0 over the
//! WebSocket; `notify_status_update` params `[{object: {changed fields}}, eventtime]` at most
//! every [`MoonrakerConfig::update_interval`] and only on change, nested objects partial;
//! a new subscription replaces the connection's earlier one, and every subscription is
//! dropped when Klippy disconnects; `notify_proc_stat_update` about once a second; HTTP
//! answers wrapped in `{"result": …}` except the upload's 201 with a bare object; errors as
//! `{"error": {"code", "message"}}`; with an API key, HTTP needs `X-Api-Key` or a one-shot
//! `?token=`, and a WebSocket opened without either is served only after
//! `server.connection.identify` names the key (everything else answers 401 until then).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::klipper::{
    JobState, KLIPPER_VERSION, Klipper, KlipperSettings, MAX_FILE_BYTES, MOONRAKER_VERSION,
    RpcError, diff,
};
use crate::camera::frame::{self, PrinterView, Scene};
use crate::config::CameraSize;
use crate::printer::GcodeState;

/// The simulated Moonraker's settings.
#[derive(Debug, Clone)]
pub struct MoonrakerConfig {
    /// Moonraker's address (HTTP and WebSocket).
    pub bind: SocketAddr,
    /// The host's web server, serving the webcam at `/webcam/`; `None`: no webcam.
    pub web_bind: Option<SocketAddr>,
    /// Require this API key.
    pub api_key: Option<String>,
    pub klipper: KlipperSettings,
    /// One step of the job engine (a layer).
    pub step_interval: Duration,
    /// The shortest time between two status updates on a connection (Moonraker: 250 ms).
    pub update_interval: Duration,
    /// Start this file at once.
    pub autostart: Option<String>,
    /// The printer's name, shown on its camera.
    pub name: String,
    pub camera_interval: Duration,
    pub camera_size: CameraSize,
    /// Answer mDNS queries for `_moonraker._tcp.local` and announce the service, as
    /// Moonraker's `[zeroconf]` component does (off by default: tests share the host).
    pub zeroconf: bool,
}

impl MoonrakerConfig {
    pub fn new(name: &str) -> MoonrakerConfig {
        MoonrakerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            web_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            api_key: None,
            klipper: KlipperSettings::default(),
            step_interval: Duration::from_secs(1),
            update_interval: Duration::from_millis(250),
            autostart: None,
            name: name.to_owned(),
            camera_interval: Duration::from_secs(1),
            camera_size: CameraSize::new(640, 480).unwrap_or(crate::config::DEFAULT_CAMERA_SIZE),
            zeroconf: false,
        }
    }
}

struct Shared {
    klipper: Mutex<Klipper>,
    api_key: Option<String>,
    /// One-shot tokens and when they were issued (valid 5 s, once).
    tokens: Mutex<HashMap<String, Instant>>,
    notices: broadcast::Sender<Value>,
    /// Fired to drop every connection at once, without a close frame.
    drop_all: Notify,
    /// Moonraker hangs: connections neither read nor write (no pong either) while true.
    silent: watch::Sender<bool>,
    frames: watch::Sender<Option<Bytes>>,
    web: bool,
    update_interval: Duration,
    connections: AtomicU64,
    next_connection: AtomicU64,
    /// Every upload, by path: its size and MD5.
    uploads: Mutex<BTreeMap<String, crate::ftps::StoredFile>>,
}

impl Shared {
    fn klipper(&self) -> MutexGuard<'_, Klipper> {
        self.klipper.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, notices: Vec<super::klipper::Notice>) {
        for notice in notices {
            let _ = self.notices.send(notice.to_json());
        }
    }

    /// Whether a request with these headers and query is authorised over HTTP (a one-shot
    /// token is used up).
    fn http_authorised(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Some(key) = &self.api_key else { return true };
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(key.as_str()) {
            return true;
        }
        query.and_then(|q| param(q, "token")).is_some_and(|token| self.take_token(&token))
    }

    fn take_token(&self, token: &str) -> bool {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, issued| issued.elapsed() < Duration::from_secs(5));
        tokens.remove(token).is_some()
    }
}

/// A running simulated Moonraker.
pub struct MoonrakerHandle {
    addr: SocketAddr,
    web_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for MoonrakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoonrakerHandle")
            .field("addr", &self.addr)
            .field("web_addr", &self.web_addr)
            .finish_non_exhaustive()
    }
}

impl MoonrakerHandle {
    /// Moonraker's address: `http://{addr}`, `ws://{addr}/websocket`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The files uploaded (`POST /server/files/upload`), by path, with sizes and MD5s.
    pub fn uploads(&self) -> BTreeMap<String, crate::ftps::StoredFile> {
        self.shared.uploads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The web server's address, where `/webcam/` is served.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// WebSocket connections open now.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Drops every WebSocket connection at once, as a crashed Moonraker or a lost network
    /// would: no close frame.
    pub fn drop_connections(&self) {
        self.shared.drop_all.notify_waiters();
    }

    /// Hangs Moonraker (`true`): its connections stay open but read and send nothing, not
    /// even a pong, as a wedged Moonraker process does; `false` wakes it.
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.send_replace(silent);
    }

    /// Runs `f` on the simulated Klipper (to look, or to change it as a person at the
    /// printer would); what it returns for every connection is published.
    pub fn with_klipper<T>(&self, f: impl FnOnce(&mut Klipper) -> T) -> T {
        f(&mut self.shared.klipper())
    }

    /// Starts printing `file` as `printer.print.start` would (for tests that start a job once
    /// their client watches), telling every connection.
    pub fn start_print(&self, file: &str) -> Result<(), RpcError> {
        let notices = self.shared.klipper().start(file)?;
        self.shared.publish(notices);
        Ok(())
    }

    /// Stops serving and waits for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts the simulated Moonraker.
pub async fn start(config: MoonrakerConfig) -> std::io::Result<MoonrakerHandle> {
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let web_listener = match config.web_bind {
        Some(bind) => Some(TcpListener::bind(bind).await?),
        None => None,
    };
    let web_addr = web_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let mut klipper = Klipper::new(config.klipper.clone());
    if let Some(file) = &config.autostart {
        let file = klipper.add_file(file).map_err(std::io::Error::other)?;
        klipper.start(&file).map_err(std::io::Error::other)?;
    }
    let (notices, _) = broadcast::channel(256);
    let (frames, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        klipper: Mutex::new(klipper),
        api_key: config.api_key.clone(),
        tokens: Mutex::new(HashMap::new()),
        notices,
        drop_all: Notify::new(),
        silent: watch::channel(false).0,
        frames,
        web: web_addr.is_some(),
        update_interval: config.update_interval,
        connections: AtomicU64::new(0),
        next_connection: AtomicU64::new(1),
        uploads: Mutex::default(),
    });
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(clock(shared.clone(), config.step_interval, shutdown.clone()));
    if config.zeroconf {
        let host: String =
            config
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' }
                })
                .collect();
        let uuid = format!("{:08x}", crc_of(&config.name) ^ u32::from(addr.port()));
        let service = crate::announce::MdnsService {
            instance: format!("Moonraker-{uuid} @ {host}"),
            host,
            address: crate::announce::announced_address(addr),
            port: addr.port(),
            uuid,
            version: MOONRAKER_VERSION.to_owned(),
        };
        tasks.spawn(crate::announce::mdns_responder(service, shutdown.clone()));
    }
    let app = Router::new()
        .route("/websocket", any(websocket))
        .route("/access/oneshot_token", get(oneshot_token))
        .route("/server/info", get(http_rpc))
        .route("/printer/info", get(http_rpc))
        .route("/printer/objects/list", get(http_rpc))
        .route("/printer/objects/query", get(http_rpc))
        .route("/server/webcams/list", get(http_rpc))
        .route("/server/history/list", get(http_rpc))
        .route("/server/files/list", get(http_rpc))
        .route("/printer/print/start", post(http_rpc))
        .route("/printer/print/pause", post(http_rpc))
        .route("/printer/print/resume", post(http_rpc))
        .route("/printer/print/cancel", post(http_rpc))
        .route("/printer/emergency_stop", post(http_rpc))
        .route("/printer/firmware_restart", post(http_rpc))
        .route("/printer/gcode/script", post(http_rpc))
        .route("/server/files/upload", post(upload))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FILE_BYTES + 64 * 1024))
        .with_state(shared.clone());
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
    });
    if let Some(web_listener) = web_listener {
        tasks.spawn(camera(shared.clone(), config.clone(), shutdown.clone()));
        let web = Router::new().route("/webcam/", get(webcam)).with_state(shared.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let _ =
                axum::serve(web_listener, web).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
    }
    Ok(MoonrakerHandle { addr, web_addr, shared, shutdown, tasks })
}

/// A stable number for a name (the instance id a real Moonraker keeps in its database).
fn crc_of(name: &str) -> u32 {
    name.bytes()
        .fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// Steps the job engine and publishes what happened.
async fn clock(shared: Arc<Shared>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let notices = shared.klipper().step();
                shared.publish(notices);
            }
        }
    }
}

/// Renders the webcam's frames while anyone watches (and one to start with).
async fn camera(shared: Arc<Shared>, config: MoonrakerConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.camera_interval);
    let mut frame_number = 0u64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if frame_number > 0 && shared.frames.receiver_count() == 0 {
            continue;
        }
        frame_number += 1;
        let (state, layer, total_layers, percent, job_name) = shared.klipper().view();
        let scene = Scene {
            heading: format!("Klipper  {}", config.name),
            printer: PrinterView {
                gcode_state: match state {
                    JobState::Standby => GcodeState::Idle,
                    JobState::Printing => GcodeState::Running,
                    JobState::Paused => GcodeState::Pause,
                    JobState::Complete => GcodeState::Finish,
                    JobState::Cancelled | JobState::Error => GcodeState::Failed,
                },
                layer,
                total_layers,
                percent,
                job_name,
            },
            frame_number,
            now: SystemTime::now(),
        };
        let size = config.camera_size;
        if let Ok(Ok(jpeg)) = tokio::task::spawn_blocking(move || frame::render(&scene, size)).await
        {
            shared.frames.send_replace(Some(Bytes::from(jpeg)));
        }
    }
}

/// `GET /webcam/?action=stream|snapshot` (mjpg-streamer's and ustreamer's URLs).
async fn webcam(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let mut frames = shared.frames.subscribe();
    let action = query.as_deref().and_then(|q| param(q, "action"));
    let first = match frames.wait_for(Option::is_some).await {
        Ok(frame) => frame.clone().unwrap_or_default(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match action.as_deref() {
        Some("snapshot") => ([(header::CONTENT_TYPE, "image/jpeg")], first).into_response(),
        Some("stream") => {
            const BOUNDARY: &str = "boundarydonotcross";
            let part = |jpeg: &Bytes| {
                let mut part = format!(
                    "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                )
                .into_bytes();
                part.extend_from_slice(jpeg);
                part.extend_from_slice(b"\r\n");
                Bytes::from(part)
            };
            let first_part = part(&first);
            let rest = futures_util::stream::unfold(frames, move |mut frames| async move {
                frames.changed().await.ok()?;
                let jpeg = frames.borrow_and_update().clone()?;
                Some((Ok::<Bytes, std::io::Error>(part(&jpeg)), frames))
            });
            let stream = futures_util::StreamExt::chain(
                futures_util::stream::once(async move { Ok(first_part) }),
                rest,
            );
            (
                [(header::CONTENT_TYPE, format!("multipart/x-mixed-replace;boundary={BOUNDARY}"))],
                Body::from_stream(stream),
            )
                .into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "action must be stream or snapshot").into_response(),
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": { "code": status.as_u16(), "message": message } })))
        .into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "Not Found")
}

/// `GET /access/oneshot_token`: a token good for one connection within 5 s.
async fn oneshot_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !shared.http_authorised(&headers, query.as_deref()) {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let mut random = [0u8; 24];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "No randomness");
    }
    let token: String = random
        .iter()
        .map(|b| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[usize::from(*b) % 36]))
        .collect();
    shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token.clone(), Instant::now());
    axum::Json(json!({ "result": token })).into_response()
}

/// The HTTP endpoints that mirror a JSON-RPC method: `/server/info` is `server.info`,
/// parameters from the query string.
async fn http_rpc(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !shared.http_authorised(&headers, query.as_deref()) {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let method = uri.path().trim_start_matches('/').replace('/', ".");
    let query = query.unwrap_or_default();
    let params = if method == "printer.objects.query" {
        let mut objects = Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, fields) = match pair.split_once('=') {
                Some((name, fields)) => (
                    percent_decode(name),
                    Value::Array(
                        percent_decode(fields)
                            .split(',')
                            .filter(|f| !f.is_empty())
                            .map(|f| json!(f))
                            .collect(),
                    ),
                ),
                None => (percent_decode(pair), Value::Null),
            };
            objects.insert(name, fields);
        }
        json!({ "objects": objects })
    } else {
        let mut params = Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(percent_decode(key), json!(percent_decode(value)));
        }
        Value::Object(params)
    };
    let mut connection = Connection::new(&shared, true);
    match connection.call(&method, &params) {
        Ok(result) => axum::Json(json!({ "result": result })).into_response(),
        Err(error) => {
            let status = StatusCode::from_u16(u16::try_from(error.code).unwrap_or(400))
                .unwrap_or(StatusCode::BAD_REQUEST);
            error_response(status, &error.message)
        }
    }
}

/// `POST /server/files/upload` (multipart: `file`, optional `root`, `path`, `print`).
async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    if !shared.http_authorised(&headers, query.as_deref()) {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"').to_owned());
    let Some(boundary) = boundary else {
        return error_response(StatusCode::BAD_REQUEST, "Not a multipart/form-data upload");
    };
    let Some(parts) = multipart(&body, &boundary) else {
        return error_response(StatusCode::BAD_REQUEST, "Malformed multipart body");
    };
    let field = |name: &str| {
        parts.iter().find(|p| p.name == name).map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let Some(file) = parts.iter().find(|p| p.name == "file") else {
        return error_response(StatusCode::BAD_REQUEST, "No file part in the upload");
    };
    let root = field("root").unwrap_or_else(|| "gcodes".into());
    if root != "gcodes" {
        return error_response(StatusCode::BAD_REQUEST, &format!("Invalid root request: {root}"));
    }
    let Some(filename) = &file.filename else {
        return error_response(StatusCode::BAD_REQUEST, "The file part has no filename");
    };
    let path = match field("path").filter(|p| !p.is_empty()) {
        Some(dir) => format!("{}/{filename}", dir.trim_matches('/')),
        None => filename.clone(),
    };
    let print = field("print").is_some_and(|p| p.eq_ignore_ascii_case("true"));
    let mut klipper = shared.klipper();
    let stored = match klipper.add_file(&path) {
        Ok(stored) => stored,
        Err(error) => return error_response(StatusCode::BAD_REQUEST, &error.message),
    };
    {
        use md5::Digest;
        let md5: String = md5::Md5::digest(&file.data).iter().map(|b| format!("{b:02x}")).collect();
        let record = crate::ftps::StoredFile { size: file.data.len() as u64, md5 };
        shared.uploads.lock().unwrap_or_else(|p| p.into_inner()).insert(stored.clone(), record);
    }
    let mut started = false;
    if print {
        match klipper.start(&stored) {
            Ok(notices) => {
                started = true;
                drop(klipper);
                shared.publish(notices);
            }
            Err(error) => tracing::info!(%error, "Upload stored; its print did not start."),
        }
    }
    // Moonraker answers the upload with a bare object, not wrapped in "result".
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "item": { "path": stored, "root": "gcodes", "modified": 1_764_000_000.0,
                      "size": file.data.len(), "permissions": "rw" },
            "print_started": started,
            "print_queued": false,
            "action": "create_file",
        })),
    )
        .into_response()
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body; `None` when it is malformed.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = &body[find(body, &delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let content = &rest[head_end + 4..];
        let mut next_delimiter = b"\r\n".to_vec();
        next_delimiter.extend_from_slice(&delimiter);
        let end = find(content, &next_delimiter)?;
        let disposition =
            head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
        let attribute = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim().strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_owned())
            })
        };
        parts.push(Part {
            name: attribute("name")?,
            filename: attribute("filename"),
            data: content[..end].to_vec(),
        });
        rest = &content[end + next_delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Opened with a valid token or key: authorised at once. Without: served after an
    // identify that names the key. A wrong token is refused outright.
    let token = query.as_deref().and_then(|q| param(q, "token"));
    if token.is_some()
        && shared.api_key.is_some()
        && !shared.http_authorised(&headers, query.as_deref())
    {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let authorised = shared.http_authorised(&headers, None) || token.is_some();
    upgrade
        .max_message_size(1024 * 1024)
        .on_upgrade(move |socket| serve_socket(shared, socket, authorised))
}

/// One WebSocket connection's state.
struct Connection<'a> {
    shared: &'a Shared,
    id: u64,
    authorised: bool,
    /// The subscribed objects (`None`: every field), and what was last sent of each.
    subscription: Option<Map<String, Value>>,
    sent: Map<String, Value>,
}

impl<'a> Connection<'a> {
    fn new(shared: &'a Shared, authorised: bool) -> Connection<'a> {
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        Connection { shared, id, authorised, subscription: None, sent: Map::new() }
    }

    /// A JSON-RPC text frame in, the answer out (none for a notification).
    fn request(&mut self, text: &str) -> Option<Value> {
        let request: Value = match serde_json::from_str(text) {
            Ok(request) => request,
            Err(_) => {
                return Some(
                    json!({ "jsonrpc": "2.0", "error": { "code": -32700, "message": "Parse error" }, "id": null }),
                );
            }
        };
        let id = request.get("id").cloned();
        let Some(method) = request.get("method").and_then(Value::as_str) else {
            return Some(
                json!({ "jsonrpc": "2.0", "error": { "code": -32600, "message": "Invalid Request" }, "id": id }),
            );
        };
        let params = request.get("params").cloned().unwrap_or(json!({}));
        let answer = match self.call(method, &params) {
            Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
            Err(error) => json!({ "jsonrpc": "2.0",
                "error": { "code": error.code, "message": error.message }, "id": id }),
        };
        id.map(|_| answer)
    }

    fn call(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        if method == "server.connection.identify" {
            if let Some(key) = text("api_key") {
                if self.shared.api_key.as_deref().is_some_and(|k| k != key) {
                    return Err(RpcError { code: 401, message: "Invalid API Key".into() });
                }
                self.authorised = true;
            }
            return Ok(json!({ "connection_id": self.id }));
        }
        if !self.authorised && self.shared.api_key.is_some() {
            return Err(RpcError { code: 401, message: "Unauthorized".into() });
        }
        let shared = self.shared;
        let mut klipper = shared.klipper();
        match method {
            "server.info" => Ok(json!({
                "klippy_connected": !matches!(klipper.klippy, super::klipper::Klippy::Disconnected { .. }),
                "klippy_state": klipper.klippy.as_str(),
                "components": ["database", "file_manager", "klippy_apis", "machine", "data_store",
                               "shell_command", "proc_stats", "job_state", "job_queue", "history",
                               "authorization", "webcam"],
                "failed_components": [],
                "registered_directories": ["config", "logs", "gcodes"],
                "warnings": [],
                "websocket_count": shared.connections.load(Ordering::Relaxed),
                "moonraker_version": MOONRAKER_VERSION,
                "api_version": [1, 5, 0],
                "api_version_string": "1.5.0",
            })),
            "printer.info" => klipper.objects_available().map(|()| {
                let status = klipper.status();
                json!({
                    "state": klipper.klippy.as_str(),
                    "state_message": status["webhooks"]["state_message"],
                    "hostname": "voron",
                    "software_version": KLIPPER_VERSION,
                    "cpu_info": "4 core ARMv7 Processor rev 4 (v7l)",
                    "klipper_path": "/home/pi/klipper",
                    "python_path": "/home/pi/klippy-env/bin/python",
                    "log_file": "/home/pi/printer_data/logs/klippy.log",
                    "config_file": "/home/pi/printer_data/config/printer.cfg",
                })
            }),
            "printer.objects.list" => {
                klipper.objects_available().map(|()| json!({ "objects": klipper.object_names() }))
            }
            "printer.objects.query" | "printer.objects.subscribe" => {
                klipper.objects_available().and_then(|()| {
                    let objects =
                        params.get("objects").and_then(Value::as_object).cloned().ok_or_else(
                            || RpcError { code: 400, message: "Invalid argument: objects".into() },
                        )?;
                    let status = select(&klipper.status(), &objects);
                    if method == "printer.objects.subscribe" {
                        // A new subscription replaces the earlier one.
                        self.subscription = Some(objects);
                        self.sent = status.clone();
                    }
                    Ok(json!({ "eventtime": klipper.eventtime, "status": status }))
                })
            }
            "printer.print.start" => match text("filename") {
                Some(file) => klipper.start(&file).map(|n| ok(shared, n)),
                None => {
                    Err(RpcError { code: 400, message: "No data for argument: filename".into() })
                }
            },
            "printer.print.pause" => klipper.pause().map(|n| ok(shared, n)),
            "printer.print.resume" => klipper.resume().map(|n| ok(shared, n)),
            "printer.print.cancel" => klipper.cancel().map(|n| ok(shared, n)),
            "printer.emergency_stop" => Ok(ok(shared, klipper.emergency_stop())),
            "printer.firmware_restart" | "printer.restart" => {
                Ok(ok(shared, klipper.firmware_restart()))
            }
            "printer.gcode.script" => match text("script") {
                Some(script) => klipper.gcode(&script).map(|n| ok(shared, n)),
                None => Err(RpcError { code: 400, message: "No data for argument: script".into() }),
            },
            "server.webcams.list" => Ok(json!({ "webcams": if shared.web { vec![json!({
                "name": "Printer Cam", "location": "printer", "service": "mjpegstreamer-adaptive",
                "enabled": true, "icon": "mdiWebcam", "target_fps": 15, "target_fps_idle": 5,
                "stream_url": "/webcam/?action=stream", "snapshot_url": "/webcam/?action=snapshot",
                "flip_horizontal": false, "flip_vertical": false, "rotation": 0,
                "aspect_ratio": "4:3", "extra_data": {}, "source": "config",
                "uid": "55d4b3e4-2a4a-4d5e-9a43-0c1f5d6c8a11",
            })] } else { Vec::new() } })),
            "server.history.list" => Ok(klipper.history()),
            "server.files.list" => Ok(klipper.files()),
            _ => Err(RpcError { code: -32601, message: format!("Method not found: {method}") }),
        }
    }

    /// The status update due now: what changed in the subscribed objects since the last.
    fn update(&mut self) -> Option<Value> {
        let objects = self.subscription.as_ref()?;
        let klipper = self.shared.klipper();
        klipper.objects_available().ok()?;
        let status = select(&klipper.status(), objects);
        let eventtime = klipper.eventtime;
        drop(klipper);
        let mut delta = Map::new();
        for (name, value) in &status {
            if let Some(changed) = diff(self.sent.get(name), value) {
                delta.insert(name.clone(), changed);
            }
        }
        self.sent = status;
        (!delta.is_empty()).then(|| {
            json!({ "jsonrpc": "2.0", "method": "notify_status_update", "params": [delta, eventtime] })
        })
    }
}

/// Publishes a command's notices and answers `"ok"`.
fn ok(shared: &Shared, notices: Vec<super::klipper::Notice>) -> Value {
    shared.publish(notices);
    json!("ok")
}

/// The named objects of `status`, each with the named fields (`null`: all of them). Names
/// the printer does not have are left out, as Klipper does.
fn select(status: &Map<String, Value>, objects: &Map<String, Value>) -> Map<String, Value> {
    let mut selected = Map::new();
    for (name, fields) in objects {
        let Some(Value::Object(object)) = status.get(name) else { continue };
        let value = match fields.as_array() {
            Some(fields) => Value::Object(
                object
                    .iter()
                    .filter(|(key, _)| fields.iter().any(|f| f.as_str() == Some(key.as_str())))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            None => Value::Object(object.clone()),
        };
        selected.insert(name.clone(), value);
    }
    selected
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket, authorised: bool) {
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut notices = shared.notices.subscribe();
    let mut connection = Connection::new(&shared, authorised);
    let mut updates = tokio::time::interval(shared.update_interval);
    let mut proc_stats = tokio::time::interval(Duration::from_secs(1));
    let dropped = shared.drop_all.notified();
    tokio::pin!(dropped);
    let mut silent = shared.silent.subscribe();
    loop {
        if *silent.borrow_and_update() {
            // Hung: nothing is read (so no pong) and nothing sent, until woken or dropped.
            tokio::select! {
                () = &mut dropped => break,
                changed = silent.changed() => if changed.is_err() { break },
            }
            continue;
        }
        let outgoing = tokio::select! {
            () = &mut dropped => break,
            Ok(()) = silent.changed() => continue,
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => connection.request(text.as_str()),
                Some(Ok(Message::Binary(_))) => Some(json!({ "jsonrpc": "2.0",
                    "error": { "code": -32700, "message": "Parse error" }, "id": null })),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            notice = notices.recv() => match notice {
                Ok(notice) => {
                    // Moonraker drops every subscription when Klippy disconnects.
                    if notice["method"] == "notify_klippy_disconnected" {
                        connection.subscription = None;
                        connection.sent.clear();
                    }
                    Some(notice)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = updates.tick() => connection.update(),
            _ = proc_stats.tick() => Some(json!({ "jsonrpc": "2.0", "method": "notify_proc_stat_update",
                "params": [{ "moonraker_stats": { "time": 1.0, "cpu_usage": 1.2, "memory": 41_000, "mem_units": "kB" },
                             "cpu_temp": 48.3, "websocket_connections": shared.connections.load(Ordering::Relaxed) }] })),
        };
        if let Some(outgoing) = outgoing
            && socket.send(Message::text(outgoing.to_string())).await.is_err()
        {
            break;
        }
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The value of `key` in a query string, percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_upload_is_read_and_garbage_is_refused() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"root\"\r\n\r\ngcodes\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cube.gcode\"\r\nContent-Type: application/octet-stream\r\n\r\nG28\r\nG1 X10\r\n--XyZ--\r\n";
        let parts = multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].filename.as_deref(), Some("cube.gcode"));
        assert_eq!(parts[1].data, b"G28\r\nG1 X10");
        assert!(multipart(b"--XyZ\r\nno end", "XyZ").is_none());
        assert!(multipart(b"nothing", "XyZ").is_none());
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            param("a=1&filename=my%20cube.gcode", "filename").as_deref(),
            Some("my cube.gcode")
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
