//! The Spoolman-compatible API, by behaviour: a real hub on a real socket, called as
//! Spoolman's clients call it (plain HTTP with the token in the base URL, websockets on the
//! same paths), on SQLite and PostgreSQL. What Spoolman does is in docs/research/spoolman.md.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use hub::app::RunningHub;
use hub::config::{HubConfig, Overrides};
use hub::service::{Principal, Role};
use serde_json::{Value, json};
use tests::http::Response;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

tests::on_both_backends!(
    a_client_creates_filters_sorts_pages_and_gets_spoolmans_errors,
    spools_are_used_weighed_archived_and_extra_fields_merge,
    websockets_push_every_change_and_answer_pings_and_tokens_revoke,
);

struct Hub {
    hub: RunningHub,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    /// `/spoolman/<token>/api/v1`.
    base: String,
}

impl Hub {
    async fn start(database_url: Option<String>) -> Hub {
        tests::init();
        let dir = tempfile::tempdir().unwrap();
        let overrides = Overrides {
            data_dir: Some(dir.path().to_owned()),
            database_url,
            http_listen: Some("127.0.0.1:0".into()),
            sync_listen: Some("127.0.0.1:0".into()),
        };
        let config = HubConfig::load(None, Vec::new(), &overrides).unwrap();
        let shutdown = CancellationToken::new();
        let hub = hub::app::start(config, shutdown.clone()).await.unwrap();
        let admin = Principal::internal("test", Role::Admin);
        let (_, token) =
            hub.state.services.inventory.add_client(&admin, "moonraker", None).await.unwrap();
        Hub { hub, _dir: dir, shutdown, base: format!("/spoolman/{token}/api/v1") }
    }

    fn addr(&self) -> SocketAddr {
        self.hub.http_addr
    }

    /// One request on a socket of its own, as a client sends it.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let (addr, method, path) = (self.addr(), method.to_owned(), format!("{}{path}", self.base));
        tokio::task::spawn_blocking(move || {
            let body = body.map(|b| b.to_string());
            tests::http::request(addr, &method, &path, &[], body.as_deref()).unwrap()
        })
        .await
        .unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.call("GET", path, None).await
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let response = self.call(method, path, body).await;
        assert_eq!(response.status, 200, "{method} {path}: {}", response.body);
        response.json()
    }

    async fn ids(&self, query: &str) -> (Vec<i64>, String) {
        let response = self.get(&format!("/spool{query}")).await;
        assert_eq!(response.status, 200, "{query}: {}", response.body);
        let ids =
            response.json().as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect();
        (ids, response.header("x-total-count").unwrap_or_default().to_owned())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.hub.wait().await;
    }
}

fn assert_error(response: &Response, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(response.json(), json!({ "message": message }));
}

