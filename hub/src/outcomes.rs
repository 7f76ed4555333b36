//! Outcomes, pure: what a print's printer said between its start and its end
//! ([`Evidence`], gathered event by event) and the failure reason it supports
//! ([`classify`]), from a fixed taxonomy. The sources of every row are in
//! `docs/research/failure-reasons.md`.
//!
//! # The table
//!
//! First the kind of end: a finished print has no reason. A cancelled one is
//! `user_cancelled`, unless the printer had paused it for a cause it names and the pause was
//! still open (a person cancelling a print the printer stopped for a runout is reacting to
//! the runout), or a filament sensor said "empty" while it was paused. A failed print takes
//! the strongest of every signal seen while it ran, ranked root cause first:
//! `power_failure` > `overheating` > `filament_runout` > `nozzle_clog` >
//! `first_layer_adhesion` > `layer_shift` > `spaghetti`; none → `other`.
//!
//! | rule | source | signal | reason |
//! |---|---|---|---|
//! | `pe:0300_400C`, `pe:0500_400E` | Bambu `print_error` | the task was cancelled | `user_cancelled` |
//! | `pe:0300_8007`, `pe:0300_400D` | Bambu `print_error` | power lost / resume after power loss failed | `power_failure` |
//! | `hms:0300_4100_0001_0001` | Bambu HMS | power-failure protection | `power_failure` |
//! | `pe:0300_8008/8009/8018/8062–8065/8044/404D` | Bambu `print_error` | nozzle, bed, chamber temperature malfunction or too hot; fire | `overheating` |
//! | `hms:heater` | Bambu HMS module 03, heaters and sensors (parts 01, 02, 1E, 91–93), fatal | heater or thermistor fault, over temperature | `overheating` |
//! | `hms:too_hot` | Bambu HMS `0300_A100/A200/A400` fatal, `0300_0500_0001_0001` | machine parts too hot | `overheating` |
//! | `stage:20`, `stage:21`, `stage:28` | Bambu `stg_cur` pause | nozzle, bed, chamber temperature malfunction | `overheating` |
//! | `pe:runout` | Bambu `print_error` `07xx_8011`, `18xx_8011` | AMS, AMS-HT or external spool ran out | `filament_runout` |
//! | `hms:runout` | Bambu HMS modules 07/12/18, parts 20–23, `0002_0001`/`0002_0005`; parts 70 `0002_0007` | a slot ran out | `filament_runout` |
//! | `stage:6` | Bambu `stg_cur` pause | paused for a filament runout | `filament_runout` |
//! | `sensor:runout` | Klipper filament sensor | paused while a sensor said no filament | `filament_runout` |
//! | `pe:clog` | Bambu `print_error` `0300_4006/8016/801C/801E/800D/801A`, `0C00_8040`, `07xx_8007`, `18xx_8007` | nozzle clogged, extrusion abnormal | `nozzle_clog` |
//! | `hms:clog` | Bambu HMS `0C00_0300_0002_000E`, `0300_0900_0002_0001..3`, `07/18xx_7000_0002_0003`, AMS failed to extrude, `0C00_0300_0003_0010` | clogged, extruding nothing | `nozzle_clog` |
//! | `stage:35` | Bambu `stg_cur` pause | nozzle clog | `nozzle_clog` |
//! | `hms:0C00_0300_0003_0007`, `stage:34` | Bambu HMS, pause | first layer defects | `first_layer_adhesion` |
//! | `pe:0300_800C`, `stage:23` | Bambu `print_error`, pause | skipped steps | `layer_shift` |
//! | `pe:0300_8003`, `hms:0C00_0300_0003_0008` | Bambu | spaghetti detected | `spaghetti` |
//! | `klipper:estop` | Klippy's words `Shutdown due to webhooks request`, `Shutdown due to M112 command` | an emergency stop by a person | `user_cancelled` |
//! | `klipper:heater` | `not heating at expected rate`, `ADC out of range`, `Thermocouple reader fault` | Klipper's heater protection | `overheating` |
//! | `other` | anything else that failed (G-code errors, MCU and host faults, unknown codes) | | `other` |
//!
//! `overheating` holds the printers' thermal-protection trips (a heater, its sensor, a part
//! too hot), by convention: no printer reports an overheated print. `warping`, `stringing`
//! and `support_failure` have no printer signal at all: only a person's review gives them.

