//! Ingest load for benchmarks: agents whose outboxes are already full of events, enrolled
//! with one hub or spread over several replicas, all syncing at once; the events per second
//! until every agent's last event is acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use edge_agent::sync::client::{SyncClient, SyncClientConfig, SyncStatus};
use hub::app::RunningHub;
use proto::{AgentId, PrinterEvent, PrinterEventKind, PrinterId, RecordBody, UnixMillis};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// `agents` agents named `bench-NNN`, each with `per_agent` events, agent `i` syncing to
/// `hubs[i % hubs.len()]` (replicas of one hub share its database); the events per second.
/// Panics unless every event is stored.
pub async fn ingest(hubs: &[&RunningHub], agents: u64, per_agent: u64) -> f64 {
    let states: Vec<tempfile::TempDir> =
        (0..agents).map(|_| tempfile::tempdir().expect("a state directory")).collect();
    let mut clients = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let hub = hubs[i % hubs.len()];
        let name = format!("bench-{i:03}");
        let (token, _) = hub::sync::token::create(
            &hub.state.db,
            &hub.sync.ca_fingerprint(),
            Some(&name),
            Duration::from_secs(600),
            UnixMillis::now(),
        )
        .await
        .expect("a token");
        let identity = edge_agent::sync::enroll::enroll(
            &hub.sync_addr.to_string(),
            &token.to_string(),
            state.path(),
        )
        .await
        .expect("enrolled");
        let (mut outbox, _) =
            Outbox::open(OutboxConfig::new(state.path().join("outbox.db"))).expect("an outbox");
        let printer = PrinterId::new(format!("01P00A39180{i:04}")).expect("a serial");
        for n in 0..per_agent {
            let kind = PrinterEventKind::Unreachable { reason: format!("bench {n}") };
            outbox
                .append(
                    UnixMillis(1_764_000_000_000 + n as i64),
                    RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind }),
                )
                .expect("appended");
        }
        outbox.commit().expect("committed");
        clients.push((identity, outbox, state.path().to_owned()));
    }
    let total = agents * per_agent;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let mut statuses = Vec::new();
    let command_tasks = tokio_util::task::TaskTracker::new();
    for (identity, outbox, dir) in clients {
        let outbox = Arc::new(std::sync::Mutex::new(outbox));
        // No printers: the hub sends no commands here, and would get refusals.
        let (records, _) = mpsc::channel(1);
        let commands = edge_agent::commands::start(
            Default::default(),
            outbox.clone(),
            records,
            Default::default(),
            Default::default(),
            None,
            &command_tasks,
        );
        let (client, status) = SyncClient::new(
            SyncClientConfig::new(dir),
            identity,
            outbox,
            Arc::new(Notify::new()),
            commands,
            Vec::new(),
        );
        tokio::spawn(client.run(stop.clone()));
        statuses.push(status);
    }
    let last = proto::Seq(per_agent);
    for (i, status) in statuses.iter_mut().enumerate() {
        let found = tokio::time::timeout(
            Duration::from_secs(600),
            status.wait_for(
                |s| matches!(s, SyncStatus::Connected { acked_through, .. } if *acked_through >= last),
            ),
        )
        .await;
        assert!(matches!(found, Ok(Ok(_))), "agent {i} did not finish");
    }
    let elapsed = started.elapsed();
    let mut stored = 0;
    for i in 0..agents {
        let agent = AgentId::new(format!("bench-{i:03}")).expect("an agent id");
        stored += hubs[0].state.db.record_count(&agent).await.expect("a count");
    }
    assert_eq!(stored, total);
    stop.cancel();
    total as f64 / elapsed.as_secs_f64()
}
