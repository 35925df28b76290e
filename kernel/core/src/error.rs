//! The one error type of the kernel's public surface.

/// What can go wrong in a kernel operation, in terms a caller can act on.
///
/// Everything but [`Error::Internal`] is safe to show to the client that made
/// the request; `Internal` carries the cause for the log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credential is missing, unknown, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// The principal is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The input is malformed; `field` names the offending input field.
    #[error("{field}: {message}")]
    BadInput { field: String, message: String },
    /// The thing does not exist, or exists in another tenant (we never say which).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state (duplicate, stale version, guardrail).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
    /// A bug or an infrastructure failure. Logged, never sent to a client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// `Result` with the kernel's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::BadInput`] for `field`.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`Error::NotFound`] that names the kind of thing and the id asked for.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Error::NotFound(format!("{kind} {id:?} not found"))
    }

    /// This error as it happened at `path` inside a batch, e.g.
    /// `events[3]`: a bad input's field becomes `events[3].type`, other
    /// messages start with `events[3]: `. Internal errors are unchanged.
    pub fn at(self, path: &str) -> Self {
        match self {
            Error::BadInput { field, message } => Error::BadInput {
                field: format!("{path}.{field}"),
                message,
            },
            Error::NotFound(m) => Error::NotFound(format!("{path}: {m}")),
            Error::Conflict(m) => Error::Conflict(format!("{path}: {m}")),
            Error::Forbidden(m) => Error::Forbidden(format!("{path}: {m}")),
            other => other,
        }
    }

    /// The stable machine-readable code of this error (GraphQL `extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::Forbidden(_) => "FORBIDDEN",
            Error::BadInput { .. } => "BAD_USER_INPUT",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Conflict(_) => "CONFLICT",
            Error::RateLimited(_) => "RATE_LIMITED",
            Error::Internal(_) => "INTERNAL",
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(e.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(e.into())
    }
}

/// True when `e` is a unique-constraint violation, on either backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
