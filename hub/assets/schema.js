// The API fields the dashboard reads, declared once.
//
// Convention (checked by `hub/src/web/fields.rs`, which the OpenAPI document's schemas can be
// matched against):
// - `FIELDS` maps a resource name (a REST answer, an object inside one, a request body the
//   dashboard sends, or a WebSocket message) to the fields the dashboard reads (or, for a
//   request, writes) and their types. Names are those the API's schemas should have. The object literal
//   after `export const FIELDS =` is strict JSON, so a Rust test can read it.
// - A type is `string`, `integer`, `number`, `boolean`, `any`, or the name of another
//   resource; `T[]` is a list of T, `T{}` an object whose values are T (a map), and a
//   trailing `?` means the field may be null or absent.
// - Everything from the API passes through `shape()` (in `api.js` for REST answers, in
//   `store.js` for WebSocket messages), which keeps only the declared fields. A page
//   therefore cannot read a field that is not declared here: it would read `undefined`.
//   Request bodies pass through it too (`api(path, { body, request })`), so nothing
//   undeclared is sent.
// - API field names are snake_case and the dashboard's own names camelCase, so a check can
//   tell them apart: every `.snake_case` property the modules read must be declared here.
// - `LIVE` names the resource of each WebSocket message `type`.

export const FIELDS = {
  "ErrorBody": { "error": "ErrorDetail?" },
  "ErrorDetail": { "code": "string", "message": "string" },
  "Me": { "name": "string", "role": "string" },

  "PrinterList": { "printers": "Printer[]" },
  "Printer": {
    "id": "string", "agent_id": "string", "name": "string?", "model": "string?",
    "state": "PrinterState?", "state_at": "integer?", "received_at": "integer?", "agent_online": "boolean",
    "latest_snapshot": "LatestSnapshot?", "approved_at": "integer?", "plate": "PlateState?"
  },
  "PlateState": { "printer": "string", "clear": "boolean", "confirmed_by": "string?", "confirmed_at": "integer?" },
  "ClaimList": { "claims": "PrinterClaim[]" },
  "PrinterClaim": {
    "printer_id": "string", "agent_id": "string", "owner_id": "string", "last_at": "integer",
    "refused_records": "integer"
  },
  "MovePrinter": { "agent": "string" },
  "LatestSnapshot": { "id": "string", "captured_at": "integer", "trigger": "string", "layer": "integer?", "url": "string" },
  "PrinterState": {
    "state": "string", "stage": "Stage?", "progress_percent": "number?", "remaining_s": "integer?",
    "layer": "integer?", "total_layers": "integer?", "job_name": "string?",
    "nozzle_temp_c": "number?", "nozzle_target_c": "number?", "bed_temp_c": "number?",
    "bed_target_c": "number?", "chamber_temp_c": "number?", "fans": "integer{}",
    "speed_level": "string?", "ams": "AmsUnit[]", "active_tray": "any?", "external_spool": "Tray?",
    "hms": "Hms[]", "print_error": "string?", "lights": "string{}", "door_open": "boolean?",
    "control": "string", "model": "string?", "firmware": "string?", "last_report_at": "integer?",
    "heaters": "Heater[]?", "message": "string?", "controls": "string[]?", "klipper": "KlipperState?",
    "speed_percent": "integer?"
  },
  "Heater": { "kind": "string", "index": "integer", "temp_c": "number?", "target_c": "number?" },
  "KlipperState": { "klippy": "string" },
  "Stage": { "code": "integer", "name": "string" },
  "AmsUnit": { "id": "integer", "humidity": "integer?", "temp_c": "number?", "trays": "Tray[]" },
  "Tray": { "slot": "integer", "material": "string?", "color": "string?", "remain_percent": "integer?" },
  "Hms": { "code": "string", "module": "string", "severity": "string" },

  "Telemetry": { "samples": "Sample[]" },
  "Sample": {
    "at": "integer", "progress_percent": "number?", "nozzle_temp_c": "number?",
    "bed_temp_c": "number?", "chamber_temp_c": "number?"
  },

  "EventPage": { "events": "Event[]", "next_before": "integer?" },
  "Event": { "id": "integer", "printer_id": "string?", "kind": "string", "at": "integer", "event": "PrinterEvent" },
  "PrinterEvent": {
    "type": "string", "from": "any?", "to": "any?", "job_name": "string?", "total_layers": "integer?",
    "reason": "any?", "error": "JobError?", "hms": "Hms?", "print_error": "string?", "ams": "integer?",
    "tray": "Tray?", "millimetres": "number?", "product": "string?", "slot": "integer?"
  },
  "JobError": { "print_error": "string?", "hms": "Hms[]" },

  "CommandAccepted": { "id": "string", "status": "string" },

  "FileList": { "files": "FileView[]" },
  "FileView": {
    "id": "string", "name": "string", "size": "integer", "kind": "string", "slicer": "string?",
    "slicer_version": "string?", "printer_model": "string?", "nozzle_diameter": "number?", "bed_type": "string?",
    "plates": "PlateView[]", "thumbnails": "ThumbnailView[]", "uploaded_at": "integer", "uploaded_by": "string"
  },
  "PlateView": {
    "index": "integer", "estimated_s": "integer?", "weight_g": "number?", "layers": "integer?",
    "filaments": "FilamentView[]", "thumbnail_url": "string?"
  },
  "FilamentView": { "slot": "integer", "type": "string?", "color": "string?", "grams": "number?" },
  "ThumbnailView": { "url": "string" },

  "JobList": { "jobs": "JobView[]" },
  "JobView": {
    "id": "integer", "copy": "integer", "copies": "integer", "file": "string", "file_name": "string?",
    "plate": "integer", "name": "string", "state": "string", "held": "boolean", "priority": "integer",
    "queue_place": "integer?", "deadline": "integer?", "needs_approval": "boolean", "approved_by": "string?",
    "target_printer": "string?", "target_model": "string?", "materials": "SlotMaterial[]", "printer": "string?",
    "mapping": "SlotMapping[]", "waiting": "JobWait?", "reason": "string?", "estimated_s": "integer?",
    "thumbnail_url": "string?", "created_by": "string", "updated_at": "integer"
  },
  "JobDetail": {
    "id": "integer", "name": "string", "state": "string", "held": "boolean", "queue_place": "integer?",
    "waiting": "JobWait?", "printer": "string?", "history": "HistoryRow[]"
  },
  "SlotMaterial": { "slot": "integer", "type": "string?", "color": "string?" },
  "SlotMapping": { "slot": "integer", "tray": "string" },
  "JobWait": { "code": "string", "reason": "string" },
  "HistoryRow": { "at": "integer", "from_state": "string?", "to_state": "string", "actor": "string", "detail": "string?" },

  "CameraList": { "cameras": "Camera[]" },
  "Camera": {
    "camera_id": "string", "source": "string", "state": "string", "fps": "number",
    "last_frame_at": "integer?", "width": "integer", "height": "integer", "last_error": "string?",
    "live": "boolean", "reported_at": "integer", "snapshot_round_trip_ms": "integer?"
  },
  "SnapshotList": { "snapshots": "Snapshot[]" },
  "Snapshot": {
    "id": "string", "camera_id": "string", "trigger": "string", "layer": "integer?",
    "captured_at": "integer", "job_name": "string?", "job_started_at": "integer?",
    "event_id": "integer?", "url": "string"
  },
  "SnapshotTaken": { "round_trip_ms": "integer", "snapshot": "Snapshot?" },

  "AgentList": { "agents": "Agent[]" },
  "ClusterView": { "here": "string", "database": "string", "now": "integer", "replicas": "ReplicaView[]" },
  "ReplicaView": {
    "name": "string", "instance": "string", "http_addr": "string?", "sync_addr": "string?", "started_at": "integer?",
    "heartbeat_at": "integer", "alive": "boolean", "agents": "integer", "here": "boolean"
  },
  "Agent": {
    "id": "string", "name": "string?", "hostname": "string?", "software": "string?",
    "certificate_expires_at": "integer", "revoked_at": "integer?", "online": "boolean",
    "last_seen_at": "integer?", "outbox_records": "integer?", "outbox_bytes": "integer?",
    "drops": "Drop[]?", "disk_free_bytes": "integer?", "clock": "AgentClock?"
  },
  "AgentClock": {
    "offset_ms": "integer", "uncertainty_ms": "integer", "measured_at": "integer", "off": "boolean"
  },
  "Drop": { "class": "string", "reason": "string", "count": "integer" },
  "EnrollmentToken": { "token": "string", "expires_at": "integer" },

  "UserList": { "users": "User[]" },
  "User": { "name": "string", "role": "string", "created_at": "integer" },
  "TokenList": { "tokens": "ApiToken[]" },
  "ApiToken": {
    "id": "string", "user_name": "string", "name": "string?", "created_at": "integer",
    "last_used_at": "integer?", "revoked_at": "integer?"
  },
  "CreatedToken": { "token": "string" },
  "AuditLog": { "audit": "AuditEntry[]" },
  "AuditEntry": { "at": "integer", "actor": "string", "action": "string", "status": "integer", "detail": "string?" },

  "ManagedList": {
    "agent": "string", "version": "integer", "applied_version": "integer?", "applied_at": "integer?",
    "printers": "ManagedPrinterView[]", "local": "LocalPrinter[]"
  },
  "LocalPrinter": { "id": "string", "name": "string?" },
  "ManagedPrinterView": {
    "id": "string", "agent": "string", "kind": "string", "name": "string?", "model": "string?", "host": "string?",
    "port": "integer?", "url": "string?", "web_port": "integer?", "camera": "boolean", "has_secret": "boolean",
    "status": "string", "error": "string?", "updated_at": "integer"
  },
  "DiscoveredList": { "agent": "string", "printers": "DiscoveredRow[]" },
  "DiscoveredRow": {
    "vendor": "string", "key": "string", "name": "string?", "model": "string?", "address": "string", "url": "string?",
    "connection": "string?", "bind": "string?", "seen_at": "integer"
  },

  "LoginRequest": { "name": "string", "password": "string" },
  "CommandRequest": {
    "action": "string", "node": "string?", "mode": "string?", "level": "string?", "confirmed": "boolean?",
    "expires_in_s": "integer?"
  },
  "ManagedPrinterRequest": {
    "kind": "string", "name": "string?", "model": "string?", "host": "string?", "port": "integer?", "access_code": "string?",
    "url": "string?", "api_key": "string?", "web_port": "integer?", "camera": "boolean?"
  },
  "JobRequest": {
    "file": "string", "plate": "integer?", "copies": "integer?", "name": "string?", "printer": "string?",
    "priority": "integer?", "needs_approval": "boolean?"
  },
  "MoveRequest": { "to": "string" },
  "EnrollmentTokenRequest": { "ttl_s": "integer?", "name": "string?", "printers": "string[]?" },
  "UserRequest": { "name": "string", "password": "string", "role": "string" },
  "TokenRequest": { "user": "string?", "name": "string?" },
  "PasswordChange": { "current_password": "string", "new_password": "string" },
  "PasswordChanged": { "sessions_ended": "integer" },
  "PasswordReset": { "password": "string?" },
  "PasswordResetDone": { "password": "string?", "sessions_ended": "integer", "tokens_revoked": "integer" },

  "LivePrinterState": { "cursor": "integer", "type": "string", "printer": "string", "at": "integer", "received_at": "integer", "state": "PrinterState" },
  "LiveEvent": { "cursor": "integer", "type": "string", "id": "integer", "printer": "string", "agent": "string", "at": "integer", "event": "PrinterEvent" },
  "LiveAgent": { "cursor": "integer", "type": "string", "agent": "string", "online": "boolean" },
  "LiveCommandResult": { "cursor": "integer", "type": "string", "command": "string", "printer": "string", "outcome": "string" },
  "LiveSnapshot": { "cursor": "integer",
    "type": "string", "id": "string", "printer": "string", "camera": "string", "trigger": "string",
    "captured_at": "integer", "bytes": "integer"
  },
  "LiveCamera": { "cursor": "integer",
    "type": "string", "printer": "string", "camera": "string", "state": "string", "fps": "number",
    "last_frame_at": "integer?", "last_error": "string?", "live": "boolean", "source": "string",
    "width": "integer", "height": "integer"
  },
  "LiveLagged": { "type": "string", "missed": "integer" },
  "InventoryView": {
    "currency": "string", "low_stock_g": "number", "spools": "SpoolSummary[]", "filaments": "FilamentStock[]"
  },
  "SpoolSummary": {
    "id": "integer", "filament_id": "integer", "name": "string", "material": "string?", "color": "string?",
    "vendor": "string?", "remaining_g": "number?", "initial_g": "number?", "used_g": "number",
    "location": "string?", "archived": "boolean", "tagged": "boolean", "loaded": "Loaded?", "last_used": "integer?"
  },
  "Loaded": { "printer": "string", "unit": "integer?", "slot": "integer" },
  "FilamentStock": {
    "id": "integer", "name": "string", "material": "string?", "color": "string?", "vendor": "string?",
    "spools": "integer", "remaining_g": "number", "used_30d_g": "number", "days_to_empty": "number?", "low": "boolean"
  },
  "SlotList": { "slots": "SlotView[]" },
  "SlotView": { "unit": "integer?", "slot": "integer", "spool_id": "integer", "assigned_by": "string" },
  "SlotAssignment": { "unit": "integer?", "slot": "integer", "spool_id": "integer?" },
  "OutcomeList": { "outcomes": "OutcomeView[]", "total": "integer" },
  "OutcomeView": {
    "id": "integer", "printer_id": "string", "job_id": "integer?", "name": "string?", "result": "string",
    "reason": "string?", "inferred_reason": "string?", "reason_rule": "string?", "started_at": "integer?",
    "ended_at": "integer", "duration_s": "integer?", "progress": "number?", "material": "string?",
    "requested_by": "string?", "filament_g": "number", "filament_cost": "number?", "energy_cost": "number?",
    "cost": "number?", "reviewed": "boolean", "quality": "integer?", "aspects": "integer{}", "notes": "string?",
    "reviewed_by": "string?", "reviewed_at": "integer?", "usage": "UsageView[]", "snapshots": "string[]"
  },
  "UsageView": {
    "unit": "integer?", "slot": "integer", "spool_id": "integer?", "material": "string?", "color": "string?",
    "grams": "number", "cost": "number?"
  },
  "ReviewRequest": { "reason": "string?", "quality": "integer?", "aspects": "integer{}?", "notes": "string?" },
  "Analytics": { "from": "integer", "to": "integer", "buckets": "Bucket[]" },
  "Bucket": {
    "key": "string", "prints": "integer", "succeeded": "integer", "failed": "integer", "cancelled": "integer",
    "success_rate": "number", "hours": "number", "filament_g": "number", "cost": "number", "reasons": "integer{}"
  },
  "Estimate": {
    "available": "boolean", "model": "string", "reviewed_outcomes": "integer", "needed": "integer",
    "accuracy": "number?", "success_probability": "number?", "message": "string"
  },
  "SpoolmanClientList": { "clients": "SpoolmanClientView[]" },
  "SpoolmanClientView": {
    "id": "string", "name": "string", "printer": "string?", "created_at": "integer", "last_used_at": "integer?",
    "revoked": "boolean"
  },
  "NewSpoolmanClient": { "name": "string", "printer": "string?" },
  "SpoolmanClientCreated": { "id": "string", "name": "string", "path": "string" },
  "SpoolmanMeasure": { "weight": "number" },
  "SpoolmanFilamentNew": {
    "name": "string?", "material": "string?", "density": "number", "diameter": "number", "weight": "number?",
    "spool_weight": "number?", "price": "number?", "color_hex": "string?"
  },
  "SpoolmanSpoolNew": { "filament_id": "integer", "location": "string?", "price": "number?" },
  "SpoolmanSpoolPatch": { "archived": "boolean?", "location": "string?" },
  "SpoolmanEntity": { "id": "integer" },

  "LiveJob": { "cursor": "integer", "type": "string", "id": "integer", "state": "string", "printer": "string?" },
  "LivePlate": { "cursor": "integer", "type": "string", "printer": "string", "clear": "boolean" },
  "LiveSchedulerRun": {
    "cursor": "integer", "type": "string", "job": "string", "occurrence": "integer", "manual": "boolean",
    "state": "string", "replica": "string", "result": "string?"
  },

  "ConversationRow": { "id": "string", "owner": "string", "title": "string", "created_at": "integer", "updated_at": "integer" },
  "ConversationView": { "conversation": "ConversationRow", "messages": "MessageView[]", "pending": "PendingView[]" },
  "MessageView": {
    "id": "integer", "speaker": "string", "content": "string", "tool_calls": "any[]?", "tool_call_id": "string?",
    "tool_name": "string?", "tier": "string?", "why": "string?", "created_at": "integer"
  },
  "PendingView": {
    "id": "string", "conversation_id": "string?", "tool": "string", "arguments": "any?", "summary": "string",
    "digest": "string", "requested_by": "string", "needed_role": "string?", "created_at": "integer", "expires_at": "integer",
    "state": "string", "decided_by": "string?", "decided_at": "integer?", "result": "any?", "error": "string?"
  },
  "ModelsView": {
    "tiers": "TierView[]", "paid_enabled": "boolean", "monthly_budget": "number?", "spent_this_month": "number?"
  },
  "TierView": {
    "name": "string", "kind": "string", "model": "string?", "ready": "boolean", "cooling_down_s": "integer?", "error": "string?"
  },
  "AssistantEvent": {
    "type": "string", "tier": "string?", "why": "string?", "error": "string?", "text": "string?", "id": "string?",
    "name": "string?", "arguments": "any?", "ok": "boolean?", "result": "any?", "pending": "PendingView?",
    "message_id": "integer?", "finish": "string?", "usage": "Usage?", "cost": "number?", "message": "string?"
  },
  "Usage": { "prompt_tokens": "integer", "completion_tokens": "integer" },
  "NewConversation": { "title": "string?" },
  "NewMessage": { "content": "string", "depth": "string?" },
  "DecisionBody": { "digest": "string" },

  "MemoryView": { "engine": "string", "items": "integer{}", "pieces": "integer", "last_sync": "SyncReport?" },
  "SyncReport": {
    "added": "integer", "updated": "integer", "removed": "integer", "unchanged": "integer", "pieces": "integer",
    "took_ms": "integer", "at": "integer", "error": "string?"
  },
  "SearchBody": { "query": "string", "limit": "integer?" },
  "SearchView": { "hits": "Hit[]" },
  "Hit": {
    "kind": "string", "key": "string", "title": "string", "text": "string", "link": "string", "printer": "string?",
    "material": "string?", "at": "integer", "score": "number"
  },
  "DocumentsView": { "documents": "DocumentView[]" },
  "DocumentView": {
    "id": "string", "title": "string", "format": "string", "printer_id": "string?", "material": "string?",
    "chars": "integer", "bytes": "integer", "created_by": "string", "created_at": "integer", "updated_at": "integer",
    "content": "string?"
  },
  "DocumentAdded": { "document": "DocumentView", "sync": "SyncReport" },
  "ReindexBody": { "full": "boolean?" },

  "ScheduledJobs": { "now": "integer", "running_here": "boolean", "jobs": "ScheduledJob[]" },
  "ScheduledJob": {
    "name": "string", "action": "string", "description": "string", "schedule": "ScheduleSpec", "builtin": "boolean",
    "paused": "boolean", "next_run": "integer?", "last_run": "ScheduledRun?", "problem": "string?", "created_by": "string"
  },
  "ScheduleSpec": { "cron": "string?", "every_ms": "integer?", "at": "integer?", "time_zone": "string?", "misfire": "string?" },
  "ScheduledRun": {
    "occurrence": "integer", "manual": "boolean", "triggered_by": "string?", "holder": "string", "state": "string",
    "attempts": "integer", "started_at": "integer", "ended_at": "integer?", "duration_ms": "integer?", "result": "string?"
  },
  "ScheduledJobDetail": { "runs": "ScheduledRun[]" },
  "TriggeredRun": { "occurrence": "integer" },
  "NewScheduledJob": { "name": "string", "action": "string", "schedule": "ScheduleSpec", "description": "string?" },
  "HealthReportsView": { "reports": "HealthReportView[]" },
  "HealthReportView": { "occurrence": "integer", "created_at": "integer", "report": "HealthReport" },
  "HealthReport": { "from": "integer", "to": "integer", "summary": "string", "not_successful": "ReportedPrint[]", "low_stock": "string[]", "failed_runs": "ReportedRun[]" },
  "ReportedPrint": { "id": "integer", "printer": "string", "result": "string", "reason": "string?" },
  "ReportedRun": { "job": "string", "occurrence": "integer", "result": "string" }
};

