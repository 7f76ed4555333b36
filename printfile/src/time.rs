//! Durations as slicers write them: `1d 2h 3m 4s`, `2h 3m`, `45m 12s`, `12s`, or plain
//! seconds (`1234`, `1234.5`).

/// Seconds in `text`, or `None` when it is not a duration.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| seconds.round() as u64);
    }
    let mut total = 0u64;
    let mut any = false;
    for part in text.split_whitespace() {
        let split = part.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, unit) = part.split_at(split);
        let number: f64 = number.parse().ok()?;
        if !number.is_finite() || number < 0.0 {
            return None;
        }
        let scale = match unit {
            "d" => 86_400.0,
            "h" => 3_600.0,
            "m" | "min" => 60.0,
            "s" => 1.0,
            _ => return None,
        };
        total = total.checked_add((number * scale).round() as u64)?;
        any = true;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slicer_durations() {
        assert_eq!(parse_duration("1d 2h 3m 4s"), Some(93_784));
        assert_eq!(parse_duration("2h 3m"), Some(7_380));
        assert_eq!(parse_duration(" 45m 12s "), Some(2_712));
        assert_eq!(parse_duration("12s"), Some(12));
        assert_eq!(parse_duration("1234"), Some(1234));
        assert_eq!(parse_duration("1234.6"), Some(1235));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("3x"), None);
        assert_eq!(parse_duration("-5"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }
    }
}
