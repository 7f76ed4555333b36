//! The hub's HTTP API: the real axum router over the real database (SQLite and PostgreSQL),
//! with a real agent syncing a simulated printer where a check needs live data.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use edge_agent::sync::client::SyncStatus;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hub::app::RunningHub;
use hub::config::{HubConfig, Overrides};
use printer_sim::config::{Model, SimConfig};
use printer_sim::{SimHandle, Simulator};
use serde_json::{Value, json};
use tests::fleet::{TestAgent, agent_config, agent_config_with_camera, eventually};
use tests::print_files::{agent_holds, big_gcode, fixture};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub(crate) const SERIAL: &str = "01P00A391800321";

tests::on_both_backends!(
    a_script_with_a_token_reads_printers_and_history_and_pauses_a_printer,
    no_anonymous_access_roles_and_bad_input_get_clear_json_errors,
    a_command_to_an_offline_agent_is_held_until_it_expires_and_reported,
    login_sets_a_safe_cookie_and_failed_logins_are_rate_limited,
    the_login_limiter_counts_the_peer_unless_it_is_a_trusted_proxy,
    login_names_and_passwords_are_capped_before_any_hashing,
    a_real_user_logs_in_ahead_of_a_flood_and_a_full_queue_answers_busy,
    users_change_their_password_and_admins_reset_one_ending_sessions_and_tokens,
    the_websocket_pushes_state_and_events_as_they_are_ingested,
    every_documented_route_exists_and_operations_endpoints_answer,
    cameras_snapshot_at_milestones_serve_live_view_and_report_failures,
    print_files_are_read_kept_once_by_content_and_served,
    hostile_or_wrong_uploads_are_refused_and_leave_nothing_behind,
    the_queue_gives_a_job_to_a_printer_that_fits_once_its_plate_is_clear,
    prints_deduct_what_they_used_once_and_a_runout_is_named,
);

/// Schemathesis generates requests for every operation in the hub's own OpenAPI document
/// (its examples, boundary values and random data) against a hub with a live printer,
/// camera, events and snapshots, once as an admin and once as a viewer. No answer may be a
/// 5xx, and every answer must match the document: a documented status, content type and
/// body schema. Live view and the WebSocket are streams (a request never ends) and are
/// covered by the tests above.
#[tokio::test]
async fn a_property_based_fuzzer_finds_no_5xx_and_no_answer_outside_the_document() {
    let program = tests::schemathesis::program();
    // With the memory on (the embedding model), so its routes are fuzzed for real.
    let api = Api::start_with(None, |config| {
        config.assistant.embed_model = Some(super::assistant::embed_model());
    })
    .await;
    let admin = api.user("ada", "admin").await;
    let viewer = api.user("vera", "viewer").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = api.agent_with_camera(state.path()).await;
    sim.start_job("fuzzed", 400).await.unwrap();
    // Wait for real data: a snapshot (the job's start) and the camera's health.
    eventually(api.hub.sync.changes(), "a snapshot and camera health", || async {
        let filter = hub::db::cameras::SnapshotFilter {
            printer: SERIAL.into(),
            limit: 1,
            ..Default::default()
        };
        let snapshots = api.hub.state.db.snapshots(&filter).await.unwrap();
        let cameras = api.hub.state.db.cameras(SERIAL).await.unwrap();
        (!snapshots.is_empty() && !cameras.is_empty()).then_some(())
    })
    .await;
    let camera = api.hub.state.db.cameras(SERIAL).await.unwrap()[0].camera_id.clone();
    let dir = tempfile::tempdir().unwrap();
    // The printer routes get the real printer and camera (else every case is a 404). Taking
    // a snapshot is one operation whose contract includes a 5xx: 503 with the camera's
    // or agent's reason, 504 when the agent does not answer (the fuzzer learns the agent's
    // id from GET /agents and revokes it, so these do happen). The other: a message to the
    // assistant, 503 when no model can answer (this hub has none).
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[[operations]]\ninclude-path-regex = \"^/printers/\\\\{{id\\\\}}\"\n\
             parameters = {{ \"path.id\" = \"{SERIAL}\", \"path.camera\" = \"{camera}\" }}\n\
             \n[[operations]]\ninclude-path-regex = \"/snapshot$\"\n\
             checks.not_a_server_error.expected-statuses = \
             [\"2XX\", \"3XX\", \"4XX\", \"503\", \"504\"]\n\
             \n[[operations]]\ninclude-path-regex = \"/messages$\"\n\
             checks.not_a_server_error.expected-statuses = [\"2XX\", \"3XX\", \"4XX\", \"503\"]\n"
        ),
    )
    .unwrap();
    let base = format!("http://{}/api/v1", api.hub.http_addr);
    // The fuzzer learns ids from answers (GET /tokens, /users, /agents) and uses them, so the
    // operations that can end a caller's own access or the agent's connection run last, on
    // their own: first everything as a viewer, then the rest as an admin, then those.
    const SELF_ENDING: &str = "^/tokens/\\{id\\}$|^/users/\\{name\\}$|^/logout$|\
        ^/agents/\\{id\\}/revoke$|^/me/password$|^/users/\\{name\\}/password$";
    let admin_paths = format!("/live$|^/ws$|{SELF_ENDING}");
    let runs = [
        ("viewer", &viewer, "--exclude-path-regex", "/live$|^/ws$"),
        ("admin", &admin, "--exclude-path-regex", admin_paths.as_str()),
        ("admin, self-ending operations", &admin, "--include-path-regex", SELF_ENDING),
    ];
    let (mut tested, mut documented) = (0, 0);
    for (who, token, filter, paths) in runs {
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("--no-color")
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance",
            ])
            .args([filter, paths])
            .args(["--phases", "examples,coverage,fuzzing"])
            // One worker: with two threads, CPython 3.11's `ast.parse` (which hypothesis calls
            // to describe its filters) can fail "AST constructor recursion depth mismatch"
            // (CPython issue 106905), a failure of the fuzzer, not of the hub.
            .args(["--max-examples", "25", "--workers", "1", "--request-timeout", "30"])
            .args(["--seed", "14"])
            .current_dir(dir.path())
            .kill_on_drop(true);
        let output = command.output().await.expect("schemathesis runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "schemathesis as {who} found problems:\n{text}");
        // "Selected: 21/27" then "Tested: 21": every selected operation ran.
        let count = |label: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
                .trim()
                .to_owned()
        };
        let selected = count("Selected:");
        let (selected, total) = selected.split_once('/').expect("selected/total");
        let (selected, total): (usize, usize) =
            (selected.trim().parse().unwrap(), total.trim().parse().unwrap());
        assert_eq!(selected, count("Tested:").parse::<usize>().unwrap(), "{text}");
        tested += selected;
        documented = total;
        assert!(text.contains("passed"), "{text}");
    }
    // The viewer ran every operation but the two streams; the admin too, in two runs.
    assert_eq!(tested, 2 * (documented - 2), "operations fuzzed");
    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

