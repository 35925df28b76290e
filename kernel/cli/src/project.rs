//! A plugin project on disk: its language, its manifest and how its
//! component is built. Shared by `keel plugin build`, `keel plugin test`
//! and the harness, so that all three say the same thing about a folder
//! that is not a plugin.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use keel_host::Manifest;

/// The languages `keel plugin new` and `keel plugin build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cargo crate (`Cargo.toml`), built for `wasm32-wasip2`.
    Rust,
    /// A Python project (`pyproject.toml`), built with componentize-py.
    Python,
}

/// A plugin project: a folder with `keel-plugin.toml` and the project
/// file of its language.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
}

impl Project {
    /// The plugin project in `dir`, or an error that says what to do.
    pub fn find(dir: &Path) -> anyhow::Result<Project> {
        if !dir.is_dir() {
            bail!(
                "{} is not a folder: pass the plugin's folder, or create one with `keel plugin new NAME`",
                dir.display()
            );
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("reading {}", dir.display()))?;
        let lang = Project::lang_of(&dir)?;
        if !dir.join("keel-plugin.toml").is_file() {
            bail!(
                "{} has no keel-plugin.toml, the plugin's manifest: `keel plugin new NAME` \
                 writes one to start from, and docs/plugin-guide.md describes every key",
                dir.display()
            );
        }
        Ok(Project { dir, lang })
    }

    /// The language of the project in `dir`, by its project file.
    pub fn lang_of(dir: &Path) -> anyhow::Result<Lang> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Lang::Rust)
        } else if dir.join("pyproject.toml").is_file() {
            Ok(Lang::Python)
        } else {
            bail!(
                "{} holds no Cargo.toml (a Rust plugin) or pyproject.toml (a Python plugin): \
                 run this in the plugin's folder, pass its folder, or create one with \
                 `keel plugin new NAME` (add `--lang python` for Python)",
                dir.display()
            )
        }
    }

    /// The manifest's text, checked as an install checks it (without the
    /// component).
    pub fn manifest(&self) -> anyhow::Result<(String, Manifest)> {
        let path = self.dir.join("keel-plugin.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest = Manifest::from_toml(&text).map_err(|e| {
            let e = e.trim_start_matches("keel-plugin.toml: ");
            let hint = if e.starts_with("wit:") {
                format!(
                    "\n(this keel's SDK builds for keel:plugin@{}: `keel plugin sdk` refreshes the \
                     plugin's copy of the SDK; then set wit = \"{}\")",
                    keel_contract::CURRENT,
                    keel_contract::CURRENT
                )
            } else if e.contains("unknown variant") {
                "\n(docs/plugin-guide.md lists every manifest key, capability and value)".into()
            } else {
                String::new()
            };
            anyhow!("{}: {e}{hint}", path.display())
        })?;
        Ok((text, manifest))
    }

    /// Builds the component and returns its bytes. Rust crates build into
    /// `target_dir` (default: the crate's own `target/`); Python projects
    /// always into their own `target/python`.
    pub fn component(&self, target_dir: Option<&Path>) -> anyhow::Result<Vec<u8>> {
        match self.lang {
            Lang::Rust => self.rust_component(target_dir),
            Lang::Python => crate::python::component(self),
        }
    }

    fn rust_component(&self, target_dir: Option<&Path>) -> anyhow::Result<Vec<u8>> {
        let manifest = self.dir.join("Cargo.toml");
        let cargo: toml::Value = toml::from_str(
            &std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?,
        )
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let package = cargo.get("package").ok_or_else(|| {
            anyhow!(
                "{} has no [package]: a plugin is one crate, not a workspace",
                manifest.display()
            )
        })?;
        let name = package
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| anyhow!("{} has no package name", manifest.display()))?
            .replace('-', "_");
        let cdylib = cargo
            .get("lib")
            .and_then(|l| l.get("crate-type"))
            .and_then(|t| t.as_array())
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("cdylib")));
        if !cdylib {
            bail!(
                "{}: a plugin crate must build a component: add\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n",
                manifest.display()
            );
        }
        let target_dir = target_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.join("target"));
        let out = keel_host::guests::build(&manifest, &target_dir)?;
        let wasm = out.join(format!("{name}.wasm"));
        std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))
    }
}

/// `KEEL_PLUGIN_TARGET_DIR`, where plugin components are built when set.
pub fn target_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("KEEL_PLUGIN_TARGET_DIR").map(Into::into)
}

/// The user's cache folder: `XDG_CACHE_HOME`, else `~/.cache`.
pub fn user_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(dir.into());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".cache"))
}
