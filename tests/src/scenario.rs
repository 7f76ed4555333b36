//! A fleet of real processes for the system scenarios (`tests/it/scenarios.rs`): `kitt-hub
//! serve`, `kitt-printer-sim` printers that each write an emit log, and `kitt-agent run`
//! agents, each reaching the hub through a UDP impairment relay of its own ([`Relay`]), so a
//! test can cut one agent's link while the others carry on.
//!
//! Timeouts are short on both sides of the link (QUIC keep-alive 1 s, idle timeout 3 s), so
//! a cut longer than 3 s is to both ends what a cut of hours is: the connection is dead,
//! the hub shows the agent offline, and the agent must connect again. The printers and
//! agents run exactly as deployed otherwise; the agent's outbox, the hub's database (SQLite
//! in the data directory, or a PostgreSQL URL) and every file live under one temporary
//! directory per [`Fleet`].
//!
//! Waiting is on events: a process's output lines ([`Process::wait_line`]; agents and the
//! hub have their log among them), or state another process holds (the hub's database and
//! HTTP API, a simulator's emit log), polled every 20 ms until it holds ([`wait_until`]),
//! never on the clock. [`Fleet::check`] runs the checker ([`crate::checker`]) until the hub
//! has caught up, or until its patience runs out and the report says what is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use edge_agent::outbox::{Outbox, OutboxConfig};
use hub::db::Db;
use proto::{
    AgentId, PrintState, PrinterId, PrinterState, PrinterTelemetry, Record, RecordBody, Seq,
};
use serde_json::Value;

use crate::PATIENCE;
use crate::checker::{self, Emitted, PrinterLog, Report, Rules};
pub use crate::fleet::wait_until;
use crate::process::{Process, bin};
use crate::relay::Relay;

/// The access code of every simulated printer unless a scenario says otherwise.
pub const ACCESS_CODE: &str = "12345678";

/// How long the checker waits for the hub to catch up with the printers.
pub const SETTLE: Duration = Duration::from_secs(30);

/// QUIC keep-alive and idle timeout, seconds, on both sides of every link.
pub const KEEP_ALIVE_S: u64 = 1;
pub const IDLE_TIMEOUT_S: u64 = 3;

/// A hub, printers and agents under one temporary directory.
#[derive(Debug)]
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub hub: Hub,
}

impl Fleet {
    /// A fleet whose hub keeps its data in SQLite.
    pub fn start() -> Fleet {
        Fleet::start_with(None)
    }

    /// A fleet whose hub keeps its data at `database_url` (PostgreSQL), or in SQLite.
    pub fn start_with(database_url: Option<String>) -> Fleet {
        crate::init();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hub = Hub::start(&dir.path().join("hub"), database_url);
        Fleet { dir, hub }
    }

    /// Starts a simulated printer.
    pub fn printer(&self, spec: PrinterSpec) -> Printer {
        Printer::start(&self.dir.path().join("printers").join(spec.serial), spec)
    }

    /// Enrolls an agent (through a relay of its own) and starts it.
    pub async fn agent(&self, spec: AgentSpec) -> Agent {
        let mut agent = self.enroll(spec).await;
        agent.start();
        agent
    }

    /// Enrolls an agent without starting it.
    pub async fn enroll(&self, spec: AgentSpec) -> Agent {
        Agent::enroll(&self.hub, &self.dir.path().join("agents").join(&spec.name), spec).await
    }

    /// Runs the checker on `agent`'s records at the hub against `printers`' emit logs until
    /// it passes or [`SETTLE`] runs out; returns the last report.
    pub async fn check(&self, agent: &Agent, printers: &[&Printer], rules: &Rules) -> Report {
        // The hub and the printers are other processes: nothing to wake on but their data.
        let passed = crate::fleet::wait_until(SETTLE, "the checker to pass", || async {
            let report = self.check_once(agent, printers, rules).await;
            report.passed().then_some(report)
        })
        .await;
        match passed {
            Ok(report) => report,
            Err(_) => self.check_once(agent, printers, rules).await,
        }
    }

