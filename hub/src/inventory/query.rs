//! Spoolman's list queries, pure: text and id filters, `sort=field:dir,…` and paging, over
//! entities already rendered as Spoolman's JSON (so a sort key is the field a client reads).
//! The rules, with their sources, are in `docs/research/spoolman.md` §2.6–2.8.

use std::cmp::Ordering;

use serde_json::Value;

/// One term of a text filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// `` (empty): no value (null or empty text).
    Empty,
    /// `"text"`: exactly this, case included.
    Exact(String),
    /// Anything else: contains it, ignoring case.
    Contains(String),
}

/// A text filter: terms split on commas, any of which matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFilter(Vec<Term>);

impl TextFilter {
    pub fn parse(value: &str) -> TextFilter {
        TextFilter(
            value
                .split(',')
                .map(|term| {
                    if term.is_empty() {
                        Term::Empty
                    } else if term.len() >= 2 && term.starts_with('"') && term.ends_with('"') {
                        Term::Exact(term[1..term.len() - 1].to_owned())
                    } else {
                        Term::Contains(term.to_lowercase())
                    }
                })
                .collect(),
        )
    }

    /// Whether a field's value matches. `nullable`: an empty term also matches no value (as
    /// for a filament's name; a vendor's name, never null, matches it only when empty).
    pub fn matches(&self, value: Option<&str>, nullable: bool) -> bool {
        self.0.iter().any(|term| match (term, value) {
            (Term::Empty, None) => nullable,
            (Term::Empty, Some(value)) => value.is_empty(),
            (Term::Exact(want), Some(value)) => value == want,
            (Term::Contains(part), Some(value)) => value.to_lowercase().contains(part.as_str()),
            (_, None) => false,
        })
    }
}

/// An id filter: `1,2,-1` (`-1`: none, where the id may be null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdFilter(Vec<i64>);

impl IdFilter {
    /// `None` when the value is not `^-?\d+(,-?\d+)*$`.
    pub fn parse(value: &str) -> Option<IdFilter> {
        value
            .split(',')
            .map(|id| {
                let digits = id.strip_prefix('-').unwrap_or(id);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                id.parse::<i64>().ok()
            })
            .collect::<Option<Vec<_>>>()
            .map(IdFilter)
    }

    pub fn matches(&self, id: Option<i64>) -> bool {
        self.0.iter().any(|want| match id {
            Some(id) => id == *want,
            None => *want == -1,
        })
    }
}

/// The pattern an id filter must match, as the error says it.
pub const ID_PATTERN: &str = r"^-?\d+(,-?\d+)*$";

/// `sort=field:asc,other:desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort(Vec<(String, bool)>);

