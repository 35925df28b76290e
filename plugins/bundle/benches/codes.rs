//! The codes plugin, measured in one run:
//!
//! - codes derived per second, in the plugin (the print-file download over
//!   HTTP) and natively (the same derivation and CSV rows, in this
//!   process), and their ratio. The plugin derives many codes at a time
//!   and has the kernel hash them (`keel:plugin/crypto`); natively both the
//!   one-at-a-time and that batched derivation are timed;
//! - a 1,000,000-code print file: time and the kernel process's peak
//!   memory growth while streaming it;
//! - verified scans per second over HTTP with p50/p99 (first scans, then
//!   repeat scans) against the database's own rate for a transaction of
//!   three inserts (plain sqlx, same pools), on SQLite and, with KEEL_TEST_POSTGRES_URL, PostgreSQL.
//!
//! `cargo bench -p keel-plugins --bench codes` (CODES=… sets the batch size).

#[path = "../tests/all/support.rs"]
#[allow(dead_code, reason = "the tests' support module, shared")]
mod support;
#[path = "timing/mod.rs"]
mod timing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_codes_core::{BatchCodec, CodeFormat, Key, Software};
use keel_core::Backend;
use keel_gateway::GatewayConfig;
use serde_json::json;
use support::{Kernel, ok};

const SCAN: &str = "mutation($c: String!) { scan(code: $c) { verdict } }";

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The print file's rows, derived natively with the same code and layout.
fn native_export(n: u32) -> (Duration, usize) {
    let codec = BatchCodec::new(&Key::from_bytes([1; 32]), 1, Key::from_bytes([2; 32]));
    let base = b"http://127.0.0.1:8080/t/acme/p/codes/c/";
    let start = Instant::now();
    let mut bytes = 0;
    let mut chunk = Vec::with_capacity(800 * 1024);
    for serial in 1..=n {
        chunk.extend_from_slice(serial.to_string().as_bytes());
        chunk.push(b',');
        let at = chunk.len();
        codec.push_code(serial, &mut chunk);
        let end = chunk.len();
        chunk.push(b',');
        chunk.extend_from_slice(base);
        chunk.extend_from_within(at..end);
        chunk.push(b'\n');
        if chunk.len() >= 768 * 1024 {
            bytes += chunk.len();
            chunk.clear();
        }
    }
    bytes += chunk.len();
    (start.elapsed(), bytes)
}

/// The same rows with the plugin's derivation (`codes_each`, many codes at
/// a time, chunks of the plugin's size) and this crate's own hashing.
fn native_batched_export(n: u32) -> Duration {
    let codec = BatchCodec::new(&Key::from_bytes([1; 32]), 1, Key::from_bytes([2; 32]));
    let base = b"http://127.0.0.1:8080/t/acme/p/codes/c/";
    let start = Instant::now();
    let mut chunk = Vec::with_capacity(800 * 1024);
    let mut first = 1u32;
    while first <= n {
        let count = 7_000.min((n - first + 1) as usize);
        let codes = codec
            .codes_each(CodeFormat::Default, first, count, &mut Software)
            .unwrap();
        for (serial, code) in (first..).zip(codes.chunks_exact(CodeFormat::Default.code_len())) {
            chunk.extend_from_slice(serial.to_string().as_bytes());
            chunk.push(b',');
            chunk.extend_from_slice(code);
            chunk.push(b',');
            chunk.extend_from_slice(base);
            chunk.extend_from_slice(code);
            chunk.push(b'\n');
        }
        std::hint::black_box(&chunk);
        chunk.clear();
        first += count as u32;
    }
    start.elapsed()
}

