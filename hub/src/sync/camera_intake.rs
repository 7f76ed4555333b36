//! Camera intake: live frames arriving on their own unidirectional streams, fanned out to
//! the viewers of each camera, and the viewers themselves (the first starts the agent's
//! stream, the last one stops it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use proto::{AgentMessage, CameraId, LiveViewAction, LiveViewRequest, PrinterId};

use super::delivery::Signal;
use super::server::SyncHandle;
use crate::camera::{Cameras, LIVE_FPS_MILLI, LiveImage, SnapshotStore};
use crate::metrics::{Metrics, Source};
use proto_io::{FrameError, FrameReader};

/// One viewer of a camera's live view; dropping it leaves.
#[derive(Debug)]
pub struct CameraViewer {
    handle: SyncHandle,
    printer: PrinterId,
    camera: CameraId,
    pub frames: tokio::sync::watch::Receiver<Option<LiveImage>>,
}

impl Drop for CameraViewer {
    fn drop(&mut self) {
        if self.handle.shared.cameras.remove_viewer(&self.printer, &self.camera) {
            self.handle.live_view(&self.printer, &self.camera, LiveViewAction::Stop);
        }
    }
}

impl SyncHandle {
    pub fn cameras(&self) -> &Arc<Cameras> {
        &self.shared.cameras
    }

    pub fn snapshots(&self) -> Option<&SnapshotStore> {
        self.shared.snapshots.as_ref()
    }

    /// Starts watching a camera: the first viewer asks the agent to stream. The returned
    /// guard stops the stream when the last viewer drops it.
    pub fn watch_camera(&self, printer: &PrinterId, camera: &CameraId) -> CameraViewer {
        let (frames, first) = self.shared.cameras.add_viewer(printer, camera);
        if first {
            self.live_view(
                printer,
                camera,
                LiveViewAction::Start { max_fps_milli: LIVE_FPS_MILLI },
            );
        }
        CameraViewer {
            handle: self.clone(),
            printer: printer.clone(),
            camera: camera.clone(),
            frames,
        }
    }

    /// Sends a live view action to the agent serving `printer`; false when it is offline.
    pub fn live_view(
        &self,
        printer: &PrinterId,
        camera: &CameraId,
        action: LiveViewAction,
    ) -> bool {
        let Some(agent) = self.shared.cameras.owner(printer) else { return false };
        if !self.shared.live_map().contains_key(&agent) {
            return false;
        }
        let request = LiveViewRequest { printer: printer.clone(), camera: camera.clone(), action };
        self.shared.signal(&agent, Signal::LiveView(request));
        true
    }
}

/// The largest live frame message accepted (the agent's frame limit plus framing).
const MAX_LIVE_FRAME: u32 = 9 * 1024 * 1024;

/// Reads live frames, one per unidirectional stream, for as long as the connection lives.
/// A frame for a camera the agent did not announce, or bytes that are not a frame, end that
/// stream only: live view is best effort and never disturbs the records.
pub(super) async fn accept_live_frames(
    connection: quinn::Connection,
    cameras: Arc<Cameras>,
    announced: Arc<HashSet<(PrinterId, CameraId)>>,
    metrics: Arc<Metrics>,
) {
    while let Ok(recv) = connection.accept_uni().await {
        let cameras = cameras.clone();
        let announced = announced.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let work = async {
                let mut reader = FrameReader::new(recv, MAX_LIVE_FRAME);
                let message =
                    tokio::time::timeout(Duration::from_secs(10), reader.next::<AgentMessage>());
                match message.await {
                    Ok(Ok(AgentMessage::LiveFrame(frame))) => {
                        if announced.contains(&(frame.printer.clone(), frame.camera.clone())) {
                            publish_frame(&cameras, frame);
                        } else {
                            metrics.refused(
                                Source::LiveFrame,
                                "unannounced_camera",
                                &format_args!("printer {} camera {}", frame.printer, frame.camera),
                            );
                        }
                    }
                    Ok(Ok(_)) => {
                        metrics.refused(Source::LiveFrame, "unexpected_message", &"not a frame")
                    }
                    Ok(Err(FrameError::Decode(error))) => {
                        metrics.refused(Source::LiveFrame, "decode", &error);
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "A live frame stream failed."),
                    Err(_) => tracing::debug!("A live frame stream stalled."),
                }
            };
            crate::supervise::contained(&metrics, "camera_intake", work).await;
        });
    }
}

pub(super) fn publish_frame(cameras: &Cameras, frame: proto::LiveFrame) {
    let image = LiveImage {
        captured_at: frame.captured_at,
        received: std::time::Instant::now(),
        jpeg: frame.data.into(),
    };
    cameras.publish(frame.printer, frame.camera, image);
}
