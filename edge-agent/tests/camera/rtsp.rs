//! RTSP(S) cameras through a real ffmpeg, against an RTSP server written here (ffmpeg cannot
//! serve RTSP PLAY itself). The server speaks what a Bambu X1 does: RTSP over TLS (or plain),
//! basic authentication for `bblp`, one H.264 track over TCP-interleaved RTP, packetised as
//! single NAL units and FU-A fragments (RFC 6184), SPS and PPS in the SDP. The H.264 is made
//! at test time by ffmpeg from its `testsrc` pattern.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use edge_agent::camera::sources::rtsp::RtspSource;
use edge_agent::camera::{CameraError, CameraSource};
use printer_sim::PrinterCa;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;

use crate::support::{closed_port, decode, error_of, next_frame, tls_acceptor, within};

const USER: &str = "bblp";
const ACCESS_CODE: &str = "27182818";
/// The largest RTP payload the server sends; bigger NAL units go as FU-A fragments.
const MAX_PAYLOAD: usize = 1400;
const WIDTH: u16 = 320;
/// How many times the three-second test stream is sent after PLAY.
const REPEATS: usize = 4;
const HEIGHT: u16 = 240;

fn ffmpeg() -> PathBuf {
    let path = PathBuf::from("ffmpeg");
    match Command::new(&path).arg("-version").output() {
        Ok(output) if output.status.success() => path,
        _ => panic!(
            "ffmpeg is not installed; run the tests with `cargo xtask test`, which installs it \
             (or `apt install ffmpeg`)"
        ),
    }
}

/// Three seconds of 320x240 H.264 at 5 fps, as access units of NAL units.
struct H264 {
    sps: Vec<u8>,
    pps: Vec<u8>,
    access_units: Vec<Vec<Vec<u8>>>,
}

fn h264() -> &'static H264 {
    static STREAM: OnceLock<H264> = OnceLock::new();
    STREAM.get_or_init(|| {
        let output = Command::new(ffmpeg())
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
            .args(["-i", &format!("testsrc=size={WIDTH}x{HEIGHT}:rate=5"), "-t", "3"])
            .args(["-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p"])
            .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264", "-"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let mut stream = H264 { sps: Vec::new(), pps: Vec::new(), access_units: Vec::new() };
        let mut pending = Vec::new();
        for nal in nal_units(&output.stdout) {
            match nal[0] & 0x1F {
                7 => stream.sps = nal.to_vec(),
                8 => stream.pps = nal.to_vec(),
                _ => {}
            }
            pending.push(nal.to_vec());
            // One slice per picture: a coded slice ends the access unit.
            if matches!(nal[0] & 0x1F, 1 | 5) {
                stream.access_units.push(std::mem::take(&mut pending));
            }
        }
        assert!(!stream.sps.is_empty() && !stream.pps.is_empty());
        assert!(stream.access_units.len() >= 10, "{} pictures", stream.access_units.len());
        let largest = stream.access_units.iter().flatten().map(Vec::len).max().unwrap();
        assert!(largest > MAX_PAYLOAD, "FU-A fragmentation goes untested");
        stream
    })
}

/// The NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`).
fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).map_or(stream.len(), |&next| next - 3);
            let mut nal = &stream[start..end];
            // A 4-byte start code's leading zero; NAL units never end in a zero byte.
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        })
        .filter(|nal| !nal.is_empty())
        .collect()
}

/// RTP payloads for one NAL unit: itself, or FU-A fragments. The flag marks the last.
fn packetise(nal: &[u8]) -> Vec<(Vec<u8>, bool)> {
    if nal.len() <= MAX_PAYLOAD {
        return vec![(nal.to_vec(), true)];
    }
    let indicator = (nal[0] & 0xE0) | 28;
    let fragments: Vec<&[u8]> = nal[1..].chunks(MAX_PAYLOAD - 2).collect();
    let last = fragments.len() - 1;
    fragments
        .iter()
        .enumerate()
        .map(|(i, fragment)| {
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i == last { 0x40 } else { 0 };
            let header = start | end | (nal[0] & 0x1F);
            ([&[indicator, header][..], fragment].concat(), i == last)
        })
        .collect()
}

struct RtspServer {
    addr: SocketAddr,
    tls: bool,
    _task: AbortOnDropHandle<()>,
}

impl RtspServer {
    /// Serves the test stream; DESCRIBE needs `bblp` and [`ACCESS_CODE`].
    async fn start(tls: Option<TlsAcceptor>) -> RtspServer {
        let stream = h264();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            let mut sessions = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let tls = tls.clone();
                sessions.push(AbortOnDropHandle::new(tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                session(tls, stream).await;
                            }
                        }
                        None => session(tcp, stream).await,
                    }
                })));
            }
        });
        RtspServer { addr, tls: is_tls, _task: AbortOnDropHandle::new(task) }
    }

    fn url(&self, access_code: &str) -> String {
        let scheme = if self.tls { "rtsps" } else { "rtsp" };
        format!("{scheme}://{USER}:{access_code}@{}/streaming/live/1", self.addr)
    }
}

