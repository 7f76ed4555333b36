//! The hub's Prometheus registry (OpenMetrics text at `/metrics`). Every metric's name is a
//! constant in [`names`], documented in `docs/specs/metrics.md` (a test keeps the two
//! equal). Input the hub refuses — from the network or from files — is logged and counted in
//! one call, [`Metrics::refused`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric's name, as exposed (counters gain `_total` on the wire).
pub mod names {
    pub const HTTP_REQUESTS: &str = "kitt_http_requests";
    pub const HTTP_REQUEST_DURATION: &str = "kitt_http_request_duration_seconds";
    pub const LOGINS_REFUSED: &str = "kitt_logins_refused";
    pub const INPUT_REFUSED: &str = "kitt_input_refused";
    pub const INGEST_BATCHES: &str = "kitt_ingest_batches";
    pub const INGEST_RECORDS: &str = "kitt_ingest_records";
    pub const INGEST_COMMIT_DURATION: &str = "kitt_ingest_commit_duration_seconds";
    pub const INGEST_FAILURES: &str = "kitt_ingest_failures";
    pub const PANICS: &str = "kitt_panics";
    pub const LIVE_UPDATE_LATENCY: &str = "kitt_live_update_latency_seconds";
    pub const WS_MESSAGES: &str = "kitt_ws_messages";
    pub const WS_CLIENTS: &str = "kitt_ws_clients";
    pub const AGENTS_CONNECTED: &str = "kitt_agents_connected";
    pub const UPTIME: &str = "kitt_uptime_seconds";
    pub const AGENT_ONLINE: &str = "kitt_agent_online";
    pub const AGENT_LAST_SEEN: &str = "kitt_agent_last_seen_timestamp_seconds";
    pub const AGENT_OUTBOX_RECORDS: &str = "kitt_agent_outbox_records";
    pub const AGENT_OUTBOX_BYTES: &str = "kitt_agent_outbox_bytes";
    pub const AGENT_DISK_FREE: &str = "kitt_agent_disk_free_bytes";
    pub const AGENT_ACKED_THROUGH: &str = "kitt_agent_acked_through";
    pub const AGENT_DROPS: &str = "kitt_agent_dropped_records";
    pub const AGENT_CERTIFICATE_EXPIRY: &str = "kitt_agent_certificate_expiry_timestamp_seconds";
    pub const AGENT_HUB_RECONNECTS: &str = "kitt_agent_hub_reconnects";
    pub const AGENT_HUB_PROTOCOL_ERRORS: &str = "kitt_agent_hub_protocol_errors";
    pub const AGENT_COMMANDS_REFUSED: &str = "kitt_agent_commands_refused";
    pub const AGENT_PRINTER_LINK_ERRORS: &str = "kitt_agent_printer_link_errors";
    pub const AGENT_PRINTER_BAD_PAYLOADS: &str = "kitt_agent_printer_bad_payloads";
    pub const AGENT_CAMERA_ERRORS: &str = "kitt_agent_camera_errors";
    pub const AGENT_CLOCK_OFFSET: &str = "kitt_agent_clock_offset_seconds";
    pub const ASSISTANT_CACHE_LOOKUPS: &str = "kitt_assistant_cache_lookups";
    pub const ASSISTANT_CACHE_INVALIDATIONS: &str = "kitt_assistant_cache_invalidations";
    pub const MEMORY_POINTS: &str = "kitt_memory_points";

    /// Every name, for the documentation test.
    pub const ALL: &[&str] = &[
        HTTP_REQUESTS,
        HTTP_REQUEST_DURATION,
        LOGINS_REFUSED,
        INPUT_REFUSED,
        INGEST_BATCHES,
        INGEST_RECORDS,
        INGEST_COMMIT_DURATION,
        INGEST_FAILURES,
        PANICS,
        LIVE_UPDATE_LATENCY,
        WS_MESSAGES,
        WS_CLIENTS,
        AGENTS_CONNECTED,
        UPTIME,
        AGENT_ONLINE,
        AGENT_LAST_SEEN,
        AGENT_OUTBOX_RECORDS,
        AGENT_OUTBOX_BYTES,
        AGENT_DISK_FREE,
        AGENT_ACKED_THROUGH,
        AGENT_DROPS,
        AGENT_CERTIFICATE_EXPIRY,
        AGENT_HUB_RECONNECTS,
        AGENT_HUB_PROTOCOL_ERRORS,
        AGENT_COMMANDS_REFUSED,
        AGENT_PRINTER_LINK_ERRORS,
        AGENT_PRINTER_BAD_PAYLOADS,
        AGENT_CAMERA_ERRORS,
        AGENT_CLOCK_OFFSET,
        ASSISTANT_CACHE_LOOKUPS,
        ASSISTANT_CACHE_INVALIDATIONS,
        MEMORY_POINTS,
    ];
}

