use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proto::{
    AgentHealth, CameraId, CommandId, CommandOutcome, DropClass, DropCount, DropReason,
    ImageFormat, PrinterEvent, PrinterEventKind, PrinterId, PrinterState, PrinterTelemetry, Record,
    RecordBody, Seq, SnapshotChunk, SnapshotId, SnapshotTrigger, SoftwareVersion, UnixMillis,
};

use super::{CommandLedger, MAX_PENDING_RECORDS, Outbox, OutboxConfig, OutboxError};

fn printer() -> PrinterId {
    PrinterId::new("P1").expect("valid")
}

/// A body of `class` whose encoding is about `size` bytes.
fn body(class: DropClass, size: usize) -> RecordBody {
    match class {
        DropClass::Telemetry => RecordBody::Telemetry(PrinterTelemetry {
            printer: printer(),
            state: Box::new(PrinterState {
                job_name: Some("t".repeat(size)),
                ..PrinterState::default()
            }),
        }),
        DropClass::Event => RecordBody::PrinterEvent(PrinterEvent {
            printer: printer(),
            kind: PrinterEventKind::Unreachable { reason: "e".repeat(size) },
        }),
        DropClass::Snapshot => RecordBody::Snapshot(SnapshotChunk {
            snapshot: SnapshotId([7; 16]),
            printer: printer(),
            camera: CameraId::new("chamber").expect("valid"),
            trigger: SnapshotTrigger::Interval,
            format: ImageFormat::Jpeg,
            captured_at: UnixMillis(0),
            total_len: u32::try_from(size).expect("small"),
            sha256: [0; 32],
            chunk_index: 0,
            chunk_count: 1,
            data: vec![0xAB; size],
        }),
        DropClass::Health => RecordBody::AgentHealth(health(Vec::new(), size)),
    }
}

fn health(drops: Vec<DropCount>, size: usize) -> AgentHealth {
    AgentHealth {
        outbox_records: 0,
        outbox_bytes: 0,
        drops,
        disk_free_bytes: 0,
        uptime_s: 0,
        software: SoftwareVersion {
            version: "h".repeat(size),
            commit: None,
            target: "test".to_owned(),
        },
        certificate_expires_at: None,
    }
}

fn encoded_len(body: &RecordBody) -> usize {
    postcard::to_stdvec(body).expect("encodes").len()
}

fn config(dir: &Path) -> OutboxConfig {
    OutboxConfig::new(dir.join("outbox.db"))
}

fn big_config(dir: &Path) -> OutboxConfig {
    OutboxConfig { capacity_bytes: 1 << 30, snapshot_capacity_bytes: 1 << 30, ..config(dir) }
}

fn open(config: &OutboxConfig) -> Outbox {
    Outbox::open(config.clone()).expect("opens").0
}

fn read_all(outbox: &mut Outbox) -> Vec<Record> {
    outbox.read_after(outbox.acked_through(), usize::MAX, usize::MAX).expect("reads")
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|record| record.seq.0).collect()
}

fn drop_count(counts: &[DropCount], class: DropClass, reason: DropReason) -> u64 {
    counts.iter().filter(|c| c.class == class && c.reason == reason).map(|c| c.count).sum()
}

fn append_n(outbox: &mut Outbox, class: DropClass, size: usize, n: usize) -> Vec<Seq> {
    (0..n).map(|_| outbox.append(UnixMillis(1), body(class, size)).expect("appends")).collect()
}

// --- 1. The outbox against an in-memory model -------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Append(DropClass, usize),
    Commit,
    Ack(u64),
    ReadAfter { after: u64, max_records: usize, max_bytes: usize },
    Crash,
    Reopen,
}

