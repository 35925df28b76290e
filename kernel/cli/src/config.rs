//! The `keel` binary's configuration: flags, then `KEEL_*` environment
//! variables, then an optional TOML file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use keel_gateway::{GatewayConfig, QueryLimits};
use serde::Deserialize;

/// The default database: an SQLite file under `./keel-data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://keel-data/keel.db";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Keys of the TOML file (`--config`). Unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub max_query_depth: Option<usize>,
    pub max_query_complexity: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub download_timeout_secs: Option<u64>,
    pub database_max_connections: Option<u32>,
    pub plugin_cache_dir: Option<String>,
}

impl FileConfig {
    /// Reads `path`, or returns an empty config when no file is named.
    pub fn load(path: Option<&Path>) -> Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }
}

/// The settled configuration of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub log: String,
    pub log_format: LogFormat,
    pub gateway: GatewayConfig,
    pub database_max_connections: u32,
    /// Where compiled plugins are cached.
    pub plugin_cache_dir: std::path::PathBuf,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Values given as flags or environment variables (clap already merged
/// those two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    pub fn resolve(o: &Overrides) -> Result<Config> {
        let file = FileConfig::load(o.config.as_deref())?;
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen
            .parse()
            .with_context(|| format!("listen: {listen:?} is not an address like 127.0.0.1:8080"))?;
        let log_format = match (o.log_format, file.log_format.as_deref()) {
            (Some(f), _) => f,
            (None, None | Some("pretty")) => LogFormat::Pretty,
            (None, Some("json")) => LogFormat::Json,
            (None, Some(other)) => anyhow::bail!("log_format: {other:?} is not pretty or json"),
        };
        let defaults = GatewayConfig::default();
        let gateway = GatewayConfig {
            limits: QueryLimits {
                max_depth: file.max_query_depth.unwrap_or(defaults.limits.max_depth),
                max_complexity: file
                    .max_query_complexity
                    .unwrap_or(defaults.limits.max_complexity),
            },
            max_body_bytes: file.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            request_timeout: file
                .request_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.request_timeout),
            download_timeout: file
                .download_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.download_timeout),
            ..defaults
        };
        Ok(Config {
            listen,
            database_url: o
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            log: o.log.clone().or(file.log).unwrap_or_else(|| "info".into()),
            log_format,
            gateway,
            database_max_connections: file.database_max_connections.unwrap_or(16),
            plugin_cache_dir: file
                .plugin_cache_dir
                .map(Into::into)
                .unwrap_or_else(|| "keel-data/plugin-cache".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let f = write(
            "listen = \"127.0.0.1:9000\"\ndatabase_url = \"sqlite://x.db\"\nmax_query_depth = 5\n",
        );
        let o = Overrides {
            config: Some(f.path().to_path_buf()),
            listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = Config::resolve(&o).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.database_url, "sqlite://x.db");
        assert_eq!(c.gateway.limits.max_depth, 5);
        assert_eq!(
            c.gateway.limits.max_complexity,
            QueryLimits::default().max_complexity
        );
    }

    #[test]
    fn refuses_unknown_keys_in_the_file() {
        let f = write("listen = \"127.0.0.1:9000\"\nlisten_port = 9000\n");
        let o = Overrides {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::resolve(&o).unwrap_err());
        assert!(err.contains("unknown field `listen_port`"), "{err}");
    }

    #[test]
    fn refuses_a_bad_listen_address() {
        let o = Overrides {
            listen: Some("localhost".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::resolve(&o).unwrap_err());
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn defaults_to_sqlite_under_keel_data() {
        let c = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    }
}
