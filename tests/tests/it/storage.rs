//! The hub's database on both backends: each check runs once on SQLite (a temporary
//! directory) and once on PostgreSQL (a fresh database on the throwaway cluster of
//! `tests::postgres`), as `storage::sqlite::<check>` and `storage::postgres::<check>`.

use hub::db::{AgentRow, Backend, Db, TokenRefusal};
use proto::{
    AgentHealth, AgentId, Command, CommandAction, CommandId, CommandOutcome, PrinterId, Record,
    RecordBody, Seq, SoftwareVersion, UnixMillis,
};

/// Runs each check against both backends.
macro_rules! on_both_backends {
    ($($check:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::Store::sqlite()).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::Store::postgres().await).await;
                }
            )+
        }
    };
}

on_both_backends!(
    migrations_apply_to_an_empty_database_and_again_on_reopening,
    a_database_a_newer_hub_migrated_still_opens_for_a_rolling_upgrade,
    ingest_stores_each_record_once_and_returns_the_watermark,
    a_token_is_redeemed_once_before_its_expiry_with_its_secret,
    commands_are_open_until_they_have_an_outcome_or_expire,
    a_revoked_agent_stays_revoked_from_the_first_revocation,
    telemetry_is_projected_downsampled_and_expired_by_resolution,
    an_agents_counters_are_stored_from_its_newest_health,
    a_printer_belongs_to_the_agent_that_first_claimed_it_until_an_admin_moves_it,
    a_snapshot_that_arrives_before_its_event_is_linked_when_the_event_comes,
    each_new_event_is_given_its_id_in_the_log_and_a_resent_one_none,
    printers_of_every_kind_are_stored_in_the_same_neutral_terms,
);

