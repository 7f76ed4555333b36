//! Camera benchmarks: the agent's CPU and memory with its camera upstream idle and while it
//! streams 1280×720 live view at 1 frame per second, and the hub's fan-out of one camera to
//! 20 MJPEG viewers over HTTP.
//!
//! Reproduce with `cargo xtask bench`, or:
//! `cargo build --release --bins && cargo bench -p tests --bench camera`.
//! `KITT_BENCH_SECONDS` sets each measuring window (default 20 s).
//!
//! The hub (with its HTTP API) and the simulated printer run in this process; the agent is
//! the real `kitt-agent` release binary, so its CPU time and memory are its own.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use hub::config::{HubConfig, Overrides};
use printer_sim::Simulator;
use printer_sim::config::{Model, SimConfig};
use proto::{CameraId, PrinterId};
use tests::process::{Process, bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERIAL: &str = "01P00A391800777";
const VIEWERS: usize = 20;

/// (utime + stime in clock ticks, VmRSS kB) of a process.
fn usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// CPU percent of one core and peak RSS over `window`, sampling RSS every 100 ms.
async fn measure(pid: u32, window: Duration) -> (f64, u64) {
    let (start_ticks, _) = usage(pid);
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        peak = peak.max(usage(pid).1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (end_ticks, rss) = usage(pid);
    let ticks_per_s = 100.0; // Linux USER_HZ
    let cpu = (end_ticks - start_ticks) as f64 / ticks_per_s / started.elapsed().as_secs_f64();
    (cpu * 100.0, peak.max(rss))
}

/// One MJPEG viewer over plain HTTP: counts frames and records when each arrived.
async fn viewer(addr: std::net::SocketAddr, token: String, until: Instant) -> Vec<Instant> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/printers/{SERIAL}/cameras/chamber/live HTTP/1.1\r\nHost: bench\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut arrivals = Vec::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut window: Vec<u8> = Vec::new();
    while Instant::now() < until {
        let read = tokio::time::timeout_at(until.into(), stream.read(&mut buffer)).await;
        let Ok(Ok(n)) = read else { break };
        if n == 0 {
            break;
        }
        window.extend_from_slice(&buffer[..n]);
        // Each frame ends with FF D9 followed by the part's CRLF.
        while let Some(end) = window.windows(4).position(|w| w == [0xFF, 0xD9, b'\r', b'\n']) {
            arrivals.push(Instant::now());
            window.drain(..end + 4);
        }
    }
    arrivals
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tests::init();
    let seconds: u64 =
        std::env::var("KITT_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let window = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        data_dir: Some(dir.path().join("hub")),
        database_url: None,
        http_listen: Some("127.0.0.1:0".into()),
        sync_listen: Some("127.0.0.1:0".into()),
    };
    let config = HubConfig::load(None, Vec::new(), &overrides).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hub = hub::app::start(config, shutdown.clone()).await.unwrap();
    let hash = hub::api::auth::hash_password("a long enough password").unwrap();
    hub.state.db.insert_user("bench", &hash, "viewer", proto::UnixMillis::now()).await.unwrap();
    let (token, _) = hub::api::auth::create_api_token(&hub.state.db, "bench", None).await.unwrap();

    // A P1S whose camera sends 1280×720 JPEGs once a second, like the real one.
    let sim_config =
        SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
            .with_intervals(Duration::from_millis(1000), Duration::from_millis(1000));
    let sim = Simulator::start(sim_config).await.unwrap();
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state).unwrap();
    let (enroll, _) = hub::sync::token::create(
        &hub.state.db,
        &hub.sync.ca_fingerprint(),
        Some("bench-camera"),
        Duration::from_secs(600),
        proto::UnixMillis::now(),
    )
    .await
    .unwrap();
    edge_agent::sync::enroll::enroll(&hub.sync_addr.to_string(), &enroll.to_string(), &state)
        .await
        .unwrap();
    let printer_ca = state.join("printer-ca.pem");
    std::fs::write(&printer_ca, sim.ca_pem()).unwrap();
    let agent_config = state.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "state_dir = \"{}\"\n[telemetry]\ninterval_ms = 1000\nhealth_interval_s = 60\n\
             [[printer]]\nserial = \"{SERIAL}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\n\
             [[printer.camera]]\nsource = \"bambu\"\nport = {}\nsnapshot_every_min = 0\nlive_max_fps = 1\n",
            state.display(),
            sim.addr().port(),
            printer_ca.display(),
            sim.camera_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let agent = Process::spawn(
        Command::new(bin("kitt-agent"))
            .args(["run", "--config"])
            .arg(&agent_config)
            .env("KITT_LOG", "error"),
    );
    let pid = agent.child.id();
    let printer = PrinterId::new(SERIAL).unwrap();
    let camera = CameraId::new("chamber").unwrap();
    // Ready when the camera has reported streaming (its first health record).
    let started = Instant::now();
    loop {
        let cameras = hub.state.db.cameras(SERIAL).await.unwrap();
        if cameras.first().is_some_and(|c| c.state == "streaming") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the camera never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (cpu, rss) = measure(pid, window).await;
    println!(
        "agent, camera upstream open, no viewer (1280x720, 1 fps from the printer): {cpu:.1} % of one core, peak VmRSS {rss} kB"
    );
    tests::metric("camera_idle_cpu_percent", cpu);
    tests::metric("camera_idle_rss_kb", rss as f64);

    let viewer_guard = hub.sync.watch_camera(&printer, &camera);
    let (cpu, rss) = measure(pid, window).await;
    drop(viewer_guard);
    println!(
        "agent streaming live view to the hub (1280x720 at 1 fps): {cpu:.1} % of one core, peak VmRSS {rss} kB (target <= 16 MB steady)"
    );
    tests::metric("camera_streaming_cpu_percent", cpu);
    tests::metric("camera_streaming_rss_kb", rss as f64);

    // Fan-out: 20 HTTP viewers of one camera.
    let until = Instant::now() + window;
    let viewers: Vec<_> =
        (0..VIEWERS).map(|_| tokio::spawn(viewer(hub.http_addr, token.clone(), until))).collect();
    let (agent_cpu, _) = measure(pid, window).await;
    let mut counts = Vec::new();
    let mut all = Vec::new();
    for handle in viewers {
        let arrivals = handle.await.unwrap();
        counts.push(arrivals.len());
        all.push(arrivals);
    }
    // Skew: for each frame index every viewer saw, the spread of arrival times.
    let common = counts.iter().copied().min().unwrap_or(0);
    let mut worst_skew = Duration::ZERO;
    for index in 0..common {
        let times: Vec<Instant> = all.iter().map(|a| a[index]).collect();
        let first = times.iter().min().unwrap();
        let last = times.iter().max().unwrap();
        worst_skew = worst_skew.max(*last - *first);
    }
    println!(
        "hub fan-out to {VIEWERS} MJPEG viewers over HTTP: each got {}..{} frames in {seconds} s \
         (the agent sends 1 fps), worst spread of one frame across viewers {:.1} ms; agent {agent_cpu:.1} % of one core (one upstream, one stream to the hub)",
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
        worst_skew.as_secs_f64() * 1000.0,
    );
    tests::metric("fanout_viewers", VIEWERS as f64);
    tests::metric(
        "fanout_min_frames_per_s",
        *counts.iter().min().unwrap_or(&0) as f64 / window.as_secs_f64(),
    );
    tests::metric("fanout_worst_spread_ms", worst_skew.as_secs_f64() * 1000.0);
    agent.terminate();
    sim.shutdown().await;
    shutdown.cancel();
    hub.wait().await;
}
