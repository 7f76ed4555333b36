//! The `kitt-printer-sim` binary: the lines it prints, and that its camera streams.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use rustls::pki_types::CertificateDer;
use x509_parser::pem::parse_x509_pem;

use crate::camera::{Camera, assert_jpeg_frame, auth_packet};
use crate::support::PrinterVerifier;

const SERIAL: &str = "01P00A000000001";

/// Kills the child process when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_address_then_its_cameras_and_streams() {
    let ca_dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kitt-printer-sim"))
        .args(["--serial", SERIAL, "--access-code", "12345678", "--model", "C12"])
        .args(["--bind", "127.0.0.1:0", "--camera-size", "320x180", "--ca-out"])
        .arg(ca_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kitt-printer-sim starts");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let (mqtt_addr, rest) = first
        .strip_prefix("kitt-printer-sim listening on ")
        .and_then(|rest| rest.split_once(' '))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert_eq!(rest, format!("serial={SERIAL} model=C12"));
    let mqtt_addr: SocketAddr = mqtt_addr.parse().unwrap();
    let second = lines.next().unwrap().unwrap();
    let camera_addr: SocketAddr = second
        .strip_prefix("kitt-printer-sim camera listening on ")
        .unwrap_or_else(|| panic!("unexpected second line {second:?}"))
        .parse()
        .unwrap();
    assert_eq!(camera_addr.ip(), mqtt_addr.ip());
    assert_ne!(camera_addr.port(), 0);

    let ca_pem = std::fs::read(ca_dir.path().join("ca.pem")).unwrap();
    let (_, ca) = parse_x509_pem(&ca_pem).unwrap();
    let verifier = PrinterVerifier::for_printer(CertificateDer::from(ca.contents), SERIAL);
    let mut camera = Camera::open_at(camera_addr, SERIAL, verifier).await.unwrap();
    camera.send(&auth_packet("bblp", "12345678")).await;
    assert_jpeg_frame(&camera.frame().await, (320, 180));
}
