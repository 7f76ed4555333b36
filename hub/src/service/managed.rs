//! Printers managed from the hub: an admin adds, edits and removes an agent's printers; the
//! agent receives the whole list over its sync connection (now, or when it returns) and
//! answers which version it applied and how each printer fared. Secrets go in and to the
//! agent, never back out.

use proto::{AgentId, ManagedLink, ManagedPrinter, PrinterId, UnixMillis};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::managed::{DiscoveredRow, ManageRefusal};
use crate::sync::server::SyncHandle;

/// A printer to manage: `{"kind": "bambu", "host": …, "access_code": …}` or
/// `{"kind": "moonraker", "url": …, "api_key": …}`. On an edit, a secret left out keeps the
/// one stored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedPrinterRequest {
    /// `bambu` or `moonraker`.
    pub kind: String,
    #[schema(max_length = 64)]
    pub name: Option<String>,
    #[schema(max_length = 64)]
    pub model: Option<String>,
    /// Bambu: the printer's address.
    pub host: Option<String>,
    /// Bambu: the MQTT port (default 8883).
    pub port: Option<u16>,
    /// Bambu: the 8-character LAN access code (required when the printer is new).
    pub access_code: Option<String>,
    /// Moonraker: its address, `http://host:7125`.
    pub url: Option<String>,
    /// Moonraker: its API key, if it requires one.
    pub api_key: Option<String>,
    /// Moonraker: the port of the host's web server, for relative webcam URLs (default 80).
    pub web_port: Option<u16>,
    /// Watch the printer's own camera (default true).
    pub camera: Option<bool>,
}

/// A managed printer as the API shows it: no secret, only whether one is set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManagedPrinterView {
    pub id: String,
    pub agent: String,
    pub kind: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub url: Option<String>,
    pub web_port: Option<u16>,
    pub camera: bool,
    /// An access code or API key is stored (never shown).
    pub has_secret: bool,
    /// `applied` (running on the agent), `error` (the agent refused it: see `error`) or
    /// `pending` (the agent has not applied this version yet: offline, or too old).
    pub status: String,
    pub error: Option<String>,
    pub updated_at: i64,
}

/// An agent's managed printers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManagedList {
    pub agent: String,
    /// The list's version, bumped on every change.
    pub version: i64,
    /// The version the agent last applied.
    pub applied_version: Option<i64>,
    pub applied_at: Option<i64>,
    pub printers: Vec<ManagedPrinterView>,
    /// The printers the agent runs from its own `agent.toml` (managed locally), as of its
    /// latest connection.
    pub local: Vec<LocalPrinter>,
}

/// A printer an agent runs from its own configuration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocalPrinter {
    pub id: String,
    pub name: Option<String>,
}

/// What an agent heard on its LAN.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiscoveredList {
    pub agent: String,
    pub printers: Vec<DiscoveredRow>,
}

/// The service.
#[derive(Debug, Clone)]
pub struct Managed {
    db: Db,
    sync: SyncHandle,
}

impl Managed {
    pub fn new(db: Db, sync: SyncHandle) -> Managed {
        Managed { db, sync }
    }

    async fn agent(&self, id: &str) -> Result<AgentId, ServiceError> {
        let unknown =
            || ServiceError::NotFound(format!("no agent {id:?}; GET /api/v1/agents lists them"));
        let agent = AgentId::new(id).map_err(|_| unknown())?;
        let row = self.db.agent(&agent).await?.ok_or_else(unknown)?;
        if row.revoked_at.is_some() {
            return Err(ServiceError::Conflict(format!("agent {id} is revoked")));
        }
        Ok(agent)
    }

    /// The printers the hub manages for `agent` (admins only).
    pub async fn list(
        &self,
        principal: &Principal,
        agent: &str,
    ) -> Result<ManagedList, ServiceError> {
        principal.require(Role::Admin)?;
        let agent = self.agent(agent).await?;
        let status = self.db.managed_status(&agent).await?;
        let applied_now = status.applied_version == Some(status.version);
        let printers = self
            .db
            .managed(&agent)
            .await?
            .into_iter()
            .map(|row| {
                let outcome = status.outcomes.iter().find(|(id, _)| id == row.printer.id.as_str());
                let (state, error) = match outcome {
                    Some((_, Some(error))) if applied_now => ("error", Some(error.clone())),
                    Some((_, None)) if applied_now => ("applied", None),
                    _ => ("pending", None),
                };
                view(&agent, &row.printer, row.updated_at, state, error)
            })
            .collect();
        let local = self
            .db
            .local_printers(&agent)
            .await?
            .into_iter()
            .map(|(id, name)| LocalPrinter { id, name })
            .collect();
        Ok(ManagedList {
            agent: agent.to_string(),
            version: status.version,
            applied_version: status.applied_version,
            applied_at: status.applied_at,
            printers,
            local,
        })
    }

