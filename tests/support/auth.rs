//! Test identity provider: real RSA keys, a wiremock OpenID discovery document and JWKS on loopback,
//! and helpers that sign Entra-shaped tokens.
//!
//! In every test binary as `support::auth`, and in `benches/token.rs` by path. Typical use:
//! ```ignore
//! let idp = TestIdp::start().await;
//! let authenticator = Authenticator::new(&idp.settings(), reqwest::Client::new(), &[loopback])?;
//! authenticator.refresh_keys().await?;
//! let header = idp.bearer(&idp.v2_claims());
//! ```
// Each test binary uses a different subset; a helper failing should fail the test loudly.
#![allow(dead_code, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pimgate::settings::{AuthSettings, TokenVersion};
use serde::Serialize;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, Times};

pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const OTHER_TENANT_ID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
pub const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
pub const APP_ID_URI: &str = "api://pimgate.contoso.com/11111111-1111-1111-1111-111111111111";
pub const PIM_APP_ID: &str = "1c67c054-65c8-4f7f-92a1-eb7ba6e48627";
pub const JWKS_PATH: &str = "/common/discovery/v2.0/keys";

pub fn v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

pub fn v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An RSA key pair generated for the test, with what a JWKS and a signer need.
pub struct TestKey {
    pub kid: String,
    pub encoding_key: EncodingKey,
    /// base64url modulus and exponent, as in a JWK.
    pub n: String,
    pub e: String,
    /// SubjectPublicKeyInfo PEM: what an attacker would use as an HMAC secret.
    pub public_pem: String,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("rsa key generation");
        let pkcs8 = pair.as_der().expect("pkcs8 encoding");
        let private_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let encoding_key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("encoding key");
        let components: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let spki = pair.public_key().as_der().expect("spki encoding");
        Self {
            kid: kid.to_string(),
            encoding_key,
            n: URL_SAFE_NO_PAD.encode(&components.n),
            e: URL_SAFE_NO_PAD.encode(&components.e),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// A JWK shaped like Entra's (with the extra members Entra serves).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.n,
            "e": self.e,
            "x5c": ["MIIDBTCCAe2gAwIBAgIQ"],
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"
        })
    }

    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What the JWKS endpoint answers right now; tests change it to rotate keys or break upstream.
#[derive(Clone)]
pub enum JwksBehaviour {
    Serve(Value),
    Status(u16),
    RawBody(String),
}

#[derive(Clone)]
struct DynamicJwks(Arc<Mutex<JwksBehaviour>>);

impl Respond for DynamicJwks {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        match &*self.0.lock().expect("jwks state") {
            JwksBehaviour::Serve(document) => ResponseTemplate::new(200).set_body_json(document),
            JwksBehaviour::Status(status) => ResponseTemplate::new(*status),
            JwksBehaviour::RawBody(body) => {
                ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json")
            }
        }
    }
}

/// A stand-in for Entra: discovery + JWKS on a loopback wiremock server, and the current signing key.
pub struct TestIdp {
    pub server: MockServer,
    pub tenant_id: String,
    /// The key `sign` uses; present in the served JWKS until `rotate` or `set_jwks`.
    pub key: TestKey,
    jwks: Arc<Mutex<JwksBehaviour>>,
    rotations: usize,
}

impl TestIdp {
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// Like `start`, and the server fails the test on drop unless the JWKS was fetched `times` times.
    pub async fn start_expecting_jwks_fetches(times: impl Into<Times>) -> Self {
        Self::start_inner(Some(times.into())).await
    }

