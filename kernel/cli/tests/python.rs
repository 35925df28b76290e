//! Python plugins end to end: `keel plugin new --lang python` scaffolds a
//! project outside the checkout with its own copy of the Python SDK, which
//! passes its pytest tests against `keel plugin harness` (`keel plugin
//! test`), builds into a package and installs; the Python example uses
//! every fixture of the harness; a fixture plugin
//! (`tests/fixtures/python-capabilities`) calls the SDK's catalog, org,
//! crypto, scope and paging wrappers; and a broken project gets an error
//! that says what to do.
//!
//! componentize-py and pytest come from PyPI, installed by keel once into
//! the user's cache (`kernel/cli/src/python.rs`).

use std::path::{Path, PathBuf};

use keel_testkit::guide;

mod support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `keel args` in `dir`: whether it passed, and all it printed.
fn keel(dir: &Path, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = support::run(support::keel(dir).args(args));
    (ok, format!("{out}\n{err}"))
}

/// `keel plugin test` in `dir` passed `n` tests, and none failed.
fn pytest_passes(dir: &Path, n: usize) {
    let (ok, out) = keel(dir, &["plugin", "test"]);
    assert!(ok, "keel plugin test in {} failed:\n{out}", dir.display());
    assert!(
        out.contains(&format!(" {n} passed")) && !out.contains("failed"),
        "expected {n} passing tests in {}:\n{out}",
        dir.display()
    );
}

#[test]
fn a_python_scaffold_and_the_python_example_pass_their_tests_and_install() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!tmp.path().starts_with(repo()), "outside the checkout");
    // The guide's commands: scaffold, test, build.
    let (ok, out, err) = support::run(&mut support::script(
        tmp.path(),
        &guide::block("new-python"),
    ));
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(" 2 passed") && !out.contains("failed"),
        "{out}"
    );
    assert!(out.contains("package ready"), "{out}");
    let dir = tmp.path().join("my-plugin");
    support::listed_in_the_guide(&dir, "tree-python");
    assert!(dir.join("keel/sdk/python/keel_sdk/__init__.py").is_file());
    assert!(
        dir.join("keel/sdk/python/keel_plugin_test/__init__.py")
            .is_file()
    );
    assert!(dir.join("keel/schemas/wit").is_dir());
    assert!(!dir.join("keel/sdk/keel-sdk").exists(), "no Rust SDK");
    assert!(!dir.join("Cargo.toml").exists());
    let pyproject = std::fs::read_to_string(dir.join("pyproject.toml")).unwrap();
    assert!(!pyproject.contains(repo().to_str().unwrap()), "{pyproject}");

    let package = dir.join("target/keel-package");
    let wasm = std::fs::read(package.join("plugin.wasm")).unwrap();
    assert!(
        wasm.starts_with(b"\0asm") && wasm.len() > 1 << 20,
        "a component"
    );
    let (ok, out) = keel(
        tmp.path(),
        &["plugin", "install", package.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let (_, list) = keel(tmp.path(), &["plugin", "list"]);
    assert!(list.contains("my-plugin\t0.1.0"), "{list}");

    // `keel plugin sdk` refreshes the Python copy.
    std::fs::write(dir.join("keel/sdk/python/stale.py"), "old").unwrap();
    let (ok, out) = keel(&dir, &["plugin", "sdk"]);
    assert!(ok, "{out}");
    assert!(!dir.join("keel/sdk/python/stale.py").exists());
    assert!(dir.join("keel/sdk/python/keel_sdk/__init__.py").is_file());

    // The example: an event from another plugin, a person's profile, the
    // clock, records, counters, HTTP to a scripted CRM, public operations,
    // dead letters, a stubbed call to the rewards plugin and GraphQL's argument
    // checks.
    pytest_passes(&repo().join("examples/tier-awards-py"), 6);
}

/// The Python SDK's wrappers of the catalogue, the org tree, the kernel's
/// hashes, a scoped caller's checks and page sizes, against the kernel: a
/// fixture plugin writes and reads master data through them, and its
/// tests assert the answers and each refusal's code (a node not found, bad
/// input, a write for a caller without the right, a second plugin without
/// the capability).
#[test]
fn the_python_sdk_wraps_catalog_org_crypto_scope_and_paging() {
    pytest_passes(
        &repo().join("kernel/cli/tests/fixtures/python-capabilities"),
        8,
    );
}

#[test]
fn a_broken_python_plugin_gets_an_error_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out) = keel(tmp.path(), &["plugin", "new", "broken", "--lang", "python"]);
    assert!(ok, "{out}");
    let dir = tmp.path().join("broken");
    let app = std::fs::read_to_string(dir.join("app.py")).unwrap();
    let pyproject = std::fs::read_to_string(dir.join("pyproject.toml")).unwrap();
    let build = || keel(&dir, &["plugin", "build"]);

    // A module that does not exist.
    std::fs::write(
        dir.join("pyproject.toml"),
        pyproject.replace("module = \"app\"", "module = \"plugin\""),
    )
    .unwrap();
    let (ok, out) = build();
    assert!(!ok);
    assert!(
        out.contains("[tool.keel] module") && out.contains("plugin.py"),
        "{out}"
    );
    std::fs::write(
        dir.join("pyproject.toml"),
        pyproject.replace("module = \"app\"", "module = \"a-b\""),
    )
    .unwrap();
    let (ok, out) = build();
    assert!(!ok);
    assert!(out.contains("not a module name"), "{out}");
    std::fs::write(dir.join("pyproject.toml"), &pyproject).unwrap();

    // Python that does not parse: the file, the line and the error.
    std::fs::write(dir.join("app.py"), format!("{app}\ndef broken(:\n")).unwrap();
    let (ok, out) = build();
    assert!(!ok);
    assert!(
        out.contains("SyntaxError") && out.contains("app.py"),
        "{out}"
    );

    // One operation registered twice fails the build, not a call.
    let twice = app.replace(
        "def greet(",
        "def greet_twice(ctx, input):\n    return {}\n\n\n@operation(\"greet\")\ndef greet(",
    );
    std::fs::write(dir.join("app.py"), twice).unwrap();
    let (ok, out) = build();
    assert!(!ok);
    assert!(out.contains("'greet' is registered twice"), "{out}");
    std::fs::write(dir.join("app.py"), &app).unwrap();

    // No SDK: the command that brings it back.
    std::fs::remove_dir_all(dir.join("keel")).unwrap();
    let (ok, out) = build();
    assert!(!ok);
    assert!(out.contains("keel plugin sdk"), "{out}");
    let (ok, out) = keel(&dir, &["plugin", "sdk"]);
    assert!(ok, "{out}");

    // No Python to install the tools with: what to install or set.
    let (ok, _, err) = support::run(
        support::keel(&dir)
            .args(["plugin", "build"])
            .env("KEEL_PYTHON", tmp.path().join("no-python"))
            .env("KEEL_PYTHON_TOOLS", tmp.path().join("tools")),
    );
    assert!(!ok);
    assert!(
        err.contains("Python 3.10 or newer") && err.contains("KEEL_PYTHON"),
        "{err}"
    );
    assert!(!tmp.path().join("tools").exists(), "nothing half-installed");

    // A folder that is no plugin names both languages' project files.
    let (ok, out) = keel(tmp.path(), &["plugin", "build"]);
    assert!(!ok);
    assert!(
        out.contains("pyproject.toml") && out.contains("--lang python"),
        "{out}"
    );
}

