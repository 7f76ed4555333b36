//! The scenario checker: compares what simulated printers emitted (their `--emit-log`, see
//! `printer_sim::emit`) with what the hub stored for the agent that watched them, and says
//! so in one line, the [`Verdict`].
//!
//! What it checks, for one agent:
//! - **Records**: the hub holds seqs `1..=N`, each once, in order. A gap is allowed only
//!   where the agent reported capacity drops, and no more than it reported
//!   ([`Rules::dropped`]; fewer when a record was evicted while on its way to the hub: the
//!   hub has it, the agent counted it).
//! - **Transitions**, per printer, as four streams each compared in order with what the
//!   printer emitted: the job (`job_started`, `paused`, `resumed`, `job_finished` with its
//!   outcome), the states the printer went through (`gcode_state` lines against the hub's
//!   `state_changed` events), HMS alerts, and `print_error`. Nothing missing, nothing
//!   duplicated, nothing out of order. (Streams, not one interleaving: one report of the
//!   printer can carry changes the printer made in several steps, and the agent derives a
//!   report's events in an order of its own.)
//! - **Layers**: a job's telemetry at the hub never goes back a layer and never shows one
//!   the printer did not reach; a job the printer ended shows at the hub the layer it ended
//!   on (`40/40` for a finished one). Telemetry is sampled (at most one sample per
//!   interval), so layers in between may be absent.
//!
//! What only the agent can see is not compared: `reachable`, `unreachable` and a state
//! `offline` say whether the agent could reach the printer, not what the printer did. States
//! the printer went through before the agent first saw it are not expected (the agent's
//! first view arrives as `offline → <state>`); the verdict counts them.
//!
//! ## A job announced again after an agent restart
//!
//! The agent's `EventDeriver` (edge-agent/src/printer/events.rs) remembers the job in
//! progress in memory only. A restarted agent sees the printer mid-print as a job it has not
//! seen start, and announces `job_started` again, with a new seq: a semantic duplicate the
//! wire cannot tell from a new job of the same name. Fixing it in the deriver alone would
//! trade it for a worse error (an agent first started mid-print would never announce that
//! job, and its snapshots would be filed under the previous one); the fix needs the job in
//! progress persisted in the agent's state directory, or the hub folding a repeated start of
//! an open job. Until then the checker tolerates exactly this case, at most
//! [`Rules::reannounced_jobs`] times (one per agent restart during a job): a `job_started`
//! equal to the job still open at the hub (same name and layers, no `job_finished` since),
//! after a `reachable` of that printer. Each tolerated one is named in the verdict; any other
//! repeated start is a duplicate.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;

use proto::{JobOutcome, PrintState, PrinterEventKind, Record, RecordBody};
use serde_json::Value;

/// The event kinds (`job_started`, …) of `serial`'s events among `records`, in seq order: what
/// the hub's event log must show.
pub fn event_kinds(serial: &str, records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|record| match &record.body {
            RecordBody::PrinterEvent(event) if event.printer.as_str() == serial => {
                let json = proto::json::printer_event(&event.kind);
                Some(json["type"].as_str().unwrap_or_default().to_owned())
            }
            _ => None,
        })
        .collect()
}

/// One line of a simulator's emit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
    pub kind: String,
    /// The whole line.
    pub line: Value,
}

impl Emitted {
    fn text(&self, key: &str) -> String {
        self.line.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    fn number(&self, key: &str) -> u64 {
        self.line.get(key).and_then(Value::as_u64).unwrap_or_default()
    }
}

/// Parses an emit log. A last line without its newline is being written: left out.
pub fn parse_emit_log(text: &str) -> Result<Vec<Emitted>, String> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .map_err(|e| format!("a bad emit log line {line:?}: {e}"))?;
            Ok(Emitted {
                seq: value["seq"].as_u64().unwrap_or_default(),
                at: value["at"].as_i64().unwrap_or_default(),
                kind: value["kind"].as_str().unwrap_or_default().to_owned(),
                line: value,
            })
        })
        .collect()
}

