//! Plugin packages installed on the platform and the plugins each tenant
//! enabled, with what it granted and configured.
//!
//! Every kernel process reads the same tables; a tenant's set of plugins
//! carries a version that any change bumps, so each process notices and
//! reloads (and its gateway rebuilds that tenant's schema).
//!
//! Here are the checks and the compiled activations; the tables' SQL is
//! `keel_core::plugins`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use keel_core::plugins::{self as store, Enable, NewPackage};
use keel_core::{Db, Error, TenantId, Timestamp};

use crate::manifest::{Grants, Manifest};
use crate::{Activation, Host, PluginError, Result};

/// An installed plugin package (one version).
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Arc<Manifest>,
    /// SHA-256 of the component.
    pub hash: String,
    pub installed_at: Timestamp,
}

/// A plugin as a tenant enabled it.
#[derive(Debug, Clone)]
pub struct Enabled {
    pub name: String,
    pub version: String,
    pub grants: Grants,
    pub config: serde_json::Value,
    pub enabled_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// The plugins a tenant has enabled, at one version of that set.
#[derive(Debug)]
pub struct TenantPlugins {
    pub version: i64,
    pub plugins: Vec<Arc<Activation>>,
}

impl TenantPlugins {
    /// The enabled plugin named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Activation>> {
        self.plugins.iter().find(|a| a.manifest.name == name)
    }
}

/// How long a process trusts its cached view of a tenant's plugins before
/// checking the database for changes made by another process.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs packages and enables them per tenant.
#[derive(Clone)]
pub struct Registry {
    host: Host,
    db: Db,
    tenants: Arc<Mutex<HashMap<String, Cached>>>,
}

/// A tenant's plugin set and when this process last checked it.
type Cached = (std::time::Instant, Arc<TenantPlugins>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Checks a tenant's would-be set of plugins (e.g. that their GraphQL
/// merges without conflicts); an `Err` refuses the change.
pub type SetCheck<'a> =
    &'a (dyn Fn(&[Arc<Manifest>]) -> std::result::Result<(), String> + Send + Sync);

/// How versions order, as semantic versioning orders them: by the numbers,
/// then a release after its pre-releases (`0.1.0-dev.5` < `0.1.0`), then
/// pre-release identifiers one by one, numbers numerically and before
/// words. Build metadata (`+…`) does not count.
pub(crate) fn version_key(v: &str) -> (Vec<u64>, bool, Vec<PreRelease>) {
    let v = v.split('+').next().unwrap_or("");
    let (core, pre) = match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    };
    let numbers = core.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let pre_release = pre
        .map(|p| {
            p.split('.')
                .map(|id| match id.parse() {
                    Ok(n) => PreRelease::Number(n),
                    Err(_) => PreRelease::Word(id.to_owned()),
                })
                .collect()
        })
        .unwrap_or_default();
    (numbers, pre.is_none(), pre_release)
}

/// One identifier of a pre-release (`dev`, `5`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PreRelease {
    Number(u64),
    Word(String),
}

impl Registry {
    pub fn new(host: Host, db: Db) -> Registry {
        Registry {
            host,
            db,
            tenants: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The host that runs the plugins.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Installs a package from a folder holding `keel-plugin.toml` and the
    /// component it names (`component = "…"`, default `plugin.wasm`).
    pub async fn install_dir(&self, dir: &Path) -> Result<Package> {
        let manifest_path = dir.join("keel-plugin.toml");
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            Error::bad_input(
                "package",
                format!("reading {}: {e}", manifest_path.display()),
            )
        })?;
        let manifest = Manifest::from_toml(&text).map_err(|e| Error::bad_input("manifest", e))?;
        let component = dir.join(manifest.component.as_deref().unwrap_or("plugin.wasm"));
        let wasm = std::fs::read(&component).map_err(|e| {
            Error::bad_input("component", format!("reading {}: {e}", component.display()))
        })?;
        self.install(manifest, &wasm).await
    }

