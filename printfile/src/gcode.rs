//! G-code as slicers write it: a header of comments at the head (Cura, Bambu Studio,
//! OrcaSlicer), a summary and the whole configuration at the tail (PrusaSlicer, SuperSlicer,
//! OrcaSlicer), pictures as base64 comment blocks near the head.
//!
//! Only the first [`Limits::gcode_head`] and last [`Limits::gcode_tail`] bytes are read, as
//! Moonraker's metadata reader does, so a 1 GiB file costs a few MiB. The comments become
//! one key/value map ([`Comments`]); what each slicer calls a field is listed once, in
//! [`Comments::summary`].

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use base64::Engine;

use crate::time::parse_duration;
use crate::{
    Filament, FileError, FileKind, Limits, Plate, PrintFile, Slicer, Thumbnail, io,
    normalize_color, read_up_to,
};

/// Reads a G-code file of `len` bytes.
pub fn read<R: Read + Seek>(
    mut file: R,
    len: u64,
    limits: &Limits,
) -> Result<PrintFile, FileError> {
    let head_len = len.min(limits.gcode_head);
    let mut head = vec![0u8; head_len as usize];
    let got = read_up_to(&mut file, &mut head)?;
    head.truncate(got);
    let tail = if len > head_len {
        let tail_len = (len - head_len).min(limits.gcode_tail);
        file.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
        let mut tail = vec![0u8; tail_len as usize];
        let got = read_up_to(&mut file, &mut tail)?;
        tail.truncate(got);
        // Start at a whole line.
        match memchr(b'\n', &tail) {
            Some(at) if tail_len < len - head_len => tail.split_off(at + 1),
            _ => tail,
        }
    } else {
        Vec::new()
    };
    let sniff = &head[..head.len().min(64 * 1024)];
    if sniff.contains(&0) || std::str::from_utf8(valid_prefix(sniff)).is_err() {
        return Err(FileError::NoGcode("this is binary data, not G-code text".into()));
    }
    let mut comments = Comments::default();
    comments.scan(&head, limits);
    comments.scan(&tail, limits);
    if !comments.saw_command {
        return Err(FileError::NoGcode(format!(
            "no G-code commands (G0, G1, M104, …) in the file's first {} KiB or last {} KiB",
            head.len() / 1024,
            tail.len() / 1024
        )));
    }
    let summary = comments.summary();
    let thumbnail = (!comments.thumbnails.is_empty()).then(|| largest(&comments.thumbnails));
    let plate = Plate {
        index: 1,
        gcode_entry: None,
        gcode_bytes: len,
        gcode_md5: None,
        estimated_s: summary.estimated_s,
        weight_g: summary.weight_g,
        layers: summary.layers,
        filaments: summary.filaments,
        objects: Vec::new(),
        thumbnail,
    };
    Ok(PrintFile {
        kind: FileKind::Gcode,
        slicer: summary.slicer,
        printer_model: summary.printer_model,
        printer_model_id: None,
        nozzle_diameter: summary.nozzle_diameter,
        bed_type: summary.bed_type,
        plates: vec![plate],
        thumbnails: comments.thumbnails,
    })
}

