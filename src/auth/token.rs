//! Token parsing and claim rules: everything about one token that needs no network.
//!
//! The header is read by hand (not with `jsonwebtoken::decode_header`) so that an `alg` the crate does
//! not know, such as `none`, is reported as an unsupported algorithm rather than as garbage. Nothing
//! in the header other than `alg` and `kid` is ever used: `jku`, `jwk`, `x5u` and `x5c` would let the
//! token choose its own key (RFC 8725 §3.10).

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::error::AuthError;
use crate::settings::TokenVersion;

/// Entra access tokens are a few KiB; anything far larger is an attack on the parser or a mistake.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The part of the JOSE header we read before knowing whether the token is worth verifying.
#[derive(Debug, Deserialize)]
pub(crate) struct UnverifiedHeader {
    pub alg: String,
    pub kid: Option<String>,
}

/// Pulls the token out of an `Authorization` header value (RFC 6750 §2.1, scheme case-insensitive).
pub(crate) fn extract_bearer(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::MissingHeader)?;
    // Checked before any parsing so an oversized header costs nothing; a little slack for the scheme.
    if value.len() > MAX_TOKEN_BYTES + 64 {
        return Err(AuthError::TokenTooLarge {
            limit: MAX_TOKEN_BYTES,
        });
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthError::MissingHeader);
    }
    let (scheme, rest) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((scheme, rest)) => (scheme, rest.trim()),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::WrongScheme);
    }
    if rest.is_empty() {
        return Err(AuthError::EmptyToken);
    }
    if rest.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TokenTooLarge {
            limit: MAX_TOKEN_BYTES,
        });
    }
    Ok(rest)
}

/// Checks the compact-JWS shape (three base64url segments) and reads the header.
pub(crate) fn parse_header(token: &str) -> Result<UnverifiedHeader, AuthError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthError::Malformed);
    };
    // An empty signature is allowed through here so that `alg: none` is reported as an unsupported
    // algorithm; signature verification refuses it anyway.
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed);
    }
    if ![header, payload, signature]
        .iter()
        .all(|segment| is_base64url(segment))
    {
        return Err(AuthError::Malformed);
    }
    let bytes = decode_base64url(header).ok_or(AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

/// Verifies the RS256 signature with the one key chosen by `kid`, and returns the claims unchecked.
pub(crate) fn verify_signature(
    token: &str,
    key: &DecodingKey,
) -> Result<serde_json::Value, AuthError> {
    // Claim checks are ours (`check_claims`) so every failure gets its own reason; the crate only
    // verifies the signature and the algorithm here.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(error) => {
            use jsonwebtoken::errors::ErrorKind;
            Err(match error.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat
                | ErrorKind::Provider(_) => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    AuthError::UnsupportedAlgorithm
                }
                ErrorKind::Json(_) => AuthError::MalformedClaims,
                _ => AuthError::Malformed,
            })
        }
    }
}

/// Where the verifying key came from; a key only vouches for its own issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    Entra,
    Dev,
}

/// What a token must say, derived once from `AuthSettings`.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    /// Accepted Entra issuer strings and the token version each implies.
    pub entra_issuers: Vec<(String, TokenVersion)>,
    pub tenant_id: String,
    pub audiences: Vec<String>,
    pub allowed_callers: Vec<String>,
    pub clock_skew_seconds: i64,
}

/// The outcome of a successful verification: who called, as the token says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCaller {
    /// `azp` (v2) or `appid` (v1), as written in the token.
    pub caller_app_id: String,
    pub issuer: String,
    pub token_version: TokenVersion,
    /// Signed by the built-in development issuer.
    pub dev: bool,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    pub subject: Option<String>,
}

/// A verified caller and the span of clock readings (seconds since the epoch, both ends included)
/// during which `ClaimRules::check` would accept the same claims again.
///
/// The token cache serves an entry only inside this span, so a cached token stops working at the
/// exact second the uncached path would start rejecting it (`exp` + skew), and never before
/// `nbf`/`iat` − skew even if the wall clock steps back.
#[derive(Debug, Clone)]
pub(crate) struct CheckedClaims {
    pub caller: VerifiedCaller,
    pub valid_from: i64,
    pub valid_until: i64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    azp: Option<String>,
    appid: Option<String>,
    tid: Option<String>,
    ver: Option<String>,
    sub: Option<String>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
}

