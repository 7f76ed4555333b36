//! Which loaded filament serves which of a plate's slots: materials by name, colours by
//! their distance in CIELAB (CIE76 ΔE: about 2.3 is the smallest difference a person sees;
//! the default tolerance, [`DEFAULT_TOLERANCE`], accepts "the same colour from another
//! maker" and refuses "another colour"). Pure.

use serde::{Deserialize, Serialize};

/// ΔE within which two colours are the same colour for a print.
pub const DEFAULT_TOLERANCE: f64 = 20.0;

/// A colour, 8 bits a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#RRGGBB`, `RRGGBB`, `#RRGGBBAA` (Bambu's AMS writes the alpha); `None` otherwise.
    pub fn parse(text: &str) -> Option<Rgb> {
        let hex = text.trim().trim_start_matches('#');
        if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Rgb(channel(0)?, channel(2)?, channel(4)?))
    }

    pub fn hex(self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.0, self.1, self.2)
    }

    /// CIELAB under D65.
    pub fn lab(self) -> Lab {
        let [l, a, b] = proto::Rgb([self.0, self.1, self.2]).lab();
        Lab(l, a, b)
    }

    /// CIE76 ΔE between two colours.
    pub fn distance(self, other: Rgb) -> f64 {
        self.lab().distance(other.lab())
    }
}

/// A colour in CIELAB, where distance is what a person sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lab(f64, f64, f64);

impl Lab {
    /// CIE76 ΔE.
    pub fn distance(self, other: Lab) -> f64 {
        self.squared_distance(other).sqrt()
    }

    fn squared_distance(self, other: Lab) -> f64 {
        let (l, a, b) = (self.0 - other.0, self.1 - other.1, self.2 - other.2);
        l * l + a * a + b * b
    }
}

/// What a plate's slot needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    /// The slicer's slot, 1-based.
    pub slot: u32,
    /// `PLA`, `PETG`; `None`: any material.
    pub material: Option<String>,
    /// `None`: any colour.
    pub color: Option<Rgb>,
}

impl Need {
    pub fn describe(&self) -> String {
        let material = self.material.as_deref().unwrap_or("any material");
        match self.color {
            Some(color) => format!("{material} {}", color.hex()),
            None => material.to_owned(),
        }
    }
}

/// Where a filament is loaded: an AMS unit's slot, or the spool outside any unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TrayRef {
    Unit { unit: u8, slot: u8 },
    External,
}

impl TrayRef {
    /// Bambu's global tray number for `ams_mapping`: unit × 4 + slot, 254 for the external
    /// spool.
    pub fn bambu_index(self) -> i32 {
        match self {
            TrayRef::Unit { unit, slot } => i32::from(unit) * 4 + i32::from(slot),
            TrayRef::External => 254,
        }
    }
}

/// A loaded filament.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tray {
    pub at: TrayRef,
    /// `None`: the tray is empty (or its material unknown), which serves no need.
    pub material: Option<String>,
    pub color: Option<Rgb>,
}

/// One slot's filament.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mapped {
    pub slot: u32,
    pub tray: TrayRef,
    /// ΔE from the colour asked for (0 when none was).
    pub distance: f64,
}

/// Maps every need onto a loaded tray (two slots may share one), each to the closest colour
/// of its material within `tolerance`. `Err` lists the needs nothing serves.
pub fn map_slots(needs: &[Need], trays: &[Tray], tolerance: f64) -> Result<Vec<Mapped>, Vec<Need>> {
    map_prepared(&prepare_needs(needs), &prepare_trays(trays), tolerance)
        .map_err(|missing| missing.into_iter().map(|i| needs[i].clone()).collect())
}

/// A need with its material's canonical name and its colour in CIELAB, computed once.
#[derive(Debug, Clone)]
pub struct PreparedNeed {
    slot: u32,
    material: Option<String>,
    lab: Option<Lab>,
}

