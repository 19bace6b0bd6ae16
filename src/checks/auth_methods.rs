//! `auth_methods`: the requester has a strong enough authentication method registered in Entra, as
//! Microsoft Graph says now (`/users/{id}/authentication/methods`).
//!
//! `- auth_methods: { phishing_resistant: true, any_of: [platformCredential] }`: passes when at least
//! one registered method is of an accepted kind. `phishing_resistant: true` accepts `fido2` (security
//! keys and passkeys, Microsoft Authenticator's included), `windowsHelloForBusiness` and
//! `x509Certificate`; `any_of` adds kinds by name. A method of a type pimgate does not know never
//! matches. Registration is current state: the outcome holds at the decision time. Graph unreachable,
//! refusing (a token without `UserAuthenticationMethod.Read.All`), answering garbage, or not knowing
//! the requester: not evaluated, and `on_error` decides; never a pass.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::registry::{BuildEnv, CheckKind, Reach};
use super::{Check, CheckContext, CheckOutcome};
use crate::connectors::graph::methods::{MethodKind, RegisteredMethod, USER_AUTH_METHOD_READ_ALL};
use crate::connectors::http::Fetched;
use crate::connectors::{ConnectorId, Connectors, PermissionNeed};
use crate::vocabulary::diagnostic::Diagnostic;

/// The kinds `phishing_resistant: true` accepts: bound to the device and the sign-in origin, so a
/// look-alike page cannot relay them. A temporary access pass, a phone, an authenticator push or code
/// can all be relayed, and are not in it.
pub const PHISHING_RESISTANT: [MethodKind; 3] = [
    MethodKind::Fido2,
    MethodKind::WindowsHelloForBusiness,
    MethodKind::X509Certificate,
];

/// `auth_methods: { phishing_resistant: true, any_of: [fido2, ...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthMethodsSpec {
    /// `true`: the phishing-resistant kinds are accepted. `false` is refused (it reads like "must
    /// not have one", which this check does not do).
    #[serde(default)]
    pub phishing_resistant: Option<bool>,
    /// Further accepted kinds, by name (`fido2`, `microsoftAuthenticator`, …).
    #[serde(default)]
    pub any_of: Vec<String>,
}

/// `- auth_methods: ...` in the rules (see `registry::CheckKind`).
#[derive(Debug)]
pub struct AuthMethodsKind;

impl CheckKind for AuthMethodsKind {
    fn reference() -> crate::checks::registry::KindReference {
        crate::checks::registry::KindReference {
            summary: "The requester has registered a strong authentication method (Graph `authentication/methods`).",
            example: "- auth_methods: { phishing_resistant: true }",
            keys: vec![
                crate::checks::registry::KeyDoc::new(
                    "phishing_resistant",
                    "boolean",
                    "none",
                    "true",
                    "`true`: the phishing-resistant kinds are accepted (`false` is refused).",
                ),
                crate::checks::registry::KeyDoc::new(
                    "any_of",
                    "list of method kinds",
                    "[]",
                    "[microsoftAuthenticator]",
                    "Further accepted kinds, by name.",
                ),
            ],
            reads: auth_methods_reads(),
        }
    }

    const NAME: &'static str = "auth_methods";
    const REACH: Reach = Reach::Upstream;
    type Spec = AuthMethodsSpec;

    fn connector(_spec: &AuthMethodsSpec) -> Option<ConnectorId> {
        Some(ConnectorId::Graph)
    }

    fn build(
        spec: &AuthMethodsSpec,
        env: &BuildEnv<'_>,
    ) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
        build(spec, env)
    }
}

pub fn build(
    spec: &AuthMethodsSpec,
    env: &BuildEnv<'_>,
) -> Result<Arc<dyn Check>, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut accepted = BTreeSet::new();
    match spec.phishing_resistant {
        Some(true) => accepted.extend(PHISHING_RESISTANT),
        Some(false) => problems.push(Diagnostic::error(
            "phishing_resistant",
            "`false` checks nothing (it does not mean \"must not have one\")",
            "leave `phishing_resistant` out, or set it to `true`",
        )),
        None => {}
    }
    let names = MethodKind::ALL
        .iter()
        .map(|kind| kind.name())
        .collect::<Vec<_>>()
        .join(", ");
    for (index, name) in spec.any_of.iter().enumerate() {
        match MethodKind::from_name(name.trim()) {
            Some(kind) => {
                accepted.insert(kind);
            }
            None => problems.push(Diagnostic::error(
                format!("any_of[{index}]"),
                format!(
                    "`{}` is not an authentication method kind",
                    super::util::quote(name, 40)
                ),
                format!("use one of: {names}"),
            )),
        }
    }
    if spec.phishing_resistant.is_none() && spec.any_of.is_empty() {
        problems.push(Diagnostic::error(
            String::new(),
            "names no authentication method, so it would check nothing",
            "add `phishing_resistant: true` or `any_of: [fido2, windowsHelloForBusiness]`",
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Arc::new(AuthMethodsCheck {
        accepted,
        connectors: Arc::clone(env.connectors),
    }))
}

#[derive(Debug)]
struct AuthMethodsCheck {
    accepted: BTreeSet<MethodKind>,
    connectors: Arc<Connectors>,
}

/// Kinds as names, for evidence.
fn names(kinds: &BTreeSet<MethodKind>) -> Vec<&'static str> {
    kinds.iter().map(|kind| kind.name()).collect()
}

