//! A Klipper printer's status as Moonraker reports it: the printer objects the agent
//! subscribes to, merged from the subscription's answer and each `notify_status_update`
//! delta, and read as a vendor-neutral [`PrinterStateV2`]. Sans-IO.
//!
//! Moonraker sends only what changed, nested objects partially too (`print_stats.info` with
//! `current_layer` alone), so deltas are merged deeply. A new subscription replaces the old
//! one whole, and Moonraker drops every subscription when Klippy disconnects: the session
//! calls [`Status::replace`] with each subscription's answer.

use proto::{
    Controls, Fan, FanKind, FilamentSensor, Heater, HeaterKind, KlipperDetail, KlippyState,
    PrintState, PrinterStateV2, UnixMillis, VendorDetail,
};
use serde_json::{Map, Value};

/// The printer objects every Klipper printer has that a farm needs (all fields of each).
pub const OBJECTS: [&str; 12] = [
    "webhooks",
    "print_stats",
    "virtual_sdcard",
    "display_status",
    "toolhead",
    "gcode_move",
    "extruder",
    "heater_bed",
    "fan",
    "pause_resume",
    "idle_timeout",
    "exclude_object",
];

/// The objects of `printer.objects.list` to subscribe to beyond [`OBJECTS`]: further
/// extruders, a chamber heater or sensor, filament switch and motion sensors.
pub fn extra_objects(listed: &[String]) -> Vec<String> {
    listed
        .iter()
        .filter(|name| {
            extruder_index(name).is_some_and(|index| index > 0)
                || is_chamber(name)
                || sensor_name(name).is_some()
        })
        .cloned()
        .collect()
}

/// `extruder` → 0, `extruder1` → 1; anything else `None`.
fn extruder_index(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("extruder")?;
    if rest.is_empty() {
        return Some(0);
    }
    if rest.starts_with('0') || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn is_chamber(name: &str) -> bool {
    matches!(
        name,
        "heater_generic chamber" | "temperature_sensor chamber" | "temperature_fan chamber"
    )
}

/// The configured name of a filament sensor object.
fn sensor_name(name: &str) -> Option<&str> {
    name.strip_prefix("filament_switch_sensor ")
        .or_else(|| name.strip_prefix("filament_motion_sensor "))
        .filter(|rest| !rest.is_empty())
}

/// What Moonraker has said about the printer objects so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    objects: Map<String, Value>,
}

impl Status {
    /// A subscription's answer (`result.status`): every subscribed object whole, replacing
    /// what was merged before.
    pub fn replace(&mut self, status: Map<String, Value>) {
        self.objects = status;
    }

    /// A `notify_status_update` delta (its first parameter): the changed fields only.
    pub fn merge(&mut self, delta: &Map<String, Value>) {
        merge_into(&mut self.objects, delta);
    }

    fn object(&self, name: &str) -> Option<&Map<String, Value>> {
        self.objects.get(name).and_then(Value::as_object)
    }

    /// `print_stats`' state (`standby`, `printing`, `paused`, `complete`, `cancelled`,
    /// `error`) and file, as Klipper says them.
    pub fn print_stats(&self) -> (Option<&str>, Option<&str>) {
        (self.text("print_stats", "state"), self.text("print_stats", "filename"))
    }

    fn field(&self, object: &str, field: &str) -> Option<&Value> {
        self.object(object)?.get(field).filter(|value| !value.is_null())
    }

    /// `print_stats.filament_used`: millimetres the extruder pushed in the current (or
    /// last) job.
    pub fn filament_used(&self) -> Option<f64> {
        self.number("print_stats", "filament_used")
    }

    fn number(&self, object: &str, field: &str) -> Option<f64> {
        self.field(object, field)?.as_f64().filter(|n| n.is_finite())
    }

    fn text(&self, object: &str, field: &str) -> Option<&str> {
        self.field(object, field)?.as_str()
    }

    /// Klippy's state by `webhooks.state`; `Unknown` before Moonraker said.
    pub fn klippy(&self) -> KlippyState {
        match self.text("webhooks", "state") {
            Some("startup") => KlippyState::Startup,
            Some("ready") => KlippyState::Ready,
            Some("error") => KlippyState::Error,
            Some("shutdown") => KlippyState::Shutdown,
            _ => KlippyState::Unknown,
        }
    }