/// Where a test's database lives; it can be opened more than once.
enum Store {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Store {
    fn sqlite() -> Store {
        Store::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Store {
        Store::Postgres(tests::postgres::fresh_database().await)
    }

    /// Opens the database, applying the migrations.
    async fn open(&self) -> Db {
        let db = match self {
            Store::Sqlite(dir) => Db::open_sqlite(dir.path()).await,
            Store::Postgres(url) => Db::open(url).await,
        };
        db.unwrap()
    }

    fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }
}

async fn migrations_apply_to_an_empty_database_and_again_on_reopening(store: Store) {
    let db = store.open().await;
    assert_eq!(db.backend(), store.backend());
    assert_eq!(db.agents().await.unwrap(), []);
    let agent = agent_id("pi-1");
    assert_eq!(db.record_count(&agent).await.unwrap(), 0);
    assert_eq!(db.watermark(&agent).await.unwrap(), Seq::ZERO);
    db.pool().close().await;
    let again = store.open().await;
    assert_eq!(again.agents().await.unwrap(), [], "reopening applies nothing twice");
}

/// A replica of the previous version restarting mid-upgrade finds a newer hub's migration
/// applied: it opens the database all the same (and warns), its data intact.
async fn a_database_a_newer_hub_migrated_still_opens_for_a_rolling_upgrade(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-1").await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from a newer hub', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(db.pool())
    .await
    .unwrap();
    db.pool().close().await;
    let again = store.open().await;
    assert_eq!(again.agents().await.unwrap().len(), 1);
    assert_eq!(again.watermark(&agent).await.unwrap(), Seq::ZERO);
}

async fn ingest_stores_each_record_once_and_returns_the_watermark(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-ingest").await;
    let first: Vec<Record> = (1..=3).map(record).collect();
    let now = UnixMillis(1_700_000_000_000);

    assert_eq!(db.ingest(&agent, &first, now).await.unwrap(), Seq(3));
    assert_eq!(db.ingest(&agent, &first, now).await.unwrap(), Seq(3), "a resent batch");
    assert_eq!(db.record_count(&agent).await.unwrap(), 3);

    let overlapping: Vec<Record> = (2..=5).map(record).collect();
    assert_eq!(db.ingest(&agent, &overlapping, now).await.unwrap(), Seq(5));
    assert_eq!(db.ingest(&agent, &[], now).await.unwrap(), Seq(5), "an empty batch");
    assert_eq!(db.watermark(&agent).await.unwrap(), Seq(5));
    let stored = db.records(&agent).await.unwrap();
    assert_eq!(stored, (1..=5).map(record).collect::<Vec<_>>());

    let row = db.agent(&agent).await.unwrap().unwrap();
    assert_eq!(row.acked_through, Seq(5));
    assert_eq!(row.last_seen_at, Some(now));
    let other = enrolled(&db, "pi-other").await;
    assert_eq!(db.record_count(&other).await.unwrap(), 0, "records are per agent");
}

async fn a_token_is_redeemed_once_before_its_expiry_with_its_secret(store: Store) {
    let db = store.open().await;
    let now = UnixMillis(1_700_000_000_000);
    let later = now.plus_millis(60_000);
    let agent = agent_id("pi-token");
    db.insert_token("named", "secret-hash", Some("bench pi"), None, now, later).await.unwrap();
    db.insert_token("anonymous", "other-hash", None, None, now, later).await.unwrap();
    db.insert_token("stale", "stale-hash", None, None, now.plus_millis(-10), now).await.unwrap();
    assert_eq!(db.token_name("named").await.unwrap().as_deref(), Some("bench pi"));
    assert_eq!(db.token_name("anonymous").await.unwrap(), None);

    let redeem = |id: &'static str, secret: &'static str| {
        let (db, agent) = (db.clone(), agent.clone());
        async move { db.redeem_token(id, secret, now, &agent).await.unwrap() }
    };
    assert_eq!(redeem("named", "wrong-hash").await, Err(TokenRefusal::Unknown));
    assert_eq!(redeem("missing", "secret-hash").await, Err(TokenRefusal::Unknown));
    assert_eq!(redeem("named", "secret-hash").await, Ok(Some("bench pi".to_owned())));
    assert_eq!(redeem("named", "secret-hash").await, Err(TokenRefusal::AlreadyUsed));
    assert_eq!(redeem("anonymous", "other-hash").await, Ok(None));
    assert_eq!(redeem("stale", "stale-hash").await, Err(TokenRefusal::Expired));
}

async fn commands_are_open_until_they_have_an_outcome_or_expire(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-commands").await;
    let other = enrolled(&db, "pi-elsewhere").await;
    let now = UnixMillis(1_700_000_000_000);
    let lasting = command(1, now, 60_000, CommandAction::Pause);
    let brief = command(2, now.plus_millis(1), 1_000, CommandAction::Stop);
    let elsewhere = command(3, now, 60_000, CommandAction::Resume);
    db.insert_command(&agent, &lasting).await.unwrap();
    db.insert_command(&agent, &brief).await.unwrap();
    db.insert_command(&other, &elsewhere).await.unwrap();

    assert_eq!(db.open_commands(&agent, now).await.unwrap(), [lasting.clone(), brief.clone()]);
    db.mark_delivered(lasting.id, now).await.unwrap();
    let after_brief = now.plus_millis(2_000);
    assert_eq!(
        db.open_commands(&agent, after_brief).await.unwrap(),
        std::slice::from_ref(&lasting)
    );

    assert_eq!(db.expire_commands(after_brief).await.unwrap(), 1);
    assert_eq!(db.expire_commands(after_brief).await.unwrap(), 0, "expired once");
    assert_eq!(db.command_outcome(brief.id).await.unwrap().as_deref(), Some("expired"));
    assert_eq!(db.command_outcome(lasting.id).await.unwrap(), None);
    assert_eq!(db.command_outcome(CommandId([9; 16])).await.unwrap(), None, "no such command");

    db.record_outcome(lasting.id, &CommandOutcome::Succeeded, after_brief).await.unwrap();
    let refused = CommandOutcome::Refused { reason: "too late".into() };
    db.record_outcome(lasting.id, &refused, after_brief).await.unwrap();
    assert_eq!(
        db.command_outcome(lasting.id).await.unwrap().as_deref(),
        Some("succeeded"),
        "the first outcome wins"
    );
    assert_eq!(db.open_commands(&agent, now).await.unwrap(), []);
    assert_eq!(db.open_commands(&other, now).await.unwrap(), [elsewhere]);
}

async fn a_revoked_agent_stays_revoked_from_the_first_revocation(store: Store) {
    let db = store.open().await;
    let revoked = enrolled(&db, "pi-revoked").await;
    let kept = enrolled(&db, "pi-kept").await;
    let first = UnixMillis(1_700_000_000_000);
    assert_eq!(db.revoked_agents().await.unwrap(), Vec::<String>::new());

    assert!(db.revoke_agent(revoked.as_str(), first).await.unwrap());
    assert!(db.revoke_agent(revoked.as_str(), first.plus_millis(5_000)).await.unwrap());
    assert!(!db.revoke_agent("pi-unknown", first).await.unwrap(), "no such agent");
    assert_eq!(db.revoked_agents().await.unwrap(), [revoked.as_str()]);
    assert_eq!(db.agent(&revoked).await.unwrap().unwrap().revoked_at, Some(first));
    assert_eq!(db.agent(&kept).await.unwrap().unwrap().revoked_at, None);
}

async fn an_agents_counters_are_stored_from_its_newest_health(store: Store) {
    use proto::{AgentCounters, AgentHealthV2, PrinterCounters};
    let db = store.open().await;
    let agent = enrolled(&db, "pi-counters").await;
    let now = UnixMillis(1_700_000_000_000);
    let counters = async || -> (Option<i64>, Option<serde_json::Value>) {
        let row = sqlx::query("SELECT outbox_records, counters FROM agents WHERE id = $1")
            .bind(agent.as_str())
            .fetch_one(db.pool())
            .await
            .unwrap();
        let counters: Option<String> = sqlx::Row::try_get(&row, 1).unwrap();
        (sqlx::Row::try_get(&row, 0).unwrap(), counters.map(|c| serde_json::from_str(&c).unwrap()))
    };

    db.ingest(&agent, &[record(1)], now).await.unwrap();
    assert_eq!(counters().await, (Some(1), None), "an older agent reports no counters");

    let RecordBody::AgentHealth(health) = record(2).body else { unreachable!() };
    let v2 = AgentHealthV2 {
        health,
        counters: AgentCounters {
            hub_reconnects: 4,
            hub_protocol_errors: 1,
            commands_refused: 2,
            printers: vec![PrinterCounters {
                printer: PrinterId::new("01P00A391800001").unwrap(),
                link_errors: 7,
                bad_payloads: 3,
                camera_errors: 5,
            }],
        },
    };
    let body = RecordBody::AgentHealthV2(v2);
    let v2_record = Record { seq: Seq(2), observed_at: UnixMillis(1_690_000_000_002), body };
    assert_eq!(db.ingest(&agent, std::slice::from_ref(&v2_record), now).await.unwrap(), Seq(2));
    let expected = serde_json::json!({
        "hub_reconnects": 4,
        "hub_protocol_errors": 1,
        "commands_refused": 2,
        "printers": [{
            "printer": "01P00A391800001",
            "link_errors": 7,
            "bad_payloads": 3,
            "camera_errors": 5,
        }],
    });
    assert_eq!(counters().await, (Some(2), Some(expected)));
    assert_eq!(db.records(&agent).await.unwrap()[1], v2_record, "stored as received");

    // Version 4: the clock too, shown to the API; an agent three hours behind is flagged.
    let clock_of = async || {
        let details = db.agent_details().await.unwrap();
        details.into_iter().find(|a| a.id == agent.as_str()).unwrap().clock
    };
    assert!(clock_of().await.is_none(), "no agent of version 4 reported yet");
    let RecordBody::AgentHealthV2(v2) = v2_record.body.clone() else { unreachable!() };
    let behind = proto::ClockOffset {
        offset_ms: 10_800_000,
        uncertainty_ms: 4,
        measured_at: UnixMillis(1_690_000_000_003),
    };
    let v3 = |seq: u64, clock| Record {
        seq: Seq(seq),
        observed_at: UnixMillis(1_690_000_000_000 + seq as i64),
        body: RecordBody::AgentHealthV3(proto::AgentHealthV3 { health: v2.clone(), clock }),
    };
    db.ingest(&agent, &[v3(3, Some(behind))], now).await.unwrap();
    let clock = clock_of().await.expect("the clock stored");
    assert_eq!((clock.offset_ms, clock.uncertainty_ms, clock.off), (10_800_000, 4, true));
    // A health record before the agent's first session says nothing of the clock: kept.
    db.ingest(&agent, &[v3(4, None)], now).await.unwrap();
    assert_eq!(clock_of().await.map(|c| c.offset_ms), Some(10_800_000));
    let synced = proto::ClockOffset { offset_ms: -12, ..behind };
    db.ingest(&agent, &[v3(5, Some(synced))], now).await.unwrap();
    let clock = clock_of().await.expect("the clock stored");
    assert_eq!((clock.offset_ms, clock.off), (-12, false));
}

async fn each_new_event_is_given_its_id_in_the_log_and_a_resent_one_none(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-events").await;
    let now = UnixMillis(1_700_000_000_000);
    let first: Vec<Record> = (1..=3).map(event).collect();
    let ingested = db.ingest_with(&agent, &first, now, Vec::new()).await.unwrap();
    assert_eq!(seqs_of(&ingested.event_ids), (1..=3).collect::<Vec<_>>());
    assert_ids_are_the_logs(&db, &ingested.event_ids).await;

    // Overlapping what is stored, and longer than one insert statement (1000 rows).
    let overlapping: Vec<Record> = (2..=1205).map(event).collect();
    let ingested = db.ingest_with(&agent, &overlapping, now, Vec::new()).await.unwrap();
    assert_eq!(seqs_of(&ingested.event_ids), (4..=1205).collect::<Vec<_>>(), "resent: no id");
    assert_ids_are_the_logs(&db, &ingested.event_ids).await;

    let resent = db.ingest_with(&agent, &overlapping, now, Vec::new()).await.unwrap();
    assert_eq!(resent.event_ids, [], "a resent batch");
    let next: Vec<Record> = (1206..=2500).map(event).collect();
    let ingested = db.ingest_with(&agent, &next, now, Vec::new()).await.unwrap();
    assert_eq!(seqs_of(&ingested.event_ids), (1206..=2500).collect::<Vec<_>>());
    assert_ids_are_the_logs(&db, &ingested.event_ids).await;
}

fn event(seq: u64) -> Record {
    let kind = if seq.is_multiple_of(2) {
        proto::PrinterEventKind::Reachable
    } else {
        proto::PrinterEventKind::Unreachable { reason: format!("event {seq}") }
    };
    Record {
        seq: Seq(seq),
        observed_at: UnixMillis(1_690_000_000_000 + seq as i64),
        body: RecordBody::PrinterEvent(proto::PrinterEvent {
            printer: PrinterId::new("01P00A391800001").unwrap(),
            kind,
        }),
    }
}

fn seqs_of(event_ids: &[(Seq, i64)]) -> Vec<u64> {
    event_ids.iter().map(|(seq, _)| seq.0).collect()
}

/// Each `(seq, id)` names the id the event log shows for that record (`event` stamps seq
/// `n` at a time of its own).
async fn assert_ids_are_the_logs(db: &Db, event_ids: &[(Seq, i64)]) {
    let filter = hub::db::read::EventFilter {
        printer: None,
        kind: None,
        from: None,
        to: None,
        before_id: None,
        limit: 10_000,
    };
    let logged: std::collections::HashMap<i64, i64> =
        db.events(&filter).await.unwrap().iter().map(|row| (row.at, row.id)).collect();
    for (seq, id) in event_ids {
        let at = event(seq.0).observed_at.0;
        assert_eq!(logged.get(&at), Some(id), "the id of event {seq}");
    }
}

fn agent_id(id: &str) -> AgentId {
    AgentId::new(id).unwrap()
}

/// Inserts an agent as enrollment does and checks it reads back as written.
async fn enrolled(db: &Db, id: &str) -> AgentId {
    let row = AgentRow {
        id: agent_id(id),
        name: None,
        cert_serial: format!("serial-{id}"),
        cert_not_after: UnixMillis(1_800_000_000_000),
        revoked_at: None,
        acked_through: Seq::ZERO,
        last_seen_at: None,
    };
    db.insert_agent(&row, "raspberrypi", "kitt-agent 0.1.0", UnixMillis(1_600_000_000_000))
        .await
        .unwrap();
    assert_eq!(db.agent(&row.id).await.unwrap().as_ref(), Some(&row));
    row.id
}

fn record(seq: u64) -> Record {
    Record {
        seq: Seq(seq),
        observed_at: UnixMillis(1_690_000_000_000 + seq as i64),
        body: RecordBody::AgentHealth(AgentHealth {
            outbox_records: seq,
            outbox_bytes: 0,
            drops: Vec::new(),
            disk_free_bytes: 1 << 40,
            uptime_s: seq,
            software: SoftwareVersion { version: "0".into(), commit: None, target: "test".into() },
            certificate_expires_at: None,
        }),
    }
}

fn command(n: u8, issued_at: UnixMillis, lifetime_ms: i64, action: CommandAction) -> Command {
    Command {
        id: CommandId([n; 16]),
        printer: PrinterId::new("01P00A391800001").unwrap(),
        issued_at,
        expires_at: issued_at.plus_millis(lifetime_ms),
        preconditions: Vec::new(),
        action,
    }
}

/// A telemetry record of one printer at `at` with the given nozzle temperature and layer.
fn sample(seq: u64, at: i64, nozzle: f32, layer: u32) -> Record {
    sample_in(seq, at, nozzle, layer, proto::PrintState::Printing)
}

fn sample_in(seq: u64, at: i64, nozzle: f32, layer: u32, print: proto::PrintState) -> Record {
    let state = proto::PrinterState {
        state: print,
        nozzle_temp_c: Some(nozzle),
        layer: Some(layer),
        ..proto::PrinterState::default()
    };
    Record {
        seq: Seq(seq),
        observed_at: UnixMillis(at),
        body: RecordBody::Telemetry(proto::PrinterTelemetry {
            printer: PrinterId::new("01P00A391800001").unwrap(),
            state: Box::new(state),
        }),
    }
}

async fn telemetry_is_projected_downsampled_and_expired_by_resolution(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-telemetry").await;
    let printer = "01P00A391800001";
    let hour = 3_600_000_i64;
    let now = 1_764_000_000_000_i64 / hour * hour;
    // Two minutes of samples three hours ago, every 20 s, and one fresh sample.
    let old = now - 3 * hour;
    let mut records: Vec<Record> = (0..6)
        .map(|i| sample(i + 1, old + i as i64 * 20_000, 200.0 + i as f32, i as u32))
        .collect();
    // The job finished in the second minute: that bucket shows it finished (its last
    // sample), not the text-wise larger "printing".
    records[5] = sample_in(6, old + 100_000, 205.0, 5, proto::PrintState::Finished);
    records.push(sample(7, now - 1_000, 210.0, 99));
    db.ingest(&agent, &records, UnixMillis(now)).await.unwrap();
    let raw = db.telemetry(printer, 0, 0, now, 100).await.unwrap();
    assert_eq!(raw.len(), 7);
    assert_eq!(raw[0].state.as_deref(), Some("printing"));
    // Over the limit: the newest samples, in time order.
    let newest = db.telemetry(printer, 0, 0, now, 2).await.unwrap();
    let layers: Vec<_> = newest.iter().map(|s| s.layer).collect();
    assert_eq!(layers, [Some(5), Some(99)]);
    let latest = db.printer(printer).await.unwrap().unwrap();
    assert_eq!(latest.state.unwrap().layer, Some(99), "the printer shows its newest state");

    // Raw kept one hour: the old samples fold into one-minute buckets and go.
    db.downsample(hour, 30 * 24 * hour, 365 * 24 * hour, UnixMillis(now)).await.unwrap();
    assert_eq!(db.record_count(&agent).await.unwrap(), 7, "received just now: kept");
    let raw = db.telemetry(printer, 0, 0, now, 100).await.unwrap();
    assert_eq!(raw.len(), 1, "only the fresh raw sample is left");
    let minutes = db.telemetry(printer, 60, 0, now, 100).await.unwrap();
    assert_eq!(minutes.len(), 2, "{minutes:?}");
    assert_eq!(minutes[0].at, old);
    assert_eq!(minutes[0].nozzle_temp_c, Some(201.0), "the average of 200, 201, 202");
    assert_eq!(minutes[0].layer, Some(2), "the last sample's layer");
    assert_eq!(minutes[0].state.as_deref(), Some("printing"));
    assert_eq!(minutes[1].state.as_deref(), Some("finished"), "the last sample's state");
    // Idempotent: running again changes nothing.
    db.downsample(hour, 30 * 24 * hour, 365 * 24 * hour, UnixMillis(now)).await.unwrap();
    assert_eq!(db.telemetry(printer, 60, 0, now, 100).await.unwrap().len(), 2);

    // A sample that arrives late (an agent catching up after an outage) for a minute that
    // was folded already is folded in at the next run.
    let late = now + 10 * 60_000;
    db.ingest(&agent, &[sample(8, old + 130_000, 300.0, 7)], UnixMillis(late)).await.unwrap();
    db.downsample(hour, 30 * 24 * hour, 365 * 24 * hour, UnixMillis(late)).await.unwrap();
    let minutes = db.telemetry(printer, 60, 0, now, 100).await.unwrap();
    // (The fresh sample's minute has closed by now too.)
    assert_eq!(minutes.len(), 4, "{minutes:?}");
    assert_eq!((minutes[2].at, minutes[2].layer), (old + 120_000, Some(7)), "{minutes:?}");

    // Much later: minutes fold into quarter hours, and those expire in turn.
    let later = now + 60 * 24 * hour;
    db.downsample(hour, 30 * 24 * hour, 365 * 24 * hour, UnixMillis(later)).await.unwrap();
    assert_eq!(db.record_count(&agent).await.unwrap(), 0, "old telemetry bodies pruned");
    assert_eq!(db.watermark(&agent).await.unwrap(), Seq(8), "the watermark stays");
    assert!(db.telemetry(printer, 60, 0, later, 100).await.unwrap().is_empty());
    let quarters = db.telemetry(printer, 900, 0, later, 100).await.unwrap();
    assert!(!quarters.is_empty());
    let much_later = later + 400 * 24 * hour;
    db.downsample(hour, 30 * 24 * hour, 365 * 24 * hour, UnixMillis(much_later)).await.unwrap();
    assert!(db.telemetry(printer, 900, 0, much_later, 100).await.unwrap().is_empty());
}

fn printer_info(id: &str, vendor: proto::Vendor) -> proto::PrinterInfo {
    proto::PrinterInfo {
        id: PrinterId::new(id).unwrap(),
        vendor,
        model: Some("C12".into()),
        name: Some(format!("printer {id}")),
        cameras: Vec::new(),
    }
}

fn telemetry_of(printer: &str, seq: u64, layer: u32) -> Record {
    let state = proto::PrinterState { layer: Some(layer), ..proto::PrinterState::default() };
    Record {
        seq: Seq(seq),
        observed_at: UnixMillis(1_700_000_000_000 + seq as i64),
        body: RecordBody::Telemetry(proto::PrinterTelemetry {
            printer: PrinterId::new(printer).unwrap(),
            state: Box::new(state),
        }),
    }
}

async fn a_printer_belongs_to_the_agent_that_first_claimed_it_until_an_admin_moves_it(
    store: Store,
) {
    use hub::db::owners::Claim;
    let db = store.open().await;
    let now = UnixMillis(1_700_000_000_000);
    let (owner, intruder) = (enrolled(&db, "pi-owner").await, enrolled(&db, "pi-intruder").await);
    let layer = async |printer: &str| {
        let row = db.printer(printer).await.unwrap().unwrap();
        (row.agent_id.clone(), row.state.and_then(|s| s.layer))
    };

    // A first claim owns the printer, waiting for approval; the vendor is the agent's word.
    let moonraker = printer_info("voron-1", proto::Vendor::Moonraker);
    let first = db.claim_printer(&owner, &moonraker, now).await.unwrap();
    assert_eq!(first, Claim::Owned { approved: false, new: true });
    let row = db.printer("voron-1").await.unwrap().unwrap();
    assert_eq!((row.vendor.as_deref(), row.approved_at), (Some("moonraker"), None));
    assert_eq!(db.printer_approved("voron-1").await.unwrap(), Some(false));
    assert!(db.approve_printer("voron-1", now).await.unwrap());
    assert_eq!(db.printer_approved("voron-1").await.unwrap(), Some(true));
    let again = db.claim_printer(&owner, &moonraker, now).await.unwrap();
    assert_eq!(again, Claim::Owned { approved: true, new: false });

    // Another agent's hello and records are refused: the owner and state stay the owner's.
    db.ingest(&owner, &[telemetry_of("voron-1", 1, 10)], now).await.unwrap();
    let refused = db.claim_printer(&intruder, &moonraker, now).await.unwrap();
    assert_eq!(refused, Claim::Refused { owner: "pi-owner".into() });
    let ingested = db
        .ingest_with(&intruder, &[telemetry_of("voron-1", 1, 99), record(2)], now, Vec::new())
        .await
        .unwrap();
    assert_eq!(ingested.watermark, Seq(2), "acknowledged all the same: kept in the log");
    let refused = &ingested.refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].printer.as_str(), refused[0].records), ("voron-1", 1));
    assert_eq!(layer("voron-1").await, ("pi-owner".to_owned(), Some(10)));
    let claims = db.printer_claims().await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(
        (claims[0].agent_id.as_str(), claims[0].owner_id.as_str()),
        ("pi-intruder", "pi-owner")
    );
    assert_eq!(claims[0].refused_records, 1);

    // The owner's clock steps back hours (a Pi that rebooted without a real-time clock): its
    // next state still replaces the last; the agent's order decides, not its clock.
    let mut stepped_back = telemetry_of("voron-1", 2, 12);
    stepped_back.observed_at = UnixMillis(1_700_000_000_000 - 3 * 3_600_000);
    db.ingest(&owner, &[stepped_back], now).await.unwrap();
    assert_eq!(layer("voron-1").await, ("pi-owner".to_owned(), Some(12)));

    // Commands for the owner: one sent, one not yet.
    let on_printer = |mut command: Command| {
        command.printer = PrinterId::new("voron-1").unwrap();
        command
    };
    let sent = on_printer(command(41, now, 600_000, CommandAction::Pause));
    let unsent = on_printer(command(42, now, 600_000, CommandAction::Stop));
    db.insert_command(&owner, &sent).await.unwrap();
    db.insert_command(&owner, &unsent).await.unwrap();
    db.mark_delivered(sent.id, now).await.unwrap();

    // An admin moves it: the refused claim is settled and the new owner's records count.
    assert_eq!(
        db.move_printer("voron-1", &intruder, now).await.unwrap().as_deref(),
        Some("pi-owner")
    );
    assert_eq!(db.printer_claims().await.unwrap(), []);
    // The unsent command will never reach the former owner: answered. The sent one waits for
    // its answer (the printer may have acted on it).
    let unsent_outcome = db.command_outcome(unsent.id).await.unwrap().unwrap_or_default();
    assert!(unsent_outcome.contains("moved to agent pi-intruder"), "{unsent_outcome}");
    assert_eq!(db.command_outcome(sent.id).await.unwrap(), None);
    // The new owner's seqs are its own order, unrelated to the former owner's.
    db.ingest(&intruder, &[telemetry_of("voron-1", 3, 42)], now.plus_millis(10)).await.unwrap();
    assert_eq!(layer("voron-1").await, ("pi-intruder".to_owned(), Some(42)));
    let stale = db
        .ingest_with(&owner, &[telemetry_of("voron-1", 3, 11)], now.plus_millis(20), Vec::new())
        .await
        .unwrap();
    assert_eq!(stale.refused.len(), 1, "the former owner is refused now");

    // A token that named a printer approves its redeemer's first claim in advance.
    let later = now.plus_millis(60_000);
    db.insert_token("t", "hash", None, Some("x1c-7 other"), now, later).await.unwrap();
    let named = enrolled(&db, "pi-named").await;
    assert_eq!(db.redeem_token("t", "hash", now, &named).await.unwrap(), Ok(None));
    let (named_one, other) = (
        printer_info("x1c-7", proto::Vendor::BambuLab),
        printer_info("x1c-8", proto::Vendor::BambuLab),
    );
    let claim = db.claim_printer(&named, &named_one, now).await.unwrap();
    assert_eq!(claim, Claim::Owned { approved: true, new: true });
    let claim = db.claim_printer(&named, &other, now).await.unwrap();
    assert_eq!(claim, Claim::Owned { approved: false, new: true });
    assert_eq!(db.printer("x1c-7").await.unwrap().unwrap().vendor.as_deref(), Some("bambu_lab"));
}

