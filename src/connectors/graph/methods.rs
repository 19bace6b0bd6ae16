//! The requester's registered authentication methods, for the `auth_methods` check:
//! `GET /v1.0/users/{id}/authentication/methods`, every `@odata.nextLink` page followed (bounded, same
//! Graph origin only), cached per user for the Graph connector's `cache.ttl_seconds`.
//!
//! A child module of `graph` so it can use the connector's token lease and cache without widening its
//! API. Only each method's `@odata.type` is kept: phone numbers, key models and device names never
//! leave this module.
//!
//! Graph refuses this call (403) without `UserAuthenticationMethod.Read.All`; a token that does not
//! prove the grant is still refused here, before asking, like the `group` lookup: a future Graph that
//! answered with fewer methods would otherwise read as "nothing strong registered" or worse.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{CONNECTOR, Graph};
use crate::connectors::Permission;
use crate::connectors::http::{Fetched, UpstreamCall, UpstreamError};

/// Application permission to read every user's registered authentication methods.
pub const USER_AUTH_METHOD_READ_ALL: Permission = Permission {
    connector: CONNECTOR,
    name: "UserAuthenticationMethod.Read.All",
    satisfied_by: &[
        "UserAuthenticationMethod.Read.All",
        "UserAuthenticationMethod.ReadWrite.All",
    ],
    reads: "users' registered authentication methods",
};

/// At most this many pages: a user has a handful of methods, so more pages than this is not Graph.
pub const MAX_METHOD_PAGES: usize = 10;

pub const METHODS_OPERATION: &str = "GET /v1.0/users/{id}/authentication/methods";

/// The `@odata.type` prefix and suffix around a method's kind name.
const ODATA_PREFIX: &str = "#microsoft.graph.";
const ODATA_SUFFIX: &str = "AuthenticationMethod";

/// The kinds of authentication method Graph v1.0 lists (the derived types of `authenticationMethod`),
/// named as in rules: the `@odata.type` without `#microsoft.graph.` and `AuthenticationMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MethodKind {
    /// A FIDO2 security key or a passkey (Microsoft Authenticator's passkeys are listed as FIDO2).
    Fido2,
    WindowsHelloForBusiness,
    /// Certificate-based authentication, when Graph lists it as a registered method.
    X509Certificate,
    /// macOS Platform SSO's Secure Enclave key.
    PlatformCredential,
    /// Push notifications and phone sign-in in the app (not its passkeys, which are `fido2`).
    MicrosoftAuthenticator,
    SoftwareOath,
    Phone,
    Email,
    Password,
    TemporaryAccessPass,
    QrCodePin,
    External,
}

impl MethodKind {
    pub const ALL: [MethodKind; 12] = [
        MethodKind::Fido2,
        MethodKind::WindowsHelloForBusiness,
        MethodKind::X509Certificate,
        MethodKind::PlatformCredential,
        MethodKind::MicrosoftAuthenticator,
        MethodKind::SoftwareOath,
        MethodKind::Phone,
        MethodKind::Email,
        MethodKind::Password,
        MethodKind::TemporaryAccessPass,
        MethodKind::QrCodePin,
        MethodKind::External,
    ];

    /// The name in rules and evidence (`fido2`, `windowsHelloForBusiness`, …).
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Fido2 => "fido2",
            MethodKind::WindowsHelloForBusiness => "windowsHelloForBusiness",
            MethodKind::X509Certificate => "x509Certificate",
            MethodKind::PlatformCredential => "platformCredential",
            MethodKind::MicrosoftAuthenticator => "microsoftAuthenticator",
            MethodKind::SoftwareOath => "softwareOath",
            MethodKind::Phone => "phone",
            MethodKind::Email => "email",
            MethodKind::Password => "password",
            MethodKind::TemporaryAccessPass => "temporaryAccessPass",
            MethodKind::QrCodePin => "qrCodePin",
            MethodKind::External => "external",
        }
    }

    /// What a requester calls it, for reasons.
    pub fn label(self) -> &'static str {
        match self {
            MethodKind::Fido2 => "FIDO2 security key or passkey",
            MethodKind::WindowsHelloForBusiness => "Windows Hello for Business",
            MethodKind::X509Certificate => "certificate",
            MethodKind::PlatformCredential => "macOS platform credential",
            MethodKind::MicrosoftAuthenticator => "Microsoft Authenticator",
            MethodKind::SoftwareOath => "authenticator app code",
            MethodKind::Phone => "phone",
            MethodKind::Email => "email",
            MethodKind::Password => "password",
            MethodKind::TemporaryAccessPass => "temporary access pass",
            MethodKind::QrCodePin => "QR code with PIN",
            MethodKind::External => "external authentication method",
        }
    }

    /// The kind a rule names, exactly as [`MethodKind::name`] spells it.
    pub fn from_name(name: &str) -> Option<MethodKind> {
        MethodKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind of a Graph `@odata.type`; `None` for a type pimgate does not know (it never matches).
    pub fn from_odata_type(odata_type: &str) -> Option<MethodKind> {
        odata_type
            .strip_prefix(ODATA_PREFIX)
            .and_then(|rest| rest.strip_suffix(ODATA_SUFFIX))
            .and_then(MethodKind::from_name)
    }
}

/// One registered method: its kind, or `None` with the raw type when pimgate does not know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RecordedMethod")]
pub struct RegisteredMethod {
    #[serde(skip_serializing)]
    pub kind: Option<MethodKind>,
    /// Graph's `@odata.type`, kept for the audit record of an unrecognised method.
    pub odata_type: String,
}

