//! An in-process hub and agents for sync tests: the real QUIC endpoint, the real database
//! (SQLite in a temporary directory), the real enrollment path, the real agent runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_agent::agent::RunningAgent;
use edge_agent::config::AgentConfig;
use edge_agent::sync::client::SyncStatus;
use hub::ca::HubCa;
use hub::db::Db;
use hub::sync::server::{SyncConfig, SyncHandle, SyncServer};
use printer_sim::SimHandle;
use proto::UnixMillis;
use tokio_util::sync::CancellationToken;

use crate::PATIENCE;

/// A hub serving agents on a loopback UDP port.
#[derive(Debug)]
pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub handle: SyncHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestHub {
    pub async fn start() -> TestHub {
        TestHub::start_with(|_| {}).await
    }

    /// A hub whose sync settings `adjust` changes.
    pub async fn start_with(adjust: impl FnOnce(&mut SyncConfig)) -> TestHub {
        TestHub::start_in_with(tempfile::tempdir().expect("a temporary directory"), None, adjust)
            .await
    }

    /// A hub over an existing data directory (a restart), optionally on a fixed address.
    pub async fn start_in(dir: tempfile::TempDir, addr: Option<SocketAddr>) -> TestHub {
        TestHub::start_in_with(dir, addr, |_| {}).await
    }

    async fn start_in_with(
        dir: tempfile::TempDir,
        addr: Option<SocketAddr>,
        adjust: impl FnOnce(&mut SyncConfig),
    ) -> TestHub {
        crate::init();
        let db = Db::open_sqlite(dir.path()).await.expect("the hub database opens");
        let ca = HubCa::load_or_create(dir.path()).expect("the hub CA");
        let mut config =
            SyncConfig::new(addr.unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal")));
        config.snapshot_dir = Some(dir.path().join("snapshots"));
        config.housekeeping = Duration::from_millis(200);
        // Short timeouts so that partition tests see a dead link within seconds.
        config.idle_timeout = Duration::from_secs(3);
        config.keep_alive = Duration::from_secs(1);
        adjust(&mut config);
        let server = SyncServer::bind(config, db, ca).expect("the hub binds");
        let addr = server.local_addr();
        let handle = server.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestHub { dir, addr, handle, shutdown, task }
    }

    pub fn db(&self) -> &Db {
        self.handle.db()
    }

    /// The command service over this hub: the only way to create a command.
    pub fn commands(&self) -> hub::service::Commands {
        hub::service::Commands::new(self.db().clone(), self.handle.clone())
    }

    /// A fresh single-use token, valid for an hour.
    pub async fn token(&self, name: Option<&str>) -> String {
        let (token, _) = hub::sync::token::create(
            self.db(),
            &self.handle.ca_fingerprint(),
            name,
            Duration::from_secs(3600),
            UnixMillis::now(),
        )
        .await
        .expect("a token");
        token.to_string()
    }

    /// Stops the hub and hands back its data directory.
    pub async fn stop(self) -> (tempfile::TempDir, SocketAddr) {
        self.shutdown.cancel();
        let _ = self.task.await;
        (self.dir, self.addr)
    }
}

/// An agent process's worth of runtime, in-process.
#[derive(Debug)]
pub struct TestAgent {
    pub state_dir: PathBuf,
    pub running: Option<RunningAgent>,
    shutdown: CancellationToken,
}

/// An agent configuration watching one simulated printer.
pub fn agent_config(state_dir: &Path, sim: Option<&SimHandle>, serial: &str) -> AgentConfig {
    let printers = match sim {
        Some(sim) => {
            let ca = state_dir.join("printer-ca.pem");
            std::fs::write(&ca, sim.ca_pem()).expect("write the printer CA");
            format!(
                "[[printer]]\nserial = \"{serial}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\nbuiltin_camera = false\n{}",
                sim.addr().port(),
                ca.display(),
                ftps_line(sim),
            )
        }
        None => String::new(),
    };
    let text = format!(
        "state_dir = \"{}\"\n[sync]\nkeep_alive_s = 1\nidle_timeout_s = 3\n[telemetry]\ninterval_ms = 200\nhealth_interval_s = 3600\n{printers}",
        state_dir.display()
    );
    AgentConfig::parse(&text).expect("a valid test configuration")
}

/// The printer's FTPS port, where the simulator serves one.
fn ftps_line(sim: &SimHandle) -> String {
    sim.ftps_addr().map(|addr| format!("ftps_port = {}\n", addr.port())).unwrap_or_default()
}

/// Like [`agent_config`], with the simulator's port-6000 camera as `chamber`, a snapshot
/// every `every_layers` layers while printing.
pub fn agent_config_with_camera(
    state_dir: &Path,
    sim: &SimHandle,
    serial: &str,
    every_layers: u32,
) -> AgentConfig {
    let ca = state_dir.join("printer-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).expect("write the printer CA");
    let camera = sim.camera_addr().expect("the simulator serves a camera");
    let text = format!(
        "state_dir = \"{}\"\n[sync]\nkeep_alive_s = 1\nidle_timeout_s = 3\n[telemetry]\ninterval_ms = 200\nhealth_interval_s = 3600\n\
         [[printer]]\nserial = \"{serial}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\n{}\
         [[printer.camera]]\nsource = \"bambu\"\nport = {}\nsnapshot_every_layers = {every_layers}\nlive_max_fps = 10\n",
        state_dir.display(),
        sim.addr().port(),
        ca.display(),
        ftps_line(sim),
        camera.port(),
    );
    AgentConfig::parse(&text).expect("a valid test configuration")
}

impl TestAgent {
    /// Enrolls a new agent with `hub` in a fresh state directory.
    pub async fn enroll(hub: &TestHub, state_dir: &Path, name: &str) -> PathBuf {
        TestAgent::enroll_via(hub, hub.addr, state_dir, name).await
    }

    /// Enrolls through `addr` (a relay in front of the hub), which the agent then keeps using.
    pub async fn enroll_via(
        hub: &TestHub,
        addr: SocketAddr,
        state_dir: &Path,
        name: &str,
    ) -> PathBuf {
        std::fs::create_dir_all(state_dir).expect("state directory");
        let token = hub.token(Some(name)).await;
        edge_agent::sync::enroll::enroll(&addr.to_string(), &token, state_dir)
            .await
            .expect("enrollment succeeds");
        state_dir.to_owned()
    }

    pub fn start(config: AgentConfig) -> TestAgent {
        let shutdown = CancellationToken::new();
        let state_dir = config.state_dir.clone();
        let running = edge_agent::agent::start(config, shutdown.clone()).expect("the agent starts");
        TestAgent { state_dir, running: Some(running), shutdown }
    }

    pub fn running(&self) -> &RunningAgent {
        self.running.as_ref().expect("a running agent")
    }

    /// Waits until the sync client reports a status `want` accepts.
    pub async fn wait_status(
        &mut self,
        what: &str,
        want: impl Fn(&SyncStatus) -> bool,
    ) -> SyncStatus {
        let status = &mut self.running.as_mut().expect("a running agent").status;
        let found = tokio::time::timeout(PATIENCE, status.wait_for(|s| want(s)))
            .await
            .map(|found| found.map(|s| s.clone()));
        match found {
            Ok(Ok(found)) => found,
            _ => panic!("timed out waiting for {what}; status is {:?}", *status.borrow()),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await;
        }
    }
}

/// Checks `check` now and after every change `changes` announces (a hub's
/// [`SyncHandle::changes`]: ingest commits, connections, commands, expiries) until it returns
/// `Some`, failing after [`PATIENCE`]. No clock: it wakes only when something changed.
pub async fn eventually<T, F, Fut>(
    mut changes: tokio::sync::watch::Receiver<u64>,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        changes.mark_unchanged();
        if let Some(found) = check().await {
            return found;
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the hub stopped before {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// For state held by another process (a `kitt-hub` binary killed and restarted under the
/// test, read through its database file), which has no event this process can wait on:
/// checks every 20 ms until `check` returns `Some`, failing after `patience`.
pub async fn poll_other_process<T, F, Fut>(patience: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until(patience, what, check)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Like [`poll_other_process`], for a caller that reports rather than panics: `Err` says
/// what did not happen within `patience`.
pub async fn wait_until<T, F, Fut>(
    patience: Duration,
    what: &str,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what}: not within {} s", patience.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The latency benchmarks' source: a simulated P1S `serial` reporting every 100 ms and an
/// agent enrolled with `hub` (a token made on its database), sending telemetry every
/// 100 ms, connected. The state directory must outlive the agent.
pub async fn reporting_agent(
    hub: &hub::app::RunningHub,
    serial: &str,
) -> (SimHandle, TestAgent, tempfile::TempDir) {
    use printer_sim::config::{Model, SimConfig};
    let config = SimConfig::new(
        serial.parse().expect("a serial"),
        "12345678".parse().expect("a code"),
        Model::P1S,
    )
    .with_intervals(Duration::from_millis(100), Duration::from_millis(100));
    let sim = printer_sim::Simulator::start(config).await.expect("the simulator");
    let state = tempfile::tempdir().expect("a state directory");
    let (token, _) = hub::sync::token::create(
        &hub.state.db,
        &hub.sync.ca_fingerprint(),
        Some("latency"),
        Duration::from_secs(600),
        UnixMillis::now(),
    )
    .await
    .expect("a token");
    edge_agent::sync::enroll::enroll(&hub.sync_addr.to_string(), &token.to_string(), state.path())
        .await
        .expect("enrolled");
    let mut config = agent_config(state.path(), Some(&sim), serial);
    config.telemetry_interval = Duration::from_millis(100);
    let mut agent = TestAgent::start(config);
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    (sim, agent, state)
}

/// A WebSocket on `hub`'s `/api/v1/ws` as the viewer `bench`, made on its database.
pub async fn viewer_socket(
    hub: &hub::app::RunningHub,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let hash = hub::api::auth::hash_password("benchmark password").expect("a hash");
    hub.state.db.insert_user("bench", &hash, "viewer", UnixMillis::now()).await.expect("the user");
    let (token, _) =
        hub::api::auth::create_api_token(&hub.state.db, "bench", None).await.expect("a token");
    let mut request =
        format!("ws://{}/api/v1/ws", hub.http_addr).into_client_request().expect("a request");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("a header"));
    tokio_tungstenite::connect_async(request).await.expect("the WebSocket").0
}
