//! Debian's HAProxy in front of hub replicas, with the reference configuration
//! (`deploy/hub/haproxy.cfg`) itself: only what ties it to a real host is changed (the
//! process runs in the foreground as the test's user, without syslog, chroot or the admin
//! socket), its frontend and stats page listen on free loopback ports, its `hubs` backend
//! names the test's replicas, and the `postgres` section (the hub hosts' path to Patroni's
//! primary) is left out. Every other line (health checks on `/readyz`, retries only for
//! requests that never reached a replica, WebSocket timeouts, a draining replica taken out
//! of the rotation without cutting what is under way, cutting sessions to a replica marked
//! down) is the file's.
//!
//! [`postgres_configuration`] is the other half: the same global and defaults sections with
//! the `postgres` section alone (a hub host's path to Patroni's primary), for
//! [`crate::patroni`].

use std::net::{IpAddr, SocketAddr};
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
        if host_only(trimmed) {
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

/// Whether a (trimmed) line of the global section ties HAProxy to a real host: syslog, the
/// chroot, the admin socket, the user to become and daemon mode. A test's HAProxy runs in
/// the foreground as the test's user without them.
fn host_only(trimmed: &str) -> bool {
    let lines = ["log /dev/log", "chroot ", "stats socket", "user ", "group ", "daemon"];
    lines.iter().any(|p| trimmed.starts_with(p))
}

/// The reference configuration's global and defaults sections and its `postgres` section
/// (PART 2: a hub host's path to the current Patroni primary), made to run here: listening
/// on 127.0.0.1:`port` instead of 127.0.0.1:5000, its servers `pg1`, `pg2`, … at the
/// addresses in `servers` (name, address), still on port 5432 and checked on Patroni's REST
/// API on port 8008 there. PART 1 (the front machine's sections) is left out; every other
/// line is the file's.
pub fn postgres_configuration(port: u16, servers: &[(&str, IpAddr)]) -> String {
    let mut out = String::new();
    let mut keep = true;
    let (mut bound, mut written) = (false, 0);
    for line in REFERENCE.lines() {
        let trimmed = line.trim();
        // A section starts at the margin: keep global, defaults and listen postgres.
        if !line.starts_with([' ', '#']) && !trimmed.is_empty() {
            keep = ["global", "defaults", "listen postgres"].contains(&trimmed);
        }
        if !keep || host_only(trimmed) {
            continue;
        }
        if trimmed == "bind 127.0.0.1:5000" {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            bound = true;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("server ") {
            // `server pg1 10.0.0.21:5432 check port 8008`: the address is this host's.
            let mut words: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            let address = servers.iter().find(|(name, _)| words.first().is_some_and(|w| w == name));
            let (Some((_, address)), Some(target)) = (address, words.get_mut(1)) else {
                continue;
            };
            let port = target.rsplit_once(':').map_or("5432", |(_, port)| port).to_owned();
            *target = format!("{address}:{port}");
            out.push_str(&format!("    server {}\n", words.join(" ")));
            written += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(bound, "the reference configuration's postgres section binds no 127.0.0.1:5000");
    assert_eq!(written, servers.len(), "the reference configuration names other servers");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_section_keeps_the_reference_lines_but_its_address_and_servers() {
        let servers =
            [("pg1", IpAddr::from([127, 0, 0, 41])), ("pg2", IpAddr::from([127, 0, 0, 42]))];
        let configuration = postgres_configuration(15000, &servers);
        for line in [
            "listen postgres",
            "    bind 127.0.0.1:15000",
            "    option httpchk OPTIONS /primary",
            "    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions",
            "    server pg1 127.0.0.41:5432 check port 8008",
            "    server pg2 127.0.0.42:5432 check port 8008",
            "    timeout connect 3s",
        ] {
            assert!(configuration.lines().any(|l| l == line), "no {line:?} in:\n{configuration}");
        }
        for gone in ["frontend kitt", "backend hubs", "listen stats", "chroot", "daemon", "10.0.0."]
        {
            let kept = configuration.lines().filter(|l| !l.trim_start().starts_with('#'));
            assert!(!kept.clone().any(|l| l.contains(gone)), "{gone:?} in:\n{configuration}");
        }
    }
}
