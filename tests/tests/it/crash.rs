//! `kill -9` of the real `kitt-agent` and `kitt-hub` processes mid-print: after each, the hub
//! holds exactly the sequence the agent recorded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_agent::outbox::{Outbox, OutboxConfig};
use hub::db::Db;
use printer_sim::Simulator;
use printer_sim::config::{Model, SimConfig};
use proto::{AgentId, PrinterEventKind, RecordBody, Seq};
use tests::PATIENCE;
use tests::fleet::poll_other_process;
use tests::process::{Process, bin};

const SERIAL: &str = "01P00A391800099";

fn start_hub(data: &Path, listen: &str) -> (Process, SocketAddr) {
    let hub = Process::spawn(
        Command::new(bin("kitt-hub"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--sync-listen", listen, "--http-listen", "127.0.0.1:0"])
            .env("KITT_LOG", "warn"),
    );
    let line = hub.wait_line("agents on udp/");
    let addr = line
        .split("udp/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (hub, addr)
}

fn start_agent(config: &Path) -> Process {
    Process::spawn(
        Command::new(bin("kitt-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env("KITT_LOG", "warn"),
    )
}

/// Records at the hub, read through its database file (SQLite allows a second reader).
async fn hub_count(db: &Db, agent: &AgentId) -> u64 {
    db.record_count(agent).await.unwrap()
}

async fn more_than(db: &Db, agent: &AgentId, n: u64, what: &str) -> u64 {
    poll_other_process(PATIENCE, what, || async {
        let count = hub_count(db, agent).await;
        (count > n).then_some(count)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_the_hub_and_both_loses_and_duplicates_nothing() {
    tests::init();
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let sim_config =
        SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
            .with_intervals(Duration::from_millis(10), Duration::from_millis(10));
    let sim = Simulator::start(sim_config).await.unwrap();

    let (hub, addr) = start_hub(data.path(), "127.0.0.1:0");
    let token = Command::new(bin("kitt-hub"))
        .args(["token", "create", "--name", "pi-crash", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap();
    let enrolled = Command::new(bin("kitt-agent"))
        .args(["enroll", "--hub", &addr.to_string(), "--token", token.trim(), "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");
    let printer_ca = state.path().join("printer-ca.pem");
    std::fs::write(&printer_ca, sim.ca_pem()).unwrap();
    let config = state.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[sync]\nkeep_alive_s = 1\nidle_timeout_s = 3\n[telemetry]\ninterval_ms = 100\nhealth_interval_s = 1\n\
             [[printer]]\nserial = \"{SERIAL}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"12345678\"\nca = \"{}\"\nbuiltin_camera = false\n",
            state.path().display(),
            sim.addr().port(),
            printer_ca.display()
        ),
    )
    .unwrap();
    let agent_id = AgentId::new("pi-crash").unwrap();
    let db = Db::open_sqlite(data.path()).await.unwrap();

    let agent = start_agent(&config);
    sim.start_job("survivor", 1500).await.unwrap();
    let n = more_than(&db, &agent_id, 10, "records before the first kill").await;

    agent.kill9();
    let agent = start_agent(&config);
    let n = more_than(&db, &agent_id, n + 10, "records after the agent's kill -9").await;

    hub.kill9();
    let (hub, _) = start_hub(data.path(), &addr.to_string());
    let n = more_than(&db, &agent_id, n + 10, "records after the hub's kill -9").await;

    agent.kill9();
    hub.kill9();
    let (hub, _) = start_hub(data.path(), &addr.to_string());
    let agent = start_agent(&config);
    more_than(&db, &agent_id, n + 10, "records after both were killed").await;

    // Let the job end, stop the agent cleanly, and compare with what it recorded.
    poll_other_process(PATIENCE, "the job's end at the hub", || async {
        let records = db.records(&agent_id).await.unwrap();
        records
            .iter()
            .any(|r| {
                matches!(&r.body, RecordBody::PrinterEvent(e)
                    if matches!(e.kind, PrinterEventKind::JobFinished { .. }))
            })
            .then_some(())
    })
    .await;
    let status = agent.terminate();
    assert!(status.success(), "a clean stop: {status:?}");
    let (outbox, report) = Outbox::open(OutboxConfig::new(state.path().join("outbox.db"))).unwrap();
    let recorded_through = report.last_seq;
    drop(outbox);
    // Anything recorded but not yet acknowledged goes out when the agent returns.
    let agent = start_agent(&config);
    poll_other_process(PATIENCE, "the hub caught up with the agent", || async {
        (db.watermark(&agent_id).await.unwrap() >= recorded_through).then_some(())
    })
    .await;
    let records = db.records(&agent_id).await.unwrap();
    let through = records.last().map_or(Seq::ZERO, |r| r.seq);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    let want: Vec<u64> = (1..=through.0).collect();
    assert_eq!(seqs, want, "no gap, no duplicate, in order");
    assert!(through >= recorded_through);
    agent.terminate();
    hub.terminate();
    sim.shutdown().await;
}
