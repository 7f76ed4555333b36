//! The scheduler through the API and across replicas: the hub's own jobs listed with their
//! next runs; a canary (`mark`) job added, run on its schedule, paused, resumed, triggered by
//! hand and deleted; bad requests refused; the daily health report made on demand; and
//! several hubs on one PostgreSQL running every occurrence exactly once while one of them
//! stops and starts again mid-run (checked from the marks the runs wrote, not from the
//! scheduler's history). Killing, freezing and skewing real processes is the system
//! scenario's (`scenarios.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tests::fleet::wait_until;
use tests::postgres::fresh_database;

use super::api::Api;
use hub::db::scheduler::{Renewal, RunKey};

fn quick(config: &mut hub::config::HubConfig) {
    config.scheduler.tick = Duration::from_millis(100);
}

async fn job(api: &Api, token: &str, name: &str) -> Value {
    let (status, body) = api.get(token, &format!("/api/v1/scheduler/jobs/{name}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Waits until the job's newest run is a manual one that ended, at or after `occurrence`.
async fn manual_run_ends(api: &Api, token: &str, name: &str, occurrence: i64) -> Value {
    wait_until(tests::PATIENCE, "a manual run to end", || async {
        let detail = job(api, token, name).await;
        detail["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["manual"] == true && r["occurrence"] == occurrence && r["state"] != "running"
            })
            .cloned()
    })
    .await
    .unwrap()
}

async fn trigger(api: &Api, token: &str, name: &str) -> i64 {
    let (status, body) =
        api.post(token, &format!("/api/v1/scheduler/jobs/{name}/trigger"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["occurrence"].as_i64().unwrap()
}

/// The occurrences of a job's scheduled (not manual) runs, newest first.
fn scheduled(detail: &Value) -> Vec<i64> {
    detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["manual"] == false)
        .map(|r| r["occurrence"].as_i64().unwrap())
        .collect()
}

/// Marks by (job, occurrence) → how many.
async fn marks(db: &hub::db::Db) -> BTreeMap<(String, i64), usize> {
    let mut counted = BTreeMap::new();
    for mark in db.scheduler_marks().await.unwrap() {
        *counted.entry((mark.job, mark.occurrence)).or_default() += 1;
    }
    counted
}

async fn jobs_through_the_api(database_url: Option<String>) {
    let api = Api::start_with(database_url, quick).await;
    let admin = api.user("ada", "admin").await;
    let viewer = api.user("vic", "viewer").await;
    let db = api.hub.state.db.clone();

    // The hub's own jobs, each with its next run.
    let (status, listed) = api.get(&viewer, "/api/v1/scheduler/jobs").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["running_here"], true);
    let names: Vec<&str> =
        listed["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    for builtin in &hub::scheduler::jobs::BUILTINS {
        assert!(names.contains(&builtin.name), "{} missing from {names:?}", builtin.name);
    }
    let now = listed["now"].as_i64().unwrap();
    for job in listed["jobs"].as_array().unwrap() {
        assert_eq!(job["builtin"], true, "{job}");
        assert!(job["next_run"].as_i64().is_some_and(|at| at >= now - 1000), "{job}");
        assert!(job["problem"].is_null(), "{job}");
    }
    let report = &listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "daily-health-report")
        .unwrap()
        .clone();
    assert_eq!(report["schedule"]["cron"], "0 7 * * *");
    assert_eq!(report["schedule"]["time_zone"], "UTC");

    // The daily report, made now by hand, is kept and readable; a dashboard's WebSocket
    // hears the run start and end (`scheduler_run`), with what it did.
    let mut socket = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            format!("ws://{}/api/v1/ws", api.hub.http_addr).into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {viewer}").parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    };
    let at = trigger(&api, &admin, "daily-health-report").await;
    let heard = tokio::time::timeout(tests::PATIENCE, async {
        use futures_util::StreamExt;
        let mut states = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            let Ok(text) = message.to_text() else { continue };
            let update: Value = serde_json::from_str(text).unwrap();
            if update["type"] == "scheduler_run"
                && update["job"] == "daily-health-report"
                && update["occurrence"] == at
                && update["manual"] == true
            {
                states.push(update["state"].as_str().unwrap_or_default().to_owned());
                if update["state"] != "running" {
                    return (states, update);
                }
            }
        }
        panic!("the socket ended; heard {states:?}");
    })
    .await
    .expect("the run's start and end over the WebSocket");
    assert_eq!(heard.0, ["running", "succeeded"], "{heard:?}");
    assert!(heard.1["result"].as_str().unwrap().contains("printers"), "{heard:?}");
    assert!(heard.1["cursor"].as_u64().is_some(), "{heard:?}");
    let run = manual_run_ends(&api, &viewer, "daily-health-report", at).await;
    assert_eq!(heard.1["replica"], run["holder"].as_str().unwrap().split('/').next().unwrap());
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["triggered_by"], "ada");
    assert!(run["holder"].as_str().unwrap().contains('/'), "{run}");
    let (_, reports) = api.get(&viewer, "/api/v1/scheduler/reports").await;
    let first = &reports["reports"][0];
    assert_eq!(first["occurrence"], at, "{reports}");
    assert!(first["report"]["summary"].as_str().unwrap().contains("printers"), "{reports}");
    // Other built-ins run by hand too, and say what they did.
    for name in [
        "telemetry-retention",
        "certificate-sweep",
        "low-stock-check",
        "outcome-measurement",
        "database-maintenance",
        "queue-sweep",
    ] {
        let at = trigger(&api, &admin, name).await;
        let run = manual_run_ends(&api, &viewer, name, at).await;
        assert_eq!(run["state"], "succeeded", "{name}: {run}");
        assert!(!run["result"].as_str().unwrap_or_default().is_empty(), "{name}: {run}");
    }

    // Refused, each with its reason; nothing added.
    let every = |ms: i64| json!({"name": "canary", "action": "mark", "schedule": {"every_ms": ms}});
    let (status, _) = api.post(&viewer, "/api/v1/scheduler/jobs", every(1000)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, needle) in [
        (every(10), "at least"),
        (json!({"name": "x", "action": "maintenance", "schedule": {"every_ms": 1000}}), "action"),
        (json!({"name": "x", "action": "mark", "schedule": {"cron": "61 * * * *"}}), "cron"),
        (
            json!({"name": "x", "action": "mark", "schedule": {"cron": "* * * * *", "time_zone": "Atlantis/Main"}}),
            "time zone",
        ),
        (
            json!({"name": "x", "action": "mark", "schedule": {"cron": "* * * * *", "every_ms": 1000}}),
            "exactly one",
        ),
        (
            json!({"name": "x", "action": "mark", "schedule": {"every_ms": 1000, "misfire": "whenever"}}),
            "misfire",
        ),
        (json!({"name": "Bad Name", "action": "mark", "schedule": {"every_ms": 1000}}), "name"),
        (
            json!({"name": "x", "action": "mark", "schedule": {"every_ms": 1000}, "params": {"shell": "rm"}}),
            "params.shell",
        ),
        (
            json!({"name": "x", "action": "mark", "schedule": {"every_ms": 1000}, "lease_ms": 5}),
            "lease_ms",
        ),
    ] {
        let (status, refused) = api.post(&admin, "/api/v1/scheduler/jobs", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {refused}");
        assert!(
            refused["error"]["message"].as_str().unwrap().contains(needle),
            "{body} → {refused}"
        );
    }
    let (status, _) = api
        .post(
            &admin,
            "/api/v1/scheduler/jobs",
            json!({"name": "x", "action": "mark", "schedule": {}, "when": 1}),
        )
        .await;
    assert!(status.is_client_error(), "an unknown field");
    let (status, refused) = api
        .send(
            "PATCH",
            &admin,
            "/api/v1/scheduler/jobs/queue-sweep",
            Some(json!({"schedule": {"every_ms": 5000}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (status, _) = api.delete(&admin, "/api/v1/scheduler/jobs/queue-sweep").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api.post(&admin, "/api/v1/scheduler/jobs/nope/trigger", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(marks(&db).await.is_empty());

    // A canary every second runs on its schedule, each occurrence once, one second apart.
    let (status, added) = api.post(&admin, "/api/v1/scheduler/jobs", every(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["created_by"], "ada");
    let (status, _) = api.post(&admin, "/api/v1/scheduler/jobs", every(1000)).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second job of that name");
    let created = added["created_at"].as_i64().unwrap();
    let ran = wait_until(tests::PATIENCE, "three scheduled marks", || async {
        let counted = marks(&db).await;
        (counted.len() >= 3).then_some(counted)
    })
    .await
    .unwrap();
    let occurrences: Vec<i64> = ran.keys().map(|(_, at)| *at).collect();
    assert!(ran.values().all(|&n| n == 1), "{ran:?}");
    for (n, at) in occurrences.iter().enumerate() {
        // The first when it was added, then one a second.
        assert_eq!(*at, created + 1000 * n as i64, "{occurrences:?}");
    }

    // Paused: its time comes and goes, and nothing runs; a manual run still does.
    let (status, paused) = api.post(&admin, "/api/v1/scheduler/jobs/canary/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert!(paused["next_run"].is_null(), "{paused}");
    // Two manual runs in a row: the second was taken by a look that began after the pause.
    let first = trigger(&api, &admin, "canary").await;
    manual_run_ends(&api, &viewer, "canary", first).await;
    let second = trigger(&api, &admin, "canary").await;
    manual_run_ends(&api, &viewer, "canary", second).await;
    let scheduled_then = scheduled(&job(&api, &viewer, "canary").await);
    // Two more of its occurrences' times pass on the database's clock.
    let until = db.clock().await.unwrap() + 2000;
    wait_until(tests::PATIENCE, "two seconds on the database's clock", || async {
        (db.clock().await.unwrap() > until).then_some(())
    })
    .await
    .unwrap();
    let third = trigger(&api, &admin, "canary").await;
    let manual = manual_run_ends(&api, &viewer, "canary", third).await;
    assert_eq!(manual["state"], "succeeded");
    assert_eq!(manual["result"], format!("marked by {}", manual["holder"].as_str().unwrap()));
    let detail = job(&api, &viewer, "canary").await;
    let scheduled_now = scheduled(&detail);
    assert_eq!(scheduled_now, scheduled_then, "nothing scheduled ran while paused");
    for run in detail["runs"].as_array().unwrap() {
        assert_eq!(run["state"], "succeeded", "{run}");
        assert!(run["duration_ms"].as_i64().is_some_and(|d| d >= 0), "{run}");
        assert_eq!(run["attempts"], 1, "{run}");
    }
    let counted = marks(&db).await;
    assert!(counted.values().all(|&n| n == 1), "{counted:?}");
    assert!(counted.contains_key(&("canary".to_owned(), third)));

    // Resumed: the missed occurrences follow the misfire policy (run_latest: one of them),
    // then it runs on its schedule again.
    let resumed_at = db.clock().await.unwrap();
    let (status, resumed) =
        api.post(&admin, "/api/v1/scheduler/jobs/canary/resume", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let after: Vec<i64> = wait_until(tests::PATIENCE, "scheduled runs after resuming", || async {
        let runs = job(&api, &viewer, "canary").await["runs"].as_array().unwrap().clone();
        let newer: Vec<i64> = runs
            .iter()
            .filter(|r| {
                r["manual"] == false
                    && r["occurrence"].as_i64().unwrap() > *scheduled_now.first().unwrap()
            })
            .map(|r| r["occurrence"].as_i64().unwrap())
            .collect();
        (newer.len() >= 2).then_some(newer)
    })
    .await
    .unwrap();
    let caught_up = after.iter().filter(|&&at| at <= resumed_at).count();
    assert!(caught_up <= 1, "run_latest catches up on one missed occurrence: {after:?}");

    // A change of schedule, then the job deleted with its history.
    let (status, changed) = api
        .send("PATCH", &admin, "/api/v1/scheduler/jobs/canary", Some(json!({"schedule": {"cron": "0 7 * * *", "time_zone": "Europe/Berlin"}, "description": "daily"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["schedule"]["time_zone"], "Europe/Berlin");
    assert_eq!(changed["description"], "daily");
    let (status, _) = api.delete(&admin, "/api/v1/scheduler/jobs/canary").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get(&viewer, "/api/v1/scheduler/jobs/canary").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jobs_are_listed_added_run_paused_triggered_and_refused_when_wrong_on_sqlite() {
    jobs_through_the_api(None).await;
}

#[tokio::test]
async fn jobs_are_listed_added_run_paused_triggered_and_refused_when_wrong_on_postgres() {
    jobs_through_the_api(Some(fresh_database().await)).await;
}

#[tokio::test]
async fn three_hubs_on_one_postgres_run_every_occurrence_once_while_one_stops_and_starts_again() {
    let url = fresh_database().await;
    let named = |n: usize| {
        move |config: &mut hub::config::HubConfig| {
            quick(config);
            config.replica_name = format!("hub{n}");
        }
    };
    let api = Api::start_with(Some(url.clone()), named(0)).await;
    let mut others = Vec::new();
    for n in 1..3 {
        others.push(Some(Api::start_with(Some(url.clone()), named(n)).await));
    }
    let admin = api.user("ada", "admin").await;
    let db = api.hub.state.db.clone();
    // Four canaries a second, each run taking 300 ms under a 1.5 s lease.
    for n in 0..4 {
        let (status, added) = api
            .post(
                &admin,
                "/api/v1/scheduler/jobs",
                json!({
                    "name": format!("canary-{n}"), "action": "mark",
                    "schedule": {"every_ms": 1000, "misfire": "run_all"},
                    "params": {"work_ms": 300}, "lease_ms": 1500,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
    }
    let enough = |n: usize| {
        let db = db.clone();
        async move {
            wait_until(Duration::from_secs(60), &format!("{n} marks"), || async {
                let counted = marks(&db).await;
                (counted.len() >= n).then_some(())
            })
            .await
            .unwrap();
        }
    };
    enough(12).await;
    // One hub stops mid-run (it gives its runs back), and starts again.
    let stopped = others[0].take().unwrap();
    others[0] = Some(stopped.restart(named(1)).await);
    enough(40).await;
    for n in 0..4 {
        api.post(&admin, &format!("/api/v1/scheduler/jobs/canary-{n}/pause"), json!({})).await;
    }
    // Wait for every run under way to end.
    wait_until(tests::PATIENCE, "no run under way", || async {
        let mut open = 0;
        for n in 0..4 {
            let (_, detail) = api.get(&admin, &format!("/api/v1/scheduler/jobs/canary-{n}")).await;
            open += detail["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "running")
                .count();
        }
        (open == 0).then_some(())
    })
    .await
    .unwrap();

    // From the side effect itself: each occurrence marked once, none missing between the
    // first and the last of each job, and more than one hub did the work.
    let counted = marks(&db).await;
    let duplicates: Vec<_> = counted.iter().filter(|(_, n)| **n != 1).collect();
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    for n in 0..4 {
        let name = format!("canary-{n}");
        let ats: Vec<i64> = counted.keys().filter(|(j, _)| *j == name).map(|(_, at)| *at).collect();
        assert!(ats.len() >= 5, "{name}: {ats:?}");
        for pair in ats.windows(2) {
            assert_eq!(pair[1] - pair[0], 1000, "{name} missed an occurrence: {ats:?}");
        }
    }
    let holders: std::collections::HashSet<String> = db
        .scheduler_marks()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.holder.split('/').next().unwrap_or_default().to_owned())
        .collect();
    assert!(holders.len() >= 2, "one hub did all the work: {holders:?}");
}

/// The fence, on both databases: a holder whose lease lapsed and whose run was taken over
/// can neither renew it nor end it, and its side effect is not written; the new holder's is.
async fn a_lost_run_cannot_be_renewed_or_ended(database_url: Option<String>) {
    let api = Api::start_with(database_url, |config| config.scheduler.enabled = false).await;
    let admin = api.user("ada", "admin").await;
    let db = api.hub.state.db.clone();
    let (status, added) = api
        .post(
            &admin,
            "/api/v1/scheduler/jobs",
            json!({"name": "fenced", "action": "mark", "schedule": {"at": 1}, "lease_ms": 1000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let key = hub::db::scheduler::RunKey { job: "fenced".into(), occurrence: 1, manual: false };
    let first = db.claim_run("fenced", 1, "a/1", 1000).await.unwrap().expect("claimed");
    assert_eq!(db.claim_run("fenced", 1, "b/1", 1000).await.unwrap(), None, "claimed once");
    // While A's lease runs, nobody takes it over.
    assert_eq!(db.take_over_run(&key, first, "b/1", 1000).await.unwrap(), None);
    // A lets its lease lapse (as when frozen); B takes over with a larger fence.
    assert!(db.release_run(&key, first).await.unwrap());
    let second = db.take_over_run(&key, first, "b/1", 1000).await.unwrap().expect("taken over");
    assert!(second > first);
    assert_eq!(db.take_over_run(&key, first, "c/1", 1000).await.unwrap(), None, "once");
    // A wakes: its renewal, its end and its side effect are refused.
    assert_eq!(db.renew_run(&key, first, 1000).await.unwrap(), Renewal::Lost);
    let mark = |holder| hub::db::scheduler::Effect::Mark { holder };
    assert!(!db.end_run_with(&key, first, "late", mark("a/1")).await.unwrap());
    assert!(db.scheduler_marks().await.unwrap().is_empty(), "nothing written under a stale fence");
    // B's goes through, once.
    assert_eq!(db.renew_run(&key, second, 1000).await.unwrap(), Renewal::Renewed);
    assert!(db.end_run_with(&key, second, "done", mark("b/1")).await.unwrap());
    assert!(!db.end_run_with(&key, second, "again", mark("b/1")).await.unwrap(), "ended once");
    assert_eq!(
        db.renew_run(&key, second, 1000).await.unwrap(),
        Renewal::Ended,
        "a renewal after its own end is not a loss"
    );
    let marks = db.scheduler_marks().await.unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!((marks[0].holder.as_str(), marks[0].fence), ("b/1", second));
    let runs = db.scheduler_runs("fenced", 10).await.unwrap();
    assert_eq!(
        (runs[0].state.as_str(), runs[0].attempts, runs[0].holder.as_str()),
        ("succeeded", 2, "b/1")
    );
}

#[tokio::test]
async fn a_lost_run_cannot_be_renewed_or_ended_on_sqlite() {
    a_lost_run_cannot_be_renewed_or_ended(None).await;
}

#[tokio::test]
async fn a_lost_run_cannot_be_renewed_or_ended_on_postgres() {
    a_lost_run_cannot_be_renewed_or_ended(Some(fresh_database().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_sends_its_printer_one_command_per_occurrence_with_an_id_of_its_own() {
    use super::api::SERIAL;
    let api = Api::start_with(None, quick).await;
    let admin = api.user("ada", "admin").await;
    let state = tempfile::tempdir().unwrap();
    let (agent, sim) = api.agent_with_printer(state.path()).await;
    let job = |command: Value| {
        json!({"name": "lights", "action": "command", "schedule": {"every_ms": 1000},
               "params": {"printer": SERIAL, "command": command}})
    };
    // What cannot be scheduled is refused, with the reason.
    for (body, needle) in [
        (
            job(
                json!({"action": "start_print", "file": "/model/a.3mf", "plate_confirmed_clear": true}),
            ),
            "cannot be scheduled",
        ),
        (job(json!({"action": "launch"})), "params"),
        (json!({"name": "lights", "action": "command", "schedule": {"every_ms": 1000}}), "params"),
    ] {
        let (status, refused) = api.post(&admin, "/api/v1/scheduler/jobs", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains(needle), "{refused}");
    }
    let off = json!({"action": "set_light", "node": "chamber_light", "mode": "off"});
    let (status, added) = api.post(&admin, "/api/v1/scheduler/jobs", job(off)).await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    // Two occurrences ran; each sent one command whose id is the occurrence's own.
    let runs = wait_until(tests::PATIENCE, "two runs that sent their command", || async {
        let detail = super::scheduler::job(&api, &admin, "lights").await;
        let done: Vec<Value> = detail["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .cloned()
            .collect();
        (done.len() >= 2).then_some(done)
    })
    .await
    .unwrap();
    for run in &runs {
        let occurrence = run["occurrence"].as_i64().unwrap();
        let id = proto::CommandId(hub::scheduler::command_id("lights", occurrence, false, 0));
        assert!(run["result"].as_str().unwrap().contains(&id.to_string()), "{run}");
        let outcome = wait_until(tests::PATIENCE, "the command's outcome", || async {
            let (_, command) = api.get(&admin, &format!("/api/v1/commands/{id}")).await;
            command["outcome"].as_str().map(str::to_owned)
        })
        .await
        .unwrap();
        assert_eq!(outcome, "succeeded", "{run}");
    }
    // Issued again for the same occurrence (a takeover's second attempt), it is the same
    // command: stored once, not sent twice.
    let first = runs[0]["occurrence"].as_i64().unwrap();
    let id = proto::CommandId(hub::scheduler::command_id("lights", first, false, 0));
    let principal =
        hub::service::Principal::internal("scheduler:lights", hub::service::Role::Operator);
    let spec: hub::service::CommandSpec = serde_json::from_value(
        json!({"action": "set_light", "node": "chamber_light", "mode": "off"}),
    )
    .unwrap();
    api.hub
        .state
        .services
        .commands
        .issue_as(&principal, SERIAL, hub::service::CommandRequest::new(spec), id)
        .await
        .unwrap();
    let (_, commands) = api.get(&admin, &format!("/api/v1/commands?printer={SERIAL}")).await;
    let same = commands["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id.to_string())
        .count();
    assert_eq!(same, 1, "{commands}");
    api.post(&admin, "/api/v1/scheduler/jobs/lights/pause", json!({})).await;
    agent.stop().await;
    sim.shutdown().await;
    api.stop().await;
}

/// PostgreSQL's row locks: a run whose row another transaction holds (its holder's end under
/// way) is skipped by a take-over rather than waited for, so one stuck holder cannot stall a
/// replica's whole look; and a renewal that waited for its own holder's end says `Ended`.
#[tokio::test]
async fn a_run_held_by_a_transaction_is_skipped_by_a_take_over_and_its_renewal_sees_its_end() {
    let db = hub::db::Db::open(&fresh_database().await).await.unwrap();
    let job = hub::db::scheduler::JobRow {
        name: "held".into(),
        action: "mark".into(),
        params: "{}".into(),
        description: String::new(),
        cron: None,
        every_ms: None,
        at_ms: Some(1),
        time_zone: "UTC".into(),
        misfire: "run_latest".into(),
        lease_ms: 1000,
        paused: false,
        builtin: false,
        created_by: "test".into(),
        created_at: 0,
        updated_at: 0,
        last_occurrence: None,
    };
    assert!(db.insert_scheduler_job(&job).await.unwrap());
    let key = RunKey { job: "held".into(), occurrence: 1, manual: false };
    let fence = db.claim_run("held", 1, "a/1", 1000).await.unwrap().expect("claimed");
    assert!(db.release_run(&key, fence).await.unwrap(), "lapsed");
    // Another transaction holds the row, as a holder's end does until it commits.
    let mut holding = db.pool().begin().await.unwrap();
    sqlx::query("UPDATE scheduler_runs SET result = 'ending' WHERE job = 'held'")
        .execute(&mut *holding)
        .await
        .unwrap();
    let taken = tokio::time::timeout(tests::PATIENCE, db.take_over_run(&key, fence, "b/1", 1000))
        .await
        .expect("a take-over that does not wait for a held row");
    assert_eq!(taken.unwrap(), None, "skipped while held");
    // The holder renews while its own end is under way; the end commits.
    let renewal = tokio::spawn({
        let (db, key) = (db.clone(), key.clone());
        async move { db.renew_run(&key, fence, 1000).await }
    });
    sqlx::query("UPDATE scheduler_runs SET state = 'succeeded' WHERE job = 'held'")
        .execute(&mut *holding)
        .await
        .unwrap();
    holding.commit().await.unwrap();
    assert_eq!(renewal.await.unwrap().unwrap(), Renewal::Ended);
    assert_eq!(db.take_over_run(&key, fence, "b/1", 1000).await.unwrap(), None, "ended");
}
