//! The one place where kernel errors become client-facing GraphQL errors.
//!
//! Every error leaves with `extensions.code`. Internal causes are logged here,
//! once, with the request id, and the client sees only "internal error" and
//! that id.

use async_graphql::{ErrorExtensionValues, ServerError};
use axum::http::StatusCode;
use keel_core::Error;
use keel_host::PluginError;

/// A failure as it leaves the gateway, whatever raised it: it owns its
/// `extensions.code`, its HTTP status, the input field it is about and the
/// message a client may see. An internal cause is logged in
/// [`EdgeError::message`], the one place the gateway logs one, and the client
/// sees only "internal error" (with the request id, added by
/// [`ensure_codes`]).
#[derive(Debug)]
pub(crate) enum EdgeError {
    /// A kernel operation failed.
    Kernel(Error),
    /// A plugin call, or the plugin registry, failed.
    Plugin(PluginError),
    /// The gateway refuses on its own account (authentication, limits, a
    /// request outside any kernel operation).
    Gateway { code: String, message: String },
}

impl From<Error> for EdgeError {
    fn from(e: Error) -> Self {
        EdgeError::Kernel(e)
    }
}

impl From<PluginError> for EdgeError {
    fn from(e: PluginError) -> Self {
        EdgeError::Plugin(e)
    }
}

impl EdgeError {
    /// A refusal of the gateway's own.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        EdgeError::Gateway {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The `extensions.code`.
    pub(crate) fn code(&self) -> &str {
        match self {
            EdgeError::Kernel(e) => e.code(),
            EdgeError::Plugin(e) => e.code(),
            EdgeError::Gateway { code, .. } => code,
        }
    }

    /// The HTTP status of a request that fails as a whole with this error.
    pub(crate) fn status(&self) -> StatusCode {
        http_status(self.code())
    }

    /// The input field the error is about, if it names one.
    pub(crate) fn field(&self) -> Option<&str> {
        match self {
            EdgeError::Kernel(Error::BadInput { field, .. }) => Some(field),
            EdgeError::Plugin(e) => e.field(),
            _ => None,
        }
    }

    /// The message a client may see. An internal cause is logged here and
    /// replaced by "internal error".
    pub(crate) fn message(&self) -> String {
        match self {
            EdgeError::Kernel(Error::Internal(cause)) => {
                tracing::error!(error = ?cause, "internal error");
                "internal error".to_owned()
            }
            EdgeError::Plugin(PluginError::Internal(cause)) => {
                tracing::error!(error = ?cause, "plugin call failed inside the kernel");
                "internal error".to_owned()
            }
            EdgeError::Kernel(e) => e.to_string(),
            EdgeError::Plugin(e) => e.to_string(),
            EdgeError::Gateway { message, .. } => message.clone(),
        }
    }

    fn extensions(&self) -> ErrorExtensionValues {
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", self.code());
        if let Some(field) = self.field() {
            ext.set("field", field);
        }
        ext
    }

    /// The error for a resolver.
    pub(crate) fn into_gql(self) -> async_graphql::Error {
        async_graphql::Error {
            message: self.message(),
            source: None,
            extensions: Some(self.extensions()),
        }
    }

    /// The error of a whole request (not tied to a field).
    pub(crate) fn into_server_error(self) -> ServerError {
        let mut e = ServerError::new(self.message(), None);
        e.extensions = Some(self.extensions());
        e
    }
}

/// Refuses a caller limited to an org node a plugin that does not enforce
/// org scopes (its manifest's `enforces_org_scope`): such a plugin would
/// act on the whole tenant for it.
pub(crate) fn admits_scope(
    act: &keel_host::Activation,
    scope: Option<&str>,
) -> Result<(), EdgeError> {
    if scope.is_some() && !act.manifest.enforces_org_scope {
        return Err(EdgeError::new(
            "FORBIDDEN",
            format!(
                "this credential is limited to an org node, and the plugin {} does not enforce org scopes; use a credential of the whole tenant",
                act.manifest.name
            ),
        ));
    }
    Ok(())
}

impl From<EdgeError> for async_graphql::Error {
    fn from(e: EdgeError) -> Self {
        e.into_gql()
    }
}

/// Converts a kernel error for a resolver.
pub(crate) fn to_gql(e: Error) -> async_graphql::Error {
    EdgeError::from(e).into_gql()
}

/// Converts a failed plugin call (or registry operation) for a resolver.
pub(crate) fn plugin_error(e: PluginError) -> async_graphql::Error {
    EdgeError::from(e).into_gql()
}

/// The HTTP status of a request that fails as a whole with `code`, for the
/// routes that answer outside GraphQL (downloads and pages) and for
/// [`EdgeError::status`]. Kernel codes
/// have their usual statuses; a plugin's own refusal code is 422; a plugin
/// that breaks (traps, runs out of memory, answers too much or nonsense) is
/// 502, one that runs past its deadline 504.
fn http_status(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "CONFLICT" => StatusCode::CONFLICT,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
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
    EdgeError::new(code, message).into_gql()
}

/// A whole-request error (not tied to a field) with a code.
pub(crate) fn request_error(code: &str, message: impl Into<String>) -> ServerError {
    EdgeError::new(code, message).into_server_error()
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
