//! Entities as Spoolman's JSON: a filament embeds its vendor and a spool its filament; in
//! REST answers a field without a value is left out (`nulls: false`), in websocket payloads
//! it is `null`; times are UTC with a `Z`; a spool's remaining weight and lengths are derived.

use serde_json::{Map, Value, json};

use super::{Filament, Spool, Vendor, length_from_weight};

/// Unix ms as Spoolman writes a time: `2024-05-01T10:11:12Z`, with microseconds only when
/// the time has a fraction of a second.
pub fn datetime(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    match at.microsecond() {
        0 => format!("{base}Z"),
        micros => format!("{base}.{micros:06}Z"),
    }
}

/// Reads a time as Spoolman's clients send one: `YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]]`
/// with `Z`, an offset, or none (read as UTC), or Unix seconds. `None`: not a time.
pub fn parse_datetime(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then(|| (seconds * 1000.0).round() as i64);
    }
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse().ok())?
    };
    if bytes.len() < 16 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute) = (digits(11..13)?, digits(14..16)?);
    let mut at = 16;
    let mut second = 0;
    let mut nanos: i64 = 0;
    if bytes.get(at) == Some(&b':') {
        second = digits(at + 1..at + 3)?;
        at += 3;
        if bytes.get(at) == Some(&b'.') {
            let start = at + 1;
            let mut end = start;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start {
                return None;
            }
            let fraction = &text[start..end.min(start + 9)];
            nanos = fraction.parse::<i64>().ok()? * 10_i64.pow(9 - fraction.len() as u32);
            at = end;
        }
    }
    let offset_s = match &text[at..] {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &zone[1..];
            let (h, m) = match zone.len() {
                5 if zone.as_bytes()[2] == b':' => {
                    (zone[0..2].parse::<i64>().ok()?, zone[3..5].parse::<i64>().ok()?)
                }
                4 => (zone[0..2].parse::<i64>().ok()?, zone[2..4].parse::<i64>().ok()?),
                2 => (zone.parse::<i64>().ok()?, 0),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
    };
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    let utc = time::PrimitiveDateTime::new(date, clock).assume_utc();
    Some((utc.unix_timestamp() - offset_s) * 1000 + nanos / 1_000_000)
}

/// Puts `value` under `key`, or `null`/nothing for `None` by `nulls`.
fn put(map: &mut Map<String, Value>, nulls: bool, key: &str, value: Option<Value>) {
    match value {
        Some(value) => {
            map.insert(key.to_owned(), value);
        }
        None if nulls => {
            map.insert(key.to_owned(), Value::Null);
        }
        None => {}
    }
}

fn text(value: &Option<String>) -> Option<Value> {
    value.as_ref().map(|v| Value::String(v.clone()))
}

fn number(value: Option<f64>) -> Option<Value> {
    value.map(|v| json!(v))
}

pub fn vendor(vendor: &Vendor, nulls: bool) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(vendor.id));
    map.insert("registered".into(), json!(datetime(vendor.registered)));
    map.insert("name".into(), json!(vendor.name));
    put(&mut map, nulls, "comment", text(&vendor.comment));
    put(&mut map, nulls, "empty_spool_weight", number(vendor.empty_spool_weight));
    put(&mut map, nulls, "external_id", text(&vendor.external_id));
    map.insert("extra".into(), json!(vendor.extra));
    Value::Object(map)
}

pub fn filament(filament: &Filament, vendor_row: Option<&Vendor>, nulls: bool) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(filament.id));
    map.insert("registered".into(), json!(datetime(filament.registered)));
    put(&mut map, nulls, "name", text(&filament.name));
    put(&mut map, nulls, "vendor", vendor_row.map(|v| vendor(v, nulls)));
    put(&mut map, nulls, "material", text(&filament.material));
    put(&mut map, nulls, "price", number(filament.price));
    map.insert("density".into(), json!(filament.density));
    map.insert("diameter".into(), json!(filament.diameter));
    put(&mut map, nulls, "weight", number(filament.weight));
    put(&mut map, nulls, "spool_weight", number(filament.spool_weight));
    put(&mut map, nulls, "article_number", text(&filament.article_number));
    put(&mut map, nulls, "comment", text(&filament.comment));
    put(
        &mut map,
        nulls,
        "settings_extruder_temp",
        filament.settings_extruder_temp.map(|t| json!(t)),
    );
    put(&mut map, nulls, "settings_bed_temp", filament.settings_bed_temp.map(|t| json!(t)));
    put(&mut map, nulls, "color_hex", text(&filament.color_hex));
    put(&mut map, nulls, "multi_color_hexes", text(&filament.multi_color_hexes));
    put(&mut map, nulls, "multi_color_direction", text(&filament.multi_color_direction));
    put(&mut map, nulls, "external_id", text(&filament.external_id));
    map.insert("extra".into(), json!(filament.extra));
    Value::Object(map)
}

