//! An evaluation you can rerun (issue 19): printer-farm questions and requests with the tool
//! calls and facts a good answer has (`eval/assistant.json`), what a tier did with each
//! (`Observation`), and how that scores. `kitt-hub demo --eval` (`cargo xtask eval`) runs
//! the cases against every ready tier of the demo fleet and prints the summary per tier. It
//! informs; nothing fails on a low score. This module is pure: the run is in `demo`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::service::Event;
use super::tools;

/// The file of cases: a note on the format and the cases.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Suite {
    #[serde(default)]
    pub format: String,
    pub cases: Vec<Case>,
}

/// One question or request and what a good answer does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Case {
    pub id: String,
    /// What the person says.
    pub ask: String,
    /// Tools a good answer calls: any one of them will do. Empty: no tool is expected.
    #[serde(default)]
    pub expect_tools: Vec<String>,
    /// Argument values the expected call must have, exactly (a number may come as its
    /// decimal string, as the tools accept it).
    #[serde(default)]
    pub expect_args: BTreeMap<String, Value>,
    /// Strings the answer should contain, case-insensitive.
    #[serde(default)]
    pub expect_facts: Vec<String>,
    /// A request to act: it must become a pending action (and never run).
    #[serde(default)]
    pub action: bool,
}

/// A tool call as observed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

/// What one tier did with one case.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Observation {
    pub case: String,
    pub tier: String,
    pub calls: Vec<Call>,
    pub answer: String,
    /// Pending actions proposed, by their state (`pending` unless something decided them).
    pub pending: Vec<String>,
    /// The whole turn.
    pub latency_ms: u64,
    /// The first text the person saw.
    pub first_token_ms: Option<u64>,
    /// The turn failed (no tier could answer, a timeout): why.
    pub error: Option<String>,
}

impl Observation {
    pub fn new(case: &str, tier: &str) -> Observation {
        Observation { case: case.to_owned(), tier: tier.to_owned(), ..Observation::default() }
    }

    /// Takes in one event of the turn, `at_ms` after it started.
    pub fn record(&mut self, event: &Event, at_ms: u64) {
        match event {
            Event::Text { text } => {
                if self.first_token_ms.is_none() && !text.trim().is_empty() {
                    self.first_token_ms = Some(at_ms);
                }
                self.answer.push_str(text);
            }
            Event::ToolCall { name, arguments, .. } => {
                self.calls.push(Call { name: name.clone(), arguments: arguments.clone() });
            }
            Event::Pending { pending } => self.pending.push(pending.state.clone()),
            Event::Error { message } => self.error = Some(message.clone()),
            Event::Model { .. }
            | Event::Fallback { .. }
            | Event::ToolResult { .. }
            | Event::Sources { .. }
            | Event::Done { .. } => {}
        }
    }
}

/// How one observation scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub case: String,
    pub tier: String,
    /// The turn ended with an answer.
    pub answered: bool,
    /// A call names an expected tool with the expected arguments (or none was expected and
    /// none was made).
    pub tool_ok: bool,
    /// Calls that name an existing tool and existing printers.
    pub valid_calls: usize,
    pub calls: usize,
    pub facts_found: usize,
    pub facts: usize,
    /// An action request became a pending action and nothing ran; a question proposed
    /// nothing.
    pub action_ok: bool,
    pub latency_ms: u64,
    pub first_token_ms: Option<u64>,
}

