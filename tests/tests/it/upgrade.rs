//! Upgrades never lose the outbox: an agent whose state directory has the layout of agents
//! before the format marker (format 0), with records the hub has not seen yet, is started by
//! today's agent, which migrates the directory and syncs every one of those records to a
//! real hub. A directory from a newer agent is refused untouched. (The `.deb` side of an
//! upgrade, which keeps `/var/lib/kitt-agent`, is `cargo xtask test-package`.)

use std::path::Path;

use edge_agent::agent::AgentError;
use edge_agent::outbox::{Outbox, OutboxConfig};
use edge_agent::state::{self, StateError};
use proto::{
    JobOutcome, PrintState, PrinterEvent, PrinterEventKind, PrinterId, PrinterState,
    PrinterTelemetry, RecordBody, Seq, UnixMillis,
};
use tests::fleet::{TestAgent, TestHub, agent_config, eventually};
use tokio_util::sync::CancellationToken;

const SERIAL: &str = "01P00A391800077";
const PIN: &[u8] = b"3f1c0ffee0000000000000000000000000000000000000000000000000000000\n";

/// A print job's worth of records, as the old agent's writer appended them.
fn old_records() -> Vec<(UnixMillis, RecordBody)> {
    let printer = PrinterId::new(SERIAL).unwrap();
    let event = |kind| RecordBody::PrinterEvent(PrinterEvent { printer: printer.clone(), kind });
    let mut records = vec![event(PrinterEventKind::JobStarted {
        job_name: Some("before the upgrade".into()),
        total_layers: Some(40),
    })];
    for layer in 1..=40 {
        let state = PrinterState {
            state: PrintState::Printing,
            layer: Some(layer),
            total_layers: Some(40),
            job_name: Some("before the upgrade".into()),
            ..PrinterState::default()
        };
        records.push(RecordBody::Telemetry(PrinterTelemetry {
            printer: printer.clone(),
            state: Box::new(state),
        }));
    }
    records.push(event(PrinterEventKind::JobFinished {
        job_name: Some("before the upgrade".into()),
        outcome: JobOutcome::Succeeded,
    }));
    let start = UnixMillis::now().0 - 60_000;
    records.into_iter().enumerate().map(|(i, body)| (UnixMillis(start + i as i64), body)).collect()
}

/// An enrolled format-0 directory whose outbox holds `records`, none of them sent.
async fn format_0_agent(hub: &TestHub, dir: &Path, records: &[(UnixMillis, RecordBody)]) {
    TestAgent::enroll(hub, dir, "pi-upgrade").await;
    // Agents before the marker never wrote one.
    match std::fs::remove_file(dir.join(state::MARKER)) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        other => other.unwrap(),
    }
    std::fs::create_dir(dir.join("pins")).unwrap();
    std::fs::write(dir.join(format!("pins/{SERIAL}.sha256")), PIN).unwrap();
    let (mut outbox, _) = Outbox::open(OutboxConfig::new(dir.join("outbox.db"))).unwrap();
    for (at, body) in records {
        outbox.append(*at, body.clone()).unwrap();
    }
    assert_eq!(outbox.commit().unwrap(), Seq(records.len() as u64));
    drop(outbox);
    assert_eq!(state::format(dir).unwrap(), 0);
}

#[tokio::test]
async fn an_upgraded_agent_migrates_its_state_and_syncs_every_record_left_unsent() {
    let hub = TestHub::start().await;
    let state_dir = tempfile::tempdir().unwrap();
    let records = old_records();
    format_0_agent(&hub, state_dir.path(), &records).await;
    let key_before = std::fs::read(state_dir.path().join("agent.key")).unwrap();

    // The upgrade: today's agent starts on the directory the old one left.
    let agent = TestAgent::start(agent_config(state_dir.path(), None, SERIAL));
    assert_eq!(state::format(state_dir.path()).unwrap(), state::CURRENT_FORMAT);
    let id = agent.running().identity.agent.clone();
    assert_eq!(id.as_str(), "pi-upgrade", "the same identity, not a new enrollment");

    let n = records.len() as u64;
    let at_hub = eventually(hub.handle.changes(), "every old record at the hub", || async {
        let at_hub = hub.db().records(&id).await.unwrap();
        (hub.db().watermark(&id).await.unwrap() >= Seq(n)).then_some(at_hub)
    })
    .await;
    let old: Vec<_> = at_hub.iter().filter(|r| r.seq <= Seq(n)).collect();
    assert_eq!(old.len(), records.len(), "every record, once");
    for (i, (record, (at, body))) in old.iter().zip(&records).enumerate() {
        assert_eq!(record.seq, Seq(i as u64 + 1), "in order");
        assert_eq!(&record.body, body, "seq {} arrived unchanged", record.seq.0);
        assert_eq!(record.observed_at, *at);
    }
    assert_eq!(std::fs::read(state_dir.path().join("agent.key")).unwrap(), key_before);
    assert_eq!(std::fs::read(state_dir.path().join(format!("pins/{SERIAL}.sha256"))).unwrap(), PIN);
    agent.stop().await;

    // The next start finds the current format and migrates nothing.
    assert_eq!(state::migrate(state_dir.path()).unwrap(), state::Opened::Current);
}

#[tokio::test]
async fn a_state_directory_from_a_newer_agent_is_refused_untouched() {
    let hub = TestHub::start().await;
    let state_dir = tempfile::tempdir().unwrap();
    format_0_agent(&hub, state_dir.path(), &old_records()).await;
    let marker = "format = 99\n";
    std::fs::write(state_dir.path().join(state::MARKER), marker).unwrap();
    let outbox_before = std::fs::read(state_dir.path().join("outbox.db")).unwrap();

    let config = agent_config(state_dir.path(), None, SERIAL);
    match edge_agent::agent::start(config, CancellationToken::new()) {
        Err(AgentError::State(StateError::Newer { found: 99, .. })) => {}
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("an agent started on a directory from a newer version"),
    }
    assert_eq!(std::fs::read_to_string(state_dir.path().join(state::MARKER)).unwrap(), marker);
    assert_eq!(std::fs::read(state_dir.path().join("outbox.db")).unwrap(), outbox_before);
}
