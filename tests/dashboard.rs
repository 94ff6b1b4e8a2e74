//! The web dashboard (`/ui`) in a real headless browser: Debian's `chromium`, driven through
//! `chromedriver` (WebDriver) with fantoccini, against the real `async-jobs dev` binary on real
//! Postgres (a fresh schema) with its in-process worker running the sample handlers.
//!
//! The flows: a failing job enqueued through the API reaches `dead` in the jobs list while the
//! page stays open (live refresh), its page shows it, Retry makes it pending again; a tenant key
//! sees nothing of another tenant anywhere; a payload holding `<script>` is shown as text; a form
//! posted without its CSRF token (or from another origin) is refused. It also takes the
//! screenshots of the main pages (`dashboard-screenshots/` in the target directory, and `docs/screenshots/` with
//! `ASYNC_JOBS_UPDATE_SCREENSHOTS=1`).
//!
//! Without `chromium` and `chromedriver` the test is skipped with a loud message, except under
//! CI (`CI=true`), where it fails: `scripts/test.sh` installs them
//! (`apt-get install chromium chromium-driver`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const OPERATOR: &str = "dashboard-operator-token";
const ACME_KEY: &str = "dashboard-acme-key";
const GLOBEX_KEY: &str = "dashboard-globex-key";
const WAIT: Duration = Duration::from_secs(30);

