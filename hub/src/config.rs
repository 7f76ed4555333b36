//! The hub's configuration: a TOML file (optional) with `KITT_*` environment variables over
//! it and command-line flags over both, validated up front with every problem reported at
//! once, each naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiSettings;
use crate::api::proxies::TrustedProxies;

pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_SYNC_LISTEN: &str = "0.0.0.0:7070";
const DEFAULT_RAW_TELEMETRY_HOURS: u64 = 48;
const DEFAULT_MINUTE_TELEMETRY_DAYS: u64 = 90;
const DEFAULT_QUARTER_HOUR_TELEMETRY_DAYS: u64 = 730;
const DEFAULT_SNAPSHOT_DAYS: u64 = 14;
const DEFAULT_MILESTONE_SNAPSHOT_DAYS: u64 = 365;

/// Environment variables the hub reads; any other `KITT_*` is reported as unknown.
const ENV_KEYS: &[&str] = &[
    "KITT_DATA_DIR",
    "KITT_DATABASE_URL",
    "KITT_HTTP_LISTEN",
    "KITT_SYNC_LISTEN",
    "KITT_SECURE_COOKIES",
    "KITT_CHAT_MODEL",
    "KITT_EMBED_MODEL",
    "KITT_QDRANT_URL",
];
/// `KITT_*` variables that belong to other tools (logging, tests, benchmarks).
const ENV_IGNORED_PREFIXES: &[&str] = &["KITT_LOG", "KITT_TEST_", "KITT_BENCH_", "KITT_BLESS_"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the database (SQLite), the CA and files live.
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:password@host/db`; SQLite in the data directory when absent.
    pub database_url: Option<String>,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub retention: RawRetention,
    #[serde(default)]
    pub files: RawFiles,
    #[serde(default)]
    pub costs: RawCosts,
    #[serde(default)]
    pub inventory: RawInventory,
    #[serde(default)]
    pub assistant: RawAssistant,
    /// This hub process's name among replicas (the scheduler's history says who ran what);
    /// the host's name by default.
    pub replica_name: Option<String>,
    /// Where print files and snapshots live: a directory every replica mounts; the data
    /// directory by default.
    pub shared_dir: Option<PathBuf>,
    #[serde(default)]
    pub scheduler: RawScheduler,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    /// Run scheduled jobs in this process (default true).
    pub enabled: Option<bool>,
    /// How often the scheduler looks for due jobs and lapsed runs, milliseconds.
    pub tick_ms: Option<u64>,
    /// The IANA time zone the built-in jobs' cron times are read in (default UTC).
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssistant {
    /// The in-process model: a GGUF file (`KITT_CHAT_MODEL`); none: no local tier.
    pub model: Option<PathBuf>,
    /// The local tier's name (default `local`).
    pub model_name: Option<String>,
    /// The sentence-embedding model, a BERT GGUF (`KITT_EMBED_MODEL`), for the semantic cache
    /// and the memory (issue 20): without one, neither runs.
    pub embed_model: Option<PathBuf>,
    /// The memory in a Qdrant server (its gRPC URL, `KITT_QDRANT_URL`) rather than in the hub.
    pub qdrant_url: Option<String>,
    /// The environment variable holding the server's API key.
    pub qdrant_api_key_env: Option<String>,
    /// The server's collection (default `kitt_memory`).
    pub qdrant_collection: Option<String>,
    /// Paid tiers may be used at all (default false).
    pub paid_enabled: Option<bool>,
    /// What paid tiers may cost in a calendar month (UTC), in their prices' currency.
    pub monthly_budget: Option<f64>,
    /// How long a proposed action waits for a person's decision, minutes (default 10).
    pub pending_minutes: Option<u64>,
    /// Tiers over HTTP, tried in the router's order.
    #[serde(default)]
    pub tiers: Vec<RawTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub name: String,
    /// `openai` (OpenAI and the servers that copy its API: llama.cpp's server, Ollama,
    /// vLLM) or `anthropic`.
    pub api: String,
    /// The API's base URL, e.g. `http://gpu-box:11434/v1` or `https://api.openai.com/v1`.
    pub url: String,
    pub model: String,
    /// The environment variable that holds its API key, if it needs one.
    pub api_key_env: Option<String>,
    /// A frontier API that costs money (default false): off unless `paid_enabled`, and
    /// within `monthly_budget`.
    pub paid: Option<bool>,
    /// Price per million tokens in and out.
    pub price_in: Option<f64>,
    pub price_out: Option<f64>,
    pub context_tokens: Option<u32>,
    /// It makes tool calls (default true).
    pub tools: Option<bool>,
    /// It reads images (default false).
    pub images: Option<bool>,
    /// Seconds to wait for its first byte and between pieces (default 30).
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// A filament is low when its spools hold less than this many grams.
    pub low_stock_g: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCosts {
    /// Price of a kWh, in the inventory's currency (Spoolman's `currency` setting).
    pub electricity_per_kwh: Option<f64>,
    /// A printer's average draw while printing, watts, unless named below.
    pub default_watts: Option<f64>,
    /// Watts by printer id (its serial).
    pub printer_watts: Option<std::collections::HashMap<String, f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    /// Largest print file accepted, MiB.
    pub max_upload_mb: Option<u64>,
    /// Free space kept on the data directory's disk, MiB: an upload that would eat into it
    /// is refused.
    pub reserve_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address of the dashboard and API.
    pub listen: Option<String>,
    /// Mark session cookies `Secure`: true, false, or unset for automatic (when a TLS
    /// reverse proxy says `X-Forwarded-Proto: https`).
    pub secure_cookies: Option<bool>,
    /// Largest accepted request body, KiB.
    pub max_body_kb: Option<usize>,
    /// How long a dashboard login lasts, hours.
    pub session_hours: Option<u64>,
    /// Reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the
    /// client; without any, the header is ignored and the TCP peer is the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Seconds `/readyz` answers 404 ("draining") after SIGTERM before the hub stops: a load
    /// balancer sends new requests elsewhere meanwhile and lets those under way finish.
    pub drain_s: Option<u64>,
    /// Where other replicas reach this one's HTTP (`host:port`), to relay a camera's live
    /// view; the listen address, or the host's name with its port when it listens on all.
    pub advertise: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// UDP address agents sync to.
    pub listen: Option<String>,
    pub keep_alive_s: Option<u64>,
    pub idle_timeout_s: Option<u64>,
    /// Lifetime of agent certificates, days (renewed at two thirds).
    pub certificate_days: Option<u64>,
    /// The sync addresses (`host:port`) enrollment tokens name: every replica's.
    pub advertise: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Raw telemetry samples (about 1 Hz per printer), hours.
    pub raw_telemetry_hours: Option<u64>,
    /// One-minute telemetry averages, days.
    pub minute_telemetry_days: Option<u64>,
    /// Fifteen-minute telemetry averages, days.
    pub quarter_hour_telemetry_days: Option<u64>,
    /// Interval, layer and requested snapshots, days.
    pub snapshot_days: Option<u64>,
    /// Snapshots of a job's milestones (start, first layer, pause, failure, finish), days.
    pub milestone_snapshot_days: Option<u64>,
}

/// How long telemetry is kept at each resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub minute: Duration,
    pub quarter_hour: Duration,
    pub snapshots: Duration,
    pub milestone_snapshots: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub http_listen: SocketAddr,
    pub sync_listen: SocketAddr,
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
    pub certificate_lifetime: Duration,
    pub api: ApiSettings,
    pub retention: Retention,
    pub files: crate::files::FileSettings,
    /// What a print's hours cost.
    pub costs: crate::db::outcomes::Costs,
    /// A filament is low below this many grams.
    pub low_stock_g: f64,
    pub assistant: AssistantConfig,
    pub replica_name: String,
    pub scheduler: SchedulerConfig,
    /// Where print files and snapshots live (the data directory unless set).
    pub shared_dir: PathBuf,
    /// How long `/readyz` answers 404 (draining) after SIGTERM before the hub stops.
    pub drain: Duration,
    /// Where other replicas reach this one's HTTP (`[http] advertise`), if set.
    pub http_advertise: Option<String>,
}

