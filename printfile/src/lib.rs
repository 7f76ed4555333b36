//! What a sliced print file says, read from hostile input with bounded memory.
//!
//! Two kinds of file are read:
//! - **sliced 3MF** (`.gcode.3mf` from Bambu Studio and OrcaSlicer, or a `.3mf` that holds
//!   sliced plates): a zip archive whose `Metadata/plate_N.gcode` entries are the G-code,
//!   `Metadata/slice_info.config` says each plate's time, weight and filaments,
//!   `Metadata/project_settings.config` the printer, nozzle and bed, and
//!   `Metadata/plate_N.png` is each plate's picture ([`threemf`]);
//! - **G-code** (`.gcode`, from PrusaSlicer, OrcaSlicer, Bambu Studio, SuperSlicer, Cura):
//!   the slicer's comments at its head and tail ([`gcode`]).
//!
//! [`read`] takes the file as `Read + Seek` and never holds more than a few MiB of it: a
//! G-code file's first [`Limits::gcode_head`] and last [`Limits::gcode_tail`] bytes, a
//! 3MF's small metadata entries; a plate's G-code is streamed through (its MD5, which Bambu
//! printers check, and its header). Every problem is a [`FileError`] that says what is wrong
//! in words an operator can act on. Nothing here does I/O beyond the reader it is given, so
//! the crate is fuzzed and tested without files on disk.

mod archive;
pub mod gcode;
pub mod models;
pub mod threemf;
pub mod time;

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

/// What was read from a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrintFile {
    pub kind: FileKind,
    /// The slicer that wrote it, as it names itself.
    pub slicer: Option<Slicer>,
    /// The printer it was sliced for, by name (`Bambu Lab P1S`, `Original Prusa MK4`).
    pub printer_model: Option<String>,
    /// The printer's code where the slicer writes one (Bambu's `C12` for a P1S).
    pub printer_model_id: Option<String>,
    /// Nozzle diameter in millimetres (the first extruder's).
    pub nozzle_diameter: Option<f64>,
    /// The build plate it was sliced for (`Textured PEI Plate`).
    pub bed_type: Option<String>,
    /// The sliced plates, by their own numbers (which need not start at 1). A G-code file
    /// is one plate, number 1.
    pub plates: Vec<Plate>,
    /// Every picture found, plates' and the file's own.
    pub thumbnails: Vec<Thumbnail>,
}

impl PrintFile {
    pub fn plate(&self, index: u32) -> Option<&Plate> {
        self.plates.iter().find(|p| p.index == index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A 3MF archive with sliced plates.
    Gcode3mf,
    /// Plain G-code.
    Gcode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slicer {
    pub name: String,
    pub version: Option<String>,
}

/// One sliced plate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plate {
    pub index: u32,
    /// Where its G-code is: the archive entry (`Metadata/plate_2.gcode`); `None` for a
    /// G-code file, which is its own.
    pub gcode_entry: Option<String>,
    /// Size of the G-code, bytes.
    pub gcode_bytes: u64,
    /// MD5 of the G-code, lowercase hex (what Bambu's `project_file` command carries).
    pub gcode_md5: Option<String>,
    /// The slicer's estimate, seconds.
    pub estimated_s: Option<u64>,
    /// Filament for the whole plate, grams.
    pub weight_g: Option<f64>,
    pub layers: Option<u32>,
    /// The filaments the plate uses, by the slicer's slot numbers (1-based; gaps are
    /// normal: a plate may use slots 1 and 4 only).
    pub filaments: Vec<Filament>,
    /// Objects on the plate, by name.
    pub objects: Vec<String>,
    /// Its picture: an index into [`PrintFile::thumbnails`].
    pub thumbnail: Option<usize>,
}

/// One filament a plate needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filament {
    /// The slicer's slot (extruder / filament number), 1-based.
    pub slot: u32,
    /// Material type as the slicer names it (`PLA`, `PETG`, `PLA-CF`).
    #[serde(rename = "type")]
    pub material: Option<String>,
    /// `#RRGGBB` or `#RRGGBBAA`, uppercase.
    pub color: Option<String>,
    pub grams: Option<f64>,
    pub meters: Option<f64>,
    /// The filament profile's id (Bambu's `tray_info_idx`, e.g. `GFA00`), when written.
    pub profile_id: Option<String>,
}

/// A picture from the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// Where it came from: the archive entry, or `gcode:WxH` for one embedded in G-code.
    pub name: String,
    /// The plate it shows, if it shows one.
    pub plate: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `image/png`, `image/jpeg` or `image/qoi`.
    pub mime: String,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// How far reading goes. The defaults suit a 1 GiB upload.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of a G-code file's head that are read (thumbnails and most headers live there).
    pub gcode_head: u64,
    /// Bytes of its tail (PrusaSlicer writes its summary at the end).
    pub gcode_tail: u64,
    /// Archive entries.
    pub max_entries: usize,
    /// Unpacked bytes of all entries together.
    pub max_unpacked: u64,
    /// Largest unpacked-to-packed ratio of an entry over 1 MiB.
    pub max_ratio: u64,
    /// Largest metadata entry (XML, JSON) that is read.
    pub max_metadata: u64,
    /// Largest picture kept; bigger ones are skipped.
    pub max_thumbnail: u64,
    /// Pictures kept.
    pub max_thumbnails: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            gcode_head: 4 << 20,
            gcode_tail: 1 << 20,
            max_entries: 10_000,
            max_unpacked: 16 << 30,
            max_ratio: 250,
            max_metadata: 16 << 20,
            max_thumbnail: 2 << 20,
            max_thumbnails: 64,
        }
    }
}

