//! A small W3C WebDriver client for the browser tests: Debian's `chromedriver` driving
//! headless `chromium`. Only what the tests use: navigate, find, click, type, read, run a
//! script, wait on the page, a DevTools command, take a screenshot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::PATIENCE;
use crate::http;
use crate::process::Process;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`.
#[derive(Debug)]
pub struct Driver {
    addr: SocketAddr,
    _process: Process,
}

impl Driver {
    pub fn start() -> Driver {
        for program in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install Debian's chromium and chromium-driver (cargo xtask test does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process =
            Process::spawn(Command::new("/usr/bin/chromedriver").arg(format!("--port={port}")));
        process.wait_line("started successfully");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        Driver { addr, _process: process }
    }

    /// A new headless browser window of `width` × `height`.
    pub fn session(&self, width: u32, height: u32) -> Session {
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // Waits run in the page; let them last as long as the tests' patience.
            "timeouts": { "script": PATIENCE.as_millis() as u64 + 5_000 },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")]
            }
        } } });
        let response = call(self.addr, "POST", "/session", Some(capabilities));
        let id = response["sessionId"].as_str().expect("a session id").to_owned();
        Session { addr: self.addr, id }
    }
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let response = http::request(addr, method, path, &[], body.as_deref())
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
    let value = response.json()["value"].clone();
    assert!(
        response.status == 200,
        "WebDriver {method} {path} failed ({}): {}",
        response.status,
        value["message"].as_str().unwrap_or(&response.body)
    );
    value
}

/// One browser session; closed when dropped.
#[derive(Debug)]
pub struct Session {
    addr: SocketAddr,
    id: String,
}

/// An element on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    pub fn goto(&self, url: &str) {
        call(self.addr, "POST", &self.path("/url"), Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        call(self.addr, "GET", &self.path("/url"), None).as_str().unwrap_or("").to_owned()
    }

    /// Every element matching a CSS selector (none is not an error).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = call(
            self.addr,
            "POST",
            &self.path("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `script` in the page until it calls its callback (the last argument) with a
    /// value; `condition` is a function body over `arguments` returning a truthy value once
    /// satisfied. The page re-checks it on every DOM change (a `MutationObserver`), so the
    /// wait follows the page's own events; after [`PATIENCE`] it answers `null`.
    fn wait_in_page(&self, condition: &str, args: Value) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const args = arguments[0];
             const check = () => {{ {condition} }};
             const first = check();
             if (first) return done(first);
             const observer = new MutationObserver(() => {{
               const found = check();
               if (found) {{ observer.disconnect(); clearTimeout(deadline); done(found); }}
             }});
             const deadline = setTimeout(() => {{ observer.disconnect(); done(null); }}, {});
             observer.observe(document, {{ subtree: true, childList: true, attributes: true,
                                          characterData: true }});",
            PATIENCE.as_millis()
        );
        call(
            self.addr,
            "POST",
            &self.path("/execute/async"),
            Some(json!({ "script": script, "args": [args] })),
        )
    }

    /// Waits until `css` matches at least `count` elements, then returns them.
    pub fn wait_all(&self, css: &str, count: usize) -> Vec<Element> {
        let found = self.wait_in_page(
            "return document.querySelectorAll(args.css).length >= args.count;",
            json!({ "css": css, "count": count }),
        );
        assert_eq!(found, Value::Bool(true), "no {count} elements for {css:?} on {}", self.url());
        self.find_all(css)
    }

    /// Waits until `condition` (a function body returning a truthy value once satisfied,
    /// re-checked on every DOM change) holds; returns its value.
    pub fn wait_for(&self, condition: &str, what: &str) -> Value {
        let found = self.wait_in_page(condition, Value::Null);
        assert!(!found.is_null(), "{what}: not within the patience");
        found
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    pub fn cdp(&self, command: &str, params: Value) -> Value {
        call(
            self.addr,
            "POST",
            &self.path("/goog/cdp/execute"),
            Some(json!({ "cmd": command, "params": params })),
        )
    }

    pub fn wait(&self, css: &str) -> Element {
        self.wait_all(css, 1).remove(0)
    }

    /// Waits until the (rendered) text of the element for `css` contains one of `needles`,
    /// ignoring case; returns the text.
    pub fn wait_text(&self, css: &str, what: &str, needles: &[&str]) -> String {
        let found = self.wait_in_page(
            "const el = document.querySelector(args.css);
             const text = el ? el.innerText : '';
             return args.needles.some(n => text.toLowerCase().includes(n)) ? text : null;",
            json!({ "css": css, "needles": needles }),
        );
        match found {
            Value::String(text) => text,
            _ => {
                let last = self.find_all(css).first().map(|e| self.text(e)).unwrap_or_default();
                panic!("{what}: {css:?} still reads {last:?}")
            }
        }
    }

    /// Waits until an attribute of the element for `css` differs from `from`; returns it.
    pub fn wait_attribute_change(&self, css: &str, name: &str, from: Option<&str>) -> String {
        let found = self.wait_in_page(
            "const el = document.querySelector(args.css);
             const value = el ? el.getAttribute(args.name) : null;
             return value !== null && value !== args.from ? value : null;",
            json!({ "css": css, "name": name, "from": from }),
        );
        match found {
            Value::String(value) => value,
            _ => panic!("{css:?} {name} stayed at {from:?}"),
        }
    }

    /// Waits until an enabled element matches `css` and clicks it in the same step, so a
    /// re-render between finding and clicking cannot leave a stale element.
    pub fn click_when_ready(&self, css: &str) {
        let clicked = self.wait_in_page(
            "const el = document.querySelector(args.css);
             if (el && !el.disabled) { el.click(); return true; }
             return null;",
            json!({ "css": css }),
        );
        assert_eq!(clicked, Value::Bool(true), "no enabled {css:?} to click on {}", self.url());
    }

    pub fn click(&self, element: &Element) {
        call(
            self.addr,
            "POST",
            &self.path(&format!("/element/{}/click", element.0)),
            Some(json!({})),
        );
    }

    pub fn type_text(&self, element: &Element, text: &str) {
        call(
            self.addr,
            "POST",
            &self.path(&format!("/element/{}/value", element.0)),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, element: &Element) -> String {
        call(self.addr, "GET", &self.path(&format!("/element/{}/text", element.0)), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        call(
            self.addr,
            "GET",
            &self.path(&format!("/element/{}/attribute/{name}", element.0)),
            None,
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Runs a script in the page and returns its result.
    pub fn execute(&self, script: &str) -> Value {
        call(
            self.addr,
            "POST",
            &self.path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Accepts a `window.confirm` dialog, if one is open.
    pub fn accept_dialog(&self) {
        let _ = http::request(self.addr, "POST", &self.path("/alert/accept"), &[], Some("{}"));
    }

    pub fn resize(&self, width: u32, height: u32) {
        call(
            self.addr,
            "POST",
            &self.path("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Saves a PNG screenshot to `dir/name.png` and returns its path.
    pub fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let encoded = call(self.addr, "GET", &self.path("/screenshot"), None);
        let png = base64_decode(encoded.as_str().unwrap_or("")).expect("a base64 screenshot");
        std::fs::create_dir_all(dir).expect("the artefact directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = http::request(self.addr, "DELETE", &format!("/session/{}", self.id), &[], None);
    }
}

/// Where CI keeps test artefacts: `$KITT_TEST_ARTIFACTS`, or `test-artifacts/` in the
/// target directory.
pub fn artifacts_dir(area: &str) -> PathBuf {
    let base = std::env::var_os("KITT_TEST_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the test executable");
        // target/<profile>/deps/<test> → target/test-artifacts
        exe.ancestors()
            .nth(3)
            .map(|t| t.join("test-artifacts"))
            .unwrap_or_else(|| "test-artifacts".into())
    });
    base.join(area)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(super::base64_decode("aA==").unwrap(), b"h");
        assert!(super::base64_decode("a*b=").is_none());
    }
}
