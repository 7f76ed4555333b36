//! The camera a printer names itself, against the simulated Moonraker's webcam: nothing
//! listed is a clear error; once the link publishes the webcam, its MJPEG stream and its
//! snapshots give real frames.

use edge_agent::camera::sources::SourceConfig;
use edge_agent::camera::{CameraError, open_source};
use printer_sim::moonraker::{self, MoonrakerConfig};
use tokio::sync::watch;

use crate::support::{decode, error_of, next_frame, within};

#[tokio::test]
async fn the_listed_webcam_is_followed_as_the_printer_names_it() {
    let sim = moonraker::start(MoonrakerConfig::new("voron-cam")).await.unwrap();
    let web = sim.web_addr().unwrap();
    let (listed, camera) = watch::channel(None);
    let source = open_source(&SourceConfig::Listed { camera });
    assert!(source.continuous());
    let error = error_of(within("an open with nothing listed", source.open()).await);
    assert!(
        matches!(&error, CameraError::Unavailable { detail } if detail.contains("lists no webcam")),
        "{error:?}"
    );

    listed.send_replace(Some(SourceConfig::Mjpeg {
        url: format!("http://{web}/webcam/?action=stream"),
    }));
    let mut stream = within("the stream", source.open()).await.unwrap();
    let first = within("a frame", next_frame(&mut stream)).await.unwrap();
    assert_eq!(decode(&first), (640, 480));
    let second = within("the next frame", next_frame(&mut stream)).await.unwrap();
    assert_ne!(first.jpeg, second.jpeg, "frames follow the printer");
    drop(stream);

    listed.send_replace(Some(SourceConfig::Snapshot {
        url: format!("http://{web}/webcam/?action=snapshot"),
        interval: std::time::Duration::from_millis(100),
    }));
    let mut stream = within("the snapshot", source.open()).await.unwrap();
    let snapshot = within("a snapshot", next_frame(&mut stream)).await.unwrap();
    assert_eq!(decode(&snapshot), (640, 480));
    sim.shutdown().await;
}