/// The scheduler's validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub enabled: bool,
    pub tick: Duration,
    pub time_zone: String,
}

/// The assistant's validated configuration.
#[derive(Debug, Clone, Default)]
pub struct AssistantConfig {
    pub model: Option<PathBuf>,
    pub embed_model: Option<PathBuf>,
    /// The memory's Qdrant server; `None`: the engine embedded in the hub.
    pub qdrant: Option<QdrantConfig>,
    pub model_name: String,
    pub paid_enabled: bool,
    pub monthly_budget: f64,
    pub pending_ttl: Duration,
    pub tiers: Vec<TierConfig>,
}

/// A Qdrant server for the memory.
#[derive(Debug, Clone, PartialEq)]
pub struct QdrantConfig {
    /// gRPC, e.g. `http://qdrant:6334`.
    pub url: String,
    pub api_key_env: Option<String>,
    pub collection: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    pub name: String,
    pub api: crate::assistant::upstream::Api,
    pub url: String,
    pub model: String,
    pub api_key_env: Option<String>,
    pub paid: bool,
    pub price_in: f64,
    pub price_out: f64,
    pub context_tokens: u32,
    pub tools: bool,
    pub images: bool,
    pub timeout: Duration,
}

/// Every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub http_listen: Option<String>,
    pub sync_listen: Option<String>,
}

