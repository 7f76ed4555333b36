//! The executors and the router: preconditions, printers independent of each other, overflow
//! answered at once, and the ledger deciding between a refusal and a redelivery.

use std::time::Duration;

use proto::{CommandAction, CommandId, Precondition, Seq};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use super::*;
use crate::outbox::{Outbox, OutboxConfig};
use crate::printer::bambu::link::LinkRequest;

const A: &str = "01P00A391800001";
const B: &str = "01P00A391800002";

fn command(preconditions: Vec<Precondition>) -> Command {
    Command {
        id: CommandId([1; 16]),
        printer: PrinterId::new(A).unwrap(),
        issued_at: UnixMillis(1_000),
        expires_at: UnixMillis(i64::MAX),
        preconditions,
        action: CommandAction::Pause,
    }
}

fn view(state: PrintState, job_ends: u64) -> PrinterView {
    PrinterView {
        state: PrinterStateV2 { state, ..PrinterStateV2::default() },
        job_ends,
        nozzle_um: None,
    }
}

/// The outbox's facts: `appended` job ends, the latest at `seq` and `at` (agent's clock).
fn ends(appended: u64, latest: Option<(u64, i64)>) -> JobEndFacts {
    JobEndFacts {
        latest: latest.map(|(seq, at)| crate::outbox::JobEnd {
            seq: Seq(seq),
            at: UnixMillis(at),
            seen: true,
        }),
        appended,
    }
}

fn detail(outcome: Option<CommandOutcome>) -> String {
    match outcome {
        Some(CommandOutcome::PreconditionFailed { detail, .. }) => detail,
        other => panic!("expected a failed precondition, got {other:?}"),
    }
}

#[test]
fn a_plate_confirmation_is_refused_after_a_later_job_end_whatever_the_job_ends_time() {
    let clear = Precondition::PlateClearThrough { by: "ana".into(), through: Seq(10) };
    let command = command(vec![clear]);
    let finished = view(PrintState::Finished, 1);
    // Only seqs decide: the job end's time (on a clock hours off, or garbage) changes nothing.
    for at in [0, i64::MAX, i64::MIN] {
        // The job that ended before the confirmation (seq 8 <= 10): the plate was seen clear.
        assert_eq!(unmet_precondition(&command, &finished, &ends(1, Some((8, at)))), None);
        assert_eq!(unmet_precondition(&command, &finished, &ends(1, Some((10, at)))), None);
        // One ended after (seq 12): refused, saying what to do.
        let later = detail(unmet_precondition(&command, &finished, &ends(1, Some((12, at)))));
        assert!(later.contains("record 12") && later.contains("ana confirmed"), "{later}");
        assert!(later.contains("confirm again"), "{later}");
    }
    // The link reported a job end the outbox has not appended yet: it will get a seq above
    // anything the hub had, so it is refused too.
    let two_ends = view(PrintState::Finished, 2);
    let just = detail(unmet_precondition(&command, &two_ends, &ends(1, Some((8, 0)))));
    assert!(just.contains("just ended"), "{just}");
    // Never a job end: fine. Busy: refused.
    assert_eq!(unmet_precondition(&command, &view(PrintState::Idle, 0), &ends(0, None)), None);
    let busy = detail(unmet_precondition(&command, &view(PrintState::Printing, 0), &ends(0, None)));
    assert!(busy.contains("Printing"), "{busy}");
}

#[test]
fn a_plate_confirmation_by_time_from_an_older_hub_is_refused() {
    // Confirmed at 500 on the hub's clock; the job ended at 400 on the agent's, which may
    // have been hours off then: nothing to decide by.
    let clear = Precondition::PlateConfirmedClear { by: "ana".into(), at: UnixMillis(500) };
    let command = command(vec![clear]);
    let outcome =
        unmet_precondition(&command, &view(PrintState::Idle, 1), &ends(1, Some((3, 400))));
    let Some(CommandOutcome::Unsupported { detail }) = outcome else { panic!("{outcome:?}") };
    assert!(detail.contains("upgrade kitt-hub"), "{detail}");
}

