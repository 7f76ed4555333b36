//! Enrollment and sync between a real agent runtime and a real hub over QUIC on loopback,
//! with a simulated printer printing.

use std::time::Duration;

use edge_agent::sync::client::SyncStatus;
use edge_agent::sync::enroll::{EnrollError, enroll};
use hub::service::commands::StateName;
use hub::service::{CommandRequest, CommandSpec, Principal, Role};
use printer_sim::config::{Model, SimConfig};
use printer_sim::{SimHandle, Simulator};
use proto::{AgentId, PrintState, PrinterEventKind, Record, RecordBody, UnixMillis};
use rustls_pki_types::pem::PemObject;
use tests::fleet::{TestAgent, TestHub, agent_config, eventually};

const SERIAL: &str = "01P00A391800042";

async fn printer() -> SimHandle {
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
        .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
    Simulator::start(config).await.unwrap()
}

/// The hub's records are strictly increasing in sequence (the primary key already rules out
/// duplicates).
fn assert_in_order(records: &[Record]) {
    for pair in records.windows(2) {
        assert!(
            pair[0].seq < pair[1].seq,
            "out of order: {:?} then {:?}",
            pair[0].seq,
            pair[1].seq
        );
    }
}

fn events(records: &[Record]) -> Vec<PrinterEventKind> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::PrinterEvent(e) => Some(e.kind.clone()),
            _ => None,
        })
        .collect()
}

async fn hub_records(hub: &TestHub, agent: &AgentId) -> Vec<Record> {
    hub.db().records(agent).await.unwrap()
}

