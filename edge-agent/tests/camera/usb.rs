//! USB cameras: no camera is attached where the tests run, so what is tested is that a
//! missing device is a clear error, not a panic or a hang.

use edge_agent::camera::sources::usb::UsbSource;
use edge_agent::camera::{CameraError, CameraSource};

use crate::support::{error_of, within};

#[tokio::test]
async fn a_missing_device_is_unavailable() {
    // Far beyond what a machine running the tests would have plugged in.
    let source = UsbSource::new("/dev/video63".into(), 640, 480, 5);
    assert!(source.continuous());
    let error = error_of(within("open", source.open()).await);
    let CameraError::Unavailable { detail } = &error else { panic!("{error:?}") };
    assert_eq!(detail, "/dev/video63 does not exist (is the camera plugged in?)");
}

#[tokio::test]
async fn a_missing_link_says_to_check_the_camera_is_plugged_in() {
    let source =
        UsbSource::new("/dev/v4l/by-id/usb-kitt-test-missing-video-index0".into(), 640, 480, 5);
    let error = error_of(within("open", source.open()).await);
    let CameraError::Unavailable { detail } = &error else { panic!("{error:?}") };
    assert!(detail.contains("is the camera plugged in?"), "{detail}");
}