#[test]
fn a_start_needs_the_mapped_slots_to_hold_the_material_and_colour() {
    use proto::{FilamentSlot, Rgb, SlotRef, Tray};
    let tray = |slot: u8, material: &str, color: [u8; 3]| Tray {
        slot,
        material: Some(material.into()),
        color: Some(Rgb(color)),
        ..Tray::default()
    };
    let mut printer = view(PrintState::Idle, 0);
    printer.state.filament = vec![
        FilamentSlot { unit: Some(0), tray: tray(0, "PLA", [0xFF, 0xFF, 0xFF]) },
        FilamentSlot { unit: Some(0), tray: tray(1, "PETG", [0xFF, 0x66, 0x00]) },
        FilamentSlot { unit: None, tray: tray(254, "TPU", [0, 0, 0]) },
    ];
    let needs = |slot: SlotRef, material: &str, color: Option<[u8; 3]>| {
        command(vec![Precondition::FilamentLoaded {
            slot,
            material: material.into(),
            color: color.map(Rgb),
            tolerance_centi: 2000,
        }])
    };
    let none = JobEndFacts::default();
    let ams = |slot| SlotRef { unit: Some(0), slot };
    // What is loaded, in a colour close enough (another maker's orange), or any colour.
    for ok in [
        needs(ams(0), "pla", Some([0xFA, 0xFA, 0xFA])),
        needs(ams(1), "PETG", Some([0xF5, 0x70, 0x10])),
        needs(ams(1), "", None),
        needs(SlotRef { unit: None, slot: 0 }, "TPU", None),
    ] {
        assert_eq!(unmet_precondition(&ok, &printer, &none), None, "{ok:?}");
    }
    let refused = detail(unmet_precondition(&needs(ams(0), "PETG", None), &printer, &none));
    assert!(refused.contains("AMS 1 slot 1 holds PLA; the job needs PETG"), "{refused}");
    let refused =
        detail(unmet_precondition(&needs(ams(1), "PETG", Some([0, 0, 0xFF])), &printer, &none));
    assert!(refused.contains("the job needs #0000FF") && refused.contains("ΔE"), "{refused}");
    let refused = detail(unmet_precondition(&needs(ams(3), "PLA", None), &printer, &none));
    assert!(refused.contains("no AMS 1 slot 4"), "{refused}");
}

#[test]
fn a_start_needs_the_nozzle_the_file_was_sliced_for() {
    let none = JobEndFacts::default();
    let needs = command(vec![Precondition::NozzleDiameter { micrometres: 400 }]);
    let mut printer = view(PrintState::Idle, 0);
    let refused = detail(unmet_precondition(&needs, &printer, &none));
    assert!(refused.contains("does not say its nozzle"), "{refused}");
    printer.nozzle_um = Some(600);
    let refused = detail(unmet_precondition(&needs, &printer, &none));
    assert!(refused.contains("a 0.6 mm nozzle; the file was sliced for 0.4 mm"), "{refused}");
    printer.nozzle_um = Some(400);
    assert_eq!(unmet_precondition(&needs, &printer, &none), None);
}

#[test]
fn state_and_control_preconditions_are_checked() {
    let command = command(vec![
        Precondition::StateIn(vec![PrintState::Printing]),
        Precondition::ControlAvailable,
    ]);
    let none = JobEndFacts::default();
    assert_eq!(unmet_precondition(&command, &view(PrintState::Printing, 0), &none), None);
    let idle = unmet_precondition(&command, &view(PrintState::Idle, 0), &none);
    assert!(matches!(idle, Some(CommandOutcome::PreconditionFailed { .. })), "{idle:?}");
    let mut read_only = view(PrintState::Printing, 0);
    read_only.state.control = ControlCapability::ReadOnly;
    assert!(unmet_precondition(&command, &read_only, &none).is_some());
}

/// Routers, executors and their printers' links, played by the test.
struct Agent {
    router: CommandRouter,
    counters: Arc<Counters>,
    records: mpsc::Receiver<(UnixMillis, RecordBody)>,
    links: HashMap<&'static str, mpsc::Receiver<LinkRequest>>,
    views: HashMap<&'static str, watch::Sender<PrinterView>>,
    outbox: SharedOutbox,
    clock: Arc<HubClock>,
    _dir: tempfile::TempDir,
}

fn agent(printers: &[&'static str], queue: usize) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _) = Outbox::open(OutboxConfig::new(dir.path().join("outbox.db"))).unwrap();
    let outbox: SharedOutbox = Arc::new(std::sync::Mutex::new(outbox));
    let (records_tx, records) = mpsc::channel(64);
    let mut targets = HashMap::new();
    let mut links = HashMap::new();
    let mut views = HashMap::new();
    for &serial in printers {
        let (link, requests) = LinkHandle::detached(4);
        let (view_tx, view) = watch::channel(PrinterView::default());
        targets
            .insert(PrinterId::new(serial).unwrap(), PrinterTarget { link, view, uploader: None });
        links.insert(serial, requests);
        views.insert(serial, view_tx);
    }
    let counters = Arc::new(Counters::default());
    let clock = Arc::new(HubClock::default());
    let sinks = Sinks { outbox: outbox.clone(), records: records_tx, files: None };
    let router =
        start_with(targets, queue, sinks, counters.clone(), clock.clone(), &TaskTracker::new());
    Agent { router, counters, records, links, views, outbox, clock, _dir: dir }
}

fn order(n: u8, printer: &str, action: CommandAction) -> Command {
    Command {
        id: CommandId([n; 16]),
        printer: PrinterId::new(printer).unwrap(),
        issued_at: UnixMillis(1_000),
        expires_at: UnixMillis(i64::MAX),
        preconditions: Vec::new(),
        action,
    }
}

/// A deadline for what must happen promptly; a hang fails the test instead of blocking it.
async fn soon<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not happen"),
    }
}

