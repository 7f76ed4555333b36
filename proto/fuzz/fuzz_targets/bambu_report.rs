//! Feeds arbitrary bytes to the agent's Bambu report merger, as a sequence of MQTT payloads,
//! and normalises the merged document after each one. Any panic, overflow or runaway
//! allocation is a bug. Run with `cargo fuzz run bambu_report` from `proto/`.
//!
//! The merger and normaliser are sans-IO (they need `proto` and `serde_json` only), so they
//! are compiled in from the agent's sources rather than pulling the whole agent (tokio,
//! QUIC, SQLite) into the fuzz build. `edge-agent/src/printer/bambu/properties.rs` runs the
//! same properties in the test suite.
#![no_main]

use libfuzzer_sys::fuzz_target;

// `normalize.rs` reaches the merger as `super::merge`: both sit at the crate's root here.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../edge-agent/src/printer/bambu/merge.rs"]
mod merge;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../edge-agent/src/printer/bambu/normalize.rs"]
mod normalize;

use merge::ReportMerger;
use normalize::{Context, normalize};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a model; the rest is split into payloads at 0xFF bytes (never in
    // UTF-8 text, so JSON survives whole).
    let (model, data) = data.split_first().map_or((0, data), |(m, rest)| (*m, rest));
    let models = ["BL-P001", "C11", "C12", "N1", "N2S", "O1D", "unknown"];
    let context = Context {
        model: Some(models[usize::from(model) % models.len()].to_owned()),
        ..Context::default()
    };
    let mut merger = ReportMerger::new();
    for payload in data.split(|b| *b == 0xFF) {
        let before = merger.document().clone();
        if merger.apply(payload).is_err() {
            assert_eq!(merger.document(), &before, "a rejected payload changed the document");
        }
        let state = normalize(merger.document(), &context);
        let _ = proto::json::printer_state(&state);
    }
});
