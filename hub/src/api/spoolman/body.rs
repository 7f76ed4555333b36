//! Request bodies read as Spoolman (FastAPI and pydantic v2, lax mode) reads them, every
//! problem collected into its 422 answer: `{"detail": [{type, loc, msg, input, ctx?}]}`.

use serde_json::{Map, Value, json};

use crate::inventory::Extra;
use crate::inventory::render::parse_datetime;
use crate::service::inventory::{FilamentInput, Patch, SpoolInput, VendorInput};

/// A JSON object body being read, with the problems found so far.
#[derive(Debug)]
pub struct Body {
    map: Map<String, Value>,
    pub errors: Vec<Value>,
    /// Create (a null is refused only where the field is required) or update (a null is
    /// refused on fields that cannot be null).
    patch: bool,
}

fn error(kind: &str, loc: &str, msg: &str, input: &Value) -> Value {
    json!({ "type": kind, "loc": ["body", loc], "msg": msg, "input": input })
}

impl Body {
    /// Parses the bytes; `Err` is the 422 detail list for a body that is not a JSON object.
    pub fn parse(bytes: &[u8], patch: bool) -> Result<Body, Vec<Value>> {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(e) => {
                return Err(vec![json!({
                    "type": "json_invalid",
                    "loc": ["body", e.column()],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": { "error": e.to_string() },
                })]);
            }
        };
        match value {
            Value::Object(map) => Ok(Body { map, errors: Vec::new(), patch }),
            other => Err(vec![json!({
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": other,
            })]),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// A field that must be given (on create) and never null.
    pub fn required<T>(&mut self, key: &str, patch: Patch<T>) -> Patch<T> {
        match &patch {
            Patch::Absent if !self.patch => {
                self.errors.push(error(
                    "missing",
                    key,
                    "Field required",
                    &Value::Object(self.map.clone()),
                ));
            }
            Patch::Null => self.not_none(key),
            _ => {}
        }
        patch
    }

    /// A field that may be left out but never null.
    pub fn not_null<T>(&mut self, key: &str, patch: Patch<T>) -> Patch<T> {
        if matches!(patch, Patch::Null) {
            self.not_none(key);
        }
        patch
    }

    fn not_none(&mut self, key: &str) {
        self.errors.push(json!({
            "type": "value_error",
            "loc": ["body", key],
            "msg": "Value error, Value must not be None.",
            "input": null,
            "ctx": { "error": {} },
        }));
    }

    pub fn text(&mut self, key: &str, max: usize) -> Patch<String> {
        match self.get(key).cloned() {
            None => Patch::Absent,
            Some(Value::Null) => Patch::Null,
            Some(Value::String(text)) => {
                if text.chars().count() > max {
                    self.errors.push(json!({
                        "type": "string_too_long",
                        "loc": ["body", key],
                        "msg": format!("String should have at most {max} characters"),
                        "input": text,
                        "ctx": { "max_length": max },
                    }));
                    return Patch::Absent;
                }
                Patch::Set(text)
            }
            Some(other) => {
                self.errors.push(error(
                    "string_type",
                    key,
                    "Input should be a valid string",
                    &other,
                ));
                Patch::Absent
            }
        }
    }

    /// A number; `min` with `inclusive` (≥) or not (>).
    pub fn float(&mut self, key: &str, min: Option<(f64, bool)>) -> Patch<f64> {
        let value = match self.get(key).cloned() {
            None => return Patch::Absent,
            Some(Value::Null) => return Patch::Null,
            Some(value) => value,
        };
        let number = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let Some(number) = number.filter(|n| n.is_finite()) else {
            let (kind, msg) = if value.is_string() {
                (
                    "float_parsing",
                    "Input should be a valid number, unable to parse string as a number",
                )
            } else {
                ("float_type", "Input should be a valid number")
            };
            self.errors.push(error(kind, key, msg, &value));
            return Patch::Absent;
        };
        if let Some((min, inclusive)) = min
            && (number < min || (!inclusive && number == min))
        {
            let (kind, word, ctx) = if inclusive {
                ("greater_than_equal", "greater than or equal to", json!({ "ge": min }))
            } else {
                ("greater_than", "greater than", json!({ "gt": min }))
            };
            self.errors.push(json!({
                "type": kind,
                "loc": ["body", key],
                "msg": format!("Input should be {word} {}", trim_float(min)),
                "input": value,
                "ctx": ctx,
            }));
            return Patch::Absent;
        }
        Patch::Set(number)
    }

    pub fn int(&mut self, key: &str, min: Option<i64>) -> Patch<i64> {
        let value = match self.get(key).cloned() {
            None => return Patch::Absent,
            Some(Value::Null) => return Patch::Null,
            Some(value) => value,
        };
        let number = match &value {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(number) = number else {
            let (kind, msg) = if value.is_string() {
                (
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                )
            } else {
                ("int_type", "Input should be a valid integer")
            };
            self.errors.push(error(kind, key, msg, &value));
            return Patch::Absent;
        };
        if let Some(min) = min
            && number < min
        {
            self.errors.push(json!({
                "type": "greater_than_equal",
                "loc": ["body", key],
                "msg": format!("Input should be greater than or equal to {min}"),
                "input": value,
                "ctx": { "ge": min },
            }));
            return Patch::Absent;
        }
        Patch::Set(number)
    }

    pub fn boolean(&mut self, key: &str) -> Patch<bool> {
        let value = match self.get(key).cloned() {
            None => return Patch::Absent,
            Some(Value::Null) => return Patch::Null,
            Some(value) => value,
        };
        let parsed = match &value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                _ => None,
            },
            Value::String(s) => crate::inventory::query::parse_bool(s),
            _ => None,
        };
        match parsed {
            Some(b) => Patch::Set(b),
            None => {
                self.errors.push(error(
                    "bool_parsing",
                    key,
                    "Input should be a valid boolean",
                    &value,
                ));
                Patch::Absent
            }
        }
    }

