//! The agent's Moonraker driver over a real WebSocket and real HTTP, against the simulated
//! Moonraker of `printer-sim`: a whole job, each Klipper fault, pause/resume/cancel, the
//! firmware restart and emergency stop, a refused key, dropped connections, the webcam.

use std::time::Duration;

use edge_agent::printer::link::{CameraUrl, LinkOutput, LinkProblem};
use edge_agent::printer::moonraker::link::{self, ApiKey, LinkConfig, MoonrakerUrl};
use printer_sim::moonraker::{self as sim, KlipperFault, MoonrakerConfig, MoonrakerHandle};
use proto::{CommandAction, CommandOutcome, JobOutcome, PrintState, PrinterEventKind, PrinterId};
use tests::{init, wait_for};
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

fn sim_config() -> MoonrakerConfig {
    let mut config = MoonrakerConfig::new("voron-test");
    config.step_interval = Duration::from_millis(60);
    config.update_interval = Duration::from_millis(20);
    config.camera_interval = Duration::from_millis(100);
    config.klipper.layers = 8;
    config.klipper.step_seconds = 0.06;
    config
}

fn link_config(sim: &MoonrakerHandle, key: Option<&str>) -> LinkConfig {
    let url = MoonrakerUrl::parse(&format!("http://{}", sim.addr())).unwrap();
    let key = key.map(|k| ApiKey::new(k).unwrap());
    let mut config = LinkConfig::new(PrinterId::new("voron-1").unwrap(), url, key);
    config.web_port = sim.web_addr().map_or(80, |a| a.port());
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(300);
    config.refused_retry = Duration::from_millis(300);
    config
}

async fn state(
    outputs: &mut Receiver<LinkOutput>,
    what: &str,
    want: PrintState,
) -> proto::PrinterStateV2 {
    wait_for(outputs, what, |o| match o {
        LinkOutput::State(s) if s.state == want => Some((**s).clone()),
        _ => None,
    })
    .await
}

