//! Plugin tooling end to end: `keel plugin new` scaffolds a crate that
//! builds and passes its own tests unmodified, the example plugin passes its
//! tests, `keel plugin build` + `install` put a package on the platform, and
//! the SDK passes its own unit tests.
//!
//! The nested cargo runs use `target/nested` (and `target/wasm` for
//! components) so that they never wait on this test run's own build lock.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn cargo_test(dir: &Path) {
    cargo_test_args(dir, &[]);
}

fn cargo_test_args(dir: &Path, args: &[&str]) {
    let repo = repo();
    // Pin the same dependency versions as Keel's own workspace.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(repo.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }
    let out = Command::new(env!("CARGO"))
        .arg("test")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo.join("target/nested"))
        .env("KEEL_PLUGIN_TARGET_DIR", repo.join("target/wasm"))
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo test in {} failed:\n{text}",
        dir.display()
    );
    // At least one test ran and passed (not only empty doc-test runs).
    let ran = text
        .lines()
        .any(|l| l.starts_with("test result: ok.") && !l.contains("ok. 0 passed"));
    assert!(ran, "no test ran in {}:\n{text}", dir.display());
}

fn keel(dir: &Path, args: &[&str]) -> String {
    let out = support::keel(dir)
        .args(args)
        .env("KEEL_PLUGIN_TARGET_DIR", repo().join("target/wasm"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "keel {args:?} failed:\n{text}");
    text
}

#[test]
fn a_scaffolded_plugin_and_the_example_pass_their_tests_and_install() {
    let tmp = tempfile::tempdir().unwrap();
    keel(tmp.path(), &["plugin", "new", "hello-world"]);
    let crate_dir = tmp.path().join("hello-world");
    cargo_test(&crate_dir);

    cargo_test(&repo().join("examples/loyalty"));

    let out = keel(&crate_dir, &["plugin", "build"]);
    assert!(out.contains("package ready"), "{out}");
    let package = crate_dir.join("target/keel-package");
    keel(
        tmp.path(),
        &["plugin", "install", package.to_str().unwrap()],
    );
    let list = keel(tmp.path(), &["plugin", "list"]);
    assert!(list.contains("hello-world\t0.1.0"), "{list}");
}

#[test]
fn plugin_new_refuses_a_bad_name_or_an_existing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = support::keel(tmp.path())
        .args(["plugin", "new", "Bad_Name"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a plugin name"));
    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    let out = support::keel(tmp.path())
        .args(["plugin", "new", "taken"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// The SDK is its own workspace (plugins build it for wasm32-wasip2), so
/// `cargo test --workspace` does not reach its unit tests; this runs them
/// natively.
#[test]
fn the_sdks_own_unit_tests_pass() {
    cargo_test_args(&repo().join("sdk/keel-sdk"), &["--lib"]);
}