/// Kinds as a requester reads them: "FIDO2 security key or passkey, password".
fn labels(kinds: &BTreeSet<MethodKind>) -> String {
    kinds
        .iter()
        .map(|kind| kind.label())
        .collect::<Vec<_>>()
        .join(", ")
}

impl AuthMethodsCheck {
    /// The verdict on what Graph listed. Reasons name method kinds only: never a phone number, a key
    /// model or a device name (pimgate does not even keep them).
    fn judge(&self, methods: &[RegisteredMethod]) -> CheckOutcome {
        let registered: BTreeSet<MethodKind> =
            methods.iter().filter_map(|method| method.kind).collect();
        let unrecognised: BTreeSet<String> = methods
            .iter()
            .filter(|method| method.kind.is_none())
            .map(|method| super::util::quote(&method.odata_type, 100))
            .collect();
        let matched: BTreeSet<MethodKind> =
            registered.intersection(&self.accepted).copied().collect();
        let outcome = if matched.is_empty() {
            let have = match (registered.is_empty(), unrecognised.len()) {
                (true, 0) => "none".to_string(),
                (true, count) => format!("{count} method(s) pimgate does not recognise"),
                (false, 0) => labels(&registered),
                (false, count) => format!(
                    "{}, and {count} method(s) pimgate does not recognise",
                    labels(&registered)
                ),
            };
            CheckOutcome::fail(format!(
                "no authentication method this role accepts is registered to your account (registered: {have}); register one of: {}",
                labels(&self.accepted)
            ))
        } else {
            CheckOutcome::pass(format!("you have registered {}", labels(&matched)))
        };
        outcome
            .with_evidence("matched", names(&matched))
            .with_evidence("registered", names(&registered))
            .with_evidence("accepted", names(&self.accepted))
            .with_evidence(
                "unrecognised_types",
                unrecognised.into_iter().collect::<Vec<_>>(),
            )
    }
}

#[async_trait]
impl Check for AuthMethodsCheck {
    async fn evaluate(&self, context: &CheckContext<'_>) -> CheckOutcome {
        let mut calls = Vec::new();
        let outcome = match self.connectors.graph.as_ref() {
            None => CheckOutcome::error(
                "the graph connector is not configured, so authentication methods could not be checked",
            ),
            Some(graph) => {
                let principal = context.request.principal_id.as_str();
                let (answer, made) = graph
                    .authentication_methods(principal, context.deadline)
                    .await;
                calls = made;
                match answer {
                    // Registration is what Graph says now, whatever the activation's start.
                    Ok(Fetched::Found(methods)) => self.judge(&methods).holding_at(context.now),
                    // Missing data is the system's fault, not the requester's: not evaluated.
                    Ok(Fetched::NotFound) => CheckOutcome::error(format!(
                        "authentication methods could not be checked: the directory does not know `{principal}`"
                    )),
                    Err(error) => CheckOutcome::error(format!(
                        "authentication methods could not be checked: {error}"
                    ))
                    .with_evidence("error_detail", error.detail()),
                }
            }
        };
        outcome.with_evidence(
            "upstream",
            serde_json::to_value(&calls).unwrap_or(serde_json::Value::Null),
        )
    }

    fn upstream_permissions(&self) -> Vec<PermissionNeed> {
        vec![PermissionNeed {
            permission: &USER_AUTH_METHOD_READ_ALL,
            needed_for: "`auth_methods` checks (the requester's registered authentication methods)",
        }]
    }
}

