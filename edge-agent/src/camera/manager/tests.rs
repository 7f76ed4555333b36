//! The manager against a scripted source: frames and failures are fed by the test, and every
//! check waits on the manager's output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use proto::{CameraHealth, JobOutcome};

use super::*;
use crate::camera::BoxFuture;

#[derive(Debug)]
struct ScriptedSource {
    available: Arc<AtomicBool>,
    frames: Arc<tokio::sync::Mutex<mpsc::Receiver<Frame>>>,
}

#[derive(Debug)]
struct ScriptedStream {
    frames: Arc<tokio::sync::Mutex<mpsc::Receiver<Frame>>>,
}

impl CameraSource for ScriptedSource {
    fn describe(&self) -> String {
        "scripted".into()
    }

    fn continuous(&self) -> bool {
        true
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        Box::pin(async move {
            if !self.available.load(Ordering::SeqCst) {
                return Err(CameraError::Unavailable { detail: "the camera is off".into() });
            }
            Ok(Box::new(ScriptedStream { frames: self.frames.clone() }) as Box<dyn FrameStream>)
        })
    }
}

impl FrameStream for ScriptedStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Frame, CameraError>> {
        Box::pin(async move { self.frames.lock().await.recv().await.ok_or(CameraError::Ended) })
    }
}

struct Harness {
    frames: mpsc::Sender<Frame>,
    events: broadcast::Sender<(UnixMillis, PrinterEventKind)>,
    _state: watch::Sender<PrinterStateV2>,
    control: mpsc::Sender<LiveViewAction>,
    records: mpsc::Receiver<(UnixMillis, RecordBody)>,
    live: mpsc::Receiver<LiveFrame>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn start(available: bool) -> Harness {
    // Capacity 1: once a send returns, the frame before it has been taken, and handled.
    let (frames, frames_rx) = mpsc::channel(1);
    let (events, events_rx) = broadcast::channel(16);
    let (state, state_rx) = watch::channel(PrinterStateV2::default());
    let (control, control_rx) = mpsc::channel(16);
    let (records_tx, records) = mpsc::channel(64);
    let (live_tx, live) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let config = CameraConfig {
        printer: PrinterId::new("SIM1").expect("valid"),
        camera: CameraId::new("chamber").expect("valid"),
        policy: SnapshotPolicy { every: None, every_layers: None },
        live_max_fps_milli: u32::MAX,
        chunk_bytes: 100,
        health_interval: Duration::from_secs(3600),
    };
    let source = ScriptedSource {
        available: Arc::new(AtomicBool::new(available)),
        frames: Arc::new(tokio::sync::Mutex::new(frames_rx)),
    };
    tokio::spawn(run(
        config,
        Box::new(source),
        CameraInputs { events: events_rx, state: state_rx, control: control_rx },
        CameraOutputs { records: records_tx, live: live_tx, counters: Arc::default() },
        shutdown.clone(),
    ));
    Harness { frames, events, _state: state, control, records, live, shutdown }
}

fn frame(n: u8, len: usize) -> Frame {
    Frame {
        // After the events the tests send (at 2 000 and 3 000).
        captured_at: UnixMillis(1_000_000 + i64::from(n)),
        jpeg: Bytes::from(vec![n; len]),
        width: 1280,
        height: 720,
    }
}

impl Harness {
    async fn next_record(&mut self) -> RecordBody {
        tokio::time::timeout(Duration::from_secs(10), self.records.recv())
            .await
            .expect("a record within 10 s")
            .expect("the manager is running")
            .1
    }

    async fn next_health(&mut self) -> CameraHealth {
        loop {
            if let RecordBody::CameraHealth(health) = self.next_record().await {
                return health;
            }
        }
    }

    /// Sends frames `first`, `first + 1`, … (each send returns once the frame before it was
    /// taken and handled) until a whole snapshot has been recorded; returns it.
    async fn feed_until_snapshot(&mut self, first: u8, len: usize) -> (SnapshotTrigger, Vec<u8>) {
        let mut chunks: Vec<proto::SnapshotChunk> = Vec::new();
        for n in first..=u8::MAX {
            self.frames.send(frame(n, len)).await.expect("sent");
            while let Ok((_, body)) = self.records.try_recv() {
                if let RecordBody::Snapshot(chunk) = body {
                    let last = chunk.chunk_index + 1 == chunk.chunk_count;
                    chunks.push(chunk);
                    if last {
                        let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
                        let sha: [u8; 32] = Sha256::digest(&data).into();
                        assert_eq!(sha, chunks[0].sha256, "the hash covers the whole image");
                        return (chunks[0].trigger, data);
                    }
                }
            }
        }
        panic!("no snapshot after feeding frames {first}..=255");
    }

