//! Events reach subscribers: sync ones inside the emitting transaction,
//! async ones through the outbox, at least once, with retries and dead
//! letters.

use std::sync::Arc;
use std::time::Duration;

use keel_core::counters;
use keel_host::manifest::{DeliveryMode, Subscription};
use keel_host::outbox::{self, Dispatcher, DispatcherConfig};
use keel_host::{Activation, CallContext, Registry, TenantPlugins};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::Fixture;

async fn listener(f: &Fixture, name: &str, mode: DeliveryMode) -> Arc<Activation> {
    let base = f.activation(&f.tenant, name, None).await;
    let mut manifest = (*base.manifest).clone();
    manifest.events.subscribes = vec![Subscription {
        event_type: "probe.touched".into(),
        mode,
    }];
    Arc::new(Activation {
        manifest: Arc::new(manifest),
        ..base.clone_with_config(json!({}))
    })
}

async fn emitter(f: &Fixture) -> Arc<Activation> {
    let base = f.activation(&f.tenant, "emitter", None).await;
    let mut manifest = (*base.manifest).clone();
    manifest.events.subscribes.clear();
    Arc::new(Activation {
        manifest: Arc::new(manifest),
        ..base.clone_with_config(json!({}))
    })
}

fn ctx(plugins: &Arc<TenantPlugins>) -> CallContext {
    CallContext {
        request_id: "t".into(),
        plugins: Some(plugins.clone()),
        ..Default::default()
    }
}

async fn touch(
    f: &Fixture,
    act: &Arc<Activation>,
    plugins: &Arc<TenantPlugins>,
    key: &str,
) -> keel_host::Result<String> {
    f.host
        .call_operation(act, "touch", &json!({"key": key}).to_string(), ctx(plugins))
        .await
}

async fn seen(f: &Fixture, plugin: &str, key: &str) -> i64 {
    counters::get(&f.db.db, &f.tenant, plugin, &format!("seen:{key}"))
        .await
        .unwrap()
}

fn dispatcher(f: &Fixture, registry: Registry, max_attempts: i64) -> Dispatcher {
    let config = DispatcherConfig {
        backoff: Duration::ZERO,
        max_attempts,
        ..Default::default()
    };
    Dispatcher::new(f.db.db.clone(), registry, config)
}

on_both_backends! {
    async fn a_sync_subscriber_runs_inside_the_emitting_transaction(kind) {
        let f = Fixture::new(kind).await;
        let (emitter, listener) = (emitter(&f).await, listener(&f, "listener", DeliveryMode::Sync).await);
        let plugins = Arc::new(TenantPlugins { version: 1, plugins: vec![emitter.clone(), listener.clone()] });
        touch(&f, &emitter, &plugins, "k").await.unwrap();
        assert_eq!(seen(&f, "listener", "k").await, 1, "delivered with the emitter's commit");
        // A failing sync subscriber fails the emit, and the emitter's call.
        let err = touch(&f, &emitter, &plugins, "gated-1").await.unwrap_err();
        assert_eq!(err.code(), "SUBSCRIBER_FAILED", "{err:?}");
        assert!(err.to_string().contains("GATE_CLOSED"), "{err}");
        assert_eq!(counters::get(&f.db.db, &f.tenant, "emitter", "touch:gated-1").await.unwrap(), 0, "the emitter's write stayed");
        // Opening the gate (a write of the listener's own) lets it through.
        f.host.call_operation(&listener, "put", &json!({"key": "gate", "data": {}}).to_string(), ctx(&plugins)).await.unwrap();
        touch(&f, &emitter, &plugins, "gated-1").await.unwrap();
        assert_eq!(seen(&f, "listener", "gated-1").await, 1);
    }

    async fn an_async_subscriber_that_fails_gets_the_event_again_until_it_succeeds(kind) {
        let f = Fixture::new(kind).await;
        let (emitter, listener) = (emitter(&f).await, listener(&f, "listener", DeliveryMode::Async).await);
        let plugins = Arc::new(TenantPlugins { version: 1, plugins: vec![emitter.clone(), listener.clone()] });
        // The dispatcher reads the tenant's plugins from the registry.
        let direct = dispatcher(&f, registry_with(&f, &plugins).await, 5);
        touch(&f, &emitter, &plugins, "gated-2").await.unwrap();
        assert_eq!(seen(&f, "listener", "gated-2").await, 0, "async delivery waits for the dispatcher");
        assert_eq!(direct.deliver_due().await.unwrap(), 1);
        assert_eq!(seen(&f, "listener", "gated-2").await, 0, "the gate is closed: not delivered");
        f.host.call_operation(&listener, "put", &json!({"key": "gate", "data": {}}).to_string(), ctx(&plugins)).await.unwrap();
        assert_eq!(direct.deliver_due().await.unwrap(), 1);
        assert_eq!(seen(&f, "listener", "gated-2").await, 1, "delivered on retry");
        assert_eq!(direct.deliver_due().await.unwrap(), 0, "delivered rows are done");
    }
}

/// A registry whose view of the tenant is exactly `plugins`: installs the
/// probe under each name and enables it with the same manifest.
async fn registry_with(f: &Fixture, plugins: &Arc<TenantPlugins>) -> Registry {
    let registry = f.registry();
    let mut claimed: Vec<String> = Vec::new();
    for act in &plugins.plugins {
        // Event types have one producer: the first copy of the probe owns
        // its types in the registry (the calls here run on `plugins`).
        let mut manifest = (*act.manifest).clone();
        manifest.events.emits.retain(|t| !claimed.contains(t));
        let emits = manifest.events.emits.clone();
        manifest.events.schemas.retain(|t, _| emits.contains(t));
        claimed.extend(manifest.events.emits.iter().cloned());
        registry
            .install(manifest, &crate::support::fixture("probe"))
            .await
            .unwrap();
        let allow = |_: &[Arc<keel_host::Manifest>]| Ok(());
        registry
            .enable(
                &f.tenant,
                &act.manifest.name,
                None,
                act.grants.clone(),
                json!({}),
                &allow,
            )
            .await
            .unwrap();
    }
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_that_keeps_failing_becomes_a_dead_letter_that_can_be_replayed() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let (emitter, listener) = (
        emitter(&f).await,
        listener(&f, "listener", DeliveryMode::Async).await,
    );
    let plugins = Arc::new(TenantPlugins {
        version: 1,
        plugins: vec![emitter.clone(), listener.clone()],
    });
    let d = dispatcher(&f, registry_with(&f, &plugins).await, 2);
    touch(&f, &emitter, &plugins, "gated-3").await.unwrap();
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    assert_eq!(
        d.deliver_due().await.unwrap(),
        0,
        "dead letters are not retried"
    );
    let dead = outbox::dead_letters(&f.db.db, &f.tenant).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subscriber, "listener");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("GATE_CLOSED"),
        "{:?}",
        dead[0]
    );
    f.host
        .call_operation(
            &listener,
            "put",
            &json!({"key": "gate", "data": {}}).to_string(),
            ctx(&plugins),
        )
        .await
        .unwrap();
    outbox::replay(&f.db.db, &f.tenant, &dead[0].id)
        .await
        .unwrap();
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    assert_eq!(seen(&f, "listener", "gated-3").await, 1);
    assert!(
        outbox::dead_letters(&f.db.db, &f.tenant)
            .await
            .unwrap()
            .is_empty()
    );
    let err = outbox::replay(&f.db.db, &f.tenant, "nope")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
}