    async fn check_once(&self, agent: &Agent, printers: &[&Printer], rules: &Rules) -> Report {
        let logs: Vec<(String, Result<Vec<Emitted>, String>)> =
            printers.iter().map(|p| (p.serial.clone(), p.emitted())).collect();
        let mut report = Report::default();
        let records = match self.hub.db().await {
            Ok(db) => db.records(&agent.id).await.map_err(|e| e.to_string()),
            Err(error) => Err(error),
        };
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                report.problems.push(format!("cannot read the hub's records: {error}"));
                return report;
            }
        };
        let mut printer_logs = Vec::new();
        for (serial, log) in &logs {
            match log {
                Ok(emitted) => printer_logs.push(PrinterLog { serial, emitted }),
                Err(error) => report.problems.push(error.clone()),
            }
        }
        if !report.problems.is_empty() {
            return report;
        }
        let mut report = checker::check(&printer_logs, &records, rules);
        if report.passed() {
            self.check_event_log(printers, &records, &mut report);
        }
        report
    }

    /// The event log the dashboard and scripts read (`GET /api/v1/events`) against the
    /// records: the same events of each printer, in the same order.
    fn check_event_log(&self, printers: &[&Printer], records: &[Record], report: &mut Report) {
        let mut shown = 0;
        for printer in printers {
            let stored = checker::event_kinds(&printer.serial, records);
            let listed = self.hub.get(&format!("/events?printer={}&limit=1000", printer.serial));
            let mut listed: Vec<String> = match listed {
                Ok(page) => page["events"]
                    .as_array()
                    .map(|events| {
                        let kind = |e: &Value| e["kind"].as_str().unwrap_or_default().to_owned();
                        events.iter().map(kind).collect()
                    })
                    .unwrap_or_default(),
                Err(problem) => {
                    report.problems.push(problem);
                    return;
                }
            };
            listed.reverse();
            if listed != stored {
                report.problems.push(format!(
                    "GET /api/v1/events for {} lists {listed:?}, the records hold {stored:?}",
                    printer.serial
                ));
            }
            shown += listed.len();
        }
        report.api_events = Some(shown);
    }
}

/// A program the test may kill and start again: its current process, if any.
#[derive(Debug, Default)]
pub struct Running(Option<Process>);

impl Running {
    /// The process, taken out (to wait for its exit).
    pub fn take(&mut self) -> Option<Process> {
        self.0.take()
    }

    /// The current process (to wait for its output lines).
    pub fn process(&self) -> &Process {
        self.0.as_ref().expect("the program is running")
    }

    /// Whether the process is still running (it never crashed).
    pub fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(Process::is_running)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(process) = self.0.take() {
            process.kill9();
        }
    }
}

/// A `kitt-hub serve` process, restartable on the same addresses, and its storage.
#[derive(Debug)]
pub struct Hub {
    pub running: Running,
    pub data_dir: PathBuf,
    config: PathBuf,
    database_url: Option<String>,
    pub sync_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// An admin's API token.
    api_token: String,
}

