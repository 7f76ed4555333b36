//! The cluster's storage (migration 0019, PostgreSQL): the log every replica reads, the
//! replicas' heartbeats, which replica each agent is connected to, and the shared CA.

use sqlx::Row;

use super::{Db, DbError};

/// The advisory lock every writer of the log takes, so ids follow commit order: a reader
/// that read up to an id never later finds a smaller one committed.
const LOG_LOCK: i64 = 0x006b_6974_746c_6f67; // "kittlog"

/// The channel a replica notifies after writing to the log (no payload: a doorbell).
pub const CHANNEL: &str = "kitt_cluster";

/// A row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    pub origin: String,
    pub body: String,
}

/// Which replicas [`Db::retire`] forgets.
#[derive(Debug, Clone, Copy)]
enum Retire<'a> {
    /// Those whose heartbeat is older than this many ms.
    Stale(i64),
    /// This one (leaving).
    Named(&'a str),
}

/// A replica as `cluster_replicas` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// `<replica_name>/<per-start suffix>`.
    pub instance: String,
    pub http_addr: String,
    pub sync_addr: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Agents connected to it.
    pub agents: i64,
    pub alive: bool,
}

/// A session advisory lock held on a connection of its own (PostgreSQL releases it when the
/// connection ends: a replica killed, or the database failing over).
#[derive(Debug)]
pub struct SessionLock {
    connection: sqlx::pool::PoolConnection<sqlx::Any>,
}

impl SessionLock {
    /// Whether the connection holding the lock still works.
    pub async fn alive(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut *self.connection).await.is_ok()
    }
}

impl Db {
    /// Takes the session advisory lock `key` if no one holds it.
    pub async fn try_session_lock(&self, key: i64) -> Result<Option<SessionLock>, DbError> {
        let mut connection = self.pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await?;
        if got {
            // Never back into the pool holding the lock: closed when dropped.
            Ok(Some(SessionLock { connection }))
        } else {
            Ok(None)
        }
    }

