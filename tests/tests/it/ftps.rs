//! Putting files on a Bambu printer over FTPS (issue 17, item 2): the agent's client against
//! the simulator's server, which behaves like a printer's vsftpd (implicit TLS, `PROT P`,
//! passive mode, data connections that must resume the control session).

use std::time::Duration;

use edge_agent::printer::bambu::ftps::{FtpsError, FtpsTarget, upload};
use edge_agent::printer::bambu::link::AccessCode;
use edge_agent::printer::bambu::tls::Trust;
use printer_sim::config::{Model, SimConfig};
use printer_sim::ftps::FtpsConfig;
use printer_sim::{SimHandle, Simulator};

const SERIAL: &str = "01P00A391800990";

async fn printer(capacity_bytes: u64) -> SimHandle {
    tests::init();
    let mut config =
        SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
            .with_intervals(Duration::from_millis(100), Duration::from_millis(100));
    config.camera = None;
    config.ftps = Some(FtpsConfig { capacity_bytes, ..FtpsConfig::default() });
    Simulator::start(config).await.unwrap()
}

fn target(sim: &SimHandle, code: &str) -> FtpsTarget {
    FtpsTarget {
        host: "127.0.0.1".into(),
        port: sim.ftps_addr().unwrap().port(),
        serial: SERIAL.into(),
        access_code: AccessCode::new(code).unwrap(),
        trust: Trust::Ca(vec![sim.ca_der().to_vec()]),
        reuse_session: true,
    }
}

/// Bytes that look like a file and are not all alike.
fn content(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn a_file_reaches_the_printer_whole_over_a_resumed_tls_session() {
    let sim = printer(1 << 30).await;
    let file = content(3 << 20);
    let mut reported = 0;
    let sent = upload(&target(&sim, "12345678"), "/benchy.gcode.3mf", file.as_slice(), |n| {
        reported = n;
    })
    .await
    .unwrap();
    assert_eq!((sent, reported), (file.len() as u64, file.len() as u64));
    let card = sim.card();
    let stored = card.get("/benchy.gcode.3mf").expect("the file on the card");
    assert_eq!(stored.size, file.len() as u64);
    use md5::Digest;
    assert_eq!(stored.md5, hex::encode(md5::Md5::digest(&file)));
    // Again, under the same name: replaced.
    upload(&target(&sim, "12345678"), "/benchy.gcode.3mf", &file[..1000], |_| {}).await.unwrap();
    assert_eq!(sim.card()["/benchy.gcode.3mf"].size, 1000);
}

#[tokio::test]
async fn refusals_say_what_the_printer_said() {
    let sim = printer(1 << 20).await;
    // The wrong access code.
    let error = upload(&target(&sim, "87654321"), "/a.gcode.3mf", &b"x"[..], |_| {}).await;
    assert_eq!(error, Err(FtpsError::Login));
    // A full card: the printer's 452, and nothing stored.
    let error =
        upload(&target(&sim, "12345678"), "/big.gcode.3mf", content(2 << 20).as_slice(), |_| {})
            .await
            .unwrap_err();
    assert!(matches!(&error, FtpsError::Full(answer) if answer.starts_with("452")), "{error}");
    assert!(error.to_string().contains("storage is full"), "{error}");
    assert!(sim.card().is_empty());
    // A client that does not resume the session on the data connection is refused, as real
    // printers refuse it.
    let fresh = FtpsTarget { reuse_session: false, ..target(&sim, "12345678") };
    let error = upload(&fresh, "/a.gcode.3mf", &b"x"[..], |_| {}).await.unwrap_err();
    assert!(
        matches!(&error, FtpsError::DataRefused(answer) if answer.contains("session reuse required")),
        "{error}"
    );
    // A printer whose certificate another CA signed.
    let other = printer(1 << 20).await;
    let wrong_ca =
        FtpsTarget { trust: Trust::Ca(vec![other.ca_der().to_vec()]), ..target(&sim, "12345678") };
    let error = upload(&wrong_ca, "/a.gcode.3mf", &b"x"[..], |_| {}).await.unwrap_err();
    assert!(matches!(error, FtpsError::Certificate(_)), "{error}");
}

#[tokio::test]
async fn a_printer_whose_ftp_service_is_down_is_an_error_that_says_so() {
    let sim = printer(1 << 30).await;
    sim.set_ftps_refusing(true);
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        upload(&target(&sim, "12345678"), "/a.gcode.3mf", &content(1000)[..], |_| {}),
    )
    .await
    .expect("a refusal is an answer, not a hang");
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("421"), "{error}");
    sim.set_ftps_refusing(false);
    upload(&target(&sim, "12345678"), "/a.gcode.3mf", &content(1000)[..], |_| {}).await.unwrap();
}

#[tokio::test]
async fn a_file_is_deleted_to_make_room_and_a_scripted_refusal_passes() {
    tests::init();
    let mut config =
        SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
            .with_intervals(Duration::from_millis(100), Duration::from_millis(100));
    config.camera = None;
    config.ftps = Some(FtpsConfig {
        capacity_bytes: 4 << 20,
        card_files: vec![("/old-timelapse.avi".into(), 4 << 20)],
        refuse_sessions: 1,
        ..FtpsConfig::default()
    });
    let sim = Simulator::start(config).await.unwrap();
    let target = target(&sim, "12345678");
    let file = content(100_000);
    // The first session is refused; then the card is full; room made, the file goes.
    let refused = upload(&target, "/a.gcode.3mf", &file[..], |_| {}).await.unwrap_err();
    assert!(refused.to_string().contains("421"), "{refused}");
    let full = upload(&target, "/a.gcode.3mf", &file[..], |_| {}).await.unwrap_err();
    assert!(matches!(full, FtpsError::Full(_)), "{full}");
    edge_agent::printer::bambu::ftps::delete(&target, "/old-timelapse.avi").await.unwrap();
    assert!(!sim.card().contains_key("/old-timelapse.avi"));
    edge_agent::printer::bambu::ftps::delete(&target, "/never-there.3mf").await.unwrap();
    upload(&target, "/a.gcode.3mf", &file[..], |_| {}).await.unwrap();
    assert_eq!(sim.card()["/a.gcode.3mf"].size, file.len() as u64);
}