impl Hub {
    fn start(data_dir: &Path, database_url: Option<String>) -> Hub {
        std::fs::create_dir_all(data_dir).expect("the hub's directory");
        let config = data_dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\ndrain_s = 0\n[sync]\nkeep_alive_s = {KEEP_ALIVE_S}\nidle_timeout_s = {IDLE_TIMEOUT_S}\n"
            ),
        )
        .expect("write hub.toml");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let mut hub = Hub {
            running: Running::default(),
            data_dir: data_dir.to_owned(),
            config,
            database_url,
            sync_addr: loopback,
            http_addr: loopback,
            api_token: String::new(),
        };
        hub.spawn();
        let added = hub.cli(&["user", "add", "admin", "--role", "admin"]);
        assert!(added.status.success(), "kitt-hub user add: {added:?}");
        let token = hub.cli(&["user", "token", "admin"]);
        assert!(token.status.success(), "kitt-hub user token: {token:?}");
        hub.api_token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        hub
    }

    fn spawn(&mut self) {
        let mut command = self.command();
        command
            .args(["serve", "--sync-listen", &self.sync_addr.to_string()])
            .args(["--http-listen", &self.http_addr.to_string()])
            .env("KITT_LOG", "warn,hub=info");
        let process = Process::spawn_logged(&mut command);
        // "kitt-hub ready in N ms: API on http://ADDR, agents on udp/ADDR (data in …)"
        let line = process.wait_line("kitt-hub ready");
        let after = |prefix: &str, end: char| {
            line.split(prefix)
                .nth(1)
                .and_then(|rest| rest.split(end).next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {prefix} address in {line:?}"))
        };
        self.http_addr = after("http://", ',');
        self.sync_addr = after("udp/", ' ');
        self.running.0 = Some(process);
    }

    /// `kitt-hub` with this hub's configuration and storage.
    fn command(&self) -> Command {
        let mut command = Command::new(bin("kitt-hub"));
        command.arg("--config").arg(&self.config).arg("--data-dir").arg(&self.data_dir);
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command
    }

    /// Runs `kitt-hub <args>` on this hub's storage, as an operator would.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("kitt-hub runs")
    }

    /// `kill -9` (unless stopped), then the hub again on the same addresses.
    pub fn restart(&mut self) {
        self.running.kill9();
        self.spawn();
    }

    /// A single-use enrollment token for an agent called `name`, approving `printers`.
    pub fn enrollment_token(&self, name: &str, printers: &[&str]) -> String {
        let mut args = vec!["token", "create", "--name", name];
        for printer in printers {
            args.extend(["--printer", printer]);
        }
        let token = self.cli(&args);
        assert!(token.status.success(), "kitt-hub token create: {token:?}");
        String::from_utf8_lossy(&token.stdout).trim().to_owned()
    }

    /// `GET /api/v1<path>` as the admin: the JSON body of a 200, else what went wrong.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.call("GET", path, None)
    }

    /// `POST /api/v1<path>` with a JSON body, as the admin.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call("POST", path, Some(&body.to_string()))
    }

    /// `PUT /api/v1<path>` with a JSON body, as the admin.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call("PUT", path, Some(&body.to_string()))
    }

    /// A Spoolman client's base URL path (`/spoolman/<token>`), made with `kitt-hub spoolman
    /// client add`, as an operator sets up Moonraker or Home Assistant.
    pub fn spoolman_client(&self, name: &str) -> Result<String, String> {
        let output = self.cli(&["spoolman", "client", "add", name]);
        if !output.status.success() {
            return Err(format!("kitt-hub spoolman client add: {output:?}"));
        }
        let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let at = url.find("/spoolman/").ok_or_else(|| format!("no /spoolman/ in {url:?}"))?;
        Ok(url[at..].to_owned())
    }

    /// A request to the Spoolman API under a client's base path, with no credentials, as
    /// Spoolman's clients send them: the JSON body of a 2xx, else what went wrong.
    pub fn spoolman(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let body = body.map(Value::to_string);
        let full = format!("{base}/api/v1{path}");
        let response = crate::http::request(self.http_addr, method, &full, &[], body.as_deref())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if (200..300).contains(&response.status) {
            Ok(response.json())
        } else {
            Err(format!("{method} {path}: {} {}", response.status, response.body))
        }
    }

    /// `POST /api/v1/files` with `bytes` as the multipart field `file` named `name`.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<Value, String> {
        let boundary = "kitt-scenario-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.send("POST", "/files", Some((&content_type, &body)))
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, String> {
        self.send(method, path, body.map(|body| ("application/json", body.as_bytes())))
    }

    fn send(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Value, String> {
        self.api().send(method, path, body)
    }

    /// The admin's view of the HTTP API alone, for other threads (a `Hub` holds its
    /// process's output, which one thread reads).
    pub fn api(&self) -> Api {
        Api { http_addr: self.http_addr, api_token: self.api_token.clone() }
    }

    /// An agent as `GET /api/v1/agents` shows it.
    pub fn agent_json(&self, id: &AgentId) -> Option<Value> {
        let agents = self.get("/agents").ok()?;
        agents["agents"].as_array()?.iter().find(|a| a["id"] == id.as_str()).cloned()
    }

    /// Waits until `GET /api/v1/agents` shows the agent online (or offline).
    pub async fn wait_online(&self, id: &AgentId, online: bool) -> Result<Value, String> {
        let what = format!("the hub showing {id} {}", if online { "online" } else { "offline" });
        wait_until(PATIENCE, &what, || async {
            self.agent_json(id).filter(|agent| agent["online"] == online)
        })
        .await
    }

    /// A printer as `GET /api/v1/printers/{id}` shows it.
    pub fn printer_json(&self, serial: &str) -> Option<Value> {
        self.get(&format!("/printers/{serial}")).ok()
    }

    /// Sends a command (`{"action": …}` and its fields) to a printer: its id, and the
    /// status the hub answered (`sent`, or `queued: …` while the agent is offline).
    pub fn command_printer(&self, serial: &str, body: &Value) -> Result<(String, String), String> {
        let answer = self.post(&format!("/printers/{serial}/commands"), body)?;
        let id = answer["id"].as_str().ok_or_else(|| format!("no id in {answer}"))?;
        Ok((id.to_owned(), answer["status"].as_str().unwrap_or_default().to_owned()))
    }

    /// A command's outcome (`succeeded`, `expired`, …) once it has one.
    pub fn command_outcome(&self, id: &str) -> Option<String> {
        let command = self.get(&format!("/commands/{id}")).ok()?;
        command["outcome"].as_str().map(str::to_owned)
    }

    /// The hub's database, opened beside the running hub (SQLite allows a second reader).
    pub async fn db(&self) -> Result<Db, String> {
        let opened = match &self.database_url {
            Some(url) => Db::open(url).await,
            None => Db::open_sqlite(&self.data_dir).await,
        };
        opened.map_err(|e| e.to_string())
    }

    /// The hub's CA certificate, DER: what a client must trust to reach it.
    pub fn ca_der(&self) -> Vec<u8> {
        hub::ca::HubCa::load_or_create(&self.data_dir).expect("the hub's CA").cert_der().to_vec()
    }
}

