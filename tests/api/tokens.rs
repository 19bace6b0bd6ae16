//! Token handling as PIM's callers see it: the same uniform 401 for every failure, keys rotated live.

use serde_json::{Value, json};

use crate::common_auth::{TestKey, raw_token};
use crate::helpers::spawn_app;
use crate::support::requests::{self, ENTRA_ROLE, GROUP};

#[tokio::test]
async fn every_bad_token_gets_the_same_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let idp = &app.idp;
    let now = crate::common_auth::now();
    let mut expired = idp.v2_claims();
    expired["exp"] = json!(now - 3600);
    let mut wrong_audience = idp.v2_claims();
    wrong_audience["aud"] = json!("api://someone-else");
    let mut wrong_caller = idp.v2_claims();
    wrong_caller["azp"] = json!("00000000-1111-2222-3333-444444444444");
    let stranger = TestKey::generate(&idp.key.kid);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired", Some(idp.sign(&expired))),
        ("wrong audience", Some(idp.sign(&wrong_audience))),
        ("wrong caller", Some(idp.sign(&wrong_caller))),
        (
            "signed by a stranger under our kid",
            Some(idp.sign_with(&idp.key.header(), &idp.v2_claims(), &stranger.encoding_key)),
        ),
        (
            "alg none",
            Some(raw_token(
                &json!({"alg": "none", "typ": "JWT"}),
                &idp.v2_claims(),
                b"",
            )),
        ),
        ("garbage", Some("not.a.token".into())),
    ];
    let body = requests::sample(ENTRA_ROLE).to_string();
    let mut bodies = Vec::new();
    for (description, token) in cases {
        let response = app
            .post_raw(body.clone(), token.as_deref(), Some("application/json"))
            .await;
        assert_eq!(response.status(), 401, "{description}");
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#,
            "{description}"
        );
        bodies.push(response.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "no detail that helps an attacker: {bodies:?}"
    );
    assert!(app.audit_records().is_empty());
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_restart() {
    let mut app = spawn_app().await;
    let request = requests::sample(GROUP);
    assert_eq!(app.evaluate(&request).await.status(), 200);
    let old_key = app.idp.rotate();
    // The start-up fetch counts against the floor between unknown-`kid` refreshes (10 s at least).
    tokio::time::sleep(std::time::Duration::from_millis(10_200)).await;
    let response = app.evaluate(&request).await;
    assert_eq!(
        response.status(),
        200,
        "token with the new kid is accepted after a refresh"
    );
    let stale = app.idp.sign_with(
        &old_key.header(),
        &app.idp.v2_claims(),
        &old_key.encoding_key,
    );
    let response = app
        .post_raw(request.to_string(), Some(&stale), Some("application/json"))
        .await;
    assert_eq!(response.status(), 401, "the removed key no longer verifies");
    let _: Value = response.json().await.unwrap();
}
