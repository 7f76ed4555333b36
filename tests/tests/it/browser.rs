//! The dashboard in a real browser (headless Chromium over WebDriver) against `kitt-hub demo`:
//! log in, watch live progress (updating the card in place) and camera snapshots, pause a
//! printer, watch its camera live, open the agents page, filter the event log, create an API
//! token, move focus to a new page's heading. Screenshots go where CI keeps artefacts
//! (`tests::webdriver::artifacts_dir`).

use std::process::Command;

use tests::process::{Process, bin};
use tests::upstream::Reply;
use tests::webdriver::{Driver, Session, artifacts_dir};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Trigger labels the snapshot timeline may show.
const TRIGGER_LABELS: &[&str] = &[
    "job started",
    "first layer",
    "layer",
    "interval",
    "paused",
    "failed",
    "finished",
    "requested",
];

/// Waits until the image for `css` has loaded (the dashboard marks it with `data-loaded`
/// on its `load` event), then checks in the page that it has pixels.
fn wait_image_loaded(browser: &Session, css: &str) {
    browser.wait(&format!("{css}[data-loaded=true]"));
    let width = browser.execute(&format!(
        "const img = document.querySelector({}); return img ? img.naturalWidth : 0",
        serde_json::Value::from(css)
    ));
    assert!(width.as_u64().is_some_and(|w| w > 0), "{css} has not loaded: naturalWidth {width}");
}

/// Text elements below WCAG AA contrast (4.5:1; 3:1 for large text) against their nearest
/// opaque background, on the page as it is.
fn low_contrast(browser: &Session) -> serde_json::Value {
    browser.execute(
        "const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
             v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
           return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
         const opaque = c => { const p = c.match(/[\\d.]+/g); return p && (p.length < 4 || Number(p[3]) === 1); };
         const background = el => { for (; el; el = el.parentElement) {
             const c = getComputedStyle(el).backgroundColor; if (opaque(c)) return c; }
           return 'rgb(255, 255, 255)'; };
         return [...document.querySelectorAll('body *')]
           .filter(el => el.offsetParent !== null && [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
           .filter(el => !el.closest('button:disabled, [aria-disabled=true]'))
           .map(el => { const s = getComputedStyle(el); const a = lum(s.color), b = lum(background(el));
             const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
             const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
             return { text: el.textContent.trim().slice(0, 40), ratio, need: large ? 3 : 4.5 }; })
           .filter(x => x.ratio < x.need)",
    )
}

/// Form controls on the page with no label.
fn unlabelled(browser: &Session) -> serde_json::Value {
    browser.execute(
        "return [...document.querySelectorAll('input, select, textarea')]
           .filter(e => e.type !== 'hidden')
           .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                        && !e.getAttribute('aria-labelledby'))
           .map(e => e.outerHTML)",
    )
}

/// Elements that reach past the window's right edge (none, unless the page scrolls sideways):
/// tag, class and right edge of the innermost ones. An element inside a container that
/// scrolls or clips within the window (the navigation bar scrolls on a phone) is not counted.
fn sideways(browser: &Session) -> serde_json::Value {
    browser.execute(
        "const clipped = (e) => {
           for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
             const x = getComputedStyle(p).overflowX;
             if (x !== 'visible' && p.getBoundingClientRect().right <= window.innerWidth + 1) return true;
           }
           return false;
         };
         const wide = [...document.querySelectorAll('body *')]
           .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(e));
         return wide.filter(e => !wide.some(o => o !== e && e.contains(o)))
           .map(e => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)",
    )
}

/// Content-Security-Policy violations since the page loaded (the dashboard counts them on
/// `<html data-csp-violations>`).
fn csp_violations(browser: &Session) -> u64 {
    let count =
        browser.execute("return Number(document.documentElement.dataset.cspViolations ?? 0)");
    count.as_u64().unwrap_or(u64::MAX)
}

