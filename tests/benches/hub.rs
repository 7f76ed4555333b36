//! Hub benchmarks: ingest from 100 agents into SQLite and PostgreSQL, printer report to
//! WebSocket latency, start-to-ready of the `kitt-hub` binary, and a login flood against it
//! (its memory, an ordinary API read's p99 and a real user's login while the flood runs).
//!
//! Reproduce with `cargo xtask bench`, or
//! `cargo build --release --bins && cargo bench -p tests --bench hub`.
//! `KITT_BENCH_AGENTS` (default 100) and `KITT_BENCH_EVENTS_PER_AGENT` (default 3000) size
//! the ingest run. PostgreSQL runs twice: on the throwaway test cluster (`fsync=off`), an
//! upper bound, and on a cluster of its own with PostgreSQL's durability defaults (`fsync`,
//! `synchronous_commit` and `full_page_writes` on), what a real server does.
//! `KITT_BENCH_FLOOD_S` (default 10) is how long the login flood lasts.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hub::config::{HubConfig, Overrides};
use proto::UnixMillis;
use tests::process::{Process, bin, memory_kb};
use tokio::sync::Mutex as AsyncMutex;
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
    let started = Instant::now();
    let rate = tests::ingest::ingest(&[&hub], agents, per_agent).await;
    let total = agents * per_agent;
    println!(
        "hub ingest ({label}): {agents} agents x {per_agent} events = {total} in {:.2} s = {rate:.0} events/s (target >= 50000/s)",
        started.elapsed().as_secs_f64(),
    );
    tests::metric(key, rate);
    shutdown.cancel();
    hub.wait().await;
}

/// Report to WebSocket: the age of each printer-state update when it reaches a WebSocket
/// client, measured from when the agent received the printer's report.
async fn latency() {
    let (hub, _dir, shutdown) = start_hub(None).await;
    let (sim, agent, _state) = tests::fleet::reporting_agent(&hub, "01P00A391800555").await;
    let socket = tests::fleet::viewer_socket(&hub).await;
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

/// One HTTP/1.1 request on a fresh connection from `source` (any 127.0.0.0/8 address is
/// this machine's loopback); returns the status and how long the exchange took.
async fn http(
    source: std::net::Ipv4Addr,
    hub: std::net::SocketAddr,
    request: &str,
) -> std::io::Result<(u16, Duration)> {
    tokio::time::timeout(Duration::from_secs(30), exchange(source, hub, request))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer in 30 s")))
}

async fn exchange(
    source: std::net::Ipv4Addr,
    hub: std::net::SocketAddr,
    request: &str,
) -> std::io::Result<(u16, Duration)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let mut stream = socket.connect(hub).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, started.elapsed()))
}