impl HubConfig {
    /// File (if any), then the environment, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<HubConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut raw = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => toml::from_str::<RawConfig>(&text).unwrap_or_else(|e| {
                    problems.push(format!("{}: {}", path.display(), e.to_string().trim()));
                    RawConfig::default()
                }),
                Err(e) => {
                    problems.push(format!("cannot read {}: {e}", path.display()));
                    RawConfig::default()
                }
            },
            None => RawConfig::default(),
        };
        for (key, value) in env {
            if !key.starts_with("KITT_") || ENV_IGNORED_PREFIXES.iter().any(|p| key.starts_with(p))
            {
                continue;
            }
            match key.as_str() {
                "KITT_DATA_DIR" => raw.data_dir = Some(value.into()),
                "KITT_DATABASE_URL" => raw.database_url = Some(value),
                "KITT_HTTP_LISTEN" => raw.http.listen = Some(value),
                "KITT_SYNC_LISTEN" => raw.sync.listen = Some(value),
                "KITT_CHAT_MODEL" => raw.assistant.model = Some(value.into()),
                "KITT_EMBED_MODEL" => raw.assistant.embed_model = Some(value.into()),
                "KITT_QDRANT_URL" => raw.assistant.qdrant_url = Some(value),
                "KITT_SECURE_COOKIES" => match value.as_str() {
                    "true" | "1" => raw.http.secure_cookies = Some(true),
                    "false" | "0" => raw.http.secure_cookies = Some(false),
                    _ => problems.push(format!("{key}={value:?}: use true or false")),
                },
                _ => problems.push(format!(
                    "unknown environment variable {key} (known: {})",
                    ENV_KEYS.join(", ")
                )),
            }
        }
        if let Some(dir) = &overrides.data_dir {
            raw.data_dir = Some(dir.clone());
        }
        if let Some(url) = &overrides.database_url {
            raw.database_url = Some(url.clone());
        }
        if let Some(listen) = &overrides.http_listen {
            raw.http.listen = Some(listen.clone());
        }
        if let Some(listen) = &overrides.sync_listen {
            raw.sync.listen = Some(listen.clone());
        }
        raw.validate(problems)
    }
}

fn address(
    key: &str,
    value: Option<&str>,
    default: &str,
    problems: &mut Vec<String>,
) -> SocketAddr {
    let text = value.unwrap_or(default);
    text.parse().unwrap_or_else(|_| {
        problems.push(format!("{key} = {text:?}: not an address like {default}"));
        default.parse().expect("the default parses")
    })
}

fn positive(key: &str, value: Option<u64>, default: u64, problems: &mut Vec<String>) -> u64 {
    match value {
        Some(0) => {
            problems.push(format!("{key} = 0: must be above 0"));
            default
        }
        Some(v) => v,
        None => default,
    }
}

