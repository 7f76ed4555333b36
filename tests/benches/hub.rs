//! Hub benchmarks: ingest from 100 agents into SQLite and PostgreSQL, printer report to
//! WebSocket latency, and start-to-ready of the `kitt-hub` binary.
//!
//! Reproduce with `cargo xtask bench`, or
//! `cargo build --release --bins && cargo bench -p tests --bench hub`.
//! `KITT_BENCH_AGENTS` (default 100) and `KITT_BENCH_EVENTS_PER_AGENT` (default 3000) size
//! the ingest run. PostgreSQL runs twice: on the throwaway test cluster (`fsync=off`), an
//! upper bound, and on a cluster of its own with PostgreSQL's durability defaults (`fsync`,
//! `synchronous_commit` and `full_page_writes` on), what a real server does.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use edge_agent::sync::client::{SyncClient, SyncClientConfig, SyncStatus};
use futures_util::StreamExt;
use hub::config::{HubConfig, Overrides};
use printer_sim::Simulator;
use printer_sim::config::{Model, SimConfig};
use proto::{AgentId, PrinterEvent, PrinterEventKind, PrinterId, RecordBody, UnixMillis};
use tests::fleet::{TestAgent, agent_config};
use tests::process::{Process, bin};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn start_hub(
    database_url: Option<String>,
) -> (hub::app::RunningHub, tempfile::TempDir, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().to_owned()),
        database_url,
        http_listen: Some("127.0.0.1:0".into()),
        sync_listen: Some("127.0.0.1:0".into()),
    };
    let config = HubConfig::load(None, Vec::new(), &overrides).unwrap();
    let shutdown = CancellationToken::new();
    let hub = hub::app::start(config, shutdown.clone()).await.unwrap();
    (hub, dir, shutdown)
}

/// Ingest: `agents` agents, each with `per_agent` events in its outbox, all syncing at once.
async fn ingest(label: &str, key: &str, database_url: Option<String>, agents: u64, per_agent: u64) {
    let (hub, _dir, shutdown) = start_hub(database_url).await;
    let states: Vec<tempfile::TempDir> =
        (0..agents).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut clients = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let name = format!("bench-{i:03}");
        let (token, _) = hub::sync::token::create(
            &hub.state.db,
            &hub.sync.ca_fingerprint(),
            Some(&name),
            Duration::from_secs(600),
            UnixMillis::now(),
        )
        .await
        .unwrap();
        let identity = edge_agent::sync::enroll::enroll(
            &hub.sync_addr.to_string(),
            &token.to_string(),
            state.path(),
        )
        .await
        .unwrap();
        let (mut outbox, _) =
            Outbox::open(OutboxConfig::new(state.path().join("outbox.db"))).unwrap();
        let printer = PrinterId::new(format!("01P00A39180{i:04}")).unwrap();
        for n in 0..per_agent {
            let kind = PrinterEventKind::Unreachable { reason: format!("bench {n}") };
            outbox
                .append(
                    UnixMillis(1_764_000_000_000 + n as i64),
                    RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind }),
                )
                .unwrap();
        }
        outbox.commit().unwrap();
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
        stored += hub
            .state
            .db
            .record_count(&AgentId::new(format!("bench-{i:03}")).unwrap())
            .await
            .unwrap();
    }
    assert_eq!(stored, total);
    println!(
        "hub ingest ({label}): {agents} agents x {per_agent} events = {total} in {:.2} s = {:.0} events/s (target >= 50000/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    tests::metric(key, total as f64 / elapsed.as_secs_f64());
    stop.cancel();
    shutdown.cancel();
    hub.wait().await;
}

