//! `keel plugin dev --once` against a real `keel serve`: a scaffolded
//! plugin is built, installed over HTTP with the platform key, enabled on
//! the demo tenant and answers over GraphQL; after an edit, the next round
//! upgrades it and the new code answers. Wrong keys and a broken build are
//! reported, and the running version is left alone.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// `keel plugin dev --once` in `dir`: success, and what it printed.
fn dev(dir: &Path, served: &Served, admin: &str) -> (bool, String) {
    let (ok, out, err) = support::run(
        support::keel(dir)
            .args(["plugin", "dev", "--once", "--url", &served.url])
            .args(["--plugin-config", r#"{"greeting": "Hi"}"#])
            .env("KEEL_ADMIN_TOKEN", admin)
            .env("KEEL_API_KEY", &served.key)
            .env("KEEL_PLUGIN_TARGET_DIR", repo().join("target/wasm"))
            .env("CARGO_TARGET_DIR", repo().join("target/nested")),
    );
    (ok, format!("{out}{err}"))
}

fn greet(served: &Served) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/graphql", served.url))
            .bearer_auth(&served.key)
            .json(&json!({"query": "mutation { greet(name: \"Ann\") { text } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
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
