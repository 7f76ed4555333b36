//! What a print used, pure: per slot, the grams the sliced file planned (through the job's
//! slot → tray mapping), scaled to the part of the print made; the price of those grams; the
//! energy of its hours.

use crate::queue::matching::{Mapped, TrayRef};

/// Filament one of a printer's slots gave a print.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotUsage {
    pub tray: TrayRef,
    pub grams: f64,
    /// Millimetres, when the source gave a length rather than a weight (converted to
    /// grams with the spool's filament once the spool is known).
    pub length_mm: Option<f64>,
    pub material: Option<String>,
    /// `#RRGGBB`.
    pub color: Option<String>,
}

/// How much of a print was made, 0–1: all of a finished one; of one that stopped, the
/// printer's progress, else its layers; `None` when the printer gave neither.
pub fn fraction_made(
    finished: bool,
    progress_percent: Option<u8>,
    layer: Option<u32>,
    total_layers: Option<u32>,
) -> Option<f64> {
    if finished {
        return Some(1.0);
    }
    if let Some(percent) = progress_percent {
        return Some((f64::from(percent) / 100.0).clamp(0.0, 1.0));
    }
    match (layer, total_layers) {
        (Some(layer), Some(total)) if total > 0 => {
            Some((f64::from(layer) / f64::from(total)).clamp(0.0, 1.0))
        }
        _ => None,
    }
}

/// The file's planned filament per tray, through `mapping`, times `fraction`. Slicer slots
/// mapped to one tray add up. A plate that names one filament without its grams takes the
/// plate's weight; a slot with neither grams nor metres is left out (nothing to deduct).
pub fn planned(plate: &printfile::Plate, mapping: &[Mapped], fraction: f64) -> Vec<SlotUsage> {
    let mut out: Vec<SlotUsage> = Vec::new();
    let only = plate.filaments.len() == 1;
    for filament in &plate.filaments {
        let Some(mapped) = mapping.iter().find(|m| m.slot == filament.slot) else { continue };
        let grams = filament.grams.or(if only { plate.weight_g } else { None });
        let (grams, length_mm) = match (grams, filament.meters) {
            (Some(grams), _) => (grams * fraction, None),
            (None, Some(meters)) => (0.0, Some(meters * 1000.0 * fraction)),
            (None, None) => continue,
        };
        match out.iter_mut().find(|u| u.tray == mapped.tray) {
            Some(usage) => {
                usage.grams += grams;
                usage.length_mm = match (usage.length_mm, length_mm) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            None => out.push(SlotUsage {
                tray: mapped.tray,
                grams,
                length_mm,
                material: filament.material.clone(),
                color: filament.color.as_ref().map(|c| c.chars().take(7).collect()),
            }),
        }
    }
    out
}

/// The price of `grams` of a spool: its own price over its initial weight, else its
/// filament's price over a full spool's weight; `None` when neither is known.
pub fn filament_cost(
    grams: f64,
    spool_price: Option<f64>,
    spool_initial: Option<f64>,
    filament_price: Option<f64>,
    filament_weight: Option<f64>,
) -> Option<f64> {
    let per_gram = |price: Option<f64>, weight: Option<f64>| match (price, weight) {
        (Some(price), Some(weight)) if weight > 0.0 => Some(price / weight),
        _ => None,
    };
    per_gram(spool_price, spool_initial)
        .or_else(|| per_gram(filament_price, filament_weight))
        .map(|per_gram| per_gram * grams)
}

/// kWh a printer drawing `watts` on average uses in `seconds`.
pub fn energy_kwh(watts: f64, seconds: f64) -> f64 {
    watts * seconds / 3_600_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filament(slot: u32, grams: Option<f64>, meters: Option<f64>) -> printfile::Filament {
        printfile::Filament {
            slot,
            material: Some("PLA".into()),
            color: Some("#FF0000FF".into()),
            grams,
            meters,
            profile_id: None,
        }
    }

    fn plate(filaments: Vec<printfile::Filament>, weight_g: Option<f64>) -> printfile::Plate {
        printfile::Plate {
            index: 1,
            gcode_entry: None,
            gcode_bytes: 0,
            gcode_md5: None,
            estimated_s: None,
            weight_g,
            layers: None,
            filaments,
            objects: Vec::new(),
            thumbnail: None,
        }
    }

    fn mapped(slot: u32, tray: TrayRef) -> Mapped {
        Mapped { slot, tray, distance: 0.0 }
    }

    #[test]
    fn a_finished_print_uses_all_and_a_stopped_one_its_progress_else_its_layers() {
        assert_eq!(fraction_made(true, Some(40), Some(2), Some(10)), Some(1.0));
        assert_eq!(fraction_made(false, Some(40), Some(2), Some(10)), Some(0.4));
        assert_eq!(fraction_made(false, None, Some(2), Some(10)), Some(0.2));
        assert_eq!(fraction_made(false, None, Some(2), Some(0)), None);
        assert_eq!(fraction_made(false, None, None, None), None);
        assert_eq!(fraction_made(false, Some(250), None, None), Some(1.0));
    }

    #[test]
    fn slots_map_to_trays_scale_with_the_fraction_and_two_slots_on_one_tray_add_up() {
        let t0 = TrayRef::Unit { unit: 0, slot: 0 };
        let t2 = TrayRef::Unit { unit: 0, slot: 2 };
        let plate = plate(
            vec![
                filament(1, Some(10.0), None),
                filament(3, Some(4.0), None),
                filament(4, Some(6.0), None),
            ],
            Some(20.0),
        );
        let usage = planned(&plate, &[mapped(1, t0), mapped(3, t2), mapped(4, t2)], 0.5);
        assert_eq!(usage.len(), 2);
        assert_eq!((usage[0].tray, usage[0].grams), (t0, 5.0));
        assert_eq!((usage[1].tray, usage[1].grams), (t2, 5.0));
        assert_eq!(usage[0].color.as_deref(), Some("#FF0000"));
    }

    #[test]
    fn one_filament_without_grams_takes_the_plates_weight_and_metres_stay_a_length() {
        let ext = TrayRef::External;
        let usage =
            planned(&plate(vec![filament(1, None, None)], Some(12.5)), &[mapped(1, ext)], 1.0);
        assert_eq!(usage[0].grams, 12.5);
        let two = plate(vec![filament(1, None, Some(2.0)), filament(2, None, None)], Some(9.0));
        let usage =
            planned(&two, &[mapped(1, ext), mapped(2, TrayRef::Unit { unit: 0, slot: 1 })], 0.5);
        assert_eq!(usage.len(), 1, "a slot with nothing known is left out");
        assert_eq!(usage[0].length_mm, Some(1000.0));
    }

    #[test]
    fn cost_prefers_the_spools_own_price_and_energy_is_watts_times_hours() {
        assert_eq!(
            filament_cost(100.0, Some(30.0), Some(1000.0), Some(20.0), Some(1000.0)),
            Some(3.0)
        );
        assert_eq!(filament_cost(100.0, None, Some(1000.0), Some(20.0), Some(1000.0)), Some(2.0));
        assert_eq!(filament_cost(100.0, None, None, Some(20.0), None), None);
        assert_eq!(energy_kwh(150.0, 7200.0), 0.3);
    }
}
