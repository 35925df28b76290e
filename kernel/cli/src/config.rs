//! The `keel` binary's configuration: flags, then `KEEL_*` environment
//! variables, then an optional TOML file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use keel_gateway::{ConsumerAuthConfig, GatewayConfig, QueryLimits, TrustedProxies};
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
    pub max_package_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub download_timeout_secs: Option<u64>,
    pub database_max_connections: Option<u32>,
    pub plugin_cache_dir: Option<String>,
    /// The most memory a plugin's `[resources]` may ask for, in MiB.
    pub plugin_max_memory_mib: Option<u32>,
    /// The longest deadline a plugin's `[resources]` may ask for, in ms.
    pub plugin_max_deadline_ms: Option<u64>,
    pub master_key_file: Option<PathBuf>,
    pub previous_master_key_file: Option<PathBuf>,
    pub max_fragment_spreads: Option<usize>,
    pub logins_per_ip_per_minute: Option<u32>,
    pub logins_per_account_address_per_minute: Option<u32>,
    pub logins_per_account_per_hour: Option<u32>,
    pub public_calls_per_ip_per_minute: Option<u32>,
    pub public_operations_per_request: Option<u32>,
    /// Addresses or networks of the load balancers whose `Forwarded` /
    /// `X-Forwarded-For` name the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Origins of brands' web pages that may call public GraphQL.
    pub public_origins: Option<Vec<String>>,
    pub public_base_url: Option<String>,
    pub consumer_session_ttl_secs: Option<u64>,
    pub secure_cookies: Option<bool>,
    pub wechat_authorize_base: Option<String>,
    pub wechat_api_base: Option<String>,
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
    /// The plugins' maximum memory and deadline (`[resources]`), when not
    /// the host's defaults.
    pub plugin_max_memory_mib: Option<u32>,
    pub plugin_max_deadline_ms: Option<u64>,
    /// The master key's file and, while rotating, the previous key's (the
    /// keys themselves may come from the environment: see `master_key.rs`).
    pub master_key_file: Option<PathBuf>,
    pub previous_master_key_file: Option<PathBuf>,
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
    pub master_key_file: Option<PathBuf>,
    pub previous_master_key_file: Option<PathBuf>,
    /// Comma-separated trusted proxies (`KEEL_TRUSTED_PROXIES`).
    pub trusted_proxies: Option<String>,
    /// Comma-separated public origins (`KEEL_PUBLIC_ORIGINS`).
    pub public_origins: Option<String>,
    pub public_base_url: Option<String>,
    pub consumer_session_ttl_secs: Option<u64>,
    pub secure_cookies: Option<bool>,
    pub wechat_authorize_base: Option<String>,
    pub wechat_api_base: Option<String>,
}

