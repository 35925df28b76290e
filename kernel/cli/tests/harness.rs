//! `keel plugin harness`: its protocol's refusals, and the errors that tell
//! a plugin author what to do. (The fixtures a plugin's tests use —
//! persons, injected events, the clock, the HTTP endpoint — are exercised
//! end to end by `examples/tier-awards`, run in `plugins.rs`.)

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use keel_plugin_test::Harness;
use serde_json::{Value, json};

mod support;

/// A harness of this build's `keel`.
fn start() -> Harness {
    Harness::start_with(env!("CARGO_BIN_EXE_keel")).unwrap()
}

/// Sends raw lines to a harness process and returns its answers: the
/// `ready` line, then one per request line.
fn raw(lines: &[&[u8]]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["plugin", "harness"])
        .env("KEEL_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut read = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let mut answers = vec![read()];
    for l in lines {
        stdin.write_all(l).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        answers.push(read());
    }
    drop(stdin);
    assert!(
        child.wait().unwrap().success(),
        "the harness exits cleanly when stdin closes"
    );
    answers
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or("")
}

#[test]
fn the_harness_says_it_is_ready_and_refuses_bad_requests_without_stopping() {
    let too_long = {
        let mut l = br#"{"op":"events","type":""#.to_vec();
        l.resize(l.len() + (16 << 20) + 1, b'a');
        l.extend_from_slice(br#""}"#);
        l
    };
    // A request of exactly the limit, newline apart, is read whole: it is
    // answered on its own merits and the next request is not swallowed.
    let at_limit = {
        let mut l = br#"{"op":"events","type":""#.to_vec();
        let tail = br#""}"#;
        l.resize((16 << 20) - tail.len(), b'a');
        l.extend_from_slice(tail);
        assert_eq!(l.len(), 16 << 20);
        l
    };
    let answers = raw(&[
        b"not json",
        br#"{"op": "nope"}"#,
        br#"["op"]"#,
        br#"{"op": "call"}"#,
        br#"{"op": "call", "plugin": "ghost", "operation": "x"}"#,
        br#"{"op": "clock", "at": "yesterday"}"#,
        br#"{"op": "clock", "at": "1969-12-31T23:59:59Z"}"#,
        br#"{"op": "person", "identifiers": "x"}"#,
        br#"{"op": "person", "identifiers": [{"kind": "phone"}]}"#,
        br#"{"op": "emit", "producer": "rewards", "type": "bad\u0000type"}"#,
        br#"{"op": "respond", "method": "GET", "path": "no-slash"}"#,
        br#"{"op": "respond", "method": "GET", "path": "/x?y=1"}"#,
        br#"{"op": "respond", "method": "GET", "path": "/x", "status": 1000}"#,
        br#"{"op": "stub", "plugin": "rewards", "operation": "creditPoints"}"#,
        br#"{"op": "stub", "plugin": "rewards", "operation": "x", "output": 1, "error": {}}"#,
        br#"{"op": "stub", "plugin": "rewards", "operation": "x", "error": {"code": "no such"}}"#,
        br#"{"op": "stub", "operation": "x", "output": 1}"#,
        &too_long,
        &at_limit,
        br#"{"op": "events", "type": "a.b"}"#,
    ]);
    let ready = &answers[0]["ready"];
    assert_eq!(ready["tenant"], "test");
    assert_eq!(ready["keel"], env!("CARGO_PKG_VERSION"));
    assert!(
        ready["http"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let expect = [
        ("BAD_REQUEST", "not JSON"),
        ("BAD_REQUEST", "unknown \"nope\""),
        ("BAD_REQUEST", "op: a string is required"),
        ("BAD_REQUEST", "plugin: a string is required"),
        ("NOT_FOUND", "ghost"),
        ("BAD_REQUEST", "not an RFC 3339 time"),
        ("BAD_REQUEST", "1970"),
        ("BAD_REQUEST", "identifiers: a list"),
        ("BAD_REQUEST", "identifiers[0]"),
        ("BAD_USER_INPUT", ""),
        ("BAD_REQUEST", "must start with '/'"),
        ("BAD_REQUEST", "hold no query"),
        ("BAD_REQUEST", "not an HTTP status"),
        ("BAD_REQUEST", "either output or error"),
        ("BAD_REQUEST", "either output or error"),
        ("BAD_REQUEST", "UPPER_SNAKE_CASE"),
        ("BAD_REQUEST", "plugin: a string is required"),
        ("BAD_REQUEST", "over 16777216 bytes"),
    ];
    for (i, (c, m)) in expect.iter().enumerate() {
        let a = &answers[i + 1];
        assert_eq!(code(a), *c, "request {i}: {a}");
        assert!(message(a).contains(m), "request {i}: {a}");
    }
    let at_limit = &answers[expect.len() + 1];
    assert!(!message(at_limit).contains("over"), "{at_limit}");
    // And it still answers: nothing was lost.
    assert_eq!(answers.len(), expect.len() + 3);
    assert_eq!(answers.last().unwrap(), &json!({"ok": []}));
}

#[test]
fn a_folder_that_is_not_a_plugin_is_refused_with_what_to_do() {
    let keel = start();
    let tmp = tempfile::tempdir().unwrap();
    let plugin = |dir: &Path| keel.plugin(dir, json!({})).unwrap_err();

    let err = plugin(&tmp.path().join("missing"));
    assert!(err.message.contains("is not a folder"), "{err}");
    let err = plugin(tmp.path());
    assert!(err.message.contains("no Cargo.toml"), "{err}");
    assert!(err.message.contains("keel plugin new"), "{err}");

    std::fs::write(tmp.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    let err = plugin(tmp.path());
    assert!(err.message.contains("no keel-plugin.toml"), "{err}");

    let manifest = |extra: &str| {
        let text = format!(
            "name = \"x1\"\nversion = \"0.1.0\"\npublisher = \"Me\"\ndescription = \"d\"\n{extra}"
        );
        std::fs::write(tmp.path().join("keel-plugin.toml"), text).unwrap();
    };
    manifest("wit = \"9.9.9\"\n");
    let err = plugin(tmp.path());
    assert!(err.message.contains("keel:plugin@9.9.9"), "{err}");
    assert!(err.message.contains("supports"), "{err}");
    manifest("wit = \"0.2.0\"\n[capabilities]\ncapabilities = [\"teleport\"]\n");
    let err = plugin(tmp.path());
    assert!(err.message.contains("teleport"), "{err}");
    manifest("wit = \"0.2.0\"\n");
    let err = plugin(tmp.path());
    assert!(err.message.contains("crate-type"), "{err}");
}

#[test]
fn plugin_build_and_test_outside_a_plugin_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [["plugin", "build"], ["plugin", "test"]] {
        let (ok, _, err) = support::run(support::keel(tmp.path()).args(cmd));
        assert!(!ok, "{cmd:?}");
        assert!(err.contains("no Cargo.toml"), "{cmd:?}: {err}");
        assert!(err.contains("keel plugin new"), "{cmd:?}: {err}");
    }
    let (ok, _, err) = support::run(support::keel(tmp.path()).args(["plugin", "sdk"]));
    assert!(!ok);
    assert!(err.contains("no Cargo.toml"), "{err}");
}

#[test]
fn a_missing_keel_binary_is_explained() {
    let err = Harness::start_with("/nonexistent/keel").unwrap_err();
    assert_eq!(err.code(), "HARNESS");
    assert!(err.message.contains("KEEL_BIN"), "{err}");
    assert!(err.message.contains("keel plugin test"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_compile_cache_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let harness = || {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["plugin", "harness"])
            .env("KEEL_HARNESS_CACHE", &cache)
            .env("KEEL_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"ready\""));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Writable by others: whoever can write it could plant a key and code.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = harness();
    assert!(log.contains("not private to this user"), "{log}");
    assert!(!cache.join("key").exists());
    // The user's own: the key is made, readable by its owner only.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = harness();
    assert!(!log.contains("not private"), "{log}");
    let mode = std::fs::metadata(cache.join("key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A key others can read is not trusted either.
    std::fs::set_permissions(cache.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = harness();
    assert!(log.contains("not private to this user"), "{log}");
}