/// The requests of `command` (`print.pause`, …) a printer received, by their `sequence_id`.
pub fn requests<'a>(emitted: &'a [Emitted], command: &str) -> Vec<&'a Emitted> {
    emitted.iter().filter(|e| e.kind == "request" && e.text("command") == command).collect()
}

/// One printer's emit log, and the serial the hub knows it by.
#[derive(Debug, Clone, Copy)]
pub struct PrinterLog<'a> {
    pub serial: &'a str,
    pub emitted: &'a [Emitted],
}

/// What a scenario allows and demands beyond the defaults (no gap, no repeat).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Agent restarts during a job: each may announce that job again (see the module docs).
    pub reannounced_jobs: u32,
    /// Capacity drops the agent reported: the hub may lack up to this many seqs, all in
    /// this range.
    pub dropped: Option<(u64, RangeInclusive<u64>)>,
    /// Every job the printer started must have ended, and its end be at the hub.
    pub jobs_must_end: bool,
}

/// The checker's findings: problems (none when it passes) and the counts the verdict names.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub problems: Vec<String>,
    /// Transitions the printers went through that the agent could see.
    pub emitted: usize,
    /// Of those, stored at the hub in order.
    pub stored: usize,
    pub missing: usize,
    pub duplicated: usize,
    /// States a printer went through before the agent first saw it.
    pub unseen: usize,
    pub records: usize,
    pub through: u64,
    /// Seqs below `through` the hub lacks.
    pub gaps: u64,
    /// Drops the agent reported, when the rules allow them.
    pub dropped: Option<u64>,
    pub reannounced: u32,
    /// One line per job: its outcome and layers at the hub.
    pub jobs: Vec<String>,
    /// Printer events the API's event log (`GET /api/v1/events`) showed, the same as stored.
    pub api_events: Option<usize>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The counts, for the verdict.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} printer transitions emitted, {} stored in order, {} missing, {} duplicated; \
             records 1..={} ({} stored, {} gaps)",
            self.emitted,
            self.stored,
            self.missing,
            self.duplicated,
            self.through,
            self.records,
            self.gaps
        );
        if let Some(dropped) = self.dropped.filter(|&dropped| dropped > 0 || self.gaps > 0) {
            text.push_str(&format!(
                "; the {} gaps are telemetry the agent reported dropped ({dropped} reported",
                self.gaps
            ));
            if dropped > self.gaps {
                text.push_str(&format!(
                    "; {} of them were evicted on their way to the hub, which has them",
                    dropped - self.gaps
                ));
            }
            text.push(')');
        }
        if self.unseen > 0 {
            text.push_str(&format!(
                "; {} state(s) before the agent first saw the printer",
                self.unseen
            ));
        }
        for job in &self.jobs {
            text.push_str("; ");
            text.push_str(job);
        }
        if let Some(events) = self.api_events {
            text.push_str(&format!(
                "; GET /api/v1/events shows the same {events} printer events in the same order"
            ));
        }
        if self.reannounced > 0 {
            text.push_str(&format!(
                "; {} job_started re-announced after an agent restart (tolerated: the agent's \
                 EventDeriver is not persisted)",
                self.reannounced
            ));
        }
        text
    }
}