    /// Appends rows to the log in one transaction, in order, and rings the doorbell: their
    /// ids. `presence` (agent, connected) records in the same transaction, under the same
    /// lock, where agents connected to `origin` or left it: so an agent's `online` row and
    /// its presence, and a sweep's `offline` rows and its removals ([`Db::forget_replica`]),
    /// are in one order.
    pub async fn append_cluster_log(
        &self,
        origin: &str,
        at: i64,
        bodies: &[String],
        presence: &[(String, bool)],
    ) -> Result<Vec<i64>, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOG_LOCK).execute(&mut *tx).await?;
        for (agent, online) in presence {
            if *online {
                sqlx::query(
                    "INSERT INTO cluster_presence (agent_id, replica, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (agent_id) DO UPDATE SET replica = excluded.replica, since = excluded.since",
                )
                .bind(agent)
                .bind(origin)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query("DELETE FROM cluster_presence WHERE agent_id = $1 AND replica = $2")
                    .bind(agent)
                    .bind(origin)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut ids = Vec::with_capacity(bodies.len());
        for body in bodies {
            ids.push(insert_log_row(&mut tx, origin, at, body).await?);
        }
        // Delivered at commit, to every listener.
        sqlx::query(sqlx::AssertSqlSafe(format!("NOTIFY {CHANNEL}"))).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// The log after `after`, oldest first, at most `limit` rows.
    pub async fn cluster_log_after(&self, after: i64, limit: i64) -> Result<Vec<LogRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, origin, body FROM cluster_log WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(LogRow { id: r.try_get(0)?, origin: r.try_get(1)?, body: r.try_get(2)? }))
            .collect()
    }

    /// The log's newest id (0 when empty).
    pub async fn cluster_log_head(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM cluster_log")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Forgets log rows written before `before`.
    pub async fn prune_cluster_log(&self, before: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM cluster_log WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// This replica is alive (and where it listens).
    pub async fn replica_heartbeat(
        &self,
        name: &str,
        http_addr: &str,
        sync_addr: &str,
        started_at: i64,
    ) -> Result<(), DbError> {
        let sql = format!(
            "INSERT INTO cluster_replicas (name, http_addr, sync_addr, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, {now}) ON CONFLICT (name) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, http_addr = excluded.http_addr, \
             sync_addr = excluded.sync_addr",
            now = self.now_sql()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(http_addr)
            .bind(sync_addr)
            .bind(started_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the replicas whose heartbeat is older than `stale_ms` on the database's clock
    /// ([`Db::forget_replica`] for each): the agents they held, each with its replica.
    pub async fn forget_stale_replicas(
        &self,
        stale_ms: i64,
        offline: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<Vec<(String, String)>, DbError> {
        self.retire(Retire::Stale(stale_ms), offline).await
    }

    /// Every registered replica with its heartbeat, whether it is alive (a heartbeat within
    /// `stale_ms` on the database's clock) and how many agents are connected to it; and the
    /// database's clock. Empty on SQLite (one hub).
    pub async fn cluster_replicas(&self, stale_ms: i64) -> Result<(i64, Vec<ReplicaRow>), DbError> {
        let now = self.clock().await?;
        let rows = sqlx::query(
            "SELECT r.name, r.http_addr, r.sync_addr, r.started_at, r.heartbeat_at, \
             (SELECT COUNT(*) FROM cluster_presence p WHERE p.replica = r.name) \
             FROM cluster_replicas r ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let replicas = rows
            .iter()
            .map(|row| {
                let heartbeat_at: i64 = row.try_get(4)?;
                Ok(ReplicaRow {
                    instance: row.try_get(0)?,
                    http_addr: row.try_get(1)?,
                    sync_addr: row.try_get(2)?,
                    started_at: row.try_get(3)?,
                    heartbeat_at,
                    agents: row.try_get(5)?,
                    alive: heartbeat_at >= now - stale_ms,
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok((now, replicas))
    }

    /// The HTTP address a replica registered (`<name>/<suffix>`), if it is alive.
    pub async fn replica_http_addr(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(sqlx::query_scalar("SELECT http_addr FROM cluster_replicas WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A replica leaving: it and where its agents were connected are forgotten, and each of
    /// those agents gets an `offline` row (its `origin` the replica it was connected to, the
    /// body `offline(agent)`) in the same transaction, under the log's lock. An agent that
    /// reconnected to another replica first is connected there in the table and is not said
    /// offline after it; only one replica's sweep says it. The agents it held.
    pub async fn forget_replica(
        &self,
        name: &str,
        offline: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<Vec<(String, String)>, DbError> {
        self.retire(Retire::Named(name), offline).await
    }

    async fn retire(
        &self,
        which: Retire<'_>,
        offline: &(dyn Fn(&str) -> String + Sync),
    ) -> Result<Vec<(String, String)>, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOG_LOCK).execute(&mut *tx).await?;
        let names: Vec<String> = match which {
            // Locked, so a heartbeat arriving meanwhile waits and finds its row gone.
            Retire::Stale(stale_ms) => {
                let sql = format!(
                    "SELECT name FROM cluster_replicas WHERE heartbeat_at < {} - $1 FOR UPDATE",
                    self.now_sql()
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(stale_ms)
                    .fetch_all(&mut *tx)
                    .await?
            }
            // Registered or not: its presence rows go all the same.
            Retire::Named(name) => vec![name.to_owned()],
        };
        let at = proto::UnixMillis::now().0;
        let mut gone = Vec::new();
        for replica in &names {
            let agents: Vec<String> = sqlx::query_scalar(
                "DELETE FROM cluster_presence WHERE replica = $1 RETURNING agent_id",
            )
            .bind(replica)
            .fetch_all(&mut *tx)
            .await?;
            for agent in agents {
                insert_log_row(&mut tx, replica, at, &offline(&agent)).await?;
                gone.push((agent, replica.clone()));
            }
            sqlx::query("DELETE FROM cluster_replicas WHERE name = $1")
                .bind(replica)
                .execute(&mut *tx)
                .await?;
        }
        if !gone.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!("NOTIFY {CHANNEL}"))).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(gone)
    }

    /// Where each agent is connected: (agent, replica), replicas alive only.
    pub async fn cluster_presence(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT p.agent_id, p.replica FROM cluster_presence p \
             JOIN cluster_replicas r ON r.name = p.replica",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// The shared CA (certificate and key, PEM), if a replica put one.
    pub async fn cluster_ca(&self) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT cert_pem, key_pem FROM cluster_ca WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Offers a CA as the shared one; the first offered stays.
    pub async fn offer_cluster_ca(
        &self,
        cert_pem: &str,
        key_pem: &str,
        at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO cluster_ca (id, cert_pem, key_pem, created_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(cert_pem)
        .bind(key_pem)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn insert_log_row(
    tx: &mut sqlx::AnyConnection,
    origin: &str,
    at: i64,
    body: &str,
) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO cluster_log (origin, at, body) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(origin)
    .bind(at)
    .bind(body)
    .fetch_one(&mut *tx)
    .await?)
}
