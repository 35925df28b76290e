//! `keel plugin new`, `keel plugin sdk`, `keel plugin build` and `keel
//! plugin test`.
//!
//! A new plugin gets its own copy of the SDK in `keel/` (for Rust the
//! `keel-sdk` crate and the `keel-plugin-test` client, for Python the
//! `keel_sdk` and `keel_plugin_test` packages; the WIT for both), taken
//! from this binary: the project builds wherever it is, matches the `keel`
//! that made it, and `keel plugin sdk` refreshes the copy after an upgrade.

mod python;
mod rust;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::project::{Lang, Project};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The folder of a plugin project holding its copy of the SDK.
const SDK_DIR: &str = "keel";

/// Writes a new plugin project named `name` in `lang` into `dir/name`: it
/// builds and passes its tests unmodified. With `sdk`, the project uses
/// the SDK of that checkout folder (`…/sdk`) instead of a copy of its own.
pub fn new_plugin(
    dir: &Path,
    name: &str,
    lang: Lang,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let ok = (2..=40).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        bail!("{name:?} is not a plugin name: use 2-40 characters of a-z, 0-9 and '-'");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let parent = std::fs::canonicalize(dir)
        .with_context(|| format!("the folder {} does not exist", dir.display()))?;
    let sdk = match sdk {
        Some(sdk) => {
            let sdk = std::fs::canonicalize(sdk)
                .with_context(|| format!("the Keel SDK is not at {}", sdk.display()))?;
            // Relative, so that the checkout and the plugin can move together.
            relative(&parent.join(name), &sdk).unwrap_or(sdk)
        }
        None => PathBuf::from(SDK_DIR).join("sdk"),
    };
    let files = match lang {
        Lang::Rust => rust::files(name, &sdk.display().to_string()),
        Lang::Python => python::files(name, &sdk.join("python").display().to_string()),
    };
    for (path, text) in files {
        write(&root.join(path), &text)?;
    }
    if sdk.starts_with(SDK_DIR) {
        write_sdk(&root)?;
        if lang == Lang::Rust {
            // The SDK's own lock: the versions its dependencies were tested at.
            let lock = SDK_FILES
                .iter()
                .find(|(p, _)| *p == "sdk/keel-sdk/Cargo.lock")
                .map(|(_, text)| *text)
                .unwrap_or_default();
            write(&root.join("Cargo.lock"), lock)?;
        }
    }
    Ok(root)
}

/// The SDK's files a project in `lang` gets: (path under `keel/`, text).
fn sdk_files(lang: Lang) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    SDK_FILES.iter().filter(move |(path, _)| {
        let python = path.starts_with("sdk/python/");
        match lang {
            Lang::Rust => !python && *path != "sdk/keel-sdk/Cargo.lock",
            Lang::Python => python || path.starts_with("schemas/wit/"),
        }
    })
}

/// The WIT of the contract this binary builds plugins for: (file name, text).
pub fn wit_files() -> impl Iterator<Item = (&'static str, &'static str)> {
    let dir = format!("schemas/wit/{}/", keel_contract::CURRENT);
    SDK_FILES
        .iter()
        .filter_map(move |(path, text)| Some((path.strip_prefix(dir.as_str())?, *text)))
}

