//! The harness's compiled-plugin cache, shared by every harness process of
//! a user: a plugin's tests start one harness per test, and compiling a
//! component (seconds for a Python plugin's 18 MB) once instead of in each
//! is what keeps them fast.
//!
//! The kernel loads precompiled code only under a MAC keyed by a secret of
//! its database (`keel_host`'s engine); each harness's database is new, so
//! the key lives beside the cache in a file only its owner can read, and
//! each harness seeds its database with it. Whoever can write the folder
//! could replace both key and code, so a folder or key that is not the
//! user's own, or that others can write (a shared or restored cache), is
//! not used: the harness then compiles into its own temporary folder.

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
    private(&dir, 0o022)?;
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

/// Refuses `path` unless it is the user's own, not a symbolic link, and
/// none of the permission bits in `forbidden` is set.
#[cfg(unix)]
fn private(path: &Path, forbidden: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self")
        .context("finding this process's user (/proc/self)")?
        .uid();
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_type().is_symlink() || meta.uid() != me || meta.mode() & forbidden != 0 {
        anyhow::bail!(
            "{} is not private to this user (a link, another owner, or writable by others)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn private(_path: &Path, _forbidden: u32) -> anyhow::Result<()> {
    anyhow::bail!("a shared harness cache needs Unix permissions")
}

/// The key in `path`, made on first use (readable by its owner only).
fn key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if std::fs::symlink_metadata(path).is_ok() {
        private(path, 0o077)?;
        let key = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if key.len() == 32 {
            return Ok(key);
        }
    }
    let mut key = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let tmp = path.with_extension(format!(
        "tmp-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
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

/// Removes all but the newest `KEEP` compiled plugins, and what writes
/// that never finished left (an hour old).
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (modified, path) in &files {
        let unfinished = path
            .extension()
            .is_some_and(|e| e.to_string_lossy().starts_with("tmp-"));
        if unfinished && *modified < hour_ago {
            let _ = std::fs::remove_file(path);
        }
    }
    let mut code: Vec<_> = files
        .into_iter()
        .filter(|(_, p)| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    code.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in code.into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(path.with_extension("mac"));
        let _ = std::fs::remove_file(&path);
    }
}
