//! Property tests of the report merger and normaliser over hostile input, in the suite: any
//! sequence of payloads, as bytes or as JSON built from the keys the printers really send
//! with values of any type and size, is merged and normalised without a panic, a rejected
//! payload leaves the document as it was, and the state always encodes for the outbox. The
//! same code runs under libFuzzer as `proto/fuzz`'s `bambu_report` target.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use super::merge::{ReportMerger, VersionInfo};
use super::normalize::{Context, normalize};

/// The keys the merger and normaliser read, and a few they do not.
const KEYS: &[&str] = &[
    "ams",
    "attr",
    "bed",
    "bed_target_temper",
    "bed_temper",
    "big_fan1_speed",
    "chamber_light",
    "chamber_temper",
    "code",
    "command",
    "cooling_fan_speed",
    "ctc",
    "device",
    "extruder",
    "fun",
    "gcode_state",
    "heatbed_light",
    "hms",
    "home_flag",
    "humidity",
    "id",
    "info",
    "layer_num",
    "lights_report",
    "mc_percent",
    "mc_remaining_time",
    "mode",
    "msg",
    "node",
    "nozzle",
    "nozzle_target_temper",
    "nozzle_temper",
    "print_error",
    "remain",
    "result",
    "sequence_id",
    "spd_lvl",
    "stat",
    "state",
    "stg_cur",
    "subtask_name",
    "temp",
    "total_layer_num",
    "tray",
    "tray_color",
    "tray_now",
    "tray_type",
    "tray_uuid",
    "vir_slot",
    "vt_tray",
    "work_light",
    "x",
    "",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
}

/// A JSON leaf: numbers at the edges of every range, numbers as strings, long strings.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1_i64),
            Just(0_i64),
            Just(0x2000_0000_i64),
            any::<i64>(),
            -400_i64..400,
        ]
        .prop_map(Value::from),
        4 => any::<u64>().prop_map(Value::from),
        4 => prop_oneof![Just(f64::MAX), Just(-f64::MAX), Just(f64::MIN_POSITIVE), any::<f64>()]
            .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        4 => prop_oneof![
            Just("1e400".to_owned()),
            Just("-99999999999999999999".to_owned()),
            Just("NaN".to_owned()),
            Just("FFFFFFFF".to_owned()),
            Just("0300_8003".to_owned()),
            "[0-9]{1,24}",
            "\\PC{0,40}",
        ]
        .prop_map(Value::String),
        1 => (0usize..70_000).prop_map(|n| Value::String("x".repeat(n))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One MQTT payload: a report (full or delta), another category, or raw bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let report =
        (proptest::collection::vec((key(), value()), 0..12), 0i64..3).prop_map(|(pairs, msg)| {
            let mut print: Map<String, Value> = pairs.into_iter().collect();
            print.insert("command".into(), "push_status".into());
            print.insert("msg".into(), msg.into());
            serde_json::json!({ "print": print })
        });
    let other = (key(), value()).prop_map(|(category, body)| {
        let mut root = Map::new();
        root.insert(category, body);
        Value::Object(root)
    });
    prop_oneof![
        6 => report.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => other.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn context() -> impl Strategy<Value = Context> {
    let model = proptest::option::of(prop_oneof![
        proptest::sample::select(&["BL-P001", "C11", "C12", "N1", "N2S", "O1D"][..])
            .prop_map(str::to_owned),
        "\\PC{0,10}",
    ]);
    let version = proptest::option::of(("\\PC{0,12}", "\\PC{0,12}").prop_map(|(name, fw)| {
        VersionInfo { product_name: Some(name), firmware: Some(fw), project_name: None }
    }));
    (model, version).prop_map(|(model, version)| Context { model, version, ..Context::default() })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_payloads_merge_and_normalise_without_a_panic(
        payloads in proptest::collection::vec(payload(), 1..8),
        context in context(),
    ) {
        let mut merger = ReportMerger::new();
        for payload in payloads {
            let before = merger.document().clone();
            if merger.apply(&payload).is_err() {
                prop_assert_eq!(merger.document(), &before, "a rejected payload changed nothing");
            }
            let state = normalize(merger.document(), &context);
            // What the agent then does with it: encode for the outbox, render for the hub.
            prop_assert!(postcard::to_stdvec(&state).is_ok());
            let _ = proto::json::printer_state(&state);
        }
    }
}
