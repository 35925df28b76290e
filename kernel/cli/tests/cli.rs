//! The `keel` binary, run as a brand's engineer would from a shell.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{keel, run};

#[test]
fn help_documents_the_settings_and_their_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(keel(dir.path()).args(["serve", "--help"]));
    assert!(ok);
    for needle in [
        "--listen",
        "KEEL_LISTEN",
        "--database-url",
        "KEEL_DATABASE_URL",
        "KEEL_ADMIN_TOKEN",
        "--demo",
        "--config",
    ] {
        assert!(
            out.contains(needle),
            "`keel serve --help` lacks {needle}:\n{out}"
        );
    }
}

#[test]
fn tenants_keys_and_operators_are_managed_from_the_shell_on_the_default_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) =
        run(keel(dir.path()).args(["tenant", "create", "--slug", "acme", "--name", "Acme"]));
    assert!(ok, "{err}");
    assert!(out.contains("keel_ak_"), "{out}");
    assert!(
        dir.path().join("keel-data/keel.db").exists(),
        "the default database is under ./keel-data"
    );

    let (ok, out, _) = run(keel(dir.path()).args(["tenant", "list"]));
    assert!(ok && out.contains("\tacme\tAcme"), "{out}");

    let (ok, out, err) = run(keel(dir.path()).args([
        "api-key",
        "create",
        "--tenant",
        "acme",
        "--name",
        "erp",
        "--role",
        "integration",
        "--scope",
        "events:read",
    ]));
    assert!(ok, "{err}");
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    let (ok, _, err) = run(keel(dir.path()).args(["api-key", "revoke", "--tenant", "acme", &id]));
    assert!(ok, "{err}");
    let (ok, out, _) = run(keel(dir.path()).args(["api-key", "list", "--tenant", "acme"]));
    assert!(
        ok && out.contains(&format!("{id}\t")) && out.contains("revoked"),
        "{out}"
    );

    let (ok, _, err) = run(keel(dir.path())
        .args([
            "operator",
            "create",
            "--tenant",
            "acme",
            "--email",
            "ann@acme.example",
            "--role",
            "admin",
        ])
        .env("KEEL_OPERATOR_PASSWORD", "a long enough password"));
    assert!(ok, "{err}");
    let (ok, out, _) = run(keel(dir.path()).args(["operator", "list", "--tenant", "acme"]));
    assert!(
        ok && out.contains("ann@acme.example\tactive\tadmin"),
        "{out}"
    );
}

#[test]
fn bad_input_from_the_shell_is_a_clear_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) =
        run(keel(dir.path()).args(["tenant", "create", "--slug", "Not A Slug", "--name", "x"]));
    assert!(!ok);
    assert!(err.contains("slug"), "{err}");
    let (ok, _, err) = run(keel(dir.path()).args(["api-key", "list", "--tenant", "nope"]));
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    let (ok, _, err) = run(keel(dir.path()).args(["migrate", "--database-url", "mysql://x"]));
    assert!(!ok);
    assert!(err.contains("sqlite:// or postgres://"), "{err}");
    std::fs::write(
        dir.path().join("keel.toml"),
        "listen = \"127.0.0.1:0\"\nport = 1\n",
    )
    .unwrap();
    let (ok, _, err) = run(keel(dir.path()).args(["migrate", "--config", "keel.toml"]));
    assert!(!ok);
    assert!(err.contains("unknown field `port`"), "{err}");
    let (ok, _, err) = run(keel(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("KEEL_ADMIN_TOKEN", "short"));
    assert!(!ok);
    assert!(err.contains("at least 16 characters"), "{err}");
}

#[test]
fn serve_demo_prints_a_working_key_and_answers_graphql() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = keel(dir.path())
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut key = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kept open until the end: the server is still printing its banner
    // when the key line arrives, and a closed pipe would make it panic.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("keel_ak_")) {
            key = Some(k.trim_matches('\'').to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "no key printed in time");
    }
    let key = key.expect("serve --demo prints the demo tenant's key");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"query": "{ viewer { tenant { slug } roles } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    drop(lines);
    assert_eq!(body["data"]["viewer"]["tenant"]["slug"], "demo", "{body}");
    assert_eq!(
        body["data"]["viewer"]["roles"],
        serde_json::json!(["owner"])
    );
}
