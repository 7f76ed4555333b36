//! Who acts: a person logged in to the dashboard, a script holding an API token, or an
//! internal actor of the hub (the scheduler, the assistant). Every service call that changes
//! something takes a [`Principal`] and checks its [`Role`] itself, so HTTP is not the only
//! door that is locked.

use serde::Serialize;

use super::ServiceError;

/// A role; each includes the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but users, tokens and the audit log.
    Viewer,
    /// Also sends printer commands and takes snapshots.
    Operator,
    /// Also manages users, tokens, agents and enrollment.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// How a person reached the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A dashboard session cookie.
    Session,
    /// An API token, by its id.
    Token(String),
}

/// Who is acting, with the rights that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user of the hub, logged in or holding a token.
    User { name: String, role: Role, via: Via },
    /// Part of the hub acting by itself (`on_behalf_of` empty: a scheduled job) or for a
    /// person (the assistant). Its role never exceeds that person's: see
    /// [`Principal::acting_for`].
    Internal { actor: String, role: Role, on_behalf_of: Option<Box<Principal>> },
}

impl Principal {
    /// A user reached through the dashboard or a token.
    pub fn user(name: impl Into<String>, role: Role, via: Via) -> Principal {
        Principal::User { name: name.into(), role, via }
    }

    /// An internal actor with a role of its own (a scheduled job configured by an admin).
    pub fn internal(actor: impl Into<String>, role: Role) -> Principal {
        Principal::Internal { actor: actor.into(), role, on_behalf_of: None }
    }

    /// An internal actor acting for `person`: it gets at most `role`, and never more than
    /// `person` has, so asking the assistant cannot lift a viewer to an operator.
    pub fn acting_for(actor: impl Into<String>, role: Role, person: &Principal) -> Principal {
        Principal::Internal {
            actor: actor.into(),
            role: role.min(person.role()),
            on_behalf_of: Some(Box::new(person.clone())),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::User { role, .. } | Principal::Internal { role, .. } => *role,
        }
    }

    /// The person answerable for the action: the user, or the person an internal actor
    /// acts for, or the actor's own name.
    pub fn name(&self) -> &str {
        match self {
            Principal::User { name, .. } => name,
            Principal::Internal { on_behalf_of: Some(person), .. } => person.name(),
            Principal::Internal { actor, .. } => actor,
        }
    }

    /// How the action arrived, for the audit log: `session`, `token:<id>`,
    /// `internal:<actor>`, or `internal:<actor> for <how the person arrived>`.
    pub fn via(&self) -> String {
        match self {
            Principal::User { via: Via::Session, .. } => "session".into(),
            Principal::User { via: Via::Token(id), .. } => format!("token:{id}"),
            Principal::Internal { actor, on_behalf_of: None, .. } => format!("internal:{actor}"),
            Principal::Internal { actor, on_behalf_of: Some(person), .. } => {
                format!("internal:{actor} for {}", person.via())
            }
        }
    }

    /// `Ok` when this principal holds `needed` (or more).
    pub fn require(&self, needed: Role) -> Result<(), ServiceError> {
        if self.role() >= needed { Ok(()) } else { Err(ServiceError::Forbidden { needed }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn an_internal_actor_never_outranks_its_person() {
        let viewer = Principal::user("vi", Role::Viewer, Via::Session);
        let assistant = Principal::acting_for("assistant", Role::Admin, &viewer);
        assert_eq!(assistant.role(), Role::Viewer);
        assert!(matches!(
            assistant.require(Role::Operator),
            Err(ServiceError::Forbidden { needed: Role::Operator })
        ));
        assert_eq!(assistant.name(), "vi");
        assert_eq!(assistant.via(), "internal:assistant for session");

        let admin = Principal::user("ad", Role::Admin, Via::Token("abc".into()));
        let limited = Principal::acting_for("assistant", Role::Operator, &admin);
        assert_eq!(limited.role(), Role::Operator, "the actor's own cap holds too");
        assert!(limited.require(Role::Admin).is_err());
        assert_eq!(limited.via(), "internal:assistant for token:abc");

        let job = Principal::internal("scheduler", Role::Operator);
        assert_eq!(job.name(), "scheduler");
        assert!(job.require(Role::Operator).is_ok());
    }
}
