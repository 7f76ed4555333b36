//! Two hub replicas on one PostgreSQL behave as one hub: they share one CA; an agent
//! connected to one is online on the other; a dashboard on the other sees its printer's
//! updates, with the same cursors as on the first; a command issued on the other reaches
//! the agent; a dashboard that reconnects to the other replica with `?after=` misses nothing.

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tests::fleet::wait_until;
use tests::postgres::fresh_database;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::api::{Api, SERIAL};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(api: &Api, token: &str, after: Option<u64>) -> Socket {
    let query = after.map_or(String::new(), |after| format!("?after={after}"));
    let mut request =
        format!("ws://{}/api/v1/ws{query}", api.hub.http_addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// Two replicas, hub-a and hub-b, on a fresh PostgreSQL database.
async fn two_replicas() -> (Api, Api) {
    let url = fresh_database().await;
    let a = Api::start_with(Some(url.clone()), |c| c.replica_name = "hub-a".into()).await;
    let b = Api::start_with(Some(url), |c| c.replica_name = "hub-b".into()).await;
    (a, b)
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(tests::PATIENCE, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket open")
            .expect("a message");
        if let Ok(text) = message.to_text()
            && !text.is_empty()
        {
            return serde_json::from_str(text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_ca_presence_live_updates_commands_and_cursors() {
    let url = fresh_database().await;
    let named = |name: &'static str| {
        move |config: &mut hub::config::HubConfig| config.replica_name = name.into()
    };
    let a = Api::start_with(Some(url.clone()), named("hub-a")).await;
    let b = Api::start_with(Some(url.clone()), named("hub-b")).await;
    assert_eq!(
        a.hub.sync.ca_fingerprint(),
        b.hub.sync.ca_fingerprint(),
        "one CA for the cluster: agents trust every replica"
    );
    let operator = a.user("otto", "operator").await;
    let viewer = a.user("vera", "viewer").await;

    // A dashboard on B before the agent connects to A.
    let mut on_b = socket(&b, &viewer, None).await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = a.agent_with_printer(state.path()).await;

    // B shows the agent online, and its printer's state arrives on B's socket.
    wait_until(tests::PATIENCE, "the agent online on B", || async {
        let (_, agents) = b.get(&viewer, "/api/v1/agents").await;
        agents["agents"].as_array()?.iter().find(|a| a["online"] == true).map(|_| ())
    })
    .await
    .unwrap();
    // B lists both replicas, alive, with the agent on A.
    let (status, cluster) = b.get(&viewer, "/api/v1/cluster").await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    assert_eq!(
        (cluster["here"].as_str(), cluster["database"].as_str()),
        (Some("hub-b"), Some("postgres"))
    );
    let replicas: Vec<(&str, bool, i64, bool)> = cluster["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            (name, r["alive"] == true, r["agents"].as_i64().unwrap(), r["here"] == true)
        })
        .collect();
    assert_eq!(replicas, [("hub-a", true, 1, false), ("hub-b", true, 0, true)], "{cluster}");
    let first = loop {
        let message = next(&mut on_b).await;
        if message["type"] == "printer_state" && message["printer"] == SERIAL {
            break message;
        }
    };
    let cursor = first["cursor"].as_u64().expect("a cursor");

    // A command issued on B reaches the agent connected to A.
    sim.start_job("replicated", 10_000).await.unwrap();
    wait_until(tests::PATIENCE, "printing, seen on B", || async {
        let (_, body) = b.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (body["state"]["state"] == "printing").then_some(())
    })
    .await
    .unwrap();
    let (status, sent) = b
        .post(&operator, &format!("/api/v1/printers/{SERIAL}/commands"), json!({"action": "pause"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["status"], "sent", "the agent counts as connected on B: {sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let outcome = wait_until(tests::PATIENCE, "the pause's outcome, on B", || async {
        let (_, command) = b.get(&viewer, &format!("/api/v1/commands/{id}")).await;
        command["outcome"].as_str().map(str::to_owned)
    })
    .await
    .unwrap();
    assert_eq!(outcome, "succeeded");

    // The dashboard on B reads on; one that left B after `cursor` resumes on A and gets the
    // same updates, with the same cursors, none missing.
    // Everything B's dashboard got after `cursor`, through the pause's result.
    let mut stayed = Vec::new();
    loop {
        let message = next(&mut on_b).await;
        let at = message["cursor"].as_u64().expect("a cursor");
        stayed.push((at, message["type"].as_str().unwrap_or_default().to_owned()));
        if message["type"] == "command_result" && message["command"] == id.as_str() {
            break;
        }
    }
    let mut on_a = socket(&a, &viewer, Some(cursor)).await;
    let mut resumed = Vec::new();
    while resumed.len() < stayed.len() {
        let message = next(&mut on_a).await;
        assert_ne!(message["type"], "lagged", "A still holds what came after {cursor}");
        resumed.push((
            message["cursor"].as_u64().unwrap(),
            message["type"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    assert_eq!(resumed, stayed, "the same updates after {cursor} on either replica");
    assert!(resumed.windows(2).all(|w| w[0].0 < w[1].0), "in order: {resumed:?}");

    agent.stop().await;
    sim.shutdown().await;
    // The agent's end reaches B's dashboards too.
    wait_until(Duration::from_secs(30), "the agent offline on B", || async {
        let (_, agents) = b.get(&viewer, "/api/v1/agents").await;
        agents["agents"].as_array()?.iter().all(|a| a["online"] == false).then_some(())
    })
    .await
    .unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_second_hub_on_the_same_sqlite_directory_refuses_to_start() {
    tests::init();
    let dir = tempfile::tempdir().unwrap();
    let overrides = hub::config::Overrides {
        data_dir: Some(dir.path().to_owned()),
        database_url: None,
        http_listen: Some("127.0.0.1:0".into()),
        sync_listen: Some("127.0.0.1:0".into()),
    };
    let config = hub::config::HubConfig::load(None, Vec::new(), &overrides).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let first = hub::app::start(config.clone(), shutdown.clone()).await.unwrap();
    let second = hub::app::start(config.clone(), tokio_util::sync::CancellationToken::new()).await;
    let error = second.expect_err("a second hub on the same SQLite directory").to_string();
    assert!(error.contains("another kitt-hub is serving"), "{error}");
    assert!(error.contains("PostgreSQL"), "says what to do instead: {error}");
    shutdown.cancel();
    first.wait().await;
    // Once the first stopped, the directory is free again.
    let again = hub::app::start(config, shutdown.clone()).await.expect("the lock was released");
    drop(again);
}

#[tokio::test]
async fn a_dashboard_resumes_from_its_cursor_and_one_from_before_a_restart_reads_everything_again()
{
    let api = Api::start(None).await;
    let viewer = api.user("vera", "viewer").await;
    let live = api.hub.sync.live().clone();
    let mut first = socket(&api, &viewer, None).await;
    for online in [true, false, true] {
        live.publish(hub::live::LiveUpdate::Agent { agent: "pi".into(), online });
    }
    let mut cursors = Vec::new();
    for _ in 0..3 {
        cursors.push(next(&mut first).await["cursor"].as_u64().unwrap());
    }
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    // Resumed after the first: the other two, the same.
    let mut resumed = socket(&api, &viewer, Some(cursors[0])).await;
    assert_eq!(next(&mut resumed).await["cursor"].as_u64(), Some(cursors[1]));
    assert_eq!(next(&mut resumed).await["cursor"].as_u64(), Some(cursors[2]));
    // A cursor from before this hub started: everything must be read again.
    let mut stale = socket(&api, &viewer, Some(1)).await;
    assert_eq!(next(&mut stale).await["type"], "lagged");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_with_a_token_naming_both_replicas_moves_to_the_other_when_its_stops() {
    use edge_agent::sync::client::SyncStatus;
    use printer_sim::config::{Model, SimConfig};

    let (a, b) = two_replicas().await;
    let viewer = b.user("vera", "viewer").await;
    // The token names both replicas, A first; the agent is given no address of its own.
    let hubs = vec![a.hub.sync_addr.to_string(), b.hub.sync_addr.to_string()];
    let (token, _) = hub::sync::token::create_advertised(
        &a.hub.state.db,
        &a.hub.sync.ca_fingerprint(),
        Some("pi-moving"),
        &[proto::PrinterId::new(SERIAL).unwrap()],
        &hubs,
        Duration::from_secs(600),
        proto::UnixMillis::now(),
    )
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let identity =
        edge_agent::sync::enroll::enroll_any(None, &token.to_string(), state.path()).await.unwrap();
    assert_eq!(identity.hubs, hubs, "both kept, the one enrolled with first");
    let config = SimConfig::new(SERIAL.parse().unwrap(), "12345678".parse().unwrap(), Model::X1C)
        .with_intervals(Duration::from_millis(20), Duration::from_millis(20));
    let sim = printer_sim::Simulator::start(config).await.unwrap();
    let mut agent = tests::fleet::TestAgent::start(tests::fleet::agent_config(
        state.path(),
        Some(&sim),
        SERIAL,
    ));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;
    assert!(a.hub.sync.connected().iter().any(|id| id.as_str() == "pi-moving"), "on A first");
    // Printing: its state changes all the time, so fresh state shows where it flows.
    sim.start_job("moving", 100_000).await.unwrap();

    // A stops; the agent goes to B, and its printer's news flows on.
    let stopped = std::time::Instant::now();
    a.stop().await;
    let moved = wait_until(tests::PATIENCE, "the agent connected to B", || async {
        b.hub.sync.connected().iter().any(|id| id.as_str() == "pi-moving").then_some(())
    })
    .await;
    moved.unwrap();
    let (_, before) = b.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
    let seen = before["received_at"].as_i64().unwrap_or(0);
    wait_until(tests::PATIENCE, "fresh state through B", || async {
        let (_, now) = b.get(&viewer, &format!("/api/v1/printers/{SERIAL}")).await;
        (now["received_at"].as_i64().unwrap_or(0) > seen).then_some(())
    })
    .await
    .unwrap();
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!("the agent's data flowed again through B {} ms after A stopped", took.as_millis());
    agent.stop().await;
    sim.shutdown().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_view_on_one_replica_comes_from_the_replica_its_camera_agent_is_connected_to() {
    let (a, b) = two_replicas().await;
    let viewer = a.user("vera", "viewer").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = a.agent_with_camera(state.path()).await;
    wait_until(tests::PATIENCE, "the agent online on B", || async {
        b.hub.sync.is_connected("pi-camera").then_some(())
    })
    .await
    .unwrap();
    wait_until(tests::PATIENCE, "the camera known", || async {
        let (_, cameras) = b.get(&viewer, &format!("/api/v1/printers/{SERIAL}/cameras")).await;
        (!cameras["cameras"].as_array()?.is_empty()).then_some(())
    })
    .await
    .unwrap();
    // Asked of B; the agent's frames arrive at A, which B relays.
    let live = format!("/api/v1/printers/{SERIAL}/cameras/chamber/live");
    let stream = b.get_raw(&viewer, &live).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let kind = stream.headers()[axum::http::header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(kind.starts_with("multipart/x-mixed-replace"), "{kind}");
    assert_eq!(
        a.hub.sync.cameras().viewers(&SERIAL.parse().unwrap(), &"chamber".parse().unwrap()),
        1,
        "A serves the relayed view"
    );
    let frames = super::api::mjpeg_frames(stream, 2).await;
    for frame in &frames {
        assert_eq!(super::api::decode_jpeg(frame), (1280, 720));
    }
    // A viewer without credentials gets nothing relayed.
    let refused = b.get_raw("not-a-token", &live).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    agent.stop().await;
    sim.shutdown().await;
    a.stop().await;
    b.stop().await;
}

/// A replica told to stop (SIGTERM, as systemd stops it) drains behind the reference HAProxy:
/// `/readyz` answers 404, HAProxy takes it out of the rotation as NOLB (not DOWN), and a
/// write whose body was still arriving when that happened is answered and stored. Marked
/// DOWN, as a 503 did, HAProxy's `on-marked-down shutdown-sessions` cut such a request: the
/// hub stored the write and its client got a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_told_to_stop_drains_behind_haproxy_and_answers_what_was_under_way() {
    use tests::haproxy::HaProxy;
    use tests::scenario::Replica;
    let url = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let get = |addr: std::net::SocketAddr, path: &'static str| {
        tokio::task::spawn_blocking(move || {
            tests::http::request(addr, "GET", path, &[], None).map(|r| r.status).unwrap_or(0)
        })
    };
    let term = |replica: &mut Replica| {
        let pid = replica.running.process().child.id().to_string();
        assert!(
            std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success()
        );
    };
    let exit = |mut replica: Replica| {
        tokio::task::spawn_blocking(move || {
            let mut child = replica.running.take().expect("running");
            child.child.wait()
        })
    };
    // A drain far longer than the test: what it shows does not depend on how fast the
    // machine is, and a second SIGTERM ends it.
    let mut replica =
        Replica::start(dir.path(), &url, "hub-drain", "[http]\ndrain_s = 300\n", None);
    let addr = replica.http_addr;
    assert_eq!(get(addr, "/readyz").await.unwrap(), 200);
    let proxy = HaProxy::start(dir.path(), &[(replica.name.clone(), addr)]);
    let state = |proxy: &HaProxy| proxy.servers().first().map(|(_, state)| state.clone());
    wait_until(tests::PATIENCE, "HAProxy to see the replica UP", || async {
        (state(&proxy).as_deref() == Some("UP")).then_some(())
    })
    .await
    .unwrap();
    assert!(replica.cli(&["user", "add", "ops", "--role", "admin"]).status.success());
    let token = replica.cli(&["user", "token", "ops"]);
    let authorization = format!("Bearer {}", String::from_utf8_lossy(&token.stdout).trim());

    // A write through HAProxy, its body half sent: under way on the replica.
    let job = json!({"name": "under-way", "action": "mark",
        "schedule": {"at": 4_102_444_800_000_i64}})
    .to_string();
    let (start, rest) = job.as_bytes().split_at(job.len() / 2);
    let (proxy_addr, length) = (proxy.addr, job.len());
    let partial = tests::http::Partial::send(
        proxy_addr,
        "POST",
        "/api/v1/scheduler/jobs",
        &[("Authorization", &authorization)],
        Some("application/json"),
        start,
        length,
    )
    .unwrap();
    term(&mut replica);
    // Draining: not ready, still serving.
    replica
        .running
        .process()
        .wait_line_where(tests::PATIENCE, "the drain line", |l| l.contains("draining for 300 s"))
        .unwrap();
    assert_eq!(get(addr, "/readyz").await.unwrap(), 404, "draining: not ready");
    assert_eq!(get(addr, "/healthz").await.unwrap(), 200, "still serving while it drains");
    assert_eq!(get(addr, "/").await.unwrap(), 200, "the dashboard still answers");
    // HAProxy sends it nothing new (NOLB) but does not cut what is under way.
    // Settled states only: "UP 1/2" is one failed check of the two that mark it DOWN.
    let seen = wait_until(tests::PATIENCE, "HAProxy to take the replica out", || async {
        state(&proxy).filter(|state| state == "NOLB" || state == "DOWN")
    })
    .await
    .unwrap();
    assert_eq!(seen, "NOLB", "a draining replica gets nothing new but is not DOWN");
    let rest = rest.to_vec();
    let answer = tokio::task::spawn_blocking(move || partial.finish(&rest)).await.unwrap();
    let answer = answer.expect("an answer");
    assert_eq!(answer.status, 201, "the write under way is answered: {}", answer.body);
    assert_eq!(answer.header("x-kitt-replica"), Some("hub-drain"));
    let db = hub::db::Db::open(&url).await.unwrap();
    let jobs = db.scheduler_jobs().await.unwrap();
    assert_eq!(jobs.iter().filter(|j| j.name == "under-way").count(), 1);
    term(&mut replica);
    let status = exit(replica).await.unwrap().unwrap();
    assert!(status.success(), "a second SIGTERM ends the drain cleanly: {status:?}");

    // A short drain ends by itself, cleanly.
    let mut replica =
        Replica::start(dir.path(), &url, "hub-drain-2", "[http]\ndrain_s = 1\n", None);
    term(&mut replica);
    replica
        .running
        .process()
        .wait_line_where(tests::PATIENCE, "the drain line", |l| l.contains("draining for 1 s"))
        .unwrap();
    let status = exit(replica).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// The login limiter holds across replicas: failed passwords spread over two replicas count
/// against one allowance (five per name), a right password is then refused on either for the
/// rest of the window, and an admin's reset on one clears it on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_spread_over_replicas_count_against_one_allowance() {
    use axum::body::Body;
    use axum::http::{Request, header};
    let (a, b) = two_replicas().await;
    let admin = a.user("ada", "admin").await;
    a.user("bo", "viewer").await;
    let login = |password: &str| {
        Request::post("/api/v1/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"name": "bo", "password": password}).to_string()))
            .unwrap()
    };
    let code = |body: &Value| body["error"]["code"].as_str().unwrap_or_default().to_owned();
    // Five wrong passwords, three on A and two on B: each replica alone is under five.
    for replica in [&a, &b, &a, &b, &a] {
        let (status, _, body) = replica.call(login("wrong password")).await;
        assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "bad_credentials"));
    }
    for replica in [&b, &a] {
        let (status, headers, body) = replica.call(login("a long enough password")).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            "{body}"
        );
        let retry: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "Retry-After {retry}");
    }
    // The refusal is audited once for the episode, not once per refused attempt.
    let (_, audit) = a.get(&admin, "/api/v1/audit").await;
    let refusals = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "bo" && r["status"] == 429)
        .count();
    assert_eq!(refusals, 1, "{audit}");
    // An admin's reset on B: the name starts afresh on both.
    let (status, reset) = b
        .post(&admin, "/api/v1/users/bo/password", json!({"password": "a new long password"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    for replica in [&a, &b] {
        let (status, _, body) = replica.call(login("a new long password")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Five wrong passwords on A alone: A's own limiter is full too, not only the shared
    // count. An admin's reset on B clears both: A's limiter hears it through the cluster's
    // log (a moment later, so A is asked until it lets the user in).
    for _ in 0..5 {
        let (status, _, body) = a.call(login("wrong password")).await;
        assert_eq!((status, code(&body).as_str()), (StatusCode::UNAUTHORIZED, "bad_credentials"));
    }
    let (status, _, body) = a.call(login("a new long password")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, reset) = b
        .post(&admin, "/api/v1/users/bo/password", json!({"password": "a third long password"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let (status, _, body) = b.call(login("a third long password")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let let_in = wait_until(tests::PATIENCE, "A to forget bo's failures", || async {
        let (status, _, body) = a.call(login("a third long password")).await;
        match status {
            StatusCode::OK => Some(Ok(())),
            StatusCode::TOO_MANY_REQUESTS => None,
            other => Some(Err(format!("{other}: {body}"))),
        }
    })
    .await;
    assert_eq!(let_in, Ok(Ok(())));
    a.stop().await;
    b.stop().await;
}

/// A replica that stopped answering: its agents are said offline once (by whichever sweep
/// gets there first, two sweeping at once), in the log as from it, and an agent that had
/// already reconnected to another replica is not said offline after it.
#[tokio::test]
async fn a_stopped_replicas_agents_are_said_offline_once_unless_they_reconnected_elsewhere() {
    let db = hub::db::Db::open(&fresh_database().await).await.unwrap();
    for replica in ["a/1", "b/1"] {
        db.replica_heartbeat(replica, "127.0.0.1:1", "127.0.0.1:2", 0).await.unwrap();
    }
    let online = |agent: &str| (agent.to_owned(), true);
    db.append_cluster_log("a/1", 1, &[], &[online("pi-1"), online("pi-2")]).await.unwrap();
    // pi-2 reconnects to B before A is found silent.
    db.append_cluster_log("b/1", 2, &["{}".into()], &[online("pi-2")]).await.unwrap();
    let head = db.cluster_log_head().await.unwrap();
    sqlx::query("UPDATE cluster_replicas SET heartbeat_at = 0 WHERE name = 'a/1'")
        .execute(db.pool())
        .await
        .unwrap();
    let offline = |agent: &str| format!("offline {agent}");
    let (first, second) = tokio::join!(
        db.forget_stale_replicas(10_000, &offline),
        db.forget_stale_replicas(10_000, &offline)
    );
    let mut gone = first.unwrap();
    gone.extend(second.unwrap());
    assert_eq!(gone, [("pi-1".to_owned(), "a/1".to_owned())]);
    let rows = db.cluster_log_after(head, 100).await.unwrap();
    let rows: Vec<(&str, &str)> =
        rows.iter().map(|r| (r.origin.as_str(), r.body.as_str())).collect();
    assert_eq!(rows, [("a/1", "offline pi-1")]);
    assert_eq!(db.cluster_presence().await.unwrap(), [("pi-2".to_owned(), "b/1".to_owned())]);
}

/// A Spoolman client (Moonraker watching its active spool, Fluidd the root) connected to one
/// replica hears what changed through another: a spool added, used, deleted (its last
/// payload, which the other replica could no longer read) and a spool the ingest changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoolman_websockets_on_one_replica_hear_changes_made_through_another() {
    use futures_util::SinkExt;
    use hub::service::{Principal, Role};
    use tokio_tungstenite::tungstenite::Message;
    let (a, b) = two_replicas().await;
    let admin = Principal::internal("test", Role::Admin);
    let (_, token) =
        a.hub.state.services.inventory.add_client(&admin, "moonraker", None).await.unwrap();
    let base = format!("/spoolman/{token}/api/v1");
    let ws = |api: &Api, path: &str| format!("ws://{}{base}{path}", api.hub.http_addr);
    let (mut on_b, _) = tokio_tungstenite::connect_async(ws(&b, "/spool")).await.unwrap();
    let (mut on_a, _) = tokio_tungstenite::connect_async(ws(&a, "/spool")).await.unwrap();
    // Open and answering on both before anything changes.
    for socket in [&mut on_b, &mut on_a] {
        socket.send(Message::Text("ping".into())).await.unwrap();
        assert_eq!(next(socket).await, json!({"status": "healthy"}));
    }
    let call = |method: &'static str, path: String, body: Option<Value>| {
        let addr = a.hub.http_addr;
        let path = format!("{base}{path}");
        async move {
            tokio::task::spawn_blocking(move || {
                let body = body.map(|b| b.to_string());
                let response =
                    tests::http::request(addr, method, &path, &[], body.as_deref()).unwrap();
                assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
                response.json()
            })
            .await
            .unwrap()
        }
    };
    let filament = call(
        "POST",
        "/filament".into(),
        Some(json!({"density": 1.24, "diameter": 1.75, "weight": 1000})),
    )
    .await;
    let spool = call("POST", "/spool".into(), Some(json!({"filament_id": filament["id"]}))).await;
    let id = spool["id"].as_i64().unwrap();
    let heard = |message: &Value| {
        (message["type"].as_str().unwrap_or_default().to_owned(), message["payload"]["id"].clone())
    };
    for socket in [&mut on_b, &mut on_a] {
        assert_eq!(heard(&next(socket).await), ("added".into(), json!(id)));
    }
    call("PUT", format!("/spool/{id}/use"), Some(json!({"use_length": 100}))).await;
    let used = next(&mut on_b).await;
    assert_eq!(heard(&used), ("updated".into(), json!(id)));
    assert!(used["payload"]["used_weight"].as_f64().unwrap() > 0.0, "{used}");
    assert_eq!(heard(&next(&mut on_a).await), ("updated".into(), json!(id)));
    // What the ingest does when a print used a spool on A's agent.
    a.hub.state.sync.live().spools_changed(vec![id]);
    assert_eq!(heard(&next(&mut on_b).await), ("updated".into(), json!(id)));
    assert_eq!(heard(&next(&mut on_a).await), ("updated".into(), json!(id)));
    call("DELETE", format!("/spool/{id}"), None).await;
    let deleted = next(&mut on_b).await;
    assert_eq!(heard(&deleted), ("deleted".into(), json!(id)));
    assert_eq!(deleted["payload"]["filament"]["id"], filament["id"], "{deleted}");
    a.stop().await;
    b.stop().await;
}
