//! PLACEHOLDER: bearer-token validation (being written by the auth helper). Same API, no logic.

use std::sync::Arc;

use crate::settings::{AuthSettings, TokenVersion};

#[derive(Debug)]
pub struct Authenticator;

#[derive(Debug, Clone)]
pub struct VerifiedCaller {
    pub caller_app_id: String,
    pub issuer: String,
    pub token_version: TokenVersion,
    pub dev: bool,
    pub expires_at: i64,
    pub subject: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("not implemented")]
    NotImplemented,
}

impl AuthError {
    pub fn reason_code(&self) -> &'static str {
        "not_implemented"
    }
}

impl Authenticator {
    pub fn new(_settings: &AuthSettings, _http: reqwest::Client) -> Result<Arc<Self>, AuthError> {
        Ok(Arc::new(Authenticator))
    }
    pub async fn refresh_keys(&self) -> Result<usize, AuthError> {
        Err(AuthError::NotImplemented)
    }
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
    pub fn is_ready(&self) -> bool {
        false
    }
    pub async fn verify_header(
        &self,
        _authorization: Option<&str>,
    ) -> Result<VerifiedCaller, AuthError> {
        Err(AuthError::NotImplemented)
    }
}

pub mod dev {
    use super::AuthError;
    use crate::settings::{AuthSettings, TokenVersion};
    pub const DEV_ISSUER: &str = "https://pimgate.invalid/dev-issuer";
    #[derive(Debug, Default)]
    pub struct DevTokenOptions {
        pub audience: Option<String>,
        pub caller: Option<String>,
        pub subject: Option<String>,
        pub expires_in_seconds: i64,
        pub token_version: Option<TokenVersion>,
    }
    pub fn issue_token(
        _settings: &AuthSettings,
        _options: &DevTokenOptions,
    ) -> Result<String, AuthError> {
        Err(AuthError::NotImplemented)
    }
}
