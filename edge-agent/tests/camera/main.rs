//! The camera sources against local servers speaking each upstream's protocol: a TLS
//! port-6000 Bambu camera, MJPEG and snapshot HTTP servers, an RTSP(S) server streaming
//! H.264 to a real ffmpeg, and a missing V4L2 device. Frames are checked with a real JPEG
//! decoder.

#![allow(clippy::unwrap_used)]

mod bambu;
mod http;
mod listed;
mod rtsp;
mod support;
mod usb;
