//! `keel plugin dev`: the plugin author's loop against a running kernel.
//! Builds the plugin project, installs it over HTTP (`POST /packages`,
//! with the platform administrator's key), enables it on the tenant of
//! `--key` or upgrades it there, and prints the GraphiQL URL; then does it
//! again each time a file of the project changes. Build and enable errors
//! are printed and the loop waits for the next change.
//!
//! Every round installs the project under its manifest's version with a
//! `-dev.<milliseconds>` pre-release suffix, since an installed version is
//! immutable: the tenant moves to each new one with `upgradePlugin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use keel_host::Manifest;
use serde_json::{Value, json};

use crate::project::{Project, target_dir_from_env};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The plugin project.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The kernel's base URL.
    #[arg(long, env = "KEEL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The platform administrator's key, which installs packages
    /// (`keel serve` with KEEL_ADMIN_TOKEN set).
    #[arg(long, env = "KEEL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// An API key of the tenant to enable the plugin on (an owner's or
    /// an admin's; `keel serve --demo` prints one).
    #[arg(long, env = "KEEL_API_KEY", hide_env_values = true)]
    key: String,
    /// The plugin's configuration, as JSON, when it is first enabled (an
    /// upgrade keeps the tenant's config).
    #[arg(long, default_value = "{}")]
    plugin_config: String,
    /// Build, install and enable once, then exit (non-zero on failure).
    #[arg(long)]
    once: bool,
}

/// The kernel, as the loop talks to it.
struct Kernel {
    http: reqwest::Client,
    url: String,
    admin_token: String,
    key: String,
    config: Value,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let project = Project::find(&args.dir)?;
    let config: Value = serde_json::from_str(&args.plugin_config)
        .map_err(|e| anyhow!("--plugin-config: not JSON: {e}"))?;
    if !config.is_object() {
        bail!("--plugin-config: must be a JSON object");
    }
    let kernel = Kernel {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?,
        url: args.url.trim_end_matches('/').to_owned(),
        admin_token: args.admin_token,
        key: args.key,
        config,
    };
    if args.once {
        return kernel.round(&project).await;
    }
    println!("watching {} (Ctrl-C stops)", project.dir.display());
    loop {
        let started = Instant::now();
        match kernel.round(&project).await {
            Ok(()) => println!("  ready in {:.1} s", started.elapsed().as_secs_f64()),
            Err(e) => eprintln!("error: {e:#}"),
        }
        println!("waiting for a change…");
        // Taken after the round, so that what the build itself wrote (a
        // Cargo.lock) does not start another one.
        let seen = snapshot(&project.dir);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if snapshot(&project.dir) != seen {
                break;
            }
        }
    }
}

impl Kernel {
    /// Build, install, enable or upgrade.
    async fn round(&self, project: &Project) -> anyhow::Result<()> {
        let (text, manifest) = project.manifest()?;
        println!("building {} …", manifest.name);
        let build = project.clone();
        let wasm =
            tokio::task::spawn_blocking(move || build.component(target_dir_from_env().as_deref()))
                .await??;
        let version = dev_version(&manifest.version);
        let text = with_version(&text, &version)?;
        self.install(&text, wasm).await?;
        let slug = self.enable(&manifest, &version).await?;
        println!(
            "{} {version} is enabled on tenant {slug}: GraphiQL at {}/graphql",
            manifest.name, self.url
        );
        Ok(())
    }

