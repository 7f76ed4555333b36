//! Snapshot and state-machine tests over recorded and constructed reports: no sockets, no
//! sleeps; time is passed in.

use std::time::{Duration, Instant};

use expect_test::expect;
use proto::{
    CommandAction, CommandOutcome, ControlCapability, JobOutcome, PrintState, PrinterEventKind,
    UnixMillis,
};
use serde_json::{Value, json};

use super::session::{Action, Input, Session, SessionConfig};

const T: UnixMillis = UnixMillis(1_764_000_000_000);

fn fixture(name: &str) -> Value {
    // The checkout the tests run in (cargo sets it at run time too): a test binary built in
    // another clone sharing the target directory still reads this one's files.
    let path = format!(
        "{}/test_data/bambu/{name}",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["message"].clone()
}

struct Harness {
    session: Session,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let mut harness =
            Harness { session: Session::new(SessionConfig::default()), now: Instant::now() };
        let actions = harness.input(Input::Connected);
        assert_eq!(actions.len(), 2, "pushall and get_version on connect: {actions:?}");
        harness
    }

    fn input(&mut self, input: Input<'_>) -> Vec<Action> {
        self.session.handle(self.now, T, input)
    }

    fn report(&mut self, report: Value) -> Vec<Action> {
        self.input(Input::Message(report.to_string().as_bytes()))
    }

    fn events(&mut self, report: Value) -> Vec<PrinterEventKind> {
        self.report(report)
            .into_iter()
            .filter_map(|a| match a {
                Action::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.input(Input::Tick)
    }
}

fn delta(fields: Value) -> Value {
    let mut print = json!({"command": "push_status", "msg": 1, "sequence_id": "2"});
    print.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    json!({ "print": print })
}

#[test]
fn a1_mini_idle_full_report_normalises() {
    let mut harness = Harness::new();
    harness.report(fixture("get_version-a1mini.json"));
    harness.report(fixture("pushall-n1-idle.json"));
    let state = proto::json::printer_state(harness.session.state());
    expect![[r##"
        {
          "active_tray": null,
          "ams": [
            {
              "humidity": null,
              "id": 0,
              "kind": "ams_lite",
              "temp_c": null,
              "trays": [
                {
                  "color": "#DE4343",
                  "material": "PLA",
                  "remain_percent": 0,
                  "slot": 0,
                  "tray_uuid": "518B5E764415402695728F836BEAA8D9"
                },
                {
                  "color": "#918669",
                  "material": "PLA",
                  "remain_percent": 0,
                  "slot": 1,
                  "tray_uuid": "7964EC5A8FA24372B6DBE2370984EE47"
                },
                {
                  "color": "#D6ABFF",
                  "material": "PETG",
                  "remain_percent": 0,
                  "slot": 2,
                  "tray_uuid": "5C9531BD38ED484E98C8B4DED758E82F"
                },
                {
                  "color": "#000000",
                  "material": "PLA",
                  "remain_percent": 0,
                  "slot": 3,
                  "tray_uuid": "1814A28E527F4FEEABA954B75F89DAA5"
                }
              ]
            }
          ],
          "bed_target_c": 0.0,
          "bed_temp_c": 26.53125,
          "chamber_temp_c": null,
          "control": "unknown",
          "door_open": null,
          "external_spool": {
            "color": "#161616",
            "material": "PLA",
            "remain_percent": 0,
            "slot": 0,
            "tray_uuid": null
          },
          "fans": {
            "auxiliary": 0,
            "chamber": 0,
            "heatbreak": 0,
            "part_cooling": 0
          },
          "firmware": "01.07.02.00",
          "hms": [],
          "job_name": null,
          "last_report_at": 1764000000000,
          "layer": 0,
          "lights": {
            "chamber_light": "off"
          },
          "model": "N1",
          "nozzle_target_c": 0.0,
          "nozzle_temp_c": 27.21875,
          "print_error": null,
          "progress_percent": 0,
          "remaining_s": 0,
          "speed_level": "standard",
          "stage": null,
          "state": "idle",
          "total_layers": null
        }"##]]
    .assert_eq(&serde_json::to_string_pretty(&Sorted(&state)).unwrap());
}

/// `value` with every object's keys in order, whatever order serde_json's map keeps: built
/// with the whole workspace, it keeps insertion order (`preserve_order`, which the hub's
/// Qdrant engine turns on), built alone it sorts.
struct Sorted<'a>(&'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let sorted: std::collections::BTreeMap<&String, Sorted<'_>> =
                    map.iter().map(|(k, v)| (k, Sorted(v))).collect();
                sorted.serialize(serializer)
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(Sorted)),
            other => other.serialize(serializer),
        }
    }
}

