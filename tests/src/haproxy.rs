//! Debian's HAProxy in front of hub replicas, with the reference configuration
//! (`deploy/hub/haproxy.cfg`) itself: only what ties it to a real host is changed (the
//! process runs in the foreground as the test's user, without syslog, chroot or the admin
//! socket), its frontend and stats page listen on free loopback ports, its `hubs` backend
//! names the test's replicas, and the `postgres` section (the hub hosts' path to Patroni's
//! primary) is left out. Every other line (health checks on `/readyz`, retries only for
//! requests that never reached a replica, WebSocket timeouts, cutting sessions to a replica
//! marked down) is the file's.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::process::Process;

/// The reference configuration, as shipped.
pub const REFERENCE: &str = include_str!("../../deploy/hub/haproxy.cfg");

/// A running HAProxy.
#[derive(Debug)]
pub struct HaProxy {
    pub process: Process,
    /// The frontend: where dashboards and scripts connect.
    pub addr: SocketAddr,
    /// The stats page (`;csv` gives each server's state).
    pub stats: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The reference configuration made to run here, in front of `replicas` (name, HTTP
/// address), listening on `frontend` with its stats page on `stats`.
pub fn configuration(replicas: &[(String, SocketAddr)], frontend: u16, stats: u16) -> String {
    let mut out = String::new();
    let mut servers_written = false;
    let mut skipping = false;
    for line in REFERENCE.lines() {
        let trimmed = line.trim();
        // The postgres section is the hub hosts' own; everything after it too.
        if trimmed.starts_with("listen postgres") {
            skipping = true;
        }
        if skipping {
            continue;
        }
        let host_only = ["log /dev/log", "chroot ", "stats socket", "user ", "group ", "daemon"];
        if host_only.iter().any(|p| trimmed.starts_with(p)) {
            continue;
        }
        if trimmed.starts_with("bind :80") {
            out.push_str(&format!("    bind 127.0.0.1:{frontend}\n"));
            continue;
        }
        if trimmed.starts_with("bind 127.0.0.1:8404") {
            out.push_str(&format!("    bind 127.0.0.1:{stats}\n"));
            continue;
        }
        if trimmed.starts_with("server hub") {
            if !servers_written {
                for (name, addr) in replicas {
                    out.push_str(&format!("    server {name} {addr}\n"));
                }
                servers_written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(servers_written, "the reference configuration names no `server hub…`");
    out
}

impl HaProxy {
    /// Starts `haproxy` (Debian's package) in front of `replicas`, its configuration in `dir`.
    pub fn start(dir: &Path, replicas: &[(String, SocketAddr)]) -> HaProxy {
        let (frontend, stats) = (free_port(), free_port());
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, configuration(replicas, frontend, stats)).expect("write haproxy.cfg");
        let checked = Command::new("haproxy").arg("-c").arg("-f").arg(&path).output();
        let checked = checked.expect("haproxy runs (Debian's `haproxy` package)");
        assert!(checked.status.success(), "haproxy -c: {checked:?}");
        let mut command = Command::new("haproxy");
        command.arg("-db").arg("-f").arg(&path);
        let process = Process::spawn_logged(&mut command);
        HaProxy {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], frontend)),
            stats: SocketAddr::from(([127, 0, 0, 1], stats)),
        }
    }

    /// Each server of the `hubs` backend and its state (`UP`, `DOWN`, …), from the stats
    /// page.
    pub fn servers(&self) -> Vec<(String, String)> {
        let Ok(response) = crate::http::request(self.stats, "GET", "/;csv", &[], None) else {
            return Vec::new();
        };
        response
            .body
            .lines()
            .filter(|line| line.starts_with("hubs,") && !line.starts_with("hubs,BACKEND"))
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                Some((fields.get(1)?.to_string(), fields.get(17)?.to_string()))
            })
            .filter(|(name, _)| name != "FRONTEND")
            .collect()
    }
}
