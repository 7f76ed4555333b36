//! Sliced 3MF archives, as Bambu Studio and OrcaSlicer write them (`.gcode.3mf`, or
//! `.3mf` when exported with the plates sliced):
//!
//! - `Metadata/plate_N.gcode`: plate N's G-code; `Metadata/plate_N.gcode.md5` its MD5 in hex;
//! - `Metadata/slice_info.config` (XML): per `<plate>`, `<metadata key value>` pairs
//!   (`index`, `printer_model_id`, `nozzle_diameters`, `prediction` in seconds, `weight` in
//!   grams), `<object name>` and `<filament id type color used_m used_g tray_info_idx>`,
//!   plus a `<header>` naming the slicer (`X-BBL-Client-Type`, `X-BBL-Client-Version`);
//! - `Metadata/project_settings.config` (JSON): `printer_model`, `nozzle_diameter`,
//!   `curr_bed_type`, per-filament `filament_type` and `filament_colour`;
//! - pictures: `Metadata/plate_N.png` (the plate), `plate_no_light_N.png`, `top_N.png`,
//!   `Metadata/thumbnail.png` (the package's own); `pick_N.png` is a colour-coded object
//!   map for the slicer, not a picture, and `plate_N_small.png` a copy, so neither is kept.
//!
//! Plates are whatever the archive holds G-code for: numbers need not start at 1 (a file
//! exported from plate 3 alone holds `plate_3.gcode`), and filament ids have gaps (a
//! plate may use filaments 1 and 4). A plate listed in `slice_info.config` without G-code
//! was not sliced and is left out; an archive with no G-code at all (an unsliced project)
//! is refused. Every plate's G-code is streamed through once: that checks its CRC, counts
//! its bytes, computes the MD5 a Bambu printer is told, checks it against the archive's own
//! `.md5` entry, and reads its header comments, which fill in what the XML leaves out.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use md5::Digest;
use quick_xml::events::{BytesStart, Event};

use crate::archive::{Archive, Entry};
use crate::gcode::Comments;
use crate::{
    Filament, FileError, FileKind, Limits, Plate, PrintFile, Slicer, Thumbnail, normalize_color,
};

pub fn read<R: Read + Seek>(reader: R, limits: &Limits) -> Result<PrintFile, FileError> {
    let mut archive = Archive::open(reader, limits)?;
    let entries: Vec<Entry> = archive.entries().to_vec();

    let mut gcode: BTreeMap<u32, Entry> = BTreeMap::new();
    for entry in &entries {
        if let Some(n) = plate_number(&entry.name, "Metadata/plate_", ".gcode") {
            gcode.insert(n, entry.clone());
        }
    }
    if gcode.is_empty() {
        let has_model = entries.iter().any(|e| e.name.to_ascii_lowercase().ends_with(".model"));
        return Err(FileError::NoGcode(if has_model {
            "this 3MF is a project with no sliced plates; slice it and export the plate \
             (\"Export plate sliced file\", .gcode.3mf)"
                .into()
        } else {
            "this archive has no G-code (no Metadata/plate_N.gcode entry)".into()
        }));
    }

    let info = match archive.find("Metadata/slice_info.config").cloned() {
        Some(entry) => match archive.read_small(&entry, limits.max_metadata)? {
            Some(xml) => slice_info(&xml)?,
            None => SliceInfo::default(),
        },
        None => SliceInfo::default(),
    };
    let settings = match archive.find("Metadata/project_settings.config").cloned() {
        Some(entry) => archive
            .read_small(&entry, limits.max_metadata)?
            .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
            .unwrap_or(serde_json::Value::Null),
        None => serde_json::Value::Null,
    };

    let mut thumbnails = Vec::new();
    let mut picture_of = BTreeMap::new();
    for entry in &entries {
        let Some((plate, main)) = picture(&entry.name) else { continue };
        if thumbnails.len() >= limits.max_thumbnails {
            break;
        }
        let Some(data) = archive.read_small(entry, limits.max_thumbnail)? else { continue };
        let Some((mime, width, height)) = image_kind(&data) else { continue };
        if main && let Some(plate) = plate {
            picture_of.insert(plate, thumbnails.len());
        }
        thumbnails.push(Thumbnail {
            name: entry.name.clone(),
            plate,
            width,
            height,
            mime: mime.into(),
            data,
        });
    }

    let mut plates = Vec::new();
    let mut first_comments: Option<Comments> = None;
    for (&index, entry) in &gcode {
        let mut md5 = md5::Md5::new();
        let mut head = Vec::new();
        let head_max = limits.gcode_head as usize;
        let bytes = archive.stream(entry, |chunk| {
            md5.update(chunk);
            if head.len() < head_max {
                head.extend_from_slice(&chunk[..chunk.len().min(head_max - head.len())]);
            }
            Ok(())
        })?;
        let md5 = hex::encode(md5.finalize());
        if let Some(listed) = archive.find(&format!("{}.md5", entry.name)).cloned()
            && let Some(text) = archive.read_small(&listed, 1024)?
        {
            let listed_md5 = String::from_utf8_lossy(&text).trim().to_ascii_lowercase();
            if !listed_md5.is_empty() && listed_md5 != md5 {
                return Err(FileError::Corrupt {
                    entry: entry.name.clone(),
                    detail: format!(
                        "its MD5 is {md5} but {} says {listed_md5}: the G-code was changed after slicing",
                        listed.name
                    ),
                });
            }
        }
        let mut comments = Comments::default();
        comments.scan(&head, limits);
        if !comments.saw_command && bytes > 0 {
            return Err(FileError::NoGcode(format!(
                "{} holds no G-code commands in its first {} KiB",
                entry.name,
                head.len() / 1024
            )));
        }
        let summary = comments.summary();
        let listed = info.plates.iter().find(|p| p.index == Some(index));
        let filaments = match listed {
            Some(p) if !p.filaments.is_empty() => p.filaments.clone(),
            _ => summary.filaments.clone(),
        };
        plates.push(Plate {
            index,
            gcode_entry: Some(entry.name.clone()),
            gcode_bytes: bytes,
            gcode_md5: Some(md5),
            estimated_s: listed.and_then(|p| p.prediction).or(summary.estimated_s),
            weight_g: listed.and_then(|p| p.weight).or(summary.weight_g),
            layers: summary.layers,
            filaments,
            objects: listed.map(|p| p.objects.clone()).unwrap_or_default(),
            thumbnail: picture_of.get(&index).copied(),
        });
        if first_comments.is_none() {
            first_comments = Some(comments);
        }
    }

    let gcode_summary = first_comments.map(|c| c.summary()).unwrap_or_default();
    let first_listed = info.plates.iter().find(|p| plates.iter().any(|q| Some(q.index) == p.index));
    let printer_model_id = first_listed.and_then(|p| p.printer_model_id.clone());
    let printer_model =
        json_str(&settings, "printer_model").or(gcode_summary.printer_model).or_else(|| {
            printer_model_id.as_deref().and_then(crate::models::bambu_name).map(str::to_owned)
        });
    let nozzle_diameter = first_listed
        .and_then(|p| p.nozzle_diameter)
        .or_else(|| json_str(&settings, "nozzle_diameter").and_then(|s| s.parse().ok()))
        .or(gcode_summary.nozzle_diameter);
    let bed_type = json_str(&settings, "curr_bed_type").or(gcode_summary.bed_type);
    // The G-code names its slicer whatever the XML header says (older OrcaSlicer files carry
    // only Bambu's items).
    let slicer = gcode_summary.slicer.or(info.slicer);
    Ok(PrintFile {
        kind: FileKind::Gcode3mf,
        slicer,
        printer_model,
        printer_model_id,
        nozzle_diameter,
        bed_type,
        plates,
        thumbnails,
    })
}