#[test]
fn a_print_job_yields_its_events_in_order() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    let events = harness.events(delta(json!({"gcode_state": "PREPARE", "stg_cur": 2,
        "subtask_name": "benchy", "total_layer_num": 3, "mc_percent": 0})));
    assert_eq!(
        events,
        [
            PrinterEventKind::StateChanged { from: PrintState::Idle, to: PrintState::Preparing },
            PrinterEventKind::JobStarted { job_name: Some("benchy".into()), total_layers: Some(3) },
        ]
    );
    let events =
        harness.events(delta(json!({"gcode_state": "RUNNING", "stg_cur": 0, "layer_num": 1})));
    assert_eq!(
        events,
        [PrinterEventKind::StateChanged { from: PrintState::Preparing, to: PrintState::Printing }]
    );
    let events = harness.events(delta(json!({"layer_num": 2, "mc_percent": 66})));
    assert_eq!(events, [], "progress is state, not an event");
    assert_eq!(harness.session.state().layer, Some(2));
    let events =
        harness.events(delta(json!({"gcode_state": "FINISH", "layer_num": 3, "mc_percent": 100})));
    assert_eq!(
        events,
        [
            PrinterEventKind::StateChanged { from: PrintState::Printing, to: PrintState::Finished },
            PrinterEventKind::JobFinished {
                job_name: Some("benchy".into()),
                outcome: JobOutcome::Succeeded
            },
        ]
    );
}

#[test]
fn a_failure_carries_its_print_error_and_hms() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    harness
        .report(delta(json!({"gcode_state": "RUNNING", "subtask_name": "cube", "layer_num": 4})));
    let hms = json!([{"attr": 0x0300_0100, "code": 0x0001_0007}]);
    let events = harness
        .events(delta(json!({"gcode_state": "FAILED", "print_error": 0x0300_8003, "hms": hms})));
    let alert = proto::Hms { attr: 0x0300_0100, code: 0x0001_0007 };
    assert_eq!(
        events,
        [
            PrinterEventKind::StateChanged { from: PrintState::Printing, to: PrintState::Failed },
            PrinterEventKind::JobFinished {
                job_name: Some("cube".into()),
                outcome: JobOutcome::Failed { print_error: Some(0x0300_8003), hms: vec![alert] },
            },
            PrinterEventKind::HmsRaised(alert),
            PrinterEventKind::PrintErrorRaised { code: 0x0300_8003 },
        ]
    );
    let state = proto::json::printer_state(harness.session.state());
    assert_eq!(state["print_error"], "0300_8003");
    assert_eq!(
        state["hms"][0],
        json!({"code": "0300_0100_0001_0007", "module": "0x03", "severity": "fatal"})
    );
}

#[test]
fn a_cancel_is_not_a_failure() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    harness.report(delta(json!({"gcode_state": "RUNNING", "subtask_name": "cube"})));
    let events =
        harness.events(delta(json!({"gcode_state": "FAILED", "print_error": 0x0300_400C})));
    assert!(
        events.contains(&PrinterEventKind::JobFinished {
            job_name: Some("cube".into()),
            outcome: JobOutcome::Cancelled
        }),
        "{events:?}"
    );
}

#[test]
fn a_runout_pause_names_its_reason_and_resume_follows() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    harness.report(delta(json!({"gcode_state": "RUNNING", "subtask_name": "cube"})));
    let events = harness.events(delta(json!({"gcode_state": "PAUSE", "stg_cur": 6})));
    assert!(events.contains(&PrinterEventKind::JobPaused { reason: Some(6) }), "{events:?}");
    assert_eq!(proto::json::stage_name(6), "paused: filament runout");
    let events = harness.events(delta(json!({"gcode_state": "RUNNING", "stg_cur": 0})));
    assert!(events.contains(&PrinterEventKind::JobResumed), "{events:?}");
}

