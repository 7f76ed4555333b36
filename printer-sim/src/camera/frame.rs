//! Camera frames: what one shows, drawn on an RGB canvas and encoded as a baseline JPEG.
//!
//! Sans-IO and deterministic: the caller passes the wall-clock time and the frame number, so
//! the same [`Scene`] always gives the same bytes. A frame shows the model, serial, state,
//! layer, progress, job name, time and frame number as text (the 5×7 font of [`super::font`],
//! scaled to the frame), over a build plate where the object grows with progress and the
//! toolhead moves while a job is in progress. The frame number alone makes consecutive frames
//! differ.
//!
//! For tests that cannot read pixels, each frame also carries the same facts in a JPEG comment
//! (a COM segment right after the JFIF header): `kitt-printer-sim frame=<n> gcode_state=<state>
//! layer=<layer>/<total> percent=<percent>`. A real printer's frames carry no comment.

use std::time::{SystemTime, UNIX_EPOCH};

use jpeg_encoder::{ColorType, Encoder, EncodingError};

use super::font::{self, GLYPH_HEIGHT, GLYPH_WIDTH};
use crate::config::{CameraSize, Model, PrinterSerial};
use crate::printer::{GcodeState, Printer};

/// JPEG quality: frames small and cheap to encode, text still legible.
const JPEG_QUALITY: u8 = 70;

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [22, 24, 28];
const PLATE: Rgb = [58, 60, 66];
const PLATE_EDGE: Rgb = [92, 96, 104];
const FILAMENT: Rgb = [230, 126, 34];
const TOOLHEAD: Rgb = [200, 200, 205];
const TEXT: Rgb = [235, 235, 235];
const DIM_TEXT: Rgb = [150, 154, 160];
const BAR_TRACK: Rgb = [48, 50, 56];
const BAR_FILL: Rgb = [46, 204, 113];

/// The printer as the camera sees it; the printer's driver keeps it current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrinterView {
    pub(crate) gcode_state: GcodeState,
    pub(crate) layer: u32,
    pub(crate) total_layers: u32,
    pub(crate) percent: u32,
    /// `subtask_name`; empty before the first job.
    pub(crate) job_name: String,
}

impl PrinterView {
    /// What `printer` looks like now.
    pub(crate) fn of(printer: &Printer) -> PrinterView {
        let (layer, total_layers) = printer.layers();
        PrinterView {
            gcode_state: printer.gcode_state(),
            layer,
            total_layers,
            percent: printer.percent(),
            job_name: printer.job_name().to_owned(),
        }
    }
}

/// Everything one frame shows.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    /// The first line: the printer's model and name.
    pub(crate) heading: String,
    pub(crate) printer: PrinterView,
    /// Counts the frames rendered; shown, and moves the toolhead.
    pub(crate) frame_number: u64,
    /// The wall-clock time shown (UTC).
    pub(crate) now: SystemTime,
}

/// A Bambu printer's heading: `Bambu Lab P1S (C12)  01P…`.
pub(crate) fn heading(model: Model, serial: &PrinterSerial) -> String {
    format!("{} ({})  {}", model.product_name(), model.code(), serial)
}

/// Draws `scene` at `size` and encodes it, comment included: `FF D8 … FF D9`.
pub(crate) fn render(scene: &Scene, size: CameraSize) -> Result<Vec<u8>, EncodingError> {
    let canvas = draw(scene, size);
    let mut jpeg = Vec::with_capacity(canvas.pixels.len() / 16);
    Encoder::new(&mut jpeg, JPEG_QUALITY).encode(
        &canvas.pixels,
        size.width(),
        size.height(),
        ColorType::Rgb,
    )?;
    insert_comment(&mut jpeg, &comment(scene));
    Ok(jpeg)
}

/// The facts of a frame, for its JPEG comment.
fn comment(scene: &Scene) -> String {
    let view = &scene.printer;
    format!(
        "kitt-printer-sim frame={} gcode_state={} layer={}/{} percent={}",
        scene.frame_number,
        view.gcode_state.as_str(),
        view.layer,
        view.total_layers,
        view.percent
    )
}

/// Inserts a COM segment after the JFIF APP0 segment the encoder writes after SOI (or right
/// after SOI, should there be none).
fn insert_comment(jpeg: &mut Vec<u8>, comment: &str) {
    let Ok(length) = u16::try_from(comment.len() + 2) else { return };
    let at = match jpeg.get(2..6) {
        Some(&[0xFF, 0xE0, high, low]) => 4 + usize::from(u16::from_be_bytes([high, low])),
        _ => 2,
    };
    if at > jpeg.len() {
        return;
    }
    let mut segment = Vec::with_capacity(4 + comment.len());
    segment.extend_from_slice(&[0xFF, 0xFE]);
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(comment.as_bytes());
    jpeg.splice(at..at, segment);
}

