//! Debian's Chromium, headless, for tests of the pages people see: find it
//! (installing it with apt-get when missing and running as root) and load
//! a page, for its DOM after the scripts ran or a screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where Debian puts the browser.
const PATHS: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

fn find() -> Option<PathBuf> {
    PATHS.into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// Debian's Chromium, installed with apt-get when missing and this process
/// runs as root (one install at a time in a test process); `None` when it
/// cannot be had.
pub fn find_or_install() -> Option<PathBuf> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    if let Some(p) = find() {
        return Some(p);
    }
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = find() {
        return Some(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find()
}

/// What a page load gives: the DOM after its scripts ran (empty when a
/// screenshot was asked for instead) and Chromium's log, console included.
#[derive(Debug)]
pub struct Loaded {
    pub dom: String,
    pub log: String,
}

/// Loads `url` in a fresh headless profile at `window` (width, height):
/// the DOM, or a screenshot into `shot`. Panics if Chromium fails.
pub fn load(chromium: &Path, url: &str, window: (u32, u32), shot: Option<&Path>) -> Loaded {
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--window-size={},{}", window.0, window.1))
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match shot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("running chromium");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {log}");
    Loaded {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log,
    }
}
