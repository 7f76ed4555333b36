//! The web dashboard, served by the hub itself.
//!
//! The assets in `hub/assets/` are plain HTML, CSS and JavaScript modules (no framework, no
//! build step: the committed files are the sources), embedded in the binary with
//! `include_str!`/`include_bytes!`. Building kitt needs no Node toolchain.
//!
//! Every page path ([`PAGES`]) answers with the same shell; the client routes from the URL.
//! The shell is static and needs no caller: the data comes from `/api/v1`, which enforces
//! authentication, and a 401 there sends the browser to `/login`.
//!
//! Invariants:
//! - HTML responses carry [`CONTENT_SECURITY_POLICY`]; the assets therefore hold no inline
//!   script and no inline `style` attribute (styles are set by class or through the CSSOM).
//! - Assets are not fingerprinted, so they are served with `Cache-Control: no-cache` and an
//!   `ETag` (a SHA-256 of the content): browsers revalidate cheaply and never run a stale
//!   module beside a new one after an upgrade.
//! - An asset name not in [`ASSETS`] is a 404; nothing is read from the file system.

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

/// The paths at which the shell is served (axum path syntax).
pub const PAGES: &[&str] = &["/", "/printers/{id}", "/agents", "/events", "/admin", "/login"];

const SHELL: &str = include_str!("../assets/index.html");

/// An embedded file: name under `/assets/`, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    Asset { name: "app.js", content_type: JS, body: include_bytes!("../assets/app.js") },
    Asset { name: "api.js", content_type: JS, body: include_bytes!("../assets/api.js") },
    Asset { name: "ui.js", content_type: JS, body: include_bytes!("../assets/ui.js") },
    Asset { name: "format.js", content_type: JS, body: include_bytes!("../assets/format.js") },
    Asset { name: "chart.js", content_type: JS, body: include_bytes!("../assets/chart.js") },
    Asset { name: "hms.js", content_type: JS, body: include_bytes!("../assets/hms.js") },
    Asset { name: "widgets.js", content_type: JS, body: include_bytes!("../assets/widgets.js") },
    Asset { name: "camera.js", content_type: JS, body: include_bytes!("../assets/camera.js") },
    Asset { name: "fleet.js", content_type: JS, body: include_bytes!("../assets/fleet.js") },
    Asset { name: "printer.js", content_type: JS, body: include_bytes!("../assets/printer.js") },
    Asset { name: "agents.js", content_type: JS, body: include_bytes!("../assets/agents.js") },
    Asset { name: "events.js", content_type: JS, body: include_bytes!("../assets/events.js") },
    Asset { name: "admin.js", content_type: JS, body: include_bytes!("../assets/admin.js") },
    Asset { name: "login.js", content_type: JS, body: include_bytes!("../assets/login.js") },
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

/// The dashboard's routes: the shell at every page path and `/assets/<file>`. Generic over
/// the state so the API router can merge it.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router.route("/assets/{file}", get(asset))
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
        for path in ["/", "/printers/01P00A391800001", "/agents", "/events", "/admin", "/login"] {
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
        for path in ["/assets/nope.js", "/assets/..%2Fsrc%2Fweb.rs", "/assets/", "/nope"] {
            let response = get_path(path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn every_module_the_scripts_import_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let source = std::str::from_utf8(asset.body).unwrap();
            for (start, _) in source.match_indices("from './") {
                let name = source[start + 8..].split('\'').next().unwrap();
                assert!(ASSETS.iter().any(|a| a.name == name), "{} imports {name}", asset.name);
            }
        }
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
        ] {
            assert!(
                all.contains(&format!("data-testid=\"{hook}\""))
                    || all.contains(&format!("'data-testid': '{hook}'")),
                "missing data-testid {hook}"
            );
        }
        assert!(all.contains("'data-printer-id': "));
    }
}