fn any_class() -> impl Strategy<Value = DropClass> {
    prop_oneof![
        Just(DropClass::Telemetry),
        Just(DropClass::Event),
        Just(DropClass::Snapshot),
        Just(DropClass::Health),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any_class(), 0..300usize).prop_map(|(class, size)| Op::Append(class, size)),
        3 => Just(Op::Commit),
        2 => any::<u64>().prop_map(Op::Ack),
        2 => (any::<u64>(), 1..6usize, 0..1200usize).prop_map(|(after, max_records, max_bytes)| {
            Op::ReadAfter { after, max_records, max_bytes }
        }),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

/// What the outbox should hold.
#[derive(Debug, Default)]
struct Model {
    /// Committed and not acknowledged, ascending.
    committed: Vec<Record>,
    pending: Vec<Record>,
    durable: u64,
    acked: u64,
    /// The highest seq ever committed, acknowledged or not.
    highest_committed: u64,
}

impl Model {
    fn next_seq(&self) -> u64 {
        self.durable + self.pending.len() as u64 + 1
    }

    fn commit(&mut self) {
        for record in self.pending.drain(..) {
            assert!(record.seq.0 > self.highest_committed, "seqs strictly increase");
            self.highest_committed = record.seq.0;
            self.durable = record.seq.0;
            self.committed.push(record);
        }
    }
}

fn run_ops(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = big_config(dir.path());
    let mut outbox = open(&config);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append(class, size) => {
                let body = body(class, size);
                let observed_at = UnixMillis(i64::try_from(size).expect("small"));
                let seq = outbox.append(observed_at, body.clone()).expect("appends");
                assert_eq!(seq.0, model.next_seq());
                model.pending.push(Record { seq, observed_at, body });
            }
            Op::Commit => {
                let durable = outbox.commit().expect("commits");
                model.commit();
                assert_eq!(durable.0, model.durable);
            }
            Op::Ack(k) => {
                let span = model.durable - model.acked;
                let choice = k % (span + 3);
                let through = if choice == span + 2 {
                    model.acked.saturating_sub(1)
                } else {
                    model.acked + choice
                };
                let result = outbox.ack(Seq(through));
                if through > model.durable {
                    assert!(matches!(result, Err(OutboxError::AckBeyondDurable { .. })));
                } else {
                    result.expect("acks");
                    model.acked = model.acked.max(through);
                    model.committed.retain(|record| record.seq.0 > through);
                }
            }
            Op::ReadAfter { after, max_records, max_bytes } => {
                let after = model.acked + after % (model.durable - model.acked + 1);
                let got = outbox.read_after(Seq(after), max_records, max_bytes).expect("reads");
                let mut expected = Vec::new();
                let mut n_bytes = 0;
                for record in model.committed.iter().filter(|record| record.seq.0 > after) {
                    let len = encoded_len(&record.body);
                    if expected.len() == max_records
                        || (!expected.is_empty() && n_bytes + len > max_bytes)
                    {
                        break;
                    }
                    n_bytes += len;
                    expected.push(record.clone());
                }
                assert_eq!(got, expected);
            }
            Op::Crash => {
                drop(outbox);
                model.pending.clear();
                outbox = open(&config);
            }
            Op::Reopen => {
                outbox.commit().expect("commits");
                model.commit();
                drop(outbox);
                outbox = open(&config);
            }
        }
        assert_eq!(read_all(&mut outbox), model.committed);
        assert_eq!(outbox.durable_through().0, model.durable);
        assert_eq!(outbox.acked_through().0, model.acked);
        assert_eq!(outbox.pending(), model.pending.len());
        let stats = outbox.stats();
        assert_eq!(stats.records, model.committed.len() as u64);
        let bytes: usize = model.committed.iter().map(|record| encoded_len(&record.body)).sum();
        assert_eq!(stats.bytes, bytes as u64);
        assert!(stats.drops_total.is_empty(), "nothing dropped under a large capacity");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/outbox/tests.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn outbox_matches_model(ops in proptest::collection::vec(any_op(), 1..40)) {
        run_ops(ops);
    }
}

// --- 2. Capacity policy ------------------------------------------------------------------