/// A hub's HTTP API as its admin: `Send` and `Sync`, unlike [`Hub`].
#[derive(Debug, Clone)]
pub struct Api {
    http_addr: SocketAddr,
    api_token: String,
}

impl Api {
    /// `GET /api/v1<path>`: the JSON body of a 200, else what went wrong.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.send("GET", path, None)
    }

    /// `POST /api/v1<path>` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send("POST", path, Some(("application/json", body.to_string().as_bytes())))
    }

    fn send(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Value, String> {
        let authorization = format!("Bearer {}", self.api_token);
        let response = crate::http::request_bytes(
            self.http_addr,
            method,
            &format!("/api/v1{path}"),
            &[("Authorization", &authorization)],
            body,
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        if (200..300).contains(&response.status) {
            Ok(response.json())
        } else {
            Err(format!("{method} {path}: {} {}", response.status, response.body))
        }
    }
}

/// How to run one simulated printer.
#[derive(Debug, Clone)]
pub struct PrinterSpec {
    pub serial: &'static str,
    pub access_code: &'static str,
    /// `kitt-printer-sim` options and their values, each once.
    options: Vec<(String, Option<String>)>,
    /// A Klipper printer behind Moonraker (`--kind moonraker`); `serial` is its id.
    klipper: bool,
}

impl PrinterSpec {
    /// A P1S without camera that reports every 100 ms and takes 250 ms a layer, idle until
    /// told otherwise.
    pub fn new(serial: &'static str) -> PrinterSpec {
        PrinterSpec { serial, access_code: ACCESS_CODE, options: Vec::new(), klipper: false }
            .option("--model", "C12")
            .option("--report-ms", "100")
            .option("--layer-ms", "250")
            .flag("--no-camera")
    }

    /// A Klipper printer behind Moonraker called `id`, without webcam, 250 ms a layer, idle
    /// until told otherwise.
    pub fn klipper(id: &'static str) -> PrinterSpec {
        PrinterSpec { serial: id, access_code: "", options: Vec::new(), klipper: true }
            .option("--kind", "moonraker")
            .option("--name", id)
            .option("--layer-ms", "250")
            .flag("--no-camera")
    }

    /// Starts a job of `layers` layers at once.
    pub fn job(self, name: &str, layers: u32) -> PrinterSpec {
        self.option("--autostart-job", name).option("--layers", &layers.to_string())
    }

    /// Another access code than [`ACCESS_CODE`].
    pub fn access_code(mut self, code: &'static str) -> PrinterSpec {
        self.access_code = code;
        self
    }

    /// A `kitt-printer-sim` option, replacing its earlier value.
    pub fn option(mut self, name: &str, value: &str) -> PrinterSpec {
        self.options.retain(|(known, _)| known != name);
        self.options.push((name.to_owned(), Some(value.to_owned())));
        self
    }

    /// A `kitt-printer-sim` flag.
    pub fn flag(mut self, name: &str) -> PrinterSpec {
        self.options.retain(|(known, _)| known != name);
        self.options.push((name.to_owned(), None));
        self
    }

    fn args(&self) -> Vec<String> {
        let arg = |(name, value): &(String, Option<String>)| {
            std::iter::once(name.clone()).chain(value.clone())
        };
        self.options.iter().flat_map(arg).collect()
    }
}

/// One of several `kitt-hub serve` processes on one PostgreSQL: its own name, data
/// directory and addresses, maybe a wall clock that is off (libfaketime). Killed with
/// `kill -9`, frozen with SIGSTOP and thawed with SIGCONT, started again.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub running: Running,
    pub http_addr: SocketAddr,
    data_dir: PathBuf,
    config: PathBuf,
    database_url: String,
    clock_off: Option<String>,
}

