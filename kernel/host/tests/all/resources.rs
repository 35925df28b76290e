//! `[resources]`: a manifest may ask for more memory or a longer deadline
//! than the kernel's defaults, within the operator's maximums; and a full
//! instance pool is a typed `RATE_LIMITED`, not a crash.

use std::sync::Arc;
use std::time::Duration;

use keel_core::Backend;
use keel_host::manifest::{Grants, Manifest};
use keel_host::{Activation, PluginError};
use serde_json::json;

use crate::support::{Fixture, PROBE_MANIFEST, call, fixture, limits};

fn manifest_with(resources: &str) -> Manifest {
    Manifest::from_toml(&format!("{PROBE_MANIFEST}\n[resources]\n{resources}\n")).unwrap()
}

async fn activation(f: &Fixture, manifest: Manifest) -> Arc<Activation> {
    let grants = Grants::all_requested(&manifest);
    Arc::new(Activation {
        tenant: f.tenant.clone(),
        manifest: Arc::new(manifest),
        component: f.host.load(&fixture("probe")).await.unwrap(),
        grants,
        config: json!({}),
    })
}

fn configure(c: &mut keel_host::HostConfig) {
    limits(c);
    c.max_memory_bytes = 64 << 20;
    c.max_deadline = Duration::from_secs(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_gets_the_memory_and_deadline_it_asks_for_within_the_maximums() {
    let f = Fixture::with(Backend::Sqlite, configure).await;
    let act = activation(&f, manifest_with("memory_mib = 48\ndeadline_ms = 700")).await;
    let err = call(&f.host, &act, "hog", json!({})).await.unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { bytes, .. } if bytes == 48 << 20),
        "{err:?}"
    );
    let err = call(&f.host, &act, "forever", json!({})).await.unwrap_err();
    assert!(
        matches!(err, PluginError::Deadline { millis, .. } if millis == 700),
        "{err:?}"
    );
    // Asking for less than the defaults gives the defaults.
    let act = activation(&f, manifest_with("memory_mib = 1\ndeadline_ms = 1")).await;
    let err = call(&f.host, &act, "hog", json!({})).await.unwrap_err();
    assert!(
        matches!(err, PluginError::MemoryLimit { bytes, .. } if bytes == 32 << 20),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_asking_beyond_the_maximums_is_refused_at_install() {
    let f = Fixture::with(Backend::Sqlite, configure).await;
    let registry = f.registry();
    for (resources, field) in [
        ("memory_mib = 65", "resources.memory_mib"),
        ("deadline_ms = 2001", "resources.deadline_ms"),
    ] {
        let err = registry
            .install(manifest_with(resources), &fixture("probe"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{resources}: {err:?}");
        assert!(err.to_string().contains(field), "{resources}: {err}");
    }
    assert!(registry.packages().await.unwrap().is_empty());
    // Out of any kernel's range: refused when the manifest is read.
    let err = Manifest::from_toml(&format!("{PROBE_MANIFEST}\n[resources]\nmemory_mib = 0\n"))
        .unwrap_err();
    assert!(err.contains("resources.memory_mib"), "{err}");
    let err =
        Manifest::from_toml(&format!("{PROBE_MANIFEST}\n[resources]\ngpu = 1\n")).unwrap_err();
    assert!(err.contains("gpu"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_instance_pool_is_rate_limited() {
    let f = Fixture::with(Backend::Sqlite, |c| {
        limits(c);
        c.max_instances = 1;
        c.deadline = Duration::from_secs(3);
    })
    .await;
    let act = f.probe().await;
    // The looping call runs on a thread of its own (a plugin's loop holds
    // its thread until the deadline) and holds the pool's one instance.
    let busy = {
        let (host, act) = (f.host.clone(), act.clone());
        tokio::spawn(async move { call(&host, &act, "forever", json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = call(&f.host, &act, "caller", json!({})).await;
    assert_eq!(busy.await.unwrap().unwrap_err().code(), "PLUGIN_TIMEOUT");
    let err = second.unwrap_err();
    assert!(matches!(err, PluginError::Busy), "{err:?}");
    assert_eq!(err.code(), "RATE_LIMITED");
}