/// Writes (or refreshes) the copy of the SDK in a plugin project's
/// `keel/` folder from this binary, removing what an older copy had.
pub fn write_sdk(root: &Path) -> anyhow::Result<PathBuf> {
    let dest = root.join(SDK_DIR);
    let lang = Project::lang_of(root)?;
    let vendored = match lang {
        Lang::Rust => std::fs::read_to_string(root.join("Cargo.toml"))
            .unwrap_or_default()
            .contains(&format!("\"{SDK_DIR}/sdk/keel-sdk\"")),
        Lang::Python => crate::python::Layout::sdk_setting(root)?.is_none(),
    };
    if !vendored {
        let file = match lang {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "pyproject.toml",
        };
        bail!(
            "{} does not use a copy of the SDK in {SDK_DIR}/ (its {file} points elsewhere, \
             e.g. at a Keel checkout with `keel plugin new --sdk`): update that SDK instead",
            root.display()
        );
    }
    if dest.exists() {
        if !dest.join("VERSION").is_file() {
            bail!(
                "{} exists and is not a copy of the Keel SDK (it has no VERSION file): \
                 move it away first",
                dest.display()
            );
        }
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("removing the old SDK in {}", dest.display()))?;
    }
    for (path, text) in sdk_files(lang) {
        write(&dest.join(path), text)?;
    }
    write(
        &dest.join("VERSION"),
        &format!(
            "keel {}, contract keel:plugin@{}\n\nThis folder is the Keel plugin SDK, written by \
             `keel plugin new`. Do not edit it: `keel plugin sdk` replaces it with the SDK of \
             the keel binary that runs it.\n",
            env!("CARGO_PKG_VERSION"),
            keel_contract::CURRENT
        ),
    )?;
    Ok(dest)
}

/// The manifest of a new plugin, the same in every language.
fn manifest(name: &str) -> String {
    MANIFEST
        .replace("{name}", name)
        .replace("{event}", &name.replace('-', "_"))
        .replace("{wit}", keel_contract::CURRENT)
}

const MANIFEST: &str = r#"name = "{name}"
version = "0.1.0"
publisher = "You"
description = "A Keel plugin"
wit = "{wit}"

[events]
emits = ["{event}.greeted"]

# The payload of each emitted type, as a JSON Schema: subscribers code
# against it, and the kernel refuses an event that does not match.
[events.schemas."{event}.greeted"]
type = "object"
required = ["name", "count"]
properties = { name = { type = "string" }, count = { type = "integer" } }

[graphql]
sdl = """
type Greeting {
  text: String!
  count: Int!
}
extend type Mutation {
  greet(name: String!): Greeting!
}
"""

[config_schema]
type = "object"
additionalProperties = false
properties = { greeting = { type = "string", minLength = 1 } }

[capabilities]
capabilities = ["events", "counters"]
"#;

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The path from the folder `from` to `to`, both absolute, through their
/// deepest common ancestor; `None` when that is only the root (or they are
/// on other drives), where the absolute path says more.
fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let shared = from[..common]
        .iter()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count();
    if shared == 0 {
        return None;
    }
    let mut path: PathBuf = from[common..].iter().map(|_| "..").collect();
    path.extend(&to[common..]);
    Some(path)
}