/// The stamp-card plugin of the guide's Python section, with the manifest
/// its operations need (the guide shows the Rust twin's), passes the
/// guide's Python test.
const STAMPS_MANIFEST: &str = r#"name = "stamps"
version = "0.1.0"
publisher = "Keel's guide"
description = "The guide's Python stamp card"
wit = "0.2.0"

[[collections]]
name = "cards"

[events]
subscribes = [{ type = "code.scanned", mode = "async" }]

[graphql]
sdl = """
type Stamps {
  stamps: Int!
}
extend type Mutation {
  stamp(member: String!, store: String!, day: String!): Stamps!
}
"""

[config_schema]
type = "object"
properties = { stamps_per_reward = { type = "integer" } }

[capabilities]
capabilities = ["records", "counters", "events"]
"#;

#[test]
fn the_guides_python_plugin_passes_the_guides_python_test() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out) = keel(tmp.path(), &["plugin", "new", "stamps", "--lang", "python"]);
    assert!(ok, "{out}");
    let dir = tmp.path().join("stamps");
    std::fs::write(dir.join("keel-plugin.toml"), STAMPS_MANIFEST).unwrap();
    std::fs::write(dir.join("app.py"), guide::block("python-app")).unwrap();
    std::fs::remove_dir_all(dir.join("tests")).unwrap();
    std::fs::create_dir(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("tests/test_stamps.py"),
        guide::block("python-test"),
    )
    .unwrap();
    pytest_passes(&dir, 1);
}