/// What the reference says `auth_methods` reads: the Graph call, permission and method kinds.
fn auth_methods_reads() -> Vec<crate::checks::registry::UpstreamFact> {
    let names = |kinds: &[MethodKind]| {
        kinds
            .iter()
            .map(|kind| format!("`{}`", kind.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!("`{}`", crate::connectors::graph::methods::METHODS_OPERATION),
        ),
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!(
                "permission: `{}` ({})",
                USER_AUTH_METHOD_READ_ALL.name, USER_AUTH_METHOD_READ_ALL.reads
            ),
        ),
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!("method kinds: {}", names(&MethodKind::ALL)),
        ),
        crate::checks::registry::UpstreamFact::new(
            "Microsoft Graph",
            format!("phishing-resistant: {}", names(&PHISHING_RESISTANT)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;
    use crate::checks::registry::{CHECK_KINDS, UPSTREAM_KINDS};
    use crate::checks::test_support::{TestEnv, now, request, run};

    fn problems(yaml: &str) -> Vec<Diagnostic> {
        let spec: AuthMethodsSpec = yaml_serde::from_str(yaml).unwrap();
        build(&spec, &TestEnv::default().env()).unwrap_err()
    }

    fn check(yaml: &str) -> AuthMethodsCheck {
        let spec: AuthMethodsSpec = yaml_serde::from_str(yaml).unwrap();
        let mut accepted = BTreeSet::new();
        if spec.phishing_resistant == Some(true) {
            accepted.extend(PHISHING_RESISTANT);
        }
        accepted.extend(
            spec.any_of
                .iter()
                .filter_map(|name| MethodKind::from_name(name)),
        );
        AuthMethodsCheck {
            accepted,
            connectors: crate::connectors::Connectors::none(),
        }
    }

    fn registered(types: &[&str]) -> Vec<RegisteredMethod> {
        types
            .iter()
            .map(|odata_type| RegisteredMethod {
                kind: MethodKind::from_odata_type(odata_type),
                odata_type: (*odata_type).to_string(),
            })
            .collect()
    }

    #[test]
    fn a_spec_that_names_no_method_or_an_unknown_kind_is_refused_with_every_problem() {
        let empty = problems("{}");
        assert!(
            empty[0].message.contains("names no authentication method"),
            "{empty:?}"
        );
        let empty_list = problems("{ any_of: [] }");
        assert!(empty_list[0].message.contains("names no"), "{empty_list:?}");
        let off = problems("{ phishing_resistant: false }");
        assert_eq!(off[0].key, "phishing_resistant");
        let typos = problems("{ phishing_resistant: true, any_of: [fido2, FIDO, passkey] }");
        let keys: Vec<&str> = typos.iter().map(|problem| problem.key.as_str()).collect();
        assert_eq!(keys, ["any_of[1]", "any_of[2]"], "{typos:?}");
        assert!(
            typos[0].fix.contains("windowsHelloForBusiness"),
            "{typos:?}"
        );
        let unknown_field = yaml_serde::from_str::<AuthMethodsSpec>("{ phishing_resistent: true }");
        assert!(unknown_field.is_err());
    }

    #[test]
    fn a_temporary_access_pass_phone_or_authenticator_push_is_not_phishing_resistant() {
        let check = check("{ phishing_resistant: true }");
        for weak in [
            "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
            "#microsoft.graph.phoneAuthenticationMethod",
            "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
            "#microsoft.graph.softwareOathAuthenticationMethod",
            "#microsoft.graph.passwordAuthenticationMethod",
            "#microsoft.graph.emailAuthenticationMethod",
            "#microsoft.graph.platformCredentialAuthenticationMethod",
        ] {
            let outcome = check.judge(&registered(&[weak]));
            assert_eq!(outcome.status, CheckStatus::Fail, "{weak}: {outcome:?}");
        }
        for strong in [
            "#microsoft.graph.fido2AuthenticationMethod",
            "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod",
            "#microsoft.graph.x509CertificateAuthenticationMethod",
        ] {
            let outcome = check.judge(&registered(&[
                "#microsoft.graph.passwordAuthenticationMethod",
                strong,
            ]));
            assert_eq!(outcome.status, CheckStatus::Pass, "{strong}: {outcome:?}");
        }
    }

    #[test]
    fn an_unrecognised_method_type_never_passes_and_any_of_adds_kinds() {
        let check = check("{ phishing_resistant: true, any_of: [platformCredential] }");
        let outcome = check.judge(&registered(&[
            "#microsoft.graph.quantumAuthenticationMethod",
            "#microsoft.graph.passwordAuthenticationMethod",
        ]));
        assert_eq!(outcome.status, CheckStatus::Fail, "{outcome:?}");
        assert!(
            outcome
                .message
                .contains("1 method(s) pimgate does not recognise"),
            "{}",
            outcome.message
        );
        assert!(!outcome.message.contains("quantum"), "{}", outcome.message);
        assert_eq!(
            outcome.evidence["unrecognised_types"],
            serde_json::json!(["#microsoft.graph.quantumAuthenticationMethod"])
        );
        let added = check.judge(&registered(&[
            "#microsoft.graph.platformCredentialAuthenticationMethod",
        ]));
        assert_eq!(added.status, CheckStatus::Pass, "{added:?}");
        let nothing = check.judge(&[]);
        assert_eq!(nothing.status, CheckStatus::Fail, "{nothing:?}");
        assert!(
            nothing.message.contains("registered: none"),
            "{}",
            nothing.message
        );
    }

    #[test]
    fn without_graph_the_check_is_not_evaluated_and_never_passes() {
        let spec: AuthMethodsSpec = yaml_serde::from_str("{ phishing_resistant: true }").unwrap();
        let check = build(&spec, &TestEnv::default().env()).unwrap();
        let request = request();
        let outcome = run(check.as_ref(), &request, now());
        assert_eq!(outcome.status, CheckStatus::Error);
        assert!(
            outcome
                .message
                .contains("graph connector is not configured")
        );
    }

    #[test]
    fn the_kind_is_registered_as_upstream_so_rules_test_can_stub_it() {
        assert!(CHECK_KINDS.contains(&"auth_methods"));
        assert!(UPSTREAM_KINDS.contains(&"auth_methods"));
    }
}
