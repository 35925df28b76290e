//! The error a plugin returns, and host calls return to it.

use crate::bindings::keel::plugin::types as wit;

/// Why an operation or a host call failed. The kernel maps each case to a
/// GraphQL `extensions.code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// NOT_FOUND.
    NotFound(String),
    /// CONFLICT: a stale version, a duplicate, a reused idempotency key.
    Conflict(String),
    /// BAD_USER_INPUT.
    InvalidInput(String),
    /// FORBIDDEN: a capability this plugin was not granted.
    Denied(String),
    /// The plugin's own refusal, with an UPPER_SNAKE_CASE code of its choice.
    Refused { code: String, message: String },
    /// INTERNAL.
    Internal(String),
}

/// `Result` with the plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A refusal with the plugin's own code, e.g. `Error::refused("SOLD_OUT", "no stock left")`.
    pub fn refused(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Refused {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Malformed input: `Error::invalid("quantity must be positive")`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Conflict(m) => write!(f, "conflict: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::Refused { code, message } => write!(f, "{code}: {message}"),
            Error::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::NotFound(m) => Error::NotFound(m),
            wit::Error::Conflict(m) => Error::Conflict(m),
            wit::Error::InvalidInput(m) => Error::InvalidInput(m),
            wit::Error::Denied(m) => Error::Denied(m),
            wit::Error::Refused(r) => Error::Refused {
                code: r.code,
                message: r.message,
            },
            wit::Error::Internal(m) => Error::Internal(m),
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => wit::Error::NotFound(m),
            Error::Conflict(m) => wit::Error::Conflict(m),
            Error::InvalidInput(m) => wit::Error::InvalidInput(m),
            Error::Denied(m) => wit::Error::Denied(m),
            Error::Refused { code, message } => wit::Error::Refused(wit::Refusal { code, message }),
            Error::Internal(m) => wit::Error::Internal(m),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::InvalidInput(e.to_string())
    }
}
