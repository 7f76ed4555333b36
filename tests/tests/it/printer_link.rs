//! The agent's Bambu printer link over real MQTT and real TLS, against mosquitto (the path a
//! real printer takes, fed with recorded reports) and against `kitt-printer-sim`.

use std::time::Duration;

use edge_agent::printer::bambu::link::{self, AccessCode, LinkConfig, LinkOutput, LinkProblem};
use edge_agent::printer::bambu::tls::{CertificateProblem, Trust};
use proto::{PrintState, PrinterId};
use rumqttc::QoS;
use serde_json::Value;
use tests::mosquitto::Mosquitto;
use tests::{init, wait_for};
use tokio_util::sync::CancellationToken;

const SERIAL: &str = "0300AA391800001";
const ACCESS_CODE: &str = "12345678";

/// Whether a Bambu state lists an AMS unit (a full report has arrived).
fn has_ams(state: &proto::PrinterStateV2) -> bool {
    state.bambu().is_some_and(|bambu| !bambu.ams.is_empty())
}

fn fixture(name: &str) -> Value {
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{root}/../edge-agent/test_data/bambu/{name}");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["message"].clone()
}

fn config(port: u16, access_code: &str, trust: Trust) -> LinkConfig {
    let mut config = LinkConfig::new(
        "127.0.0.1".into(),
        PrinterId::new(SERIAL).unwrap(),
        AccessCode::new(access_code).unwrap(),
        trust,
    );
    config.port = port;
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(500);
    config
}

/// Waits for the link to report a refused certificate.
async fn certificate_problem(
    outputs: &mut tokio::sync::mpsc::Receiver<LinkOutput>,
    what: &str,
) -> CertificateProblem {
    wait_for(outputs, what, |o| match o {
        LinkOutput::Problem(LinkProblem::Certificate { problem, .. }) => Some(problem.clone()),
        _ => None,
    })
    .await
}

/// Publishes recorded reports as the printer would, once the agent has asked for them.
async fn replay_on_request(broker: &Mosquitto, reports: Vec<Value>) -> tokio::task::JoinHandle<()> {
    let (client, mut eventloop) = broker.recorder();
    client.subscribe(format!("device/{SERIAL}/request"), QoS::AtMostOnce).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok(event) = eventloop.poll().await else { return };
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(request)) = event {
                let request: Value = serde_json::from_slice(&request.payload).unwrap_or_default();
                if request["pushing"]["command"] == "pushall" {
                    for report in &reports {
                        let topic = format!("device/{SERIAL}/report");
                        client
                            .publish(topic, QoS::AtMostOnce, false, report.to_string())
                            .await
                            .unwrap();
                    }
                }
            }
        }
    })
}

#[tokio::test]
async fn recorded_a1_mini_reports_through_mosquitto_give_the_right_state() {
    init();
    let broker = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let replay = replay_on_request(
        &broker,
        vec![fixture("get_version-a1mini.json"), fixture("pushall-n1-idle.json")],
    )
    .await;
    let trust = Trust::Ca(vec![broker.ca_der.clone()]);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(broker.tls_port, ACCESS_CODE, trust), shutdown.clone());

    let state = wait_for(&mut outputs, "the printer's state", |o| match o {
        LinkOutput::State(s) if s.firmware.is_some() && !has_ams(s) => None,
        LinkOutput::State(s) if s.firmware.is_some() => Some(s.clone()),
        _ => None,
    })
    .await;
    let json = proto::json::printer_state_v2(&state);
    assert_eq!(json["kind"], "bambu");
    assert_eq!(json["state"], "idle");
    assert_eq!(json["model"], "N1");
    assert_eq!(json["firmware"], "01.07.02.00");
    assert_eq!(json["speed_level"], "standard");
    assert_eq!(json["ams"][0]["kind"], "ams_lite");
    assert_eq!(json["ams"][0]["trays"][0]["color"], "#DE4343");
    assert_eq!(json["ams"][0]["trays"][2]["material"], "PETG");
    assert_eq!(json["lights"]["chamber_light"], "off");
    assert_eq!(state.state, PrintState::Idle);

    shutdown.cancel();
    task.await.unwrap();
    replay.abort();
}