/// A method as the fact book keeps it (`connectors::facts`): its type; the kind follows from it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedMethod {
    odata_type: String,
}

impl From<RecordedMethod> for RegisteredMethod {
    fn from(recorded: RecordedMethod) -> Self {
        RegisteredMethod {
            kind: MethodKind::from_odata_type(&recorded.odata_type),
            odata_type: recorded.odata_type,
        }
    }
}

/// Only the type of each method is read; every other property is ignored.
#[derive(Debug, Deserialize)]
struct MethodItem {
    #[serde(rename = "@odata.type")]
    odata_type: String,
}

#[derive(Debug, Deserialize)]
struct MethodPage {
    value: Vec<MethodItem>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

impl Graph {
    /// Every authentication method registered to `user_id`, from the cache or Graph. `NotFound`:
    /// Graph does not know the user. Every Graph or token call made (or answered from the cache) is
    /// returned for the audit record.
    pub async fn authentication_methods(
        &self,
        user_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<Vec<RegisteredMethod>>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let user_id = user_id.trim();
        let fetch = self.cached_methods(user_id, deadline);
        crate::connectors::facts::through("graph.methods", user_id, fetch).await
    }

    async fn cached_methods(
        &self,
        user_id: &str,
        deadline: Instant,
    ) -> (
        Result<Fetched<Vec<RegisteredMethod>>, UpstreamError>,
        Vec<UpstreamCall>,
    ) {
        let mut calls = Vec::new();
        let key = user_id.to_ascii_lowercase();
        let (result, cached) = self
            .methods
            .get_or_fetch(&key, self.fetch_methods(user_id, deadline, &mut calls))
            .await;
        if cached {
            calls.push(UpstreamCall {
                connector: CONNECTOR,
                operation: METHODS_OPERATION.to_string(),
                outcome: match &result {
                    Ok(Fetched::NotFound) => "not_found".to_string(),
                    _ => "ok".to_string(),
                },
                latency_ms: 0.0,
                cached: true,
                attempts: 0,
            });
        }
        (result, calls)
    }

    async fn fetch_methods(
        &self,
        user_id: &str,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<Vec<RegisteredMethod>>, UpstreamError> {
        let unreachable = UpstreamError::Unreachable {
            connector: CONNECTOR,
        };
        let mut url = reqwest::Url::parse(self.graph_url()).map_err(|_| unreachable.clone())?;
        url.path_segments_mut()
            .map_err(|_| unreachable.clone())?
            .pop_if_empty()
            .extend(["v1.0", "users", user_id, "authentication", "methods"]);
        let mut methods = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(page_url) = next.take() {
            if pages == MAX_METHOD_PAGES {
                tracing::warn!(
                    connector = CONNECTOR,
                    operation = METHODS_OPERATION,
                    pages,
                    "Microsoft Graph lists more pages of authentication methods than pimgate reads; the auth_methods check is not evaluated"
                );
                return Err(UpstreamError::Malformed {
                    connector: CONNECTOR,
                });
            }
            pages += 1;
            match self.fetch_method_page(page_url, deadline, calls).await? {
                Fetched::NotFound => return Ok(Fetched::NotFound),
                Fetched::Found(page) => {
                    methods.extend(page.value.into_iter().map(|item| RegisteredMethod {
                        kind: MethodKind::from_odata_type(item.odata_type.trim()),
                        odata_type: item.odata_type,
                    }));
                    next = match page.next_link {
                        None => None,
                        Some(link) => Some(self.same_origin(&link, METHODS_OPERATION)?),
                    };
                }
            }
        }
        Ok(Fetched::Found(methods))
    }

    async fn fetch_method_page(
        &self,
        url: reqwest::Url,
        deadline: Instant,
        calls: &mut Vec<UpstreamCall>,
    ) -> Result<Fetched<MethodPage>, UpstreamError> {
        self.get_page(
            url,
            &USER_AUTH_METHOD_READ_ALL,
            METHODS_OPERATION,
            (
                "the app's token does not show UserAuthenticationMethod.Read.All, so users' authentication methods cannot be read; grant it with admin consent",
                "Microsoft Graph refused the app's token; grant it UserAuthenticationMethod.Read.All with admin consent",
            ),
            deadline,
            calls,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_types_map_to_kinds_and_unknown_types_to_none() {
        assert_eq!(
            MethodKind::from_odata_type("#microsoft.graph.fido2AuthenticationMethod"),
            Some(MethodKind::Fido2)
        );
        assert_eq!(
            MethodKind::from_odata_type(
                "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod"
            ),
            Some(MethodKind::WindowsHelloForBusiness)
        );
        assert_eq!(
            MethodKind::from_odata_type("#microsoft.graph.temporaryAccessPassAuthenticationMethod"),
            Some(MethodKind::TemporaryAccessPass)
        );
        for unknown in [
            "#microsoft.graph.hardwareOathAuthenticationMethod",
            "#microsoft.graph.authenticationMethod",
            "fido2AuthenticationMethod",
            "#microsoft.graph.FIDO2AuthenticationMethod",
            "",
        ] {
            assert_eq!(MethodKind::from_odata_type(unknown), None, "{unknown}");
        }
        for kind in MethodKind::ALL {
            assert_eq!(MethodKind::from_name(kind.name()), Some(kind));
        }
    }
}
