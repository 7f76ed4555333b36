//! The port-6000 camera against a tiny TLS server speaking the A1/P1 camera protocol, with a
//! Bambu-like X.509 v1 certificate from printer-sim's certificate helpers.

use std::net::SocketAddr;
use std::time::Duration;

use edge_agent::camera::sources::bambu::BambuSource;
use edge_agent::camera::{CameraError, CameraSource, MAX_FRAME_BYTES};
use edge_agent::printer::bambu::link::AccessCode;
use edge_agent::printer::bambu::tls::Trust;
use printer_sim::{LeafCert, PrinterCa};
use proto::PrinterId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::server::TlsStream;
use tokio_util::task::AbortOnDropHandle;

use crate::support::{closed_port, decode, error_of, next_frame, test_jpeg, tls_acceptor, within};

const SERIAL: &str = "01P00A391800007";
const ACCESS_CODE: &str = "31415926";

/// What the server does once a login with the right access code has arrived.
#[derive(Debug, Clone)]
enum Script {
    /// Sends these JPEGs, each behind its 16-byte header, then waits for the client to leave.
    Frames(Vec<Vec<u8>>),
    /// Sends a header announcing `payload.len()` bytes and then `payload`, then waits.
    Raw { header_size: u32, payload: Vec<u8> },
}

/// A camera port: TLS with the printer's certificate, the 80-byte login, then its script.
/// A wrong login is answered by closing the connection, as printers do.
struct CameraServer {
    addr: SocketAddr,
    _task: AbortOnDropHandle<()>,
}

impl CameraServer {
    async fn start(leaf: &LeafCert, script: Script) -> CameraServer {
        let acceptor = tls_acceptor(leaf);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let script = script.clone();
                connections.push(AbortOnDropHandle::new(tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, script).await;
                    }
                })));
            }
        });
        CameraServer { addr, _task: AbortOnDropHandle::new(task) }
    }
}

async fn serve(mut tls: TlsStream<tokio::net::TcpStream>, script: Script) {
    let mut login = [0u8; 80];
    if tls.read_exact(&mut login).await.is_err() {
        return;
    }
    let word = |i: usize| u32::from_le_bytes(login[i..i + 4].try_into().unwrap());
    let text = |range: std::ops::Range<usize>| {
        let field = &login[range];
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).into_owned()
    };
    let good = (word(0), word(4), word(8), word(12)) == (0x40, 0x3000, 0, 0)
        && text(16..48) == "bblp"
        && text(48..80) == ACCESS_CODE;
    if !good {
        // Printers close the socket without a TLS close_notify.
        return;
    }
    match script {
        Script::Frames(frames) => {
            for jpeg in frames {
                tls.write_all(&header(u32::try_from(jpeg.len()).unwrap())).await.unwrap();
                // The printer writes in pieces; so does this server.
                for piece in jpeg.chunks(4096) {
                    tls.write_all(piece).await.unwrap();
                }
            }
        }
        Script::Raw { header_size, payload } => {
            tls.write_all(&header(header_size)).await.unwrap();
            tls.write_all(&payload).await.unwrap();
        }
    }
    tls.flush().await.unwrap();
    // Hold the connection until the client leaves.
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
}

fn header(payload_size: u32) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&payload_size.to_le_bytes());
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header
}

fn source(addr: SocketAddr, access_code: &str, trust: Trust) -> BambuSource {
    BambuSource::new(
        addr.ip().to_string(),
        addr.port(),
        PrinterId::new(SERIAL).unwrap(),
        AccessCode::new(access_code).unwrap(),
        trust,
    )
}

fn ca_and_leaf() -> (PrinterCa, LeafCert) {
    let ca = PrinterCa::bbl().unwrap();
    let leaf = ca.issue_leaf(SERIAL).unwrap();
    (ca, leaf)
}

fn trust_ca(ca: &PrinterCa) -> Trust {
    Trust::Ca(vec![ca.cert_der().to_vec()])
}

#[tokio::test]
async fn a_good_stream_gives_decodable_frames() {
    let (ca, leaf) = ca_and_leaf();
    let frames = vec![test_jpeg(64, 48, 1), test_jpeg(1280 / 4, 720 / 4, 2)];
    let server = CameraServer::start(&leaf, Script::Frames(frames.clone())).await;
    let source = source(server.addr, ACCESS_CODE, trust_ca(&ca));
    assert!(source.continuous());
    assert!(!source.describe().contains(ACCESS_CODE), "{}", source.describe());

    let mut stream = within("open", source.open()).await.unwrap();
    let first = next_frame(&mut stream).await.unwrap();
    let second = next_frame(&mut stream).await.unwrap();
    assert_eq!(decode(&first), (64, 48));
    assert_eq!(decode(&second), (320, 180));
    assert_eq!(first.jpeg, frames[0]);
    assert_eq!(second.jpeg, frames[1]);
}