/// One client: requests and responses, then the stream after PLAY.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(socket: S, stream: &H264) {
    let (reader, mut writer) = tokio::io::split(socket);
    let mut reader = BufReader::new(reader);
    let expected_authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{ACCESS_CODE}"))
    );
    loop {
        let Ok(buffered) = reader.fill_buf().await else { return };
        let Some(&first) = buffered.first() else { return };
        if first == b'$' {
            // Interleaved RTCP from the client: skip it.
            let mut head = [0u8; 4];
            if reader.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut skipped = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
            if reader.read_exact(&mut skipped).await.is_err() {
                return;
            }
            continue;
        }
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let header = |name: &str| {
            head.iter().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        if let Some(length) = header("Content-Length").and_then(|l| l.parse::<usize>().ok()) {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let mut words = head[0].split_whitespace();
        let (method, url) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let cseq = header("CSeq").unwrap_or_default();
        let ok = |extra: &str, body: &str| {
            format!(
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let response = match method {
            "OPTIONS" => {
                ok("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n", "")
            }
            "DESCRIBE" if header("Authorization").as_deref() != Some(&expected_authorization) => {
                format!(
                    "RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n\
                     WWW-Authenticate: Basic realm=\"kitt-test\"\r\nContent-Length: 0\r\n\r\n"
                )
            }
            "DESCRIBE" => {
                let extra = format!("Content-Base: {url}/\r\nContent-Type: application/sdp\r\n");
                ok(&extra, &sdp(stream))
            }
            "SETUP" => ok(
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4242;timeout=60\r\n",
                "",
            ),
            "PLAY" => ok("Session: 4242\r\nRange: npt=0.000-\r\n", ""),
            "TEARDOWN" => {
                let _ = writer.write_all(ok("", "").as_bytes()).await;
                return;
            }
            _ => ok("", ""),
        };
        if writer.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if method == "PLAY" && send_stream(&mut writer, stream).await.is_err() {
            return;
        }
    }
}

fn sdp(stream: &H264) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let profile: String = stream.sps[1..4].iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=kitt test camera\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={},{}\r\n\
         a=control:trackID=1\r\n",
        b64(&stream.sps),
        b64(&stream.pps)
    )
}

/// The stream [`REPEATS`] times as RTP on interleaved channel 0, 5 fps in RTP time (90 kHz),
/// as fast as the client reads. More than ffmpeg's probing needs (it reads about 20 pictures
/// to estimate the frame rate before decoding anything), and finite, so a test costs little.
async fn send_stream<W: AsyncWrite + Unpin>(writer: &mut W, stream: &H264) -> std::io::Result<()> {
    let mut sequence: u16 = 0;
    let units = std::iter::repeat_n(&stream.access_units, REPEATS).flatten();
    for (index, unit) in units.enumerate() {
        let timestamp = u32::try_from(index).unwrap() * (90_000 / 5);
        for (n, nal) in unit.iter().enumerate() {
            for (payload, last_fragment) in packetise(nal) {
                let marker = n == unit.len() - 1 && last_fragment;
                let mut packet = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
                packet.extend_from_slice(&sequence.to_be_bytes());
                packet.extend_from_slice(&timestamp.to_be_bytes());
                packet.extend_from_slice(&0x6b69_7474u32.to_be_bytes());
                packet.extend_from_slice(&payload);
                let length = u16::try_from(packet.len()).unwrap().to_be_bytes();
                writer.write_all(&[b'$', 0, length[0], length[1]]).await?;
                writer.write_all(&packet).await?;
                sequence = sequence.wrapping_add(1);
            }
        }
    }
    writer.flush().await
}

#[tokio::test]
async fn an_rtsps_stream_with_a_login_gives_decoded_frames() {
    let ca = PrinterCa::bbl().unwrap();
    let leaf = ca.issue_leaf("00M09A350100123").unwrap();
    let server = RtspServer::start(Some(tls_acceptor(&leaf))).await;
    let source = RtspSource::new(server.url(ACCESS_CODE), ffmpeg(), 2);
    assert!(!source.continuous());
    let description = source.describe();
    assert!(description.starts_with("RTSP stream rtsps://***@127.0.0.1:"), "{description}");
    assert!(!description.contains(ACCESS_CODE), "{description}");

    let mut stream = within("open", source.open()).await.unwrap();
    for _ in 0..2 {
        let frame = next_frame(&mut stream).await.unwrap();
        assert_eq!(decode(&frame), (WIDTH, HEIGHT));
    }
}

#[tokio::test]
async fn a_wrong_access_code_is_an_auth_rejection_that_does_not_repeat_it() {
    let server = RtspServer::start(None).await;
    let wrong = "99999999";
    let source = RtspSource::new(server.url(wrong), ffmpeg(), 1);
    let error = error_of(within("open", source.open()).await);
    assert!(matches!(error, CameraError::AuthRejected { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("401"), "{message}");
    assert!(!message.contains(wrong), "{message}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_url_without_the_code() {
    let (_closed, addr) = closed_port();
    let url = format!("rtsp://{USER}:{ACCESS_CODE}@{addr}/streaming/live/1");
    let error = error_of(within("open", RtspSource::new(url, ffmpeg(), 1).open()).await);
    let CameraError::Connect { target, detail } = &error else { panic!("{error:?}") };
    assert_eq!(target, &format!("rtsp://***@{addr}/streaming/live/1"));
    assert!(detail.contains("Connection refused"), "{detail}");
    assert!(!error.to_string().contains(ACCESS_CODE), "{error}");
}

#[tokio::test]
async fn a_missing_ffmpeg_is_unavailable_with_what_to_install() {
    let url = format!("rtsps://{USER}:{ACCESS_CODE}@127.0.0.1:322/streaming/live/1");
    let source = RtspSource::new(url, PathBuf::from("/nonexistent/bin/ffmpeg"), 1);
    let error = error_of(within("open", source.open()).await);
    expect_test::expect![[r#"the camera is unavailable: ffmpeg not found at /nonexistent/bin/ffmpeg; install it with `apt install ffmpeg` to use RTSPS cameras"#]]
        .assert_eq(&error.to_string());
}