async fn a_snapshot_that_arrives_before_its_event_is_linked_when_the_event_comes(store: Store) {
    let db = store.open().await;
    let agent = enrolled(&db, "pi-camera").await;
    let (printer, started) = (PrinterId::new("01P00A391800001").unwrap(), 1_700_000_000_000);
    let id = proto::SnapshotId([9; 16]);
    let chunk = proto::SnapshotChunk {
        snapshot: id,
        printer: printer.clone(),
        camera: proto::CameraId::new("chamber").unwrap(),
        trigger: proto::SnapshotTrigger::JobStarted,
        format: proto::ImageFormat::Jpeg,
        captured_at: UnixMillis(started + 800),
        total_len: 3,
        sha256: [0; 32],
        chunk_index: 0,
        chunk_count: 1,
        data: vec![1, 2, 3],
    };
    let stored = hub::db::StoredSnapshot { id, path: "x.jpg".into(), bytes: 3 };
    let snapshot = Record {
        seq: Seq(1),
        observed_at: UnixMillis(started + 800),
        body: RecordBody::Snapshot(chunk),
    };
    db.ingest_with(&agent, &[snapshot], UnixMillis(started + 900), vec![stored]).await.unwrap();
    // The camera was quicker than the printer link: the job's start arrives in the next batch.
    let kind = proto::PrinterEventKind::JobStarted {
        job_name: Some("lid.3mf".into()),
        total_layers: Some(9),
    };
    let event = RecordBody::PrinterEvent(proto::PrinterEvent { printer, kind });
    let event = Record { seq: Seq(2), observed_at: UnixMillis(started), body: event };
    db.ingest(&agent, &[event], UnixMillis(started + 1000)).await.unwrap();
    let row = sqlx::query("SELECT event_id, job_name, job_started_at FROM snapshots")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let event_id: Option<i64> = sqlx::Row::try_get(&row, 0).unwrap();
    let job: Option<String> = sqlx::Row::try_get(&row, 1).unwrap();
    let job_started_at: Option<i64> = sqlx::Row::try_get(&row, 2).unwrap();
    assert!(event_id.is_some(), "linked to the job_started event");
    assert_eq!((job.as_deref(), job_started_at), (Some("lid.3mf"), Some(started)));
}

