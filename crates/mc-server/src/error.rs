//! The one API error type: every failure leaves the server as the envelope
//! `{"error": {"code", "message", "details"}}` with the right status. Internal causes are logged,
//! not leaked.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mc_api::{ErrorBody, ErrorEnvelope};
use mc_domain::Error;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>, details: Value) -> Self {
        Self { status, code: code.to_owned(), message: message.into(), details }
    }

    pub fn bad_request(code: &str, message: impl Into<String>, details: Value) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message, details)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message, Value::Null)
    }

    /// A bad query or path parameter, naming it.
    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::bad_request("invalid_parameter", format!("{field}: {message}"), json!({ "field": field }))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation { field, message } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("{field}: {message}"),
                json!({ "field": field }),
            ),
            Error::NotFound { entity, id } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{entity} {id} not found"),
                json!({ "entity": entity, "id": id }),
            ),
            Error::Conflict { code, message, details } => Self::new(StatusCode::CONFLICT, code, message, details),
            Error::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable right now; retry shortly",
                    Value::Null,
                )
            }
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                    Value::Null,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope { error: ErrorBody { code: self.code, message: self.message, details: self.details } };
        (self.status, Json(body)).into_response()
    }
}