    pub fn datetime(&mut self, key: &str) -> Patch<i64> {
        let value = match self.get(key).cloned() {
            None => return Patch::Absent,
            Some(Value::Null) => return Patch::Null,
            Some(value) => value,
        };
        let parsed = match &value {
            Value::String(s) => parse_datetime(s),
            Value::Number(n) => n.as_f64().map(|s| (s * 1000.0).round() as i64),
            _ => None,
        };
        match parsed {
            Some(ms) => Patch::Set(ms),
            None => {
                self.errors.push(error(
                    "datetime_from_date_parsing",
                    key,
                    "Input should be a valid datetime or date",
                    &value,
                ));
                Patch::Absent
            }
        }
    }

    /// `extra`: an object of strings (each a JSON text, checked against its field later).
    pub fn extra(&mut self) -> Patch<Extra> {
        let value = match self.get("extra").cloned() {
            None => return Patch::Absent,
            Some(Value::Null) => return Patch::Null,
            Some(value) => value,
        };
        let Value::Object(map) = &value else {
            self.errors.push(error(
                "dict_type",
                "extra",
                "Input should be a valid dictionary",
                &value,
            ));
            return Patch::Absent;
        };
        let mut extra = Extra::new();
        for (key, item) in map {
            match item {
                Value::String(text) => {
                    extra.insert(key.clone(), text.clone());
                }
                other => self.errors.push(json!({
                    "type": "string_type",
                    "loc": ["body", "extra", key],
                    "msg": "Input should be a valid string",
                    "input": other,
                })),
            }
        }
        Patch::Set(extra)
    }

    /// A colour: empty or null is none; otherwise hex digits, 6 or 8 of them, a leading `#`
    /// allowed; kept upper-case without the `#`.
    pub fn color(&mut self, key: &str) -> Patch<String> {
        match self.text(key, 64) {
            Patch::Set(text) if text.is_empty() => Patch::Null,
            Patch::Set(text) => match normalise_color(&text) {
                Ok(color) => Patch::Set(color),
                Err(message) => {
                    self.value_error(key, message, Value::String(text));
                    Patch::Absent
                }
            },
            other => other,
        }
    }

    /// Comma-separated colours, each as [`Body::color`].
    pub fn colors(&mut self, key: &str) -> Patch<String> {
        match self.text(key, 1024) {
            Patch::Set(text) if text.is_empty() => Patch::Null,
            Patch::Set(text) => {
                let mut out = Vec::new();
                for item in text.split(',') {
                    match normalise_color(item.trim()) {
                        Ok(color) => out.push(color),
                        Err(message) => {
                            self.value_error(key, message, Value::String(text.clone()));
                            return Patch::Absent;
                        }
                    }
                }
                Patch::Set(out.join(","))
            }
            other => other,
        }
    }