#[tokio::test]
async fn an_enrolled_agent_syncs_a_whole_print_job_exactly_once_and_in_order() {
    let hub = TestHub::start().await;
    let sim = printer().await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-01").await;
    // The key never left the device and is private.
    use std::os::unix::fs::PermissionsExt;
    for file in ["agent.key", "agent.pem", "hub-ca.pem", "identity.toml"] {
        let mode = std::fs::metadata(state.path().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let mut agent = TestAgent::start(agent_config(state.path(), Some(&sim), SERIAL));
    let id = agent.running().identity.agent.clone();
    assert_eq!(id.as_str(), "pi-01", "the token's name becomes the agent id");
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    sim.start_job("benchy", 5).await.unwrap();
    let records = eventually(hub.handle.changes(), "the finished job at the hub", || async {
        let records = hub_records(&hub, &id).await;
        let finished =
            events(&records).iter().any(|e| matches!(e, PrinterEventKind::JobFinished { .. }));
        finished.then_some(records)
    })
    .await;
    assert_in_order(&records);
    let events = events(&records);
    let started = events.iter().position(|e| matches!(e, PrinterEventKind::JobStarted { .. }));
    let printing = events
        .iter()
        .position(|e| matches!(e, PrinterEventKind::StateChanged { to: PrintState::Printing, .. }));
    let finished = events.iter().position(|e| matches!(e, PrinterEventKind::JobFinished { .. }));
    assert!(started < printing && printing < finished, "{events:#?}");
    // Telemetry is coalesced to one sample per interval: the last layer's arrives with the
    // next sample, at most one interval after the job's end.
    eventually(hub.handle.changes(), "telemetry of the last layer at the hub", || async {
        hub_records(&hub, &id)
            .await
            .iter()
            .any(|r| matches!(&r.body, RecordBody::TelemetryV2(t) if t.state.layer == Some(5)))
            .then_some(())
    })
    .await;

    // The agent's health report at start-up reached the hub too, with its counters (and,
    // once a session measured it, its clock: the same machine's, so within the round trip).
    let (health, counters) = records
        .iter()
        .find_map(|r| match &r.body {
            RecordBody::AgentHealthV3(v3) => {
                if let Some(clock) = v3.clock {
                    let off = clock.offset_ms.unsigned_abs();
                    assert!(off <= u64::from(clock.uncertainty_ms) + 1000, "{clock:?}");
                }
                Some((v3.health.health.clone(), v3.health.counters.clone()))
            }
            _ => None,
        })
        .expect("a health record");
    let printers: Vec<_> = counters.printers.iter().map(|p| p.printer.as_str()).collect();
    assert_eq!(printers, [SERIAL], "{counters:?}");
    assert!(health.disk_free_bytes > 0, "{health:?}");
    assert_eq!(health.certificate_expires_at, Some(agent.running().identity.not_after));

    // Everything the hub committed is acknowledged and gone from the outbox.
    let last = records.last().unwrap().seq;
    agent
        .wait_status(
            "the last record acknowledged",
            |s| matches!(s, SyncStatus::Connected { acked_through, .. } if *acked_through >= last),
        )
        .await;
    let outbox = agent.running().outbox.clone();
    let acked = outbox.lock().unwrap().acked_through();
    assert!(acked >= last);
    assert!(
        hub.db().watermark(&id).await.unwrap() >= acked,
        "the agent never deletes ahead of the hub"
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn enrollment_refuses_reused_expired_and_malformed_tokens_and_a_wrong_hub() {
    let hub = TestHub::start().await;
    let hub_addr = hub.addr.to_string();
    let dir = tempfile::tempdir().unwrap();

    let token = hub.token(None).await;
    enroll(&hub_addr, &token, dir.path()).await.unwrap();
    let again = tempfile::tempdir().unwrap();
    let reused = enroll(&hub_addr, &token, again.path()).await.unwrap_err();
    assert!(matches!(reused, EnrollError::TokenAlreadyUsed), "{reused}");
    assert!(reused.to_string().contains("already been used"), "{reused}");

    let (expired, _) = hub::sync::token::create(
        hub.db(),
        &hub.handle.ca_fingerprint(),
        None,
        Duration::from_secs(1),
        UnixMillis::now().plus_millis(-10_000),
    )
    .await
    .unwrap();
    let error = enroll(&hub_addr, &expired.to_string(), again.path()).await.unwrap_err();
    assert!(matches!(error, EnrollError::ExpiredToken), "{error}");

    let error = enroll(&hub_addr, "kitt1.nonsense", again.path()).await.unwrap_err();
    assert!(matches!(error, EnrollError::MalformedToken), "{error}");

    // A token from another hub: the agent refuses this hub before sending the token.
    let other = TestHub::start().await;
    let foreign = other.token(None).await;
    let error = enroll(&hub_addr, &foreign, again.path()).await.unwrap_err();
    assert!(matches!(error, EnrollError::WrongHub(_)), "{error}");
    assert!(error.to_string().contains("not the hub the token was made for"), "{error}");
    // And the token is still good for its own hub.
    enroll(&other.addr.to_string(), &foreign, again.path()).await.unwrap();

    let missing = dir.path().join("does-not-exist");
    let token = hub.token(None).await;
    let error = enroll(&hub_addr, &token, &missing).await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

#[tokio::test]
async fn a_revoked_agent_is_disconnected_and_cannot_reconnect() {
    let hub = TestHub::start().await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-revoked").await;
    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    let id = agent.running().identity.agent.clone();
    // Revoked by another process (the CLI): the hub notices on its own.
    assert!(hub.db().revoke_agent(id.as_str(), UnixMillis::now()).await.unwrap());
    let status = agent.wait_status("refused", |s| matches!(s, SyncStatus::Refused { .. })).await;
    let SyncStatus::Refused { reason } = status else { unreachable!() };
    assert!(reason.contains("revoked"), "{reason}");
    assert!(hub.handle.connected().is_empty());
    agent.stop().await;

    // A restart does not get it back in.
    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    let status =
        agent.wait_status("refused again", |s| matches!(s, SyncStatus::Refused { .. })).await;
    assert!(matches!(status, SyncStatus::Refused { .. }));
    agent.stop().await;
}

#[tokio::test]
async fn a_command_runs_once_and_an_expired_one_never_runs() {
    let hub = TestHub::start().await;
    let sim = printer().await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-cmd").await;
    let id = AgentId::new("pi-cmd").unwrap();

    // The printer is known (as after an earlier connection); a command is queued while the
    // agent is away, and expires before it returns. Commands exist only through the command
    // service, as an internal actor here.
    let printer = proto::PrinterInfo {
        id: proto::PrinterId::new(SERIAL).unwrap(),
        vendor: proto::Vendor::BambuLab,
        model: None,
        name: None,
        cameras: Vec::new(),
    };
    let agent = proto::AgentId::new("pi-cmd").unwrap();
    hub.db().claim_printer(&agent, &printer, UnixMillis::now()).await.unwrap();
    assert!(hub.db().approve_printer(SERIAL, UnixMillis::now()).await.unwrap());
    let commands = hub.commands();
    let actor = Principal::internal("sync-test", Role::Operator);
    let mut request = CommandRequest::new(CommandSpec::Stop {});
    request.expires_in = Duration::from_millis(300);
    let stale = commands.issue(&actor, SERIAL, request).await.unwrap().command;
    let outcome = eventually(hub.handle.changes(), "the stale command expired", || async {
        hub.db().command_outcome(stale.id).await.unwrap()
    })
    .await;
    assert_eq!(outcome, "expired");

    let mut agent = TestAgent::start(agent_config(state.path(), Some(&sim), SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    sim.start_job("long", 10_000).await.unwrap();
    eventually(hub.handle.changes(), "printing", || async {
        let records = hub_records(&hub, &id).await;
        events(&records)
            .iter()
            .any(|e| matches!(e, PrinterEventKind::StateChanged { to: PrintState::Printing, .. }))
            .then_some(())
    })
    .await;
    let mut request = CommandRequest::new(CommandSpec::Pause {});
    request.expires_in = Duration::from_secs(60);
    request.require_state = vec![StateName::Printing];
    let pause = commands.issue(&actor, SERIAL, request).await.unwrap().command;
    let outcome = eventually(hub.handle.changes(), "the pause's outcome", || async {
        hub.db().command_outcome(pause.id).await.unwrap()
    })
    .await;
    assert_eq!(outcome, "succeeded");
    eventually(hub.handle.changes(), "the paused event", || async {
        let records = hub_records(&hub, &id).await;
        events(&records)
            .iter()
            .any(|e| matches!(e, PrinterEventKind::JobPaused { .. }))
            .then_some(())
    })
    .await;

    // A restart of the agent: the hub delivers again what has no outcome at the agent's
    // first connection; the ledger keeps it from running twice.
    agent.stop().await;
    let mut agent = TestAgent::start(agent_config(state.path(), Some(&sim), SERIAL));
    agent.wait_status("reconnected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    let results: Vec<_> = hub_records(&hub, &id)
        .await
        .into_iter()
        .filter_map(|r| match r.body {
            RecordBody::CommandResult(result) => Some(result.command),
            _ => None,
        })
        .collect();
    assert_eq!(results, [pause.id], "one result, for the pause only");
    // The simulator saw a stop never.
    assert!(
        !hub_records(&hub, &id).await.iter().any(|r| matches!(
            &r.body,
            RecordBody::PrinterEvent(e) if matches!(e.kind, PrinterEventKind::JobFinished { .. })
        )),
        "the expired stop never ran"
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_certificate_near_its_end_is_renewed_over_the_authenticated_connection() {
    // Certificates of 10 minutes: past two thirds of their life (counting the hour they are
    // backdated for clock skew) from the start, so the agent renews at once.
    let hub = TestHub::start_with(|config| config.cert_lifetime = Duration::from_secs(600)).await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-renew").await;
    let before = std::fs::read_to_string(state.path().join("agent.pem")).unwrap();
    let id = AgentId::new("pi-renew").unwrap();
    let enrolled_serial = hub.db().agent(&id).await.unwrap().unwrap().cert_serial;

    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    let renewed_serial =
        eventually(hub.handle.changes(), "the renewed certificate recorded by the hub", || async {
            let serial = hub.db().agent(&id).await.unwrap().unwrap().cert_serial;
            (serial != enrolled_serial).then_some(serial)
        })
        .await;
    // The agent reports the new certificate in its status once it has saved it.
    let enrolled_not_after = agent.running().identity.not_after;
    agent
        .wait_status("the renewed certificate in use", |s| {
            matches!(s, SyncStatus::Connected { certificate_not_after, .. }
                if *certificate_not_after > enrolled_not_after)
        })
        .await;
    let after = std::fs::read_to_string(state.path().join("agent.pem")).unwrap();
    assert_ne!(after, before, "the renewed certificate is saved");
    agent.stop().await;
    assert_ne!(renewed_serial, enrolled_serial);
    let der = rustls_pki_types::CertificateDer::from_pem_slice(after.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(hex::encode(cert.raw_serial()), renewed_serial.trim_start_matches("00"));

    // The agent comes back with its new certificate (and key).
    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    agent
        .wait_status("connected with the renewed certificate", |s| {
            matches!(s, SyncStatus::Connected { .. })
        })
        .await;
    agent.stop().await;
}

/// An agent of wire version 3 cannot read a start's clock-free plate check (version 4): the
/// hub never sends it one, answers the start itself as unsupported, naming the upgrade, and
/// still delivers what the agent can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_agent_is_never_sent_a_start_it_cannot_read() {
    use edge_agent::sync::identity::Identity;
    use proto::{AgentHello, AgentMessage, Capabilities, HubMessage, PrinterId, PrinterInfo, Seq};

    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = TestAgent::enroll(&hub, dir.path(), "pi-v3").await;
    let identity = Identity::load(&state_dir).unwrap();
    let config = edge_agent::sync::tls::sync_config(
        &identity.hub_ca_der,
        identity.chain(),
        identity.key(),
        edge_agent::sync::tls::Timeouts::default(),
    )
    .unwrap();
    let endpoint = edge_agent::sync::enroll::client_endpoint(hub.addr).unwrap();
    let connection = endpoint
        .connect_with(config, hub.addr, proto::net::HUB_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, recv) = connection.open_bi().await.unwrap();
    let hello = AgentHello {
        agent: identity.agent.clone(),
        protocol_version: 3,
        software: edge_agent::sync::enroll::software(),
        capabilities: Capabilities::PRINTER_CONTROL,
        printers: vec![PrinterInfo {
            id: PrinterId::new(SERIAL).unwrap(),
            vendor: proto::Vendor::BambuLab,
            model: None,
            name: None,
            cameras: Vec::new(),
        }],
        last_seq: Seq::ZERO,
    };
    proto_io::write(&mut send, &AgentMessage::Hello(hello)).await.unwrap();
    let mut reader = proto_io::FrameReader::new(recv, proto::frame::MAX_PAYLOAD);
    let Ok(HubMessage::Welcome(welcome)) = reader.next::<HubMessage>().await else {
        panic!("no welcome")
    };
    assert_eq!(welcome.protocol_version, 3);
    assert!(hub.db().approve_printer(SERIAL, UnixMillis::now()).await.unwrap());

    let commands = hub.commands();
    let actor = Principal::internal("sync-test", Role::Operator);
    let start = CommandRequest::new(CommandSpec::StartPrint {
        file: "/model/a.gcode.3mf".into(),
        plate: None,
        job_name: None,
        ams_mapping: Vec::new(),
        use_ams: false,
        plate_confirmed_clear: true,
    });
    let start = commands.issue(&actor, SERIAL, start).await.unwrap().command;
    let pause = CommandRequest::new(CommandSpec::Pause {});
    let pause = commands.issue(&actor, SERIAL, pause).await.unwrap().command;
    // The first command on the stream is the pause: the start was withheld.
    let delivered = loop {
        match reader.next::<HubMessage>().await.expect("the hub keeps the stream") {
            HubMessage::Command(command) => break command,
            _ => continue,
        }
    };
    assert_eq!(delivered.id, pause.id);
    let outcome = eventually(hub.handle.changes(), "the start answered", || async {
        hub.db().command_outcome(start.id).await.unwrap()
    })
    .await;
    assert!(outcome.starts_with("unsupported: the agent speaks wire version 3"), "{outcome}");
    assert!(outcome.contains("upgrade kitt-agent"), "{outcome}");
    connection.close(0u32.into(), b"bye");
}

/// Issue 17, item 5: the job in progress survives an agent restart. Restarted mid-print, the
/// agent goes on with the job it knew (the hub holds one start, one end); stopped while a job
/// ends, it records that end, with the printer's outcome, when it sees the printer again.
#[tokio::test]
async fn an_agent_restarted_mid_print_keeps_one_job_and_records_an_end_it_did_not_see() {
    let hub = TestHub::start().await;
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
        .with_intervals(Duration::from_millis(60), Duration::from_millis(20));
    let sim = Simulator::start(config).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-restart").await;
    let start = || {
        let mut agent = TestAgent::start(agent_config(state.path(), Some(&sim), SERIAL));
        async move {
            agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
            agent
        }
    };
    let id = AgentId::new("pi-restart").unwrap();
    let job_events = |name: &'static str| {
        let hub = &hub;
        let id = id.clone();
        async move {
            let records = hub_records(hub, &id).await;
            let mut started = 0;
            let mut ended = Vec::new();
            for event in events(&records) {
                match event {
                    PrinterEventKind::JobStarted { job_name, .. }
                        if job_name.as_deref() == Some(name) =>
                    {
                        started += 1
                    }
                    PrinterEventKind::JobFinished { job_name, outcome }
                        if job_name.as_deref() == Some(name) =>
                    {
                        ended.push(outcome)
                    }
                    _ => {}
                }
            }
            (started, ended)
        }
    };

    // Restarted mid-print.
    let agent = start().await;
    sim.start_job("long", 80).await.unwrap();
    eventually(hub.handle.changes(), "the long job's start at the hub", || async {
        (job_events("long").await.0 == 1).then_some(())
    })
    .await;
    agent.stop().await;
    let agent = start().await;
    let (started, ended) =
        eventually(hub.handle.changes(), "the long job's end at the hub", || async {
            let (started, ended) = job_events("long").await;
            (!ended.is_empty()).then_some((started, ended))
        })
        .await;
    assert_eq!(started, 1, "the restart announced the job again");
    assert_eq!(ended, [proto::JobOutcome::Succeeded]);

    // Stopped while a job ends: the end is recorded when the agent is back.
    let mut sim_events = sim.events();
    sim.start_job("unseen", 30).await.unwrap();
    eventually(hub.handle.changes(), "the unseen job's start at the hub", || async {
        (job_events("unseen").await.0 == 1).then_some(())
    })
    .await;
    agent.stop().await;
    assert_eq!(job_events("unseen").await.1, [], "the job ended before the agent stopped");
    sim_events
        .wait_for_published(Duration::from_secs(30), |m| {
            (m["print"]["gcode_state"] == "FINISH").then_some(())
        })
        .await
        .unwrap();
    let agent = start().await;
    let (started, ended) =
        eventually(hub.handle.changes(), "the unseen job's end at the hub", || async {
            let (started, ended) = job_events("unseen").await;
            (!ended.is_empty()).then_some((started, ended))
        })
        .await;
    assert_eq!((started, ended), (1, vec![proto::JobOutcome::Succeeded]));
    agent.stop().await;
    sim.shutdown().await;
}