    async fn start_inner(jwks_fetches: Option<Times>) -> Self {
        let server = MockServer::start().await;
        let key = TestKey::generate("test-key-0");
        let jwks = Arc::new(Mutex::new(JwksBehaviour::Serve(
            json!({ "keys": [key.jwk()] }),
        )));
        let discovery = json!({
            "issuer": v2_issuer(TENANT_ID),
            "jwks_uri": format!("{}{JWKS_PATH}", server.uri()),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        Mock::given(method("GET"))
            .and(path(format!(
                "/{TENANT_ID}/v2.0/.well-known/openid-configuration"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&server)
            .await;
        let mut jwks_mock = Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(DynamicJwks(Arc::clone(&jwks)));
        if let Some(times) = jwks_fetches {
            jwks_mock = jwks_mock.expect(times);
        }
        jwks_mock.mount(&server).await;
        Self {
            server,
            tenant_id: TENANT_ID.to_string(),
            key,
            jwks,
            rotations: 0,
        }
    }

    /// The configured form, with `{tenant_id}` left for pimgate to substitute.
    pub fn metadata_url(&self) -> String {
        format!(
            "{}/{{tenant_id}}/v2.0/.well-known/openid-configuration",
            self.server.uri()
        )
    }

    /// Settings that trust this IdP: both token versions, client id and App ID URI as audiences,
    /// PIM as the caller, and no floor between kid-triggered refreshes.
    pub fn settings(&self) -> AuthSettings {
        AuthSettings {
            tenant_id: self.tenant_id.clone(),
            audiences: vec![APP_ID_URI.to_string(), CLIENT_ID.to_string()],
            allowed_callers: vec![PIM_APP_ID.to_string()],
            token_versions: vec![TokenVersion::V1, TokenVersion::V2],
            metadata_url: self.metadata_url(),
            clock_skew_seconds: 60,
            dev_mode: false,
            jwks_refresh_seconds: 3600,
            jwks_min_refresh_interval_seconds: 0,
            fetch_timeout_ms: 2000,
            token_cache_capacity: 10_000,
        }
    }

    /// A valid v2 access token's claims as PIM would send them.
    pub fn v2_claims(&self) -> Value {
        let now = now();
        json!({
            "aud": CLIENT_ID,
            "iss": v2_issuer(&self.tenant_id),
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "azp": PIM_APP_ID,
            "azpacr": "2",
            "oid": "3f2a7d0e-0000-4000-8000-000000000001",
            "sub": "3f2a7d0e-0000-4000-8000-000000000001",
            "tid": self.tenant_id,
            "ver": "2.0",
        })
    }

    /// A valid v1 access token's claims (App ID URI audience, `appid` caller).
    pub fn v1_claims(&self) -> Value {
        let now = now();
        json!({
            "aud": APP_ID_URI,
            "iss": v1_issuer(&self.tenant_id),
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "appid": PIM_APP_ID,
            "appidacr": "2",
            "oid": "3f2a7d0e-0000-4000-8000-000000000001",
            "sub": "3f2a7d0e-0000-4000-8000-000000000001",
            "tid": self.tenant_id,
            "ver": "1.0",
        })
    }

    /// Signs with the current key under its kid (RS256).
    pub fn sign(&self, claims: &impl Serialize) -> String {
        self.sign_with(&self.key.header(), claims, &self.key.encoding_key)
    }

    pub fn sign_with(&self, header: &Header, claims: &impl Serialize, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).expect("signing")
    }

    /// `Bearer <signed claims>`, ready for `verify_header`.
    pub fn bearer(&self, claims: &impl Serialize) -> String {
        format!("Bearer {}", self.sign(claims))
    }

    /// Replaces the served JWKS with a fresh key (the old one disappears upstream); returns the old key.
    pub fn rotate(&mut self) -> TestKey {
        self.rotations += 1;
        let new_key = TestKey::generate(&format!("test-key-{}", self.rotations));
        self.set_jwks(JwksBehaviour::Serve(json!({ "keys": [new_key.jwk()] })));
        std::mem::replace(&mut self.key, new_key)
    }

    pub fn set_jwks(&self, behaviour: JwksBehaviour) {
        *self.jwks.lock().expect("jwks state") = behaviour;
    }

    pub async fn jwks_fetches(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|request| request.url.path() == JWKS_PATH)
            .count()
    }
}

/// Encodes arbitrary header and payload JSON with the given signature bytes, for tokens
/// `jsonwebtoken` refuses to produce (`alg: none`, unknown algorithms).
pub fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
