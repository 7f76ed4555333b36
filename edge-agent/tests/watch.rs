//! `kitt-agent watch`, the real binary, against `kitt-printer-sim` over real TLS: what a user
//! sees when checking a printer connection.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use printer_sim::config::{Fault, Model, SimConfig};
use printer_sim::moonraker::{self as moonraker, MoonrakerConfig};
use printer_sim::{SimHandle, Simulator};
use serde_json::Value;

const SERIAL: &str = "01S00C391800007";
const ACCESS_CODE: &str = "31415926";
const PATIENCE: Duration = Duration::from_secs(20);

/// A running `kitt-agent watch` and the JSON lines it prints.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Watch {
    fn start(sim: &SimHandle, dir: &std::path::Path) -> Watch {
        let ca = dir.join("printer-ca.pem");
        std::fs::write(&ca, sim.ca_pem()).unwrap();
        let port = sim.addr().port().to_string();
        let args = ["--host", "127.0.0.1", "--port", &port, "--serial", SERIAL];
        let ca = ca.display().to_string();
        Watch::with_args(&[&args[..], &["--access-code", ACCESS_CODE, "--ca", &ca]].concat())
    }

    fn with_args(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kitt-agent"))
            .arg("watch")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// Reads lines until `want` picks one; returns it and every line read on the way.
    fn until(&self, what: &str, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line for {what} from kitt-agent watch; saw {seen:#?}"),
            }
        }
    }

    fn until_event(&self, kind: &str) -> (Value, Vec<Value>) {
        self.until(kind, |l| l["kind"] == "event" && l["event"]["type"] == kind)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event_types(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["kind"] == "event")
        .map(|l| l["event"]["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn watch_shows_a_whole_job_and_then_a_scripted_failure() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = SimConfig::new(SERIAL.parse().unwrap(), ACCESS_CODE.parse().unwrap(), Model::P1S)
        .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
    let sim = runtime.block_on(Simulator::start(config)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&sim, dir.path());

    let (idle, _) = watch.until("the idle printer", |l| {
        l["kind"] == "state" && l["state"]["state"] == "idle" && !l["state"]["firmware"].is_null()
    });
    assert_eq!(idle["state"]["model"], "C12");
    // Whether the printer takes commands is known only once one is answered.
    assert_eq!(idle["state"]["control"], "unknown");

    runtime.block_on(sim.start_job("benchy", 4)).unwrap();
    let (started, _) = watch.until_event("job_started");
    assert_eq!(started["event"]["job_name"], "benchy");
    assert_eq!(started["event"]["total_layers"], 4);
    assert!(started["event"]["at"].as_u64().unwrap() > 1_700_000_000_000, "{started}");
    let (finished, between) = watch.until_event("job_finished");
    assert_eq!(finished["event"]["job_name"], "benchy");
    let events = event_types(&between);
    assert!(events.contains(&"state_changed".to_owned()), "{events:?}");
    // The state lines on the way show the job advancing layer by layer to 100 %. The last
    // layer may come in the same report as the finish, and a report's events are printed
    // before its state: take the state line that follows the event too.
    let (after, _) = watch.until("the state after the job's end", |l| l["kind"] == "state");
    let layers: Vec<u64> = between
        .iter()
        .chain(std::iter::once(&after))
        .filter(|l| l["kind"] == "state")
        .filter_map(|l| l["state"]["layer"].as_u64())
        .collect();
    assert!(layers.windows(2).all(|w| w[0] <= w[1]), "{layers:?}");
    assert_eq!(layers.last(), Some(&4), "{layers:?}");

    let hms = "0300_0100_0001_0007".parse().unwrap();
    runtime
        .block_on(sim.set_fault(Fault::FailAtLayer { layer: 2, hms, print_error: 0x0300_8003 }))
        .unwrap();
    runtime.block_on(sim.start_job("cube", 6)).unwrap();
    let (failed, _) = watch.until_event("job_failed");
    assert_eq!(failed["event"]["job_name"], "cube");
    assert_eq!(failed["event"]["error"]["print_error"], "0300_8003");
    assert_eq!(failed["event"]["error"]["hms"][0]["code"], "0300_0100_0001_0007");
    // The alert itself follows the job's outcome in the same report.
    let (raised, _) = watch.until_event("hms_raised");
    assert_eq!(raised["event"]["hms"]["code"], "0300_0100_0001_0007");
    let (state, _) = watch
        .until("the failed state", |l| l["kind"] == "state" && l["state"]["state"] == "failed");
    assert_eq!(state["state"]["print_error"], "0300_8003");

    drop(watch);
    runtime.block_on(sim.shutdown());
}

#[test]
fn watch_with_a_wrong_access_code_says_so() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config =
        SimConfig::new(SERIAL.parse().unwrap(), "00000000".parse().unwrap(), Model::A1Mini);
    let sim = runtime.block_on(Simulator::start(config)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(&sim, dir.path());
    let (problem, seen) = watch.until("a problem line", |l| l["kind"] == "problem");
    assert!(seen.is_empty(), "{seen:?}");
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("refused the access code"), "{message}");
    drop(watch);
    runtime.block_on(sim.shutdown());
}

#[test]
fn watch_moonraker_shows_a_klipper_job_its_webcam_and_a_refused_key() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = MoonrakerConfig::new("voron-watch");
    config.api_key = Some("0123456789abcdef".into());
    config.step_interval = Duration::from_millis(40);
    config.update_interval = Duration::from_millis(20);
    config.klipper.layers = 5;
    let sim = runtime.block_on(moonraker::start(config)).unwrap();
    let url = format!("http://{}", sim.addr());
    let web_port = sim.web_addr().unwrap().port().to_string();
    let watch = Watch::with_args(&[
        "--moonraker",
        &url,
        "--api-key",
        "0123456789abcdef",
        "--web-port",
        &web_port,
        "--model",
        "Voron 2.4",
    ]);
    // The job starts once watch shows the idle printer (a slow machine, QEMU in CI, may take
    // longer to connect than a short job takes).
    let (_, before_job) = watch.until("the idle printer", |l| {
        l["kind"] == "state" && l["state"]["state"] == "idle" && l["state"]["firmware"].is_string()
    });
    sim.start_print("benchy.gcode").unwrap();
    let (printing, before) = watch.until("the printing printer", |l| {
        l["kind"] == "state"
            && l["state"]["state"] == "printing"
            && l["state"]["layer"].as_u64() > Some(0)
    });
    assert_eq!(printing["state"]["kind"], "klipper");
    assert_eq!(printing["state"]["model"], "Voron 2.4");
    assert_eq!(printing["state"]["total_layers"], 5);
    assert_eq!(printing["state"]["klipper"]["klippy"], "ready");
    let (finished, seen) = watch.until_event("job_finished");
    assert_eq!(finished["event"]["job_name"], "benchy.gcode");
    let cameras: Vec<&Value> =
        before_job.iter().chain(&before).chain(&seen).filter(|l| l["kind"] == "cameras").collect();
    let expected = format!("mjpeg http://127.0.0.1:{web_port}/webcam/?action=stream");
    assert!(cameras.iter().any(|l| l["cameras"][0]["source"] == expected.as_str()), "{cameras:?}");
    drop(watch);

    let watch = Watch::with_args(&["--moonraker", &url, "--api-key", "wrong-key"]);
    let (problem, _) = watch.until("a problem line", |l| l["kind"] == "problem");
    let message = problem["message"].as_str().unwrap();
    assert!(message.contains("refused the API key"), "{message}");
    drop(watch);
    runtime.block_on(sim.shutdown());
}