/// Compares the printers' emit logs with the agent's records at the hub.
pub fn check(printers: &[PrinterLog<'_>], records: &[Record], rules: &Rules) -> Report {
    let mut report = Report::default();
    check_records(records, rules, &mut report);
    let mut reannounce_allowance = rules.reannounced_jobs;
    for printer in printers {
        check_printer(printer, records, rules, &mut reannounce_allowance, &mut report);
    }
    report
}

/// Seqs: `1..=N`, strictly increasing, gaps only as allowed.
fn check_records(records: &[Record], rules: &Rules, report: &mut Report) {
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    report.records = seqs.len();
    report.through = seqs.iter().copied().max().unwrap_or(0);
    let repeated = seqs.windows(2).filter(|w| w[0] == w[1]).count();
    if repeated > 0 {
        report.problems.push(format!("{repeated} seqs stored twice"));
    }
    if let Some(at) = seqs.windows(2).position(|w| w[0] > w[1]) {
        report.problems.push(format!("records out of order at seq {}", seqs[at]));
    }
    let present: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (1..=report.through).filter(|s| !present.contains(s)).collect();
    report.gaps = missing.len() as u64;
    match &rules.dropped {
        Some((count, within)) => {
            let outside: Vec<u64> =
                missing.iter().copied().filter(|s| !within.contains(s)).collect();
            if !outside.is_empty() {
                report.problems.push(format!(
                    "seqs missing outside the dropped range {within:?}: {}",
                    first_few(&outside)
                ));
            }
            if missing.len() as u64 > *count {
                report.problems.push(format!(
                    "{} seqs missing at the hub, but the agent reported only {count} dropped",
                    missing.len()
                ));
            }
            report.dropped = Some(*count);
        }
        None if !missing.is_empty() => {
            report.problems.push(format!("seqs missing at the hub: {}", first_few(&missing)));
        }
        None => {}
    }
}

fn first_few(seqs: &[u64]) -> String {
    let shown: Vec<String> = seqs.iter().take(10).map(u64::to_string).collect();
    let more =
        if seqs.len() > 10 { format!(" and {} more", seqs.len() - 10) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// One transition, as both sides can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    JobStarted { job: String, layers: u64 },
    Paused { stage: u64 },
    Resumed,
    JobFinished { job: String, outcome: &'static str },
    State(&'static str),
    Transition(&'static str, &'static str),
    Hms { raised: bool, code: String },
    PrintError { raised: bool, code: String },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::JobStarted { job, layers } => write!(f, "job_started {job:?} ({layers} layers)"),
            Item::Paused { stage } => write!(f, "job_paused (stage {stage})"),
            Item::Resumed => write!(f, "job_resumed"),
            Item::JobFinished { job, outcome } => write!(f, "job_finished {job:?} {outcome}"),
            Item::State(state) => write!(f, "state {state}"),
            Item::Transition(from, to) => write!(f, "state {from} → {to}"),
            Item::Hms { raised, code } => {
                write!(f, "hms_{} {code}", if *raised { "raised" } else { "cleared" })
            }
            Item::PrintError { raised, code } => {
                write!(f, "print_error_{} {code}", if *raised { "raised" } else { "cleared" })
            }
        }
    }
}

/// The four streams of one side.
#[derive(Debug, Default)]
struct Streams {
    job: Vec<Item>,
    /// States visited, consecutive repeats collapsed.
    states: Vec<Item>,
    hms: Vec<Item>,
    print_error: Vec<Item>,
}

impl Streams {
    fn visit(&mut self, state: &'static str) {
        if self.states.last() != Some(&Item::State(state)) {
            self.states.push(Item::State(state));
        }
    }
}

/// A gcode_state as the agent names the state (its `normalize::print_state`).
fn gcode_state(text: &str) -> &'static str {
    match text {
        "PREPARE" | "SLICING" | "INIT" => "preparing",
        "RUNNING" => "printing",
        "PAUSE" => "paused",
        "FINISH" => "finished",
        "FAILED" => "failed",
        _ => "idle",
    }
}

/// A job end as the agent judges it: FINISH succeeded, FAILED with the cancel code
/// cancelled, otherwise failed.
fn sim_outcome(line: &Emitted) -> &'static str {
    match (line.text("gcode_state").as_str(), line.text("print_error").as_str()) {
        ("FINISH", _) => "succeeded",
        (_, "0300_400C") => "cancelled",
        _ => "failed",
    }
}

fn expected_streams(emitted: &[Emitted]) -> Streams {
    let mut streams = Streams::default();
    streams.visit("idle");
    for line in emitted {
        match line.kind.as_str() {
            "job_started" => streams
                .job
                .push(Item::JobStarted { job: line.text("job"), layers: line.number("layers") }),
            "paused" => streams.job.push(Item::Paused { stage: line.number("stage") }),
            "resumed" => streams.job.push(Item::Resumed),
            "job_finished" => streams
                .job
                .push(Item::JobFinished { job: line.text("job"), outcome: sim_outcome(line) }),
            "gcode_state" => streams.visit(gcode_state(&line.text("to"))),
            "hms_raised" | "hms_cleared" => streams
                .hms
                .push(Item::Hms { raised: line.kind == "hms_raised", code: line.text("code") }),
            "print_error_raised" | "print_error_cleared" => {
                streams.print_error.push(Item::PrintError {
                    raised: line.kind == "print_error_raised",
                    code: line.text("code"),
                });
            }
            _ => {}
        }
    }
    streams
}

