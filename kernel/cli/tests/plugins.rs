//! Plugin tooling end to end: `keel plugin new` scaffolds a project outside
//! the checkout, with its own copy of the SDK, that builds and passes its
//! own tests unmodified against `keel plugin harness` (`keel plugin test`);
//! the example plugin passes its tests; `keel plugin build` + `install` put
//! a package on the platform; and the SDK passes its own unit tests.
//!
//! The nested cargo runs use `target/nested` (and `target/wasm` for
//! components) so that they never wait on this test run's own build lock
//! and share one build of the SDK's dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_testkit::guide;

mod support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `cmd` with the nested builds' folders, and none of this run's flags.
fn nested(mut cmd: Command) -> Command {
    let repo = repo();
    cmd.env("CARGO_TARGET_DIR", repo.join("target/nested"))
        .env("KEEL_PLUGIN_TARGET_DIR", repo.join("target/wasm"))
        .env_remove("RUSTFLAGS");
    cmd
}

/// Runs `cmd` (a test run) and checks that it passed and that at least
/// one test ran (not only empty doc-test runs).
fn passes(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    let ran = text
        .lines()
        .any(|l| l.starts_with("test result: ok.") && !l.contains("ok. 0 passed"));
    assert!(ran, "no test ran in {what}:\n{text}");
    text
}

fn cargo_test_args(dir: &Path, args: &[&str]) {
    let mut cmd = nested(Command::new(env!("CARGO")));
    cmd.arg("test").args(args).current_dir(dir);
    passes(cmd, &format!("cargo test in {}", dir.display()));
}

fn keel(dir: &Path, args: &[&str]) -> String {
    let out = nested(support::keel(dir)).args(args).output().unwrap();
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
    assert!(!tmp.path().starts_with(repo()), "outside the checkout");
    // The guide's first commands: scaffold, test, build.
    let start = nested(support::script(tmp.path(), &guide::block("new-rust")));
    let out = passes(
        start,
        "the guide's `keel plugin new` and `keel plugin test`",
    );
    assert!(out.contains("package ready"), "{out}");
    let crate_dir = tmp.path().join("my-plugin");
    support::listed_in_the_guide(&crate_dir, "tree-rust");
    assert_eq!(
        std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap(),
        guide::block("cargo-toml"),
        "the guide shows the scaffold's Cargo.toml"
    );
    // Its own copy of the SDK, and no path back into the checkout.
    assert!(crate_dir.join("keel/sdk/keel-sdk/src/lib.rs").is_file());
    assert!(crate_dir.join("keel/VERSION").is_file());
    let cargo = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(!cargo.contains(repo().to_str().unwrap()), "{cargo}");
    assert!(cargo.contains("path = \"keel/sdk/keel-sdk\""), "{cargo}");

    // The example plugins' own tests, with `keel` found through KEEL_BIN.
    // tier-awards drives every fixture of the harness: a person with an
    // attribute, another plugin's event, the clock and the HTTP endpoint.
    for example in ["loyalty", "tier-awards"] {
        let mut cmd = nested(Command::new(env!("CARGO")));
        cmd.arg("test")
            .current_dir(repo().join("examples").join(example))
            .env("KEEL_BIN", env!("CARGO_BIN_EXE_keel"));
        passes(cmd, &format!("cargo test in examples/{example}"));
    }

    let package = crate_dir.join("target/keel-package");
    keel(
        tmp.path(),
        &["plugin", "install", package.to_str().unwrap()],
    );
    let list = keel(tmp.path(), &["plugin", "list"]);
    assert!(list.contains("my-plugin\t0.1.0"), "{list}");

    // `keel plugin sdk` refreshes the copy (and only a copy it wrote).
    std::fs::write(crate_dir.join("keel/sdk/stale.txt"), "old").unwrap();
    keel(&crate_dir, &["plugin", "sdk"]);
    assert!(!crate_dir.join("keel/sdk/stale.txt").exists());
    assert!(crate_dir.join("keel/sdk/keel-sdk/src/lib.rs").is_file());
    std::fs::remove_file(crate_dir.join("keel/VERSION")).unwrap();
    let (ok, _, err) = support::run(support::keel(&crate_dir).args(["plugin", "sdk"]));
    assert!(!ok);
    assert!(err.contains("not a copy of the Keel SDK"), "{err}");
    assert!(
        crate_dir.join("keel/sdk/keel-sdk/src/lib.rs").is_file(),
        "left alone"
    );
    // A project linked to a checkout's SDK has no copy to refresh.
    let (ok, _, err) =
        support::run(support::keel(&repo().join("examples/loyalty")).args(["plugin", "sdk"]));
    assert!(!ok);
    assert!(err.contains("does not use a copy of the SDK"), "{err}");
    assert!(!repo().join("examples/loyalty/keel").exists());
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
fn the_sdks_own_unit_tests_and_doc_examples_pass() {
    cargo_test_args(&repo().join("sdk/keel-sdk"), &["--lib"]);
    // Its docs' examples compile (`no_run`: they would call the host).
    cargo_test_args(&repo().join("sdk/keel-sdk"), &["--doc"]);
}
