//! What the simulator did, observable by tests: they wait for "the sim received a pause
//! request" or "the sim published FINISH" instead of sleeping.
//!
//! Events go out on a bounded broadcast channel ([`EVENT_CAPACITY`]); a receiver that falls
//! that far behind skips the oldest events (logged). Subscribe with `SimHandle::events()`
//! *before* causing what you wait for.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

/// How many events a slow receiver may lag behind before it skips some.
pub const EVENT_CAPACITY: usize = 4096;

/// One thing the simulator did.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A client completed CONNECT with the right credentials.
    ClientConnected {
        /// The MQTT client id.
        client_id: String,
        /// The client's address.
        peer: SocketAddr,
    },
    /// A client was refused at CONNECT (CONNACK return code 5, not authorized).
    ConnectRefused {
        /// The MQTT client id.
        client_id: String,
        /// The client's address.
        peer: SocketAddr,
    },
    /// A client's connection ended.
    ClientDisconnected {
        /// The MQTT client id (empty if it never sent CONNECT).
        client_id: String,
        /// Why, in a few words.
        reason: String,
    },
    /// A client subscribed to a topic filter.
    Subscribed {
        /// The MQTT client id.
        client_id: String,
        /// The filter.
        filter: String,
    },
    /// A request arrived on `device/<serial>/request` and parsed as JSON.
    RequestReceived {
        /// The MQTT client id.
        client_id: String,
        /// The request.
        request: Value,
    },
    /// A publish was ignored: not JSON, or not on the request topic.
    RequestIgnored {
        /// The MQTT client id.
        client_id: String,
        /// The topic it was published on.
        topic: String,
        /// Why it was ignored.
        reason: String,
    },
    /// The printer published a message on `device/<serial>/report`.
    Published {
        /// Report, reply or replayed line.
        kind: PublishedKind,
        /// The message.
        message: Value,
    },
    /// `drop_connections` closed every client connection.
    ConnectionsDropped,
    /// `rotate_certificate` installed a new leaf certificate and key.
    CertificateRotated,
    /// A camera client's auth packet was refused (wrong username or access code, malformed,
    /// short); its connection closes without a byte sent.
    CameraAuthRefused {
        /// The client's address.
        peer: SocketAddr,
        /// Why, in a few words.
        reason: String,
    },
    /// A camera client authenticated while the stream limit was reached: it receives nothing
    /// until a stream ends.
    CameraStreamWaiting {
        /// The client's address.
        peer: SocketAddr,
    },
    /// A camera stream started: frames follow.
    CameraStreamStarted {
        /// The client's address.
        peer: SocketAddr,
    },
    /// The camera rendered a frame for its open streams (only while one is open). Frames carry
    /// the number in their JPEG comment (`frame=<n>`).
    CameraFrameRendered {
        /// Counts from 1 as frames are rendered.
        frame_number: u64,
    },
    /// A camera connection ended, or was closed on arrival because the camera is off.
    CameraDisconnected {
        /// The client's address.
        peer: SocketAddr,
        /// Why, in a few words.
        reason: String,
    },
}

/// What kind of message the printer published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishedKind {
    /// A `push_status` report (full or delta).
    Report,
    /// An ACK or another reply to a request.
    Reply,
    /// A line from the replay file.
    Replay,
}

/// A receiver of [`SimEvent`]s.
#[derive(Debug)]
pub struct SimEvents {
    receiver: broadcast::Receiver<SimEvent>,
}

impl SimEvents {
    pub(crate) fn new(receiver: broadcast::Receiver<SimEvent>) -> SimEvents {
        SimEvents { receiver }
    }

    /// The next event; `None` once the simulator has stopped.
    pub async fn next(&mut self) -> Option<SimEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(RecvError::Lagged(skipped)) => {
                    warn!(skipped, "Event receiver lagged; skipped events.");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Waits until `matcher` returns `Some` for an event, and returns that.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut matcher: impl FnMut(&SimEvent) -> Option<T>,
    ) -> Result<T, WaitError> {
        let search = async {
            while let Some(event) = self.next().await {
                if let Some(found) = matcher(&event) {
                    return Ok(found);
                }
            }
            Err(WaitError::Stopped)
        };
        tokio::time::timeout(timeout, search).await.map_err(|_| WaitError::Timeout(timeout))?
    }

    /// Waits for a request whose `<category>.command` is `command`; returns the request.
    pub async fn wait_for_request(
        &mut self,
        timeout: Duration,
        category: &str,
        command: &str,
    ) -> Result<Value, WaitError> {
        self.wait_for(timeout, |event| match event {
            SimEvent::RequestReceived { request, .. }
                if request.get(category).and_then(|body| body.get("command"))
                    == Some(&Value::from(command)) =>
            {
                Some(request.clone())
            }
            _ => None,
        })
        .await
    }

    /// Waits for a published message for which `matcher` returns `Some`.
    pub async fn wait_for_published<T>(
        &mut self,
        timeout: Duration,
        mut matcher: impl FnMut(&Value) -> Option<T>,
    ) -> Result<T, WaitError> {
        self.wait_for(timeout, |event| match event {
            SimEvent::Published { message, .. } => matcher(message),
            _ => None,
        })
        .await
    }
}

/// Waiting for an event did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Nothing matched in time.
    #[error("no matching simulator event within {0:?}")]
    Timeout(Duration),
    /// The simulator stopped first.
    #[error("the simulator stopped")]
    Stopped,
}
