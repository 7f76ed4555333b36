//! `kitt-hub demo`, the README's first command, as a new user runs it: the real binaries,
//! six printers (four Bambu, two Klipper) with their scenarios, reachable through the API with
//! the printed password.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;
use std::time::Duration;

use tests::fleet::poll_other_process;
use tests::http;
use tests::process::{Process, bin};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_six_printers_of_two_kinds_in_their_scenarios() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let demo = Process::spawn(
        Command::new(bin("kitt-hub"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["demo", "--http-listen", &format!("127.0.0.1:{port}")])
            .env("KITT_LOG", "warn")
            .env("KITT_CHAT_MODEL", super::assistant::local_model())
            .env("KITT_EMBED_MODEL", super::assistant::embed_model()),
    );
    let banner = demo.wait_line("log in as admin with password");
    let password = banner.rsplit(' ').next().unwrap().to_owned();
    let started = proto::UnixMillis::now().0;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let login = serde_json::json!({ "name": "admin", "password": password }).to_string();
    let response = http::request(addr, "POST", "/api/v1/login", &[], Some(&login)).unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let cookie = response.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();

    // The lab printer fails at layer 9 of 1.2 s layers: give it a minute.
    let states = poll_other_process(Duration::from_secs(60), "the six scenarios under way", || {
        let cookie = cookie.clone();
        async move {
            let response =
                http::request(addr, "GET", "/api/v1/printers", &[("Cookie", &cookie)], None)
                    .ok()?;
            let printers = response.json()["printers"].as_array()?.clone();
            let state_of = |name: &str| -> Option<Value> {
                printers.iter().find(|p| p["name"] == name).map(|p| p["state"].clone())
            };
            let workhorse = state_of("Workhorse P1S")?;
            let lab = state_of("Lab X1 Carbon")?;
            let desk = state_of("Desk A1 mini")?;
            let corner = state_of("Corner A1")?;
            let voron = state_of("Voron 2.4")?;
            let neptune = state_of("Neptune 4 Pro")?;
            let all_online =
                printers.len() == 6 && printers.iter().all(|p| p["agent_online"] == true);
            (all_online
                && matches!(workhorse["state"].as_str(), Some("preparing" | "printing"))
                && lab["state"] == "failed"
                && desk["state"] == "idle"
                && corner["state"] == "paused"
                && voron["state"] == "failed"
                && voron["message"].is_string()
                && neptune["state"] == "printing")
                .then_some((lab, corner, voron, neptune))
        }
    })
    .await;
    let (lab, corner, voron, neptune) = states;
    assert_eq!(lab["hms"][0]["code"], "0300_0100_0001_0007", "{lab}");
    assert_eq!(lab["print_error"], "0300_8003", "{lab}");
    assert_eq!(corner["hms"][0]["code"], "0700_2000_0002_0001", "{corner}");
    assert_eq!(corner["model"], "N2S");
    // The Klipper printers: Klippy's own words, and the controls a Klipper printer has.
    let message = voron["message"].as_str().unwrap();
    assert!(message.starts_with("Heater extruder not heating at expected rate"), "{voron}");
    assert_eq!(voron["klipper"]["klippy"], "shutdown", "{voron}");
    let controls = neptune["controls"].as_array().unwrap();
    assert!(controls.iter().any(|c| c == "firmware_restart"), "{neptune}");
    assert!(neptune["layer"].as_u64().is_some(), "{neptune}");

    // Its past: two weeks of reviewed prints, and the lab printer's failure of just now.
    // Asked why prints failed today, the assistant (the small model and the embedding model,
    // both real) answers from the farm's records and cites the outcome, linked.
    let post = |path: &str, body: Value| {
        let body = body.to_string();
        http::request(addr, "POST", path, &[("Cookie", &cookie)], Some(&body)).unwrap()
    };
    let lab_failure = poll_other_process(Duration::from_secs(60), "the lab's failed print", || {
        let cookie = cookie.clone();
        async move {
            let path = "/api/v1/outcomes?printer=00M09A351100002";
            let response = http::request(addr, "GET", path, &[("Cookie", &cookie)], None).ok()?;
            let outcomes = response.json()["outcomes"].as_array()?.clone();
            outcomes.into_iter().find(|o| {
                o["result"] == "failed" && o["ended_at"].as_i64().is_some_and(|at| at >= started)
            })
        }
    })
    .await;
    let (_, history) = {
        let response =
            http::request(addr, "GET", "/api/v1/outcomes", &[("Cookie", &cookie)], None).unwrap();
        (response.status, response.json())
    };
    assert!(history["total"].as_u64().unwrap() > 20, "the seeded past and today: {history}");
    let reindexed = post("/api/v1/memory/reindex", serde_json::json!({}));
    assert_eq!(reindexed.status, 200, "{reindexed:?}");
    let conversation = post("/api/v1/assistant/conversations", serde_json::json!({}));
    assert_eq!(conversation.status, 201, "{conversation:?}");
    let id = conversation.json()["id"].as_str().unwrap().to_owned();
    let asked = post(
        &format!("/api/v1/assistant/conversations/{id}/messages"),
        serde_json::json!({"content": "Why did prints fail today?"}),
    );
    assert_eq!(asked.status, 200, "{asked:?}");
    let turn = asked.json();
    let of = |kind: &str| -> Vec<Value> {
        turn["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
    };
    assert_eq!(of("tool_call")[0]["name"], "search_memory", "{turn:#}");
    let citations = of("sources")[0]["citations"].as_array().unwrap().clone();
    let failure = format!("outcome:{}", lab_failure["id"]);
    let cited = citations.iter().find(|c| c["key"] == failure.as_str());
    let cited = cited.unwrap_or_else(|| panic!("{failure} among {citations:#?}"));
    assert_eq!(cited["link"], format!("/outcomes?id={}", lab_failure["id"]));
    let answer = turn["text"].as_str().unwrap();
    assert!(answer.contains(&format!("/outcomes?id={}", lab_failure["id"])), "{answer}");
    assert_eq!(of("done")[0]["tier"], "local", "{turn:#}");

    // Killed outright, the demo takes its six simulators and six agents with it.
    let children = children_of(demo.child.id());
    assert_eq!(children.len(), 12, "six simulators and six agents: {children:?}");
    demo.kill9();
    poll_other_process(Duration::from_secs(30), "the demo's children to end", || {
        let left: Vec<u32> = children.iter().copied().filter(|pid| alive(*pid)).collect();
        async move { left.is_empty().then_some(()) }
    })
    .await;
}

/// The processes whose parent is `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").unwrap();
    let pids = entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == parent)).collect()
}

/// Whether `pid` runs (exists and is not a zombie waiting for a reaper).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// State and parent pid from `/proc/PID/stat` (fields 3 and 4, after the parenthesised name).
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}
