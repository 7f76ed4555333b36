//! Queue benchmarks: the dispatcher's decision with 1,000 queued jobs and 100 printers
//! (target ≤ 10 ms), and a 1 GiB print file uploaded to a real `kitt-hub` over HTTP (its
//! time, and the hub's resident memory while it streams to disk).
//!
//! Reproduce with `cargo xtask bench`, or `cargo build --release --bins && cargo bench -p
//! tests --bench queue`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use hub::queue::dispatch::{FileFacts, FleetPrinter, PrinterKind, QueuedJob, Target, decide};
use hub::queue::matching::{DEFAULT_TOLERANCE, Need, Rgb, Tray, TrayRef};
use printfile::FileKind;
use tests::process::{Process, bin, memory_kb};

const MODELS: [&str; 4] = ["C12", "C11", "N2S", "BL-P001"];
const MATERIALS: [&str; 3] = ["PLA", "PETG", "ABS"];
const COLORS: [&str; 6] = ["#FFFFFF", "#000000", "#FF6A13", "#2850E0", "#C80000", "#10A040"];

/// A fleet of 100 printers, a third busy, a tenth with the plate not yet cleared, each AMS
/// with four trays; 1,000 jobs needing one to four filaments, in three priorities.
fn farm() -> (Vec<QueuedJob>, Vec<FleetPrinter>) {
    let printers = (0..100)
        .map(|i| FleetPrinter {
            id: format!("printer-{i:03}"),
            kind: PrinterKind::Bambu,
            model: Some(MODELS[i % 4].into()),
            nozzle: Some(0.4),
            online: i % 17 != 0,
            approved: true,
            free: i % 3 != 0,
            status: if i % 3 == 0 { "printing".into() } else { "idle".into() },
            plate_clear: i % 10 != 5,
            filament: Some(
                (0..4)
                    .map(|t| Tray {
                        at: TrayRef::Unit { unit: 0, slot: t as u8 },
                        material: Some(MATERIALS[(i + t) % 3].into()),
                        color: Rgb::parse(COLORS[(i * 7 + t) % 6]),
                    })
                    .collect(),
            ),
        })
        .collect();
    let jobs = (0..1000)
        .map(|j| QueuedJob {
            id: j as i64,
            priority: (j % 3) as i32,
            position: j as i64,
            deadline: (j % 5 == 0).then_some(1_000_000 + j as i64),
            not_before: None,
            held: j % 50 == 0,
            awaiting_approval: false,
            target: if j % 20 == 0 {
                Target::Printer(format!("printer-{:03}", j % 100))
            } else {
                Target::Any
            },
            file: FileFacts {
                kind: FileKind::Gcode3mf,
                model_id: Some(MODELS[j % 4].into()),
                model: None,
                nozzle: Some(0.4),
            },
            nozzle: None,
            needs: (0..(1 + j % 4))
                .map(|s| Need {
                    slot: s as u32 + 1,
                    material: Some(MATERIALS[(j + s) % 3].into()),
                    color: Rgb::parse(COLORS[(j * 3 + s) % 6]),
                })
                .collect(),
            tolerance: DEFAULT_TOLERANCE,
        })
        .collect();
    (jobs, printers)
}

fn dispatcher() {
    let (jobs, printers) = farm();
    let mut times = Vec::new();
    let mut assigned = 0;
    for _ in 0..50 {
        let started = Instant::now();
        let decision = decide(&jobs, &printers, 0);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assigned = decision.assignments.len();
        std::hint::black_box(decision);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "dispatcher: 1000 jobs, 100 printers: median {median:.2} ms, worst {worst:.2} ms over 50 decisions \
         ({assigned} jobs assigned) (target <= 10 ms)"
    );
    tests::metric("dispatch_ms_1000x100", median);
}

/// Uploads a 1 GiB G-code file (`KITT_BENCH_UPLOAD_MB` changes the size) through a plain
/// HTTP/1.1 connection, streaming the body.
fn upload() {
    let mb: u64 =
        std::env::var("KITT_BENCH_UPLOAD_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size: u64 = mb << 20;
    let data = tempfile::tempdir().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let hub_bin = bin("kitt-hub");
    let status = Command::new(&hub_bin)
        .arg("--data-dir")
        .arg(data.path())
        .args(["user", "add", "bench", "--role", "operator"])
        .env("KITT_LOG", "error")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let token = Command::new(&hub_bin)
        .arg("--data-dir")
        .arg(data.path())
        .args(["user", "token", "bench"])
        .env("KITT_LOG", "error")
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap();
    let token = token.split_whitespace().find(|w| w.starts_with("kitt_")).unwrap().to_owned();
    let hub = Process::spawn(
        Command::new(&hub_bin)
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "serve",
                "--http-listen",
                &format!("127.0.0.1:{port}"),
                "--sync-listen",
                "127.0.0.1:0",
            ])
            .env("KITT_LOG", "warn"),
    );
    hub.wait_line("ready");
    let pid = hub.child.id();
    let (idle_rss, _) = memory_kb(pid);

    let boundary = "kitt-bench-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.gcode\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    // A real G-code header, then moves to 1 GiB.
    let header =
        b"; generated by PrusaSlicer 2.8.1 on 2026-01-28 at 06:32:21 UTC\nG28\nM104 S215\n"
            .to_vec();
    let line = b"G1 X123.456 Y78.901 E0.04567\n";
    let body_len = head.len() as u64 + size + tail.len() as u64;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let started = Instant::now();
    write!(
        stream,
        "POST /api/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_len}\r\n\r\n{head}"
    )
    .unwrap();
    let mut chunk = Vec::with_capacity(1 << 20);
    while chunk.len() + line.len() <= 1 << 20 {
        chunk.extend_from_slice(line);
    }
    stream.write_all(&header).unwrap();
    let mut sent = header.len() as u64;
    let mut peak = 0;
    let mut chunks = 0u64;
    while sent < size {
        let n = ((size - sent) as usize).min(chunk.len());
        stream.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
        chunks += 1;
        if chunks.is_multiple_of(16) {
            peak = peak.max(memory_kb(pid).0);
        }
    }
    stream.write_all(tail.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        let n = stream.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (_, hwm) = memory_kb(pid);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    println!(
        "upload: {mb} MiB of G-code in {elapsed:.1} s ({:.0} MB/s, hashed, stored and read); hub \
         resident {idle_rss} kB idle, {peak} kB peak while receiving, VmHWM {hwm} kB",
        mb as f64 / elapsed
    );
    tests::metric("upload_1gib_s", elapsed);
    tests::metric("upload_hub_rss_growth_kb", peak.max(hwm).saturating_sub(idle_rss) as f64);
    drop(hub);
}

fn main() {
    tests::init();
    dispatcher();
    upload();
}