use proto::{Hms, JobOutcome, PrinterEventKind};
use serde::{Deserialize, Serialize};

/// Why a print failed: the fixed taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    FirstLayerAdhesion,
    Warping,
    Stringing,
    Spaghetti,
    NozzleClog,
    FilamentRunout,
    LayerShift,
    Overheating,
    SupportFailure,
    UserCancelled,
    PowerFailure,
    Other,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::FirstLayerAdhesion,
        Reason::Warping,
        Reason::Stringing,
        Reason::Spaghetti,
        Reason::NozzleClog,
        Reason::FilamentRunout,
        Reason::LayerShift,
        Reason::Overheating,
        Reason::SupportFailure,
        Reason::UserCancelled,
        Reason::PowerFailure,
        Reason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstLayerAdhesion => "first_layer_adhesion",
            Reason::Warping => "warping",
            Reason::Stringing => "stringing",
            Reason::Spaghetti => "spaghetti",
            Reason::NozzleClog => "nozzle_clog",
            Reason::FilamentRunout => "filament_runout",
            Reason::LayerShift => "layer_shift",
            Reason::Overheating => "overheating",
            Reason::SupportFailure => "support_failure",
            Reason::UserCancelled => "user_cancelled",
            Reason::PowerFailure => "power_failure",
            Reason::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Rank among signals of one failed print: the root cause first.
    fn rank(self) -> u8 {
        match self {
            Reason::PowerFailure => 0,
            Reason::Overheating => 1,
            Reason::FilamentRunout => 2,
            Reason::NozzleClog => 3,
            Reason::FirstLayerAdhesion => 4,
            Reason::LayerShift => 5,
            Reason::Spaghetti => 6,
            _ => 7,
        }
    }
}

/// How a print ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Success,
    Failed,
    Cancelled,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Success => "success",
            Ending::Failed => "failed",
            Ending::Cancelled => "cancelled",
        }
    }
}

/// What a printer said while a print ran: every signal is kept (Bambu sends a
/// `print_error` once and clears it), with what was still open at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Every `print_error` raised, in order, once each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub print_errors: Vec<u32>,
    /// Those not cleared since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_errors: Vec<u32>,
    /// Every HMS alert raised, once each, as `[attr, code]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hms: Vec<[u32; 2]>,
    /// Each pause's stage code (`None`: the printer named no cause).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<Option<u16>>,
    /// Paused and not resumed: the pause's stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_pause: Option<Option<u16>>,
    /// A filament sensor said "no filament" while the print was paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runout_seen: bool,
    /// The printer's own words (Klippy's errors and shutdown reasons).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// Millimetres of filament the extruder pushed, as the printer counted them (Klipper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filament_mm: Option<f64>,
}

/// Most messages kept per print.
const MAX_MESSAGES: usize = 16;
/// Most codes kept per print, per kind.
const MAX_CODES: usize = 64;

impl Evidence {
    /// Takes in one of the printer's events while the print runs.
    pub fn observe(&mut self, event: &PrinterEventKind) {
        match event {
            PrinterEventKind::PrintErrorRaised { code } => {
                if !self.print_errors.contains(code) && self.print_errors.len() < MAX_CODES {
                    self.print_errors.push(*code);
                }
                if !self.active_errors.contains(code) && self.active_errors.len() < MAX_CODES {
                    self.active_errors.push(*code);
                }
            }
            PrinterEventKind::PrintErrorCleared { code } => {
                self.active_errors.retain(|c| c != code);
            }
            PrinterEventKind::HmsRaised(hms) => {
                let entry = [hms.attr, hms.code];
                if !self.hms.contains(&entry) && self.hms.len() < MAX_CODES {
                    self.hms.push(entry);
                }
            }
            PrinterEventKind::JobPaused { reason } => {
                if self.pauses.len() < MAX_CODES {
                    self.pauses.push(*reason);
                }
                self.open_pause = Some(*reason);
            }
            PrinterEventKind::JobResumed => {
                self.open_pause = None;
                self.runout_seen = false;
            }
            PrinterEventKind::Fault { message }
                if self.messages.len() < MAX_MESSAGES && !self.messages.contains(message) =>
            {
                self.messages.push(message.chars().take(500).collect());
            }
            PrinterEventKind::FilamentUsed { millimetres } => {
                self.filament_mm = Some(f64::from(*millimetres));
            }
            _ => {}
        }
    }

