//! System scenarios (issue 9): the real `kitt-hub`, `kitt-agent` and `kitt-printer-sim`
//! binaries as separate processes, a UDP impairment relay between each agent and the hub,
//! outages as users meet them. After each, the checker (`tests::checker`) compares what the
//! printers emitted with what the hub stored and the scenario prints one verdict line,
//! `scenario <name>: PASS — …`, which is also the failure message. docs/scenarios.md says
//! what each one checks.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::PATIENCE;
use tests::checker::{Rules, Verdict};
use tests::print_files::{big_gcode, fixture};
use tests::process::Process;
use tests::scenario::{
    Agent, AgentSpec, Fleet, Printer, PrinterSpec, fill_outbox, kind, wait_until,
};

/// The state the hub shows for a printer: `(state, layer, total_layers)`.
fn shown(fleet: &Fleet, serial: &str) -> Option<(String, u64, u64)> {
    let printer = fleet.hub.printer_json(serial)?;
    let state = &printer["state"];
    Some((
        state["state"].as_str()?.to_owned(),
        state["layer"].as_u64().unwrap_or(0),
        state["total_layers"].as_u64().unwrap_or(0),
    ))
}

/// Waits until the hub shows the printer in a state `want` accepts: `(state, layer, total)`.
async fn wait_shown(
    fleet: &Fleet,
    serial: &str,
    what: &str,
    want: impl Fn(&str, u64) -> bool,
) -> Result<(String, u64, u64), String> {
    wait_until(PATIENCE, what, || async {
        shown(fleet, serial).filter(|(state, layer, _)| want(state, *layer))
    })
    .await
}

