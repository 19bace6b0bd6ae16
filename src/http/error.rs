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
    /// The decision could not be written as PIM's answer. Not expected for its types, but if it
    /// ever happened PIM must see a failure, not an empty `200`.
    #[error("the answer could not be serialized: {0}")]
    Answer(#[from] serde_json::Error),
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
            ApiError::Answer(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            ApiError::Answer(_) => (
                "internal",
                "the answer could not be written".to_string(),
                None,
            ),
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

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    #[test]
    fn an_answer_that_cannot_be_serialized_is_a_server_error_that_says_nothing_of_its_cause() {
        let Err(cause) = serde_json::from_str::<u8>("x") else {
            panic!("`x` is not JSON");
        };
        let error = ApiError::from(cause);
        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let Ok(bytes) = response.into_body().try_into_bytes() else {
            panic!("a JSON body in memory");
        };
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"error": "internal", "detail": "the answer could not be written"})
        );
    }
}