/// The hub's side, and what it took to build it.
#[derive(Debug, Default)]
struct Stored {
    streams: Streams,
    /// The first state the agent reported came from `offline` (its first view).
    first_seen: bool,
    reannounced: u32,
}

fn stored_streams(serial: &str, records: &[Record], mut allowance: u32) -> Stored {
    let mut stored = Stored::default();
    let mut open_job: Option<Item> = None;
    let mut reachable_since_job_item = false;
    for record in records {
        let RecordBody::PrinterEvent(event) = &record.body else { continue };
        if event.printer.as_str() != serial {
            continue;
        }
        let streams = &mut stored.streams;
        match &event.kind {
            PrinterEventKind::Reachable => reachable_since_job_item = true,
            PrinterEventKind::StateChanged { from, to } => {
                if streams.states.is_empty() && *from == PrintState::Offline {
                    stored.first_seen = true;
                }
                if *from != PrintState::Offline {
                    streams.visit(proto::json::print_state(*from));
                }
                if *to != PrintState::Offline {
                    streams.visit(proto::json::print_state(*to));
                }
            }
            PrinterEventKind::JobStarted { job_name, total_layers } => {
                let item = Item::JobStarted {
                    job: job_name.clone().unwrap_or_default(),
                    layers: total_layers.map_or(0, u64::from),
                };
                if open_job.as_ref() == Some(&item) && reachable_since_job_item && allowance > 0 {
                    allowance -= 1;
                    stored.reannounced += 1;
                } else {
                    open_job = Some(item.clone());
                    streams.job.push(item);
                }
                reachable_since_job_item = false;
            }
            PrinterEventKind::JobPaused { reason } => {
                streams.job.push(Item::Paused { stage: reason.map_or(0, u64::from) });
                reachable_since_job_item = false;
            }
            PrinterEventKind::JobResumed => {
                streams.job.push(Item::Resumed);
                reachable_since_job_item = false;
            }
            PrinterEventKind::JobFinished { job_name, outcome } => {
                let outcome = match outcome {
                    JobOutcome::Succeeded => "succeeded",
                    JobOutcome::Failed { .. } => "failed",
                    JobOutcome::Cancelled => "cancelled",
                };
                streams
                    .job
                    .push(Item::JobFinished { job: job_name.clone().unwrap_or_default(), outcome });
                open_job = None;
                reachable_since_job_item = false;
            }
            PrinterEventKind::HmsRaised(hms) | PrinterEventKind::HmsCleared(hms) => {
                let raised = matches!(event.kind, PrinterEventKind::HmsRaised(_));
                streams.hms.push(Item::Hms { raised, code: hms.display_code() });
            }
            PrinterEventKind::PrintErrorRaised { code } => {
                streams.print_error.push(Item::PrintError {
                    raised: true,
                    code: proto::json::print_error_code(*code),
                })
            }
            PrinterEventKind::PrintErrorCleared { code } => {
                streams.print_error.push(Item::PrintError {
                    raised: false,
                    code: proto::json::print_error_code(*code),
                })
            }
            PrinterEventKind::Unreachable { .. }
            | PrinterEventKind::ControlChanged { .. }
            | PrinterEventKind::ActiveTrayChanged { .. }
            | PrinterEventKind::TrayChanged { .. }
            // The Bambu simulator has no words of its own to say.
            | PrinterEventKind::Fault { .. }
            | PrinterEventKind::FaultCleared
            // Klipper's count: the Bambu simulator emits none.
            | PrinterEventKind::FilamentUsed { .. }
            | PrinterEventKind::SpoolTagged(_) => {}
        }
    }
    stored
}