/// The label a frame shows for a `gcode_state`.
fn state_label(state: GcodeState) -> (&'static str, Rgb) {
    match state {
        GcodeState::Idle => ("IDLE", DIM_TEXT),
        GcodeState::Prepare => ("PREPARING", [241, 196, 15]),
        GcodeState::Running => ("PRINTING", BAR_FILL),
        GcodeState::Pause => ("PAUSED", [243, 156, 18]),
        GcodeState::Finish => ("FINISHED", [52, 152, 219]),
        GcodeState::Failed => ("FAILED", [231, 76, 60]),
    }
}

fn draw(scene: &Scene, size: CameraSize) -> Canvas {
    let width = usize::from(size.width());
    let height = usize::from(size.height());
    let mut canvas = Canvas::new(width, height, BACKGROUND);
    // One unit is a font pixel: 4 screen pixels at 720p.
    let unit = (height / 180).max(1);
    let margin = 4 * unit;
    let view = &scene.printer;
    let percent = usize::try_from(view.percent.min(100)).unwrap_or(100);

    // The build plate, the object growing on it, the toolhead above the object.
    let plate = Rect { x: width / 5, y: height * 45 / 100, w: width * 3 / 5, h: height * 40 / 100 };
    canvas.fill(plate, PLATE_EDGE);
    canvas.fill(plate.inset(unit), PLATE);
    let object_w = plate.w / 4;
    let object_h = plate.h * 3 / 4 * percent / 100;
    let object_bottom = plate.y + plate.h - 2 * unit;
    let object_top = object_bottom.saturating_sub(object_h);
    let object_x = plate.x + (plate.w - object_w) / 2;
    canvas.fill(Rect { x: object_x, y: object_top, w: object_w, h: object_h }, FILAMENT);
    let head = Rect { x: 0, y: object_top.saturating_sub(7 * unit), w: 6 * unit, h: 6 * unit };
    let travel = (plate.w.saturating_sub(head.w)).max(1);
    let offset = if view.gcode_state.is_busy() {
        let steps = 16;
        let step = usize::try_from(scene.frame_number % steps).unwrap_or(0);
        // Back and forth across the plate, one sixteenth of the way per frame.
        let position = if step < 8 { step } else { 16 - step };
        travel * position / 8
    } else {
        0
    };
    canvas.fill(Rect { x: plate.x + offset.min(travel), ..head }, TOOLHEAD);

    // Progress bar along the bottom.
    let bar = Rect {
        x: margin,
        y: height.saturating_sub(margin + 3 * unit),
        w: width.saturating_sub(2 * margin),
        h: 3 * unit,
    };
    canvas.fill(bar, BAR_TRACK);
    canvas.fill(Rect { w: bar.w * percent / 100, ..bar }, BAR_FILL);

    // Text, top left.
    let line = (GLYPH_HEIGHT + 3) * unit;
    let mut y = margin;
    canvas.text(margin, y, unit, TEXT, &scene.heading);
    y += line;
    let (label, color) = state_label(view.gcode_state);
    canvas.text(margin, y, 2 * unit, color, label);
    y += line + GLYPH_HEIGHT * unit;
    canvas.text(
        margin,
        y,
        unit,
        TEXT,
        &format!("L {}/{}  {}%", view.layer, view.total_layers, view.percent),
    );
    y += line;
    if !view.job_name.is_empty() {
        canvas.text(margin, y, unit, DIM_TEXT, &format!("JOB {}", view.job_name));
        y += line;
    }
    canvas.text(
        margin,
        y,
        unit,
        DIM_TEXT,
        &format!("{}  #{}", clock(scene.now), scene.frame_number),
    );
    canvas
}

