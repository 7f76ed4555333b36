//! `kitt-agent discover` as a binary, in a network namespace this test makes (its own
//! loopback, multicast on, a route for 224.0.0.0/4), beside a simulated Bambu printer that
//! announces itself over SSDP and a simulated Moonraker that answers mDNS: what a person
//! sees on a LAN with one printer of each kind, without touching the host's network.

use std::process::Command;

use serde_json::Value;
use tests::process::bin;

#[test]
fn discover_finds_a_bambu_printer_and_a_moonraker_on_the_lan() {
    let sim = bin("kitt-printer-sim");
    let agent = bin("kitt-agent");
    // The simulators end with the shell's last program, `kitt-agent discover` (the same pid
    // after `exec`), through the parent-death signal KITT_PARENT_PID asks for (given to them
    // alone: the agent refuses variables of kitt's it does not know).
    let script = format!(
        "set -e
         ip link set lo up
         ip link set lo multicast on
         ip route add 224.0.0.0/4 dev lo
         KITT_PARENT_PID=$$ '{sim}' --serial 01P00A391800077 --access-code 12345678 --model C12 \
             --bind 127.0.0.1:8883 --name 'P1S in the lab' --announce-ms 300 --no-camera >/dev/null &
         KITT_PARENT_PID=$$ '{sim}' --kind moonraker --bind 127.0.0.1:7125 --name voron-lan --no-camera >/dev/null &
         exec '{agent}' discover --seconds 4",
        sim = sim.display(),
        agent = agent.display(),
    );
    let output = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run unshare: the test needs root and network namespaces");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "discover failed ({}): {stdout}\n{stderr}", output.status);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let bambu: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "bambu").collect();
    assert_eq!(bambu.len(), 1, "one Bambu printer, reported once: {lines:#?}\n{stderr}");
    let printer = bambu[0];
    assert_eq!(printer["serial"], "01P00A391800077");
    assert_eq!(printer["model"], "C12");
    assert_eq!(printer["name"], "P1S in the lab");
    assert_eq!(printer["address"], "127.0.0.1");
    assert_eq!(printer["connection"], "lan");
    assert_eq!(printer["bind"], "free");
    assert_eq!(printer["firmware"], "01.08.02.00");
    let moonraker: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "moonraker").collect();
    assert_eq!(moonraker.len(), 1, "one Moonraker: {lines:#?}\n{stderr}");
    let instance = moonraker[0];
    assert_eq!(instance["url"], "http://127.0.0.1:7125");
    assert_eq!(instance["host"], "voron-lan.local");
    assert!(instance["name"].as_str().unwrap().ends_with("@ voron-lan"), "{instance}");
    assert!(instance["version"].as_str().is_some_and(|v| v.starts_with('v')), "{instance}");
}
