//! The plugin author's loop, timed with the `keel` this bench is built
//! with (release): `cargo bench -p keel-cli --bench authors`.
//!
//! 1. `keel plugin new` to green tests (`keel plugin test`), cold: a new
//!    project in a temporary folder with its own, empty `target/` (crates
//!    already downloaded into cargo's cache count as warm: a newcomer's
//!    first run downloads them once);
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

fn edit(lib: &Path, greeting: &str) {
    let text = std::fs::read_to_string(lib).unwrap();
    // The greeting's text: `text: format!("{hello}, {}!", …)`.
    let start = text.find("text: format!(\"").unwrap();
    let end = start + text[start..].find(", {}!\"").unwrap();
    let new = format!(
        "{}text: format!(\"{greeting}{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(lib, new).unwrap();
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert!(
        keel(root)
            .args(["plugin", "new", "hello"])
            .status()
            .unwrap()
            .success()
    );
    let project = root.join("hello");
    let lib = project.join("src/lib.rs");
    let test = || {
        let mut c = keel(&project);
        c.args(["plugin", "test"]);
        c
    };
    let cold = timed(test(), "the first keel plugin test");
    let unchanged = timed(test(), "keel plugin test, unchanged");
    // An edit that changes the code but not what the tests expect.
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text + "\n// edited\n").unwrap();
    let edited = timed(test(), "keel plugin test after an edit");
    let target = size(&project.join("target"));

    // The dev loop against a served kernel.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut serve = keel(root)
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
    let dev = keel(&project)
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
    for i in 0..edits {
        let greeting = format!("Hello #{i}");
        edit(&lib, &greeting);
        rounds.push(wait_for(
            &format!("{greeting}, Ann!"),
            Duration::from_secs(600),
        ));
    }
    drop(dev);
    drop(serve);
    rounds.sort();
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!("plugin author's loop (keel built with the bench profile)");
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