/// `HH:MM:SS UTC`.
fn clock(now: SystemTime) -> String {
    let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

impl Rect {
    fn inset(self, by: usize) -> Rect {
        Rect {
            x: self.x + by,
            y: self.y + by,
            w: self.w.saturating_sub(2 * by),
            h: self.h.saturating_sub(2 * by),
        }
    }
}

/// RGB pixels, row by row. Drawing clips at the edges.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, color: Rgb) -> Canvas {
        Canvas { width, height, pixels: color.repeat(width * height) }
    }

    fn fill(&mut self, rect: Rect, color: Rgb) {
        let x_start = rect.x.min(self.width);
        let x_end = rect.x.saturating_add(rect.w).min(self.width);
        let y_end = rect.y.saturating_add(rect.h).min(self.height);
        for y in rect.y.min(self.height)..y_end {
            let row = (y * self.width + x_start) * 3..(y * self.width + x_end) * 3;
            if let Some(row) = self.pixels.get_mut(row) {
                row.chunks_exact_mut(3).for_each(|pixel| pixel.copy_from_slice(&color));
            }
        }
    }

    /// Draws `text` with its top left corner at (`x`, `y`), each font pixel `scale` wide.
    fn text(&mut self, mut x: usize, y: usize, scale: usize, color: Rgb, text: &str) {
        for c in text.chars() {
            if x >= self.width {
                return;
            }
            for (row, bits) in font::glyph(c).into_iter().enumerate() {
                for column in 0..GLYPH_WIDTH {
                    if bits >> (GLYPH_WIDTH - 1 - column) & 1 == 1 {
                        let pixel =
                            Rect { x: x + column * scale, y: y + row * scale, w: scale, h: scale };
                        self.fill(pixel, color);
                    }
                }
            }
            x += (GLYPH_WIDTH + 1) * scale;
        }
    }

    #[cfg(test)]
    fn pixel(&self, x: usize, y: usize) -> Rgb {
        let at = (y * self.width + x) * 3;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn scene(gcode_state: GcodeState, frame_number: u64) -> Scene {
        Scene {
            heading: heading(Model::P1S, &"01P00A000000001".parse().unwrap()),
            printer: PrinterView {
                gcode_state,
                layer: 12,
                total_layers: 40,
                percent: 30,
                job_name: "Benchy".into(),
            },
            frame_number,
            now: UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 13 + 60 * 4 + 5),
        }
    }

    fn size(width: u16, height: u16) -> CameraSize {
        CameraSize::new(width, height).unwrap()
    }

    #[test]
    fn a_frame_is_a_jpeg_of_the_requested_size() {
        let jpeg = render(&scene(GcodeState::Running, 1), size(320, 180)).unwrap();
        assert_eq!(jpeg[..2], [0xFF, 0xD8]);
        assert_eq!(jpeg[jpeg.len() - 2..], [0xFF, 0xD9]);
        let mut decoder = jpeg_decoder::Decoder::new(jpeg.as_slice());
        let pixels = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        assert_eq!((info.width, info.height), (320, 180));
        assert_eq!(pixels.len(), 320 * 180 * 3);
    }

    #[test]
    fn a_frame_carries_its_facts_in_a_comment_after_the_jfif_header() {
        let jpeg = render(&scene(GcodeState::Pause, 7), size(64, 64)).unwrap();
        assert_eq!(jpeg[2..4], [0xFF, 0xE0], "JFIF APP0 first");
        let app0_end = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
        assert_eq!(jpeg[app0_end..app0_end + 2], [0xFF, 0xFE]);
        let length = usize::from(u16::from_be_bytes([jpeg[app0_end + 2], jpeg[app0_end + 3]]));
        let text = std::str::from_utf8(&jpeg[app0_end + 4..app0_end + 2 + length]).unwrap();
        assert_eq!(text, "kitt-printer-sim frame=7 gcode_state=PAUSE layer=12/40 percent=30");
        jpeg_decoder::Decoder::new(jpeg.as_slice()).decode().unwrap();
    }

    #[test]
    fn drawing_is_deterministic_and_shows_state_and_frame_number() {
        let at = size(640, 360);
        let printing = draw(&scene(GcodeState::Running, 5), at).pixels;
        assert_eq!(printing, draw(&scene(GcodeState::Running, 5), at).pixels);
        assert_ne!(printing, draw(&scene(GcodeState::Pause, 5), at).pixels);
        assert_ne!(printing, draw(&scene(GcodeState::Running, 6), at).pixels);
        let mut later = scene(GcodeState::Running, 5);
        later.printer.layer = 13;
        assert_ne!(printing, draw(&later, at).pixels);
    }

    #[test]
    fn text_is_drawn_from_the_glyph_table() {
        let mut canvas = Canvas::new(12, 8, BACKGROUND);
        canvas.text(0, 0, 1, TEXT, "L-");
        // "L": a bar down the left column and along the bottom row.
        assert_eq!(canvas.pixel(0, 0), TEXT);
        assert_eq!(canvas.pixel(1, 0), BACKGROUND);
        assert_eq!(canvas.pixel(4, 6), TEXT);
        // "-" starts one column after the 5 of "L" and a spacing column.
        assert_eq!(canvas.pixel(6, 3), TEXT);
        assert_eq!(canvas.pixel(5, 3), BACKGROUND);
    }

    #[test]
    fn tiny_frames_and_long_names_are_clipped_not_a_panic() {
        let mut long = scene(GcodeState::Finish, 9);
        long.printer.job_name = "x".repeat(500);
        long.printer.percent = 250;
        for at in [size(16, 16), size(17, 1000), size(1000, 17)] {
            render(&long, at).unwrap();
        }
    }

    #[test]
    fn the_clock_shows_utc_time_of_day() {
        assert_eq!(clock(scene(GcodeState::Idle, 0).now), "13:04:05 UTC");
    }
}
