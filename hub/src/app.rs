//! `kitt-hub serve`: storage, the agents' QUIC endpoint and the HTTP API wired together.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::ca::HubCa;
use crate::camera::SnapshotStore;
use crate::config::HubConfig;
use crate::db::Db;
use crate::files::FileStore;
use crate::live::LiveHub;
use crate::sync::server::{SyncConfig, SyncHandle, SyncServer};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Sync(#[from] crate::sync::server::SyncServerError),
    #[error("cannot open the file store: {0}")]
    Files(String),
    #[error("cannot listen on tcp/{addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another kitt-hub is serving {} (its SQLite database takes one hub; to run several \
         hubs as replicas, give them one PostgreSQL: see deploy/hub/REPLICAS.md)",
        path.display()
    )]
    Locked { path: std::path::PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// On SQLite, the data directory's lock: held while the hub serves, so a second hub on the
/// same directory refuses to start instead of corrupting what the first one does.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join("kitt-hub.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Lock { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::Locked { path: data_dir.to_owned() })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock { path, source }),
    }
}

/// A running hub.
#[derive(Debug)]
pub struct RunningHub {
    pub http_addr: SocketAddr,
    pub sync_addr: SocketAddr,
    pub sync: SyncHandle,
    pub state: AppState,
    /// Fires when an essential task panicked (see [`crate::supervise`]); `shutdown` fires
    /// with it.
    pub failed: CancellationToken,
    tasks: TaskTracker,
    /// The data directory's lock (SQLite), released when the hub is dropped.
    _lock: Option<std::fs::File>,
}

impl RunningHub {
    /// Waits for every task once `shutdown` fired.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Opens the database and the CA.
pub async fn open_storage(config: &HubConfig) -> Result<(Db, HubCa), StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    let db = match &config.database_url {
        Some(url) => Db::open(url).await?,
        None => Db::open_sqlite(&config.data_dir).await?,
    };
    let ca = match &config.database_url {
        Some(_) => shared_ca(&db, &config.data_dir).await?,
        None => HubCa::load_or_create(&config.data_dir)?,
    };
    Ok((db, ca))
}

/// Where other replicas reach this one's HTTP: `[http] advertise`, else the address it
/// listens on, with the host's name when that is every interface.
fn reachable_http(config: &HubConfig, bound: SocketAddr) -> String {
    if let Some(address) = &config.http_advertise {
        return address.clone();
    }
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        if !host.is_empty() {
            return format!("{host}:{}", bound.port());
        }
    }
    bound.to_string()
}

/// On PostgreSQL, the CA every replica uses: the one in the database, or this data
/// directory's (made now if there is none) offered as it. The first offered stays, so
/// replicas started at once agree.
async fn shared_ca(db: &Db, data_dir: &std::path::Path) -> Result<HubCa, StartError> {
    let origin = std::path::Path::new("the database's cluster_ca");
    if let Some((cert, key)) = db.cluster_ca().await? {
        return Ok(HubCa::from_pem(&cert, &key, origin)?);
    }
    let local = HubCa::load_or_create(data_dir)?;
    let (cert, key) = local.to_pem();
    db.offer_cluster_ca(&cert, &key, proto::UnixMillis::now().0).await?;
    match db.cluster_ca().await? {
        Some((stored, _)) if stored == cert => Ok(local),
        Some((stored, key)) => {
            tracing::info!("Another replica's CA is the cluster's; using it.");
            Ok(HubCa::from_pem(&stored, &key, origin)?)
        }
        None => Ok(local),
    }
}

