//! Several `kitt-hub serve` processes on one PostgreSQL behave as one hub (issue 21).
//!
//! What lived in one process's memory crosses between replicas through the database:
//! - **Live updates and signals** go through `cluster_log` (`db/cluster.rs`). A replica hands
//!   each update it would have broadcast (and each signal for an agent's connection: commands,
//!   files or managed printers waiting, a revocation) to its writer, which appends them under
//!   one advisory lock (so ids follow commit order) and rings `NOTIFY kitt_cluster`. Every
//!   replica's reader, woken by the notification (or after a second without one, in case one
//!   was lost while its listening connection came back), reads the log from its cursor and
//!   delivers each update to its own subscribers with the row's id as the cursor; the
//!   replica an update came from too, so dashboards see the same updates, in the same order,
//!   with the same cursors, whichever replica they are connected to (`GET /ws?after=`
//!   resumes on another replica). A signal is acted on by the replica the agent is connected
//!   to. The log is kept an hour.
//! - **Presence**: `cluster_presence` says which replica each agent is connected to, and
//!   `cluster_replicas` holds each replica's heartbeat (every 2 s). An agent connected to a
//!   replica whose heartbeat stopped for 10 s (killed, frozen, cut off) is offline: the
//!   first replica whose sweep notices removes where its agents were connected and appends
//!   their `offline` rows in one transaction under the log's lock, as presence changes are
//!   always written (with the rows that say them), so an agent that already reconnected to
//!   another replica is not said offline after it. The agent reconnects to another.
//! - **The CA** is in `cluster_ca`: the first replica puts its own there, the others use it
//!   (`app::open_storage`), so agents trust every replica and enrollment tokens name one CA.
//! - **The scheduler** needs nothing more: its claims and leases are rows (`scheduler/`).
//! - **The queue's dispatcher** runs on one replica at a time (a session advisory lock,
//!   `service::queue`).
//!
//! A single hub (SQLite, or PostgreSQL without replicas) runs the same code with one replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::db::cluster::CHANNEL;
use crate::live::{AgentSignal, LiveHub, LiveUpdate, Outgoing};

/// How often a replica says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A replica silent this long is gone: its agents are offline.
pub const STALE_MS: i64 = 10_000;
/// How long the log keeps a row.
pub const LOG_KEEP_MS: i64 = 3_600_000;
/// The most rows read at once.
const BATCH: i64 = 1000;

/// A row's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Body {
    Live(LiveUpdate),
    Signal(AgentSignal),
    /// For the Spoolman websockets (a hub before these skips them).
    Inventory(crate::inventory::Change),
    Spools(Vec<i64>),
    /// A user name's failed logins, forgotten.
    LoginsForgiven(String),
}

/// The log row that says `agent` is offline.
fn offline_body(agent: &str) -> String {
    let update = LiveUpdate::Agent { agent: agent.to_owned(), online: false };
    serde_json::to_string(&Body::Live(update)).unwrap_or_default()
}

/// This replica's part in the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    db: Db,
    url: String,
    /// This process: its replica name and a per-start suffix.
    pub me: String,
    live: LiveHub,
    http_addr: String,
    sync_addr: String,
    /// When an update of ours was received, by its log id (for the report → WebSocket
    /// latency), until it is delivered.
    pending: Arc<Mutex<HashMap<i64, Instant>>>,
}

impl Cluster {
    /// Joins the cluster on `db` (PostgreSQL at `url`) as `me`: from now on `live` hands
    /// updates and signals to the log.
    pub fn join(
        db: Db,
        url: &str,
        me: &str,
        live: &LiveHub,
        http_addr: &str,
        sync_addr: std::net::SocketAddr,
    ) -> (Cluster, mpsc::UnboundedReceiver<Outgoing>) {
        let (relay, outgoing) = mpsc::unbounded_channel();
        live.relay_to(relay);
        let cluster = Cluster {
            db,
            url: url.to_owned(),
            me: me.to_owned(),
            live: live.clone(),
            http_addr: http_addr.to_owned(),
            sync_addr: sync_addr.to_string(),
            pending: Arc::new(Mutex::new(HashMap::new())),
        };
        (cluster, outgoing)
    }

