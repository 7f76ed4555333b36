//! A userspace UDP impairment relay: agents talk to the relay, the relay to the hub, and the
//! test decides what gets through (no kernel modules needed, unlike netem).
//!
//! Each client address gets its own upstream socket, so the hub sees one peer per agent.
//! Impairments apply in both directions: a partition drops everything, `loss` drops that
//! fraction of datagrams, `delay` holds each datagram that long plus up to `jitter` more
//! (which also reorders them).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// What the relay does to traffic right now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub partitioned: bool,
    pub loss: f64,
    pub delay: Duration,
    pub jitter: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: u64,
    dropped: u64,
}

#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    impairment: Arc<Mutex<Impairment>>,
    counters: Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
}

impl Relay {
    /// A relay on a loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind the relay"));
        let addr = socket.local_addr().expect("the relay's address");
        let impairment = Arc::new(Mutex::new(Impairment::default()));
        let counters = Arc::new(Mutex::new(Counters::default()));
        let shutdown = CancellationToken::new();
        tokio::spawn(downstream(
            socket,
            upstream,
            impairment.clone(),
            counters.clone(),
            shutdown.clone(),
        ));
        Relay { addr, impairment, counters, shutdown }
    }

    pub fn set(&self, impairment: Impairment) {
        *self.impairment.lock().expect("relay state") = impairment;
    }

    pub fn partition(&self, on: bool) {
        self.impairment.lock().expect("relay state").partitioned = on;
    }

    /// Datagrams forwarded and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let counters = self.counters.lock().expect("relay counters");
        (counters.forwarded, counters.dropped)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Decides the fate of one datagram: `None` drops it, `Some(delay)` sends it after `delay`.
fn fate(impairment: &Mutex<Impairment>, counters: &Mutex<Counters>) -> Option<Duration> {
    let impairment = *impairment.lock().expect("relay state");
    let mut counters = counters.lock().expect("relay counters");
    if impairment.partitioned || (impairment.loss > 0.0 && rand::random::<f64>() < impairment.loss)
    {
        counters.dropped += 1;
        return None;
    }
    counters.forwarded += 1;
    let jitter = impairment.jitter.mul_f64(rand::random::<f64>());
    Some(impairment.delay + jitter)
}

async fn send_later(socket: Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr, delay: Duration) {
    if delay.is_zero() {
        let _ = socket.send_to(&data, to).await;
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = socket.send_to(&data, to).await;
        });
    }
}

async fn downstream(
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    impairment: Arc<Mutex<Impairment>>,
    counters: Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(_) => continue,
            },
        };
        let up = match clients.get(&from) {
            Some(up) => up.clone(),
            None => {
                let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else { continue };
                if up.connect(upstream).await.is_err() {
                    continue;
                }
                let up = Arc::new(up);
                clients.insert(from, up.clone());
                tokio::spawn(upstream_to_client(
                    up.clone(),
                    socket.clone(),
                    from,
                    impairment.clone(),
                    counters.clone(),
                    shutdown.clone(),
                ));
                up
            }
        };
        if let Some(delay) = fate(&impairment, &counters) {
            send_later(up, buffer[..n].to_vec(), upstream, delay).await;
        }
    }
}

async fn upstream_to_client(
    up: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    impairment: Arc<Mutex<Impairment>>,
    counters: Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = up.recv(&mut buffer) => match received {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        if let Some(delay) = fate(&impairment, &counters) {
            send_later(socket.clone(), buffer[..n].to_vec(), client, delay).await;
        }
    }
}
