//! The camera ("port 6000"): TLS with the printer's certificate, the auth packet, JPEG frames,
//! the stream limit, faults. Written against the wire format of doc §3.13, not the simulator's
//! internals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use printer_sim::{
    CameraConfig, CameraFault, CameraSize, Model, SimConfig, SimError, SimEvent, SimHandle,
    Simulator,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use crate::support::{PrinterVerifier, WAIT, client_config, fast_config, tls_connect_to};

/// The frame size most tests use: small, so frames are cheap in a debug build.
const SMALL: (u16, u16) = (320, 180);
/// The most a test reads as one frame (a real one is tens of KiB).
const MAX_FRAME: usize = 4 << 20;
const JPEG_START: [u8; 2] = [0xFF, 0xD8];
const JPEG_END: [u8; 2] = [0xFF, 0xD9];

/// [`fast_config`] with a camera of `size` sending a frame every 20 ms.
fn camera_config(model: Model, size: (u16, u16)) -> SimConfig {
    let mut config = fast_config(model);
    config.camera = Some(CameraConfig {
        frame_interval: Duration::from_millis(20),
        size: CameraSize::new(size.0, size.1).expect("a valid size"),
        ..CameraConfig::default()
    });
    config
}

/// The 80-byte auth packet: `0x40`, `0x3000`, `0`, `0` (little-endian u32), then the username
/// and the access code, each NUL-padded to 32 bytes.
pub fn auth_packet(username: &str, access_code: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(80);
    for word in [0x40_u32, 0x3000, 0, 0] {
        packet.extend_from_slice(&word.to_le_bytes());
    }
    for field in [username, access_code] {
        let mut bytes = field.as_bytes().to_vec();
        bytes.resize(32, 0);
        packet.extend_from_slice(&bytes);
    }
    packet
}

/// A frame as read off the wire.
#[derive(Debug)]
pub struct Frame {
    /// `payload_size`, itrack, flags, reserved.
    pub header: [u32; 4],
    pub payload: Vec<u8>,
}

/// Checks a frame is a well-formed JPEG frame of `size`, decoding it.
pub fn assert_jpeg_frame(frame: &Frame, size: (u16, u16)) {
    assert_eq!(frame.header[1..], [0, 1, 0], "itrack 0, flags 1, then 0");
    assert_eq!(usize::try_from(frame.header[0]).expect("a u32 fits"), frame.payload.len());
    assert!(frame.payload.starts_with(&JPEG_START), "no JPEG start marker");
    assert!(frame.payload.ends_with(&JPEG_END), "no JPEG end marker");
    let mut decoder = jpeg_decoder::Decoder::new(frame.payload.as_slice());
    let pixels = decoder.decode().expect("a frame that decodes");
    let info = decoder.info().expect("image info after decoding");
    assert_eq!((info.width, info.height), size);
    assert_eq!(pixels.len(), usize::from(size.0) * usize::from(size.1) * 3);
}

impl Frame {
    /// The text of the JPEG comment (COM segment) before the image data, if any.
    pub fn comment(&self) -> Option<String> {
        let jpeg = &self.payload;
        let mut at = 2;
        while let Some(&[0xFF, marker, high, low]) = jpeg.get(at..at + 4) {
            let length = usize::from(u16::from_be_bytes([high, low]));
            match marker {
                0xFE => return String::from_utf8(jpeg.get(at + 4..at + 2 + length)?.to_vec()).ok(),
                // Start of scan: no more header segments.
                0xDA => return None,
                _ => at += 2 + length,
            }
        }
        None
    }

    /// A `key=value` of the simulator's comment.
    pub fn fact(&self, key: &str) -> String {
        let comment = self.comment().expect("a frame comment");
        let prefix = format!("{key}=");
        let value = comment.split(' ').find_map(|field| field.strip_prefix(prefix.as_str()));
        value.unwrap_or_else(|| panic!("no {key} in {comment:?}")).to_owned()
    }

    pub fn number(&self) -> u64 {
        self.fact("frame").parse().expect("a frame number")
    }
}

/// A camera client.
pub struct Camera {
    stream: TlsStream<TcpStream>,
}

impl Camera {
    /// Completes TLS (1.2 or 1.3) with the camera of `sim`, trusting the printer's CA.
    async fn open(sim: &SimHandle) -> std::io::Result<Camera> {
        let addr = sim.camera_addr().expect("the simulator has a camera");
        Camera::open_at(addr, sim.serial().as_str(), PrinterVerifier::new(sim)).await
    }

