//! Printers managed from the hub: the list each agent should drive (with the secrets the
//! agent needs, which the API never shows), its version, what the agent applied, and what
//! agents heard on their LANs.

use proto::{
    AgentId, DesiredPrinters, DiscoveredPrinters, ManagedLink, ManagedPrinter, PrinterId,
    PrintersApplied, UnixMillis,
};
use sqlx::Row;

use super::owners::vendor_name;
use super::{Db, DbError};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A managed printer as stored; `secret` stays inside the hub.
#[derive(Debug, Clone)]
pub struct ManagedRow {
    pub printer: ManagedPrinter,
    pub agent_id: String,
    pub updated_at: i64,
}

/// An agent's list: its version, and what the agent last applied.
#[derive(Debug, Clone, Default)]
pub struct ManagedStatus {
    pub version: i64,
    pub applied_version: Option<i64>,
    pub applied_at: Option<i64>,
    /// The applied version's outcomes: `(printer, error)`.
    pub outcomes: Vec<(String, Option<String>)>,
}

/// A printer an agent heard on its LAN.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DiscoveredRow {
    /// `bambu_lab` or `moonraker`.
    pub vendor: String,
    /// A Bambu printer's serial, a Moonraker's URL.
    pub key: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub address: String,
    pub url: Option<String>,
    /// Bambu: `lan` or `cloud`.
    pub connection: Option<String>,
    /// Bambu: `free` or `occupied`.
    pub bind: Option<String>,
    pub seen_at: i64,
}

/// Why a managed printer could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageRefusal {
    /// Another agent owns the printer.
    OwnedElsewhere { owner: String },
}

