//! The soundness property behind every upstream check: an upstream fault, or a field missing from an
//! upstream record, never makes the answer more permissive (Denied < Approved < AutoApproved).
//!
//! Each case draws a world (what Graph, ServiceNow and PagerDuty say about the requester, and which
//! permissions pimgate's Graph token proves), evaluates one Exchange Administrator activation against
//! rules with an HR guard, an `itsm` requirement and an `oncall` auto-approval, then replaces one
//! upstream answer by a fault (HTTP 500, an HTML error page, an empty JSON object) or removes one field
//! from one record, and evaluates again with fresh connectors (no cache carries over). The second
//! answer may be equal or stricter, never more permissive. Where the operator chose `on_error: approve`
//! (the request goes to a human when a system cannot answer), a fault may hand a denied request to a
//! human approver (`Approved`), and never further. The stand-ins are real HTTP servers on
//! loopback answering the vendors' shapes; the Graph token is really signed and carries `roles`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::auth as common_auth;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimgate::connectors::graph::GraphSettings;
use pimgate::connectors::pagerduty::PagerDutySettings;
use pimgate::connectors::secrets::SecretRef;
use pimgate::connectors::servicenow::ServiceNowSettings;
use pimgate::connectors::{BuildContext, Connectors, ConnectorsSettings};
use pimgate::decision::{self, Outcome};
use proptest::prelude::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "11111111-2222-4333-8444-555555555555";
const CLIENT_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
const REQUESTER: &str = "0f6e7b1a-3c52-4b8e-a0d4-2e9f51c7d8a3";
const EXCHANGE_ADMINISTRATOR: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";
const REQUESTER_MAIL: &str = "ada.lovelace@contoso.com";

static ENTRA_KEY: LazyLock<common_auth::TestKey> =
    LazyLock::new(|| common_auth::TestKey::generate("entra-graph-key"));

/// The decision time: Tuesday evening, inside the on-call shift the stand-in reports.
fn now() -> DateTime<Utc> {
    "2026-11-24T18:30:00Z".parse().unwrap()
}

fn rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Denied => 0,
        Outcome::Approved => 1,
        Outcome::AutoApproved => 2,
    }
}

/// What the three systems say in one drawn world.
#[derive(Debug, Clone)]
struct World {
    account_enabled: bool,
    /// `None`: no leave date; `Some(true)`: leaving within days; `Some(false)`: leaving next year.
    leaving_soon: Option<bool>,
    token_proves_lifecycle: bool,
    change_implementing: bool,
    change_assigned_to_requester: bool,
    on_call: bool,
    guard_on_error_deny: bool,
    policy_on_error_deny: bool,
}

/// The one thing that goes wrong in the second evaluation.
#[derive(Debug, Clone, Copy)]
enum Upstream {
    GraphToken,
    GraphUser,
    ServiceNow,
    PagerDutyUsers,
    PagerDutyOncalls,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Status500,
    HtmlPage,
    EmptyObject,
}

#[derive(Debug, Clone)]
enum Mutation {
    Fault(Upstream, Fault),
    /// Remove a field from the record `Upstream` answers with.
    Missing(Upstream, &'static str),
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                account_enabled,
                leaving_soon,
                token_proves_lifecycle,
                change_implementing,
                change_assigned_to_requester,
                on_call,
                guard_on_error_deny,
                policy_on_error_deny,
            )| World {
                account_enabled,
                leaving_soon,
                token_proves_lifecycle,
                change_implementing,
                change_assigned_to_requester,
                on_call,
                guard_on_error_deny,
                policy_on_error_deny,
            },
        )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let upstream = prop_oneof![
        Just(Upstream::GraphToken),
        Just(Upstream::GraphUser),
        Just(Upstream::ServiceNow),
        Just(Upstream::PagerDutyUsers),
        Just(Upstream::PagerDutyOncalls),
    ];
    let fault = prop_oneof![
        Just(Fault::Status500),
        Just(Fault::HtmlPage),
        Just(Fault::EmptyObject)
    ];
    prop_oneof![
        (upstream, fault).prop_map(|(upstream, fault)| Mutation::Fault(upstream, fault)),
        prop::sample::select(vec![
            (Upstream::GraphUser, "accountEnabled"),
            (Upstream::GraphUser, "employeeLeaveDateTime"),
            (Upstream::GraphUser, "mail"),
            (Upstream::GraphUser, "id"),
            (Upstream::ServiceNow, "number"),
            (Upstream::ServiceNow, "state"),
            (Upstream::ServiceNow, "assigned_to"),
            (Upstream::ServiceNow, "assigned_to.email"),
            (Upstream::ServiceNow, "assigned_to.user_name"),
            (Upstream::PagerDutyUsers, "email"),
            (Upstream::PagerDutyUsers, "id"),
            (Upstream::PagerDutyOncalls, "escalation_level"),
            (Upstream::PagerDutyOncalls, "schedule"),
            (Upstream::PagerDutyOncalls, "user"),
            (Upstream::PagerDutyOncalls, "start"),
            (Upstream::PagerDutyOncalls, "end"),
        ])
        .prop_map(|(upstream, field)| Mutation::Missing(upstream, field)),
    ]
}

