//! Pending actions, pure: what the assistant proposes to do (pause, resume, stop, queue a
//! file, change a job's priority) waits here, bound to the exact action and its arguments,
//! the person who asked and an expiry, until a person allowed to do it confirms or rejects
//! it through a request of their own. Nothing said in a conversation can decide it: a
//! decision needs an authenticated person (never the assistant or another internal actor),
//! the action's digest as the dashboard showed it, a state still pending and a clock before
//! the expiry; a confirmation is taken once (the store's write is conditional on the state
//! this function read).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::service::{Principal, Role};

/// What the assistant proposes: a tool's name and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposedAction {
    pub tool: String,
    pub arguments: serde_json::Value,
    /// What it does, in a person's words (shown with Confirm and Reject).
    pub summary: String,
}

impl ProposedAction {
    /// The SHA-256 of the action's canonical JSON (object keys sorted): what a person
    /// confirms is exactly what runs.
    pub fn digest(&self) -> String {
        let canonical = serde_json::json!({
            "tool": self.tool,
            "arguments": canonical(&self.arguments),
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// A JSON value with every object's keys in order (serde_json's map keeps insertion order
/// only with `preserve_order`; rebuilding through a BTreeMap makes it explicit).
fn canonical(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::to_value(sorted).unwrap_or(serde_json::Value::Null)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

/// Where a pending action stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PendingState {
    Pending,
    Confirmed { by: String, at: i64 },
    Rejected { by: String, at: i64 },
}

/// A proposed action waiting for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAction {
    pub id: String,
    pub action: ProposedAction,
    /// Who was talking to the assistant.
    pub requested_by: String,
    /// The least role the action needs.
    pub needed: Role,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: PendingState,
}

/// A person's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Confirm,
    Reject,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only a person can confirm or reject an action, through a request of their own")]
    NotAPerson,
    #[error("this action needs the {} role", needed.as_str())]
    NotAllowed { needed: Role },
    #[error("this action expired; ask the assistant again")]
    Expired,
    #[error("this action was decided already")]
    AlreadyDecided,
    #[error("the action changed since it was shown; reload it before deciding")]
    Mismatch,
}

/// The new state of `pending` when `who` decides it with the digest they were shown, at
/// `now` (Unix ms); the store writes it only if the state is still the one read.
pub fn decide(
    pending: &PendingAction,
    who: &Principal,
    decision: Decision,
    digest: &str,
    now: i64,
) -> Result<PendingState, Refusal> {
    if !matches!(who, Principal::User { .. }) {
        return Err(Refusal::NotAPerson);
    }
    if pending.state != PendingState::Pending {
        return Err(Refusal::AlreadyDecided);
    }
    if digest != pending.action.digest() {
        return Err(Refusal::Mismatch);
    }
    match decision {
        Decision::Reject => Ok(PendingState::Rejected { by: who.name().to_owned(), at: now }),
        Decision::Confirm => {
            if now >= pending.expires_at {
                return Err(Refusal::Expired);
            }
            if who.role() < pending.needed {
                return Err(Refusal::NotAllowed { needed: pending.needed });
            }
            Ok(PendingState::Confirmed { by: who.name().to_owned(), at: now })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Via;
    use serde_json::json;

    fn pause() -> PendingAction {
        PendingAction {
            id: "p1".into(),
            action: ProposedAction {
                tool: "pause_printer".into(),
                arguments: json!({"printer": "01P00A391800001"}),
                summary: "Pause Workhorse P1S".into(),
            },
            requested_by: "olga".into(),
            needed: Role::Operator,
            created_at: 1_000,
            expires_at: 601_000,
            state: PendingState::Pending,
        }
    }

    fn person(name: &str, role: Role) -> Principal {
        Principal::user(name, role, Via::Session)
    }

    #[test]
    fn a_person_with_the_role_confirms_once_before_the_expiry() {
        let pending = pause();
        let digest = pending.action.digest();
        let state =
            decide(&pending, &person("olga", Role::Operator), Decision::Confirm, &digest, 2_000);
        assert_eq!(state, Ok(PendingState::Confirmed { by: "olga".into(), at: 2_000 }));
        let decided = PendingAction { state: state.unwrap(), ..pending };
        let again =
            decide(&decided, &person("olga", Role::Operator), Decision::Confirm, &digest, 3_000);
        assert_eq!(again, Err(Refusal::AlreadyDecided));
    }

    #[test]
    fn nothing_but_an_authenticated_person_with_the_role_in_time_can_confirm() {
        let pending = pause();
        let digest = pending.action.digest();
        // The assistant itself, even acting for an admin.
        let admin = person("ada", Role::Admin);
        let assistant = Principal::acting_for("assistant", Role::Admin, &admin);
        assert_eq!(
            decide(&pending, &assistant, Decision::Confirm, &digest, 2_000),
            Err(Refusal::NotAPerson)
        );
        // A viewer.
        let viewer = person("vic", Role::Viewer);
        assert_eq!(
            decide(&pending, &viewer, Decision::Confirm, &digest, 2_000),
            Err(Refusal::NotAllowed { needed: Role::Operator })
        );
        // Too late.
        let operator = person("olga", Role::Operator);
        assert_eq!(
            decide(&pending, &operator, Decision::Confirm, &digest, 601_000),
            Err(Refusal::Expired)
        );
        // Another action than the one shown.
        let mut changed = pending.clone();
        changed.action.arguments = json!({"printer": "00M09A351100002"});
        assert_eq!(
            decide(&changed, &operator, Decision::Confirm, &digest, 2_000),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn a_rejection_needs_a_person_but_no_role_and_ends_it() {
        let pending = pause();
        let digest = pending.action.digest();
        let viewer = person("vic", Role::Viewer);
        let state = decide(&pending, &viewer, Decision::Reject, &digest, 700_000).unwrap();
        assert_eq!(state, PendingState::Rejected { by: "vic".into(), at: 700_000 });
    }

    #[test]
    fn the_digest_ignores_key_order_but_not_values() {
        let a = ProposedAction {
            tool: "t".into(),
            arguments: json!({"a": 1, "b": {"x": 1, "y": 2}}),
            summary: "one".into(),
        };
        let b = ProposedAction {
            tool: "t".into(),
            arguments: json!({"b": {"y": 2, "x": 1}, "a": 1}),
            summary: "two".into(),
        };
        assert_eq!(a.digest(), b.digest(), "the summary is words, not the action");
        let c = ProposedAction { arguments: json!({"a": 2, "b": {"x": 1, "y": 2}}), ..a.clone() };
        assert_ne!(a.digest(), c.digest());
        let d = ProposedAction { tool: "u".into(), ..a.clone() };
        assert_ne!(a.digest(), d.digest());
    }
}
