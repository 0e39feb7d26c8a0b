//! The one error type of the domain and the store: each variant maps to one HTTP status class.

use serde_json::Value;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule; `field` names the offending field (dotted path).
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// No entity of that kind with that id.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The request is well formed but conflicts with current state (lease held, stale fencing
    /// token, illegal transition, dependency cycle...). `code` is machine readable and stable.
    #[error("{message}")]
    Conflict { code: &'static str, message: String, details: Value },
    /// The backend cannot serve right now (shutting down, disk full); safe to retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or a corrupted store; logged in full, never shown to clients in detail.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound { entity, id: id.to_string() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>, details: Value) -> Self {
        Self::Conflict { code, message: message.into(), details }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation_failed",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { code, .. } => code,
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}