/// Builds the plugin project in `dir` and lays out an installable package
/// (`keel-plugin.toml` + `plugin.wasm`) in `dir/target/keel-package`.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let project = Project::find(dir)?;
    let (manifest, _) = project.manifest()?;
    let wasm = project.component(crate::project::target_dir_from_env().as_deref())?;
    let out = project.dir.join("target/keel-package");
    std::fs::create_dir_all(&out)?;
    let manifest: String = manifest
        .lines()
        .filter(|l| !l.starts_with("component ="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(out.join("keel-plugin.toml"), manifest + "\n")?;
    std::fs::write(out.join("plugin.wasm"), wasm)?;
    Ok(out)
}

/// Runs the plugin project's tests against this binary's harness
/// (`KEEL_BIN` is set to it), passing `args` on to the test runner.
pub fn test(dir: &Path, args: &[String]) -> anyhow::Result<()> {
    let project = Project::find(dir)?;
    project.manifest()?;
    let keel = std::env::current_exe().context("finding the keel binary")?;
    let mut cmd = match project.lang {
        Lang::Rust => {
            let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            c.arg("test");
            c
        }
        Lang::Python => {
            // Built here, so that a build error reads as one and not as a
            // failing test; the harness then finds the build up to date.
            let tools = crate::python::Tools::ensure()?;
            project.component(None)?;
            let layout = crate::python::Layout::read(&project.dir)?;
            let inherited = std::env::var_os("PYTHONPATH").unwrap_or_default();
            let path = std::env::join_paths(
                std::iter::once(layout.sdk).chain(std::env::split_paths(&inherited)),
            )
            .context("PYTHONPATH: the SDK's folder has a path separator in its name")?;
            let mut c = Command::new(tools.python());
            c.args(["-m", "pytest"]).env("PYTHONPATH", path);
            c
        }
    };
    let status = cmd
        .args(args)
        .current_dir(&project.dir)
        .env("KEEL_BIN", keel)
        .status()
        .context("running the plugin's tests")?;
    if !status.success() {
        bail!("the plugin's tests failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_climbs_to_the_common_ancestor() {
        let rel = |a: &str, b: &str| relative(Path::new(a), Path::new(b));
        assert_eq!(
            rel("/w/plugins/hello", "/w/keel/sdk"),
            Some("../../keel/sdk".into())
        );
        assert_eq!(rel("/w/keel/sdk/x", "/w/keel/sdk"), Some("..".into()));
        assert_eq!(rel("/w/hello", "/w/hello/sdk"), Some("sdk".into()));
        assert_eq!(
            rel("/tmp/hello", "/w/keel/sdk"),
            None,
            "only the root in common"
        );
    }

    #[test]
    fn the_binary_carries_the_sdk_the_wit_and_the_test_client() {
        let has = |p: &str| SDK_FILES.iter().any(|(path, _)| *path == p);
        assert!(has("sdk/keel-sdk/src/lib.rs"));
        assert!(has("sdk/keel-contract/src/lib.rs"));
        assert!(has("sdk/keel-plugin-test/src/lib.rs"));
        assert!(has("sdk/python/keel_sdk/__init__.py"));
        assert!(has("sdk/python/keel_plugin_test/__init__.py"));
        assert!(
            !SDK_FILES.iter().any(|(p, _)| p.contains("__pycache__")),
            "compiled Python files are not sources"
        );
        let wit = format!("schemas/wit/{}/plugin.wit", keel_contract::CURRENT);
        assert!(has(&wit), "{wit}");
        // The SDK finds the WIT by a path relative to itself; the copy
        // keeps the checkout's layout so that the path still holds.
        let lib = SDK_FILES
            .iter()
            .find(|(p, _)| *p == "sdk/keel-sdk/src/lib.rs")
            .unwrap()
            .1;
        let wit_dir = format!("\"../../schemas/wit/{}\"", keel_contract::CURRENT);
        assert!(lib.contains(&wit_dir), "keel-sdk no longer reads {wit_dir}");
    }
}

#[cfg(test)]
mod python_sdk {
    use super::*;

    fn text(path: &str) -> &'static str {
        SDK_FILES.iter().find(|(p, _)| *p == path).unwrap().1
    }

    #[test]
    fn the_python_sdk_states_the_binarys_contract_and_release() {
        let sdk = text("sdk/python/keel_sdk/__init__.py");
        let wit = format!("WIT_VERSION = \"{}\"", keel_contract::CURRENT);
        assert!(sdk.contains(&wit), "keel_sdk does not say {wit}");
        let client = text("sdk/python/keel_plugin_test/__init__.py");
        let version = format!("VERSION = \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            client.contains(&version),
            "keel_plugin_test does not say {version}"
        );
    }

    #[test]
    fn each_language_gets_its_own_sdk_and_the_wit() {
        let rust: Vec<_> = sdk_files(Lang::Rust).map(|(p, _)| *p).collect();
        let python: Vec<_> = sdk_files(Lang::Python).map(|(p, _)| *p).collect();
        assert!(rust.contains(&"sdk/keel-sdk/src/lib.rs"));
        assert!(!rust.iter().any(|p| p.starts_with("sdk/python")));
        assert!(python.contains(&"sdk/python/keel_sdk/plugin.py"));
        assert!(!python.iter().any(|p| p.starts_with("sdk/keel-")));
        let wit = format!("schemas/wit/{}/plugin.wit", keel_contract::CURRENT);
        assert!(rust.contains(&wit.as_str()) && python.contains(&wit.as_str()));
        assert!(wit_files().any(|(name, _)| name == "plugin.wit"));
        assert!(wit_files().all(|(name, _)| !name.contains('/')));
    }
}