impl ClaimRules {
    /// Applies every claim rule to signature-verified claims. `now` is seconds since the epoch.
    pub(crate) fn check(
        &self,
        claims: serde_json::Value,
        source: KeySource,
        now: i64,
    ) -> Result<CheckedClaims, AuthError> {
        let claims: Claims =
            serde_json::from_value(claims).map_err(|_| AuthError::MalformedClaims)?;
        let skew = self.clock_skew_seconds;

        let expires_at = numeric_date(claims.exp.as_ref())?.ok_or(AuthError::MissingExpiry)?;
        if now > expires_at.saturating_add(skew) {
            return Err(AuthError::Expired);
        }
        let not_before = numeric_date(claims.nbf.as_ref())?;
        if let Some(not_before) = not_before
            && now.saturating_add(skew) < not_before
        {
            return Err(AuthError::NotYetValid);
        }
        let issued_at = numeric_date(claims.iat.as_ref())?;
        if let Some(issued_at) = issued_at
            && issued_at > now.saturating_add(skew)
        {
            return Err(AuthError::IssuedInFuture);
        }
        // The exact complement of the three rejections above.
        let valid_from = not_before
            .into_iter()
            .chain(issued_at)
            .max()
            .map_or(i64::MIN, |earliest| earliest.saturating_sub(skew));
        let valid_until = expires_at.saturating_add(skew);

        let issuer = claims.iss.ok_or(AuthError::MissingIssuer)?;
        let token_version = match source {
            KeySource::Dev if issuer == crate::auth::dev::DEV_ISSUER => TokenVersion::V2,
            KeySource::Dev => return Err(AuthError::WrongIssuer),
            KeySource::Entra => self
                .entra_issuers
                .iter()
                .find(|(accepted, _)| *accepted == issuer)
                .map(|(_, version)| *version)
                .ok_or(AuthError::WrongIssuer)?,
        };
        if let Some(ver) = claims.ver.as_deref() {
            let expected = match token_version {
                TokenVersion::V1 => "1.0",
                TokenVersion::V2 => "2.0",
            };
            if ver != expected {
                return Err(AuthError::VersionMismatch);
            }
        }
        if source == KeySource::Entra
            && let Some(tid) = claims.tid.as_deref()
            && !tid.eq_ignore_ascii_case(&self.tenant_id)
        {
            return Err(AuthError::TenantMismatch);
        }

        let audience_ok = match claims.aud.ok_or(AuthError::MissingAudience)? {
            Audience::One(audience) => self.audiences.contains(&audience),
            Audience::Many(audiences) => audiences
                .iter()
                .any(|audience| self.audiences.contains(audience)),
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }

        let caller = match token_version {
            TokenVersion::V1 => claims.appid,
            TokenVersion::V2 => claims.azp,
        }
        .ok_or(AuthError::MissingCaller)?;
        if !self
            .allowed_callers
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&caller))
        {
            return Err(AuthError::CallerNotAllowed);
        }

        Ok(CheckedClaims {
            caller: VerifiedCaller {
                caller_app_id: caller,
                issuer,
                token_version,
                dev: source == KeySource::Dev,
                expires_at,
                subject: claims.sub,
            },
            valid_from,
            valid_until,
        })
    }
}

/// RFC 7519 NumericDate: seconds, possibly fractional. Anything else is a malformed claim.
fn numeric_date(value: Option<&serde_json::Value>) -> Result<Option<i64>, AuthError> {
    let Some(value) = value else { return Ok(None) };
    if let Some(seconds) = value.as_i64() {
        return Ok(Some(seconds));
    }
    match value.as_f64() {
        // `as` saturates, which is the right answer for absurd dates.
        Some(seconds) if seconds.is_finite() => Ok(Some(seconds.floor() as i64)),
        _ => Err(AuthError::MalformedClaims),
    }
}

fn is_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Unpadded base64url (RFC 7515 §2), strict: padding and non-canonical trailing bits are refused.
/// The header is read here, before `jsonwebtoken`, so an unknown `alg` is reported as such.
fn decode_base64url(input: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(input)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_every_tail_length() {
        assert_eq!(decode_base64url("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64url("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_base64url("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_base64url("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode_base64url("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(decode_base64url("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    }

    #[test]
    fn base64url_rejects_impossible_lengths_padding_and_stray_bits() {
        assert_eq!(decode_base64url("Z"), None);
        assert_eq!(decode_base64url("Zg=="), None);
        assert_eq!(decode_base64url("Zh"), None);
        assert_eq!(decode_base64url("Zm+v"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_refused() {
        assert_eq!(extract_bearer(Some("bEaReR abc")).ok(), Some("abc"));
        assert!(matches!(
            extract_bearer(Some("Basic abc")),
            Err(AuthError::WrongScheme)
        ));
        assert!(matches!(
            extract_bearer(Some("Bearer ")),
            Err(AuthError::EmptyToken)
        ));
        assert!(matches!(
            extract_bearer(None),
            Err(AuthError::MissingHeader)
        ));
    }
}