#[tokio::test]
async fn a_wrong_access_code_gives_one_clear_error_and_a_slow_retry() {
    init();
    let broker = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let trust = Trust::Ca(vec![broker.ca_der.clone()]);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(broker.tls_port, "87654321", trust), shutdown.clone());
    let problem = wait_for(&mut outputs, "a refused access code", |o| match o {
        LinkOutput::Problem(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(problem, LinkProblem::WrongAccessCode { retry_s: 60 });
    assert!(problem.to_string().contains("access code"), "{problem}");
    // The retry is slow: nothing else arrives while the test would notice a fast loop.
    let next = tokio::time::timeout(Duration::from_secs(2), outputs.recv()).await;
    assert!(next.is_err(), "the link retried at once: {next:?}");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_serial_is_refused() {
    init();
    let broker = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let other_ca = printer_sim::certs::PrinterCa::generate("Someone Else CA").unwrap();
    let trust = Trust::Ca(vec![other_ca.cert_der().to_vec()]);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(broker.tls_port, ACCESS_CODE, trust), shutdown.clone());
    let problem = certificate_problem(&mut outputs, "a refused certificate").await;
    assert!(matches!(problem, CertificateProblem::Untrusted(_)), "{problem:?}");
    shutdown.cancel();
    task.await.unwrap();

    // The right CA, but the agent expects another printer at this address.
    let mut wrong_serial =
        config(broker.tls_port, ACCESS_CODE, Trust::Ca(vec![broker.ca_der.clone()]));
    wrong_serial.serial = PrinterId::new("01P00A000000999").unwrap();
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) = link::spawn(wrong_serial, shutdown.clone());
    let problem = certificate_problem(&mut outputs, "a certificate for another serial").await;
    assert!(matches!(problem, CertificateProblem::WrongSerial { .. }), "{problem:?}");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn trust_on_first_use_pins_the_key_and_refuses_a_change() {
    init();
    let pins = tempfile::tempdir().unwrap();
    let pin_file = pins.path().join(format!("{SERIAL}.sha256"));
    let first = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let _replay = replay_on_request(&first, vec![fixture("pushall-n1-idle.json")]).await;
    let trust = Trust::FirstUse { pin_file: pin_file.clone() };
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(first.tls_port, ACCESS_CODE, trust.clone()), shutdown.clone());
    wait_for(&mut outputs, "a state over the pinned connection", |o| {
        matches!(o, LinkOutput::State(_)).then_some(())
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert!(pin_file.exists(), "the key was pinned");

    // Another device (a new key) now answers for the same serial.
    let impostor = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(impostor.tls_port, ACCESS_CODE, trust), shutdown.clone());
    let problem = certificate_problem(&mut outputs, "a refused key change").await;
    assert!(matches!(problem, CertificateProblem::PinMismatch { .. }), "{problem:?}");
    assert!(problem.to_string().contains("CHANGED"), "{problem}");
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_reports_are_reported_and_the_link_keeps_going() {
    init();
    let broker = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let huge = serde_json::json!({"print": {"msg": 1, "junk": "x".repeat(300 * 1024)}});
    let reports = vec![
        serde_json::json!("not an object"),
        huge,
        serde_json::json!({"print": {"msg": 1, "mc_percent": {"nested": true}, "layer_num": "7"}}),
        fixture("pushall-n1-idle.json"),
    ];
    let _replay = replay_on_request(&broker, reports).await;
    let shutdown = CancellationToken::new();
    let trust = Trust::Ca(vec![broker.ca_der.clone()]);
    let (_handle, mut outputs, task) =
        link::spawn(config(broker.tls_port, ACCESS_CODE, trust), shutdown.clone());
    let problem = wait_for(&mut outputs, "a rejected report", |o| match o {
        LinkOutput::Problem(LinkProblem::BadReport(detail)) => Some(detail.clone()),
        _ => None,
    })
    .await;
    assert!(problem.contains("not a JSON object"), "{problem}");
    let problem = wait_for(&mut outputs, "a rejected oversized report", |o| match o {
        LinkOutput::Problem(LinkProblem::BadReport(detail)) => Some(detail.clone()),
        _ => None,
    })
    .await;
    assert!(problem.contains("exceeds"), "{problem}");
    // The full report after the bad ones still arrives.
    wait_for(&mut outputs, "the good report after the bad ones", |o| match o {
        LinkOutput::State(s) if has_ams(s) => Some(()),
        _ => None,
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
}

mod against_the_simulator {
    use std::time::Duration;

    use edge_agent::printer::bambu::link::{self, LinkHandle, LinkOutput};
    use edge_agent::printer::bambu::tls::Trust;
    use printer_sim::config::{Fault, Hms as SimHms, Model, SimConfig};
    use printer_sim::{SimHandle, Simulator};
    use proto::{
        CommandAction, CommandOutcome, ControlCapability, JobOutcome, PrintState, PrinterEventKind,
    };
    use tests::{init, wait_for};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    const SIM_SERIAL: &str = "01P00A391800002";

    async fn simulator(faults: Vec<Fault>) -> SimHandle {
        let mut config =
            SimConfig::new(SIM_SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
                .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
        config.faults = faults;
        Simulator::start(config).await.unwrap()
    }

    async fn connect(
        sim: &SimHandle,
    ) -> (LinkHandle, mpsc::Receiver<LinkOutput>, CancellationToken) {
        let mut config =
            super::config(sim.addr().port(), "12345678", Trust::Ca(vec![sim.ca_der().to_vec()]));
        config.serial = proto::PrinterId::new(SIM_SERIAL).unwrap();
        let shutdown = CancellationToken::new();
        let (handle, mut outputs, _task) = link::spawn(config, shutdown.clone());
        wait_for(&mut outputs, "the idle printer", |o| match o {
            LinkOutput::State(s) if s.state == PrintState::Idle && s.firmware.is_some() => Some(()),
            _ => None,
        })
        .await;
        (handle, outputs, shutdown)
    }

    /// Collects events until a job ends.
    async fn events_until_job_ends(
        outputs: &mut mpsc::Receiver<LinkOutput>,
    ) -> Vec<PrinterEventKind> {
        let mut events = Vec::new();
        wait_for(outputs, "the end of the job", |o| match o {
            LinkOutput::Event { kind, .. } => {
                events.push(kind.clone());
                matches!(kind, PrinterEventKind::JobFinished { .. }).then_some(())
            }
            _ => None,
        })
        .await;
        events
    }

    #[tokio::test]
    async fn a_whole_print_job_from_idle_to_finished() {
        init();
        let sim = simulator(Vec::new()).await;
        let (_handle, mut outputs, shutdown) = connect(&sim).await;
        sim.start_job("benchy", 5).await.unwrap();
        let events = events_until_job_ends(&mut outputs).await;
        let position = |want: &PrinterEventKind| events.iter().position(|e| e == want);
        let started = position(&PrinterEventKind::JobStarted {
            job_name: Some("benchy".into()),
            total_layers: Some(5),
        });
        let printing = position(&PrinterEventKind::StateChanged {
            from: PrintState::Preparing,
            to: PrintState::Printing,
        });
        let finished = position(&PrinterEventKind::JobFinished {
            job_name: Some("benchy".into()),
            outcome: JobOutcome::Succeeded,
        });
        assert!(started.is_some() && printing.is_some() && finished.is_some(), "{events:#?}");
        assert!(started < printing && printing < finished, "{events:#?}");
        shutdown.cancel();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_scripted_failure_shows_its_hms_code_and_print_error() {
        init();
        let hms: SimHms = "0300_0100_0001_0007".parse().unwrap();
        let sim =
            simulator(vec![Fault::FailAtLayer { layer: 3, hms, print_error: 0x0300_8003 }]).await;
        let (_handle, mut outputs, shutdown) = connect(&sim).await;
        sim.start_job("cube", 10).await.unwrap();
        let events = events_until_job_ends(&mut outputs).await;
        let alert = proto::Hms { attr: hms.attr, code: hms.code };
        assert_eq!(
            events.last(),
            Some(&PrinterEventKind::JobFinished {
                job_name: Some("cube".into()),
                outcome: JobOutcome::Failed { print_error: Some(0x0300_8003), hms: vec![alert] },
            }),
            "{events:#?}"
        );
        // What `kitt-agent watch` prints for it.
        let json = proto::json::printer_event(events.last().unwrap());
        assert_eq!(json["type"], "job_failed");
        assert_eq!(json["error"]["print_error"], "0300_8003");
        assert_eq!(json["error"]["hms"][0]["code"], "0300_0100_0001_0007");
        shutdown.cancel();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn pause_and_resume_are_acknowledged_and_change_the_state() {
        init();
        let sim = simulator(Vec::new()).await;
        let (handle, mut outputs, shutdown) = connect(&sim).await;
        sim.start_job("long", 1000).await.unwrap();
        wait_for(&mut outputs, "printing", |o| match o {
            LinkOutput::State(s) if s.state == PrintState::Printing => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(handle.send(CommandAction::Pause).await, CommandOutcome::Succeeded);
        wait_for(&mut outputs, "paused", |o| match o {
            LinkOutput::Event { kind: PrinterEventKind::JobPaused { .. }, .. } => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(handle.send(CommandAction::Resume).await, CommandOutcome::Succeeded);
        wait_for(&mut outputs, "resumed", |o| match o {
            LinkOutput::Event { kind: PrinterEventKind::JobResumed, .. } => Some(()),
            _ => None,
        })
        .await;
        shutdown.cancel();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_printer_without_developer_mode_becomes_read_only() {
        init();
        let sim = simulator(vec![Fault::RefuseControl]).await;
        let (handle, mut outputs, shutdown) = connect(&sim).await;
        assert_eq!(handle.send(CommandAction::Pause).await, CommandOutcome::ReadOnly);
        wait_for(&mut outputs, "read-only control", |o| match o {
            LinkOutput::Event {
                kind: PrinterEventKind::ControlChanged { to: ControlCapability::ReadOnly, .. },
                ..
            } => Some(()),
            _ => None,
        })
        .await;
        shutdown.cancel();
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_silent_printer_is_marked_unreachable_and_comes_back() {
        init();
        let sim = simulator(Vec::new()).await;
        let mut config =
            super::config(sim.addr().port(), "12345678", Trust::Ca(vec![sim.ca_der().to_vec()]));
        config.serial = proto::PrinterId::new(SIM_SERIAL).unwrap();
        config.session.silence_timeout = Duration::from_millis(600);
        let shutdown = CancellationToken::new();
        let (_handle, mut outputs, _task) = link::spawn(config, shutdown.clone());
        wait_for(&mut outputs, "the idle printer", |o| match o {
            LinkOutput::State(s) if s.state == PrintState::Idle => Some(()),
            _ => None,
        })
        .await;
        sim.set_fault(Fault::Silent).await.unwrap();
        let offline = wait_for(&mut outputs, "the offline state", |o| match o {
            LinkOutput::State(s) if s.state == PrintState::Offline => Some(s.clone()),
            _ => None,
        })
        .await;
        assert!(offline.last_report_at.is_some(), "the last known report time is kept");
        let reason = wait_for(&mut outputs, "the printer marked unreachable", |o| match o {
            LinkOutput::Event { kind: PrinterEventKind::Unreachable { reason }, .. } => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(reason, "no report for 600 ms");
        // The link reconnects; once the printer talks again it is reachable and idle.
        sim.clear_fault(printer_sim::config::FaultKind::Silent).await.unwrap();
        wait_for(&mut outputs, "the printer reachable again", |o| match o {
            LinkOutput::Event { kind: PrinterEventKind::Reachable, .. } => Some(()),
            _ => None,
        })
        .await;
        shutdown.cancel();
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn an_unknown_model_is_named_and_its_state_still_shown() {
    init();
    let broker = Mosquitto::start(SERIAL, ACCESS_CODE).unwrap();
    let mut version = fixture("get_version-a1mini.json");
    version["info"]["module"][0]["product_name"] = "Bambu Lab Z9 Ultra".into();
    let _replay = replay_on_request(&broker, vec![version, fixture("pushall-n1-idle.json")]).await;
    let trust = Trust::Ca(vec![broker.ca_der.clone()]);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(config(broker.tls_port, ACCESS_CODE, trust), shutdown.clone());
    let problem = wait_for(&mut outputs, "the unknown model named", |o| match o {
        LinkOutput::Problem(p @ LinkProblem::UnknownModel(_)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert!(problem.to_string().contains("unknown model \"Bambu Lab Z9 Ultra\""), "{problem}");
    let state = wait_for(&mut outputs, "the state", |o| match o {
        LinkOutput::State(s) if has_ams(s) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(state.model.as_deref(), Some("Bambu Lab Z9 Ultra"));
    assert_eq!(state.state, PrintState::Idle);
    shutdown.cancel();
    task.await.unwrap();
}
