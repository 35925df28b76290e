//! `keel plugin new` and `keel plugin build`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The SDK folder of the Keel checkout this binary was built from.
pub fn default_sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sdk")
}

/// Writes a new plugin crate named `name` into `dir/name`: it builds and
/// passes its tests unmodified.
pub fn new_plugin(dir: &Path, name: &str, sdk: &Path) -> anyhow::Result<PathBuf> {
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
    // Event types are dotted lower-case words: no '-'.
    let event = name.replace('-', "_");
    let sdk = std::fs::canonicalize(sdk)
        .with_context(|| format!("the Keel SDK is not at {}", sdk.display()))?;
    // Relative, so that the checkout and the plugin can move together.
    let sdk = relative(&parent.join(name), &sdk).unwrap_or(sdk);
    let files = [
        (
            "Cargo.toml",
            CARGO
                .replace("{name}", name)
                .replace("{sdk}", &sdk.display().to_string()),
        ),
        (
            "keel-plugin.toml",
            MANIFEST
                .replace("{name}", name)
                .replace("{event}", &event)
                .replace("{wit}", keel_contract::CURRENT),
        ),
        ("src/lib.rs", LIB.replace("{event}", &event)),
        ("tests/plugin.rs", TEST.to_owned()),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap_or(&root))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(root)
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

/// Builds the plugin crate in `dir` and lays out an installable package
/// (`keel-plugin.toml` + `plugin.wasm`) in `dir/target/keel-package`.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("keel-plugin.toml"))
        .context("reading keel-plugin.toml")?;
    keel_host::Manifest::from_toml(&manifest).map_err(|e| anyhow::anyhow!(e))?;
    let wasm = keel_plugin_test::build(dir)?;
    let out = dir.join("target/keel-package");
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

const CARGO: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
keel-sdk = { path = "{sdk}/keel-sdk" }
serde = { version = "1", features = ["derive"] }

[dev-dependencies]
keel-plugin-test = { path = "{sdk}/keel-plugin-test" }
serde_json = "1"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

[workspace]
"#;

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

const LIB: &str = r#"//! A Keel plugin. Each operation is a GraphQL field of `keel-plugin.toml`.

use keel_sdk::counters::{self, Outcome};
use keel_sdk::{Context, Error, Result, config, events, json, plugin};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Default)]
struct Config {
    greeting: Option<String>,
}

#[derive(Deserialize)]
struct GreetInput {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    text: String,
    count: i64,
}

fn greet(_ctx: &Context, input: GreetInput) -> Result<Greeting> {
    if input.name.trim().is_empty() {
        return Err(Error::invalid("name must not be empty"));
    }
    let cfg: Config = config::get()?;
    let count = match counters::add(&format!("greeted:{}", input.name), 1, 0, i64::MAX, None)? {
        Outcome::Applied(n) | Outcome::LimitReached(n) => n,
    };
    events::emit("{event}.greeted", None, &json!({"name": input.name, "count": count}), None)?;
    let hello = cfg.greeting.unwrap_or_else(|| "Hello".into());
    Ok(Greeting { text: format!("{hello}, {}!", input.name), count })
}

plugin! {
    operations: { "greet" => greet },
}
"#;

const TEST: &str = r#"use keel_plugin_test::MiniKernel;
use serde_json::json;

#[tokio::test]
async fn greets_and_counts() {
    let kernel = MiniKernel::start().await.unwrap();
    let plugin = kernel.plugin(env!("CARGO_MANIFEST_DIR"), json!({"greeting": "Hi"})).await.unwrap();
    let out = kernel.call(&plugin, "greet", json!({"name": "Ann"})).await.unwrap();
    assert_eq!(out, json!({"text": "Hi, Ann!", "count": 1}));
    let again = kernel.call(&plugin, "greet", json!({"name": "Ann"})).await.unwrap();
    assert_eq!(again["count"], 2);
    let err = kernel.call(&plugin, "greet", json!({"name": " "})).await.unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
}
"#;

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
}
