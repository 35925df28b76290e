//! The files of a new Rust plugin.

/// (path, text) of each file, for a plugin `name` whose SDK folder (the
/// one holding `keel-sdk`) is `sdk`.
pub(super) fn files(name: &str, sdk: &str) -> Vec<(&'static str, String)> {
    // Event types are dotted lower-case words: no '-'.
    let event = name.replace('-', "_");
    vec![
        (
            "Cargo.toml",
            CARGO.replace("{name}", name).replace("{sdk}", sdk),
        ),
        ("keel-plugin.toml", super::manifest(name)),
        ("src/lib.rs", LIB.replace("{event}", &event)),
        ("tests/plugin.rs", TEST.replace("{event}", &event)),
        (".gitignore", "/target\n".to_owned()),
    ]
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
# A thin client of `keel plugin harness`: the tests never compile the kernel.
keel-plugin-test = { path = "{sdk}/keel-plugin-test" }
serde_json = "1"

# The plugin is a workspace of its own; `keel/` is its copy of the SDK.
[workspace]
exclude = ["keel"]
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

const TEST: &str = r#"//! The plugin's tests, against `keel plugin harness` (run them with
//! `keel plugin test`, or `cargo test` with `keel` on PATH).

use keel_plugin_test::Harness;
use serde_json::json;

#[test]
fn greets_and_counts() {
    let keel = Harness::start().unwrap();
    let plugin = keel.plugin(env!("CARGO_MANIFEST_DIR"), json!({"greeting": "Hi"})).unwrap();
    let out = keel.call(&plugin, "greet", json!({"name": "Ann"})).unwrap();
    assert_eq!(out, json!({"text": "Hi, Ann!", "count": 1}));
    let again = keel.call(&plugin, "greet", json!({"name": "Ann"})).unwrap();
    assert_eq!(again["count"], 2);
    assert_eq!(keel.counter(&plugin, "greeted:Ann"), 2);
    assert_eq!(keel.events("{event}.greeted").len(), 2);
}

#[test]
fn refuses_an_empty_name() {
    let keel = Harness::start().unwrap();
    let plugin = keel.plugin(env!("CARGO_MANIFEST_DIR"), json!({})).unwrap();
    let err = keel.call(&plugin, "greet", json!({"name": " "})).unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
    assert!(keel.events("{event}.greeted").is_empty());
}
"#;
