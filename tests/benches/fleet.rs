//! A mixed fleet behind one agent: two Bambu Lab printers (a P1S and an A1, their port-6000
//! cameras at 1280×720, 1 fps) and two Klipper printers behind Moonraker (their webcams'
//! MJPEG streams at 1280×720, 5 fps), all four printing. Figures: the agent's peak resident
//! memory, its CPU, and the age of each Klipper printer's state when it reaches a dashboard's
//! WebSocket, measured from when the agent received Moonraker's update.
//!
//! Reproduce with `cargo xtask bench`, or
//! `cargo build --release --bins && cargo bench -p tests --bench fleet`.
//! `KITT_BENCH_SECONDS` sets the memory window (default 20 s).
//!
//! The hub and the simulated printers run in this process; the agent is the real
//! `kitt-agent` binary (`BENCH_AGENT_BINARY` when set: the shipped build), so its memory is
//! its own.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hub::config::{HubConfig, Overrides};
use printer_sim::Simulator;
use printer_sim::config::{CameraSize, JobSpec, Model, SimConfig};
use printer_sim::moonraker::{self, MoonrakerConfig};
use proto::UnixMillis;
use tests::process::{Process, bin};

const BAMBU: [(&str, Model); 2] = [("01P00A391800901", Model::P1S), ("03919A391800902", Model::A1)];
const KLIPPER: [&str; 2] = ["voron-bench", "neptune-bench"];

/// VmRSS in kB and utime + stime in clock ticks.
fn usage(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss, ticks)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tests::init();
    let seconds: u64 =
        std::env::var("KITT_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
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
    hub.state.db.insert_user("bench", &hash, "viewer", UnixMillis::now()).await.unwrap();
    let (token, _) = hub::api::auth::create_api_token(&hub.state.db, "bench", None).await.unwrap();

    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state).unwrap();
    let mut printers = String::new();
    let mut bambu_sims = Vec::new();
    for (serial, model) in BAMBU {
        let mut config =
            SimConfig::new(serial.parse().unwrap(), "12345678".parse().unwrap(), model)
                .with_intervals(Duration::from_millis(1000), Duration::from_millis(1000));
        config.autostart_job = Some(JobSpec { name: "bench".into(), layers: 100_000 });
        let sim = Simulator::start(config).await.unwrap();
        let ca = state.join(format!("{serial}.pem"));
        std::fs::write(&ca, sim.ca_pem()).unwrap();
        printers.push_str(&format!(
            "[[printer]]\nserial = \"{serial}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\n\
             [[printer.camera]]\nsource = \"bambu\"\nport = {}\nsnapshot_every_min = 5\n",
            sim.addr().port(),
            ca.display(),
            sim.camera_addr().unwrap().port(),
        ));
        bambu_sims.push(sim);
    }
    let mut klipper_sims = Vec::new();
    for id in KLIPPER {
        let mut config = MoonrakerConfig::new(id);
        config.step_interval = Duration::from_millis(200);
        config.klipper.step_seconds = 0.2;
        config.klipper.layers = 100_000;
        config.autostart = Some("benchy.gcode".into());
        config.camera_interval = Duration::from_millis(200);
        config.camera_size = CameraSize::new(1280, 720).unwrap();
        let sim = moonraker::start(config).await.unwrap();
        printers.push_str(&format!(
            "[[printer]]\nkind = \"moonraker\"\nid = \"{id}\"\nurl = \"http://{}\"\nweb_port = {}\n\
             [[printer.camera]]\nsource = \"moonraker\"\nsnapshot_every_min = 5\n",
            sim.addr(),
            sim.web_addr().unwrap().port(),
        ));
        klipper_sims.push(sim);
    }
    let (enroll, _) = hub::sync::token::create(
        &hub.state.db,
        &hub.sync.ca_fingerprint(),
        Some("bench-fleet"),
        Duration::from_secs(600),
        UnixMillis::now(),
    )
    .await
    .unwrap();
    edge_agent::sync::enroll::enroll(&hub.sync_addr.to_string(), &enroll.to_string(), &state)
        .await
        .unwrap();
    let agent_config = state.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "state_dir = \"{}\"\n[telemetry]\ninterval_ms = 100\nhealth_interval_s = 60\n{printers}",
            state.display()
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

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/api/v1/ws", hub.http_addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // Ready when all four print and every camera has said it streams.
    let started = Instant::now();
    let mut printing = BTreeSet::new();
    while printing.len() < 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "only {printing:?} print");
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        else {
            continue;
        };
        let update: serde_json::Value =
            serde_json::from_str(message.to_text().unwrap_or("")).unwrap_or_default();
        if update["type"] == "printer_state" && update["state"]["state"] == "printing" {
            printing.insert(update["printer"].as_str().unwrap_or("").to_owned());
        }
    }
    loop {
        let mut streaming = 0;
        for id in BAMBU.iter().map(|(serial, _)| *serial).chain(KLIPPER) {
            let cameras = hub.state.db.cameras(id).await.unwrap();
            streaming += usize::from(cameras.first().is_some_and(|c| c.state == "streaming"));
        }
        if streaming == 4 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{streaming} of 4 cameras stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The Klipper printers' states on a dashboard's WebSocket, while the memory is watched.
    let window = Duration::from_secs(seconds.max(30));
    let (_, start_ticks) = usage(pid);
    let measuring = Instant::now();
    let mut peak = 0;
    let mut ages = Vec::new();
    let mut next_sample = Instant::now();
    while measuring.elapsed() < window {
        if Instant::now() >= next_sample {
            peak = peak.max(usage(pid).0);
            next_sample += Duration::from_millis(100);
        }
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(100), socket.next()).await
        else {
            continue;
        };
        let Ok(text) = message.to_text() else { continue };
        let update: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if update["type"] == "printer_state"
            && KLIPPER.contains(&update["printer"].as_str().unwrap_or(""))
        {
            let at = update["at"].as_i64().unwrap_or(0);
            ages.push((UnixMillis::now().0 - at) as f64);
        }
    }
    let (rss, end_ticks) = usage(pid);
    let peak = peak.max(rss);
    let cpu = (end_ticks - start_ticks) as f64 / 100.0 / measuring.elapsed().as_secs_f64() * 100.0;
    ages.sort_by(f64::total_cmp);
    assert!(ages.len() >= 50, "only {} Klipper state updates reached the WebSocket", ages.len());
    let pick = |q: f64| ages[((ages.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "agent with 2 Bambu + 2 Klipper printers and 4 cameras, all printing: peak VmRSS {peak} kB (target <= 16 MB), {cpu:.1} % of one core"
    );
    println!(
        "Moonraker update to WebSocket: p50 {:.1} ms, p99 {:.1} ms over {} state updates (target p99 <= 50 ms)",
        pick(0.5),
        pick(0.99),
        ages.len()
    );
    tests::metric("fleet_agent_rss_kb", peak as f64);
    tests::metric("fleet_agent_cpu_percent", cpu);
    tests::metric("moonraker_ws_latency_p50_ms", pick(0.5));
    tests::metric("moonraker_ws_latency_p99_ms", pick(0.99));
    agent.terminate();
    for sim in bambu_sims {
        sim.shutdown().await;
    }
    for sim in klipper_sims {
        sim.shutdown().await;
    }
    shutdown.cancel();
    hub.wait().await;
}