impl Agent {
    /// The next request printer `serial`'s link receives.
    async fn request(&mut self, serial: &str) -> (CommandAction, oneshot::Sender<CommandOutcome>) {
        let link = self.links.get_mut(serial).unwrap();
        soon("a link request", link.recv()).await.expect("the executor is running")
    }

    /// The printer link reports a job end of printer `serial`: counted in its view, appended
    /// to the outbox and committed (as the recorder and the writer do); its seq.
    fn job_end(&self, serial: &str) -> Seq {
        self.views[serial].send_modify(|view| {
            view.state.state = PrintState::Finished;
            view.job_ends += 1;
        });
        let kind = proto::PrinterEventKind::JobFinished {
            job_name: Some("Bracket".into()),
            outcome: proto::JobOutcome::Succeeded,
        };
        let event = proto::PrinterEvent { printer: PrinterId::new(serial).unwrap(), kind };
        let mut outbox = self.outbox.lock().unwrap();
        let seq = outbox.append(UnixMillis::now(), RecordBody::PrinterEvent(event)).unwrap();
        outbox.commit().unwrap();
        seq
    }

    async fn result(&mut self) -> CommandResult {
        match soon("a command result", self.records.recv()).await {
            Some((_, RecordBody::CommandResult(result))) => result,
            other => panic!("expected a command result, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_printer_that_never_answers_holds_up_only_its_own_commands() {
    let mut agent = agent(&[A, B], PRINTER_QUEUE);
    assert_eq!(agent.router.route(order(1, A, CommandAction::Pause)), Routed::Queued);
    // Printer A's link takes the pause and never answers (its reply is held, not dropped).
    let (_, _never_answered) = agent.request(A).await;
    assert_eq!(agent.router.route(order(2, A, CommandAction::Resume)), Routed::Queued);

    assert_eq!(agent.router.route(order(3, B, CommandAction::Stop)), Routed::Queued);
    let (action, reply) = agent.request(B).await;
    assert_eq!(action, CommandAction::Stop);
    reply.send(CommandOutcome::Succeeded).unwrap();
    let result = agent.result().await;
    assert_eq!((result.command, result.outcome), (CommandId([3; 16]), CommandOutcome::Succeeded));
    assert!(agent.records.try_recv().is_err(), "printer A answered nothing yet");
}

#[tokio::test]
async fn a_full_queue_is_answered_at_once_and_a_redelivery_never_runs_the_refused_command() {
    let mut agent = agent(&[A], 2);
    assert_eq!(agent.router.route(order(1, A, CommandAction::Pause)), Routed::Queued);
    let (_, pause) = agent.request(A).await;
    // Two wait in the queue of two; the next is refused without waiting for the printer.
    assert_eq!(agent.router.route(order(2, A, CommandAction::Resume)), Routed::Queued);
    assert_eq!(agent.router.route(order(3, A, CommandAction::RequestFullPush)), Routed::Queued);
    let refused = agent.router.route(order(4, A, CommandAction::Stop));
    let Routed::Refused(reason) = refused else { panic!("{refused:?}") };
    assert!(reason.contains("command queue is full (2 waiting)"), "{reason}");
    assert_eq!(agent.counters.snapshot().commands_refused, 1);

    let result = agent.result().await;
    assert_eq!(result.command, CommandId([4; 16]));
    assert_eq!(result.outcome, CommandOutcome::Failed { detail: reason });

    pause.send(CommandOutcome::Succeeded).unwrap();
    assert_eq!(agent.result().await.command, CommandId([1; 16]));
    for (n, expected) in [(2, CommandAction::Resume), (3, CommandAction::RequestFullPush)] {
        let (action, reply) = agent.request(A).await;
        assert_eq!(action, expected);
        reply.send(CommandOutcome::Succeeded).unwrap();
        assert_eq!(agent.result().await.command, CommandId([n; 16]));
    }

    // The hub redelivers the stop it was told failed, then sends another command. The queue
    // has room now, yet the stop must not run: the ledger holds its failure.
    assert_eq!(agent.router.route(order(4, A, CommandAction::Stop)), Routed::Queued);
    assert_eq!(agent.router.route(order(5, A, CommandAction::Resume)), Routed::Queued);
    let (action, reply) = agent.request(A).await;
    assert_eq!(action, CommandAction::Resume, "the refused stop ran after all");
    reply.send(CommandOutcome::Succeeded).unwrap();
    assert_eq!(agent.result().await.command, CommandId([5; 16]), "one answer per command");
}

#[tokio::test]
async fn a_command_for_an_unknown_printer_is_answered_with_a_failure() {
    let mut agent = agent(&[A], PRINTER_QUEUE);
    let routed = agent.router.route(order(5, B, CommandAction::Pause));
    assert!(
        matches!(&routed, Routed::Refused(reason) if reason.contains("no printer")),
        "{routed:?}"
    );
    let result = agent.result().await;
    assert_eq!(result.command, CommandId([5; 16]));
    assert!(matches!(result.outcome, CommandOutcome::Failed { .. }), "{:?}", result.outcome);
}

const HOURS_3: i64 = 3 * 3_600_000;

/// The hub's welcome says its clock reads `agent_ahead_ms` less than the agent's.
fn skew(clock: &HubClock, agent_ahead_ms: i64) {
    clock.observe(UnixMillis(UnixMillis::now().0 - agent_ahead_ms), Duration::ZERO);
}

/// `now` on the hub's clock, worked out apart from the `HubClock` under test.
fn hub_time(agent_ahead_ms: i64) -> UnixMillis {
    UnixMillis(UnixMillis::now().0 - agent_ahead_ms)
}

#[tokio::test]
async fn a_start_confirmed_before_a_job_ended_is_refused_on_an_agent_hours_off() {
    for agent_ahead in [-HOURS_3, HOURS_3] {
        let mut agent = agent(&[A], PRINTER_QUEUE);
        skew(&agent.clock, agent_ahead);
        let before = agent.job_end(A);
        let start = |n: u8, through: Seq| {
            let mut start = order(n, A, CommandAction::RequestFullPush);
            start.preconditions =
                vec![Precondition::PlateClearThrough { by: "ana".into(), through }];
            // A minute to run, on the hub's clock.
            start.expires_at = hub_time(agent_ahead).plus_millis(60_000);
            start
        };
        // Confirmed after the job that ended at `before`: it runs, and has not expired
        // although the agent's clock is three hours off.
        assert_eq!(agent.router.route(start(1, before)), Routed::Queued);
        let (_, reply) = agent.request(A).await;
        reply.send(CommandOutcome::Succeeded).unwrap();
        assert_eq!(agent.result().await.outcome, CommandOutcome::Succeeded, "skew {agent_ahead}");
        // Another job ends; a start confirmed before it is refused.
        let after = agent.job_end(A);
        assert!(after > before);
        assert_eq!(agent.router.route(start(2, before)), Routed::Queued);
        let result = agent.result().await;
        let CommandOutcome::PreconditionFailed { detail, .. } = result.outcome else {
            panic!("skew {agent_ahead}: {:?}", result.outcome)
        };
        assert!(detail.contains(&format!("record {after}")), "{detail}");
        assert!(agent.links.get_mut(A).unwrap().try_recv().is_err(), "the refused start ran");
    }
}

#[tokio::test]
async fn expiry_is_counted_on_the_hubs_clock_whatever_the_agents_reads() {
    for agent_ahead in [-HOURS_3, HOURS_3] {
        let mut agent = agent(&[A], PRINTER_QUEUE);
        skew(&agent.clock, agent_ahead);
        let mut live = order(1, A, CommandAction::Pause);
        live.expires_at = hub_time(agent_ahead).plus_millis(60_000);
        assert_eq!(agent.router.route(live), Routed::Queued);
        let (action, reply) = agent.request(A).await;
        assert_eq!(action, CommandAction::Pause, "skew {agent_ahead}");
        reply.send(CommandOutcome::Succeeded).unwrap();
        assert_eq!(agent.result().await.outcome, CommandOutcome::Succeeded);
        let mut late = order(2, A, CommandAction::Stop);
        late.expires_at = hub_time(agent_ahead).plus_millis(-1);
        assert_eq!(agent.router.route(late), Routed::Queued);
        assert_eq!(agent.result().await.outcome, CommandOutcome::Expired, "skew {agent_ahead}");
    }
}