#[test]
fn the_dashboard_logs_in_shows_live_progress_pauses_a_printer_and_lists_agents() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // The assistant's model: a stand-in speaking OpenAI's API, scripted to propose resuming
    // and then pausing the printer that prints (a 135M model's choices are not a test's).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let model = runtime.block_on(tests::upstream::StandIn::start());
    let workhorse_id = serde_json::json!({"printer": "01P00C391800001"});
    model
        .then(Reply::Call { name: "resume_printer".into(), arguments: workhorse_id.clone() })
        .then(Reply::Text("I proposed resuming the Workhorse P1S.".into()))
        .then(Reply::Call { name: "pause_printer".into(), arguments: workhorse_id })
        .then(Reply::Text("I proposed pausing it again.".into()));
    let config = data.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[[assistant.tiers]]\nname = \"farm-gpu\"\napi = \"openai\"\nurl = \"{}\"\nmodel = \"scripted\"\n",
            model.base_url()
        ),
    )
    .unwrap();
    let demo = Process::spawn(
        Command::new(bin("kitt-hub"))
            .arg("--data-dir")
            .arg(data.path())
            .arg("--config")
            .arg(&config)
            .args(["demo", "--http-listen", &format!("127.0.0.1:{port}")])
            .env_remove("KITT_CHAT_MODEL")
            .env("KITT_EMBED_MODEL", super::assistant::embed_model())
            .env("KITT_LOG", "warn"),
    );
    let banner = demo.wait_line("log in as admin with password");
    let password = banner.rsplit(' ').next().unwrap().to_owned();
    // `localhost`: a secure context, where browsers keep the Secure session cookie over http.
    let base = format!("http://localhost:{port}");
    let shots = artifacts_dir("browser");

    let driver = Driver::start();
    let browser = driver.session(1280, 900);
    // Every page keeps its WebSockets in `window.kittSockets`, so the test can cut one, and
    // room for all its resource timings, so the test can count its fetches.
    browser.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({ "source": "performance.setResourceTimingBufferSize(100000);
            window.kittSockets = []; const Native = window.WebSocket;
            window.WebSocket = class extends Native {
              constructor(...args) { super(...args); window.kittSockets.push(this); } };" }),
    );
    browser.goto(&format!("{base}/"));
    // Not logged in: the dashboard sends us to the login page.
    let name = browser.wait("[data-testid=login-name]");
    assert!(browser.url().contains("/login"), "{}", browser.url());
    browser.type_text(&name, "admin");
    browser.type_text(&browser.wait("[data-testid=login-password]"), &password);
    browser.screenshot(&shots, "1-login");
    browser.click(&browser.wait("[data-testid=login-submit]"));

    // The fleet: six cards (four Bambu, two Klipper), and live progress on the printer that
    // prints.
    let cards = browser.wait_all("[data-testid=printer-card]", 6);
    assert_eq!(cards.len(), 6);
    browser.wait_text("[data-testid=live-indicator]", "the live connection", &["live"]);
    let workhorse = "[data-printer-id='01P00C391800001'] [data-testid=progress]";
    let bar = browser.wait(workhorse);
    let first = browser.attribute(&bar, "aria-valuenow");
    // Remember the card's elements, to see that a live update changes them in place.
    browser.execute(
        "window.kittCard = document.querySelector(\"[data-printer-id='01P00C391800001']\");
         window.kittBar = window.kittCard.querySelector('[data-testid=progress]');",
    );
    // The next WebSocket update moves the bar.
    browser.wait_attribute_change(workhorse, "aria-valuenow", first.as_deref());
    // The store re-rendered the card from the update without replacing it or its bar.
    let kept = browser.execute(
        "const card = document.querySelector(\"[data-printer-id='01P00C391800001']\");
         return [card === window.kittCard, card.querySelector('[data-testid=progress]') === window.kittBar]",
    );
    assert_eq!(kept, serde_json::json!([true, true]), "a live update replaced the card");
    // A dropped live connection comes back, resuming after the last update it saw (the hub
    // sends what was missed first, or `lagged`, after which the store reads everything
    // again), on whichever replica answers.
    browser.execute("window.kittSockets.at(-1).close()");
    browser.wait_attribute_change("[data-testid=live-indicator]", "data-state", Some("live"));
    browser.wait_text("[data-testid=live-indicator]", "the live connection again", &["live"]);
    let sockets = browser.execute("return window.kittSockets.length").as_u64().unwrap();
    assert!(sockets >= 2, "{sockets} WebSockets: no reconnect");
    let url = browser.execute("return window.kittSockets.at(-1).url");
    let url = url.as_str().unwrap_or_default();
    assert!(url.contains("/api/v1/ws?after="), "the reconnect did not resume: {url}");
    // The printing printer's camera snapshot, on its card (it arrives live if none was there).
    wait_image_loaded(&browser, "[data-printer-id='01P00C391800001'] [data-testid=fleet-snapshot]");
    browser.screenshot(&shots, "2-fleet");
    assert_eq!(csp_violations(&browser), 0, "the fleet page broke the Content-Security-Policy");

    // The printer page: pause, and watch the state change.
    browser.goto(&format!("{base}/printers/01P00C391800001"));
    browser.wait_text("[data-testid=printer-state]", "printing", &["printing", "preparing"]);
    let pause = browser.wait("[data-testid=cmd-pause]");
    browser.wait_text("[data-testid=printer-state]", "printing", &["printing"]);
    browser.click(&pause);
    browser.accept_dialog();
    browser.wait_text("[data-testid=printer-state]", "the paused state", &["paused"]);
    browser.screenshot(&shots, "3-printer-paused");

    // Its camera: streaming; live view shows frames and stops cleanly; a snapshot taken
    // on request joins the snapshot timeline.
    browser.wait("[data-testid=camera-pane]");
    browser.wait_text(
        "[data-testid=camera-pane] [data-testid=camera-state]",
        "a streaming camera",
        &["streaming"],
    );
    let toggle = browser.wait("[data-testid=camera-live-toggle]");
    browser.click(&toggle);
    wait_image_loaded(&browser, "[data-testid=camera-live]");
    browser.click(&toggle);
    browser.wait_attribute_change("[data-testid=camera-live-toggle]", "aria-pressed", Some("true"));
    let live_left =
        browser.execute("return document.querySelectorAll('[data-testid=camera-live]').length");
    assert_eq!(live_left, 0, "live view stayed on the page after stopping it");
    browser.wait_text(
        "[data-testid=snapshot-timeline] [data-testid=snapshot-trigger]",
        "a snapshot with its trigger in the timeline",
        TRIGGER_LABELS,
    );
    browser.click(&browser.wait("[data-testid=camera-snapshot]"));
    browser.wait_text(
        "[data-testid=camera-snapshot-result]",
        "the requested snapshot",
        &["taken in"],
    );
    browser.wait_text("[data-testid=snapshot-timeline]", "the requested snapshot", &["requested"]);
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "printer page text below WCAG AA");
    assert_eq!(csp_violations(&browser), 0, "the printer page broke the Content-Security-Policy");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the printer page"
    );
    browser.execute(
        "document.querySelector('[data-testid=camera-pane]').scrollIntoView({ block: 'center' })",
    );
    browser.screenshot(&shots, "9-printer-camera");

    // The failed printer shows its HMS alert with a link to the vendor's page.
    browser.goto(&format!("{base}/printers/00M09A351100002"));
    browser.wait_text("[data-testid=printer-state]", "the failed state", &["failed"]);
    let links = browser.execute(
        "return [...document.querySelectorAll('a')].map(a => a.href).filter(h => h.includes('0300_0100_0001_0007'))",
    );
    assert!(links.as_array().is_some_and(|l| !l.is_empty()), "no HMS link: {links}");
    browser.screenshot(&shots, "4-printer-failed");

    // A Klipper printer: its controls are its own (a firmware restart and an emergency stop,
    // no Bambu lights), and after the thermal runaway it shows Klipper's words; the restart,
    // once confirmed, brings it back.
    browser.goto(&format!("{base}/printers/voron-24"));
    browser.wait_text("[data-testid=printer-state]", "the shut-down Voron", &["failed"]);
    browser.wait_text(
        "[data-testid=printer-message]",
        "Klippy's message",
        &["heater extruder not heating at expected rate"],
    );
    browser.wait("[data-testid=cmd-emergency-stop]");
    let lights =
        browser.execute("return document.querySelectorAll('[data-testid=cmd-light-on]').length");
    assert_eq!(lights, 0, "a Klipper printer offered a Bambu light");
    browser.screenshot(&shots, "4b-klipper-shutdown");
    browser.click(&browser.wait("[data-testid=cmd-firmware-restart]"));
    browser.click(&browser.wait("dialog[open] button[value=ok]"));
    browser.wait_text("[data-testid=printer-state]", "the Voron ready again", &["idle"]);
    assert_eq!(
        browser.execute("return document.querySelectorAll('[data-testid=printer-message]').length"),
        0,
        "the fault's message stayed after the restart"
    );
    // A Bambu printer offers its light and no firmware restart.
    browser.goto(&format!("{base}/printers/0309CA391800003"));
    browser.wait("[data-testid=cmd-light-on]");
    assert_eq!(
        browser.execute(
            "return document.querySelectorAll('[data-testid=cmd-firmware-restart]').length"
        ),
        0
    );

    // The agents page: one row per agent.
    browser.goto(&format!("{base}/agents"));
    browser.wait("[data-testid=agents-table]");
    browser.wait_all("[data-testid=agents-table] tbody tr", 6);
    // The hub's replicas: this one hub, alive, with the six agents.
    browser.wait_text("[data-testid=replicas-table] tbody tr", "the hub as a replica", &["alive"]);
    browser.wait_text(
        "[data-testid=replicas-table] td[data-label=Agents]",
        "the agents connected to it",
        &["6"],
    );
    browser.screenshot(&shots, "5-agents");

    // A Klipper printer added from the dashboard reaches the desk's agent, which runs it.
    let klipper = Process::spawn(Command::new(bin("kitt-printer-sim")).args([
        "--kind",
        "moonraker",
        "--bind",
        "127.0.0.1:0",
        "--name",
        "desk-klipper",
        "--no-camera",
        "--announce-ms",
        "0",
    ]));
    let line = klipper.wait_line("moonraker listening on");
    let address = line.split_whitespace().find(|w| w.contains(':')).unwrap().to_owned();
    browser.click(&browser.wait("[data-agent-id=pi-desk] [data-testid=manage-printers]"));
    browser.wait("[data-testid=managed-printers][data-agent=pi-desk]");
    // Its own printer, from its agent.toml, is shown as managed there.
    browser.wait_text(
        "[data-testid=managed-locally]",
        "the desk's own printer",
        &["0309ca391800003"],
    );
    browser.click(&browser.wait("[data-testid=managed-add]"));
    browser.type_text(&browser.wait("[data-testid=managed-form] [data-field=id]"), "desk-klipper");
    browser
        .type_text(&browser.wait("[data-testid=managed-form] [data-field=name]"), "Desk Klipper");
    browser.type_text(
        &browser.wait("[data-testid=managed-form] [data-field=url]"),
        &format!("http://{address}"),
    );
    browser.click(&browser.wait("[data-testid=managed-save]"));
    browser.wait("[data-managed-id=desk-klipper]");
    browser.screenshot(&shots, "5b-managed-pending");
    browser.wait("[data-managed-id=desk-klipper][data-status=applied]");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls in the managed printers panel"
    );
    browser.screenshot(&shots, "5c-managed-applied");
    // It is in the fleet now, shown in Klipper's terms.
    browser.goto(&format!("{base}/printers/desk-klipper"));
    browser.wait_text("[data-testid=printer-state]", "the added printer", &["idle"]);
    browser.wait("[data-testid=cmd-firmware-restart]");
    drop(klipper);

    // Files: an upload with its progress, then the file's plates (numbered as the project
    // numbers them), the filaments each needs, and its picture.
    browser.click(&browser.wait("[data-nav=files]"));
    browser.wait_text("main", "the empty files page", &["no files yet"]);
    let fixture = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../printfile/test_data/orca-2.3-a1-mini-plates-2-3.gcode.3mf")
        .canonicalize()
        .unwrap();
    browser.type_text(&browser.wait("[data-testid=upload-input]"), &fixture.display().to_string());
    browser.click(&browser.wait("[data-testid=upload-submit]"));
    let card = "[data-testid=file-card]";
    browser.wait_text(card, "the uploaded file", &["orca-2.3-a1-mini-plates-2-3.gcode.3mf"]);
    browser.wait_text(card, "the printer it was sliced for", &["bambu lab a1 mini"]);
    browser.wait(&format!("{card} tr[data-plate='2']"));
    browser.wait_text(&format!("{card} tr[data-plate='3']"), "plate 3's filament", &["petg"]);
    wait_image_loaded(&browser, &format!("{card} img.file-thumb"));
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the files page"
    );
    assert_eq!(csp_violations(&browser), 0, "the files page broke the Content-Security-Policy");
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "files page text below WCAG AA");
    browser.screenshot(&shots, "5d-files");
    // The same file again is recognised, not stored twice.
    browser.type_text(&browser.wait("[data-testid=upload-input]"), &fixture.display().to_string());
    browser.click(&browser.wait("[data-testid=upload-submit]"));
    browser.wait_text("#toasts", "the duplicate's notice", &["already here"]);
    assert_eq!(browser.find_all(card).len(), 1);

    // The queue: plate 2 of that file, added from the dashboard. The desk's A1 mini fits it
    // and idles, but nobody confirmed its plate clear: the job waits and says so. One tap on
    // the printer's card, and the job waits for what is really missing, the orange PETG.
    browser.click(&browser.wait("[data-nav=queue]"));
    browser.wait_text("main", "the empty queue", &["the queue is empty"]);
    browser.click(&browser.wait("[data-testid=job-file] option:nth-child(2)"));
    browser.wait("[data-testid=job-plate] option[value='3']");
    browser.click(&browser.wait("[data-testid=job-add]"));
    let job = "[data-testid=job-row][data-state=queued]";
    browser.wait(&format!("{job} [data-testid=job-where][data-code=plate_not_clear]"));
    browser.wait_text(job, "the job's wait", &["0309ca391800003"]);
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the queue page"
    );
    assert_eq!(csp_violations(&browser), 0, "the queue page broke the Content-Security-Policy");
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "queue page text below WCAG AA");
    // Success estimates from the demo's two weeks of reviewed prints, and the queue says so.
    browser.wait_text(
        "[data-testid=queue-estimate]",
        "the estimate's state",
        &["learned from 20 reviewed outcomes"],
    );
    browser.screenshot(&shots, "5e-queue-waiting");
    browser.click(&browser.wait("[data-nav=fleet]"));
    let desk = "[data-printer-id='0309CA391800003']";
    browser.click(&browser.wait(&format!("{desk} [data-testid=plate-clear]")));
    browser.wait(&format!("{desk} [data-testid=plate-state][data-clear=true]"));
    browser.click(&browser.wait("[data-nav=queue]"));
    browser.wait(&format!("{job} [data-testid=job-where][data-code=filament_not_loaded]"));
    browser.wait_text(job, "the missing filament", &["petg #ff6a13"]);
    browser.screenshot(&shots, "5f-queue-filament");

    // Outcomes: the lab's X1C fails at layer 9; its end is an outcome in the review queue,
    // with the reason its printer's words gave. An operator reviews it: the reason corrected,
    // a quality and an aspect scored; it leaves the queue with the scores kept as given.
    browser.click(&browser.wait("[data-nav=outcomes]"));
    let pending = "[data-testid=outcome][data-reviewed=false]";
    let card = browser.wait(pending);
    let id = browser.attribute(&card, "data-outcome").unwrap();
    let this = format!("[data-testid=outcome][data-outcome='{id}']");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the outcomes page"
    );
    assert_eq!(csp_violations(&browser), 0, "the outcomes page broke the Content-Security-Policy");
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "outcomes page text below WCAG AA");
    browser.screenshot(&shots, "5g-outcomes-review");
    browser.click(
        &browser.wait(&format!("{this} [data-testid=review-reason] option[value=nozzle_clog]")),
    );
    browser.type_text(&browser.wait(&format!("{this} [data-testid=review-quality]")), "85");
    browser.type_text(&browser.wait(&format!("{this} [data-testid=review-surface]")), "72");
    browser.click(&browser.wait(&format!("{this} [data-testid=review-submit]")));
    browser.wait_text("#toasts", "the review's notice", &["review saved"]);
    browser.goto(&format!("{base}/outcomes?show=all"));
    let reviewed = format!("[data-testid=outcome][data-outcome='{id}'][data-reviewed=true]");
    browser.wait_text(
        &format!("{reviewed} [data-testid=outcome-quality]"),
        "the kept scores",
        &["85 (surface 72)"],
    );
    browser.wait_text(
        &format!("{reviewed} [data-testid=outcome-reason]"),
        "the corrected reason",
        &["nozzle clog"],
    );
    browser.screenshot(&shots, "5h-outcome-reviewed");

    // The inventory: the demo printers' tagged AMS spools, found by their RFID tags.
    browser.click(&browser.wait("[data-nav=inventory]"));
    browser.wait("[data-testid=spool-row]");
    browser.wait("[data-testid=stock-table] tbody tr");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the inventory page"
    );
    assert_eq!(csp_violations(&browser), 0, "the inventory page broke the Content-Security-Policy");
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "inventory page text below WCAG AA");
    // An admin adds a Spoolman client there: its base URL, with its token, shown once.
    browser.type_text(&browser.wait("[data-testid=spoolman-client-name]"), "voron-moonraker");
    browser.click(&browser.wait("[data-testid=spoolman-client-add]"));
    browser.wait_text(
        "[data-testid=spoolman-client-url]",
        "the client's base URL",
        &["/spoolman/ksm."],
    );
    browser.wait_text("[data-testid=spoolman-clients]", "the client listed", &["voron-moonraker"]);
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the inventory page"
    );
    browser.screenshot(&shots, "5i-inventory");
    // Analytics: the failed print counted against its printer.
    browser.click(&browser.wait("[data-nav=analytics]"));
    browser.wait_text(
        "[data-testid=analytics-table]",
        "the failed print counted",
        &["00m09a351100002"],
    );
    // The demo's two weeks of reviewed prints and the review above: enough for an estimate.
    browser.wait_text(
        "[data-testid=estimate]",
        "an estimate from the demo's history",
        &["learned from 21 reviewed outcomes"],
    );
    assert_eq!(csp_violations(&browser), 0, "the analytics page broke the Content-Security-Policy");
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "analytics page text below WCAG AA");
    browser.screenshot(&shots, "5j-analytics");

    // The event log and the admin page.
    browser.goto(&format!("{base}/events"));
    browser.wait_all("[data-testid=events-table] tbody tr", 4);
    browser.screenshot(&shots, "6-events");
    // Filtering by kind: the URL carries the filter, and every row shown has that kind.
    browser.click(&browser.wait("[data-testid=events-kind] option[value=state_changed]"));
    browser.click(&browser.wait("[data-testid=events-apply]"));
    browser
        .wait("[data-testid=events-table] tbody:not(:has(tr:not([data-kind=state_changed]))) tr");
    assert!(browser.url().contains("kind=state_changed"), "{}", browser.url());
    let kinds = browser.execute(
        "return [...new Set([...document.querySelectorAll('[data-testid=events-table] tbody tr')]
           .map(r => r.dataset.kind))]",
    );
    assert_eq!(kinds, serde_json::json!(["state_changed"]));
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the events page"
    );
    browser.screenshot(&shots, "10-events-filtered");

    // The assistant: a conversation that ends in a confirmed pause. The printer paused
    // above; the assistant proposes resuming it, a person confirms, it prints; then pausing,
    // confirmed again, and it pauses. Nothing happens until the Confirm button is pressed.
    browser.goto(&format!("{base}/assistant"));
    browser.type_text(&browser.wait("[data-testid=assistant-input]"), "Resume the Workhorse P1S");
    browser.click_when_ready("[data-testid=assistant-send]");
    browser.wait_text("[data-testid=tool-call]", "the tool call", &["resume_printer"]);
    browser.wait_text(
        "[data-testid=pending-card] [data-testid=pending-state]",
        "a pending action",
        &["pending"],
    );
    browser.wait_text(
        "[data-testid=assistant-answer]",
        "the streamed answer",
        &["proposed resuming"],
    );
    browser.screenshot(&shots, "13-assistant-proposed");
    browser.click_when_ready("[data-state=pending] [data-testid=pending-confirm]");
    browser.wait("[data-testid=pending-card][data-state=confirmed]");
    let conversation = browser.url();
    assert!(conversation.contains("/assistant?c="), "{conversation}");
    browser.goto(&format!("{base}/printers/01P00C391800001"));
    browser.wait_text("[data-testid=printer-state]", "printing again", &["printing"]);
    // The conversation resumes from its URL.
    browser.goto(&conversation);
    browser.wait_text(
        "[data-testid=assistant-answer]",
        "the stored answer",
        &["proposed resuming"],
    );
    browser.type_text(&browser.wait("[data-testid=assistant-input]"), "Now pause it again");
    browser.click_when_ready("[data-testid=assistant-send]");
    browser.wait_all("[data-testid=pending-card]", 2);
    browser.wait_text(
        "[data-state=pending] [data-testid=pending-state]",
        "the second pending action",
        &["pending"],
    );
    browser.click_when_ready("[data-state=pending] [data-testid=pending-confirm]");
    browser.wait_all("[data-testid=pending-card][data-state=confirmed]", 2);
    browser.screenshot(&shots, "14-assistant-confirmed");
    assert_eq!(csp_violations(&browser), 0, "the assistant page broke the Content-Security-Policy");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the assistant page"
    );
    browser.goto(&format!("{base}/printers/01P00C391800001"));
    browser.wait_text(
        "[data-testid=printer-state]",
        "the pause the assistant proposed",
        &["paused"],
    );
    let asked = model.requests();
    assert_eq!(asked.len(), 4, "two turns, each a call and an answer: {asked:?}");

    // The memory: the demo's two documents, and a search by meaning that links to one.
    browser.click(&browser.wait("[data-nav=memory]"));
    browser.wait_all("[data-testid=memory-document]", 2);
    browser.wait_text("[data-testid=memory-summary]", "what the memory holds", &["embedded"]);
    browser
        .type_text(&browser.wait("[data-testid=memory-query]"), "which nozzle for carbon fibre?");
    browser.click_when_ready("[data-testid=memory-search]");
    let hits = browser.wait_text(
        "[data-testid=memory-hits]",
        "the nozzle guide found",
        &["x1 carbon nozzle guide.pdf"],
    );
    assert!(hits.contains("hardened steel"), "{hits}");
    browser.click(&browser.wait("[data-testid=memory-hit][data-kind=document] a"));
    browser.wait("[data-testid=memory-document-text]");
    assert!(browser.url().contains("/memory?document=demo-nozzles"), "{}", browser.url());
    // An operator's note, written on the page, is remembered like a document.
    browser.type_text(&browser.wait("[data-testid=memory-title]"), "Dryer note");
    browser.type_text(
        &browser.wait("[data-testid=memory-note]"),
        "Dry PETG in the cabinet dryer at 65 °C before any print over four hours.",
    );
    browser.click_when_ready("[data-testid=memory-add-submit]");
    browser.wait_all("[data-testid=memory-document]", 3);
    browser.wait_text("[data-testid=memory-documents]", "the note listed", &["dryer note"]);
    browser.screenshot(&shots, "15-memory");
    assert_eq!(csp_violations(&browser), 0, "the memory page broke the Content-Security-Policy");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the memory page"
    );
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "memory page text below WCAG AA");

    // The scheduler: the hub's own jobs, each schedule in words. The admin runs the daily
    // health report now; the job's history shows that run, asked for by hand and taken by a
    // replica, succeeded, and the report it wrote is there.
    browser.click(&browser.wait("[data-nav=scheduler]"));
    browser.wait_text(
        "[data-testid=scheduler-here]",
        "whether this replica runs jobs",
        &["this replica runs jobs"],
    );
    let report = "[data-testid=scheduler-job][data-job=daily-health-report]";
    browser.wait_text(report, "the daily health report's schedule", &["cron 0 7 * * * (utc)"]);
    browser.click(&browser.wait(&format!("{report} a[href='/scheduler?job=daily-health-report']")));
    browser.wait("[data-testid=scheduler-history-panel]");
    assert!(browser.url().contains("/scheduler?job=daily-health-report"), "{}", browser.url());
    // Its Run now button, found by its accessible name.
    browser.wait_for(
        "const button = [...document.querySelectorAll('main button')].find((b) => !b.disabled
           && b.textContent.replace(/\\s+/g, ' ').trim() === 'Run now daily-health-report');
         if (button) button.click();
         return Boolean(button) || null;",
        "an enabled button named Run now daily-health-report",
    );
    browser.wait_text("#toasts", "the run's notice", &["asked to run now"]);
    // Its end is announced (the page follows `scheduler_run` over the WebSocket).
    browser.wait_text("#toasts", "the run's end", &["daily-health-report succeeded"]);
    let run = "[data-testid=scheduler-history] [data-testid=scheduler-run]\
               [data-manual=true][data-state=succeeded]";
    browser.wait_text(run, "the run by hand, succeeded", &["by hand: admin"]);
    let replica = browser.execute(&format!(
        "return document.querySelector({}).querySelector('td[data-label=Replica]').textContent",
        serde_json::Value::from(run)
    ));
    assert!(replica.as_str().is_some_and(|r| r.contains('/')), "the run's replica: {replica}");
    browser.wait_text(
        "[data-testid=scheduler-report-summary]",
        "the health report the run wrote",
        &["printers"],
    );
    // The canary form's cron fields are labelled too.
    browser.click(&browser.wait("[data-testid=scheduler-add-kind] option[value=cron]"));
    browser.wait("[data-testid=scheduler-add-zone]");
    browser.screenshot(&shots, "16-scheduler");
    assert_eq!(csp_violations(&browser), 0, "the scheduler page broke the Content-Security-Policy");
    assert_eq!(
        unlabelled(&browser),
        serde_json::json!([]),
        "unlabelled controls on the scheduler page"
    );
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "scheduler page text below WCAG AA");

    browser.goto(&format!("{base}/admin"));
    browser.wait_all("[data-testid=users-table] tbody tr", 1);
    browser.screenshot(&shots, "7-admin");
    // Creating an API token shows it once and lists it.
    browser.type_text(&browser.wait("[data-testid=token-label]"), "nightly script");
    browser.click(&browser.wait("[data-testid=token-create]"));
    browser.wait_text("[data-testid=token-created]", "the new token", &["kitt_"]);
    browser.wait_text("[data-testid=tokens-table]", "the token in the list", &["nightly script"]);
    browser.screenshot(&shots, "11-admin-token");

    // Text contrast: every visible text element against its nearest opaque background
    // meets WCAG AA (4.5:1; 3:1 for large text).
    assert_eq!(low_contrast(&browser), serde_json::json!([]), "text below WCAG AA contrast");
    assert_eq!(csp_violations(&browser), 0, "the admin page broke the Content-Security-Policy");

    // Basic accessibility: every form control is labelled, commands are real buttons, the
    // page declares its language, and keyboard focus moves to links and buttons.
    assert_eq!(unlabelled(&browser), serde_json::json!([]), "unlabelled controls");
    assert_eq!(browser.execute("return document.documentElement.lang"), "en");
    let focusable = browser.execute(
        "const first = document.querySelector('a[href], button'); first.focus();
         return document.activeElement === first",
    );
    assert_eq!(focusable, true);
    // Moving to another page from the navigation puts focus on its heading.
    browser.click(&browser.wait("[data-nav=agents]"));
    browser.wait("h1[tabindex='-1']");
    let focused = browser.execute("return document.activeElement.outerHTML");
    assert!(focused.as_str().is_some_and(|h| h.contains("Agents")), "focus is on {focused}");

    // A phone.
    browser.resize(390, 844);
    browser.goto(&format!("{base}/"));
    browser.wait_all("[data-testid=printer-card]", 6);
    let overflow =
        browser.execute("return document.documentElement.scrollWidth > window.innerWidth + 1");
    assert_eq!(overflow, false, "the fleet page scrolls sideways on a phone");
    let path = browser.screenshot(&shots, "8-fleet-phone");
    assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    // The printer page with its camera and snapshots fits a phone too.
    browser.goto(&format!("{base}/printers/01P00C391800001"));
    browser.wait("[data-testid=camera-pane] [data-testid=camera]");
    browser.wait("[data-testid=snapshot-timeline] [data-testid=snapshot-item]");
    let overflow =
        browser.execute("return document.documentElement.scrollWidth > window.innerWidth + 1");
    assert_eq!(overflow, false, "the printer page scrolls sideways on a phone");
    assert_eq!(csp_violations(&browser), 0, "the printer page broke the Content-Security-Policy");
    // So does the files page.
    browser.goto(&format!("{base}/files"));
    browser.wait("[data-testid=file-card]");
    assert_eq!(
        sideways(&browser),
        serde_json::json!([]),
        "the files page scrolls sideways on a phone"
    );
    browser.screenshot(&shots, "12b-files-phone");
    // And the queue.
    browser.goto(&format!("{base}/queue"));
    browser.wait("[data-testid=job-row]");
    assert_eq!(
        sideways(&browser),
        serde_json::json!([]),
        "the queue page scrolls sideways on a phone"
    );
    browser.screenshot(&shots, "12c-queue-phone");
    // The event log's table stacks into cards on a phone.
    browser.goto(&format!("{base}/events"));
    browser.wait_all("[data-testid=events-table] tbody tr", 4);
    let overflow =
        browser.execute("return document.documentElement.scrollWidth > window.innerWidth + 1");
    assert_eq!(overflow, false, "the events page scrolls sideways on a phone");
    browser.screenshot(&shots, "12-events-phone");
    drop(browser);
    demo.terminate();
}