impl Replica {
    /// Starts `kitt-hub serve` as replica `name`, with `extra` added to its configuration
    /// file (TOML) and its wall clock `clock_off` (libfaketime's syntax, `+5m`) when given.
    pub fn start(
        dir: &Path,
        database_url: &str,
        name: &str,
        extra: &str,
        clock_off: Option<&str>,
    ) -> Replica {
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir).expect("the replica's directory");
        let config = data_dir.join("hub.toml");
        std::fs::write(&config, format!("replica_name = \"{name}\"\n{extra}"))
            .expect("write hub.toml");
        let mut replica = Replica {
            name: name.to_owned(),
            running: Running::default(),
            http_addr: "127.0.0.1:0".parse().expect("an address"),
            data_dir,
            config,
            database_url: database_url.to_owned(),
            clock_off: clock_off.map(str::to_owned),
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let mut command = match &self.clock_off {
            Some(offset) => {
                let mut command = Command::new("faketime");
                command
                    .args(["-m", "-f", offset])
                    .arg(bin("kitt-hub"))
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                command
            }
            None => Command::new(bin("kitt-hub")),
        };
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database-url", &self.database_url])
            // A restart in place keeps its HTTP address (a load balancer lists it).
            .args(["serve", "--sync-listen", "127.0.0.1:0", "--http-listen"])
            .arg(self.http_addr.to_string())
            .env("KITT_LOG", "warn,hub=info");
        let process = Process::spawn_logged(&mut command);
        let line = process.wait_line("kitt-hub ready");
        self.http_addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP address in {line:?}"));
        self.running.0 = Some(process);
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.running.kill9();
    }

    /// Started again (after `kill -9`), on new addresses.
    pub fn restart(&mut self) {
        self.running.kill9();
        self.http_addr.set_port(0);
        self.spawn();
    }

    /// Stopped as systemd stops it (SIGTERM: it drains, then exits), then started again on
    /// the same HTTP address, as in a rolling upgrade: how it exited.
    pub fn restart_in_place(&mut self) -> std::process::ExitStatus {
        let process = self.running.take().expect("the replica is running");
        let status = process.terminate();
        self.spawn();
        status
    }

    fn signal(&self, signal: &str) {
        let pid = self.running.process().child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    /// SIGSTOP: the process stops where it is, connections and leases held, until thawed.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// `kitt-hub <args>` on this replica's configuration and database, as an operator would.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("kitt-hub"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database-url", &self.database_url])
            .args(args)
            .output()
            .expect("kitt-hub runs")
    }

    /// A request to `/api/v1<path>` with the bearer `token`: the JSON body of a 2xx, else
    /// what went wrong.
    pub fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let authorization = format!("Bearer {token}");
        let body = body.map(Value::to_string);
        let response = crate::http::request_bytes(
            self.http_addr,
            method,
            &format!("/api/v1{path}"),
            &[("Authorization", &authorization)],
            body.as_deref().map(|b| ("application/json", b.as_bytes())),
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        if (200..300).contains(&response.status) {
            Ok(response.json())
        } else {
            Err(format!("{method} {path}: {} {}", response.status, response.body))
        }
    }

    /// The wall clock this replica's process reads (the `Date` of its HTTP answer), Unix s.
    pub fn wall_clock(&self) -> Option<i64> {
        let response = crate::http::request(self.http_addr, "GET", "/readyz", &[], None).ok()?;
        let (_, date) = response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("date"))?;
        httpdate_seconds(date)
    }
}

/// An HTTP date (`Fri, 04 Dec 2026 13:50:17 GMT`) as Unix seconds.
fn httpdate_seconds(date: &str) -> Option<i64> {
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, _] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, m, s] = hms.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// A `kitt-printer-sim` process writing its emit log; replaceable by another printer on the
/// same address (each run has its own directory, CA and log).
#[derive(Debug)]
pub struct Printer {
    pub running: Running,
    pub serial: String,
    pub addr: SocketAddr,
    /// Where its FTPS server listens (a Bambu printer's, unless `--no-ftps`).
    pub ftps: Option<SocketAddr>,
    pub access_code: &'static str,
    dir: PathBuf,
    runs: u32,
    spec: PrinterSpec,
}