impl Db {
    /// Stores `printer` as managed by `agent` (new, or replacing what was stored), makes the
    /// agent its approved owner, and bumps the agent's list version. A printer another agent
    /// owns is refused: moving it is its own admin action.
    pub async fn put_managed(
        &self,
        agent: &AgentId,
        printer: &ManagedPrinter,
        now: UnixMillis,
    ) -> Result<Result<(), ManageRefusal>, DbError> {
        let mut tx = self.begin_write().await?;
        let id = printer.id.as_str();
        let inserted = sqlx::query(
            "INSERT INTO printers (id, agent_id, name, model, vendor, approved_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(agent.as_str())
        .bind(printer.name.as_deref())
        .bind(printer.model.as_deref())
        .bind(vendor_name(printer.link.vendor()))
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let owner: String = sqlx::query("SELECT agent_id FROM printers WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if owner != agent.as_str() {
                return Ok(Err(ManageRefusal::OwnedElsewhere { owner }));
            }
            sqlx::query(
                "UPDATE printers SET name = COALESCE($1, name), model = COALESCE($2, model), \
                 vendor = $3, approved_at = COALESCE(approved_at, $4) WHERE id = $5",
            )
            .bind(printer.name.as_deref())
            .bind(printer.model.as_deref())
            .bind(vendor_name(printer.link.vendor()))
            .bind(now.0)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let (kind, host, port, url, web_port, secret) = match &printer.link {
            ManagedLink::Bambu { host, port, access_code } => (
                "bambu",
                Some(host.as_str()),
                Some(i64::from(*port)),
                None,
                None,
                Some(access_code.as_str()),
            ),
            ManagedLink::Moonraker { url, api_key, web_port } => (
                "moonraker",
                None,
                None,
                Some(url.as_str()),
                Some(i64::from(*web_port)),
                api_key.as_deref(),
            ),
        };
        sqlx::query("DELETE FROM managed_printers WHERE printer_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO managed_printers (printer_id, agent_id, name, model, kind, host, port, \
             url, web_port, secret, camera, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(agent.as_str())
        .bind(printer.name.as_deref())
        .bind(printer.model.as_deref())
        .bind(kind)
        .bind(host)
        .bind(port)
        .bind(url)
        .bind(web_port)
        .bind(secret)
        .bind(i64::from(printer.camera))
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        bump_version(&mut tx, agent).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Stops managing `printer` for `agent`; `false` if it was not managed by it. The
    /// printer stays known (its history is kept); the agent stops driving it.
    pub async fn delete_managed(&self, agent: &AgentId, printer: &str) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let done =
            sqlx::query("DELETE FROM managed_printers WHERE printer_id = $1 AND agent_id = $2")
                .bind(printer)
                .bind(agent.as_str())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        bump_version(&mut tx, agent).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The printers `agent` should drive, secrets included (for the sync connection only).
    pub async fn managed(&self, agent: &AgentId) -> Result<Vec<ManagedRow>, DbError> {
        let rows = sqlx::query(
            "SELECT printer_id, agent_id, name, model, kind, host, port, url, web_port, secret, \
             camera, updated_at FROM managed_printers WHERE agent_id = $1 ORDER BY printer_id",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut managed = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let Ok(printer_id) = PrinterId::new(&id) else { continue };
            let kind: String = row.try_get(4)?;
            let secret: Option<String> = row.try_get(9)?;
            let link = if kind == "moonraker" {
                ManagedLink::Moonraker {
                    url: row.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                    api_key: secret,
                    web_port: u16::try_from(row.try_get::<Option<i64>, _>(8)?.unwrap_or(80))
                        .unwrap_or(80),
                }
            } else {
                ManagedLink::Bambu {
                    host: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                    port: u16::try_from(row.try_get::<Option<i64>, _>(6)?.unwrap_or(8883))
                        .unwrap_or(8883),
                    access_code: secret.unwrap_or_default(),
                }
            };
            managed.push(ManagedRow {
                printer: ManagedPrinter {
                    id: printer_id,
                    name: row.try_get(2)?,
                    model: row.try_get(3)?,
                    link,
                    camera: row.try_get::<i64, _>(10)? != 0,
                },
                agent_id: row.try_get(1)?,
                updated_at: row.try_get(11)?,
            });
        }
        Ok(managed)
    }

    /// The list to send `agent`, if the hub ever managed a printer for it.
    pub async fn desired_printers(
        &self,
        agent: &AgentId,
    ) -> Result<Option<DesiredPrinters>, DbError> {
        let status = self.managed_status(agent).await?;
        if status.version == 0 {
            return Ok(None);
        }
        let printers = self.managed(agent).await?.into_iter().map(|row| row.printer).collect();
        Ok(Some(DesiredPrinters { version: status.version as u64, printers }))
    }

    pub async fn managed_status(&self, agent: &AgentId) -> Result<ManagedStatus, DbError> {
        let row = sqlx::query(
            "SELECT version, applied_version, applied_at, applied FROM managed_versions \
             WHERE agent_id = $1",
        )
        .bind(agent.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(ManagedStatus::default()) };
        let applied: Option<String> = row.try_get(3)?;
        let outcomes = applied
            .and_then(|text| serde_json::from_str::<Vec<(String, Option<String>)>>(&text).ok())
            .unwrap_or_default();
        Ok(ManagedStatus {
            version: row.try_get(0)?,
            applied_version: row.try_get(1)?,
            applied_at: row.try_get(2)?,
            outcomes,
        })
    }

    /// Replaces the printers `agent` announced (its latest hello's, those it owns).
    pub async fn set_announced(
        &self,
        agent: &AgentId,
        printers: &[&proto::PrinterInfo],
        now: UnixMillis,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM announced_printers WHERE agent_id = $1")
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await?;
        for printer in printers {
            sqlx::query(
                "INSERT INTO announced_printers (agent_id, printer_id, name, announced_at)                  VALUES ($1, $2, $3, $4)",
            )
            .bind(agent.as_str())
            .bind(printer.id.as_str())
            .bind(printer.name.as_deref())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The printers `agent` announced that the hub does not manage: its `agent.toml`'s,
    /// as `(id, name)`.
    pub async fn local_printers(
        &self,
        agent: &AgentId,
    ) -> Result<Vec<(String, Option<String>)>, DbError> {
        let rows = sqlx::query(
            "SELECT printer_id, name FROM announced_printers WHERE agent_id = $1              AND printer_id NOT IN (SELECT printer_id FROM managed_printers WHERE agent_id = $1)              ORDER BY printer_id",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// What `agent` heard on its LAN, newest first.
    pub async fn discovered(&self, agent: &AgentId) -> Result<Vec<DiscoveredRow>, DbError> {
        let rows = sqlx::query(
            "SELECT vendor, discovery_key, name, model, address, url, connection, bind_state, \
             seen_at FROM discovered_printers WHERE agent_id = $1 ORDER BY seen_at DESC, discovery_key",
        )
        .bind(agent.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DiscoveredRow {
                    vendor: row.try_get(0)?,
                    key: row.try_get(1)?,
                    name: row.try_get(2)?,
                    model: row.try_get(3)?,
                    address: row.try_get(4)?,
                    url: row.try_get(5)?,
                    connection: row.try_get(6)?,
                    bind: row.try_get(7)?,
                    seen_at: row.try_get(8)?,
                })
            })
            .collect()
    }
}

async fn bump_version(tx: &mut Tx<'_>, agent: &AgentId) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO managed_versions (agent_id, version) VALUES ($1, 1) \
         ON CONFLICT (agent_id) DO UPDATE SET version = managed_versions.version + 1",
    )
    .bind(agent.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Projects an agent's `PrintersApplied` record (within the ingest transaction); an older
/// version than one already recorded changes nothing.
pub(super) async fn applied(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    applied: &PrintersApplied,
    at: UnixMillis,
) -> Result<(), DbError> {
    let outcomes: Vec<(String, Option<String>)> =
        applied.printers.iter().map(|p| (p.id.to_string(), p.error.clone())).collect();
    let text = serde_json::to_string(&outcomes).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO managed_versions (agent_id, version, applied_version, applied_at, applied) \
         VALUES ($1, 0, $2, $3, $4) \
         ON CONFLICT (agent_id) DO UPDATE SET applied_version = excluded.applied_version, \
         applied_at = excluded.applied_at, applied = excluded.applied \
         WHERE managed_versions.applied_version IS NULL \
            OR managed_versions.applied_version <= excluded.applied_version",
    )
    .bind(agent.as_str())
    .bind(applied.version as i64)
    .bind(at.0)
    .bind(text)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Projects an agent's `Discovered` record: each printer's newest sighting.
pub(super) async fn discovered(
    tx: &mut Tx<'_>,
    agent: &AgentId,
    found: &DiscoveredPrinters,
    at: UnixMillis,
) -> Result<(), DbError> {
    for printer in &found.printers {
        sqlx::query(
            "INSERT INTO discovered_printers (agent_id, discovery_key, vendor, name, model, \
             address, url, connection, bind_state, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (agent_id, discovery_key) DO UPDATE SET vendor = excluded.vendor, \
             name = excluded.name, model = excluded.model, address = excluded.address, \
             url = excluded.url, connection = excluded.connection, \
             bind_state = excluded.bind_state, seen_at = excluded.seen_at",
        )
        .bind(agent.as_str())
        .bind(&printer.key)
        .bind(vendor_name(printer.vendor))
        .bind(printer.name.as_deref())
        .bind(printer.model.as_deref())
        .bind(&printer.address)
        .bind(printer.url.as_deref())
        .bind(printer.connection.as_deref())
        .bind(printer.bind.as_deref())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