/// Kills the child when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/lib/chromium".into()])
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The browser and its driver, or `None` (and a loud message) when they are not installed and
/// this is not CI.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true but chromium/chromedriver are missing: scripts/test.sh installs them \
             (apt-get install -y chromium chromium-driver)"
        ),
        _ => {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 SKIPPED tests/dashboard.rs: chromium and/or chromedriver are not installed.\n\
                 Install them (sudo apt-get install -y chromium chromium-driver) or run\n\
                 scripts/test.sh, which does. Under CI=true this is a failure.\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            None
        }
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(start.elapsed() < WAIT, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns `Some`, or fails after [`WAIT`] saying `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Dashboard {
    base: String,
    http: reqwest::Client,
    browser: Client,
    shots: PathBuf,
}

impl Dashboard {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Enqueues through the JSON API with the operator token.
    async fn enqueue(&self, body: Value) -> String {
        let r = self
            .http
            .post(self.url("/jobs"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let job: Value = r.json().await.unwrap();
        job["id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, id: &str) -> String {
        let job: Value = self
            .http
            .get(self.url(&format!("/jobs/{id}")))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        job["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn login(&self, key: &str) {
        self.browser.goto(&self.url("/ui/login")).await.unwrap();
        self.browser
            .find(Locator::Id("key"))
            .await
            .unwrap()
            .send_keys(key)
            .await
            .unwrap();
        self.click("form.login button[type=submit]").await;
        // Signed in: the Secure cookie works on http://127.0.0.1.
        self.wait_text("h1", "Overview").await;
    }

    async fn logout(&self) {
        self.click("header form button[type=submit]").await;
        self.wait_text("h1", "Sign in").await;
    }

    async fn click(&self, css: &str) {
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.browser
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Waits until the element `css` (after a navigation: of the new page) contains `needle`.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        eventually(&format!("{css} to show {needle:?}"), || async {
            let el = self.browser.find(Locator::Css(css)).await.ok()?;
            let text = el.text().await.ok()?;
            text.contains(needle).then_some(text)
        })
        .await
    }

    async fn source(&self) -> String {
        self.browser.source().await.unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.browser.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        std::fs::create_dir_all(&self.shots).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), &png).unwrap();
        if std::env::var("ASYNC_JOBS_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// A session cookie for `key`, opened by a plain HTTP client (not a browser).
    async fn session_cookie(&self, key: &str) -> String {
        let r = self
            .http
            .post(self.url("/ui/login"))
            .header("content-type", FORM)
            .body(form(&[("key", key)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        set.split(';').next().unwrap().to_owned()
    }
}

/// A `run_at` a day ahead: the job waits, untouched by the worker.
fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(1)).to_rfc3339()
}

const FORM: &str = "application/x-www-form-urlencoded";

/// An urlencoded form body.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn email(to: &str, extra: Value) -> Value {
    let mut payload = json!({"to": to, "subject": "hi", "body": "hello"});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser() else {
        return;
    };
    // The platform: `async-jobs dev` on Postgres (a fresh schema), the scheduler and a worker
    // with the sample handlers in the process, an operator token and two tenant keys.
    jobs_testdb::admin_client().await;
    let schema = jobs_testdb::fresh_schema("dashboard");
    let port = common::free_port();
    let keys = json!({
        jobs_http::auth::hash_key(ACME_KEY): "acme",
        jobs_http::auth::hash_key(GLOBEX_KEY): "globex",
    });
    let mut dev = Command::new(common::binary("async-jobs"));
    dev.arg("dev")
        .env("ASYNC_JOBS_API_ADDR", format!("127.0.0.1:{port}"))
        .env("ASYNC_JOBS_DB_DSN", common::database_url())
        .env("ASYNC_JOBS_DB_SCHEMA", &schema)
        .env("ASYNC_JOBS_HEALTH_ADDR", "off")
        .env("ASYNC_JOBS_ENQUEUE_AUTH_TOKEN", OPERATOR)
        .env("ASYNC_JOBS_API_KEYS", keys.to_string())
        .env("ASYNC_JOBS_SCHEDULER_TICK_MS", "200")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, _) in std::env::vars() {
        if k.starts_with("ASYNC_JOBS_SQS_QUEUE_") || k == "ASYNC_JOBS_STORE" {
            dev.env_remove(k);
        }
    }
    let mut dev = Proc(dev.spawn().unwrap());
    wait_for_port(port, "async-jobs dev", &mut dev.0);

    let driver_port = common::free_port();
    let mut driver = Proc(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(driver_port, "chromedriver", &mut driver.0);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,900", "--hide-scrollbars", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromium session through chromedriver");
    let d = std::sync::Arc::new(Dashboard {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        browser,
        shots: std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
                PathBuf::from,
            )
            .join("dashboard-screenshots"),
    });

    // The flows run in a task, so that a failed assertion still lets the browser close first.
    let flows = tokio::spawn({
        let d = d.clone();
        async move {
            failing_job_dead_in_the_list_then_retried(&d).await;
            xss_payload_renders_as_text(&d).await;
            forms_without_their_csrf_token_are_refused(&d).await;
            a_tenant_key_sees_only_its_tenant(&d).await;
        }
    })
    .await;
    let _ = d.browser.clone().close().await;
    drop(driver);
    drop(dev);
    match flows {
        Ok(()) => {
            let admin = jobs_testdb::admin_client().await;
            let _ = admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{e}"),
    }
}

async fn failing_job_dead_in_the_list_then_retried(d: &Dashboard) {
    d.browser.goto(&d.url("/ui/login")).await.unwrap();
    d.screenshot("login").await;
    d.login(OPERATOR).await;

    // Pause notifications from the overview, so the job waits pending while the list is open.
    d.click("section[aria-labelledby=uc-notifications] .actions button")
        .await;
    d.wait_text("main", "Paused.").await;
    let id = d
        .enqueue(json!({
            "tenant_id": "acme", "use_case": "notifications", "type": "send_email",
            "payload": email("ada@example.com", json!({"fail": "permanent"})),
        }))
        .await;
    // A few jobs that succeed, for the charts.
    for n in 0..6 {
        d.enqueue(json!({
            "tenant_id": "acme", "use_case": "message_labeling", "type": "label_message",
            "payload": {"message_id": format!("m{n}"), "text": format!("invoice {n} overdue")},
        }))
        .await;
    }
    d.browser.goto(&d.url("/ui/jobs")).await.unwrap();
    let row = format!("a[href$='/ui/jobs/{id}']");
    d.browser.find(Locator::Css(&row)).await.unwrap();
    let text = d
        .browser
        .execute(
            &format!("return document.querySelector(\"{row}\").closest('tr').textContent;"),
            vec![],
        )
        .await
        .unwrap();
    assert!(text.as_str().unwrap().contains("pending"), "{text}");
    // Mark this page: a reload would lose the mark.
    d.browser
        .execute("window.__stillHere = true;", vec![])
        .await
        .unwrap();
    // Resume through the JSON API; the open page sees the job die without a reload.
    let r = d
        .http
        .delete(d.url("/pauses/notifications"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the job to die", || async {
        (d.status(&id).await == "dead").then_some(())
    })
    .await;
    let row_text = format!("return document.querySelector(\"{row}\").closest('tr').textContent;");
    eventually("the list to show it dead without a reload", || async {
        let text = d.browser.execute(&row_text, vec![]).await.ok()?;
        text.as_str()?.contains("dead").then_some(())
    })
    .await;
    let kept = d
        .browser
        .execute("return window.__stillHere === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(true), "the list refreshed in place");
    d.screenshot("jobs").await;

    // Open it: status, attempts, the last error, the payload as JSON, the timeline.
    d.click(&row).await;
    let page = d.wait_text("main", "Last error").await;
    assert!(page.contains("dead"), "{page}");
    assert!(page.contains("simulated permanent failure"), "{page}");
    assert!(page.contains("1 of"), "attempts: {page}");
    assert!(
        page.contains("\"to\": \"ada@example.com\""),
        "pretty JSON: {page}"
    );
    for moment in ["Created", "Deadline", "First started", "Finished"] {
        assert!(page.contains(moment), "timeline has {moment}: {page}");
    }
    d.screenshot("job").await;

    // Pause again, so the retried job stays pending, then click Retry.
    d.http
        .put(d.url("/pauses/notifications"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    d.click("#retry").await;
    d.wait_text("main", "Retried").await;
    assert!(
        d.text("#job").await.contains("pending"),
        "the status changed"
    );
    assert_eq!(d.status(&id).await, "pending");
    // The overview: paused, counts, charts, the recent failure gone (pending now).
    d.browser.goto(&d.url("/ui")).await.unwrap();
    let overview = d.text("main").await;
    assert!(overview.contains("paused"), "{overview}");
    assert!(overview.contains("Jobs finished per minute"), "{overview}");
    assert!(overview.contains("Backlog"), "{overview}");
    eventually("the charts to count the finished jobs", || async {
        d.browser.refresh().await.ok()?;
        let s = d.source().await;
        (s.contains("6 succeeded")).then_some(())
    })
    .await;
    // Resume from the overview.
    d.click("section[aria-labelledby=uc-notifications] .actions button")
        .await;
    d.wait_text("main", "Resumed").await;
    eventually("the retried job to run (and fail) again", || async {
        (d.status(&id).await == "dead").then_some(())
    })
    .await;
    d.browser.goto(&d.url("/ui")).await.unwrap();
    d.screenshot("overview").await;

    // Bulk retry of the dead jobs, after the confirmation page.
    d.http
        .put(d.url("/pauses/notifications"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    // The overview's counts are up to five seconds old: wait for the dead job to be counted.
    let bulk = "section[aria-labelledby=uc-notifications] a.button";
    eventually("the bulk retry link", || async {
        d.browser.refresh().await.ok()?;
        d.browser.find(Locator::Css(bulk)).await.ok()
    })
    .await;
    d.click(bulk).await;
    d.wait_text("h1", "Retry dead jobs").await;
    assert_eq!(
        d.status(&id).await,
        "dead",
        "nothing happens before the confirmation"
    );
    d.click("#confirm").await;
    d.wait_text("main", "Retried 1 of").await;
    assert_eq!(d.status(&id).await, "pending");
    d.http
        .delete(d.url("/pauses/notifications"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
}

async fn xss_payload_renders_as_text(d: &Dashboard) {
    let script = "<script>window.__xss = 1</script>";
    let img = "<img src=x onerror=\"window.__xss = 2\">";
    let id = d
        .enqueue(json!({
            "tenant_id": "acme", "use_case": "message_labeling", "type": "label_message",
            "payload": {"message_id": "x", "text": script, "note": img},
            "run_at": tomorrow(),
        }))
        .await;
    d.browser
        .goto(&d.url(&format!("/ui/jobs/{id}")))
        .await
        .unwrap();
    let shown = d.text("#payload").await;
    assert!(shown.contains(script), "shown as text: {shown}");
    assert!(shown.contains("onerror"), "{shown}");
    let ran = d
        .browser
        .execute("return typeof window.__xss;", vec![])
        .await
        .unwrap();
    assert_eq!(ran, json!("undefined"), "no script of the payload ran");
    let scripts = d
        .browser
        .find_all(Locator::Css("main script, main img"))
        .await
        .unwrap();
    assert!(scripts.is_empty(), "no element was made from the payload");
    // The list shows it too, as text.
    d.browser
        .goto(&d.url("/ui/jobs?type=label_message"))
        .await
        .unwrap();
    let ran = d
        .browser
        .execute("return typeof window.__xss;", vec![])
        .await
        .unwrap();
    assert_eq!(ran, json!("undefined"));
}

async fn forms_without_their_csrf_token_are_refused(d: &Dashboard) {
    let id = d
        .enqueue(json!({
            "tenant_id": "acme", "use_case": "notifications", "type": "send_email",
            "payload": email("csrf@example.com", json!({})),
            "run_at": tomorrow(),
        }))
        .await;
    // In the browser, signed in: a form to cancel the job, without the token.
    d.browser
        .goto(&d.url(&format!("/ui/jobs/{id}")))
        .await
        .unwrap();
    let forge = format!(
        "var f = document.createElement('form'); f.method = 'post'; \
         f.action = '/ui/jobs/{id}/cancel'; document.body.appendChild(f); f.submit();"
    );
    d.browser.execute(&forge, vec![]).await.unwrap();
    eventually("the refusal page", || async {
        let h1 = d
            .browser
            .find(Locator::Css("h1"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (h1 == "Request refused").then_some(())
    })
    .await;
    assert!(d.text("main").await.contains("CSRF"));
    assert_eq!(d.status(&id).await, "pending", "nothing was cancelled");
    // A wrong token too.
    d.browser
        .goto(&d.url(&format!("/ui/jobs/{id}")))
        .await
        .unwrap();
    d.browser
        .execute(
            "document.querySelector('form[action$=\"/cancel\"] input[name=csrf]').value = 'forged';",
            vec![],
        )
        .await
        .unwrap();
    d.click("#cancel").await;
    d.wait_text("h1", "Request refused").await;
    assert_eq!(d.status(&id).await, "pending");

    // Over plain HTTP with a valid session: no token, a wrong token, or the right token from
    // another origin are all 403; the right token from the page works.
    let cookie = d.session_cookie(OPERATOR).await;
    let page = d
        .http
        .get(d.url(&format!("/ui/jobs/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_owned();
    let post = |body: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut req = d
            .http
            .post(d.url(&format!("/ui/jobs/{id}/cancel")))
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body(form(
                &body
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            ));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    for (body, origin) in [
        (vec![], None),
        (vec![("csrf", "nope".to_owned())], None),
        (vec![("csrf", token.clone())], Some("http://evil.example")),
    ] {
        let r = post(body, origin).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    assert_eq!(d.status(&id).await, "pending");
    let r = post(vec![("csrf", token)], None).await.unwrap();
    assert_eq!(r.status(), 303, "the page's own token is accepted");
    assert_eq!(d.status(&id).await, "cancelled");
    // Cookie attributes as the browser stored them.
    let cookies = d.browser.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "async_jobs_session")
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert_eq!(session.path(), Some("/ui"));
    assert!(!session.value().contains(OPERATOR));
}

async fn a_tenant_key_sees_only_its_tenant(d: &Dashboard) {
    let secret = "globex-only-marker";
    let theirs = d
        .enqueue(json!({
            "tenant_id": "globex", "use_case": "notifications", "type": "send_email",
            "payload": email("g@globex.example", json!({"fail": "permanent", "secret": secret})),
        }))
        .await;
    eventually("globex's job to die", || async {
        (d.status(&theirs).await == "dead").then_some(())
    })
    .await;
    d.logout().await;
    d.login(ACME_KEY).await;
    d.wait_text("header", "tenant acme").await;
    let pages = [
        "/ui".to_owned(),
        "/ui?tenant_id=globex".to_owned(),
        "/ui/jobs".to_owned(),
        "/ui/jobs?tenant_id=globex".to_owned(),
        "/ui/jobs?status=dead".to_owned(),
        "/ui/jobs?use_case=notifications&status=dead&tenant_id=globex".to_owned(),
        "/ui/bulk-retry?use_case=notifications&tenant_id=globex".to_owned(),
        format!("/ui/jobs/{theirs}"),
    ];
    for page in &pages {
        d.browser.goto(&d.url(page)).await.unwrap();
        let source = d.source().await;
        assert!(!source.contains("globex"), "{page} shows globex: {source}");
        assert!(!source.contains(&theirs), "{page} shows globex's job");
        assert!(!source.contains(secret), "{page} shows globex's payload");
    }
    // Its own job page is not found, exactly like a job that does not exist.
    d.browser
        .goto(&d.url(&format!("/ui/jobs/{theirs}")))
        .await
        .unwrap();
    d.wait_text("h1", "No such job").await;
    // No pause controls for a tenant, and a forged pause is refused.
    d.browser.goto(&d.url("/ui")).await.unwrap();
    assert!(!d.source().await.contains("Pause notifications"));
    let cookie = d.session_cookie(ACME_KEY).await;
    let page = d
        .http
        .get(d.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let r = d
        .http
        .post(d.url("/ui/pauses"))
        .header("cookie", &cookie)
        .header("content-type", FORM)
        .body(form(&[
            ("csrf", token.as_str()),
            ("use_case", "notifications"),
            ("action", "pause"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "only the operator pauses");
}