    /// Takes in what the job's end carries (the error and alerts active then).
    pub fn observe_end(&mut self, outcome: &JobOutcome) {
        if let JobOutcome::Failed { print_error, hms } = outcome {
            if let Some(code) = print_error {
                self.observe(&PrinterEventKind::PrintErrorRaised { code: *code });
            }
            for alert in hms {
                self.observe(&PrinterEventKind::HmsRaised(*alert));
            }
        }
    }
}

/// The reason a print failed and the rule of the table that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub reason: Reason,
    pub rule: String,
}

fn found(reason: Reason, rule: impl Into<String>) -> Classified {
    Classified { reason, rule: rule.into() }
}

/// The reason for a print's end, from the table above; `None` for a success.
pub fn classify(ending: Ending, evidence: &Evidence) -> Option<Classified> {
    if ending == Ending::Success {
        return None;
    }
    let cancelled = ending == Ending::Cancelled
        || evidence.print_errors.iter().any(|pe| matches!(pe, 0x0300_400C | 0x0500_400E));
    if let Some(estop) = evidence
        .messages
        .iter()
        .find_map(|m| klipper_message(m))
        .filter(|c| c.reason == Reason::UserCancelled)
    {
        return Some(estop);
    }
    if cancelled {
        // A cancel of a print the printer had stopped for a cause: the cause.
        let mut open = Vec::new();
        if let Some(Some(stage)) = evidence.open_pause
            && let Some(reason) = stage_reason(stage)
            && reason != Reason::Other
        {
            open.push(found(reason, format!("stage:{stage}")));
        }
        if evidence.open_pause.is_some() && evidence.runout_seen {
            open.push(found(Reason::FilamentRunout, "sensor:runout"));
        }
        open.extend(
            evidence
                .active_errors
                .iter()
                .filter(|pe| *pe & 0xC000 == 0x8000)
                .filter_map(|pe| print_error_reason(*pe))
                .filter(|c| c.reason != Reason::Other),
        );
        return Some(strongest(open).unwrap_or_else(|| {
            let rule = evidence
                .print_errors
                .iter()
                .find(|pe| matches!(pe, 0x0300_400C | 0x0500_400E))
                .map_or("cancelled".to_owned(), |pe| format!("pe:{}", code(*pe)));
            found(Reason::UserCancelled, rule)
        }));
    }
    let mut signals: Vec<Classified> = Vec::new();
    signals.extend(evidence.print_errors.iter().filter_map(|pe| print_error_reason(*pe)));
    signals.extend(
        evidence.hms.iter().filter_map(|[attr, code]| hms_reason(Hms { attr: *attr, code: *code })),
    );
    for stage in evidence.pauses.iter().flatten() {
        if let Some(reason) = stage_reason(*stage) {
            signals.push(found(reason, format!("stage:{stage}")));
        }
    }
    if evidence.runout_seen {
        signals.push(found(Reason::FilamentRunout, "sensor:runout"));
    }
    signals.extend(evidence.messages.iter().filter_map(|m| klipper_message(m)));
    Some(strongest(signals).unwrap_or_else(|| found(Reason::Other, "other")))
}

/// The strongest signal: the root cause first; among equals, the first seen.
fn strongest(signals: Vec<Classified>) -> Option<Classified> {
    signals
        .into_iter()
        .filter(|c| c.reason != Reason::Other)
        .enumerate()
        .min_by_key(|(i, c)| (c.reason.rank(), *i))
        .map(|(_, c)| c)
}

fn code(pe: u32) -> String {
    format!("{:04X}_{:04X}", pe >> 16, pe & 0xFFFF)
}

/// A Bambu pause stage (`stg_cur`) that names a cause.
pub fn stage_reason(stage: u16) -> Option<Reason> {
    Some(match stage {
        6 => Reason::FilamentRunout,
        20 | 21 | 28 => Reason::Overheating,
        23 => Reason::LayerShift,
        34 => Reason::FirstLayerAdhesion,
        35 => Reason::NozzleClog,
        17 | 26 | 27 | 32 | 33 => Reason::Other,
        _ => return None,
    })
}

