//! The hub's database: SQLite by default (a file under the data directory), PostgreSQL when
//! a URL is configured. One code path through `sqlx::Any`; queries use `$N` parameters,
//! which both backends accept. Migrations live in `migrations/<backend>/` and are applied at
//! start-up.
//!
//! Ingest is idempotent on `(agent, seq)`: a batch is inserted with `ON CONFLICT DO NOTHING`
//! and the agent's watermark (`agents.acked_through`) moves in the same transaction, so an
//! acknowledgement sent after commit never covers anything that was not stored.

use std::path::Path;

use proto::{AgentId, Command, CommandId, CommandOutcome, Record, RecordBody, Seq, UnixMillis};
use sqlx::{AnyPool, pool::PoolOptions};
type AnyPoolOptions = PoolOptions<sqlx::Any>;
use sqlx::{Executor, Row};

mod projection;
pub use projection::{RefusedPrinter, camera_state_name, printer_of, trigger_name};
pub mod assistant;
pub mod cameras;
pub mod cluster;
pub use cluster::SessionLock;
pub mod files;
pub mod inventory;
pub mod limits;
pub mod managed;
pub mod memory;
pub mod outcomes;
pub mod owners;
pub mod queue;
pub mod read;
pub mod scheduler;
pub mod users;

/// The migrations this hub knows, for `backend`. A database that has newer ones applied (a
/// replica of the previous version restarting during a rolling upgrade, or a binary rolled
/// back) is opened all the same: migrations only add (a release whose do not says so, and
/// its upgrade stops every replica first), and [`Db::open`] warns.
fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    let mut migrator = match backend {
        Backend::Sqlite => sqlx::migrate!("../migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("../migrations/postgres"),
    };
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// The ingest transaction failed (the whole group is retried by the agents).
    #[error("ingest failed: {0}")]
    Ingest(String),
    /// A stored value could not be decoded (written by a newer hub, or damaged).
    #[error("undecodable {what} in the database: {detail}")]
    Decode { what: &'static str, detail: String },
}

/// Binding a nullable double. sqlx 0.9's `Any` driver gives a null `f64` PostgreSQL's
/// `float4` type and a null `f32` `float8` (sqlx-core's `any/arguments.rs`), so a cached
/// statement first run with a null double and then with a value fails ("incorrect binary data
/// format in bind parameter"). Nullable doubles are bound through this, which sends a null
/// as a `float8` null.
pub(crate) trait BindDouble {
    fn bind_f64(self, value: Option<f64>) -> Self;
}

impl<'q> BindDouble for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_f64(self, value: Option<f64>) -> Self {
        match value {
            Some(value) => self.bind(value),
            None => self.bind(None::<f32>),
        }
    }
}

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool with the hub's queries.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: one writer task takes every agent's batches and commits all that are waiting
    /// in one transaction (one fsync for many agents). PostgreSQL: `None`, each batch commits
    /// on its own connection.
    ingest_queue: Option<tokio::sync::mpsc::Sender<IngestJob>>,
}

/// One agent's batch waiting for the SQLite writer.
#[derive(Debug)]
struct IngestJob {
    agent: AgentId,
    records: Vec<Record>,
    received_at: UnixMillis,
    stored: Vec<StoredSnapshot>,
    reply: tokio::sync::oneshot::Sender<Result<Ingested, String>>,
}

/// What an ingest committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The agent's watermark after the commit: what the hub acknowledges.
    pub watermark: Seq,
    /// Records about printers the agent does not own: kept in the ingest log, not projected.
    pub refused: Vec<RefusedPrinter>,
    /// The id each new event got in the event log, by its record's seq (what `GET
    /// /api/v1/events` and the WebSocket's `event` messages call `id`).
    pub event_ids: Vec<(Seq, i64)>,
    /// Jobs of the queue that the printers' reports moved on.
    pub jobs: Vec<queue::JobChange>,
    /// Outcomes created and spools whose weight or slot changed.
    pub followed: outcomes::Followed,
}

/// A snapshot whose image the hub holds on disk, for the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub id: proto::SnapshotId,
    /// Relative to the snapshot directory.
    pub path: String,
    pub bytes: u64,
}