    /// Installs a package. Installing the same name, version and component
    /// again changes nothing; other content under a taken version is refused.
    pub async fn install(&self, manifest: Manifest, wasm: &[u8]) -> Result<Package> {
        manifest
            .validate()
            .map_err(|e| Error::bad_input("manifest", e))?;
        self.host
            .config()
            .limits(&manifest.resources)
            .map_err(|e| Error::bad_input("manifest", e))?;
        self.check_event_ownership(&manifest).await?;
        if let Some(p) = self.installed_as(&manifest, wasm).await? {
            // Compiled when it was installed; the warm-up compiles it anew
            // for a process with another cache.
            return Ok(p);
        }
        if self
            .package(&manifest.name, Some(&manifest.version))
            .await
            .is_ok()
        {
            return Err(Error::Conflict(format!(
                "{} {} is already installed with another component or manifest; \
                 publish a new version",
                manifest.name, manifest.version
            ))
            .into());
        }
        // Compiled (and cached on disk) now, never in a client's request.
        let loaded = self.host.load(wasm).await?;
        if loaded.wit_version != manifest.wit {
            return Err(Error::bad_input(
                "manifest",
                format!(
                    "wit: the manifest says keel:plugin@{} but the component is built for keel:plugin@{}",
                    manifest.wit, loaded.wit_version
                ),
            )
            .into());
        }
        let json = serde_json::to_string(&manifest).map_err(Error::from)?;
        let package = NewPackage {
            name: &manifest.name,
            version: &manifest.version,
            manifest: &json,
            component: wasm,
            hash: &loaded.hash,
        };
        let mut tx = self.db.begin().await?;
        store::store_package(&mut tx, &package).await?;
        tx.commit().await.map_err(Error::from)?;
        self.package(&manifest.name, Some(&manifest.version)).await
    }

    /// Event types are owned: a package may declare in `emits` neither the
    /// kernel's types nor a type that a package of another name emits, so
    /// that a subscriber can trust who produced what it receives.
    async fn check_event_ownership(&self, manifest: &Manifest) -> Result<()> {
        let owners = self.event_owners().await?;
        for t in &manifest.events.emits {
            if keel_core::events::kernel_owns(t) {
                return Err(Error::bad_input(
                    "manifest",
                    format!(
                        "events.emits: {t} is an event type of the kernel; a plugin cannot emit it"
                    ),
                )
                .into());
            }
            if let Some(owner) = owners.get(t)
                && *owner != manifest.name
            {
                return Err(Error::Conflict(format!(
                    "events.emits: {t} is emitted by the plugin {owner}; event types have one producer"
                ))
                .into());
            }
        }
        Ok(())
    }

    /// Every event type a package declares in `emits`, with the package
    /// that owns it: one read of the installed packages for a whole batch
    /// of checks.
    pub async fn event_owners(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut owners = std::collections::HashMap::new();
        for p in self.packages().await? {
            for t in &p.manifest.events.emits {
                owners
                    .entry(t.clone())
                    .or_insert_with(|| p.manifest.name.clone());
            }
        }
        Ok(owners)
    }

    /// Every installed package, by name then version.
    pub async fn packages(&self) -> Result<Vec<Package>> {
        store::packages(&self.db)
            .await?
            .into_iter()
            .map(|p| self.package_from_store(p))
            .collect()
    }

    /// A package: the given version, or the newest installed.
    pub async fn package(&self, name: &str, version: Option<&str>) -> Result<Package> {
        let mut all: Vec<Package> = self
            .packages()
            .await?
            .into_iter()
            .filter(|p| p.manifest.name == name)
            .collect();
        all.sort_by_key(|p| version_key(&p.manifest.version));
        let found = match version {
            Some(v) => all.into_iter().find(|p| p.manifest.version == v),
            None => all.pop(),
        };
        found.ok_or_else(|| match version {
            Some(v) => Error::NotFound(format!("plugin {name} {v} is not installed")).into(),
            None => Error::NotFound(format!("plugin {name} is not installed")).into(),
        })
    }

    pub(crate) async fn component(&self, name: &str, version: &str) -> Result<Vec<u8>> {
        Ok(store::component(&self.db, name, version).await?)
    }

    /// A stored package with its manifest parsed: one manifest per
    /// package, shared by every activation of it.
    fn package_from_store(&self, p: store::Package) -> Result<Package> {
        Ok(Package {
            manifest: self
                .host
                .inner
                .prepared
                .manifest(&p.manifest)
                .map_err(Error::from)?,
            hash: p.hash,
            installed_at: p.installed_at,
        })
    }

    async fn activation(
        &self,
        tenant: &TenantId,
        package: &Package,
        grants: Grants,
        config: serde_json::Value,
    ) -> Result<Arc<Activation>> {
        let wasm = self
            .component(&package.manifest.name, &package.manifest.version)
            .await?;
        Ok(Arc::new(Activation {
            tenant: tenant.clone(),
            manifest: package.manifest.clone(),
            component: self.host.load(&wasm).await?,
            grants,
            config,
        }))
    }

