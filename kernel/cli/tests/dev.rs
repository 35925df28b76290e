//! `keel plugin dev --once` against a real `keel serve`: a scaffolded
//! plugin is built, installed over HTTP with the platform key, enabled on
//! the demo tenant and answers over GraphQL; after an edit, the next round
//! upgrades it and the new code answers. Wrong keys and a broken build are
//! reported, and the running version is left alone.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_testkit::guide;
use serde_json::{Value, json};

mod support;

const ADMIN: &str = "dev-loop-platform-admin-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `keel serve --demo` on a free port: the child, its URL and the demo
/// tenant's owner key.
struct Served {
    child: Child,
    url: String,
    key: String,
    _lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = support::keel(dir)
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("KEEL_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let key = loop {
        let line = lines.next().expect("serve printed its key").unwrap();
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("keel_ak_")) {
            break k.trim_matches('\'').to_owned();
        }
        assert!(Instant::now() < deadline, "no key printed in time");
    };
    Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
        key,
        _lines: lines,
    }
}

/// The guide's `keel plugin dev` command against `served`, with `--once`:
/// its `export` lines name the two keys, which come from the test instead.
fn dev_command() -> String {
    let block = guide::block("dev");
    let (exports, commands): (Vec<&str>, Vec<&str>) =
        block.lines().partition(|l| l.starts_with("export "));
    let exported: Vec<&str> = exports
        .iter()
        .filter_map(|l| l["export ".len()..].split('=').next())
        .collect();
    assert_eq!(exported, ["KEEL_ADMIN_TOKEN", "KEEL_API_KEY"], "{block}");
    assert_eq!(commands.len(), 1, "{block}");
    assert!(commands[0].contains(GUIDE_URL), "{block}");
    commands[0].to_owned()
}

/// The URL the guide's commands use for a local kernel.
const GUIDE_URL: &str = "http://127.0.0.1:8080";

/// The guide's `keel plugin dev --once` in `dir`: success, and what it
/// printed.
fn dev(dir: &Path, served: &Served, admin: &str) -> (bool, String) {
    let command = format!("{} --once", dev_command().replace(GUIDE_URL, &served.url));
    let (ok, out, err) = support::run(
        support::script(dir, &command)
            .env("KEEL_ADMIN_TOKEN", admin)
            .env("KEEL_API_KEY", &served.key)
            .env("KEEL_PLUGIN_TARGET_DIR", repo().join("target/wasm"))
            .env("CARGO_TARGET_DIR", repo().join("target/nested")),
    );
    (ok, format!("{out}{err}"))
}

/// `document` over GraphQL with the demo owner's key.
fn graphql(served: &Served, document: &str) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/graphql", served.url))
            .bearer_auth(&served.key)
            .json(&json!({ "query": document }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

fn greet(served: &Served) -> Value {
    graphql(served, "mutation { greet(name: \"Ann\") { text } }")
}

#[test]
fn plugin_dev_installs_enables_and_upgrades_on_a_running_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve(tmp.path());
    let (ok, _, _) = support::run(support::keel(tmp.path()).args(["plugin", "new", "hello"]));
    assert!(ok);
    let plugin = tmp.path().join("hello");

    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(ok, "{out}");
    assert!(out.contains("enabled on tenant demo"), "{out}");
    assert!(out.contains(&format!("{}/graphql", served.url)), "{out}");
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi, Ann!");

    // An edit, then the next round: the tenant runs the new code.
    let lib = plugin.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        text.replace("format!(\"{hello}, {}!\"", "format!(\"{hello} there, {}!\""),
    )
    .unwrap();
    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(ok, "{out}");
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi there, Ann!");

    // A tenant's key cannot install; a wrong token is not a key.
    let (ok, out) = dev(&plugin, &served, &served.key.clone());
    assert!(!ok);
    assert!(
        out.contains("FORBIDDEN") && out.contains("platform administrator"),
        "{out}"
    );
    let (ok, out) = dev(&plugin, &served, "not-the-platform-token");
    assert!(!ok);
    assert!(out.contains("UNAUTHENTICATED"), "{out}");

    // A build error is shown, and the running version keeps answering.
    std::fs::write(&lib, "this is not rust").unwrap();
    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(!ok);
    assert!(out.contains("error"), "{out}");
    assert!(out.contains("src/lib.rs"), "{out}");
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi there, Ann!");
}

