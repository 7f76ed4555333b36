use serde_json::json;

use super::*;

fn settings(model: Model) -> PrinterSettings {
    PrinterSettings {
        serial: "0309DA000000001".parse().unwrap(),
        model,
        report_style: model.default_report_style(),
        layer_interval: Duration::from_secs(30),
        project_file_layers: 5,
        card: None,
        trays: None,
        loop_jobs: false,
    }
}

fn a1_mini() -> Printer {
    Printer::new(settings(Model::A1Mini), &[])
}

/// Steps until `done` holds for the printer, at most `limit` steps.
fn step_until(printer: &mut Printer, limit: usize, done: impl Fn(&Printer) -> bool) {
    for _ in 0..limit {
        if done(printer) {
            return;
        }
        printer.step();
    }
    assert!(done(printer), "condition not reached in {limit} steps");
}

fn print_field(printer: &Printer, key: &str) -> Value {
    printer.snapshot()["print"][key].clone()
}

fn request(category: &str, command: &str, extra: Value) -> Value {
    let mut body = json!({ "sequence_id": "42", "command": command });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    json!({ category: body })
}

fn reply(outgoing: Vec<Outgoing>) -> Value {
    match outgoing.as_slice() {
        [Outgoing::Reply(reply)] => reply.clone(),
        other => panic!("expected one reply, got {other:?}"),
    }
}

#[test]
fn idle_delta_reports_carry_only_the_envelope_and_wifi_signal() {
    let mut printer = a1_mini();
    let first = printer.report().unwrap();
    assert_eq!(
        first,
        json!({"print": {"command": "push_status", "msg": 1, "sequence_id": "1", "wifi_signal": "-45dBm"}})
    );
    let second = printer.report().unwrap();
    assert_eq!(second["print"]["sequence_id"], "2");
}

