//! Inventory storage: vendors, filaments, spools, extra fields' definitions, settings,
//! Spoolman clients and which spool is in which slot. Lists load whole tables (a farm's
//! inventory is hundreds of rows, not millions); `inventory::query` filters and sorts them
//! exactly as Spoolman does. A spool's use is one conditional `UPDATE`, atomic under
//! concurrent calls.

use crate::db::BindDouble;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError};
use crate::inventory::{Extra, Filament, Spool, Vendor};

fn extra_text(extra: &Extra) -> String {
    serde_json::to_string(extra).unwrap_or_else(|_| "{}".to_owned())
}

fn extra_of(text: &str) -> Result<Extra, DbError> {
    serde_json::from_str(text)
        .map_err(|e| DbError::Decode { what: "extra fields", detail: e.to_string() })
}

const VENDOR: &str = "id, registered, name, comment, empty_spool_weight, external_id, extra";

fn vendor(row: &AnyRow) -> Result<Vendor, DbError> {
    Ok(Vendor {
        id: row.try_get(0)?,
        registered: row.try_get(1)?,
        name: row.try_get(2)?,
        comment: row.try_get(3)?,
        empty_spool_weight: row.try_get(4)?,
        external_id: row.try_get(5)?,
        extra: extra_of(&row.try_get::<String, _>(6)?)?,
    })
}

const FILAMENT: &str = "id, registered, name, vendor_id, material, price, density, diameter, \
    weight, spool_weight, article_number, comment, settings_extruder_temp, settings_bed_temp, \
    color_hex, multi_color_hexes, multi_color_direction, external_id, extra";

fn filament(row: &AnyRow) -> Result<Filament, DbError> {
    Ok(Filament {
        id: row.try_get(0)?,
        registered: row.try_get(1)?,
        name: row.try_get(2)?,
        vendor_id: row.try_get(3)?,
        material: row.try_get(4)?,
        price: row.try_get(5)?,
        density: row.try_get(6)?,
        diameter: row.try_get(7)?,
        weight: row.try_get(8)?,
        spool_weight: row.try_get(9)?,
        article_number: row.try_get(10)?,
        comment: row.try_get(11)?,
        settings_extruder_temp: row.try_get(12)?,
        settings_bed_temp: row.try_get(13)?,
        color_hex: row.try_get(14)?,
        multi_color_hexes: row.try_get(15)?,
        multi_color_direction: row.try_get(16)?,
        external_id: row.try_get(17)?,
        extra: extra_of(&row.try_get::<String, _>(18)?)?,
    })
}

const SPOOL: &str = "id, registered, first_used, last_used, filament_id, price, initial_weight, \
    spool_weight, used_weight, location, lot_nr, comment, archived, extra, rfid";

fn spool(row: &AnyRow) -> Result<Spool, DbError> {
    Ok(Spool {
        id: row.try_get(0)?,
        registered: row.try_get(1)?,
        first_used: row.try_get(2)?,
        last_used: row.try_get(3)?,
        filament_id: row.try_get(4)?,
        price: row.try_get(5)?,
        initial_weight: row.try_get(6)?,
        spool_weight: row.try_get(7)?,
        used_weight: row.try_get(8)?,
        location: row.try_get(9)?,
        lot_nr: row.try_get(10)?,
        comment: row.try_get(11)?,
        archived: row.try_get::<i64, _>(12)? != 0,
        extra: extra_of(&row.try_get::<String, _>(13)?)?,
        rfid: row.try_get(14)?,
    })
}

/// A Spoolman client: a name and its token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolmanClientRow {
    pub id: String,
    pub name: String,
    /// The printer whose usage this client reports (Moonraker using kitt as its Spoolman):
    /// kitt then deducts nothing itself for that printer's prints.
    pub printer_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A spool in a printer's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub printer_id: String,
    /// `None`: the slot outside any unit.
    pub unit: Option<u8>,
    pub slot: u8,
    pub spool_id: i64,
    pub assigned_by: String,
    pub assigned_at: i64,
}

fn unit_key(unit: Option<u8>) -> i64 {
    unit.map_or(-1, i64::from)
}

fn slot_row(row: &AnyRow) -> Result<SlotRow, DbError> {
    let unit: i64 = row.try_get(1)?;
    Ok(SlotRow {
        printer_id: row.try_get(0)?,
        unit: u8::try_from(unit).ok(),
        slot: u8::try_from(row.try_get::<i64, _>(2)?).unwrap_or(u8::MAX),
        spool_id: row.try_get(3)?,
        assigned_by: row.try_get(4)?,
        assigned_at: row.try_get(5)?,
    })
}

