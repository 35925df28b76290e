//! Embeds the plugin SDK's sources in the `keel` binary, so that `keel
//! plugin new` writes a copy of the SDK that matches this binary into a
//! new plugin, wherever it is created (no path back into a checkout).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The folders copied, relative to the repository root, as they are laid
/// out under a plugin's `keel/` folder (the same layout, so the SDK's
/// relative paths to the WIT hold).
const TREES: &[&str] = &[
    "sdk/keel-sdk/Cargo.toml",
    "sdk/keel-sdk/Cargo.lock",
    "sdk/keel-sdk/src",
    "sdk/keel-contract/Cargo.toml",
    "sdk/keel-contract/src",
    "sdk/keel-plugin-test/Cargo.toml",
    "sdk/keel-plugin-test/README.md",
    "sdk/keel-plugin-test/src",
    "sdk/python/README.md",
    "sdk/python/keel_sdk",
    "sdk/python/keel_plugin_test",
    "schemas/wit",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let mut files = Vec::new();
    for tree in TREES {
        let path = root.join(tree);
        println!("cargo:rerun-if-changed={}", path.display());
        collect(&root, &path, &mut files);
    }
    files.sort();
    let mut out = String::from("/// The SDK's files: (path under a plugin's `keel/`, text).\n");
    out.push_str("pub const SDK_FILES: &[(&str, &str)] = &[\n");
    for (rel, abs) in &files {
        writeln!(out, "    ({rel:?}, include_str!({abs:?})),").unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("sdk_files.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect(root: &Path, path: &Path, files: &mut Vec<(String, String)>) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name == "__pycache__" || name.ends_with(".pyc") {
        return;
    }
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            collect(root, &entry.unwrap().path(), files);
        }
    } else {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let abs = path.canonicalize().unwrap().to_string_lossy().into_owned();
        files.push((rel, abs));
    }
}