async fn a_client_creates_filters_sorts_pages_and_gets_spoolmans_errors(db: Option<String>) {
    let hub = Hub::start(db).await;
    let info = hub.ok("GET", "/info", None).await;
    assert_eq!(info["version"], "0.22.1", "clients gate features on a semver >= 0.18.1");
    assert_eq!(hub.ok("GET", "/health", None).await, json!({ "status": "healthy" }));
    // A fresh hub's inventory is empty, as a fresh Spoolman's is.
    assert_eq!(hub.ids("").await, (vec![], "0".into()));
    assert_eq!(hub.ok("GET", "/vendor", None).await, json!([]));

    let vendor = hub
        .ok("POST", "/vendor", Some(json!({"name": "Bambu Lab", "empty_spool_weight": 250})))
        .await;
    assert!(vendor["registered"].as_str().unwrap().ends_with('Z'), "{vendor}");
    assert!(vendor.get("comment").is_none(), "a field without a value is left out: {vendor}");
    assert_eq!(vendor["extra"], json!({}));
    let bambu = vendor["id"].as_i64().unwrap();

    let missing = hub.call("POST", "/filament", Some(json!({"name": "no density"}))).await;
    assert_eq!(missing.status, 422);
    let locs: Vec<Value> =
        missing.json()["detail"].as_array().unwrap().iter().map(|d| d["loc"].clone()).collect();
    assert_eq!(locs, [json!(["body", "density"]), json!(["body", "diameter"])]);
    let no_vendor = hub
        .call(
            "POST",
            "/filament",
            Some(json!({"vendor_id": 999, "density": 1.24, "diameter": 1.75})),
        )
        .await;
    assert_error(&no_vendor, 404, "No vendor with ID 999 found.");
    let bad_colour = hub
        .call(
            "POST",
            "/filament",
            Some(json!({"density": 1.24, "diameter": 1.75, "color_hex": "red"})),
        )
        .await;
    assert_eq!(bad_colour.status, 422);

    let pla = hub
        .ok(
            "POST",
            "/filament",
            Some(json!({
                "name": "PLA Basic", "vendor_id": bambu, "material": "PLA", "density": 1.24,
                "diameter": 1.75, "weight": 1000, "price": 20, "color_hex": "#ff0000",
            })),
        )
        .await;
    assert_eq!(pla["color_hex"], "FF0000");
    assert_eq!(pla["spool_weight"], 250.0, "from the vendor's empty spool");
    assert_eq!(pla["vendor"]["name"], "Bambu Lab", "a filament embeds its vendor");
    let petg = hub
        .ok(
            "POST",
            "/filament",
            Some(json!({
                "name": "PETG", "material": "PETG", "density": 1.27, "diameter": 1.75,
                "weight": 1000, "spool_weight": 200,
            })),
        )
        .await;
    assert!(petg.get("vendor").is_none());
    let (pla, petg) = (pla["id"].as_i64().unwrap(), petg["id"].as_i64().unwrap());

    let both = hub
        .call(
            "POST",
            "/spool",
            Some(json!({"filament_id": pla, "remaining_weight": 1, "used_weight": 1})),
        )
        .await;
    assert_error(&both, 400, "Only specify either remaining_weight or used_weight.");
    let orphan = hub.call("POST", "/spool", Some(json!({"filament_id": 77}))).await;
    assert_error(&orphan, 404, "No filament with ID 77 found.");

    let one =
        hub.ok("POST", "/spool", Some(json!({"filament_id": pla, "location": "Shelf A"}))).await;
    assert_eq!(one["initial_weight"], 1000.0, "from the filament");
    assert_eq!(one["spool_weight"], 250.0);
    assert_eq!(
        (one["used_weight"].as_f64(), one["remaining_weight"].as_f64()),
        (Some(0.0), Some(1000.0))
    );
    assert_eq!(one["archived"], false);
    assert_eq!(one["filament"]["vendor"]["id"], bambu, "a spool embeds its filament");
    let two = hub
        .ok(
            "POST",
            "/spool",
            Some(json!({"filament_id": petg, "remaining_weight": 600, "location": "Dry box"})),
        )
        .await;
    assert_eq!(two["used_weight"], 400.0);
    let three = hub
        .ok(
            "POST",
            "/spool",
            Some(json!({"filament_id": pla, "location": "shelf B", "lot_nr": "L1"})),
        )
        .await;
    let (one, two, three) =
        (one["id"].as_i64().unwrap(), two["id"].as_i64().unwrap(), three["id"].as_i64().unwrap());

    // Filters: case-insensitive substrings, "quoted" exact, commas for OR, -1 for no vendor.
    assert_eq!(hub.ids("?location=shelf").await.0, [one, three]);
    assert_eq!(hub.ids("?location=%22Shelf%20A%22").await.0, [one]);
    assert_eq!(hub.ids("?location=dry,%22shelf%20B%22").await.0, [two, three]);
    assert_eq!(hub.ids("?filament.material=petg").await.0, [two]);
    assert_eq!(hub.ids("?filament.vendor.id=-1").await.0, [two]);
    assert_eq!(
        hub.ids(&format!("?filament_id={pla}")).await.0,
        [one, three],
        "the deprecated alias"
    );
    assert_eq!(hub.ids("?lot_nr=").await.0, [one, two], "an empty term is no value");
    let bad_ids = hub.get("/spool?filament.id=abc").await;
    assert_eq!(bad_ids.status, 422);
    assert_eq!(bad_ids.json()["detail"][0]["type"], "string_pattern_mismatch");

    // Sorting and paging, with the unpaged count in X-Total-Count.
    assert_eq!(hub.ids("?sort=remaining_weight:asc,id:desc").await.0, [two, three, one]);
    assert_eq!(hub.ids("?sort=filament.name:desc,id:asc").await.0, [one, three, two]);
    assert_eq!(hub.ids("?sort=id:asc&limit=1&offset=1").await, (vec![two], "3".into()));
    assert_eq!(hub.ids("?sort=id:asc&offset=2").await.0.len(), 3, "an offset needs a limit");
    let bad_sort = hub.get("/spool?sort=colour:asc").await;
    assert_eq!(bad_sort.status, 400);
    assert!(bad_sort.json()["message"].as_str().unwrap().contains("colour"), "{}", bad_sort.body);

    // The filament list: a colour search, and a vendor's filaments.
    let reds = hub.ok("GET", "/filament?color_hex=F80000", None).await;
    assert_eq!(reds.as_array().unwrap().len(), 1);
    let bambus = hub.ok("GET", "/filament?vendor.name=bambu", None).await;
    assert_eq!(bambus[0]["id"], pla);
    assert_eq!(hub.ok("GET", "/material", None).await, json!(["PLA", "PETG"]));
    assert_eq!(hub.ok("GET", "/location", None).await, json!(["Shelf A", "Dry box", "shelf B"]));

    // Errors in Spoolman's shapes.
    assert_error(&hub.get("/spool/999").await, 404, "No spool with ID 999 found.");
    let not_int = hub.get("/spool/abc").await;
    assert_eq!(
        (not_int.status, not_int.json()["detail"][0]["loc"].clone()),
        (422, json!(["path", "spool_id"]))
    );
    let unknown = hub.get("/spools").await;
    assert_eq!((unknown.status, unknown.json()), (404, json!({ "detail": "Not Found" })));
    let garbage = hub.call("POST", "/vendor", None).await;
    assert_eq!(garbage.status, 422, "{}", garbage.body);
    assert_error(
        &hub.call("DELETE", &format!("/filament/{pla}"), None).await,
        403,
        "Failed to delete filament, see server logs for more information.",
    );
    // Deleting a vendor leaves its filaments without one.
    assert_eq!(
        hub.ok("DELETE", &format!("/vendor/{bambu}"), None).await,
        json!({"message": "Success!"})
    );
    assert!(hub.ok("GET", &format!("/filament/{pla}"), None).await.get("vendor").is_none());

    // kitt's own door: kitt's credentials and roles; none is a 401.
    let path = "/spoolman/api/v1/spool";
    let addr = hub.addr();
    let anonymous = tokio::task::spawn_blocking(move || {
        tests::http::request(addr, "GET", path, &[], None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(anonymous.status, 401);
    hub.stop().await;
}

async fn spools_are_used_weighed_archived_and_extra_fields_merge(db: Option<String>) {
    let hub = Hub::start(db).await;
    let filament = hub
        .ok(
            "POST",
            "/filament",
            Some(json!({"density": 1.24, "diameter": 1.75, "weight": 1000, "spool_weight": 250})),
        )
        .await;
    let spool = hub.ok("POST", "/spool", Some(json!({"filament_id": filament["id"]}))).await;
    let id = spool["id"].as_i64().unwrap();
    assert!(spool.get("first_used").is_none());

    let used = hub.ok("PUT", &format!("/spool/{id}/use"), Some(json!({"use_weight": 10}))).await;
    assert_eq!(used["used_weight"], 10.0);
    assert!(used["first_used"].as_str().unwrap().ends_with('Z'));
    // Moonraker reports millimetres: 1 m of 1.75 mm PLA at 1.24 g/cm³ is 2.98 g.
    let used = hub.ok("PUT", &format!("/spool/{id}/use"), Some(json!({"use_length": 1000}))).await;
    assert!((used["used_weight"].as_f64().unwrap() - 12.9825).abs() < 0.001, "{used}");
    assert!((used["used_length"].as_f64().unwrap() - 4352.84).abs() < 0.01, "{used}");
    assert_error(
        &hub.call(
            "PUT",
            &format!("/spool/{id}/use"),
            Some(json!({"use_weight": 1, "use_length": 1})),
        )
        .await,
        400,
        "Only specify either use_weight or use_length.",
    );
    assert_error(
        &hub.call("PUT", &format!("/spool/{id}/use"), Some(json!({}))).await,
        400,
        "Either use_weight or use_length must be specified.",
    );
    assert_error(
        &hub.call("PUT", "/spool/999/use", Some(json!({"use_weight": 1}))).await,
        404,
        "No spool with ID 999 found.",
    );
    // Giving back more than was used stops at zero.
    let back = hub.ok("PUT", &format!("/spool/{id}/use"), Some(json!({"use_weight": -500}))).await;
    assert_eq!(back["used_weight"], 0.0);
    // Uses at once all count.
    let path = format!("/spool/{id}/use");
    let calls: Vec<_> =
        (0..20).map(|_| hub.call("PUT", &path, Some(json!({"use_weight": 1.5})))).collect();
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.status, 200);
    }
    assert_eq!(hub.ok("GET", &format!("/spool/{id}"), None).await["used_weight"], 30.0);

    // A weigh-in: 1150 g gross on a 250 g spool that held 1000 g → 900 g left.
    let weighed =
        hub.ok("PUT", &format!("/spool/{id}/measure"), Some(json!({"weight": 1150}))).await;
    assert_eq!(
        (weighed["used_weight"].as_f64(), weighed["remaining_weight"].as_f64()),
        (Some(100.0), Some(900.0))
    );
    // Heavier than full: a refill, its initial weight reset.
    let refilled =
        hub.ok("PUT", &format!("/spool/{id}/measure"), Some(json!({"weight": 1400}))).await;
    assert_eq!(
        (refilled["initial_weight"].as_f64(), refilled["used_weight"].as_f64()),
        (Some(1150.0), Some(0.0))
    );
    assert_error(
        &hub.call("PUT", "/spool/999/measure", Some(json!({"weight": 1}))).await,
        400,
        "Spool not found.",
    );

    // A PATCH to remaining_weight sets used_weight; null clears a nullable field.
    let patched = hub
        .ok(
            "PATCH",
            &format!("/spool/{id}"),
            Some(json!({"remaining_weight": 150, "location": "Shelf"})),
        )
        .await;
    assert_eq!(patched["used_weight"], 1000.0);
    let patched = hub.ok("PATCH", &format!("/spool/{id}"), Some(json!({"location": null}))).await;
    assert!(patched.get("location").is_none());
    let null_weight =
        hub.call("PATCH", &format!("/spool/{id}"), Some(json!({"used_weight": null}))).await;
    assert_eq!(null_weight.status, 422);

    // Archived spools are hidden from the list unless asked for (as clients spell it).
    hub.ok("PATCH", &format!("/spool/{id}"), Some(json!({"archived": true}))).await;
    assert_eq!(hub.ids("").await.0, Vec::<i64>::new());
    assert_eq!(hub.ids("?allow_archived=True").await.0, [id]);
    assert_eq!(hub.ok("GET", &format!("/spool/{id}"), None).await["archived"], true);

    // Extra fields: defined first, values are JSON texts, a spool's merge key by key.
    assert_error(
        &hub.call("PATCH", &format!("/spool/{id}"), Some(json!({"extra": {"tray": "\"A1\""}})))
            .await,
        400,
        "Unknown extra field tray.",
    );
    let fields = hub
        .ok("POST", "/field/spool/tray", Some(json!({"name": "Tray", "field_type": "text"})))
        .await;
    assert_eq!(fields[0]["key"], "tray");
    hub.ok(
        "POST",
        "/field/spool/dried",
        Some(json!({"name": "Dried", "field_type": "integer", "unit": "h"})),
    )
    .await;
    assert_error(
        &hub.call("PATCH", &format!("/spool/{id}"), Some(json!({"extra": {"dried": "\"long\""}})))
            .await,
        400,
        "Invalid extra field for key dried: Value is not an integer.",
    );
    hub.ok("PATCH", &format!("/spool/{id}"), Some(json!({"extra": {"tray": "\"A1\""}}))).await;
    let merged =
        hub.ok("PATCH", &format!("/spool/{id}"), Some(json!({"extra": {"dried": "8"}}))).await;
    assert_eq!(merged["extra"], json!({"tray": "\"A1\"", "dried": "8"}));
    let fields = hub.ok("DELETE", "/field/spool/dried", None).await;
    assert_eq!(fields.as_array().unwrap().len(), 1);
    assert_eq!(
        hub.ok("GET", &format!("/spool/{id}"), None).await["extra"],
        json!({"tray": "\"A1\""})
    );

    // Settings: JSON texts with their types; the currency clients read.
    let currency = hub.ok("GET", "/setting/currency", None).await;
    assert_eq!(currency, json!({"value": "\"EUR\"", "is_set": false, "type": "string"}));
    let set = hub.ok("POST", "/setting/currency", Some(json!("\"USD\""))).await;
    assert_eq!((set["value"].clone(), set["is_set"].clone()), (json!("\"USD\""), json!(true)));
    assert_error(
        &hub.call("POST", "/setting/currency", Some(json!("5"))).await,
        400,
        "Setting currency must be a string.",
    );
    assert_error(&hub.get("/setting/colour").await, 404, "Setting colour does not exist.");
    assert_eq!(hub.ok("GET", "/setting/", None).await["currency"]["value"], "\"USD\"");

    // Export: flat rows, archived spools left out.
    assert_eq!(hub.ok("GET", "/export/spools?fmt=json", None).await, json!([]));
    let csv = hub.get("/export/filaments?fmt=csv").await;
    assert!(
        csv.body.starts_with("density,diameter,extra.")
            || csv.body.starts_with("density,diameter,id"),
        "{}",
        csv.body
    );
    assert_eq!(
        hub.ok("DELETE", &format!("/spool/{id}"), None).await,
        json!({"message": "Success!"})
    );
    assert_error(
        &hub.get(&format!("/spool/{id}")).await,
        404,
        &format!("No spool with ID {id} found."),
    );
    hub.stop().await;
}

async fn websockets_push_every_change_and_answer_pings_and_tokens_revoke(db: Option<String>) {
    let hub = Hub::start(db).await;
    let url = |path: &str| format!("ws://{}{}{path}", hub.addr(), hub.base);
    // Moonraker's socket: the spool collection; Fluidd's: the root, with its slash.
    let (mut spools, _) = tokio_tungstenite::connect_async(url("/spool")).await.unwrap();
    let (mut root, _) = tokio_tungstenite::connect_async(url("/")).await.unwrap();
    spools.send(Message::Text("ping".into())).await.unwrap();
    let answer = next_json(&mut spools).await;
    assert_eq!(answer, json!({"status": "healthy"}));

    let filament = hub
        .ok("POST", "/filament", Some(json!({"density": 1.24, "diameter": 1.75, "weight": 1000})))
        .await;
    let added = next_json(&mut root).await;
    assert_eq!(
        (added["type"].clone(), added["resource"].clone()),
        (json!("added"), json!("filament"))
    );
    assert_eq!(added["payload"]["id"], filament["id"]);
    assert!(
        added["payload"]["name"].is_null() && added["payload"].get("name").is_some(),
        "payloads keep nulls"
    );
    assert!(added["date"].as_str().unwrap().ends_with('Z'));

    let spool = hub.ok("POST", "/spool", Some(json!({"filament_id": filament["id"]}))).await;
    let id = spool["id"].as_i64().unwrap();
    let (mut one, _) =
        tokio_tungstenite::connect_async(url(&format!("/spool/{id}"))).await.unwrap();
    assert_eq!(next_json(&mut spools).await["type"], "added");
    hub.ok("PUT", &format!("/spool/{id}/use"), Some(json!({"use_length": 100}))).await;
    for socket in [&mut spools, &mut one] {
        let updated = next_json(socket).await;
        assert_eq!(
            (updated["type"].clone(), updated["payload"]["id"].clone()),
            (json!("updated"), json!(id))
        );
    }
    hub.ok("DELETE", &format!("/spool/{id}"), None).await;
    let deleted = next_json(&mut spools).await;
    assert_eq!(
        (deleted["type"].clone(), deleted["payload"]["id"].clone()),
        (json!("deleted"), json!(id))
    );

    // Revoked: the base URL stops working.
    let admin = Principal::internal("test", Role::Admin);
    hub.hub.state.services.inventory.revoke_client(&admin, "moonraker").await.unwrap();
    let refused = hub.get("/spool").await;
    assert_eq!(refused.status, 401);
    assert!(refused.json()["message"].as_str().unwrap().contains("revoked"), "{}", refused.body);
    hub.stop().await;
}

/// The next text message of a websocket, as JSON (pings and pongs skipped).
async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    }
}
