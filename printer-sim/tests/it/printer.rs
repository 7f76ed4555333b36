//! The simulated printer seen through MQTT: reports, jobs, commands, faults, replay.

use printer_sim::{Fault, FaultKind, Hms, Model, PublishedKind, Replay, SimEvent, Simulator};
use rumqttc::mqttbytes::QoS;
use serde_json::{Map, Value, json};

use crate::support::{MqttClient, WAIT, fast_config, merge};

fn pushall(sequence_id: &str) -> Value {
    json!({"pushing": {"sequence_id": sequence_id, "command": "pushall", "version": 1, "push_target": 1}})
}

#[tokio::test]
async fn pushall_yields_a_full_report() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let delta = client.next_message().await;
    assert_eq!(delta["print"]["msg"], 1, "P1/A1 push deltas until asked");
    client.request(&sim, &pushall("0"), QoS::AtMostOnce).await;
    let full = client.wait_message(|m| m["print"]["msg"] == 0).await;
    let print = &full["print"];
    assert_eq!(print["command"], "push_status");
    assert_eq!(print["gcode_state"], "IDLE");
    assert!(print["sequence_id"].is_string());
    assert_ne!(print["sequence_id"], "0", "the printer's own counter, not an echo");
    assert_eq!(print["ams"]["ams"][0]["tray"][0]["tray_color"].as_str().unwrap().len(), 8);
    assert_eq!(print["big_fan1_speed"], "0");
    sim.shutdown().await;
}