impl Db {
    // --- vendors ------------------------------------------------------------------------

    pub async fn vendors(&self) -> Result<Vec<Vendor>, DbError> {
        let sql = format!("SELECT {VENDOR} FROM vendors ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(vendor).collect()
    }

    pub async fn vendor(&self, id: i64) -> Result<Option<Vendor>, DbError> {
        let sql = format!("SELECT {VENDOR} FROM vendors WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(vendor).transpose()
    }

    /// Stores a new vendor (its `id` is ignored) and returns it with its id.
    pub async fn insert_vendor(&self, new: &Vendor) -> Result<Vendor, DbError> {
        let id: i64 = sqlx::query(
            "INSERT INTO vendors (registered, name, comment, empty_spool_weight, external_id, \
             extra) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(new.registered)
        .bind(new.name.as_str())
        .bind(new.comment.as_deref())
        .bind_f64(new.empty_spool_weight)
        .bind(new.external_id.as_deref())
        .bind(extra_text(&new.extra))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(Vendor { id, ..new.clone() })
    }

    /// Writes every field of a vendor; `false` when it is gone.
    pub async fn update_vendor(&self, vendor: &Vendor) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE vendors SET name = $1, comment = $2, empty_spool_weight = $3, \
             external_id = $4, extra = $5 WHERE id = $6",
        )
        .bind(vendor.name.as_str())
        .bind(vendor.comment.as_deref())
        .bind_f64(vendor.empty_spool_weight)
        .bind(vendor.external_id.as_deref())
        .bind(extra_text(&vendor.extra))
        .bind(vendor.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a vendor; its filaments keep existing without one (as Spoolman does).
    pub async fn delete_vendor(&self, id: i64) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE filaments SET vendor_id = NULL WHERE vendor_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM vendors WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    // --- filaments ----------------------------------------------------------------------

    pub async fn filaments(&self) -> Result<Vec<Filament>, DbError> {
        let sql = format!("SELECT {FILAMENT} FROM filaments ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(filament).collect()
    }

    pub async fn filament(&self, id: i64) -> Result<Option<Filament>, DbError> {
        let sql = format!("SELECT {FILAMENT} FROM filaments WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(filament).transpose()
    }

    pub async fn insert_filament(&self, new: &Filament) -> Result<Filament, DbError> {
        let id: i64 = bind_filament(
            sqlx::query(
                "INSERT INTO filaments (name, vendor_id, material, price, density, diameter, \
             weight, spool_weight, article_number, comment, settings_extruder_temp, \
             settings_bed_temp, color_hex, multi_color_hexes, multi_color_direction, \
             external_id, extra, registered) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
            ),
            new,
        )
        .bind(new.registered)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(Filament { id, ..new.clone() })
    }

    pub async fn update_filament(&self, filament: &Filament) -> Result<bool, DbError> {
        let done = bind_filament(
            sqlx::query(
                "UPDATE filaments SET name = $1, vendor_id = $2, material = $3, price = $4, \
             density = $5, diameter = $6, weight = $7, spool_weight = $8, \
             article_number = $9, comment = $10, settings_extruder_temp = $11, \
             settings_bed_temp = $12, color_hex = $13, multi_color_hexes = $14, \
             multi_color_direction = $15, external_id = $16, extra = $17 WHERE id = $18",
            ),
            filament,
        )
        .bind(filament.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a filament that no spool uses: `Err(Some(n))`-like answers are the service's;
    /// here `Ok(None)` means spools still use it, `Ok(Some(false))` that it was gone.
    pub async fn delete_filament(&self, id: i64) -> Result<Option<bool>, DbError> {
        let mut tx = self.begin_write().await?;
        let used: i64 = sqlx::query("SELECT COUNT(*) FROM spools WHERE filament_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if used > 0 {
            return Ok(None);
        }
        let done =
            sqlx::query("DELETE FROM filaments WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected() == 1))
    }

    // --- spools -------------------------------------------------------------------------

    pub async fn spools(&self) -> Result<Vec<Spool>, DbError> {
        let sql = format!("SELECT {SPOOL} FROM spools ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(spool).collect()
    }

    pub async fn spool(&self, id: i64) -> Result<Option<Spool>, DbError> {
        let sql = format!("SELECT {SPOOL} FROM spools WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(spool).transpose()
    }

    pub async fn spool_by_rfid(&self, rfid: &str) -> Result<Option<Spool>, DbError> {
        let sql = format!("SELECT {SPOOL} FROM spools WHERE rfid = $1");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(rfid).fetch_optional(&self.pool).await?;
        row.as_ref().map(spool).transpose()
    }

    pub async fn insert_spool(&self, new: &Spool) -> Result<Spool, DbError> {
        let id: i64 = bind_spool(
            sqlx::query(
                "INSERT INTO spools (first_used, last_used, filament_id, price, initial_weight, \
             spool_weight, location, lot_nr, comment, archived, extra, rfid, used_weight, \
             registered) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             RETURNING id",
            ),
            new,
        )
        .bind(new.used_weight)
        .bind(new.registered)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(Spool { id, ..new.clone() })
    }

    /// Writes a spool's fields; its used weight only when `with_weight` (so that an edit of
    /// its location never undoes a concurrent use).
    pub async fn update_spool(&self, spool: &Spool, with_weight: bool) -> Result<bool, DbError> {
        let weight = if with_weight { ", used_weight = $14" } else { "" };
        let sql = format!(
            "UPDATE spools SET first_used = $1, last_used = $2, filament_id = $3, price = $4, \
             initial_weight = $5, spool_weight = $6, location = $7, lot_nr = $8, comment = $9, \
             archived = $10, extra = $11, rfid = $12{weight} WHERE id = $13"
        );
        let mut query = bind_spool(sqlx::query(sqlx::AssertSqlSafe(sql)), spool).bind(spool.id);
        if with_weight {
            query = query.bind(spool.used_weight);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn delete_spool(&self, id: i64) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM spool_slots WHERE spool_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM spools WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds `grams` (negative gives back) to a spool's used weight, never below zero, and
    /// marks it used now; one statement, so concurrent uses all count. `None`: no such spool.
    pub async fn use_spool(&self, id: i64, grams: f64, now: i64) -> Result<Option<Spool>, DbError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(USE_SPOOL).bind(grams).bind(now).bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {SPOOL} FROM spools WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        spool(&row).map(Some)
    }

    // --- extra fields and settings ------------------------------------------------------

    /// Extra fields' definitions of one entity type, as JSON texts, by key.
    pub async fn inventory_fields(&self, entity: &str) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT key, definition FROM inventory_fields WHERE entity_type = $1 ORDER BY key",
        )
        .bind(entity)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    pub async fn put_inventory_field(
        &self,
        entity: &str,
        key: &str,
        definition: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO inventory_fields (entity_type, key, definition) VALUES ($1, $2, $3) \
             ON CONFLICT (entity_type, key) DO UPDATE SET definition = excluded.definition",
        )
        .bind(entity)
        .bind(key)
        .bind(definition)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a field's definition and its values on every entity of its type.
    pub async fn delete_inventory_field(&self, entity: &str, key: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM inventory_fields WHERE entity_type = $1 AND key = $2")
            .bind(entity)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn inventory_settings(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query("SELECT key, value FROM inventory_settings ORDER BY key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    pub async fn put_inventory_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO inventory_settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // --- Spoolman clients ---------------------------------------------------------------

    pub async fn insert_spoolman_client(
        &self,
        client: &SpoolmanClientRow,
        secret_hash: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO spoolman_clients (id, name, secret_hash, created_by, created_at, \
             printer_id) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(client.id.as_str())
        .bind(client.name.as_str())
        .bind(secret_hash)
        .bind(client.created_by.as_str())
        .bind(client.created_at)
        .bind(client.printer_id.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn spoolman_clients(&self) -> Result<Vec<SpoolmanClientRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, created_by, created_at, last_used_at, revoked_at, printer_id \
             FROM spoolman_clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SpoolmanClientRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    created_by: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                    last_used_at: row.try_get(4)?,
                    revoked_at: row.try_get(5)?,
                    printer_id: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// The client whose token has this id, with its secret's hash, unless revoked.
    pub async fn live_spoolman_client(
        &self,
        id: &str,
    ) -> Result<Option<(SpoolmanClientRow, String)>, DbError> {
        let row = sqlx::query(
            "SELECT id, name, created_by, created_at, last_used_at, revoked_at, secret_hash, \
             printer_id FROM spoolman_clients WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok((
                SpoolmanClientRow {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    created_by: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                    last_used_at: row.try_get(4)?,
                    revoked_at: row.try_get(5)?,
                    printer_id: row.try_get(7)?,
                },
                row.try_get(6)?,
            ))
        })
        .transpose()
    }

    /// Notes a client's use, at most once a minute per client.
    pub async fn touch_spoolman_client(&self, id: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE spoolman_clients SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - 60_000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes a client by id or name; `false` when no live client has it.
    pub async fn revoke_spoolman_client(
        &self,
        id_or_name: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE spoolman_clients SET revoked_at = $1 WHERE (id = $2 OR name = $2) \
             AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id_or_name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- spools in slots ----------------------------------------------------------------

    pub async fn spool_slots(&self, printer: Option<&str>) -> Result<Vec<SlotRow>, DbError> {
        let rows = sqlx::query(
            "SELECT printer_id, unit, slot, spool_id, assigned_by, assigned_at FROM spool_slots \
             WHERE ($1 IS NULL OR printer_id = $1) ORDER BY printer_id, unit, slot",
        )
        .bind(printer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(slot_row).collect()
    }

    /// Puts a spool in a slot (taking it out of any other slot first: a spool is in one
    /// place), or empties the slot with `spool: None`.
    pub async fn assign_slot(
        &self,
        printer: &str,
        unit: Option<u8>,
        slot: u8,
        spool: Option<i64>,
        by: &str,
        now: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        assign_slot_in(&mut tx, printer, unit, slot, spool, by, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(super) const USE_SPOOL: &str = "UPDATE spools SET used_weight = CASE \
    WHEN used_weight + $1 < 0 THEN 0 ELSE used_weight + $1 END, \
    first_used = COALESCE(first_used, $2), last_used = $2 WHERE id = $3";

/// [`Db::assign_slot`] inside a transaction (the ingest links tagged spools with it).
pub(super) async fn assign_slot_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    printer: &str,
    unit: Option<u8>,
    slot: u8,
    spool: Option<i64>,
    by: &str,
    now: i64,
) -> Result<(), DbError> {
    if let Some(spool) = spool {
        sqlx::query("DELETE FROM spool_slots WHERE spool_id = $1")
            .bind(spool)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("DELETE FROM spool_slots WHERE printer_id = $1 AND unit = $2 AND slot = $3")
        .bind(printer)
        .bind(unit_key(unit))
        .bind(i64::from(slot))
        .execute(&mut **tx)
        .await?;
    if let Some(spool) = spool {
        sqlx::query(
            "INSERT INTO spool_slots (printer_id, unit, slot, spool_id, assigned_by, assigned_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(printer)
        .bind(unit_key(unit))
        .bind(i64::from(slot))
        .bind(spool)
        .bind(by)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_filament<'q>(query: AnyQuery<'q>, f: &'q Filament) -> AnyQuery<'q> {
    query
        .bind(f.name.as_deref())
        .bind(f.vendor_id)
        .bind(f.material.as_deref())
        .bind_f64(f.price)
        .bind(f.density)
        .bind(f.diameter)
        .bind_f64(f.weight)
        .bind_f64(f.spool_weight)
        .bind(f.article_number.as_deref())
        .bind(f.comment.as_deref())
        .bind(f.settings_extruder_temp)
        .bind(f.settings_bed_temp)
        .bind(f.color_hex.as_deref())
        .bind(f.multi_color_hexes.as_deref())
        .bind(f.multi_color_direction.as_deref())
        .bind(f.external_id.as_deref())
        .bind(extra_text(&f.extra))
}

fn bind_spool<'q>(query: AnyQuery<'q>, s: &'q Spool) -> AnyQuery<'q> {
    query
        .bind(s.first_used)
        .bind(s.last_used)
        .bind(s.filament_id)
        .bind_f64(s.price)
        .bind_f64(s.initial_weight)
        .bind_f64(s.spool_weight)
        .bind(s.location.as_deref())
        .bind(s.lot_nr.as_deref())
        .bind(s.comment.as_deref())
        .bind(i64::from(s.archived))
        .bind(extra_text(&s.extra))
        .bind(s.rfid.as_deref())
}

impl Db {
    /// Grams each spool gave prints that ended since `from` (Unix ms).
    pub async fn usage_since(&self, from: i64) -> Result<Vec<(i64, f64)>, DbError> {
        let rows = sqlx::query(
            "SELECT u.spool_id, SUM(u.grams) FROM outcome_usage u \
             JOIN outcomes o ON o.id = u.outcome_id \
             WHERE o.ended_at >= $1 AND u.spool_id IS NOT NULL GROUP BY u.spool_id",
        )
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}