#[test]
fn telemetry_goes_before_events_and_drops_are_counted_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = OutboxConfig { capacity_bytes: 20_000, ..config(dir.path()) };
    let mut outbox = open(&config);
    let telemetry = append_n(&mut outbox, DropClass::Telemetry, 500, 30);
    let events = append_n(&mut outbox, DropClass::Event, 500, 20);
    outbox.commit().expect("commits");

    let stats = outbox.stats();
    assert!(stats.bytes <= 20_000, "{stats:?}");
    let kept = seqs(&read_all(&mut outbox));
    assert!(events.iter().all(|seq| kept.contains(&seq.0)), "every event kept");
    let kept_telemetry: Vec<_> = telemetry.iter().filter(|seq| kept.contains(&seq.0)).collect();
    let n_dropped = (telemetry.len() - kept_telemetry.len()) as u64;
    assert!(n_dropped > 0);
    assert_eq!(
        kept_telemetry,
        telemetry.iter().skip(n_dropped as usize).collect::<Vec<_>>(),
        "oldest first"
    );
    assert_eq!(drop_count(&stats.drops, DropClass::Telemetry, DropReason::Capacity), n_dropped);
    assert_eq!(drop_count(&stats.drops, DropClass::Event, DropReason::Capacity), 0);

    // Only once telemetry is gone do events go, again oldest first.
    append_n(&mut outbox, DropClass::Event, 500, 30);
    outbox.commit().expect("commits");
    let stats = outbox.stats();
    assert_eq!(stats.per_class[0].records, 0, "no telemetry left: {stats:?}");
    assert!(drop_count(&stats.drops, DropClass::Event, DropReason::Capacity) > 0);
    let kept = seqs(&read_all(&mut outbox));
    assert_eq!(kept.last().copied(), Some(outbox.durable_through().0), "newest kept");

    // The counts survive a restart, including a crash after take_drops but before the
    // health record carrying them was committed.
    let taken = outbox.take_drops();
    assert_eq!(taken, stats.drops);
    drop(outbox);
    let (mut outbox, report) = Outbox::open(config.clone()).expect("opens");
    assert_eq!(report.drops, stats.drops);
    let taken = outbox.take_drops();
    outbox.append(UnixMillis(2), RecordBody::AgentHealth(health(taken, 0))).expect("appends");
    assert!(outbox.stats().drops.is_empty(), "taken counts are not offered twice");
    outbox.commit().expect("commits");
    drop(outbox);
    let (outbox, report) = Outbox::open(config).expect("opens");
    assert!(report.drops.is_empty(), "reported with the health record");
    assert_eq!(outbox.stats().drops_total, stats.drops, "totals are kept");
}

#[test]
fn snapshots_have_their_own_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = OutboxConfig {
        capacity_bytes: 100_000,
        snapshot_capacity_bytes: 5_000,
        ..config(dir.path())
    };
    let mut outbox = open(&config);
    append_n(&mut outbox, DropClass::Telemetry, 500, 10);
    let snapshots = append_n(&mut outbox, DropClass::Snapshot, 2_000, 4);
    outbox.commit().expect("commits");

    let stats = outbox.stats();
    assert_eq!(stats.per_class[0].records, 10, "telemetry untouched");
    assert_eq!(stats.per_class[2].records, 2, "{stats:?}");
    assert!(stats.per_class[2].bytes <= 5_000);
    let kept = seqs(&read_all(&mut outbox));
    assert!(!kept.contains(&snapshots[1].0) && kept.contains(&snapshots[2].0));
    assert_eq!(drop_count(&stats.drops, DropClass::Snapshot, DropReason::Capacity), 2);

    let too_large = outbox.append(UnixMillis(1), body(DropClass::Snapshot, 6_000));
    assert!(matches!(
        too_large,
        Err(OutboxError::RecordTooLarge { class: DropClass::Snapshot, .. })
    ));
    assert_eq!(outbox.pending(), 0, "not stored");
    outbox.commit().expect("commits");
    drop(outbox);
    let (_, report) = Outbox::open(config).expect("opens");
    assert_eq!(drop_count(&report.drops, DropClass::Snapshot, DropReason::Capacity), 3);
}

#[test]
fn pending_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = open(&config(dir.path()));
    append_n(&mut outbox, DropClass::Event, 10, 1);
    append_n(&mut outbox, DropClass::Telemetry, 10, MAX_PENDING_RECORDS + 4);
    assert_eq!(outbox.pending(), MAX_PENDING_RECORDS);
    let drops = outbox.stats().drops;
    assert_eq!(drop_count(&drops, DropClass::Telemetry, DropReason::Capacity), 5);
    assert_eq!(drop_count(&drops, DropClass::Event, DropReason::Capacity), 0);
}

// --- 3. Corruption -------------------------------------------------------------------------