    pub fn value_error(&mut self, key: &str, message: &str, input: Value) {
        let loc = if key.is_empty() { json!(["body"]) } else { json!(["body", key]) };
        self.errors.push(json!({
            "type": "value_error",
            "loc": loc,
            "msg": format!("Value error, {message}"),
            "input": input,
            "ctx": { "error": {} },
        }));
    }

    pub fn whole(&self) -> Value {
        Value::Object(self.map.clone())
    }
}

fn trim_float(value: f64) -> String {
    if value.fract() == 0.0 { format!("{}", value as i64) } else { value.to_string() }
}

fn normalise_color(text: &str) -> Result<String, &'static str> {
    let hex = text.strip_prefix('#').unwrap_or(text).to_ascii_uppercase();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("Invalid character in color code.");
    }
    if hex.len() != 6 && hex.len() != 8 {
        return Err("Color code must be 6 or 8 characters long.");
    }
    Ok(hex)
}

pub fn vendor(bytes: &[u8], patch: bool) -> Result<VendorInput, Vec<Value>> {
    let mut body = Body::parse(bytes, patch)?;
    let name = body.text("name", 64);
    let input = VendorInput {
        name: body.required("name", name),
        comment: body.text("comment", 1024),
        empty_spool_weight: body.float("empty_spool_weight", Some((0.0, true))),
        external_id: body.text("external_id", 256),
        extra: {
            let extra = body.extra();
            body.not_null("extra", extra)
        },
    };
    if body.errors.is_empty() { Ok(input) } else { Err(body.errors) }
}

pub fn filament(bytes: &[u8], patch: bool) -> Result<FilamentInput, Vec<Value>> {
    let mut body = Body::parse(bytes, patch)?;
    let density = body.float("density", Some((0.0, false)));
    let diameter = body.float("diameter", Some((0.0, false)));
    let extra = body.extra();
    let input = FilamentInput {
        name: body.text("name", 64),
        vendor_id: body.int("vendor_id", None),
        material: body.text("material", 64),
        price: body.float("price", Some((0.0, true))),
        density: body.required("density", density),
        diameter: body.required("diameter", diameter),
        weight: body.float("weight", Some((0.0, false))),
        spool_weight: body.float("spool_weight", Some((0.0, true))),
        article_number: body.text("article_number", 64),
        comment: body.text("comment", 1024),
        settings_extruder_temp: body.int("settings_extruder_temp", Some(0)),
        settings_bed_temp: body.int("settings_bed_temp", Some(0)),
        color_hex: body.color("color_hex"),
        multi_color_hexes: body.colors("multi_color_hexes"),
        multi_color_direction: match body.text("multi_color_direction", 64) {
            Patch::Set(direction) if !matches!(direction.as_str(), "coaxial" | "longitudinal") => {
                body.errors.push(json!({
                    "type": "enum",
                    "loc": ["body", "multi_color_direction"],
                    "msg": "Input should be 'coaxial' or 'longitudinal'",
                    "input": direction,
                    "ctx": { "expected": "'coaxial' or 'longitudinal'" },
                }));
                Patch::Absent
            }
            other => other,
        },
        external_id: body.text("external_id", 256),
        extra: body.not_null("extra", extra),
    };
    // Colours: one or several, never both; several need a direction, one must not have it.
    let has = |p: &Patch<String>| matches!(p, Patch::Set(_));
    let whole = body.whole();
    if has(&input.color_hex) && has(&input.multi_color_hexes) {
        body.value_error("", "Cannot specify both color_hex and multi_color_hexes.", whole.clone());
    }
    if let Patch::Set(multi) = &input.multi_color_hexes {
        if multi.split(',').count() < 2 {
            body.value_error(
                "",
                "Must specify at least two colors in multi_color_hexes.",
                whole.clone(),
            );
        } else if !patch && !has(&input.multi_color_direction) {
            body.value_error(
                "",
                "Multi-color filament must have multi_color_direction set.",
                whole.clone(),
            );
        }
    }
    if has(&input.color_hex) && has(&input.multi_color_direction) {
        body.value_error(
            "",
            "Single-color filament must not have multi_color_direction set.",
            whole,
        );
    }
    if body.errors.is_empty() { Ok(input) } else { Err(body.errors) }
}