fn graph_token(world: &World) -> String {
    let mut roles = vec!["User.Read.All"];
    if world.token_proves_lifecycle {
        roles.push("User-LifeCycleInfo.Read.All");
    }
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": 1_795_000_000_i64,
        "nbf": 1_795_000_000_i64,
        "exp": 4_102_444_800_i64,
        "appid": CLIENT_ID,
        "idtyp": "app",
        "roles": roles,
        "tid": TENANT,
        "ver": "1.0",
    });
    jsonwebtoken::encode(&ENTRA_KEY.header(), &claims, &ENTRA_KEY.encoding_key).unwrap()
}

fn token_body(world: &World) -> Value {
    json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": graph_token(world),
    })
}

fn graph_user(world: &World) -> Value {
    let leave = match world.leaving_soon {
        None => Value::Null,
        Some(true) => json!("2026-11-27T00:00:00Z"),
        Some(false) => json!("2027-09-30T00:00:00Z"),
    };
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "id": REQUESTER,
        "userPrincipalName": "ada@contoso.onmicrosoft.com",
        "mail": REQUESTER_MAIL,
        "displayName": "Ada Lovelace",
        "accountEnabled": world.account_enabled,
        "employeeLeaveDateTime": leave,
        "employeeType": "Employee",
        "department": "Messaging",
    })
}

fn servicenow_change(world: &World) -> Value {
    let (assignee_id, assignee_mail, assignee_login) = if world.change_assigned_to_requester {
        (
            "681ccaf9c0a8016400b98a06818d57c7",
            REQUESTER_MAIL,
            "ada.lovelace",
        )
    } else {
        (
            "5137153cc611227c000bbd1bd8cd2005",
            "grace.hopper@contoso.com",
            "grace.hopper",
        )
    };
    json!({ "result": [{
        "number": "CHG0031337",
        "state": if world.change_implementing { "-1" } else { "3" },
        "assigned_to": assignee_id,
        "assigned_to.email": assignee_mail,
        "assigned_to.user_name": assignee_login,
        "requested_by": "5137153cc611227c000bbd1bd8cd2005",
        "requested_by.email": "grace.hopper@contoso.com",
        "requested_by.user_name": "grace.hopper",
        "opened_by": "5137153cc611227c000bbd1bd8cd2005",
        "opened_by.email": "grace.hopper@contoso.com",
        "opened_by.user_name": "grace.hopper",
        "start_date": "2026-11-24 17:00:00",
        "end_date": "2026-11-24 22:00:00",
        "work_start": "2026-11-24 17:02:11",
        "work_end": ""
    }]})
}

fn pagerduty_users() -> Value {
    json!({
        "users": [{
            "name": "Ada Lovelace",
            "email": REQUESTER_MAIL,
            "time_zone": "Europe/Berlin",
            "role": "user",
            "id": "PADA001",
            "type": "user",
            "summary": "Ada Lovelace",
        }],
        "limit": 25, "offset": 0, "more": false, "total": null
    })
}

fn pagerduty_oncalls(world: &World) -> Value {
    let oncalls = if world.on_call {
        vec![json!({
            "escalation_policy": { "id": "PT20YPA", "type": "escalation_policy_reference", "summary": "Messaging" },
            "escalation_level": 1,
            "schedule": { "id": "P1ABCDE", "type": "schedule_reference", "summary": "Messaging primary" },
            "user": { "id": "PADA001", "type": "user_reference", "summary": "Ada Lovelace" },
            "start": "2026-11-24T17:00:00Z",
            "end": "2026-11-25T07:00:00Z"
        })]
    } else {
        Vec::new()
    };
    json!({ "oncalls": oncalls, "limit": 100, "offset": 0, "more": false, "total": null })
}

/// Removes `field` from the record inside an upstream answer.
fn without(mut body: Value, upstream: Upstream, field: &str) -> Value {
    let record = match upstream {
        Upstream::GraphToken | Upstream::GraphUser => body.as_object_mut(),
        Upstream::ServiceNow => body.pointer_mut("/result/0").and_then(Value::as_object_mut),
        Upstream::PagerDutyUsers => body.pointer_mut("/users/0").and_then(Value::as_object_mut),
        Upstream::PagerDutyOncalls => body
            .pointer_mut("/oncalls/0")
            .and_then(Value::as_object_mut),
    };
    if let Some(record) = record {
        record.remove(field);
    }
    body
}