#[test]
fn commands_are_acknowledged_by_sequence_id() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    let actions = harness.input(Input::Submit { ticket: 7, action: CommandAction::Pause });
    let [Action::Publish(request)] = actions.as_slice() else { panic!("{actions:?}") };
    assert_eq!(request["print"]["command"], "pause");
    let sequence_id = request["print"]["sequence_id"].as_str().unwrap().to_owned();
    let ack = json!({"print": {"command": "pause", "sequence_id": sequence_id, "result": "success", "param": ""}});
    let actions = harness.report(ack);
    assert!(
        actions.contains(&Action::CommandDone { ticket: 7, outcome: CommandOutcome::Succeeded }),
        "{actions:?}"
    );
    assert_eq!(harness.session.state().control, ControlCapability::Available);
}

#[test]
fn an_authorization_refusal_makes_the_printer_read_only() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    let actions = harness.input(Input::Submit { ticket: 1, action: CommandAction::Stop });
    let [Action::Publish(request)] = actions.as_slice() else { panic!("{actions:?}") };
    let sequence_id = request["print"]["sequence_id"].clone();
    let ack = json!({"print": {"command": "stop", "sequence_id": sequence_id, "result": "failed", "err_code": 84033543}});
    let actions = harness.report(ack);
    assert!(
        actions.contains(&Action::CommandDone { ticket: 1, outcome: CommandOutcome::ReadOnly }),
        "{actions:?}"
    );
    assert!(actions.contains(&Action::Event(PrinterEventKind::ControlChanged {
        from: ControlCapability::Unknown,
        to: ControlCapability::ReadOnly,
    })));
}

#[test]
fn the_authorization_hms_alone_also_means_read_only() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    harness.report(delta(json!({"hms": [{"attr": 0x0500_0500, "code": 0x0001_0007}]})));
    assert_eq!(harness.session.state().control, ControlCapability::ReadOnly);
}

#[test]
fn two_missed_acknowledgements_force_a_reconnect() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    harness.input(Input::Submit { ticket: 1, action: CommandAction::Pause });
    let actions = harness.advance(Duration::from_secs(10));
    assert_eq!(actions, [Action::CommandDone { ticket: 1, outcome: CommandOutcome::TimedOut }]);
    harness.report(delta(json!({"wifi_signal": "-50dBm"})));
    harness.input(Input::Submit { ticket: 2, action: CommandAction::Resume });
    let actions = harness.advance(Duration::from_secs(10));
    assert!(
        actions.contains(&Action::CommandDone { ticket: 2, outcome: CommandOutcome::TimedOut })
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Reconnect { .. })), "{actions:?}");
}

#[test]
fn silence_marks_the_printer_unreachable_once_and_reconnects() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    assert!(harness.advance(Duration::from_secs(29)).is_empty());
    let actions = harness.advance(Duration::from_secs(1));
    assert!(
        actions.contains(&Action::Event(PrinterEventKind::Unreachable {
            reason: "no report for 30 s".into()
        })),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Reconnect { .. })));
    assert_eq!(harness.session.state().state, PrintState::Offline);
    assert!(!harness.advance(Duration::from_secs(1)).iter().any(|a| matches!(a, Action::Event(_))));
    // The next report brings it back.
    harness.input(Input::Connected);
    let events = harness.events(fixture("pushall-n1-idle.json"));
    assert_eq!(events[0], PrinterEventKind::Reachable);
}