fn check_printer(
    printer: &PrinterLog<'_>,
    records: &[Record],
    rules: &Rules,
    allowance: &mut u32,
    report: &mut Report,
) {
    let mut expected = expected_streams(printer.emitted);
    let stored = stored_streams(printer.serial, records, *allowance);
    *allowance -= stored.reannounced;
    report.reannounced += stored.reannounced;
    // States before the agent's first view of the printer: not expected at the hub.
    if stored.first_seen
        && let Some(first) = stored.streams.states.first()
        && let Some(at) = expected.states.iter().position(|state| state == first)
    {
        report.unseen += at;
        expected.states.drain(..at);
    }
    let serial = printer.serial;
    for (name, want, have) in [
        ("job", &expected.job, &stored.streams.job),
        ("states", &transitions(&expected.states), &transitions(&stored.streams.states)),
        ("HMS", &expected.hms, &stored.streams.hms),
        ("print_error", &expected.print_error, &stored.streams.print_error),
    ] {
        compare(&format!("{serial} {name}"), want, have, report);
    }
    check_layers(printer, records, rules, report);
}

/// The transitions between consecutive states visited.
fn transitions(states: &[Item]) -> Vec<Item> {
    let name = |item: &Item| match item {
        Item::State(state) => *state,
        _ => "?",
    };
    states.windows(2).map(|pair| Item::Transition(name(&pair[0]), name(&pair[1]))).collect()
}

/// Adds the comparison of one stream to the report: items emitted, stored in order,
/// missing and extra, and a problem for each way they differ.
fn compare(stream: &str, want: &[Item], have: &[Item], report: &mut Report) {
    let mut unmatched = have.to_vec();
    let mut missing = Vec::new();
    for item in want {
        match unmatched.iter().position(|candidate| candidate == item) {
            Some(at) => {
                unmatched.remove(at);
            }
            None => missing.push(item),
        }
    }
    report.emitted += want.len();
    report.missing += missing.len();
    report.duplicated += unmatched.len();
    if want == have {
        report.stored += want.len();
        return;
    }
    let list =
        |items: &[&Item]| items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        report.problems.push(format!("{stream}: missing at the hub: {}", list(&missing)));
    }
    if !unmatched.is_empty() {
        let extra: Vec<&Item> = unmatched.iter().collect();
        report.problems.push(format!("{stream}: not emitted or stored twice: {}", list(&extra)));
    }
    if missing.is_empty() && unmatched.is_empty() {
        let at = want.iter().zip(have).position(|(a, b)| a != b).unwrap_or(0);
        report.problems.push(format!(
            "{stream}: out of order at #{}: emitted {}, stored {}",
            at + 1,
            want[at],
            have[at]
        ));
    }
}

/// Each job's telemetry: layers never go back, never beyond what the printer reached, and
/// an ended job ends at the hub on the printer's last layer.
fn check_layers(printer: &PrinterLog<'_>, records: &[Record], rules: &Rules, report: &mut Report) {
    let mut job: Option<(String, u64)> = None;
    for line in printer.emitted {
        match line.kind.as_str() {
            "job_started" => job = Some((line.text("job"), line.number("layers"))),
            "job_finished" => {
                let name = line.text("job");
                let summary =
                    job_layers(printer.serial, &name, line.number("layers"), records, report);
                let ended = line.number("layer");
                let outcome = sim_outcome(line);
                match summary {
                    Some((last, seen)) if last == ended => report.jobs.push(format!(
                        "job {name:?} complete at the hub (job_started … job_finished {outcome}, \
                         {last}/{} layers; telemetry showed {seen} of them)",
                        line.number("layers")
                    )),
                    Some((last, _)) => report.problems.push(format!(
                        "job {name:?} ended on layer {ended} but the hub's last telemetry shows layer {last}"
                    )),
                    None => report
                        .problems
                        .push(format!("job {name:?}: no telemetry of it at the hub")),
                }
                job = None;
            }
            _ => {}
        }
    }
    if let Some((name, layers)) = job {
        if rules.jobs_must_end {
            report.problems.push(format!("job {name:?} has not ended at the printer"));
        } else if let Some((last, _)) = job_layers(printer.serial, &name, layers, records, report) {
            report
                .jobs
                .push(format!("job {name:?} in progress, at the hub on layer {last}/{layers}"));
        }
    }
}