/// Set (to anything) in the copy of the test below that runs inside its network namespace.
const IN_NETNS: &str = "BROWSER_TEST_NETNS";

/// Issue 16: an admin adds a printer an agent heard on its LAN. Runs in a network namespace
/// the test makes (its own loopback, multicast on): the demo's simulators announce themselves
/// there as real printers do, the agents hear them, and nothing reaches the host's LAN. The
/// test runs itself again inside the namespace, hub, agents, simulators and browser included.
#[test]
fn the_dashboard_adds_a_printer_an_agent_heard_on_its_lan() {
    if std::env::var_os(IN_NETNS).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .args(["--net", "--", "sh", "-c"])
            .arg(
                "ip link set lo up && ip link set lo multicast on && \
                 ip route add 224.0.0.0/4 dev lo && exec \"$0\" \"$@\"",
            )
            .arg(exe)
            .args(["--exact", "browser::the_dashboard_adds_a_printer_an_agent_heard_on_its_lan"])
            .args(["--nocapture", "--test-threads", "1"])
            .env(IN_NETNS, "1")
            .status()
            .expect("cannot run unshare: the test needs root and network namespaces");
        assert!(status.success(), "the test inside its network namespace failed ({status})");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let demo = Process::spawn(
        Command::new(bin("kitt-hub"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["demo", "--http-listen", &format!("127.0.0.1:{port}")])
            .env("KITT_LOG", "warn")
            .env_remove(IN_NETNS),
    );
    let banner = demo.wait_line("log in as admin with password");
    let password = banner.rsplit(' ').next().unwrap().to_owned();
    let base = format!("http://localhost:{port}");
    let shots = artifacts_dir("browser-discovered");
    let driver = Driver::start();
    let browser = driver.session(1280, 900);
    browser.goto(&format!("{base}/login"));
    browser.type_text(&browser.wait("[data-testid=login-name]"), "admin");
    browser.type_text(&browser.wait("[data-testid=login-password]"), &password);
    browser.click(&browser.wait("[data-testid=login-submit]"));
    browser.wait_all("[data-testid=printer-card]", 6);

    // The desk's agent heard the others' printers; it adds the Neptune's Moonraker.
    browser.goto(&format!("{base}/agents"));
    browser.click(&browser.wait("[data-agent-id=pi-desk] [data-testid=manage-printers]"));
    let panel = "[data-testid=managed-printers][data-agent=pi-desk]";
    browser.wait(panel);
    // Heard within seconds of the agent starting; the open panel follows what it hears.
    browser.wait(&format!("{panel} [data-testid=discovered-list] [data-discovered^='http://']"));
    browser.wait(&format!(
        "{panel} [data-testid=discovered-list] [data-discovered='01P00C391800001']"
    ));
    browser.screenshot(&shots, "1-discovered");
    let neptune = browser.execute(
        "return [...document.querySelectorAll('[data-testid=discovered-list] li')]
           .find(li => li.textContent.includes('neptune'))?.dataset.discovered ?? null",
    );
    let neptune = neptune.as_str().expect("the Neptune's Moonraker among the heard").to_owned();
    browser.click(&browser.wait(&format!("[data-discovered='{neptune}'] button")));
    browser.wait("[data-testid=managed-form] [data-field=url]");
    let filled = browser.execute(
        "const form = document.querySelector('[data-testid=managed-form]');
         return ['kind', 'id', 'url'].map(f => form.querySelector(`[data-field=${f}]`).value)",
    );
    assert_eq!(filled, serde_json::json!(["moonraker", "neptune-4-pro", neptune]));
    browser.click(&browser.wait("[data-testid=managed-save]"));
    browser.wait("[data-managed-id=neptune-4-pro][data-status=applied]");
    browser.screenshot(&shots, "2-added-from-discovered");
    browser.goto(&format!("{base}/printers/neptune-4-pro"));
    browser.wait_text(
        "[data-testid=printer-state]",
        "the added Klipper printer",
        &["printing", "idle", "finished"],
    );
    drop(browser);
    demo.terminate();
}