    async fn install(&self, manifest: &str, wasm: Vec<u8>) -> anyhow::Result<()> {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest.to_owned())
            .part(
                "component",
                reqwest::multipart::Part::bytes(wasm).file_name("plugin.wasm"),
            );
        let res = self
            .http
            .post(format!("{}/packages", self.url))
            .bearer_auth(&self.admin_token)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("reaching the kernel at {}", self.url))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND && body.is_null() {
            bail!(
                "installing the package: {} has no /packages: is it a keel older than this one, \
                 or not a keel at all?",
                self.url
            );
        }
        if !status.is_success() {
            bail!("installing the package: {status}: {}", message(&body));
        }
        Ok(())
    }

    /// Enables the plugin on the key's tenant, or upgrades it there, with
    /// everything its manifest requests; returns the tenant's slug.
    async fn enable(&self, m: &Manifest, version: &str) -> anyhow::Result<String> {
        let now = self
            .graphql(
                "{ viewer { tenant { slug } } plugins { name enabled } }",
                json!({}),
            )
            .await?;
        let slug = now["viewer"]["tenant"]["slug"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let enabled = now["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == m.name.as_str() && p["enabled"] == true);
        let capabilities: Vec<&str> = m
            .capabilities
            .capabilities
            .iter()
            .map(|c| c.as_str())
            .collect();
        let hosts: Vec<&String> = m
            .capabilities
            .http_hosts
            .iter()
            .filter(|h| *h != "*")
            .collect();
        let calls: Vec<String> = m.calls.iter().map(|c| c.to_string()).collect();
        let vars = json!({
            "name": m.name, "version": version, "capabilities": capabilities,
            "httpHosts": hosts, "calls": calls, "config": self.config,
        });
        if enabled {
            if self.config.as_object().is_some_and(|c| !c.is_empty()) {
                println!(
                    "  (an upgrade keeps the tenant's config; --plugin-config applies when first enabled)"
                );
            }
            self.graphql(
                "mutation($name: String!, $version: String!, $capabilities: [String!], \
                 $httpHosts: [String!]!, $calls: [String!]!) { upgradePlugin(name: $name, \
                 version: $version, capabilities: $capabilities, httpHosts: $httpHosts, \
                 calls: $calls) { version } }",
                vars,
            )
            .await
            .context("upgrading the plugin")?;
        } else {
            self.graphql(
                "mutation($name: String!, $version: String!, $capabilities: [String!]!, \
                 $httpHosts: [String!]!, $calls: [String!]!, $config: JSON!) { \
                 enablePlugin(input: {name: $name, version: $version, capabilities: \
                 $capabilities, httpHosts: $httpHosts, calls: $calls, config: $config}) \
                 { version } }",
                vars,
            )
            .await
            .context("enabling the plugin")?;
        }
        Ok(slug)
    }

    async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let res = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(&self.key)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .with_context(|| format!("reaching the kernel at {}", self.url))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if body["errors"].is_array() || !status.is_success() {
            bail!("{status}: {}", message(&body));
        }
        Ok(body["data"].clone())
    }
}

/// The first error's message (with its code) of a kernel answer.
fn message(body: &Value) -> String {
    let e = &body["errors"][0];
    match (e["extensions"]["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (None, Some(m)) => m.to_owned(),
        _ => body.to_string(),
    }
}

/// `0.1.0` → `0.1.0-dev.<milliseconds since 1970>`.
fn dev_version(version: &str) -> String {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{core}-dev.{ms}")
}

/// The manifest's text with `version` replaced.
fn with_version(text: &str, version: &str) -> anyhow::Result<String> {
    let mut table: toml::Table = toml::from_str(text).context("keel-plugin.toml")?;
    table.insert("version".into(), toml::Value::String(version.into()));
    Ok(toml::to_string(&table)?)
}

/// What the loop watches: each file's length and modification time,
/// outside `target/`, the SDK copy `keel/` and hidden folders.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let skipped = d == dir && (name == "target" || name == "keel");
                if !skipped && !name.starts_with('.') && name != "__pycache__" {
                    stack.push(path);
                }
            } else {
                let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                files.insert(path, (meta.len(), modified));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_version_is_a_pre_release_of_the_manifests() {
        let v = dev_version("1.2.3-rc.1+build");
        assert!(v.starts_with("1.2.3-dev."), "{v}");
        let text = "name = \"x\"\nversion = \"1.2.3\"\n[graphql]\nsdl = \"type A { a: Int }\"\n";
        let out = with_version(text, &v).unwrap();
        let t: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(t["version"].as_str(), Some(v.as_str()));
        assert_eq!(t["graphql"]["sdl"].as_str(), Some("type A { a: Int }"));
    }

    #[test]
    fn the_watch_sees_an_edit_and_ignores_target_and_the_sdk_copy() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["src", "target", "keel"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("src/lib.rs"), "a").unwrap();
        let before = snapshot(dir.path());
        std::fs::write(dir.path().join("target/x"), "b").unwrap();
        std::fs::write(dir.path().join("keel/y"), "c").unwrap();
        assert_eq!(snapshot(dir.path()), before);
        std::fs::write(dir.path().join("src/lib.rs"), "ab").unwrap();
        assert_ne!(snapshot(dir.path()), before);
    }
}