/// Why a file was refused. Each says what is wrong in an operator's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("not a file kitt prints: {0}")]
    Unsupported(String),
    #[error("the archive is damaged or truncated: {0}")]
    Archive(String),
    #[error("the archive's entry {entry:?} is damaged: {detail}")]
    Corrupt { entry: String, detail: String },
    #[error("the archive has an entry named {name:?}, which is refused: {why}")]
    UnsafeEntry { name: String, why: &'static str },
    #[error("the archive looks like a zip bomb: {0}")]
    Bomb(String),
    #[error("{0}")]
    NoGcode(String),
    #[error("the slicer's metadata is malformed: {0}")]
    Metadata(String),
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// Reads a print file. `name` is the file's name as uploaded: it decides nothing by itself
/// (the content does), but a name that says 3MF on a file that is not an archive is
/// refused, as is binary data named `.gcode`.
pub fn read<R: Read + Seek>(
    name: &str,
    mut file: R,
    limits: &Limits,
) -> Result<PrintFile, FileError> {
    let mut magic = [0u8; 4];
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let got = read_up_to(&mut file, &mut magic)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let lower = name.to_ascii_lowercase();
    let is_zip = got == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06");
    if len == 0 {
        return Err(FileError::Unsupported("the file is empty".into()));
    }
    if lower.ends_with(".3mf") {
        if !is_zip {
            return Err(FileError::Archive("a .3mf file is a zip archive; this one is not".into()));
        }
        return threemf::read(file, limits);
    }
    if lower.ends_with(".gcode") || lower.ends_with(".gco") || lower.ends_with(".g") {
        if is_zip {
            return Err(FileError::Unsupported(
                "this .gcode file is a zip archive; a sliced 3MF is named .gcode.3mf".into(),
            ));
        }
        return gcode::read(file, len, limits);
    }
    if lower.ends_with(".bgcode") {
        return Err(FileError::Unsupported(
            "binary G-code (.bgcode) is not read yet; export plain G-code".into(),
        ));
    }
    if lower.ends_with(".stl")
        || lower.ends_with(".step")
        || lower.ends_with(".stp")
        || lower.ends_with(".obj")
    {
        return Err(FileError::Unsupported(
            "a model has to be sliced first; upload the .gcode.3mf or .gcode the slicer exports"
                .into(),
        ));
    }
    Err(FileError::Unsupported(format!(
        "{:?} is neither .gcode.3mf, .3mf nor .gcode",
        name.rsplit('/').next().unwrap_or(name)
    )))
}

fn read_up_to(file: &mut impl Read, buffer: &mut [u8]) -> Result<usize, FileError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(filled)
}

fn io(error: std::io::Error) -> FileError {
    FileError::Io(error.to_string())
}

/// `#RRGGBB` or `#RRGGBBAA`, uppercase, from what slicers write (`#ff0000`, `FF0000FF`,
/// `#F00`); `None` for anything else.
pub fn normalize_color(raw: &str) -> Option<String> {
    let hex = raw.trim().trim_start_matches('#');
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 | 8 => hex.to_owned(),
        _ => return None,
    };
    Some(format!("#{}", hex.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_normalised() {
        assert_eq!(normalize_color("#ff0000").as_deref(), Some("#FF0000"));
        assert_eq!(normalize_color("FF0000FF").as_deref(), Some("#FF0000FF"));
        assert_eq!(normalize_color("#f00").as_deref(), Some("#FF0000"));
        assert_eq!(normalize_color("red"), None);
        assert_eq!(normalize_color("#12345"), None);
    }
}
