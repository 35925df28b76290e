//! The plugin author's loop, timed with the `keel` this bench is built
//! with (release): `cargo bench -p keel-cli --bench authors`, for a Rust
//! and then a Python plugin (`KEEL_BENCH_LANG=rust|python` for one).
//!
//! 1. `keel plugin new` to green tests (`keel plugin test`), cold: a new
//!    project in a temporary folder with its own, empty `target/`, an
//!    empty harness cache and, for Python, componentize-py and pytest not
//!    yet installed (crates already downloaded into cargo's cache count as
//!    warm: a newcomer's first run downloads them once);
//! 2. the same tests again, unchanged and after an edit;
//! 3. the size of the project's `target/`;
//! 4. `keel plugin dev`: from a saved change to the new version answering
//!    over GraphQL on a `keel serve --demo` (`KEEL_BENCH_EDITS` edits, 5 by
//!    default).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const ADMIN: &str = "bench-platform-admin-token";

fn keel(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(dir).env("KEEL_LOG", "warn");
    for var in ["CARGO_TARGET_DIR", "KEEL_PLUGIN_TARGET_DIR", "RUSTFLAGS"] {
        c.env_remove(var);
    }
    c
}

fn timed(mut cmd: Command, what: &str) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A plugin language: its `--lang`, the file holding `greet`, and the
/// greeting's text in it (`{hello}, ` then the name).
struct Lang {
    name: &'static str,
    source: &'static str,
    greeting: &'static str,
}

const RUST: Lang = Lang {
    name: "rust",
    source: "src/lib.rs",
    greeting: "text: format!(\"{hello}, {}!\"",
};

const PYTHON: Lang = Lang {
    name: "python",
    source: "app.py",
    greeting: "f\"{hello}, {name}!\"",
};

impl Lang {
    /// Replaces the greeting (`Hello`, from the config's default) with
    /// `greeting`.
    fn edit(&self, source: &Path, previous: &str, greeting: &str) {
        let text = std::fs::read_to_string(source).unwrap();
        let was = self.greeting.replace("{hello}", previous);
        let now = self.greeting.replace("{hello}", greeting);
        assert!(text.contains(&was), "{was} not in {}", source.display());
        std::fs::write(source, text.replace(&was, &now)).unwrap();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let only = std::env::var("KEEL_BENCH_LANG").ok();
    for lang in [RUST, PYTHON] {
        if only.as_deref().is_none_or(|l| l == lang.name) {
            author_loop(&lang);
        }
    }
}

fn author_loop(lang: &Lang) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Cold: no compiled plugins cached, and for Python no tools installed
    // (a newcomer's first plugin; crates already in cargo's download cache
    // count as warm).
    let fresh = |mut c: Command| {
        c.env("KEEL_HARNESS_CACHE", root.join("harness-cache"))
            .env("KEEL_PYTHON_TOOLS", root.join("python-tools"));
        c
    };
    let mut new = fresh(keel(root));
    new.args(["plugin", "new", "hello", "--lang", lang.name]);
    assert!(new.status().unwrap().success());
    let project = root.join("hello");
    let source = project.join(lang.source);
    let test = || {
        let mut c = fresh(keel(&project));
        c.args(["plugin", "test"]);
        c
    };
    let cold = timed(test(), "the first keel plugin test");
    let unchanged = timed(test(), "keel plugin test, unchanged");
    // An edit that changes the code but not what the tests expect.
    let text = std::fs::read_to_string(&source).unwrap();
    let comment = if lang.name == "rust" {
        "// edited"
    } else {
        "# edited"
    };
    std::fs::write(&source, format!("{text}\n{comment}\n")).unwrap();
    let edited = timed(test(), "keel plugin test after an edit");
    let target = size(&project.join("target"));

    // The dev loop against a served kernel.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut serve = fresh(keel(root))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("KEEL_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let serve = Killed(serve);
    let key = loop {
        let line = lines.next().expect("serve printed a key").unwrap();
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("keel_ak_")) {
            break k.trim_matches('\'').to_owned();
        }
    };
    let dev = fresh(keel(&project))
        .args(["plugin", "dev", "--url", &url])
        .env("KEEL_ADMIN_TOKEN", ADMIN)
        .env("KEEL_API_KEY", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev = Killed(dev);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let greet = || {
        rt.block_on(async {
            let r = http
                .post(format!("{url}/graphql"))
                .bearer_auth(&key)
                .json(&json!({"query": "mutation { greet(name: \"Ann\") { text } }"}))
                .send()
                .await;
            match r {
                Ok(r) => {
                    r.json::<serde_json::Value>().await.unwrap_or_default()["data"]["greet"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }
                Err(_) => String::new(),
            }
        })
    };
    let wait_for = |want: &str, limit: Duration| {
        let start = Instant::now();
        while greet() != want {
            assert!(start.elapsed() < limit, "{want:?} never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    };
    let first = wait_for("Hello, Ann!", Duration::from_secs(600));
    let edits: usize = std::env::var("KEEL_BENCH_EDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rounds = Vec::new();
    let mut previous = "{hello}".to_owned();
    for i in 0..edits {
        let greeting = format!("Hello #{i}");
        lang.edit(&source, &previous, &greeting);
        previous = greeting.clone();
        rounds.push(wait_for(
            &format!("{greeting}, Ann!"),
            Duration::from_secs(600),
        ));
    }
    drop(dev);
    drop(serve);
    rounds.sort();
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let build = if cfg!(debug_assertions) {
        "a debug keel"
    } else {
        "a release keel"
    };
    println!("plugin author's loop in {} ({build})", lang.name);
    println!("  keel plugin new -> green tests, cold: {}", secs(cold));
    println!("  keel plugin test, unchanged:         {}", secs(unchanged));
    println!("  keel plugin test, after an edit:     {}", secs(edited));
    println!(
        "  the project's target/:               {} MiB",
        target >> 20
    );
    println!("  keel plugin dev, first round:        {}", secs(first));
    println!(
        "  keel plugin dev, saved change -> new version answering: median {}, min {}, max {} ({} edits)",
        secs(rounds[rounds.len() / 2]),
        secs(rounds[0]),
        secs(rounds[rounds.len() - 1]),
        rounds.len()
    );
}