/// A tray, prepared the same way.
#[derive(Debug, Clone)]
pub struct PreparedTray {
    at: TrayRef,
    material: Option<String>,
    lab: Option<Lab>,
    has_color: bool,
}

pub fn prepare_needs(needs: &[Need]) -> Vec<PreparedNeed> {
    needs
        .iter()
        .map(|n| PreparedNeed {
            slot: n.slot,
            material: n.material.as_deref().map(canonical_material),
            lab: n.color.map(Rgb::lab),
        })
        .collect()
}

pub fn prepare_trays(trays: &[Tray]) -> Vec<PreparedTray> {
    trays
        .iter()
        .map(|t| PreparedTray {
            at: t.at,
            material: t.material.as_deref().map(canonical_material),
            lab: t.color.map(Rgb::lab),
            has_color: t.color.is_some(),
        })
        .collect()
}

/// [`map_slots`] over prepared values; `Err` holds the indices of the needs nothing serves.
pub fn map_prepared(
    needs: &[PreparedNeed],
    trays: &[PreparedTray],
    tolerance: f64,
) -> Result<Vec<Mapped>, Vec<usize>> {
    let mut mapped = Vec::with_capacity(needs.len());
    let mut missing = Vec::new();
    for (i, need) in needs.iter().enumerate() {
        match closest(need, trays, tolerance) {
            Some((distance, tray)) => mapped.push(Mapped { slot: need.slot, tray, distance }),
            None => missing.push(i),
        }
    }
    if missing.is_empty() { Ok(mapped) } else { Err(missing) }
}

/// Like [`map_prepared`], for a caller that only needs the mapping if there is one: stops
/// at the first need nothing serves.
pub fn try_map_prepared(
    needs: &[PreparedNeed],
    trays: &[PreparedTray],
    tolerance: f64,
) -> Option<Vec<Mapped>> {
    needs
        .iter()
        .map(|need| {
            closest(need, trays, tolerance).map(|(distance, tray)| Mapped {
                slot: need.slot,
                tray,
                distance,
            })
        })
        .collect()
}

/// The tray closest in colour to `need` among those of its material, within `tolerance`:
/// (ΔE, tray). Compares squared distances; the root is taken once, for the one chosen.
fn closest(need: &PreparedNeed, trays: &[PreparedTray], tolerance: f64) -> Option<(f64, TrayRef)> {
    let limit = tolerance * tolerance;
    let mut best: Option<(f64, TrayRef)> = None;
    for tray in trays {
        let Some(material) = &tray.material else { continue };
        if need.material.as_ref().is_some_and(|wanted| wanted != material) {
            continue;
        }
        let squared = match (need.lab, tray.lab) {
            (None, _) => 0.0,
            (Some(wanted), Some(loaded)) if tray.has_color => wanted.squared_distance(loaded),
            _ => continue,
        };
        if squared > limit {
            continue;
        }
        if best.is_none_or(|(d, at)| squared < d || (squared == d && tray.at < at)) {
            best = Some((squared, tray.at));
        }
    }
    best.map(|(squared, at)| (squared.sqrt(), at))
}

/// A material's name as compared: case, spaces and underscores aside (`pla`, `PLA`;
/// `PLA CF`, `PLA-CF`).
fn canonical_material(name: &str) -> String {
    name.trim().to_ascii_uppercase().replace([' ', '_'], "-")
}