fn answer(body: Value, upstream: Upstream, mutation: Option<&Mutation>) -> ResponseTemplate {
    match mutation {
        Some(Mutation::Fault(target, fault)) if same(*target, upstream) => match fault {
            Fault::Status500 => ResponseTemplate::new(500).set_body_json(json!({
                "error": { "message": "internal error at https://intranet.contoso.local/x", "detail": null }
            })),
            Fault::HtmlPage => ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<html><body>Maintenance</body></html>"),
            Fault::EmptyObject => ResponseTemplate::new(200).set_body_json(json!({})),
        },
        Some(Mutation::Missing(target, field)) if same(*target, upstream) => {
            ResponseTemplate::new(200).set_body_json(without(body, upstream, field))
        }
        _ => ResponseTemplate::new(200).set_body_json(body),
    }
}

fn same(a: Upstream, b: Upstream) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

struct StandIns {
    graph: MockServer,
    servicenow: MockServer,
    pagerduty: MockServer,
}

async fn mount(stand_ins: &StandIns, world: &World, mutation: Option<&Mutation>) {
    for server in [
        &stand_ins.graph,
        &stand_ins.servicenow,
        &stand_ins.pagerduty,
    ] {
        server.reset().await;
    }
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(answer(token_body(world), Upstream::GraphToken, mutation))
        .mount(&stand_ins.graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/users/{REQUESTER}")))
        .respond_with(answer(graph_user(world), Upstream::GraphUser, mutation))
        .mount(&stand_ins.graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/now/table/change_request"))
        .respond_with(answer(
            servicenow_change(world),
            Upstream::ServiceNow,
            mutation,
        ))
        .mount(&stand_ins.servicenow)
        .await;
    Mock::given(method("GET"))
        .and(path("/users"))
        .respond_with(answer(
            pagerduty_users(),
            Upstream::PagerDutyUsers,
            mutation,
        ))
        .mount(&stand_ins.pagerduty)
        .await;
    Mock::given(method("GET"))
        .and(path("/oncalls"))
        .respond_with(answer(
            pagerduty_oncalls(world),
            Upstream::PagerDutyOncalls,
            mutation,
        ))
        .mount(&stand_ins.pagerduty)
        .await;
}

fn secret(dir: &tempfile::TempDir, name: &str, value: &str) -> SecretRef {
    let file = dir.path().join(name);
    std::fs::write(&file, value).unwrap();
    SecretRef {
        env: None,
        file: Some(file),
    }
}

/// Fresh connectors (empty caches, closed circuits) pointed at the stand-ins.
fn connectors(stand_ins: &StandIns, dir: &tempfile::TempDir) -> Arc<Connectors> {
    let settings = ConnectorsSettings {
        graph: Some(GraphSettings {
            client_id: Some(CLIENT_ID.to_string()),
            client_secret: Some(secret(dir, "graph-secret", "Zx8Q~not-a-real-secret")),
            authority_url: Some(stand_ins.graph.uri()),
            graph_url: Some(stand_ins.graph.uri()),
            timeout_ms: Some(2000),
            ..GraphSettings::default()
        }),
        servicenow: Some(ServiceNowSettings {
            base_url: Some(stand_ins.servicenow.uri()),
            username: Some("svc_pimgate".to_string()),
            password: Some(secret(dir, "sn-password", "s3cret-pass")),
            timeout_ms: 2000,
            ..ServiceNowSettings::default()
        }),
        pagerduty: Some(PagerDutySettings {
            base_url: Some(stand_ins.pagerduty.uri()),
            api_token: secret(dir, "pd-token", "pd-test-token"),
            timeout_ms: 2000,
            ..PagerDutySettings::default()
        }),
        ..ConnectorsSettings::default()
    };
    let context = BuildContext {
        http: reqwest::Client::new(),
        tenant_id: TENANT.to_string(),
    };
    Connectors::build(&settings, &context).unwrap()
}

fn rules_text(world: &World) -> String {
    let guard = if world.guard_on_error_deny {
        "deny"
    } else {
        "approve"
    };
    let policy = if world.policy_on_error_deny {
        "deny"
    } else {
        "approve"
    };
    format!(
        r#"
guards:
  - name: leavers-and-disabled-accounts
    require:
      - hr: {{ source: graph, not_leaving_within: P14D }}
    on_error: {guard}
policies:
  - name: exchange-with-a-change
    match: {{ roles: [Exchange Administrator] }}
    require:
      - start: {{ max_future: P1D }}
      - itsm: {{ system: servicenow, states: [Implement], assigned_to_requester: true }}
    auto_approve:
      - oncall: {{ source: pagerduty, schedules: [P1ABCDE], max_escalation_level: 1 }}
    on_error: {policy}
"#
    )
}

fn request() -> pimgate::payload::ActivationRequest {
    let body = json!({
        "id": "5b8c8f3e-2f0e-4d4b-9a43-7d1c0f6a9e21",
        "action": "selfActivate",
        "principalId": REQUESTER,
        "roleDefinitionId": EXCHANGE_ADMINISTRATOR,
        "directoryScopeId": "/",
        "justification": "CHG0031337: move the mail flow connector",
        "scheduleInfo": {
            "startDateTime": null,
            "expiration": { "type": "afterDuration", "duration": "PT2H" }
        },
        "ticketInfo": { "ticketNumber": "CHG0031337", "ticketSystem": "ServiceNow" }
    });
    pimgate::payload::decode(body.to_string().as_bytes()).unwrap()
}

async fn decide(
    stand_ins: &StandIns,
    world: &World,
    mutation: Option<&Mutation>,
) -> decision::Decision {
    mount(stand_ins, world, mutation).await;
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(&rules_file, rules_text(world)).unwrap();
    let connectors = connectors(stand_ins, &dir);
    let rules = pimgate::rules::load_with(&rules_file, &connectors).unwrap();
    decision::evaluate(&rules, &request(), now(), Duration::from_secs(3)).await
}

/// One runtime and one set of stand-ins for every case: each case resets their answers.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});
static STAND_INS: LazyLock<StandIns> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        StandIns {
            graph: MockServer::start().await,
            servicenow: MockServer::start().await,
            pagerduty: MockServer::start().await,
        }
    })
});
/// Cases share the stand-ins, so they run one at a time even if the harness runs tests in parallel.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_upstream_fault_or_a_missing_field_never_makes_the_answer_more_permissive(
        world in world(),
        mutation in mutation(),
    ) {
        let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stand_ins: &StandIns = &STAND_INS;
        let (before, after) = RUNTIME.block_on(async {
            let before = decide(stand_ins, &world, None).await;
            let after = decide(stand_ins, &world, Some(&mutation)).await;
            (before, after)
        });
        // Fail closed (every `on_error: deny`): a fault or a missing field is at most as good as the
        // answer without it. An operator's `on_error: approve` lets a request whose check could not be
        // evaluated go to a human: there a fault may turn a denial into `Approved`, never further.
        let fail_closed = world.guard_on_error_deny && world.policy_on_error_deny;
        let ceiling = if fail_closed {
            rank(before.outcome)
        } else {
            rank(before.outcome).max(rank(Outcome::Approved))
        };
        prop_assert!(
            rank(after.outcome) <= ceiling,
            "{mutation:?} turned {:?} into {:?} (fail closed: {fail_closed})\nbefore: {:?}\nafter: {:?}",
            before.outcome, after.outcome, before.reasons, after.reasons
        );
    }
}

