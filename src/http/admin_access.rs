//! `admin.token_file`: the secret the console and `/metrics` ask for on the admin listener.
//!
//! Two ways to present it, for two kinds of client: `Authorization: Bearer <secret>` (Prometheus'
//! `authorization.credentials_file`, curl) and HTTP Basic with the secret as the password (any user
//! name), which a browser asks for by itself after a `401` with `WWW-Authenticate: Basic`. The probes
//! `/healthz` and `/readyz` stay open: kubelet sends no credentials, and they say nothing secret.
//!
//! The comparison is over SHA-256 digests in constant time, so neither the length nor a prefix of
//! the secret leaks through timing. The secret never appears in a log line or a response.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Paths answered without the secret.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The admin secret's digest; `None` when no `admin.token_file` is configured (open listener).
#[derive(Clone)]
pub struct AdminToken(Option<Arc<[u8; 32]>>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AdminToken(***)"
        } else {
            "AdminToken(none)"
        })
    }
}

impl AdminToken {
    pub fn none() -> Self {
        Self(None)
    }

    pub fn new(secret: &str) -> Self {
        Self(Some(Arc::new(Sha256::digest(secret.as_bytes()).into())))
    }

    /// Whether the request carries the secret (always true without one).
    fn admits(&self, request: &ServiceRequest) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(presented) = presented_secret(request) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        constant_time_eq(&digest, expected)
    }
}

/// The secret from `Bearer <secret>` or `Basic base64(user:secret)`; `None` for anything else.
fn presented_secret(request: &ServiceRequest) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

fn constant_time_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right.iter())
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// Middleware for the admin listener: refuses every path but the probes without the secret.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let token = request
        .app_data::<web::Data<AdminToken>>()
        .map(|data| data.get_ref().clone())
        .unwrap_or_else(AdminToken::none);
    if OPEN_PATHS.contains(&request.path()) || token.admits(&request) {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let response = HttpResponse::Unauthorized()
        .insert_header((
            header::WWW_AUTHENTICATE,
            "Basic realm=\"pimgate admin\", charset=\"UTF-8\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body("the admin listener needs its secret (admin.token_file): Authorization: Bearer <secret>, or Basic with the secret as password\n");
    Ok(request.into_response(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request_with(authorization: Option<&str>) -> ServiceRequest {
        let mut request = TestRequest::get().uri("/metrics");
        if let Some(value) = authorization {
            request = request.insert_header((header::AUTHORIZATION, value));
        }
        request.to_srv_request()
    }

    fn basic(user_and_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        )
    }

    #[test]
    fn only_the_configured_secret_is_admitted_as_bearer_or_basic_password() {
        let token = AdminToken::new("s3cret-admin-token-0123");
        assert!(token.admits(&request_with(Some("Bearer s3cret-admin-token-0123"))));
        assert!(token.admits(&request_with(Some("bearer  s3cret-admin-token-0123 "))));
        assert!(token.admits(&request_with(Some(&basic("ops:s3cret-admin-token-0123")))));
        assert!(token.admits(&request_with(Some(&basic(":s3cret-admin-token-0123")))));

        for refused in [
            None,
            Some("Bearer s3cret-admin-token-012"),
            Some("Bearer s3cret-admin-token-01234"),
            Some("Bearer "),
            Some("s3cret-admin-token-0123"),
            Some("Token s3cret-admin-token-0123"),
            Some("Basic !!!not-base64"),
            Some(basic("s3cret-admin-token-0123").as_str()),
            Some(basic("s3cret-admin-token-0123:wrong").as_str()),
        ] {
            assert!(!token.admits(&request_with(refused)), "{refused:?}");
        }
    }

    #[test]
    fn without_a_token_file_the_listener_is_open_and_debug_hides_the_secret() {
        assert!(AdminToken::none().admits(&request_with(None)));
        let shown = format!("{:?}", AdminToken::new("s3cret-admin-token-0123"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