/// Material names as slicers and printers write them: case and spacing aside, equal.
pub fn same_material(a: &str, b: &str) -> bool {
    canonical_material(a) == canonical_material(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tray(unit: u8, slot: u8, material: &str, color: &str) -> Tray {
        Tray {
            at: TrayRef::Unit { unit, slot },
            material: (!material.is_empty()).then(|| material.to_owned()),
            color: Rgb::parse(color),
        }
    }

    fn need(slot: u32, material: &str, color: &str) -> Need {
        Need { slot, material: Some(material.to_owned()), color: Rgb::parse(color) }
    }

    #[test]
    fn colours_parse_and_measure() {
        assert_eq!(Rgb::parse("#FF6A13"), Some(Rgb(255, 106, 19)));
        assert_eq!(Rgb::parse("FF6A13FF"), Some(Rgb(255, 106, 19)));
        assert_eq!(Rgb::parse("#F00"), None);
        assert_eq!(Rgb::parse("orange"), None);
        let white = Rgb(255, 255, 255);
        assert!(white.distance(white) < 1e-9);
        assert!(white.distance(Rgb(250, 250, 250)) < 3.0, "near-white is the same white");
        assert!(white.distance(Rgb(0, 0, 0)) > 99.0);
        // Bambu's orange against a slicer's slightly different orange, and against red.
        assert!(Rgb(255, 106, 19).distance(Rgb(245, 110, 30)) < DEFAULT_TOLERANCE);
        assert!(Rgb(255, 106, 19).distance(Rgb(200, 20, 20)) > DEFAULT_TOLERANCE);
    }

    #[test]
    fn each_slot_gets_the_closest_colour_of_its_material() {
        let trays = [
            tray(0, 0, "PLA", "#FFFFFF"),
            tray(0, 1, "PETG", "#F46A1A"),
            tray(0, 2, "PETG", "#FF6A13"),
            tray(0, 3, "", ""),
            Tray {
                at: TrayRef::External,
                material: Some("PLA".into()),
                color: Rgb::parse("#000000"),
            },
        ];
        let mapped = map_slots(
            &[need(1, "pla", "#FFFFFF"), need(2, "PETG", "#FF6A13"), need(4, "PLA", "#050505")],
            &trays,
            DEFAULT_TOLERANCE,
        )
        .unwrap();
        let at: Vec<(u32, TrayRef)> = mapped.iter().map(|m| (m.slot, m.tray)).collect();
        assert_eq!(
            at,
            vec![
                (1, TrayRef::Unit { unit: 0, slot: 0 }),
                (2, TrayRef::Unit { unit: 0, slot: 2 }),
                (4, TrayRef::External)
            ]
        );
        assert_eq!(TrayRef::Unit { unit: 1, slot: 2 }.bambu_index(), 6);
        assert_eq!(TrayRef::External.bambu_index(), 254);
    }

    #[test]
    fn what_is_not_loaded_is_named() {
        let trays = [tray(0, 0, "PLA", "#FFFFFF"), tray(0, 1, "PLA", "#C80000")];
        let missing = map_slots(
            &[need(1, "PLA", "#FFFFFF"), need(2, "PETG", "#FFFFFF"), need(3, "PLA", "#0000FF")],
            &trays,
            DEFAULT_TOLERANCE,
        )
        .unwrap_err();
        let slots: Vec<u32> = missing.iter().map(|n| n.slot).collect();
        assert_eq!(slots, vec![2, 3]);
        assert_eq!(missing[0].describe(), "PETG #FFFFFF");
        // Any colour, any material.
        let any = Need { slot: 1, material: None, color: None };
        assert!(map_slots(&[any], &trays, 0.0).is_ok());
        // An empty tray serves nothing.
        assert!(
            map_slots(
                &[Need { slot: 1, material: None, color: None }],
                &[tray(0, 0, "", "")],
                100.0
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn distance_is_a_metric(a in proptest::prelude::any::<(u8, u8, u8)>(), b in proptest::prelude::any::<(u8, u8, u8)>()) {
            let (a, b) = (Rgb(a.0, a.1, a.2), Rgb(b.0, b.1, b.2));
            proptest::prop_assert!((a.distance(b) - b.distance(a)).abs() < 1e-9);
            proptest::prop_assert!(a.distance(a) < 1e-9);
            proptest::prop_assert!(a.distance(b) >= 0.0);
        }
    }
}