    /// Checks grants and config against a package's manifest.
    fn check_activation(
        package: &Package,
        grants: &Grants,
        config: &serde_json::Value,
    ) -> Result<()> {
        grants
            .check_within(&package.manifest)
            .map_err(|e| Error::bad_input("grants", e))?;
        if let Some(schema) = &package.manifest.config_schema {
            let validator = jsonschema::validator_for(schema).map_err(|e| {
                Error::bad_input(
                    "config",
                    format!("the plugin's config schema is invalid: {e}"),
                )
            })?;
            if let Some(first) = validator.iter_errors(config).next() {
                let at = first.instance_path().to_string();
                let at = if at.is_empty() {
                    String::new()
                } else {
                    format!(" at {at}")
                };
                return Err(Error::bad_input("config", format!("{first}{at}")).into());
            }
        } else if !config.is_object() {
            return Err(Error::bad_input("config", "must be a JSON object").into());
        }
        Ok(())
    }

    /// Enables an installed plugin for `tenant`. Refused, changing nothing,
    /// when grants exceed the manifest, the config fails its schema, `check`
    /// refuses the new set, or the plugin's `on-enable` refuses.
    pub async fn enable(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<&str>,
        grants: Grants,
        config: serde_json::Value,
        check: SetCheck<'_>,
    ) -> Result<Enabled> {
        let package = self.package(name, version).await?;
        if self
            .enabled_row(tenant, name)
            .await?
            .is_some_and(|e| e.disabled_at.is_none())
        {
            return Err(Error::Conflict(format!(
                "{name} is already enabled; use upgradePlugin to change its version"
            ))
            .into());
        }
        self.switch(tenant, &package, grants, config, check).await
    }

    /// Moves an enabled plugin to another installed version, keeping its
    /// config and, unless `grants` replaces them (a new version that asks
    /// for new capabilities or calls), its grants; both are checked again
    /// against the new manifest.
    pub async fn upgrade(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &str,
        grants: Option<Grants>,
        check: SetCheck<'_>,
    ) -> Result<Enabled> {
        let current = self
            .enabled_row(tenant, name)
            .await?
            .filter(|e| e.disabled_at.is_none())
            .ok_or_else(|| Error::NotFound(format!("{name} is not enabled")))?;
        let package = self.package(name, Some(version)).await?;
        let grants = grants.unwrap_or(current.grants);
        self.switch(tenant, &package, grants, current.config, check)
            .await
    }

    async fn switch(
        &self,
        tenant: &TenantId,
        package: &Package,
        grants: Grants,
        config: serde_json::Value,
        check: SetCheck<'_>,
    ) -> Result<Enabled> {
        let name = package.manifest.name.as_str();
        Self::check_activation(package, &grants, &config)?;
        let current = self.enabled(tenant).await?;
        let mut set: Vec<Arc<Manifest>> = current
            .plugins
            .iter()
            .filter(|a| a.manifest.name != name)
            .map(|a| a.manifest.clone())
            .collect();
        set.push(package.manifest.clone());
        check(&set).map_err(Error::Conflict)?;
        let act = self
            .activation(tenant, package, grants.clone(), config.clone())
            .await?;
        let grants = serde_json::to_string(&grants).map_err(Error::from)?;
        let enable = Enable {
            name,
            version: &package.manifest.version,
            grants: &grants,
            config: &config,
        };
        // The plugin's `on-enable` and the switch commit together: an
        // upgrade step never runs for a version that does not take over.
        let tx = self.db.begin().await?;
        let (ran, tx) = self.host.on_enable_in(&act, "enable", tx).await;
        ran?;
        let mut tx = tx.ok_or_else(|| {
            PluginError::Internal(anyhow::anyhow!("on-enable lost the transaction"))
        })?;
        store::enable(&mut tx, tenant, &enable).await?;
        tx.commit().await.map_err(Error::from)?;
        self.forget(tenant);
        self.enabled_row(tenant, name)
            .await?
            .ok_or_else(|| PluginError::Internal(anyhow::anyhow!("enabled plugin vanished")))
    }

    /// Disables a plugin for `tenant`. Its records, counters and events stay.
    pub async fn disable(&self, tenant: &TenantId, name: &str) -> Result<Enabled> {
        let mut tx = self.db.begin().await?;
        store::disable(&mut tx, tenant, name).await?;
        tx.commit().await.map_err(Error::from)?;
        self.forget(tenant);
        self.enabled_row(tenant, name)
            .await?
            .ok_or_else(|| PluginError::Internal(anyhow::anyhow!("disabled plugin vanished")))
    }

