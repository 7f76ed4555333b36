//! The fleet: printers with their state and reachability, agents with their presence and
//! health, revocation.

use proto::{AgentId, UnixMillis};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::cameras::LatestSnapshot;
use crate::db::owners::ClaimRow;
use crate::db::read::{AgentDetail, PrinterRow};
use crate::sync::server::SyncHandle;

/// A printer as people and scripts see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Printer {
    #[serde(flatten)]
    pub row: PrinterRow,
    /// Whether the agent serving this printer is connected now.
    pub agent_online: bool,
    /// The newest snapshot of any of its cameras.
    pub latest_snapshot: Option<SnapshotLink>,
    /// Its build plate: confirmed clear since its last job ended, or not.
    pub plate: super::queue::PlateState,
}

/// The newest snapshot, with the URL of its image.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = LatestSnapshot)]
pub struct SnapshotLink {
    #[serde(flatten)]
    pub snapshot: LatestSnapshot,
    pub url: String,
}

/// An agent with its presence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agent {
    #[serde(flatten)]
    pub detail: AgentDetail,
    /// Connected over QUIC now.
    pub online: bool,
}

/// The fleet service.
#[derive(Debug, Clone)]
pub struct Fleet {
    db: Db,
    sync: SyncHandle,
}

impl Fleet {
    pub fn new(db: Db, sync: SyncHandle) -> Fleet {
        Fleet { db, sync }
    }

    /// Whether an agent is connected now.
    pub fn is_online(&self, agent: &str) -> bool {
        self.sync.is_connected(agent)
    }

    pub async fn printers(&self) -> Result<Vec<Printer>, ServiceError> {
        let rows = self.db.printers().await?;
        let ids: Vec<String> = rows.iter().map(|p| p.id.clone()).collect();
        let mut latest = self.db.latest_snapshots(&ids).await?;
        let mut plates = super::queue::plates(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let snapshot = latest.remove(&row.id);
                let plate = plates.remove(&row.id);
                self.printer_view(row, snapshot, plate)
            })
            .collect())
    }

    pub async fn printer(&self, id: &str) -> Result<Printer, ServiceError> {
        let row = self.db.printer(id).await?.ok_or_else(|| ServiceError::unknown_printer(id))?;
        let mut latest = self.db.latest_snapshots(std::slice::from_ref(&row.id)).await?;
        let snapshot = latest.remove(&row.id);
        let plate = super::queue::plates(&self.db).await?.remove(&row.id);
        Ok(self.printer_view(row, snapshot, plate))
    }

    fn printer_view(
        &self,
        row: PrinterRow,
        snapshot: Option<LatestSnapshot>,
        plate: Option<super::queue::PlateState>,
    ) -> Printer {
        Printer {
            plate: plate.unwrap_or_else(|| super::queue::PlateState {
                printer: row.id.clone(),
                clear: false,
                confirmed_by: None,
                confirmed_at: None,
            }),
            agent_online: self.sync.is_connected(&row.agent_id),
            latest_snapshot: snapshot.map(|snapshot| SnapshotLink {
                url: format!("/api/v1/snapshots/{}", snapshot.id),
                snapshot,
            }),
            row,
        }
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, ServiceError> {
        Ok(self
            .db
            .agent_details()
            .await?
            .into_iter()
            .map(|detail| Agent { online: self.sync.is_connected(&detail.id), detail })
            .collect())
    }

    /// Claims refused because another agent owns the printer (admins only).
    pub async fn claims(&self, principal: &Principal) -> Result<Vec<ClaimRow>, ServiceError> {
        principal.require(Role::Admin)?;
        Ok(self.db.printer_claims().await?)
    }

    /// Approves the owning agent's claim on a printer (admins only), so it takes commands.
    pub async fn approve_printer(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Printer, ServiceError> {
        principal.require(Role::Admin)?;
        let now = UnixMillis::now();
        if !self.db.approve_printer(id, now).await? {
            return Err(ServiceError::unknown_printer(id));
        }
        let printer = self.printer(id).await?;
        let what = format!("approve printer {id} for agent {}", printer.row.agent_id);
        let detail = format!("via {}", principal.via());
        self.db.audit(principal.name(), &what, 200, Some(&detail), now).await?;
        Ok(printer)
    }

    /// Moves a printer to another agent, approved (admins only): commands go to that agent
    /// from now on, and the previous owner's records about the printer are refused.
    pub async fn move_printer(
        &self,
        principal: &Principal,
        id: &str,
        agent: &str,
    ) -> Result<Printer, ServiceError> {
        principal.require(Role::Admin)?;
        let unknown_agent = || ServiceError::NotFound(format!("no agent {agent:?}"));
        let agent = AgentId::new(agent).map_err(|_| unknown_agent())?;
        let row = self.db.agent(&agent).await?.ok_or_else(unknown_agent)?;
        if row.revoked_at.is_some() {
            return Err(ServiceError::Conflict(format!("agent {agent} is revoked")));
        }
        let now = UnixMillis::now();
        let previous = self
            .db
            .move_printer(id, &agent, now)
            .await?
            .ok_or_else(|| ServiceError::unknown_printer(id))?;
        let what = format!("move printer {id} from agent {previous} to agent {agent}");
        let detail = format!("via {}", principal.via());
        self.db.audit(principal.name(), &what, 200, Some(&detail), now).await?;
        // The new owner's open connection serves the printer's cameras from its next hello;
        // its records are projected from the next batch on.
        self.sync.commands_pending(&agent);
        self.printer(id).await
    }

    /// Revokes an agent (admins only): it is disconnected at once and cannot reconnect.
    pub async fn revoke_agent(&self, principal: &Principal, id: &str) -> Result<(), ServiceError> {
        principal.require(Role::Admin)?;
        let unknown = || ServiceError::NotFound(format!("no agent {id:?}"));
        let agent = AgentId::new(id).map_err(|_| unknown())?;
        if !self.sync.revoke(&agent).await? {
            return Err(unknown());
        }
        let detail = format!("via {}", principal.via());
        self.db
            .audit(
                principal.name(),
                &format!("revoke agent {id}"),
                200,
                Some(&detail),
                UnixMillis::now(),
            )
            .await?;
        Ok(())
    }
}