#[test]
fn plugin_dev_refuses_a_bad_config_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, _) = support::run(support::keel(tmp.path()).args(["plugin", "new", "hello"]));
    assert!(ok);
    let (ok, _, err) = support::run(
        support::keel(&tmp.path().join("hello"))
            .args(["plugin", "dev", "--once", "--plugin-config", "[1]"])
            .env("KEEL_ADMIN_TOKEN", ADMIN)
            .env("KEEL_API_KEY", "k"),
    );
    assert!(!ok);
    assert!(
        err.contains("--plugin-config: must be a JSON object"),
        "{err}"
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.args(["plugin", "dev", "--once"]).current_dir(tmp.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEEL_") {
            c.env_remove(name);
        }
    }
    let (ok, _, err) = support::run(&mut c);
    assert!(!ok);
    assert!(err.contains("--admin-token"), "{err}");
}

#[test]
fn plugin_dev_runs_a_python_plugin_and_its_next_version() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve(tmp.path());
    let (ok, _, err) = support::run(
        support::keel(tmp.path()).args(["plugin", "new", "hello", "--lang", "python"]),
    );
    assert!(ok, "{err}");
    let plugin = tmp.path().join("hello");
    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(ok, "{out}");
    assert!(out.contains("enabled on tenant demo"), "{out}");
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi, Ann!");

    let app = plugin.join("app.py");
    let text = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        text.replace("f\"{hello}, {name}!\"", "f\"{hello} there, {name}!\""),
    )
    .unwrap();
    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(ok, "{out}");
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi there, Ann!");

    // A Python error is shown with its file, and the running version stays.
    std::fs::write(
        &app,
        format!("{text}\nraise RuntimeError('half-written')\n"),
    )
    .unwrap();
    let (ok, out) = dev(&plugin, &served, ADMIN);
    assert!(!ok);
    assert!(
        out.contains("half-written") && out.contains("app.py"),
        "{out}"
    );
    assert_eq!(greet(&served)["data"]["greet"]["text"], "Hi there, Ann!");
}

/// The GraphQL documents of a block, each starting at the margin.
fn documents(block: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in block.lines() {
        let starts = ["mutation", "query", "{"]
            .iter()
            .any(|s| line.starts_with(s));
        match out.last_mut() {
            Some(doc) if !starts => {
                doc.push('\n');
                doc.push_str(line);
            }
            _ => out.push(line.to_owned()),
        }
    }
    out.retain(|d| !d.trim().is_empty());
    out
}

/// The guide's section 5 (build and install the loyalty example from a
/// shell, then enable and call it over GraphQL) and its schedules and dead
/// letters queries, as written, against a running kernel.
#[test]
fn the_guides_install_enable_and_graphql_blocks_run_against_a_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let served = serve(tmp.path());
    let database = format!(
        "sqlite://{}",
        tmp.path().join("keel-data/keel.db").display()
    );
    let (ok, out, err) = support::run(
        support::script(&repo(), &guide::block("install-loyalty"))
            .env("KEEL_DATABASE_URL", &database)
            .env("KEEL_PLUGIN_TARGET_DIR", repo().join("target/wasm"))
            .env("CARGO_TARGET_DIR", repo().join("target/nested")),
    );
    assert!(ok, "{out}\n{err}");

    // The documents in order (each starts at the margin with `mutation`,
    // `query` or `{`); each answers without errors.
    let block = guide::block("enable-loyalty");
    let enabling = documents(&block);
    assert_eq!(enabling.len(), 3, "{block}");
    let mut last = Value::Null;
    for document in &enabling {
        last = graphql(&served, document);
        assert!(last.get("errors").is_none(), "{document}\n{last}");
    }
    assert_eq!(last["data"]["card"], json!({"stamps": 1, "rewards": 0}));

    let schedules = graphql(&served, &guide::block("schedules"));
    assert!(schedules.get("errors").is_none(), "{schedules}");
    assert!(schedules["data"]["schedules"].is_array(), "{schedules}");
    assert_eq!(schedules["data"]["scheduleRuns"], json!([]), "{schedules}");

    let letters_block = documents(&guide::block("dead-letters"));
    let [list, replay] = letters_block.as_slice() else {
        panic!("two documents: {letters_block:?}")
    };
    let letters = graphql(&served, list);
    assert_eq!(letters["data"]["deadLetters"], json!([]), "{letters}");
    // The placeholder id is no dead letter: the mutation ran, and said so.
    let replayed = graphql(&served, replay);
    assert_eq!(
        replayed["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{replayed}"
    );
}