async fn run(kind: Backend, n: u32) {
    let config = GatewayConfig {
        public_calls_per_ip_per_minute: 10_000_000,
        request_timeout: Duration::from_secs(600),
        ..GatewayConfig::default()
    };
    let k = Arc::new(Kernel::start_with(kind, config).await);
    let b = k.brand("acme", json!({})).await;
    ok(&k
        .gql(
            &b.owner,
            "mutation { createCodeProduct(sku: \"S\", name: \"Bench\") { sku } }",
            json!({}),
        )
        .await);
    let r = k.gql(&b.owner, "mutation($q: Int!) { issueCodeBatch(product: \"S\", lot: \"L\", quantity: $q) { id } }", json!({"q": n})).await;
    let batch = ok(&r)["issueCodeBatch"]["id"].as_str().unwrap().to_owned();
    println!("\n== {kind:?} ==");

    // The print file, streamed and counted, never kept.
    let base_rss = rss_kib("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let mut resp = k
        .http
        .get(k.url("/files/codes/print-file"))
        .bearer_auth(&b.owner)
        .query(&[("input", json!({"batch": batch}).to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = resp.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&c| c == b'\n').count();
    }
    let plugin = start.elapsed();
    let peak = rss_kib("VmHWM:");
    assert_eq!(lines, n as usize + 1);
    let (native, native_bytes) = native_export(n);
    let batched = native_batched_export(n);
    println!(
        "print file, {n} codes: plugin over HTTP {:.2} s ({:.0} codes/s, {:.1} MB), native {:.2} s ({:.0} codes/s, {:.1} MB): plugin/native time {:.2}x",
        plugin.as_secs_f64(),
        n as f64 / plugin.as_secs_f64(),
        bytes as f64 / 1e6,
        native.as_secs_f64(),
        n as f64 / native.as_secs_f64(),
        native_bytes as f64 / 1e6,
        plugin.as_secs_f64() / native.as_secs_f64(),
    );
    println!(
        "print file, {n} codes, native with the plugin's batched derivation: {:.2} s ({:.0} codes/s): plugin/native time {:.2}x",
        batched.as_secs_f64(),
        n as f64 / batched.as_secs_f64(),
        plugin.as_secs_f64() / batched.as_secs_f64(),
    );
    println!(
        "peak memory while exporting: {:.1} MB above the {:.1} MB before (the file is {:.1} MB)",
        peak.saturating_sub(base_rss) as f64 / 1024.0,
        base_rss as f64 / 1024.0,
        bytes as f64 / 1e6
    );

    // Scans: activate, take codes from the print file's first rows.
    ok(&k
        .gql(
            &b.owner,
            "mutation($b: String!) { activateCodes(batch: $b) { id } }",
            json!({"b": batch}),
        )
        .await);
    let scans_n = std::env::var("SCANS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000u32);
    let (_, csv) = k
        .download(
            &b.owner,
            "/files/codes/print-file",
            json!({"batch": batch, "to": scans_n}),
        )
        .await;
    let codes: Arc<Vec<String>> = Arc::new(
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_owned())
            .collect(),
    );
    let clients = timing::clients();
    for what in ["first scans", "repeat scans"] {
        let (k, codes2, slug) = (k.clone(), codes.clone(), b.slug.clone());
        let s = timing::measure(codes.len(), clients, move |i| {
            let (k, codes, slug) = (k.clone(), codes2.clone(), slug.clone());
            async move {
                let r = k.public(&slug, SCAN, json!({"c": codes[i]})).await;
                let verdict = ok(&r)["scan"]["verdict"].as_str().unwrap().to_owned();
                assert!(verdict.starts_with("GENUINE"), "{r}");
            }
        })
        .await;
        println!(
            "{what}, {} codes, {clients} clients: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            codes.len(),
            s.per_sec,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3
        );
    }
    let db = timing::limit::transactions(
        &k.db,
        codes.len(),
        clients,
        timing::limit::Hot::None,
        "scan",
    )
    .await;
    println!(
        "database: 3 inserts (sqlx, a scan's shape), {clients} clients: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        db.per_sec,
        db.p50.as_secs_f64() * 1e3,
        db.p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let n: u32 = std::env::var("CODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(Backend::Sqlite, n).await;
        if keel_testkit::postgres_url().is_some() {
            run(Backend::Postgres, n).await;
        }
    });
}