#[test]
fn the_new_device_block_with_packed_temperatures_is_read() {
    let mut harness = Harness::new();
    harness.report(json!({"print": {"command": "push_status", "msg": 0, "gcode_state": "IDLE",
    "nozzle_temper": 1.0,
    "device": {
        "bed": {"info": {"temp": 0x0064_0064}},
        "ctc": {"info": {"temp": 35}},
        "extruder": {"state": 0x12, "info": [
            {"id": 0, "temp": 0x00DC_00D2, "snow": 0xFFFF},
            {"id": 1, "temp": 0x00FA_00C8, "snow": 0x0102}]}
    }}}));
    let state = harness.session.state();
    assert_eq!((state.bed_temp_c, state.bed_target_c), (Some(100.0), Some(100.0)));
    assert_eq!(
        (state.nozzle_temp_c, state.nozzle_target_c),
        (Some(200.0), Some(250.0)),
        "active extruder 1"
    );
    assert_eq!(state.chamber_temp_c, Some(35.0));
    assert_eq!(state.active_tray, Some(proto::TrayRef::Ams { unit: 1, slot: 2 }));
}

#[test]
fn malformed_reports_are_rejected_and_the_session_goes_on() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    for bad in [&b"{not json"[..], b"42", br#"{"print": "x"}"#] {
        let actions = harness.input(Input::Message(bad));
        assert!(matches!(actions.as_slice(), [Action::Rejected(_)]), "{actions:?}");
    }
    // Numbers as strings and unexpected types are normalised or ignored, never a panic.
    harness.report(delta(
        json!({"mc_percent": "55", "layer_num": "x", "bed_temper": [1], "hms": "oops"}),
    ));
    assert_eq!(harness.session.state().progress_percent, Some(55));
    assert_eq!(harness.session.state().layer, None);
}

#[test]
fn an_unknown_model_is_named_once_and_its_state_still_shown() {
    let mut harness = Harness::new();
    let version = json!({"info": {"command": "get_version", "sequence_id": "1", "module": [
        {"name": "ota", "product_name": "Bambu Lab Z9 Ultra", "sw_ver": "09.00.00.01"}]}});
    harness.report(version);
    let mut pushall = fixture("pushall-n1-idle.json");
    pushall["print"]["home_flag"] = json!(0x0080_0000);
    pushall["print"]["chamber_temper"] = json!(31.0);
    let actions = harness.report(pushall.clone());
    let named: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::UnknownModel(model) => Some(model.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(named, ["Bambu Lab Z9 Ultra"], "{actions:?}");
    let state = harness.session.state();
    assert_eq!(state.model.as_deref(), Some("Bambu Lab Z9 Ultra"));
    assert_eq!(state.firmware.as_deref(), Some("09.00.00.01"));
    assert_eq!(state.state, PrintState::Idle);
    assert!(!state.ams.is_empty());
    // Readings whose meaning depends on the hardware are left unknown, not guessed.
    assert_eq!((state.door_open, state.chamber_temp_c), (None, None));
    // Said once, not on every report.
    pushall["print"]["mc_percent"] = json!(3);
    let again = harness.report(pushall);
    assert!(!again.iter().any(|a| matches!(a, Action::UnknownModel(_))), "{again:?}");
}

#[test]
fn the_nozzle_the_printer_reports_is_said_when_it_changes() {
    let nozzle = |actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::Nozzle(micrometres) => Some(*micrometres),
            _ => None,
        })
    };
    let mut harness = Harness::new();
    let mut pushall = fixture("pushall-n1-idle.json");
    pushall["print"]["nozzle_diameter"] = json!("0.4");
    assert_eq!(nozzle(&harness.report(pushall.clone())), Some(Some(400)));
    pushall["print"]["mc_percent"] = json!(1);
    assert_eq!(nozzle(&harness.report(pushall.clone())), None, "said once");
    assert_eq!(nozzle(&harness.report(delta(json!({"nozzle_diameter": "0.6"})))), Some(Some(600)));
    assert_eq!(nozzle(&harness.report(delta(json!({"nozzle_diameter": "wide"})))), Some(None));
}

/// A session that knows `job` in progress from before a restart, connected.
fn resumed(job: &str) -> Harness {
    let config = SessionConfig {
        resume: Some(crate::printer::events::ResumedJob { name: Some(job.into()) }),
        ..SessionConfig::default()
    };
    let mut harness = Harness { session: Session::new(config), now: Instant::now() };
    harness.input(Input::Connected);
    harness
}

/// The A1 mini's full report with `fields` changed.
fn full_with(fields: Value) -> Value {
    let mut report = fixture("pushall-n1-idle.json");
    report["print"].as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    report
}

