//! The built-in development issuer: lets a newcomer try pimgate with nothing external.
//!
//! THE KEY IN `dev_key.pem` IS PUBLIC BY DESIGN: it is checked into the repository and anyone can
//! mint tokens with it. It is therefore trusted only when `auth.dev_mode` is on, which the service
//! allows only on a loopback listener (enforced at start-up, outside this module). Tokens carry
//! `kid = "pimgate-dev"` and `iss = DEV_ISSUER`; the dev key never vouches for an Entra issuer and
//! Entra keys never vouch for `DEV_ISSUER`.

use std::sync::LazyLock;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

use crate::auth::error::AuthError;
use crate::settings::AuthSettings;

/// `.invalid` (RFC 2606) so the issuer can never be a real host.
pub const DEV_ISSUER: &str = "https://pimgate.invalid/dev-issuer";
pub const DEV_KEY_ID: &str = "pimgate-dev";
pub const DEFAULT_EXPIRES_IN_SECONDS: i64 = 3600;

const DEV_PRIVATE_KEY_PEM: &str = include_str!("dev_key.pem");
const DEV_PUBLIC_KEY_PEM: &str = include_str!("dev_key.pub.pem");

static DEV_ENCODING_KEY: LazyLock<Result<EncodingKey, String>> = LazyLock::new(|| {
    EncodingKey::from_rsa_pem(DEV_PRIVATE_KEY_PEM.as_bytes()).map_err(|error| error.to_string())
});
static DEV_DECODING_KEY: LazyLock<Result<DecodingKey, String>> = LazyLock::new(|| {
    DecodingKey::from_rsa_pem(DEV_PUBLIC_KEY_PEM.as_bytes()).map_err(|error| error.to_string())
});

/// What `pimgate dev token` lets the user choose; everything else follows the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTokenOptions {
    /// Defaults to the first configured audience.
    pub audience: Option<String>,
    /// Defaults to the first allowed caller (by default PIM's own app id).
    pub caller: Option<String>,
    pub subject: Option<String>,
    /// May be zero or negative to mint an already expired token for testing.
    pub expires_in_seconds: i64,
}

impl Default for DevTokenOptions {
    fn default() -> Self {
        Self {
            audience: None,
            caller: None,
            subject: None,
            expires_in_seconds: DEFAULT_EXPIRES_IN_SECONDS,
        }
    }
}

#[derive(Serialize)]
struct DevClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    azp: &'a str,
    ver: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
}

/// Mints a v2-shaped token signed with the development key. Works whether or not `dev_mode` is on;
/// only verification depends on it.
pub fn issue_token(
    settings: &AuthSettings,
    options: &DevTokenOptions,
) -> Result<String, AuthError> {
    let audience = options
        .audience
        .as_deref()
        .or_else(|| settings.audiences.first().map(String::as_str))
        .ok_or_else(|| {
            AuthError::InvalidConfig("`auth.audiences` is empty and no audience was given".into())
        })?;
    let caller = options
        .caller
        .as_deref()
        .or_else(|| settings.allowed_callers.first().map(String::as_str))
        .ok_or_else(|| {
            AuthError::InvalidConfig(
                "`auth.allowed_callers` is empty and no caller was given".into(),
            )
        })?;
    let now = chrono::Utc::now().timestamp();
    let claims = DevClaims {
        iss: DEV_ISSUER,
        aud: audience,
        azp: caller,
        ver: "2.0",
        sub: options.subject.as_deref().unwrap_or("pimgate-dev-user"),
        iat: now,
        nbf: now,
        exp: now.saturating_add(options.expires_in_seconds),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(DEV_KEY_ID.to_string());
    let key = DEV_ENCODING_KEY
        .as_ref()
        .map_err(|error| AuthError::DevKey(error.clone()))?;
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|error| AuthError::DevKey(error.to_string()))
}

/// The verification half of the development key pair.
pub(crate) fn decoding_key() -> Result<&'static DecodingKey, AuthError> {
    DEV_DECODING_KEY
        .as_ref()
        .map_err(|error| AuthError::DevKey(error.clone()))
}
