//! Spoolman's `/api/v1`, served by the hub so that Spoolman's clients (Moonraker's
//! `[spoolman]`, Fluidd and Mainsail through it, OctoPrint-Spoolman, Home Assistant's
//! integration, OpenSpoolMan) work against kitt's inventory unchanged.
//!
//! Two doors to one API:
//! - `/spoolman/<token>/api/v1/…`: for Spoolman's clients, which send no credentials: the
//!   token lives in the base URL each is configured with (`kitt-hub spoolman client add
//!   NAME` prints it). A client acts as an operator of the inventory and reaches nothing else.
//! - `/spoolman/api/v1/…`: for people and scripts with kitt's own credentials (a session or a
//!   bearer token), with their roles.
//!
//! Everything under either behaves as Spoolman 0.22 does: its resources, fields, filters,
//! sorting, `X-Total-Count`, `{"message"}` errors, FastAPI's 422 details, and websockets on
//! the same paths. Routing is by hand ([`route`], a pure function), so that Spoolman's own
//! answers (`{"detail":"Not Found"}`, 405) come out, not kitt's. What Spoolman does, with
//! sources: `docs/research/spoolman.md`.

// A refusal here is the response itself, built once per request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod body;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::inventory::Entity;
use crate::inventory::query::{ID_PATTERN, IdFilter, Sort, TextFilter, parse_bool};
use crate::service::inventory::{Amount, Filter, ListQuery, sort_fields};
use crate::service::{Principal, ServiceError};

/// The Spoolman version kitt answers as: clients gate features on it (Happy Hare needs
/// 0.18.1, Fluidd 0.16.0).
pub const SPOOLMAN_VERSION: &str = "0.22.1";

/// One of Spoolman's routes, from the path after `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Info,
    Health,
    Backup,
    /// `/vendor`, `/filament`, `/spool`.
    Collection(Entity),
    Item(Entity, String),
    Use(String),
    Measure(String),
    Fields(String),
    Field(String, String),
    Settings,
    Setting(String),
    /// `/material`, `/article-number`, `/lot-number`, `/location`.
    Distinct(&'static str),
    Location(String),
    Export(String),
    External(String),
    /// `/api/v1/`: only a websocket.
    Root,
}

/// The route of a path below `/api/v1` (split on `/`, percent-decoded); `None`: no route.
pub fn route(segments: &[String]) -> Option<Route> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    // A trailing slash is the same route (Starlette redirects; answering directly is kinder).
    let parts: &[&str] = match parts.as_slice() {
        [rest @ .., ""] if !rest.is_empty() => rest,
        other => other,
    };
    Some(match parts {
        [] | [""] => Route::Root,
        ["info"] => Route::Info,
        ["health"] => Route::Health,
        ["backup"] => Route::Backup,
        [entity] if Entity::parse(entity).is_some() => Route::Collection(Entity::parse(entity)?),
        [entity, id] if Entity::parse(entity).is_some() => {
            Route::Item(Entity::parse(entity)?, (*id).to_owned())
        }
        ["spool", id, "use"] => Route::Use((*id).to_owned()),
        ["spool", id, "measure"] => Route::Measure((*id).to_owned()),
        ["field", entity] => Route::Fields((*entity).to_owned()),
        ["field", entity, key] => Route::Field((*entity).to_owned(), (*key).to_owned()),
        ["setting"] => Route::Settings,
        ["setting", key] => Route::Setting((*key).to_owned()),
        ["material"] => Route::Distinct("material"),
        ["article-number"] => Route::Distinct("article_number"),
        ["lot-number"] => Route::Distinct("lot_nr"),
        ["location"] => Route::Distinct("location"),
        ["location", name] => Route::Location((*name).to_owned()),
        ["export", what] => Route::Export((*what).to_owned()),
        ["external", what] => Route::External((*what).to_owned()),
        _ => return None,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({ "message": text }))
}

fn detail(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({ "detail": text }))
}

