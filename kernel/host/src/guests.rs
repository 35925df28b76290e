//! Building guest components from source: used by tests, the plugin test
//! harness and `keel plugin build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Makes sure the `wasm32-wasip2` target is installed (with rustup, when
/// the toolchain lacks it).
pub fn ensure_target() -> anyhow::Result<()> {
    let sysroot = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return Ok(());
    }
    // Its output is captured, never inherited: a caller's stdout may be a
    // protocol stream (`keel plugin harness`).
    let out = Command::new("rustup")
        .args(["target", "add", TARGET])
        .output()
        .with_context(|| {
            format!(
                "plugins build for {TARGET}, which this Rust toolchain lacks, and rustup could not \
                 be run to add it: install Rust with rustup (https://rustup.rs), or add the \
                 {TARGET} standard library to your toolchain"
            )
        })?;
    if !out.status.success() {
        bail!(
            "plugins build for {TARGET}, which this Rust toolchain lacks, and \
             `rustup target add {TARGET}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the cargo workspace or package at `manifest` for `wasm32-wasip2`
/// in release mode into `target_dir`, and returns the folder holding the
/// `.wasm` files.
pub fn build(manifest: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    ensure_target()?;
    let out = Command::new(cargo())
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .with_context(|| format!("running cargo build for {}", manifest.display()))?;
    if !out.status.success() {
        bail!(
            "building {} for {TARGET} failed:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target_dir.join(TARGET).join("release"))
}
