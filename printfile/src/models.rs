//! Printer models: Bambu's codes (what a printer reports and `slice_info.config` writes)
//! and names (what `project_settings.config` and G-code write), and whether a file fits a
//! printer.

use crate::PrintFile;

/// Bambu's model codes and the names slicers give them.
const BAMBU: &[(&str, &str)] = &[
    ("BL-P001", "Bambu Lab X1 Carbon"),
    ("BL-P002", "Bambu Lab X1"),
    ("C13", "Bambu Lab X1E"),
    ("C11", "Bambu Lab P1P"),
    ("C12", "Bambu Lab P1S"),
    ("N1", "Bambu Lab A1 mini"),
    ("N2S", "Bambu Lab A1"),
    ("N7", "Bambu Lab P2S"),
    ("O1D", "Bambu Lab H2D"),
    ("O1E", "Bambu Lab H2D Pro"),
    ("O1S", "Bambu Lab H2S"),
    ("O1C", "Bambu Lab H2C"),
];

/// The name of a Bambu model code.
pub fn bambu_name(code: &str) -> Option<&'static str> {
    BAMBU.iter().find(|(c, _)| c.eq_ignore_ascii_case(code.trim())).map(|(_, n)| *n)
}

/// The code of a Bambu model's name (or of a code, as given).
pub fn bambu_code(name: &str) -> Option<&'static str> {
    let name = name.trim();
    BAMBU
        .iter()
        .find(|(c, n)| n.eq_ignore_ascii_case(name) || c.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c)
}

/// Whether a file may be sent to a printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Fits,
    /// It was sliced for another printer; the reason says for which.
    Wrong(String),
    /// Nothing says either way (a file or printer that names no model).
    Unknown,
}

/// Whether `file` fits a printer reporting model `printer_model` (a Bambu code such as `C12`,
/// or a Klipper printer's name) and, when known, nozzle `nozzle` in millimetres.
///
/// A Bambu printer takes only files sliced for its own model: a file for another model has
/// the wrong bed size, kinematics and start G-code. A file sliced for a Bambu model never
/// goes to another kind of printer. Between other printers, names are not reliable enough
/// to refuse on, so the answer is [`Fit::Unknown`] unless they are equal.
pub fn fits(file: &PrintFile, printer_model: Option<&str>, nozzle: Option<f64>) -> Fit {
    let sliced = Sliced {
        model_id: file.printer_model_id.as_deref(),
        model: file.printer_model.as_deref(),
        nozzle: file.nozzle_diameter,
    };
    fits_sliced(&sliced, printer_model, nozzle)
}

/// What a file was sliced for, as [`fits_sliced`] weighs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sliced<'a> {
    /// Bambu's code (`C12`).
    pub model_id: Option<&'a str>,
    /// The model's name (`Bambu Lab P1S`, `MK4`).
    pub model: Option<&'a str>,
    /// Millimetres.
    pub nozzle: Option<f64>,
}

/// [`fits`] from what a file was sliced for.
pub fn fits_sliced(file: &Sliced<'_>, printer_model: Option<&str>, nozzle: Option<f64>) -> Fit {
    if let (Some(want), Some(have)) = (file.nozzle, nozzle)
        && (want - have).abs() > 0.01
    {
        return Fit::Wrong(format!(
            "sliced for a {want} mm nozzle; this printer has a {have} mm nozzle"
        ));
    }
    let file_code = file.model_id.and_then(bambu_code).or_else(|| file.model.and_then(bambu_code));
    let printer_code = printer_model.and_then(bambu_code);
    let sliced_for = || match (file.model, file.model_id) {
        (Some(name), _) => name.to_owned(),
        (None, Some(code)) => bambu_name(code).map_or(code.to_owned(), |n| format!("{n} ({code})")),
        (None, None) => "another printer".into(),
    };
    let this_printer =
        |code: &str| bambu_name(code).map_or(code.to_owned(), |n| format!("{n} ({code})"));
    match (file_code, printer_code) {
        (Some(f), Some(p)) if f == p => Fit::Fits,
        (Some(_), Some(p)) => Fit::Wrong(format!(
            "sliced for {}; this printer is a {}",
            sliced_for(),
            this_printer(p)
        )),
        (Some(_), None) if printer_model.is_some() => Fit::Wrong(format!(
            "sliced for {}, a Bambu Lab printer; this printer is a {}",
            sliced_for(),
            printer_model.unwrap_or_default()
        )),
        (None, Some(p)) if file.model.is_some() => Fit::Wrong(format!(
            "sliced for {}; this printer is a {}",
            sliced_for(),
            this_printer(p)
        )),
        (None, None) => match (file.model, printer_model) {
            (Some(f), Some(p)) if f.trim().eq_ignore_ascii_case(p.trim()) => Fit::Fits,
            _ => Fit::Unknown,
        },
        _ => Fit::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileKind;

    fn file(model: Option<&str>, code: Option<&str>, nozzle: Option<f64>) -> PrintFile {
        PrintFile {
            kind: FileKind::Gcode3mf,
            slicer: None,
            printer_model: model.map(str::to_owned),
            printer_model_id: code.map(str::to_owned),
            nozzle_diameter: nozzle,
            bed_type: None,
            plates: Vec::new(),
            thumbnails: Vec::new(),
        }
    }

    #[test]
    fn bambu_files_fit_only_their_model() {
        let p1s = file(Some("Bambu Lab P1S"), Some("C12"), Some(0.4));
        assert_eq!(fits(&p1s, Some("C12"), Some(0.4)), Fit::Fits);
        assert_eq!(
            fits(&p1s, Some("BL-P001"), None),
            Fit::Wrong(
                "sliced for Bambu Lab P1S; this printer is a Bambu Lab X1 Carbon (BL-P001)".into()
            )
        );
        assert!(matches!(fits(&p1s, Some("Voron 2.4"), None), Fit::Wrong(_)));
        assert!(
            matches!(fits(&p1s, Some("C12"), Some(0.6)), Fit::Wrong(w) if w.contains("0.6 mm"))
        );
        assert_eq!(fits(&p1s, None, None), Fit::Unknown);
        // Only the name, as some OrcaSlicer files give it.
        assert_eq!(fits(&file(Some("Bambu Lab A1 mini"), None, None), Some("N1"), None), Fit::Fits);
    }

    #[test]
    fn other_printers() {
        let mk4 = file(Some("MK4"), None, Some(0.4));
        assert!(matches!(fits(&mk4, Some("C12"), None), Fit::Wrong(_)));
        assert_eq!(fits(&mk4, Some("mk4"), None), Fit::Fits);
        assert_eq!(fits(&mk4, Some("Voron 2.4"), None), Fit::Unknown);
        assert_eq!(fits(&file(None, None, None), Some("C12"), None), Fit::Unknown);
    }
}
