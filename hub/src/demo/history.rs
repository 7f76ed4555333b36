//! The demo farm's past: two weeks of ended prints with their operators' reviews, and two
//! documents (a material data sheet, a nozzle guide as a PDF), so that a first run has
//! analytics to show and history for the assistant to answer from ("why did PETG prints on
//! the Workhorse P1S fail last week?"). Written only into a database that has no outcomes
//! yet; the same every run (no randomness).

use crate::db::Db;
use crate::db::memory::DocumentRow;
use crate::db::outcomes::OutcomeRow;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// A print of the past: days ago, printer, name, material, grams, hours, and how it ended.
struct Print {
    days_ago: i64,
    printer: &'static str,
    name: &'static str,
    material: &'static str,
    grams: f64,
    hours: f64,
    ended: Ended,
}

enum Ended {
    Success { quality: i64 },
    Failed { reason: &'static str, at: f64, notes: &'static str },
}

const P1S: &str = "01P00C391800001";
const X1C: &str = "00M09A351100002";
const A1_MINI: &str = "0309CA391800003";
const A1: &str = "03919D391800004";
const VORON: &str = "voron-24";
const NEPTUNE: &str = "neptune-4";

const ADHESION: &str = "PETG lifted at the corners on the smooth PEI plate. Switched to the \
    textured plate with a thin layer of glue stick and the bed at 80 °C: the next prints held.";

fn history() -> Vec<Print> {
    use Ended::{Failed, Success};
    let ok = |quality| Success { quality };
    vec![
        Print {
            days_ago: 13,
            printer: P1S,
            name: "Drawer handle",
            material: "PETG",
            grams: 42.0,
            hours: 2.1,
            ended: ok(90),
        },
        Print {
            days_ago: 13,
            printer: X1C,
            name: "Drone arm",
            material: "PLA-CF",
            grams: 65.0,
            hours: 3.4,
            ended: ok(85),
        },
        Print {
            days_ago: 12,
            printer: A1_MINI,
            name: "Cable clip x20",
            material: "PLA",
            grams: 18.0,
            hours: 1.0,
            ended: ok(95),
        },
        Print {
            days_ago: 12,
            printer: VORON,
            name: "Fan duct",
            material: "ABS",
            grams: 31.0,
            hours: 1.8,
            ended: ok(88),
        },
        Print {
            days_ago: 11,
            printer: NEPTUNE,
            name: "Planter",
            material: "PLA",
            grams: 120.0,
            hours: 6.5,
            ended: ok(92),
        },
        Print {
            days_ago: 11,
            printer: X1C,
            name: "Drone arm",
            material: "PLA-CF",
            grams: 65.0,
            hours: 3.4,
            ended: Failed {
                reason: "nozzle_clog",
                at: 0.41,
                notes: "Carbon-fibre PLA wore the 0.4 mm stainless nozzle until it clogged. Any -CF material needs the hardened steel nozzle.",
            },
        },
        Print {
            days_ago: 10,
            printer: A1,
            name: "Vase",
            material: "PLA",
            grams: 85.0,
            hours: 4.2,
            ended: Failed {
                reason: "filament_runout",
                at: 0.73,
                notes: "The spool ran out overnight. Check what is left on the spool before a long print.",
            },
        },
        Print {
            days_ago: 10,
            printer: P1S,
            name: "Hinge set",
            material: "PETG",
            grams: 38.0,
            hours: 1.9,
            ended: ok(87),
        },
        Print {
            days_ago: 9,
            printer: VORON,
            name: "Enclosure panel clip",
            material: "ABS",
            grams: 22.0,
            hours: 1.2,
            ended: Failed {
                reason: "layer_shift",
                at: 0.55,
                notes: "Layers shifted on the Y axis halfway up: the Y belt was loose. Tensioned it.",
            },
        },
        Print {
            days_ago: 8,
            printer: NEPTUNE,
            name: "Calibration cube",
            material: "PLA",
            grams: 9.0,
            hours: 0.5,
            ended: ok(93),
        },
        Print {
            days_ago: 6,
            printer: P1S,
            name: "Bracket",
            material: "PETG",
            grams: 55.0,
            hours: 2.8,
            ended: Failed { reason: "first_layer_adhesion", at: 0.04, notes: ADHESION },
        },
        Print {
            days_ago: 5,
            printer: P1S,
            name: "Bracket",
            material: "PETG",
            grams: 55.0,
            hours: 2.8,
            ended: Failed {
                reason: "first_layer_adhesion",
                at: 0.02,
                notes: "Again the first layer of PETG did not stick; the plate still had fingerprints. Washed it with dish soap.",
            },
        },
        Print {
            days_ago: 5,
            printer: X1C,
            name: "Gear housing",
            material: "PLA",
            grams: 48.0,
            hours: 2.2,
            ended: ok(91),
        },
        Print {
            days_ago: 4,
            printer: P1S,
            name: "Bracket",
            material: "PETG",
            grams: 55.0,
            hours: 2.8,
            ended: ok(86),
        },
        Print {
            days_ago: 4,
            printer: A1_MINI,
            name: "Keycaps",
            material: "PLA",
            grams: 12.0,
            hours: 0.8,
            ended: ok(89),
        },
        Print {
            days_ago: 3,
            printer: NEPTUNE,
            name: "Shelf bracket",
            material: "PETG",
            grams: 70.0,
            hours: 3.6,
            ended: Failed {
                reason: "spaghetti",
                at: 0.31,
                notes: "The part came loose and the printer made spaghetti. Cleaned the bed with isopropyl alcohol.",
            },
        },
        Print {
            days_ago: 2,
            printer: VORON,
            name: "Fan duct",
            material: "ASA",
            grams: 33.0,
            hours: 1.9,
            ended: ok(90),
        },
        Print {
            days_ago: 2,
            printer: A1,
            name: "Vase",
            material: "PLA",
            grams: 85.0,
            hours: 4.2,
            ended: ok(94),
        },
        Print {
            days_ago: 1,
            printer: P1S,
            name: "Drawer handle",
            material: "PETG",
            grams: 42.0,
            hours: 2.1,
            ended: ok(92),
        },
        Print {
            days_ago: 1,
            printer: X1C,
            name: "Drone arm",
            material: "PLA-CF",
            grams: 65.0,
            hours: 3.4,
            ended: ok(88),
        },
    ]
}

