//! Sync through a userspace UDP relay that loses, delays, reorders and partitions, while a
//! simulated printer prints; and hostile clients on the hub's port.

use std::time::Duration;

use edge_agent::sync::client::SyncStatus;
use printer_sim::Simulator;
use printer_sim::config::{Model, SimConfig};
use proto::{AgentId, PrinterEventKind, Record, RecordBody, Seq};
use tests::fleet::{TestAgent, TestHub, agent_config, eventually};
use tests::relay::{Impairment, Relay};

const SERIAL: &str = "01P00A391800077";

/// The hub holds exactly 1..=`through`: no gap, no duplicate, in order.
fn assert_exactly(records: &[Record], through: Seq) {
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    let want: Vec<u64> = (1..=through.0).collect();
    if seqs != want {
        let missing: Vec<u64> = want.iter().filter(|s| !seqs.contains(s)).copied().collect();
        panic!(
            "the hub holds {} records, expected 1..={}; missing {:?}; first seqs {:?}",
            seqs.len(),
            through.0,
            &missing[..missing.len().min(20)],
            &seqs[..seqs.len().min(20)]
        );
    }
}

#[tokio::test]
async fn a_partition_with_loss_and_reordering_loses_and_duplicates_nothing() {
    let hub = TestHub::start().await;
    let relay = Relay::start(hub.addr).await;
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::X1C)
        .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
    let sim = Simulator::start(config).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll_via(&hub, relay.addr, state.path(), "pi-lossy").await;
    let id = AgentId::new("pi-lossy").unwrap();
    let mut agent = TestAgent::start(agent_config(state.path(), Some(&sim), SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    relay.set(Impairment {
        loss: 0.05,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(8),
        ..Impairment::default()
    });
    sim.start_job("through-the-storm", 100_000).await.unwrap();
    eventually(hub.handle.changes(), "records flowing through the lossy link", || async {
        (hub.db().record_count(&id).await.unwrap() > 20).then_some(())
    })
    .await;

    // A partition longer than the idle timeout: the connection dies on both sides.
    relay.partition(true);
    agent.wait_status("the link down", |s| matches!(s, SyncStatus::Disconnected { .. })).await;
    let during = hub.db().record_count(&id).await.unwrap();
    relay.partition(false);
    agent.wait_status("reconnected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    eventually(hub.handle.changes(), "records made during the partition at the hub", || async {
        (hub.db().record_count(&id).await.unwrap() > during + 5).then_some(())
    })
    .await;
    // The printer keeps printing; wait for an acknowledgement that covers everything durable
    // (the status changes with every acknowledgement).
    let outbox = agent.running().outbox.clone();
    agent
        .wait_status("the outbox drained", |s| {
            let durable = outbox.lock().unwrap().durable_through();
            matches!(s, SyncStatus::Connected { acked_through, .. } if *acked_through == durable)
        })
        .await;
    let durable = outbox.lock().unwrap().acked_through();
    let records = hub.db().records(&id).await.unwrap();
    let through = records.last().unwrap().seq;
    assert!(through >= durable, "the hub has everything acknowledged");
    assert_exactly(&records, through);
    let (forwarded, dropped) = relay.counts();
    assert!(
        dropped > 0 && forwarded > 0,
        "the relay really impaired the link: {forwarded} / {dropped}"
    );
    agent.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_and_clients_without_a_hub_certificate_are_refused_and_others_carry_on() {
    let hub = TestHub::start().await;
    let state = tempfile::tempdir().unwrap();
    TestAgent::enroll(&hub, state.path(), "pi-good").await;
    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    // Garbage datagrams on the QUIC port.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for size in [1, 20, 1200, 1500] {
        let junk: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        socket.send_to(&junk, hub.addr).await.unwrap();
    }

    // A client with a certificate from a CA of its own: the TLS handshake fails.
    let refused = tests::scenario::foreign_client(hub.addr, &hub.handle.ca_der()).await;
    assert!(refused.is_err(), "a foreign certificate got an answer: {refused:?}");

    // A client with no certificate at all on the sync protocol: closed as unauthenticated.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(hub.handle.ca_der())).unwrap();
    let mut anonymous = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    anonymous.alpn_protocols = vec![proto::net::ALPN_SYNC.to_vec()];
    let anonymous = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(anonymous).unwrap(),
    ));
    let endpoint = edge_agent::sync::enroll::client_endpoint(hub.addr).unwrap();
    let connection = endpoint
        .connect_with(anonymous, hub.addr, proto::net::HUB_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await.unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 2, "{close:?}");
            assert!(String::from_utf8_lossy(&close.reason).contains("enroll"), "{close:?}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }

    // The enrolled agent is unaffected and still syncs.
    let outbox = agent.running().outbox.clone();
    tokio::task::spawn_blocking(move || {
        let mut outbox = outbox.lock().unwrap();
        outbox
            .append(
                proto::UnixMillis::now(),
                RecordBody::PrinterEvent(proto::PrinterEvent {
                    printer: proto::PrinterId::new(SERIAL).unwrap(),
                    kind: PrinterEventKind::Reachable,
                }),
            )
            .unwrap();
        outbox.commit().unwrap();
    })
    .await
    .unwrap();
    let id = AgentId::new("pi-good").unwrap();
    eventually(hub.handle.changes(), "the good agent's record at the hub", || async {
        (hub.db().record_count(&id).await.unwrap() >= 1).then_some(())
    })
    .await;
    agent.stop().await;
}