    /// Adds or replaces a managed printer (admins only); audited; the agent hears at once
    /// when connected, else when it returns.
    pub async fn put(
        &self,
        principal: &Principal,
        agent: &str,
        printer: &str,
        request: ManagedPrinterRequest,
    ) -> Result<ManagedPrinterView, ServiceError> {
        principal.require(Role::Admin)?;
        let agent = self.agent(agent).await?;
        let id = PrinterId::new(printer.trim())
            .map_err(|error| ServiceError::Invalid(format!("printer id {printer:?}: {error}")))?;
        let stored = self.db.managed(&agent).await?.into_iter().find(|row| row.printer.id == id);
        let managed = checked(id, request, stored.as_ref().map(|row| &row.printer))?;
        let now = UnixMillis::now();
        match self.db.put_managed(&agent, &managed, now).await? {
            Ok(()) => {}
            Err(ManageRefusal::OwnedElsewhere { owner }) => {
                return Err(ServiceError::Conflict(format!(
                    "printer {} belongs to agent {owner}; move it first (POST /api/v1/printers/{}/owner)",
                    managed.id, managed.id
                )));
            }
        }
        let what = format!(
            "{} managed printer {} of agent {agent}",
            if stored.is_some() { "edit" } else { "add" },
            managed.id
        );
        let detail = format!("via {}", principal.via());
        self.db.audit(principal.name(), &what, 200, Some(&detail), now).await?;
        self.sync.printers_changed(&agent);
        Ok(view(&agent, &managed, now.0, "pending", None))
    }

    /// Stops managing a printer (admins only); audited. Its history stays.
    pub async fn delete(
        &self,
        principal: &Principal,
        agent: &str,
        printer: &str,
    ) -> Result<(), ServiceError> {
        principal.require(Role::Admin)?;
        let agent = self.agent(agent).await?;
        if !self.db.delete_managed(&agent, printer).await? {
            return Err(ServiceError::NotFound(format!(
                "agent {agent} manages no printer {printer:?} from the hub"
            )));
        }
        let now = UnixMillis::now();
        let what = format!("remove managed printer {printer} of agent {agent}");
        let detail = format!("via {}", principal.via());
        self.db.audit(principal.name(), &what, 200, Some(&detail), now).await?;
        self.sync.printers_changed(&agent);
        Ok(())
    }

    /// What `agent` heard on its LAN (admins only).
    pub async fn discovered(
        &self,
        principal: &Principal,
        agent: &str,
    ) -> Result<DiscoveredList, ServiceError> {
        principal.require(Role::Admin)?;
        let agent = self.agent(agent).await?;
        let printers = self.db.discovered(&agent).await?;
        Ok(DiscoveredList { agent: agent.to_string(), printers })
    }
}

fn view(
    agent: &AgentId,
    printer: &ManagedPrinter,
    updated_at: i64,
    status: &str,
    error: Option<String>,
) -> ManagedPrinterView {
    let (kind, host, port, url, web_port, has_secret) = match &printer.link {
        ManagedLink::Bambu { host, port, access_code } => {
            ("bambu", Some(host.clone()), Some(*port), None, None, !access_code.is_empty())
        }
        ManagedLink::Moonraker { url, api_key, web_port } => {
            ("moonraker", None, None, Some(url.clone()), Some(*web_port), api_key.is_some())
        }
    };
    ManagedPrinterView {
        id: printer.id.to_string(),
        agent: agent.to_string(),
        kind: kind.into(),
        name: printer.name.clone(),
        model: printer.model.clone(),
        host,
        port,
        url,
        web_port,
        camera: printer.camera,
        has_secret,
        status: status.into(),
        error,
        updated_at,
    }
}