fn job_events(events: &[PrinterEventKind]) -> Vec<&PrinterEventKind> {
    events
        .iter()
        .filter(|e| {
            matches!(e, PrinterEventKind::JobStarted { .. } | PrinterEventKind::JobFinished { .. })
        })
        .collect()
}

#[test]
fn a_restart_mid_print_goes_on_with_the_job_it_knew() {
    let mut harness = resumed("benchy");
    let events = harness.events(full_with(json!({"gcode_state": "RUNNING",
        "subtask_name": "benchy", "total_layer_num": 3, "layer_num": 2, "mc_percent": 60})));
    assert_eq!(job_events(&events), Vec::<&PrinterEventKind>::new(), "announced again: {events:?}");
    let events =
        harness.events(delta(json!({"gcode_state": "FINISH", "layer_num": 3, "mc_percent": 100})));
    assert_eq!(
        job_events(&events),
        [&PrinterEventKind::JobFinished {
            job_name: Some("benchy".into()),
            outcome: JobOutcome::Succeeded
        }]
    );
}

#[test]
fn a_job_that_ended_while_the_agent_was_down_ends_with_the_printers_outcome() {
    let mut harness = resumed("benchy");
    let events = harness.events(full_with(json!({"gcode_state": "FINISH",
        "subtask_name": "benchy", "mc_percent": 100})));
    assert_eq!(
        job_events(&events),
        [&PrinterEventKind::JobFinished {
            job_name: Some("benchy".into()),
            outcome: JobOutcome::Succeeded
        }]
    );
    let mut harness = resumed("benchy");
    let events = harness.events(full_with(json!({"gcode_state": "FAILED",
        "subtask_name": "benchy", "print_error": 0x0300_8003})));
    assert!(
        matches!(
            job_events(&events)[..],
            [PrinterEventKind::JobFinished {
                outcome: JobOutcome::Failed { print_error: Some(0x0300_8003), .. },
                ..
            }]
        ),
        "{events:?}"
    );
    // Another job ran and ended since: the resumed one ended unseen, its outcome unknown;
    // the other, never seen running, is not announced.
    let mut harness = resumed("benchy");
    let events = harness.events(full_with(json!({"gcode_state": "FINISH",
        "subtask_name": "gear", "mc_percent": 100})));
    assert_eq!(
        job_events(&events),
        [&PrinterEventKind::JobFinished {
            job_name: Some("benchy".into()),
            outcome: JobOutcome::Failed { print_error: None, hms: Vec::new() }
        }]
    );
}

#[test]
fn a_tagged_spool_is_said_once_with_what_its_tag_says() {
    let mut harness = Harness::new();
    harness.report(fixture("pushall-n1-idle.json"));
    let tags = |events: Vec<PrinterEventKind>| -> Vec<proto::SpoolTag> {
        events
            .into_iter()
            .filter_map(|e| match e {
                PrinterEventKind::SpoolTagged(tag) => Some(tag),
                _ => None,
            })
            .collect()
    };
    let tagged = harness.events(delta(json!({"ams": {"ams": [{"id": "0", "tray": [{
        "id": "1", "tray_uuid": "0B1C2D3E4F5061728394A5B6C7D8E9F0", "tray_sub_brands": "PLA Basic",
        "tray_type": "PLA", "tray_color": "000000FF", "tray_weight": "1000",
        "tray_diameter": "1.75", "remain": 42}]}]}})));
    assert_eq!(
        tags(tagged),
        [proto::SpoolTag {
            unit: Some(0),
            slot: 1,
            tray_uuid: "0B1C2D3E4F5061728394A5B6C7D8E9F0".into(),
            product: Some("PLA Basic".into()),
            material: Some("PLA".into()),
            color: Some(proto::Rgb([0, 0, 0])),
            weight_g: Some(1000),
            diameter_um: Some(1750),
            remain_percent: Some(42),
        }]
    );
    // The same spool printing on: not said again.
    let later = harness.events(delta(json!({"ams": {"ams": [{"id": "0", "tray": [{
        "id": "1", "remain": 41}]}]}})));
    assert_eq!(tags(later), []);
}
