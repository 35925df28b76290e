//! Compiling before any request: at install, in a start-up warm-up, and
//! never twice at once.

use std::sync::Arc;

use keel_core::TenantId;
use keel_host::manifest::{Grants, Manifest};
use keel_host::{Host, HostConfig, Registry};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, PROBE_MANIFEST, call, fixture, limits};

fn allow_any(_: &[Arc<Manifest>]) -> Result<(), String> {
    Ok(())
}

/// A host of another kernel process on the same database, caching in `dir`.
async fn host_in(f: &Fixture, dir: &std::path::Path) -> Host {
    let mut config = HostConfig::new(dir);
    limits(&mut config);
    Host::new(f.db.db.clone(), config).await.unwrap()
}

fn cached_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count()
}

/// Enables the installed probe for `tenant` and touches it once.
async fn first_call(registry: &Registry, tenant: &TenantId) {
    let m = Manifest::from_toml(PROBE_MANIFEST).unwrap();
    registry
        .enable(
            tenant,
            "probe",
            None,
            Grants::all_requested(&m),
            json!({}),
            &allow_any,
        )
        .await
        .unwrap();
    let set = registry.enabled(tenant).await.unwrap();
    call(
        registry.host(),
        set.get("probe").unwrap(),
        "touch",
        json!({"key": "a"}),
    )
    .await
    .unwrap();
}

on_both_backends! {
    async fn installing_compiles_so_a_new_process_serves_the_first_call_without_compiling(kind) {
        let f = Fixture::new(kind).await;
        let cache = tempfile::tempdir().unwrap();
        let installer = host_in(&f, cache.path()).await;
        Registry::new(installer.clone(), f.db.db.clone())
            .install(Manifest::from_toml(PROBE_MANIFEST).unwrap(), &fixture("probe"))
            .await
            .unwrap();
        assert_eq!(installer.compilations(), 1);
        assert_eq!(cached_files(cache.path()), 1, "install left no compiled code");

        // Another process on the same database and cache: nothing to compile.
        let host = host_in(&f, cache.path()).await;
        first_call(&Registry::new(host.clone(), f.db.db.clone()), &f.tenant).await;
        assert_eq!(host.compilations(), 0, "the first call compiled");

        // Installing the same package again compiles nothing either.
        Registry::new(host.clone(), f.db.db.clone())
            .install(Manifest::from_toml(PROBE_MANIFEST).unwrap(), &fixture("probe"))
            .await
            .unwrap();
        assert_eq!(host.compilations(), 0);
    }

    async fn a_warm_up_compiles_every_installed_package_before_any_call(kind) {
        let f = Fixture::new(kind).await;
        let installed_with = tempfile::tempdir().unwrap();
        let installer = Registry::new(host_in(&f, installed_with.path()).await, f.db.db.clone());
        installer
            .install(Manifest::from_toml(PROBE_MANIFEST).unwrap(), &fixture("probe"))
            .await
            .unwrap();
        let mut newer = Manifest::from_toml(PROBE_MANIFEST).unwrap();
        newer.version = "0.2.0".into();
        installer.install(newer, &fixture("probe")).await.unwrap();

        // A new process with an empty cache (a new replica, a new wasmtime).
        let cache = tempfile::tempdir().unwrap();
        let host = host_in(&f, cache.path()).await;
        let registry = Registry::new(host.clone(), f.db.db.clone());
        assert!(!host.warming_up());
        let warm_up = registry.warm_up();
        assert!(host.warming_up(), "not marked as warming up");
        let report = warm_up.run().await;
        assert!(!host.warming_up());
        assert_eq!(report.packages, 2, "{report:?}");
        assert!(report.failed.is_empty(), "{report:?}");
        // Two versions of one component: one compile.
        assert_eq!(report.compiled, 1);
        assert_eq!(host.compilations(), 1);
        assert_eq!(cached_files(cache.path()), 1);

        first_call(&registry, &f.tenant).await;
        assert_eq!(host.compilations(), 1, "the first call compiled");
    }

    async fn a_package_that_cannot_be_prepared_is_reported_and_the_warm_up_ends(kind) {
        let f = Fixture::new(kind).await;
        let registry = f.registry();
        registry
            .install(Manifest::from_toml(PROBE_MANIFEST).unwrap(), &fixture("probe"))
            .await
            .unwrap();
        // The stored component is damaged (a bad restore, say).
        let mut tx = f.db.db.begin().await.unwrap();
        sqlx::query("UPDATE plugins SET component = $1")
            .bind(b"not a component".to_vec())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let cache = tempfile::tempdir().unwrap();
        let host = host_in(&f, cache.path()).await;
        let report = Registry::new(host.clone(), f.db.db.clone()).warm_up().run().await;
        assert_eq!(report.packages, 0);
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert!(report.failed[0].0.starts_with("probe 0.1.0"), "{report:?}");
        assert!(report.failed[0].1.contains("not a valid WebAssembly component"), "{report:?}");
        assert!(!host.warming_up(), "a failed warm-up keeps the kernel unready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_wait_for_one_compile() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let cache = tempfile::tempdir().unwrap();
    let host = host_in(&f, cache.path()).await;
    let wasm = fixture("probe");
    let (a, b, c) = tokio::join!(host.load(&wasm), host.load(&wasm), host.load(&wasm));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
    assert_eq!(host.compilations(), 1);

    // Installed by that host; in another process, a warm-up and a request
    // at once: one compile between them.
    Registry::new(host.clone(), f.db.db.clone())
        .install(Manifest::from_toml(PROBE_MANIFEST).unwrap(), &wasm)
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let host = host_in(&f, other.path()).await;
    let registry = Registry::new(host.clone(), f.db.db.clone());
    let (report, loaded) = tokio::join!(registry.warm_up().run(), host.load(&wasm));
    loaded.unwrap();
    assert_eq!(report.packages, 1, "{report:?}");
    assert_eq!(host.compilations(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_waste_the_compile() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let cache = tempfile::tempdir().unwrap();
    let host = host_in(&f, cache.path()).await;
    let wasm = fixture("probe");
    // A request that times out at once, while the compile it started runs.
    let _gave_up = tokio::time::timeout(std::time::Duration::ZERO, host.load(&wasm)).await;
    host.load(&wasm).await.unwrap();
    assert_eq!(host.compilations(), 1, "compiled twice");
}