/// The longest prefix that does not end inside a UTF-8 sequence.
fn valid_prefix(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        Err(_) => bytes,
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// The index of the biggest picture (by pixels, then bytes).
fn largest(thumbnails: &[Thumbnail]) -> usize {
    let area = |t: &Thumbnail| {
        (u64::from(t.width.unwrap_or(0)) * u64::from(t.height.unwrap_or(0)), t.data.len())
    };
    (0..thumbnails.len()).max_by_key(|&i| area(&thumbnails[i])).unwrap_or(0)
}

/// What the comments of one G-code stream say.
#[derive(Debug, Default)]
pub struct Comments {
    /// Keys lowercased; the first value seen wins (the head is scanned before the tail).
    values: HashMap<String, String>,
    /// The first line naming the slicer.
    generator: Option<String>,
    pub thumbnails: Vec<Thumbnail>,
    /// A G or M command was seen.
    pub saw_command: bool,
    /// The picture being read: (format, width, height, base64 so far).
    pending: Option<(String, Option<u32>, Option<u32>, String)>,
    /// Its base64 length, as its first line declares.
    declared: Option<usize>,
}

/// The fields every slicer has a name of its own for.
#[derive(Debug, Default)]
pub struct Summary {
    pub slicer: Option<Slicer>,
    pub printer_model: Option<String>,
    pub nozzle_diameter: Option<f64>,
    pub bed_type: Option<String>,
    pub estimated_s: Option<u64>,
    pub weight_g: Option<f64>,
    pub layers: Option<u32>,
    pub filaments: Vec<Filament>,
}

impl Comments {
    /// Reads the lines of `text` (partial lines at either end are harmless).
    pub fn scan(&mut self, text: &[u8], limits: &Limits) {
        for line in text.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else { continue };
            self.line(line.trim_end_matches('\r'), limits);
        }
        self.pending = None;
    }

    fn line(&mut self, line: &str, limits: &Limits) {
        let trimmed = line.trim_start();
        let Some(comment) = trimmed.strip_prefix(';') else {
            if !self.saw_command && is_command(trimmed) {
                self.saw_command = true;
            }
            return;
        };
        let comment = comment.trim();
        if self.picture(comment, limits) {
            return;
        }
        if self.generator.is_none() && is_generator(comment) {
            self.generator = Some(comment.to_owned());
        }
        // Bambu Studio and OrcaSlicer put two fields on one line:
        // `model printing time: 1h 2m; total estimated time: 1h 5m`.
        for part in comment.split("; ") {
            self.field(part);
        }
    }

    fn field(&mut self, part: &str) {
        let split = match (part.find(" = "), part.find(':')) {
            (Some(eq), _) => Some((eq, 3)),
            (None, Some(colon)) => Some((colon, 1)),
            (None, None) => None,
        };
        let Some((at, width)) = split else { return };
        let key = part[..at].trim().to_ascii_lowercase();
        let value = part[at + width..].trim();
        if key.is_empty() || key.len() > 80 || self.values.len() >= 4096 {
            return;
        }
        self.values.entry(key).or_insert_with(|| value.chars().take(4096).collect());
    }

    /// Handles a picture's lines; true if `comment` was one.
    fn picture(&mut self, comment: &str, limits: &Limits) -> bool {
        if let Some((format, rest)) = picture_start(comment) {
            let mut words = rest.split_whitespace();
            let mut dims = words.next().unwrap_or("").split('x');
            let width = dims.next().and_then(|w| w.parse().ok());
            let height = dims.next().and_then(|h| h.parse().ok());
            self.declared = words.next().and_then(|n| n.parse().ok());
            self.pending = Some((format.to_owned(), width, height, String::new()));
            return true;
        }
        let Some((format, width, height, data)) = self.pending.as_mut() else { return false };
        if comment.starts_with("thumbnail") && comment.ends_with(" end") {
            let (format, width, height, data) =
                (format.clone(), *width, *height, std::mem::take(data));
            self.pending = None;
            self.finish_picture(&format, width, height, &data, limits);
            return true;
        }
        if data.len() as u64 > limits.max_thumbnail * 4 / 3 + 4 {
            self.pending = None; // too big to keep: the rest of its lines are skipped as text
            return true;
        }
        data.push_str(comment);
        let _ = format;
        true
    }

    fn finish_picture(
        &mut self,
        format: &str,
        width: Option<u32>,
        height: Option<u32>,
        data: &str,
        limits: &Limits,
    ) {
        // The number after the size is the base64's length: a picture cut short (a block
        // across the head's end, an edited file) is skipped, as Moonraker does.
        if self.thumbnails.len() >= limits.max_thumbnails
            || self.declared.is_some_and(|n| n != data.len())
        {
            return;
        }
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else { return };
        let mime = match (format, bytes.get(..4)) {
            (_, Some([0x89, b'P', b'N', b'G'])) => "image/png",
            (_, Some([0xff, 0xd8, 0xff, _])) => "image/jpeg",
            (_, Some(b"qoif")) => "image/qoi",
            _ => return,
        };
        if bytes.len() as u64 > limits.max_thumbnail {
            return;
        }
        let size = match (width, height) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => "unknown".into(),
        };
        self.thumbnails.push(Thumbnail {
            name: format!("gcode:{size}"),
            plate: Some(1),
            width,
            height,
            mime: mime.into(),
            data: bytes,
        });
    }

    fn get(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| self.values.get(*k)).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// What the comments say, whichever slicer wrote them.
    pub fn summary(&self) -> Summary {
        let number = |keys: &[&str]| self.get(keys).and_then(first_number);
        let estimated_s = self
            .get(&[
                "estimated printing time (normal mode)",
                "total estimated time",
                "estimated printing time",
                "time",
                "print.time",
            ])
            .and_then(parse_duration);
        let types = self.list(&["filament_type", "filament type"]);
        let colors = self.list(&["filament_colour", "filament_color", "extruder_colour"]);
        let ids = self.list(&["filament_ids", "filament_settings_id"]);
        let grams = self.numbers(&["filament used [g]"]);
        let mut meters: Vec<f64> =
            self.numbers(&["filament used [mm]"]).iter().map(|mm| mm / 1000.0).collect();
        if meters.is_empty()
            && let Some(used) = self.get(&["filament used"])
            && !used.contains("mm3")
        {
            // Cura: `;Filament used: 1.2345m, 0m` (in volumetric mode `4615.03mm3`, not a
            // length).
            meters = used.split(',').filter_map(first_number).collect();
        }
        let griffin = self.griffin_extruders();
        let slots = types.len().max(grams.len()).max(meters.len()).max(griffin.len());
        let usage_known = !grams.is_empty() || !meters.is_empty();
        let mut filaments = Vec::new();
        for i in 0..slots {
            let grams = grams.get(i).copied();
            let meters = meters.get(i).copied();
            let used = grams.is_some_and(|g| g > 0.0) || meters.is_some_and(|m| m > 0.0);
            if usage_known && !used {
                continue;
            }
            let material = types.get(i).cloned().or_else(|| griffin.get(i).cloned().flatten());
            filaments.push(Filament {
                slot: i as u32 + 1,
                material,
                color: colors.get(i).and_then(|c| normalize_color(c)),
                grams,
                meters,
                profile_id: ids.get(i).cloned().filter(|s| !s.is_empty()),
            });
        }
        // PrusaSlicer: `total filament used [g] = 5.79`; Bambu Studio's header lists each
        // used filament: `total filament weight [g] : 8.84,1.31`.
        let listed_weight = self.numbers(&["total filament weight [g]"]);
        let weight_g = number(&["total filament used [g]"])
            .or_else(|| (!listed_weight.is_empty()).then(|| listed_weight.iter().sum()))
            .or_else(|| (!grams.is_empty()).then(|| grams.iter().sum()));
        let nozzle_diameter =
            number(&["nozzle_diameter", "extruder_train.0.nozzle.diameter", "nozzle diameter"]);
        let printer_model = self
            .get(&["printer_model", "target_machine.name", "machine.name", "printer_settings_id"])
            .map(|s| unquote(s).to_owned())
            .filter(|s| !s.is_empty());
        let layers = number(&[
            "total layer number",
            "total layers count",
            "layer_count",
            "total_layer_count",
        ])
        .map(|n| n as u32);
        Summary {
            slicer: self.generator.as_deref().and_then(slicer_of),
            printer_model,
            nozzle_diameter,
            bed_type: self.get(&["curr_bed_type"]).map(|s| unquote(s).to_owned()),
            estimated_s,
            weight_g,
            layers,
            filaments,
        }
    }

    /// A per-filament list: `PLA;PETG` (PrusaSlicer, OrcaSlicer) or `PLA,PETG`.
    fn list(&self, keys: &[&str]) -> Vec<String> {
        let Some(value) = self.get(keys) else { return Vec::new() };
        let separator = if value.contains(';') { ';' } else { ',' };
        value.split(separator).map(|s| unquote(s.trim()).to_owned()).collect()
    }

    fn numbers(&self, keys: &[&str]) -> Vec<f64> {
        let Some(value) = self.get(keys) else { return Vec::new() };
        value.split([',', ';']).filter_map(first_number).collect()
    }

    /// Cura's Griffin header: `EXTRUDER_TRAIN.N.MATERIAL.…` per extruder (no type names,
    /// only GUIDs and volumes; the slot exists, its material is unknown).
    fn griffin_extruders(&self) -> Vec<Option<String>> {
        let mut extruders = Vec::new();
        for n in 0..16 {
            let key = format!("extruder_train.{n}.material.volume_used");
            match self.values.get(&key).and_then(|v| first_number(v)) {
                Some(_) => extruders.push(None),
                None => break,
            }
        }
        extruders
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

/// The first number in `text` (`1.23` of `1.23m` or ` 1.23 `).
fn first_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text[..end].parse().ok().filter(|n: &f64| n.is_finite())
}

