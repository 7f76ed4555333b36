//! Feeds arbitrary bytes to `printfile`, the reader of uploaded print files, as each kind of
//! file it accepts: a 3MF archive and G-code. Any panic, overflow or runaway allocation is a
//! bug; every input must give a file or an error. Run with `cargo fuzz run print_file` from
//! `proto/`.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small windows, so short inputs reach the head/tail split and the limits.
    let limits = printfile::Limits {
        gcode_head: 4096,
        gcode_tail: 1024,
        max_metadata: 64 * 1024,
        max_thumbnail: 64 * 1024,
        ..printfile::Limits::default()
    };
    for name in ["fuzz.gcode.3mf", "fuzz.gcode"] {
        let _ = printfile::read(name, Cursor::new(data), &limits);
    }
});
