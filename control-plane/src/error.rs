//! The admin API's error type, and its one mapping to gRPC status codes
//! (DESIGN §8): every error an operator sees is built here.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A request field breaks a rule. The message names the field and the rule.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A lost race: the object changed since the revision the caller expected.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AdminError {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::TooLarge(m) => Self::Internal(format!("transaction too large: {m}")),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AdminError> for tonic::Status {
    fn from(e: AdminError) -> Self {
        let message = e.to_string();
        match e {
            AdminError::Invalid { .. } => tonic::Status::invalid_argument(message),
            AdminError::NotFound(_) => tonic::Status::not_found(message),
            AdminError::AlreadyExists(_) => tonic::Status::already_exists(message),
            AdminError::Aborted(_) => tonic::Status::aborted(message),
            AdminError::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            AdminError::Unavailable(_) => tonic::Status::unavailable(message),
            AdminError::Internal(_) => {
                tracing::error!(error = %message, "internal error in admin call");
                tonic::Status::internal(message)
            }
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;