/// A spool's remaining weight as Spoolman derives it: from its initial weight, else its
/// filament's, never below zero.
pub fn remaining_weight(spool: &Spool, filament: &Filament) -> Option<f64> {
    spool.initial_weight.or(filament.weight).map(|initial| (initial - spool.used_weight).max(0.0))
}

pub fn spool(
    spool: &Spool,
    filament_row: &Filament,
    vendor_row: Option<&Vendor>,
    nulls: bool,
) -> Value {
    let length =
        |grams: f64| length_from_weight(grams, filament_row.diameter, filament_row.density);
    let remaining = remaining_weight(spool, filament_row);
    let mut map = Map::new();
    map.insert("id".into(), json!(spool.id));
    map.insert("registered".into(), json!(datetime(spool.registered)));
    put(&mut map, nulls, "first_used", spool.first_used.map(|t| json!(datetime(t))));
    put(&mut map, nulls, "last_used", spool.last_used.map(|t| json!(datetime(t))));
    map.insert("filament".into(), filament(filament_row, vendor_row, nulls));
    put(&mut map, nulls, "price", number(spool.price));
    put(&mut map, nulls, "remaining_weight", number(remaining));
    put(&mut map, nulls, "initial_weight", number(spool.initial_weight));
    put(&mut map, nulls, "spool_weight", number(spool.spool_weight));
    map.insert("used_weight".into(), json!(spool.used_weight));
    put(&mut map, nulls, "remaining_length", number(remaining.map(length)));
    map.insert("used_length".into(), json!(length(spool.used_weight)));
    put(&mut map, nulls, "location", text(&spool.location));
    put(&mut map, nulls, "lot_nr", text(&spool.lot_nr));
    put(&mut map, nulls, "comment", text(&spool.comment));
    map.insert("archived".into(), json!(spool.archived));
    map.insert("extra".into(), json!(spool.extra));
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_weight_never_goes_below_zero_and_falls_back_to_the_filaments_weight() {
        let filament = Filament {
            id: 1,
            registered: 0,
            name: None,
            vendor_id: None,
            material: None,
            price: None,
            density: 1.24,
            diameter: 1.75,
            weight: None,
            spool_weight: None,
            article_number: None,
            comment: None,
            settings_extruder_temp: None,
            settings_bed_temp: None,
            color_hex: None,
            multi_color_hexes: None,
            multi_color_direction: None,
            external_id: None,
            extra: crate::inventory::Extra::new(),
        };
        let mut spool = Spool {
            id: 1,
            registered: 0,
            first_used: None,
            last_used: None,
            filament_id: 1,
            price: None,
            initial_weight: Some(1000.0),
            spool_weight: None,
            used_weight: 250.0,
            location: None,
            lot_nr: None,
            comment: None,
            archived: false,
            extra: crate::inventory::Extra::new(),
            rfid: None,
        };
        assert_eq!(remaining_weight(&spool, &filament), Some(750.0));
        spool.used_weight = 1200.0;
        assert_eq!(remaining_weight(&spool, &filament), Some(0.0));
        spool.initial_weight = None;
        assert_eq!(remaining_weight(&spool, &filament), None);
        let full = Filament { weight: Some(1500.0), ..filament };
        assert_eq!(remaining_weight(&spool, &full), Some(300.0));
    }

    #[test]
    fn times_are_utc_with_a_z_and_microseconds_only_when_there_are_some() {
        assert_eq!(datetime(1_714_558_272_000), "2024-05-01T10:11:12Z");
        assert_eq!(datetime(1_714_558_272_345), "2024-05-01T10:11:12.345000Z");
    }

    #[test]
    fn times_parse_in_the_forms_clients_send() {
        let at = 1_714_558_272_000;
        for text in [
            "2024-05-01T10:11:12Z",
            "2024-05-01T10:11:12",
            "2024-05-01 10:11:12",
            "2024-05-01T12:11:12+02:00",
            "2024-05-01T08:11:12-0200",
            "1714558272",
        ] {
            assert_eq!(parse_datetime(text), Some(at), "{text}");
        }
        assert_eq!(parse_datetime("2024-05-01T10:11:12.345678Z"), Some(at + 345));
        assert_eq!(parse_datetime("2024-05-01T10:11Z"), Some(at - 12_000));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T10:11:12+2",
            "2024-05-01X10:11:12",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
