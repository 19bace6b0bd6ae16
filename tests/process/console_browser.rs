//! The console in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` over WebDriver (fantoccini), against the built binary on the example config.
//! It loads the overview, sees the decision just made, opens its explanation, submits the dry-run
//! form, and saves screenshots under `target/console-screenshots/` for a person to look at.
//!
//! `scripts/test.sh` installs `chromium` and `chromium-driver` when they are missing (as CI runs it);
//! `CHROMEDRIVER` / `CHROMIUM` name other binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::requests::{self, ENTRA_ROLE};
use crate::support::serve::serve;

/// `chromedriver` on a loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start `{binary}` ({error}): install Debian's chromium and chromium-driver (scripts/test.sh does) or set CHROMEDRIVER"
            )
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{}/status", driver.url)).send().await
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return driver;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> fantoccini::Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100", "--no-first-run", "--disable-extensions"]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn save(client: &fantoccini::Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

async fn text_of(client: &fantoccini::Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("`{css}`: {error}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_sees_a_decision_opens_its_explanation_and_runs_a_dry_run_in_a_browser() {
    let served = serve(Path::new("config/example.toml"), &[]);
    let token = requests::dev_token();
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/v1/evaluate", served.base()))
        .bearer_auth(&token)
        .json(&requests::fresh_entra_role())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["evaluationId"].as_str().unwrap().to_string();
    let outcome = answer["evaluationOutcome"].as_str().unwrap().to_string();
    let admin = served.admin();

    let driver = start_driver().await;
    let client = browser(&driver).await;

    // The overview lists the decision just made, with its outcome.
    client.goto(&format!("{admin}/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Overview · pimgate console");
    let row_link = format!("a[href='/decisions/{id}']");
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&row_link))
        .await
        .expect("the decision is listed");
    let table = text_of(&client, "#decisions").await;
    assert!(table.contains(&outcome), "{table}");
    assert!(!text_of(&client, "#revision").await.is_empty());
    let charts = client.find_all(Locator::Css("svg.chart")).await.unwrap();
    assert_eq!(
        charts.len(),
        2,
        "the hour's outcomes and the check latencies"
    );
    save(&client, "overview.png").await;

    // Its explanation, one click away.
    client
        .find(Locator::Css(&row_link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&client, "#outcome").await, outcome);
    assert!(client.current_url().await.unwrap().path().ends_with(&id));
    let reasons = text_of(&client, "#reasons").await;
    let first = answer["reason"][0].as_str().unwrap();
    assert!(reasons.contains(first), "{reasons} / {first}");
    save(&client, "decision.png").await;

    // The dry-run form: a pasted request, the post-approval stage, the explanation back.
    client.goto(&format!("{admin}/dry-run")).await.unwrap();
    let body = requests::sample(ENTRA_ROLE).to_string();
    let form = client.form(Locator::Css("#dry-run-form")).await.unwrap();
    form.set(Locator::Css("#body"), &body).await.unwrap();
    form.set(Locator::Css("#at"), "2026-11-23T09:29:00Z")
        .await
        .unwrap();
    client
        .find(Locator::Css("#stage option[value='post_approval']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .find(Locator::Css("#evaluate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let dry_outcome = text_of(&client, "#explanation #outcome").await;
    assert!(
        ["Approved", "Denied", "AutoApproved"].contains(&dry_outcome.as_str()),
        "{dry_outcome}"
    );
    let printed = text_of(&client, "#dry-run-text").await;
    assert!(
        printed.contains(&format!("Outcome:    {dry_outcome}")),
        "{printed}"
    );
    assert!(
        printed.contains("post_approval") || printed.contains("post-approval"),
        "{printed}"
    );
    save(&client, "dry-run.png").await;
    client.close().await.unwrap();

    // The dry run recorded nothing: the overview still lists one decision.
    let page = http
        .get(format!("{admin}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("class=\"decision-link\"").count(), 1, "{page}");
}