fn unprocessable(errors: Vec<Value>) -> Response {
    json_response(StatusCode::UNPROCESSABLE_ENTITY, &json!({ "detail": errors }))
}

fn list(items: Vec<Value>, total: usize) -> Response {
    let mut response = ok(&Value::Array(items));
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    headers
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("X-Total-Count"));
    response
}

/// A service's refusal in Spoolman's terms.
fn refused(error: ServiceError) -> Response {
    match error {
        ServiceError::NotFound(text) => message(StatusCode::NOT_FOUND, &text),
        ServiceError::Invalid(text) | ServiceError::Unprocessable { message: text, .. } => {
            message(StatusCode::BAD_REQUEST, &text)
        }
        // Spoolman answers 403 for a filament that spools still use.
        ServiceError::Conflict(text) => message(StatusCode::FORBIDDEN, &text),
        ServiceError::Forbidden { needed } => {
            message(StatusCode::FORBIDDEN, &format!("this needs kitt's {} role", needed.as_str()))
        }
        other => {
            tracing::error!(error = %other, "The Spoolman API failed.");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal error; see the hub's log.")
        }
    }
}

fn path_int(name: &str, text: &str) -> Result<i64, Response> {
    text.parse::<i64>().map_err(|_| {
        unprocessable(vec![json!({
            "type": "int_parsing",
            "loc": ["path", name],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": text,
        })])
    })
}

fn query_error(name: &str, kind: &str, msg: &str, input: &str) -> Response {
    unprocessable(vec![json!({ "type": kind, "loc": ["query", name], "msg": msg, "input": input })])
}

/// The request's query parameters, in order.
fn params(uri: &axum::http::Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The value of the first of `names` given (a parameter's current name before its
/// deprecated alias).
fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()))
}

