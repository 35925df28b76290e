//! What a plugin call can end in, apart from success.

/// Why a plugin call failed. Everything but `Internal` may be shown to the
/// client; every variant means the call's writes were rolled back.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin returned a typed error (its own refusal, or a host call's
    /// error it passed on).
    #[error("{message}")]
    Returned {
        /// The GraphQL `extensions.code`: a kernel code (`NOT_FOUND`,
        /// `CONFLICT`, `BAD_USER_INPUT`, `FORBIDDEN`) or the plugin's own.
        code: String,
        message: String,
        /// The input field the error is about, when it is one
        /// (`BAD_USER_INPUT`): `grants`, `config`, `manifest`… It travels
        /// beside the message so that the gateway never parses it back out.
        field: Option<String>,
    },
    /// The plugin ran past its deadline and was stopped.
    #[error("the plugin {plugin} did not finish within {millis} ms and was stopped")]
    Deadline { plugin: String, millis: u128 },
    /// The plugin tried to use more memory than its cap.
    #[error("the plugin {plugin} exceeded its memory limit of {bytes} bytes and was stopped")]
    MemoryLimit { plugin: String, bytes: usize },
    /// The plugin trapped (a panic, an illegal operation).
    #[error("the plugin {plugin} failed (trapped) and was stopped")]
    Trapped { plugin: String, detail: String },
    /// The input or the output was larger than allowed.
    #[error("the plugin {plugin}'s {what} is {size} bytes; the limit is {limit}")]
    TooLarge {
        plugin: String,
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The component cannot run here (unsupported WIT version, not a
    /// Keel plugin, invalid).
    #[error("{0}")]
    Incompatible(String),
    /// Too many calls at once: no instance slot was free.
    #[error("the plugin host is at capacity; retry shortly")]
    Busy,
    /// A kernel failure (database, host bug). Logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl PluginError {
    /// The GraphQL `extensions.code` for this error.
    pub fn code(&self) -> &str {
        match self {
            PluginError::Returned { code, .. } => code,
            PluginError::Deadline { .. } => "PLUGIN_TIMEOUT",
            PluginError::MemoryLimit { .. } => "PLUGIN_OUT_OF_MEMORY",
            PluginError::Trapped { .. } => "PLUGIN_FAILED",
            PluginError::TooLarge { what: "input", .. } => "BAD_USER_INPUT",
            PluginError::TooLarge { .. } => "PLUGIN_OUTPUT_TOO_LARGE",
            PluginError::Incompatible(_) => "BAD_USER_INPUT",
            PluginError::Busy => "RATE_LIMITED",
            PluginError::Internal(_) => "INTERNAL",
        }
    }

    /// The input field the error is about, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PluginError::Returned { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl From<keel_core::Error> for PluginError {
    fn from(e: keel_core::Error) -> Self {
        match e {
            keel_core::Error::Internal(cause) => PluginError::Internal(cause),
            other => PluginError::Returned {
                code: other.code().to_owned(),
                message: other.to_string(),
                field: match &other {
                    keel_core::Error::BadInput { field, .. } => Some(field.clone()),
                    _ => None,
                },
            },
        }
    }
}

/// `Result` with [`PluginError`].
pub type Result<T, E = PluginError> = std::result::Result<T, E>;