    async fn next_snapshot(&mut self) -> (SnapshotTrigger, Vec<u8>) {
        let mut data = Vec::new();
        loop {
            match self.next_record().await {
                RecordBody::Snapshot(chunk) => {
                    assert_eq!(usize::from(chunk.chunk_index), data.len().div_ceil(100));
                    data.extend_from_slice(&chunk.data);
                    if chunk.chunk_index + 1 == chunk.chunk_count {
                        assert_eq!(data.len(), chunk.total_len as usize);
                        let sha: [u8; 32] = Sha256::digest(&data).into();
                        assert_eq!(sha, chunk.sha256, "the hash covers the whole image");
                        return (chunk.trigger, data);
                    }
                }
                RecordBody::CameraHealth(_) => {}
                other => panic!("unexpected record {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn milestones_become_chunked_snapshots_of_a_frame_from_after_the_moment() {
    let mut h = start(true);
    h.frames.send(frame(1, 250)).await.expect("sent");
    let health = h.next_health().await;
    assert_eq!(health.state, CameraState::Streaming);
    assert_eq!((health.width, health.height), (1280, 720));

    let started = PrinterEventKind::JobStarted { job_name: None, total_layers: None };
    h.events.send((UnixMillis(2_000), started)).expect("sent");
    let (trigger, data) = h.feed_until_snapshot(2, 250).await;
    assert_eq!(trigger, SnapshotTrigger::JobStarted);
    assert_ne!(data, vec![1; 250], "not the frame from before the job started");
    assert_eq!(data.len(), 250, "whole, from three chunks");

    // A progress snapshot may use the frame just received.
    let mut state = PrinterStateV2 { state: proto::PrintState::Printing, ..Default::default() };
    state.layer = Some(2);
    h._state.send_replace(state);
    let (trigger, _) = h.next_snapshot().await;
    assert_eq!(trigger, SnapshotTrigger::FirstLayerDone);

    let failed = PrinterEventKind::JobFinished {
        job_name: None,
        outcome: JobOutcome::Failed { print_error: None, hms: Vec::new() },
    };
    h.events.send((UnixMillis(3_000), failed)).expect("sent");
    let (trigger, _) = h.feed_until_snapshot(100, 40).await;
    assert_eq!(trigger, SnapshotTrigger::Failed);

    // A frame decoded just before the moment, still on its way, does not serve it: the
    // picture's time sorts after the event's, so the hub links the two.
    let paused = PrinterEventKind::JobPaused { reason: None };
    h.events.send((UnixMillis(1_000_150), paused)).expect("sent");
    let (trigger, data) = h.feed_until_snapshot(140, 30).await;
    assert_eq!(trigger, SnapshotTrigger::Paused);
    assert_eq!(data, vec![150; 30], "the first frame captured at the moment or after");
}

#[tokio::test]
async fn a_requested_snapshot_from_a_dead_camera_is_answered_with_the_reason() {
    let mut h = start(false);
    let health = h.next_health().await;
    assert_eq!(health.state, CameraState::Failed);
    assert!(health.last_error.as_deref().is_some_and(|e| e.contains("the camera is off")));

    h.control.send(LiveViewAction::Snapshot).await.expect("sent");
    let health = h.next_health().await;
    assert_eq!(health.state, CameraState::Failed);
    let error = health.last_error.expect("a reason");
    assert!(error.contains("snapshot not taken") && error.contains("off"), "{error}");
    assert!(h.records.try_recv().is_err(), "no snapshot record: nothing was faked");
}

#[tokio::test]
async fn live_view_runs_between_start_and_stop() {
    let mut h = start(true);
    h.frames.send(frame(1, 10)).await.expect("sent");
    assert_eq!(h.next_health().await.state, CameraState::Streaming);
    assert!(h.live.try_recv().is_err(), "no live view before Start");

    h.control.send(LiveViewAction::Start { max_fps_milli: u32::MAX }).await.expect("sent");
    // Control messages are handled in order: once the snapshot is back, Start was handled.
    h.control.send(LiveViewAction::Snapshot).await.expect("sent");
    let (trigger, _) = h.feed_until_snapshot(2, 10).await;
    assert_eq!(trigger, SnapshotTrigger::Requested);
    while h.live.try_recv().is_ok() {}
    h.frames.send(frame(200, 10)).await.expect("sent");
    h.frames.send(frame(201, 10)).await.expect("sent");
    // Frame 200 was handled (and any frame still pending from before it).
    let mut newest = None;
    while let Ok(live) = h.live.try_recv() {
        newest = Some(live);
    }
    assert_eq!(newest.expect("frames went out live").data, vec![200; 10]);

    h.control.send(LiveViewAction::Stop).await.expect("sent");
    h.control.send(LiveViewAction::Snapshot).await.expect("sent");
    let (trigger, _) = h.feed_until_snapshot(210, 10).await;
    assert_eq!(trigger, SnapshotTrigger::Requested);
    while h.live.try_recv().is_ok() {}
    for n in 240..=242 {
        h.frames.send(frame(n, 10)).await.expect("sent");
    }
    // Frame 242 was accepted, so frames 240 and 241 have been handled.
    assert!(h.live.try_recv().is_err(), "no live frames after Stop");
}