/// A string setting, or the first of a list of them (`["0.4"]`).
fn json_str(settings: &serde_json::Value, key: &str) -> Option<String> {
    let value = settings.get(key)?;
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.first()?.as_str()?.to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let text = text.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// `N` of `{prefix}N{suffix}`.
fn plate_number(name: &str, prefix: &str, suffix: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let rest = lower.strip_prefix(&prefix.to_ascii_lowercase())?;
    let digits = rest.strip_suffix(suffix)?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A picture entry worth keeping: (its plate, whether it is the plate's main picture).
fn picture(name: &str) -> Option<(Option<u32>, bool)> {
    if let Some(n) = plate_number(name, "Metadata/plate_", ".png") {
        return Some((Some(n), true));
    }
    for prefix in ["Metadata/plate_no_light_", "Metadata/top_"] {
        if let Some(n) = plate_number(name, prefix, ".png") {
            return Some((Some(n), false));
        }
    }
    name.eq_ignore_ascii_case("Metadata/thumbnail.png").then_some((None, false))
}

/// An image's type and size from its first bytes (PNG's IHDR, JPEG's SOF).
fn image_kind(data: &[u8]) -> Option<(&'static str, Option<u32>, Option<u32>)> {
    if data.len() >= 24 && data.starts_with(b"\x89PNG\r\n\x1a\n") {
        let width = u32::from_be_bytes(data[16..20].try_into().ok()?);
        let height = u32::from_be_bytes(data[20..24].try_into().ok()?);
        return Some(("image/png", Some(width), Some(height)));
    }
    if data.starts_with(&[0xff, 0xd8, 0xff]) {
        return Some(("image/jpeg", None, None));
    }
    None
}

#[derive(Debug, Default)]
struct SliceInfo {
    slicer: Option<Slicer>,
    plates: Vec<ListedPlate>,
}

#[derive(Debug, Default, Clone)]
struct ListedPlate {
    index: Option<u32>,
    printer_model_id: Option<String>,
    nozzle_diameter: Option<f64>,
    prediction: Option<u64>,
    weight: Option<f64>,
    objects: Vec<String>,
    filaments: Vec<Filament>,
}

/// Reads `slice_info.config`. Unknown elements and keys are ignored (each slicer version
/// adds some); XML that does not parse is an error, since the file was then damaged.
fn slice_info(xml: &[u8]) -> Result<SliceInfo, FileError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut info = SliceInfo::default();
    let mut header: BTreeMap<String, String> = BTreeMap::new();
    let mut plate: Option<ListedPlate> = None;
    let mut buffer = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buffer)
            .map_err(|e| FileError::Metadata(format!("slice_info.config: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let attrs = attributes(e)?;
                match e.local_name().as_ref() {
                    "plate" => plate = Some(ListedPlate::default()),
                    "header_item" => {
                        if let (Some(k), Some(v)) = (attrs.get("key"), attrs.get("value")) {
                            header.insert(k.clone(), v.clone());
                        }
                    }
                    "metadata" => {
                        if let (Some(p), Some(k), Some(v)) =
                            (plate.as_mut(), attrs.get("key"), attrs.get("value"))
                        {
                            let v = v.trim();
                            match k.as_str() {
                                "index" => p.index = v.parse().ok(),
                                "printer_model_id" => {
                                    p.printer_model_id = (!v.is_empty()).then(|| v.to_owned())
                                }
                                "nozzle_diameters" => {
                                    p.nozzle_diameter =
                                        v.split([',', ';', ' ']).next().and_then(|n| n.parse().ok())
                                }
                                "prediction" => {
                                    p.prediction = v
                                        .parse::<f64>()
                                        .ok()
                                        .filter(|s| s.is_finite() && *s >= 0.0)
                                        .map(|s| s.round() as u64)
                                }
                                "weight" => {
                                    p.weight = v.parse().ok().filter(|w: &f64| w.is_finite())
                                }
                                _ => {}
                            }
                        }
                    }
                    "object" => {
                        if let (Some(p), Some(name)) = (plate.as_mut(), attrs.get("name"))
                            && p.objects.len() < 1000
                        {
                            p.objects.push(name.clone());
                        }
                    }
                    "filament" => {
                        if let Some(p) = plate.as_mut()
                            && let Some(slot) =
                                attrs.get("id").and_then(|id| id.trim().parse().ok())
                            && p.filaments.len() < 64
                        {
                            let number = |key: &str| {
                                attrs
                                    .get(key)
                                    .and_then(|v| v.trim().parse::<f64>().ok())
                                    .filter(|n| n.is_finite())
                            };
                            p.filaments.push(Filament {
                                slot,
                                material: attrs
                                    .get("type")
                                    .map(|t| t.trim().to_owned())
                                    .filter(|t| !t.is_empty()),
                                color: attrs.get("color").and_then(|c| normalize_color(c)),
                                grams: number("used_g"),
                                meters: number("used_m"),
                                profile_id: attrs
                                    .get("tray_info_idx")
                                    .map(|t| t.trim().to_owned())
                                    .filter(|t| !t.is_empty()),
                            });
                        }
                    }
                    _ => {}
                }
                if matches!(event, Event::Empty(_))
                    && e.local_name().as_ref() == "plate"
                    && let Some(done) = plate.take()
                {
                    info.plates.push(done);
                }
            }
            Event::End(ref e) if e.local_name().as_ref() == "plate" => {
                if let Some(mut done) = plate.take() {
                    done.filaments.sort_by_key(|f| f.slot);
                    info.plates.push(done);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    // OrcaSlicer writes Bambu's two items and one of its own; Creality Print has its own.
    let version =
        |key: &str| header.get(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    info.slicer = if header.contains_key("OrcaSlicer-Version") {
        Some(Slicer { name: "OrcaSlicer".into(), version: version("OrcaSlicer-Version") })
    } else if header.get("X-BBL-Client-Type").is_some_and(|t| t == "slicer") {
        Some(Slicer { name: "Bambu Studio".into(), version: version("X-BBL-Client-Version") })
    } else if header.contains_key("X-CX-Client-Type") {
        Some(Slicer { name: "Creality Print".into(), version: version("X-CX-Client-Version") })
    } else {
        None
    };
    Ok(info)
}

fn attributes(e: &BytesStart<'_>) -> Result<BTreeMap<String, String>, FileError> {
    let mut map = BTreeMap::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| FileError::Metadata(format!("slice_info.config: {e}")))?;
        let key = attr.key.local_name().as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| FileError::Metadata(format!("slice_info.config: {e}")))?
            .into_owned();
        map.insert(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plate_numbers() {
        assert_eq!(plate_number("Metadata/plate_12.gcode", "Metadata/plate_", ".gcode"), Some(12));
        assert_eq!(plate_number("metadata/Plate_3.GCODE", "Metadata/plate_", ".gcode"), Some(3));
        assert_eq!(plate_number("Metadata/plate_1.gcode.md5", "Metadata/plate_", ".gcode"), None);
        assert_eq!(plate_number("Metadata/plate_.gcode", "Metadata/plate_", ".gcode"), None);
        assert_eq!(plate_number("Metadata/plate_no_light_1.png", "Metadata/plate_", ".png"), None);
        assert_eq!(picture("Metadata/pick_1.png"), None);
        assert_eq!(picture("Metadata/plate_1_small.png"), None);
        assert_eq!(picture("Metadata/top_2.png"), Some((Some(2), false)));
    }
}
