//! The camera a printer names itself (the first webcam a Klipper printer's Moonraker lists):
//! the printer link publishes where it is, and each `open` connects to whatever is published
//! then, through the MJPEG or snapshot source. Before the printer has named one (or after it
//! dropped its last), `open` fails with a clear error and the manager tries again later.

use tokio::sync::watch;

use super::{SourceConfig, open_source};
use crate::camera::{BoxFuture, CameraError, CameraSource, FrameStream};

#[derive(Debug, Clone)]
pub struct ListedSource {
    camera: watch::Receiver<Option<SourceConfig>>,
}

impl ListedSource {
    pub fn new(camera: watch::Receiver<Option<SourceConfig>>) -> ListedSource {
        ListedSource { camera }
    }
}

impl CameraSource for ListedSource {
    fn describe(&self) -> String {
        match &*self.camera.borrow() {
            Some(source) => format!("the printer's webcam ({})", source.summary()),
            None => "the printer's webcam (none listed yet)".into(),
        }
    }

    /// Webcams are MJPEG streams as a rule; a snapshot-only one is polled all the time.
    fn continuous(&self) -> bool {
        true
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn FrameStream>, CameraError>> {
        let current = self.camera.borrow().clone();
        Box::pin(async move {
            match current {
                Some(SourceConfig::Listed { .. }) | None => Err(CameraError::Unavailable {
                    detail: "the printer lists no webcam (Moonraker's [webcam] sections)".into(),
                }),
                Some(config) => open_source(&config).open().await,
            }
        })
    }
}