/// The data sheet: Markdown.
pub const DATA_SHEET_TITLE: &str = "PETG data sheet.md";
pub const DATA_SHEET: &str = "# PETG\n\n\
    Nozzle 230–250 °C, bed 70–85 °C. Part cooling 30–50 %.\n\n\
    ## Drying\n\nPETG takes up water from the air: dry it at 65 °C for 4 hours before printing. \
    Wet PETG strings and pops.\n\n\
    ## Adhesion\n\nPETG sticks too well to smooth PEI and can tear it: print on textured PEI, or \
    on smooth PEI with glue stick as a release layer. Clean the plate with dish soap; \
    fingerprints make the first layer lift.\n";

/// The nozzle guide: a PDF.
pub const NOZZLE_GUIDE_TITLE: &str = "X1 Carbon nozzle guide.pdf";
pub const NOZZLE_GUIDE: &[&str] = &[
    "Abrasive filaments - PLA-CF, PETG-CF, PA-CF and glow-in-the-dark - wear a stainless nozzle",
    "within a few hundred grams. Fit the hardened steel nozzle before printing them.",
    "A worn nozzle under-extrudes and then clogs.",
];

/// Writes the demo's past into `db` unless it has outcomes already; answers how many prints
/// it wrote.
pub async fn seed(db: &Db, now: i64) -> anyhow::Result<usize> {
    if !db.outcomes(None, i64::MIN, i64::MAX).await?.is_empty() {
        return Ok(0);
    }
    let mut written = 0;
    for (n, print) in history().into_iter().enumerate() {
        // In the afternoon, a few hours apart within a day.
        let ended_at = now - print.days_ago * DAY - (n as i64 % 5) * HOUR;
        let duration_s = (print.hours * 3600.0) as i64;
        let (result, reason, progress, quality, notes) = match print.ended {
            Ended::Success { quality } => ("success", None, 1.0, Some(quality), None),
            Ended::Failed { reason, at, notes } => ("failed", Some(reason), at, None, Some(notes)),
        };
        let row = OutcomeRow {
            id: 0,
            printer_id: print.printer.to_owned(),
            job_id: None,
            name: Some(print.name.to_owned()),
            result: result.to_owned(),
            reason: reason.map(str::to_owned),
            reason_rule: reason.map(|_| "demo".to_owned()),
            evidence: "{}".to_owned(),
            started_at: Some(ended_at - (duration_s as f64 * progress) as i64 * 1000),
            ended_at,
            duration_s: Some((duration_s as f64 * progress) as i64),
            progress: Some(progress),
            material: Some(print.material.to_owned()),
            requested_by: Some("admin".to_owned()),
            filament_g: print.grams * progress,
            filament_cost: Some(print.grams * progress * 0.025),
            energy_kwh: None,
            energy_cost: None,
            review_reason: reason.map(str::to_owned),
            quality,
            aspects: None,
            notes: notes.map(str::to_owned),
            reviewed_by: Some("admin".to_owned()),
            reviewed_at: Some(ended_at + HOUR),
        };
        if db.insert_outcome(&row, "demo:history", n as i64).await? {
            written += 1;
        }
    }
    if db.documents().await?.is_empty() {
        let pdf = crate::memory::documents::minimal_pdf(NOZZLE_GUIDE);
        let guide =
            crate::memory::documents::read(crate::memory::documents::Format::Pdf, pdf.clone())
                .await
                .map_err(anyhow::Error::msg)?;
        for (id, title, format, printer, material, content, bytes) in [
            (
                "demo-petg",
                DATA_SHEET_TITLE,
                "markdown",
                None,
                Some("PETG"),
                DATA_SHEET.to_owned(),
                DATA_SHEET.len(),
            ),
            ("demo-nozzles", NOZZLE_GUIDE_TITLE, "pdf", Some(X1C), None, guide, pdf.len()),
        ] {
            db.put_document(&DocumentRow {
                id: id.to_owned(),
                title: title.to_owned(),
                format: format.to_owned(),
                printer_id: printer.map(str::to_owned),
                material: material.map(str::to_owned),
                content,
                bytes: bytes as i64,
                created_by: "admin".to_owned(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        }
    }
    Ok(written)
}
