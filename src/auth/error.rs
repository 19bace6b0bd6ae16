//! Why a token was rejected, or why signing keys could not be loaded.
//!
//! Messages never carry the token or any part of it (header values, claims): a rejected token may be
//! a real credential sent to the wrong place, and logs travel further than tokens should.

/// One variant per rejection reason, so logs and metrics can count them apart (`reason_code`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no authorization header")]
    MissingHeader,
    #[error("authorization scheme is not bearer")]
    WrongScheme,
    #[error("bearer token is empty")]
    EmptyToken,
    #[error("bearer token is larger than {limit} bytes")]
    TokenTooLarge { limit: usize },
    #[error("bearer token is not a well-formed jwt")]
    Malformed,
    #[error("token algorithm is not rs256")]
    UnsupportedAlgorithm,
    #[error("token header has no key id")]
    MissingKeyId,
    #[error("token key id is not in the signing key set")]
    UnknownKeyId,
    #[error("no signing keys have been fetched yet")]
    KeysUnavailable,
    #[error("token is from the development issuer but development mode is off")]
    DevModeOff,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token claims are not a valid json object")]
    MalformedClaims,
    #[error("token has no `exp` claim")]
    MissingExpiry,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token has no `iss` claim")]
    MissingIssuer,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token has no `aud` claim")]
    MissingAudience,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no caller claim (`azp` for v2, `appid` for v1)")]
    MissingCaller,
    #[error("token caller is not an allowed application")]
    CallerNotAllowed,
    #[error("token tenant does not match the configured tenant")]
    TenantMismatch,
    #[error("token `ver` claim does not match its issuer")]
    VersionMismatch,
    /// Start-up problems in `[auth]`: the operator has to fix the file.
    #[error("invalid auth configuration: {0}")]
    InvalidConfig(String),
    #[error("openid discovery failed: {0}")]
    Discovery(String),
    #[error("jwks fetch failed: {0}")]
    Jwks(String),
    /// The checked-in development key did not load: a build defect, not a caller's fault.
    #[error("development key is unusable: {0}")]
    DevKey(String),
}

impl AuthError {
    /// A short stable label for logs and metrics labels (bounded cardinality, no token data).
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::WrongScheme => "wrong_scheme",
            Self::EmptyToken => "empty_token",
            Self::TokenTooLarge { .. } => "token_too_large",
            Self::Malformed => "malformed",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::MissingKeyId => "missing_kid",
            Self::UnknownKeyId => "unknown_kid",
            Self::KeysUnavailable => "keys_unavailable",
            Self::DevModeOff => "dev_mode_off",
            Self::BadSignature => "bad_signature",
            Self::MalformedClaims => "malformed_claims",
            Self::MissingExpiry => "missing_exp",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::MissingIssuer => "missing_iss",
            Self::WrongIssuer => "wrong_issuer",
            Self::MissingAudience => "missing_aud",
            Self::WrongAudience => "wrong_audience",
            Self::MissingCaller => "missing_caller",
            Self::CallerNotAllowed => "caller_not_allowed",
            Self::TenantMismatch => "tenant_mismatch",
            Self::VersionMismatch => "version_mismatch",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Discovery(_) => "discovery_failed",
            Self::Jwks(_) => "jwks_failed",
            Self::DevKey(_) => "dev_key_unusable",
        }
    }

    /// True when the caller's token is at fault (answer 401); false when pimgate itself cannot
    /// judge the token yet (no keys, broken config: answer 503 and let PIM retry).
    pub fn is_token_rejection(&self) -> bool {
        !matches!(
            self,
            Self::KeysUnavailable
                | Self::InvalidConfig(_)
                | Self::Discovery(_)
                | Self::Jwks(_)
                | Self::DevKey(_)
        )
    }
}