/// The property above would hold trivially if every world were denied: the drawn worlds must reach
/// all three answers, so a fault has something to make stricter.
#[test]
fn the_worlds_reach_every_answer() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let good = World {
        account_enabled: true,
        leaving_soon: None,
        token_proves_lifecycle: true,
        change_implementing: true,
        change_assigned_to_requester: true,
        on_call: true,
        guard_on_error_deny: true,
        policy_on_error_deny: true,
    };
    let stand_ins: &StandIns = &STAND_INS;
    let answers = RUNTIME.block_on(async {
        let auto = decide(stand_ins, &good, None).await;
        let human = decide(
            stand_ins,
            &World {
                on_call: false,
                ..good.clone()
            },
            None,
        )
        .await;
        let leaver = decide(
            stand_ins,
            &World {
                leaving_soon: Some(true),
                ..good.clone()
            },
            None,
        )
        .await;
        let unproven_leave_date = decide(
            stand_ins,
            &World {
                token_proves_lifecycle: false,
                ..good.clone()
            },
            None,
        )
        .await;
        [auto, human, leaver, unproven_leave_date]
    });
    let outcomes: Vec<Outcome> = answers.iter().map(|d| d.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::AutoApproved,
            Outcome::Approved,
            Outcome::Denied,
            Outcome::Denied
        ],
        "{:#?}",
        answers.iter().map(|d| &d.reasons).collect::<Vec<_>>()
    );
}
