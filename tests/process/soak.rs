//! A short soak in CI: mixed valid and invalid traffic from concurrent keep-alive clients through
//! the in-process server. Valid requests never fail, invalid ones never get a decision, and there is
//! exactly one audit record per decision (refusals make none). `scripts/soak.sh` is the long run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use crate::support::app as helpers;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::requests;
use helpers::{TestApp, spawn_app};

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 38;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Valid,
    BadToken,
    Malformed,
    WrongContentType,
    Oversized,
}

impl Class {
    /// Out of 20: 14 valid, 2 forged tokens, 2 malformed, 1 wrong content type, 1 oversized.
    fn of(index: usize) -> Class {
        match index % 20 {
            0..=13 => Class::Valid,
            14 | 15 => Class::BadToken,
            16 | 17 => Class::Malformed,
            18 => Class::WrongContentType,
            _ => Class::Oversized,
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            Class::Valid => 200,
            Class::BadToken => 401,
            Class::Malformed => 400,
            Class::WrongContentType => 415,
            Class::Oversized => 413,
        }
    }
}

/// Sends one request of `class`; returns the status and, for a decision, its evaluation id.
async fn send(
    app: &TestApp,
    client: &reqwest::Client,
    class: Class,
    id: &str,
) -> (u16, Option<String>) {
    let body = requests::entra_role(id);
    let valid = app.token();
    let forged = format!("{}AAAA", &valid[..valid.len() - 4]);
    let (token, content_type, body) = match class {
        Class::Valid => (valid, "application/json", body.to_string()),
        Class::BadToken => (forged, "application/json", body.to_string()),
        Class::Malformed => (
            valid,
            "application/json",
            format!(r#"{{"id": "{id}", "data": {{"#),
        ),
        Class::WrongContentType => (valid, "text/plain", body.to_string()),
        Class::Oversized => (
            valid,
            "application/json",
            json!({ "id": "x".repeat(70_000) }).to_string(),
        ),
    };
    let response = client
        .post(format!("{}/v1/evaluate", app.address))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{class:?} request {id} failed: {error}"));
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    let evaluation_id = answer["evaluationId"].as_str().map(str::to_string);
    (status, evaluation_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_traffic_from_concurrent_clients_fails_no_valid_request_and_audits_each_decision_once()
 {
    let app = std::sync::Arc::new(spawn_app().await);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut outcomes = Vec::new();
                for sequence in 0..REQUESTS_PER_CLIENT {
                    let class = Class::of(client * REQUESTS_PER_CLIENT + sequence);
                    let id = format!("5e000000-0000-4000-8000-{client:04}{sequence:08}");
                    let (status, evaluation_id) = send(&app, &http, class, &id).await;
                    outcomes.push((class, status, evaluation_id));
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }

    assert_eq!(outcomes.len(), CLIENTS * REQUESTS_PER_CLIENT);
    for (class, status, _) in &outcomes {
        assert_eq!(*status, class.expected_status(), "{class:?}");
    }
    for class in [
        Class::Valid,
        Class::BadToken,
        Class::Malformed,
        Class::WrongContentType,
        Class::Oversized,
    ] {
        assert!(
            outcomes.iter().any(|(sent, _, _)| *sent == class),
            "the mix sends {class:?}"
        );
    }
    let decided: BTreeSet<String> = outcomes
        .iter()
        .filter_map(|(_, _, evaluation_id)| evaluation_id.clone())
        .collect();
    let valid = outcomes
        .iter()
        .filter(|(class, _, _)| *class == Class::Valid)
        .count();
    assert_eq!(
        decided.len(),
        valid,
        "every valid request got its own decision"
    );
    let records = app.audit_records();
    let audited: BTreeSet<String> = records
        .iter()
        .map(|record| record["evaluationId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        records.len(),
        decided.len(),
        "one audit record per decision"
    );
    assert_eq!(
        audited, decided,
        "the audit records are the decisions answered"
    );
}