#[test]
fn corrupt_rows_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut outbox = open(&config);
    append_n(&mut outbox, DropClass::Event, 100, 6);
    outbox.commit().expect("commits");

    let raw = rusqlite::Connection::open(&config.path).expect("opens");
    let mut body: Vec<u8> = raw
        .query_row("SELECT body FROM records WHERE seq = 3", [], |row| row.get(0))
        .expect("row 3");
    body[10] ^= 0xFF;
    raw.execute("UPDATE records SET body = ?1 WHERE seq = 3", [body]).expect("updates");
    raw.execute("UPDATE records SET class = 99 WHERE seq = 5", []).expect("updates");
    drop(raw);

    let records = outbox.read_after(Seq::ZERO, 3, usize::MAX).expect("reads past the damage");
    assert_eq!(seqs(&records), [1, 2, 4]);
    assert_eq!(seqs(&read_all(&mut outbox)), [1, 2, 4, 6]);
    let stats = outbox.stats();
    assert_eq!(stats.records, 4);
    assert_eq!(drop_count(&stats.drops, DropClass::Event, DropReason::Corrupt), 2);
    drop(outbox);
    let (_, report) = Outbox::open(config).expect("opens");
    assert_eq!(report.records, 4);
    assert_eq!(drop_count(&report.drops, DropClass::Event, DropReason::Corrupt), 2);
}

#[test]
fn garbage_file_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let garbage: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&config.path, &garbage).expect("writes");

    let (mut outbox, report) = Outbox::open(config.clone()).expect("never fails to start");
    let moved: PathBuf = report.moved_aside.clone().expect("reported");
    assert_eq!(std::fs::read(&moved).expect("kept for inspection"), garbage);
    let name = moved.file_name().and_then(|name| name.to_str()).expect("utf-8");
    assert!(name.starts_with("outbox.db.corrupt-"), "{name}");
    assert_eq!((report.records, report.last_seq), (0, Seq::ZERO));

    append_n(&mut outbox, DropClass::Event, 10, 2);
    assert_eq!(outbox.commit().expect("commits"), Seq(2));
    assert_eq!(seqs(&read_all(&mut outbox)), [1, 2]);
}

#[test]
fn resume_moves_seqs_above_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = open(&config(dir.path()));
    append_n(&mut outbox, DropClass::Event, 10, 2);
    outbox.commit().expect("commits");
    append_n(&mut outbox, DropClass::Event, 10, 1);

    // The hub already has seqs up to 100 from before the file was lost.
    outbox.resume(Seq(100)).expect("resumes");
    assert_eq!(outbox.acked_through(), Seq(100));
    assert_eq!(outbox.commit().expect("commits"), Seq(103));
    assert_eq!(seqs(&read_all(&mut outbox)), [101, 102, 103]);

    // Behind us, it is an ordinary ack.
    outbox.resume(Seq(101)).expect("resumes");
    assert_eq!(seqs(&read_all(&mut outbox)), [102, 103]);
}

// --- 4. Disk full --------------------------------------------------------------------------

#[test]
fn disk_full_evicts_telemetry_and_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = open(&big_config(dir.path()));
    append_n(&mut outbox, DropClass::Telemetry, 1_000, 200);
    append_n(&mut outbox, DropClass::Event, 1_000, 10);
    outbox.commit().expect("commits");
    outbox.set_max_page_count(1);

    let new = append_n(&mut outbox, DropClass::Event, 1_000, 40);
    let durable = outbox.commit().expect("room made by dropping telemetry");
    assert_eq!(durable, *new.last().expect("appended"));
    let stats = outbox.stats();
    assert!(drop_count(&stats.drops, DropClass::Telemetry, DropReason::Capacity) >= 40);
    assert_eq!(stats.per_class[1].records, 50, "no event lost");
}

#[test]
fn disk_full_keeps_events_pending_until_room_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outbox = open(&big_config(dir.path()));
    append_n(&mut outbox, DropClass::Event, 1_000, 200);
    outbox.commit().expect("commits");
    outbox.set_max_page_count(1);

    let new = append_n(&mut outbox, DropClass::Event, 1_000, 40);
    let error = outbox.commit().expect_err("nothing may be evicted");
    assert!(matches!(error, OutboxError::DiskFull { pending: 40, .. }), "{error}");
    assert_eq!(outbox.pending(), 40);
    assert_eq!(outbox.durable_through(), Seq(200));
    assert!(outbox.stats().drops.is_empty(), "events are not evicted for room");

    // The hub acknowledges; the deleted rows make room and the retry succeeds.
    outbox.ack(Seq(100)).expect("acks");
    assert_eq!(outbox.commit().expect("commits"), *new.last().expect("appended"));
    assert_eq!(outbox.pending(), 0);
    assert_eq!(read_all(&mut outbox).len(), 140);
}