impl RawConfig {
    fn validate(self, mut problems: Vec<String>) -> Result<HubConfig, ConfigError> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            problems.push("database_url: use postgres://… or sqlite:…".to_owned());
        }
        let http_listen =
            address("http.listen", self.http.listen.as_deref(), DEFAULT_HTTP_LISTEN, &mut problems);
        let sync_listen =
            address("sync.listen", self.sync.listen.as_deref(), DEFAULT_SYNC_LISTEN, &mut problems);
        let keep_alive = positive("sync.keep_alive_s", self.sync.keep_alive_s, 15, &mut problems);
        let idle = positive("sync.idle_timeout_s", self.sync.idle_timeout_s, 60, &mut problems);
        if keep_alive >= idle {
            problems.push(format!(
                "sync.keep_alive_s = {keep_alive} must be below sync.idle_timeout_s = {idle}"
            ));
        }
        let certificate_days =
            positive("sync.certificate_days", self.sync.certificate_days, 7, &mut problems);
        let max_body_kb = self.http.max_body_kb.unwrap_or(64);
        if !(1..=10_240).contains(&max_body_kb) {
            problems.push(format!("http.max_body_kb = {max_body_kb}: between 1 and 10240"));
        }
        let session_hours =
            positive("http.session_hours", self.http.session_hours, 12, &mut problems);
        let trusted_proxies = TrustedProxies(
            self.http
                .trusted_proxies
                .unwrap_or_default()
                .iter()
                .filter_map(|text| {
                    text.parse()
                        .map_err(|e| problems.push(format!("http.trusted_proxies: {e}")))
                        .ok()
                })
                .collect(),
        );
        let raw_hours = positive(
            "retention.raw_telemetry_hours",
            self.retention.raw_telemetry_hours,
            DEFAULT_RAW_TELEMETRY_HOURS,
            &mut problems,
        );
        let minute_days = positive(
            "retention.minute_telemetry_days",
            self.retention.minute_telemetry_days,
            DEFAULT_MINUTE_TELEMETRY_DAYS,
            &mut problems,
        );
        let quarter_days = positive(
            "retention.quarter_hour_telemetry_days",
            self.retention.quarter_hour_telemetry_days,
            DEFAULT_QUARTER_HOUR_TELEMETRY_DAYS,
            &mut problems,
        );
        let snapshot_days = positive(
            "retention.snapshot_days",
            self.retention.snapshot_days,
            DEFAULT_SNAPSHOT_DAYS,
            &mut problems,
        );
        let milestone_days = positive(
            "retention.milestone_snapshot_days",
            self.retention.milestone_snapshot_days,
            DEFAULT_MILESTONE_SNAPSHOT_DAYS,
            &mut problems,
        );
        let max_upload_mb = self.files.max_upload_mb.unwrap_or(2048);
        if !(1..=65_536).contains(&max_upload_mb) {
            problems.push(format!("files.max_upload_mb = {max_upload_mb}: between 1 and 65536"));
        }
        let reserve_mb = self.files.reserve_mb.unwrap_or(512);
        let mut costs = crate::db::outcomes::Costs::default();
        let mut amount = |key: &str, value: Option<f64>, into: &mut f64| match value {
            Some(v) if v.is_finite() && v >= 0.0 => *into = v,
            Some(v) => problems.push(format!("{key} = {v}: a number of 0 or more")),
            None => {}
        };
        amount(
            "costs.electricity_per_kwh",
            self.costs.electricity_per_kwh,
            &mut costs.electricity_per_kwh,
        );
        amount("costs.default_watts", self.costs.default_watts, &mut costs.default_watts);
        let mut low_stock_g = crate::service::inventory::DEFAULT_LOW_STOCK_G;
        amount("inventory.low_stock_g", self.inventory.low_stock_g, &mut low_stock_g);
        for (printer, watts) in self.costs.printer_watts.unwrap_or_default() {
            let mut value = 0.0;
            amount(&format!("costs.printer_watts.{printer}"), Some(watts), &mut value);
            costs.printer_watts.insert(printer, value);
        }
        let assistant = self.assistant.validate(&mut problems);
        let tick_ms = self.scheduler.tick_ms.unwrap_or(1000);
        if !(50..=60_000).contains(&tick_ms) {
            problems.push(format!("scheduler.tick_ms = {tick_ms}: between 50 and 60000"));
        }
        let time_zone = self.scheduler.time_zone.unwrap_or_else(|| "UTC".to_owned());
        if let Err(error) = crate::scheduler::cron::time_zone(&time_zone) {
            problems.push(format!("scheduler.time_zone: {error}"));
        }
        let drain_s = self.http.drain_s.unwrap_or(5);
        if drain_s > 300 {
            problems.push(format!("http.drain_s = {drain_s}: at most 300"));
        }
        if let Some(address) = &self.http.advertise
            && !crate::sync::token::valid_hub_address(address)
        {
            problems.push(format!("http.advertise = {address:?}: not host:port"));
        }
        let advertise = self.sync.advertise.unwrap_or_default();
        for address in &advertise {
            if !crate::sync::token::valid_hub_address(address) {
                problems.push(format!("sync.advertise: {address:?} is not host:port"));
            }
        }
        if advertise.len() > crate::sync::token::MAX_HUBS {
            problems.push(format!(
                "sync.advertise: at most {} addresses",
                crate::sync::token::MAX_HUBS
            ));
        }
        let replica_name = match self.replica_name {
            Some(name) if crate::scheduler::jobs::valid_name(&name) => name,
            Some(name) => {
                problems.push(format!(
                    "replica_name = {name:?}: 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
                ));
                name
            }
            None => default_replica_name(),
        };
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("kitt-data"));
        Ok(HubConfig {
            shared_dir: self.shared_dir.unwrap_or_else(|| data_dir.clone()),
            drain: Duration::from_secs(drain_s),
            http_advertise: self.http.advertise,
            data_dir,
            database_url: self.database_url,
            http_listen,
            sync_listen,
            keep_alive: Duration::from_secs(keep_alive),
            idle_timeout: Duration::from_secs(idle),
            certificate_lifetime: Duration::from_secs(certificate_days * 86_400),
            api: ApiSettings {
                secure_cookies: self.http.secure_cookies,
                session_lifetime: Duration::from_secs(session_hours * 3600),
                max_body_bytes: max_body_kb * 1024,
                trusted_proxies,
                advertise,
                // Named after `replica_name` by `app::start`: one source for the name.
                replica: String::new(),
            },
            retention: Retention {
                raw: Duration::from_secs(raw_hours * 3600),
                minute: Duration::from_secs(minute_days * 86_400),
                quarter_hour: Duration::from_secs(quarter_days * 86_400),
                snapshots: Duration::from_secs(snapshot_days * 86_400),
                milestone_snapshots: Duration::from_secs(milestone_days * 86_400),
            },
            files: crate::files::FileSettings {
                max_bytes: max_upload_mb << 20,
                reserve_bytes: reserve_mb.saturating_mul(1 << 20),
            },
            costs,
            low_stock_g,
            assistant,
            replica_name,
            scheduler: SchedulerConfig {
                enabled: self.scheduler.enabled.unwrap_or(true),
                tick: Duration::from_millis(tick_ms),
                time_zone,
            },
        })
    }
}