/// Most records the SQLite writer puts in one transaction.
const GROUP_COMMIT_RECORDS: usize = 50_000;

/// Why a token could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
    AlreadyUsed,
}

/// An agent as the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: AgentId,
    pub name: Option<String>,
    pub cert_serial: String,
    pub cert_not_after: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
    pub acked_through: Seq,
    pub last_seen_at: Option<UnixMillis>,
}

impl Db {
    /// A transaction that writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting under the busy timeout): a deferred one that reads first and then
    /// writes fails at once with "database is locked" when another connection wrote in
    /// between, which the scheduler's leases make likely.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") { Backend::Postgres } else { Backend::Sqlite };
        let open = |source| DbError::Open { url: redact(url), source };
        let mut options = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // WAL lets the CLI (tokens, revocation) write while `serve` runs; FULL syncs
            // every commit, so an acknowledged record survives a power cut.
            options = options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    Ok(())
                })
            });
        } else {
            // Every transaction here is a handful of statements in one `db` method. One left
            // open longer is a replica frozen (SIGSTOP, a paused VM) holding rows or the
            // cluster log's lock that every replica waits for: PostgreSQL ends its session.
            options = options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET idle_in_transaction_session_timeout = '60s'").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(open)?;
        let migrator = migrator(backend);
        migrator.run(&pool).await?;
        let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await?;
        if let Some(applied) = applied.filter(|applied| *applied > known) {
            tracing::warn!(
                applied,
                known,
                "The database was migrated by a newer kitt-hub; this one runs beside it (as during a rolling upgrade): upgrade it."
            );
        }
        let ingest_queue = (backend == Backend::Sqlite).then(|| {
            let (queue, jobs) = tokio::sync::mpsc::channel(256);
            tokio::spawn(sqlite_writer(pool.clone(), jobs));
            queue
        });
        Ok(Db { pool, backend, ingest_queue })
    }

    /// The embedded default: `<data_dir>/kitt.db`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Db, DbError> {
        Db::open(&format!("sqlite://{}?mode=rwc", data_dir.join("kitt.db").display())).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    // --- enrollment tokens -------------------------------------------------------------

    pub async fn insert_token(
        &self,
        id: &str,
        secret_sha256: &str,
        name: Option<&str>,
        printers: Option<&str>,
        created_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, secret_sha256, name, printers, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(secret_sha256)
        .bind(name)
        .bind(printers)
        .bind(created_at.0)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token_name(&self, id: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT name FROM enrollment_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }

    /// Marks a token used, atomically: of two agents racing with one token, one wins.
    /// Returns the token's name.
    pub async fn redeem_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now: UnixMillis,
        agent: &AgentId,
    ) -> Result<Result<Option<String>, TokenRefusal>, DbError> {
        let row = sqlx::query(
            "SELECT secret_sha256, name, expires_at, used_at FROM enrollment_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(Err(TokenRefusal::Unknown)) };
        let stored: String = row.try_get(0)?;
        if !constant_time_eq(stored.as_bytes(), secret_sha256.as_bytes()) {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let name: Option<String> = row.try_get(1)?;
        if row.try_get::<Option<i64>, _>(3)?.is_some() {
            return Ok(Err(TokenRefusal::AlreadyUsed));
        }
        if row.try_get::<i64, _>(2)? <= now.0 {
            return Ok(Err(TokenRefusal::Expired));
        }
        let updated = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1, used_by = $2 \
             WHERE id = $3 AND used_at IS NULL",
        )
        .bind(now.0)
        .bind(agent.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(Err(TokenRefusal::AlreadyUsed));
        }
        Ok(Ok(name))
    }

    // --- agents --------------------------------------------------------------------------

    pub async fn insert_agent(
        &self,
        agent: &AgentRow,
        hostname: &str,
        software: &str,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO agents (id, name, hostname, software, enrolled_at, cert_serial, \
             cert_not_after) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(agent.id.as_str())
        .bind(agent.name.as_deref())
        .bind(hostname)
        .bind(software)
        .bind(now.0)
        .bind(&agent.cert_serial)
        .bind(agent.cert_not_after.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn agent_exists(&self, id: &str) -> Result<bool, DbError> {
        let row = sqlx::query("SELECT 1 FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn agent(&self, id: &AgentId) -> Result<Option<AgentRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, name, cert_serial, cert_not_after, revoked_at, acked_through, \
             last_seen_at FROM agents WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| agent_row(&row)).transpose()
    }

    pub async fn agents(&self) -> Result<Vec<AgentRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, cert_serial, cert_not_after, revoked_at, acked_through, \
             last_seen_at FROM agents ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_row).collect()
    }

    pub async fn set_agent_certificate(
        &self,
        id: &AgentId,
        serial: &str,
        not_after: UnixMillis,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE agents SET cert_serial = $1, cert_not_after = $2 WHERE id = $3")
            .bind(serial)
            .bind(not_after.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes an agent; returns false when there is no such agent.
    pub async fn revoke_agent(&self, id: &str, now: UnixMillis) -> Result<bool, DbError> {
        let done =
            sqlx::query("UPDATE agents SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(now.0)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn revoked_agents(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT id FROM agents WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(DbError::from)).collect()
    }

    pub async fn touch_agent(
        &self,
        id: &AgentId,
        now: UnixMillis,
        software: &str,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE agents SET last_seen_at = $1, software = $2 WHERE id = $3")
            .bind(now.0)
            .bind(software)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // --- ingest --------------------------------------------------------------------------

    /// Stores a batch of records from one agent, in one transaction, each `(agent, seq)`
    /// once. Returns the agent's watermark after the commit.
    pub async fn ingest(
        &self,
        agent: &AgentId,
        records: &[Record],
        received_at: UnixMillis,
    ) -> Result<Seq, DbError> {
        Ok(self.ingest_with(agent, records, received_at, Vec::new()).await?.watermark)
    }

    /// Like [`Db::ingest`]; `stored` names the snapshots whose last chunk is in `records` and
    /// whose image is whole on disk, so the read model lists them.
    pub async fn ingest_with(
        &self,
        agent: &AgentId,
        records: &[Record],
        received_at: UnixMillis,
        stored: Vec<StoredSnapshot>,
    ) -> Result<Ingested, DbError> {
        if records.is_empty() {
            let watermark = self.watermark(agent).await?;
            return Ok(Ingested {
                watermark,
                refused: Vec::new(),
                event_ids: Vec::new(),
                jobs: Vec::new(),
                followed: outcomes::Followed::default(),
            });
        }
        let Some(queue) = &self.ingest_queue else {
            let mut tx = self.begin_write().await?;
            let ingested = ingest_in(&mut tx, agent, records, received_at, &stored).await?;
            tx.commit().await?;
            return Ok(ingested);
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = IngestJob {
            agent: agent.clone(),
            records: records.to_vec(),
            received_at,
            stored,
            reply,
        };
        let stopped = || DbError::Ingest("the database writer has stopped".into());
        queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?.map_err(DbError::Ingest)
    }

    pub async fn watermark(&self, agent: &AgentId) -> Result<Seq, DbError> {
        let row = sqlx::query("SELECT acked_through FROM agents WHERE id = $1")
            .bind(agent.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(Seq(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0) as u64))
    }

    /// Every stored record of one agent, in sequence order (tests and the checker).
    pub async fn records(&self, agent: &AgentId) -> Result<Vec<Record>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, observed_at, body FROM records WHERE agent_id = $1 ORDER BY seq",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: Vec<u8> = row.try_get(2)?;
                let body: RecordBody = postcard::from_bytes(&body)
                    .map_err(|e| DbError::Decode { what: "record", detail: e.to_string() })?;
                Ok(Record {
                    seq: Seq(row.try_get::<i64, _>(0)? as u64),
                    observed_at: UnixMillis(row.try_get(1)?),
                    body,
                })
            })
            .collect()
    }

    pub async fn record_count(&self, agent: &AgentId) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM records WHERE agent_id = $1")
            .bind(agent.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    // --- commands ------------------------------------------------------------------------

    /// Stores a command unless one with its id exists: whether it was stored now.
    pub async fn insert_command_once(
        &self,
        agent: &AgentId,
        command: &Command,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO commands (id, agent_id, printer_id, created_at, expires_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(command.id.to_string())
        .bind(agent.as_str())
        .bind(command.printer.as_str())
        .bind(command.issued_at.0)
        .bind(command.expires_at.0)
        .bind(postcard::to_stdvec(command).unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a new command (its id is new: random, or derived from what it is for).
    pub async fn insert_command(&self, agent: &AgentId, command: &Command) -> Result<(), DbError> {
        self.insert_command_once(agent, command).await.map(|_| ())
    }

    /// Commands for `agent` with no outcome yet that have not expired at `now`.
    pub async fn open_commands(
        &self,
        agent: &AgentId,
        now: UnixMillis,
    ) -> Result<Vec<Command>, DbError> {
        let rows = sqlx::query(
            "SELECT body FROM commands WHERE agent_id = $1 AND outcome IS NULL \
             AND expires_at > $2 ORDER BY created_at, id",
        )
        .bind(agent.as_str())
        .bind(now.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: Vec<u8> = row.try_get(0)?;
                postcard::from_bytes(&body)
                    .map_err(|e| DbError::Decode { what: "command", detail: e.to_string() })
            })
            .collect()
    }

    pub async fn mark_delivered(&self, id: CommandId, now: UnixMillis) -> Result<(), DbError> {
        sqlx::query("UPDATE commands SET delivered_at = COALESCE(delivered_at, $1) WHERE id = $2")
            .bind(now.0)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a command's outcome; the first outcome wins.
    pub async fn record_outcome(
        &self,
        id: CommandId,
        outcome: &CommandOutcome,
        at: UnixMillis,
    ) -> Result<(), DbError> {
        let sql = "UPDATE commands SET outcome = $1, outcome_at = $2 WHERE id = $3 \
                   AND outcome IS NULL";
        sqlx::query(sql)
            .bind(outcome_text(outcome))
            .bind(at.0)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every command that expired without an outcome as expired.
    pub async fn expire_commands(&self, now: UnixMillis) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE commands SET outcome = $1, outcome_at = $2 \
             WHERE outcome IS NULL AND expires_at <= $2",
        )
        .bind(outcome_text(&CommandOutcome::Expired))
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A command's outcome as stored (`succeeded`, `expired`, `refused: …`), if any.
    pub async fn command_outcome(&self, id: CommandId) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT outcome FROM commands WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?.flatten())
    }
}

fn agent_row(row: &sqlx::any::AnyRow) -> Result<AgentRow, DbError> {
    let id: String = row.try_get(0)?;
    Ok(AgentRow {
        id: AgentId::new(id.clone())
            .map_err(|e| DbError::Decode { what: "agent id", detail: format!("{id}: {e}") })?,
        name: row.try_get(1)?,
        cert_serial: row.try_get(2)?,
        cert_not_after: UnixMillis(row.try_get(3)?),
        revoked_at: row.try_get::<Option<i64>, _>(4)?.map(UnixMillis),
        acked_through: Seq(row.try_get::<i64, _>(5)? as u64),
        last_seen_at: row.try_get::<Option<i64>, _>(6)?.map(UnixMillis),
    })
}

/// `($1, …, $c), ($c+1, …), …`: the placeholders of `rows` rows of `columns` values, for a
/// multi-row `INSERT`. `sqlx::QueryBuilder` writes `?` for the Any driver, which PostgreSQL
/// refuses; `$N` suits both backends.
/// Stores a command's outcome on any executor (the pool, or the ingest transaction); the
/// first outcome wins.
/// Records the outcome `agent` reported for a command it was sent (a result naming another
/// agent's command changes nothing).
async fn record_outcome_on<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    agent: &AgentId,
    id: CommandId,
    outcome: &CommandOutcome,
    at: UnixMillis,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE commands SET outcome = $1, outcome_at = $2 WHERE id = $3 AND agent_id = $4 \
         AND outcome IS NULL",
    )
    .bind(outcome_text(outcome))
    .bind(at.0)
    .bind(id.to_string())
    .bind(agent.as_str())
    .execute(executor)
    .await?;
    Ok(())
}

/// The SQLite writer: everything waiting, from every agent, in one transaction.
async fn sqlite_writer(pool: AnyPool, mut jobs: tokio::sync::mpsc::Receiver<IngestJob>) {
    while let Some(first) = jobs.recv().await {
        let mut records = first.records.len();
        let mut batch = vec![first];
        while records < GROUP_COMMIT_RECORDS {
            match jobs.try_recv() {
                Ok(job) => {
                    records += job.records.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let result = async {
            // The write lock at once: a deferred transaction that read first would fail at its
            // first write if another connection (the API, the scheduler) wrote meanwhile.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut watermarks = Vec::with_capacity(batch.len());
            for job in &batch {
                watermarks.push(
                    ingest_in(&mut tx, &job.agent, &job.records, job.received_at, &job.stored)
                        .await?,
                );
            }
            tx.commit().await?;
            Ok::<_, DbError>(watermarks)
        };
        // A panic while projecting one batch fails that batch (rolled back: the transaction
        // is dropped) and leaves the writer serving every other agent; the hub's panic hook
        // has logged it.
        let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result))
            .await
            .unwrap_or_else(|payload| {
                let what = crate::supervise::message(payload.as_ref()).to_owned();
                Err(DbError::Ingest(format!("the ingest panicked: {what}")))
            });
        match result {
            Ok(watermarks) => {
                for (job, watermark) in batch.into_iter().zip(watermarks) {
                    let _ = job.reply.send(Ok(watermark));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// A record's body as the ingest log keeps it: a snapshot chunk without its image data,
/// which lives on disk.
fn log_body(body: &RecordBody) -> Vec<u8> {
    match body {
        RecordBody::Snapshot(chunk) => {
            let chunk = proto::SnapshotChunk { data: Vec::new(), ..chunk.clone() };
            postcard::to_stdvec(&RecordBody::Snapshot(chunk)).unwrap_or_default()
        }
        body => postcard::to_stdvec(body).unwrap_or_default(),
    }
}

/// One agent's batch inside a transaction; returns the agent's watermark as of it.
async fn ingest_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    agent: &AgentId,
    records: &[Record],
    received_at: UnixMillis,
    stored: &[StoredSnapshot],
) -> Result<Ingested, DbError> {
    let Some(last) = records.last().map(|r| r.seq) else {
        return Err(DbError::Ingest("an empty batch".into()));
    };
    // Rows of 7 parameters; SQLite allows 32766 parameters per statement.
    let chunks: Vec<&[Record]> = records.chunks(1000).collect();
    let backend = backend_of(tx);
    execute_overlapped(tx, chunks.len(), |i| {
        let chunk = chunks[i];
        let sql = format!(
            "INSERT INTO records (agent_id, seq, observed_at, received_at, kind, printer_id, \
             body) VALUES {} ON CONFLICT (agent_id, seq) DO NOTHING",
            values_for(backend, chunk.len(), 7)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for record in chunk {
            let (kind, printer) = describe(&record.body);
            query = query
                .bind(agent.as_str().to_owned())
                .bind(record.seq.0 as i64)
                .bind(record.observed_at.0)
                .bind(received_at.0)
                .bind(kind)
                .bind(printer)
                .bind(log_body(&record.body));
        }
        query
    })
    .await?;
    sqlx::query(
        "UPDATE agents SET acked_through = $1, last_seen_at = $2 \
         WHERE id = $3 AND acked_through < $1",
    )
    .bind(last.0 as i64)
    .bind(received_at.0)
    .bind(agent.as_str())
    .execute(&mut **tx)
    .await?;
    let projected = projection::project(tx, agent, records, stored, received_at).await?;
    let watermark = sqlx::query("SELECT acked_through FROM agents WHERE id = $1")
        .bind(agent.as_str())
        .fetch_one(&mut **tx)
        .await?
        .try_get::<i64, _>(0)?;
    Ok(Ingested {
        watermark: Seq(watermark as u64),
        refused: projected.refused,
        event_ids: projected.event_ids,
        jobs: projected.jobs,
        followed: projected.followed,
    })
}

fn numbered_values(rows: usize, columns: usize) -> String {
    let row = |r: usize| {
        let params: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
        format!("({})", params.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// The `VALUES` rows of a multi-row insert in the placeholders the backend wants: numbered
/// (`$1`) for PostgreSQL, which refuses `?`; anonymous (`?`) for SQLite, which resolves each
/// `$N` by name (a linear search: thousands of them made a batch insert 25 times slower).
fn values_for(backend: Backend, rows: usize, columns: usize) -> String {
    match backend {
        Backend::Sqlite => {
            let row = format!("({})", vec!["?"; columns].join(", "));
            vec![row; rows].join(", ")
        }
        Backend::Postgres => numbered_values(rows, columns),
    }
}

/// The backend a transaction runs on.
fn backend_of(tx: &sqlx::Transaction<'_, sqlx::Any>) -> Backend {
    if tx.backend_name() == "SQLite" { Backend::Sqlite } else { Backend::Postgres }
}

/// Executes `count` statements, `statement(0)` to `statement(count - 1)`, in order, building
/// each while the one before it runs; returns the rows they changed together.
///
/// On SQLite the driver runs a statement on its own thread while the writer's task waits:
/// encoding and binding the next thousand rows there, instead of after, takes the writer's
/// own work (a third of the ingest's time) off the database's path.
async fn execute_overlapped<'q>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    count: usize,
    mut statement: impl FnMut(usize) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<u64, DbError> {
    let mut changed = 0;
    let mut next = (count > 0).then(|| statement(0));
    let mut built = 1;
    while let Some(query) = next {
        let build_next = async { (built < count).then(|| statement(built)) };
        let (done, following) =
            futures_util::future::join(query.execute(&mut **tx), build_next).await;
        changed += done?.rows_affected();
        next = following;
        built += 1;
    }
    Ok(changed)
}

/// The record's kind and printer, for queries that do not decode bodies.
fn describe(body: &RecordBody) -> (&'static str, Option<String>) {
    match body {
        RecordBody::Telemetry(t) => ("telemetry", Some(t.printer.to_string())),
        RecordBody::TelemetryV2(t) => ("telemetry", Some(t.printer.to_string())),
        RecordBody::PrinterEvent(e) => ("event", Some(e.printer.to_string())),
        RecordBody::Snapshot(s) => ("snapshot", Some(s.printer.to_string())),
        RecordBody::AgentHealth(_)
        | RecordBody::AgentHealthV2(_)
        | RecordBody::AgentHealthV3(_) => ("health", None),
        RecordBody::CommandResult(r) => ("command_result", Some(r.printer.to_string())),
        RecordBody::CameraHealth(c) => ("camera_health", Some(c.printer.to_string())),
        RecordBody::PrintersApplied(_) => ("printers_applied", None),
        RecordBody::Discovered(_) => ("discovered", None),
    }
}

/// A command outcome as one line of text.
pub fn outcome_text(outcome: &CommandOutcome) -> String {
    match outcome {
        CommandOutcome::Succeeded => "succeeded".into(),
        CommandOutcome::Refused { reason } => format!("refused: {reason}"),
        CommandOutcome::TimedOut => "timed_out".into(),
        CommandOutcome::Expired => "expired".into(),
        CommandOutcome::PreconditionFailed { detail, .. } => {
            format!("precondition_failed: {detail}")
        }
        CommandOutcome::ReadOnly => "read_only".into(),
        CommandOutcome::Unsupported { detail } => format!("unsupported: {detail}"),
        CommandOutcome::Failed { detail } => format!("failed: {detail}"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A database URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_values_have_numbered_placeholders() {
        assert_eq!(numbered_values(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact("postgres://kitt:secret@db/kitt"), "postgres://kitt:***@db/kitt");
        assert_eq!(redact("sqlite:///var/lib/kitt.db"), "sqlite:///var/lib/kitt.db");
    }
}