    /// Runs the writer, the reader and the heartbeat until `shutdown`; then this replica
    /// leaves (its agents' presence goes with it).
    pub async fn run(
        self,
        outgoing: mpsc::UnboundedReceiver<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let started = proto::UnixMillis::now().0;
        if let Err(error) = self.beat(started).await {
            tracing::warn!(%error, "The cluster heartbeat failed; trying again.");
        }
        let head = match self.db.cluster_log_head().await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "Cannot read the cluster's log; starting from its end later.");
                0
            }
        };
        // What came before this replica it cannot give to a dashboard that reconnects.
        self.live.complete_after(head as u64);
        self.load_presence().await;
        let writer = self.clone().write(outgoing, shutdown.clone());
        let reader = self.clone().read(head, shutdown.clone());
        let beat = async {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.beat(started).await {
                    tracing::warn!(%error, "The cluster heartbeat failed; trying again.");
                }
                self.sweep().await;
            }
        };
        tokio::join!(writer, reader, beat);
        if let Err(error) = self.db.forget_replica(&self.me, &offline_body).await {
            tracing::warn!(%error, "Cannot tell the cluster this replica left; its heartbeat will lapse.");
        }
    }

    async fn beat(&self, started: i64) -> Result<(), crate::db::DbError> {
        self.db.replica_heartbeat(&self.me, &self.http_addr, &self.sync_addr, started).await
    }

    /// Where agents are connected, as the database says, for a replica that just started.
    async fn load_presence(&self) {
        match self.db.cluster_presence().await {
            Ok(presence) => {
                for (agent, replica) in presence {
                    if replica != self.me {
                        self.live.set_elsewhere(&agent, Some(&replica));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "Cannot read where agents are connected."),
        }
    }

    /// Replicas whose heartbeat stopped: forgotten, and their agents said offline through the
    /// log by whichever replica's sweep gets there first (in the transaction that removes
    /// where they were connected, so an agent that already reconnected elsewhere is not).
    async fn sweep(&self) {
        match self.db.forget_stale_replicas(STALE_MS, &offline_body).await {
            Ok(gone) => {
                for (agent, replica) in gone {
                    tracing::warn!(%agent, %replica, "The agent's replica stopped answering; the agent is offline until it reconnects.");
                }
            }
            Err(error) => tracing::warn!(%error, "Cannot forget replicas that stopped."),
        }
    }

    /// Appends what this replica hands over, in order, a batch at a time.
    async fn write(
        self,
        mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let mut batch = Vec::new();
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                first = outgoing.recv() => match first {
                    Some(first) => first,
                    None => return,
                },
            };
            batch.push(first);
            while batch.len() < BATCH as usize {
                match outgoing.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let mut bodies = Vec::with_capacity(batch.len());
            let mut received = Vec::with_capacity(batch.len());
            for item in &batch {
                let (body, at) = match item {
                    Outgoing::Live(update, at) => (Body::Live(update.clone()), Some(*at)),
                    Outgoing::Signal(signal) => (Body::Signal(signal.clone()), None),
                    Outgoing::Inventory(change) => (Body::Inventory(change.clone()), None),
                    Outgoing::Spools(ids) => (Body::Spools(ids.clone()), None),
                    Outgoing::LoginsForgiven(name) => (Body::LoginsForgiven(name.clone()), None),
                };
                bodies.push(serde_json::to_string(&body).unwrap_or_default());
                received.push(at);
            }
            // Where agents are connected, written with the rows that say so.
            let presence: Vec<(String, bool)> = batch
                .iter()
                .filter_map(|item| match item {
                    Outgoing::Live(LiveUpdate::Agent { agent, online }, _) => {
                        Some((agent.clone(), *online))
                    }
                    _ => None,
                })
                .collect();
            let mut tries = 0;
            loop {
                match self
                    .db
                    .append_cluster_log(&self.me, proto::UnixMillis::now().0, &bodies, &presence)
                    .await
                {
                    Ok(ids) => {
                        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                        if pending.len() > 10_000 {
                            // Read before they were noted (the reader was quick): forgotten.
                            pending.clear();
                        }
                        for (id, at) in ids.into_iter().zip(&received) {
                            if let Some(at) = at {
                                pending.insert(id, *at);
                            }
                        }
                        break;
                    }
                    Err(error) => {
                        tries += 1;
                        // The database away (a failover): keep them and try again; give up
                        // after a minute, since live updates are news, not records.
                        if tries > 120 || shutdown.is_cancelled() {
                            tracing::warn!(%error, dropped = bodies.len(), "Cannot write live updates to the cluster's log; dropped them (dashboards read everything again when they reconnect).");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            batch.clear();
        }
    }

    /// Reads the log from `cursor` on, woken by the doorbell.
    async fn read(self, mut cursor: i64, shutdown: CancellationToken) {
        let mut listener = None;
        let mut pruned = Instant::now();
        loop {
            if listener.is_none() {
                match sqlx::postgres::PgListener::connect(&self.url).await {
                    Ok(mut connected) => match connected.listen(CHANNEL).await {
                        Ok(()) => listener = Some(connected),
                        Err(error) => {
                            tracing::warn!(%error, "Cannot listen for the cluster's log.")
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "Cannot connect to listen for the cluster's log.")
                    }
                }
            }
            // Read up to date (after a (re)connection too: notifications may have been lost).
            loop {
                match self.db.cluster_log_after(cursor, BATCH).await {
                    Ok(rows) => {
                        let full = rows.len() as i64 == BATCH;
                        for row in rows {
                            cursor = row.id;
                            self.apply(row);
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot read the cluster's log; trying again.");
                        break;
                    }
                }
            }
            if pruned.elapsed() > Duration::from_secs(60) {
                pruned = Instant::now();
                let before = proto::UnixMillis::now().0 - LOG_KEEP_MS;
                if let Err(error) = self.db.prune_cluster_log(before).await {
                    tracing::debug!(%error, "Cannot prune the cluster's log.");
                }
            }
            let wait = async {
                match listener.as_mut() {
                    Some(connected) => match connected.try_recv().await {
                        Ok(Some(_)) => true,
                        // The connection was lost (and comes back at the next call): read.
                        Ok(None) => true,
                        Err(_) => false,
                    },
                    None => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        true
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                kept = wait => {
                    if !kept {
                        listener = None;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn apply(&self, row: crate::db::cluster::LogRow) {
        let body: Body = match serde_json::from_str(&row.body) {
            Ok(body) => body,
            Err(error) => {
                // Written by a newer hub: skipped, not fatal.
                tracing::debug!(%error, id = row.id, "A cluster log row this hub cannot read.");
                return;
            }
        };
        let ours = row.origin == self.me;
        match body {
            Body::Live(update) => {
                if !ours && let LiveUpdate::Agent { agent, online } = &update {
                    if *online {
                        self.live.set_elsewhere(agent, Some(&row.origin));
                    } else {
                        self.live.agent_left(agent, &row.origin);
                    }
                }
                let received = if ours {
                    let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    pending.remove(&row.id)
                } else {
                    None
                };
                self.live.deliver(update, received.unwrap_or_else(Instant::now), row.id as u64);
            }
            Body::Signal(signal) if !ours => self.live.signal_here(signal),
            Body::Inventory(change) if !ours => self.live.deliver_inventory(change),
            Body::Spools(ids) if !ours => self.live.deliver_spools(ids),
            Body::LoginsForgiven(name) if !ours => self.live.deliver_forgiven(name),
            // Ours were acted on here when they were made.
            Body::Signal(_) | Body::Inventory(_) | Body::Spools(_) | Body::LoginsForgiven(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Change, ChangeKind, Entity};

    /// The log's rows outlive a release: what one version writes, the next reads, and a
    /// kind of row an older replica does not know is one it skips (it fails to parse), not
    /// one it misreads.
    #[test]
    fn log_bodies_read_back_as_written_and_unknown_kinds_do_not_parse() {
        let change = Change {
            kind: ChangeKind::Deleted,
            entity: Entity::Spool,
            id: 7,
            payload: serde_json::json!({"id": 7, "filament": {"id": 2}, "comment": null}),
            date: "2026-12-04T19:00:00.123456Z".into(),
        };
        let bodies = [
            Body::Live(LiveUpdate::Agent { agent: "pi-1".into(), online: true }),
            Body::Inventory(change),
            Body::Spools(vec![7, 8]),
            Body::LoginsForgiven("bo".into()),
        ];
        for body in bodies {
            let text = serde_json::to_string(&body).unwrap();
            assert_eq!(serde_json::from_str::<Body>(&text).unwrap(), body, "{text}");
        }
        let text = serde_json::to_string(&Body::Spools(vec![1])).unwrap();
        assert_eq!(text, r#"{"spools":[1]}"#);
        assert!(serde_json::from_str::<Body>(r#"{"something_newer":{"x":1}}"#).is_err());
    }
}