    /// The state in neutral terms. `klippy` is what the session knows of Klippy (Moonraker's
    /// `notify_klippy_disconnected` is no printer object), `model` and `firmware` come from
    /// `printer.info` and the configuration.
    pub fn state(
        &self,
        klippy: KlippyState,
        model: Option<&str>,
        firmware: Option<&str>,
        now: UnixMillis,
    ) -> PrinterStateV2 {
        let print_stats_state = self.text("print_stats", "state").map(str::to_owned);
        let state = match klippy {
            KlippyState::Ready => match print_stats_state.as_deref() {
                Some("printing") => PrintState::Printing,
                Some("paused") => PrintState::Paused,
                Some("complete") => PrintState::Finished,
                // A cancelled job ends like Bambu's does: failed, with the outcome (cancelled)
                // in the job's end event.
                Some("cancelled" | "error") => PrintState::Failed,
                _ => PrintState::Idle,
            },
            // Klippy stopped the printer: nothing prints until a firmware restart.
            KlippyState::Shutdown | KlippyState::Error => PrintState::Failed,
            KlippyState::Startup | KlippyState::Disconnected | KlippyState::Unknown => {
                PrintState::Offline
            }
        };
        let active = matches!(state, PrintState::Printing | PrintState::Paused);
        let progress = self.number("virtual_sdcard", "progress").map(|p| p.clamp(0.0, 1.0));
        let printed_s = self.number("print_stats", "print_duration");
        // As Mainsail estimates from the file: the time printed so far, scaled by progress.
        let remaining_s = match (progress, printed_s) {
            (Some(progress), Some(printed)) if active && progress > 0.0 => {
                Some((printed / progress - printed).max(0.0).round() as u32)
            }
            _ => None,
        };
        let info = self.field("print_stats", "info").and_then(Value::as_object);
        let info_number = |key: &str| {
            info.and_then(|info| info.get(key)).and_then(Value::as_u64).map(|n| n as u32)
        };
        let message = match klippy {
            KlippyState::Ready => self
                .text("print_stats", "message")
                .filter(|m| !m.is_empty() && print_stats_state.as_deref() == Some("error")),
            // Klippy's reason, once `webhooks` says it is not ready (right after a
            // `notify_klippy_shutdown` it may still read "Printer is ready").
            _ => self
                .text("webhooks", "state_message")
                .filter(|m| !m.is_empty() && self.text("webhooks", "state") != Some("ready")),
        };
        PrinterStateV2 {
            state,
            progress_percent: progress.map(|p| (p * 100.0).round() as u8),
            remaining_s,
            layer: info_number("current_layer"),
            total_layers: info_number("total_layer"),
            job_name: self
                .text("print_stats", "filename")
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
            heaters: self.heaters(),
            fans: self
                .number("fan", "speed")
                .map(|speed| Fan { kind: FanKind::PartCooling, percent: percent(speed) })
                .into_iter()
                .collect(),
            speed_percent: self
                .number("gcode_move", "speed_factor")
                .map(|factor| (factor * 100.0).round().clamp(0.0, f64::from(u16::MAX)) as u16),
            lights: Vec::new(),
            door_open: None,
            filament: Vec::new(),
            active_filament: None,
            message: message.map(str::to_owned),
            control: proto::ControlCapability::Available,
            controls: KLIPPER_CONTROLS,
            model: model.map(str::to_owned),
            firmware: firmware.map(str::to_owned),
            last_report_at: Some(now),
            detail: VendorDetail::Klipper(KlipperDetail {
                klippy,
                print_stats_state,
                display_message: self
                    .text("display_status", "message")
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned),
                sensors: self.sensors(),
                excluded_objects: self
                    .field("exclude_object", "excluded_objects")
                    .and_then(Value::as_array)
                    .map(|names| {
                        names.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }

    fn heaters(&self) -> Vec<Heater> {
        let reading = |name: &str, kind, index| {
            let temp_c = self.number(name, "temperature").map(|t| t as f32);
            let target_c = self.number(name, "target").map(|t| t as f32);
            (temp_c.is_some() || target_c.is_some()).then_some(Heater {
                kind,
                index,
                temp_c,
                target_c,
            })
        };
        let mut extruders: Vec<(u8, &str)> = self
            .objects
            .keys()
            .filter_map(|name| extruder_index(name).map(|index| (index, name.as_str())))
            .collect();
        extruders.sort_unstable();
        let mut heaters: Vec<Heater> = extruders
            .into_iter()
            .filter_map(|(index, name)| reading(name, HeaterKind::Nozzle, index))
            .collect();
        heaters.extend(reading("heater_bed", HeaterKind::Bed, 0));
        let chamber =
            ["heater_generic chamber", "temperature_fan chamber", "temperature_sensor chamber"]
                .into_iter()
                .find_map(|name| reading(name, HeaterKind::Chamber, 0));
        heaters.extend(chamber);
        heaters
    }

    fn sensors(&self) -> Vec<FilamentSensor> {
        let mut sensors: Vec<FilamentSensor> = self
            .objects
            .iter()
            .filter_map(|(name, value)| {
                let sensor = value.as_object()?;
                Some(FilamentSensor {
                    name: sensor_name(name)?.to_owned(),
                    enabled: sensor.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                    detected: sensor.get("filament_detected").and_then(Value::as_bool),
                })
            })
            .collect();
        sensors.sort_by(|a, b| a.name.cmp(&b.name));
        sensors
    }
}

/// What the agent can do on a Klipper printer through Moonraker.
pub const KLIPPER_CONTROLS: Controls = Controls::PAUSE
    .union(Controls::RESUME)
    .union(Controls::STOP)
    .union(Controls::START_FILE)
    .union(Controls::SPEED)
    .union(Controls::TEMPERATURE)
    .union(Controls::GCODE)
    .union(Controls::FULL_REPORT)
    .union(Controls::FIRMWARE_RESTART)
    .union(Controls::EMERGENCY_STOP);

fn percent(fraction: f64) -> u8 {
    (fraction.clamp(0.0, 1.0) * 100.0).round() as u8
}

/// Merges `delta` into `target`: objects field by field, at every depth; anything else
/// (numbers, strings, arrays, null) replaces what was there.
fn merge_into(target: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (key, value) in delta {
        match (target.get_mut(key), value) {
            (Some(Value::Object(into)), Value::Object(from)) => merge_into(into, from),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: UnixMillis = UnixMillis(1_764_000_000_000);

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    /// A subscription's answer from a Voron mid-print (shapes as Moonraker sends them).
    fn printing() -> Status {
        let mut status = Status::default();
        status.replace(object(json!({
            "webhooks": { "state": "ready", "state_message": "Printer is ready" },
            "print_stats": {
                "filename": "benchy.gcode", "total_duration": 700.0, "print_duration": 600.0,
                "filament_used": 1234.5, "state": "printing", "message": "",
                "info": { "total_layer": 120, "current_layer": 30 }
            },
            "virtual_sdcard": { "progress": 0.25, "is_active": true, "file_position": 1000 },
            "display_status": { "progress": 0.25, "message": null },
            "gcode_move": { "speed_factor": 1.1 },
            "extruder": { "temperature": 219.6, "target": 220.0, "power": 0.5 },
            "extruder1": { "temperature": 25.0, "target": 0.0 },
            "heater_bed": { "temperature": 59.9, "target": 60.0 },
            "temperature_sensor chamber": { "temperature": 38.2 },
            "fan": { "speed": 0.5, "rpm": null },
            "filament_switch_sensor runout": { "filament_detected": true, "enabled": true },
            "exclude_object": { "objects": [], "excluded_objects": ["part_2"], "current_object": null }
        })));
        status
    }

    #[test]
    fn a_printing_voron_reads_in_neutral_terms() {
        let status = printing();
        let state = status.state(status.klippy(), Some("Voron 2.4"), Some("v0.12.0"), NOW);
        assert_eq!(state.state, PrintState::Printing);
        assert_eq!(state.progress_percent, Some(25));
        assert_eq!(state.remaining_s, Some(1800), "600 s for a quarter: 1800 s to go");
        assert_eq!((state.layer, state.total_layers), (Some(30), Some(120)));
        assert_eq!(state.job_name.as_deref(), Some("benchy.gcode"));
        let nozzles: Vec<u8> = state
            .heaters
            .iter()
            .filter(|h| h.kind == HeaterKind::Nozzle)
            .map(|h| h.index)
            .collect();
        assert_eq!(nozzles, [0, 1]);
        assert_eq!(state.heater(HeaterKind::Bed, 0).unwrap().target_c, Some(60.0));
        assert_eq!(state.heater(HeaterKind::Chamber, 0).unwrap().target_c, None);
        assert_eq!(state.fans, [Fan { kind: FanKind::PartCooling, percent: 50 }]);
        assert_eq!(state.speed_percent, Some(110));
        assert_eq!(state.message, None);
        assert!(state.controls.contains(Controls::EMERGENCY_STOP));
        let klipper = state.klipper().unwrap();
        assert_eq!(klipper.klippy, KlippyState::Ready);
        assert_eq!(klipper.sensors[0].name, "runout");
        assert_eq!(klipper.sensors[0].detected, Some(true));
        assert_eq!(klipper.excluded_objects, ["part_2"]);
        // The old shape sees the first nozzle and the bed.
        assert_eq!(state.to_v1().nozzle_temp_c, Some(219.6));
    }

    #[test]
    fn partial_deltas_merge_at_every_depth() {
        let mut status = printing();
        status.merge(&object(json!({
            "print_stats": { "info": { "current_layer": 31 }, "print_duration": 610.0 },
            "extruder": { "temperature": 220.1 }
        })));
        let state = status.state(status.klippy(), None, None, NOW);
        assert_eq!(state.layer, Some(31));
        assert_eq!(state.total_layers, Some(120), "the rest of `info` is kept");
        assert_eq!(state.job_name.as_deref(), Some("benchy.gcode"));
        let nozzle = state.heater(HeaterKind::Nozzle, 0).unwrap();
        assert_eq!((nozzle.temp_c, nozzle.target_c), (Some(220.1), Some(220.0)));
    }

    #[test]
    fn a_klippy_shutdown_mid_print_is_a_failure_with_klippys_words() {
        let mut status = printing();
        // Klipper leaves `print_stats.state` at `paused`: the fault is in `webhooks`.
        status.merge(&object(json!({
            "webhooks": { "state": "shutdown", "state_message": "MCU 'mcu' shutdown: Timer too close" },
            "print_stats": { "state": "paused" }
        })));
        let state = status.state(status.klippy(), None, None, NOW);
        assert_eq!(state.state, PrintState::Failed);
        assert_eq!(state.message.as_deref(), Some("MCU 'mcu' shutdown: Timer too close"));
        assert_eq!(state.klipper().unwrap().klippy, KlippyState::Shutdown);
    }

    #[test]
    fn an_error_in_print_stats_is_the_printers_message() {
        let mut status = printing();
        status.merge(&object(json!({
            "print_stats": { "state": "error", "message": "Heater extruder not heating at expected rate" }
        })));
        let state = status.state(status.klippy(), None, None, NOW);
        assert_eq!(state.state, PrintState::Failed);
        assert_eq!(state.message.as_deref(), Some("Heater extruder not heating at expected rate"));
    }

    #[test]
    fn states_follow_print_stats_and_klippy() {
        let cases = [
            ("ready", "standby", PrintState::Idle),
            ("ready", "paused", PrintState::Paused),
            ("ready", "complete", PrintState::Finished),
            ("ready", "cancelled", PrintState::Failed),
            ("startup", "standby", PrintState::Offline),
            ("error", "standby", PrintState::Failed),
        ];
        for (klippy, print_stats, expected) in cases {
            let mut status = Status::default();
            status.replace(object(json!({
                "webhooks": { "state": klippy }, "print_stats": { "state": print_stats }
            })));
            let state = status.state(status.klippy(), None, None, NOW);
            assert_eq!(state.state, expected, "{klippy} / {print_stats}");
        }
        let status = printing();
        let state = status.state(KlippyState::Disconnected, None, None, NOW);
        assert_eq!(state.state, PrintState::Offline, "Klippy gone from Moonraker");
    }

    #[test]
    fn nulls_and_odd_values_read_as_not_reported() {
        let mut status = Status::default();
        status.replace(object(json!({
            "webhooks": { "state": "ready" },
            "print_stats": { "state": "printing", "filename": "", "info": { "current_layer": null, "total_layer": null } },
            "virtual_sdcard": { "progress": "half" },
            "extruder": { "temperature": null, "target": null },
            "fan": { "speed": 7.5 }
        })));
        let state = status.state(status.klippy(), None, None, NOW);
        assert_eq!((state.layer, state.total_layers, state.progress_percent), (None, None, None));
        assert_eq!(state.job_name, None);
        assert!(state.heaters.is_empty());
        assert_eq!(state.fans[0].percent, 100, "clamped");
    }

    #[test]
    fn the_subscription_adds_extra_heaters_and_sensors_only() {
        let listed: Vec<String> = [
            "webhooks",
            "extruder",
            "extruder1",
            "extruder01",
            "extruder_stepper belt",
            "heater_generic chamber",
            "heater_generic other",
            "filament_switch_sensor runout",
            "filament_motion_sensor encoder",
            "gcode_macro PRINT_START",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(
            extra_objects(&listed),
            [
                "extruder1",
                "heater_generic chamber",
                "filament_switch_sensor runout",
                "filament_motion_sensor encoder"
            ]
        );
    }
}
