//! The GraphQL-over-HTTP conformance audit: graphql-http's `serverAudits`
//! (the Node project in `tests/audit`) run against `/graphql`, with an API
//! key and without, and against a tenant's public `/t/{slug}/graphql`, with
//! no MUST or SHOULD audit failing.
//!
//! The test installs the pinned Node dependencies itself (`npm ci`) when
//! `tests/audit/node_modules` is missing or stale. Without `node` on the
//! PATH it is skipped, except under `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use keel_core::Backend;
use serde_json::{Value, json};

use crate::plugins::{SDL, enable, install};
use crate::support::{TestApp, ok};

/// The Node project holding `audit.mjs`.
fn audit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether `node` runs; when it does not, panics under CI and otherwise
/// prints a skip notice.
fn node_or_skip(test: &str) -> bool {
    let found = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !in_ci(),
            "{test}: `node` is not on the PATH; CI must install Node.js (v18 or later, with npm) \
             to run the graphql-http audit"
        );
        eprintln!("SKIPPED {test}: `node` is not on the PATH; install Node.js to run this audit");
    }
    found
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether `node_modules` holds every dependency at the version
/// `package.json` pins.
fn deps_installed(dir: &Path) -> bool {
    let read =
        |p: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    let Some(manifest) = read(dir.join("package.json")) else {
        return false;
    };
    let Some(deps) = manifest["dependencies"].as_object() else {
        return false;
    };
    deps.iter().all(|(name, version)| {
        read(dir.join("node_modules").join(name).join("package.json"))
            .is_some_and(|installed| installed["version"] == *version)
    })
}

/// Runs `npm ci` in the audit project unless its dependencies are already
/// installed: once per test process, and under a file lock so concurrent
/// test processes do not install over one another.
fn ensure_deps() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = audit_dir();
            let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphql-http-audit.lock");
            let lock = std::fs::File::create(&lock_path)
                .map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
            lock.lock()
                .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
            if deps_installed(&dir) {
                return Ok(());
            }
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("running `npm ci` in {}: {e}", dir.display()))?;
            if !out.status.success() || !deps_installed(&dir) {
                return Err(format!(
                    "`npm ci` in {} failed ({}):\n{}",
                    dir.display(),
                    out.status,
                    output_text(&out)
                ));
            }
            Ok(())
        })
        .clone()
}

/// Runs `node audit.mjs` against `url` (off the async runtime, which keeps
/// serving the gateway) and fails the test with the audit's output unless
/// every MUST and SHOULD audit passed.
async fn audit(url: String, token: Option<String>) {
    let out = tokio::task::spawn_blocking(move || {
        ensure_deps().unwrap_or_else(|e| panic!("installing the audit's Node dependencies: {e}"));
        let mut cmd = Command::new("node");
        cmd.arg("audit.mjs")
            .arg(&url)
            .current_dir(audit_dir())
            .env_remove("GRAPHQL_AUDIT_TOKEN");
        if let Some(t) = token {
            cmd.env("GRAPHQL_AUDIT_TOKEN", t);
        }
        let out = cmd.output().expect("running node audit.mjs");
        (url, out)
    })
    .await
    .unwrap();
    let (url, out) = out;
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "the graphql-http audit of {url} failed ({}):\n{text}",
        out.status
    );
    eprintln!("{text}");
}

/// A tenant `acme` with the probe plugin (and its public `caller`
/// operation) enabled; returns the owner's key.
async fn acme_with_probe(app: &TestApp) -> String {
    let (_, owner) = app.tenant("acme").await;
    install(app, "probe", "0.1.0", SDL).await;
    ok(&enable(app, &owner, "probe", json!({})).await);
    owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_graphql_endpoint_passes_the_graphql_http_audit() {
    if !node_or_skip("the_graphql_endpoint_passes_the_graphql_http_audit") {
        return;
    }
    let app = TestApp::start(Backend::Sqlite).await;
    let owner = acme_with_probe(&app).await;
    audit(app.url("/graphql"), Some(owner)).await;
    // Without a credential `{ __typename }` still answers, so the endpoint
    // conforms for anonymous callers too.
    audit(app.url("/graphql"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_endpoint_passes_the_graphql_http_audit() {
    if !node_or_skip("the_public_endpoint_passes_the_graphql_http_audit") {
        return;
    }
    let app = TestApp::start(Backend::Sqlite).await;
    acme_with_probe(&app).await;
    let r = app
        .http
        .post(app.url("/t/acme/graphql"))
        .json(&json!({ "query": "{ caller }" }))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    ok(&body);
    audit(app.url("/t/acme/graphql"), None).await;
}