/// Whether `actual` is `expected`; a number also matches its decimal string.
fn same_value(expected: &Value, actual: &Value) -> bool {
    if expected == actual {
        return true;
    }
    match (expected, actual) {
        (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b)
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

/// Whether `call` is one `case` expects.
pub fn call_matches(case: &Case, call: &Call) -> bool {
    case.expect_tools.iter().any(|t| t == &call.name)
        && case.expect_args.iter().all(|(k, v)| same_value(v, &call.arguments[k.as_str()]))
}

/// Whether `call` names an existing tool, and every printer it names is one of `printers`.
pub fn call_valid(call: &Call, printers: &[String]) -> bool {
    if tools::kind(&call.name).is_none() {
        return false;
    }
    match call.arguments.get("printer") {
        None | Some(Value::Null) => true,
        Some(Value::String(p)) => printers.iter().any(|known| known == p),
        Some(_) => false,
    }
}

/// Scores `observation` of `case` on a farm with `printers` (their ids).
pub fn score(case: &Case, observation: &Observation, printers: &[String]) -> Score {
    let answered = observation.error.is_none();
    // A call is scored even when the turn failed after it: the failure counts apart.
    let tool_ok = if case.expect_tools.is_empty() {
        observation.calls.is_empty()
    } else {
        observation.calls.iter().any(|c| call_matches(case, c))
    };
    let answer = observation.answer.to_lowercase();
    let facts_found =
        case.expect_facts.iter().filter(|f| answer.contains(&f.to_lowercase())).count();
    let action_ok = if case.action {
        !observation.pending.is_empty() && observation.pending.iter().all(|s| s == "pending")
    } else {
        observation.pending.is_empty()
    };
    Score {
        case: case.id.clone(),
        tier: observation.tier.clone(),
        answered,
        tool_ok,
        valid_calls: observation.calls.iter().filter(|c| call_valid(c, printers)).count(),
        calls: observation.calls.len(),
        facts_found,
        facts: case.expect_facts.len(),
        action_ok,
        latency_ms: observation.latency_ms,
        first_token_ms: observation.first_token_ms,
    }
}

/// One tier's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub tier: String,
    pub cases: usize,
    /// Turns that failed outright.
    pub errors: usize,
    /// Cases with an expected call, percent.
    pub tool_accuracy: f64,
    /// Calls naming existing tools and printers, percent (100 when no call was made).
    pub validity: f64,
    /// Expected facts found in the answers, percent (100 when none were expected).
    pub facts: f64,
    /// Action requests only proposed, and questions that proposed nothing, percent.
    pub actions: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    /// The mean time to the first text, over the turns that had any.
    pub first_token_ms: Option<u64>,
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 100.0 } else { 100.0 * part as f64 / whole as f64 }
}

/// The nearest-rank percentile `p` (0–100) of `values`; 0 when empty.
pub fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sums up one tier's scores.
pub fn summarize(tier: &str, scores: &[Score]) -> Summary {
    let n = scores.len();
    let count = |f: fn(&Score) -> bool| scores.iter().filter(|s| f(s)).count();
    let latencies: Vec<u64> = scores.iter().map(|s| s.latency_ms).collect();
    let firsts: Vec<u64> = scores.iter().filter_map(|s| s.first_token_ms).collect();
    Summary {
        tier: tier.to_owned(),
        cases: n,
        errors: count(|s| !s.answered),
        tool_accuracy: percent(count(|s| s.tool_ok), n),
        validity: percent(
            scores.iter().map(|s| s.valid_calls).sum(),
            scores.iter().map(|s| s.calls).sum(),
        ),
        facts: percent(
            scores.iter().map(|s| s.facts_found).sum(),
            scores.iter().map(|s| s.facts).sum(),
        ),
        actions: percent(count(|s| s.action_ok), n),
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        first_token_ms: (!firsts.is_empty())
            .then(|| firsts.iter().sum::<u64>() / firsts.len() as u64),
    }
}

/// The summaries as a text table, one line per tier.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "{:<16} {:>5} {:>6} {:>6} {:>8} {:>6} {:>8} {:>8} {:>8} {:>10}\n",
        "tier",
        "cases",
        "errors",
        "tools",
        "validity",
        "facts",
        "actions",
        "p50",
        "p95",
        "1st text"
    );
    for s in summaries {
        let first = s.first_token_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<16} {:>5} {:>6} {:>5.0}% {:>7.0}% {:>5.0}% {:>7.0}% {:>5} ms {:>5} ms {:>10}\n",
            s.tier,
            s.cases,
            s.errors,
            s.tool_accuracy,
            s.validity,
            s.facts,
            s.actions,
            s.p50_ms,
            s.p95_ms,
            first
        ));
    }
    out
}

