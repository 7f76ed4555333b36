//! `cargo xtask bench`: runs every benchmark in release builds, collects the figures they
//! print as `kitt-metric <key> <value>` lines, and prints one table with each figure beside
//! its target from MISSION.md; the same table goes to `docs/benchmarks.md` with the date and
//! the machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The benchmarks, in the order they run: (package, bench target).
const BENCHES: &[(&str, &str)] = &[
    ("edge-agent", "outbox"),
    ("tests", "sync"),
    ("tests", "hub"),
    ("tests", "camera"),
    ("tests", "fleet"),
    ("tests", "queue"),
    ("tests", "delivery"),
    ("tests", "assistant"),
    ("tests", "replicas"),
];

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    /// No number in MISSION.md: reported for the record.
    None,
}

/// One row: the metric key, what it is, how it is shown, the target as written, the goal.
struct Row {
    key: &'static str,
    what: &'static str,
    show: fn(f64) -> String,
    target: &'static str,
    goal: Goal,
}

fn mb(kb: f64) -> String {
    format!("{:.1} MB", kb / 1024.0)
}

fn per_s(n: f64) -> String {
    format!("{:.0} k/s", n / 1000.0)
}

fn ms(n: f64) -> String {
    format!("{n:.1} ms")
}

fn seconds(n: f64) -> String {
    format!("{n:.2} s")
}

fn percent(n: f64) -> String {
    format!("{n:.1} % of a core")
}

fn bytes(n: f64) -> String {
    format!("{:.1} MB", n / (1024.0 * 1024.0))
}

fn times(n: f64) -> String {
    format!("{n:.1}×")
}

fn plain_mb_s(n: f64) -> String {
    format!("{n:.0} MB/s")
}

fn plain(n: f64) -> String {
    format!("{n:.1}")
}