/// Waits for the line of `process`'s log containing `needle`, requires it to contain
/// `says` (what the user should know or do) and names it in the verdict from `from` on
/// (past the timestamp, level and target).
fn told(verdict: &mut Verdict, process: &Process, who: &str, needle: &str, from: &str, says: &str) {
    match process.wait_line_where(PATIENCE, needle, |line| line.contains(needle)) {
        Ok(line) => {
            verdict.require(line.contains(says), format!("the {who} log does not say {says:?}"));
            let message = line.find(from).map_or(line.as_str(), |at| &line[at..]);
            verdict.fact(format!("{who} log: \"{}\"", message.trim()));
        }
        Err(problem) => verdict.problem(problem),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_runs_through_a_link_cut_and_every_event_arrives_in_order() {
    const SERIAL: &str = "01P00A391800101";
    const FAILING: &str = "01P00A391800111";
    let mut verdict = Verdict::new("link-cut-during-print");
    let fleet = Fleet::start();
    let printer = fleet.printer(PrinterSpec::new(SERIAL).job("Benchy", 40));
    // A second printer on the same agent: its job fails during the cut with an HMS alert.
    let failing = fleet.printer(
        PrinterSpec::new(FAILING)
            .job("Bracket", 30)
            .option("--fail-at-layer", "24")
            .option("--hms", "0300_0100_0001_0007")
            .option("--print-error", "0300_8003"),
    );
    let spec = AgentSpec::new("pi-cut").printer(&printer).printer(&failing);
    let mut agent = fleet.agent(spec).await;

    let printing = |state: &str, layer| state == "printing" && layer > 0;
    verdict.ok(wait_shown(&fleet, SERIAL, "the hub showing the print", printing).await);
    agent.cut(true);
    let cut_at = Instant::now();
    // What the dashboard shows during the cut: the agent offline, the printer as last known.
    let offline = fleet.hub.wait_online(&agent.id, false).await;
    match (offline, shown(&fleet, SERIAL)) {
        (Ok(_), Some((state, layer, total))) => {
            verdict.require(state == "printing", format!("during the cut the hub showed {state}"));
            verdict.fact(format!(
                "during the cut the hub showed pi-cut offline after {:.1} s and the printer \
                 {state} at layer {layer}/{total}",
                cut_at.elapsed().as_secs_f64()
            ));
        }
        (Err(problem), _) => verdict.problem(problem),
        (_, None) => verdict.problem("the hub did not show the printer during the cut"),
    }
    // The prints go on, and end, while the link is cut.
    for printer in [&printer, &failing] {
        verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    }
    let before_return = [shown(&fleet, SERIAL), shown(&fleet, FAILING)];
    verdict.require(
        before_return.iter().flatten().all(|(state, _, _)| state == "printing"),
        format!("the hub learnt of the jobs' ends through a cut link: {before_return:?}"),
    );
    agent.cut(false);
    verdict.fact(format!(
        "link cut {:.1} s (> the {} s idle timeouts); both jobs ended during the cut",
        cut_at.elapsed().as_secs_f64(),
        tests::scenario::IDLE_TIMEOUT_S
    ));
    let rules = Rules { jobs_must_end: true, ..Rules::default() };
    verdict.include(&fleet.check(&agent, &[&printer, &failing], &rules).await);
    verdict.require(agent.running.is_running(), "the agent exited");
    verdict.conclude();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_the_hub_and_both_mid_print_loses_and_duplicates_nothing() {
    const SERIAL: &str = "01P00A391800102";
    const LAYERS: u64 = 80;
    let mut fleet = Fleet::start();
    let printer = fleet.printer(PrinterSpec::new(SERIAL).job("Survivor", LAYERS as u32));
    let mut agent = fleet.agent(AgentSpec::new("pi-crash").printer(&printer)).await;
    // The hub's view of the print moves past `layer`: data flows again.
    async fn past(fleet: &Fleet, layer: u64) -> Result<u64, String> {
        let what = format!("the hub following the print past layer {layer}");
        let found = wait_shown(fleet, SERIAL, &what, |_, at| at > layer).await;
        found.map(|(_, at, _)| at)
    }

    let mut verdict = Verdict::new("kill-9-agent");
    match past(&fleet, 2).await {
        Ok(layer) => {
            agent.restart();
            match past(&fleet, layer + 2).await {
                Ok(after) => verdict.fact(format!(
                    "agent killed at layer {layer}/{LAYERS} and restarted; the hub followed on to layer {after}"
                )),
                Err(problem) => verdict.problem(problem),
            }
        }
        Err(problem) => verdict.problem(problem),
    }
    let rules = Rules { reannounced_jobs: agent.restarts, ..Rules::default() };
    verdict.include(&fleet.check(&agent, &[&printer], &rules).await);
    verdict.conclude();

    let mut verdict = Verdict::new("kill-9-hub");
    let layer = shown(&fleet, SERIAL).map_or(0, |(_, layer, _)| layer);
    let before = match fleet.hub.db().await {
        Ok(db) => db.record_count(&agent.id).await.unwrap_or(0),
        Err(_) => 0,
    };
    fleet.hub.restart();
    match past(&fleet, layer + 2).await {
        Ok(after) => verdict.fact(format!(
            "hub killed while ingesting (at layer {layer}, {before} records stored) and restarted; \
             the hub followed on to layer {after}"
        )),
        Err(problem) => verdict.problem(problem),
    }
    verdict.include(&fleet.check(&agent, &[&printer], &rules).await);
    verdict.conclude();

    let mut verdict = Verdict::new("kill-9-both");
    let layer = shown(&fleet, SERIAL).map_or(0, |(_, layer, _)| layer);
    agent.running.kill9();
    fleet.hub.running.kill9();
    fleet.hub.restart();
    agent.restart();
    match past(&fleet, layer + 2).await {
        Ok(after) => verdict.fact(format!(
            "agent and hub killed at layer {layer} and restarted; the hub followed on to layer {after}"
        )),
        Err(problem) => verdict.problem(problem),
    }
    verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    let rules = Rules { reannounced_jobs: agent.restarts, jobs_must_end: true, ..Rules::default() };
    let report = fleet.check(&agent, &[&printer], &rules).await;
    verdict.include(&report);
    // Nothing the agent deleted (acknowledged) is missing at the hub.
    verdict.require(agent.terminate(), "the agent did not stop cleanly");
    // The agent may send (and have acknowledged) a few more records between the report and
    // its stop: what the hub holds is read after the agent stopped.
    let held = match fleet.hub.db().await {
        Ok(db) => db.records(&agent.id).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match (
        edge_agent::outbox::Outbox::open(edge_agent::outbox::OutboxConfig::new(
            agent.state_dir.join("outbox.db"),
        )),
        held,
    ) {
        (Ok((_, opened)), Ok(held)) => {
            let held: std::collections::HashSet<u64> = held.iter().map(|r| r.seq.0).collect();
            let missing: Vec<u64> =
                (1..=opened.acked_through.0).filter(|seq| !held.contains(seq)).collect();
            verdict.require(
                missing.is_empty(),
                format!(
                    "the agent's outbox says the hub acknowledged through {}, the hub lacks {missing:?}",
                    opened.acked_through
                ),
            );
            verdict.fact(format!(
                "stopped cleanly, the agent's outbox holds {} unacknowledged records after seq {}",
                opened.records, opened.acked_through
            ));
        }
        (Err(error), _) => verdict.problem(format!("cannot open the agent's outbox: {error}")),
        (_, Err(error)) => verdict.problem(format!("cannot read the hub's records: {error}")),
    }
    verdict.conclude();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_during_a_cut_expires_and_one_delivered_before_it_runs_once() {
    const SERIAL: &str = "01P00A391800103";
    let mut verdict = Verdict::new("commands-across-a-cut");
    let fleet = Fleet::start();
    let printer = fleet.printer(PrinterSpec::new(SERIAL).job("Bracket", 40));
    let mut agent = fleet.agent(AgentSpec::new("pi-commands").printer(&printer)).await;
    let hub = &fleet.hub;
    let printing = |state: &str, _| state == "printing";
    verdict.ok(wait_shown(&fleet, SERIAL, "the hub showing the print", printing).await);

    // Delivered before the cut: a pause. The link goes as soon as the printer has it, before
    // its result has necessarily reached the hub.
    let pause = hub.command_printer(SERIAL, &json!({"action": "pause", "expires_in_s": 60}));
    let delivered =
        printer.wait_emitted("the pause at the printer", |l| l.line["command"] == "pause").await;
    agent.cut(true);
    verdict.ok(delivered);
    verdict.ok(hub.wait_online(&agent.id, false).await);
    // Sent while the agent is unreachable: a stop that expires in 2 s.
    let stop = hub.command_printer(SERIAL, &json!({"action": "stop", "expires_in_s": 2}));
    match &stop {
        Ok((_, status)) => verdict.require(
            status.starts_with("queued: the agent is offline"),
            format!("the hub answered {status:?} for a command to an offline agent"),
        ),
        Err(problem) => verdict.problem(problem.clone()),
    }
    let outcome = |command: &Result<(String, String), String>, want: &'static str| {
        let id = command.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
        async move {
            wait_until(PATIENCE, &format!("command {id} {want}"), || async {
                hub.command_outcome(&id).filter(|outcome| outcome == want)
            })
            .await
        }
    };
    verdict.ok(outcome(&stop, "expired").await);
    agent.cut(false);
    verdict.ok(outcome(&pause, "succeeded").await);
    verdict.ok(hub.wait_online(&agent.id, true).await);
    // After the link returns: a resume, so the print ends, and the stop stays unexecuted.
    let resume = hub.command_printer(SERIAL, &json!({"action": "resume"}));
    verdict.ok(outcome(&resume, "succeeded").await);
    verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    let emitted = printer.emitted().unwrap_or_default();
    let count = |command| tests::checker::requests(&emitted, command).len();
    let (pauses, stops, resumes) = (count("pause"), count("stop"), count("resume"));
    verdict.require(pauses == 1, format!("the printer received {pauses} pause requests"));
    verdict.require(stops == 0, format!("the printer received {stops} stop requests"));
    verdict.require(resumes == 1, format!("the printer received {resumes} resume requests"));
    let now = |command: &Result<(String, String), String>| {
        let id = command.as_ref().map(|(id, _)| id.as_str()).unwrap_or_default();
        hub.command_outcome(id).unwrap_or_else(|| "none".into())
    };
    let status = stop.as_ref().map(|(_, status)| status.as_str()).unwrap_or_default();
    verdict.fact(format!(
        "pause delivered, then the link cut: outcome {}, the printer saw {pauses} pause; stop \
         sent while cut: the hub answered \"{}\", outcome {}, the printer saw {stops} stop; \
         resume after the link returned: outcome {}, the printer saw {resumes} resume",
        now(&pause),
        status.split(';').next().unwrap_or_default(),
        now(&stop),
        now(&resume)
    ));
    let rules = Rules { jobs_must_end: true, ..Rules::default() };
    verdict.include(&fleet.check(&agent, &[&printer], &rules).await);
    verdict.require(agent.running.is_running(), "the agent exited");
    verdict.conclude();
}

/// An agent's drop totals of one class, as `GET /api/v1/agents` reports them.
fn drops(agent: &serde_json::Value, class: &str) -> u64 {
    agent["drops"]
        .as_array()
        .map(|drops| {
            drops.iter().filter(|d| d["class"] == class).filter_map(|d| d["count"].as_u64()).sum()
        })
        .unwrap_or(0)
}

/// After a cut that cost telemetry: waits until the agent's backlog drained at the hub (its
/// latest health shows an outbox of a few records, so no drop can follow), then runs the
/// checker allowing as gaps the telemetry of `backlog` the agent reported dropped, and
/// nothing else. Returns the telemetry drops reported.
async fn check_with_drops(
    fleet: &Fleet,
    agent: &mut Agent,
    printer: &Printer,
    backlog: std::ops::RangeInclusive<u64>,
    verdict: &mut Verdict,
) -> u64 {
    let drained = wait_until(tests::scenario::SETTLE, "the agent's backlog drained", || async {
        let shown = fleet.hub.agent_json(&agent.id)?;
        let waiting = shown["outbox_records"].as_u64()?;
        let others: u64 = ["event", "health", "snapshot"].iter().map(|c| drops(&shown, c)).sum();
        (waiting < 50).then(|| (drops(&shown, "telemetry"), others))
    })
    .await;
    let (telemetry, others) = match drained {
        Ok(drops) => drops,
        Err(problem) => {
            verdict.problem(problem);
            return 0;
        }
    };
    verdict.require(others == 0, format!("{others} records of other classes dropped"));
    verdict.fact(format!(
        "{telemetry} telemetry records dropped and reported (/api/v1/agents drops: telemetry \
         {telemetry}, events, health and snapshots {others})"
    ));
    let rules =
        Rules { dropped: Some((telemetry, backlog)), jobs_must_end: true, ..Rules::default() };
    verdict.include(&fleet.check(agent, &[printer], &rules).await);
    verdict.require(agent.running.is_running(), "the agent exited");
    verdict.fact(format!("the agent process never restarted ({} restarts)", agent.restarts));
    telemetry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_telemetry_first_reports_it_and_keeps_every_event() {
    const SERIAL: &str = "01P00A391800104";
    const BUDGET_MB: u64 = 8;
    let mut verdict = Verdict::new("outbox-capacity");
    let fleet = Fleet::start();
    // The printer reports every 50 ms, the agent samples every 100 ms.
    let printer =
        fleet.printer(PrinterSpec::new(SERIAL).job("Vase", 40).option("--report-ms", "50"));
    let spec = AgentSpec::new("pi-full").printer(&printer).outbox_mb(BUDGET_MB).telemetry_ms(100);
    let mut agent = fleet.enroll(spec).await;
    // An outage of hours left the outbox 16 KiB short of its budget.
    let backlog = fill_outbox(&agent.state_dir, BUDGET_MB, SERIAL, (BUDGET_MB << 20) - (16 << 10));
    agent.cut(true);
    let cut_at = Instant::now();
    agent.start();
    verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    agent.cut(false);
    verdict.fact(format!(
        "a {BUDGET_MB} MiB outbox held {} telemetry records of an earlier outage, 16 KiB short of \
         full; link cut {:.1} s while the printer reported every 50 ms and printed a job",
        backlog.clone().count(),
        cut_at.elapsed().as_secs_f64()
    ));
    let dropped = check_with_drops(&fleet, &mut agent, &printer, backlog, &mut verdict).await;
    verdict.require(dropped > 0, "no telemetry was dropped: the budget was never hit");
    verdict.conclude();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_costs_telemetry_at_most_and_the_agent_carries_on() {
    const SERIAL: &str = "01P00A391800105";
    const DISK_MB: u64 = 16;
    let mut verdict = Verdict::new("disk-full");
    // Needs root to mount a small tmpfs (CI and `cargo xtask test` run as root here): a
    // machine that cannot fails the scenario with the reason rather than passing it unrun.
    if let Err(why) = tests::scenario::tmpfs_available() {
        panic!("scenario disk-full: FAIL — cannot mount a tmpfs to fill ({why}); run as root");
    }
    let fleet = Fleet::start();
    let printer =
        fleet.printer(PrinterSpec::new(SERIAL).job("Lid", 40).option("--report-ms", "50"));
    let spec = AgentSpec::new("pi-disk").printer(&printer).telemetry_ms(100);
    let mut agent = fleet.enroll(spec).await;
    // An earlier outage left 1 MiB of telemetry; the state directory moves onto a small
    // disk of the agent's own.
    let backlog = fill_outbox(&agent.state_dir, 64, SERIAL, 1 << 20);
    let disk = agent.state_dir.with_file_name("disk");
    std::fs::create_dir_all(&disk).unwrap();
    agent.use_state_dir(&disk);
    let mut run = std::process::Command::new(tests::process::bin("kitt-agent"));
    run.args(["run", "--config"]).arg(&agent.config);
    agent.cut(true);
    let cut_at = Instant::now();
    agent.start_as(tests::scenario::on_tmpfs(&disk, DISK_MB, &agent.state_dir, &run));
    verdict
        .ok(agent.running.process().wait_line_where(PATIENCE, "the outbox open", |line| {
            line.contains("Opened the outbox")
        }));
    // Something else fills the disk.
    let ballast = tests::scenario::disk_of(agent.running.process(), &disk.join("ballast"));
    match tests::scenario::fill_disk(&ballast) {
        Ok(bytes) => verdict.fact(format!(
            "the agent's {DISK_MB} MiB disk (a tmpfs, outbox holding {} telemetry records of an \
             earlier outage) filled up by {:.1} MiB of something else, link cut",
            backlog.clone().count(),
            bytes as f64 / f64::from(1 << 20)
        )),
        Err(error) => verdict.problem(format!("cannot fill {}: {error}", ballast.display())),
    }
    verdict.ok(agent.running.process().wait_line_where(PATIENCE, "the outbox noticing", |line| {
        line.contains("Outbox disk full") || line.contains("Outbox commit failed")
    }));
    verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    // What the agent said while its disk was full.
    let said = agent.running.process().take_lines();
    let saved = said.iter().filter(|line| line.contains("saved the batch")).count();
    let refused = said.iter().filter(|line| line.contains("Outbox commit failed")).count();
    let kept = said
        .iter()
        .rev()
        .find_map(|line| line.split("; ").last()?.strip_suffix(" records kept in memory"));
    verdict.fact(format!(
        "agent log: {saved} × \"Outbox disk full: evicted the oldest telemetry and saved the \
         batch\" (the disk reserve released first), {refused} × \"Outbox commit failed; the \
         records stay pending\"{}",
        kept.map(|n| format!(" (the last: {n} records kept in memory)")).unwrap_or_default()
    ));
    // Space again, and the link back.
    if let Err(error) = std::fs::remove_file(&ballast) {
        verdict.problem(format!("cannot remove the ballast: {error}"));
    }
    agent.cut(false);
    verdict.fact(format!(
        "disk full and link cut for {:.1} s while the printer printed",
        cut_at.elapsed().as_secs_f64()
    ));
    check_with_drops(&fleet, &mut agent, &printer, backlog, &mut verdict).await;
    verdict.conclude();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigurations_each_say_what_is_wrong_and_the_rest_keeps_syncing() {
    const HEALTHY: &str = "01P00A391800106";
    const LOCKED: &str = "01P00A391800107";
    const SWAPPED: &str = "01P00A391800108";
    let mut fleet = Fleet::start();
    let healthy_printer = fleet.printer(PrinterSpec::new(HEALTHY).job("Gear", 60));
    let healthy = fleet.agent(AgentSpec::new("pi-healthy").printer(&healthy_printer)).await;

    let mut verdict = Verdict::new("wrong-access-code");
    let locked = fleet.printer(PrinterSpec::new(LOCKED).access_code("87654321"));
    let spec = AgentSpec::new("pi-wrong-code").printer_with_code(&locked, "12345678");
    let wrong_code = fleet.agent(spec).await;
    let remedy = "check the 8-character LAN access code on the printer's screen";
    let log = wrong_code.running.process();
    told(&mut verdict, log, "agent", "refused the access code", "problem=", remedy);
    verdict.conclude();

    let mut verdict = Verdict::new("printer-certificate-change");
    let mut swapped = fleet.printer(PrinterSpec::new(SWAPPED));
    let pinned = fleet.agent(AgentSpec::new("pi-pinned").printer_pinned(&swapped)).await;
    let idle = |state: &str, _| state == "idle";
    verdict.ok(wait_shown(&fleet, SWAPPED, "the hub showing the pinned printer", idle).await);
    swapped.replace();
    let (log, changed) = (pinned.running.process(), "CHANGED since it was first seen");
    told(&mut verdict, log, "agent", changed, "problem=", "to trust the new key");
    verdict.conclude();

    let mut verdict = Verdict::new("revoked-agent");
    let revoked = fleet.agent(AgentSpec::new("pi-revoked")).await;
    verdict.ok(fleet.hub.wait_online(&revoked.id, true).await);
    let output = fleet.hub.cli(&["agent", "revoke", "pi-revoked"]);
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    verdict.require(
        output.status.success() && said.contains("revoked pi-revoked"),
        format!("kitt-hub agent revoke: {output:?}"),
    );
    verdict.fact(format!("CLI: \"{said}\""));
    // A connected agent hears the hub's close reason and says how to bring the agent back.
    let (log, refused) = (revoked.running.process(), "The hub refused this agent");
    told(&mut verdict, log, "agent", refused, refused, "revoked; to bring it back");
    let shown_revoked = wait_until(PATIENCE, "the hub showing pi-revoked revoked", || async {
        fleet
            .hub
            .agent_json(&revoked.id)
            .filter(|a| a["online"] == false && a["revoked_at"].is_i64())
    })
    .await;
    match shown_revoked {
        Ok(_) => verdict.fact("GET /api/v1/agents: revoked_at set, online false"),
        Err(problem) => verdict.problem(problem),
    }
    verdict.conclude();

    // A second Pi set up for the healthy printer (a clone, or one that should not speak for
    // it): its claim is refused, and the printer stays pi-healthy's.
    let mut verdict = Verdict::new("printer-claimed-by-another-agent");
    let thief = fleet.agent(AgentSpec::new("pi-thief").printer(&healthy_printer)).await;
    verdict.ok(fleet.hub.wait_online(&thief.id, true).await);
    let (log, refused) = (fleet.hub.running.process(), r#"reason="printer_not_owned""#);
    told(&mut verdict, log, "hub", refused, "Refused input", "belongs to agent pi-healthy");
    let claimed = wait_until(PATIENCE, "the refused claim listed for admins", || async {
        let claims = fleet.hub.get("/printer-claims").ok()?;
        let claim = claims["claims"].as_array()?.iter().find(|c| c["agent_id"] == "pi-thief")?;
        (claim["refused_records"].as_i64()? > 0).then(|| claim.clone())
    })
    .await;
    match claimed {
        Ok(claim) => verdict.fact(format!(
            "GET /api/v1/printer-claims: pi-thief's claim on {HEALTHY}, owner {}, {} records refused",
            claim["owner_id"], claim["refused_records"]
        )),
        Err(problem) => verdict.problem(problem),
    }
    let owner = fleet.hub.printer_json(HEALTHY).map(|p| p["agent_id"].clone());
    verdict.require(
        owner.as_ref().is_some_and(|o| o == "pi-healthy"),
        format!("the printer's agent is {owner:?}"),
    );
    verdict.fact("the printer stays pi-healthy's");
    drop(thief);
    verdict.conclude();

    let mut verdict = Verdict::new("foreign-client-certificate");
    let refused = tests::scenario::foreign_client(fleet.hub.sync_addr, &fleet.hub.ca_der()).await;
    match &refused {
        Ok(answer) => verdict.problem(format!("a foreign certificate got in: {answer}")),
        Err(error) => verdict.fact(format!("the client: \"{error}\"")),
    }
    // Refused input is logged (and counted) in one call, by source and reason.
    let (log, refused) = (fleet.hub.running.process(), r#"source="quic" reason="handshake""#);
    told(&mut verdict, log, "hub", refused, "Refused input", "invalid peer certificate");
    verdict.conclude();

    // All along, the healthy pair synced: every event of its print, in order, once.
    let mut verdict = Verdict::new("misconfigurations-affect-nothing-else");
    verdict.ok(healthy_printer.wait_emitted("the job's end", kind("job_finished")).await);
    let rules = Rules { jobs_must_end: true, ..Rules::default() };
    verdict.include(&fleet.check(&healthy, &[&healthy_printer], &rules).await);
    let online = fleet.hub.agent_json(&healthy.id).is_some_and(|a| a["online"] == true);
    verdict.require(online, "pi-healthy is offline");
    verdict.fact("pi-healthy online at the end, after the four misconfigurations above");
    verdict.require(fleet.hub.running.is_running(), "the hub exited");
    verdict.conclude();
}

/// A Raspberry Pi has no real-time clock: booted during an outage, its clock can be hours
/// off. Two agents run under libfaketime, one three hours behind and one three hours ahead
/// (the monotonic clock true). Each connects (the hub's fresh certificate "starts in the
/// future" for the one behind), runs a light command with the default one-minute expiry,
/// and is shown with its clock off. Then, cut off from the hub while its printer prints, it
/// is sent a start "with the plate confirmed clear"; the job ends during the cut, and when
/// the link returns the start must be refused with a reason the operator can act on. A start
/// confirmed after the job's end then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_confirmed_before_a_job_ended_is_refused_on_an_agent_hours_off() {
    const BEHIND: &str = "01P00A391800201";
    const AHEAD: &str = "01P00A391800202";
    let fleet = Fleet::start();
    let hub = &fleet.hub;
    let outcome = |id: String, want: &'static str| async move {
        wait_until(PATIENCE, &format!("command {id} {want}"), || async {
            hub.command_outcome(&id).filter(|outcome| outcome.starts_with(want))
        })
        .await
    };
    let id = |command: &Result<(String, String), String>| {
        command.as_ref().map(|(id, _)| id.clone()).unwrap_or_default()
    };
    for (serial, name, offset, want_offset_ms) in
        [(BEHIND, "pi-behind", "-3h", 10_800_000_i64), (AHEAD, "pi-ahead", "+3h", -10_800_000)]
    {
        // Long enough to still print when the start is sent, short enough to end in the cut.
        // The file the starts name is on the printer's card, as if uploaded before.
        let spec = PrinterSpec::new(serial).job("Housing", 60);
        let printer = fleet.printer(spec.option("--card-file", "/model/next.gcode.3mf"));
        let mut agent = fleet.enroll(AgentSpec::new(name).printer(&printer)).await;
        agent.start_with_clock_off(offset);
        let mut verdict = Verdict::new(&format!("start-confirmed-before-a-job-end-{name}"));
        let printing = |state: &str, _| state == "printing";
        verdict.ok(wait_shown(&fleet, serial, "the hub showing the print", printing).await);
        // What the dashboard shows: the clock, flagged.
        let shown = wait_until(PATIENCE, "the agent's clock shown", || async {
            hub.agent_json(&agent.id).filter(|a| a["clock"]["off"] == true)
        })
        .await;
        match shown {
            Ok(agent) => {
                let offset = agent["clock"]["offset_ms"].as_i64().unwrap_or_default();
                verdict.require(
                    (offset - want_offset_ms).abs() < 60_000,
                    format!(
                        "GET /api/v1/agents: clock offset {offset} ms, want about {want_offset_ms}"
                    ),
                );
                verdict.fact(format!("GET /api/v1/agents: clock off by {offset} ms, flagged"));
            }
            Err(problem) => verdict.problem(problem),
        }
        // Expiry is the hub's clock: a one-minute command neither expires at once (agent
        // ahead) nor lives three hours (agent behind).
        let light = hub.command_printer(
            serial,
            &json!({"action": "set_light", "node": "chamber_light", "mode": "on"}),
        );
        verdict.ok(outcome(id(&light), "succeeded").await);
        verdict.fact("a set_light with the default 60 s expiry succeeded");

        agent.cut(true);
        verdict.ok(hub.wait_online(&agent.id, false).await);
        let start = json!({"action": "start_print", "file": "/model/next.gcode.3mf",
            "plate_confirmed_clear": true, "expires_in_s": 600});
        let early = hub.command_printer(serial, &start);
        verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
        agent.cut(false);
        match outcome(id(&early), "precondition_failed").await {
            Ok(reason) => {
                verdict.require(
                    reason.contains("after") && reason.contains("confirm again"),
                    format!("the refusal does not tell the operator what to do: {reason:?}"),
                );
                verdict.fact(format!("the early start: \"{reason}\""));
            }
            Err(problem) => verdict.problem(problem),
        }
        let started = |printer: &tests::scenario::Printer| {
            let emitted = printer.emitted().unwrap_or_default();
            tests::checker::requests(&emitted, "project_file").len()
        };
        verdict.require(started(&printer) == 0, "the printer was told to start on its old plate");
        // Confirmed now, after the job's end reached the hub: it runs.
        let finished = |state: &str, _| state == "finished";
        verdict.ok(wait_shown(&fleet, serial, "the hub showing the job finished", finished).await);
        let late = hub.command_printer(serial, &start);
        verdict.ok(outcome(id(&late), "succeeded").await);
        verdict
            .require(started(&printer) == 1, "the start confirmed after the job's end did not run");
        verdict.fact("a start confirmed after the job's end ran");
        verdict.include(&fleet.check(&agent, &[&printer], &Rules::default()).await);
        verdict.conclude();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_during_ingest_loses_nothing_acknowledged() {
    const SERIAL: &str = "01P00A391800109";
    let mut verdict = Verdict::new("postgres-restart");
    let cluster = match tokio::task::spawn_blocking(tests::postgres::Cluster::start_private).await {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(error)) => panic!("{error}"),
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    };
    let url = cluster.fresh_database().await;
    let mut fleet = Fleet::start_with(Some(url));
    let printer = fleet.printer(PrinterSpec::new(SERIAL).job("Cog", 60));
    let agent = fleet.agent(AgentSpec::new("pi-pg").printer(&printer)).await;
    let printing = |_: &str, layer| layer > 2;
    verdict.ok(wait_shown(&fleet, SERIAL, "the hub following the print", printing).await);
    let acknowledged = match fleet.hub.db().await {
        Ok(db) => db.watermark(&agent.id).await.map(|seq| seq.0).unwrap_or(0),
        Err(_) => 0,
    };
    // A crash of the server, mid-ingest: no shutdown checkpoint, recovery from the WAL.
    let restarted_at = Instant::now();
    match tokio::task::spawn_blocking(move || cluster.restart().map(|()| cluster)).await {
        Ok(Ok(cluster)) => {
            verdict.fact(format!(
                "PostgreSQL crashed and restarted (pg_ctl restart -m immediate, {:.1} s) with \
                 seqs 1..={acknowledged} acknowledged",
                restarted_at.elapsed().as_secs_f64()
            ));
            // Kept until the end: dropping it stops the cluster.
            let layer = shown(&fleet, SERIAL).map_or(0, |(_, layer, _)| layer);
            let resumed =
                wait_shown(&fleet, SERIAL, "ingest resuming", |_, at| at > layer + 2).await;
            match resumed {
                Ok(_) => verdict.fact(format!(
                    "ingest resumed {:.1} s after the crash",
                    restarted_at.elapsed().as_secs_f64()
                )),
                Err(problem) => verdict.problem(problem),
            }
            verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
            let rules = Rules { jobs_must_end: true, ..Rules::default() };
            let report = fleet.check(&agent, &[&printer], &rules).await;
            verdict.require(
                report.through >= acknowledged,
                format!("the hub holds 1..={}, but acknowledged {acknowledged}", report.through),
            );
            verdict.include(&report);
            drop(cluster);
        }
        Ok(Err(error)) => verdict.problem(format!("cannot restart PostgreSQL: {error}")),
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
    verdict.require(fleet.hub.running.is_running(), "the hub exited");
    verdict.conclude();
}

/// Writes through the hub's API from `since` on (an operator confirming `serial`'s plate
/// clear: a row written), a new attempt every second while earlier ones may still wait for
/// the database; how long after `since` the first one succeeded.
fn first_write(
    hub: &tests::scenario::Api,
    serial: &str,
    since: Instant,
    patience: Duration,
) -> Result<Duration, String> {
    let path = format!("/printers/{serial}/plate-clear");
    let (answers, answered) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let mut last_error = String::from("no answer");
        loop {
            let (answers, path) = (answers.clone(), &path);
            scope.spawn(move || {
                let _ = answers.send(hub.post(path, &json!({})).map(|_| since.elapsed()));
            });
            let next = Instant::now() + Duration::from_secs(1);
            while let Ok(answer) =
                answered.recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                match answer {
                    Ok(after) => return Ok(after),
                    Err(error) => last_error = error,
                }
            }
            if since.elapsed() >= patience {
                return Err(format!(
                    "no write through the hub's API within {} s; the last answer: {last_error}",
                    patience.as_secs()
                ));
            }
        }
    })
}

/// Issue 21's reference database (`deploy/hub/REPLICAS.md`): a primary and a synchronous
/// standby under Patroni with etcd, the hub reaching the primary through HAProxy's `postgres`
/// section, all Debian's packages and the reference files (`tests::patroni`). The primary's
/// Patroni and PostgreSQL are killed (-9) while the hub ingests, as when its host dies:
/// Patroni promotes the standby once the leader lock expires (`ttl` 30 s), HAProxy follows,
/// and the hub must carry on by itself with nothing it acknowledged lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_under_patroni_during_ingest_loses_nothing_acknowledged() {
    const SERIAL: &str = "01P00A391800110";
    // 40 s of printing: through the failover (about 30 s) and on after it.
    const LAYERS: u32 = 160;
    // The leader lock's 30 s, and as much again for a busy machine.
    const FAILOVER: Duration = Duration::from_secs(120);
    let mut verdict = Verdict::new("patroni-failover");
    let start = || tests::patroni::PatroniCluster::start(&std::env::temp_dir());
    // The binaries are brought up to date meanwhile (`cargo build`, once per test process).
    let (started, _) = tokio::join!(
        tokio::task::spawn_blocking(start),
        tokio::task::spawn_blocking(|| tests::process::bin("kitt-hub"))
    );
    let mut cluster = match started {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(error)) => panic!("scenario patroni-failover: FAIL — {error}"),
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    };
    let mut fleet = Fleet::start_with(Some(cluster.url()));
    let printer = fleet.printer(PrinterSpec::new(SERIAL).job("Gear", LAYERS));
    let agent = fleet.agent(AgentSpec::new("pi-patroni").printer(&printer)).await;
    let printing = |_: &str, layer| layer > 2;
    verdict.ok(wait_shown(&fleet, SERIAL, "the hub following the print", printing).await);

    // Synchronous replication while the hub writes: the primary's settings, as the hub's role
    // sees them through HAProxy, and Patroni's view.
    let settings = cluster.psql(
        "SELECT current_setting('synchronous_commit') || ' ' || \
         current_setting('synchronous_standby_names')",
    );
    match (settings, cluster.sync_standby()) {
        (Ok(settings), Some(standby)) => {
            let (commit, names) = settings.split_once(' ').unwrap_or((&settings, ""));
            verdict.require(
                commit == "on" && names.contains(&standby),
                format!(
                    "synchronous replication is off: synchronous_commit {commit}, \
                     synchronous_standby_names {names:?}"
                ),
            );
            verdict.fact(format!(
                "synchronous replication on (synchronous_commit {commit}, \
                 synchronous_standby_names {names}; Patroni: {})",
                cluster.describe()
            ));
        }
        (Err(error), _) => verdict.problem(error),
        (_, None) => verdict.problem(format!("no synchronous standby: {}", cluster.describe())),
    }

    let acknowledged = match fleet.hub.db().await {
        Ok(db) => db.watermark(&agent.id).await.map(|seq| seq.0).unwrap_or(0),
        Err(_) => 0,
    };
    let layer = shown(&fleet, SERIAL).map_or(0, |(_, layer, _)| layer);
    let killed_at = Instant::now();
    let old = match cluster.kill_primary() {
        Ok(old) => old,
        Err(problem) => {
            verdict.problem(format!("cannot kill the primary: {problem}"));
            verdict.conclude();
            return;
        }
    };
    verdict.fact(format!(
        "kill -9 of {old}'s Patroni and postmaster at layer {layer}/{LAYERS}, with seqs \
         1..={acknowledged} acknowledged"
    ));
    // Watched at once, each on a thread of its own: Patroni's promotion, a primary through
    // HAProxy, the hub's ingest (the printer's layers moving on at the hub) and a write
    // through the hub's API.
    let api = fleet.hub.api();
    let (promoted, proxied, ingest, write) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let (cluster, api, old) = (&cluster, &api, &old);
            let promoted = scope.spawn(move || {
                cluster.wait_new_primary(old, FAILOVER).map(|new| (new, killed_at.elapsed()))
            });
            let proxied = scope.spawn(move || {
                tests::poll(FAILOVER, "a primary through HAProxy", || {
                    let primary = cluster.psql("SELECT pg_is_in_recovery()").ok()? == "f";
                    primary.then(|| killed_at.elapsed())
                })
            });
            let ingest = scope.spawn(move || {
                tests::poll(FAILOVER, "the hub's ingest resuming", || {
                    let printer = api.get(&format!("/printers/{SERIAL}")).ok()?;
                    let at = printer["state"]["layer"].as_u64()?;
                    (at > layer + 2).then(|| (at, killed_at.elapsed()))
                })
            });
            let write = scope.spawn(move || first_write(api, SERIAL, killed_at, FAILOVER));
            // A watcher's panic is the test's.
            fn joined<T>(thread: std::thread::Result<T>) -> T {
                thread.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            (
                joined(promoted.join()),
                joined(proxied.join()),
                joined(ingest.join()),
                joined(write.join()),
            )
        })
    });
    let seconds = |after: Duration| after.as_secs_f64();
    if let Some((new, after)) = verdict.ok(promoted) {
        verdict.fact(format!(
            "Patroni promoted {new} {:.1} s after the kill (the reference's ttl 30 s, loop_wait \
             10 s, retry_timeout 10 s)",
            seconds(after)
        ));
    }
    if let Some(after) = verdict.ok(proxied) {
        verdict.fact(format!("a primary through HAProxy {:.1} s after", seconds(after)));
    }
    if let Some((at, after)) = verdict.ok(ingest) {
        verdict.fact(format!(
            "the hub's ingest resumed by itself {:.1} s after (layer {at} shown)",
            seconds(after)
        ));
    }
    if let Some(after) = verdict.ok(write) {
        verdict.fact(format!(
            "a write through the hub's API (POST /printers/{{id}}/plate-clear) succeeded {:.1} s \
             after",
            seconds(after)
        ));
    }
    verdict.ok(printer.wait_emitted("the job's end", kind("job_finished")).await);
    let rules = Rules { jobs_must_end: true, ..Rules::default() };
    let report = fleet.check(&agent, &[&printer], &rules).await;
    verdict.require(
        report.through >= acknowledged,
        format!("the hub holds 1..={}, but acknowledged {acknowledged}", report.through),
    );
    verdict.include(&report);
    // What the hub said meanwhile: each part that uses the database warns and tries again,
    // the agent's connection ends on a failed write (the agent reconnects and resends), and
    // the probes' requests fail.
    let hub_log = fleet.hub.running.process().take_lines();
    let count = |needle: &str| hub_log.iter().filter(|line| line.contains(needle)).count();
    verdict.require(count("panicked") == 0, "the hub panicked");
    verdict.fact(format!(
        "the hub logged {} warnings ({} agent connections ended on a database error) and {} \
         failed API requests; the cluster after: {}",
        count(" WARN "),
        count("Agent connection ended"),
        count("Request failed inside the hub"),
        cluster.describe()
    ));
    verdict.require(fleet.hub.running.is_running(), "the hub exited");
    if !verdict.passed() {
        verdict.fact(cluster.logs());
    }
    verdict.conclude();
}

/// A job of the farm scenario: its id, what it is, and the printers it may print on.
struct FarmJob {
    id: i64,
    group: &'static str,
    fits: &'static [&'static str],
}