/// The host's name, made fit for a replica's name; `hub` when there is none.
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if crate::scheduler::jobs::valid_name(&name) { name } else { "hub".to_owned() }
}

impl RawAssistant {
    fn validate(self, problems: &mut Vec<String>) -> AssistantConfig {
        let model_name = self.model_name.unwrap_or_else(|| "local".to_owned());
        let monthly_budget = match self.monthly_budget {
            Some(v) if v.is_finite() && v >= 0.0 => v,
            Some(v) => {
                problems.push(format!("assistant.monthly_budget = {v}: a number of 0 or more"));
                0.0
            }
            None => 0.0,
        };
        let pending = positive("assistant.pending_minutes", self.pending_minutes, 10, problems);
        let mut names = vec![model_name.clone()];
        let mut tiers = Vec::new();
        for (n, tier) in self.tiers.into_iter().enumerate() {
            let key = format!("assistant.tiers[{n}]");
            if tier.name.trim().is_empty() || names.contains(&tier.name) {
                problems.push(format!(
                    "{key}.name = {:?}: names must be unique and not empty",
                    tier.name
                ));
            }
            names.push(tier.name.clone());
            let api = match tier.api.as_str() {
                "openai" => crate::assistant::upstream::Api::OpenAi,
                "anthropic" => crate::assistant::upstream::Api::Anthropic,
                other => {
                    problems.push(format!("{key}.api = {other:?}: use openai or anthropic"));
                    crate::assistant::upstream::Api::OpenAi
                }
            };
            if !(tier.url.starts_with("http://") || tier.url.starts_with("https://")) {
                problems.push(format!("{key}.url = {:?}: an http:// or https:// URL", tier.url));
            }
            let mut price = |field: &str, value: Option<f64>| match value {
                Some(v) if v.is_finite() && v >= 0.0 => v,
                Some(v) => {
                    problems.push(format!("{key}.{field} = {v}: a number of 0 or more"));
                    0.0
                }
                None => 0.0,
            };
            let price_in = price("price_in", tier.price_in);
            let price_out = price("price_out", tier.price_out);
            let timeout = positive(&format!("{key}.timeout_s"), tier.timeout_s, 30, problems);
            tiers.push(TierConfig {
                name: tier.name,
                api,
                url: tier.url,
                model: tier.model,
                api_key_env: tier.api_key_env,
                paid: tier.paid.unwrap_or(false),
                price_in,
                price_out,
                context_tokens: tier.context_tokens.unwrap_or(8192),
                tools: tier.tools.unwrap_or(true),
                images: tier.images.unwrap_or(false),
                timeout: Duration::from_secs(timeout),
            });
        }
        if self.qdrant_url.is_none()
            && (self.qdrant_api_key_env.is_some() || self.qdrant_collection.is_some())
        {
            problems.push(
                "assistant.qdrant_api_key_env and qdrant_collection need assistant.qdrant_url"
                    .to_owned(),
            );
        }
        let qdrant = self.qdrant_url.map(|url| {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "assistant.qdrant_url = {url:?}: an http:// or https:// URL (gRPC, port 6334)"
                ));
            }
            let collection = self.qdrant_collection.unwrap_or_else(|| "kitt_memory".to_owned());
            let valid = !collection.is_empty()
                && collection.len() <= 255
                && collection.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                problems.push(format!(
                    "assistant.qdrant_collection = {collection:?}: letters, digits, _ and -"
                ));
            }
            QdrantConfig { url, api_key_env: self.qdrant_api_key_env, collection }
        });
        AssistantConfig {
            model: self.model,
            embed_model: self.embed_model,
            qdrant,
            model_name,
            paid_enabled: self.paid_enabled.unwrap_or(false),
            monthly_budget,
            pending_ttl: Duration::from_secs(pending * 60),
            tiers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<HubConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        HubConfig::load(Some(&path), env, &Overrides::default())
    }

    #[test]
    fn the_reference_configuration_parses_and_matches_the_defaults() {
        let text = include_str!("../../deploy/hub/hub.toml");
        let config = load(text, &[]).unwrap();
        let defaults = HubConfig::load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/kitt-hub"));
        assert_eq!(config.http_listen, defaults.http_listen);
        assert_eq!(config.sync_listen, defaults.sync_listen);
        assert_eq!(config.retention, defaults.retention);
        assert_eq!(config.certificate_lifetime, defaults.certificate_lifetime);
        assert_eq!(config.api.max_body_bytes, defaults.api.max_body_bytes);
        assert_eq!(config.api.trusted_proxies, defaults.api.trusted_proxies);
    }

    #[test]
    fn assistant_tiers_are_checked_and_paid_ones_stay_off_by_default() {
        let config = load(
            "[[assistant.tiers]]\nname = \"gpu\"\napi = \"openai\"\nurl = \"http://gpu:11434/v1\"\nmodel = \"m\"\npaid = true\n",
            &[("KITT_CHAT_MODEL", "/models/small.gguf"), ("KITT_EMBED_MODEL", "/models/bert.gguf")],
        )
        .unwrap();
        assert!(!config.assistant.paid_enabled);
        assert_eq!(config.assistant.model.as_deref(), Some(Path::new("/models/small.gguf")));
        assert_eq!(config.assistant.embed_model.as_deref(), Some(Path::new("/models/bert.gguf")));
        assert_eq!(config.assistant.tiers[0].timeout, Duration::from_secs(30));
        assert_eq!(config.assistant.pending_ttl, Duration::from_secs(600));
        let error = load(
            "[assistant]\nmonthly_budget = -1\n[[assistant.tiers]]\nname = \"x\"\napi = \"gemini\"\nurl = \"ftp://x\"\nmodel = \"m\"\ncolour = 1\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `colour`"), "{error}");
        let error = load(
            "[assistant]\nmonthly_budget = -1\n[[assistant.tiers]]\nname = \"x\"\napi = \"gemini\"\nurl = \"ftp://x\"\nmodel = \"m\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for needle in
            ["monthly_budget = -1", "use openai or anthropic", "an http:// or https:// URL"]
        {
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }

    #[test]
    fn the_memory_is_embedded_unless_a_qdrant_server_is_named() {
        assert_eq!(load("", &[]).unwrap().assistant.qdrant, None);
        let config = load("", &[("KITT_QDRANT_URL", "http://qdrant:6334")]).unwrap();
        let server = config.assistant.qdrant.unwrap();
        assert_eq!(
            (server.url.as_str(), server.collection.as_str()),
            ("http://qdrant:6334", "kitt_memory")
        );
        let config = load(
            "[assistant]\nqdrant_url = \"https://q:6334\"\nqdrant_api_key_env = \"QDRANT_API_KEY\"\nqdrant_collection = \"farm_2\"\n",
            &[],
        )
        .unwrap();
        let server = config.assistant.qdrant.unwrap();
        assert_eq!(server.api_key_env.as_deref(), Some("QDRANT_API_KEY"));
        assert_eq!(server.collection, "farm_2");
        let error =
            load("[assistant]\nqdrant_url = \"qdrant:6334\"\nqdrant_collection = \"a b\"\n", &[])
                .unwrap_err()
                .to_string();
        assert!(error.contains("assistant.qdrant_url"), "{error}");
        assert!(error.contains("assistant.qdrant_collection"), "{error}");
        let error = load("[assistant]\nqdrant_collection = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(error.contains("need assistant.qdrant_url"), "{error}");
    }

    #[test]
    fn defaults_need_no_file() {
        let config = HubConfig::load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(config.sync_listen.port(), 7070);
        assert_eq!(config.retention.raw, Duration::from_secs(48 * 3600));
        assert!(config.database_url.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let error = load(
            "[http]\nlisten = \"nowhere\"\n[sync]\nkeep_alive_s = 90\n[retention]\nraw_telemetry_hours = 0\n",
            &[("KITT_DATABSE_URL", "x")],
        )
        .unwrap_err();
        let text = error.to_string();
        assert_eq!(error.0.len(), 4, "{text}");
        assert!(text.contains("unknown environment variable KITT_DATABSE_URL"), "{text}");
        assert!(text.contains("http.listen"), "{text}");
        assert!(text.contains("sync.keep_alive_s"), "{text}");
        assert!(text.contains("retention.raw_telemetry_hours"), "{text}");
    }

    #[test]
    fn trusted_proxies_are_networks_and_a_bad_one_is_named() {
        let config =
            load("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"fd00::/8\"]\n", &[])
                .unwrap();
        let trusted = &config.api.trusted_proxies;
        assert_eq!(trusted.0.len(), 3);
        assert!(trusted.trusts("10.20.30.40".parse().unwrap()));
        assert!(trusted.trusts("127.0.0.1".parse().unwrap()));
        assert!(!trusted.trusts("127.0.0.2".parse().unwrap()));
        let defaults = HubConfig::load(None, Vec::new(), &Overrides::default()).unwrap();
        assert!(defaults.api.trusted_proxies.0.is_empty(), "none trusted by default");
        let error =
            load("[http]\ntrusted_proxies = [\"10.0.0.0/40\", \"proxy.lan\"]\n", &[]).unwrap_err();
        assert_eq!(error.0.len(), 2, "{error}");
        assert!(error.0.iter().all(|p| p.starts_with("http.trusted_proxies")), "{error}");
    }

    #[test]
    fn an_unknown_key_is_named_and_the_environment_wins_over_the_file() {
        let error = load("[http]\nport = 80\n", &[]).unwrap_err();
        assert!(error.to_string().contains("unknown field `port`"), "{error}");
        let config = load(
            "[http]\nlisten = \"127.0.0.1:1\"\n",
            &[("KITT_HTTP_LISTEN", "127.0.0.1:2"), ("KITT_LOG", "x")],
        )
        .unwrap();
        assert_eq!(config.http_listen.port(), 2);
    }
}