// The resource of each WebSocket message, by its `type`.
export const LIVE = {
  printer_state: 'LivePrinterState',
  event: 'LiveEvent',
  agent: 'LiveAgent',
  command_result: 'LiveCommandResult',
  snapshot: 'LiveSnapshot',
  camera: 'LiveCamera',
  lagged: 'LiveLagged',
  job: 'LiveJob',
  plate: 'LivePlate',
  scheduler_run: 'LiveSchedulerRun',
};

// `value` with only the fields `type` declares, recursively. Containers of the wrong kind
// become null; scalars pass as they are.
export function shape(type, value) {
  if (value == null) return value;
  const name = type.endsWith('?') ? type.slice(0, -1) : type;
  if (name.endsWith('[]')) {
    return Array.isArray(value) ? value.map((item) => shape(name.slice(0, -2), item)) : null;
  }
  if (name.endsWith('{}')) {
    if (typeof value !== 'object' || Array.isArray(value)) return null;
    const inner = name.slice(0, -2);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, shape(inner, item)]));
  }
  const fields = FIELDS[name];
  if (!fields) return value;
  if (typeof value !== 'object' || Array.isArray(value)) return null;
  const out = {};
  for (const [field, fieldType] of Object.entries(fields)) {
    if (field in value) out[field] = shape(fieldType, value[field]);
  }
  return out;
}
