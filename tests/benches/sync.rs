//! Sync benchmarks: catch-up from a large backlog, the agent's resident memory while
//! draining and steady, and the time from a link returning to data flowing again.
//!
//! Reproduce with `cargo xtask bench` (it builds the release binaries first), or:
//! `cargo build --release --bins && cargo bench -p tests --bench sync`.
//! `KITT_BENCH_EVENTS` sets the backlog (default 300000 events).
//!
//! The hub runs in this process (SQLite in a temporary directory); the agent is the real
//! `kitt-agent` release binary, so its memory is its own.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use printer_sim::Simulator;
use printer_sim::config::{Model, SimConfig};
use proto::{AgentId, PrinterEvent, PrinterEventKind, PrinterId, RecordBody, Seq, UnixMillis};
use tests::fleet::{TestAgent, TestHub};
use tests::process::{Process, bin};
use tests::relay::Relay;

const SERIAL: &str = "01P00A391800123";

/// (VmRSS, VmHWM) of a process, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn fill_backlog(state: &std::path::Path, events: u64) -> Seq {
    let mut config = OutboxConfig::new(state.join("outbox.db"));
    config.capacity_bytes = 4 << 30;
    let (mut outbox, _) = Outbox::open(config).unwrap();
    let printer = PrinterId::new(SERIAL).unwrap();
    for i in 0..events {
        let kind = if i % 2 == 0 {
            PrinterEventKind::Reachable
        } else {
            PrinterEventKind::Unreachable { reason: format!("backlog event {i}") }
        };
        outbox
            .append(
                UnixMillis(1_764_000_000_000 + i as i64),
                RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind }),
            )
            .unwrap();
        if outbox.pending() >= 5_000 {
            outbox.commit().unwrap();
        }
    }
    outbox.commit().unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tests::init();
    let events: u64 =
        std::env::var("KITT_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let hub = TestHub::start().await;
    let relay = Relay::start(hub.addr).await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll_via(&hub, relay.addr, state.path(), "bench").await;
    let agent_id = AgentId::new("bench").unwrap();
    let filled = Instant::now();
    let last = fill_backlog(state.path(), events);
    println!(
        "backlog: {events} events written to the outbox in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let sim_config =
        SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
            .with_intervals(Duration::from_millis(100), Duration::from_millis(500));
    let sim = Simulator::start(sim_config).await.unwrap();
    let printer_ca = state.path().join("printer-ca.pem");
    std::fs::write(&printer_ca, sim.ca_pem()).unwrap();
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[outbox]\ncapacity_mb = 4096\n[sync]\nkeep_alive_s = 1\nidle_timeout_s = 3\n\
             [telemetry]\ninterval_ms = 1000\nhealth_interval_s = 10\n\
             [[printer]]\nserial = \"{SERIAL}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\nbuiltin_camera = false\n",
            state.path().display(),
            sim.addr().port(),
            printer_ca.display()
        ),
    )
    .unwrap();

    // Catch-up.
    let program = bin("kitt-agent");
    let started = Instant::now();
    let agent = Process::spawn(
        Command::new(&program).args(["run", "--config"]).arg(&config).env("KITT_LOG", "error"),
    );
    let pid = agent.child.id();
    let mut first_record = None;
    let mut peak_rss = 0;
    loop {
        let watermark = hub.db().watermark(&agent_id).await.unwrap();
        if first_record.is_none() && watermark > Seq::ZERO {
            first_record = Some(started.elapsed());
        }
        peak_rss = peak_rss.max(memory_kb(pid).0);
        if watermark >= last {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "catch-up did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    let first = first_record.unwrap_or_default();
    let draining = total - first;
    let (_, hwm) = memory_kb(pid);
    println!(
        "catch-up: {events} events in {:.2} s = {:.0} events/s (first record after {:.2} s of start-up and connect; target >= 20000/s)",
        draining.as_secs_f64(),
        events as f64 / draining.as_secs_f64(),
        first.as_secs_f64()
    );
    println!(
        "agent memory while draining: peak VmRSS {} kB, VmHWM {} kB (target <= 32 MB)",
        peak_rss, hwm
    );
    tests::metric("catchup_events_per_s", events as f64 / draining.as_secs_f64());
    tests::metric("agent_rss_draining_kb", peak_rss.max(hwm) as f64);

    // Steady: a printer printing, records trickling.
    sim.start_job("steady", 100_000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, _) = memory_kb(pid);
    println!(
        "agent memory steady (one printer printing, synced): VmRSS {rss} kB (target <= 16 MB)"
    );
    tests::metric("agent_rss_steady_kb", rss as f64);

    // Reconnect to data: cut the link until both sides give up, restore it, and time the
    // first new record at the hub.
    relay.partition(true);
    let cut = Instant::now();
    while !hub.handle.connected().is_empty() {
        assert!(cut.elapsed() < Duration::from_secs(30), "the hub never noticed the cut");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = hub.db().watermark(&agent_id).await.unwrap();
    relay.partition(false);
    let healed = Instant::now();
    loop {
        if hub.db().watermark(&agent_id).await.unwrap() > before {
            break;
        }
        assert!(healed.elapsed() < Duration::from_secs(60), "data never flowed again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "reconnect to data: {:.2} s after the link returned (target <= 5 s)",
        healed.elapsed().as_secs_f64()
    );
    tests::metric("reconnect_to_data_s", healed.elapsed().as_secs_f64());
    agent.terminate();
    sim.shutdown().await;
    hub.stop().await;
}