const ROWS: &[Row] = &[
    Row {
        key: "assistant_overhead_p99_ms",
        what: "assistant's own overhead per turn (routing, a tool call, storing, streaming), p99",
        show: ms,
        target: "≤ 3 ms",
        goal: Goal::AtMost(3.0),
    },
    Row {
        key: "assistant_local_ttft_ms",
        what: "SmolLM2-135M on this CPU: time to first token (p50)",
        show: ms,
        target: "reported",
        goal: Goal::None,
    },
    Row {
        key: "cache_lookup_p99_ms",
        what: "semantic cache lookup among 100,000 entries (facets included), p99",
        show: |n| format!("{n:.3} ms"),
        target: "≤ 1 ms",
        goal: Goal::AtMost(1.0),
    },
    Row {
        key: "cache_paraphrase_hit_rate_percent",
        what: "semantic cache: paraphrases of eval/cache-adversarial.json answered from the cache",
        show: |n| format!("{n:.0} %"),
        target: "reported",
        goal: Goal::None,
    },
    Row {
        key: "cache_near_miss_hits",
        what: "semantic cache: near-misses of eval/cache-adversarial.json served another's answer",
        show: |n| format!("{n:.0}"),
        target: "0",
        goal: Goal::AtMost(0.0),
    },
    Row {
        key: "memory_search_p99_ms",
        what: "memory search among 100,000 pieces (embedded Qdrant engine, filters, query embedding excluded), p99",
        show: |n| format!("{n:.2} ms"),
        target: "≤ 5 ms",
        goal: Goal::AtMost(5.0),
    },
    Row {
        key: "memory_query_embed_p50_ms",
        what: "memory search: embedding the question (all-MiniLM-L6-v2), p50",
        show: ms,
        target: "reported",
        goal: Goal::None,
    },
    Row {
        key: "embed_sentences_per_s",
        what: "all-MiniLM-L6-v2 on this CPU: sentences per second, batched",
        show: |n| format!("{n:.0} /s"),
        target: "reported",
        goal: Goal::None,
    },
    Row {
        key: "assistant_local_tokens_per_s",
        what: "SmolLM2-135M on this CPU: tokens per second (p50)",
        show: |n| format!("{n:.0} tok/s"),
        target: "reported",
        goal: Goal::None,
    },
    Row {
        key: "agent_rss_steady_kb",
        what: "agent resident memory, steady (one printer printing, synced)",
        show: mb,
        target: "≤ 16 MB",
        goal: Goal::AtMost(16.0 * 1024.0),
    },
    Row {
        key: "agent_rss_draining_kb_200k",
        what: "agent resident memory, draining a 200 k backlog",
        show: mb,
        target: "≤ 32 MB",
        goal: Goal::AtMost(32.0 * 1024.0),
    },
    Row {
        key: "agent_rss_draining_kb_2m",
        what: "agent resident memory, draining a 2 M backlog",
        show: mb,
        target: "≤ 32 MB",
        goal: Goal::AtMost(32.0 * 1024.0),
    },
    Row {
        key: "agent_binary_aarch64_bytes",
        what: "agent binary, aarch64, agent profile (release, panic = abort), stripped",
        show: bytes,
        target: "— (none set)",
        goal: Goal::None,
    },
    Row {
        key: "catchup_events_per_s_200k",
        what: "catch-up, one agent, real binary, 200 k backlog (median of 3 runs)",
        show: per_s,
        target: "≥ 200 k/s here (≥ 20 k/s on a Pi)",
        goal: Goal::AtLeast(200_000.0),
    },
    Row {
        key: "bridge_msgs_per_s_200k",
        what: "mosquitto bridge (QoS 1, persistent), same 200 k backlog, median of 3 runs taken in turn with kitt's",
        show: per_s,
        target: "— (the baseline)",
        goal: Goal::None,
    },
    Row {
        key: "catchup_vs_bridge_200k",
        what: "catch-up ÷ mosquitto bridge, 200 k (medians)",
        show: times,
        target: "≥ 4×",
        goal: Goal::AtLeast(4.0),
    },
    Row {
        key: "catchup_events_per_s_2m",
        what: "catch-up, one agent, real binary, 2 M backlog (median of 3 runs)",
        show: per_s,
        target: "≥ 200 k/s here (≥ 20 k/s on a Pi)",
        goal: Goal::AtLeast(200_000.0),
    },
    Row {
        key: "bridge_msgs_per_s_2m",
        what: "mosquitto bridge (QoS 1, persistent), same 2 M backlog, median of 3 runs taken in turn with kitt's",
        show: per_s,
        target: "— (the baseline)",
        goal: Goal::None,
    },
    Row {
        key: "catchup_vs_bridge_2m",
        what: "catch-up ÷ mosquitto bridge, 2 M (medians)",
        show: times,
        target: "≥ 4×",
        goal: Goal::AtLeast(4.0),
    },
    Row {
        key: "catchup_total_s_2m",
        what: "2 M backlog drained by one agent, from its start to the hub's last commit",
        show: seconds,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "hub_ingest_sqlite",
        what: "hub ingest, 100 agents, SQLite",
        show: per_s,
        target: "≥ 50 k/s",
        goal: Goal::AtLeast(50_000.0),
    },
    Row {
        key: "hub_ingest_postgres",
        what: "hub ingest, 100 agents, PostgreSQL (throwaway cluster, fsync off)",
        show: per_s,
        target: "≥ 50 k/s",
        goal: Goal::AtLeast(50_000.0),
    },
    Row {
        key: "hub_ingest_postgres_durable",
        what: "hub ingest, 100 agents, PostgreSQL (fsync and synchronous_commit on)",
        show: per_s,
        target: "≥ 50 k/s",
        goal: Goal::AtLeast(50_000.0),
    },
    Row {
        key: "hub_ingest_postgres_1_replica",
        what: "hub ingest, 100 agents, one replica on a durable PostgreSQL",
        show: per_s,
        target: "for comparison",
        goal: Goal::None,
    },
    Row {
        key: "hub_ingest_postgres_3_replicas",
        what: "hub ingest, 100 agents spread over three replicas on one durable PostgreSQL",
        show: per_s,
        target: "beside one replica",
        goal: Goal::None,
    },
    Row {
        key: "replica_ws_latency_p99_ms",
        what: "printer report → dashboard on another replica, p99",
        show: ms,
        target: "≤ 50 ms",
        goal: Goal::AtMost(50.0),
    },
    Row {
        key: "replica_failover_s",
        what: "agent data flowing again after its replica is killed (kill -9)",
        show: seconds,
        target: "≤ 5 s",
        goal: Goal::AtMost(5.0),
    },
    Row {
        key: "replica_db_failover_write_s",
        what: "dashboard writes back after the PostgreSQL primary is killed (Patroni, reference ttl 30 s)",
        show: seconds,
        target: "in seconds (no number set)",
        goal: Goal::None,
    },
    Row {
        key: "ws_latency_p50_ms",
        what: "printer report → WebSocket, p50",
        show: ms,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "ws_latency_p99_ms",
        what: "printer report → WebSocket, p99",
        show: ms,
        target: "≤ 50 ms",
        goal: Goal::AtMost(50.0),
    },
    Row {
        key: "hub_start_to_ready_ms",
        what: "hub start to ready (median of 5)",
        show: ms,
        target: "≤ 500 ms",
        goal: Goal::AtMost(500.0),
    },
    Row {
        key: "hub_login_flood_rss_kb",
        what: "hub resident memory, peak, under a login flood (64 clients, a new address and name each attempt)",
        show: mb,
        target: "≤ 128 MB (issue 15: bounded)",
        goal: Goal::AtMost(128.0 * 1024.0),
    },
    Row {
        key: "hub_api_read_p99_idle_ms",
        what: "GET /api/v1/printers p99, no flood",
        show: ms,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "hub_api_read_p99_login_flood_ms",
        what: "GET /api/v1/printers p99 during the login flood",
        show: ms,
        target: "≤ 50 ms (issue 15: not starved)",
        goal: Goal::AtMost(50.0),
    },
    Row {
        key: "hub_login_idle_ms",
        what: "a real user's login, no flood (about one password hash)",
        show: ms,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "hub_login_during_flood_max_ms",
        what: "a real user's login during the login flood, slowest",
        show: ms,
        target: "≤ 500 ms (issue 15: no wait behind the flood)",
        goal: Goal::AtMost(500.0),
    },
    Row {
        key: "reconnect_to_data_s",
        what: "reconnect to data after a link returns",
        show: seconds,
        target: "≤ 5 s",
        goal: Goal::AtMost(5.0),
    },
    Row {
        key: "outbox_open_backlog_ms",
        what: "outbox open with a 256 MB backlog (900 k records; KITT_BENCH_BACKLOG_MB)",
        show: ms,
        target: "≤ 2 s (issue 4)",
        goal: Goal::AtMost(2000.0),
    },
    Row {
        key: "camera_idle_cpu_percent",
        what: "agent CPU, camera upstream open (1280×720, 1 fps), no viewer",
        show: percent,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "camera_streaming_cpu_percent",
        what: "agent CPU, streaming live view 1280×720 at 1 fps",
        show: percent,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "camera_streaming_rss_kb",
        what: "agent resident memory while streaming",
        show: mb,
        target: "≤ 16 MB (steady)",
        goal: Goal::AtMost(16.0 * 1024.0),
    },
    Row {
        key: "fanout_min_frames_per_s",
        what: "hub fan-out: frames/s reaching the slowest of 20 MJPEG viewers (agent sends 1)",
        show: plain,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "fanout_worst_spread_ms",
        what: "hub fan-out: worst spread of one frame across 20 viewers",
        show: ms,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "fleet_agent_rss_kb",
        what: "agent resident memory, 2 Bambu + 2 Klipper printers with their cameras, all printing",
        show: mb,
        target: "≤ 16 MB",
        goal: Goal::AtMost(16.0 * 1024.0),
    },
    Row {
        key: "fleet_agent_cpu_percent",
        what: "agent CPU, the same four printers",
        show: percent,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "dispatch_ms_1000x100",
        what: "dispatcher decision, 1,000 queued jobs and 100 printers (median of 50)",
        show: ms,
        target: "≤ 10 ms",
        goal: Goal::AtMost(10.0),
    },
    Row {
        key: "upload_1gib_s",
        what: "1 GiB G-code uploaded to the hub over HTTP, hashed, stored and read",
        show: seconds,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "upload_hub_rss_growth_kb",
        what: "the hub's resident memory growth during that upload",
        show: mb,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "delivery_mb_per_s",
        what: "500 MB print file hub → agent over the sync connection on loopback",
        show: plain_mb_s,
        target: "≥ 50 MB/s",
        goal: Goal::AtLeast(50.0),
    },
    Row {
        key: "delivery_agent_rss_kb",
        what: "the agent's peak resident memory during that transfer",
        show: mb,
        target: "≤ 32 MB",
        goal: Goal::AtMost(32.0 * 1024.0),
    },
    Row {
        key: "delivery_record_latency_p99_ms",
        what: "a printing printer's state to a dashboard during that transfer, p99",
        show: ms,
        target: "≤ 50 ms",
        goal: Goal::AtMost(50.0),
    },
    Row {
        key: "moonraker_ws_latency_p50_ms",
        what: "Moonraker update to dashboard WebSocket, p50",
        show: ms,
        target: "—",
        goal: Goal::None,
    },
    Row {
        key: "moonraker_ws_latency_p99_ms",
        what: "Moonraker update to dashboard WebSocket, p99",
        show: ms,
        target: "≤ 50 ms",
        goal: Goal::AtMost(50.0),
    },
];