/// Report to WebSocket: the age of each printer-state update when it reaches a WebSocket
/// client, measured from when the agent received the printer's report.
async fn latency() {
    let (hub, _dir, shutdown) = start_hub(None).await;
    let serial = "01P00A391800555";
    let config = SimConfig::new(serial.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
        .with_intervals(Duration::from_millis(100), Duration::from_millis(100));
    let sim = Simulator::start(config).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let (token, _) = hub::sync::token::create(
        &hub.state.db,
        &hub.sync.ca_fingerprint(),
        Some("latency"),
        Duration::from_secs(600),
        UnixMillis::now(),
    )
    .await
    .unwrap();
    edge_agent::sync::enroll::enroll(&hub.sync_addr.to_string(), &token.to_string(), state.path())
        .await
        .unwrap();
    let mut config = agent_config(state.path(), Some(&sim), serial);
    config.telemetry_interval = Duration::from_millis(100);
    let mut agent = TestAgent::start(config);
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    let hash = hub::api::auth::hash_password("benchmark password").unwrap();
    hub.state.db.insert_user("bench", &hash, "viewer", UnixMillis::now()).await.unwrap();
    let (api_token, _) =
        hub::api::auth::create_api_token(&hub.state.db, "bench", None).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/api/v1/ws", hub.http_addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {api_token}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let socket = AsyncMutex::new(socket);
    sim.start_job("latency", 100_000).await.unwrap();
    let mut ages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while ages.len() < 300 && Instant::now() < deadline {
        let Some(Ok(message)) = socket.lock().await.next().await else { break };
        let Ok(text) = message.to_text() else { continue };
        let update: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if update["type"] == "printer_state" {
            let at = update["at"].as_i64().unwrap_or(0);
            ages.push((UnixMillis::now().0 - at) as f64);
        }
    }
    ages.sort_by(f64::total_cmp);
    let pick = |q: f64| ages[((ages.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "report to WebSocket: p50 {:.1} ms, p99 {:.1} ms over {} state updates (agent and hub on one machine; target p99 <= 50 ms)",
        pick(0.5),
        pick(0.99),
        ages.len()
    );
    tests::metric("ws_latency_p50_ms", pick(0.5));
    tests::metric("ws_latency_p99_ms", pick(0.99));
    agent.stop().await;
    sim.shutdown().await;
    shutdown.cancel();
    hub.wait().await;
}

/// Start to ready: the release binary, from spawn to its first `200` on `/readyz`.
fn start_to_ready() {
    let mut times = Vec::new();
    let program = bin("kitt-hub");
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = Instant::now();
        let hub = Process::spawn(
            Command::new(&program)
                .args(["serve", "--data-dir"])
                .arg(dir.path())
                .args([
                    "--http-listen",
                    &format!("127.0.0.1:{port}"),
                    "--sync-listen",
                    "127.0.0.1:0",
                ])
                .env("KITT_LOG", "error"),
        );
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never ready");
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        hub.terminate();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "hub start to ready (SQLite, fresh data directory, release binary): median {:.0} ms, max {:.0} ms over 5 starts (target <= 500 ms)",
        times[2], times[4]
    );
    tests::metric("hub_start_to_ready_ms", times[2]);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tests::init();
    let agents = env_number("KITT_BENCH_AGENTS", 100);
    let per_agent = env_number("KITT_BENCH_EVENTS_PER_AGENT", 3000);
    println!(
        "hub benchmark: cargo bench -p tests --bench hub (machine: {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    tokio::task::spawn_blocking(start_to_ready).await.unwrap();
    ingest("SQLite", "hub_ingest_sqlite", None, agents, per_agent).await;
    let url = tests::postgres::fresh_database().await;
    ingest("PostgreSQL, fsync off", "hub_ingest_postgres", Some(url), agents, per_agent).await;
    // What users run: a cluster with PostgreSQL's own durability settings, so every
    // acknowledged batch is on disk.
    let durable = tokio::task::spawn_blocking(tests::postgres::Cluster::start_private)
        .await
        .unwrap()
        .unwrap();
    let url = durable.fresh_database().await;
    ingest(
        "PostgreSQL, fsync and synchronous_commit on",
        "hub_ingest_postgres_durable",
        Some(url),
        agents,
        per_agent,
    )
    .await;
    drop(durable);
    latency().await;
}