/// A really full filesystem, not a page limit: SQLite cannot even delete there (WAL mode
/// appends freed pages to the log first), so only the disk reserve lets the outbox evict.
/// The test runs itself again inside a private user and mount namespace (`unshare`, no
/// privileges needed) on a 16 MiB tmpfs it fills to the last byte.
#[test]
fn a_really_full_filesystem_still_evicts_telemetry_and_saves_events() {
    const INSIDE: &str = "KITT_TEST_FULL_FILESYSTEM";
    const NAME: &str =
        "outbox::tests::a_really_full_filesystem_still_evicts_telemetry_and_saves_events";
    if let Some(dir) = std::env::var_os(INSIDE) {
        return really_full(Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("the test binary");
    let script = r#"mount -t tmpfs -o size=16m kitt-full "$1" && exec "$2" --exact "$3" --nocapture --test-threads 1"#;
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"])
        .arg(dir.path())
        .arg(&exe)
        .arg(NAME)
        .env(INSIDE, dir.path())
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(&format!("test {NAME} ... ok")),
        "inside the namespace: {}\n{stdout}\n{stderr}",
        output.status
    );
}

fn really_full(dir: &Path) {
    let config = big_config(dir);
    let (mut outbox, _) = Outbox::open(config.clone()).expect("opens");
    let reserve = dir.join("outbox.db.reserve");
    assert_eq!(std::fs::metadata(&reserve).expect("reserve written").len(), super::RESERVE_BYTES);
    for _ in 0..20 {
        append_n(&mut outbox, DropClass::Telemetry, 1_000, 200);
        outbox.commit().expect("room for telemetry");
    }
    append_n(&mut outbox, DropClass::Event, 100, 10);
    outbox.commit().expect("room for events");
    // An empty log, then a disk with not one byte left.
    outbox.connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").expect("checkpoint");
    fill_disk(&dir.join("filler"));

    let new = append_n(&mut outbox, DropClass::Event, 1_000, 40);
    let durable = outbox.commit().expect("the reserve makes room to evict telemetry");
    assert_eq!(durable, *new.last().expect("appended"));
    let stats = outbox.stats();
    assert!(drop_count(&stats.drops, DropClass::Telemetry, DropReason::Capacity) >= 40);
    assert_eq!(drop_count(&stats.drops, DropClass::Event, DropReason::Capacity), 0);
    let events = read_all(&mut outbox)
        .into_iter()
        .filter(|r| matches!(r.body, RecordBody::PrinterEvent(_)))
        .count();
    assert_eq!(events, 50, "every event kept");
    // And it goes on: more events, each commit evicting telemetry as needed.
    for _ in 0..10 {
        append_n(&mut outbox, DropClass::Event, 1_000, 20);
        outbox.commit().expect("still evicting telemetry");
    }
    drop(outbox);
    let (mut reopened, report) = Outbox::open(config).expect("reopens on the full disk");
    assert!(report.records > 0);
    assert_eq!(
        read_all(&mut reopened)
            .iter()
            .filter(|r| matches!(r.body, RecordBody::PrinterEvent(_)))
            .count(),
        250
    );
}

/// Writes `path` until the filesystem refuses another byte.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("creates the filler");
    let block = vec![0xEE_u8; 64 * 1024];
    let mut size = block.len();
    while size > 0 {
        match file.write(&block[..size]) {
            Ok(0) | Err(_) => size /= 2,
            Ok(_) => {}
        }
    }
    let _ = file.sync_all();
}

// --- 5. Sequence numbers and the command ledger --------------------------------------------

#[test]
fn seqs_are_never_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let mut outbox = open(&config);
    append_n(&mut outbox, DropClass::Telemetry, 10, 3);
    outbox.commit().expect("commits");
    outbox.ack(Seq(3)).expect("acks");
    outbox.ack(Seq(1)).expect("an old ack is ignored");
    drop(outbox);

    let (mut outbox, report) = Outbox::open(config).expect("opens");
    assert_eq!((report.records, report.last_seq, report.acked_through), (0, Seq(3), Seq(3)));
    assert_eq!(append_n(&mut outbox, DropClass::Telemetry, 10, 1), [Seq(4)]);
    let error = outbox.ack(Seq(4)).expect_err("seq 4 is not durable yet");
    assert!(matches!(
        error,
        OutboxError::AckBeyondDurable { through: Seq(4), durable_through: Seq(3), .. }
    ));
}

