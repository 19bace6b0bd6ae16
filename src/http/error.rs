//! The one place internal errors become HTTP answers. Bodies say what the caller can fix; anything
//! that would help an attacker (why a token failed) or leak internals goes to the log only.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::payload::PayloadError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bearer token rejected: {0}")]
    Unauthorized(#[from] AuthError),
    #[error("the service is not ready: {0}")]
    NotReady(&'static str),
    #[error("content type `{0}` is not JSON")]
    UnsupportedMediaType(String),
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body was not received in time")]
    BodyTimeout,
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error(transparent)]
    BadRequest(#[from] PayloadError),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyRead(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, detail, field) = match self {
            // Deliberately uniform: the reason is logged by the handler, never returned.
            ApiError::Unauthorized(_) => (
                "invalid_token",
                "the bearer token is missing, malformed, expired or not trusted".to_string(),
                None,
            ),
            ApiError::NotReady(why) => (
                "not_ready",
                format!("pimgate is not ready yet: {why}; retry shortly"),
                None,
            ),
            ApiError::UnsupportedMediaType(_) => (
                "unsupported_media_type",
                format!("{self}; send `Content-Type: application/json`"),
                None,
            ),
            ApiError::PayloadTooLarge { .. } => ("payload_too_large", self.to_string(), None),
            ApiError::BodyTimeout => ("request_timeout", self.to_string(), None),
            ApiError::BodyRead(_) => ("invalid_request", self.to_string(), None),
            ApiError::BadRequest(error) => ("invalid_request", error.to_string(), error.field()),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            ));
        }
        if matches!(self, ApiError::NotReady(_)) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.json(ErrorBody {
            error: code,
            detail,
            field,
        })
    }
}
