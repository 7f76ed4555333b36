//! Whether a question is about the farm's past, and what to look for, pure (issue 20): a
//! question about what happened ("why did PETG prints on the P1S fail last week?") is
//! answered from the memory (reviewed outcomes, events, documents) and the analytics, with
//! the records cited. The printer, the material and the period named in the question become
//! the search's filters.

use crate::memory::store::Filter;

/// What to look up for a question about the past.
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    /// The memory search's filters (the viewer is set by the caller).
    pub filter: Filter,
    /// The question is about how prints went: the analytics answer too.
    pub outcomes: bool,
}

/// Words that make a question one about the past, or about what the farm knows.
const HISTORY: &[&str] = &[
    "why",
    "fail",
    "failed",
    "failing",
    "failure",
    "went wrong",
    "happened",
    "history",
    "before",
    "previous",
    "past",
    "last time",
    "last week",
    "last month",
    "yesterday",
    "earlier",
    "ago",
    "manual",
    "data sheet",
    "datasheet",
    "document",
    "notes",
    "review",
    "recommend",
    "how do i",
    "how should",
    "what did",
    "when did",
    "problem",
    "trouble",
    "again",
    "usually",
    "often",
];

/// Words that make it about how prints went.
const OUTCOMES: &[&str] = &[
    "fail",
    "success",
    "succeed",
    "went wrong",
    "problem",
    "trouble",
    "outcome",
    "print",
    "why",
    "rate",
    "quality",
];

const DAY: i64 = 86_400_000;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn mentions(lower: &str, tokens: &[String], phrase: &str) -> bool {
    if phrase.contains(' ') {
        lower.contains(phrase)
    } else {
        tokens.iter().any(|t| t == phrase || (phrase.len() >= 4 && t.starts_with(phrase)))
    }
}

/// What to recall for `question`, or `None` when it is not about the past. `printers` are
/// the farm's (id, name).
pub fn recall(question: &str, printers: &[(String, Option<String>)], now: i64) -> Option<Recall> {
    let lower = question.to_lowercase();
    let tokens = words(question);
    let period = period(question, now);
    let about_past = period.is_some() || HISTORY.iter().any(|p| mentions(&lower, &tokens, p));
    if !about_past {
        return None;
    }
    let printer = printers.iter().find_map(|(id, name)| {
        let named =
            name.as_deref().is_some_and(|n| !n.is_empty() && lower.contains(&n.to_lowercase()));
        (lower.contains(&id.to_lowercase()) || named).then(|| id.clone())
    });
    let material = super::facets::MATERIALS
        .iter()
        .find(|m| tokens.iter().any(|t| t.eq_ignore_ascii_case(m)))
        .map(|m| (*m).to_owned());
    let (since, until) = match period {
        Some((since, until)) => (Some(since), Some(until)),
        None => (None, None),
    };
    Some(Recall {
        filter: Filter { printer, material, since, until, ..Filter::default() },
        outcomes: OUTCOMES.iter().any(|p| mentions(&lower, &tokens, p)),
    })
}

/// The period a question names, `[since, until)` in Unix ms: today, yesterday, this or last
/// week or month, or the last N days, weeks or months. "Last week" is the seven days before
/// now (how people mean it when asking on a Monday and on a Friday alike).
pub fn period(question: &str, now: i64) -> Option<(i64, i64)> {
    let lower = question.to_lowercase();
    let today = now - now.rem_euclid(DAY);
    if lower.contains("yesterday") {
        return Some((today - DAY, today));
    }
    if lower.contains("today") {
        return Some((today, now + 1));
    }
    let tokens = words(question);
    for (i, token) in tokens.iter().enumerate() {
        if token != "last" && token != "past" {
            continue;
        }
        let (count, unit) = match (tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(n), Some(unit)) if n.parse::<i64>().is_ok() => (n.parse::<i64>().ok()?, unit),
            (Some(unit), _) => (1, unit),
            _ => continue,
        };
        let days = match unit.trim_end_matches('s') {
            "day" => 1,
            "week" => 7,
            "month" => 30,
            "year" => 365,
            _ => continue,
        };
        let count = count.clamp(1, 3650);
        return Some((now - count * days * DAY, now + 1));
    }
    if lower.contains("this week") {
        return Some((now - 7 * DAY, now + 1));
    }
    if lower.contains("this month") {
        return Some((now - 30 * DAY, now + 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_849_600_000; // 2025-12-04 12:00 UTC

    fn farm() -> Vec<(String, Option<String>)> {
        vec![
            ("01P00A391800321".into(), Some("Workhorse P1S".into())),
            ("00M09A351100002".into(), Some("Lab X1 Carbon".into())),
        ]
    }

    #[test]
    fn a_question_about_the_past_names_its_printer_material_and_period() {
        let r = recall("Why did PETG prints on the Lab X1 Carbon fail last week?", &farm(), NOW)
            .unwrap();
        assert_eq!(r.filter.printer.as_deref(), Some("00M09A351100002"));
        assert_eq!(r.filter.material.as_deref(), Some("PETG"));
        assert_eq!(r.filter.since, Some(NOW - 7 * DAY));
        assert!(r.outcomes);
        let r = recall("what does the manual say about drying pla-cf?", &farm(), NOW).unwrap();
        assert_eq!(r.filter.material.as_deref(), Some("PLA-CF"));
        assert_eq!((r.filter.printer.as_deref(), r.filter.since), (None, None));
        let r = recall("failures on 01P00A391800321 in the last 3 days", &farm(), NOW).unwrap();
        assert_eq!(r.filter.printer.as_deref(), Some("01P00A391800321"));
        assert_eq!(r.filter.since, Some(NOW - 3 * DAY));
    }

    #[test]
    fn questions_about_now_and_actions_are_not_recalled() {
        for question in [
            "What is the P1S doing right now?",
            "pause printer 01P00A391800321",
            "set the bed to 60 °C",
            "how much PLA is left?",
        ] {
            assert_eq!(recall(question, &farm(), NOW), None, "{question}");
        }
    }

    #[test]
    fn periods_are_days_weeks_and_months_back_from_now() {
        let midnight = NOW - 12 * 3_600_000;
        assert_eq!(period("what failed yesterday", NOW), Some((midnight - DAY, midnight)));
        assert_eq!(period("anything today?", NOW), Some((midnight, NOW + 1)));
        assert_eq!(period("over the past 2 weeks", NOW), Some((NOW - 14 * DAY, NOW + 1)));
        assert_eq!(period("last month", NOW), Some((NOW - 30 * DAY, NOW + 1)));
        assert_eq!(period("in the last 99999 days", NOW), Some((NOW - 3650 * DAY, NOW + 1)));
        assert_eq!(period("the last layer", NOW), None);
        assert_eq!(period("PETG at 240", NOW), None);
    }
}
