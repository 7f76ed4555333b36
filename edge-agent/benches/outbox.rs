//! Outbox figures: append+commit and read throughput, open time and memory with a backlog.
//!
//! Run: `cargo bench -p edge-agent --bench outbox`. The backlog is `KITT_BENCH_BACKLOG_MB`
//! megabytes of encoded telemetry (default 256; the 1 GB start-up figure is
//! `KITT_BENCH_BACKLOG_MB=1024`). Files go in a temporary directory under `$TMPDIR`.
//! The open is measured in a child process (this binary again), so its memory figures
//! are its own and not the builder's.

#![allow(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_agent::outbox::{COMMIT_INTERVAL, MAX_PENDING_RECORDS, Outbox, OutboxConfig};
use proto::{PrintState, PrinterId, PrinterState, PrinterTelemetry, RecordBody, Seq, UnixMillis};

const CHILD_ENV: &str = "KITT_BENCH_OPEN_CHILD";
const RECORD_BYTES: usize = 300;

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        open_in_child(Path::new(&path));
        return;
    }
    let backlog_mb: u64 = std::env::var("KITT_BENCH_BACKLOG_MB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().expect("a temporary directory under $TMPDIR");
    let body = telemetry();
    println!("outbox benchmark: cargo bench -p edge-agent --bench outbox");
    println!(
        "  backlog {backlog_mb} MB (KITT_BENCH_BACKLOG_MB; 1 GB: KITT_BENCH_BACKLOG_MB=1024), \
         records of {} encoded bytes, files in {}",
        encoded_len(&body),
        dir.path().display()
    );

    append_and_commit(&dir.path().join("append.db"), &body);
    let backlog_path = dir.path().join("backlog.db");
    build_backlog(&backlog_path, &body, backlog_mb << 20);
    let status = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, &backlog_path)
        .status()
        .expect("runs the open child");
    assert!(status.success(), "open child failed: {status}");
    read_backlog(&backlog_path);
}

/// Appends for one [`COMMIT_INTERVAL`] (or until the pending bound, so nothing is shed),
/// commits, repeats for a few seconds.
fn append_and_commit(path: &Path, body: &RecordBody) {
    let (mut outbox, _) = Outbox::open(config(path, 1 << 40)).expect("opens");
    let mut n_records = 0u64;
    let mut commit_times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let batch_start = Instant::now();
        while batch_start.elapsed() < COMMIT_INTERVAL && outbox.pending() < MAX_PENDING_RECORDS {
            outbox.append(UnixMillis(0), body.clone()).expect("appends");
            n_records += 1;
        }
        let commit_start = Instant::now();
        outbox.commit().expect("commits");
        commit_times.push(commit_start.elapsed());
    }
    let elapsed = start.elapsed();
    assert!(outbox.stats().drops_total.is_empty(), "the benchmark must not shed records");
    commit_times.sort();
    println!(
        "append+commit: {:.0} records/s ({n_records} records in {} commits, each batch at \
         most {} ms or {MAX_PENDING_RECORDS} records; commit p50 {:.1} ms, max {:.1} ms)",
        n_records as f64 / elapsed.as_secs_f64(),
        commit_times.len(),
        COMMIT_INTERVAL.as_millis(),
        millis(commit_times[commit_times.len() / 2]),
        millis(*commit_times.last().expect("at least one commit")),
    );

    // What a quiet printer costs: a handful of records per commit, fsync-bound.
    let start = Instant::now();
    let mut n_commits = 0;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..5 {
            outbox.append(UnixMillis(0), body.clone()).expect("appends");
        }
        outbox.commit().expect("commits");
        n_commits += 1;
    }
    println!(
        "small commits: {:.0} commits/s of 5 records ({:.2} ms each)",
        n_commits as f64 / start.elapsed().as_secs_f64(),
        millis(start.elapsed()) / f64::from(n_commits),
    );
}

fn build_backlog(path: &Path, body: &RecordBody, backlog_bytes: u64) {
    let (mut outbox, _) = Outbox::open(config(path, backlog_bytes * 2)).expect("opens");
    let start = Instant::now();
    while outbox.stats().bytes < backlog_bytes {
        for _ in 0..MAX_PENDING_RECORDS {
            outbox.append(UnixMillis(0), body.clone()).expect("appends");
        }
        outbox.commit().expect("commits");
    }
    let stats = outbox.stats();
    assert!(stats.drops_total.is_empty(), "the backlog must not shed records");
    drop(outbox);
    let file_bytes = std::fs::metadata(path).map_or(0, |meta| meta.len());
    println!(
        "backlog: {} records, {} MB of bodies, file {} MB, built in {:.1} s",
        stats.records,
        stats.bytes >> 20,
        file_bytes >> 20,
        start.elapsed().as_secs_f64()
    );
}

fn open_in_child(path: &Path) {
    let before = memory();
    let start = Instant::now();
    let (outbox, report) = Outbox::open(OutboxConfig::new(path)).expect("opens");
    let elapsed = start.elapsed();
    let after = memory();
    println!(
        "open: {:.1} ms for {} records ({} MB); VmRSS {} kB -> {} kB, VmHWM {} kB \
         (page cache warm; drop caches for a cold figure)",
        millis(elapsed),
        report.records,
        report.bytes >> 20,
        before.0,
        after.0,
        after.1
    );
    // For `cargo xtask bench`'s table (see tests::metric).
    println!("kitt-metric outbox_open_backlog_ms {}", millis(elapsed));
    drop(outbox);
}

fn read_backlog(path: &Path) {
    let (mut outbox, _) = Outbox::open(config(path, 1 << 40)).expect("opens");
    let mut after = Seq::ZERO;
    let mut n_records = 0;
    let start = Instant::now();
    loop {
        let records = outbox.read_after(after, 1_000, usize::MAX).expect("reads");
        let Some(last) = records.last() else { break };
        after = last.seq;
        n_records += records.len();
    }
    let elapsed = start.elapsed();
    println!(
        "read_after: {:.0} records/s ({n_records} records in batches of 1000, {:.1} s); \
         VmHWM {} kB",
        n_records as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        memory().1
    );
}

fn config(path: &Path, capacity_bytes: u64) -> OutboxConfig {
    OutboxConfig { capacity_bytes, ..OutboxConfig::new(path) }
}

/// A telemetry sample of a printing printer, padded to [`RECORD_BYTES`] encoded bytes.
fn telemetry() -> RecordBody {
    let sample = |job_name: String| {
        RecordBody::Telemetry(PrinterTelemetry {
            printer: PrinterId::new("0309DA4B1800123").expect("valid"),
            state: Box::new(PrinterState {
                state: PrintState::Printing,
                stage: Some(0),
                progress_percent: Some(42),
                remaining_s: Some(3_600),
                layer: Some(120),
                total_layers: Some(300),
                job_name: Some(job_name),
                nozzle_temp_c: Some(220.0),
                nozzle_target_c: Some(220.0),
                bed_temp_c: Some(60.0),
                bed_target_c: Some(60.0),
                model: Some("N1".to_owned()),
                firmware: Some("01.04.00.00".to_owned()),
                last_report_at: Some(UnixMillis(1_750_000_000_000)),
                ..PrinterState::default()
            }),
        })
    };
    let padding = RECORD_BYTES.saturating_sub(encoded_len(&sample(String::new())));
    sample("j".repeat(padding))
}

fn encoded_len(body: &RecordBody) -> usize {
    postcard::to_stdvec(body).expect("encodes").len()
}

/// `(VmRSS, VmHWM)` in kB, from `/proc/self/status` (zeros where unavailable).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
