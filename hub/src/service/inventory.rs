//! Inventory: vendors, filaments and spools with Spoolman's behaviour (defaults, derived
//! weights, `use` and `measure`, archived spools, extra fields, settings), spools in
//! printers' slots, and Spoolman clients' tokens. Every change is broadcast to the
//! websockets ([`Inventory::subscribe`]). Reads need a viewer, changes an operator; a
//! Spoolman client acts as an operator of the inventory only (its door reaches nothing
//! else). What Spoolman does, with sources: `docs/research/spoolman.md`.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::{Principal, Role, ServiceError};
use crate::db::Db;
use crate::db::inventory::{SlotRow, SpoolmanClientRow};
use crate::inventory::query::{self, IdFilter, Sort, TextFilter};
use crate::inventory::{
    ChangeKind, Entity, Extra, Filament, Spool, Vendor, render, weight_from_length,
};
use proto::UnixMillis;

/// A field of a PATCH: left out, set to null, or set.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T: Clone> Patch<T> {
    /// Applies the patch to a nullable field.
    fn apply(&self, field: &mut Option<T>) {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Set(value) => *field = Some(value.clone()),
        }
    }

    fn value(&self) -> Option<&T> {
        match self {
            Patch::Set(value) => Some(value),
            _ => None,
        }
    }

    fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }
}

/// A vendor's fields as a request gives them (create: absent = null).
#[derive(Debug, Clone, Default)]
pub struct VendorInput {
    pub name: Patch<String>,
    pub comment: Patch<String>,
    pub empty_spool_weight: Patch<f64>,
    pub external_id: Patch<String>,
    pub extra: Patch<Extra>,
}

#[derive(Debug, Clone, Default)]
pub struct FilamentInput {
    pub name: Patch<String>,
    pub vendor_id: Patch<i64>,
    pub material: Patch<String>,
    pub price: Patch<f64>,
    pub density: Patch<f64>,
    pub diameter: Patch<f64>,
    pub weight: Patch<f64>,
    pub spool_weight: Patch<f64>,
    pub article_number: Patch<String>,
    pub comment: Patch<String>,
    pub settings_extruder_temp: Patch<i64>,
    pub settings_bed_temp: Patch<i64>,
    pub color_hex: Patch<String>,
    pub multi_color_hexes: Patch<String>,
    pub multi_color_direction: Patch<String>,
    pub external_id: Patch<String>,
    pub extra: Patch<Extra>,
}

#[derive(Debug, Clone, Default)]
pub struct SpoolInput {
    pub first_used: Patch<i64>,
    pub last_used: Patch<i64>,
    pub filament_id: Patch<i64>,
    pub price: Patch<f64>,
    pub initial_weight: Patch<f64>,
    pub spool_weight: Patch<f64>,
    pub remaining_weight: Patch<f64>,
    pub used_weight: Patch<f64>,
    pub location: Patch<String>,
    pub lot_nr: Patch<String>,
    pub comment: Patch<String>,
    pub archived: Patch<bool>,
    pub extra: Patch<Extra>,
}

/// How much of a spool was used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Grams(f64),
    Millimetres(f64),
}

/// A filter of a list, on a field of the rendered item.
#[derive(Debug, Clone)]
pub enum Filter {
    Text { path: &'static str, filter: TextFilter, nullable: bool },
    Ids { path: &'static str, filter: IdFilter },
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        match self {
            Filter::Text { path, filter, nullable } => {
                let value = query::field(item, path);
                filter.matches(value.as_str(), *nullable)
            }
            Filter::Ids { path, filter } => filter.matches(query::field(item, path).as_i64()),
        }
    }
}

/// A list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    /// `(colour, threshold)`: filaments near a colour.
    pub colour: Option<(String, f64)>,
    pub allow_archived: bool,
    pub sort: Option<Sort>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

pub use crate::inventory::Change;

/// The fields one may sort each entity by.
pub fn sort_fields(entity: Entity) -> Vec<&'static str> {
    const VENDOR: [&str; 6] =
        ["id", "registered", "name", "comment", "empty_spool_weight", "external_id"];
    const FILAMENT: [&str; 17] = [
        "id",
        "registered",
        "name",
        "material",
        "price",
        "density",
        "diameter",
        "weight",
        "spool_weight",
        "article_number",
        "comment",
        "settings_extruder_temp",
        "settings_bed_temp",
        "color_hex",
        "multi_color_hexes",
        "multi_color_direction",
        "external_id",
    ];
    const SPOOL: [&str; 16] = [
        "id",
        "registered",
        "first_used",
        "last_used",
        "price",
        "initial_weight",
        "spool_weight",
        "used_weight",
        "remaining_weight",
        "used_length",
        "remaining_length",
        "location",
        "lot_nr",
        "comment",
        "archived",
        "filament.combined_name",
    ];
    let prefixed = |prefix: &str, fields: &[&'static str]| -> Vec<&'static str> {
        fields.iter().map(|f| &*Box::leak(format!("{prefix}{f}").into_boxed_str())).collect()
    };
    static CACHE: std::sync::OnceLock<HashMap<&'static str, Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let mut filament: Vec<&'static str> = FILAMENT.to_vec();
        filament.extend(prefixed("vendor.", &VENDOR));
        let mut spool: Vec<&'static str> = SPOOL.to_vec();
        spool.extend(prefixed("filament.", &FILAMENT));
        spool.extend(prefixed("filament.vendor.", &VENDOR));
        HashMap::from([("vendor", VENDOR.to_vec()), ("filament", filament), ("spool", spool)])
    });
    cache[entity.as_str()].clone()
}

/// The settings Spoolman's clients read, with their types and defaults (JSON texts).
pub const SETTINGS: [(&str, &str, &str); 9] = [
    ("currency", "string", "\"EUR\""),
    ("round_prices", "boolean", "false"),
    ("print_presets", "array", "[]"),
    ("extra_fields_vendor", "array", "[]"),
    ("extra_fields_filament", "array", "[]"),
    ("extra_fields_spool", "array", "[]"),
    ("base_url", "string", "\"\""),
    ("locations", "array", "[]"),
    ("locations_spoolorders", "object", "{}"),
];

/// The field types of extra fields.
pub const FIELD_TYPES: [&str; 8] =
    ["text", "integer", "integer_range", "float", "float_range", "datetime", "boolean", "choice"];

/// The inventory service.
#[derive(Debug, Clone)]
pub struct Inventory {
    db: Db,
    /// Changes go out through it: on a replica, through the cluster's log to every replica.
    live: crate::live::LiveHub,
}

