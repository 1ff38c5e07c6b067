//! The web console in a real browser: a node on loopback, Debian's chromium driven by its
//! chromedriver through fantoccini (WebDriver). Every browser and driver process a test
//! starts is in one process group, killed by its id when the test's `Browser` drops (also
//! on failure); every wait is bounded.
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/console-screenshots/`; with
//! `IDNODE_UPDATE_SCREENSHOTS=1` they are also copied to `docs/`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use idnode::api::grpc::pb;
use idnode::config::ConsoleConfig;
use serde_json::{json, Value as Json};

use crate::support::{self, record, register_request, text, TestNode};

/// Longest any single wait for the page may take.
const WAIT: Duration = Duration::from_secs(20);
/// Longest a whole browser test may take.
const TEST: Duration = Duration::from_secs(180);
const PUBLIC_URL: &str = "https://id.example.cn";

/// A chromedriver and the chromium it starts, in their own process group.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// A browser with extra chromium flags.
    async fn start_with(extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new("chromedriver");
        command
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own process group: the browser it starts goes into it too, so one kill of the
        // group ends everything this test started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = command
            .spawn()
            .expect("chromedriver runs (scripts/setup installs chromium-driver)");
        // "ChromeDriver was started successfully on port N." on stdout, within 20 s.
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('.').trim().to_owned());
                }
            }
        });
        let mut browser = Browser {
            client: None,
            driver,
            _profile: profile,
        };
        let port = rx
            .recv_timeout(WAIT)
            .expect("chromedriver announces its port");
        let profile_arg = format!("--user-data-dir={}", browser._profile.path().display());
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            "--lang=zh-CN",
            &profile_arg,
        ];
        args.extend_from_slice(extra);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromium starts in time")
        .expect("a WebDriver session");
        browser.client = Some(client);
        browser
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.unwrap();
    }

    /// Waits for an element matching `css`.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c()
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let page = self
                    .c()
                    .execute(
                        "return location.href + '\\n' + document.body.innerText",
                        vec![],
                    )
                    .await
                    .unwrap_or_default();
                panic!("no {css} within {WAIT:?}: {e}; the page: {page}")
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn text_until(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = match self.c().find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ok(&found) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{css} never matched; last text: {found:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn js(&self, script: &str) -> Json {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// Signs in with `token` through the sign-in page.
    async fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/console/signin")).await;
        self.fill("#token", token).await;
        self.click("#signin-submit").await;
        self.text_until("#who", |t| !t.is_empty()).await;
    }

    /// Saves a screenshot under the target directory (and in docs/ when asked).
    async fn screenshot(&self, name: &str) {
        let png = self.c().screenshot().await.unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        if std::env::var("IDNODE_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("console-{name}.png")), &png).unwrap();
        }
    }

    /// Ends the session (chromium exits), then the driver.
    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(WAIT, c.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group by its id (the driver's pid): driver, chromium and its helpers.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A seeded node with the console on, links under [`PUBLIC_URL`].
async fn node_with(
    change: impl FnOnce(&mut idnode::config::Config),
) -> (TestNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path(), true);
    config.console = Some(ConsoleConfig {
        public_url: Some(PUBLIC_URL.into()),
    });
    change(&mut config);
    let node = TestNode::start_with(config).await;
    (node, dir)
}

fn base(node: &TestNode) -> String {
    format!("http://{}", node.http_addr.unwrap())
}

async fn registered(node: &TestNode) -> i64 {
    node.registry(Some(&node.admin_token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_registered
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST, test)
        .await
        .expect("the browser test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_registers_through_the_template_form_and_sees_it_in_its_list() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.sign_in(&base, &node.seed_token("88.101.5")).await;
        assert!(b.c().current_url().await.unwrap().path().ends_with("/console/enterprise"));
        // The form is the automotive template's (the first): its required attributes.
        b.find("#reg-form [name='attr-partNumber'][required]").await;
        b.fill("#reg-suffix", "FORM-0001").await;
        b.fill("#reg-url", "https://trace.example-auto.cn/p/FORM-0001").await;
        b.fill("[name='attr-partNumber']", "CC-FORM-1").await;
        b.fill("[name='attr-partName']", "表单零件").await;
        b.fill("[name='attr-batchNo']", "B-1").await;
        // A date that is no date: the page refuses it and sends nothing.
        b.fill("[name='attr-productionDate']", "2025-02-30").await;
        b.click("#reg-submit").await;
        let msg = b.text("[data-key='productionDate'] .msg").await;
        assert!(msg.contains("生产日期"), "{msg}");
        let before = registered(&node).await;
        // The node checks again: the same record sent directly is refused.
        let http = reqwest::Client::new();
        let refused = http
            .post(format!("{base}/console/api/record"))
            .bearer_auth(node.seed_token("88.101.5"))
            .json(&json!({ "identifier": "88.101.5/FORM-0001", "values": [
                { "index": 2, "type": "partNumber", "data": "CC-FORM-1" },
                { "index": 1000, "type": "TEMPLATE_ID", "data": "88.101/TPL-AUTO-PARTS" }
            ]}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let body: Json = refused.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("partName"), "{body}");
        assert_eq!(registered(&node).await, before);

        b.fill("[name='attr-productionDate']", "2025-02-28").await;
        b.fill("[name='attr-quantity']", "240").await;
        b.find("select[name='class-batchNo'] option[value='private']")
            .await
            .click()
            .await
            .unwrap();
        b.click("#reg-submit").await;
        let ok = b.text("#reg-ok").await;
        assert!(ok.contains("88.101.5/FORM-0001"), "{ok}");
        assert_eq!(registered(&node).await, before + 1);
        b.js("window.scrollTo(0, 0); return null").await;
        b.screenshot("enterprise").await;

        // The list shows it (searched by the start of its suffix), and its record view
        // every value with its classification.
        b.goto(&format!("{base}/console/enterprise#list")).await;
        b.fill("#list-q", "FORM-").await;
        b.click("#list-form button[type='submit']").await;
        let listed = b
            .text_until("#list-table", |t| t.contains("88.101.5/FORM-0001"))
            .await;
        assert!(!listed.contains("BAT-2024"), "search narrows: {listed}");
        b.click("#list-table a[href^='#record=']").await;
        b.text_until("#record-id", |t| t == "88.101.5/FORM-0001").await;
        let classes = b
            .js("return [...document.querySelectorAll('#record-table select.classification')].map(s => s.value)")
            .await;
        assert_eq!(
            classes,
            json!(["public", "public", "public", "private", "public", "public", "public"])
        );
        // The owner's record holds the private value; the public resolution does not.
        let public = node
            .resolver(None)
            .resolve(support::resolve("88.101.5/FORM-0001"))
            .await
            .unwrap()
            .into_inner();
        assert!(public.values.iter().all(|v| v.r#type != "batchNo"));
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_upload_with_one_bad_row_reports_that_row_and_registers_the_others() {
    bounded(async {
        // A body limit of 64 KiB: the file below (about 150 KiB) must go up in chunks.
        let (node, _dir) = node_with(|c| c.admission.max_http_body_bytes = 64 << 10).await;
        let base = base(&node);
        let mut csv = String::from("identifier,index,type,data,ttl,classification\n");
        let mut line = 1;
        let mut bad_line = 0;
        for i in 0..1200 {
            if i == 700 {
                csv.push_str("88.101.5/UP-BAD,x,URL,https://e.cn/bad,,\n");
                line += 1;
                bad_line = line;
            }
            csv.push_str(&format!(
                "88.101.5/UP-{i:05},1,URL,https://trace.example-auto.cn/p/UP-{i:05}/with/a/longer/path,,public\n\
                 88.101.5/UP-{i:05},2,note,\"lot {i}, checked\",600,private\n"
            ));
            line += 2;
        }
        assert!(csv.len() > 2 * (64 << 10));
        let file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        std::fs::write(file.path(), &csv).unwrap();
        let before = registered(&node).await;

        let b = Browser::start().await;
        b.sign_in(&base, &node.seed_token("88.101.5")).await;
        b.goto(&format!("{base}/console/enterprise#upload")).await;
        b.find("#upload-file")
            .await
            .send_keys(&file.path().display().to_string())
            .await
            .unwrap();
        b.click("#upload-submit").await;
        let result = b.find("#upload-result").await;
        let attr = |name: &'static str| {
            let result = result.clone();
            async move { result.attr(name).await.unwrap().unwrap() }
        };
        assert_eq!(attr("data-registered").await, "1200");
        assert_eq!(attr("data-failed").await, "1");
        let requests: usize = attr("data-requests").await.parse().unwrap();
        assert!(requests >= 3, "chunked below the body limit: {requests} requests");
        let progress = b.js("return document.getElementById('upload-progress').value").await;
        assert_eq!(progress, json!(100));
        let row = b.find("tr.upload-error").await;
        assert_eq!(row.attr("data-line").await.unwrap(), Some(bad_line.to_string()));
        let row_text = row.text().await.unwrap();
        assert!(row_text.contains("index"), "{row_text}");
        let href = b.find("#upload-download").await.attr("href").await.unwrap();
        assert!(href.unwrap().starts_with("blob:"));
        assert_eq!(registered(&node).await, before + 1200);
        // A record whose two rows met across a chunk boundary keeps both values.
        let owner = node
            .registry(Some(&node.seed_token("88.101.5")))
            .get(pb::GetRequest {
                identifier: "88.101.5/UP-00999".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(owner.record.unwrap().values.len(), 2);

        // The list pages through them, 20 at a time, forward and back.
        b.goto(&format!("{base}/console/enterprise#list")).await;
        b.fill("#list-q", "UP-0").await;
        b.click("#list-form button[type='submit']").await;
        let first_page = |t: &str| t.contains("88.101.5/UP-00000") && t.contains("88.101.5/UP-00019");
        b.text_until("#list-table", |t| first_page(t) && !t.contains("UP-00020"))
            .await;
        b.click("#list-next").await;
        b.text_until("#list-table", |t| {
            t.contains("88.101.5/UP-00020") && t.contains("88.101.5/UP-00039") && !t.contains("UP-00019")
        })
        .await;
        b.click("#list-prev").await;
        b.text_until("#list-table", first_page).await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_resolves_and_its_qr_code_decodes_to_the_link() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.goto(&format!("{base}/88.101.5/BAT-2024-000001")).await;
        let table = b.text("#values").await;
        // Template display names, the URL value as a link, timestamps.
        assert!(
            table.contains("零件号") && table.contains("CC-ENG-0916"),
            "{table}"
        );
        let link = b.find("#values a.value-link").await;
        assert_eq!(
            link.attr("href").await.unwrap().as_deref(),
            Some("https://trace.example-auto.cn/p/BAT-2024-000001")
        );
        assert_eq!(
            link.attr("rel").await.unwrap().as_deref(),
            Some("noopener noreferrer nofollow")
        );
        let when = b.text("#values tbody tr:first-child td:last-child").await;
        assert!(
            when.chars().filter(char::is_ascii_digit).count() >= 8,
            "{when}"
        );
        let expected = format!("{PUBLIC_URL}/88.101.5/BAT-2024-000001");
        assert_eq!(b.text("#qr-link").await, expected);
        // The SVG loaded in the page.
        b.find("#qr").await;
        let loaded = b
            .js("const i = document.getElementById('qr'); return i.complete && i.naturalWidth > 0")
            .await;
        assert_eq!(loaded, json!(true));
        b.screenshot("public").await;

        // The PNG the page offers decodes to the link.
        let png_href = b.find("#qr-png").await.attr("href").await.unwrap().unwrap();
        let png = reqwest::get(format!("{base}{png_href}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(decode_qr(&png), expected);
        // A suffix that needs escaping: the link escapes it and decodes back.
        let svg = reqwest::get(format!("{base}/console/qr/88.101.5/a%20b?format=png"))
            .await
            .unwrap();
        assert_eq!(svg.status(), 200);
        let png = svg.bytes().await.unwrap();
        assert_eq!(decode_qr(&png), format!("{PUBLIC_URL}/88.101.5/a%20b"));

        // Not found, invalid and unreachable identifiers each get their page.
        b.goto(&format!("{base}/88.101.5/NO-SUCH-ONE")).await;
        let kind = b
            .find("#resolve-error")
            .await
            .attr("data-kind")
            .await
            .unwrap();
        assert_eq!(kind.as_deref(), Some("not_found"));
        assert!(b.text("#resolve-error h2").await.contains("未找到"));
        let r = reqwest::get(format!("{base}/88..5/X")).await.unwrap();
        assert_eq!(r.status(), 400, "an invalid identifier's page is a 400");
        b.goto(&format!("{base}/88..5/X")).await;
        let kind = b
            .find("#resolve-error")
            .await
            .attr("data-kind")
            .await
            .unwrap();
        assert_eq!(kind.as_deref(), Some("invalid_argument"));
        // 88.102 is delegated (seeded) but its node never announced an endpoint: the
        // forwarding fails and the page says which hop.
        b.goto(&format!("{base}/88.102.3/AXLE-1")).await;
        let kind = b
            .find("#resolve-error")
            .await
            .attr("data-kind")
            .await
            .unwrap();
        assert_eq!(kind.as_deref(), Some("unavailable"));
        b.close().await;
    })
    .await;
}

/// Decodes the one QR code in a PNG.
fn decode_qr(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.line_size / w;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        buf[y * info.line_size + x * channels]
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_dashboard_totals_change_after_registrations() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.sign_in(&base, &node.admin_token).await;
        assert!(b
            .c()
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/operator"));
        let before = registered(&node).await;
        let shown = b
            .text_until("#dash-node-registered .number", |t| !t.is_empty())
            .await;
        assert_eq!(shown.replace(',', ""), before.to_string());
        let row = "#dash-enterprises-table tr[data-prefix='88.101.8'] td.registered";
        let ent_before: i64 = b.text(row).await.replace(',', "").parse().unwrap();
        // The province's target comes from the top-level node's statistics.
        let goal = b.text("#dash-goal").await;
        assert!(goal.contains("20,000,000,000"), "{goal}");
        b.find("#rate-chart svg polyline[data-interface='dns']")
            .await;

        let cell = "#dash-classes-table tr[data-domain='production'] td[data-risk='high']";
        let class_before: i64 = b.text(cell).await.replace(',', "").parse().unwrap();
        let token = node.seed_token("88.101.8");
        let mut registry = node.registry(Some(&token));
        for i in 0..3 {
            // One value of the production domain at high risk (owner only).
            let classified = pb::Value {
                domain: pb::DataDomain::Production as i32,
                risk: pb::Risk::High as i32,
                classification: pb::Classification::Private as i32,
                ..text(2, "BATCH_QC", "passed")
            };
            registry
                .register(register_request(record(
                    &format!("88.101.8/DASH-{i}"),
                    vec![text(1, "URL", "https://e.cn/d"), classified],
                )))
                .await
                .unwrap();
        }
        // A few resolutions through HTTP, for the chart.
        for _ in 0..5 {
            reqwest::get(format!("{base}/api/handles/88.101.8/DASH-0"))
                .await
                .unwrap();
        }
        // The chart counts them within seconds (the sampler runs every 2 s).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            b.c().refresh().await.unwrap();
            let http = b.find("#rate-chart polyline[data-interface='http']").await;
            let total: u64 = http
                .attr("data-total")
                .await
                .unwrap()
                .unwrap()
                .parse()
                .unwrap();
            if total >= 5 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the chart never counted the resolutions"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = b
            .text_until("#dash-node-registered .number", |t| {
                t.replace(',', "") == (before + 3).to_string()
            })
            .await;
        assert_eq!(after.replace(',', ""), (before + 3).to_string());
        let ent_after: i64 = b.text(row).await.replace(',', "").parse().unwrap();
        assert_eq!(ent_after, ent_before + 3);
        // Registrations by data domain × risk level: the three are in production × high.
        let class_after: i64 = b.text(cell).await.replace(',', "").parse().unwrap();
        assert_eq!(class_after, class_before + 3);
        let today = b.text("#dash-today .number").await;
        assert!(
            today.replace(',', "").parse::<i64>().unwrap() >= 3,
            "{today}"
        );
        b.screenshot("operator").await;
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_visitor_cannot_reach_enterprise_pages() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.goto(&format!("{base}/console/enterprise#list")).await;
        b.find("#signin-form").await;
        let url = b.c().current_url().await.unwrap();
        assert_eq!(url.path(), "/console/signin");
        assert!(b.c().find(Locator::Css("#view")).await.is_err());
        // The API refuses too, without a token, with a bad one, and with another role's.
        let http = reqwest::Client::new();
        let status = |r: reqwest::Response| r.status().as_u16();
        let api = format!("{base}/console/api/records");
        assert_eq!(status(http.get(&api).send().await.unwrap()), 401);
        assert_eq!(
            status(http.get(&api).bearer_auth("idn_x_y").send().await.unwrap()),
            401
        );
        let enterprise = node.seed_token("88.101.5");
        let dash = format!("{base}/console/api/dashboard");
        assert_eq!(
            status(
                http.get(&dash)
                    .bearer_auth(&enterprise)
                    .send()
                    .await
                    .unwrap()
            ),
            403
        );
        // Another enterprise's record is not readable through the console either.
        let other = format!("{base}/console/api/record?id=88.101.8/FIB-2024-000001");
        assert_eq!(
            status(
                http.get(&other)
                    .bearer_auth(&enterprise)
                    .send()
                    .await
                    .unwrap()
            ),
            403
        );
        // An enterprise signed in does not get the operator pages.
        b.sign_in(&base, &enterprise).await;
        b.goto(&format!("{base}/console/operator")).await;
        let denied = b.text(".notice.error").await;
        assert!(denied.contains("管理员"), "{denied}");
        assert!(b
            .c()
            .find(Locator::Css("#dash-node-registered"))
            .await
            .is_err());
        // Signing out forgets the token.
        b.click("#signout").await;
        b.goto(&format!("{base}/console/enterprise")).await;
        b.find("#signin-form").await;
        let token = b.js("return sessionStorage.getItem('idnode.token')").await;
        assert_eq!(token, Json::Null);
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_value_stays_inert_and_the_pages_carry_a_strict_policy() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
        node.registry(Some(&node.seed_token("88.101.5")))
            .register(register_request(record(
                "88.101.5/XSS-1",
                vec![
                    text(1, "URL", "javascript:alert(3)"),
                    text(2, "note", evil),
                    text(3, "<b>type</b>", "x"),
                ],
            )))
            .await
            .unwrap();
        let b = Browser::start().await;
        b.goto(&format!("{base}/88.101.5/XSS-1")).await;
        let table = b.text("#values").await;
        assert!(table.contains(evil), "shown as text: {table}");
        assert!(table.contains("<b>type</b>"), "{table}");
        assert!(b.c().get_alert_text().await.is_err(), "no alert opened");
        let injected = b
            .js("return document.querySelectorAll('#values script, #values img, #values b').length")
            .await;
        assert_eq!(injected, json!(0));
        // A javascript: URL is no link.
        assert!(b.c().find(Locator::Css("#values a")).await.is_err());

        let page = reqwest::get(format!("{base}/88.101.5/XSS-1"))
            .await
            .unwrap();
        let h = page.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let api = reqwest::get(format!("{base}/console/api/resolve?id=88.101.5/XSS-1"))
            .await
            .unwrap();
        assert_eq!(api.headers()["cache-control"], "no-store");
        assert!(api.headers().contains_key("content-security-policy"));
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_and_english_both_render() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.goto(&format!("{base}/")).await;
        assert_eq!(b.text("#page-title").await, "标识查询");
        assert_eq!(
            b.js("return document.documentElement.lang").await,
            json!("zh-CN")
        );
        b.click("#lang").await;
        b.text_until("#page-title", |t| t == "Identifier lookup")
            .await;
        assert_eq!(
            b.js("return document.documentElement.lang").await,
            json!("en")
        );
        // The choice is kept across pages.
        b.goto(&format!("{base}/88.101.5/NO-SUCH-ONE")).await;
        b.text_until("#resolve-error h2", |t| t == "Identifier not found")
            .await;
        b.click("#lang").await;
        b.text_until("#resolve-error h2", |t| t == "未找到该标识")
            .await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let (node, _dir) = node_with(|c| c.console = None).await;
    let base = base(&node);
    let r = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(format!("{base}/88.101.5/BAT-2024-000001"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(format!(
        "{base}/console/api/resolve?id=88.101.5/BAT-2024-000001"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    // The Handle API is unaffected.
    let r = reqwest::get(format!("{base}/api/handles/88.101.5/BAT-2024-000001"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_over_https() {
    bounded(async {
        use idnode::tls::{dev_certs, ClientTls, ServerTls};
        let certs_dir = tempfile::tempdir().unwrap();
        let certs = dev_certs(certs_dir.path(), &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = support::config(dir.path(), true);
        config.tls = Some(ServerTls {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: None,
        });
        let client = ClientTls {
            ca: certs.ca.clone(),
            identity: None,
        };
        let node = TestNode::start_tls(config, &client).await;
        let base = format!("https://{}", node.http_addr.unwrap());
        // The development CA is not in chromium's store: this browser skips the check.
        let b = Browser::start_with(&["--ignore-certificate-errors"]).await;
        b.goto(&format!("{base}/88.101.5/BAT-2024-000001")).await;
        assert!(b.text("#values").await.contains("CC-ENG-0916"));
        // Without --public-url, links start with the listener's own https:// URL.
        assert_eq!(
            b.text("#qr-link").await,
            format!("{base}/88.101.5/BAT-2024-000001")
        );
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identifier_of_another_node_is_resolved_through_the_top_level_node() {
    bounded(async {
        // Node A (88.101, the console, an embedded top-level node) and node B (88.102),
        // which joins A's top-level node.
        let (a, a_dir) = node_with(|_| {}).await;
        let b_dir = tempfile::tempdir().unwrap();
        let mut c = support::config(b_dir.path(), false);
        c.core.node_prefix = idnode::identifier::Prefix::parse("88.102").unwrap();
        c.upstream = Some(idnode::config::UpstreamConfig {
            url: format!("http://{}", a.addr),
            token_file: Some(a_dir.path().join("toplevel/node-tokens/88.102.token")),
        });
        let b = TestNode::start_with(c).await;
        let token = b.enterprise("88.102.3", "襄阳某车桥有限公司").await;
        b.registry(Some(&token))
            .register(register_request(record(
                "88.102.3/FWD-1",
                vec![
                    text(1, "URL", "https://example-axle.cn/p/FWD-1"),
                    support::private(2, "cost", "secret-cost"),
                ],
            )))
            .await
            .unwrap();
        // Once B has announced itself, A resolves B's identifiers.
        let deadline = tokio::time::Instant::now() + WAIT;
        while a
            .resolver(None)
            .resolve(support::resolve("88.102.3/FWD-1"))
            .await
            .is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "A never reached B");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let br = Browser::start().await;
        br.goto(&format!("{}/88.102.3/FWD-1", base(&a))).await;
        let note = br.text(".notice.info").await;
        assert!(
            note.contains("顶级节点"),
            "the page says it was forwarded: {note}"
        );
        let table = br.text("#values").await;
        assert!(table.contains("https://example-axle.cn/p/FWD-1"), "{table}");
        assert!(
            !table.contains("secret-cost"),
            "public values only: {table}"
        );
        br.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enterprise_edits_and_deletes_records_grants_a_partner_and_sees_its_usage() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let token = node.seed_token("88.101.5");
        let get = |id: &'static str| {
            let mut registry = node.registry(Some(&token));
            async move {
                registry
                    .get(pb::GetRequest {
                        identifier: id.into(),
                    })
                    .await
            }
        };
        let b = Browser::start().await;
        b.sign_in(&base, &token).await;

        // Edit: a value's data and another's classification, saved as one replacement.
        b.goto(&format!(
            "{base}/console/enterprise#record=88.101.5%2FBAT-2024-000002"
        ))
        .await;
        b.text_until("#record-id", |t| t == "88.101.5/BAT-2024-000002")
            .await;
        let row = |index: u32| format!("#record-table tr.record-value:nth-child({index})");
        b.fill(&format!("{} input[name='data']", row(2)), "CC-EDIT-1")
            .await;
        b.find(&format!("{} select option[value='partner']", row(4)))
            .await
            .click()
            .await
            .unwrap();
        b.click("#record-save").await;
        b.text_until("#record-msg", |t| t.contains("已保存")).await;
        let values = get("88.101.5/BAT-2024-000002")
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap()
            .values;
        let by_index = |i: u32| values.iter().find(|v| v.index == i).unwrap();
        assert_eq!(by_index(2).data, b"CC-EDIT-1");
        assert_eq!(
            by_index(4).classification,
            pb::Classification::Partner as i32
        );
        assert_eq!(
            by_index(3).classification,
            pb::Classification::Public as i32
        );

        // Delete asks twice, then the record is gone.
        b.goto(&format!(
            "{base}/console/enterprise#record=88.101.5%2FBAT-2024-000003"
        ))
        .await;
        b.text_until("#record-id", |t| t == "88.101.5/BAT-2024-000003")
            .await;
        b.click("#record-delete").await;
        assert!(
            get("88.101.5/BAT-2024-000003").await.is_ok(),
            "one click deletes nothing"
        );
        b.click("#record-delete").await;
        b.find("#list-table").await;
        let gone = get("88.101.5/BAT-2024-000003").await.unwrap_err();
        assert_eq!(gone.code(), tonic::Code::NotFound);

        // A grant to the fibre enterprise, listed, then revoked.
        b.goto(&format!("{base}/console/enterprise#grants")).await;
        b.fill("#grant-grantee", "88.101.8").await;
        b.click("#view form button[type='submit']").await;
        b.text_until("#view table", |t| t.contains("88.101.8"))
            .await;
        let listed = node
            .registry(Some(&token))
            .list_grants(pb::ListGrantsRequest {
                prefix: "88.101.5".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .grants;
        assert_eq!(listed.len(), 1);
        b.click("#view table button").await;
        b.text_until("#view", |t| t.contains("尚无授权")).await;

        // Usage against the quota the admin set.
        node.admin(Some(&node.admin_token))
            .set_quota(pb::SetQuotaRequest {
                prefix: "88.101.5".into(),
                quota: Some(pb::Quota {
                    max_registrations: 5000,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let usage = node
            .admin(Some(&token))
            .get_usage(pb::GetUsageRequest {
                prefix: "88.101.5".into(),
            })
            .await
            .unwrap()
            .into_inner();
        b.goto(&format!("{base}/console/enterprise#usage")).await;
        let shown = b.text("#usage-total").await;
        assert!(shown.contains(&usage.registered.to_string()), "{shown}");
        assert!(shown.contains("5,000"), "{shown}");
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_creates_an_enterprise_rotates_its_token_and_sets_its_quota() {
    bounded(async {
        let (node, _dir) = node_with(|_| {}).await;
        let base = base(&node);
        let b = Browser::start().await;
        b.sign_in(&base, &node.admin_token).await;
        b.goto(&format!("{base}/console/operator#enterprises"))
            .await;
        b.fill("#ent-prefix", "88.101.30").await;
        b.fill("#ent-name", "武汉某光电有限公司").await;
        b.fill("#ent-industry", "C3976").await;
        b.click("#ent-form button[type='submit']").await;
        let first = b.text_until("#ent-token", |t| t.starts_with("idn_")).await;
        let register = |token: String, suffix: &'static str| {
            let mut registry = node.registry(Some(&token));
            async move {
                registry
                    .register(register_request(record(
                        &format!("88.101.30/{suffix}"),
                        vec![text(1, "URL", "https://e.cn/o")],
                    )))
                    .await
            }
        };
        register(first.clone(), "OPT-1").await.unwrap();

        // Rotation shows the new token once; the previous one stays valid (overlap).
        b.click("#ent-table tr[data-prefix='88.101.30'] td:last-child button")
            .await;
        let second = b
            .text_until("#ent-token", |t| t.starts_with("idn_") && t != first)
            .await;
        register(second.clone(), "OPT-2").await.unwrap();
        register(first.clone(), "OPT-3").await.unwrap();

        // A quota of three registrations: the fourth is refused.
        b.fill(
            "#ent-table tr[data-prefix='88.101.30'] input[name='max_registrations']",
            "3",
        )
        .await;
        b.click("#ent-table tr[data-prefix='88.101.30'] td:nth-child(4) button")
            .await;
        b.text_until("#ent-msg", |t| t.contains("88.101.30")).await;
        let refused = register(second, "OPT-4").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        b.close().await;
    })
    .await;
}
