//! `GET /api/v1/openapi.json`: the API described as OpenAPI 3.1, built from [`ROUTES`], the
//! same list a test checks against the router.

use axum::Json;
use serde_json::{Map, Value, json};

/// Method, path (OpenAPI template syntax), least role, summary.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("post", "/login", "none", "Log in with a name and password; sets the session cookie."),
    ("post", "/logout", "viewer", "End the session."),
    ("get", "/me", "viewer", "The caller's name and role."),
    ("get", "/printers", "viewer", "Every printer with its normalised state and reachability."),
    ("get", "/printers/{id}", "viewer", "One printer."),
    (
        "get",
        "/printers/{id}/telemetry",
        "viewer",
        "Telemetry history (from, to, resolution raw|1m|15m|auto, limit).",
    ),
    (
        "post",
        "/printers/{id}/commands",
        "operator",
        "Send a command (pause, resume, stop, set_light, set_speed, full_push, start_print, gcode) with an expiry.",
    ),
    (
        "get",
        "/printers/{id}/cameras",
        "viewer",
        "Each camera's health: state, fps, last frame, last error, live viewers, snapshot round trip.",
    ),
    (
        "post",
        "/printers/{id}/cameras/{camera}/snapshot",
        "operator",
        "Take a snapshot now; answers with it and the measured round trip, or the camera's reason (503).",
    ),
    (
        "get",
        "/printers/{id}/cameras/{camera}/live",
        "viewer",
        "Live view as MJPEG (multipart/x-mixed-replace); the agent streams while anyone watches.",
    ),
    (
        "get",
        "/printers/{id}/snapshots",
        "viewer",
        "Snapshots, newest first, each linked to its job and event (job_started_at, before, limit).",
    ),
    ("get", "/printers/{id}/snapshots/latest", "viewer", "The newest snapshot image (JPEG)."),
    ("get", "/snapshots/{id}", "viewer", "A snapshot image (JPEG)."),
    (
        "get",
        "/events",
        "viewer",
        "The event log (printer, kind, from, to, before, limit), newest first.",
    ),
    ("get", "/commands", "viewer", "Commands with delivery and outcome (printer, limit)."),
    ("get", "/commands/{id}", "viewer", "One command."),
    (
        "get",
        "/agents",
        "viewer",
        "Agents: online, last seen, version, outbox depth, drops, certificate expiry.",
    ),
    (
        "post",
        "/agents/{id}/revoke",
        "admin",
        "Revoke an agent: disconnected within seconds, cannot reconnect.",
    ),
    ("post", "/enrollment-tokens", "admin", "Create a single-use enrollment token (name, ttl_s)."),
    ("get", "/users", "admin", "Users and roles."),
    ("post", "/users", "admin", "Add a user (name, password, role)."),
    ("delete", "/users/{name}", "admin", "Delete a user, their sessions and tokens."),
    ("get", "/tokens", "admin", "API tokens (without secrets)."),
    ("post", "/tokens", "admin", "Create an API token for a user; the token is shown once."),
    ("delete", "/tokens/{id}", "admin", "Revoke an API token."),
    ("get", "/audit", "admin", "The audit log, newest first."),
    (
        "get",
        "/ws",
        "viewer",
        "WebSocket of live updates (printer_state, event, agent, command_result, snapshot, camera); ?printer= narrows.",
    ),
    ("get", "/openapi.json", "viewer", "This document."),
];

pub fn spec() -> Value {
    let mut paths = Map::new();
    for (method, path, role, summary) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let security =
            if *role == "none" { json!([]) } else { json!([{ "bearer": [] }, { "session": [] }]) };
        let operation = json!({
            "summary": summary,
            "x-kitt-role": role,
            "parameters": parameters,
            "security": security,
            "responses": {
                "200": { "description": "success" },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" }
            }
        });
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "kitt hub API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": "/api/v1" }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "kitt_<id>_<secret>" },
                "session": { "type": "apiKey", "in": "cookie", "name": "kitt_session" }
            },
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "object", "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" } } } }
                    } } }
                }
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
