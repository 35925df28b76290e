//! The harness's compiled-plugin cache, shared by every harness process of
//! a user: a plugin's tests start one harness per test, and compiling a
//! component (seconds for a Python plugin's 18 MB) once instead of in each
//! is what keeps them fast.
//!
//! The kernel loads precompiled code only under a MAC keyed by a secret of
//! its database (`keel_host`'s engine); each harness's database is new, so
//! the key lives beside the cache in a file only its owner can read, and
//! each harness seeds its database with it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::RngCore as _;

/// The newest compiled plugins kept; older ones are removed at start.
const KEEP: usize = 32;

/// The cache folder and its key: `KEEL_HARNESS_CACHE`, else
/// `keel/harness` in the user's cache folder.
pub(super) fn open() -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let dir = match std::env::var_os("KEEL_HARNESS_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => crate::project::user_cache_dir()?.join("keel/harness"),
    };
    create_private_dir(&dir)?;
    let key = key(&dir.join("key"))?;
    prune(&dir);
    Ok((dir, key))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating the harness cache {}", dir.display()))
}

/// The key in `path`, made on first use (readable by its owner only).
fn key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(key) = std::fs::read(path)
        && key.len() == 32
    {
        return Ok(key);
    }
    let mut key = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&key))
        .with_context(|| format!("writing {}", tmp.display()))?;
    // Two harnesses starting at once: the second rename wins, and the
    // first one's entries are recompiled once under the surviving key.
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// Removes all but the newest `KEEP` compiled plugins.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut code: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    code.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in code.into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(path.with_extension("mac"));
        let _ = std::fs::remove_file(&path);
    }
}
