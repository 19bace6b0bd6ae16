//! Which listener answers which route: PIM's endpoint on `server.listen` only, the operator
//! endpoints on `admin.listen` only, so nothing that reaches PIM's port can read `/metrics`.

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};
use crate::support::requests::{self, ENTRA_ROLE};

#[derive(Clone, Copy, Debug)]
enum Listener {
    Public,
    Admin,
}

/// route × listener → status, with a ready service and a valid token on every request.
const ROUTE_TABLE: [(&str, &str, Listener, u16); 14] = [
    ("POST", "/v1/evaluate", Listener::Public, 200),
    ("POST", "/v1/evaluate", Listener::Admin, 404),
    ("GET", "/healthz", Listener::Public, 404),
    ("GET", "/healthz", Listener::Admin, 200),
    ("GET", "/readyz", Listener::Public, 404),
    ("GET", "/readyz", Listener::Admin, 200),
    ("GET", "/metrics", Listener::Public, 404),
    ("GET", "/metrics", Listener::Admin, 200),
    // The console (tests/api/console.rs): on the admin listener only.
    ("GET", "/", Listener::Public, 404),
    ("GET", "/", Listener::Admin, 200),
    ("GET", "/dry-run", Listener::Public, 404),
    ("GET", "/dry-run", Listener::Admin, 200),
    ("POST", "/dry-run", Listener::Public, 404),
    (
        "GET",
        "/decisions/0192e4a0-0000-7000-8000-000000000000",
        Listener::Public,
        404,
    ),
];

#[tokio::test]
async fn each_route_answers_on_its_own_listener_and_404_on_the_other() {
    let app = spawn_app().await;
    assert_ne!(app.address, app.admin_address, "two listeners");
    let body = requests::sample(ENTRA_ROLE);
    let mut wrong = Vec::new();
    for (method, path, listener, expected) in ROUTE_TABLE {
        let base = match listener {
            Listener::Public => &app.address,
            Listener::Admin => &app.admin_address,
        };
        let url = format!("{base}{path}");
        let request = match method {
            "POST" => app.client.post(&url).bearer_auth(app.token()).json(&body),
            _ => app.client.get(&url).bearer_auth(app.token()),
        };
        let status = request.send().await.unwrap().status().as_u16();
        if status != expected {
            wrong.push(format!(
                "{method} {path} on {listener:?}: {status}, expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn the_public_404_for_metrics_tells_nothing_about_token_rejections() {
    let app = spawn_app().await;
    // A prober's refused token is counted; the count must not be readable on the public port.
    let refused = app
        .post_raw(
            requests::sample(ENTRA_ROLE).to_string(),
            Some("not-a-token"),
            Some("application/json"),
        )
        .await;
    assert_eq!(refused.status(), 401);
    let public = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let text = public.text().await.unwrap();
    assert!(!text.contains("pimgate_"), "{text}");
    let admin = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        admin.contains("pimgate_token_rejections_total"),
        "operators still see it on the admin port: {admin}"
    );
}

#[tokio::test]
async fn readiness_on_the_admin_listener_is_503_until_the_signing_keys_are_in() {
    let idp = crate::common_auth::TestIdp::start().await;
    idp.server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&idp.server)
        .await;
    let app = crate::helpers::spawn_app_for(
        idp,
        AppOptions {
            wait_ready: false,
            ..AppOptions::default()
        },
    )
    .await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let health = app
        .client
        .get(format!("{}/healthz", app.admin_address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let public = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

#[tokio::test]
async fn with_the_admin_listener_off_every_route_is_on_the_public_listener() {
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| settings.admin.listen = String::new()),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(app.address, app.admin_address);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    let mut body = requests::sample(ENTRA_ROLE);
    body["id"] = json!("8a000000-0000-4000-8000-0000000000a1");
    assert_eq!(app.evaluate(&body).await.status(), 200);
}

#[tokio::test]
async fn probes_on_the_admin_listener_answer_while_the_public_connection_cap_is_full() {
    // One public connection allowed; hold it open, then probe the admin port.
    let app = spawn_app_with(AppOptions {
        tweak: Box::new(|settings| {
            settings.server.workers = 1;
            settings.server.max_connections = 1;
        }),
        wait_ready: false,
        ..AppOptions::default()
    })
    .await;
    let public_port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let _held = tokio::net::TcpStream::connect(("127.0.0.1", public_port))
        .await
        .unwrap();
    let _held_too = tokio::net::TcpStream::connect(("127.0.0.1", public_port))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client
            .get(format!("{}/readyz", app.admin_address))
            .send()
            .await
            && response.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "the admin listener answers while the public one is full"
    );
}
