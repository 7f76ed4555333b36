//! Inventory, pure: Spoolman's data model (vendors, filaments, spools), the arithmetic of
//! weights and lengths, and the list queries of Spoolman's API (filters, sorting, paging).
//! No I/O: `db::inventory` stores these rows, `service::inventory` owns the behaviour,
//! `api::spoolman` is Spoolman's HTTP door. Spoolman's behaviour, with sources, is written
//! down in `docs/research/spoolman.md`.

pub mod query;
pub mod render;
pub mod usage;

use std::collections::BTreeMap;

/// User-defined extra fields: key → a JSON text (Spoolman's convention: an integer field's
/// value travels as `"42"`, a text field's as `"\"abc\""`).
pub type Extra = BTreeMap<String, String>;

/// A filament maker.
#[derive(Debug, Clone, PartialEq)]
pub struct Vendor {
    pub id: i64,
    /// Unix ms.
    pub registered: i64,
    pub name: String,
    pub comment: Option<String>,
    /// Grams of one of its empty spools.
    pub empty_spool_weight: Option<f64>,
    pub external_id: Option<String>,
    pub extra: Extra,
}

/// A kind of filament: a product of a vendor in one material and colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Filament {
    pub id: i64,
    pub registered: i64,
    pub name: Option<String>,
    pub vendor_id: Option<i64>,
    pub material: Option<String>,
    /// Of one full spool.
    pub price: Option<f64>,
    /// g/cm³.
    pub density: f64,
    /// mm.
    pub diameter: f64,
    /// Net filament of a full spool, g.
    pub weight: Option<f64>,
    /// The empty spool, g.
    pub spool_weight: Option<f64>,
    pub article_number: Option<String>,
    pub comment: Option<String>,
    pub settings_extruder_temp: Option<i64>,
    pub settings_bed_temp: Option<i64>,
    /// `RRGGBB` or `RRGGBBAA`, no `#`.
    pub color_hex: Option<String>,
    /// Comma-separated hexes of a multi-colour filament.
    pub multi_color_hexes: Option<String>,
    /// `coaxial` or `longitudinal`.
    pub multi_color_direction: Option<String>,
    pub external_id: Option<String>,
    pub extra: Extra,
}

/// One physical spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Spool {
    pub id: i64,
    pub registered: i64,
    pub first_used: Option<i64>,
    pub last_used: Option<i64>,
    pub filament_id: i64,
    pub price: Option<f64>,
    /// Net filament when new, g.
    pub initial_weight: Option<f64>,
    /// The empty spool, g.
    pub spool_weight: Option<f64>,
    /// Filament used, g; never below 0.
    pub used_weight: f64,
    pub location: Option<String>,
    pub lot_nr: Option<String>,
    pub comment: Option<String>,
    pub archived: bool,
    pub extra: Extra,
    /// The spool's RFID identity (Bambu's `tray_uuid`), when a printer read its tag.
    pub rfid: Option<String>,
}

/// Millimetres of filament of `diameter` mm and `density` g/cm³ that weigh `grams`.
pub fn length_from_weight(grams: f64, diameter: f64, density: f64) -> f64 {
    let area_mm2 = std::f64::consts::PI * (diameter / 2.0).powi(2);
    // g / (g/cm³) = cm³; × 1000 = mm³; / mm² = mm.
    grams / density * 1000.0 / area_mm2
}

/// Grams of `millimetres` of filament of `diameter` mm and `density` g/cm³.
pub fn weight_from_length(millimetres: f64, diameter: f64, density: f64) -> f64 {
    let area_mm2 = std::f64::consts::PI * (diameter / 2.0).powi(2);
    millimetres * area_mm2 / 1000.0 * density
}

/// The three kinds of entity, as Spoolman names them in paths and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Vendor,
    Filament,
    Spool,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Vendor => "vendor",
            Entity::Filament => "filament",
            Entity::Spool => "spool",
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        match name {
            "vendor" => Some(Entity::Vendor),
            "filament" => Some(Entity::Filament),
            "spool" => Some(Entity::Spool),
            _ => None,
        }
    }
}

/// What happened to an entity, for the websockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// A change, as the websockets send it. It travels through the cluster's log as it is, so
/// that a Spoolman client on any replica hears it (a deleted entity cannot be read again).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub entity: Entity,
    pub id: i64,
    /// The whole entity, nulls included.
    pub payload: serde_json::Value,
    /// When, as Spoolman writes it (with microseconds).
    pub date: String,
}

impl Change {
    pub fn message(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind.as_str(),
            "resource": self.entity.as_str(),
            "date": self.date,
            "payload": self.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metre_of_pla_weighs_about_three_grams_and_converts_back() {
        // 1.75 mm PLA at 1.24 g/cm³: 2.405 mm² × 1000 mm = 2405 mm³ = 2.98 g.
        let grams = weight_from_length(1000.0, 1.75, 1.24);
        assert!((grams - 2.9825).abs() < 0.001, "{grams}");
        let back = length_from_weight(grams, 1.75, 1.24);
        assert!((back - 1000.0).abs() < 1e-9, "{back}");
    }
}
