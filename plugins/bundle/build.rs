//! Builds the first-party plugins (their own cargo workspaces under
//! `plugins/`) for `wasm32-wasip2` and embeds them.
//!
//! The nested builds share `<target>/plugins`, so a debug test build and a
//! release run compile each plugin once; cargo there rebuilds only what
//! changed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first-party plugins: folder names under `plugins/`, crate names.
const PLUGINS: &[(&str, &str)] = &[("codes", "codes"), ("rewards", "rewards"), ("cdp", "cdp")];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let here =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let plugins = here
        .parent()
        .expect("plugins/bundle has a parent")
        .to_path_buf();
    let root = plugins
        .parent()
        .expect("plugins/ has a parent")
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = shared_target_dir(&out);
    for watched in [
        plugins.join("codes-core/src"),
        plugins.join("codes-core/Cargo.toml"),
        plugins.join("rewards-core/src"),
        plugins.join("rewards-core/Cargo.toml"),
        plugins.join("cdp-core/src"),
        plugins.join("cdp-core/Cargo.toml"),
        root.join("sdk/keel-sdk/src"),
        root.join("sdk/keel-sdk/Cargo.toml"),
        root.join("schemas/wit"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    ensure_target();
    let mut generated =
        String::from("/// The embedded first-party plugins.\npub const PLUGINS: &[Bundled] = &[\n");
    for (dir, krate) in PLUGINS {
        let dir = plugins.join(dir);
        for watched in [
            "src",
            "assets",
            "Cargo.toml",
            "Cargo.lock",
            "keel-plugin.toml",
        ]
        .map(|w| dir.join(w))
        // A watched path that does not exist makes cargo rerun this script
        // (and rebuild every crate above it) on every build.
        .iter()
        .filter(|p| p.exists())
        {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
        let wasm = build(&dir.join("Cargo.toml"), &target_dir).join(format!("{krate}.wasm"));
        let copy = out.join(format!("{krate}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
        generated.push_str(&format!(
            "    Bundled {{ manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},\n",
            dir.join("keel-plugin.toml").display().to_string(),
            copy.display().to_string()
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out.join("bundled.rs"), generated).expect("writing bundled.rs");
}

/// `<target>/plugins`: `OUT_DIR` is `<target>/[<triple>/]<profile>/build/<pkg>/out`.
fn shared_target_dir(out: &Path) -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("plugins");
    }
    let build = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .expect("OUT_DIR lies under a build folder");
    build
        .parent()
        .and_then(Path::parent)
        .expect("the build folder lies under <target>/<profile>")
        .join("plugins")
}

/// Adds the wasm32-wasip2 target with rustup when the toolchain lacks it.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
    );
}

fn build(manifest: &Path, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("running cargo for a plugin");
    assert!(
        out.status.success(),
        "building {} for {TARGET} failed:\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join(TARGET).join("release")
}
