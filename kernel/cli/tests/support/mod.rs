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