/// The request, checked as far as the hub can (the agent checks the rest and says so),
/// with a secret left out taken from what was stored.
fn checked(
    id: PrinterId,
    request: ManagedPrinterRequest,
    stored: Option<&ManagedPrinter>,
) -> Result<ManagedPrinter, ServiceError> {
    let invalid = |message: String| ServiceError::Invalid(message);
    let short = |field: &str, value: Option<String>| -> Result<Option<String>, ServiceError> {
        let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        match value {
            Some(v) if v.chars().count() > 64 || v.chars().any(char::is_control) => {
                Err(invalid(format!("{field}: at most 64 printable characters")))
            }
            other => Ok(other),
        }
    };
    let name = short("name", request.name)?;
    let model = short("model", request.model)?;
    let stored_secret = |kind: &str| {
        stored.and_then(|printer| match (&printer.link, kind) {
            (ManagedLink::Bambu { access_code, .. }, "bambu") => Some(access_code.clone()),
            (ManagedLink::Moonraker { api_key, .. }, "moonraker") => api_key.clone(),
            _ => None,
        })
    };
    let misplaced = |fields: &[(&str, bool)], kind: &str| -> Result<(), ServiceError> {
        match fields.iter().find(|(_, given)| *given) {
            Some((field, _)) => {
                Err(invalid(format!("{field} is not a setting of a {kind} printer")))
            }
            None => Ok(()),
        }
    };
    let link = match request.kind.as_str() {
        "bambu" => {
            misplaced(
                &[
                    ("url", request.url.is_some()),
                    ("api_key", request.api_key.is_some()),
                    ("web_port", request.web_port.is_some()),
                ],
                "bambu",
            )?;
            let host = request.host.map(|h| h.trim().to_owned()).unwrap_or_default();
            if host.is_empty()
                || host.len() > 253
                || host.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid("host: the printer's IP address or host name".into()));
            }
            let access_code = match request.access_code.map(|c| c.trim().to_owned()) {
                Some(code) if !code.is_empty() => code,
                _ => stored_secret("bambu").ok_or_else(|| {
                    invalid(
                        "access_code: the 8 characters on the printer's screen (LAN only mode)"
                            .into(),
                    )
                })?,
            };
            if access_code.len() > 32 || !access_code.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid("access_code: printable characters without spaces".into()));
            }
            ManagedLink::Bambu { host, port: request.port.unwrap_or(8883), access_code }
        }
        "moonraker" => {
            misplaced(
                &[
                    ("host", request.host.is_some()),
                    ("port", request.port.is_some()),
                    ("access_code", request.access_code.is_some()),
                ],
                "moonraker",
            )?;
            let url = request.url.map(|u| u.trim().to_owned()).unwrap_or_default();
            let lower = url.to_ascii_lowercase();
            if url.is_empty()
                || url.len() > 512
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "url: Moonraker's address, e.g. http://voron.local:7125".into(),
                ));
            }
            if lower.starts_with("https://") || lower.starts_with("wss://") {
                return Err(invalid(
                    "url: https is not supported; give Moonraker's plain http address".into(),
                ));
            }
            let api_key = match request.api_key.map(|k| k.trim().to_owned()) {
                Some(key) if !key.is_empty() => Some(key),
                Some(_) => None,
                None => stored_secret("moonraker"),
            };
            if api_key
                .as_ref()
                .is_some_and(|k| k.len() > 256 || !k.chars().all(|c| c.is_ascii_graphic()))
            {
                return Err(invalid("api_key: printable characters without spaces".into()));
            }
            ManagedLink::Moonraker { url, api_key, web_port: request.web_port.unwrap_or(80) }
        }
        other => return Err(invalid(format!("kind {other:?}: bambu or moonraker"))),
    };
    if matches!(
        link,
        ManagedLink::Bambu { port: 0, .. } | ManagedLink::Moonraker { web_port: 0, .. }
    ) {
        return Err(invalid("0 is not a port".into()));
    }
    Ok(ManagedPrinter { id, name, model, link, camera: request.camera.unwrap_or(true) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ManagedPrinterRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn requests_are_checked_and_an_edit_keeps_the_stored_secret() {
        let id = || PrinterId::new("01P00A391800001").unwrap();
        let added = checked(
            id(),
            request(r#"{"kind":"bambu","host":"10.0.0.5","access_code":"12345678"}"#),
            None,
        )
        .unwrap();
        assert_eq!(
            added.link,
            ManagedLink::Bambu {
                host: "10.0.0.5".into(),
                port: 8883,
                access_code: "12345678".into()
            }
        );
        assert!(added.camera);
        let edited = checked(
            id(),
            request(r#"{"kind":"bambu","host":"10.0.0.6","name":"P1S"}"#),
            Some(&added),
        )
        .unwrap();
        assert_eq!(
            edited.link,
            ManagedLink::Bambu {
                host: "10.0.0.6".into(),
                port: 8883,
                access_code: "12345678".into()
            }
        );
        for (bad, says) in [
            (r#"{"kind":"bambu","host":"10.0.0.5"}"#, "access_code"),
            (r#"{"kind":"bambu","access_code":"12345678"}"#, "host"),
            (r#"{"kind":"bambu","host":"x","access_code":"1","url":"http://x"}"#, "url is not"),
            (r#"{"kind":"moonraker","url":"https://voron"}"#, "https"),
            (r#"{"kind":"moonraker"}"#, "url"),
            (r#"{"kind":"octoprint"}"#, "bambu or moonraker"),
            (r#"{"kind":"moonraker","url":"http://v","web_port":0}"#, "port"),
        ] {
            let error = checked(id(), request(bad), None).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert!(
            serde_json::from_str::<ManagedPrinterRequest>(r#"{"kind":"bambu","secret":1}"#)
                .is_err()
        );
    }

    #[test]
    fn a_view_never_carries_the_secret() {
        let agent = AgentId::new("pi-1").unwrap();
        let printer = ManagedPrinter {
            id: PrinterId::new("voron-1").unwrap(),
            name: None,
            model: None,
            link: ManagedLink::Moonraker {
                url: "http://voron:7125".into(),
                api_key: Some("s3cret-key".into()),
                web_port: 80,
            },
            camera: true,
        };
        let json = serde_json::to_string(&view(&agent, &printer, 1, "pending", None)).unwrap();
        assert!(!json.contains("s3cret-key"), "{json}");
        assert!(json.contains("\"has_secret\":true"), "{json}");
    }
}