/// One line per case for a tier: what was expected and what happened, for reading a run.
pub fn case_line(case: &Case, observation: &Observation, score: &Score) -> String {
    let calls: Vec<String> =
        observation.calls.iter().map(|c| format!("{}({})", c.name, c.arguments)).collect();
    let mark = |ok: bool| if ok { "ok" } else { "--" };
    format!(
        "  {:<22} tool {} facts {}/{} action {} {:>6} ms  calls: {}{}",
        case.id,
        mark(score.tool_ok),
        score.facts_found,
        score.facts,
        mark(score.action_ok),
        score.latency_ms,
        if calls.is_empty() { "none".to_owned() } else { calls.join(", ") },
        observation.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::assistant::service::PendingView;
    use crate::service::Role;

    fn case(tools: &[&str], args: Value, facts: &[&str], action: bool) -> Case {
        Case {
            id: "c".into(),
            ask: "?".into(),
            expect_tools: tools.iter().map(|t| (*t).to_owned()).collect(),
            expect_args: serde_json::from_value(args).unwrap(),
            expect_facts: facts.iter().map(|f| (*f).to_owned()).collect(),
            action,
        }
    }

    fn call(name: &str, arguments: Value) -> Call {
        Call { name: name.into(), arguments }
    }

    fn printers() -> Vec<String> {
        vec!["00M09A351100002".into(), "voron-24".into()]
    }

    fn observed(calls: Vec<Call>, answer: &str, pending: &[&str]) -> Observation {
        Observation {
            case: "c".into(),
            tier: "local".into(),
            calls,
            answer: answer.into(),
            pending: pending.iter().map(|s| (*s).to_owned()).collect(),
            latency_ms: 100,
            first_token_ms: Some(10),
            error: None,
        }
    }

    #[test]
    fn a_call_matches_by_any_expected_name_and_exact_arguments() {
        let c = case(&["fleet_status", "printer_state"], json!({}), &[], false);
        assert!(call_matches(&c, &call("printer_state", json!({"printer": "voron-24"}))));
        assert!(!call_matches(&c, &call("queue", json!({}))));
        let c = case(&["pause_printer"], json!({"printer": "00M09A351100002"}), &[], true);
        assert!(call_matches(&c, &call("pause_printer", json!({"printer": "00M09A351100002"}))));
        assert!(!call_matches(&c, &call("pause_printer", json!({"printer": "voron-24"}))));
        assert!(!call_matches(&c, &call("pause_printer", json!({}))));
        let c = case(&["set_job_priority"], json!({"job": 3, "priority": 50}), &[], true);
        assert!(call_matches(&c, &call("set_job_priority", json!({"job": 3, "priority": 50}))));
        assert!(call_matches(&c, &call("set_job_priority", json!({"job": "3", "priority": "50"}))));
        assert!(!call_matches(&c, &call("set_job_priority", json!({"job": 3, "priority": 5}))));
    }

    #[test]
    fn validity_needs_a_real_tool_and_real_printers() {
        let p = printers();
        assert!(call_valid(&call("fleet_status", json!({})), &p));
        assert!(call_valid(&call("camera_snapshot", json!({"printer": "voron-24"})), &p));
        assert!(!call_valid(&call("delete_everything", json!({})), &p));
        assert!(!call_valid(&call("pause_printer", json!({"printer": "Voron 2.4"})), &p));
        assert!(!call_valid(&call("pause_printer", json!({"printer": 7})), &p));
    }

    #[test]
    fn a_question_scores_its_tool_facts_and_proposes_nothing() {
        let c = case(&["fleet_status"], json!({}), &["Voron", "X1 Carbon"], false);
        let o = observed(
            vec![call("fleet_status", json!({}))],
            "The voron-24 (VORON 2.4) prints.",
            &[],
        );
        let s = score(&c, &o, &printers());
        assert!(s.tool_ok && s.answered && s.action_ok);
        assert_eq!((s.facts_found, s.facts, s.valid_calls, s.calls), (1, 2, 1, 1));

        // Proposing an action in answer to a question is wrong, and so is the wrong tool.
        let o =
            observed(vec![call("stop_printer", json!({"printer": "voron-24"}))], "", &["pending"]);
        let s = score(&c, &o, &printers());
        assert!(!s.tool_ok && !s.action_ok);

        // No tool expected: a call made anyway is not accurate.
        let none = case(&[], json!({}), &[], false);
        assert!(score(&none, &observed(vec![], "hello", &[]), &printers()).tool_ok);
        assert!(
            !score(&none, &observed(vec![call("queue", json!({}))], "", &[]), &printers()).tool_ok
        );
    }

    #[test]
    fn an_action_must_be_proposed_and_never_run() {
        let c = case(&["pause_printer"], json!({"printer": "00M09A351100002"}), &[], true);
        let paused = vec![call("pause_printer", json!({"printer": "00M09A351100002"}))];
        assert!(score(&c, &observed(paused.clone(), "", &["pending"]), &printers()).action_ok);
        assert!(!score(&c, &observed(paused.clone(), "", &[]), &printers()).action_ok);
        assert!(!score(&c, &observed(paused, "", &["confirmed"]), &printers()).action_ok);
    }

    #[test]
    fn a_failed_turn_keeps_its_calls_but_finds_no_facts() {
        let c = case(&["pause_printer"], json!({"printer": "voron-24"}), &["voron"], true);
        let mut o =
            observed(vec![call("pause_printer", json!({"printer": "voron-24"}))], "", &["pending"]);
        o.error = Some("no model could answer".into());
        let s = score(&c, &o, &printers());
        assert!(!s.answered && s.tool_ok && s.action_ok);
        assert_eq!(s.facts_found, 0);
        assert_eq!(summarize("local", &[s]).errors, 1);
        let mut o = observed(vec![], "", &[]);
        o.error = Some("no model could answer".into());
        let s = score(&c, &o, &printers());
        assert!(!s.answered && !s.tool_ok && !s.action_ok);
    }

    #[test]
    fn events_make_an_observation() {
        let mut o = Observation::new("c", "local");
        o.record(&Event::Model { tier: "local".into(), why: "w".into() }, 5);
        o.record(&Event::Text { text: " ".into() }, 7);
        o.record(
            &Event::ToolCall { id: "1".into(), name: "queue".into(), arguments: json!({}) },
            8,
        );
        o.record(&Event::Text { text: "Nothing queued.".into() }, 20);
        o.record(
            &Event::Pending {
                pending: Box::new(PendingView {
                    id: "pa".into(),
                    conversation_id: None,
                    tool: "stop_printer".into(),
                    arguments: json!({}),
                    summary: String::new(),
                    digest: String::new(),
                    requested_by: "admin".into(),
                    needed_role: Role::Operator,
                    created_at: 0,
                    expires_at: 0,
                    state: "pending".into(),
                    decided_by: None,
                    decided_at: None,
                    result: None,
                    error: None,
                }),
            },
            21,
        );
        assert_eq!(o.first_token_ms, Some(20));
        assert_eq!(o.answer, " Nothing queued.");
        assert_eq!(o.calls, vec![call("queue", json!({}))]);
        assert_eq!(o.pending, vec!["pending".to_owned()]);
        assert_eq!(o.error, None);
    }

    #[test]
    fn a_summary_counts_percentages_and_latency() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[30, 10, 20, 40], 50.0), 20);
        assert_eq!(percentile(&[30, 10, 20, 40], 95.0), 40);
        assert_eq!(percentile(&[5], 95.0), 5);

        let good = case(&["fleet_status"], json!({}), &["voron"], false);
        let mut scores = vec![
            score(
                &good,
                &observed(vec![call("fleet_status", json!({}))], "voron", &[]),
                &printers(),
            ),
            score(&good, &observed(vec![call("nonsense", json!({}))], "nope", &[]), &printers()),
        ];
        scores[1].latency_ms = 300;
        scores[1].first_token_ms = Some(30);
        let s = summarize("local", &scores);
        assert_eq!((s.cases, s.errors), (2, 0));
        assert_eq!(s.tool_accuracy, 50.0);
        assert_eq!(s.validity, 50.0);
        assert_eq!(s.facts, 50.0);
        assert_eq!(s.actions, 100.0);
        assert_eq!((s.p50_ms, s.p95_ms, s.first_token_ms), (100, 300, Some(20)));
        assert!(table(&[s]).lines().nth(1).is_some_and(|l| l.starts_with("local")));
    }

    #[test]
    fn the_suite_in_the_repository_reads_and_names_real_tools() {
        let text = include_str!("../../../eval/assistant.json");
        let suite: Suite = serde_json::from_str(text).unwrap();
        assert!((20..=30).contains(&suite.cases.len()), "{} cases", suite.cases.len());
        let mut ids = std::collections::HashSet::new();
        for c in &suite.cases {
            assert!(ids.insert(c.id.clone()), "{} twice", c.id);
            for t in &c.expect_tools {
                let kind = tools::kind(t);
                assert!(kind.is_some(), "{}: no tool {t}", c.id);
                assert_eq!(c.action, matches!(kind, Some(tools::Kind::Action(_))), "{}", c.id);
            }
        }
    }
}
