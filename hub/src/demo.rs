//! `kitt-hub demo`: the whole system on one machine, for a first look. A hub on SQLite, six
//! simulated printers of different kinds and models running different scenarios (four Bambu
//! Lab printers, two Klipper printers behind Moonraker), and one real agent per printer, each
//! enrolled through the real enrollment path. The printers and agents are
//! the `kitt-printer-sim` and `kitt-agent` binaries beside `kitt-hub`, run as child processes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use proto::UnixMillis;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod history;

use crate::assistant::eval::{self, Suite};
use crate::assistant::llm::{Message, Speaker};
use crate::assistant::router::Depth;
use crate::config::HubConfig;
use crate::service::{Principal, Role, Via};

/// One simulated printer and what it does.
struct Scenario {
    name: &'static str,
    agent: &'static str,
    /// The printer's id: a Bambu printer's serial, a Klipper printer's chosen id.
    serial: &'static str,
    kind: Kind,
    model: &'static str,
    what: &'static str,
    args: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bambu,
    Klipper,
}

const ACCESS_CODE: &str = "31415926";

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "Workhorse P1S",
        agent: "pi-workhorse",
        serial: "01P00C391800001",
        kind: Kind::Bambu,
        model: "C12",
        what: "prints job after job",
        args: &[
            "--autostart-job",
            "Benchy",
            "--layers",
            "120",
            "--layer-ms",
            "1500",
            "--loop-jobs",
        ],
    },
    Scenario {
        name: "Lab X1 Carbon",
        agent: "pi-lab",
        serial: "00M09A351100002",
        kind: Kind::Bambu,
        model: "BL-P001",
        what: "fails at layer 9 with an HMS alert",
        args: &[
            "--autostart-job",
            "Bracket",
            "--layers",
            "80",
            "--layer-ms",
            "1200",
            "--fail-at-layer",
            "9",
            "--hms",
            "0300_0100_0001_0007",
            "--print-error",
            "0300_8003",
        ],
    },
    Scenario {
        name: "Desk A1 mini",
        agent: "pi-desk",
        serial: "0309CA391800003",
        kind: Kind::Bambu,
        model: "N1",
        what: "idles",
        args: &[],
    },
    Scenario {
        name: "Corner A1",
        agent: "pi-corner",
        serial: "03919D391800004",
        kind: Kind::Bambu,
        model: "N2S",
        what: "pauses for a filament runout at layer 6",
        args: &[
            "--autostart-job",
            "Vase",
            "--layers",
            "90",
            "--layer-ms",
            "1000",
            "--runout-at-layer",
            "6",
        ],
    },
    Scenario {
        name: "Voron 2.4",
        agent: "pi-voron",
        serial: "voron-24",
        kind: Kind::Klipper,
        model: "Voron 2.4",
        what: "Klippy shuts down at layer 12 (thermal runaway); restart its firmware",
        args: &[
            "--autostart-job",
            "Gridfinity bin",
            "--layers",
            "100",
            "--layer-ms",
            "1000",
            "--thermal-runaway-at-layer",
            "12",
        ],
    },
    Scenario {
        name: "Neptune 4 Pro",
        agent: "pi-neptune",
        serial: "neptune-4",
        kind: Kind::Klipper,
        model: "Neptune 4 Pro",
        what: "prints job after job (Klipper)",
        args: &[
            "--autostart-job",
            "Calibration cube",
            "--layers",
            "60",
            "--layer-ms",
            "1500",
            "--loop-jobs",
        ],
    },
];

/// Tells the demo's children its pid: they ask the kernel to end them when the process that
/// started them dies (`die_with_parent` in each binary's `main`), so a demo killed by SIGKILL
/// leaves nothing running. They are started from the main thread, which lives as long as the
/// process (the kernel ties the parent-death signal to the thread that forked).
const PARENT_PID: &str = "KITT_PARENT_PID";

