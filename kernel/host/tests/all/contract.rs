//! The contract: versions, loading, caching, the calls and their context.

use keel_core::Backend;
use keel_host::{Host, HostConfig, PluginError};
use serde_json::json;

use crate::support::{Fixture, call, fixture};

#[tokio::test]
async fn refuses_a_plugin_built_for_an_unsupported_wit_version_naming_the_supported_ones() {
    let f = Fixture::new(Backend::Sqlite).await;
    let err = f.host.load(&fixture("future")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PluginError::Incompatible(_)), "{err:?}");
    assert!(text.contains("keel:plugin@0.3.0"), "{text}");
    for supported in keel_host::SUPPORTED_WIT_VERSIONS {
        assert!(text.contains(&format!("keel:plugin@{supported}")), "{text}");
    }
}

#[tokio::test]
async fn refuses_bytes_that_are_not_a_component() {
    let f = Fixture::new(Backend::Sqlite).await;
    for (bytes, needle) in [
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        (
            b"definitely not wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
    ] {
        let err = f.host.load(&bytes).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(err.code(), "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn compiled_code_is_cached_on_disk_and_a_tampered_cache_is_not_trusted() {
    let f = Fixture::new(Backend::Sqlite).await;
    let cache = tempfile::tempdir().unwrap();
    let host = Host::new(f.db.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    host.load(&fixture("probe")).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let code = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a compiled file")
        .clone();
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "mac"))
    );

    // A second process on the same database loads from the cache.
    let again = Host::new(f.db.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    let modified = std::fs::metadata(&code).unwrap().modified().unwrap();
    again.load(&fixture("probe")).await.unwrap();
    assert_eq!(
        std::fs::metadata(&code).unwrap().modified().unwrap(),
        modified,
        "recompiled instead of loading"
    );

    // Tampered code fails its MAC: it is recompiled, never run.
    std::fs::write(&code, b"tampered").unwrap();
    let third = Host::new(f.db.db.clone(), HostConfig::new(cache.path()))
        .await
        .unwrap();
    let loaded = third.load(&fixture("probe")).await.unwrap();
    assert_eq!(loaded.wit_version, "0.2.0");
    assert_ne!(std::fs::read(&code).unwrap(), b"tampered");
}

#[tokio::test]
async fn an_operation_gets_its_input_and_the_callers_context() {
    let f = Fixture::new(Backend::Sqlite).await;
    let act = f.probe().await;
    let out = call(&f.host, &act, "caller", json!({})).await.unwrap();
    assert_eq!(
        out,
        json!({"caller": "key:test", "client": null, "request": "test-request"})
    );
    let err = call(&f.host, &act, "no-such-op", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let err = call(&f.host, &act, "big", json!({"bytes": "many"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_plugin_reads_back_its_writes_and_queries_by_indexed_fields() {
    let f = Fixture::new(Backend::Sqlite).await;
    let act = f.probe().await;
    for (k, color) in [("a", "red"), ("b", "blue"), ("c", "red")] {
        call(
            &f.host,
            &act,
            "put",
            json!({"key": k, "data": {"color": color}}),
        )
        .await
        .unwrap();
    }
    let touched = call(&f.host, &act, "touch", json!({"key": "a"}))
        .await
        .unwrap();
    assert_eq!(touched, json!({"found": true, "count": 1}));
    let touched = call(&f.host, &act, "touch", json!({"key": "zzz"}))
        .await
        .unwrap();
    assert_eq!(touched, json!({"found": false, "count": 1}));
    let mut c = f.db.db.reader().acquire().await.unwrap();
    let (reds, more) = keel_core::records::query_indexed(
        &mut c, &f.tenant, "probe", "items", "color", "red", None, 10,
    )
    .await
    .unwrap();
    assert_eq!(
        reds.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert!(!more);
}

#[tokio::test]
async fn enabling_runs_the_plugins_check_of_its_config() {
    let f = Fixture::new(Backend::Sqlite).await;
    let act = f.probe().await;
    f.host.on_enable(&act, "r").await.unwrap();
    let mut refusing = (*act).clone_with_config(json!({"refuse": true}));
    refusing.tenant = f.tenant.clone();
    let err = f
        .host
        .on_enable(&std::sync::Arc::new(refusing), "r")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_NOW");
}

#[tokio::test]
async fn outbound_http_reaches_only_allowed_hosts() {
    let f = Fixture::new(Backend::Sqlite).await;
    let act = f.probe().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
            .await
            .unwrap();
    });
    let out = call(
        &f.host,
        &act,
        "call",
        json!({"capability": "http", "arg": format!("http://{addr}/ping")}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"status": 200, "body": "hello"}));
    let err = call(
        &f.host,
        &act,
        "call",
        json!({"capability": "http", "arg": "http://localhost:9/"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    assert!(err.to_string().contains("localhost"), "{err}");
}
