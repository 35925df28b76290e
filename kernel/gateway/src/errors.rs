//! The one place where kernel errors become client-facing GraphQL errors.
//!
//! Every error leaves with `extensions.code`. Internal causes are logged here,
//! once, with the request id, and the client sees only "internal error" and
//! that id.

use async_graphql::{ErrorExtensionValues, ServerError};
use axum::http::StatusCode;
use keel_core::Error;
use keel_host::PluginError;

/// Converts a kernel error for a resolver.
pub(crate) fn to_gql(e: Error) -> async_graphql::Error {
    let code = e.code();
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    let message = match &e {
        Error::Internal(cause) => {
            tracing::error!(error = ?cause, "internal error");
            "internal error".to_owned()
        }
        Error::BadInput { field, .. } => {
            ext.set("field", field.as_str());
            e.to_string()
        }
        other => other.to_string(),
    };
    async_graphql::Error {
        message,
        source: None,
        extensions: Some(ext),
    }
}

/// A kernel error as a code and a message safe for the client, for routes
/// outside GraphQL. An internal cause is logged here and never sent.
pub(crate) fn core_failure(e: &Error) -> (&'static str, String) {
    let message = match e {
        Error::Internal(cause) => {
            tracing::error!(error = ?cause, "internal error");
            "internal error".to_owned()
        }
        other => other.to_string(),
    };
    (e.code(), message)
}

/// A failed plugin call as a code and a message safe for the client. An
/// internal cause is logged here and never sent.
pub(crate) fn plugin_failure(e: &PluginError) -> (String, String) {
    if let PluginError::Internal(cause) = e {
        tracing::error!(error = ?cause, "plugin call failed inside the kernel");
    }
    (e.code().to_owned(), e.to_string())
}

/// The HTTP status of a request that fails as a whole with `code`, for the
/// routes that answer outside GraphQL (downloads and pages). Kernel codes
/// have their usual statuses; a plugin's own refusal code is 422; a plugin
/// that breaks (traps, runs out of memory, answers too much or nonsense) is
/// 502, one that runs past its deadline 504.
pub(crate) fn http_status(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "CONFLICT" => StatusCode::CONFLICT,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        "PLUGIN_TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
        "PLUGIN_FAILED"
        | "PLUGIN_OUT_OF_MEMORY"
        | "PLUGIN_OUTPUT_TOO_LARGE"
        | "PLUGIN_INVALID_OUTPUT" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// `?`-friendly conversion of kernel results in resolvers.
pub(crate) trait Gql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> Gql<T> for keel_core::Result<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(to_gql)
    }
}

/// A client-facing error with a code, outside any kernel operation.
pub(crate) fn gql_error(code: &str, message: impl Into<String>) -> async_graphql::Error {
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    async_graphql::Error {
        message: message.into(),
        source: None,
        extensions: Some(ext),
    }
}

/// A whole-request error (not tied to a field) with a code.
pub(crate) fn request_error(code: &str, message: impl Into<String>) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    e.extensions = Some(ext);
    e
}

/// Gives every error of a response a code, and hides the text of any error
/// that escaped without one: errors without a path come from parsing or
/// validation (including the depth and complexity limits) and are the
/// client's; errors with a path that lack a code are ours, except argument
/// coercion errors, which are the client's.
pub(crate) fn ensure_codes(errors: &mut [ServerError], request_id: &str) {
    for e in errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if has_code {
            if e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .map(|v| v.to_string())
                == Some("\"INTERNAL\"".into())
            {
                e.extensions
                    .get_or_insert_with(Default::default)
                    .set("requestId", request_id);
            }
            continue;
        }
        let client_side = e.path.is_empty()
            || e.message.starts_with("Failed to parse")
            || e.message.starts_with("Invalid value for argument");
        let ext = e.extensions.get_or_insert_with(Default::default);
        if client_side {
            ext.set("code", "BAD_USER_INPUT");
        } else {
            tracing::error!(message = %e.message, path = ?e.path, "resolver error without a code");
            e.message = "internal error".into();
            ext.set("code", "INTERNAL");
            ext.set("requestId", request_id);
        }
    }
}