fn not_found(entity: Entity, id: i64) -> ServiceError {
    ServiceError::NotFound(format!("No {} with ID {id} found.", entity.as_str()))
}

fn now_ms() -> i64 {
    UnixMillis::now().0
}

/// Now, to the second, as Spoolman stamps what it sets itself.
fn now_seconds() -> i64 {
    now_ms() / 1000 * 1000
}

fn change_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    let ms = now.unix_timestamp() * 1000 + i64::from(now.millisecond());
    let text = render::datetime(ms / 1000 * 1000);
    format!("{}.{:06}Z", text.trim_end_matches('Z'), now.microsecond())
}

impl Inventory {
    pub fn new(db: Db, live: crate::live::LiveHub) -> Inventory {
        Inventory { db, live }
    }

    /// Every change from now on: the inventory's own, and the ids of spools the ingest
    /// changed (render them with [`Inventory::spool_change`]).
    pub fn subscribe(&self) -> (broadcast::Receiver<Change>, broadcast::Receiver<Vec<i64>>) {
        (self.live.subscribe_inventory(), self.live.subscribe_spools())
    }

    /// A spool's `updated` change as the websockets send it; `None` when it is gone.
    pub async fn spool_change(&self, id: i64) -> Result<Option<Change>, ServiceError> {
        Ok(self.render(Entity::Spool, id, true).await?.map(|payload| Change {
            kind: ChangeKind::Updated,
            entity: Entity::Spool,
            id,
            payload,
            date: change_date(),
        }))
    }

    fn publish(&self, kind: ChangeKind, entity: Entity, id: i64, payload: Value) {
        self.live.inventory_changed(Change { kind, entity, id, payload, date: change_date() });
    }

    async fn audit(&self, principal: &Principal, what: &str) -> Result<(), ServiceError> {
        let detail = format!("via {}", principal.via());
        self.db.audit(principal.name(), what, 200, Some(&detail), UnixMillis::now()).await?;
        Ok(())
    }

    // --- reading ------------------------------------------------------------------------

    /// Every vendor, filament and spool, rendered, for lists and exports.
    async fn everything(&self) -> Result<Catalogue, ServiceError> {
        let vendors = self.db.vendors().await?;
        let filaments = self.db.filaments().await?;
        Ok(Catalogue {
            vendors: vendors.into_iter().map(|v| (v.id, v)).collect(),
            filaments: filaments.into_iter().map(|f| (f.id, f)).collect(),
        })
    }

    /// A list of one entity, filtered, sorted and paged; with the count before paging.
    pub async fn list(
        &self,
        principal: &Principal,
        entity: Entity,
        query: &ListQuery,
    ) -> Result<(Vec<Value>, usize), ServiceError> {
        principal.require(Role::Viewer)?;
        let catalogue = self.everything().await?;
        let mut items: Vec<(Value, Value)> = match entity {
            Entity::Vendor => {
                let mut vendors: Vec<&Vendor> = catalogue.vendors.values().collect();
                vendors.sort_by_key(|v| v.id);
                vendors.into_iter().map(|v| (render::vendor(v, false), Value::Null)).collect()
            }
            Entity::Filament => {
                let mut filaments: Vec<&Filament> = catalogue.filaments.values().collect();
                filaments.sort_by_key(|f| f.id);
                filaments
                    .into_iter()
                    .filter(|f| match &query.colour {
                        Some((colour, threshold)) => query::colour_near(
                            colour,
                            *threshold,
                            f.color_hex.as_deref(),
                            f.multi_color_hexes.as_deref(),
                        ),
                        None => true,
                    })
                    .map(|f| (catalogue.filament_json(f, false), Value::Null))
                    .collect()
            }
            Entity::Spool => {
                let spools = self.db.spools().await?;
                spools
                    .iter()
                    .filter(|s| query.allow_archived || !s.archived)
                    .filter_map(|s| {
                        let filament = catalogue.filaments.get(&s.filament_id)?;
                        let vendor = filament.vendor_id.and_then(|v| catalogue.vendors.get(&v));
                        let virtual_keys = json!({
                            "price": s.price.or(filament.price),
                            "remaining_weight": s.initial_weight.or(filament.weight)
                                .map(|i| i - s.used_weight),
                            "filament.combined_name": format!(
                                "{} - {}",
                                vendor.map_or("", |v| v.name.as_str()),
                                filament.name.as_deref().unwrap_or("")
                            ),
                        });
                        Some((render::spool(s, filament, vendor, false), virtual_keys))
                    })
                    .collect()
            }
        };
        items.retain(|(item, _)| query.filters.iter().all(|f| f.matches(item)));
        if let Some(sort) = &query.sort {
            sort.apply(&mut items, |(item, virtual_keys), field| match virtual_keys.get(field) {
                Some(value) => value.clone(),
                None => query::field(item, field),
            });
        }
        let total = items.len();
        let page = query::page(items, query.limit, query.offset);
        Ok((page.into_iter().map(|(item, _)| item).collect(), total))
    }

