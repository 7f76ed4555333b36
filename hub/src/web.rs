//! The web dashboard, served by the hub itself.
//!
//! The assets in `hub/assets/` are plain HTML, CSS and JavaScript modules written with Preact,
//! htm and Preact Signals (vendored in `hub/assets/vendor/` by `cargo xtask vendor-web`; no
//! build step: the committed files are what the browser runs), embedded in the binary with
//! `include_str!`/`include_bytes!`. Building kitt needs no Node toolchain.
//!
//! Every page path ([`PAGES`]) answers with the same shell; the client routes from the URL.
//! The shell is static and needs no caller: the data comes from `/api/v1`, which enforces
//! authentication, and a 401 there sends the browser to `/login`.
//!
//! Invariants:
//! - HTML responses carry [`CONTENT_SECURITY_POLICY`]; the assets therefore hold no inline
//!   script and no inline `style` attribute (styles are set by class or through the CSSOM,
//!   which is what Preact's `style` prop does), and nothing evaluates strings as code (htm
//!   parses its templates itself). The dashboard counts any violation on
//!   `<html data-csp-violations>` for the browser test.
//! - The API fields the dashboard reads are declared in `assets/schema.js`; [`fields`]
//!   reads that declaration for checks against the API's OpenAPI document.
//! - Assets are not fingerprinted, so they are served with `Cache-Control: no-cache` and an
//!   `ETag` (a SHA-256 of the content): browsers revalidate cheaply and never run a stale
//!   module beside a new one after an upgrade.
//! - An asset name not in [`ASSETS`] is a 404; nothing is read from the file system.

pub mod fields;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The policy on every HTML response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// The paths at which the shell is served (axum path syntax): those of the route table in
/// `assets/app.js` (a test checks that they agree).
pub const PAGES: &[&str] = &[
    "/",
    "/printers/{id}",
    "/agents",
    "/events",
    "/queue",
    "/files",
    "/inventory",
    "/outcomes",
    "/analytics",
    "/assistant",
    "/memory",
    "/scheduler",
    "/admin",
    "/account",
    "/login",
];

const SHELL: &str = include_str!("../assets/index.html");

/// An embedded file: name under `/assets/`, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

const TEXT: &str = "text/plain; charset=utf-8";

/// `Asset { name, content_type: JS, body: include_bytes!("../assets/<name>") }`.
macro_rules! js {
    ($name:literal) => {
        Asset { name: $name, content_type: JS, body: include_bytes!(concat!("../assets/", $name)) }
    };
}

static ASSETS: &[Asset] = &[
    js!("app.js"),
    js!("lib.js"),
    js!("api.js"),
    js!("schema.js"),
    js!("store.js"),
    js!("ui.js"),
    js!("format.js"),
    js!("chart.js"),
    js!("hms.js"),
    js!("widgets.js"),
    js!("camera.js"),
    js!("fleet.js"),
    js!("printer.js"),
    js!("agents.js"),
    js!("events.js"),
    js!("files.js"),
    js!("inventory.js"),
    js!("outcomes.js"),
    js!("analytics.js"),
    js!("assistant.js"),
    js!("memory.js"),
    js!("scheduler.js"),
    js!("queue.js"),
    js!("admin.js"),
    js!("account.js"),
    js!("login.js"),
    // Vendored by `cargo xtask vendor-web`, pinned there; their licences are served beside
    // them.
    js!("vendor/preact.mjs"),
    js!("vendor/hooks.mjs"),
    js!("vendor/htm.module.js"),
    js!("vendor/signals-core.module.js"),
    js!("vendor/signals.module.js"),
    Asset {
        name: "vendor/preact.LICENSE.txt",
        content_type: TEXT,
        body: include_bytes!("../assets/vendor/preact.LICENSE.txt"),
    },
    Asset {
        name: "vendor/htm.LICENSE.txt",
        content_type: TEXT,
        body: include_bytes!("../assets/vendor/htm.LICENSE.txt"),
    },
    Asset {
        name: "vendor/signals-core.LICENSE.txt",
        content_type: TEXT,
        body: include_bytes!("../assets/vendor/signals-core.LICENSE.txt"),
    },
    Asset {
        name: "vendor/signals.LICENSE.txt",
        content_type: TEXT,
        body: include_bytes!("../assets/vendor/signals.LICENSE.txt"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
];

/// The dashboard's routes: the shell at every page path and `/assets/<name>` (a name may
/// hold a folder: `vendor/preact.mjs`). Generic over the state so the API router can merge
/// it.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router.route("/assets/{*file}", get(asset))
}

async fn shell() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        SHELL,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such asset\n",
        )
            .into_response();
    };
    let etag = &etags()[index];
    let common = [(header::CACHE_CONTROL, "no-cache"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, etag.as_str())]).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type), (header::ETAG, etag.as_str())],
        asset.body,
    )
        .into_response()
}