/// Starts everything; ready (serving `/readyz` with 200) when this returns.
pub async fn start(
    config: HubConfig,
    shutdown: CancellationToken,
) -> Result<RunningHub, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    std::fs::create_dir_all(&config.shared_dir)
        .map_err(|source| StartError::DataDir { path: config.shared_dir.clone(), source })?;
    let lock = match config.database_url {
        None => Some(lock_data_dir(&config.data_dir)?),
        Some(_) => None,
    };
    let (db, ca) = open_storage(&config).await?;
    // The ingest prices a print's hours with these (it reads them in its transaction).
    let costs = serde_json::to_string(&config.costs).unwrap_or_default();
    db.put_inventory_setting(crate::db::outcomes::COSTS_KEY, &costs).await?;
    let low = config.low_stock_g.to_string();
    db.put_inventory_setting(crate::service::inventory::LOW_STOCK_KEY, &low).await?;
    let mut sync_config = SyncConfig::new(config.sync_listen);
    sync_config.keep_alive = config.keep_alive;
    sync_config.idle_timeout = config.idle_timeout;
    sync_config.cert_lifetime = config.certificate_lifetime;
    // Print files and snapshots: in the shared directory (the data directory unless set), so
    // every replica reaches them.
    let snapshot_dir = config.shared_dir.join("snapshots");
    sync_config.snapshot_dir = Some(snapshot_dir.clone());
    sync_config.file_dir = Some(config.shared_dir.join("files"));
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let server =
        SyncServer::bind_with(sync_config, db.clone(), ca, LiveHub::new(), metrics.clone())?;
    let sync_addr = server.local_addr();
    let sync = server.handle();
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| StartError::Http { addr: config.http_listen, source })?;
    let http_addr = listener.local_addr().unwrap_or(config.http_listen);
    let files = match config.database_url {
        Some(_) => FileStore::open_shared(
            config.shared_dir.join("files"),
            &config.replica_name,
            config.files.clone(),
        ),
        None => FileStore::open(config.shared_dir.join("files"), config.files.clone()),
    }
    .map_err(|error| StartError::Files(error.to_string()))?;
    // This process among replicas: its name and a per-start suffix, so a restarted replica
    // never takes its previous life's runs or connections for its own.
    let instance = format!("{}/{}", config.replica_name, hex::encode(rand::random::<[u8; 3]>()));
    // On PostgreSQL, replicas share live updates, signals and presence (`cluster`); joined
    // before anything publishes.
    let cluster = config.database_url.as_deref().map(|url| {
        let http = reachable_http(&config, http_addr);
        crate::cluster::Cluster::join(db.clone(), url, &instance, sync.live(), &http, sync_addr)
    });
    // The name every answer gives (`x-kitt-replica`, `GET /cluster`) is the replica's name.
    let settings = api::ApiSettings { replica: config.replica_name.clone(), ..config.api.clone() };
    let mut state = AppState::new(db.clone(), sync.clone(), settings, metrics.clone(), files);
    let mut assistant = crate::assistant::Assistant::new(
        db.clone(),
        state.services.clone(),
        crate::assistant::service::start_tiers(&config.assistant).await,
        crate::assistant::service::Settings {
            paid_enabled: config.assistant.paid_enabled,
            monthly_budget: config.assistant.monthly_budget,
            pending_ttl: config.assistant.pending_ttl,
            ..crate::assistant::service::Settings::default()
        },
    );
    if let Some(path) = config.assistant.embed_model.clone() {
        let loaded =
            tokio::task::spawn_blocking(move || crate::assistant::embed::Embedder::load(&path))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        match loaded {
            Ok(embedder) => {
                assistant = assistant.with_cache(embedder.clone(), Some(metrics.clone()));
                let opened = match &config.assistant.qdrant {
                    Some(server) => {
                        let key = server.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
                        crate::memory::store::Store::open_server(
                            &server.url,
                            key,
                            &server.collection,
                            embedder.dimensions(),
                        )
                        .await
                    }
                    None => crate::memory::store::Store::open_embedded(
                        &config.data_dir.join("memory"),
                        embedder.dimensions(),
                    ),
                };
                match opened {
                    Ok(store) => {
                        let memory = crate::memory::Memory::new(db.clone(), embedder, store);
                        assistant = assistant.with_memory(memory.clone());
                        state.memory = Some(memory);
                    }
                    Err(error) => tracing::warn!(%error, "The memory did not open; no memory."),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "The embedding model did not load; no semantic cache.")
            }
        }
    }
    state.assistant = assistant;
    // The hub's own jobs, as the configuration says now (kept across restarts: an admin's
    // pause stays, the last occurrence too).
    let clock = db.clock().await?;
    for builtin in &crate::scheduler::jobs::BUILTINS {
        db.put_builtin_job(&builtin.row(&config.scheduler.time_zone, clock)).await?;
    }
    if config.scheduler.enabled {
        let runner = crate::scheduler::driver::Runner {
            db: db.clone(),
            services: state.services.clone(),
            snapshots: SnapshotStore::new(snapshot_dir),
            retention: config.retention,
        };
        let scheduler = crate::scheduler::driver::Scheduler::new(
            db.clone(),
            instance.clone(),
            config.scheduler.tick,
            runner,
        );
        state.scheduler = Some(scheduler);
    }
    let app = api::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();

    let tasks = TaskTracker::new();
    // A panic in any of these stops the hub (`failed`, then `shutdown`): see `supervise`.
    let failed = CancellationToken::new();
    let essential = Essential { tasks: &tasks, metrics, failed: &failed, shutdown: &shutdown };
    if let Some((cluster, outgoing)) = cluster {
        essential.spawn("cluster", cluster.run(outgoing, shutdown.clone()));
    }
    essential.spawn("sync", server.run(shutdown.clone()));
    let http_shutdown = shutdown.clone();
    essential.spawn("http", async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "The HTTP server stopped.");
        }
    });
    if let Some(scheduler) = state.scheduler.clone() {
        essential.spawn("scheduler", scheduler.run(shutdown.clone()));
    }
    // Names another replica forgave (a right password, an admin's reset): this replica's
    // login limiter forgets what it counted of them.
    {
        let (limiter, mut forgiven, shutdown) =
            (state.limiter.clone(), state.sync.live().subscribe_forgiven(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    name = forgiven.recv() => match name {
                        Ok(name) => limiter.forget(&name),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }
    // The dispatcher: runs when something relevant changes, never on a timer.
    essential.spawn("queue", state.services.queue.clone().run(shutdown.clone()));
    if let Some(memory) = state.memory.clone() {
        // Not essential: a panic here ends the memory's syncing (logged and counted), not
        // the hub.
        let (metrics, shutdown) = (state.metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            crate::supervise::contained(&metrics, "memory", memory.run(shutdown)).await;
        });
    }
    state.readiness.ready();
    Ok(RunningHub { http_addr, sync_addr, sync, state, failed, tasks, _lock: lock })
}

/// Spawns the tasks the hub cannot run without: a panic in one fires `failed` and then
/// `shutdown`.
struct Essential<'a> {
    tasks: &'a TaskTracker,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    failed: &'a CancellationToken,
    shutdown: &'a CancellationToken,
}

impl Essential<'_> {
    fn spawn(&self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let (metrics, failed, shutdown) =
            (self.metrics.clone(), self.failed.clone(), self.shutdown.clone());
        self.tasks.spawn(async move {
            crate::supervise::essential(metrics, name, failed.clone(), work).await;
            if failed.is_cancelled() {
                shutdown.cancel();
            }
        });
    }
}

/// Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    Signals::new().next().await;
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from creation on: one that arrives between two
/// waits (a second signal during the drain) is still seen by the next.
#[derive(Debug)]
pub struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// The next SIGTERM or Ctrl-C (never, where neither could be listened for).
    pub async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    if signal.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.interrupt) => {}
        }
    }
}

impl Default for Signals {
    fn default() -> Signals {
        Signals::new()
    }
}