/// `thumbnail begin 300x300 1234` and its JPG, QOI and PNG kin.
fn picture_start(comment: &str) -> Option<(&str, &str)> {
    let (word, rest) = comment.split_once(' ')?;
    let rest = rest.strip_prefix("begin ")?;
    let format = match word {
        "thumbnail" | "thumbnail_PNG" => "png",
        "thumbnail_JPG" => "jpg",
        "thumbnail_QOI" => "qoi",
        _ => return None,
    };
    Some((format, rest))
}

fn is_command(line: &str) -> bool {
    let mut chars = line.chars();
    matches!(chars.next(), Some('G' | 'M' | 'T' | 'g' | 'm'))
        && chars.next().is_some_and(|c| c.is_ascii_digit())
}

fn is_generator(comment: &str) -> bool {
    let lower = comment.to_ascii_lowercase();
    lower.starts_with("generated by")
        || lower.starts_with("generated with")
        || lower.starts_with("g-code generated by")
        || lower.starts_with("sliced by")
        || lower.starts_with("bambustudio")
}

/// The slicer named by a generator line, with its version.
fn slicer_of(line: &str) -> Option<Slicer> {
    let lower = line.to_ascii_lowercase();
    // (what the line says, the name shown)
    const KNOWN: &[(&str, &str)] = &[
        ("prusaslicer", "PrusaSlicer"),
        ("superslicer", "SuperSlicer"),
        ("orcaslicer", "OrcaSlicer"),
        ("bambustudio", "Bambu Studio"),
        ("bambu studio", "Bambu Studio"),
        ("cura_steamengine", "Cura"),
        ("simplify3d", "Simplify3D"),
        ("ideamaker", "ideaMaker"),
        ("creality print", "Creality Print"),
        ("crealityprint", "Creality Print"),
        ("slic3r", "Slic3r"),
    ];
    let (at, name) = KNOWN
        .iter()
        .find_map(|(needle, name)| lower.find(needle).map(|at| (at + needle.len(), *name)))?;
    let version = line[at..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_start_matches(['-', '_', ':', ' ']).to_owned())
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()));
    Some(Slicer { name: name.into(), version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_lines() {
        let s = slicer_of("generated by PrusaSlicer 2.7.1+win64 on 2024-01-01 at 12:00:00 UTC")
            .unwrap();
        assert_eq!((s.name.as_str(), s.version.as_deref()), ("PrusaSlicer", Some("2.7.1+win64")));
        let s = slicer_of("Generated with Cura_SteamEngine 5.6.0").unwrap();
        assert_eq!((s.name.as_str(), s.version.as_deref()), ("Cura", Some("5.6.0")));
        let s = slicer_of("generated by OrcaSlicer 2.1.1 on 2024-07-01 at 10:00:00").unwrap();
        assert_eq!(s.name, "OrcaSlicer");
        assert_eq!(slicer_of("generated by something else"), None);
    }

    #[test]
    fn numbers_and_commands() {
        assert_eq!(first_number("1.2345m"), Some(1.2345));
        assert_eq!(first_number(" 12 "), Some(12.0));
        assert_eq!(first_number("m"), None);
        assert!(is_command("G1 X10"));
        assert!(is_command("M104 S200"));
        assert!(!is_command("Gcode"));
        assert!(!is_command(""));
    }
}