impl Sort {
    /// Parses a sort against the fields one may sort by; the error is the API's message.
    pub fn parse(value: &str, allowed: &[&str]) -> Result<Sort, String> {
        let mut keys: Vec<(String, bool)> = Vec::new();
        for item in value.split(',').filter(|item| !item.is_empty()) {
            let Some((field, direction)) = item.split_once(':') else {
                return Err(format!(
                    "Invalid sort item '{item}': expected field:asc or field:desc."
                ));
            };
            let descending = match direction.to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                _ => {
                    return Err(format!(
                        "Invalid sort direction '{direction}' for '{field}': expected asc or desc."
                    ));
                }
            };
            if !allowed.contains(&field) {
                return Err(format!(
                    "Invalid field name '{field}' to sort by; one of: {}.",
                    allowed.join(", ")
                ));
            }
            // A repeated field keeps its first place, with the last direction.
            match keys.iter_mut().find(|(f, _)| f == field) {
                Some(key) => key.1 = descending,
                None => keys.push((field.to_owned(), descending)),
            }
        }
        Ok(Sort(keys))
    }

    /// Sorts rendered items; `key` gives a field's value of an item (virtual fields
    /// included). Stable: equal items keep their id order. Nulls first, as SQLite orders
    /// them.
    pub fn apply<T>(&self, items: &mut [T], key: impl Fn(&T, &str) -> Value) {
        if self.0.is_empty() {
            return;
        }
        items.sort_by(|a, b| {
            for (field, descending) in &self.0 {
                let ordering = compare(&key(a, field), &key(b, field));
                let ordering = if *descending { ordering.reverse() } else { ordering };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
    }
}

/// A field of a rendered item by its dotted path (`filament.vendor.name`).
pub fn field(item: &Value, path: &str) -> Value {
    let mut at = item;
    for part in path.split('.') {
        match at.get(part) {
            Some(next) => at = next,
            None => return Value::Null,
        }
    }
    at.clone()
}

/// SQL's order over JSON values: null first, then numbers, then text, then booleans
/// (false before true).
fn compare(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Paging: `offset` counts only with a `limit` (as Spoolman does). Returns the page.
pub fn page<T>(items: Vec<T>, limit: Option<usize>, offset: Option<usize>) -> Vec<T> {
    match limit {
        Some(limit) => items.into_iter().skip(offset.unwrap_or(0)).take(limit).collect(),
        None => items,
    }
}

/// Lenient booleans, as the query strings of Spoolman's clients write them (`True`,
/// `false`, `1`, `yes`, `on`, …).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// CIELAB of a hex colour (`RRGGBB`, a leading `#` and any alpha ignored).
fn lab(hex: &str) -> Option<[f64; 3]> {
    let hex = hex.trim_start_matches('#');
    let rgb = hex.get(0..6)?;
    let n = u32::from_str_radix(rgb, 16).ok()?;
    Some(proto::Rgb([(n >> 16) as u8, (n >> 8) as u8, n as u8]).lab())
}

/// CIE94 ΔE (graphic arts weights), the distance Spoolman's colour search uses.
fn delta_e94(one: [f64; 3], two: [f64; 3]) -> f64 {
    let [l1, a1, b1] = one;
    let [l2, a2, b2] = two;
    let c1 = (a1 * a1 + b1 * b1).sqrt();
    let c2 = (a2 * a2 + b2 * b2).sqrt();
    let dl = l1 - l2;
    let dc = c1 - c2;
    let da = a1 - a2;
    let db = b1 - b2;
    let dh2 = (da * da + db * db - dc * dc).max(0.0);
    let sc = 1.0 + 0.045 * c1;
    let sh = 1.0 + 0.015 * c1;
    (dl * dl + (dc / sc).powi(2) + dh2 / (sh * sh)).sqrt()
}

/// Whether a filament's colour (or any of its colours) is within `threshold` of `wanted`.
pub fn colour_near(
    wanted: &str,
    threshold: f64,
    color_hex: Option<&str>,
    multi: Option<&str>,
) -> bool {
    let Some(want) = lab(wanted) else { return false };
    color_hex
        .into_iter()
        .chain(multi.into_iter().flat_map(|m| m.split(',')))
        .filter_map(lab)
        .any(|have| delta_e94(want, have) <= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_terms_are_substrings_ignoring_case_quoted_exact_and_empty_for_none() {
        let f = TextFilter::parse("shelf");
        assert!(f.matches(Some("Top SHELF 2"), true));
        assert!(!f.matches(None, true));
        let f = TextFilter::parse("\"Shelf\"");
        assert!(f.matches(Some("Shelf"), true));
        assert!(!f.matches(Some("shelf"), true), "quoted is exact, case included");
        assert!(!f.matches(Some("Shelf 2"), true));
        let f = TextFilter::parse(",dry box");
        assert!(f.matches(None, true), "an empty term matches no value");
        assert!(f.matches(Some(""), true));
        assert!(f.matches(Some("The Dry Box"), true));
        assert!(!f.matches(Some("shelf"), true));
        assert!(!TextFilter::parse("").matches(None, false), "a vendor's name is never null");
    }

    #[test]
    fn id_filters_take_comma_lists_and_minus_one_for_none() {
        let f = IdFilter::parse("3,-1").unwrap();
        assert!(f.matches(Some(3)) && f.matches(None) && !f.matches(Some(4)));
        for bad in ["", "a", "1,", "1,,2", "--1", "1.5", " 1"] {
            assert_eq!(IdFilter::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sort_takes_fields_in_order_and_refuses_what_it_cannot_sort_by() {
        let allowed = ["id", "name", "vendor.name"];
        let sort = Sort::parse("vendor.name:desc,id:ASC", &allowed).unwrap();
        let mut items = vec![
            json!({"id": 1, "vendor": {"name": "A"}}),
            json!({"id": 2}),
            json!({"id": 3, "vendor": {"name": "B"}}),
            json!({"id": 4, "vendor": {"name": "B"}}),
        ];
        sort.apply(&mut items, field);
        let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [3, 4, 1, 2], "desc puts null last, as SQLite's nulls-first reversed");
        assert!(Sort::parse("weight:asc", &allowed).unwrap_err().contains("weight"));
        assert!(Sort::parse("name", &allowed).is_err());
        assert!(Sort::parse("name:up", &allowed).is_err());
        assert_eq!(Sort::parse("", &allowed).unwrap(), Sort(Vec::new()));
        assert_eq!(
            Sort::parse("name:asc,id:asc,name:desc", &allowed).unwrap(),
            Sort(vec![("name".into(), true), ("id".into(), false)])
        );
    }

    #[test]
    fn an_offset_counts_only_with_a_limit() {
        let items: Vec<u32> = (1..=10).collect();
        assert_eq!(page(items.clone(), Some(3), Some(2)), [3, 4, 5]);
        assert_eq!(page(items.clone(), None, Some(2)).len(), 10);
        assert_eq!(page(items, Some(5), Some(20)), Vec::<u32>::new());
    }

    #[test]
    fn booleans_are_read_as_pythons_clients_write_them() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn colour_search_finds_near_colours_and_any_of_a_multicolour() {
        assert!(colour_near("FF0000", 20.0, Some("F80000"), None));
        assert!(!colour_near("FF0000", 20.0, Some("0000FF"), None));
        assert!(colour_near("#0000ff", 20.0, None, Some("FFFFFF,0000FE")));
        assert!(!colour_near("zzzzzz", 20.0, Some("FF0000"), None));
    }
}
