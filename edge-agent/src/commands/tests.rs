//! The executors and the router: preconditions, printers independent of each other, overflow
//! answered at once, and the ledger deciding between a refusal and a redelivery.

use std::time::Duration;

use proto::{CommandAction, CommandId, Precondition};
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

fn view(state: PrintState, last_job_end: Option<i64>) -> PrinterView {
    PrinterView {
        state: PrinterState { state, ..PrinterState::default() },
        last_job_end: last_job_end.map(UnixMillis),
    }
}

#[test]
fn a_plate_confirmation_must_follow_the_last_job() {
    let clear = Precondition::PlateConfirmedClear { by: "ana".into(), at: UnixMillis(500) };
    let command = command(vec![clear]);
    assert_eq!(unmet_precondition(&command, &view(PrintState::Finished, Some(400))), None);
    assert!(unmet_precondition(&command, &view(PrintState::Finished, Some(600))).is_some());
    assert!(unmet_precondition(&command, &view(PrintState::Printing, None)).is_some());
}

#[test]
fn state_and_control_preconditions_are_checked() {
    let command = command(vec![
        Precondition::StateIn(vec![PrintState::Printing]),
        Precondition::ControlAvailable,
    ]);
    assert_eq!(unmet_precondition(&command, &view(PrintState::Printing, None)), None);
    let idle = unmet_precondition(&command, &view(PrintState::Idle, None));
    assert!(matches!(idle, Some(CommandOutcome::PreconditionFailed { .. })), "{idle:?}");
    let mut read_only = view(PrintState::Printing, None);
    read_only.state.control = ControlCapability::ReadOnly;
    assert!(unmet_precondition(&command, &read_only).is_some());
}

/// Routers, executors and their printers' links, played by the test.
struct Agent {
    router: CommandRouter,
    counters: Arc<Counters>,
    records: mpsc::Receiver<(UnixMillis, RecordBody)>,
    links: HashMap<&'static str, mpsc::Receiver<LinkRequest>>,
    _views: Vec<watch::Sender<PrinterView>>,
    _dir: tempfile::TempDir,
}

fn agent(printers: &[&'static str], queue: usize) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _) = Outbox::open(OutboxConfig::new(dir.path().join("outbox.db"))).unwrap();
    let outbox: SharedOutbox = Arc::new(std::sync::Mutex::new(outbox));
    let (records_tx, records) = mpsc::channel(64);
    let mut targets = HashMap::new();
    let mut links = HashMap::new();
    let mut views = Vec::new();
    for &serial in printers {
        let (link, requests) = LinkHandle::detached(4);
        let (view_tx, view) = watch::channel(PrinterView::default());
        targets.insert(PrinterId::new(serial).unwrap(), PrinterTarget { link, view });
        links.insert(serial, requests);
        views.push(view_tx);
    }
    let counters = Arc::new(Counters::default());
    let router =
        start_with(targets, queue, outbox, records_tx, counters.clone(), &TaskTracker::new());
    Agent { router, counters, records, links, _views: views, _dir: dir }
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