#[test]
fn pushall_yields_a_full_report_shaped_like_a_real_a1_mini() {
    let mut printer = a1_mini();
    let outgoing = printer.handle_request(&request("pushing", "pushall", json!({})));
    let [Outgoing::Report(report)] = outgoing.as_slice() else { panic!("{outgoing:?}") };
    let print = &report["print"];
    assert_eq!(print["msg"], 0);
    assert_eq!(print["command"], "push_status");
    assert_eq!(print["sequence_id"], "1", "the printer's own counter, not the request's");
    assert_eq!(print["gcode_state"], "IDLE");
    assert_eq!(print["cooling_fan_speed"], "0");
    assert_eq!(print["ams"]["tray_now"], "255");
    assert_eq!(print["ams"]["ams"][0]["tray"].as_array().unwrap().len(), 4);
    assert_eq!(print["lights_report"], json!([{"node": "chamber_light", "mode": "off"}]));

    // Every top-level key of a real A1 mini pushall (shared/fixtures/bambu) is present,
    // with the same JSON type.
    let real_types = [
        ("ams", "object"),
        ("ams_rfid_status", "number"),
        ("ams_status", "number"),
        ("bed_target_temper", "number"),
        ("bed_temper", "number"),
        ("big_fan1_speed", "string"),
        ("big_fan2_speed", "string"),
        ("cali_version", "number"),
        ("chamber_temper", "number"),
        ("command", "string"),
        ("cooling_fan_speed", "string"),
        ("fan_gear", "number"),
        ("filam_bak", "array"),
        ("flag3", "skip"),
        ("force_upgrade", "bool"),
        ("gcode_file", "string"),
        ("gcode_file_prepare_percent", "string"),
        ("gcode_state", "string"),
        ("heatbreak_fan_speed", "string"),
        ("hms", "array"),
        ("home_flag", "number"),
        ("hw_switch_state", "number"),
        ("ipcam", "object"),
        ("k", "string"),
        ("layer_num", "number"),
        ("lifecycle", "string"),
        ("lights_report", "array"),
        ("mc_percent", "number"),
        ("mc_print_line_number", "string"),
        ("mc_print_stage", "string"),
        ("mc_print_sub_stage", "number"),
        ("mc_remaining_time", "number"),
        ("mess_production_state", "string"),
        ("msg", "number"),
        ("net", "object"),
        ("nozzle_diameter", "string"),
        ("nozzle_target_temper", "number"),
        ("nozzle_temper", "number"),
        ("nozzle_type", "string"),
        ("online", "object"),
        ("print_error", "number"),
        ("print_type", "string"),
        ("profile_id", "string"),
        ("project_id", "string"),
        ("queue_est", "number"),
        ("queue_number", "number"),
        ("queue_sts", "number"),
        ("queue_total", "number"),
        ("s_obj", "array"),
        ("sdcard", "bool"),
        ("sequence_id", "string"),
        ("spd_lvl", "number"),
        ("spd_mag", "number"),
        ("stg", "array"),
        ("stg_cur", "number"),
        ("subtask_id", "string"),
        ("subtask_name", "string"),
        ("task_id", "string"),
        ("total_layer_num", "number"),
        ("upgrade_state", "object"),
        ("upload", "object"),
        ("vt_tray", "object"),
        ("wifi_signal", "string"),
        ("xcam", "object"),
    ];
    for (key, expected) in real_types {
        let actual = match &print[key] {
            Value::Null => "missing",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert!(expected == "skip" || actual == expected, "{key}: {actual}, expected {expected}");
    }
}

#[test]
fn deltas_after_pushall_carry_only_changed_fields() {
    let mut printer = a1_mini();
    printer.handle_request(&request("pushing", "pushall", json!({})));
    printer.start_job(JobSpec { name: "cube".into(), layers: 3 }, DEFAULT_GCODE_FILE).unwrap();
    let delta = printer.report().unwrap();
    let print = &delta["print"];
    assert_eq!(print["msg"], 1);
    assert_eq!(print["gcode_state"], "PREPARE");
    assert_eq!(print["subtask_name"], "cube");
    assert_eq!(print["stg_cur"], 2);
    assert_eq!(print["ams"], json!({"tray_now": "0"}), "nested objects carry changed keys only");
    assert!(print.get("ipcam").is_none());
    assert!(print.get("vt_tray").is_none());
}

#[test]
fn a_job_prepares_then_prints_layer_by_layer_then_finishes() {
    let mut printer = a1_mini();
    printer.start_job(JobSpec { name: "benchy".into(), layers: 4 }, DEFAULT_GCODE_FILE).unwrap();
    let mut stages = vec![print_field(&printer, "stg_cur")];
    while printer.gcode_state() == GcodeState::Prepare {
        printer.step();
        stages.push(print_field(&printer, "stg_cur"));
    }
    assert_eq!(stages, [json!(2), json!(1), json!(7), json!(0)]);
    let mut layers = Vec::new();
    while printer.gcode_state() == GcodeState::Running {
        layers.push(print_field(&printer, "layer_num").as_u64().unwrap());
        printer.step();
    }
    assert_eq!(layers, [0, 1, 2, 3, 4]);
    assert_eq!(printer.gcode_state(), GcodeState::Finish);
    let snapshot = printer.snapshot();
    assert_eq!(snapshot["print"]["mc_percent"], 100);
    assert_eq!(snapshot["print"]["mc_remaining_time"], 0);
    assert_eq!(snapshot["print"]["nozzle_target_temper"], 0);
    assert_eq!(snapshot["print"]["total_layer_num"], 4);
}

#[test]
fn remaining_time_is_in_minutes_and_heaters_reach_their_targets() {
    let mut printer = a1_mini();
    printer.start_job(JobSpec { name: "long".into(), layers: 10 }, DEFAULT_GCODE_FILE).unwrap();
    // 10 layers × 30 s = 5 minutes.
    assert_eq!(print_field(&printer, "mc_remaining_time"), 5);
    step_until(&mut printer, 20, |p| print_field(p, "nozzle_temper") == json!(220.0));
    assert_eq!(print_field(&printer, "bed_temper"), json!(55.0));
    assert_eq!(print_field(&printer, "heatbreak_fan_speed"), "15");
}

#[test]
fn pause_and_resume_are_acked_with_the_echoed_sequence_id() {
    let mut printer = a1_mini();
    let refused = reply(printer.handle_request(&request("print", "pause", json!({"param": ""}))));
    assert_eq!(refused["print"]["result"], "failed");

    printer.start_job(JobSpec { name: "cube".into(), layers: 5 }, DEFAULT_GCODE_FILE).unwrap();
    step_until(&mut printer, 10, |p| p.gcode_state() == GcodeState::Running);
    let ack = reply(printer.handle_request(&request("print", "pause", json!({"param": ""}))));
    assert_eq!(
        ack,
        json!({"print": {"command": "pause", "param": "", "sequence_id": "42", "result": "success"}})
    );
    assert_eq!(printer.gcode_state(), GcodeState::Pause);
    assert_eq!(print_field(&printer, "stg_cur"), STAGE_PAUSED_BY_USER);
    let layer = print_field(&printer, "layer_num");
    printer.step();
    assert_eq!(print_field(&printer, "layer_num"), layer, "a paused job does not advance");

    let ack = reply(printer.handle_request(&request("print", "resume", json!({"param": ""}))));
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(printer.gcode_state(), GcodeState::Running);
    assert_eq!(print_field(&printer, "stg_cur"), 0);
}

#[test]
fn stop_fails_the_job_and_reports_the_cancel_code_once() {
    let mut printer = a1_mini();
    printer.start_job(JobSpec { name: "cube".into(), layers: 5 }, DEFAULT_GCODE_FILE).unwrap();
    printer.report();
    let ack = reply(printer.handle_request(&request("print", "stop", json!({"param": ""}))));
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(printer.gcode_state(), GcodeState::Failed);
    let first = printer.report().unwrap();
    assert_eq!(first["print"]["gcode_state"], "FAILED");
    assert_eq!(first["print"]["print_error"], 50_348_044);
    let second = printer.report().unwrap();
    assert_eq!(second["print"]["print_error"], 0);
    assert_eq!(print_field(&printer, "gcode_state"), "FAILED", "FAILED persists");
}

#[test]
fn fail_at_layer_raises_hms_and_print_error() {
    let hms = Hms { attr: 0x0300_0100, code: 0x0001_0007 };
    let fault = Fault::FailAtLayer { layer: 2, hms, print_error: 0x0300_8001 };
    let mut printer = Printer::new(settings(Model::P1S), &[fault]);
    printer.start_job(JobSpec { name: "cube".into(), layers: 5 }, DEFAULT_GCODE_FILE).unwrap();
    step_until(&mut printer, 20, |p| p.gcode_state() == GcodeState::Failed);
    let print = printer.snapshot()["print"].clone();
    assert_eq!(print["layer_num"], 2);
    assert_eq!(print["hms"], json!([{"attr": 0x0300_0100, "code": 0x0001_0007}]));
    assert_eq!(print["print_error"], 0x0300_8001);
    assert_eq!(print["stg_cur"], 255, "P1 idle stage");
    printer.report();
    assert_eq!(print_field(&printer, "print_error"), 0x0300_8001, "not transient");
}

#[test]
fn runout_pauses_at_the_layer_until_resumed() {
    let fault = Fault::RunoutAtLayer { layer: 2 };
    let mut printer = Printer::new(settings(Model::X1C), &[fault]);
    printer.start_job(JobSpec { name: "cube".into(), layers: 3 }, DEFAULT_GCODE_FILE).unwrap();
    step_until(&mut printer, 20, |p| p.gcode_state() == GcodeState::Pause);
    assert_eq!(print_field(&printer, "layer_num"), 2);
    assert_eq!(print_field(&printer, "stg_cur"), STAGE_FILAMENT_RUNOUT);
    assert_eq!(print_field(&printer, "hms"), json!([{"attr": 0x0700_2000, "code": 0x0002_0001}]));
    printer.handle_request(&request("print", "resume", json!({})));
    assert_eq!(print_field(&printer, "hms"), json!([]));
    step_until(&mut printer, 20, |p| p.gcode_state() == GcodeState::Finish);
}

#[test]
fn refusing_control_fails_commands_with_err_code_but_serves_reads() {
    let mut printer = Printer::new(settings(Model::X1C), &[Fault::RefuseControl]);
    assert_eq!(print_field(&printer, "fun"), "3EC1AFFF9CFF", "signature-required bit set");
    let ack = reply(printer.handle_request(&request("print", "pause", json!({"param": ""}))));
    assert_eq!(ack["print"]["result"], "failed");
    assert_eq!(ack["print"]["err_code"], 84_033_543);
    assert_eq!(print_field(&printer, "hms"), json!([{"attr": 0x0500_0500, "code": 0x0001_0007}]));
    let full = printer.handle_request(&request("pushing", "pushall", json!({})));
    assert!(matches!(full.as_slice(), [Outgoing::Report(_)]));
    let version = reply(printer.handle_request(&request("info", "get_version", json!({}))));
    assert_eq!(version["info"]["module"][0]["product_name"], "Bambu Lab X1 Carbon");

    printer.clear_fault(FaultKind::RefuseControl);
    assert_eq!(print_field(&printer, "hms"), json!([]));
    let ack = reply(printer.handle_request(&request(
        "system",
        "ledctrl",
        json!({"led_node": "chamber_light", "led_mode": "on"}),
    )));
    assert_eq!(ack["system"]["result"], "success");
}

#[test]
fn a_silent_printer_ignores_requests_and_reports_nothing() {
    let mut printer = Printer::new(settings(Model::A1Mini), &[Fault::Silent]);
    assert!(printer.handle_request(&request("pushing", "pushall", json!({}))).is_empty());
    assert!(printer.report().is_none());
    printer.clear_fault(FaultKind::Silent);
    assert!(printer.report().is_some());
}

#[test]
fn get_version_echoes_the_sequence_id_and_names_the_product() {
    let mut printer = a1_mini();
    let version = reply(printer.handle_request(&request("info", "get_version", json!({}))));
    let info = &version["info"];
    assert_eq!(info["command"], "get_version");
    assert_eq!(info["sequence_id"], "42");
    assert_eq!(info["module"][0]["name"], "ota");
    assert_eq!(info["module"][0]["product_name"], "Bambu Lab A1 mini");
    assert_eq!(info["module"][0]["sw_ver"], "01.07.02.00");
}

#[test]
fn commands_change_speed_lights_and_heaters_and_unknown_ones_fail() {
    let mut printer = a1_mini();
    let ack =
        reply(printer.handle_request(&request("print", "print_speed", json!({"param": "3"}))));
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(print_field(&printer, "spd_lvl"), 3);
    let ack =
        reply(printer.handle_request(&request("print", "print_speed", json!({"param": "9"}))));
    assert_eq!(ack["print"]["result"], "failed");

    let body = json!({"led_node": "chamber_light", "led_mode": "on", "led_on_time": 500});
    let ack = reply(printer.handle_request(&request("system", "ledctrl", body)));
    assert_eq!(ack["system"]["result"], "success");
    assert_eq!(ack["system"]["led_on_time"], 500, "original fields are echoed");
    assert_eq!(
        print_field(&printer, "lights_report"),
        json!([{"node": "chamber_light", "mode": "on"}])
    );

    let gcode = json!({"param": "M104 S200\nM140 S60 ; bed\nM106 P1 S255\n\u{00e9}S1 G28\n"});
    let ack = reply(printer.handle_request(&request("print", "gcode_line", gcode)));
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(print_field(&printer, "nozzle_target_temper"), 200);
    assert_eq!(print_field(&printer, "bed_target_temper"), 60);
    assert_eq!(print_field(&printer, "cooling_fan_speed"), "15");

    let ack = reply(printer.handle_request(&request("print", "skip_objects", json!({}))));
    assert_eq!(ack["print"]["result"], "failed");
    let ack = reply(printer.handle_request(&request("camera", "ipcam_record_set", json!({}))));
    assert_eq!(ack["camera"]["result"], "failed");
}

#[test]
fn project_file_starts_a_job_only_when_not_busy() {
    let mut printer = a1_mini();
    let body = json!({"param": "Metadata/plate_2.gcode", "url": "ftp:///model/cube.gcode.3mf", "subtask_name": "cube"});
    let ack = reply(printer.handle_request(&request("print", "project_file", body.clone())));
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(print_field(&printer, "subtask_name"), "cube");
    assert_eq!(print_field(&printer, "gcode_file"), "Metadata/plate_2.gcode");
    assert_eq!(print_field(&printer, "total_layer_num"), 5);
    let ack = reply(printer.handle_request(&request("print", "project_file", body)));
    assert_eq!(ack["print"]["result"], "failed");
    assert_eq!(ack["print"]["reason"], "printer is busy (PREPARE)");
}

#[test]
fn full_style_reports_are_full_every_time() {
    let mut printer = Printer::new(settings(Model::X1C), &[]);
    for sequence in 1..=2 {
        let report = printer.report().unwrap();
        assert_eq!(report["print"]["msg"], 0);
        assert_eq!(report["print"]["stg_cur"], -1, "X1 idle stage");
        assert_eq!(report["print"]["sequence_id"], sequence.to_string());
    }
}

#[test]
fn looping_starts_the_next_job_after_one_ends() {
    let mut looping = settings(Model::A1Mini);
    looping.loop_jobs = true;
    let mut printer = Printer::new(looping, &[]);
    printer.start_job(JobSpec { name: "demo".into(), layers: 1 }, DEFAULT_GCODE_FILE).unwrap();
    step_until(&mut printer, 20, |p| p.gcode_state() == GcodeState::Finish);
    step_until(&mut printer, 20, |p| p.gcode_state() == GcodeState::Prepare);
    assert_eq!(print_field(&printer, "subtask_name"), "demo #2");
}

#[test]
fn malformed_requests_are_ignored() {
    let mut printer = a1_mini();
    assert!(printer.handle_request(&json!([1, 2])).is_empty());
    assert!(printer.handle_request(&json!({"print": "pause"})).is_empty());
    let ack = reply(printer.handle_request(&json!({"print": {"command": 7}})));
    assert_eq!(ack["print"]["result"], "failed");
}