/// Child processes, killed when dropped (also when the demo fails half-way).
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// A sibling binary of the running `kitt-hub`.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the kitt-hub executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing; the demo runs it beside kitt-hub (build everything with `cargo build --workspace --bins`, or use `cargo xtask run`)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts a child and waits for a stdout line containing each of `needles`, in order.
fn spawn_waiting(command: &mut Command, needles: &[&str]) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted: Vec<String> = needles.iter().map(|n| (*n).to_owned()).collect();
    std::thread::spawn(move || {
        let mut wanted = wanted.into_iter().peekable();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if wanted.peek().is_some_and(|needle| line.contains(needle.as_str())) {
                wanted.next();
                let _ = tx.send(line);
            }
        }
    });
    let mut lines = Vec::new();
    for _ in needles {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                bail!("{command:?} did not start in time")
            }
        }
    }
    Ok((child, lines))
}

/// The address in a "… listening on ADDR" line.
fn address_in(line: &str) -> anyhow::Result<std::net::SocketAddr> {
    line.split_whitespace()
        .find_map(|word| word.parse::<std::net::SocketAddr>().ok())
        .with_context(|| format!("no address in {line:?}"))
}

/// Runs the demo until Ctrl-C; with `eval`, runs the assistant's evaluation on it and exits.
pub async fn run(
    mut config: HubConfig,
    data_dir_given: bool,
    eval: Option<PathBuf>,
) -> anyhow::Result<u8> {
    // Read the cases first: a bad file should not cost a fleet's start.
    let suite = match &eval {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let suite: Suite = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an evaluation", path.display()))?;
            Some(suite)
        }
        None => None,
    };
    if !data_dir_given {
        config.data_dir = std::env::temp_dir().join(format!("kitt-demo-{}", UnixMillis::now().0));
    }
    let simulator = sibling("kitt-printer-sim")?;
    let agent_bin = sibling("kitt-agent")?;
    let shutdown = CancellationToken::new();
    let hub = crate::app::start(config.clone(), shutdown.clone()).await?;
    let db = hub.state.db.clone();
    // Two weeks of past prints and two documents, on a first run: analytics to show and a
    // history for the assistant.
    let seeded = history::seed(&db, UnixMillis::now().0).await?;
    if seeded > 0
        && let Some(memory) = &hub.state.memory
    {
        memory.changed();
    }

    // An admin with a fresh password each run.
    let password = crate::api::auth::generate_password();
    let hash = crate::api::auth::hash_password(&password).map_err(anyhow::Error::msg)?;
    if !db.insert_user("admin", &hash, "admin", UnixMillis::now()).await? {
        db.set_password("admin", &hash).await?;
    }

    let mut children = Children::default();
    let sync = format!("127.0.0.1:{}", hub.sync_addr.port());
    for scenario in &SCENARIOS {
        let dir = config.data_dir.join("demo").join(scenario.agent);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut command = Command::new(&simulator);
        match scenario.kind {
            Kind::Bambu => command
                .args(["--serial", scenario.serial, "--access-code", ACCESS_CODE])
                .args(["--model", scenario.model, "--bind", "127.0.0.1:0", "--report-ms", "1000"])
                .args(["--name", scenario.name])
                .arg("--ca-out")
                .arg(&dir),
            Kind::Klipper => command.args([
                "--kind",
                "moonraker",
                "--name",
                scenario.name,
                "--bind",
                "127.0.0.1:0",
            ]),
        };
        let needles: &[&str] = match scenario.kind {
            Kind::Bambu => &["kitt-printer-sim listening on", "camera listening on"],
            Kind::Klipper => &["moonraker listening on", "webcam listening on"],
        };
        let (printer, lines) = spawn_waiting(
            command.args(scenario.args).env(PARENT_PID, std::process::id().to_string()),
            needles,
        )?;
        children.0.push(printer);
        let port = address_in(&lines[0])?.port();
        let camera_port = address_in(&lines[1])?.port();
        let state = dir.join("state");
        std::fs::create_dir_all(&state)?;
        if !state.join("identity.toml").exists() {
            let serial = proto::PrinterId::new(scenario.serial)?;
            let (token, _) = crate::sync::token::create_for_printers(
                &db,
                &hub.sync.ca_fingerprint(),
                Some(scenario.agent),
                &[serial],
                Duration::from_secs(600),
                UnixMillis::now(),
            )
            .await?;
            let enrolled = Command::new(&agent_bin)
                .args(["enroll", "--hub", &sync, "--token", &token.to_string(), "--state-dir"])
                .arg(&state)
                .output()
                .context("cannot run kitt-agent enroll")?;
            if !enrolled.status.success() {
                bail!(
                    "enrolling {} failed: {}",
                    scenario.agent,
                    String::from_utf8_lossy(&enrolled.stderr)
                );
            }
        }
        let agent_config = dir.join("agent.toml");
        let toml = agent_toml(scenario, &state, &dir.join("ca.pem"), port, camera_port);
        std::fs::write(&agent_config, toml)?;
        let agent = Command::new(&agent_bin)
            .args(["run", "--config"])
            .arg(&agent_config)
            .env("KITT_LOG", "error")
            .env(PARENT_PID, std::process::id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start kitt-agent")?;
        children.0.push(agent);
    }

    if let Some(suite) = suite {
        let code = evaluate(&hub.state, &suite, &config.data_dir).await;
        drop(children);
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), hub.wait()).await;
        return code;
    }

    let url = format!("http://localhost:{}", hub.http_addr.port());
    print_line(&format!(
        "kitt demo running: open {url} and log in as admin with password {password}\n\
         data in {} (SQLite); six printers, one agent each:",
        config.data_dir.display()
    ));
    for scenario in &SCENARIOS {
        print_line(&format!("  {:<14} {:<8} {}", scenario.name, scenario.model, scenario.what));
    }
    print_line("Ctrl-C stops everything.");
    crate::app::wait_for_signal().await;
    drop(children);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), hub.wait()).await;
    Ok(0)
}