/// The last layer the hub's telemetry shows for a job, and how many distinct layers it
/// showed; adds a problem when layers go back or beyond `layers`.
fn job_layers(
    serial: &str,
    job: &str,
    layers: u64,
    records: &[Record],
    report: &mut Report,
) -> Option<(u64, usize)> {
    let samples: Vec<u64> = records
        .iter()
        .filter_map(|record| match &record.body {
            RecordBody::Telemetry(t)
                if t.printer.as_str() == serial && t.state.job_name.as_deref() == Some(job) =>
            {
                t.state.layer.map(u64::from)
            }
            RecordBody::TelemetryV2(t)
                if t.printer.as_str() == serial && t.state.job_name.as_deref() == Some(job) =>
            {
                t.state.layer.map(u64::from)
            }
            _ => None,
        })
        .collect();
    if let Some(at) = samples.windows(2).position(|w| w[1] < w[0]) {
        report.problems.push(format!(
            "job {job:?}: telemetry went back from layer {} to {}",
            samples[at],
            samples[at + 1]
        ));
    }
    if let Some(beyond) = samples.iter().find(|&&layer| layer > layers) {
        report.problems.push(format!("job {job:?}: telemetry shows layer {beyond} of {layers}"));
    }
    let seen = samples.iter().filter(|&&layer| layer > 0).collect::<BTreeSet<_>>().len();
    samples.last().map(|&last| (last, seen))
}

/// One scenario's outcome: the line it prints and the assertion it makes.
#[derive(Debug, Clone)]
pub struct Verdict {
    scenario: String,
    problems: Vec<String>,
    facts: Vec<String>,
}

impl Verdict {
    pub fn new(scenario: &str) -> Verdict {
        Verdict { scenario: scenario.to_owned(), problems: Vec::new(), facts: Vec::new() }
    }

    /// Something the scenario established, named in the line.
    pub fn fact(&mut self, fact: impl Into<String>) {
        self.facts.push(fact.into());
    }

    /// A problem unless `ok`.
    pub fn require(&mut self, ok: bool, problem: impl Into<String>) {
        if !ok {
            self.problems.push(problem.into());
        }
    }

    /// A problem, from a wait that ended without what it waited for.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// The value, or `None` with the error as a problem.
    pub fn ok<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.problems.push(problem)).ok()
    }

    /// The checker's report: its problems, and its counts as a fact.
    pub fn include(&mut self, report: &Report) {
        self.problems.extend(report.problems.iter().cloned());
        self.facts.push(report.summary());
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// `scenario <name>: PASS — <facts>` or `scenario <name>: FAIL — <problems> | <facts>`.
    pub fn line(&self) -> String {
        let facts = self.facts.join("; ");
        if self.passed() {
            format!("scenario {}: PASS — {facts}", self.scenario)
        } else {
            format!("scenario {}: FAIL — {} | {facts}", self.scenario, self.problems.join("; "))
        }
    }

    /// Prints the line and fails the test with it unless the scenario passed.
    #[allow(clippy::print_stdout, reason = "the verdict is the scenario's output")]
    /// Prints the verdict, appends it to `<target>/test-artifacts/scenarios/verdicts.txt`
    /// (which `cargo xtask test` prints after the suite, since the test runner hides a
    /// passing test's output), and fails the test unless it passed.
    pub fn conclude(&self) {
        let line = self.line();
        println!("{line}");
        let dir = crate::webdriver::artifacts_dir("scenarios");
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(mut file) =
                std::fs::OpenOptions::new().create(true).append(true).open(dir.join("verdicts.txt"))
        {
            use std::io::Write as _;
            let _ = writeln!(file, "{line}");
        }
        assert!(self.passed(), "{line}");
    }
}

#[cfg(test)]
mod tests {
    use proto::{PrinterEvent, PrinterId, PrinterState, PrinterTelemetry, Seq, UnixMillis};
    use serde_json::json;

    use super::*;

    const SERIAL: &str = "01P00A000000001";

