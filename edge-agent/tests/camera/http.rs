//! MJPEG and snapshot URLs against a local HTTP/1.1 server written here, so each test says
//! exactly what goes on the wire.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edge_agent::camera::sources::mjpeg::MjpegSource;
use edge_agent::camera::sources::snapshot::SnapshotSource;
use edge_agent::camera::{CameraError, CameraSource, MAX_FRAME_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::AbortOnDropHandle;

use crate::support::{decode, error_of, next_frame, test_jpeg, within};

/// An HTTP server: reads each request's head and hands it, with the socket, to `respond`.
struct HttpServer {
    addr: SocketAddr,
    _task: AbortOnDropHandle<()>,
}

impl HttpServer {
    async fn start<F, Fut>(respond: F) -> HttpServer
    where
        F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let respond = Arc::new(respond);
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let respond = respond.clone();
                connections.push(AbortOnDropHandle::new(tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if socket.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    respond(String::from_utf8_lossy(&head).into_owned(), socket).await;
                })));
            }
        });
        HttpServer { addr, _task: AbortOnDropHandle::new(task) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Keeps the connection open until the client leaves.
async fn hold(mut socket: TcpStream) {
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\
     Cache-Control: no-cache\r\n\r\n";

fn part(jpeg: &[u8], with_length: bool) -> Vec<u8> {
    let mut part = b"--boundarydonotcross\r\nContent-Type: image/jpeg\r\n".to_vec();
    if with_length {
        part.extend_from_slice(format!("Content-Length: {}\r\n", jpeg.len()).as_bytes());
    }
    part.extend_from_slice(b"X-Timestamp: 1.0\r\n\r\n");
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    part
}

#[tokio::test]
async fn an_mjpeg_stream_gives_decodable_frames_with_or_without_part_lengths() {
    let frames = [test_jpeg(64, 48, 1), test_jpeg(32, 24, 2), test_jpeg(48, 16, 3)];
    let body: Vec<u8> =
        [part(&frames[0], true), part(&frames[1], false), part(&frames[2], true)].concat();
    let server = HttpServer::start(move |head, mut socket| {
        let body = body.clone();
        async move {
            assert!(head.starts_with("GET /?action=stream HTTP/1.1\r\n"), "{head}");
            socket.write_all(STREAM_HEAD.as_bytes()).await.unwrap();
            // Odd pieces, so parts and boundaries straddle reads.
            for piece in body.chunks(1000) {
                socket.write_all(piece).await.unwrap();
            }
            hold(socket).await;
        }
    })
    .await;
    let source = MjpegSource::new(server.url("/?action=stream"));
    assert!(source.continuous());
    let mut stream = within("open", source.open()).await.unwrap();
    for expected in &frames {
        let frame = next_frame(&mut stream).await.unwrap();
        decode(&frame);
        assert_eq!(&frame.jpeg[..], &expected[..]);
    }
}

#[tokio::test]
async fn a_chunked_mjpeg_stream_behind_basic_auth() {
    let jpeg = test_jpeg(40, 30, 7);
    let server = HttpServer::start(move |head, mut socket| {
        let jpeg = jpeg.clone();
        async move {
            // base64("kitt:s3cret:x")
            if !head.contains("\r\nauthorization: Basic a2l0dDpzM2NyZXQ6eA==\r\n") {
                let refusal = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
                socket.write_all(refusal.as_bytes()).await.unwrap();
                return hold(socket).await;
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; \
                        boundary=\"--frame\"\r\nTransfer-Encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            // mjpg-streamer's layout: each frame is followed by the next delimiter, so a
            // frame without Content-Length is complete as soon as it has been sent.
            let chunk =
                |data: &[u8]| [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat();
            socket.write_all(&chunk(b"--frame\r\n")).await.unwrap();
            for _ in 0..2 {
                let mut part = b"Content-Type: image/jpeg\r\n\r\n".to_vec();
                part.extend_from_slice(&jpeg);
                part.extend_from_slice(b"\r\n--frame\r\n");
                socket.write_all(&chunk(&part)).await.unwrap();
            }
            hold(socket).await;
        }
    })
    .await;
    let with_password = format!("http://kitt:s3cret%3Ax@{}/stream", server.addr);
    let source = MjpegSource::new(with_password);
    assert!(!source.describe().contains("s3cret"), "{}", source.describe());
    let mut stream = within("open", source.open()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(decode(&next_frame(&mut stream).await.unwrap()), (40, 30));
    }

    let error = error_of(within("open", MjpegSource::new(server.url("/stream")).open()).await);
    assert!(matches!(error, CameraError::AuthRejected { .. }), "{error:?}");
    assert!(error.to_string().contains("401 Unauthorized"), "{error}");
}

#[tokio::test]
async fn a_garbage_part_is_a_protocol_error() {
    let server = HttpServer::start(|_, mut socket| async move {
        socket.write_all(STREAM_HEAD.as_bytes()).await.unwrap();
        socket.write_all(&part(b"<html>camera offline</html>", true)).await.unwrap();
        hold(socket).await;
    })
    .await;
    let error = error_of(within("open", MjpegSource::new(server.url("/")).open()).await);
    let CameraError::Protocol { detail } = &error else { panic!("{error:?}") };
    assert!(detail.contains("is not a JPEG (not a JPEG: it starts with 3C 68 74"), "{detail}");
}

#[tokio::test]
async fn a_part_that_never_ends_is_too_large_or_times_out() {
    // Bytes forever, no boundary: refused once past the frame limit.
    let server = HttpServer::start(|_, mut socket| async move {
        socket.write_all(STREAM_HEAD.as_bytes()).await.unwrap();
        socket
            .write_all(b"--boundarydonotcross\r\nContent-Type: image/jpeg\r\n\r\n")
            .await
            .unwrap();
        socket.write_all(&[0xFF, 0xD8]).await.unwrap();
        let noise = vec![0x55u8; 64 * 1024];
        while socket.write_all(&noise).await.is_ok() {}
    })
    .await;
    let error = error_of(within("open", MjpegSource::new(server.url("/")).open()).await);
    let CameraError::FrameTooLarge { claimed, max } = error else { panic!("{error:?}") };
    assert_eq!(max, MAX_FRAME_BYTES as u64);
    assert!(claimed > max && claimed < max + 1024 * 1024, "{claimed}");

    // Half a frame, then silence: the frame timeout.
    let jpeg = test_jpeg(64, 48, 9);
    let server = HttpServer::start(move |_, mut socket| {
        let half = jpeg[..jpeg.len() / 2].to_vec();
        async move {
            socket.write_all(STREAM_HEAD.as_bytes()).await.unwrap();
            socket.write_all(b"--boundarydonotcross\r\n\r\n").await.unwrap();
            socket.write_all(&half).await.unwrap();
            hold(socket).await;
        }
    })
    .await;
    let mut source = MjpegSource::new(server.url("/"));
    source.frame_timeout = Duration::from_millis(300);
    let error = error_of(within("open", source.open()).await);
    assert_eq!(error, CameraError::Timeout(source.frame_timeout));
}

#[tokio::test]
async fn an_mjpeg_url_answering_something_else_is_refused_clearly() {
    let server = HttpServer::start(|head, mut socket| async move {
        let response = if head.starts_with("GET /snapshot ") {
            "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 0\r\n\r\n"
        } else if head.starts_with("GET /page ") {
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        };
        socket.write_all(response.as_bytes()).await.unwrap();
        hold(socket).await;
    })
    .await;
    let error = error_of(within("open", MjpegSource::new(server.url("/snapshot")).open()).await);
    assert!(error.to_string().contains("configure it as a snapshot URL"), "{error}");
    let error = error_of(within("open", MjpegSource::new(server.url("/page")).open()).await);
    assert!(error.to_string().contains("\"text/html\", not an MJPEG stream"), "{error}");
    let error = error_of(within("open", MjpegSource::new(server.url("/nope")).open()).await);
    assert!(matches!(error, CameraError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("answered 404 Not Found; check the URL"), "{error}");
}

#[tokio::test]
async fn a_snapshot_url_is_fetched_at_open_and_then_polled() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let server = HttpServer::start(move |head, mut socket| {
        let served = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(head.starts_with("GET /snapshot HTTP/1.1\r\n"), "{head}");
            // A different size each time, so each frame is a new fetch.
            let jpeg = test_jpeg(16 + 8 * u16::try_from(served).unwrap(), 16, 0);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&jpeg).await.unwrap();
            hold(socket).await;
        }
    })
    .await;
    let source = SnapshotSource::new(server.url("/snapshot"), Duration::from_millis(50));
    assert!(!source.continuous());
    let mut stream = within("open", source.open()).await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 1, "open fetches the first image");
    assert_eq!(decode(&next_frame(&mut stream).await.unwrap()), (16, 16));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "the first frame is the one open fetched");
    assert_eq!(decode(&next_frame(&mut stream).await.unwrap()), (24, 16));
    assert_eq!(decode(&next_frame(&mut stream).await.unwrap()), (32, 16));
}

#[tokio::test]
async fn a_snapshot_url_answering_404_or_html_is_refused_clearly() {
    let server = HttpServer::start(|head, mut socket| async move {
        let response: &[u8] = if head.starts_with("GET /login ") {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>"
        } else if head.starts_with("GET /broken ") {
            // SOI and EOI, nothing between.
            b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9"
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
        };
        socket.write_all(response).await.unwrap();
        hold(socket).await;
    })
    .await;
    let snapshot = |path| SnapshotSource::new(server.url(path), Duration::from_secs(1));
    let error = error_of(within("open", snapshot("/webcam/snapshot").open()).await);
    expect_test::expect![[r#"the camera is unavailable: GET http://ADDR/webcam/snapshot answered 404 Not Found; check the URL's path"#]]
        .assert_eq(&error.to_string().replace(&server.addr.to_string(), "ADDR"));
    let error = error_of(within("open", snapshot("/login").open()).await);
    assert!(error.to_string().contains("answered \"text/html\", not a JPEG"), "{error}");
    let error = error_of(within("open", snapshot("/broken").open()).await);
    assert!(matches!(error, CameraError::Protocol { .. }), "{error:?}");
}