/// One strong `ETag` per asset, in the order of [`ASSETS`], computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..32]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router::<()>().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    async fn text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_shell_is_served_at_every_page_path_with_security_headers() {
        for path in
            ["/", "/printers/01P00A391800001", "/agents", "/events", "/admin", "/account", "/login"]
        {
            let response = get_path(path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(
                header_of(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY,
                "{path}"
            );
            assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header_of(&response, header::REFERRER_POLICY), "same-origin");
            let body = text(response).await;
            assert!(body.contains("<html lang=\"en\">"), "{path}");
            assert!(body.contains("src=\"/assets/app.js\""), "{path}");
        }
    }

    #[test]
    fn the_policy_forbids_inline_code_and_framing() {
        for part in [
            "default-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self' ws: wss:",
            "style-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(part), "{part}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[tokio::test]
    async fn assets_have_their_content_type_and_cache_headers() {
        for (file, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("fleet.js", "text/javascript; charset=utf-8"),
            ("vendor/preact.mjs", "text/javascript; charset=utf-8"),
            ("vendor/htm.LICENSE.txt", "text/plain; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let response = get_path(&format!("/assets/{file}"), &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{file}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type, "{file}");
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache", "{file}");
            assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            let etag = header_of(&response, header::ETAG).to_owned();
            assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
            let again = get_path(&format!("/assets/{file}"), &[("if-none-match", &etag)]).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_and_paths_are_not_found() {
        for path in [
            "/assets/nope.js",
            "/assets/..%2Fsrc%2Fweb.rs",
            "/assets/../src/web.rs",
            "/assets/vendor/../app.js",
            "/assets/vendor/",
            "/assets/",
            "/nope",
        ] {
            let response = get_path(path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    /// Every module specifier in a `from '…'` / `from"…"` clause of a script (`from` after
    /// `}`, `*` or white space, so a `"from":` key is not one).
    fn specifiers(source: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for (start, _) in source.match_indices("from") {
            let before = source[..start].chars().next_back();
            if !before.is_some_and(|c| c == '}' || c == '*' || c.is_whitespace()) {
                continue;
            }
            let rest = source[start + 4..].trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
                continue;
            };
            if let Some(specifier) = rest[1..].split(quote).next() {
                found.push(specifier);
            }
        }
        found
    }

    fn imports(source: &str) -> Vec<&str> {
        specifiers(source)
            .into_iter()
            .filter(|s| s.starts_with("./") || s.starts_with("../"))
            .collect()
    }

    /// `specifier` resolved against the folder of the asset `from`.
    fn resolve(from: &str, specifier: &str) -> String {
        let mut parts: Vec<&str> = from.split('/').collect();
        parts.pop();
        for part in specifier.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                part => parts.push(part),
            }
        }
        parts.join("/")
    }

    fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
        ASSETS
            .iter()
            .filter(|a| a.content_type == JS)
            .map(|a| (a.name, std::str::from_utf8(a.body).unwrap()))
    }

    #[test]
    fn every_module_the_scripts_import_is_embedded() {
        let mut checked = 0;
        for (name, source) in scripts() {
            for specifier in imports(source) {
                let target = resolve(name, specifier);
                assert!(ASSETS.iter().any(|a| a.name == target), "{name} imports {target}");
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} imports found");
    }

    #[test]
    fn no_script_imports_a_bare_specifier_or_evaluates_strings() {
        // The browser resolves no bare specifier without an import map (which would be an
        // inline script), and the policy has no 'unsafe-eval'.
        for (name, source) in scripts() {
            for specifier in specifiers(source) {
                assert!(specifier.starts_with('.'), "{name} imports {specifier:?}");
            }
            for forbidden in ["eval(", "new Function", "Function("] {
                assert!(!source.contains(forbidden), "{name} contains {forbidden}");
            }
        }
    }

    #[test]
    fn every_file_in_the_assets_folder_is_served() {
        let root = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .join("assets");
        let mut files = Vec::new();
        for folder in ["", "vendor"] {
            for entry in std::fs::read_dir(root.join(folder)).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    files.push(if folder.is_empty() { name } else { format!("{folder}/{name}") });
                }
            }
        }
        for file in files.iter().filter(|f| *f != "index.html") {
            assert!(ASSETS.iter().any(|a| a.name == file), "{file} is not in ASSETS");
        }
    }

    /// The path patterns of app.js's route table (`{ pattern: /^\/printers\/([^/]+)$/, …`),
    /// in axum's syntax with `{}` for each parameter.
    fn client_routes() -> Vec<String> {
        let app = ASSETS.iter().find(|a| a.name == "app.js").unwrap();
        let source = std::str::from_utf8(app.body).unwrap();
        let table = source.split("const ROUTES = [").nth(1).unwrap().split("];").next().unwrap();
        table
            .lines()
            .filter_map(|line| line.split("pattern: /^").nth(1)?.split("$/").next())
            .map(|pattern| pattern.replace("([^/]+)", "{}").replace("\\/", "/"))
            .collect()
    }

    #[test]
    fn the_shell_is_served_at_every_path_the_client_routes_and_only_there() {
        let mut client = client_routes();
        client.sort();
        let mut served: Vec<String> = PAGES
            .iter()
            .map(|page| {
                let mut path = String::new();
                let mut in_parameter = false;
                for c in page.chars() {
                    match c {
                        '{' => in_parameter = true,
                        '}' => {
                            in_parameter = false;
                            path.push_str("{}");
                        }
                        c if !in_parameter => path.push(c),
                        _ => {}
                    }
                }
                path
            })
            .collect();
        served.sort();
        assert_eq!(client, served, "app.js's ROUTES and PAGES differ");
    }

    #[test]
    fn resolving_follows_the_importing_asset_s_folder() {
        assert_eq!(resolve("app.js", "./store.js"), "store.js");
        assert_eq!(resolve("lib.js", "./vendor/preact.mjs"), "vendor/preact.mjs");
        assert_eq!(resolve("vendor/hooks.mjs", "./preact.mjs"), "vendor/preact.mjs");
        assert_eq!(resolve("vendor/x.js", "../app.js"), "app.js");
    }

    #[test]
    fn the_shell_has_no_inline_script_or_style() {
        assert!(!SHELL.contains("style="));
        assert!(!SHELL.contains("<style"));
        for script in SHELL.split("<script").skip(1) {
            let tag_end = script.find('>').unwrap();
            assert!(script[..tag_end].contains("src="), "inline script: {script}");
            assert!(script[tag_end + 1..].trim_start().starts_with("</script>"));
        }
    }

    #[test]
    fn the_browser_test_hooks_exist() {
        let all: String = std::iter::once(SHELL)
            .chain(ASSETS.iter().filter_map(|a| std::str::from_utf8(a.body).ok()))
            .collect();
        for hook in [
            "printer-card",
            "progress",
            "printer-state",
            "cmd-pause",
            "cmd-resume",
            "cmd-stop",
            "login-name",
            "login-password",
            "login-submit",
            "agents-table",
            "live-indicator",
            "fleet-snapshot",
            "camera-pane",
            "camera-state",
            "camera-live-toggle",
            "camera-live",
            "camera-snapshot",
            "camera-snapshot-result",
            "snapshot-timeline",
            "snapshot-trigger",
            "events-table",
            "events-kind",
            "events-apply",
            "users-table",
            "tokens-table",
            "token-label",
            "token-create",
            "token-created",
        ] {
            assert!(
                all.contains(&format!("data-testid=\"{hook}\""))
                    || all.contains(&format!("'data-testid': '{hook}'")),
                "missing data-testid {hook}"
            );
        }
        assert!(all.contains("data-printer-id=${"));
    }
}
