#![doc = include_str!("../README.md")]

use keel_host::{Manifest, Package, Registry};
use sha2::{Digest, Sha256};

/// A first-party plugin embedded in this build: its manifest text and
/// component.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    pub manifest: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

impl Bundled {
    /// The manifest, its version carrying the component's hash as build
    /// metadata (`0.1.0+1a2b3c4d`): a rebuilt plugin is a new version, never
    /// a different package under a released one.
    pub fn manifest(&self) -> Result<Manifest, String> {
        let mut m = Manifest::from_toml(self.manifest)?;
        let hash = Sha256::digest(self.wasm);
        m.version = format!(
            "{}+{:02x}{:02x}{:02x}{:02x}",
            m.version, hash[0], hash[1], hash[2], hash[3]
        );
        Ok(m)
    }

    /// The plugin's name.
    pub fn name(&self) -> Result<String, String> {
        Ok(self.manifest()?.name)
    }
}

/// The bundled plugin called `name`.
pub fn get(name: &str) -> Option<Bundled> {
    PLUGINS
        .iter()
        .copied()
        .find(|b| b.name().is_ok_and(|n| n == name))
}

/// Installs every bundled plugin that is not installed yet (installing the
/// same package again changes nothing). Returns the packages.
pub async fn install_all(registry: &Registry) -> keel_host::Result<Vec<Package>> {
    let mut out = Vec::new();
    for b in PLUGINS {
        let manifest = b.manifest().map_err(|e| {
            keel_host::PluginError::Incompatible(format!("a bundled manifest: {e}"))
        })?;
        let name = manifest.name.clone();
        let p = registry.install(manifest, b.wasm).await?;
        tracing::info!(plugin = %name, version = %p.manifest.version, "bundled plugin installed");
        out.push(p);
    }
    Ok(out)
}