    /// Every plugin the tenant ever enabled, with its state.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<Enabled>> {
        store::enablements(&self.db, tenant)
            .await?
            .into_iter()
            .map(enabled_from_store)
            .collect()
    }

    async fn enabled_row(&self, tenant: &TenantId, name: &str) -> Result<Option<Enabled>> {
        Ok(self
            .list(tenant)
            .await?
            .into_iter()
            .find(|e| e.name == name))
    }

    /// Stores a secret for an installed plugin of `tenant` (readable by it
    /// with the `secrets` grant), sealed under the master key.
    pub async fn set_secret(
        &self,
        tenant: &TenantId,
        plugin: &str,
        name: &str,
        value: &str,
    ) -> Result<()> {
        if name.is_empty() || name.len() > 100 || value.len() > 8192 {
            return Err(Error::bad_input(
                "name",
                "a secret name is 1-100 characters and a value at most 8 KiB",
            )
            .into());
        }
        if name.starts_with("keel.") {
            return Err(Error::bad_input(
                "name",
                "names under `keel.` are the kernel's (e.g. keel.consumer_sign_in)",
            )
            .into());
        }
        let sealer = self.db.sealer()?;
        let mut tx = self.db.begin().await?;
        if !store::is_installed(&mut tx, plugin).await? {
            return Err(Error::NotFound(format!("no plugin named {plugin:?} is installed")).into());
        }
        keel_core::sealing::store_plugin_secret(&mut tx, sealer, tenant, plugin, name, value)
            .await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    /// The version of the tenant's plugin set (0 if it never changed).
    pub async fn version(&self, tenant: &TenantId) -> Result<i64> {
        Ok(store::set_version(&self.db, tenant).await?)
    }

    /// The tenant's enabled plugins, reloaded when the set changed: at once
    /// for changes made through this registry, within [`REFRESH`] for
    /// changes made by another kernel process.
    pub async fn enabled(&self, tenant: &TenantId) -> Result<Arc<TenantPlugins>> {
        let cached = self.cached(tenant);
        if let Some((_, set)) = cached
            .as_ref()
            .filter(|(checked, _)| checked.elapsed() < REFRESH)
        {
            return Ok(set.clone());
        }
        let version = self.version(tenant).await?;
        if let Some((_, set)) = cached.filter(|(_, c)| c.version == version) {
            if let Ok(mut m) = self.tenants.lock() {
                m.insert(
                    tenant.as_str().to_owned(),
                    (std::time::Instant::now(), set.clone()),
                );
            }
            return Ok(set);
        }
        let mut plugins = Vec::new();
        for e in self
            .list(tenant)
            .await?
            .into_iter()
            .filter(|e| e.disabled_at.is_none())
        {
            let package = self.package(&e.name, Some(&e.version)).await?;
            plugins.push(
                self.activation(tenant, &package, e.grants, e.config)
                    .await?,
            );
        }
        let set = Arc::new(TenantPlugins { version, plugins });
        if let Ok(mut m) = self.tenants.lock() {
            m.insert(
                tenant.as_str().to_owned(),
                (std::time::Instant::now(), set.clone()),
            );
        }
        Ok(set)
    }

    fn cached(&self, tenant: &TenantId) -> Option<Cached> {
        self.tenants.lock().ok()?.get(tenant.as_str()).cloned()
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.tenants.lock() {
            m.remove(tenant.as_str());
        }
    }
}

/// A stored enablement with its grants parsed.
fn enabled_from_store(e: store::Enablement) -> Result<Enabled> {
    Ok(Enabled {
        name: e.name,
        version: e.version,
        grants: serde_json::from_str(&e.grants).map_err(Error::from)?,
        config: e.config,
        enabled_at: e.enabled_at,
        disabled_at: e.disabled_at,
    })
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn versions_order_as_semantic_versioning_orders_them() {
        let ordered = [
            "0.1.0-dev.9",
            "0.1.0-dev.10",
            "0.1.0-rc.1",
            "0.1.0",
            "0.1.1-dev.1",
            "0.1.1",
            "0.2.0",
            "0.10.0",
        ];
        for pair in ordered.windows(2) {
            assert!(
                version_key(pair[0]) < version_key(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(version_key("1.0.0+build.5"), version_key("1.0.0"));
    }
}