    fn emitted(lines: &[Value]) -> Vec<Emitted> {
        let text: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut line = line.clone();
                line["seq"] = json!(i + 1);
                line["at"] = json!(1_700_000_000_000_i64 + i as i64);
                format!("{line}\n")
            })
            .collect();
        parse_emit_log(&text).unwrap()
    }

    /// A job of 2 layers, from an idle printer to FINISH.
    fn job_log() -> Vec<Emitted> {
        emitted(&[
            json!({"kind": "request", "category": "print", "command": "project_file", "sequence_id": "3"}),
            json!({"kind": "job_started", "job": "cube", "layers": 2}),
            json!({"kind": "gcode_state", "from": "IDLE", "to": "PREPARE"}),
            json!({"kind": "gcode_state", "from": "PREPARE", "to": "RUNNING"}),
            json!({"kind": "layer", "layer": 1, "layers": 2}),
            json!({"kind": "layer", "layer": 2, "layers": 2}),
            json!({"kind": "gcode_state", "from": "RUNNING", "to": "FINISH"}),
            json!({"kind": "job_finished", "job": "cube", "gcode_state": "FINISH",
                   "print_error": "0000_0000", "layer": 2, "layers": 2}),
        ])
    }

    fn event(kind: PrinterEventKind) -> RecordBody {
        RecordBody::PrinterEvent(PrinterEvent { printer: PrinterId::new(SERIAL).unwrap(), kind })
    }

    fn telemetry(state: PrintState, layer: u32) -> RecordBody {
        RecordBody::Telemetry(PrinterTelemetry {
            printer: PrinterId::new(SERIAL).unwrap(),
            state: Box::new(PrinterState {
                state,
                layer: Some(layer),
                total_layers: Some(2),
                job_name: Some("cube".into()),
                ..PrinterState::default()
            }),
        })
    }

    fn changed(from: PrintState, to: PrintState) -> RecordBody {
        event(PrinterEventKind::StateChanged { from, to })
    }

    fn started() -> RecordBody {
        event(PrinterEventKind::JobStarted { job_name: Some("cube".into()), total_layers: Some(2) })
    }

    /// What the agent records for [`job_log`], seen from the start.
    fn job_bodies() -> Vec<RecordBody> {
        use PrintState::*;
        vec![
            event(PrinterEventKind::Reachable),
            changed(Offline, Idle),
            changed(Idle, Preparing),
            started(),
            changed(Preparing, Printing),
            telemetry(Printing, 1),
            telemetry(Printing, 2),
            changed(Printing, Finished),
            event(PrinterEventKind::JobFinished {
                job_name: Some("cube".into()),
                outcome: JobOutcome::Succeeded,
            }),
            telemetry(Finished, 2),
        ]
    }

    fn records(bodies: Vec<RecordBody>) -> Vec<Record> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Record {
                seq: Seq(i as u64 + 1),
                observed_at: UnixMillis(1_700_000_000_000 + i as i64),
                body,
            })
            .collect()
    }

    fn run(bodies: Vec<RecordBody>, rules: &Rules) -> Report {
        let log = job_log();
        check(&[PrinterLog { serial: SERIAL, emitted: &log }], &records(bodies), rules)
    }

    #[test]
    fn a_whole_job_stored_once_in_order_passes() {
        let report = run(job_bodies(), &Rules { jobs_must_end: true, ..Rules::default() });
        assert!(report.passed(), "{:?}", report.problems);
        assert_eq!(
            (report.emitted, report.stored, report.missing, report.duplicated),
            (5, 5, 0, 0)
        );
        let summary = report.summary();
        assert!(summary.contains("records 1..=10 (10 stored, 0 gaps)"), "{summary}");
        assert!(summary.contains("job_finished succeeded, 2/2 layers"), "{summary}");
        let log = job_log();
        assert_eq!(requests(&log, "project_file").len(), 1);
    }

    #[test]
    fn a_lost_event_or_record_fails() {
        let mut bodies = job_bodies();
        bodies.remove(8); // job_finished
        let report = run(bodies, &Rules::default());
        assert!(!report.passed());
        assert!(
            report.problems[0].contains("missing at the hub: job_finished"),
            "{:?}",
            report.problems
        );

        let mut records = records(job_bodies());
        records.remove(4); // seq 5
        let log = job_log();
        let report =
            check(&[PrinterLog { serial: SERIAL, emitted: &log }], &records, &Rules::default());
        assert!(
            report.problems.iter().any(|p| p == "seqs missing at the hub: 5"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_duplicate_or_a_reordering_fails() {
        let mut bodies = job_bodies();
        bodies.insert(9, bodies[8].clone());
        let report = run(bodies, &Rules::default());
        assert_eq!(report.duplicated, 1);
        assert!(report.problems[0].contains("stored twice: job_finished"), "{:?}", report.problems);

        let mut bodies = job_bodies();
        bodies.swap(2, 4); // preparing → printing before idle → preparing
        let report = run(bodies, &Rules::default());
        assert!(!report.passed());

        let mut records = records(job_bodies());
        records.swap(5, 6);
        let log = job_log();
        let report =
            check(&[PrinterLog { serial: SERIAL, emitted: &log }], &records, &Rules::default());
        assert!(
            report.problems.iter().any(|p| p.contains("out of order at seq 7")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_job_announced_again_after_a_restart_is_tolerated_only_as_often_as_allowed() {
        use PrintState::*;
        let mut bodies = job_bodies();
        // An agent restart mid-print: a fresh deriver sees the printer as reachable again.
        let restart = [event(PrinterEventKind::Reachable), changed(Offline, Printing), started()];
        bodies.splice(6..6, restart);
        let report = run(bodies.clone(), &Rules::default());
        assert!(
            report.problems.iter().any(|p| p.contains("stored twice: job_started")),
            "{:?}",
            report.problems
        );
        let report = run(bodies, &Rules { reannounced_jobs: 1, ..Rules::default() });
        assert!(report.passed(), "{:?}", report.problems);
        assert!(report.summary().contains("1 job_started re-announced"), "{}", report.summary());

        // Without a reachable before it, a repeated start is a duplicate whatever is allowed.
        let mut bodies = job_bodies();
        bodies.insert(6, started());
        let report = run(bodies, &Rules { reannounced_jobs: 1, ..Rules::default() });
        assert!(!report.passed());
    }

    #[test]
    fn gaps_pass_only_where_and_no_more_than_the_agent_reported_dropped() {
        let mut bodies = vec![telemetry(PrintState::Idle, 0); 3];
        bodies.extend(job_bodies());
        let mut records = records(bodies);
        records.drain(0..2); // seqs 1 and 2, telemetry
        let log = job_log();
        let printers = [PrinterLog { serial: SERIAL, emitted: &log }];
        let allowed = |count| Rules { dropped: Some((count, 1..=3)), ..Rules::default() };
        assert!(check(&printers, &records, &allowed(2)).passed());
        assert!(check(&printers, &records, &allowed(3)).passed(), "one evicted on its way");
        assert!(!check(&printers, &records, &allowed(1)).passed());
        assert!(!check(&printers, &records, &Rules::default()).passed());
        records.remove(5);
        assert!(!check(&printers, &records, &allowed(4)).passed(), "a gap outside the range");
    }

    #[test]
    fn states_before_the_agent_first_saw_the_printer_are_not_expected() {
        use PrintState::*;
        let mut bodies = job_bodies();
        bodies.drain(1..3); // first seen while preparing
        bodies.insert(1, changed(Offline, Preparing));
        let report = run(bodies, &Rules::default());
        assert!(report.passed(), "{:?}", report.problems);
        assert_eq!(report.unseen, 1);
    }

    #[test]
    fn verdicts_say_pass_or_fail_with_the_reasons() {
        let mut verdict = Verdict::new("demo");
        verdict.fact("link cut 5.0 s");
        assert_eq!(verdict.line(), "scenario demo: PASS — link cut 5.0 s");
        verdict.require(false, "the hub never showed the agent offline");
        assert_eq!(
            verdict.line(),
            "scenario demo: FAIL — the hub never showed the agent offline | link cut 5.0 s"
        );
    }
}
