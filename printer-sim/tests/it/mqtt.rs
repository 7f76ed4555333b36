//! The broker: TLS, CONNECT, SUBSCRIBE, PUBLISH, keep-alive, misbehaving clients.

use std::sync::Arc;
use std::time::Duration;

use printer_sim::{Model, SimEvent, Simulator};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, SubscribeReasonCode};
use serde_json::json;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{MqttClient, PrinterVerifier, WAIT, client_config, fast_config, tls_connect};

#[tokio::test]
async fn wrong_password_or_username_gets_connack_not_authorized() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut events = sim.events();
    let refused = MqttClient::connect_with(&sim, "bblp", "87654321", rustls::ALL_VERSIONS).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
    let refused = MqttClient::connect_with(&sim, "admin", "12345678", rustls::ALL_VERSIONS).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::NotAuthorized));
    events
        .wait_for(WAIT, |event| matches!(event, SimEvent::ConnectRefused { .. }).then_some(()))
        .await
        .unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn clients_connect_over_tls_1_2_and_1_3() {
    let sim = Simulator::start(fast_config(Model::P1S)).await.unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let code = sim.access_code().as_str().to_owned();
        let mut client = MqttClient::connect_with(&sim, "bblp", &code, &[version]).await.unwrap();
        client.subscribe_reports(&sim).await;
        let report = client.next_message().await;
        assert_eq!(report["print"]["command"], "push_status");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn webpki_refuses_the_version_1_leaf_like_it_refuses_a_real_printer() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(sim.ca_der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(crate::support::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let error = tls_connect(&sim, Arc::new(config)).await.unwrap_err();
    assert!(error.to_string().contains("UnsupportedCertVersion"), "{error}");
    sim.shutdown().await;
}

#[tokio::test]
async fn several_clients_each_receive_the_reports() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut first = MqttClient::connect(&sim).await;
    let mut second = MqttClient::connect(&sim).await;
    first.subscribe_reports(&sim).await;
    let code = second.subscribe("device/+/report").await;
    assert_eq!(code, Some(SubscribeReasonCode::Success(QoS::AtMostOnce)));
    first
        .request(
            &sim,
            &json!({"pushing": {"sequence_id": "1", "command": "pushall"}}),
            QoS::AtMostOnce,
        )
        .await;
    for client in [&mut first, &mut second] {
        let full = client.wait_message(|m| m["print"]["msg"] == 0).await;
        assert_eq!(full["print"]["gcode_state"], "IDLE");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn subscribing_to_the_request_topic_drops_a_p1_or_a1_client_but_not_an_x1_client() {
    for model in [Model::P1S, Model::A1Mini] {
        let sim = Simulator::start(fast_config(model)).await.unwrap();
        let mut client = MqttClient::connect(&sim).await;
        assert_eq!(
            client.subscribe(&sim.request_topic()).await,
            None,
            "{model}: connection dropped"
        );
        sim.shutdown().await;
    }
    let sim = Simulator::start(fast_config(Model::X1C)).await.unwrap();
    let mut watcher = MqttClient::connect(&sim).await;
    let code = watcher.subscribe(&sim.request_topic()).await;
    assert_eq!(code, Some(SubscribeReasonCode::Success(QoS::AtMostOnce)));
    let mut sender = MqttClient::connect(&sim).await;
    let request = json!({"print": {"sequence_id": "5", "command": "gcode_line", "param": "G28\n"}});
    sender.request(&sim, &request, QoS::AtLeastOnce).await;
    assert_eq!(watcher.next_message().await, request, "X1 echoes requests to watchers");
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_only_the_client_that_sent_it() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut good = MqttClient::connect(&sim).await;
    good.subscribe_reports(&sim).await;
    let mut bad = MqttClient::connect(&sim).await;
    // Packet type 0 is reserved.
    bad.send_raw(&[0x00, 0x02, 0xFF, 0xFF]).await;
    assert!(bad.recv().await.is_none(), "the garbage sender is disconnected");

    let mut oversized = MqttClient::connect(&sim).await;
    // A PUBLISH announcing 2 MiB of remaining length.
    oversized.send_raw(&[0x30, 0x80, 0x80, 0x80, 0x01]).await;
    assert!(oversized.recv().await.is_none(), "the oversized sender is disconnected");

    let report = good.next_message().await;
    assert_eq!(report["print"]["command"], "push_status", "other clients are unaffected");
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_json_is_ignored_and_qos1_requests_are_acknowledged() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut events = sim.events();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let mut publish = rumqttc::mqttbytes::v4::Publish::new(
        sim.request_topic(),
        QoS::AtLeastOnce,
        b"{not json".to_vec(),
    );
    publish.pkid = 77;
    client.send(Packet::Publish(publish)).await;
    loop {
        match client.recv().await {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.pkid, 77);
                break;
            }
            Some(Packet::Publish(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let reason = events
        .wait_for(WAIT, |event| match event {
            SimEvent::RequestIgnored { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert!(reason.starts_with("invalid JSON"), "{reason}");
    // The session goes on.
    client
        .request(
            &sim,
            &json!({"pushing": {"sequence_id": "2", "command": "pushall"}}),
            QoS::AtLeastOnce,
        )
        .await;
    client.wait_message(|m| m["print"]["msg"] == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pingreq_gets_pingresp() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.send(Packet::PingReq).await;
    assert_eq!(client.recv().await, Some(Packet::PingResp));
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_connections_closes_every_client_and_they_can_reconnect() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut first = MqttClient::connect(&sim).await;
    let mut second = MqttClient::connect(&sim).await;
    first.subscribe_reports(&sim).await;
    second.subscribe_reports(&sim).await;
    sim.drop_connections();
    for client in [&mut first, &mut second] {
        while client.recv().await.is_some() {}
    }
    let mut again = MqttClient::connect(&sim).await;
    again.subscribe_reports(&sim).await;
    again.next_message().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn rotating_the_certificate_presents_a_new_key_from_the_same_ca() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let verifier = PrinterVerifier::new(&sim);
    let config = client_config(verifier.clone(), rustls::ALL_VERSIONS);
    drop(tls_connect(&sim, config.clone()).await.unwrap());
    let rotated = sim.rotate_certificate().unwrap();
    assert_eq!(sim.leaf_der(), rotated);
    drop(tls_connect(&sim, config).await.unwrap());

    let seen = verifier.seen_leaves.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let spki = |der: &[u8]| X509Certificate::from_der(der).unwrap().1.public_key().raw.to_vec();
    assert_ne!(spki(&seen[0]), spki(&seen[1]), "a client pinning the key sees a change");
    assert_eq!(seen[1], rotated);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rumqttc_client_connects_and_receives_reports() {
    use rumqttc::{AsyncClient, Event, MqttOptions, TlsConfiguration, Transport};

    let sim = Simulator::start(fast_config(Model::X1C)).await.unwrap();
    let mut options = MqttOptions::new("rumqttc-test", "127.0.0.1", sim.addr().port());
    options.set_credentials("bblp", sim.access_code().as_str());
    options.set_keep_alive(Duration::from_secs(5));
    let config = client_config(PrinterVerifier::new(&sim), rustls::ALL_VERSIONS);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe(sim.report_topic(), rumqttc::QoS::AtMostOnce).await.unwrap();
    let report = tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(rumqttc::Packet::Publish(publish)) =
                eventloop.poll().await.unwrap()
            {
                return serde_json::from_slice::<serde_json::Value>(&publish.payload).unwrap();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(report["print"]["msg"], 0, "X1 reports are full");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_restarted_simulator_keeps_its_address_and_identity_when_asked() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let verifier = PrinterVerifier::new(&sim);
    let config = client_config(verifier.clone(), rustls::ALL_VERSIONS);
    drop(tls_connect(&sim, config.clone()).await.unwrap());
    let mut restart = fast_config(Model::A1Mini);
    restart.bind = sim.addr();
    restart.ca = Some(sim.ca().clone());
    restart.leaf = Some(sim.leaf());
    sim.shutdown().await;

    let sim = Simulator::start(restart).await.unwrap();
    drop(tls_connect(&sim, config).await.unwrap());
    let seen = verifier.seen_leaves.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "same certificate, same key");
    sim.shutdown().await;
}