impl Printer {
    fn start(dir: &Path, spec: PrinterSpec) -> Printer {
        let mut printer = Printer {
            running: Running::default(),
            serial: spec.serial.to_owned(),
            addr: "127.0.0.1:0".parse().expect("an address"),
            ftps: None,
            access_code: spec.access_code,
            dir: dir.to_owned(),
            runs: 0,
            spec,
        };
        printer.spawn();
        printer
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let run = self.run_dir(self.runs);
        std::fs::create_dir_all(&run).expect("the printer's directory");
        let mut command = Command::new(bin("kitt-printer-sim"));
        command.args(["--bind", &self.addr.to_string()]).args(self.spec.args());
        if !self.spec.klipper {
            command
                .args(["--serial", self.spec.serial, "--access-code", self.spec.access_code])
                .arg("--ca-out")
                .arg(&run)
                .arg("--emit-log")
                .arg(run.join("emit.jsonl"));
        }
        let process = Process::spawn(command.env("RUST_LOG", "warn"));
        let address = |line: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|word| word.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
        };
        if self.spec.klipper {
            self.addr = address(&process.wait_line("kitt-printer-sim moonraker listening on"));
        } else {
            self.addr = address(&process.wait_line("kitt-printer-sim listening on"));
            let serves_ftps = !self.spec.options.iter().any(|(name, _)| name == "--no-ftps");
            if serves_ftps {
                self.ftps = Some(address(&process.wait_line("kitt-printer-sim ftps listening on")));
            }
        }
        self.running.0 = Some(process);
    }

    fn run_dir(&self, run: u32) -> PathBuf {
        self.dir.join(format!("run-{run}"))
    }

    /// The CA certificate of the printer's current identity, PEM.
    pub fn ca(&self) -> PathBuf {
        self.run_dir(self.runs).join("ca.pem")
    }

    /// What the printer emitted, every run's log in order.
    pub fn emitted(&self) -> Result<Vec<Emitted>, String> {
        let mut all = Vec::new();
        for run in 1..=self.runs {
            let path = self.run_dir(run).join("emit.jsonl");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            all.extend(checker::parse_emit_log(&text)?);
        }
        Ok(all)
    }

    /// Waits until the printer emitted a line `want` accepts; returns it.
    pub async fn wait_emitted(
        &self,
        what: &str,
        want: impl Fn(&Emitted) -> bool,
    ) -> Result<Emitted, String> {
        wait_until(SETTLE, what, || async {
            self.emitted().ok()?.into_iter().find(|line| want(line))
        })
        .await
    }

    /// Replaces the printer with another on the same address: a new process with a new
    /// certificate from a new CA (a reset or swapped printer, or another device there).
    pub fn replace(&mut self) {
        self.running.kill9();
        self.spawn();
    }
}

/// Accepts emit log lines of one kind (for [`Printer::wait_emitted`]).
pub fn kind(kind: &'static str) -> impl Fn(&Emitted) -> bool {
    move |line| line.kind == kind
}

/// How to configure one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    printers: Vec<String>,
    /// The printers' serials: the enrollment token approves them.
    serials: Vec<String>,
    outbox_mb: u64,
    telemetry_ms: u64,
    health_s: u64,
}

impl AgentSpec {
    /// An agent watching no printer yet: telemetry every 200 ms, health every second, the
    /// default 64 MiB outbox.
    pub fn new(name: &str) -> AgentSpec {
        AgentSpec {
            name: name.to_owned(),
            printers: Vec::new(),
            serials: Vec::new(),
            outbox_mb: 64,
            telemetry_ms: 200,
            health_s: 1,
        }
    }

    /// Watches `printer`, trusting its CA, with its access code.
    pub fn printer(self, printer: &Printer) -> AgentSpec {
        let ca = format!("ca = \"{}\"\n", printer.ca().display());
        self.printer_with(printer, printer.access_code, &ca)
    }

    /// Watches `printer` with another access code than its own.
    pub fn printer_with_code(self, printer: &Printer, access_code: &str) -> AgentSpec {
        let ca = format!("ca = \"{}\"\n", printer.ca().display());
        self.printer_with(printer, access_code, &ca)
    }

    /// Watches `printer` without its CA: the agent pins its key on first use.
    pub fn printer_pinned(self, printer: &Printer) -> AgentSpec {
        self.printer_with(printer, printer.access_code, "")
    }

    fn printer_with(mut self, printer: &Printer, access_code: &str, ca: &str) -> AgentSpec {
        let ftps = printer.ftps.map(|addr| format!("ftps_port = {}\n", addr.port()));
        self.printers.push(format!(
            "[[printer]]\nserial = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\naccess_code = \"{access_code}\"\n{ca}{}builtin_camera = false\n",
            printer.serial,
            printer.addr.port(),
            ftps.unwrap_or_default(),
        ));
        self.serials.push(printer.serial.to_string());
        self
    }

    /// Watches a Klipper printer (`PrinterSpec::klipper`) through its Moonraker.
    pub fn klipper(mut self, printer: &Printer) -> AgentSpec {
        self.printers.push(format!(
            "[[printer]]\nkind = \"moonraker\"\nid = \"{}\"\nurl = \"http://{}\"\nbuiltin_camera = false\n",
            printer.serial, printer.addr,
        ));
        self.serials.push(printer.serial.to_string());
        self
    }

    /// The outbox's budget for telemetry, events and health, MiB (at least 8).
    pub fn outbox_mb(mut self, mb: u64) -> AgentSpec {
        self.outbox_mb = mb;
        self
    }

    /// At most one telemetry sample per printer per `ms` (at least 100).
    pub fn telemetry_ms(mut self, ms: u64) -> AgentSpec {
        self.telemetry_ms = ms;
        self
    }