/// A version-4 agent's Bambu telemetry and a version-5 agent's Klipper telemetry read back
/// in the same terms: the shared fields, the controls each supports, its own part, and the
/// old Bambu fields (null for the Klipper printer). The fault event is logged by its type.
async fn printers_of_every_kind_are_stored_in_the_same_neutral_terms(store: Store) {
    use proto::{
        Controls, Heater, HeaterKind, KlipperDetail, KlippyState, PrintState, PrinterEvent,
        PrinterEventKind, PrinterStateV2, PrinterTelemetryV2, VendorDetail,
    };
    let db = store.open().await;
    let agent = enrolled(&db, "pi-mixed").await;
    let (bambu, klipper) = ("01P00A391800077", "voron-2");
    let v4 = proto::PrinterState {
        state: PrintState::Printing,
        stage: Some(2),
        nozzle_temp_c: Some(220.0),
        ..proto::PrinterState::default()
    };
    let v5 = PrinterStateV2 {
        state: PrintState::Failed,
        heaters: vec![
            Heater { kind: HeaterKind::Nozzle, index: 0, temp_c: Some(180.0), target_c: None },
            Heater { kind: HeaterKind::Nozzle, index: 1, temp_c: Some(30.0), target_c: None },
        ],
        message: Some("MCU 'mcu' shutdown: Timer too close".into()),
        controls: Controls::PAUSE.union(Controls::EMERGENCY_STOP),
        detail: VendorDetail::Klipper(KlipperDetail {
            klippy: KlippyState::Shutdown,
            ..KlipperDetail::default()
        }),
        ..PrinterStateV2::default()
    };
    let at = UnixMillis(1_700_000_000_000);
    let records = vec![
        Record {
            seq: Seq(1),
            observed_at: at,
            body: RecordBody::Telemetry(proto::PrinterTelemetry {
                printer: PrinterId::new(bambu).unwrap(),
                state: Box::new(v4),
            }),
        },
        Record {
            seq: Seq(2),
            observed_at: at,
            body: RecordBody::TelemetryV2(PrinterTelemetryV2 {
                printer: PrinterId::new(klipper).unwrap(),
                state: Box::new(v5),
            }),
        },
        Record {
            seq: Seq(3),
            observed_at: at,
            body: RecordBody::PrinterEvent(PrinterEvent {
                printer: PrinterId::new(klipper).unwrap(),
                kind: PrinterEventKind::Fault { message: "MCU 'mcu' shutdown".into() },
            }),
        },
    ];
    assert_eq!(db.ingest(&agent, &records, at).await.unwrap(), Seq(3));

    let bambu = db.printer(bambu).await.unwrap().unwrap().state.unwrap();
    assert_eq!(bambu.kind.as_deref(), Some("bambu"));
    assert_eq!(bambu.state, "printing");
    assert_eq!(bambu.stage.map(|s| s.code), Some(2));
    assert_eq!(bambu.heaters[0].temp_c, Some(220.0));
    assert!(bambu.controls.iter().any(|c| c == "light"), "{:?}", bambu.controls);
    assert!(bambu.klipper.is_none());

    let klipper = db.printer(klipper).await.unwrap().unwrap().state.unwrap();
    assert_eq!(klipper.kind.as_deref(), Some("klipper"));
    assert_eq!(klipper.state, "failed");
    assert_eq!(klipper.message.as_deref(), Some("MCU 'mcu' shutdown: Timer too close"));
    assert_eq!(klipper.controls, ["pause", "emergency_stop"]);
    assert_eq!(klipper.klipper.unwrap().klippy, "shutdown");
    assert_eq!(klipper.nozzle_temp_c, Some(180.0), "the first nozzle, in the old field too");
    assert_eq!(klipper.heaters.len(), 2);
    assert!(klipper.stage.is_none() && klipper.ams.is_empty() && klipper.print_error.is_none());
    let samples = db.telemetry("voron-2", 0, 0, at.0 + 1, 10).await.unwrap();
    assert_eq!(samples[0].nozzle_temp_c, Some(180.0));
    assert_eq!(samples[0].state.as_deref(), Some("failed"));
}