/// A Bambu `print_error` the table maps.
pub fn print_error_reason(pe: u32) -> Option<Classified> {
    let reason = match pe {
        0x0300_400C | 0x0500_400E => Reason::UserCancelled,
        0x0300_8007 | 0x0300_400D => Reason::PowerFailure,
        0x0300_8008 | 0x0300_8009 | 0x0300_8018 | 0x0300_8062 | 0x0300_8063 | 0x0300_8064
        | 0x0300_8065 | 0x0300_8044 | 0x0300_404D => Reason::Overheating,
        _ if matches!(pe & 0xFF00_FFFF, 0x0700_8011 | 0x1800_8011) => {
            return Some(found(Reason::FilamentRunout, format!("pe:{}", code(pe))));
        }
        0x0300_4006 | 0x0300_8016 | 0x0300_801C | 0x0300_801E | 0x0300_800D | 0x0300_801A
        | 0x0C00_8040 => Reason::NozzleClog,
        _ if matches!(pe & 0xFF00_FFFF, 0x0700_8007 | 0x1800_8007) => Reason::NozzleClog,
        0x0300_800C => Reason::LayerShift,
        0x0300_8003 => Reason::Spaghetti,
        _ => return None,
    };
    Some(found(reason, format!("pe:{}", code(pe))))
}

/// A Bambu HMS alert the table maps.
pub fn hms_reason(hms: Hms) -> Option<Classified> {
    let module = hms.attr >> 24;
    let part = (hms.attr >> 8) & 0xFF;
    let severity = hms.code >> 16;
    let ams = matches!(module, 0x07 | 0x12 | 0x18);
    let slot_part = (0x20..=0x23).contains(&part);
    let rule = |name: &str| format!("hms:{name}:{}", hms.display_code());
    let (reason, name) = if hms.attr == 0x0300_4100 && hms.code == 0x0001_0001 {
        (Reason::PowerFailure, "power")
    } else if module == 0x03
        && matches!(part, 0x01 | 0x02 | 0x1E | 0x91 | 0x92 | 0x93)
        && (hms.attr >> 16) & 0xFF == 0
        && severity == 1
    {
        (Reason::Overheating, "heater")
    } else if (matches!(hms.attr, 0x0300_A100 | 0x0300_A200 | 0x0300_A400) && severity == 1)
        || (hms.attr == 0x0300_0500 && hms.code == 0x0001_0001)
    {
        (Reason::Overheating, "too_hot")
    } else if (ams && slot_part && matches!(hms.code, 0x0002_0001 | 0x0002_0005))
        || (matches!(module, 0x07 | 0x18) && part == 0x70 && hms.code == 0x0002_0007)
    {
        (Reason::FilamentRunout, "runout")
    } else if (hms.attr == 0x0C00_0300 && matches!(hms.code, 0x0002_000E | 0x0003_0010))
        || (hms.attr == 0x0300_0900 && matches!(hms.code, 0x0002_0001..=0x0002_0003))
        || (matches!(module, 0x07 | 0x18) && part == 0x70 && hms.code == 0x0002_0003)
        || (matches!(module, 0x07 | 0x18) && slot_part && hms.code == 0x0002_0009)
        || (module == 0x12 && slot_part && hms.code == 0x0002_0006)
    {
        (Reason::NozzleClog, "clog")
    } else if hms.attr == 0x0C00_0300 && hms.code == 0x0003_0007 {
        (Reason::FirstLayerAdhesion, "first_layer")
    } else if hms.attr == 0x0C00_0300 && hms.code == 0x0003_0008 {
        (Reason::Spaghetti, "spaghetti")
    } else {
        return None;
    };
    Some(found(reason, rule(name)))
}