#[tokio::test]
async fn a_wrong_access_code_is_an_auth_rejection() {
    let (ca, leaf) = ca_and_leaf();
    let server = CameraServer::start(&leaf, Script::Frames(vec![test_jpeg(8, 8, 0)])).await;
    let source = source(server.addr, "00000000", trust_ca(&ca));
    let error = error_of(within("open", source.open()).await);
    assert!(matches!(error, CameraError::AuthRejected { .. }), "{error:?}");
    assert!(error.to_string().contains("check the access code"), "{error}");
}

#[tokio::test]
async fn a_payload_that_is_not_a_jpeg_is_a_protocol_error() {
    let (ca, leaf) = ca_and_leaf();
    // What the LAN file tunnel that some models serve on port 6000 would send.
    let payload = br#"{"cmdtype":7,"sequence":0}"#.to_vec();
    let header_size = u32::try_from(payload.len()).unwrap();
    let server = CameraServer::start(&leaf, Script::Raw { header_size, payload }).await;
    let error =
        error_of(within("open", source(server.addr, ACCESS_CODE, trust_ca(&ca)).open()).await);
    let CameraError::Protocol { detail } = &error else { panic!("{error:?}") };
    assert!(detail.contains("not a JPEG: it starts with 7B 22"), "{detail}");
}

#[tokio::test]
async fn a_header_claiming_2_gb_is_refused_from_the_header_alone() {
    let (ca, leaf) = ca_and_leaf();
    // Only the header: were the client to wait for (or allocate) the payload, it would time
    // out instead of answering FrameTooLarge at once.
    let script = Script::Raw { header_size: 2_000_000_000, payload: Vec::new() };
    let server = CameraServer::start(&leaf, script).await;
    let mut source = source(server.addr, ACCESS_CODE, trust_ca(&ca));
    source.frame_timeout = Duration::from_secs(3600);
    let error = error_of(within("open", source.open()).await);
    assert_eq!(
        error,
        CameraError::FrameTooLarge { claimed: 2_000_000_000, max: MAX_FRAME_BYTES as u64 }
    );
}

#[tokio::test]
async fn a_frame_that_never_completes_times_out() {
    let (ca, leaf) = ca_and_leaf();
    let jpeg = test_jpeg(64, 48, 3);
    let header_size = u32::try_from(jpeg.len()).unwrap();
    let payload = jpeg[..jpeg.len() / 2].to_vec();
    let server = CameraServer::start(&leaf, Script::Raw { header_size, payload }).await;
    let mut source = source(server.addr, ACCESS_CODE, trust_ca(&ca));
    source.frame_timeout = Duration::from_millis(300);
    let error = error_of(within("open", source.open()).await);
    assert_eq!(error, CameraError::Timeout(Duration::from_millis(300)));
}

#[tokio::test]
async fn a_pinned_certificate_that_changes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust::FirstUse { pin_file: dir.path().join("pins").join(SERIAL) };
    let (_, first_leaf) = ca_and_leaf();
    let server = CameraServer::start(&first_leaf, Script::Frames(vec![test_jpeg(16, 16, 4)])).await;
    let mut stream =
        within("open", source(server.addr, ACCESS_CODE, trust.clone()).open()).await.unwrap();
    decode(&next_frame(&mut stream).await.unwrap());
    drop((stream, server));

    // Another device (another key) now answers at the printer's address.
    let (_, other_leaf) = ca_and_leaf();
    let server = CameraServer::start(&other_leaf, Script::Frames(vec![test_jpeg(16, 16, 5)])).await;
    let error = error_of(within("open", source(server.addr, ACCESS_CODE, trust).open()).await);
    let CameraError::Tls { detail, .. } = &error else { panic!("{error:?}") };
    assert!(detail.contains("CHANGED since it was first seen"), "{detail}");
}

#[tokio::test]
async fn a_certificate_for_another_serial_is_refused() {
    let ca = PrinterCa::bbl().unwrap();
    let leaf = ca.issue_leaf("01P00A000000000").unwrap();
    let server = CameraServer::start(&leaf, Script::Frames(vec![test_jpeg(16, 16, 6)])).await;
    let error =
        error_of(within("open", source(server.addr, ACCESS_CODE, trust_ca(&ca)).open()).await);
    let CameraError::Tls { detail, .. } = &error else { panic!("{error:?}") };
    assert!(detail.contains("not the printer's serial"), "{detail}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let (_closed, addr) = closed_port();
    let (ca, _) = ca_and_leaf();
    let error = error_of(within("open", source(addr, ACCESS_CODE, trust_ca(&ca)).open()).await);
    assert!(matches!(error, CameraError::Connect { .. }), "{error:?}");
}