fn login_request(name: &str, password: &str) -> String {
    let body = serde_json::json!({"name": name, "password": password}).to_string();
    format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn p99(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[((times.len() as f64 - 1.0) * 0.99).round() as usize]
}

/// GET /api/v1/printers `n` times in a row; the times in ms.
async fn reads(hub: std::net::SocketAddr, token: &str, n: usize) -> Vec<f64> {
    let request = format!(
        "GET /api/v1/printers HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, took) = http([127, 0, 0, 1].into(), hub, &request).await.unwrap();
        assert_eq!(status, 200, "GET /api/v1/printers");
        times.push(took.as_secs_f64() * 1000.0);
    }
    times
}

/// A login flood against the release binary: 64 clients, each request from a new loopback
/// address with a new user name and a wrong password, for `KITT_BENCH_FLOOD_S` seconds.
/// Meanwhile one client reads GET /api/v1/printers in a row, and a real user logs in now
/// and then from addresses of its own. Reported: the hub's peak resident memory, the reads'
/// p99 beside the same reads with no flood, and the real user's slowest login beside one
/// login with no flood (about one hash).
async fn login_flood() {
    let flood_for = Duration::from_secs(env_number("KITT_BENCH_FLOOD_S", 10));
    let program = bin("kitt-hub");
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(&program)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("KITT_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "kitt-hub {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let added = cli(&["user", "add", "bench", "--role", "viewer"]);
    let password = added.trim().rsplit_once("password: ").unwrap().1.to_owned();
    let token = cli(&["user", "token", "bench"]).trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut hub = Process::spawn(
        Command::new(&program)
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--http-listen", &hub_addr.to_string(), "--sync-listen", "127.0.0.1:0"])
            .env("KITT_LOG", "error"),
    );
    let pid = hub.child.id();
    let started = Instant::now();
    let ready = "GET /readyz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n";
    while !http([127, 0, 0, 1].into(), hub_addr, ready).await.is_ok_and(|(status, _)| status == 200)
    {
        assert!(hub.is_running(), "the hub exited (its port taken meanwhile?)");
        assert!(started.elapsed() < Duration::from_secs(30), "the hub never got ready");
        tokio::task::yield_now().await;
    }
    let real_login = login_request("bench", &password);
    let (status, idle_login) = http([127, 0, 0, 2].into(), hub_addr, &real_login).await.unwrap();
    assert_eq!(status, 200, "the real user's login");
    let mut idle = reads(hub_addr, &token, 500).await;
    let (idle_rss, _) = memory_kb(pid);

    let stop = CancellationToken::new();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let mut flooders = Vec::new();
    for client in 0..64u32 {
        let (stop, sent, statuses) = (stop.clone(), sent.clone(), statuses.clone());
        flooders.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // 127.1.0.0 upwards: a new address each time (16 M of them).
                let source = std::net::Ipv4Addr::from(0x7f01_0000 + (n as u32 & 0x00fe_ffff));
                let request = login_request(&format!("flood{client}-{n}"), "not the password");
                let status = http(source, hub_addr, &request).await.map_or(0, |(status, _)| status);
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        }));
    }
    let flood_started = Instant::now();
    let mut during = Vec::new();
    let mut real_logins = Vec::new();
    let mut round = 0u8;
    while flood_started.elapsed() < flood_for {
        during.extend(reads(hub_addr, &token, 50).await);
        round = round.wrapping_add(1);
        let (status, took) = http([127, 0, 2, round].into(), hub_addr, &real_login).await.unwrap();
        assert_eq!(status, 200, "the real user's login during the flood");
        real_logins.push(took.as_secs_f64() * 1000.0);
    }
    stop.cancel();
    for flooder in flooders {
        flooder.await.unwrap();
    }
    let flood_s = flood_started.elapsed().as_secs_f64();
    let (_, peak_rss) = memory_kb(pid);
    let statuses = statuses.lock().unwrap().clone();
    let attempts: u64 = statuses.values().sum();
    let idle_p99 = p99(&mut idle);
    let flood_p99 = p99(&mut during);
    let real_worst = real_logins.iter().copied().fold(0.0, f64::max);
    println!(
        "login flood: {attempts} attempts in {flood_s:.1} s ({:.0}/s) from as many loopback \
         addresses and names, answers {statuses:?}",
        attempts as f64 / flood_s
    );
    println!(
        "  hub resident memory: {:.1} MB idle, peak {:.1} MB (VmHWM)",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    println!(
        "  GET /api/v1/printers p99: {idle_p99:.1} ms idle, {flood_p99:.1} ms during the flood \
         ({} reads)",
        during.len()
    );
    println!(
        "  a real user's login: {:.1} ms idle, slowest {real_worst:.1} ms of {} during the flood",
        idle_login.as_secs_f64() * 1000.0,
        real_logins.len()
    );
    tests::metric("hub_login_flood_rss_kb", peak_rss as f64);
    tests::metric("hub_api_read_p99_idle_ms", idle_p99);
    tests::metric("hub_api_read_p99_login_flood_ms", flood_p99);
    tests::metric("hub_login_idle_ms", idle_login.as_secs_f64() * 1000.0);
    tests::metric("hub_login_during_flood_max_ms", real_worst);
    hub.terminate();
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
    login_flood().await;
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