pub fn spool(bytes: &[u8], patch: bool) -> Result<SpoolInput, Vec<Value>> {
    let mut body = Body::parse(bytes, patch)?;
    let filament_id = body.int("filament_id", None);
    let remaining = body.float("remaining_weight", Some((0.0, true)));
    let used = body.float("used_weight", Some((0.0, true)));
    let archived = body.boolean("archived");
    let extra = body.extra();
    let input = SpoolInput {
        first_used: body.datetime("first_used"),
        last_used: body.datetime("last_used"),
        filament_id: body.required("filament_id", filament_id),
        price: body.float("price", Some((0.0, true))),
        initial_weight: body.float("initial_weight", Some((0.0, true))),
        spool_weight: body.float("spool_weight", Some((0.0, true))),
        remaining_weight: body.not_null("remaining_weight", remaining),
        used_weight: body.not_null("used_weight", used),
        location: body.text("location", 64),
        lot_nr: body.text("lot_nr", 64),
        comment: body.text("comment", 1024),
        archived: body.not_null("archived", archived),
        extra: body.not_null("extra", extra),
    };
    if body.errors.is_empty() { Ok(input) } else { Err(body.errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filament_needs_density_and_diameter_and_says_so_as_fastapi_does() {
        let errors = filament(br#"{"name": "x"}"#, false).unwrap_err();
        let missing: Vec<&str> = errors
            .iter()
            .filter(|e| e["type"] == "missing")
            .filter_map(|e| e["loc"][1].as_str())
            .collect();
        assert_eq!(missing, ["density", "diameter"]);
        assert!(filament(br#"{"name": "x"}"#, true).is_ok(), "an update may leave them out");
        let errors = filament(br#"{"density": 0, "diameter": 1.75}"#, false).unwrap_err();
        assert_eq!(errors[0]["type"], "greater_than");
        assert_eq!(errors[0]["msg"], "Input should be greater than 0");
    }

    #[test]
    fn colours_are_normalised_and_bad_ones_refused_with_spoolmans_words() {
        let input =
            filament(br##"{"density": 1.24, "diameter": 1.75, "color_hex": "#ff00aa"}"##, false)
                .unwrap();
        assert_eq!(input.color_hex, Patch::Set("FF00AA".into()));
        let errors =
            filament(br#"{"density": 1.24, "diameter": 1.75, "color_hex": "zz0000"}"#, false)
                .unwrap_err();
        assert_eq!(errors[0]["msg"], "Value error, Invalid character in color code.");
        let errors = filament(br#"{"density": 1.24, "diameter": 1.75, "color_hex": "FFF"}"#, false)
            .unwrap_err();
        assert_eq!(errors[0]["msg"], "Value error, Color code must be 6 or 8 characters long.");
        let errors = filament(
            br#"{"density": 1.24, "diameter": 1.75, "multi_color_hexes": "FF0000,00FF00"}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(
            errors[0]["msg"],
            "Value error, Multi-color filament must have multi_color_direction set."
        );
        assert_eq!(errors[0]["loc"], json!(["body"]));
    }

    #[test]
    fn a_spool_update_refuses_null_where_spoolman_cannot_store_one() {
        for field in ["filament_id", "used_weight", "remaining_weight", "archived", "extra"] {
            let body = format!("{{\"{field}\": null}}");
            let errors = spool(body.as_bytes(), true).unwrap_err();
            assert_eq!(errors[0]["msg"], "Value error, Value must not be None.", "{field}");
        }
        let input =
            spool(br#"{"location": null, "price": "12.5", "archived": "True"}"#, true).unwrap();
        assert_eq!(input.location, Patch::Null);
        assert_eq!(input.price, Patch::Set(12.5));
        assert_eq!(input.archived, Patch::Set(true));
    }

    #[test]
    fn broken_bodies_are_422s_not_panics() {
        for bytes in [&b"{"[..], b"[]", b"null", b"\"x\"", &[0xff, 0xfe]] {
            assert!(spool(bytes, false).is_err());
        }
        let errors = spool(br#"{"filament_id": 1, "extra": {"k": 42}}"#, false).unwrap_err();
        assert_eq!(errors[0]["loc"], json!(["body", "extra", "k"]));
        let errors = vendor(br#"{"name": "x", "comment": 5}"#, false).unwrap_err();
        assert_eq!(errors[0]["type"], "string_type");
        let long = format!("{{\"name\": \"{}\"}}", "n".repeat(65));
        assert_eq!(vendor(long.as_bytes(), false).unwrap_err()[0]["type"], "string_too_long");
    }
}