/// How long the fleet has to come up and play out its scenarios before the evaluation.
const FLEET_DEADLINE: Duration = Duration::from_secs(120);

/// How long one case may take on one tier.
const CASE_DEADLINE: Duration = Duration::from_secs(300);

/// Whether the demo fleet is where the evaluation's cases assume it: every printer has
/// reported, the X1 Carbon's print has failed and the A1 has paused for its runout.
fn fleet_settled(printers: &[crate::service::fleet::Printer]) -> bool {
    let state = |id: &str| {
        printers
            .iter()
            .find(|p| p.row.id == id)
            .and_then(|p| p.row.state.as_ref())
            .map(|s| s.state.as_str())
    };
    SCENARIOS.iter().all(|s| state(s.serial).is_some())
        && state("00M09A351100002") == Some("failed")
        && state("03919D391800004") == Some("paused")
}

/// Runs `suite` against every ready tier of `state`'s assistant, prints a table per tier
/// and writes everything to `<data_dir>/eval-results.json`. 1 when nothing could run.
async fn evaluate(
    state: &crate::api::AppState,
    suite: &Suite,
    data_dir: &Path,
) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let printers = loop {
        let printers = state.services.fleet.printers().await?;
        if fleet_settled(&printers) {
            break printers;
        }
        if started.elapsed() > FLEET_DEADLINE {
            let reported = printers.iter().filter(|p| p.row.state.is_some()).count();
            print_line(&format!(
                "kitt eval: the fleet did not settle in {}s ({reported} of {} printers reported); \
                 evaluating anyway",
                FLEET_DEADLINE.as_secs(),
                SCENARIOS.len()
            ));
            break printers;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ids: Vec<String> = printers.iter().map(|p| p.row.id.clone()).collect();
    print_line(&format!(
        "kitt eval: {} printers up after {:.0}s; {} cases",
        ids.len(),
        started.elapsed().as_secs_f64(),
        suite.cases.len()
    ));
    let tiers = state.assistant.ready_tier_names();
    if tiers.is_empty() {
        print_line(&format!(
            "kitt eval: no model tier is ready (configured: {}); set [assistant] model or \
             KITT_CHAT_MODEL, or [[assistant.tiers]]",
            state.assistant.tier_names().join(", ")
        ));
        return Ok(1);
    }
    let person = Principal::user("admin", Role::Admin, Via::Session);
    let mut summaries = Vec::new();
    let mut results = Vec::new();
    for tier in &tiers {
        let Some(assistant) = state.assistant.only_tier(tier) else { continue };
        print_line(&format!("kitt eval: tier {tier}"));
        let mut scores = Vec::new();
        for case in &suite.cases {
            let observation = observe(&assistant, &person, tier, case).await;
            let score = eval::score(case, &observation, &ids);
            print_line(&eval::case_line(case, &observation, &score));
            results.push(serde_json::json!({"observation": observation, "score": score}));
            scores.push(score);
        }
        summaries.push(eval::summarize(tier, &scores));
    }
    print_line(&format!("\n{}", eval::table(&summaries)));
    let path = data_dir.join("eval-results.json");
    let json = serde_json::json!({
        "at": UnixMillis::now().0,
        "printers": ids,
        "summaries": summaries,
        "results": results,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    print_line(&format!("kitt eval: results in {}", path.display()));
    let ran = summaries.iter().any(|s| s.errors < s.cases);
    Ok(if ran { 0 } else { 1 })
}

/// One case on one tier: a one-message turn, never stored, its events collected.
async fn observe(
    assistant: &crate::assistant::Assistant,
    person: &Principal,
    tier: &str,
    case: &eval::Case,
) -> eval::Observation {
    let mut observation = eval::Observation::new(&case.id, tier);
    let (tx, mut rx) = mpsc::channel(64);
    let started = std::time::Instant::now();
    let history = vec![Message::new(Speaker::User, case.ask.clone())];
    let turn = async move { assistant.complete(person, history, Depth::default(), &tx).await };
    let collect = async {
        while let Some(event) = rx.recv().await {
            observation.record(&event, started.elapsed().as_millis() as u64);
        }
    };
    let outcome =
        tokio::time::timeout(CASE_DEADLINE, async { tokio::join!(turn, collect).0 }).await;
    observation.latency_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => observation.error = Some(error.to_string()),
        Err(_) => {
            observation.error = Some(format!("no answer in {}s", CASE_DEADLINE.as_secs()));
        }
    }
    observation
}

/// Every simulated Bambu printer serves the A1/P1 port-6000 camera protocol (the X1C
/// included: the simulator has no RTSPS server), so each agent watches its printer over it;
/// a Klipper printer's camera is the webcam its Moonraker lists. A snapshot a minute while
/// printing, so the demo's timelines fill quickly.
fn agent_toml(scenario: &Scenario, state: &Path, ca: &Path, port: u16, camera_port: u16) -> String {
    if scenario.kind == Kind::Klipper {
        return format!(
            "state_dir = \"{}\"\n\n[telemetry]\ninterval_ms = 1000\nhealth_interval_s = 30\n\n\
             [[printer]]\nkind = \"moonraker\"\nid = \"{}\"\nname = \"{}\"\nmodel = \"{}\"\n\
             url = \"http://127.0.0.1:{port}\"\nweb_port = {camera_port}\n\n\
             [[printer.camera]]\nsource = \"moonraker\"\nsnapshot_every_min = 1\n\
             snapshot_every_layers = 5\n",
            state.display(),
            scenario.serial,
            scenario.name,
            scenario.model,
        );
    }
    format!(
        "state_dir = \"{}\"\n\n[telemetry]\ninterval_ms = 1000\nhealth_interval_s = 30\n\n\
         [[printer]]\nserial = \"{}\"\nname = \"{}\"\nmodel = \"{}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         access_code = \"{ACCESS_CODE}\"\nca = \"{}\"\n\n\
         [[printer.camera]]\nsource = \"bambu\"\nport = {camera_port}\nsnapshot_every_min = 1\n\
         snapshot_every_layers = 5\n",
        state.display(),
        scenario.serial,
        scenario.name,
        scenario.model,
        ca.display()
    )
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
}
