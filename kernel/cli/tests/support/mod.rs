//! Running the `keel` binary as a shell would, in `dir`, with none of the
//! caller's `KEEL_*` settings leaking into it (a developer's database URL,
//! master key or proxies must not change what a test sees).

#![allow(dead_code, reason = "each test file uses the helpers it needs")]

use std::path::Path;
use std::process::Command;

/// `keel` in `dir`, logging warnings only, with no inherited `KEEL_*`.
pub fn keel(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEEL_") {
            c.env_remove(name);
        }
    }
    c.env("KEEL_LOG", "warn");
    c
}

/// Runs `cmd`: whether it succeeded, its stdout and its stderr.
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A shell script of the guide (`keel_testkit::guide::block`), run by bash
/// in `dir` with this build's `keel` first on `PATH` and no inherited
/// `KEEL_*`; it stops at the first failing command.
pub fn script(dir: &Path, text: &str) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_keel"))
        .parent()
        .expect("keel's folder");
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let mut c = Command::new("bash");
    c.args(["-euo", "pipefail", "-c", text])
        .current_dir(dir)
        .env("PATH", path);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEEL_") {
            c.env_remove(name);
        }
    }
    c.env("KEEL_LOG", "warn");
    c
}

/// Each path of the guide's listing `name` (`my-plugin/`, then its files,
/// indented, each with a comment) is in `dir`, named as the listing's root.
pub fn listed_in_the_guide(dir: &Path, name: &str) {
    let listing = keel_testkit::guide::block(name);
    let mut lines = listing.lines();
    let root = lines.next().expect("a listing").trim_end_matches('/');
    assert_eq!(Some(root), dir.file_name().and_then(|n| n.to_str()));
    let paths: Vec<&str> = lines
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| !p.starts_with('#'))
        .collect();
    assert!(paths.len() >= 4, "{listing}");
    for path in paths {
        assert!(
            dir.join(path).exists(),
            "the guide lists {path}, not in {}",
            dir.display()
        );
    }
}
