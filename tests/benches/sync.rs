//! Sync benchmarks: catch-up from a 200 k and a 2 M backlog, each beside the baseline a user
//! would pick instead (an edge Mosquitto bridged to a central one, QoS 1, draining the same
//! number of messages, run just before kitt's: the machine's speed varies, so the figure
//! that matters is the ratio of the two); the agent's resident memory while draining and
//! steady; and the time from a link returning to data flowing again.
//!
//! Reproduce with `cargo xtask bench` (it builds the release binaries and installs
//! mosquitto first), or: `cargo build --release --bins && cargo bench -p tests --bench sync`.
//! `KITT_BENCH_BACKLOGS` lists the backlogs (default `200000,2000000`); without the
//! `mosquitto` and `mosquitto_pub` programs the baseline is left out.
//!
//! The hub runs in this process (SQLite in a temporary directory); the agent is the real
//! `kitt-agent` release binary, so its memory is its own. The catch-up rate counts from the
//! first record at the hub to the last (the agent's start-up and connection are printed
//! apart); the bridge's counts from the central broker's start to the last message received
//! (`benches/mosquitto_bridge_baseline.sh`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use printer_sim::config::{Model, SimConfig};
use printer_sim::{SimHandle, Simulator};
use proto::{AgentId, PrinterEvent, PrinterEventKind, PrinterId, RecordBody, Seq, UnixMillis};
use tests::fleet::{TestAgent, TestHub};
use tests::process::{Process, bin, memory_kb};
use tests::relay::Relay;

const SERIAL: &str = "01P00A391800123";

/// The bridge baseline: `mosquitto_bridge_baseline.sh N`.
const BRIDGE_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/benches/mosquitto_bridge_baseline.sh");

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}