/// A list request's filters, sort and paging, as Spoolman reads them.
fn list_query(entity: Entity, params: &[(String, String)]) -> Result<ListQuery, Response> {
    let mut query = ListQuery::default();
    let text: &[(&[&str], &'static str, bool)] = match entity {
        Entity::Vendor => &[(&["name"], "name", false), (&["external_id"], "external_id", true)],
        Entity::Filament => &[
            (&["vendor.name", "vendor_name"], "vendor.name", false),
            (&["name"], "name", true),
            (&["material"], "material", true),
            (&["article_number"], "article_number", true),
            (&["external_id"], "external_id", true),
        ],
        Entity::Spool => &[
            (&["filament.name", "filament_name"], "filament.name", true),
            (&["filament.material", "filament_material"], "filament.material", true),
            (&["filament.vendor.name", "vendor_name"], "filament.vendor.name", false),
            (&["location"], "location", true),
            (&["lot_nr"], "lot_nr", true),
        ],
    };
    for (names, path, nullable) in text {
        if let Some(value) = param(params, names) {
            query.filters.push(Filter::Text {
                path,
                filter: TextFilter::parse(value),
                nullable: *nullable,
            });
        }
    }
    let ids: &[(&[&str], &'static str)] = match entity {
        Entity::Vendor => &[],
        Entity::Filament => &[(&["vendor.id", "vendor_id"], "vendor.id")],
        Entity::Spool => &[
            (&["filament.id", "filament_id"], "filament.id"),
            (&["filament.vendor.id", "vendor_id"], "filament.vendor.id"),
        ],
    };
    for (names, path) in ids {
        if let Some(value) = param(params, names) {
            let Some(filter) = IdFilter::parse(value) else {
                return Err(query_error(
                    names[0],
                    "string_pattern_mismatch",
                    &format!("String should match pattern '{ID_PATTERN}'"),
                    value,
                ));
            };
            query.filters.push(Filter::Ids { path, filter });
        }
    }
    if entity == Entity::Filament
        && let Some(colour) = param(params, &["color_hex"])
    {
        let threshold = match param(params, &["color_similarity_threshold"]) {
            Some(text) => text.parse::<f64>().map_err(|_| {
                query_error(
                    "color_similarity_threshold",
                    "float_parsing",
                    "Input should be a valid number, unable to parse string as a number",
                    text,
                )
            })?,
            None => 20.0,
        };
        query.colour = Some((colour.to_owned(), threshold));
    }
    if let Some(value) = param(params, &["allow_archived"]) {
        query.allow_archived = parse_bool(value).ok_or_else(|| {
            query_error(
                "allow_archived",
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
                value,
            )
        })?;
    }
    if let Some(value) = param(params, &["sort"]) {
        let sort = Sort::parse(value, &sort_fields(entity))
            .map_err(|text| message(StatusCode::BAD_REQUEST, &text))?;
        query.sort = Some(sort);
    }
    for (name, slot) in [("limit", &mut query.limit), ("offset", &mut query.offset)] {
        if let Some(value) = param(params, &[name]) {
            let number = value.parse::<i64>().map_err(|_| {
                query_error(
                    name,
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    value,
                )
            })?;
            *slot = Some(usize::try_from(number.max(0)).unwrap_or(0));
        }
    }
    Ok(query)
}

/// Every request under `/spoolman`.
pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body: Bytes,
) -> Response {
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .skip(2) // "", "spoolman"
        .map(percent_decode)
        .collect();
    // /spoolman/api/v1/… with kitt's credentials, or /spoolman/<token>/api/v1/….
    let (principal, rest) = match segments.as_slice() {
        [api, v1, rest @ ..] if api == "api" && v1 == "v1" => {
            match super::auth::caller(&state, &headers).await {
                Ok(Some(principal)) => (principal, rest),
                Ok(None) => {
                    return message(
                        StatusCode::UNAUTHORIZED,
                        "log in to kitt, or use the base URL of a Spoolman client \
                         (kitt-hub spoolman client add NAME prints one)",
                    );
                }
                Err(error) => return error.into_response(),
            }
        }
        [token, api, v1, rest @ ..] if api == "api" && v1 == "v1" => {
            match state.services.inventory.client_principal(token).await {
                Ok(Some(principal)) => (principal, rest),
                Ok(None) => {
                    return message(
                        StatusCode::UNAUTHORIZED,
                        "this Spoolman base URL's token is unknown or was revoked; an admin \
                         makes a new one with kitt-hub spoolman client add NAME",
                    );
                }
                Err(error) => return refused(error),
            }
        }
        _ => return detail(StatusCode::NOT_FOUND, "Not Found"),
    };
    let Some(route) = route(rest) else { return detail(StatusCode::NOT_FOUND, "Not Found") };
    if let Ok(upgrade) = upgrade {
        let Some(topic) = topic(&route) else { return detail(StatusCode::NOT_FOUND, "Not Found") };
        let inventory = state.services.inventory.clone();
        let (changes, spools) = inventory.subscribe();
        return upgrade.on_upgrade(move |socket| async move {
            serve_socket(socket, inventory, changes, spools, topic).await;
        });
    }
    let params = params(&uri);
    match serve(&state, &principal, &method, &route, &params, &body).await {
        Ok(response) | Err(response) => response,
    }
}

/// What a websocket on a route hears: everything, an entity's changes, or one item's.
#[derive(Debug, Clone, PartialEq)]
enum Topic {
    All,
    Entity(Entity),
    Item(Entity, i64),
    /// Settings' sockets: nothing is sent on them yet, but they stay open and answer.
    Quiet,
}

fn topic(route: &Route) -> Option<Topic> {
    Some(match route {
        Route::Root => Topic::All,
        Route::Collection(entity) => Topic::Entity(*entity),
        Route::Item(entity, id) => Topic::Item(*entity, id.parse().ok()?),
        Route::Settings | Route::Setting(_) => Topic::Quiet,
        _ => return None,
    })
}

async fn serve_socket(
    mut socket: WebSocket,
    inventory: crate::service::inventory::Inventory,
    mut changes: tokio::sync::broadcast::Receiver<crate::service::inventory::Change>,
    mut spools: tokio::sync::broadcast::Receiver<Vec<i64>>,
    topic: Topic,
) {
    let wanted = |entity: Entity, id: i64| match &topic {
        Topic::All => true,
        Topic::Entity(e) => *e == entity,
        Topic::Item(e, i) => *e == entity && *i == id,
        Topic::Quiet => false,
    };
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => {
                    if wanted(change.entity, change.id)
                        && socket.send(Message::Text(change.message().to_string().into())).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            used = spools.recv() => match used {
                Ok(ids) => {
                    for id in ids.into_iter().filter(|id| wanted(Entity::Spool, *id)) {
                        let Ok(Some(change)) = inventory.spool_change(id).await else { continue };
                        if socket.send(Message::Text(change.message().to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) if !text.is_empty() => {
                    let healthy = json!({ "status": "healthy" }).to_string();
                    if socket.send(Message::Text(healthy.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn serve(
    state: &AppState,
    principal: &Principal,
    method: &Method,
    route: &Route,
    params: &[(String, String)],
    body: &[u8],
) -> Result<Response, Response> {
    let inventory = &state.services.inventory;
    let not_allowed = || detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    let get = method == Method::GET || method == Method::HEAD;
    Ok(match route {
        Route::Root => return Err(detail(StatusCode::NOT_FOUND, "Not Found")),
        Route::Info if get => ok(&json!({
            "version": SPOOLMAN_VERSION,
            "debug_mode": false,
            "automatic_backups": false,
            "data_dir": "",
            "logs_dir": "",
            "backups_dir": "",
            "db_type": match state.db.backend() {
                crate::db::Backend::Sqlite => "sqlite",
                crate::db::Backend::Postgres => "postgres",
            },
            "git_commit": null,
            "build_date": null,
        })),
        Route::Health if get => ok(&json!({ "status": "healthy" })),
        Route::Backup if method == Method::POST => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Backup failed: kitt keeps the inventory in the hub's database; back that up instead.",
        ),
        Route::Collection(entity) if get => {
            let query = list_query(*entity, params)?;
            let (items, total) =
                inventory.list(principal, *entity, &query).await.map_err(refused)?;
            list(items, total)
        }
        Route::Collection(entity) if method == Method::POST => {
            let created = match entity {
                Entity::Vendor => {
                    let input = body::vendor(body, false).map_err(unprocessable)?;
                    inventory.create_vendor(principal, &input).await
                }
                Entity::Filament => {
                    let input = body::filament(body, false).map_err(unprocessable)?;
                    inventory.create_filament(principal, &input).await
                }
                Entity::Spool => {
                    let input = body::spool(body, false).map_err(unprocessable)?;
                    inventory.create_spool(principal, &input).await
                }
            };
            ok(&created.map_err(refused)?)
        }
        Route::Item(entity, id) => {
            let name = format!("{}_id", entity.as_str());
            let id = path_int(&name, id)?;
            if get {
                ok(&inventory.get(principal, *entity, id).await.map_err(refused)?)
            } else if method == Method::PATCH {
                let updated = match entity {
                    Entity::Vendor => {
                        let input = body::vendor(body, true).map_err(unprocessable)?;
                        inventory.update_vendor(principal, id, &input).await
                    }
                    Entity::Filament => {
                        let input = body::filament(body, true).map_err(unprocessable)?;
                        inventory.update_filament(principal, id, &input).await
                    }
                    Entity::Spool => {
                        let input = body::spool(body, true).map_err(unprocessable)?;
                        inventory.update_spool(principal, id, &input).await
                    }
                };
                ok(&updated.map_err(refused)?)
            } else if method == Method::DELETE {
                match entity {
                    Entity::Vendor => inventory.delete_vendor(principal, id).await,
                    Entity::Filament => inventory.delete_filament(principal, id).await,
                    Entity::Spool => inventory.delete_spool(principal, id).await,
                }
                .map_err(refused)?;
                ok(&json!({ "message": "Success!" }))
            } else {
                not_allowed()
            }
        }
        Route::Use(id) if method == Method::PUT => {
            let id = path_int("spool_id", id)?;
            let mut body = body::Body::parse(body, true).map_err(unprocessable)?;
            let weight = body.float("use_weight", None);
            let length = body.float("use_length", None);
            if !body.errors.is_empty() {
                return Err(unprocessable(body.errors));
            }
            let amount = match (weight, length) {
                (
                    crate::service::inventory::Patch::Set(_),
                    crate::service::inventory::Patch::Set(_),
                ) => {
                    return Err(message(
                        StatusCode::BAD_REQUEST,
                        "Only specify either use_weight or use_length.",
                    ));
                }
                (crate::service::inventory::Patch::Set(grams), _) => Amount::Grams(grams),
                (_, crate::service::inventory::Patch::Set(mm)) => Amount::Millimetres(mm),
                _ => {
                    return Err(message(
                        StatusCode::BAD_REQUEST,
                        "Either use_weight or use_length must be specified.",
                    ));
                }
            };
            ok(&inventory.use_spool(principal, id, amount).await.map_err(refused)?)
        }
        Route::Measure(id) if method == Method::PUT => {
            let id = path_int("spool_id", id)?;
            let mut body = body::Body::parse(body, false).map_err(unprocessable)?;
            let weight = body.float("weight", None);
            let weight = body.required("weight", weight);
            if !body.errors.is_empty() {
                return Err(unprocessable(body.errors));
            }
            let crate::service::inventory::Patch::Set(gross) = weight else {
                return Err(message(StatusCode::BAD_REQUEST, "weight is required"));
            };
            ok(&inventory.measure(principal, id, gross).await.map_err(refused)?)
        }
        Route::Fields(entity) if get => {
            let entity = field_entity(entity)?;
            ok(&Value::Array(inventory.fields(principal, entity).await.map_err(refused)?))
        }
        Route::Field(entity, key) => {
            let entity = field_entity(entity)?;
            if key.is_empty()
                || key.len() > 64
                || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(unprocessable(vec![json!({
                    "type": "string_pattern_mismatch",
                    "loc": ["path", "key"],
                    "msg": "String should match pattern '^[a-z0-9_]+$'",
                    "input": key,
                })]));
            }
            if method == Method::POST {
                let definition = field_definition(body)?;
                ok(&Value::Array(
                    inventory
                        .put_field(principal, entity, key, &definition)
                        .await
                        .map_err(refused)?,
                ))
            } else if method == Method::DELETE {
                ok(&Value::Array(
                    inventory.delete_field(principal, entity, key).await.map_err(refused)?,
                ))
            } else {
                not_allowed()
            }
        }
        Route::Settings if get => ok(&inventory.settings(principal).await.map_err(refused)?),
        Route::Setting(key) if get => {
            ok(&inventory.setting(principal, key).await.map_err(refused)?)
        }
        Route::Setting(key) if method == Method::POST => {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                unprocessable(vec![json!({
                    "type": "json_invalid",
                    "loc": ["body", e.column()],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": { "error": e.to_string() },
                })])
            })?;
            let Value::String(text) = value else {
                return Err(unprocessable(vec![json!({
                    "type": "string_type",
                    "loc": ["body"],
                    "msg": "Input should be a valid string",
                    "input": value,
                })]));
            };
            ok(&inventory.set_setting(principal, key, &text).await.map_err(refused)?)
        }
        Route::Distinct(what) if get => {
            ok(&json!(inventory.distinct(principal, what).await.map_err(refused)?))
        }
        Route::Location(name) if method == Method::PATCH => {
            let mut body = body::Body::parse(body, false).map_err(unprocessable)?;
            let new = body.text("name", 1024);
            let new = body.required("name", new);
            if let crate::service::inventory::Patch::Set(text) = &new
                && text.is_empty()
            {
                return Err(unprocessable(vec![json!({
                    "type": "string_too_short",
                    "loc": ["body", "name"],
                    "msg": "String should have at least 1 character",
                    "input": "",
                    "ctx": { "min_length": 1 },
                })]));
            }
            if !body.errors.is_empty() {
                return Err(unprocessable(body.errors));
            }
            let crate::service::inventory::Patch::Set(new) = new else {
                return Err(message(StatusCode::BAD_REQUEST, "name is required"));
            };
            inventory.rename_location(principal, name, &new).await.map_err(refused)?;
            ok(&json!(new))
        }
        Route::Export(what) if get => {
            let entity = match what.as_str() {
                "spools" => Entity::Spool,
                "filaments" => Entity::Filament,
                "vendors" => Entity::Vendor,
                _ => return Err(detail(StatusCode::NOT_FOUND, "Not Found")),
            };
            let rows = inventory.export(principal, entity).await.map_err(refused)?;
            match param(params, &["fmt"]) {
                Some("json") => ok(&Value::Array(rows)),
                Some("csv") => {
                    let mut response = (StatusCode::OK, to_csv(&rows)).into_response();
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/csv; charset=utf-8"),
                    );
                    response
                }
                other => {
                    return Err(unprocessable(vec![json!({
                        "type": if other.is_some() { "enum" } else { "missing" },
                        "loc": ["query", "fmt"],
                        "msg": if other.is_some() { "Input should be 'csv' or 'json'" } else { "Field required" },
                        "input": other,
                    })]));
                }
            }
        }
        // SpoolmanDB's catalogue is not bundled: the hub reaches no internet. Empty lists are
        // what a Spoolman that could not fetch it answers.
        Route::External(what) if get && (what == "filament" || what == "material") => {
            ok(&json!([]))
        }
        Route::External(_) => return Err(detail(StatusCode::NOT_FOUND, "Not Found")),
        _ => not_allowed(),
    })
}

fn field_entity(name: &str) -> Result<Entity, Response> {
    Entity::parse(name).ok_or_else(|| {
        unprocessable(vec![json!({
            "type": "enum",
            "loc": ["path", "entity_type"],
            "msg": "Input should be 'vendor', 'filament' or 'spool'",
            "input": name,
            "ctx": { "expected": "'vendor', 'filament' or 'spool'" },
        })])
    })
}

/// An extra field's definition from a request, checked as Spoolman's model checks it.
fn field_definition(bytes: &[u8]) -> Result<Value, Response> {
    use crate::service::inventory::{FIELD_TYPES, Patch};
    let mut body = body::Body::parse(bytes, false).map_err(unprocessable)?;
    let name = body.text("name", 128);
    let name = body.required("name", name);
    let order = body.int("order", None);
    let unit = body.text("unit", 16);
    let field_type = body.text("field_type", 64);
    let field_type = body.required("field_type", field_type);
    let default_value = body.text("default_value", 1 << 16);
    let multi_choice = body.boolean("multi_choice");
    let whole = body.whole();
    if let Patch::Set(kind) = &field_type
        && !FIELD_TYPES.contains(&kind.as_str())
    {
        body.errors.push(json!({
            "type": "enum",
            "loc": ["body", "field_type"],
            "msg": format!("Input should be {}", FIELD_TYPES.map(|t| format!("'{t}'")).join(", ")),
            "input": kind,
        }));
    }
    let choices = match whole.get("choices") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Some(Value::Array(items.clone()))
        }
        Some(other) => {
            body.errors.push(json!({
                "type": "list_type",
                "loc": ["body", "choices"],
                "msg": "Input should be a non-empty list of strings",
                "input": other,
            }));
            None
        }
    };
    if !body.errors.is_empty() {
        return Err(unprocessable(body.errors));
    }
    let mut out = serde_json::Map::new();
    if let Patch::Set(name) = name {
        out.insert("name".into(), json!(name));
    }
    out.insert(
        "order".into(),
        json!(match order {
            Patch::Set(o) => o,
            _ => 0,
        }),
    );
    if let Patch::Set(unit) = unit {
        out.insert("unit".into(), json!(unit));
    }
    if let Patch::Set(kind) = field_type {
        out.insert("field_type".into(), json!(kind));
    }
    if let Patch::Set(default) = default_value {
        out.insert("default_value".into(), json!(default));
    }
    if let Some(choices) = choices {
        out.insert("choices".into(), choices);
    }
    if let Patch::Set(multi) = multi_choice {
        out.insert("multi_choice".into(), json!(multi));
    }
    Ok(Value::Object(out))
}

/// Flat rows as CSV: a header of every key (sorted), then each row; quoted where needed.
fn to_csv(rows: &[Value]) -> String {
    let mut keys: Vec<&String> =
        rows.iter().filter_map(Value::as_object).flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let cell = |value: Option<&Value>| -> String {
        let text = match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => {
                if *b {
                    "True".into()
                } else {
                    "False".into()
                }
            }
            Some(other) => other.to_string(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let mut out =
        keys.iter().map(|k| cell(Some(&Value::String((*k).clone())))).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    for row in rows {
        let line: Vec<String> = keys.iter().map(|k| cell(row.get(k.as_str()))).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `%XX` escapes decoded (a location's name in a path may hold spaces); invalid UTF-8 is
/// replaced, never a panic.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(path: &str) -> Vec<String> {
        path.split('/').map(str::to_owned).collect()
    }

    #[test]
    fn paths_route_as_spoolmans_do_trailing_slash_or_not() {
        assert_eq!(route(&segments("spool")), Some(Route::Collection(Entity::Spool)));
        assert_eq!(route(&segments("spool/")), Some(Route::Collection(Entity::Spool)));
        assert_eq!(route(&segments("spool/7")), Some(Route::Item(Entity::Spool, "7".into())));
        assert_eq!(route(&segments("spool/7/use")), Some(Route::Use("7".into())));
        assert_eq!(route(&segments("setting/")), Some(Route::Settings));
        assert_eq!(route(&segments("lot-number")), Some(Route::Distinct("lot_nr")));
        assert_eq!(route(&[]), Some(Route::Root));
        assert_eq!(route(&segments("")), Some(Route::Root));
        assert_eq!(route(&segments("spools")), None);
        assert_eq!(route(&segments("spool/7/use/now")), None);
    }

    #[test]
    fn percent_escapes_decode_and_broken_ones_stay_as_they_are() {
        assert_eq!(percent_decode("Shelf%20A"), "Shelf A");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let rows = vec![
            json!({"id": 1, "name": "a,b", "archived": false}),
            json!({"id": 2, "extra.k": "\"x\""}),
        ];
        assert_eq!(
            to_csv(&rows),
            "archived,extra.k,id,name\r\nFalse,,1,\"a,b\"\r\n,\"\"\"x\"\"\",2,\r\n"
        );
    }
}

/// Request bodies of the Spoolman door that the dashboard sends, described for kitt's
/// OpenAPI document (the door itself answers as Spoolman does; `docs/research/spoolman.md`).
pub mod schema {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// `PUT /spoolman/api/v1/spool/{id}/measure`: a weigh-in, the spool's gross weight.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SpoolmanMeasure {
        /// Grams on the scale, spool included.
        pub weight: f64,
    }

    /// `POST /spoolman/api/v1/filament`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SpoolmanFilamentNew {
        pub name: Option<String>,
        pub material: Option<String>,
        /// g/cm³.
        pub density: f64,
        /// mm.
        pub diameter: f64,
        /// Net filament of a full spool, g.
        pub weight: Option<f64>,
        /// The empty spool, g.
        pub spool_weight: Option<f64>,
        pub price: Option<f64>,
        /// `RRGGBB`.
        pub color_hex: Option<String>,
    }

    /// `POST /spoolman/api/v1/spool`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SpoolmanSpoolNew {
        pub filament_id: i64,
        pub location: Option<String>,
        pub price: Option<f64>,
    }

    /// `PATCH /spoolman/api/v1/spool/{id}`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SpoolmanSpoolPatch {
        pub archived: Option<bool>,
        pub location: Option<String>,
    }

    /// What the dashboard reads of a vendor, filament or spool the door created.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SpoolmanEntity {
        pub id: i64,
    }
}