/// Checks public origins: `*`, or `scheme://host[:port]` as a browser
/// sends it in `Origin` (no path, no trailing slash).
fn public_origins(list: Vec<String>) -> Result<Vec<String>> {
    for o in &list {
        let ok = o == "*"
            || o.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', ' ', '*'])
            });
        if !ok {
            anyhow::bail!(
                "public_origins: {o:?} is not an origin such as https://h5.brand.cn (scheme and host, no path), or *"
            );
        }
    }
    Ok(list)
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
            max_package_bytes: file.max_package_bytes.unwrap_or(defaults.max_package_bytes),
            request_timeout: file
                .request_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.request_timeout),
            download_timeout: file
                .download_timeout_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.download_timeout),
            max_fragment_spreads: file
                .max_fragment_spreads
                .unwrap_or(defaults.max_fragment_spreads),
            logins_per_ip_per_minute: file
                .logins_per_ip_per_minute
                .unwrap_or(defaults.logins_per_ip_per_minute),
            logins_per_account_address_per_minute: file
                .logins_per_account_address_per_minute
                .unwrap_or(defaults.logins_per_account_address_per_minute),
            logins_per_account_per_hour: file
                .logins_per_account_per_hour
                .unwrap_or(defaults.logins_per_account_per_hour),
            public_calls_per_ip_per_minute: file
                .public_calls_per_ip_per_minute
                .unwrap_or(defaults.public_calls_per_ip_per_minute),
            public_operations_per_request: file
                .public_operations_per_request
                .unwrap_or(defaults.public_operations_per_request),
            trusted_proxies: match (&o.trusted_proxies, &file.trusted_proxies) {
                (Some(list), _) => TrustedProxies::parse(
                    &list
                        .split(',')
                        .filter(|s| !s.trim().is_empty())
                        .collect::<Vec<_>>(),
                ),
                (None, Some(list)) => TrustedProxies::parse(list),
                (None, None) => Ok(TrustedProxies::default()),
            }
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?,
            public_origins: public_origins(match (&o.public_origins, file.public_origins) {
                (Some(list), _) => list
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                (None, Some(list)) => list,
                (None, None) => Vec::new(),
            })?,
            consumer_auth: {
                let d = defaults.consumer_auth.clone();
                let c = ConsumerAuthConfig {
                    public_base_url: o.public_base_url.clone().or(file.public_base_url),
                    wechat_authorize_base: o
                        .wechat_authorize_base
                        .clone()
                        .or(file.wechat_authorize_base)
                        .unwrap_or(d.wechat_authorize_base),
                    wechat_api_base: o
                        .wechat_api_base
                        .clone()
                        .or(file.wechat_api_base)
                        .unwrap_or(d.wechat_api_base),
                    session_ttl: o
                        .consumer_session_ttl_secs
                        .or(file.consumer_session_ttl_secs)
                        .map(Duration::from_secs)
                        .unwrap_or(d.session_ttl),
                    secure_cookies: o
                        .secure_cookies
                        .or(file.secure_cookies)
                        .unwrap_or(d.secure_cookies),
                };
                c.validate()
                    .map_err(|e| anyhow::anyhow!("consumer sign-in: {e}"))?;
                c
            },
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
            plugin_max_memory_mib: file.plugin_max_memory_mib,
            plugin_max_deadline_ms: file.plugin_max_deadline_ms,
            master_key_file: o.master_key_file.clone().or(file.master_key_file),
            previous_master_key_file: o
                .previous_master_key_file
                .clone()
                .or(file.previous_master_key_file),
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
    fn every_limit_and_the_trusted_proxies_are_configurable() {
        let f = write(
            "logins_per_ip_per_minute = 7\nlogins_per_account_address_per_minute = 3\n\
             logins_per_account_per_hour = 40\npublic_calls_per_ip_per_minute = 90\n\
             public_operations_per_request = 4\nmax_fragment_spreads = 12\n\
             trusted_proxies = [\"10.0.0.0/8\"]\n",
        );
        let o = Overrides {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        };
        let g = Config::resolve(&o).unwrap().gateway;
        assert_eq!(
            (
                g.logins_per_ip_per_minute,
                g.logins_per_account_address_per_minute,
                g.logins_per_account_per_hour,
                g.public_calls_per_ip_per_minute,
                g.public_operations_per_request,
                g.max_fragment_spreads
            ),
            (7, 3, 40, 90, 4, 12)
        );
        let from_lb = std::net::SocketAddr::from(([10, 1, 2, 3], 80));
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
        assert_eq!(
            g.trusted_proxies.client_ip(from_lb, &h).to_string(),
            "203.0.113.5"
        );
        // The environment's list wins over the file's; a bad entry is an error.
        let env = Overrides {
            config: Some(f.path().to_path_buf()),
            trusted_proxies: Some("192.168.0.0/16, 127.0.0.1".into()),
            ..Default::default()
        };
        let g = Config::resolve(&env).unwrap().gateway;
        assert_eq!(
            g.trusted_proxies.client_ip(from_lb, &h).to_string(),
            "10.1.2.3"
        );
        let origins = Overrides {
            public_origins: Some("https://h5.brand.cn, http://127.0.0.1:8080".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&origins).unwrap().gateway.public_origins,
            ["https://h5.brand.cn", "http://127.0.0.1:8080"]
        );
        for bad in [
            "h5.brand.cn",
            "https://h5.brand.cn/",
            "ftp://x",
            "https://*.brand.cn",
        ] {
            let o = Overrides {
                public_origins: Some(bad.into()),
                ..Default::default()
            };
            let err = format!("{:#}", Config::resolve(&o).unwrap_err());
            assert!(err.contains("public_origins"), "{bad}: {err}");
        }
        let bad = Overrides {
            trusted_proxies: Some("10.0.0.0/40".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::resolve(&bad).unwrap_err());
        assert!(err.contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn defaults_to_sqlite_under_keel_data() {
        let c = Config::resolve(&Overrides::default()).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    }
}