/// `200k`, `2m`: the backlog's size in metric keys.
fn label(events: u64) -> String {
    if events.is_multiple_of(1_000_000) {
        format!("{}m", events / 1_000_000)
    } else if events.is_multiple_of(1_000) {
        format!("{}k", events / 1_000)
    } else {
        events.to_string()
    }
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

/// The bridge's catch-up rate for `events` messages, in messages per second; `None` when
/// mosquitto is missing or the script fails (said why).
fn bridge(events: u64) -> Option<f64> {
    let installed = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto_pub", "/usr/bin/mosquitto_sub"]
        .iter()
        .all(|program| std::path::Path::new(program).exists());
    if !installed {
        println!("mosquitto bridge: not measured (install mosquitto and mosquitto-clients)");
        return None;
    }
    let output = Command::new("bash").arg(BRIDGE_SCRIPT).arg(events.to_string()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    println!("mosquitto bridge, {events} messages: {line}");
    // "..., 10.1s, 19801 msgs/s; edge RSS ..."
    let rate = line
        .split_once(" msgs/s")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok());
    let missing = line
        .split_once("missing ")
        .and_then(|(_, after)| after.split(',').next())
        .and_then(|n| n.parse::<u64>().ok());
    if !output.status.success() || rate.is_none() || missing != Some(0) {
        println!(
            "mosquitto bridge: no figure ({}; {})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return None;
    }
    rate
}

/// A hub and a running agent that has just drained its backlog.
struct Drained {
    hub: TestHub,
    relay: Relay,
    agent: Process,
    sim: SimHandle,
    agent_id: AgentId,
    _state: tempfile::TempDir,
}

/// Fills an outbox with `events` records, starts the agent binary on it and times the
/// drain into the hub.
async fn catch_up(events: u64) -> (Drained, f64) {
    let key = label(events);
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

    let program = bin("kitt-agent");
    let started = Instant::now();
    let agent = Process::spawn(
        Command::new(&program).args(["run", "--config"]).arg(&config).env("KITT_LOG", "error"),
    );
    let pid = agent.child.id();
    let mut first_record = None;
    let mut peak_rss = 0;
    let mut cpu_at_first = (0.0, 0.0);
    loop {
        let watermark = hub.db().watermark(&agent_id).await.unwrap();
        if first_record.is_none() && watermark > Seq::ZERO {
            first_record = Some(started.elapsed());
            cpu_at_first = (cpu_s(&pid.to_string()), cpu_s("self"));
        }
        peak_rss = peak_rss.max(memory_kb(pid).0);
        if watermark >= last {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "catch-up did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    let first = first_record.unwrap_or_default();
    let draining = total - first;
    let (agent_cpu, hub_cpu) =
        (cpu_s(&pid.to_string()) - cpu_at_first.0, cpu_s("self") - cpu_at_first.1);
    let (_, hwm) = memory_kb(pid);
    let rate = events as f64 / draining.as_secs_f64();
    println!(
        "catch-up: {events} events in {:.2} s = {rate:.0} events/s (first record after {:.2} s of start-up and connect; {:.2} s in all; target >= 20000/s on a Pi)",
        draining.as_secs_f64(),
        first.as_secs_f64(),
        total.as_secs_f64(),
    );
    println!(
        "catch-up CPU while draining: agent {agent_cpu:.2} s ({:.1} µs/event), hub and this benchmark {hub_cpu:.2} s ({:.1} µs/event), over {:.2} s on {} cores",
        agent_cpu * 1e6 / events as f64,
        hub_cpu * 1e6 / events as f64,
        draining.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "agent memory while draining {events}: peak VmRSS {peak_rss} kB, VmHWM {hwm} kB (target <= 32 MB)"
    );
    tests::metric(&format!("catchup_events_per_s_{key}"), rate);
    tests::metric(&format!("catchup_total_s_{key}"), total.as_secs_f64());
    tests::metric(&format!("agent_rss_draining_kb_{key}"), peak_rss.max(hwm) as f64);
    let drained = Drained { hub, relay, agent, sim, agent_id, _state: state };
    (drained, rate)
}

/// The steady state after a drain, then a cut link restored.
async fn steady_and_reconnect(drained: &Drained) {
    let Drained { hub, relay, agent, sim, agent_id, .. } = drained;
    // Steady: a printer printing, records trickling.
    sim.start_job("steady", 100_000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, _) = memory_kb(agent.child.id());
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
    let before = hub.db().watermark(agent_id).await.unwrap();
    relay.partition(false);
    let healed = Instant::now();
    loop {
        if hub.db().watermark(agent_id).await.unwrap() > before {
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
}

async fn stop(drained: Drained) {
    drained.agent.terminate();
    drained.sim.shutdown().await;
    drained.hub.stop().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tests::init();
    let backlogs: Vec<u64> = std::env::var("KITT_BENCH_BACKLOGS")
        .unwrap_or_else(|_| "200000,2000000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    for (i, &events) in backlogs.iter().enumerate() {
        let key = label(events);
        // The bridge's rate swings several-fold from run to run here (its broker's reconnect
        // wait, whatever else runs), so every backlog is measured three times, kitt and the
        // bridge in turn, and the medians compared (at 2 M the bridge takes minutes a run).
        let runs = 3;
        let mut bridges = Vec::new();
        let mut rates = Vec::new();
        let mut kept = None;
        for run in 0..runs {
            bridges.extend(bridge(events));
            let (drained, rate) = catch_up(events).await;
            rates.push(rate);
            if run + 1 == runs {
                kept = Some(drained);
            } else {
                stop(drained).await;
            }
        }
        let rate = median(&mut rates);
        if runs > 1 {
            println!("catch-up, {events}: kitt runs {rates:.0?} events/s, median {rate:.0}");
            // Again, after each run's own figure: the table takes the last, the median.
            tests::metric(&format!("catchup_events_per_s_{key}"), rate);
        }
        if !bridges.is_empty() {
            let bridge = median(&mut bridges);
            println!(
                "catch-up, {events}: kitt {rate:.0} events/s, mosquitto bridge {bridge:.0} msgs/s \
                 (runs {bridges:.0?}): {:.1}x (target >= 4x)",
                rate / bridge
            );
            tests::metric(&format!("bridge_msgs_per_s_{key}"), bridge);
            tests::metric(&format!("catchup_vs_bridge_{key}"), rate / bridge);
        }
        let drained = kept.expect("at least one run");
        if i == 0 {
            steady_and_reconnect(&drained).await;
        }
        stop(drained).await;
    }
}

/// The median of `values` (the upper one of an even count); sorts them.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