    fn config(&self, state_dir: &Path) -> String {
        format!(
            "state_dir = \"{}\"\n[outbox]\ncapacity_mb = {}\n\
             [sync]\nkeep_alive_s = {KEEP_ALIVE_S}\nidle_timeout_s = {IDLE_TIMEOUT_S}\n\
             [telemetry]\ninterval_ms = {}\nhealth_interval_s = {}\n{}",
            state_dir.display(),
            self.outbox_mb,
            self.telemetry_ms,
            self.health_s,
            self.printers.join("")
        )
    }
}

/// A `kitt-agent run` process, enrolled with the hub through its own [`Relay`].
#[derive(Debug)]
pub struct Agent {
    pub running: Running,
    spec: AgentSpec,
    pub id: AgentId,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub relay: Relay,
    /// Restarts after a `kill -9`.
    pub restarts: u32,
}

impl Agent {
    async fn enroll(hub: &Hub, dir: &Path, spec: AgentSpec) -> Agent {
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).expect("the agent's state directory");
        let relay = Relay::start(hub.sync_addr).await;
        let serials: Vec<&str> = spec.serials.iter().map(String::as_str).collect();
        let token = hub.enrollment_token(&spec.name, &serials);
        let enrolled = Command::new(bin("kitt-agent"))
            .args(["enroll", "--hub", &relay.addr.to_string(), "--token", &token, "--state-dir"])
            .arg(&state_dir)
            .output()
            .expect("kitt-agent runs");
        assert!(enrolled.status.success(), "kitt-agent enroll: {enrolled:?}");
        let config = dir.join("agent.toml");
        std::fs::write(&config, spec.config(&state_dir)).expect("write agent.toml");
        let id = AgentId::new(spec.name.clone()).expect("a valid agent name");
        Agent { running: Running::default(), spec, id, state_dir, config, relay, restarts: 0 }
    }

    /// Points the configuration at another state directory (the files are the caller's to
    /// move there).
    pub fn use_state_dir(&mut self, state_dir: &Path) {
        std::fs::write(&self.config, self.spec.config(state_dir)).expect("write agent.toml");
    }

    /// `kitt-agent run`.
    pub fn start(&mut self) {
        let mut command = Command::new(bin("kitt-agent"));
        command.args(["run", "--config"]).arg(&self.config);
        self.start_as(command);
    }

    /// `kitt-agent run` on a machine whose wall clock is `offset` off (libfaketime's syntax:
    /// `-3h`, `+3h`; the monotonic clock stays true), as on a Raspberry Pi without a
    /// real-time clock that booted during an outage. Needs Debian's `faketime`.
    pub fn start_with_clock_off(&mut self, offset: &str) {
        let mut command = Command::new("faketime");
        command
            .args(["-m", "-f", offset])
            .arg(bin("kitt-agent"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        self.start_as(command);
    }

    /// Runs `command` (a `kitt-agent run`, perhaps inside a wrapper) as this agent.
    pub fn start_as(&mut self, mut command: Command) {
        command.env("KITT_LOG", "warn,edge_agent=info");
        self.running.0 = Some(Process::spawn_logged(&mut command));
    }

    /// `kill -9` (unless stopped), then `kitt-agent run` again on the same state directory.
    pub fn restart(&mut self) {
        self.running.kill9();
        self.restarts += 1;
        self.start();
    }

    /// SIGTERM; whether it stopped cleanly.
    pub fn terminate(&mut self) -> bool {
        self.running.0.take().is_some_and(|process| process.terminate().success())
    }

    /// Cuts the link to the hub (every datagram dropped, both ways), or restores it.
    pub fn cut(&self, cut: bool) {
        self.relay.partition(cut);
    }
}

/// Fills the outbox in `state_dir` with `bytes` of telemetry of `serial` (encoded bodies),
/// as an outage of hours would leave it, before the agent starts; returns their seqs.
/// Written by the agent's own outbox code, with the agent's budget.
pub fn fill_outbox(
    state_dir: &Path,
    capacity_mb: u64,
    serial: &str,
    bytes: u64,
) -> std::ops::RangeInclusive<u64> {
    let mut config = OutboxConfig::new(state_dir.join("outbox.db"));
    config.capacity_bytes = capacity_mb << 20;
    let (mut outbox, _) = Outbox::open(config).expect("the agent's outbox opens");
    let printer = PrinterId::new(serial).expect("a valid serial");
    // A realistic sample: an idle P1S with an AMS of four spools (about 250 bytes encoded).
    let tray = |slot: u8| proto::Tray {
        slot,
        material: Some("PLA".into()),
        color: Some(proto::Rgb([0xDE, 0x43, 0x43])),
        remain_percent: Some(80),
        tray_uuid: Some(format!("{slot:0>32}")),
    };
    let state = PrinterState {
        state: PrintState::Idle,
        nozzle_temp_c: Some(26.0),
        nozzle_target_c: Some(0.0),
        bed_temp_c: Some(26.0),
        bed_target_c: Some(0.0),
        ams: vec![proto::AmsUnit {
            id: 0,
            kind: proto::AmsKind::Ams,
            humidity: Some(4),
            temp_c: Some(25.5),
            trays: (0..4).map(tray).collect(),
        }],
        model: Some("C12".into()),
        firmware: Some("01.08.02.00".into()),
        ..PrinterState::default()
    };
    let start = proto::UnixMillis::now().0 - 3_600_000;
    let mut first = None;
    let mut last = Seq::ZERO;
    let mut n = 0_i64;
    while outbox.stats().bytes < bytes {
        for _ in 0..1000 {
            let body = RecordBody::Telemetry(PrinterTelemetry {
                printer: printer.clone(),
                state: Box::new(PrinterState {
                    last_report_at: Some(proto::UnixMillis(start + n * 100)),
                    ..state.clone()
                }),
            });
            last = outbox.append(proto::UnixMillis(start + n * 100), body).expect("append");
            first.get_or_insert(last);
            n += 1;
        }
        outbox.commit().expect("commit");
    }
    first.map_or(1, |seq| seq.0)..=last.0
}

/// A client with a certificate from a CA of its own (not the hub's) tries to sync: the
/// hub's answer, or why the attempt failed.
pub async fn foreign_client(hub_addr: SocketAddr, hub_ca_der: &[u8]) -> Result<String, String> {
    let foreign_ca = hub::ca::HubCa::generate().map_err(|e| e.to_string())?;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr =
        rcgen::CertificateParams::default().serialize_request(&key).map_err(|e| e.to_string())?;
    let impostor = AgentId::new("impostor").expect("a valid agent name");
    let issued = foreign_ca
        .issue_agent(&impostor, csr.der(), Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    let config = edge_agent::sync::tls::sync_config(
        hub_ca_der,
        issued.chain_der.iter().map(|c| c.clone().into()).collect(),
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        edge_agent::sync::tls::Timeouts::default(),
    )
    .map_err(|e| e.to_string())?;
    let endpoint =
        edge_agent::sync::enroll::client_endpoint(hub_addr).map_err(|e| e.to_string())?;
    let attempt = async {
        let connection = endpoint
            .connect_with(config, hub_addr, proto::net::HUB_SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        // TLS 1.3: the hub checks the client certificate after the client thinks it is in.
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&[0u8; 16]).await.map_err(|e| e.to_string())?;
        let mut buffer = [0u8; 16];
        match recv.read(&mut buffer).await {
            Ok(Some(_)) => Ok("the hub answered".to_owned()),
            Ok(None) => Err("stream closed".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 10 s".into()))
}

/// Runs `program` with `disk` a fresh tmpfs of `size_mb` MiB holding a copy of `copy_of`,
/// in a mount namespace of its own (`unshare --mount`): the mount is the process's alone
/// and goes with it, however it ends. Others reach the disk through `/proc/<pid>/root`
/// ([`disk_of`]). As root only; [`tmpfs_available`] says whether it works here.
pub fn on_tmpfs(disk: &Path, size_mb: u64, copy_of: &Path, program: &Command) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size_mb}m kitt-disk \"$0\" && cp -a \"$1/.\" \"$0/\" && shift && exec \"$@\""
        ))
        .arg(disk)
        .arg(copy_of)
        .arg(program.get_program())
        .args(program.get_args());
    command
}

/// Whether a test may mount a tmpfs in a mount namespace of its own here; why not.
pub fn tmpfs_available() -> Result<(), String> {
    let (disk, copy_of) = (tempfile::tempdir(), tempfile::tempdir());
    let (disk, copy_of) = (disk.map_err(|e| e.to_string())?, copy_of.map_err(|e| e.to_string())?);
    let probe = on_tmpfs(disk.path(), 1, copy_of.path(), &Command::new("true"))
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if probe.status.success() {
        Ok(())
    } else {
        Err(format!(
            "unshare --mount and mount -t tmpfs failed ({}): {}",
            probe.status,
            String::from_utf8_lossy(&probe.stderr).trim()
        ))
    }
}

/// Where another process sees `path` of `process`'s mount namespace.
pub fn disk_of(process: &Process, path: &Path) -> PathBuf {
    let inside = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{}/root", process.child.id())).join(inside)
}

/// Writes `path` until its filesystem is full; the bytes written.
pub fn fill_disk(path: &Path) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let mut written = 0_u64;
    for chunk in [1 << 20, 4 << 10, 512] {
        let zeros = vec![0u8; chunk];
        loop {
            match file.write(&zeros) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
                Err(error) => return Err(error),
            }
        }
    }
    Ok(written)
}