#[test]
fn command_ledger_remembers_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let (first, second) = (CommandId([1; 16]), CommandId([2; 16]));
    let mut outbox = open(&config);
    assert_eq!(outbox.command_begin(first, UnixMillis(5_000)).expect("begins"), CommandLedger::New);
    assert_eq!(
        outbox.command_begin(first, UnixMillis(5_000)).expect("begins"),
        CommandLedger::Seen { outcome: None }
    );
    drop(outbox);

    let mut outbox = open(&config);
    assert_eq!(
        outbox.command_begin(first, UnixMillis(5_000)).expect("begins"),
        CommandLedger::Seen { outcome: None },
        "started before the restart: never run again"
    );
    outbox.command_finish(first, &CommandOutcome::Succeeded).expect("finishes");
    drop(outbox);

    let mut outbox = open(&config);
    assert_eq!(
        outbox.command_begin(first, UnixMillis(5_000)).expect("begins"),
        CommandLedger::Seen { outcome: Some(CommandOutcome::Succeeded) }
    );
    let unknown = outbox.command_finish(second, &CommandOutcome::TimedOut);
    assert!(matches!(unknown, Err(OutboxError::UnknownCommand { .. })));
    assert_eq!(outbox.command_begin(second, UnixMillis(100)).expect("begins"), CommandLedger::New);
    assert_eq!(outbox.prune_commands(UnixMillis(1_000)).expect("prunes"), 1);
    assert_eq!(outbox.command_begin(second, UnixMillis(100)).expect("begins"), CommandLedger::New);
}

#[test]
fn open_fails_clearly_when_the_directory_cannot_be_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("writes");
    let error = Outbox::open(OutboxConfig::new(file.join("outbox.db"))).expect_err("fails");
    assert!(matches!(error, OutboxError::Directory { .. }), "{error}");
    assert!(error.to_string().contains("a-file"), "{error}");
}

#[test]
fn an_ack_reads_only_the_rows_it_deletes() {
    // The plan, not a timing: the ack's totals must come from the rowid range. Walking the
    // `(class, seq)` index instead costs the whole backlog on every ack.
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(&config(dir.path()));
    append_n(&mut outbox, DropClass::Event, 10, 3);
    outbox.commit().unwrap();
    let plan: Vec<String> = outbox
        .connection
        .prepare(&format!("EXPLAIN QUERY PLAN {}", super::store::ACKED_TOTALS))
        .unwrap()
        .query_map([2], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|step| step.contains("SEARCH records USING INTEGER PRIMARY KEY")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|step| step.contains("records_class_seq")), "{plan:?}");
    outbox.ack(Seq(2)).unwrap();
    assert_eq!(seqs(&read_all(&mut outbox)), [3]);
}

fn job_end(printer: &PrinterId) -> RecordBody {
    RecordBody::PrinterEvent(PrinterEvent {
        printer: printer.clone(),
        kind: PrinterEventKind::JobFinished {
            job_name: None,
            outcome: proto::JobOutcome::Failed { print_error: Some(0x0300_400C), hms: Vec::new() },
        },
    })
}

