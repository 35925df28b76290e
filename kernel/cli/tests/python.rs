//! Python plugins end to end: `keel plugin new --lang python` scaffolds a
//! project outside the checkout with its own copy of the Python SDK, which
//! passes its pytest tests against `keel plugin harness` (`keel plugin
//! test`), builds into a package and installs; the Python example uses
//! every fixture of the harness; and a broken project gets an error that
//! says what to do.
//!
//! componentize-py and pytest come from PyPI, installed by keel once into
//! the user's cache (`kernel/cli/src/python.rs`).

use std::path::{Path, PathBuf};

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
    let (ok, out) = keel(
        tmp.path(),
        &["plugin", "new", "hello-py", "--lang", "python"],
    );
    assert!(ok, "{out}");
    let dir = tmp.path().join("hello-py");
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
    pytest_passes(&dir, 2);

    let (ok, out) = keel(&dir, &["plugin", "build"]);
    assert!(ok && out.contains("package ready"), "{out}");
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
    assert!(list.contains("hello-py\t0.1.0"), "{list}");

    // `keel plugin sdk` refreshes the Python copy.
    std::fs::write(dir.join("keel/sdk/python/stale.py"), "old").unwrap();
    let (ok, out) = keel(&dir, &["plugin", "sdk"]);
    assert!(ok, "{out}");
    assert!(!dir.join("keel/sdk/python/stale.py").exists());
    assert!(dir.join("keel/sdk/python/keel_sdk/__init__.py").is_file());

    // The example: an event from another plugin, a person's profile, the
    // clock, records, counters, HTTP to a scripted CRM, public operations,
    // dead letters, a stubbed call to the rewards plugin and a plugin's own bug.
    pytest_passes(&repo().join("examples/tier-awards-py"), 6);
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

/// The fenced blocks of `lang` in a Markdown file.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let (mut out, mut current) = (Vec::new(), None::<String>);
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn the_guides_python_and_toml_blocks_parse() {
    let guide = std::fs::read_to_string(repo().join("docs/plugin-guide.md")).unwrap();
    let python = blocks(&guide, "python");
    assert!(python.len() >= 2, "the guide's Python examples");
    for block in &python {
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), block.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a Python block of the guide does not parse:\n{block}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let toml_blocks = blocks(&guide, "toml");
    assert!(toml_blocks.len() >= 3, "the guide's manifests");
    for block in &toml_blocks {
        if let Err(e) = toml::from_str::<toml::Value>(block) {
            panic!("a TOML block of the guide does not parse:\n{block}\n{e}");
        }
    }
}