/// Runs one benchmark, echoing its output, and returns its metrics.
fn run_bench(
    package: &str,
    bench: &str,
    agent: &std::path::Path,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut command = crate::cargo();
    command.args(["bench", "--locked", "-p", package, "--bench", bench]);
    command.env("BENCH_AGENT_BINARY", agent);
    if let Ok(model) = crate::models::ensure(&crate::models::CHAT_MODEL) {
        command.env(crate::models::CHAT_MODEL_VAR, model);
    }
    if let Ok(model) = crate::models::ensure_embedding() {
        command.env(crate::models::EMBED_MODEL_VAR, model);
    }
    command.stdout(Stdio::piped());
    eprintln!("xtask: running {command:?}");
    let mut child = command.spawn().context("cannot start cargo bench")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut metrics = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix("kitt-metric ") {
            Some(rest) => {
                let mut parts = rest.split_whitespace();
                if let (Some(key), Some(value)) =
                    (parts.next(), parts.next().and_then(|v| v.parse().ok()))
                {
                    metrics.insert(key.to_owned(), value);
                }
            }
            None => eprintln!("{line}"),
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo bench -p {package} --bench {bench} failed with {status}");
    }
    Ok(metrics)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "unknown OS".into());
    format!("{cpu}, {cores} cores, {memory_gb:.0} GB, {os}")
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown date".into())
}