/// Issue 17's system scenario: a farm of three printers of two kinds with different
/// filaments, twelve jobs with material constraints in two priorities, and an operator who
/// confirms each plate clear after each print. Every job prints exactly once on a printer
/// that fits it and none starts before its plate was confirmed; the link is cut during a
/// transfer and the transfer resumes; the agent is killed mid-print and the job's history
/// stays whole; an FTPS refusal and a full card each fail their job with the printer's
/// reason, and a retry prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_jobs_runs_through_the_queue_on_a_mixed_farm() {
    const A: &str = "03919A391800601";
    const B: &str = "03919A391800602";
    const K: &str = "voron-601";
    let mut verdict = Verdict::new("jobs-on-a-mixed-farm");
    let fleet = Fleet::start();
    // Two A1s with different filaments: A refuses its first FTPS session; B's card is full.
    let bambu = |serial| {
        PrinterSpec::new(serial)
            .option("--model", "N2S")
            .option("--layers", "3")
            .option("--layer-ms", "150")
    };
    let a = fleet.printer(
        bambu(A)
            .option("--trays", "PLA:FFFFFF,PLA:000000,PETG:FF6A13,PLA:00AE42")
            .option("--ftps-refuse-sessions", "1"),
    );
    let b = fleet.printer(
        bambu(B)
            .option("--trays", "PETG:000000,PETG:FFFFFF,PLA:2850E0,ABS:C80000")
            .option("--sd-card-mb", "64")
            .option("--card-file", "/old-timelapse.avi:64"),
    );
    let k =
        fleet.printer(PrinterSpec::klipper(K).option("--layers", "3").option("--layer-ms", "200"));
    let spec = AgentSpec::new("pi-farm").printer(&a).printer(&b).klipper(&k);
    let mut agent = fleet.agent(spec).await;
    let hub = &fleet.hub;
    for printer in [A, B, K] {
        let shown = wait_until(PATIENCE, "the printer shown idle", || async {
            hub.printer_json(printer).filter(|p| p["state"]["state"] == "idle")
        })
        .await;
        verdict.ok(shown);
    }

    let a1 = verdict.ok(hub.upload("farm.gcode.3mf", &fixture("bambu-studio-1.10-a1.gcode.3mf")));
    let voron = verdict.ok(hub.upload("voron.gcode", &fixture("orca-2.1-voron.gcode")));
    let big_bytes = big_gcode(24 << 20);
    let big = verdict.ok(hub.upload("big.gcode", &big_bytes));
    let (Some(a1), Some(voron), Some(big)) = (a1, voron, big) else {
        verdict.conclude();
        return;
    };
    let id_of = |file: &serde_json::Value| file["id"].as_str().unwrap_or_default().to_owned();
    let big_sha = id_of(&big);

    // The operator: every plate clear at the start.
    let mut confirmed: Vec<(&str, i64)> = Vec::new();
    for printer in [A, B, K] {
        if let Some(plate) =
            verdict.ok(hub.post(&format!("/printers/{printer}/plate-clear"), &json!({})))
        {
            confirmed.push((printer, plate["confirmed_at"].as_i64().unwrap_or(0)));
        }
    }
    // A slow link while the big file goes (so it is still going when cut).
    agent.relay.set(tests::relay::Impairment {
        delay: std::time::Duration::from_millis(40),
        ..Default::default()
    });
    let mut jobs: Vec<FarmJob> = Vec::new();
    let mut add = |verdict: &mut Verdict,
                   group: &'static str,
                   fits: &'static [&'static str],
                   body: serde_json::Value| {
        if let Some(added) = verdict.ok(hub.post("/jobs", &body)) {
            for job in added["jobs"].as_array().into_iter().flatten() {
                jobs.push(FarmJob { id: job["id"].as_i64().unwrap_or(0), group, fits });
            }
        }
    };
    add(
        &mut verdict,
        "big G-code",
        &[K],
        json!({"file": id_of(&big), "name": "Big", "priority": 5}),
    );
    add(
        &mut verdict,
        "white PLA",
        &[A],
        json!({
        "file": id_of(&a1), "name": "White", "copies": 4,
        "materials": [{"slot": 1, "type": "PLA", "color": "#FFFFFF"},
                      {"slot": 2, "type": "PLA", "color": "#000000"},
                      {"slot": 6, "type": "PLA", "color": "#00AE42"}]}),
    );
    add(
        &mut verdict,
        "black PETG",
        &[B],
        json!({
        "file": id_of(&a1), "name": "Black", "copies": 3, "priority": 5,
        "materials": [{"slot": 1, "type": "PETG", "color": "#000000"},
                      {"slot": 2, "type": "PETG", "color": "#FFFFFF"},
                      {"slot": 6, "type": "PLA", "color": "#2850E0"}]}),
    );
    add(
        &mut verdict,
        "voron rush",
        &[K],
        json!({"file": id_of(&voron), "name": "Rush", "copies": 2, "priority": 5}),
    );
    add(&mut verdict, "voron", &[K], json!({"file": id_of(&voron), "name": "Plain", "copies": 2}));
    verdict.require(jobs.len() == 12, format!("{} jobs queued, not 12", jobs.len()));

    // The day: the operator confirms each plate after each print and retries what failed
    // for a reason they can fix; the link is cut once during the big transfer; the agent
    // is killed once mid-print.
    let started = Instant::now();
    let (mut cut_done, mut killed, mut refused_seen, mut full_seen) = (false, false, false, false);
    let mut views: Vec<serde_json::Value> = Vec::new();
    let mut reported = std::collections::HashSet::new();
    let mut restart_refusals = std::collections::HashSet::new();
    loop {
        if started.elapsed() > std::time::Duration::from_secs(240) {
            let states: Vec<String> =
                views.iter().map(|j| format!("{}:{}", j["id"], j["state"])).collect();
            verdict.problem(format!("the day did not end in 240 s: {states:?}"));
            break;
        }
        views = jobs.iter().filter_map(|job| hub.get(&format!("/jobs/{}", job.id)).ok()).collect();
        if views.len() == jobs.len() && views.iter().all(|j| j["state"] == "finished") {
            break;
        }
        for view in &views {
            if view["state"] != "failed" && view["state"] != "cancelled" {
                continue;
            }
            let reason = view["reason"].as_str().unwrap_or_default().to_owned();
            let printer = view["printer"].as_str().unwrap_or_default();
            if printer == A && reason.contains("421") && !refused_seen {
                refused_seen = true;
                verdict.fact(format!("job {} on {A} failed: \"{reason}\"; retried", view["id"]));
            } else if printer == B && reason.contains("storage is full") && !full_seen {
                full_seen = true;
                verdict.fact(format!("job {} on {B} failed: \"{reason}\"; the operator deleted a file from the card and retried", view["id"]));
                let target = edge_agent::printer::bambu::ftps::FtpsTarget {
                    host: "127.0.0.1".into(),
                    port: b.ftps.map_or(990, |addr| addr.port()),
                    serial: B.into(),
                    access_code: edge_agent::printer::bambu::link::AccessCode::new(b.access_code)
                        .expect("a code"),
                    trust: edge_agent::printer::bambu::tls::Trust::ca_file(&b.ca())
                        .expect("the CA"),
                    reuse_session: true,
                };
                verdict.ok(edge_agent::printer::bambu::ftps::delete(&target, "/old-timelapse.avi")
                    .await
                    .map_err(|e| e.to_string()));
            } else if reason.contains("confirm again")
                || reason.contains("interrupted by an agent restart")
            {
                // After the agent's restart: it cannot know that no job ended while it was
                // away (so a start confirmed before is refused once), and a start it had begun
                // is not carried on. The operator looks, confirms the plate, retries.
                if restart_refusals.insert(view["id"].as_i64()) {
                    verdict.fact(format!("job {} on {printer} after the agent's restart: \"{reason}\"; plate confirmed again, retried", view["id"]));
                }
                if let Some(known) = [A, B, K].into_iter().find(|p| *p == printer)
                    && let Some(plate) =
                        verdict.ok(hub.post(&format!("/printers/{known}/plate-clear"), &json!({})))
                {
                    confirmed.push((known, plate["confirmed_at"].as_i64().unwrap_or(0)));
                }
            } else {
                if reported.insert(view["id"].as_i64()) {
                    verdict.problem(format!(
                        "job {} on {printer} ended {} unexpectedly: {reason}",
                        view["id"], view["state"]
                    ));
                }
                continue;
            }
            verdict.ok(hub.post(&format!("/jobs/{}/retry", view["id"]), &json!({})));
        }
        for printer in [A, B, K] {
            let Some(shown) = hub.printer_json(printer) else { continue };
            let busy = views.iter().any(|j| {
                j["printer"] == printer
                    && !matches!(
                        j["state"].as_str(),
                        Some("queued" | "finished" | "failed" | "cancelled")
                    )
            });
            let ended =
                matches!(shown["state"]["state"].as_str(), Some("finished" | "idle" | "failed"));
            if shown["plate"]["clear"] == false
                && ended
                && !busy
                && let Some(plate) =
                    verdict.ok(hub.post(&format!("/printers/{printer}/plate-clear"), &json!({})))
            {
                confirmed.push((printer, plate["confirmed_at"].as_i64().unwrap_or(0)));
            }
        }
        let held = tests::print_files::agent_holds(&agent.state_dir, &big_sha);
        if !cut_done && held >= 8 << 20 {
            cut_done = true;
            agent.cut(true);
            verdict.ok(hub.wait_online(&agent.id, false).await);
            agent.cut(false);
            agent.relay.set(tests::relay::Impairment::default());
            verdict.fact(format!(
                "the link was cut with {} MiB of the big file on the agent",
                held >> 20
            ));
        }
        if cut_done
            && !killed
            && let Some(printing) = views.iter().find(|j| j["state"] == "printing")
        {
            killed = true;
            agent.restart();
            verdict.fact(format!(
                "the agent was killed (-9) while job {} printed on {}, and restarted",
                printing["id"],
                printing["printer"].as_str().unwrap_or("?")
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    verdict.require(cut_done, "the link was never cut during the big transfer");
    verdict.require(killed, "the agent was never killed mid-print");
    verdict.require(refused_seen, "the FTPS refusal did not fail a job");
    verdict.require(full_seen, "the full card did not fail a job");

    // Every job: printed once, on a printer that fits it, after a confirmation that came
    // after the printer's previous job ended.
    let mut prints: Vec<(String, i64, i64, i64)> = Vec::new();
    let mut resumed = false;
    for (job, view) in jobs.iter().zip(&views) {
        let history = view["history"].as_array().cloned().unwrap_or_default();
        let at = |to: &str| {
            history
                .iter()
                .filter(|h| h["to_state"] == to)
                .filter_map(|h| h["at"].as_i64())
                .collect::<Vec<_>>()
        };
        let (printing, finished) = (at("printing"), at("finished"));
        let printer = view["printer"].as_str().unwrap_or_default().to_owned();
        verdict.require(
            printing.len() == 1 && finished.len() == 1,
            format!(
                "job {} ({}) printed {} times, finished {} times",
                job.id,
                job.group,
                printing.len(),
                finished.len()
            ),
        );
        verdict.require(
            job.fits.contains(&printer.as_str()),
            format!("job {} ({}) printed on {printer}", job.id, job.group),
        );
        if let (Some(&start), Some(&end)) = (printing.first(), finished.first()) {
            prints.push((printer, start, end, job.id));
        }
        resumed |= history.iter().filter_map(|h| h["detail"].as_str()).any(|d| {
            d.strip_prefix("the transfer resumes from byte ")
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .is_some_and(|from| from >= 8 << 20)
        });
    }
    verdict.require(resumed, "the big transfer did not resume from what the agent held");
    prints.sort_by_key(|(printer, start, _, _)| (printer.clone(), *start));
    let mut unconfirmed = Vec::new();
    for (i, (printer, start, _, job)) in prints.iter().enumerate() {
        let previous_end = i
            .checked_sub(1)
            .map(|p| &prints[p])
            .filter(|p| &p.0 == printer)
            .map_or(i64::MIN, |p| p.2);
        let ok = confirmed.iter().any(|(p, at)| p == printer && *at > previous_end && at < start);
        if !ok {
            unconfirmed.push(*job);
        }
    }
    verdict.require(
        unconfirmed.is_empty(),
        format!("jobs started without a confirmation after the last print: {unconfirmed:?}"),
    );
    let on = |p: &str| prints.iter().filter(|(printer, ..)| printer == p).count();
    verdict.fact(format!(
        "12 jobs printed once each in {:.0} s: {} on {A}, {} on {B}, {} on {K}; {} plate confirmations, each print after one",
        started.elapsed().as_secs_f64(),
        on(A), on(B), on(K), confirmed.len()
    ));
    // What the printers themselves saw: one start per print.
    for (printer, printer_id) in [(&a, A), (&b, B)] {
        let starts = printer
            .emitted()
            .map(|e| tests::checker::requests(&e, "project_file").len())
            .unwrap_or(0);
        verdict.fact(format!("{printer_id} received {starts} project_file requests"));
    }
    verdict.require(agent.running.is_running(), "the agent exited");
    verdict.conclude();
}

/// Issue 18's system scenario: an A1 whose white, black and PETG spools carry RFID tags and
/// whose green one does not (an operator puts its spool there through kitt's Spoolman API,
/// as a Spoolman client); every job runs out of filament at layer 3. The first time the
/// operator stops the print: its outcome is `filament_runout` and only what was made is
/// deducted; the second time they load filament and resume: the print finishes and its
/// file's grams come off each slot's spool. A `kill -9` of the agent afterwards deducts
/// nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spools_follow_prints_a_runout_and_a_finished_print_on_a_farm() {
    const A: &str = "03919A391800701";
    let mut verdict = Verdict::new("materials-on-a-farm");
    let fleet = Fleet::start();
    let printer = fleet.printer(
        PrinterSpec::new(A)
            .option("--model", "N2S")
            .option("--layers", "6")
            .option("--layer-ms", "250")
            .option("--trays", "PLA:FFFFFF,PLA:000000,PETG:FF6A13,PLA:00AE42")
            .option("--runout-at-layer", "3"),
    );
    let mut agent = fleet.agent(AgentSpec::new("pi-spools").printer(&printer)).await;
    let hub = &fleet.hub;
    // The tagged trays become spools in their slots by themselves.
    let slots = verdict.ok(wait_until(PATIENCE, "the tagged spools linked", || async {
        hub.get(&format!("/printers/{A}/slots"))
            .ok()
            .filter(|s| s["slots"].as_array().is_some_and(|s| s.len() == 3))
    })
    .await);
    // The green spool, untagged: made and put in its slot by the operator.
    let base = verdict.ok(hub.spoolman_client("scenario-scale"));
    let (Some(slots), Some(base)) = (slots, base) else {
        verdict.conclude();
        return;
    };
    let green = verdict
        .ok(hub.spoolman(
            &base,
            "POST",
            "/filament",
            Some(&json!({
            "name": "Green PLA", "material": "PLA", "density": 1.24, "diameter": 1.75,
            "weight": 1000, "spool_weight": 200, "price": 24.0, "color_hex": "00AE42"})),
        ))
        .and_then(|f| {
            verdict.ok(hub.spoolman(
                &base,
                "POST",
                "/spool",
                Some(&json!({"filament_id": f["id"]})),
            ))
        })
        .and_then(|s| s["id"].as_i64());
    let Some(green) = green else {
        verdict.conclude();
        return;
    };
    verdict.ok(
        hub.put(&format!("/printers/{A}/slots"), &json!({"unit": 0, "slot": 3, "spool_id": green}))
    );
    let slot_spool = |unit: i64, slot: i64| {
        slots["slots"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["unit"] == unit && s["slot"] == slot)
            .and_then(|s| s["spool_id"].as_i64())
    };
    let spools: Vec<i64> =
        [slot_spool(0, 0), slot_spool(0, 1), Some(green)].into_iter().flatten().collect();
    verdict.require(spools.len() == 3, format!("the spools in slots 1, 2 and 4: {spools:?}"));
    let used = || -> Vec<f64> {
        spools
            .iter()
            .map(|id| {
                hub.spoolman(&base, "GET", &format!("/spool/{id}"), None)
                    .ok()
                    .and_then(|s| s["used_weight"].as_f64())
                    .unwrap_or(f64::NAN)
            })
            .collect()
    };
    let before = used();
    let Some(file) =
        verdict.ok(hub.upload("a1.gcode.3mf", &fixture("bambu-studio-1.10-a1.gcode.3mf")))
    else {
        verdict.conclude();
        return;
    };
    // Slots 1, 2 and 6 of the file, in grams, to trays 1, 2 and 4.
    let planned = [20.26, 2.15, 3.58];
    let job = json!({
        "file": file["id"], "name": "Benchy",
        "materials": [{"slot": 1, "type": "PLA", "color": "#FFFFFF"},
                      {"slot": 2, "type": "PLA", "color": "#000000"},
                      {"slot": 6, "type": "PLA", "color": "#00AE42"}]});
    let mut outcomes = Vec::new();
    for (round, then) in [("stopped", "stop"), ("resumed", "resume")] {
        verdict.ok(hub.post(&format!("/printers/{A}/plate-clear"), &json!({})));
        let id = verdict.ok(hub.post("/jobs", &job)).and_then(|j| j["jobs"][0]["id"].as_i64());
        let Some(id) = id else { break };
        // This job printing, then its printer paused (not the last job's pause, still shown).
        let printing = wait_until(PATIENCE, "the job printing", || async {
            hub.get(&format!("/jobs/{id}")).ok().filter(|j| j["state"] == "printing")
        })
        .await;
        if verdict.ok(printing).is_none() {
            break;
        }
        let paused = wait_until(PATIENCE, "the runout's pause", || async {
            hub.printer_json(A).filter(|p| p["state"]["state"] == "paused")
        })
        .await;
        if verdict.ok(paused).is_none() {
            break;
        }
        verdict.ok(hub.command_printer(A, &json!({"action": then})));
        let outcome = wait_until(PATIENCE, "the print's outcome", || async {
            let list = hub.get("/outcomes").ok()?;
            list["outcomes"].as_array()?.iter().find(|o| o["job_id"] == id).cloned()
        })
        .await;
        let Some(outcome) = verdict.ok(outcome) else { break };
        verdict.fact(format!(
            "the {round} print: {} ({}), {:.0} % made, {:.2} g, cost {:.2}",
            outcome["result"].as_str().unwrap_or("?"),
            outcome["reason"].as_str().unwrap_or("no reason"),
            outcome["progress"].as_f64().unwrap_or(f64::NAN) * 100.0,
            outcome["filament_g"].as_f64().unwrap_or(f64::NAN),
            outcome["cost"].as_f64().unwrap_or(f64::NAN),
        ));
        outcomes.push(outcome);
    }
    let after = used();
    if let [stopped, finished] = outcomes.as_slice() {
        verdict.require(
            stopped["result"] == "cancelled" && stopped["reason"] == "filament_runout",
            format!("the stopped print's outcome: {stopped}"),
        );
        verdict.require(
            finished["result"] == "success" && finished["reason"].is_null(),
            format!("the resumed print's outcome: {finished}"),
        );
        let made = stopped["progress"].as_f64().unwrap_or(f64::NAN);
        verdict.require(made > 0.0 && made < 1.0, format!("the stopped print made {made}"));
        for (i, grams) in planned.iter().enumerate() {
            let want = grams * made + grams;
            let got = after[i] - before[i];
            verdict.require(
                (got - want).abs() < 1e-6,
                format!("spool {} lost {got:.4} g, not {want:.4} g ({grams} g × {made:.3}, then {grams} g)", spools[i]),
            );
        }
    } else {
        verdict.problem(format!("{} outcomes, not 2", outcomes.len()));
    }
    // A kill -9 of the agent: everything it sends again is already counted.
    let restarted_at = proto::UnixMillis::now().0;
    agent.restart();
    verdict.ok(hub.wait_online(&agent.id, true).await);
    // A state the restarted agent observed has arrived: everything before it in its outbox
    // (whatever it sent again) is ingested.
    let settled = wait_until(PATIENCE, "a state from the restarted agent", || async {
        hub.printer_json(A).filter(|p| p["state_at"].as_i64().is_some_and(|at| at > restarted_at))
    })
    .await;
    verdict.ok(settled);
    let list = hub.get("/outcomes").unwrap_or_default();
    verdict.require(
        list["total"] == 2,
        format!("after the agent's restart: {} outcomes", list["total"]),
    );
    verdict.require(used() == after, "the agent's restart changed a spool's weight");
    verdict.require(agent.running.is_running(), "the agent exited");
    verdict.conclude();
}

/// Issue 21's system scenario: three `kitt-hub serve` replicas on one PostgreSQL run twenty
/// canary jobs, each due every second, until a thousand occurrences have run, while one
/// replica is killed with `kill -9` mid-run and started again, one is frozen with SIGSTOP
/// mid-run past its lease and thawed, and one runs with its wall clock five minutes ahead
/// (libfaketime) and is killed and restarted too. Checked from the side effect each run
/// writes in its fenced transaction (`scheduler_marks`), not from the scheduler's history:
/// every occurrence of every job marked exactly once, none missed between a job's first and
/// last, none before its time on the database's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_run_exactly_once_across_replicas_killed_frozen_and_skewed() {
    use std::collections::{BTreeMap, HashSet};
    use tests::scenario::Replica;

    const JOBS: usize = 20;
    const OCCURRENCES: usize = 1000;
    const LEASE_MS: i64 = 2000;
    let mut verdict = Verdict::new("scheduler-replicas");
    let url = tests::postgres::fresh_database().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let extra = "[http]\ndrain_s = 0\n[scheduler]\ntick_ms = 200\n";
    let mut a = Replica::start(dir.path(), &url, "hub-a", extra, None);
    let b = Replica::start(dir.path(), &url, "hub-b", extra, None);
    let mut c = Replica::start(dir.path(), &url, "hub-c", extra, Some("+5m"));
    assert!(a.cli(&["user", "add", "admin", "--role", "admin"]).status.success());
    let token = a.cli(&["user", "token", "admin"]);
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    match (a.wall_clock(), c.wall_clock()) {
        (Some(true_clock), Some(skewed)) => {
            let ahead = skewed - true_clock;
            verdict.require(
                (280..=320).contains(&ahead),
                format!("hub-c's clock is {ahead} s off, not 300"),
            );
            verdict.fact(format!("hub-c's wall clock {ahead} s ahead"));
        }
        clocks => verdict.problem(format!("cannot read the replicas' clocks: {clocks:?}")),
    }
    let db = hub::db::Db::open(&url).await.expect("the database");

    for n in 0..JOBS {
        let job = json!({
            "name": format!("canary-{n:02}"), "action": "mark",
            "schedule": {"every_ms": 1000, "misfire": "run_all"},
            "params": {"work_ms": 600}, "lease_ms": LEASE_MS,
        });
        verdict.ok(b.call(&token, "POST", "/scheduler/jobs", Some(&job)));
    }
    let marked = |at_least: usize| {
        let db = db.clone();
        async move {
            tests::fleet::wait_until(Duration::from_secs(180), &format!("{at_least} marks"), || {
                let db = db.clone();
                async move {
                    let marks = db.scheduler_mark_count().await.ok()? as usize;
                    (marks >= at_least).then_some(marks)
                }
            })
            .await
        }
    };
    // A replica's run under way, to strike at.
    let running_on = |replica: &str| {
        let (db, prefix) = (db.clone(), format!("{replica}/"));
        let what = format!("a run under way on {replica}");
        async move {
            tests::fleet::wait_until(Duration::from_secs(60), &what, || {
                let (db, prefix) = (db.clone(), prefix.clone());
                async move {
                    for n in 0..JOBS {
                        let runs = db.scheduler_runs(&format!("canary-{n:02}"), 5).await.ok()?;
                        if runs
                            .iter()
                            .any(|r| r.state == "running" && r.holder.starts_with(&prefix))
                        {
                            return Some(());
                        }
                    }
                    None
                }
            })
            .await
        }
    };

    verdict.ok(marked(150).await);
    verdict.ok(running_on("hub-a").await);
    a.kill9();
    verdict.fact("hub-a killed with kill -9 mid-run");
    verdict.ok(marked(300).await);
    a.restart();

    verdict.ok(running_on("hub-b").await);
    b.freeze();
    let frozen_at = db.clock().await.unwrap_or_default();
    // Past its lease, and then some, on the database's clock.
    let thaw_at = frozen_at + LEASE_MS + 2000;
    let waited = tests::fleet::wait_until(PATIENCE, "hub-b's lease to lapse", || {
        let db = db.clone();
        async move { (db.clock().await.ok()? > thaw_at).then_some(()) }
    })
    .await;
    verdict.ok(waited);
    b.thaw();
    verdict.fact(format!(
        "hub-b frozen (SIGSTOP) mid-run for {} ms, past its {LEASE_MS} ms lease",
        thaw_at - frozen_at
    ));
    verdict.ok(marked(600).await);
    // Thawed, hub-b found the runs it held taken over: its renewal or its end (under its
    // stale fence) was refused, and it stood down.
    let lines = b.running.process().take_lines();
    let count = |needle: &str| lines.iter().filter(|line| line.contains(needle)).count();
    let renewals = count("This replica lost its run");
    let ends = count("A run ended after another replica took it over");
    verdict.require(renewals + ends > 0, "hub-b, thawed, never found a run of its own taken over");
    verdict.fact(format!(
        "hub-b, thawed, stood down from {} runs taken over meanwhile ({renewals} at a renewal, {ends} at its fenced end)",
        renewals + ends
    ));

    verdict.ok(running_on("hub-c").await);
    c.kill9();
    c.restart();
    verdict.fact("hub-c (clock 5 min ahead) killed with kill -9 mid-run and restarted");
    verdict.ok(marked(OCCURRENCES).await);

    // Stopped through the replica that was frozen: it serves again.
    for n in 0..JOBS {
        verdict.ok(b.call(
            &token,
            "POST",
            &format!("/scheduler/jobs/canary-{n:02}/pause"),
            Some(&json!({})),
        ));
    }
    let settled = tests::fleet::wait_until(PATIENCE, "every run to end", || {
        let db = db.clone();
        async move {
            for n in 0..JOBS {
                let runs = db.scheduler_runs(&format!("canary-{n:02}"), 10_000).await.ok()?;
                if runs.iter().any(|r| r.state == "running") {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    verdict.ok(settled);

    // The side effect, every occurrence of every job.
    let marks = db.scheduler_marks().await.expect("the marks");
    let mut by_occurrence: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for mark in &marks {
        *by_occurrence.entry((mark.job.clone(), mark.occurrence)).or_default() += 1;
    }
    let duplicates: Vec<_> = by_occurrence.iter().filter(|(_, n)| **n > 1).collect();
    verdict.require(duplicates.is_empty(), format!("occurrences marked twice: {duplicates:?}"));
    let mut missed = Vec::new();
    for n in 0..JOBS {
        let name = format!("canary-{n:02}");
        let created = db.scheduler_job(&name).await.ok().flatten().map_or(0, |j| j.created_at);
        let ats: Vec<i64> =
            by_occurrence.keys().filter(|(job, _)| *job == name).map(|(_, at)| *at).collect();
        let last = ats.last().copied().unwrap_or(created);
        let mut expected = created;
        for at in &ats {
            while expected < *at {
                missed.push((name.clone(), expected));
                expected += 1000;
            }
            expected = at + 1000;
        }
        verdict.require(last >= created, format!("{name} never ran"));
    }
    verdict.require(missed.is_empty(), format!("occurrences never marked: {missed:?}"));
    let early: Vec<_> = marks.iter().filter(|m| m.written_at < m.occurrence).collect();
    verdict.require(early.is_empty(), format!("marked before their time: {early:?}"));
    let mut takeovers = 0;
    let mut failed = Vec::new();
    for n in 0..JOBS {
        let runs = db.scheduler_runs(&format!("canary-{n:02}"), 10_000).await.unwrap_or_default();
        takeovers += runs.iter().filter(|r| r.attempts > 1).count();
        failed.extend(
            runs.iter()
                .filter(|r| r.state != "succeeded")
                .map(|r| (r.key.job.clone(), r.key.occurrence, r.state.clone(), r.result.clone())),
        );
    }
    verdict.require(failed.is_empty(), format!("runs that did not succeed: {failed:?}"));
    verdict.require(takeovers > 0, "no run was taken over after its replica was lost");
    let holders: HashSet<&str> =
        marks.iter().map(|m| m.holder.split('/').next().unwrap_or_default()).collect();
    verdict.require(holders.len() == 3, format!("not every replica ran jobs: {holders:?}"));
    verdict.fact(format!(
        "{} occurrences of {JOBS} jobs checked from their marks; {takeovers} runs taken over from lost replicas; run by {} replicas",
        by_occurrence.len(),
        holders.len()
    ));
    for (replica, running) in [("hub-a", &mut a.running), ("hub-c", &mut c.running)] {
        verdict.require(running.is_running(), format!("{replica} exited"));
    }
    verdict.conclude();
}

/// Issue 21's HAProxy scenario: three replicas on one PostgreSQL behind Debian's HAProxy with
/// the reference configuration (`tests/src/haproxy.rs`), an agent enrolled with a token naming
/// all three, a dashboard's WebSocket through HAProxy that resumes from its cursor when it is
/// cut (as `store.js` does), and an operator sending G-code commands through HAProxy. The
/// replica serving the dashboard is killed with `kill -9` mid-session (and, if it is another,
/// the one the agent is connected to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_behind_haproxy_loses_no_dashboard_update_and_no_command() {
    use std::collections::{BTreeSet, HashMap};

    use edge_agent::sync::client::SyncStatus;
    use futures_util::StreamExt;
    use tests::haproxy::HaProxy;
    use tests::scenario::Replica;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const SERIAL: &str = "01P00A391800777";
    let mut verdict = Verdict::new("haproxy-replica-killed");
    let url = tests::postgres::fresh_database().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let extra = "[http]\ndrain_s = 0\n";
    let mut replicas: Vec<Replica> = ["hub-a", "hub-b", "hub-c"]
        .iter()
        .map(|name| Replica::start(dir.path(), &url, name, extra, None))
        .collect();
    let servers: Vec<(String, std::net::SocketAddr)> =
        replicas.iter().map(|r| (r.name.clone(), r.http_addr)).collect();
    let proxy = HaProxy::start(dir.path(), &servers);
    let all_up = tests::fleet::wait_until(PATIENCE, "HAProxy to see three replicas up", || async {
        let servers = proxy.servers();
        (servers.len() == 3 && servers.iter().all(|(_, state)| state == "UP")).then_some(())
    })
    .await;
    verdict.ok(all_up);
    assert!(replicas[0].cli(&["user", "add", "ops", "--role", "operator"]).status.success());
    let token = replicas[0].cli(&["user", "token", "ops"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let db = hub::db::Db::open(&url).await.expect("the database");

    // The agent, enrolled with a token naming every replica's sync address.
    let ca = match db.cluster_ca().await {
        Ok(Some((cert, key))) => hub::ca::HubCa::from_pem(&cert, &key, dir.path()).expect("the CA"),
        other => panic!("no cluster CA: {other:?}"),
    };
    let mut sync_addrs = Vec::new();
    for replica in &replicas {
        let (_, _, sync) = replica_addresses(&db, &replica.name).await;
        sync_addrs.push(sync);
    }
    let (enrollment, _) = hub::sync::token::create_advertised(
        &db,
        &ca.fingerprint(),
        Some("pi-proxied"),
        &[proto::PrinterId::new(SERIAL).unwrap()],
        &sync_addrs,
        Duration::from_secs(600),
        proto::UnixMillis::now(),
    )
    .await
    .expect("a token");
    let state = tempfile::tempdir().unwrap();
    verdict.ok(edge_agent::sync::enroll::enroll_any(None, &enrollment.to_string(), state.path())
        .await
        .map_err(|e| e.to_string()));
    let emit = dir.path().join("printer.emit.jsonl");
    let mut config = printer_sim::config::SimConfig::new(
        SERIAL.parse().unwrap(),
        tests::scenario::ACCESS_CODE.parse().unwrap(),
        printer_sim::config::Model::X1C,
    )
    .with_intervals(Duration::from_millis(100), Duration::from_millis(100));
    config.emit_log = Some(emit.clone());
    let sim = printer_sim::Simulator::start(config).await.expect("the printer");
    let mut agent = tests::fleet::TestAgent::start(tests::fleet::agent_config(
        state.path(),
        Some(&sim),
        SERIAL,
    ));
    agent.wait_status("connected", |s| matches!(s, SyncStatus::Connected { .. })).await;

    // The dashboard: a WebSocket through HAProxy, resuming from its cursor when cut.
    let connect = |after: Option<u64>| {
        let (token, addr) = (token.clone(), proxy.addr);
        async move {
            let query = after.map_or(String::new(), |c| format!("?after={c}"));
            let mut request =
                format!("ws://{addr}/api/v1/ws{query}").into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let (socket, response) = tokio_tungstenite::connect_async(request).await.ok()?;
            let replica = response.headers().get("x-kitt-replica")?.to_str().ok()?.to_owned();
            Some((socket, replica))
        }
    };
    let Some((mut socket, serving)) = connect(None).await else {
        panic!("no WebSocket through HAProxy")
    };
    verdict.fact(format!("the dashboard's WebSocket went to {serving}"));
    sim.start_job("proxied", 400).await.expect("a job");

    // The operator's commands, through HAProxy, each a distinct line of G-code.
    let send_command = |n: usize| {
        let (token, addr) = (token.clone(), proxy.addr);
        async move {
            let body = json!({"action": "gcode", "gcode": format!("M117 command {n}")}).to_string();
            let authorization = format!("Bearer {token}");
            let response = tokio::task::spawn_blocking(move || {
                tests::http::request(
                    addr,
                    "POST",
                    &format!("/api/v1/printers/{SERIAL}/commands"),
                    &[("Authorization", &authorization)],
                    Some(&body),
                )
            })
            .await
            .ok()?
            .ok()?;
            (response.status == 202).then(|| response.json()["id"].as_str().map(str::to_owned))?
        }
    };

    let mut cursors: BTreeSet<u64> = BTreeSet::new();
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    let mut refused = 0;
    let mut reconnects = 0;
    let mut killed = false;
    let mut last: Option<u64> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut n = 0;
    while n < 40 && std::time::Instant::now() < deadline {
        // A few updates between commands.
        for _ in 0..5 {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(message))) => {
                    let Ok(text) = message.to_text() else { continue };
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
                        continue;
                    };
                    if value["type"] == "lagged" {
                        verdict.problem(format!("told `lagged` after a reconnect at {last:?}"));
                    }
                    if let Some(cursor) = value["cursor"].as_u64() {
                        cursors.insert(cursor);
                        last = Some(cursor);
                    }
                }
                _ => {
                    // Cut: reconnect through HAProxy from the cursor, as the dashboard does.
                    let reconnected =
                        tests::fleet::wait_until(PATIENCE, "the WebSocket back", || connect(last))
                            .await;
                    match reconnected {
                        Ok((again, replica)) => {
                            reconnects += 1;
                            verdict.fact(format!(
                                "the dashboard resumed on {replica} after cursor {last:?}"
                            ));
                            socket = again;
                        }
                        Err(problem) => {
                            verdict.problem(problem);
                            break;
                        }
                    }
                }
            }
        }
        match send_command(n).await {
            Some(id) => {
                acknowledged.insert(id, n);
            }
            None => refused += 1,
        }
        n += 1;
        if n == 15 && !killed {
            killed = true;
            let agent_on: Option<String> = sqlx::query_scalar(
                "SELECT replica FROM cluster_presence WHERE agent_id = 'pi-proxied'",
            )
            .fetch_optional(db.pool())
            .await
            .ok()
            .flatten();
            verdict.fact(format!(
                "the agent was connected to {}",
                agent_on.as_deref().unwrap_or("no replica")
            ));
            let victim = replicas.iter_mut().find(|r| r.name == serving).expect("the replica");
            victim.kill9();
            verdict.fact(format!("{serving} killed with kill -9 mid-session"));
        }
    }
    verdict.require(killed, "the replica was never killed");
    verdict.require(reconnects >= 1, "the dashboard's WebSocket was never cut");

    // Every acknowledged command reached the printer exactly once.
    let wanted: Vec<usize> = acknowledged.values().copied().collect();
    let delivered = tests::fleet::wait_until(
        Duration::from_secs(60),
        "every acknowledged command at the printer",
        || {
            let (emit, wanted) = (emit.clone(), wanted.clone());
            async move {
                let text = std::fs::read_to_string(&emit).ok()?;
                let mut seen: HashMap<usize, usize> = HashMap::new();
                for line in text.lines() {
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let Some(param) = value["param"].as_str() else { continue };
                    if let Some(n) =
                        param.trim().strip_prefix("M117 command ").and_then(|n| n.parse().ok())
                    {
                        *seen.entry(n).or_default() += 1;
                    }
                }
                wanted.iter().all(|n| seen.contains_key(n)).then_some(seen)
            }
        },
    )
    .await;
    if let Some(seen) = verdict.ok(delivered) {
        let twice: Vec<_> = seen.iter().filter(|(_, count)| **count > 1).collect();
        verdict.require(twice.is_empty(), format!("commands the printer got twice: {twice:?}"));
        verdict.fact(format!(
            "{} commands acknowledged through HAProxy all reached the printer once ({refused} refused while a replica went down, none acknowledged and lost)",
            acknowledged.len()
        ));
    }

    // Every live update between the dashboard's first and last cursor reached it.
    let (first, last_seen) =
        (cursors.first().copied().unwrap_or(0), cursors.last().copied().unwrap_or(0));
    let logged = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM cluster_log WHERE id BETWEEN $1 AND $2 AND body LIKE '{\"live\"%' ORDER BY id",
    )
    .bind(first as i64)
    .bind(last_seen as i64)
    .fetch_all(db.pool())
    .await
    .unwrap_or_default();
    let missed: Vec<i64> =
        logged.iter().filter(|id| !cursors.contains(&(**id as u64))).copied().collect();
    verdict.require(!logged.is_empty(), "no live update in the cluster's log");
    verdict.require(missed.is_empty(), format!("live updates the dashboard never got: {missed:?}"));
    verdict.fact(format!(
        "the dashboard got all {} live updates from cursor {first} to {last_seen} across {reconnects} reconnects",
        logged.len()
    ));
    agent.stop().await;
    sim.shutdown().await;
    drop(proxy);
    drop(replicas);
    verdict.conclude();
}

/// A replica's (name, HTTP, sync) addresses, as it registered them.
async fn replica_addresses(db: &hub::db::Db, name: &str) -> (String, String, String) {
    let found = tests::fleet::wait_until(PATIENCE, "the replica registered", || async {
        let rows = sqlx::query("SELECT name, http_addr, sync_addr FROM cluster_replicas")
            .fetch_all(db.pool())
            .await
            .ok()?;
        use sqlx::Row;
        rows.iter().find_map(|row| {
            let full: String = row.try_get(0).ok()?;
            if full.split('/').next() != Some(name) {
                return None;
            }
            Some((full.clone(), row.try_get(1).ok()?, row.try_get(2).ok()?))
        })
    })
    .await;
    found.expect("the replica in cluster_replicas")
}

/// A rolling restart behind HAProxy, as the runbook's rolling upgrade does it: three replicas
/// on one PostgreSQL behind Debian's HAProxy with the reference configuration, each in turn
/// stopped as systemd stops it (SIGTERM, the default 5 s drain: `/readyz` answers 503 while
/// it still serves, so HAProxy takes it out first) and started again on its address, while a
/// client reads and writes through HAProxy without pause. Every request is answered, none
/// with an error, every write acknowledged is there once, and every replica exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_haproxy_fails_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tests::haproxy::HaProxy;
    use tests::scenario::Replica;

    let mut verdict = Verdict::new("haproxy-rolling-restart");
    let url = tests::postgres::fresh_database().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The default drain (5 s), longer than HAProxy takes to see `/readyz` fail (2 × 1 s).
    let mut replicas: Vec<Replica> = ["hub-a", "hub-b", "hub-c"]
        .iter()
        .map(|name| Replica::start(dir.path(), &url, name, "", None))
        .collect();
    let servers: Vec<(String, std::net::SocketAddr)> =
        replicas.iter().map(|r| (r.name.clone(), r.http_addr)).collect();
    let proxy = HaProxy::start(dir.path(), &servers);
    let all_up = |proxy: &HaProxy| {
        let servers = proxy.servers();
        servers.len() == 3 && servers.iter().all(|(_, state)| state == "UP")
    };
    let up = tests::fleet::wait_until(PATIENCE, "HAProxy to see three replicas up", || async {
        all_up(&proxy).then_some(())
    })
    .await;
    verdict.ok(up);
    assert!(replicas[0].cli(&["user", "add", "ops", "--role", "admin"]).status.success());
    let token = replicas[0].cli(&["user", "token", "ops"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();

    // The client: a read and a write (a new canary job) after another, each on a connection
    // of its own through HAProxy, until the restarts are over.
    let stop = Arc::new(AtomicBool::new(false));
    let client = std::thread::spawn({
        let (stop, token, addr) = (stop.clone(), token.clone(), proxy.addr);
        move || {
            let authorization = format!("Bearer {token}");
            let headers = [("Authorization", authorization.as_str())];
            let (mut answered, mut failed, mut created) = (0usize, Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let read =
                    tests::http::request(addr, "GET", "/api/v1/scheduler/jobs", &headers, None);
                match read {
                    Ok(r) if r.status == 200 => answered += 1,
                    Ok(r) => failed.push(format!("GET: {} {}", r.status, r.body)),
                    Err(error) => failed.push(format!("GET: {error}")),
                }
                n += 1;
                let name = format!("rolling-{n:04}");
                // Due in 2100: nothing runs, the write is all it costs.
                let job = json!({"name": name, "action": "mark",
                    "schedule": {"at": 4_102_444_800_000_i64}})
                .to_string();
                let write = tests::http::request(
                    addr,
                    "POST",
                    "/api/v1/scheduler/jobs",
                    &headers,
                    Some(&job),
                );
                match write {
                    Ok(r) if r.status == 201 => {
                        answered += 1;
                        created.push(name);
                    }
                    Ok(r) => failed.push(format!("POST {name}: {} {}", r.status, r.body)),
                    Err(error) => failed.push(format!("POST {name}: {error}")),
                }
                // Paced (a load generator's pause, not a wait for anything): a steady
                // trickle, not a flood that two shared cores would spend the test on.
                std::thread::sleep(Duration::from_millis(20));
            }
            (answered, failed, created)
        }
    });

    let mut exits = Vec::new();
    for replica in &mut replicas {
        let status = tokio::task::block_in_place(|| replica.restart_in_place());
        exits.push((replica.name.clone(), status));
        let back =
            tests::fleet::wait_until(PATIENCE, "HAProxy to see the replica up again", || async {
                all_up(&proxy).then_some(())
            })
            .await;
        verdict.ok(back);
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, failed, created) =
        tokio::task::block_in_place(|| client.join()).expect("the client");

    for (name, status) in &exits {
        verdict.require(status.success(), format!("{name} exited {status:?} on SIGTERM"));
    }
    verdict.require(failed.is_empty(), format!("requests that failed: {failed:?}"));
    verdict.require(answered > 20, format!("only {answered} requests answered"));
    let db = hub::db::Db::open(&url).await.expect("the database");
    let jobs = db.scheduler_jobs().await.expect("the jobs");
    let stored: Vec<&str> =
        jobs.iter().map(|j| j.name.as_str()).filter(|n| n.starts_with("rolling-")).collect();
    verdict.require(
        stored == created.iter().map(String::as_str).collect::<Vec<_>>(),
        format!("{} writes acknowledged, {} stored", created.len(), stored.len()),
    );
    verdict.fact(format!(
        "hub-a, hub-b and hub-c each stopped with SIGTERM (5 s drain) and started again on its address: {}; {answered} requests through HAProxy answered during the restarts ({} writes, each stored once), {} failed",
        exits.iter().map(|(n, s)| format!("{n} {s}")).collect::<Vec<_>>().join(", "),
        created.len(),
        failed.len()
    ));
    verdict.conclude();
}