/// Issue 16, item 6: a printer an admin adds from the API reaches an agent that was offline
/// when it was added; a printer the agent cannot drive comes back with its reason; secrets
/// never come back; a removed printer stops.
#[tokio::test]
async fn printers_managed_from_the_hub_reach_an_agent_that_was_away() {
    let api = Api::start(None).await;
    let admin = api.user("ada", "admin").await;
    let viewer = api.user("vic", "viewer").await;
    let state = tempfile::tempdir().unwrap();
    let (token, _) = hub::sync::token::create(
        &api.hub.state.db,
        &api.hub.sync.ca_fingerprint(),
        Some("pi-managed"),
        Duration::from_secs(600),
        proto::UnixMillis::now(),
    )
    .await
    .unwrap();
    edge_agent::sync::enroll::enroll(
        &api.hub.sync_addr.to_string(),
        &token.to_string(),
        state.path(),
    )
    .await
    .unwrap();
    let mut moonraker = printer_sim::moonraker::MoonrakerConfig::new("voron-managed");
    moonraker.api_key = Some("s3cret-key-123".into());
    moonraker.step_interval = Duration::from_millis(50);
    let sim = printer_sim::moonraker::start(moonraker).await.unwrap();

    // The agent is away: the hub keeps the list for it.
    let path = "/api/v1/agents/pi-managed/printers";
    let voron = json!({ "kind": "moonraker", "url": format!("http://{}", sim.addr()),
        "api_key": "s3cret-key-123", "web_port": sim.web_addr().unwrap().port(), "model": "Voron 2.4" });
    let (status, added) = api.put(&admin, &format!("{path}/voron-managed"), voron).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        (added["status"].as_str(), added["has_secret"].as_bool()),
        (Some("pending"), Some(true))
    );
    let broken = json!({ "kind": "moonraker", "url": "http://" });
    let (status, _) = api.put(&admin, &format!("{path}/voron-broken"), broken).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = api
        .put(&admin, &format!("{path}/x1"), json!({ "kind": "bambu", "host": "10.0.0.5" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no access code: {refused}");
    let (status, _) = api.get(&viewer, path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admins only");

    // It comes back, with no printer of its own: it drives the hub's.
    let mut agent = TestAgent::start(agent_config(state.path(), None, SERIAL));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    let list = eventually(api.hub.sync.changes(), "the agent's answer", || async {
        let (_, list) = api.get(&admin, path).await;
        (list["applied_version"] == list["version"]).then_some(list)
    })
    .await;
    assert!(!list.to_string().contains("s3cret-key-123"), "a secret came back: {list}");
    assert_eq!(list["local"], json!([]), "the agent has no printer of its own: {list}");
    let printer = |list: &Value, id: &str| {
        list["printers"].as_array().unwrap().iter().find(|p| p["id"] == id).cloned().unwrap()
    };
    assert_eq!(printer(&list, "voron-managed")["status"], "applied", "{list}");
    let broken = printer(&list, "voron-broken");
    assert_eq!(broken["status"], "error", "{list}");
    assert!(broken["error"].as_str().unwrap().starts_with("url:"), "{broken}");
    let state_json = eventually(api.hub.sync.changes(), "the Voron's state at the hub", || async {
        let (status, printer) = api.get(&admin, "/api/v1/printers/voron-managed").await;
        (status == StatusCode::OK && printer["state"]["state"] == "idle").then_some(printer)
    })
    .await;
    assert_eq!(state_json["state"]["kind"], "klipper", "{state_json}");
    let kept = state.path().join(edge_agent::managed::FILE);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the kept list holds secrets");

    // Removed: the agent stops driving it (Moonraker loses its connection).
    let (status, _) = api.delete(&admin, &format!("{path}/voron-managed")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let list = eventually(api.hub.sync.changes(), "the removal applied", || async {
        let (_, list) = api.get(&admin, path).await;
        (list["applied_version"] == list["version"]).then_some(list)
    })
    .await;
    assert_eq!(list["printers"].as_array().unwrap().len(), 1, "{list}");
    // Another process's view (the simulator's sockets): polled.
    tests::fleet::poll_other_process(
        Duration::from_secs(10),
        "Moonraker without the agent",
        || async { (sim.connections() == 0).then_some(()) },
    )
    .await;
    let (status, _) = api.delete(&admin, &format!("{path}/voron-managed")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

/// A hub on loopback ports with its own data directory.
pub(crate) struct Api {
    pub(crate) hub: RunningHub,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    database_url: Option<String>,
}

impl Api {
    pub(crate) async fn start(database_url: Option<String>) -> Api {
        Api::start_with(database_url, |_| {}).await
    }

    /// A hub whose configuration `configure` adjusted first.
    pub(crate) async fn start_with(
        database_url: Option<String>,
        configure: impl FnOnce(&mut HubConfig),
    ) -> Api {
        tests::init();
        Api::start_in(tempfile::tempdir().unwrap(), database_url, None, configure).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        database_url: Option<String>,
        sync_addr: Option<std::net::SocketAddr>,
        configure: impl FnOnce(&mut HubConfig),
    ) -> Api {
        let overrides = Overrides {
            data_dir: Some(dir.path().to_owned()),
            database_url: database_url.clone(),
            http_listen: Some("127.0.0.1:0".into()),
            sync_listen: Some(sync_addr.map_or("127.0.0.1:0".into(), |a| a.to_string())),
        };
        let mut config = HubConfig::load(None, Vec::new(), &overrides).unwrap();
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let hub = hub::app::start(config, shutdown.clone()).await.unwrap();
        Api { hub, _dir: dir, shutdown, database_url }
    }

    /// The same hub stopped and started again on its data (and database) and its sync
    /// address (agents reconnect by themselves), configured anew.
    pub(crate) async fn restart(self, configure: impl FnOnce(&mut HubConfig)) -> Api {
        let sync_addr = self.hub.sync_addr;
        self.shutdown.cancel();
        self.hub.wait().await;
        Api::start_in(self._dir, self.database_url, Some(sync_addr), configure).await
    }

    pub(crate) async fn user(&self, name: &str, role: &str) -> String {
        let hash = hub::api::auth::hash_password("a long enough password").unwrap();
        assert!(
            self.hub
                .state
                .db
                .insert_user(name, &hash, role, proto::UnixMillis::now())
                .await
                .unwrap()
        );
        let (token, _) =
            hub::api::auth::create_api_token(&self.hub.state.db, name, None).await.unwrap();
        token
    }

    /// Waits until job `id` has ended (finished, failed or cancelled); returns its detail.
    pub(crate) async fn job_end(&self, token: &str, id: i64, what: &str) -> Value {
        eventually(self.hub.sync.changes(), what, || async {
            let (_, job) = self.get(token, &format!("/api/v1/jobs/{id}")).await;
            matches!(job["state"].as_str(), Some("finished" | "failed" | "cancelled"))
                .then_some(job)
        })
        .await
    }

    /// Sends a request through the real router; returns status, headers and JSON body.
    pub(crate) async fn call(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let router = hub::api::router(self.hub.state.clone());
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// A request with the bearer `token` and, when given, a JSON body.
    pub(crate) async fn send(
        &self,
        method: &str,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        let (status, _, body) = self.call(request.unwrap()).await;
        (status, body)
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send("GET", token, path, None).await
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", token, path, Some(body)).await
    }

    pub(crate) async fn put(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("PUT", token, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send("DELETE", token, path, None).await
    }

    /// An enrolled agent watching a simulated printer, connected.
    pub(crate) async fn agent_with_printer(
        &self,
        state: &std::path::Path,
    ) -> (TestAgent, SimHandle) {
        let config =
            SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::X1C)
                .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
        let sim = Simulator::start(config).await.unwrap();
        let agent = self.connect(state, "pi-api", agent_config(state, Some(&sim), SERIAL)).await;
        (agent, sim)
    }

    /// An enrolled agent watching a simulated P1S and its port-6000 camera, connected.
    pub(crate) async fn agent_with_camera(
        &self,
        state: &std::path::Path,
    ) -> (TestAgent, SimHandle) {
        let config =
            SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::P1S)
                .with_intervals(Duration::from_millis(100), Duration::from_millis(50));
        let sim = Simulator::start(config).await.unwrap();
        let config = agent_config_with_camera(state, &sim, SERIAL, 4);
        let agent = self.connect(state, "pi-camera", config).await;
        (agent, sim)
    }

    /// Enrolls an agent named `name` in `state`, starts it with `config`, waits until it is
    /// connected.
    pub(crate) async fn connect(
        &self,
        state: &std::path::Path,
        name: &str,
        config: edge_agent::config::AgentConfig,
    ) -> TestAgent {
        self.connect_via(state, name, config, SERIAL, self.hub.sync_addr).await
    }

    /// Like [`Api::connect`], for `printer`, through `hub` (a relay in front of it).
    pub(crate) async fn connect_via(
        &self,
        state: &std::path::Path,
        name: &str,
        config: edge_agent::config::AgentConfig,
        printer: &str,
        hub: std::net::SocketAddr,
    ) -> TestAgent {
        // The token names the printer: the agent's claim on it is approved in advance.
        let (token, _) = hub::sync::token::create_for_printers(
            &self.hub.state.db,
            &self.hub.sync.ca_fingerprint(),
            Some(name),
            &[proto::PrinterId::new(printer).unwrap()],
            Duration::from_secs(600),
            proto::UnixMillis::now(),
        )
        .await
        .unwrap();
        edge_agent::sync::enroll::enroll(&hub.to_string(), &token.to_string(), state)
            .await
            .unwrap();
        let mut agent = TestAgent::start(config);
        agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
        agent
    }

    /// Uploads `bytes` as `name` in a multipart form (`query` after the path, if any).
    pub(crate) async fn upload(
        &self,
        token: &str,
        query: &str,
        name: &str,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        let boundary = "kitt-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = Request::post(format!("/api/v1/files{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = self.call(request).await;
        (status, body)
    }

    /// Every file under the hub's file store (bytes and leftovers), relative to it.
    pub(crate) fn stored_files(&self) -> Vec<String> {
        let root = self._dir.path().join("files");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    /// The raw response of a GET (for images and streams).
    pub(crate) async fn get_raw(&self, token: &str, path: &str) -> axum::response::Response {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        hub::api::router(self.hub.state.clone()).oneshot(request).await.unwrap()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.hub.wait().await;
    }
}

/// Decodes a JPEG with a real decoder; returns its width and height.
pub(crate) fn decode_jpeg(bytes: &[u8]) -> (u16, u16) {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let pixels = decoder.decode().expect("a JPEG the decoder reads");
    let info = decoder.info().expect("image info");
    assert!(!pixels.is_empty());
    (info.width, info.height)
}

/// Reads `count` JPEG parts from a multipart/x-mixed-replace body.
pub(crate) async fn mjpeg_frames(response: axum::response::Response, count: usize) -> Vec<Vec<u8>> {
    let mut body = response.into_body().into_data_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < count {
        let chunk = tokio::time::timeout(tests::PATIENCE, body.next())
            .await
            .expect("live frames keep coming")
            .expect("the stream stays open")
            .unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(start) = buffer.windows(2).position(|w| w == [0xFF, 0xD8]) {
            let Some(end) = buffer[start..].windows(2).position(|w| w == [0xFF, 0xD9]) else {
                break;
            };
            let end = start + end + 2;
            frames.push(buffer[start..end].to_vec());
            buffer.drain(..end);
        }
    }
    frames
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {body}"))
}

async fn a_script_with_a_token_reads_printers_and_history_and_pauses_a_printer(db: Option<String>) {
    let api = Api::start(db).await;
    let viewer = api.user("vera", "viewer").await;
    let operator = api.user("otto", "operator").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = api.agent_with_printer(state.path()).await;

    let printer =
        eventually(api.hub.sync.changes(), "the printer listed with its state", || async {
            let (status, body) = api.get(&viewer, "/api/v1/printers").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["printers"]
                .as_array()
                .and_then(|list| {
                    list.iter().find(|p| {
                        p["id"] == SERIAL
                            && p["state"]["state"] == "idle"
                            && !p["state"]["model"].is_null()
                    })
                })
                .cloned()
        })
        .await;
    assert_eq!(printer["agent_id"], "pi-api");
    assert_eq!(printer["agent_online"], true);
    assert_eq!(printer["state"]["model"], "BL-P001");
    for field in
        ["progress_percent", "nozzle_temp_c", "bed_temp_c", "ams", "hms", "print_error", "control"]
    {
        assert!(printer["state"].get(field).is_some(), "state lacks {field}: {}", printer["state"]);
    }
    // The agent sends the vendor-neutral state (wire version 5): the printer's kind and the
    // controls it supports, from which the dashboard draws its buttons.
    assert_eq!(printer["state"]["kind"], "bambu", "{}", printer["state"]);
    let controls = printer["state"]["controls"].as_array().unwrap();
    for control in ["pause", "resume", "stop", "light", "speed"] {
        assert!(controls.iter().any(|c| c == control), "{control} missing: {controls:?}");
    }
    assert!(!controls.iter().any(|c| c == "emergency_stop"), "{controls:?}");
    assert_eq!(printer["state"]["heaters"][0]["kind"], "nozzle", "{}", printer["state"]);

    sim.start_job("api-benchy", 10_000).await.unwrap();
    eventually(api.hub.sync.changes(), "printing at the hub", || async {
        let (_, body) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (body["state"]["state"] == "printing").then_some(())
    })
    .await;
    let (status, history) =
        api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/telemetry?resolution=raw")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert!(!history["samples"].as_array().unwrap().is_empty(), "{history}");
    let (status, events) =
        api.get(&viewer, &format!("/api/v1/events?printer={SERIAL}&kind=job_started")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["events"][0]["event"]["job_name"], "api-benchy", "{events}");

    let (status, sent) = api
        .post(&operator, &format!("/api/v1/printers/{SERIAL}/commands"), json!({"action": "pause"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["status"], "sent");
    let id = sent["id"].as_str().unwrap().to_owned();
    let outcome = eventually(api.hub.sync.changes(), "the pause's outcome", || async {
        let (_, command) = api.get(&viewer, &format!("/api/v1/commands/{id}")).await;
        command["outcome"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(outcome, "succeeded");
    eventually(api.hub.sync.changes(), "paused at the hub", || async {
        let (_, body) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (body["state"]["state"] == "paused").then_some(())
    })
    .await;
    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

async fn no_anonymous_access_roles_and_bad_input_get_clear_json_errors(db: Option<String>) {
    let api = Api::start(db).await;
    let viewer = api.user("vera", "viewer").await;
    let operator = api.user("otto", "operator").await;
    let admin = api.user("ada", "admin").await;
    claim(&api, SERIAL, "pi-x", Some("Left P1S")).await;

    // A printer's first claim waits for an admin before the printer takes commands.
    let commands = format!("/api/v1/printers/{SERIAL}/commands");
    let (status, body) = api.post(&operator, &commands, json!({"action": "pause"})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"));
    assert!(body["error"]["message"].as_str().unwrap().contains("approval"), "{body}");
    let approve = format!("/api/v1/printers/{SERIAL}/approve");
    let (status, _) = api.post(&operator, &approve, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.post(&admin, &approve, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["approved_at"].is_i64(), "{body}");

    let anonymous = Request::get("/api/v1/printers").body(Body::empty()).unwrap();
    let (status, _, body) = api.call(anonymous).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = api.get("kitt_0000_forged", "/api/v1/printers").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));

    let (status, body) = api.post(&viewer, &commands, json!({"action": "pause"})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = api
        .post(
            &operator,
            "/api/v1/users",
            json!({"name": "x", "password": "0123456789", "role": "admin"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    let malformed = Request::post(&commands)
        .header(header::AUTHORIZATION, format!("Bearer {operator}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"action\": "))
        .unwrap();
    let (status, _, body) = api.call(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("EOF"), "{body}");
    // A body that is JSON but not a command: 422, naming what is allowed.
    let (status, body) = api.post(&operator, &commands, json!({"action": "explode"})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("explode") && message.contains("pause"), "{body}");
    let (status, body) = api.post(&operator, &commands, json!({"action": "set_speed"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("level"), "{body}");
    let (status, body) = api
        .post(
            &operator,
            &commands,
            json!({"action": "start_print", "file": "/a.3mf", "plate_confirmed_clear": false}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("plate_confirmed_clear"), "{body}");
    let (status, body) =
        api.post(&operator, &commands, json!({"action": "pause", "surprise": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) =
        api.post(&operator, "/api/v1/printers/NOPE/commands", json!({"action": "pause"})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api.get(&viewer, "/api/v1/printers/NOPE").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api
        .post(&operator, &commands, json!({"action": "gcode", "gcode": "x".repeat(100_000)}))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    // SQL-ish strings in every filter are data, nothing more.
    let sqlish = "x'%20OR%20'1'='1;%20DROP%20TABLE%20printers;--";
    for path in [
        format!("/api/v1/events?printer={sqlish}"),
        format!("/api/v1/events?kind={sqlish}"),
        format!("/api/v1/commands?printer={sqlish}"),
        format!("/api/v1/printers/{sqlish}"),
        format!("/api/v1/printers/{sqlish}/telemetry"),
        format!("/api/v1/commands/{sqlish}"),
    ] {
        let (status, body) = api.get(&admin, &path).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{path}: {status} {body}"
        );
        if status == StatusCode::OK {
            let list = body.as_object().unwrap().values().find_map(Value::as_array);
            assert!(list.is_none_or(|l| l.is_empty()), "{path}: {body}");
        }
    }
    // A method a route does not take: 405 in the same error shape.
    let wrong_method = Request::put("/api/v1/printers")
        .header(header::AUTHORIZATION, format!("Bearer {viewer}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.call(wrong_method).await;
    assert_eq!((status, error_code(&body)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let (status, body) = api.get(&admin, "/api/v1/events?from=yesterday").await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (_, printers) = api.get(&viewer, "/api/v1/printers").await;
    assert_eq!(printers["printers"].as_array().unwrap().len(), 1, "the table is still there");

    // Every mutating request was audited, refusals included.
    let (status, audit) = api.get(&admin, "/api/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["audit"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["actor"] == "vera"
            && e["status"] == 403
            && e["action"] == format!("POST {commands}")),
        "{audit}"
    );
    assert!(entries.iter().any(|e| e["actor"] == "otto" && e["status"] == 413), "{audit}");
    // No internal detail leaks from a viewer's refused admin request either.
    let (status, body) = api.get(&viewer, "/api/v1/audit").await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    api.stop().await;
}

async fn a_command_to_an_offline_agent_is_held_until_it_expires_and_reported(db: Option<String>) {
    let api = Api::start(db).await;
    let operator = api.user("otto", "operator").await;
    claim(&api, SERIAL, "pi-away", None).await;
    let now = proto::UnixMillis::now();
    assert!(api.hub.state.db.approve_printer(SERIAL, now).await.unwrap());
    let (status, sent) = api
        .post(
            &operator,
            &format!("/api/v1/printers/{SERIAL}/commands"),
            json!({"action": "stop", "expires_in_s": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert!(sent["status"].as_str().unwrap().starts_with("queued"), "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let (_, command) = api.get(&operator, &format!("/api/v1/commands/{id}")).await;
    assert_eq!(command["outcome"], Value::Null, "held: {command}");
    let outcome = eventually(api.hub.sync.changes(), "the command reported expired", || async {
        let (_, command) = api.get(&operator, &format!("/api/v1/commands/{id}")).await;
        command["outcome"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(outcome, "expired");
    api.stop().await;
}

async fn login_sets_a_safe_cookie_and_failed_logins_are_rate_limited(db: Option<String>) {
    let api = Api::start(db).await;
    api.user("ana", "admin").await;
    api.user("bo", "viewer").await;
    let login = |name: &str, password: &str| {
        Request::post("/api/v1/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"name": name, "password": password}).to_string()))
            .unwrap()
    };
    for _ in 0..5 {
        let (status, _, body) = api.call(login("ana", "wrong password")).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad_credentials"));
    }
    let (status, headers, body) = api.call(login("ana", "a long enough password")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(headers.contains_key(header::RETRY_AFTER));
    // An unknown user gets the same answer as a wrong password.
    let (status, _, body) = api.call(login("nobody", "whatever")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad_credentials"));

    let (status, headers, body) = api.call(login("bo", "a long enough password")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "viewer");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would be dropped: {cookie}");
    // Behind a TLS reverse proxy the cookie is Secure.
    let mut behind_tls = login("bo", "a long enough password");
    behind_tls.headers_mut().insert("x-forwarded-proto", "https".parse().unwrap());
    let (status, headers, _) = api.call(behind_tls).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::SET_COOKIE].to_str().unwrap().contains("; Secure"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let me =
        || Request::get("/api/v1/me").header(header::COOKIE, &session).body(Body::empty()).unwrap();
    let (status, _, body) = api.call(me()).await;
    assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("bo")));
    let logout = Request::post("/api/v1/logout")
        .header(header::COOKIE, &session)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = api.call(logout).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = api.call(me()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session ended");
    api.stop().await;
}

/// A login request from `peer` (as the server records it), with `forwarded` as
/// `X-Forwarded-For` when given.
fn login_from(name: &str, password: &str, peer: &str, forwarded: Option<&str>) -> Request<Body> {
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    let mut request = Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .extension(axum::extract::ConnectInfo(peer));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.body(Body::from(json!({"name": name, "password": password}).to_string())).unwrap()
}

/// A client cannot pick the address its failed logins are counted by: `X-Forwarded-For` is
/// read only when the TCP peer is a configured trusted proxy, and then from the right.
async fn the_login_limiter_counts_the_peer_unless_it_is_a_trusted_proxy(db: Option<String>) {
    let api = Api::start_with(db, |config| {
        config.api.trusted_proxies = hub::api::proxies::TrustedProxies(vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
    })
    .await;
    api.user("bo", "viewer").await;
    let per_address = hub::api::limiter::LOGIN_FAILURES_PER_ADDRESS;
    // An untrusted peer writing a new X-Forwarded-For each time is still one address.
    for i in 0..per_address {
        let forged = format!("198.51.100.{i}");
        let request =
            login_from(&format!("guess{i}"), "wrong password", "192.0.2.7", Some(&forged));
        let (status, _, body) = api.call(request).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "bad_credentials"));
    }
    let request = login_from("bo", "a long enough password", "192.0.2.7", Some("198.51.100.99"));
    let (status, headers, body) = api.call(request).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Another peer is not blocked.
    let request = login_from("bo", "a long enough password", "192.0.2.8", None);
    assert_eq!(api.call(request).await.0, StatusCode::OK);

    // Behind trusted proxies the client is the rightmost untrusted forwarded address: the
    // one that failed too often is blocked, whatever it writes to the left...
    for i in 0..per_address {
        let request = login_from(
            &format!("again{i}"),
            "wrong password",
            "127.0.0.1",
            Some("203.0.113.5, 10.0.0.2"),
        );
        assert_eq!(api.call(request).await.0, StatusCode::UNAUTHORIZED);
    }
    let forged = "192.0.2.200, 203.0.113.5, 10.0.0.2";
    let request = login_from("bo", "a long enough password", "127.0.0.1", Some(forged));
    assert_eq!(api.call(request).await.0, StatusCode::TOO_MANY_REQUESTS);
    // ...while another client behind the same proxy logs in.
    let request = login_from("bo", "a long enough password", "127.0.0.1", Some("203.0.113.6"));
    assert_eq!(api.call(request).await.0, StatusCode::OK);
    api.stop().await;
}

/// A flood of long or odd names never reaches the limiter's memory or a password hash.
async fn login_names_and_passwords_are_capped_before_any_hashing(db: Option<String>) {
    let api = Api::start(db).await;
    let long = "a".repeat(65);
    let (status, _, body) = api.call(login_from(&long, "whatever", "192.0.2.1", None)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1–64"), "{body}");
    let (status, _, body) =
        api.call(login_from("ana\nforged log line", "whatever", "192.0.2.1", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let huge = "p".repeat(2000);
    let (status, _, body) = api.call(login_from("ana", &huge, "192.0.2.1", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1024 bytes"), "{body}");
    assert_eq!(api.hub.state.limiter.entries(), (0, 0), "nothing remembered");
    // The 64-byte name itself is a name like any other.
    let (status, _, _) = api.call(login_from(&long[..64], "whatever", "192.0.2.1", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // And a user cannot be created with a longer one.
    let admin = api.user("ada", "admin").await;
    let user = json!({"name": long, "password": "a long enough password", "role": "viewer"});
    let (status, body) = api.post(&admin, "/api/v1/users", user).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    api.stop().await;
}

/// Polls a future once without a runtime's waker; `Some` if it finished.
fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(future).poll(&mut context) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// Password hashing runs a few at a time. Attempts on names no user has queue behind one
/// another, and when that queue is full the answer is an immediate 503 with Retry-After;
/// a real user's attempt goes ahead of every queued one.
async fn a_real_user_logs_in_ahead_of_a_flood_and_a_full_queue_answers_busy(db: Option<String>) {
    use hub::api::hash_gate::Lane;
    let api = Api::start(db).await;
    api.user("bo", "viewer").await;
    let gate = api.hub.state.hash_gate.clone();
    let (slots, queue) = gate.limits();
    // The flood holds every slot and fills the queue for invented names.
    let mut held = Vec::new();
    for _ in 0..slots {
        held.push(gate.acquire(Lane::Other).await.unwrap());
    }
    let mut flood: Vec<_> = (0..queue).map(|_| Box::pin(gate.acquire(Lane::Other))).collect();
    for waiter in &mut flood {
        assert!(poll_once(waiter).is_none());
    }
    let (status, headers, body) = api.call(login_from("nobody", "x", "192.0.2.2", None)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "busy"), "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    // The real user queues, and gets the first slot that frees.
    let router = hub::api::router(api.hub.state.clone());
    let real = tokio::spawn(async move {
        let request = login_from("bo", "a long enough password", "192.0.2.3", None);
        router.oneshot(request).await.unwrap().status()
    });
    let deadline = tokio::time::Instant::now() + tests::PATIENCE;
    while gate.load().1 == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the real user never queued");
        tokio::task::yield_now().await;
    }
    drop(held.pop());
    let status = tokio::time::timeout(tests::PATIENCE, real)
        .await
        .expect("the real user was kept waiting behind the flood");
    assert_eq!(status.unwrap(), StatusCode::OK);
    // The slot it used went on to the first of the flood; the rest still wait.
    assert_eq!(gate.load(), (slots, 0, queue - 1));
    assert!(poll_once(&mut flood[0]).is_some_and(|slot| slot.is_ok()));
    drop(held);
    drop(flood);
    assert_eq!(gate.load(), (0, 0, 0));
    api.stop().await;
}

/// A session cookie (`kitt_session=…`) for `name`.
async fn log_in(api: &Api, name: &str, password: &str) -> String {
    let (status, headers, body) = api.call(login_from(name, password, "192.0.2.9", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn users_change_their_password_and_admins_reset_one_ending_sessions_and_tokens(
    db: Option<String>,
) {
    let api = Api::start(db).await;
    let admin = api.user("ada", "admin").await;
    let token = api.user("bo", "viewer").await;
    let here = log_in(&api, "bo", "a long enough password").await;
    let elsewhere = log_in(&api, "bo", "a long enough password").await;
    let me = |cookie: &str| {
        Request::get("/api/v1/me").header(header::COOKIE, cookie).body(Body::empty()).unwrap()
    };
    let change = |cookie: &str, current: &str, new: &str| {
        Request::post("/api/v1/me/password")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"current_password": current, "new_password": new}).to_string()))
            .unwrap()
    };
    let (status, _, body) =
        api.call(change(&here, "not the password", "a brand new password")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "bad_credentials"));
    let (status, _, body) = api.call(change(&here, "a long enough password", "short")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) =
        api.call(change(&here, "a long enough password", "a brand new password")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(api.call(me(&here)).await.0, StatusCode::OK, "the calling session stays");
    assert_eq!(api.call(me(&elsewhere)).await.0, StatusCode::UNAUTHORIZED, "the other ended");
    assert_eq!(api.get(&token, "/api/v1/me").await.0, StatusCode::OK, "tokens stay");
    let (status, _, _) =
        api.call(login_from("bo", "a long enough password", "192.0.2.9", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
    let elsewhere = log_in(&api, "bo", "a brand new password").await;

    // A wrong current password counts like a failed login.
    for _ in 0..hub::api::limiter::LOGIN_FAILURES {
        let (status, _, _) = api.call(change(&here, "guess", "another new password")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _, body) =
        api.call(change(&here, "a brand new password", "another new password")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));

    // An admin's reset: a generated password, shown once; every session and token ends,
    // and the name's failures are forgotten.
    let (status, body) = api.post(&token, "/api/v1/users/bo/password", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.post(&admin, "/api/v1/users/bo/password", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["sessions_ended"].as_u64(), body["tokens_revoked"].as_u64()),
        (Some("bo"), Some(2), Some(1))
    );
    let generated = body["password"].as_str().unwrap().to_owned();
    assert!(generated.len() >= 10, "{generated}");
    assert_eq!(api.call(me(&here)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call(me(&elsewhere)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get(&token, "/api/v1/me").await.0, StatusCode::UNAUTHORIZED, "token revoked");
    log_in(&api, "bo", &generated).await;
    // A given password is set and not echoed.
    let given = json!({"password": "chosen by the admin"});
    let (status, body) = api.post(&admin, "/api/v1/users/bo/password", given).await;
    assert_eq!((status, body["password"].clone()), (StatusCode::OK, Value::Null), "{body}");
    log_in(&api, "bo", "chosen by the admin").await;
    let (status, body) = api.post(&admin, "/api/v1/users/nobody/password", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) =
        api.post(&admin, "/api/v1/users/bo/password", json!({"password": "short"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Both are in the audit log, with who did it.
    let (_, audit) = api.get(&admin, "/api/v1/audit").await;
    let rows = audit["audit"].as_array().unwrap();
    let row = |actor: &str, action: &str, status: u64| {
        rows.iter().any(|r| r["actor"] == actor && r["action"] == action && r["status"] == status)
    };
    assert!(row("bo", "POST /api/v1/me/password", 200), "{audit}");
    assert!(row("bo", "POST /api/v1/me/password", 403), "{audit}");
    assert!(row("bo", "change password", 429), "{audit}");
    assert!(row("ada", "POST /api/v1/users/bo/password", 200), "{audit}");
    api.stop().await;
}

async fn the_websocket_pushes_state_and_events_as_they_are_ingested(db: Option<String>) {
    let api = Api::start(db).await;
    let viewer = api.user("vera", "viewer").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = api.agent_with_printer(state.path()).await;

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/api/v1/ws?printer={SERIAL}", api.hub.http_addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {viewer}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    sim.start_job("live", 10_000).await.unwrap();
    let mut seen = Vec::new();
    let mut job_started = None;
    let started = tokio::time::timeout(tests::PATIENCE, async {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(text) = message.to_text() else { continue };
            let update: Value = serde_json::from_str(text).unwrap();
            seen.push(update["type"].as_str().unwrap_or("").to_owned());
            if update["type"] == "event" && update["event"]["type"] == "job_started" {
                job_started = Some(update);
            }
            if seen.iter().any(|t| t == "printer_state") && job_started.is_some() {
                return job_started.take().unwrap();
            }
        }
        panic!("the socket ended; saw {seen:?}");
    })
    .await
    .expect("a job_started event over the WebSocket");
    assert_eq!(started["printer"], SERIAL);
    assert_eq!(started["event"]["job_name"], "live");
    // The same id as in the event log, so a client holding both de-duplicates exactly.
    let (_, log) =
        api.get(&viewer, &format!("/api/v1/events?printer={SERIAL}&kind=job_started")).await;
    assert_eq!(started["id"], log["events"][0]["id"], "{started} vs {log}");
    assert!(seen.iter().any(|t| t == "printer_state"), "{seen:?}");
    // One hub is one replica, alive, with the agent connected to it.
    let (status, cluster) = api.get(&viewer, "/api/v1/cluster").await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    let replicas = cluster["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{cluster}");
    let here = &replicas[0];
    assert_eq!((here["here"].as_bool(), here["alive"].as_bool()), (Some(true), Some(true)));
    assert_eq!(here["agents"], 1, "{cluster}");
    assert_eq!(here["name"], cluster["here"], "{cluster}");

    // Anonymous WebSockets are refused like any other route.
    let anonymous = format!("ws://{}/api/v1/ws", api.hub.http_addr);
    assert!(tokio_tungstenite::connect_async(anonymous).await.is_err());
    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

async fn every_documented_route_exists_and_operations_endpoints_answer(db: Option<String>) {
    let api = Api::start(db).await;
    let admin = api.user("ada", "admin").await;
    let (status, spec) = api.get(&admin, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    // The API's contract: every one of these is documented with its role, and routed.
    let expected: &[(&str, &str, &str)] = &[
        ("post", "/login", "none"),
        ("post", "/logout", "viewer"),
        ("get", "/me", "viewer"),
        ("get", "/printers", "viewer"),
        ("get", "/printers/{id}", "viewer"),
        ("get", "/printers/{id}/telemetry", "viewer"),
        ("post", "/printers/{id}/commands", "operator"),
        ("get", "/printers/{id}/cameras", "viewer"),
        ("post", "/printers/{id}/cameras/{camera}/snapshot", "operator"),
        ("get", "/printers/{id}/cameras/{camera}/live", "viewer"),
        ("get", "/printers/{id}/snapshots", "viewer"),
        ("get", "/printers/{id}/snapshots/latest", "viewer"),
        ("get", "/snapshots/{id}", "viewer"),
        ("post", "/files", "operator"),
        ("get", "/files", "viewer"),
        ("get", "/files/{id}", "viewer"),
        ("delete", "/files/{id}", "operator"),
        ("get", "/files/{id}/thumbnails/{n}", "viewer"),
        ("get", "/files/{id}/content", "viewer"),
        ("post", "/jobs", "operator"),
        ("get", "/jobs", "viewer"),
        ("get", "/jobs/{id}", "viewer"),
        ("post", "/jobs/{id}/hold", "operator"),
        ("post", "/jobs/{id}/release", "operator"),
        ("post", "/jobs/{id}/approve", "operator"),
        ("post", "/jobs/{id}/cancel", "operator"),
        ("post", "/jobs/{id}/retry", "operator"),
        ("post", "/jobs/{id}/move", "operator"),
        ("post", "/printers/{id}/plate-clear", "operator"),
        ("get", "/outcomes", "viewer"),
        ("get", "/outcomes/{id}", "viewer"),
        ("put", "/outcomes/{id}/review", "operator"),
        ("get", "/analytics", "viewer"),
        ("get", "/analytics/csv", "viewer"),
        ("get", "/analytics/estimate", "viewer"),
        ("get", "/inventory", "viewer"),
        ("get", "/printers/{id}/slots", "viewer"),
        ("put", "/printers/{id}/slots", "operator"),
        ("get", "/spoolman-clients", "admin"),
        ("post", "/spoolman-clients", "admin"),
        ("delete", "/spoolman-clients/{id}", "admin"),
        ("get", "/assistant/conversations", "viewer"),
        ("post", "/assistant/conversations", "viewer"),
        ("get", "/assistant/conversations/{id}", "viewer"),
        ("delete", "/assistant/conversations/{id}", "viewer"),
        ("post", "/assistant/conversations/{id}/messages", "viewer"),
        ("get", "/assistant/pending", "viewer"),
        ("post", "/assistant/pending/{id}/confirm", "viewer"),
        ("post", "/assistant/pending/{id}/reject", "viewer"),
        ("get", "/assistant/models", "viewer"),
        ("get", "/memory", "viewer"),
        ("post", "/memory/search", "viewer"),
        ("get", "/memory/documents", "viewer"),
        ("post", "/memory/documents", "admin"),
        ("get", "/memory/documents/{id}", "viewer"),
        ("put", "/memory/documents/{id}", "admin"),
        ("delete", "/memory/documents/{id}", "admin"),
        ("post", "/memory/reindex", "admin"),
        ("get", "/scheduler/jobs", "viewer"),
        ("post", "/scheduler/jobs", "admin"),
        ("get", "/scheduler/jobs/{name}", "viewer"),
        ("patch", "/scheduler/jobs/{name}", "admin"),
        ("delete", "/scheduler/jobs/{name}", "admin"),
        ("post", "/scheduler/jobs/{name}/pause", "admin"),
        ("post", "/scheduler/jobs/{name}/resume", "admin"),
        ("post", "/scheduler/jobs/{name}/trigger", "admin"),
        ("get", "/scheduler/reports", "viewer"),
        ("get", "/events", "viewer"),
        ("get", "/commands", "viewer"),
        ("get", "/commands/{id}", "viewer"),
        ("get", "/agents", "viewer"),
        ("get", "/cluster", "viewer"),
        ("post", "/agents/{id}/revoke", "admin"),
        ("get", "/agents/{id}/printers", "admin"),
        ("put", "/agents/{id}/printers/{printer}", "admin"),
        ("delete", "/agents/{id}/printers/{printer}", "admin"),
        ("get", "/agents/{id}/discovered", "admin"),
        ("get", "/printer-claims", "admin"),
        ("post", "/printers/{id}/approve", "admin"),
        ("post", "/printers/{id}/owner", "admin"),
        ("post", "/enrollment-tokens", "admin"),
        ("get", "/users", "admin"),
        ("post", "/users", "admin"),
        ("delete", "/users/{name}", "admin"),
        ("post", "/users/{name}/password", "admin"),
        ("post", "/me/password", "viewer"),
        ("get", "/tokens", "admin"),
        ("post", "/tokens", "admin"),
        ("delete", "/tokens/{id}", "admin"),
        ("get", "/audit", "admin"),
        ("get", "/ws", "viewer"),
        ("get", "/openapi.json", "viewer"),
    ];
    for (method, path, role) in expected {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} undocumented");
        assert_eq!(operation["x-kitt-role"], *role, "{method} {path}");
    }
    // Every documented operation is routed, and nothing is documented that is not expected.
    let mut documented = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented += 1;
            assert!(
                expected.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path} is documented but not in the expected list"
            );
            assert!(operation["responses"].as_object().is_some_and(|r| r.contains_key("401")));
            if path == "/ws" || path == "/logout" {
                continue;
            }
            let concrete = path
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{camera}", "x")
                .replace("{printer}", "x")
                .replace("{n}", "0");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(format!("/api/v1{concrete}"))
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let (status, _, body) = api.call(request).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.contains("no such API route"),
                "{method} {path} is not routed: {body}"
            );
        }
    }
    assert_eq!(documented, expected.len());
    // Request and response bodies have full schemas.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in
        ["Printer", "PrinterList", "CommandRequest", "CommandSpec", "EventPage", "ErrorBody"]
    {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    let (status, _, body) = api.call(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, _, body) = api.call(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let metrics = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    let response = hub::api::router(api.hub.state.clone()).oneshot(metrics).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec())
        .unwrap();
    assert!(text.contains("# TYPE kitt_http_requests counter"), "{text}");
    assert!(
        text.contains(
            "kitt_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("kitt_agents_connected 0"), "{text}");
    let (status, _, _) = api.call(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An agent's own counters, from its last health report, appear per agent; refused
    // input is counted by source and reason.
    let agent = proto::AgentId::new("pi-metrics").unwrap();
    let row = hub::db::AgentRow {
        id: agent.clone(),
        name: None,
        cert_serial: "serial-metrics".into(),
        cert_not_after: proto::UnixMillis(1_800_000_000_000),
        revoked_at: None,
        acked_through: proto::Seq::ZERO,
        last_seen_at: None,
    };
    let db = &api.hub.state.db;
    db.insert_agent(&row, "pi", "kitt-agent 0.1.0", proto::UnixMillis::now()).await.unwrap();
    let health = proto::AgentHealth {
        outbox_records: 12,
        outbox_bytes: 3400,
        drops: Vec::new(),
        disk_free_bytes: 1 << 30,
        uptime_s: 60,
        software: proto::SoftwareVersion {
            version: "0.1.0".into(),
            commit: None,
            target: "aarch64".into(),
        },
        certificate_expires_at: None,
    };
    let counters = proto::AgentCounters {
        hub_reconnects: 4,
        hub_protocol_errors: 0,
        commands_refused: 2,
        printers: vec![proto::PrinterCounters {
            printer: proto::PrinterId::new(SERIAL).unwrap(),
            link_errors: 7,
            bad_payloads: 3,
            camera_errors: 5,
        }],
    };
    let body = proto::RecordBody::AgentHealthV2(proto::AgentHealthV2 { health, counters });
    let record = proto::Record { seq: proto::Seq(1), observed_at: proto::UnixMillis::now(), body };
    db.ingest(&agent, &[record], proto::UnixMillis::now()).await.unwrap();
    api.hub.sync.metrics().refused(hub::metrics::Source::Sync, "protocol", &"test");
    let metrics = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    let response = hub::api::router(api.hub.state.clone()).oneshot(metrics).await.unwrap();
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec())
        .unwrap();
    for line in [
        "kitt_agent_outbox_records{agent=\"pi-metrics\"} 12",
        "kitt_agent_hub_reconnects{agent=\"pi-metrics\"} 4",
        "kitt_agent_commands_refused{agent=\"pi-metrics\"} 2",
        &format!("kitt_agent_printer_link_errors{{agent=\"pi-metrics\",printer=\"{SERIAL}\"}} 7"),
        &format!("kitt_agent_camera_errors{{agent=\"pi-metrics\",printer=\"{SERIAL}\"}} 5"),
        "kitt_agent_online{agent=\"pi-metrics\"} 0",
        "kitt_input_refused_total{source=\"sync\",reason=\"protocol\"} 1",
        // The route checks above posted `{}` where a body was needed.
        "kitt_input_refused_total{source=\"http\",reason=\"invalid_body\"}",
        "kitt_ingest_records_total",
        "# TYPE kitt_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    api.stop().await;
}

async fn cameras_snapshot_at_milestones_serve_live_view_and_report_failures(db: Option<String>) {
    let api = Api::start(db).await;
    let viewer = api.user("vera", "viewer").await;
    let operator = api.user("otto", "operator").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = api.agent_with_camera(state.path()).await;
    let changes = api.hub.sync.changes();

    // A job: its start and first layer are photographed, then every 4 layers.
    sim.start_job("bracket.3mf", 30).await.unwrap();
    let snapshots = eventually(changes.clone(), "milestone snapshots", || async {
        let (_, body) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/snapshots")).await;
        let list = body["snapshots"].as_array().cloned().unwrap_or_default();
        let triggers: Vec<&str> = list.iter().filter_map(|s| s["trigger"].as_str()).collect();
        // A snapshot can arrive before the event that triggered it (the camera and the
        // printer link append independently); it is linked when the event comes.
        let linked = list.iter().any(|s| s["trigger"] == "job_started" && s["event_id"].is_i64());
        (triggers.contains(&"job_started")
            && triggers.contains(&"first_layer_done")
            && triggers.contains(&"layer")
            && linked)
            .then_some(list)
    })
    .await;
    let started = snapshots.iter().find(|s| s["trigger"] == "job_started").unwrap();
    assert_eq!(started["job_name"], "bracket.3mf", "linked to its job: {started}");
    assert!(started["event_id"].is_i64(), "linked to the job_started event: {started}");
    assert_eq!(started["camera_id"], "chamber");
    let response = api.get_raw(&viewer, started["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/jpeg");
    let image = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(decode_jpeg(&image), (1280, 720), "the simulator's frame, whole");
    let latest = api.get_raw(&viewer, &format!("/api/v1/printers/{SERIAL}/snapshots/latest")).await;
    assert_eq!(latest.status(), StatusCode::OK);
    let (_, printer) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
    assert!(printer["latest_snapshot"]["url"].is_string(), "{printer}");

    // Camera health, and a snapshot on request with its measured round trip.
    let (_, cameras) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/cameras")).await;
    assert_eq!(cameras["cameras"][0]["state"], "streaming", "{cameras}");
    assert_eq!(cameras["cameras"][0]["width"], 1280);
    let path = format!("/api/v1/printers/{SERIAL}/cameras/chamber/snapshot");
    let (status, body) = api.post(&viewer, &path, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer cannot ask: {body}");
    let (status, body) = api.post(&operator, &path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["snapshot"]["trigger"], "requested");
    let trip = body["round_trip_ms"].as_u64().unwrap();
    let (_, cameras) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/cameras")).await;
    assert_eq!(cameras["cameras"][0]["snapshot_round_trip_ms"].as_u64(), Some(trip));

    // Live view: three viewers share the agent's one upstream, each gets whole frames.
    let live = format!("/api/v1/printers/{SERIAL}/cameras/chamber/live");
    let streams = futures_util::future::join_all((0..3).map(|_| api.get_raw(&viewer, &live))).await;
    for stream in &streams {
        assert_eq!(stream.status(), StatusCode::OK);
        let kind = stream.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(kind.starts_with("multipart/x-mixed-replace"), "{kind}");
    }
    assert_eq!(
        api.hub.sync.cameras().viewers(&SERIAL.parse().unwrap(), &"chamber".parse().unwrap()),
        3
    );
    let frames =
        futures_util::future::join_all(streams.into_iter().map(|s| mjpeg_frames(s, 2))).await;
    for frames in &frames {
        for frame in frames {
            assert_eq!(decode_jpeg(frame), (1280, 720));
        }
    }
    // The last viewer gone, the agent stops streaming (it reports live = false).
    eventually(changes.clone(), "live view to stop", || async {
        let (_, cameras) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/cameras")).await;
        (cameras["cameras"][0]["live"] == false && cameras["cameras"][0]["viewers"] == 0)
            .then_some(())
    })
    .await;

    // The camera goes off: a requested snapshot reports the camera's reason, and the printer
    // link carries on regardless.
    sim.set_camera_fault(Some(printer_sim::config::CameraFault::Off));
    eventually(changes.clone(), "the camera to be reported failed", || async {
        let (_, cameras) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}/cameras")).await;
        (cameras["cameras"][0]["state"] == "failed").then_some(())
    })
    .await;
    let (status, body) = api.post(&operator, &path, json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "camera_unavailable", "{body}");
    let before = printer["state_at"].as_i64().unwrap();
    eventually(changes.clone(), "printer state to keep flowing", || async {
        let (_, printer) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (printer["state_at"].as_i64().unwrap_or(0) > before).then_some(())
    })
    .await;

    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

/// `agent` claims printer `serial`, as its hello would (not yet approved).
pub(crate) async fn claim(api: &Api, serial: &str, agent: &str, name: Option<&str>) {
    let printer = proto::PrinterInfo {
        id: proto::PrinterId::new(serial).unwrap(),
        vendor: proto::Vendor::BambuLab,
        model: Some("C12".into()),
        name: name.map(str::to_owned),
        cameras: Vec::new(),
    };
    let agent = proto::AgentId::new(agent).unwrap();
    api.hub.state.db.claim_printer(&agent, &printer, proto::UnixMillis::now()).await.unwrap();
}

async fn print_files_are_read_kept_once_by_content_and_served(db: Option<String>) {
    let api = Api::start(db).await;
    let operator = api.user("olga", "operator").await;
    let viewer = api.user("vic", "viewer").await;

    let bytes = fixture("orca-2.3-a1-mini-plates-2-3.gcode.3mf");
    let (status, file) = api.upload(&operator, "", "C:\\jobs\\gears.gcode.3mf", &bytes).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(file["name"], "gears.gcode.3mf");
    assert_eq!(file["size"], bytes.len());
    assert_eq!(file["kind"], "gcode_3mf");
    assert_eq!(file["slicer"], "OrcaSlicer");
    assert_eq!(file["printer_model_id"], "N1");
    assert_eq!(file["nozzle_diameter"], 0.4);
    assert_eq!(file["uploaded_by"], "olga");
    let plates: Vec<u64> =
        file["plates"].as_array().unwrap().iter().map(|p| p["index"].as_u64().unwrap()).collect();
    assert_eq!(plates, vec![2, 3]);
    let plate3 = &file["plates"][1];
    assert_eq!(plate3["filaments"][0]["slot"], 2);
    assert_eq!(plate3["filaments"][0]["type"], "PETG");
    assert_eq!(plate3["filaments"][0]["color"], "#FF6A13");
    assert_eq!(plate3["estimated_s"], 2712);

    // The same bytes again, under another name: kept once, the first name stands.
    let (status, again) = api.upload(&operator, "", "copy.gcode.3mf", &bytes).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], file["id"]);
    assert_eq!(again["name"], "gears.gcode.3mf");
    assert_eq!(api.stored_files(), vec![format!("{}/{id}", &id[..2])]);

    // Read back, listed, pictures and bytes served.
    let (status, got) = api.get(&viewer, &format!("/api/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, file);
    let (_, list) = api.get(&viewer, "/api/v1/files").await;
    assert_eq!(list["files"].as_array().unwrap().len(), 1);
    let picture = plate3["thumbnail_url"].as_str().unwrap();
    let response = api.get_raw(&viewer, picture).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/png");
    let png = response.into_body().collect().await.unwrap().to_bytes();
    assert!(png.starts_with(b"\x89PNG"));
    let response = api.get_raw(&viewer, &format!("/api/v1/files/{id}/content")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), bytes);

    // Plain G-code: its plate's MD5 is the file's.
    let gcode = fixture("prusaslicer-2.8-mk4.gcode");
    let (status, prusa) = api.upload(&operator, "", "benchy.gcode", &gcode).await;
    assert_eq!(status, StatusCode::CREATED, "{prusa}");
    assert_eq!(prusa["plates"][0]["gcode_md5"], prusa["md5"]);
    assert_eq!(prusa["printer_model"], "MK4");
    assert_eq!(prusa["thumbnails"].as_array().unwrap().len(), 3);

    // A viewer can read but not upload or delete; an operator deletes.
    let (status, _) = api.upload(&viewer, "", "x.gcode", &gcode).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.delete(&viewer, &format!("/api/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.delete(&operator, &format!("/api/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.get(&viewer, &format!("/api/v1/files/{id}")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert!(!api.stored_files().iter().any(|f| f.ends_with(&id)));
    api.stop().await;
}

async fn hostile_or_wrong_uploads_are_refused_and_leave_nothing_behind(db: Option<String>) {
    let api = Api::start_with(db, |config| {
        config.files.max_bytes = 80 * 1024;
    })
    .await;
    let operator = api.user("olga", "operator").await;
    let refused = [
        ("hostile/zip-bomb.gcode.3mf", "zip bomb"),
        ("hostile/traversal.gcode.3mf", "../../etc/cron.d/evil"),
        ("hostile/overlapping.gcode.3mf", ""),
        ("hostile/project-not-sliced.3mf", "slice it"),
        ("hostile/changed-after-slicing.gcode.3mf", "changed after slicing"),
    ];
    for (name, says) in refused {
        let (status, body) =
            api.upload(&operator, "", name.trim_start_matches("hostile/"), &fixture(name)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(error_code(&body), "invalid_file", "{name}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{name}: {body}");
    }
    // Truncated in transit: an archive cut short.
    let whole = fixture("bambu-studio-1.10-a1.gcode.3mf");
    let (status, body) =
        api.upload(&operator, "", "cut.gcode.3mf", &whole[..whole.len() / 2]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_file"),
        "{body}"
    );
    // Larger than files.max_upload_mb (here 80 KiB).
    let (status, body) = api.upload(&operator, "", "big.gcode", &vec![b'G'; 200 * 1024]).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{body}"
    );
    // Not multipart, no file part, no file name.
    let (status, body) = api.post(&operator, "/api/v1/files", json!({"file": "x"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let (status, body) = api.upload(&operator, "", "", b"G28\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(api.stored_files(), Vec::<String>::new(), "nothing half-stored");

    // A file for another printer: this X1 Carbon refuses an A1 file.
    let state = tempfile::tempdir().unwrap();
    let (agent, _sim) = api.agent_with_printer(state.path()).await;
    let printer = format!("/api/v1/printers/{SERIAL}");
    eventually(api.hub.sync.changes(), "the printer's model at the hub", || async {
        let (_, body) = api.get(&operator, &printer).await;
        body["state"]["model"].is_string().then_some(())
    })
    .await;
    let a1 = fixture("bambu-studio-1.10-a1.gcode.3mf");
    let (status, body) =
        api.upload(&operator, &format!("?printer={SERIAL}"), "a1.gcode.3mf", &a1).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "wrong_printer"),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("Bambu Lab A1"), "{body}");
    // Without a printer the same file is fine.
    let (status, _) = api.upload(&operator, "", "a1.gcode.3mf", &a1).await;
    assert_eq!(status, StatusCode::CREATED);
    agent.stop().await;
    api.stop().await;
}

async fn the_queue_gives_a_job_to_a_printer_that_fits_once_its_plate_is_clear(db: Option<String>) {
    const DONE: [&str; 3] = ["finished", "failed", "cancelled"];
    let api = Api::start(db).await;
    let operator = api.user("olga", "operator").await;
    let viewer = api.user("vic", "viewer").await;
    // An A1 with its AMS lite: white PLA, black PLA, red PETG, green PLA.
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::A1)
        .with_intervals(Duration::from_millis(50), Duration::from_millis(50));
    let sim = Simulator::start(config).await.unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let agent = api
        .connect(state_dir.path(), "pi-queue", agent_config(state_dir.path(), Some(&sim), SERIAL))
        .await;
    let (status, file) =
        api.upload(&operator, "", "a1.gcode.3mf", &fixture("bambu-studio-1.10-a1.gcode.3mf")).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let file = file["id"].as_str().unwrap().to_owned();

    // Two jobs: the file's three filaments as loaded here, and a rush job needing orange PETG.
    let (status, body) = api
        .post(
            &operator,
            "/api/v1/jobs",
            json!({
                "file": file, "name": "Benchy", "timelapse": true, "flow_calibration": true,
                "materials": [
                    {"slot": 1, "type": "PLA", "color": "#FFFFFF"},
                    {"slot": 2, "type": "PLA", "color": "#000000"},
                    {"slot": 6, "type": "PLA", "color": "#00AE42"}
                ]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let benchy = body["jobs"][0]["id"].as_i64().unwrap();
    assert_eq!(
        [
            &body["jobs"][0]["bed_leveling"],
            &body["jobs"][0]["flow_calibration"],
            &body["jobs"][0]["timelapse"]
        ],
        [&json!(true), &json!(true), &json!(true)],
        "the start's options, defaults and asked: {body}"
    );
    let (status, body) = api
        .post(
            &operator,
            "/api/v1/jobs",
            json!({
                "file": file, "name": "Rush", "priority": 5, "copies": 2,
                "materials": [{"slot": 1, "type": "PETG", "color": "#FF6A13"}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rush: Vec<i64> =
        body["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(rush.len(), 2, "copies are separate jobs");
    assert_eq!(body["jobs"][1]["copy"], 2);

    // Nobody confirmed the plate: nothing goes, and the jobs say so.
    let waits = |id: i64, code: &'static str| {
        let api = &api;
        let operator = &operator;
        async move {
            let (_, job) = api.get(operator, &format!("/api/v1/jobs/{id}")).await;
            (job["waiting"]["code"] == code).then_some(job)
        }
    };
    let job = eventually(api.hub.sync.changes(), "the job waiting for the plate", || {
        waits(benchy, "plate_not_clear")
    })
    .await;
    assert!(job["waiting"]["reason"].as_str().unwrap().contains(SERIAL), "{job}");
    let (_, printer) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
    assert_eq!(printer["plate"]["clear"], false);

    // One tap: the plate is clear. With Benchy held, the rush job is first, but the orange
    // PETG is not loaded: it waits and says so.
    let (status, _) = api.post(&operator, &format!("/api/v1/jobs/{benchy}/hold"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, plate) =
        api.post(&viewer, &format!("/api/v1/printers/{SERIAL}/plate-clear"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{plate}");
    let (status, plate) =
        api.post(&operator, &format!("/api/v1/printers/{SERIAL}/plate-clear"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{plate}");
    assert_eq!(
        (plate["clear"].clone(), plate["confirmed_by"].clone()),
        (json!(true), json!("olga"))
    );
    let rush_job = eventually(api.hub.sync.changes(), "the rush job missing its filament", || {
        waits(rush[0], "filament_not_loaded")
    })
    .await;
    assert!(
        rush_job["waiting"]["reason"].as_str().unwrap().contains("slot 1: PETG #FF6A13"),
        "{rush_job}"
    );
    // Released, Benchy goes, its filament mapped onto the trays that hold it.
    let (status, _) =
        api.post(&operator, &format!("/api/v1/jobs/{benchy}/release"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let job = eventually(api.hub.sync.changes(), "Benchy assigned", || async {
        let (_, job) = api.get(&operator, &format!("/api/v1/jobs/{benchy}")).await;
        (job["state"] != "queued").then_some(job)
    })
    .await;
    assert_eq!(job["printer"], SERIAL);
    let mapping: Vec<(i64, i64)> = job["mapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["slot"].as_i64().unwrap(), m["ams_index"].as_i64().unwrap()))
        .collect();
    assert_eq!(mapping, vec![(1, 0), (2, 1), (6, 3)]);
    // The printer is Benchy's now.
    let rush_job =
        eventually(api.hub.sync.changes(), "the rush job finding the printer taken", || {
            waits(rush[0], "printers_busy")
        })
        .await;
    assert!(
        rush_job["waiting"]["reason"].as_str().unwrap().contains("has a job of the queue"),
        "{rush_job}"
    );
    let (_, list) = api.get(&viewer, "/api/v1/jobs").await;
    let places: Vec<(i64, Value)> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_i64().unwrap(), j["queue_place"].clone()))
        .collect();
    assert_eq!(places[..2], [(rush[0], json!(1)), (rush[1], json!(2))]);

    // Benchy runs to its end: the file through the agent onto the printer's card over
    // FTPS, the start checked there, the printer's reports taking it to "finished".
    let job = eventually(api.hub.sync.changes(), "Benchy finished", || async {
        let (_, job) = api.get(&operator, &format!("/api/v1/jobs/{benchy}")).await;
        (DONE.contains(&job["state"].as_str().unwrap_or_default())).then_some(job)
    })
    .await;
    assert_eq!(job["state"], "finished", "{job}");
    let (_, stored) = api.get(&viewer, &format!("/api/v1/files/{file}")).await;
    let on_card = sim.card();
    let uploaded =
        on_card.get(&format!("/kitt-{benchy}-0.gcode.3mf")).expect("the file on the card");
    assert_eq!(uploaded.md5, stored["md5"].as_str().unwrap(), "the printer got the file whole");
    // Its end leaves the plate to a person again.
    eventually(api.hub.sync.changes(), "the plate no longer clear", || async {
        let (_, printer) = api.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (printer["plate"]["clear"] == false && printer["state"]["state"] == "finished")
            .then_some(())
    })
    .await;

    // Operators act on jobs: cancel, retry (back in the queue, waiting for the plate), move,
    // hold; every change is in the history, with who made it.
    let (status, _) =
        api.post(&operator, &format!("/api/v1/jobs/{benchy}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished job is not cancelled");
    let (status, cancelled) =
        api.post(&operator, &format!("/api/v1/jobs/{}/cancel", rush[1]), json!({})).await;
    assert_eq!(
        (status, cancelled["state"].clone()),
        (StatusCode::OK, json!("cancelled")),
        "{cancelled}"
    );
    let (status, _) =
        api.post(&operator, &format!("/api/v1/jobs/{}/cancel", rush[1]), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, retried) =
        api.post(&operator, &format!("/api/v1/jobs/{}/retry", rush[1]), json!({})).await;
    assert_eq!((status, retried["state"].clone()), (StatusCode::OK, json!("queued")));
    eventually(api.hub.sync.changes(), "the retried job waiting for the plate", || {
        waits(rush[1], "plate_not_clear")
    })
    .await;
    let (status, moved) =
        api.post(&operator, &format!("/api/v1/jobs/{}/move", rush[1]), json!({"to": "top"})).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["queue_place"], 1);
    let (status, held) =
        api.post(&operator, &format!("/api/v1/jobs/{}/hold", rush[0]), json!({})).await;
    assert_eq!((status, held["held"].clone()), (StatusCode::OK, json!(true)));
    eventually(api.hub.sync.changes(), "the held job saying so", || waits(rush[0], "held")).await;
    let (_, detail) = api.get(&viewer, &format!("/api/v1/jobs/{benchy}")).await;
    let history: Vec<(String, String)> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (h["to_state"].as_str().unwrap().to_owned(), h["actor"].as_str().unwrap().to_owned())
        })
        .collect();
    let printer = format!("printer {SERIAL}");
    let expected: Vec<(String, String)> = [
        ("queued", "olga"),
        ("queued", "olga"),
        ("queued", "olga"),
        ("assigned", "dispatcher"),
        ("transferring", "dispatcher"),
        ("uploading", "agent pi-queue"),
        ("printing", printer.as_str()),
        ("finished", printer.as_str()),
    ]
    .iter()
    .map(|(s, a)| ((*s).to_owned(), (*a).to_owned()))
    .collect();
    // "starting" (the printer's acknowledgement of the start read by the hub) shows unless
    // the printer's report of the print reached the hub first.
    let history: Vec<(String, String)> = history
        .into_iter()
        .filter(|(state, actor)| state != "starting" || *actor == printer)
        .filter(|(state, _)| state != "starting")
        .collect();
    assert_eq!(history, expected);
    let (_, detail) = api.get(&viewer, &format!("/api/v1/jobs/{}", rush[1])).await;
    let states: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["queued", "cancelled", "queued", "queued"],
        "added, cancelled, retried, moved"
    );

    // A file the queue still prints is not deleted.
    let (status, body) = api.delete(&operator, &format!("/api/v1/files/{file}")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "conflict"), "{body}");

    // Bad requests say what is wrong.
    let (status, body) = api.post(&viewer, "/api/v1/jobs", json!({"file": file})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = api.post(&operator, "/api/v1/jobs", json!({"file": "nope"})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) =
        api.post(&operator, "/api/v1/jobs", json!({"file": file, "plate": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("its plates are 1"), "{body}");
    let (status, body) =
        api.post(&operator, "/api/v1/jobs", json!({"file": file, "copies": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api.get(&viewer, "/api/v1/jobs/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    drop(agent);
    drop(sim);
    api.stop().await;
}

/// A 40 MiB file to a Klipper printer through a link that is cut mid-transfer, then an
/// agent that restarts mid-transfer: each time the agent keeps what arrived and the transfer
/// resumes from there (the job's history says from where), the file reaches Moonraker whole
/// and the job prints to its end (after the operator confirms the plate again: the
/// restarted agent cannot know that no job ended while it was away, and says so).
#[tokio::test]
async fn a_transfer_cut_midway_or_restarted_resumes_where_it_stopped_and_the_job_prints() {
    const VORON: &str = "voron-1";
    let api = Api::start(None).await;
    let operator = api.user("olga", "operator").await;
    let mut moonraker = printer_sim::moonraker::MoonrakerConfig::new("voron-resume");
    moonraker.step_interval = Duration::from_millis(50);
    moonraker.update_interval = Duration::from_millis(20);
    moonraker.klipper.layers = 4;
    moonraker.klipper.step_seconds = 0.05;
    let printer = printer_sim::moonraker::start(moonraker).await.unwrap();
    let relay = tests::relay::Relay::start(api.hub.sync_addr).await;
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "state_dir = \"{}\"\n[sync]\nkeep_alive_s = 1\nidle_timeout_s = 3\n[telemetry]\ninterval_ms = 200\nhealth_interval_s = 3600\n\
         [[printer]]\nkind = \"moonraker\"\nid = \"{VORON}\"\nurl = \"http://{}\"\nbuiltin_camera = false\n",
        state.path().display(),
        printer.addr(),
    );
    let config = edge_agent::config::AgentConfig::parse(&config).unwrap();
    let restart_config = config.clone();
    let agent = api.connect_via(state.path(), "pi-voron", config, VORON, relay.addr).await;

    let gcode = big_gcode(40 << 20);
    let (status, file) = api.upload(&operator, "", "big.gcode", &gcode).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let sha256 = file["id"].as_str().unwrap().to_owned();
    let (status, _) =
        api.post(&operator, &format!("/api/v1/printers/{VORON}/plate-clear"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    // A slow link (50 ms each way), so the transfer is still going when it is cut.
    relay.set(tests::relay::Impairment { delay: Duration::from_millis(50), ..Default::default() });
    let (status, body) = api
        .post(&operator, "/api/v1/jobs", json!({"file": sha256, "name": "Big", "printer": VORON}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let job = body["jobs"][0]["id"].as_i64().unwrap();

    // Cut once the agent holds 16 MiB for sure; back once it noticed.
    let mut changes = api.hub.sync.changes();
    let held = loop {
        let held = agent_holds(state.path(), &sha256);
        if held >= 16 << 20 {
            break held;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), changes.changed()).await;
    };
    relay.partition(true);
    let mut agent = agent;
    agent.wait_status("the cut noticed", |s| !matches!(s, SyncStatus::Connected { .. })).await;
    relay.partition(false);
    agent.wait_status("connected again", |s| matches!(s, SyncStatus::Connected { .. })).await;
    // Then, a checkpoint further on, the agent restarts: it resumes from its checkpoint on
    // disk.
    let resumed_at = agent_holds(state.path(), &sha256);
    let held_at_restart = loop {
        let now_held = agent_holds(state.path(), &sha256);
        if now_held > resumed_at {
            break now_held;
        }
        assert!(
            !state.path().join("files").join(&sha256).exists(),
            "the transfer ended before the agent could be restarted mid-way"
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), changes.changed()).await;
    };
    agent.stop().await;
    let mut agent = TestAgent::start(restart_config);
    agent.wait_status("connected again", |s| matches!(s, SyncStatus::Connected { .. })).await;
    relay.set(tests::relay::Impairment::default());

    let ended = |what: &'static str| api.job_end(&operator, job, what);
    // The restarted agent found the printer idle: a job may have ended while it was away, so
    // the start confirmed before is refused once, and says to confirm again.
    let refused = ended("the start after the agent's restart").await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(refused["reason"].as_str().unwrap_or_default().contains("confirm again"), "{refused}");
    let (status, _) =
        api.post(&operator, &format!("/api/v1/printers/{VORON}/plate-clear"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.post(&operator, &format!("/api/v1/jobs/{job}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let job = ended("the big job's end").await;
    assert_eq!(job["state"], "finished", "{job}");
    let resumed: Vec<u64> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["detail"].as_str())
        .filter_map(|d| d.strip_prefix("the transfer resumes from byte "))
        .filter_map(|d| d.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        resumed.iter().any(|&from| from >= held && from < held_at_restart),
        "after the cut the transfer did not resume from the {held} bytes the agent held: {job}"
    );
    assert!(
        resumed.iter().any(|&from| from >= held_at_restart),
        "after the restart the transfer did not resume from the {held_at_restart} bytes the \
         agent held: {job}"
    );
    let uploads = printer.uploads();
    let on_printer = uploads.values().next().expect("the file on Moonraker");
    assert_eq!(on_printer.size, gcode.len() as u64);
    assert_eq!(on_printer.md5, file["md5"].as_str().unwrap());
    agent.stop().await;
    api.stop().await;
}

/// The printer's end of a job fails as an operator can act on: its FTPS service refusing,
/// then its card full, each fail the job with the reason shown; a retry after each is the
/// next try (its own file name on the card), and once there is room it prints.
#[tokio::test]
async fn an_ftps_refusal_and_a_full_card_fail_the_job_with_the_reason_and_a_retry_prints() {
    let api = Api::start(None).await;
    let operator = api.user("olga", "operator").await;
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::A1)
        .with_intervals(Duration::from_millis(50), Duration::from_millis(50));
    let sim = Simulator::start(config).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent =
        api.connect(state.path(), "pi-ftps", agent_config(state.path(), Some(&sim), SERIAL)).await;
    let (status, file) =
        api.upload(&operator, "", "a1.gcode.3mf", &fixture("bambu-studio-1.10-a1.gcode.3mf")).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let (status, _) =
        api.post(&operator, &format!("/api/v1/printers/{SERIAL}/plate-clear"), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    sim.set_ftps_refusing(true);
    let (status, body) = api
        .post(
            &operator,
            "/api/v1/jobs",
            json!({
                "file": file["id"], "name": "Benchy",
                "materials": [
                    {"slot": 1, "type": "PLA", "color": "#FFFFFF"},
                    {"slot": 2, "type": "PLA", "color": "#000000"},
                    {"slot": 6, "type": "PLA", "color": "#00AE42"}
                ]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["jobs"][0]["id"].as_i64().unwrap();
    let ended = |what: &'static str| api.job_end(&operator, id, what);
    let job = ended("the try against a refusing FTPS server").await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("upload to the printer failed") && reason.contains("421"), "{job}");

    // The service is back, but the card is full.
    sim.set_ftps_refusing(false);
    sim.put_on_card("/old-timelapse.avi", 32 << 30);
    let (status, _) = api.post(&operator, &format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let job = ended("the try against a full card").await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("storage is full") && reason.contains("452"), "{job}");

    // Room made: the next try prints.
    assert!(sim.remove_from_card("/old-timelapse.avi"));
    let (status, _) = api.post(&operator, &format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let job = ended("the try with room on the card").await;
    assert_eq!(job["state"], "finished", "{job}");
    let card = sim.card();
    assert!(card.contains_key(&format!("/kitt-{id}-2.gcode.3mf")), "{card:?}");
    assert!(!card.contains_key(&format!("/kitt-{id}-0.gcode.3mf")), "the refused try left a file");
    let failures: Vec<&str> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to_state"] == "failed")
        .filter_map(|h| h["detail"].as_str())
        .collect();
    assert_eq!(failures.len(), 2, "each failed try is in the history: {job}");
    agent.stop().await;
    drop(sim);
    api.stop().await;
}

/// Spools meet printers and prints use them: the tagged trays a Bambu printer reports
/// become spools in their slots by themselves, an untagged one is assigned by hand; a print
/// stopped after a filament runout gets the outcome `filament_runout` and deducts only what
/// it made, a finished one deducts its file's grams from each slot's spool; both once,
/// whatever an agent restart or a replayed backlog brings again.
async fn prints_deduct_what_they_used_once_and_a_runout_is_named(db: Option<String>) {
    // Low stock at 860 g: the white spool (870 g) goes below it during the test, once.
    let api = Api::start_with(db, |config| config.low_stock_g = 860.0).await;
    let operator = api.user("olga", "operator").await;
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::A1)
        .with_intervals(Duration::from_millis(50), Duration::from_millis(50));
    let sim = Simulator::start(config).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let agent_config = agent_config(state.path(), Some(&sim), SERIAL);
    let agent = api.connect(state.path(), "pi-spools", agent_config.clone()).await;

    // The three tagged trays (white and black PLA, PETG) become spools in their slots.
    let slots_path = format!("/api/v1/printers/{SERIAL}/slots");
    let slots = eventually(api.hub.sync.changes(), "the tagged spools linked", || async {
        let (_, body) = api.get(&operator, &slots_path).await;
        (body["slots"].as_array().map_or(0, Vec::len) == 3).then_some(body)
    })
    .await;
    let white = &slots["slots"][0];
    assert_eq!((white["unit"].clone(), white["slot"].clone()), (json!(0), json!(0)), "{slots}");
    assert_eq!(white["assigned_by"], "rfid");
    assert_eq!(white["spool"]["filament"]["material"], "PLA");
    assert_eq!(white["spool"]["filament"]["color_hex"], "FFFFFF");
    assert_eq!(
        white["spool"]["filament"]["vendor"]["name"], "Bambu Lab",
        "only its spools have tags"
    );
    assert_eq!(white["spool"]["filament"]["name"], "PLA Basic", "the tag's product line");
    assert_eq!(white["spool"]["remaining_weight"], 870.0, "87 % of a 1 kg spool");
    // The green tray has no tag: its spool is put there by hand.
    let (status, filament) = api
        .post(
            &operator,
            "/spoolman/api/v1/filament",
            json!({
                "name": "Green PLA", "material": "PLA", "density": 1.24, "diameter": 1.75,
                "weight": 1000, "price": 25, "color_hex": "00AE42",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{filament}");
    let (status, green) = api
        .post(
            &operator,
            "/spoolman/api/v1/spool",
            json!({"filament_id": filament["id"], "remaining_weight": 2.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{green}");
    let green = green["id"].as_i64().unwrap();
    let (status, body) =
        api.put(&operator, &slots_path, json!({"unit": 0, "slot": 3, "spool_id": green})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let spool_ids: Vec<i64> =
        body["slots"].as_array().unwrap().iter().map(|s| s["spool_id"].as_i64().unwrap()).collect();
    assert_eq!(spool_ids.len(), 4);
    let used = || async {
        let mut used = Vec::new();
        for id in &spool_ids {
            let (_, spool) = api.get(&operator, &format!("/spoolman/api/v1/spool/{id}")).await;
            used.push(spool["used_weight"].as_f64().unwrap());
        }
        used
    };
    let before = used().await;

    let (status, file) =
        api.upload(&operator, "", "a1.gcode.3mf", &fixture("bambu-studio-1.10-a1.gcode.3mf")).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let job = json!({
        "file": file["id"], "name": "Benchy",
        "materials": [
            {"slot": 1, "type": "PLA", "color": "#FFFFFF"},
            {"slot": 2, "type": "PLA", "color": "#000000"},
            {"slot": 6, "type": "PLA", "color": "#00AE42"}
        ]
    });
    let queue = |job: Value| {
        let operator = operator.clone();
        let api = &api;
        async move {
            let (status, _) = api
                .post(&operator, &format!("/api/v1/printers/{SERIAL}/plate-clear"), json!({}))
                .await;
            assert_eq!(status, StatusCode::OK);
            let (status, body) = api.post(&operator, "/api/v1/jobs", job).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["jobs"][0]["id"].as_i64().unwrap()
        }
    };

    // The first print runs out of filament at layer 2; the operator stops it there.
    sim.set_fault(printer_sim::config::Fault::RunoutAtLayer { layer: 2 }).await.unwrap();
    let first = queue(job.clone()).await;
    eventually(api.hub.sync.changes(), "the printer paused for the runout", || async {
        let (_, printer) = api.get(&operator, &format!("/api/v1/printers/{SERIAL}")).await;
        (printer["state"]["state"] == "paused").then_some(())
    })
    .await;
    let (status, body) = api
        .post(&operator, &format!("/api/v1/printers/{SERIAL}/commands"), json!({"action": "stop"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ended = api.job_end(&operator, first, "the stopped print's end").await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    let outcome = eventually(api.hub.sync.changes(), "the runout's outcome", || async {
        let (_, list) = api.get(&operator, "/api/v1/outcomes").await;
        list["outcomes"].as_array().and_then(|o| o.iter().find(|o| o["job_id"] == first).cloned())
    })
    .await;
    assert_eq!(
        (outcome["result"].clone(), outcome["reason"].clone()),
        (json!("cancelled"), json!("filament_runout")),
        "{outcome}"
    );
    assert_eq!(outcome["reason_rule"], "stage:6");
    let made = outcome["progress"].as_f64().unwrap();
    assert!(made > 0.0 && made < 1.0, "only part was made: {outcome}");
    let usage = outcome["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 3, "{outcome}");
    let planned = [20.26, 2.15, 3.58];
    for (slot_use, grams) in usage.iter().zip(planned) {
        assert!((slot_use["grams"].as_f64().unwrap() - grams * made).abs() < 1e-6, "{slot_use}");
    }
    let after_runout = used().await;
    for (i, (slot_use, spool)) in usage.iter().zip([0, 1, 3]).enumerate() {
        assert_eq!(slot_use["spool_id"], spool_ids[spool], "{slot_use}");
        let deducted = after_runout[spool] - before[spool];
        assert!(
            (deducted - slot_use["grams"].as_f64().unwrap()).abs() < 1e-6,
            "slot {i}: {deducted}"
        );
    }
    assert_eq!(after_runout[2], before[2], "the PETG was not used");
    assert!(outcome["filament_cost"].as_f64().unwrap() > 0.0, "the spools' price: {outcome}");

    // The second prints to the end: the file's grams, each from its slot's spool.
    sim.clear_fault(printer_sim::config::FaultKind::RunoutAtLayer).await.unwrap();
    let second = queue(job).await;
    let ended = api.job_end(&operator, second, "the second print's end").await;
    assert_eq!(ended["state"], "finished", "{ended}");
    let outcome = eventually(api.hub.sync.changes(), "the finished print's outcome", || async {
        let (_, list) = api.get(&operator, "/api/v1/outcomes").await;
        list["outcomes"].as_array().and_then(|o| o.iter().find(|o| o["job_id"] == second).cloned())
    })
    .await;
    assert_eq!(
        (outcome["result"].clone(), outcome["reason"].clone()),
        (json!("success"), Value::Null)
    );
    let after_finish = used().await;
    for (spool, grams) in [0, 1, 3].into_iter().zip(planned) {
        assert!((after_finish[spool] - after_runout[spool] - grams).abs() < 1e-6, "spool {spool}");
    }

    // An agent restart and a replayed backlog add nothing.
    agent.stop().await;
    let mut agent = TestAgent::start(agent_config);
    agent.wait_status("connected again", |s| matches!(s, SyncStatus::Connected { .. })).await;
    let agent_id = proto::AgentId::new("pi-spools").unwrap();
    let records = api.hub.state.db.records(&agent_id).await.unwrap();
    assert!(records.len() > 10);
    api.hub.state.db.ingest(&agent_id, &records, proto::UnixMillis::now()).await.unwrap();
    let (_, list) = api.get(&operator, "/api/v1/outcomes").await;
    assert_eq!(list["total"], 2, "{list}");
    assert_eq!(used().await, after_finish);
    // The white PLA went below 860 g once, the green one below a week of stock: one event
    // each, whatever was replayed. The black one was below 860 g from the start.
    let (_, events) = api.get(&operator, "/api/v1/events?kind=low_stock").await;
    let reasons: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"]["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("PLA Basic #FFFFFF") && r.contains("below 860 g")),
        "{reasons:?}"
    );
    // The green spool held 2 g: the runout's 1.79 g left it days from empty at that pace.
    assert!(
        reasons.iter().any(|r| r.contains("Green PLA #00AE42") && r.contains("days left")),
        "{reasons:?}"
    );

    // The review: the reason confirmed, scores kept exactly as given.
    let id = list["outcomes"][1]["id"].as_i64().unwrap();
    let (status, reviewed) = api
        .put(&operator, &format!("/api/v1/outcomes/{id}/review"), json!({
            "reason": "filament_runout", "quality": 85, "aspects": {"surface": 85, "adhesion": 91},
            "notes": "AMS slot 1 was nearly empty",
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{reviewed}");
    assert_eq!(
        (reviewed["quality"].clone(), reviewed["aspects"]["surface"].clone()),
        (json!(85), json!(85))
    );
    let (status, body) = api
        .put(&operator, &format!("/api/v1/outcomes/{id}/review"), json!({"reason": "gremlins"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, analytics) = api.get(&operator, "/api/v1/analytics?by=material").await;
    let pla = &analytics["buckets"][0];
    assert_eq!(
        (pla["key"].clone(), pla["prints"].clone(), pla["succeeded"].clone()),
        (json!("PLA"), json!(2), json!(1))
    );
    assert_eq!(pla["reasons"]["filament_runout"], 1);
    let (_, estimate) = api.get(&operator, "/api/v1/analytics/estimate?material=PLA").await;
    assert_eq!(
        (estimate["available"].clone(), estimate["reviewed_outcomes"].clone()),
        (json!(false), json!(1))
    );
    agent.stop().await;
    drop(sim);
    api.stop().await;
}

/// A Klipper printer's own count of the filament a print pushed (Moonraker's
/// `filament_used`, wire version 8) comes off the spool an operator put on it, converted by
/// the spool's filament's diameter and density; the event log shows the count.
#[tokio::test]
async fn a_klipper_prints_filament_count_comes_off_the_spool_on_it() {
    klipper_count(false).await;
}

/// When the printer's own Moonraker reports its usage to kitt as its Spoolman (a client
/// added for that printer), kitt records the print's usage but leaves the spool to the
/// client's reports: nothing counts twice.
#[tokio::test]
async fn a_klipper_printer_whose_moonraker_reports_its_usage_is_not_deducted_twice() {
    klipper_count(true).await;
}

async fn klipper_count(moonraker_reports: bool) {
    const VORON: &str = "voron-spool";
    let api = Api::start(None).await;
    let operator = api.user("olga", "operator").await;
    let mut moonraker = printer_sim::moonraker::MoonrakerConfig::new(VORON);
    moonraker.step_interval = Duration::from_millis(60);
    moonraker.update_interval = Duration::from_millis(20);
    // Seven seconds of printing: time to put the spool on it (and add the client) first.
    moonraker.klipper.layers = 120;
    moonraker.autostart = Some("benchy.gcode".into());
    let printer = printer_sim::moonraker::start(moonraker).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "state_dir = \"{}\"\n[telemetry]\ninterval_ms = 200\nhealth_interval_s = 3600\n\
         [[printer]]\nkind = \"moonraker\"\nid = \"{VORON}\"\nurl = \"http://{}\"\nbuiltin_camera = false\n",
        state.path().display(),
        printer.addr(),
    );
    let config = edge_agent::config::AgentConfig::parse(&config).unwrap();
    let agent = api.connect_via(state.path(), "pi-voron", config, VORON, api.hub.sync_addr).await;
    eventually(api.hub.sync.changes(), "the printer printing", || async {
        let (_, shown) = api.get(&operator, &format!("/api/v1/printers/{VORON}")).await;
        (shown["state"]["state"] == "printing").then_some(())
    })
    .await;
    // PETG, 1.75 mm at 1.27 g/cm³, on the printer's one spool.
    let (_, filament) = api
        .post(
            &operator,
            "/spoolman/api/v1/filament",
            json!({
            "material": "PETG", "density": 1.27, "diameter": 1.75, "weight": 1000}),
        )
        .await;
    let (_, spool) =
        api.post(&operator, "/spoolman/api/v1/spool", json!({"filament_id": filament["id"]})).await;
    let spool = spool["id"].as_i64().unwrap();
    let (status, body) = api
        .put(
            &operator,
            &format!("/api/v1/printers/{VORON}/slots"),
            json!({"unit": null, "slot": 0, "spool_id": spool}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut client = None;
    if moonraker_reports {
        let admin = api.user("ada", "admin").await;
        let (status, added) = api
            .post(
                &admin,
                "/api/v1/spoolman-clients",
                json!({"name": "voron-moonraker", "printer": VORON}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        client = added["path"].as_str().map(str::to_owned);
    }

    let outcome = eventually(api.hub.sync.changes(), "the print's outcome", || async {
        let (_, list) = api.get(&operator, "/api/v1/outcomes").await;
        list["outcomes"].as_array().and_then(|o| o.first().cloned())
    })
    .await;
    assert_eq!(outcome["result"], "success", "{outcome}");
    let (_, events) = api.get(&operator, "/api/v1/events?kind=filament_used").await;
    let millimetres = events["events"][0]["event"]["millimetres"].as_f64().expect("the count");
    assert!(millimetres > 0.0);
    // g = mm × π (d/2)² / 1000 × density.
    let grams = millimetres * std::f64::consts::PI * 0.875 * 0.875 / 1000.0 * 1.27;
    let usage = &outcome["usage"][0];
    assert_eq!(usage["spool_id"], spool, "{outcome}");
    assert!((usage["grams"].as_f64().unwrap() - grams).abs() < 1e-3, "{usage} vs {grams}");
    assert_eq!(usage["deducted"], !moonraker_reports, "{usage}");
    if let Some(client) = client {
        // Moonraker reports the length itself, through its base URL, no credentials.
        let (_, untouched) = api.get(&operator, &format!("/spoolman/api/v1/spool/{spool}")).await;
        assert_eq!(untouched["used_weight"], 0.0, "{untouched}");
        let request = Request::put(format!("{client}/api/v1/spool/{spool}/use"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"use_length": millimetres}).to_string()))
            .unwrap();
        let (status, _, reported) = api.call(request).await;
        assert_eq!(status, StatusCode::OK, "{reported}");
    }
    let (_, after) = api.get(&operator, &format!("/spoolman/api/v1/spool/{spool}")).await;
    assert!((after["used_weight"].as_f64().unwrap() - grams).abs() < 1e-3, "{after}");
    agent.stop().await;
    api.stop().await;
}
