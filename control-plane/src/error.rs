//! The admin API's error type, and its one mapping to gRPC status codes
//! (DESIGN §8): every error an operator sees is built here.
//!
//! The cases a caller may act on carry what they are about (the kind of
//! object and its name, the field that referred to it, the revisions that
//! disagreed) rather than a sentence, so code and tests match on fields and
//! the wording lives in one place: the `#[error]` attributes below.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A request field breaks a rule. The message names the field and the rule.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    /// The object `name` of `kind` does not exist; `field` is where the
    /// request referred to it, when it was a reference rather than the
    /// object the call is about.
    #[error("{kind} {name:?} not found{}", within(.field))]
    NotFound {
        kind: &'static str,
        name: String,
        field: Option<String>,
    },
    /// The object `name` of `kind` exists, so it cannot be created (or
    /// shadowed: an alias named like a model group).
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// A lost race on `kind` `name`: see [`Abort`] for which.
    #[error("{kind} {name:?} {why}")]
    Aborted {
        kind: &'static str,
        name: String,
        why: Abort,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a write was aborted (gRPC `ABORTED`: the caller should read again and
/// retry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    /// The caller pinned `expected_revision`, and the object is elsewhere.
    #[error("is at revision {actual}, not the expected {expected}; read it again and retry")]
    StaleRevision { expected: i64, actual: i64 },
    /// The caller pinned `expected_revision`, and the object changed between
    /// the read and the write.
    #[error("changed during the update; read it again and retry")]
    ChangedDuring,
    /// Other writers kept winning for `attempts` tries.
    #[error("kept changing for {attempts} attempts; retry the call")]
    KeptConflicting { attempts: u32 },
}

fn within(field: &Option<String>) -> String {
    match field {
        Some(f) => format!(" (in {f})"),
        None => String::new(),
    }
}

impl AdminError {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The object the call is about is missing.
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
            field: None,
        }
    }

    /// An object the request refers to, in `field`, is missing.
    pub fn not_found_in(
        kind: &'static str,
        name: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
            field: Some(field.into()),
        }
    }

    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> Self {
        Self::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    pub fn aborted(kind: &'static str, name: impl Into<String>, why: Abort) -> Self {
        Self::Aborted {
            kind,
            name: name.into(),
            why,
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
            AdminError::NotFound { .. } => tonic::Status::not_found(message),
            AdminError::AlreadyExists { .. } => tonic::Status::already_exists(message),
            AdminError::Aborted { .. } => tonic::Status::aborted(message),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn status(e: AdminError) -> (Code, String) {
        let s = tonic::Status::from(e);
        (s.code(), s.message().to_string())
    }

    #[test]
    fn not_found_names_the_object_and_where_it_was_named() {
        assert_eq!(
            status(AdminError::not_found("team", "t1")),
            (Code::NotFound, r#"team "t1" not found"#.into())
        );
        assert_eq!(
            status(AdminError::not_found_in(
                "access group",
                "bulk",
                "team.access_groups[2]"
            )),
            (
                Code::NotFound,
                r#"access group "bulk" not found (in team.access_groups[2])"#.into()
            )
        );
    }

    #[test]
    fn already_exists_names_the_object() {
        assert_eq!(
            status(AdminError::already_exists("deployment", "d1")),
            (
                Code::AlreadyExists,
                r#"deployment "d1" already exists"#.into()
            )
        );
    }

    #[test]
    fn aborted_says_which_race_was_lost() {
        assert_eq!(
            status(AdminError::aborted(
                "team",
                "t1",
                Abort::StaleRevision {
                    expected: 4,
                    actual: 9
                }
            )),
            (
                Code::Aborted,
                r#"team "t1" is at revision 9, not the expected 4; read it again and retry"#.into()
            )
        );
        assert_eq!(
            status(AdminError::aborted("key", "ab", Abort::ChangedDuring)),
            (
                Code::Aborted,
                r#"key "ab" changed during the update; read it again and retry"#.into()
            )
        );
        assert_eq!(
            status(AdminError::aborted(
                "team",
                "t1",
                Abort::KeptConflicting { attempts: 400 }
            )),
            (
                Code::Aborted,
                r#"team "t1" kept changing for 400 attempts; retry the call"#.into()
            )
        );
    }

    #[test]
    fn the_other_cases_map_to_their_codes() {
        let cases = [
            (
                AdminError::invalid("team.team_id", "too long"),
                Code::InvalidArgument,
            ),
            (
                AdminError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (AdminError::Unavailable("down".into()), Code::Unavailable),
            (AdminError::Internal("bug".into()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(status(e).0, code);
        }
        assert_eq!(
            status(AdminError::invalid("team.team_id", "too long")).1,
            "team.team_id: too long"
        );
    }
}