    /// Completes TLS with the camera at `addr` of printer `serial`.
    pub async fn open_at(
        addr: SocketAddr,
        serial: &str,
        verifier: Arc<PrinterVerifier>,
    ) -> std::io::Result<Camera> {
        let config = client_config(verifier, rustls::ALL_VERSIONS);
        Ok(Camera { stream: tls_connect_to(addr, serial, config).await? })
    }

    /// Opens a connection and authenticates with the right username and access code.
    async fn connect(sim: &SimHandle) -> Camera {
        let mut camera = Camera::open(sim).await.expect("TLS handshake with the camera");
        camera.send(&auth_packet("bblp", sim.access_code().as_str())).await;
        camera
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the camera");
        self.stream.flush().await.expect("flush to the camera");
    }

    async fn read_exact(&mut self, buffer: &mut [u8]) {
        timeout(WAIT, self.stream.read_exact(buffer))
            .await
            .expect("camera bytes in time")
            .expect("the camera stream stays open");
    }

    /// One read, as a client would do it: `Ok(0)` means the camera closed the connection.
    async fn read_once(&mut self) -> std::io::Result<usize> {
        let mut buffer = [0; 4096];
        timeout(WAIT, self.stream.read(&mut buffer)).await.expect("a read that ends in time")
    }

    /// Reads and discards until the camera closes the connection.
    async fn wait_closed(&mut self) {
        let mut buffer = [0; 4096];
        let closed = async { while let Ok(1..) = self.stream.read(&mut buffer).await {} };
        timeout(WAIT, closed).await.expect("the camera closes the connection");
    }

    async fn header(&mut self) -> [u32; 4] {
        let mut bytes = [0; 16];
        self.read_exact(&mut bytes).await;
        std::array::from_fn(|index| {
            let at = index * 4;
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        })
    }

    pub async fn frame(&mut self) -> Frame {
        let header = self.header().await;
        let size = usize::try_from(header[0]).expect("a u32 fits");
        assert!(size <= MAX_FRAME, "a header claiming {size} bytes");
        let mut payload = vec![0; size];
        self.read_exact(&mut payload).await;
        Frame { header, payload }
    }
}

async fn wait_for_event(sim_events: &mut printer_sim::SimEvents, wanted: fn(&SimEvent) -> bool) {
    sim_events.wait_for(WAIT, |event| wanted(event).then_some(())).await.expect("the event");
}