#[test]
fn the_latest_job_end_survives_a_restart_an_ack_and_an_uncommitted_crash_loses_it_with_its_record()
{
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let other = PrinterId::new("P2").unwrap();
    {
        let mut outbox = open(&config);
        assert_eq!(outbox.job_ends(&printer()), super::JobEndFacts::default());
        append_n(&mut outbox, DropClass::Telemetry, 10, 3);
        let first = outbox.append(UnixMillis(100), job_end(&printer())).unwrap();
        // Pending already counts: the plate check must see a job end before its commit.
        let facts = outbox.job_ends(&printer());
        assert_eq!((facts.latest.map(|e| e.seq), facts.appended), (Some(first), 1));
        outbox.commit().unwrap();
        let second = outbox.append(UnixMillis(200), job_end(&printer())).unwrap();
        outbox.append(UnixMillis(300), job_end(&other)).unwrap();
        outbox.commit().unwrap();
        // Acknowledged and deleted: the mark stays.
        outbox.ack(outbox.durable_through()).unwrap();
        let facts = outbox.job_ends(&printer());
        assert_eq!(
            facts.latest,
            Some(super::JobEnd { seq: second, at: UnixMillis(200), seen: true })
        );
        assert_eq!(facts.appended, 2);
        // Appended, never committed: gone with its record in the crash below.
        outbox.append(UnixMillis(400), job_end(&printer())).unwrap();
    }
    let outbox = open(&config);
    let facts = outbox.job_ends(&printer());
    assert_eq!(facts.latest.map(|e| e.at), Some(UnixMillis(200)));
    // The count is of this run's appends; the seq is what persists.
    assert_eq!(facts.appended, 0);
    assert_eq!(outbox.job_ends(&other).latest.map(|e| e.at), Some(UnixMillis(300)));
}

#[test]
fn renumbering_above_the_hub_moves_the_job_end_marks_and_a_refused_record_is_still_marked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // A fresh outbox (say, the old one was moved aside as corrupt) records a job end...
    let mut outbox = open(&config);
    let end = outbox.append(UnixMillis(100), job_end(&printer())).unwrap();
    outbox.commit().unwrap();
    assert_eq!(end, Seq(1));
    // ...and the hub, which had this agent's records through 10 000, says so at the welcome.
    outbox.resume(Seq(10_000)).unwrap();
    let moved = outbox.job_ends(&printer()).latest.unwrap().seq;
    assert_eq!(moved, Seq(10_001), "the mark must stay above what the hub had");
    drop(outbox);
    let reopened = open(&config);
    assert_eq!(reopened.job_ends(&printer()).latest.unwrap().seq, Seq(10_001));
    drop(reopened);

    // A job end whose record is refused (too large for a tiny budget) is marked anyway.
    config.capacity_bytes = 64;
    let mut outbox = open(&config);
    let long = RecordBody::PrinterEvent(PrinterEvent {
        printer: printer(),
        kind: PrinterEventKind::JobFinished {
            job_name: Some("x".repeat(200)),
            outcome: proto::JobOutcome::Succeeded,
        },
    });
    assert!(matches!(
        outbox.append(UnixMillis(200), long),
        Err(OutboxError::RecordTooLarge { .. })
    ));
    let facts = outbox.job_ends(&printer());
    assert_eq!(facts.appended, 1, "counted, so the plate check is not left waiting for it");
    assert_eq!(facts.latest.map(|e| e.seq), Some(Seq(10_002)));
}

fn job_start(printer: &PrinterId, name: &str) -> RecordBody {
    RecordBody::PrinterEvent(proto::PrinterEvent {
        printer: printer.clone(),
        kind: proto::PrinterEventKind::JobStarted {
            job_name: Some(name.into()),
            total_layers: None,
        },
    })
}

#[test]
fn the_job_in_progress_survives_a_restart_and_an_uncommitted_crash_loses_it_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    {
        let mut outbox = open(&config);
        assert_eq!(outbox.open_job(&printer()), None);
        outbox.append(UnixMillis(100), job_start(&printer(), "benchy")).unwrap();
        // Pending counts already.
        assert_eq!(
            outbox.open_job(&printer()),
            Some(super::OpenJob { name: Some("benchy".into()) })
        );
        outbox.commit().unwrap();
        // Acknowledged and deleted: the job is still in progress.
        outbox.ack(outbox.durable_through()).unwrap();
    }
    {
        let mut outbox = open(&config);
        assert_eq!(
            outbox.open_job(&printer()),
            Some(super::OpenJob { name: Some("benchy".into()) })
        );
        // Its end, appended and lost in a crash: the job is still in progress after it.
        outbox.append(UnixMillis(200), job_end(&printer())).unwrap();
        assert_eq!(outbox.open_job(&printer()), None);
    }
    let mut outbox = open(&config);
    assert_eq!(outbox.open_job(&printer()).and_then(|j| j.name), Some("benchy".into()));
    outbox.append(UnixMillis(300), job_end(&printer())).unwrap();
    outbox.commit().unwrap();
    drop(outbox);
    assert_eq!(open(&config).open_job(&printer()), None);
}
