//! Files laid out as each slicer writes them (printfile/test_data, made by
//! make_fixtures.py from real files' layouts), and hostile ones.

use std::io::Cursor;

use printfile::{FileError, FileKind, Limits, PrintFile, read};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = std::path::Path::new(&dir).join("test_data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(name: &str) -> Result<PrintFile, FileError> {
    read(name, Cursor::new(fixture(name)), &Limits::default())
}

fn ok(name: &str) -> PrintFile {
    parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn bambu_studio_a1_plate_filaments_with_gaps_md5_and_pictures() {
    let file = ok("bambu-studio-1.10-a1.gcode.3mf");
    assert_eq!(file.kind, FileKind::Gcode3mf);
    let slicer = file.slicer.as_ref().unwrap();
    assert_eq!(
        (slicer.name.as_str(), slicer.version.as_deref()),
        ("Bambu Studio", Some("01.10.01.50"))
    );
    assert_eq!(file.printer_model.as_deref(), Some("Bambu Lab A1"));
    assert_eq!(file.printer_model_id.as_deref(), Some("N2S"));
    assert_eq!(file.nozzle_diameter, Some(0.4));
    assert_eq!(file.bed_type.as_deref(), Some("Textured PEI Plate"));
    assert_eq!(file.plates.len(), 1);
    let plate = &file.plates[0];
    assert_eq!(plate.index, 1);
    assert_eq!(plate.gcode_entry.as_deref(), Some("Metadata/plate_1.gcode"));
    assert_eq!(plate.estimated_s, Some(5450), "slice_info's prediction wins over the header");
    assert_eq!(plate.weight_g, Some(26.91));
    assert_eq!(plate.layers, Some(6));
    assert_eq!(plate.objects, vec!["Benchy & friends".to_owned()]);
    let slots: Vec<u32> = plate.filaments.iter().map(|f| f.slot).collect();
    assert_eq!(slots, vec![1, 2, 6]);
    let black = &plate.filaments[1];
    assert_eq!(black.material.as_deref(), Some("PLA"));
    assert_eq!(black.color.as_deref(), Some("#000000"));
    assert_eq!((black.grams, black.meters), (Some(2.15), Some(0.72)));
    assert_eq!(black.profile_id.as_deref(), Some("GFL99"));
    // The MD5 is the G-code's, and matched the archive's own (uppercase) .md5 entry.
    let md5 = plate.gcode_md5.as_deref().unwrap();
    assert_eq!(md5.len(), 32);
    assert!(md5.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // Pictures: the plate's, without light, from the top; not the pick map or the small copy.
    let names: Vec<&str> = file.thumbnails.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["Metadata/plate_1.png", "Metadata/plate_no_light_1.png", "Metadata/top_1.png"]
    );
    let main = &file.thumbnails[plate.thumbnail.unwrap()];
    assert_eq!((main.width, main.height, main.mime.as_str()), (Some(64), Some(64), "image/png"));
    assert!(main.data.starts_with(b"\x89PNG"));
}

#[test]
fn orca_plates_that_do_not_start_at_one_written_with_data_descriptors() {
    let file = ok("orca-2.3-a1-mini-plates-2-3.gcode.3mf");
    let slicer = file.slicer.as_ref().unwrap();
    assert_eq!(
        (slicer.name.as_str(), slicer.version.as_deref()),
        ("OrcaSlicer", Some("2.3.1-alpha"))
    );
    assert_eq!(file.printer_model_id.as_deref(), Some("N1"));
    assert_eq!(file.printer_model.as_deref(), Some("Bambu Lab A1 mini"));
    let indexes: Vec<u32> = file.plates.iter().map(|p| p.index).collect();
    assert_eq!(indexes, vec![2, 3]);
    let two = file.plate(2).unwrap();
    assert_eq!(two.estimated_s, Some(9886));
    assert_eq!(two.objects.len(), 2);
    assert_eq!(
        two.filaments.iter().map(|f| f.material.as_deref()).collect::<Vec<_>>(),
        vec![Some("PLA"), Some("PETG")]
    );
    let three = file.plate(3).unwrap();
    assert_eq!(three.filaments.len(), 1);
    assert_eq!(three.filaments[0].slot, 2, "plate 3 uses the second filament only");
    assert_eq!(three.filaments[0].color.as_deref(), Some("#FF6A13"), "colours are normalised");
    assert_eq!(three.estimated_s, Some(2712));
    assert_ne!(two.gcode_md5, three.gcode_md5);
    assert_eq!(file.thumbnails[three.thumbnail.unwrap()].name, "Metadata/plate_3.png");
    assert!(file.plate(1).is_none());
}

#[test]
fn a_trimmed_template_falls_back_on_the_gcode_header() {
    let file = ok("template-trimmed.gcode.3mf");
    assert_eq!(file.slicer.as_ref().map(|s| s.name.as_str()), Some("OrcaSlicer"));
    assert_eq!(file.printer_model.as_deref(), Some("Bambu Lab A1 mini"), "named from its code");
    let plate = &file.plates[0];
    assert_eq!(plate.estimated_s, Some(24 * 60 + 30), "from the header's total estimated time");
    assert_eq!(plate.layers, Some(4));
    assert_eq!(plate.filaments.len(), 1);
    assert_eq!(plate.thumbnail, None);
    assert!(file.thumbnails.is_empty());
}

#[test]
fn prusaslicer_summary_at_the_tail_and_pictures_at_the_head() {
    let file = ok("prusaslicer-2.8-mk4.gcode");
    assert_eq!(file.kind, FileKind::Gcode);
    let slicer = file.slicer.as_ref().unwrap();
    assert_eq!(
        (slicer.name.as_str(), slicer.version.as_deref()),
        ("PrusaSlicer", Some("2.8.1+linux-x64-GTK3"))
    );
    assert_eq!(file.printer_model.as_deref(), Some("MK4"));
    assert_eq!(file.nozzle_diameter, Some(0.4));
    let plate = &file.plates[0];
    assert_eq!(plate.estimated_s, Some(3600 + 6 * 60 + 40), "normal mode, not silent");
    assert_eq!(plate.weight_g, Some(11.61));
    assert_eq!(plate.layers, Some(60));
    assert_eq!(plate.filaments.len(), 1, "the unused second extruder is left out");
    let pla = &plate.filaments[0];
    assert_eq!(
        (pla.slot, pla.material.as_deref(), pla.color.as_deref()),
        (1, Some("PLA"), Some("#FF8000"))
    );
    assert_eq!(pla.grams, Some(11.61));
    assert!((pla.meters.unwrap() - 3.89152).abs() < 1e-9);
    let pictures: Vec<(Option<u32>, &str)> =
        file.thumbnails.iter().map(|t| (t.width, t.mime.as_str())).collect();
    assert_eq!(
        pictures,
        vec![(Some(16), "image/png"), (Some(313), "image/png"), (Some(2), "image/qoi")]
    );
    assert_eq!(plate.thumbnail, Some(1), "the largest picture is the plate's");
}

#[test]
fn the_tail_is_read_apart_from_the_head_in_a_long_file() {
    // Head and tail windows far smaller than the file: the summary is only in the tail, and
    // the head ends inside the second picture.
    let bytes = fixture("prusaslicer-2.8-mk4.gcode");
    let second = bytes.windows(24).position(|w| w == b"thumbnail begin 313x173 ").unwrap();
    let limits =
        Limits { gcode_head: second as u64 + 200, gcode_tail: 4 * 1024, ..Limits::default() };
    let file = read("x.gcode", Cursor::new(bytes), &limits).unwrap();
    assert_eq!(file.plates[0].estimated_s, Some(4000));
    assert_eq!(file.printer_model.as_deref(), Some("MK4"));
    // The picture cut short is skipped, not kept broken.
    let widths: Vec<Option<u32>> = file.thumbnails.iter().map(|t| t.width).collect();
    assert_eq!(widths, vec![Some(16)]);
}

#[test]
fn orca_for_a_voron_and_bambu_studio_for_another_printer() {
    let voron = ok("orca-2.1-voron.gcode");
    assert_eq!(voron.slicer.as_ref().map(|s| s.name.as_str()), Some("OrcaSlicer"));
    assert_eq!(voron.printer_model.as_deref(), Some("Voron 2.4 350"));
    assert_eq!(voron.bed_type.as_deref(), Some("High Temp Plate"));
    let plate = &voron.plates[0];
    assert_eq!(plate.estimated_s, Some(34 * 60 + 3));
    assert_eq!(plate.layers, Some(40));
    assert_eq!(plate.filaments[0].material.as_deref(), Some("ABS"));
    assert_eq!(voron.thumbnails.len(), 1);
    assert_eq!(voron.thumbnails[0].width, Some(300));

    let generic = ok("bambu-studio-1.9-generic.gcode");
    let slicer = generic.slicer.as_ref().unwrap();
    assert_eq!(
        (slicer.name.as_str(), slicer.version.as_deref()),
        ("Bambu Studio", Some("01.09.07.52"))
    );
    assert_eq!(generic.plates[0].estimated_s, Some(34));
    assert_eq!(generic.plates[0].weight_g, Some(0.06));
    assert_eq!(generic.nozzle_diameter, Some(0.6));
}

#[test]
fn cura_marlin_and_griffin_headers() {
    let marlin = ok("cura-5.5-ender3.gcode");
    let slicer = marlin.slicer.as_ref().unwrap();
    assert_eq!((slicer.name.as_str(), slicer.version.as_deref()), ("Cura", Some("5.5.0")));
    assert_eq!(marlin.printer_model.as_deref(), Some("Creality Ender-3 Pro"));
    let plate = &marlin.plates[0];
    assert_eq!(plate.estimated_s, Some(8235));
    assert_eq!(plate.layers, Some(30));
    assert_eq!(plate.filaments.len(), 1);
    assert_eq!(plate.filaments[0].meters, Some(5.96619));
    assert_eq!(plate.filaments[0].material, None, "Cura does not say");

    let griffin = ok("cura-4.5-griffin-um3.gcode");
    assert_eq!(griffin.printer_model.as_deref(), Some("Ultimaker 3"));
    assert_eq!(griffin.nozzle_diameter, Some(0.8));
    assert_eq!(griffin.plates[0].estimated_s, Some(480));
    assert_eq!(griffin.plates[0].filaments.len(), 1);
}

#[test]
fn hostile_archives_are_refused_with_their_reason() {
    let bomb = parse("hostile/zip-bomb.gcode.3mf").unwrap_err();
    assert!(matches!(bomb, FileError::Bomb(_)), "{bomb}");
    let traversal = parse("hostile/traversal.gcode.3mf").unwrap_err();
    assert!(
        matches!(&traversal, FileError::UnsafeEntry { name, .. } if name == "../../etc/cron.d/evil"),
        "{traversal}"
    );
    let overlapping = parse("hostile/overlapping.gcode.3mf").unwrap_err();
    assert!(matches!(overlapping, FileError::Bomb(_) | FileError::Archive(_)), "{overlapping}");
    let project = parse("hostile/project-not-sliced.3mf").unwrap_err();
    assert!(matches!(&project, FileError::NoGcode(m) if m.contains("slice it")), "{project}");
    let changed = parse("hostile/changed-after-slicing.gcode.3mf").unwrap_err();
    assert!(
        matches!(&changed, FileError::Corrupt { detail, .. } if detail.contains("changed after slicing")),
        "{changed}"
    );
}

#[test]
fn truncated_and_damaged_archives_are_refused() {
    let whole = fixture("bambu-studio-1.10-a1.gcode.3mf");
    // Cut anywhere: the central directory is gone or an entry is short.
    for cut in [10, whole.len() / 3, whole.len() / 2, whole.len() - 30] {
        let error = read("a.gcode.3mf", Cursor::new(whole[..cut].to_vec()), &Limits::default())
            .unwrap_err();
        assert!(
            matches!(error, FileError::Archive(_) | FileError::Corrupt { .. }),
            "cut at {cut}: {error}"
        );
    }
    // A flipped byte inside the deflated G-code: a CRC or inflate error, never a wrong file.
    let at = whole.windows(22).position(|w| w == b"Metadata/plate_1.gcode").unwrap() + 60;
    let mut damaged = whole.clone();
    damaged[at] ^= 0x55;
    let error = read("a.gcode.3mf", Cursor::new(damaged), &Limits::default()).unwrap_err();
    assert!(matches!(error, FileError::Corrupt { .. } | FileError::Archive(_)), "{error}");
}

#[test]
fn what_is_not_a_print_file_says_so() {
    let error = |name: &str, bytes: &[u8]| {
        read(name, Cursor::new(bytes.to_vec()), &Limits::default()).unwrap_err()
    };
    assert!(matches!(error("a.gcode", b""), FileError::Unsupported(_)));
    assert!(
        matches!(error("a.gcode", b"\x7fELF\x02\x01\x01\x00\x00\x00"), FileError::NoGcode(m) if m.contains("binary"))
    );
    assert!(matches!(error("a.gcode", b"; just a comment\nhello\n"), FileError::NoGcode(_)));
    assert!(matches!(error("a.gcode.3mf", b"G28\n"), FileError::Archive(_)));
    assert!(
        matches!(error("a.gcode", &fixture("template-trimmed.gcode.3mf")), FileError::Unsupported(m) if m.contains(".gcode.3mf"))
    );
    assert!(
        matches!(error("part.stl", b"solid x\n"), FileError::Unsupported(m) if m.contains("sliced"))
    );
    assert!(matches!(error("a.bgcode", b"GCDE"), FileError::Unsupported(_)));
    assert!(matches!(error("notes.txt", b"G28"), FileError::Unsupported(_)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Damaged archives never panic: every byte flip of a real one gives a file or an error.
    #[test]
    fn damaged_archives_never_panic(at in 0usize..4556, mask in 1u8..=255) {
        let mut bytes = fixture("bambu-studio-1.10-a1.gcode.3mf");
        let at = at % bytes.len();
        bytes[at] ^= mask;
        let _ = read("a.gcode.3mf", Cursor::new(bytes), &Limits::default());
    }

    #[test]
    fn any_text_as_gcode_never_panics(text in "(;[ -~]{0,60}\n|G1 X[0-9]\n){0,40}") {
        let _ = read("a.gcode", Cursor::new(text.into_bytes()), &Limits::default());
    }
}