#[tokio::test]
async fn frames_are_jpegs_of_the_configured_size_behind_the_printers_certificate() {
    let sim = Simulator::start(camera_config(Model::P1S, (640, 360))).await.unwrap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let verifier = PrinterVerifier::new(&sim);
        let addr = sim.camera_addr().unwrap();
        let config = client_config(verifier.clone(), &[version]);
        let stream = tls_connect_to(addr, sim.serial().as_str(), config).await.unwrap();
        let mut camera = Camera { stream };
        camera.send(&auth_packet("bblp", sim.access_code().as_str())).await;
        let first = camera.frame().await;
        let second = camera.frame().await;
        assert_jpeg_frame(&first, (640, 360));
        assert_jpeg_frame(&second, (640, 360));
        assert_ne!(first.payload, second.payload, "consecutive frames differ");
        assert_eq!(*verifier.seen_leaves.lock().unwrap(), [sim.leaf_der()], "the MQTT leaf");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn by_default_frames_are_1280x720_and_the_first_comes_at_once() {
    // The default interval is 1 s; the first frame is rendered when the stream starts.
    let sim = Simulator::start(fast_config(Model::A1)).await.unwrap();
    let mut camera = Camera::connect(&sim).await;
    assert_jpeg_frame(&camera.frame().await, (1280, 720));
    assert_eq!(sim.camera_addr().unwrap().ip(), sim.addr().ip());
    sim.shutdown().await;
}

#[tokio::test]
async fn frames_show_the_printers_live_state() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    let mut camera = Camera::connect(&sim).await;
    let idle = camera.frame().await;
    assert_eq!(idle.fact("gcode_state"), "IDLE");
    assert_eq!(idle.fact("layer"), "0/0");
    // 10 ms layers: 1000 layers outlast the test.
    sim.start_job("cube", 1000).await.unwrap();
    let mut layers = Vec::new();
    let printing = async {
        while layers.len() < 2 {
            let frame = camera.frame().await;
            if frame.fact("gcode_state") == "RUNNING" {
                let layer = frame.fact("layer");
                let (layer, total) = layer.split_once('/').unwrap();
                assert_eq!(total, "1000");
                layers.push(layer.parse::<u32>().unwrap());
            }
        }
    };
    timeout(WAIT, printing).await.expect("frames of a job printing");
    assert!(layers[1] > layers[0], "layers advance from frame to frame: {layers:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_username_or_access_code_gets_the_connection_closed_without_a_byte() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    let mut events = sim.events();
    let code = sim.access_code().as_str().to_owned();
    for (username, access_code) in [("bblp", "87654321"), ("admin", code.as_str())] {
        let mut camera = Camera::open(&sim).await.unwrap();
        camera.send(&auth_packet(username, access_code)).await;
        assert_eq!(camera.read_once().await.unwrap(), 0, "a zero-length read");
        wait_for_event(&mut events, |event| matches!(event, SimEvent::CameraAuthRefused { .. }))
            .await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_malformed_or_short_auth_packet_gets_the_connection_closed() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    let mut malformed = auth_packet("bblp", sim.access_code().as_str());
    malformed[4..8].copy_from_slice(&0x3001_u32.to_le_bytes());
    let mut camera = Camera::open(&sim).await.unwrap();
    camera.send(&malformed).await;
    assert_eq!(camera.read_once().await.unwrap(), 0);

    let mut camera = Camera::open(&sim).await.unwrap();
    camera.send(&auth_packet("bblp", sim.access_code().as_str())[..40]).await;
    camera.stream.shutdown().await.unwrap();
    assert_eq!(camera.read_once().await.unwrap(), 0);
    sim.shutdown().await;
}

/// Opens `limit` streams, then one more: it authenticates but receives nothing while the
/// others get frames, until one of them ends.
async fn the_stream_past_the_limit_stalls_until_another_ends(limit: Option<usize>) {
    let mut config = camera_config(Model::P1S, SMALL);
    if let (Some(camera), Some(limit)) = (config.camera.as_mut(), limit) {
        camera.max_streams = limit;
    }
    let streams_served = limit.unwrap_or(2);
    let sim = Simulator::start(config).await.expect("the simulator starts");
    let mut events = sim.events();
    let mut streams = Vec::new();
    for _ in 0..streams_served {
        let mut camera = Camera::connect(&sim).await;
        assert_jpeg_frame(&camera.frame().await, SMALL);
        streams.push(camera);
    }
    let mut waiting = Camera::connect(&sim).await;
    wait_for_event(&mut events, |event| matches!(event, SimEvent::CameraStreamWaiting { .. }))
        .await;
    // Frames rendered from now on are ones the waiting stream must not get.
    let rendered = events
        .wait_for(WAIT, |event| match event {
            SimEvent::CameraFrameRendered { frame_number } => Some(*frame_number),
            _ => None,
        })
        .await
        .expect("a frame rendered");
    let mut last_seen = 0;
    for camera in &mut streams {
        loop {
            let frame = camera.frame().await;
            assert_jpeg_frame(&frame, SMALL);
            last_seen = last_seen.max(frame.number());
            if frame.number() > rendered {
                break;
            }
        }
    }

    drop(streams.remove(0));
    let first = waiting.frame().await;
    assert_jpeg_frame(&first, SMALL);
    assert!(
        first.number() > last_seen,
        "the waiting stream's first frame ({}) was rendered before a stream ended ({last_seen})",
        first.number()
    );
    assert_jpeg_frame(&waiting.frame().await, SMALL);
    for camera in &mut streams {
        assert_jpeg_frame(&camera.frame().await, SMALL);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_third_stream_stalls_until_one_of_two_ends() {
    the_stream_past_the_limit_stalls_until_another_ends(None).await;
}

#[tokio::test]
async fn the_stream_limit_is_configurable() {
    the_stream_past_the_limit_stalls_until_another_ends(Some(1)).await;
}

#[tokio::test]
async fn garbage_fault_sends_plausible_headers_then_no_jpeg_until_cleared() {
    let sim = Simulator::start(camera_config(Model::A1Mini, SMALL)).await.unwrap();
    sim.set_camera_fault(Some(CameraFault::Garbage));
    let mut camera = Camera::connect(&sim).await;
    for _ in 0..2 {
        let frame = camera.frame().await;
        assert_eq!(frame.header[1..], [0, 1, 0]);
        assert!(frame.header[0] > 0, "the size of a real frame");
        assert!(!frame.payload.starts_with(&JPEG_START));
        assert!(jpeg_decoder::Decoder::new(frame.payload.as_slice()).decode().is_err());
    }
    sim.set_camera_fault(None);
    // The stream stays framed, so real frames follow on it (after those already under way).
    let real_frame = async {
        loop {
            let frame = camera.frame().await;
            if frame.payload.starts_with(&JPEG_START) {
                return frame;
            }
        }
    };
    let frame = timeout(WAIT, real_frame).await.expect("a JPEG once the fault is cleared");
    assert_jpeg_frame(&frame, SMALL);
    sim.shutdown().await;
}

#[tokio::test]
async fn endless_jpeg_fault_starts_a_frame_and_never_ends_it() {
    let sim = Simulator::start(camera_config(Model::P1P, SMALL)).await.unwrap();
    sim.set_camera_fault(Some(CameraFault::EndlessJpeg));
    let mut camera = Camera::connect(&sim).await;
    let header = camera.header().await;
    assert_eq!(header[1..], [0, 1, 0]);
    let claimed = usize::try_from(header[0]).unwrap();
    assert!((1..=MAX_FRAME).contains(&claimed), "a plausible size: {claimed}");
    let mut start = [0; 2];
    camera.read_exact(&mut start).await;
    assert_eq!(start, JPEG_START);
    // On past the size claimed, and still no end marker.
    let mut rest = vec![0; claimed + 4096];
    camera.read_exact(&mut rest).await;
    assert!(!rest.windows(2).any(|pair| pair == JPEG_END), "an end marker");
    sim.shutdown().await;
}

#[tokio::test]
async fn huge_header_fault_claims_two_gigabytes() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    sim.set_camera_fault(Some(CameraFault::HugeHeader));
    let mut camera = Camera::connect(&sim).await;
    assert_eq!(camera.header().await, [0x8000_0000, 0, 1, 0]);
    let mut start = [0; 2];
    camera.read_exact(&mut start).await;
    assert_eq!(start, JPEG_START, "a real frame follows the header");
    sim.shutdown().await;
}

#[tokio::test]
async fn off_fault_closes_streams_and_refuses_connections_until_cleared() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    let mut camera = Camera::connect(&sim).await;
    assert_jpeg_frame(&camera.frame().await, SMALL);
    sim.set_camera_fault(Some(CameraFault::Off));
    camera.wait_closed().await;
    assert!(Camera::open(&sim).await.is_err(), "a TLS handshake with a camera that is off");
    sim.set_camera_fault(None);
    let mut camera = Camera::connect(&sim).await;
    assert_jpeg_frame(&camera.frame().await, SMALL);
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_connections_drops_camera_streams_too() {
    let sim = Simulator::start(camera_config(Model::P1S, SMALL)).await.unwrap();
    let mut camera = Camera::connect(&sim).await;
    assert_jpeg_frame(&camera.frame().await, SMALL);
    sim.drop_connections();
    camera.wait_closed().await;
    let mut camera = Camera::connect(&sim).await;
    assert_jpeg_frame(&camera.frame().await, SMALL);
    sim.shutdown().await;
}

#[tokio::test]
async fn camera_settings_that_make_no_sense_are_refused() {
    for (interval, streams) in
        [(Duration::ZERO, 2), (Duration::from_millis(20), 0), (Duration::from_millis(20), 65)]
    {
        let mut config = fast_config(Model::P1S);
        config.camera = Some(CameraConfig {
            frame_interval: interval,
            max_streams: streams,
            ..CameraConfig::default()
        });
        let error = Simulator::start(config).await.unwrap_err();
        assert!(matches!(error, SimError::Config(_)), "{error:?}");
    }
}

#[tokio::test]
async fn a_simulator_without_a_camera_has_no_camera_address() {
    let mut config = fast_config(Model::X1C);
    config.camera = None;
    let sim = Simulator::start(config).await.unwrap();
    assert_eq!(sim.camera_addr(), None);
    sim.shutdown().await;
}