async fn event(
    outputs: &mut Receiver<LinkOutput>,
    what: &str,
    want: impl Fn(&PrinterEventKind) -> bool,
) -> PrinterEventKind {
    wait_for(outputs, what, |o| match o {
        LinkOutput::Event { kind, .. } if want(kind) => Some(kind.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_whole_job_reads_in_neutral_terms_and_the_webcam_is_found() {
    init();
    let printer = sim::start(sim_config()).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    let idle = state(&mut outputs, "the idle printer", PrintState::Idle).await;
    assert_eq!(idle.firmware.as_deref(), Some(sim::klipper::KLIPPER_VERSION));
    let json = proto::json::printer_state_v2(&idle);
    assert_eq!(json["kind"], "klipper");
    assert_eq!(json["klipper"]["klippy"], "ready");
    let cameras = wait_for(&mut outputs, "the webcam list", |o| match o {
        LinkOutput::Cameras(cameras) => Some(cameras.clone()),
        _ => None,
    })
    .await;
    let web = printer.web_addr().unwrap();
    assert_eq!(
        cameras[0].url,
        CameraUrl::Mjpeg(format!("http://127.0.0.1:{}/webcam/?action=stream", web.port()))
    );

    let start = proto::StartPrint {
        file: "benchy.gcode".into(),
        plate: 1,
        job_name: "benchy".into(),
        ams_mapping: Vec::new(),
        use_ams: false,
        bed_leveling: true,
        timelapse: false,
    };
    assert_eq!(handle.send(CommandAction::StartPrint(start)).await, CommandOutcome::Succeeded);
    let started = event(&mut outputs, "the job's start", |k| {
        matches!(k, PrinterEventKind::JobStarted { .. })
    })
    .await;
    assert_eq!(
        started,
        PrinterEventKind::JobStarted { job_name: Some("benchy.gcode".into()), total_layers: None }
    );
    let printing = wait_for(&mut outputs, "a layer printed", |o| match o {
        LinkOutput::State(s) if s.state == PrintState::Printing && s.layer >= Some(2) => {
            Some((**s).clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(printing.total_layers, Some(8));
    assert_eq!(printing.job_name.as_deref(), Some("benchy.gcode"));
    assert!(printing.heaters.iter().any(|h| h.target_c == Some(215.0)), "{printing:?}");
    let finished =
        event(&mut outputs, "the job's end", |k| matches!(k, PrinterEventKind::JobFinished { .. }))
            .await;
    assert_eq!(
        finished,
        PrinterEventKind::JobFinished {
            job_name: Some("benchy.gcode".into()),
            outcome: JobOutcome::Succeeded
        }
    );
    state(&mut outputs, "the finished printer", PrintState::Finished).await;

    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn pause_resume_and_cancel_reach_klipper() {
    init();
    let mut config = sim_config();
    config.klipper.layers = 400;
    let printer = sim::start(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    printer.start_print("benchy.gcode").unwrap();
    state(&mut outputs, "the printing printer", PrintState::Printing).await;

    assert_eq!(handle.send(CommandAction::Pause).await, CommandOutcome::Succeeded);
    event(&mut outputs, "the pause", |k| matches!(k, PrinterEventKind::JobPaused { .. })).await;
    // Klipper's own refusal comes back as the command's failure, in its words.
    let again = handle.send(CommandAction::Pause).await;
    assert!(
        matches!(&again, CommandOutcome::Failed { detail } if detail.contains("already paused")),
        "{again:?}"
    );
    assert_eq!(handle.send(CommandAction::Resume).await, CommandOutcome::Succeeded);
    event(&mut outputs, "the resume", |k| *k == PrinterEventKind::JobResumed).await;
    assert_eq!(handle.send(CommandAction::Stop).await, CommandOutcome::Succeeded);
    let ended = event(&mut outputs, "the cancelled end", |k| {
        matches!(k, PrinterEventKind::JobFinished { .. })
    })
    .await;
    assert!(
        matches!(ended, PrinterEventKind::JobFinished { outcome: JobOutcome::Cancelled, .. }),
        "{ended:?}"
    );
    assert!(!printer.with_klipper(|k| k.state == sim::klipper::JobState::Printing));
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn a_thermal_runaway_is_a_fault_in_klippers_words_until_a_firmware_restart() {
    init();
    let mut config = sim_config();
    config.klipper.faults = vec![KlipperFault::ThermalRunawayAtLayer(3)];
    let printer = sim::start(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    // The job starts once the link watches, so no step of it happens unseen.
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    printer.start_print("benchy.gcode").unwrap();
    // The job's end (history) and Klippy's words (the status) come in either order.
    let (mut fault, mut ended) = (None, None);
    while fault.is_none() || ended.is_none() {
        match event(&mut outputs, "the fault and the job's end", |k| {
            matches!(k, PrinterEventKind::Fault { .. } | PrinterEventKind::JobFinished { .. })
        })
        .await
        {
            PrinterEventKind::Fault { message } => fault = Some(message),
            finished => ended = Some(finished),
        }
    }
    let message = fault.unwrap_or_default();
    assert!(message.starts_with("Heater extruder not heating at expected rate"), "{message}");
    assert!(matches!(
        ended,
        Some(PrinterEventKind::JobFinished { outcome: JobOutcome::Failed { .. }, .. })
    ));
    let failed = state(&mut outputs, "the failed printer", PrintState::Failed).await;
    assert_eq!(proto::json::printer_state_v2(&failed)["klipper"]["klippy"], "shutdown");

    assert_eq!(handle.send(CommandAction::FirmwareRestart).await, CommandOutcome::Succeeded);
    event(&mut outputs, "the fault cleared", |k| *k == PrinterEventKind::FaultCleared).await;
    state(&mut outputs, "the printer ready again", PrintState::Idle).await;
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_mid_print_and_an_emergency_stop_are_faults() {
    init();
    let mut config = sim_config();
    config.klipper.faults = vec![KlipperFault::ShutdownAtLayer(2)];
    let printer = sim::start(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    // The job starts once the link watches, so no step of it happens unseen.
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    printer.start_print("benchy.gcode").unwrap();
    let fault =
        event(&mut outputs, "the fault", |k| matches!(k, PrinterEventKind::Fault { .. })).await;
    assert!(
        matches!(&fault, PrinterEventKind::Fault { message } if message.starts_with("Lost communication with MCU"))
    );
    assert_eq!(handle.send(CommandAction::FirmwareRestart).await, CommandOutcome::Succeeded);
    state(&mut outputs, "the printer ready again", PrintState::Idle).await;

    assert_eq!(handle.send(CommandAction::EmergencyStop).await, CommandOutcome::Succeeded);
    let stop =
        event(&mut outputs, "the stop", |k| matches!(k, PrinterEventKind::Fault { .. })).await;
    assert!(
        matches!(&stop, PrinterEventKind::Fault { message } if message.contains("M112")),
        "{stop:?}"
    );
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn a_runout_pauses_and_a_failed_print_fails() {
    init();
    let mut config = sim_config();
    config.klipper.faults = vec![KlipperFault::RunoutAtLayer(2), KlipperFault::FailAtLayer(4)];
    let printer = sim::start(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    // The job starts once the link watches, so no step of it happens unseen.
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    printer.start_print("benchy.gcode").unwrap();
    let paused = state(&mut outputs, "the runout pause", PrintState::Paused).await;
    let json = proto::json::printer_state_v2(&paused);
    assert_eq!(json["klipper"]["sensors"][0]["detected"], false, "{json}");
    assert_eq!(handle.send(CommandAction::Resume).await, CommandOutcome::Succeeded);
    let ended = event(&mut outputs, "the failed end", |k| {
        matches!(k, PrinterEventKind::JobFinished { .. })
    })
    .await;
    assert!(matches!(
        ended,
        PrinterEventKind::JobFinished { outcome: JobOutcome::Failed { .. }, .. }
    ));
    let failed = state(&mut outputs, "the failed printer", PrintState::Failed).await;
    assert!(
        failed.message.as_deref().is_some_and(|m| m.starts_with("Move out of range")),
        "{failed:?}"
    );
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn a_refused_key_reads_offline_with_the_reason_and_the_right_key_connects() {
    init();
    let mut config = sim_config();
    config.api_key = Some("s3cret-key".into());
    let printer = sim::start(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) =
        link::spawn(link_config(&printer, Some("wrong-key")), shutdown.clone());
    let problem = wait_for(&mut outputs, "the refused key", |o| match o {
        LinkOutput::Problem(problem @ LinkProblem::KeyRefused { .. }) => Some(problem.clone()),
        LinkOutput::State(s) if s.state != PrintState::Offline => {
            panic!("read with a wrong key: {s:?}")
        }
        _ => None,
    })
    .await;
    assert!(problem.to_string().contains("API key"), "{problem}");
    let outcome = handle.send(CommandAction::Pause).await;
    assert!(matches!(outcome, CommandOutcome::Failed { .. }), "{outcome:?}");
    shutdown.cancel();
    task.await.unwrap();

    // The right key: a one-shot token opens the WebSocket.
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) =
        link::spawn(link_config(&printer, Some("s3cret-key")), shutdown.clone());
    state(&mut outputs, "the printer, with the right key", PrintState::Idle).await;
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_come_back_and_garbage_on_the_port_is_survived() {
    init();
    let printer = sim::start(sim_config()).await.unwrap();
    let shutdown = CancellationToken::new();
    let (handle, mut outputs, task) = link::spawn(link_config(&printer, None), shutdown.clone());
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    printer.drop_connections();
    event(&mut outputs, "the lost printer", |k| matches!(k, PrinterEventKind::Unreachable { .. }))
        .await;
    event(&mut outputs, "the printer back", |k| *k == PrinterEventKind::Reachable).await;
    assert_eq!(
        handle.send(CommandAction::Gcode("M220 S124".into())).await,
        CommandOutcome::Succeeded
    );
    let fast = wait_for(&mut outputs, "the new speed", |o| match o {
        LinkOutput::State(s) if s.speed_percent == Some(124) => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(fast, ());
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

#[tokio::test]
async fn a_port_that_is_not_moonraker_gives_a_clear_error() {
    init();
    // A plain TCP server that answers garbage, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let garbage = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut socket,
                b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff",
            )
            .await;
        }
    });
    let url = MoonrakerUrl::parse(&format!("http://{addr}")).unwrap();
    let mut config = LinkConfig::new(PrinterId::new("voron-1").unwrap(), url, None);
    config.backoff_min = Duration::from_millis(50);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) = link::spawn(config, shutdown.clone());
    let problem = wait_for(&mut outputs, "a connection problem", |o| match o {
        LinkOutput::Problem(problem @ LinkProblem::Connection { .. }) => Some(problem.clone()),
        _ => None,
    })
    .await;
    assert!(problem.to_string().contains("WebSocket"), "{problem}");
    shutdown.cancel();
    task.await.unwrap();
    garbage.abort();
}

#[tokio::test]
async fn a_moonraker_that_hangs_is_given_up_on_and_found_again() {
    init();
    let printer = sim::start(sim_config()).await.unwrap();
    let mut config = link_config(&printer, None);
    config.session.silence = Duration::from_millis(1500);
    config.session.request_timeout = Duration::from_millis(1500);
    config.ping_interval = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let (_handle, mut outputs, task) = link::spawn(config, shutdown.clone());
    state(&mut outputs, "the idle printer", PrintState::Idle).await;
    // Open sockets, no answers, no pongs: the watchdog ends the connection.
    printer.set_silent(true);
    let gone = event(&mut outputs, "the hung Moonraker given up on", |k| {
        matches!(k, PrinterEventKind::Unreachable { .. })
    })
    .await;
    assert!(
        matches!(&gone, PrinterEventKind::Unreachable { reason } if reason.contains("nothing from Moonraker")),
        "{gone:?}"
    );
    printer.set_silent(false);
    event(&mut outputs, "the printer back", |k| *k == PrinterEventKind::Reachable).await;
    shutdown.cancel();
    task.await.unwrap();
    printer.shutdown().await;
}

/// Issue 17, item 2: a file goes onto a Klipper printer through Moonraker's upload, streamed;
/// a refused key and a file Moonraker will not take say so.
#[tokio::test]
async fn a_file_is_uploaded_to_moonraker_and_refusals_say_why() {
    init();
    let mut config = sim_config();
    config.api_key = Some("s3cret-key".into());
    let printer = sim::start(config).await.unwrap();
    let url = MoonrakerUrl::parse(&format!("http://{}", printer.addr())).unwrap();
    let key = ApiKey::new("s3cret-key").unwrap();
    let content: Vec<u8> = (0..(3usize << 20)).map(|i| b"G1 X1 Y2\n"[i % 9]).collect();
    let reported = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = reported.clone();
    let uploaded = edge_agent::printer::moonraker::upload::upload(
        &url,
        Some(&key),
        "benchy.gcode",
        std::io::Cursor::new(content.clone()),
        content.len() as u64,
        move |n| seen.store(n, std::sync::atomic::Ordering::Relaxed),
    )
    .await
    .unwrap();
    assert_eq!(uploaded.path, "benchy.gcode");
    assert_eq!(uploaded.size, content.len() as u64);
    assert_eq!(reported.load(std::sync::atomic::Ordering::Relaxed), content.len() as u64);
    let stored = &printer.uploads()["benchy.gcode"];
    use md5::Digest;
    assert_eq!(
        (stored.size, stored.md5.clone()),
        (content.len() as u64, hex::encode(md5::Md5::digest(&content)))
    );

    let wrong = ApiKey::new("wrong").unwrap();
    let error = edge_agent::printer::moonraker::upload::upload(
        &url,
        Some(&wrong),
        "a.gcode",
        std::io::Cursor::new(b"G28\n".to_vec()),
        4,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, edge_agent::printer::moonraker::upload::UploadError::Refused(_)),
        "{error}"
    );
    let error = edge_agent::printer::moonraker::upload::upload(
        &url,
        Some(&key),
        "model.stl",
        std::io::Cursor::new(b"solid x".to_vec()),
        7,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("not a G-code file"), "{error}");
}
