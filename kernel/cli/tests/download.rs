//! `keel download` against a served kernel: the probe plugin (built from
//! the host's fixtures) enabled on a tenant, a real gateway on a loopback
//! port, and the real `keel` binary fetching its `lines` download.

use std::net::SocketAddr;
use std::path::PathBuf;

use keel_core::identity::api_keys;
use keel_core::{Db, DbOptions, tenants};
use keel_gateway::{Kernel, KernelConfig, RunningKernel};
use keel_host::{Grants, Manifest};

mod support;
use support::keel;

const PROBE_MANIFEST: &str = r#"
name = "probe"
version = "0.1.0"
publisher = "Keel tests"
description = "the probe fixture"
wit = "0.2.0"

[[downloads]]
name = "lines"
operation = "lines"
content_type = "text/csv; charset=utf-8"
file_name = "lines.csv"
"#;

/// A kernel serving the probe for tenant `acme`, until it drops.
struct Served {
    addr: SocketAddr,
    key: String,
    dir: tempfile::TempDir,
    /// Stopped before the runtime it runs on goes.
    _kernel: RunningKernel,
    _rt: tokio::runtime::Runtime,
}

fn probe_wasm() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = keel_host::guests::build(
        &root.join("../host/fixtures/Cargo.toml"),
        &root.join("../../target/wasm"),
    )
    .expect("building the host's fixtures");
    std::fs::read(dir.join("probe.wasm")).unwrap()
}

fn serve_probe() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = dir.path().to_owned();
    let (kernel, key) = rt.block_on(async move {
        let url = format!("sqlite://{}", root.join("keel.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .unwrap()
            .with_sealer(keel_core::sealing::Sealer::random());
        db.migrate().await.unwrap();
        let kernel = Kernel::assemble(db.clone(), KernelConfig::new(root.join("cache")))
            .await
            .unwrap();
        let manifest = Manifest::from_toml(PROBE_MANIFEST).unwrap();
        kernel
            .registry()
            .install(manifest, &probe_wasm())
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let tenant = tenants::create(&mut tx, "acme", "Acme").await.unwrap();
        let (_, key) = api_keys::create_owner_key(&mut tx, &tenant.id, "owner", "test")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        kernel
            .enable(
                &tenant.id,
                "probe",
                None,
                Grants::default(),
                serde_json::json!({}),
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (kernel.spawn(listener).unwrap(), key)
    });
    Served {
        addr: kernel.addr(),
        key,
        dir,
        _kernel: kernel,
        _rt: rt,
    }
}

/// Runs `keel download probe <name> --input <input> -o <out>` with the
/// URL and key from the environment.
fn download(s: &Served, name: &str, input: &str, out: &str) -> (bool, String, String) {
    let out = keel(s.dir.path())
        .args(["download", "probe", name, "--input", input, "-o", out])
        .env("KEEL_URL", format!("http://{}", s.addr))
        .env("KEEL_API_KEY", &s.key)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn expected_lines(count: u64) -> String {
    let mut s = String::from("number\n");
    for n in 1..=count {
        s.push_str(&format!("line {n}\n"));
    }
    s
}

#[test]
fn download_streams_a_plugins_file_to_disk_and_sums_it_up() {
    let s = serve_probe();
    let (ok, out, err) = download(
        &s,
        "lines",
        r#"{"count": 2500, "per_chunk": 300}"#,
        "lines.csv",
    );
    assert!(ok, "{err}");
    let written = std::fs::read_to_string(s.dir.path().join("lines.csv")).unwrap();
    assert_eq!(written, expected_lines(2500));
    assert!(!s.dir.path().join("lines.csv.part").exists());
    let bytes = written.len().to_string();
    assert!(
        out.contains(&format!("{bytes} bytes")) && out.contains("2501 lines"),
        "the summary names bytes and lines: {out}"
    );
    // The same with flags instead of the environment.
    let out = keel(s.dir.path())
        .args([
            "download",
            "--url",
            &format!("http://{}", s.addr),
            "--key",
            &s.key,
        ])
        .args([
            "probe",
            "lines",
            "--input",
            r#"{"count": 3, "per_chunk": 2}"#,
        ])
        .args(["--output", "small.csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(s.dir.path().join("small.csv")).unwrap();
    assert_eq!(written, expected_lines(3));
}

#[test]
fn a_refused_or_broken_download_exits_non_zero_and_leaves_no_file() {
    let s = serve_probe();
    let cases = [
        (
            "lines",
            "not json",
            "`input` must be a JSON object (BAD_USER_INPUT, HTTP 400",
        ),
        ("nothing", "{}", "NOT_FOUND, HTTP 404"),
        (
            "lines",
            r#"{"count": 10, "per_chunk": 2, "fail_at": 1}"#,
            "the probe breaks the download on purpose (PROBE_BROKE, HTTP 422",
        ),
        // About 1 MB arrives before the plugin fails: a cut-short transfer.
        (
            "lines",
            r#"{"count": 100000, "per_chunk": 5000, "fail_at": 90001}"#,
            "the transfer was cut short",
        ),
    ];
    for (name, input, needle) in cases {
        let (ok, _, err) = download(&s, name, input, "out.csv");
        assert!(!ok, "{name} {input}: exited 0");
        assert!(err.contains(needle), "{name} {input}: {err}");
        assert!(
            !s.dir.path().join("out.csv").exists(),
            "{name} {input}: a file was left"
        );
        assert!(
            !s.dir.path().join("out.csv.part").exists(),
            "{name} {input}: a part was left"
        );
    }
}