/// Where refused input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A QUIC handshake (a certificate the hub does not trust, an unknown ALPN).
    Quic,
    /// An agent's sync stream (undecodable frames, protocol violations).
    Sync,
    /// An enrollment connection (bad tokens, bad CSRs, garbage).
    Enroll,
    /// A live-view frame stream.
    LiveFrame,
    /// A snapshot image that cannot be assembled.
    Snapshot,
    /// An HTTP request body or query.
    Http,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Quic => "quic",
            Source::Sync => "sync",
            Source::Enroll => "enroll",
            Source::LiveFrame => "live_frame",
            Source::Snapshot => "snapshot",
            Source::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    source: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentPrinterLabels {
    agent: String,
    printer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentDropLabels {
    agent: String,
    class: String,
    reason: String,
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The hub's metrics. Cheap to update from any task; rendered per scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    logins_refused: Family<ReasonLabels, Counter>,
    input_refused: Family<RefusedLabels, Counter>,
    ingest_batches: Counter,
    ingest_records: Counter,
    ingest_commit: Histogram,
    ingest_failures: Family<ReasonLabels, Counter>,
    panics: Family<TaskLabels, Counter>,
    live_latency: Histogram,
    ws_messages: Counter,
    ws_clients: Gauge,
    agents_connected: Gauge,
    uptime: Gauge,
    agent_online: Family<AgentLabels, Gauge>,
    agent_last_seen: Family<AgentLabels, Gauge>,
    agent_outbox_records: Family<AgentLabels, Gauge>,
    agent_outbox_bytes: Family<AgentLabels, Gauge>,
    agent_disk_free: Family<AgentLabels, Gauge>,
    agent_acked: Family<AgentLabels, Gauge>,
    agent_drops: Family<AgentDropLabels, Gauge>,
    agent_cert_expiry: Family<AgentLabels, Gauge>,
    agent_reconnects: Family<AgentLabels, Gauge>,
    agent_protocol_errors: Family<AgentLabels, Gauge>,
    agent_commands_refused: Family<AgentLabels, Gauge>,
    agent_link_errors: Family<AgentPrinterLabels, Gauge>,
    agent_bad_payloads: Family<AgentPrinterLabels, Gauge>,
    agent_camera_errors: Family<AgentPrinterLabels, Gauge>,
    agent_clock_offset: Family<AgentLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cache_lookups: Family<ResultLabels, Counter>,
    cache_invalidations: Counter,
    memory_points: Gauge,
    /// Refusals counted, for tests and the log's rate limit.
    refusals: AtomicU64,
    /// Serialises renders (each refreshes the per-agent families first).
    render: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        use names::*;
        let mut registry = Registry::default();
        let metrics = Metrics {
            registry: Registry::default(),
            started: Instant::now(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(seconds_histogram),
            logins_refused: Family::default(),
            input_refused: Family::default(),
            ingest_batches: Counter::default(),
            ingest_records: Counter::default(),
            ingest_commit: seconds_histogram(),
            ingest_failures: Family::default(),
            panics: Family::default(),
            live_latency: seconds_histogram(),
            ws_messages: Counter::default(),
            ws_clients: Gauge::default(),
            agents_connected: Gauge::default(),
            uptime: Gauge::default(),
            agent_online: Family::default(),
            agent_last_seen: Family::default(),
            agent_outbox_records: Family::default(),
            agent_outbox_bytes: Family::default(),
            agent_disk_free: Family::default(),
            agent_acked: Family::default(),
            agent_drops: Family::default(),
            agent_cert_expiry: Family::default(),
            agent_reconnects: Family::default(),
            agent_protocol_errors: Family::default(),
            agent_commands_refused: Family::default(),
            agent_link_errors: Family::default(),
            agent_bad_payloads: Family::default(),
            agent_camera_errors: Family::default(),
            agent_clock_offset: Family::default(),
            cache_lookups: Family::default(),
            cache_invalidations: Counter::default(),
            memory_points: Gauge::default(),
            refusals: AtomicU64::new(0),
            render: tokio::sync::Mutex::new(()),
        };
        let m = &metrics;
        registry.register(
            HTTP_REQUESTS,
            "HTTP requests by route template and status",
            m.http_requests.clone(),
        );
        registry.register(
            HTTP_REQUEST_DURATION,
            "HTTP request handling time",
            m.http_duration.clone(),
        );
        registry.register(
            LOGINS_REFUSED,
            "Refused dashboard logins by reason",
            m.logins_refused.clone(),
        );
        registry.register(
            INPUT_REFUSED,
            "Network or file input refused, by source and reason (each also logged)",
            m.input_refused.clone(),
        );
        registry.register(INGEST_BATCHES, "Record batches committed", m.ingest_batches.clone());
        registry.register(
            INGEST_RECORDS,
            "Records committed (duplicates excluded)",
            m.ingest_records.clone(),
        );
        registry.register(
            INGEST_COMMIT_DURATION,
            "Time to commit one ingest batch",
            m.ingest_commit.clone(),
        );
        registry.register(
            INGEST_FAILURES,
            "Ingest batches not committed, by reason",
            m.ingest_failures.clone(),
        );
        registry.register(
            PANICS,
            "Panics the hub caught, by task (each also an ERROR log line)",
            m.panics.clone(),
        );
        registry.register(
            LIVE_UPDATE_LATENCY,
            "From a batch's arrival at the hub to its live update written to a WebSocket",
            m.live_latency.clone(),
        );
        registry.register(WS_MESSAGES, "Live updates sent over WebSockets", m.ws_messages.clone());
        registry.register(
            WS_CLIENTS,
            "Live-update subscribers (WebSockets and waits)",
            m.ws_clients.clone(),
        );
        registry.register(
            AGENTS_CONNECTED,
            "Agents connected over QUIC",
            m.agents_connected.clone(),
        );
        registry.register(UPTIME, "Seconds since the hub started", m.uptime.clone());
        registry.register(AGENT_ONLINE, "1 while the agent is connected", m.agent_online.clone());
        registry.register(
            AGENT_LAST_SEEN,
            "When the agent was last connected",
            m.agent_last_seen.clone(),
        );
        registry.register(
            AGENT_OUTBOX_RECORDS,
            "Records waiting in the agent's outbox (its last health report)",
            m.agent_outbox_records.clone(),
        );
        registry.register(
            AGENT_OUTBOX_BYTES,
            "Bytes of the agent's outbox (its last health report)",
            m.agent_outbox_bytes.clone(),
        );
        registry.register(
            AGENT_DISK_FREE,
            "Free disk space under the agent's state directory",
            m.agent_disk_free.clone(),
        );
        registry.register(
            AGENT_ACKED_THROUGH,
            "The agent's highest record sequence stored by the hub",
            m.agent_acked.clone(),
        );
        registry.register(
            AGENT_DROPS,
            "Records the agent's outbox dropped for room, by record class",
            m.agent_drops.clone(),
        );
        registry.register(
            AGENT_CERTIFICATE_EXPIRY,
            "When the agent's certificate expires",
            m.agent_cert_expiry.clone(),
        );
        registry.register(
            AGENT_CLOCK_OFFSET,
            "The hub's clock minus the agent's, measured when its session began",
            m.agent_clock_offset.clone(),
        );
        let since = "since the agent started (resets when it restarts)";
        registry.register(
            AGENT_HUB_RECONNECTS,
            format!("Connections to the hub the agent lost and made again, {since}"),
            m.agent_reconnects.clone(),
        );
        registry.register(
            AGENT_HUB_PROTOCOL_ERRORS,
            format!("Undecodable or unexpected messages from the hub, {since}"),
            m.agent_protocol_errors.clone(),
        );
        registry.register(
            AGENT_COMMANDS_REFUSED,
            format!(
                "Commands the agent refused at once (a full queue, an unknown printer), {since}"
            ),
            m.agent_commands_refused.clone(),
        );
        registry.register(
            AGENT_PRINTER_LINK_ERRORS,
            format!("Printer connection failures, {since}"),
            m.agent_link_errors.clone(),
        );
        registry.register(
            AGENT_PRINTER_BAD_PAYLOADS,
            format!("Printer messages that were not valid reports, {since}"),
            m.agent_bad_payloads.clone(),
        );
        registry.register(
            AGENT_CAMERA_ERRORS,
            format!("Camera stream failures, {since}"),
            m.agent_camera_errors.clone(),
        );
        registry.register(
            ASSISTANT_CACHE_LOOKUPS,
            "The assistant's semantic cache asked, by result (hit or miss)",
            m.cache_lookups.clone(),
        );
        registry.register(
            ASSISTANT_CACHE_INVALIDATIONS,
            "Cached answers dropped because the facts or the memory they read changed",
            m.cache_invalidations.clone(),
        );
        registry.register(
            MEMORY_POINTS,
            "Pieces of text the assistant's memory holds (vectors in its store)",
            m.memory_points.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// A semantic cache lookup, hit or miss.
    pub fn cache_lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_lookups.get_or_create(&ResultLabels { result }).inc();
    }

    /// Cached answers dropped as stale.
    pub fn cache_invalidated(&self, entries: usize) {
        self.cache_invalidations.inc_by(entries as u64);
    }

    pub fn http_request(&self, method: &str, route: &str, status: StatusCode, elapsed: Duration) {
        let labels =
            HttpLabels { method: method.into(), route: route.into(), status: status.as_u16() };
        self.http_requests.get_or_create(&labels).inc();
        let labels = RouteLabels { method: method.into(), route: route.into() };
        self.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// A refused login, logged and counted.
    pub fn login_refused(&self, reason: &'static str, user: &str) {
        tracing::warn!(reason, user, "Refused a login.");
        self.login_refusal_counted(reason);
    }

    /// A refused login counted without a log line: refusals that a flood repeats (a key
    /// still blocked, the hash gate full), whose first instance was logged or whose cause
    /// is in the log already.
    pub fn login_refusal_counted(&self, reason: &'static str) {
        self.logins_refused.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// Logs refused input with its details and counts it by source and reason, in one call.
    /// `reason` is a short fixed word (it becomes a label); `detail` goes to the log only.
    pub fn refused(&self, source: Source, reason: &'static str, detail: &dyn std::fmt::Display) {
        tracing::warn!(source = source.as_str(), reason, %detail, "Refused input.");
        let labels = RefusedLabels { source: source.as_str().into(), reason: reason.into() };
        self.input_refused.get_or_create(&labels).inc();
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// How many inputs were refused so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    pub fn ingest_committed(&self, records: usize, commit: Duration) {
        self.ingest_batches.inc();
        self.ingest_records.inc_by(records as u64);
        self.ingest_commit.observe(commit.as_secs_f64());
    }

    pub fn ingest_failed(&self, reason: &str) {
        self.ingest_failures.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// A task panicked and the hub caught it (see [`crate::supervise`]): logged and counted
    /// in one call. `task` is a short fixed word (it becomes a label).
    pub fn panicked(&self, task: &'static str, what: &str) {
        tracing::error!(task, panic = what, "A task panicked; the hub caught it and goes on.");
        self.panics.get_or_create(&TaskLabels { task: task.into() }).inc();
    }

    /// Panics caught in `task` so far.
    pub fn panics(&self, task: &'static str) -> u64 {
        self.panics.get_or_create(&TaskLabels { task: task.into() }).get()
    }

    /// A live update reached a WebSocket; `received` is when its batch arrived at the hub.
    pub fn ws_message(&self, received: Instant) {
        self.ws_messages.inc();
        self.live_latency.observe(received.elapsed().as_secs_f64());
    }

    /// The whole registry as OpenMetrics text, after refreshing the gauges that are read
    /// rather than counted (presence, uptime, each agent's last health report).
    pub async fn render(&self, state: &crate::api::AppState) -> String {
        let _one_at_a_time = self.render.lock().await;
        self.uptime.set(self.started.elapsed().as_secs() as i64);
        self.ws_clients.set(state.sync.live().subscribers() as i64);
        self.agents_connected.set(state.sync.connected().len() as i64);
        match state.services.fleet.agents().await {
            Ok(agents) => self.set_agents(&agents),
            Err(error) => tracing::warn!(%error, "Cannot read agents for /metrics."),
        }
        if let Some(memory) = &state.memory {
            match memory.store().count().await {
                Ok(points) => {
                    self.memory_points.set(points as i64);
                }
                Err(error) => tracing::warn!(%error, "Cannot count the memory for /metrics."),
            }
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "Cannot encode the metrics.");
        }
        text
    }

    fn set_agents(&self, agents: &[crate::service::fleet::Agent]) {
        for family in [
            &self.agent_online,
            &self.agent_last_seen,
            &self.agent_outbox_records,
            &self.agent_outbox_bytes,
            &self.agent_disk_free,
            &self.agent_acked,
            &self.agent_cert_expiry,
            &self.agent_reconnects,
            &self.agent_protocol_errors,
            &self.agent_commands_refused,
        ] {
            family.clear();
        }
        for family in [&self.agent_link_errors, &self.agent_bad_payloads, &self.agent_camera_errors]
        {
            family.clear();
        }
        self.agent_drops.clear();
        self.agent_clock_offset.clear();
        for agent in agents {
            let detail = &agent.detail;
            let labels = AgentLabels { agent: detail.id.clone() };
            self.agent_online.get_or_create(&labels).set(i64::from(agent.online));
            if let Some(seen) = detail.last_seen_at {
                self.agent_last_seen.get_or_create(&labels).set(seen / 1000);
            }
            if let Some(records) = detail.outbox_records {
                self.agent_outbox_records.get_or_create(&labels).set(records);
            }
            if let Some(bytes) = detail.outbox_bytes {
                self.agent_outbox_bytes.get_or_create(&labels).set(bytes);
            }
            if let Some(free) = detail.disk_free_bytes {
                self.agent_disk_free.get_or_create(&labels).set(free);
            }
            self.agent_acked.get_or_create(&labels).set(detail.acked_through);
            self.agent_cert_expiry.get_or_create(&labels).set(detail.certificate_expires_at / 1000);
            if let Some(clock) = &detail.clock {
                self.agent_clock_offset.get_or_create(&labels).set(clock.offset_ms as f64 / 1000.0);
            }
            if let Some(counters) = &detail.counters {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                self.agent_reconnects.get_or_create(&labels).set(count(counters.hub_reconnects));
                self.agent_protocol_errors
                    .get_or_create(&labels)
                    .set(count(counters.hub_protocol_errors));
                self.agent_commands_refused
                    .get_or_create(&labels)
                    .set(count(counters.commands_refused));
                for printer in &counters.printers {
                    let labels = AgentPrinterLabels {
                        agent: detail.id.clone(),
                        printer: printer.printer.clone(),
                    };
                    self.agent_link_errors.get_or_create(&labels).set(count(printer.link_errors));
                    self.agent_bad_payloads.get_or_create(&labels).set(count(printer.bad_payloads));
                    self.agent_camera_errors
                        .get_or_create(&labels)
                        .set(count(printer.camera_errors));
                }
            }
            for drop in &detail.drops {
                let labels = AgentDropLabels {
                    agent: detail.id.clone(),
                    class: drop.class.clone(),
                    reason: drop.reason.clone(),
                };
                let count = i64::try_from(drop.count).unwrap_or(i64::MAX);
                self.agent_drops.get_or_create(&labels).set(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented_and_every_documented_one_exists() {
        let doc = include_str!("../../docs/specs/metrics.md");
        for name in names::ALL {
            assert!(doc.contains(&format!("`{name}")), "{name} is not in docs/specs/metrics.md");
        }
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `kitt_"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        for name in &documented {
            let full = format!("kitt_{name}");
            let base = full.trim_end_matches("_total");
            assert!(names::ALL.contains(&base), "{full} is documented but not defined");
        }
        assert!(documented.len() >= names::ALL.len());
    }

    #[test]
    fn refusals_are_counted_by_source_and_reason() {
        let metrics = Metrics::new();
        metrics.refused(Source::Sync, "decode", &"bad magic");
        metrics.refused(Source::Sync, "decode", &"bad magic");
        metrics.refused(Source::Quic, "certificate", &"unknown issuer");
        assert_eq!(metrics.refusals(), 3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains(r#"kitt_input_refused_total{source="sync",reason="decode"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"kitt_input_refused_total{source="quic",reason="certificate"} 1"#));
    }
}