    pub async fn get(
        &self,
        principal: &Principal,
        entity: Entity,
        id: i64,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Viewer)?;
        self.render(entity, id, false).await?.ok_or_else(|| not_found(entity, id))
    }

    /// An entity as the API shows it; `None` when it is gone.
    async fn render(
        &self,
        entity: Entity,
        id: i64,
        nulls: bool,
    ) -> Result<Option<Value>, ServiceError> {
        Ok(match entity {
            Entity::Vendor => self.db.vendor(id).await?.map(|v| render::vendor(&v, nulls)),
            Entity::Filament => match self.db.filament(id).await? {
                Some(f) => {
                    let vendor = match f.vendor_id {
                        Some(v) => self.db.vendor(v).await?,
                        None => None,
                    };
                    Some(render::filament(&f, vendor.as_ref(), nulls))
                }
                None => None,
            },
            Entity::Spool => match self.db.spool(id).await? {
                Some(s) => Some(self.render_spool(&s, nulls).await?),
                None => None,
            },
        })
    }

    async fn render_spool(&self, spool: &Spool, nulls: bool) -> Result<Value, ServiceError> {
        let filament = self.db.filament(spool.filament_id).await?.ok_or_else(|| {
            ServiceError::Internal(format!("spool {} lost its filament", spool.id))
        })?;
        let vendor = match filament.vendor_id {
            Some(v) => self.db.vendor(v).await?,
            None => None,
        };
        Ok(render::spool(spool, &filament, vendor.as_ref(), nulls))
    }

    /// Publishes an entity's current state and returns it as REST shows it.
    async fn changed(
        &self,
        kind: ChangeKind,
        entity: Entity,
        id: i64,
    ) -> Result<Value, ServiceError> {
        let payload = self.render(entity, id, true).await?.ok_or_else(|| not_found(entity, id))?;
        let rest = strip_nulls(&payload);
        self.publish(kind, entity, id, payload);
        Ok(rest)
    }

    /// Distinct values of a text field (`material`, `article_number`, `lot_nr`,
    /// `location`), in storage order.
    pub async fn distinct(
        &self,
        principal: &Principal,
        what: &str,
    ) -> Result<Vec<String>, ServiceError> {
        principal.require(Role::Viewer)?;
        let mut out: Vec<String> = Vec::new();
        let mut push = |value: &Option<String>| {
            if let Some(value) = value
                && !out.contains(value)
            {
                out.push(value.clone());
            }
        };
        match what {
            "material" | "article_number" => {
                for f in self.db.filaments().await? {
                    push(if what == "material" { &f.material } else { &f.article_number });
                }
            }
            "lot_nr" | "location" => {
                for s in self.db.spools().await? {
                    push(if what == "lot_nr" { &s.lot_nr } else { &s.location });
                }
            }
            _ => return Err(ServiceError::NotFound(format!("no list of {what}"))),
        }
        Ok(out)
    }

    /// Renames a location on every spool that has exactly it.
    pub async fn rename_location(
        &self,
        principal: &Principal,
        from: &str,
        to: &str,
    ) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        for mut spool in self.db.spools().await? {
            if spool.location.as_deref() == Some(from) {
                spool.location = Some(to.to_owned());
                self.db.update_spool(&spool, false).await?;
            }
        }
        self.audit(principal, &format!("rename spool location {from:?} to {to:?}")).await
    }

    // --- vendors ------------------------------------------------------------------------

    pub async fn create_vendor(
        &self,
        principal: &Principal,
        input: &VendorInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let Some(name) = input.name.value() else {
            return Err(ServiceError::Invalid("name is required".into()));
        };
        let mut vendor = Vendor {
            id: 0,
            registered: now_seconds(),
            name: name.clone(),
            comment: None,
            empty_spool_weight: None,
            external_id: None,
            extra: Extra::new(),
        };
        input.comment.apply(&mut vendor.comment);
        input.empty_spool_weight.apply(&mut vendor.empty_spool_weight);
        input.external_id.apply(&mut vendor.external_id);
        if let Some(extra) = input.extra.value() {
            self.check_extra(Entity::Vendor, extra).await?;
            vendor.extra = extra.clone();
        }
        let vendor = self.db.insert_vendor(&vendor).await?;
        self.audit(principal, &format!("add vendor {} ({:?})", vendor.id, vendor.name)).await?;
        self.changed(ChangeKind::Added, Entity::Vendor, vendor.id).await
    }

    pub async fn update_vendor(
        &self,
        principal: &Principal,
        id: i64,
        input: &VendorInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let mut vendor = self.db.vendor(id).await?.ok_or_else(|| not_found(Entity::Vendor, id))?;
        if let Some(name) = input.name.value() {
            vendor.name = name.clone();
        }
        input.comment.apply(&mut vendor.comment);
        input.empty_spool_weight.apply(&mut vendor.empty_spool_weight);
        input.external_id.apply(&mut vendor.external_id);
        if let Some(extra) = input.extra.value() {
            self.check_extra(Entity::Vendor, extra).await?;
            vendor.extra = extra.clone();
        }
        if !self.db.update_vendor(&vendor).await? {
            return Err(not_found(Entity::Vendor, id));
        }
        self.audit(principal, &format!("edit vendor {id}")).await?;
        self.changed(ChangeKind::Updated, Entity::Vendor, id).await
    }

    pub async fn delete_vendor(&self, principal: &Principal, id: i64) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        let payload = self
            .render(Entity::Vendor, id, true)
            .await?
            .ok_or_else(|| not_found(Entity::Vendor, id))?;
        if !self.db.delete_vendor(id).await? {
            return Err(not_found(Entity::Vendor, id));
        }
        self.audit(principal, &format!("delete vendor {id}")).await?;
        self.publish(ChangeKind::Deleted, Entity::Vendor, id, payload);
        Ok(())
    }

    // --- filaments ----------------------------------------------------------------------

    pub async fn create_filament(
        &self,
        principal: &Principal,
        input: &FilamentInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let (Some(density), Some(diameter)) = (input.density.value(), input.diameter.value())
        else {
            return Err(ServiceError::Invalid("density and diameter are required".into()));
        };
        let mut filament = Filament {
            id: 0,
            registered: now_seconds(),
            name: None,
            vendor_id: None,
            material: None,
            price: None,
            density: *density,
            diameter: *diameter,
            weight: None,
            spool_weight: None,
            article_number: None,
            comment: None,
            settings_extruder_temp: None,
            settings_bed_temp: None,
            color_hex: None,
            multi_color_hexes: None,
            multi_color_direction: None,
            external_id: None,
            extra: Extra::new(),
        };
        self.apply_filament(&mut filament, input).await?;
        if input.spool_weight.is_absent()
            && let Some(vendor) = filament.vendor_id
            && let Some(vendor) = self.db.vendor(vendor).await?
        {
            filament.spool_weight = vendor.empty_spool_weight;
        }
        let filament = self.db.insert_filament(&filament).await?;
        self.audit(principal, &format!("add filament {}", filament.id)).await?;
        self.changed(ChangeKind::Added, Entity::Filament, filament.id).await
    }

    async fn apply_filament(
        &self,
        f: &mut Filament,
        input: &FilamentInput,
    ) -> Result<(), ServiceError> {
        if let Some(vendor) = input.vendor_id.value()
            && self.db.vendor(*vendor).await?.is_none()
        {
            return Err(not_found(Entity::Vendor, *vendor));
        }
        input.name.apply(&mut f.name);
        input.vendor_id.apply(&mut f.vendor_id);
        input.material.apply(&mut f.material);
        input.price.apply(&mut f.price);
        if let Some(density) = input.density.value() {
            f.density = *density;
        }
        if let Some(diameter) = input.diameter.value() {
            f.diameter = *diameter;
        }
        input.weight.apply(&mut f.weight);
        input.spool_weight.apply(&mut f.spool_weight);
        input.article_number.apply(&mut f.article_number);
        input.comment.apply(&mut f.comment);
        input.settings_extruder_temp.apply(&mut f.settings_extruder_temp);
        input.settings_bed_temp.apply(&mut f.settings_bed_temp);
        input.color_hex.apply(&mut f.color_hex);
        input.multi_color_hexes.apply(&mut f.multi_color_hexes);
        input.multi_color_direction.apply(&mut f.multi_color_direction);
        input.external_id.apply(&mut f.external_id);
        if let Some(extra) = input.extra.value() {
            self.check_extra(Entity::Filament, extra).await?;
            f.extra = extra.clone();
        }
        Ok(())
    }

    pub async fn update_filament(
        &self,
        principal: &Principal,
        id: i64,
        input: &FilamentInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let mut filament =
            self.db.filament(id).await?.ok_or_else(|| not_found(Entity::Filament, id))?;
        self.apply_filament(&mut filament, input).await?;
        if !self.db.update_filament(&filament).await? {
            return Err(not_found(Entity::Filament, id));
        }
        self.audit(principal, &format!("edit filament {id}")).await?;
        self.changed(ChangeKind::Updated, Entity::Filament, id).await
    }

    pub async fn delete_filament(
        &self,
        principal: &Principal,
        id: i64,
    ) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        let payload = self
            .render(Entity::Filament, id, true)
            .await?
            .ok_or_else(|| not_found(Entity::Filament, id))?;
        match self.db.delete_filament(id).await? {
            None => Err(ServiceError::Conflict(
                "Failed to delete filament, see server logs for more information.".into(),
            )),
            Some(false) => Err(not_found(Entity::Filament, id)),
            Some(true) => {
                self.audit(principal, &format!("delete filament {id}")).await?;
                self.publish(ChangeKind::Deleted, Entity::Filament, id, payload);
                Ok(())
            }
        }
    }

    // --- spools -------------------------------------------------------------------------

    pub async fn create_spool(
        &self,
        principal: &Principal,
        input: &SpoolInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let Some(filament_id) = input.filament_id.value() else {
            return Err(ServiceError::Invalid("filament_id is required".into()));
        };
        if input.remaining_weight.value().is_some() && input.used_weight.value().is_some() {
            return Err(ServiceError::Invalid(
                "Only specify either remaining_weight or used_weight.".into(),
            ));
        }
        let filament = self
            .db
            .filament(*filament_id)
            .await?
            .ok_or_else(|| not_found(Entity::Filament, *filament_id))?;
        let mut spool = Spool {
            id: 0,
            registered: now_seconds(),
            first_used: None,
            last_used: None,
            filament_id: *filament_id,
            price: None,
            initial_weight: filament.weight,
            spool_weight: filament.spool_weight,
            used_weight: 0.0,
            location: None,
            lot_nr: None,
            comment: None,
            archived: false,
            extra: Extra::new(),
            rfid: None,
        };
        self.apply_spool(&mut spool, input, "create").await?;
        let spool = self.db.insert_spool(&spool).await?;
        self.audit(principal, &format!("add spool {}", spool.id)).await?;
        self.changed(ChangeKind::Added, Entity::Spool, spool.id).await
    }

    /// Applies a request's fields in the order Spoolman does (so a new initial weight counts
    /// before a remaining weight is turned into a used one).
    async fn apply_spool(
        &self,
        s: &mut Spool,
        input: &SpoolInput,
        verb: &str,
    ) -> Result<(), ServiceError> {
        input.first_used.apply(&mut s.first_used);
        input.last_used.apply(&mut s.last_used);
        if let Some(filament_id) = input.filament_id.value()
            && *filament_id != s.filament_id
        {
            let filament = self
                .db
                .filament(*filament_id)
                .await?
                .ok_or_else(|| not_found(Entity::Filament, *filament_id))?;
            s.filament_id = *filament_id;
            if s.initial_weight.is_none() {
                s.initial_weight = filament.weight;
            }
        }
        input.price.apply(&mut s.price);
        input.initial_weight.apply(&mut s.initial_weight);
        input.spool_weight.apply(&mut s.spool_weight);
        if let Some(remaining) = input.remaining_weight.value() {
            match s.initial_weight {
                Some(initial) if initial > 0.0 => s.used_weight = (initial - remaining).max(0.0),
                _ => {
                    return Err(ServiceError::Invalid(format!(
                        "Failed to {verb} spool: remaining_weight needs an initial weight \
                         (the spool's, or its filament's weight)."
                    )));
                }
            }
        }
        if let Some(used) = input.used_weight.value() {
            s.used_weight = *used;
        }
        input.location.apply(&mut s.location);
        input.lot_nr.apply(&mut s.lot_nr);
        input.comment.apply(&mut s.comment);
        if let Some(archived) = input.archived.value() {
            s.archived = *archived;
        }
        if let Some(extra) = input.extra.value() {
            self.check_extra(Entity::Spool, extra).await?;
            // A spool's extra fields merge key by key (Spoolman's clients rely on it).
            s.extra.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(())
    }

    pub async fn update_spool(
        &self,
        principal: &Principal,
        id: i64,
        input: &SpoolInput,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        if input.remaining_weight.value().is_some() && input.used_weight.value().is_some() {
            return Err(ServiceError::Invalid(
                "Only specify either remaining_weight or used_weight.".into(),
            ));
        }
        let mut spool = self.db.spool(id).await?.ok_or_else(|| not_found(Entity::Spool, id))?;
        self.apply_spool(&mut spool, input, "update").await?;
        let with_weight = !input.remaining_weight.is_absent() || !input.used_weight.is_absent();
        if !self.db.update_spool(&spool, with_weight).await? {
            return Err(not_found(Entity::Spool, id));
        }
        self.audit(principal, &format!("edit spool {id}")).await?;
        self.changed(ChangeKind::Updated, Entity::Spool, id).await
    }

    pub async fn delete_spool(&self, principal: &Principal, id: i64) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        let payload = self
            .render(Entity::Spool, id, true)
            .await?
            .ok_or_else(|| not_found(Entity::Spool, id))?;
        // Spoolman tells the websockets before the row goes.
        self.publish(ChangeKind::Deleted, Entity::Spool, id, payload);
        if !self.db.delete_spool(id).await? {
            return Err(not_found(Entity::Spool, id));
        }
        self.audit(principal, &format!("delete spool {id}")).await
    }

    /// Uses filament from a spool (a negative amount gives some back); the used weight never
    /// goes below zero. Not audited (Moonraker reports every few seconds while it prints);
    /// the spool's `last_used` says when.
    pub async fn use_spool(
        &self,
        principal: &Principal,
        id: i64,
        amount: Amount,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let grams = match amount {
            Amount::Grams(grams) => grams,
            Amount::Millimetres(mm) => {
                let spool = self.db.spool(id).await?.ok_or_else(|| {
                    ServiceError::NotFound("Filament not found for spool.".into())
                })?;
                let filament = self.db.filament(spool.filament_id).await?.ok_or_else(|| {
                    ServiceError::NotFound("Filament not found for spool.".into())
                })?;
                weight_from_length(mm, filament.diameter, filament.density)
            }
        };
        if !grams.is_finite() {
            return Err(ServiceError::Invalid("the amount must be a finite number".into()));
        }
        self.db
            .use_spool(id, grams, now_seconds())
            .await?
            .ok_or_else(|| not_found(Entity::Spool, id))?;
        self.changed(ChangeKind::Updated, Entity::Spool, id).await
    }

    /// A weigh-in: the spool's gross weight on a scale becomes its used weight (Spoolman's
    /// `measure`). Heavier than it was when new: a refill, the initial weight is reset.
    pub async fn measure(
        &self,
        principal: &Principal,
        id: i64,
        gross: f64,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let Some(mut spool) = self.db.spool(id).await? else {
            return Err(ServiceError::Invalid("Spool not found.".into()));
        };
        let filament = self.db.filament(spool.filament_id).await?;
        let positive = |v: Option<f64>| v.filter(|v| *v > 0.0);
        let initial = positive(spool.initial_weight)
            .or_else(|| filament.as_ref().and_then(|f| positive(f.weight)));
        let Some(initial) = initial else {
            return Err(ServiceError::Invalid("Initial weight is not set.".into()));
        };
        let tare = positive(spool.spool_weight)
            .or_else(|| filament.as_ref().and_then(|f| f.spool_weight))
            .unwrap_or(0.0);
        let full = initial + tare;
        if gross > full {
            spool.initial_weight = Some(gross - tare);
            spool.used_weight = 0.0;
            self.db.update_spool(&spool, true).await?;
        } else {
            let used = spool.used_weight;
            let mut delta = (full - used) - gross;
            if used + gross < tare {
                delta = (full - used) - tare;
            }
            self.db.use_spool(id, delta, now_seconds()).await?;
        }
        self.audit(principal, &format!("weigh spool {id}: {gross} g gross")).await?;
        self.changed(ChangeKind::Updated, Entity::Spool, id).await
    }

    // --- extra fields -------------------------------------------------------------------

    /// The extra fields defined for an entity, as Spoolman lists them.
    pub async fn fields(
        &self,
        principal: &Principal,
        entity: Entity,
    ) -> Result<Vec<Value>, ServiceError> {
        principal.require(Role::Viewer)?;
        let mut fields: Vec<Value> = self
            .db
            .inventory_fields(entity.as_str())
            .await?
            .into_iter()
            .filter_map(|(_, definition)| serde_json::from_str(&definition).ok())
            .collect();
        fields.sort_by_key(|f: &Value| {
            (f["order"].as_i64().unwrap_or(0), f["key"].as_str().map(str::to_owned))
        });
        Ok(fields)
    }

    /// Adds or changes an extra field; `definition` holds the request's fields.
    pub async fn put_field(
        &self,
        principal: &Principal,
        entity: Entity,
        key: &str,
        definition: &Value,
    ) -> Result<Vec<Value>, ServiceError> {
        principal.require(Role::Operator)?;
        let invalid = |m: &str| Err(ServiceError::Invalid(m.to_owned()));
        let field_type = definition["field_type"].as_str().unwrap_or_default();
        let choices = definition.get("choices").filter(|c| !c.is_null());
        let multi = definition.get("multi_choice").filter(|c| !c.is_null());
        if field_type == "choice" {
            if choices.is_none() {
                return invalid("Choices must be set for field type choice.");
            }
            if multi.is_none() {
                return invalid("Multi choice must be set for field type choice.");
            }
        } else {
            if choices.is_some() {
                return invalid("Choices must not be set for field type other than choice.");
            }
            if multi.is_some() {
                return invalid("Multi choice must not be set for field type other than choice.");
            }
        }
        let mut stored = serde_json::Map::new();
        stored.insert("key".into(), json!(key));
        stored.insert("entity_type".into(), json!(entity.as_str()));
        stored.insert("name".into(), definition["name"].clone());
        stored.insert("order".into(), json!(definition["order"].as_i64().unwrap_or(0)));
        stored.insert("field_type".into(), json!(field_type));
        for optional in ["unit", "default_value", "choices", "multi_choice"] {
            if let Some(value) = definition.get(optional).filter(|v| !v.is_null()) {
                stored.insert(optional.into(), value.clone());
            }
        }
        let stored = Value::Object(stored);
        if let Some(default) = stored.get("default_value").and_then(Value::as_str)
            && let Err(reason) = check_value(&stored, default)
        {
            return Err(ServiceError::Invalid(format!("Default value is not valid: {reason}")));
        }
        let existing = self.db.inventory_fields(entity.as_str()).await?;
        if let Some((_, old)) = existing.iter().find(|(k, _)| k == key) {
            let old: Value = serde_json::from_str(old).unwrap_or(Value::Null);
            if old["field_type"] != stored["field_type"] {
                return invalid("Field type cannot be changed.");
            }
            if old.get("multi_choice") != stored.get("multi_choice") {
                return invalid("Multi choice cannot be changed.");
            }
            if let Some(old_choices) = old["choices"].as_array() {
                let new_choices = stored["choices"].as_array().cloned().unwrap_or_default();
                if old_choices.iter().any(|c| !new_choices.contains(c)) {
                    return invalid("Cannot remove existing choices.");
                }
            }
        }
        self.db.put_inventory_field(entity.as_str(), key, &stored.to_string()).await?;
        self.audit(principal, &format!("define {} field {key:?}", entity.as_str())).await?;
        self.fields(principal, entity).await
    }

    /// Deletes an extra field and its value on every entity of its type.
    pub async fn delete_field(
        &self,
        principal: &Principal,
        entity: Entity,
        key: &str,
    ) -> Result<Vec<Value>, ServiceError> {
        principal.require(Role::Operator)?;
        if !self.db.delete_inventory_field(entity.as_str(), key).await? {
            return Err(ServiceError::NotFound(format!(
                "Extra field with key {key} does not exist for entity type {}",
                entity.as_str()
            )));
        }
        match entity {
            Entity::Vendor => {
                for mut v in self.db.vendors().await? {
                    if v.extra.remove(key).is_some() {
                        self.db.update_vendor(&v).await?;
                    }
                }
            }
            Entity::Filament => {
                for mut f in self.db.filaments().await? {
                    if f.extra.remove(key).is_some() {
                        self.db.update_filament(&f).await?;
                    }
                }
            }
            Entity::Spool => {
                for mut s in self.db.spools().await? {
                    if s.extra.remove(key).is_some() {
                        self.db.update_spool(&s, false).await?;
                    }
                }
            }
        }
        self.audit(principal, &format!("delete {} field {key:?}", entity.as_str())).await?;
        self.fields(principal, entity).await
    }

    /// Every extra value must belong to a defined field and fit its type.
    async fn check_extra(&self, entity: Entity, extra: &Extra) -> Result<(), ServiceError> {
        if extra.is_empty() {
            return Ok(());
        }
        let fields = self.db.inventory_fields(entity.as_str()).await?;
        for (key, value) in extra {
            let Some((_, definition)) = fields.iter().find(|(k, _)| k == key) else {
                return Err(ServiceError::Invalid(format!("Unknown extra field {key}.")));
            };
            let definition: Value = serde_json::from_str(definition).unwrap_or(Value::Null);
            if let Err(reason) = check_value(&definition, value) {
                return Err(ServiceError::Invalid(format!(
                    "Invalid extra field for key {key}: {reason}"
                )));
            }
        }
        Ok(())
    }

    // --- settings -----------------------------------------------------------------------

    /// Every setting: `{key: {value, is_set, type}}`.
    pub async fn settings(&self, principal: &Principal) -> Result<Value, ServiceError> {
        principal.require(Role::Viewer)?;
        let stored: HashMap<String, String> =
            self.db.inventory_settings().await?.into_iter().collect();
        let mut out = serde_json::Map::new();
        for (key, kind, default) in SETTINGS {
            out.insert(key.into(), self.setting_value(key, kind, default, &stored).await?);
        }
        Ok(Value::Object(out))
    }

    async fn setting_value(
        &self,
        key: &str,
        kind: &str,
        default: &str,
        stored: &HashMap<String, String>,
    ) -> Result<Value, ServiceError> {
        // The extra fields' definitions live in their own table; show them here too.
        if let Some(entity) = key.strip_prefix("extra_fields_").and_then(Entity::parse) {
            let fields: Vec<Value> = self
                .db
                .inventory_fields(entity.as_str())
                .await?
                .into_iter()
                .filter_map(|(_, d)| serde_json::from_str(&d).ok())
                .collect();
            let is_set = !fields.is_empty();
            return Ok(
                json!({ "value": Value::Array(fields).to_string(), "is_set": is_set, "type": kind }),
            );
        }
        Ok(match stored.get(key) {
            Some(value) => json!({ "value": value, "is_set": true, "type": kind }),
            None => json!({ "value": default, "is_set": false, "type": kind }),
        })
    }

    pub async fn setting(&self, principal: &Principal, key: &str) -> Result<Value, ServiceError> {
        principal.require(Role::Viewer)?;
        let Some((key, kind, default)) = SETTINGS.iter().find(|(k, ..)| *k == key) else {
            return Err(ServiceError::NotFound(format!("Setting {key} does not exist.")));
        };
        let stored: HashMap<String, String> =
            self.db.inventory_settings().await?.into_iter().collect();
        self.setting_value(key, kind, default, &stored).await
    }

    /// Sets a setting from its JSON text (`""` or `null`: back to the default).
    pub async fn set_setting(
        &self,
        principal: &Principal,
        key: &str,
        value: &str,
    ) -> Result<Value, ServiceError> {
        principal.require(Role::Operator)?;
        let Some((key, kind, default)) = SETTINGS.iter().find(|(k, ..)| *k == key) else {
            return Err(ServiceError::NotFound(format!("Setting {key} does not exist.")));
        };
        if key.starts_with("extra_fields_") {
            return Err(ServiceError::Invalid(format!("Setting {key} is managed through /field.")));
        }
        let value = if value.is_empty() || value == "null" { *default } else { value };
        let parsed: Value =
            serde_json::from_str(value).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let fits = match *kind {
            "string" => parsed.is_string(),
            "boolean" => parsed.is_boolean(),
            "number" => parsed.is_number(),
            "array" => parsed.is_array(),
            "object" => parsed.is_object(),
            _ => false,
        };
        if !fits {
            let article = if matches!(*kind, "array" | "object") { "an" } else { "a" };
            return Err(ServiceError::Invalid(format!("Setting {key} must be {article} {kind}.")));
        }
        self.db.put_inventory_setting(key, value).await?;
        self.audit(principal, &format!("set inventory setting {key}")).await?;
        self.setting(principal, key).await
    }

    // --- export -------------------------------------------------------------------------

    /// Flat rows for an export: dotted keys, extras as `extra.<key>`; spools not archived.
    pub async fn export(
        &self,
        principal: &Principal,
        entity: Entity,
    ) -> Result<Vec<Value>, ServiceError> {
        let query = ListQuery::default();
        let (items, _) = self.list(principal, entity, &query).await?;
        Ok(items.iter().map(flatten).collect())
    }

    // --- spools in slots ----------------------------------------------------------------

    pub async fn slots(
        &self,
        principal: &Principal,
        printer: Option<&str>,
    ) -> Result<Vec<SlotRow>, ServiceError> {
        principal.require(Role::Viewer)?;
        Ok(self.db.spool_slots(printer).await?)
    }

    /// Puts a spool in a printer's slot (or empties it).
    pub async fn assign(
        &self,
        principal: &Principal,
        printer: &str,
        unit: Option<u8>,
        slot: u8,
        spool: Option<i64>,
    ) -> Result<(), ServiceError> {
        principal.require(Role::Operator)?;
        if let Some(id) = spool
            && self.db.spool(id).await?.is_none()
        {
            return Err(not_found(Entity::Spool, id));
        }
        self.db.assign_slot(printer, unit, slot, spool, principal.name(), now_ms()).await?;
        let place = match unit {
            Some(unit) => format!("{printer} unit {unit} slot {slot}"),
            None => format!("{printer} external slot {slot}"),
        };
        let what = match spool {
            Some(id) => format!("put spool {id} in {place}"),
            None => format!("empty {place}"),
        };
        self.audit(principal, &what).await
    }

    // --- Spoolman clients ---------------------------------------------------------------

    /// A new client and its token (`ksm.<id>.<secret>`), shown once.
    /// `printer`: the printer whose usage this client reports (Moonraker using kitt as its
    /// Spoolman); kitt then deducts nothing itself for that printer's prints, so nothing is
    /// counted twice.
    pub async fn add_client(
        &self,
        principal: &Principal,
        name: &str,
        printer: Option<&str>,
    ) -> Result<(SpoolmanClientRow, String), ServiceError> {
        principal.require(Role::Admin)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(
                "a client's name is 1 to 64 characters, none of them control characters".into(),
            ));
        }
        let id = random_hex(8);
        let secret = random_hex(24);
        if let Some(printer) = printer
            && self.db.printer(printer).await?.is_none()
        {
            return Err(ServiceError::unknown_printer(printer));
        }
        let row = SpoolmanClientRow {
            id: id.clone(),
            name: name.to_owned(),
            printer_id: printer.map(str::to_owned),
            created_by: principal.name().to_owned(),
            created_at: now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        self.db.insert_spoolman_client(&row, &hash_secret(&secret)).await?;
        self.audit(principal, &format!("add Spoolman client {id} ({name:?})")).await?;
        Ok((row, format!("ksm.{id}.{secret}")))
    }

    pub async fn clients(
        &self,
        principal: &Principal,
    ) -> Result<Vec<SpoolmanClientRow>, ServiceError> {
        principal.require(Role::Admin)?;
        Ok(self.db.spoolman_clients().await?)
    }

    pub async fn revoke_client(
        &self,
        principal: &Principal,
        id_or_name: &str,
    ) -> Result<(), ServiceError> {
        principal.require(Role::Admin)?;
        if !self.db.revoke_spoolman_client(id_or_name, now_ms()).await? {
            return Err(ServiceError::NotFound(format!("no live Spoolman client {id_or_name:?}")));
        }
        self.audit(principal, &format!("revoke Spoolman client {id_or_name:?}")).await
    }

    /// The client a token in a URL names, as the principal it acts as; `None` for an
    /// unknown, malformed or revoked token.
    pub async fn client_principal(&self, token: &str) -> Result<Option<Principal>, ServiceError> {
        let mut parts = token.splitn(3, '.');
        let (Some("ksm"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let Some((client, hash)) = self.db.live_spoolman_client(id).await? else {
            return Ok(None);
        };
        // Constant-time comparison of the hashes.
        let given = hash_secret(secret);
        let same = given.len() == hash.len()
            && given.bytes().zip(hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Ok(None);
        }
        self.db.touch_spoolman_client(&client.id, now_ms()).await?;
        Ok(Some(Principal::internal(format!("spoolman client {}", client.name), Role::Operator)))
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Vendors and filaments by id, for rendering many items at once.
struct Catalogue {
    vendors: HashMap<i64, Vendor>,
    filaments: HashMap<i64, Filament>,
}

impl Catalogue {
    fn filament_json(&self, filament: &Filament, nulls: bool) -> Value {
        let vendor = filament.vendor_id.and_then(|v| self.vendors.get(&v));
        render::filament(filament, vendor, nulls)
    }
}

/// An object without its null fields, at every depth.
pub fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An item as one flat row: nested objects as dotted keys.
fn flatten(item: &Value) -> Value {
    fn walk(prefix: &str, value: &Value, out: &mut serde_json::Map<String, Value>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let name =
                        if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    walk(&name, value, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = serde_json::Map::new();
    walk("", item, &mut out);
    Value::Object(out)
}

/// Whether an extra value (a JSON text) fits its field's definition; the reason if not.
fn check_value(definition: &Value, value: &str) -> Result<(), &'static str> {
    let Ok(parsed) = serde_json::from_str::<Value>(value) else {
        return Err("Value is not valid JSON.");
    };
    let pair = |check: fn(&Value) -> bool, not_list: &'static str, not_member: &'static str| {
        let Some(items) = parsed.as_array() else { return Err(not_list) };
        if items.len() != 2 {
            return Err("Value list must have exactly two values.");
        }
        if items.iter().all(|v| v.is_null() || check(v)) { Ok(()) } else { Err(not_member) }
    };
    match definition["field_type"].as_str().unwrap_or_default() {
        "text" | "datetime" => parsed.is_string().then_some(()).ok_or("Value is not a string."),
        "integer" => (parsed.is_i64() || parsed.is_u64() || parsed.is_boolean())
            .then_some(())
            .ok_or("Value is not an integer."),
        "float" => parsed.is_number().then_some(()).ok_or("Value is not a float."),
        "boolean" => parsed.is_boolean().then_some(()).ok_or("Value is not a boolean."),
        "integer_range" => pair(
            |v| v.is_i64() || v.is_u64(),
            "Value is not a list.",
            "Value list must contain only integers.",
        ),
        "float_range" => {
            pair(Value::is_number, "Value is not a list.", "Value list must contain only floats.")
        }
        "choice" => {
            let choices = definition["choices"].as_array().cloned().unwrap_or_default();
            if definition["multi_choice"].as_bool().unwrap_or(false) {
                let Some(items) = parsed.as_array() else { return Err("Value is not a list.") };
                if items.iter().all(|v| choices.contains(v)) {
                    Ok(())
                } else {
                    Err("Value list contains invalid choices.")
                }
            } else if choices.contains(&parsed) {
                Ok(())
            } else {
                Err("Value is not a valid choice.")
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_values_are_json_texts_checked_against_their_field() {
        let integer = json!({"field_type": "integer"});
        assert_eq!(check_value(&integer, "42"), Ok(()));
        assert_eq!(check_value(&integer, "\"42\""), Err("Value is not an integer."));
        assert_eq!(check_value(&integer, "4 2"), Err("Value is not valid JSON."));
        let range = json!({"field_type": "float_range"});
        assert_eq!(check_value(&range, "[1.5, 2]"), Ok(()));
        assert_eq!(check_value(&range, "[1.5]"), Err("Value list must have exactly two values."));
        let choice = json!({"field_type": "choice", "choices": ["A", "B"], "multi_choice": true});
        assert_eq!(check_value(&choice, "[\"A\",\"B\"]"), Ok(()));
        assert_eq!(check_value(&choice, "[\"C\"]"), Err("Value list contains invalid choices."));
        let text = json!({"field_type": "text"});
        assert_eq!(check_value(&text, "\"hello\""), Ok(()));
    }

    #[test]
    fn every_sort_field_of_a_spool_includes_its_filaments_and_vendors() {
        let fields = sort_fields(Entity::Spool);
        for want in
            ["remaining_weight", "filament.name", "filament.vendor.name", "filament.combined_name"]
        {
            assert!(fields.contains(&want), "{want}");
        }
        assert!(!sort_fields(Entity::Vendor).contains(&"filament.name"));
    }

    #[test]
    fn nulls_are_stripped_at_every_depth_and_rows_flatten_with_dots() {
        let item = json!({"a": null, "b": {"c": null, "d": 1}, "extra": {"k": "\"v\""}});
        assert_eq!(strip_nulls(&item), json!({"b": {"d": 1}, "extra": {"k": "\"v\""}}));
        assert_eq!(flatten(&strip_nulls(&item)), json!({"b.d": 1, "extra.k": "\"v\""}));
    }
}

/// A spool as the dashboard's inventory lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SpoolSummary {
    pub id: i64,
    pub filament_id: i64,
    /// The filament's name, else its material.
    pub name: String,
    pub material: Option<String>,
    /// `#RRGGBB`.
    pub color: Option<String>,
    pub vendor: Option<String>,
    pub remaining_g: Option<f64>,
    pub initial_g: Option<f64>,
    pub used_g: f64,
    pub location: Option<String>,
    pub archived: bool,
    /// Identified by an RFID tag a printer read.
    pub tagged: bool,
    /// Where it is loaded, if it is.
    pub loaded: Option<Loaded>,
    pub last_used: Option<i64>,
}

/// A printer's slot.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Loaded {
    pub printer: String,
    pub unit: Option<u8>,
    pub slot: u8,
}

/// A filament's stock: what its spools hold and how fast prints use it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FilamentStock {
    pub id: i64,
    pub name: String,
    pub material: Option<String>,
    pub color: Option<String>,
    pub vendor: Option<String>,
    /// Spools not archived.
    pub spools: u64,
    pub remaining_g: f64,
    /// What prints used in the last 30 days.
    pub used_30d_g: f64,
    /// At the last 30 days' pace; `null` when nothing was used.
    pub days_to_empty: Option<f64>,
    /// Below the low-stock threshold.
    pub low: bool,
}

/// The inventory at a glance.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct InventoryView {
    /// The inventory's currency (Spoolman's `currency` setting).
    pub currency: String,
    /// A filament is low below this many grams.
    pub low_stock_g: f64,
    pub spools: Vec<SpoolSummary>,
    pub filaments: Vec<FilamentStock>,
}

/// The low-stock threshold when none is configured, grams per filament.
pub const DEFAULT_LOW_STOCK_G: f64 = 100.0;

/// Days a stock lasts at a pace of `used` grams in `days` days; `None` at no pace.
pub fn days_to_empty(remaining: f64, used: f64, days: f64) -> Option<f64> {
    (used > 0.0).then(|| remaining / (used / days))
}

impl Inventory {
    /// Every spool and filament with their stock, for the dashboard.
    pub async fn overview(&self, principal: &Principal) -> Result<InventoryView, ServiceError> {
        principal.require(Role::Viewer)?;
        let catalogue = self.everything().await?;
        let spools = self.db.spools().await?;
        let slots = self.db.spool_slots(None).await?;
        let since = UnixMillis::now().0 - 30 * 86_400_000;
        let used: HashMap<i64, f64> = self.db.usage_since(since).await?.into_iter().collect();
        let settings: HashMap<String, String> =
            self.db.inventory_settings().await?.into_iter().collect();
        let currency = settings
            .get("currency")
            .and_then(|c| serde_json::from_str::<String>(c).ok())
            .unwrap_or_else(|| "EUR".into());
        let low_stock_g = settings
            .get(LOW_STOCK_KEY)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(DEFAULT_LOW_STOCK_G);
        let vendor_name = |f: &Filament| {
            f.vendor_id.and_then(|v| catalogue.vendors.get(&v)).map(|v| v.name.clone())
        };
        let name_of = |f: &Filament| {
            f.name
                .clone()
                .or_else(|| f.material.clone())
                .unwrap_or_else(|| format!("Filament {}", f.id))
        };
        let color_of =
            |f: &Filament| f.color_hex.as_ref().map(|c| format!("#{}", &c[..c.len().min(6)]));
        let mut stock: HashMap<i64, FilamentStock> = catalogue
            .filaments
            .values()
            .map(|f| {
                (
                    f.id,
                    FilamentStock {
                        id: f.id,
                        name: name_of(f),
                        material: f.material.clone(),
                        color: color_of(f),
                        vendor: vendor_name(f),
                        spools: 0,
                        remaining_g: 0.0,
                        used_30d_g: 0.0,
                        days_to_empty: None,
                        low: false,
                    },
                )
            })
            .collect();
        let mut summaries = Vec::new();
        for spool in &spools {
            let Some(filament) = catalogue.filaments.get(&spool.filament_id) else { continue };
            let remaining = render::remaining_weight(spool, filament);
            if let Some(entry) = stock.get_mut(&filament.id) {
                entry.used_30d_g += used.get(&spool.id).copied().unwrap_or(0.0);
                if !spool.archived {
                    entry.spools += 1;
                    entry.remaining_g += remaining.unwrap_or(0.0);
                }
            }
            let loaded = slots.iter().find(|s| s.spool_id == spool.id).map(|s| Loaded {
                printer: s.printer_id.clone(),
                unit: s.unit,
                slot: s.slot,
            });
            summaries.push(SpoolSummary {
                id: spool.id,
                filament_id: filament.id,
                name: name_of(filament),
                material: filament.material.clone(),
                color: color_of(filament),
                vendor: vendor_name(filament),
                remaining_g: remaining,
                initial_g: spool.initial_weight.or(filament.weight),
                used_g: spool.used_weight,
                location: spool.location.clone(),
                archived: spool.archived,
                tagged: spool.rfid.is_some(),
                loaded,
                last_used: spool.last_used,
            });
        }
        let mut filaments: Vec<FilamentStock> = stock
            .into_values()
            .map(|mut f| {
                f.days_to_empty = days_to_empty(f.remaining_g, f.used_30d_g, 30.0);
                f.low = f.spools > 0 && f.remaining_g < low_stock_g
                    || f.days_to_empty.is_some_and(|d| d < crate::db::outcomes::LOW_STOCK_DAYS);
                f
            })
            .collect();
        filaments.sort_by(|a, b| b.low.cmp(&a.low).then(a.name.cmp(&b.name)).then(a.id.cmp(&b.id)));
        Ok(InventoryView { currency, low_stock_g, spools: summaries, filaments })
    }
}

/// Where the low-stock threshold is kept (grams, as text).
pub const LOW_STOCK_KEY: &str = "kitt_low_stock_g";