/// Klippy's words the table maps (case-insensitive substrings).
pub fn klipper_message(message: &str) -> Option<Classified> {
    let lower = message.to_lowercase();
    let rules: [(&str, Reason, &str); 5] = [
        ("shutdown due to webhooks request", Reason::UserCancelled, "klipper:estop"),
        ("shutdown due to m112 command", Reason::UserCancelled, "klipper:estop"),
        ("not heating at expected rate", Reason::Overheating, "klipper:heater"),
        ("adc out of range", Reason::Overheating, "klipper:heater"),
        ("thermocouple reader fault", Reason::Overheating, "klipper:heater"),
    ];
    rules
        .into_iter()
        .find(|(needle, ..)| lower.contains(needle))
        .map(|(_, reason, rule)| found(reason, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hms(text: &str) -> [u32; 2] {
        let hex: String = text.chars().filter(|c| *c != '_').collect();
        let n = u64::from_str_radix(&hex, 16).unwrap();
        [(n >> 32) as u32, n as u32]
    }

    fn reason(ending: Ending, evidence: &Evidence) -> Option<Reason> {
        classify(ending, evidence).map(|c| c.reason)
    }

    #[test]
    fn every_reason_has_a_name_that_parses_back() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(Reason::parse("gremlins"), None);
    }

    #[test]
    fn a_finished_print_has_no_reason_whatever_was_seen() {
        let evidence = Evidence { hms: vec![hms("0C00_0300_0003_0007")], ..Evidence::default() };
        assert_eq!(classify(Ending::Success, &evidence), None);
    }

    #[test]
    fn a_cancel_is_the_users_unless_the_printer_had_paused_for_a_cause() {
        let plain = Evidence { print_errors: vec![0x0300_400C], ..Evidence::default() };
        let got = classify(Ending::Cancelled, &plain).unwrap();
        assert_eq!((got.reason, got.rule.as_str()), (Reason::UserCancelled, "pe:0300_400C"));
        assert_eq!(reason(Ending::Failed, &plain), Some(Reason::UserCancelled));
        // Paused for a runout (stage 6, HMS and print_error), then cancelled.
        let mut runout = Evidence::default();
        runout.observe(&PrinterEventKind::HmsRaised(Hms { attr: 0x0700_2000, code: 0x0002_0001 }));
        runout.observe(&PrinterEventKind::PrintErrorRaised { code: 0x0700_8011 });
        runout.observe(&PrinterEventKind::JobPaused { reason: Some(6) });
        runout.observe(&PrinterEventKind::PrintErrorRaised { code: 0x0300_400C });
        assert_eq!(reason(Ending::Cancelled, &runout), Some(Reason::FilamentRunout));
        // Resumed first: the cancel came later, for the person's own reasons.
        runout.observe(&PrinterEventKind::JobResumed);
        runout.observe(&PrinterEventKind::PrintErrorCleared { code: 0x0700_8011 });
        assert_eq!(reason(Ending::Cancelled, &runout), Some(Reason::UserCancelled));
        // A user's own pause (stage 16) then a cancel: the user's.
        let user = Evidence { open_pause: Some(Some(16)), ..Evidence::default() };
        assert_eq!(reason(Ending::Cancelled, &user), Some(Reason::UserCancelled));
    }

    #[test]
    fn a_klipper_print_paused_with_an_empty_sensor_then_cancelled_ran_out() {
        let evidence =
            Evidence { open_pause: Some(None), runout_seen: true, ..Evidence::default() };
        let got = classify(Ending::Cancelled, &evidence).unwrap();
        assert_eq!((got.reason, got.rule.as_str()), (Reason::FilamentRunout, "sensor:runout"));
    }

    #[test]
    fn a_failure_takes_the_root_cause_among_its_signals() {
        let spaghetti = Evidence {
            print_errors: vec![0x0300_8003],
            hms: vec![hms("0C00_0300_0003_0008")],
            ..Evidence::default()
        };
        assert_eq!(reason(Ending::Failed, &spaghetti), Some(Reason::Spaghetti));
        let clog_then_spaghetti = Evidence {
            hms: vec![hms("0C00_0300_0003_0008"), hms("0300_0900_0002_0002")],
            ..Evidence::default()
        };
        assert_eq!(reason(Ending::Failed, &clog_then_spaghetti), Some(Reason::NozzleClog));
        let power =
            Evidence { print_errors: vec![0x0300_800C, 0x0300_8007], ..Evidence::default() };
        assert_eq!(reason(Ending::Failed, &power), Some(Reason::PowerFailure));
    }

    #[test]
    fn the_bambu_rows_map_as_the_table_says() {
        let cases: [(u32, Reason); 10] = [
            (0x0700_8011, Reason::FilamentRunout),
            (0x07FF_8011, Reason::FilamentRunout),
            (0x1801_8011, Reason::FilamentRunout),
            (0x0300_4006, Reason::NozzleClog),
            (0x0702_8007, Reason::NozzleClog),
            (0x0300_800C, Reason::LayerShift),
            (0x0300_8009, Reason::Overheating),
            (0x0300_400D, Reason::PowerFailure),
            (0x0300_8003, Reason::Spaghetti),
            (0x0500_400E, Reason::UserCancelled),
        ];
        for (pe, want) in cases {
            assert_eq!(print_error_reason(pe).map(|c| c.reason), Some(want), "{}", code(pe));
        }
        assert_eq!(print_error_reason(0x0300_8014), None, "two causes: left to a person");
        let hms_cases: [(&str, Option<Reason>); 9] = [
            ("0701_2000_0002_0001", Some(Reason::FilamentRunout)),
            ("1200_2000_0002_0005", Some(Reason::FilamentRunout)),
            ("0702_7000_0002_0007", Some(Reason::FilamentRunout)),
            ("0701_2000_0003_0002", None),
            ("0C00_0300_0002_000E", Some(Reason::NozzleClog)),
            ("0C00_0300_0003_0007", Some(Reason::FirstLayerAdhesion)),
            ("0300_0100_0001_0003", Some(Reason::Overheating)),
            ("0300_4100_0001_0001", Some(Reason::PowerFailure)),
            ("0500_0500_0001_0007", None),
        ];
        for (text, want) in hms_cases {
            let [attr, code] = hms(text);
            assert_eq!(hms_reason(Hms { attr, code }).map(|c| c.reason), want, "{text}");
        }
        for (stage, want) in [
            (6, Some(Reason::FilamentRunout)),
            (35, Some(Reason::NozzleClog)),
            (16, None),
            (0, None),
        ] {
            assert_eq!(stage_reason(stage), want, "stage {stage}");
        }
    }

    #[test]
    fn an_unexplained_failure_is_other_and_only_a_person_says_warping() {
        let only_auto_switch =
            Evidence { hms: vec![hms("0701_2000_0003_0002")], ..Evidence::default() };
        let got = classify(Ending::Failed, &only_auto_switch).unwrap();
        assert_eq!((got.reason, got.rule.as_str()), (Reason::Other, "other"));
        let any = Evidence {
            print_errors: (0..=0xFFFF).step_by(97).map(|n| 0x0300_0000 | n).collect(),
            ..Evidence::default()
        };
        let got = reason(Ending::Failed, &any).unwrap();
        assert!(![Reason::Warping, Reason::Stringing, Reason::SupportFailure].contains(&got));
    }

    #[test]
    fn klippys_words_map_case_insensitively() {
        let heater = Evidence {
            messages: vec![
                "Heater extruder not heating at expected rate\nSee the 'verify_heater'".into(),
            ],
            ..Evidence::default()
        };
        let got = classify(Ending::Failed, &heater).unwrap();
        assert_eq!((got.reason, got.rule.as_str()), (Reason::Overheating, "klipper:heater"));
        let estop = Evidence {
            messages: vec!["Shutdown due to webhooks request".into()],
            ..Evidence::default()
        };
        assert_eq!(reason(Ending::Failed, &estop), Some(Reason::UserCancelled));
        let gcode = Evidence {
            messages: vec!["Move out of range: 250.000 -10.000 0.600 [1234.567]".into()],
            ..Evidence::default()
        };
        assert_eq!(reason(Ending::Failed, &gcode), Some(Reason::Other));
        let mcu = Evidence {
            messages: vec!["Lost communication with MCU 'mcu'".into()],
            ..Evidence::default()
        };
        assert_eq!(reason(Ending::Failed, &mcu), Some(Reason::Other));
    }

    #[test]
    fn evidence_keeps_each_code_once_and_is_bounded() {
        let mut evidence = Evidence::default();
        for _ in 0..3 {
            evidence.observe(&PrinterEventKind::PrintErrorRaised { code: 7 });
        }
        for n in 0..1000 {
            evidence.observe(&PrinterEventKind::Fault { message: format!("m{n}") });
            evidence.observe(&PrinterEventKind::HmsRaised(Hms { attr: n, code: n }));
        }
        assert_eq!(evidence.print_errors, vec![7]);
        assert_eq!(evidence.messages.len(), MAX_MESSAGES);
        assert_eq!(evidence.hms.len(), MAX_CODES);
        let back: Evidence =
            serde_json::from_value(serde_json::to_value(&evidence).unwrap()).unwrap();
        assert_eq!(back, evidence);
    }
}