#[tokio::test]
async fn get_version_names_the_product() {
    let sim = Simulator::start(fast_config(Model::P1S)).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let request = json!({"info": {"sequence_id": "20", "command": "get_version"}});
    client.request(&sim, &request, QoS::AtMostOnce).await;
    let reply = client.wait_message(|m| m.get("info").is_some()).await;
    assert_eq!(reply["info"]["sequence_id"], "20");
    assert_eq!(reply["info"]["module"][0]["product_name"], "Bambu Lab P1S");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_job_runs_to_finish_with_increasing_layers() {
    let mut config = fast_config(Model::A1Mini);
    let ftps = config.ftps.get_or_insert_with(Default::default);
    ftps.card_files.push(("/cube.gcode.3mf".into(), 0));
    let sim = Simulator::start(config).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let start = json!({"print": {
        "sequence_id": "7", "command": "project_file", "param": "Metadata/plate_1.gcode",
        "url": "ftp:///cube.gcode.3mf", "subtask_name": "cube", "use_ams": true,
        "ams_mapping": [0], "md5": "", "timelapse": false, "bed_leveling": true
    }});
    client.request(&sim, &start, QoS::AtLeastOnce).await;
    let ack = client.wait_message(|m| m["print"]["result"].is_string()).await;
    assert_eq!(ack["print"]["result"], "success");
    assert_eq!(ack["print"]["sequence_id"], "7");

    let mut state = Map::new();
    let mut states = Vec::new();
    let mut layers = Vec::new();
    while state.get("gcode_state") != Some(&json!("FINISH")) {
        let report = client.next_message().await;
        merge(&mut state, &report);
        if let Some(gcode_state) = state.get("gcode_state")
            && states.last() != Some(gcode_state)
        {
            states.push(gcode_state.clone());
        }
        if let Some(layer) = report["print"]["layer_num"].as_u64() {
            layers.push(layer);
        }
    }
    assert_eq!(states, [json!("PREPARE"), json!("RUNNING"), json!("FINISH")]);
    assert!(layers.windows(2).all(|pair| pair[0] < pair[1]), "layers increase: {layers:?}");
    assert_eq!(state["layer_num"], 20);
    assert_eq!(state["total_layer_num"], 20);
    assert_eq!(state["mc_percent"], 100);
    assert_eq!(state["subtask_name"], "cube");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_project_file_not_on_the_card_is_refused_as_a_printer_does() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let start = json!({"print": {
        "sequence_id": "8", "command": "project_file", "param": "Metadata/plate_1.gcode",
        "url": "ftp:///never-uploaded.gcode.3mf", "subtask_name": "ghost", "md5": "",
        "use_ams": false, "timelapse": false, "bed_leveling": true
    }});
    client.request(&sim, &start, QoS::AtLeastOnce).await;
    let ack = client.wait_message(|m| m["print"]["result"].is_string()).await;
    assert_eq!(ack["print"]["result"], "failed");
    let reason = ack["print"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("never-uploaded.gcode.3mf"), "{reason}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pause_request_is_acked_with_its_sequence_id_and_the_printer_pauses() {
    let mut config = fast_config(Model::P1S);
    config.layer_interval = std::time::Duration::from_millis(50);
    let sim = Simulator::start(config).await.unwrap();
    let mut events = sim.events();
    sim.start_job("benchy", 1000).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let pause = json!({"print": {"sequence_id": "1234", "command": "pause", "param": ""}});
    client.request(&sim, &pause, QoS::AtLeastOnce).await;

    let received = events.wait_for_request(WAIT, "print", "pause").await.unwrap();
    assert_eq!(received, pause);
    let ack = client.wait_message(|m| m["print"]["result"].is_string()).await;
    assert_eq!(
        ack,
        json!({"print": {"sequence_id": "1234", "command": "pause", "param": "", "result": "success"}})
    );
    let paused = client.wait_message(|m| m["print"]["gcode_state"] == "PAUSE").await;
    assert_eq!(paused["print"]["stg_cur"], 16);
    sim.shutdown().await;
}

#[tokio::test]
async fn stop_reports_failed_with_the_cancel_code_once() {
    let sim = Simulator::start(fast_config(Model::X1C)).await.unwrap();
    sim.start_job("benchy", 1000).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let stop = json!({"print": {"sequence_id": "9", "command": "stop", "param": ""}});
    client.request(&sim, &stop, QoS::AtLeastOnce).await;
    let failed = client.wait_message(|m| m["print"]["gcode_state"] == "FAILED").await;
    assert_eq!(failed["print"]["print_error"], 50_348_044);
    let next = client.wait_message(|m| m["print"]["command"] == "push_status").await;
    assert_eq!(next["print"]["print_error"], 0, "the cancel code is transient");
    assert_eq!(next["print"]["gcode_state"], "FAILED", "FAILED persists");
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_at_layer_reports_failed_with_hms_and_print_error() {
    let mut config = fast_config(Model::A1Mini);
    let hms: Hms = "0300_0100_0001_0007".parse().unwrap();
    config.faults.push(Fault::FailAtLayer { layer: 3, hms, print_error: 0x0300_8001 });
    let sim = Simulator::start(config).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    sim.start_job("doomed", 10).await.unwrap();
    let failed = client.wait_message(|m| m["print"]["gcode_state"] == "FAILED").await;
    let print = &failed["print"];
    assert_eq!(print["hms"], json!([{"attr": 0x0300_0100_u32, "code": 0x0001_0007}]));
    assert_eq!(print["print_error"], 0x0300_8001);
    assert_eq!(print["layer_num"], 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn runout_set_at_run_time_pauses_with_stage_6_until_resumed() {
    let sim = Simulator::start(fast_config(Model::P1S)).await.unwrap();
    sim.set_fault(Fault::RunoutAtLayer { layer: 2 }).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    sim.start_job("runout", 5).await.unwrap();
    let paused = client.wait_message(|m| m["print"]["gcode_state"] == "PAUSE").await;
    assert_eq!(paused["print"]["stg_cur"], 6);
    assert_eq!(paused["print"]["hms"], json!([{"attr": 0x0700_2000, "code": 0x0002_0001}]));
    let resume = json!({"print": {"sequence_id": "3", "command": "resume", "param": ""}});
    client.request(&sim, &resume, QoS::AtLeastOnce).await;
    client.wait_message(|m| m["print"]["gcode_state"] == "FINISH").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_control_answers_err_code_84033543_and_raises_the_hms() {
    let mut config = fast_config(Model::A1Mini);
    config.faults.push(Fault::RefuseControl);
    let sim = Simulator::start(config).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let pause = json!({"print": {"sequence_id": "11", "command": "pause", "param": ""}});
    client.request(&sim, &pause, QoS::AtLeastOnce).await;
    let ack = client.wait_message(|m| m["print"]["result"].is_string()).await;
    assert_eq!(ack["print"]["result"], "failed");
    assert_eq!(ack["print"]["err_code"], 84_033_543);
    assert_eq!(ack["print"]["sequence_id"], "11");
    let report = client.wait_message(|m| m["print"]["hms"].is_array()).await;
    assert_eq!(report["print"]["hms"], json!([{"attr": 0x0500_0500, "code": 0x0001_0007}]));
    // Reads still work.
    client.request(&sim, &pushall("12"), QoS::AtMostOnce).await;
    client.wait_message(|m| m["print"]["msg"] == 0).await;
    sim.clear_fault(FaultKind::RefuseControl).await.unwrap();
    client.request(&sim, &pause, QoS::AtLeastOnce).await;
    let ack = client.wait_message(|m| m["print"]["result"].is_string()).await;
    assert!(ack["print"].get("err_code").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_silent_printer_publishes_nothing_until_told_otherwise() {
    let sim = Simulator::start(fast_config(Model::A1Mini)).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    sim.set_fault(Fault::Silent).await.unwrap();
    // Silence is on once `set_fault` returns: every event from here on comes after it.
    let mut events = sim.events();
    client.request(&sim, &pushall("1"), QoS::AtLeastOnce).await;
    events.wait_for_request(WAIT, "pushing", "pushall").await.unwrap();
    // Absence can only be checked over a window: 20 report intervals.
    let published = events
        .wait_for(std::time::Duration::from_millis(200), |event| {
            matches!(event, SimEvent::Published { .. }).then_some(())
        })
        .await;
    assert!(published.is_err(), "nothing is published while silent");
    client.send(rumqttc::mqttbytes::v4::Packet::PingReq).await;
    sim.clear_fault(FaultKind::Silent).await.unwrap();
    events
        .wait_for(WAIT, |event| {
            matches!(event, SimEvent::Published { kind: PublishedKind::Report, .. }).then_some(())
        })
        .await
        .unwrap();
    client.wait_message(|m| m["print"]["command"] == "push_status").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn replay_publishes_the_recorded_lines_in_order_and_still_acks_commands() {
    let lines = r#"
{"print":{"command":"push_status","msg":0,"sequence_id":"100","gcode_state":"IDLE"}}
{"_meta":{"source":"test"},"message":{"print":{"command":"push_status","msg":1,"sequence_id":"101","gcode_state":"PREPARE"}}}
{"print":{"command":"push_status","msg":1,"sequence_id":"102","gcode_state":"RUNNING","layer_num":1}}
"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), lines).unwrap();
    let mut config = fast_config(Model::A1Mini);
    config.replay = Some(Replay::from_file(file.path()).unwrap());
    config.report_interval = std::time::Duration::from_millis(30);
    let sim = Simulator::start(config).await.unwrap();
    let mut client = MqttClient::connect(&sim).await;
    client.subscribe_reports(&sim).await;
    let mut sequence = Vec::new();
    while sequence.len() < 3 {
        let message = client.next_message().await;
        sequence.push(message["print"]["sequence_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sequence, ["100", "101", "102"]);

    let pause = json!({"print": {"sequence_id": "8", "command": "pause", "param": ""}});
    client.request(&sim, &pause, QoS::AtLeastOnce).await;
    let ack = client.next_message().await;
    assert_eq!(ack["print"]["sequence_id"], "8");
    assert_eq!(ack["print"]["result"], "failed", "the simulated printer behind is idle");
    sim.shutdown().await;
}