/// The table, as Markdown; `misses` gets the rows that miss their target.
fn table(metrics: &BTreeMap<String, f64>, misses: &mut Vec<String>) -> String {
    let mut out = String::from("| figure | measured | target | |\n|---|---|---|---|\n");
    for row in ROWS {
        let Some(&value) = metrics.get(row.key) else {
            out.push_str(&format!("| {} | not measured | {} | |\n", row.what, row.target));
            continue;
        };
        let verdict = match row.goal {
            Goal::AtMost(limit) if value <= limit => "met",
            Goal::AtLeast(floor) if value >= floor => "met",
            Goal::None => "",
            _ => {
                misses.push(format!("{}: {} (target {})", row.what, (row.show)(value), row.target));
                "**missed**"
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {verdict} |\n",
            row.what,
            (row.show)(value),
            row.target
        ));
    }
    out
}

/// Builds the release binaries, the agent as it ships (the `agent` profile, which the
/// benchmarks run: `BENCH_AGENT_BINARY`) and the aarch64 agent (for its size), runs every
/// benchmark, prints the table and writes `docs/benchmarks.md`.
pub fn bench() -> anyhow::Result<()> {
    crate::setup::prepare_bench_environment()?;
    // The assistant's benchmark times the real small model.
    crate::models::ensure(&crate::models::CHAT_MODEL)?;
    crate::models::ensure_embedding()?;
    let mut build = crate::cargo();
    build.args(["build", "--release", "--workspace", "--bins", "--locked"]);
    crate::status(build)?;
    crate::status(crate::dist::agent_build())?;
    let shipped = crate::target_dir().join("agent/kitt-agent");
    let mut metrics = BTreeMap::new();
    let aarch64 = crate::cross::target("aarch64-unknown-linux-gnu")
        .and_then(|target| crate::dist::agent(target, env!("CARGO_PKG_VERSION")))
        .and_then(|dist| Ok(std::fs::metadata(&dist.binary)?.len()));
    match aarch64 {
        Ok(size) => {
            metrics.insert("agent_binary_aarch64_bytes".to_owned(), size as f64);
        }
        Err(error) => eprintln!("xtask: no aarch64 agent binary size: {error:#}"),
    }
    for (package, bench) in BENCHES {
        metrics.extend(run_bench(package, bench, &shipped)?);
    }
    let mut misses = Vec::new();
    let table = table(&metrics, &mut misses);
    let machine = machine();
    let date = today();
    eprintln!("\nkitt benchmarks, {date}, {machine}\n\n{table}");
    let mut doc = format!(
        "# Benchmarks\n\nThe latest `cargo xtask bench`, run on {date} on {machine}. Targets \
         are MISSION.md's; each benchmark's own output explains its set-up \
         (`tests/benches/*.rs`, `edge-agent/benches/outbox.rs`). CPU shares come from the \
         kernel's tick counts (10 ms each), so a figure of 0.1 % or less means a few ticks \
         over the whole window. The machine's speed varies from run to run, so catch-up \
         is also measured against a baseline in the same run: an edge Mosquitto bridged to \
         a central one (QoS 1, persistent) draining the same backlog just before \
         (`tests/benches/mosquitto_bridge_baseline.sh`); the ratio is the figure to compare \
         across runs. Reproduce with `cargo xtask bench`.\n\n{table}"
    );
    if misses.is_empty() {
        doc.push_str("\nEvery figure with a target meets it.\n");
    } else {
        doc.push_str("\nMissed:\n\n");
        for miss in &misses {
            doc.push_str(&format!("- {miss}\n"));
        }
    }
    let path = crate::workspace_root().join("docs/benchmarks.md");
    std::fs::write(&path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
