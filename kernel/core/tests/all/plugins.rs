//! The plugin host's store: installed packages, each tenant's enabled
//! plugins and their set version, and the outbox's rows.

use std::time::Duration;

use keel_core::events::{self, NewEvent};
use keel_core::outbox::{self, Settlement};
use keel_core::plugins::{self, Enable, NewPackage};
use keel_core::{Db, TenantId, Timestamp, now, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::json;

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn package<'a>(version: &'a str, component: &'a [u8], hash: &'a str) -> NewPackage<'a> {
    NewPackage {
        name: "rewards",
        version,
        manifest: r#"{"name":"rewards"}"#,
        component,
        hash,
    }
}

async fn store(db: &Db, p: &NewPackage<'_>) -> keel_core::Result<()> {
    let mut tx = db.begin().await?;
    plugins::store_package(&mut tx, p).await?;
    tx.commit().await?;
    Ok(())
}

async fn enable(db: &Db, tenant: &TenantId, version: &str) {
    let config = json!({"budget": 100});
    let mut tx = db.begin().await.unwrap();
    let e = Enable {
        name: "rewards",
        version,
        grants: r#"{"capabilities":["records"]}"#,
        config: &config,
    };
    plugins::enable(&mut tx, tenant, &e).await.unwrap();
    tx.commit().await.unwrap();
}

async fn disable(db: &Db, tenant: &TenantId) -> keel_core::Result<()> {
    let mut tx = db.begin().await?;
    plugins::disable(&mut tx, tenant, "rewards").await?;
    tx.commit().await?;
    Ok(())
}

on_both_backends! {
    async fn a_package_version_keeps_the_content_it_was_first_stored_with(kind) {
        let t = TestDb::of(kind).await.unwrap();
        store(&t.db, &package("1.0.0", b"wasm-1", "h1")).await.unwrap();
        store(&t.db, &package("1.0.0", b"wasm-1", "h1")).await.unwrap();
        let err = store(&t.db, &package("1.0.0", b"wasm-2", "h2")).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        store(&t.db, &package("1.1.0", b"wasm-2", "h2")).await.unwrap();

        let stored = plugins::packages(&t.db).await.unwrap();
        let versions: Vec<(&str, &str)> =
            stored.iter().map(|p| (p.version.as_str(), p.hash.as_str())).collect();
        assert_eq!(versions, [("1.0.0", "h1"), ("1.1.0", "h2")]);
        assert_eq!(stored[0].manifest, r#"{"name":"rewards"}"#, "the manifest comes back as stored");
        assert_eq!(plugins::component(&t.db, "rewards", "1.0.0").await.unwrap(), b"wasm-1");
        let err = plugins::component(&t.db, "rewards", "9.9.9").await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND");

        let mut tx = t.db.begin().await.unwrap();
        assert!(plugins::is_installed(&mut tx, "rewards").await.unwrap());
        assert!(!plugins::is_installed(&mut tx, "codes").await.unwrap());
    }

    async fn every_change_to_a_tenants_plugins_bumps_its_set_version(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let (acme, other) = (tenant(&t.db, "acme").await, tenant(&t.db, "other").await);
        store(&t.db, &package("1.0.0", b"wasm-1", "h1")).await.unwrap();
        store(&t.db, &package("1.1.0", b"wasm-2", "h2")).await.unwrap();
        assert_eq!(plugins::set_version(&t.db, &acme).await.unwrap(), 0);

        enable(&t.db, &acme, "1.0.0").await;
        assert_eq!(plugins::set_version(&t.db, &acme).await.unwrap(), 1);
        let list = plugins::enablements(&t.db, &acme).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].version, "1.0.0");
        assert_eq!(list[0].grants, r#"{"capabilities":["records"]}"#);
        assert_eq!(list[0].config, json!({"budget": 100}));
        assert_eq!(list[0].disabled_at, None);

        enable(&t.db, &acme, "1.1.0").await;
        disable(&t.db, &acme).await.unwrap();
        assert_eq!(plugins::set_version(&t.db, &acme).await.unwrap(), 3);
        let list = plugins::enablements(&t.db, &acme).await.unwrap();
        assert_eq!(list[0].version, "1.1.0");
        assert!(list[0].disabled_at.is_some(), "a disabled plugin keeps its row");

        let err = disable(&t.db, &acme).await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "{err}");
        assert_eq!(plugins::set_version(&t.db, &acme).await.unwrap(), 3, "a refused change counts for nothing");
        enable(&t.db, &acme, "1.1.0").await;
        assert_eq!(plugins::enablements(&t.db, &acme).await.unwrap()[0].disabled_at, None);

        assert_eq!(plugins::set_version(&t.db, &other).await.unwrap(), 0);
        assert!(plugins::enablements(&t.db, &other).await.unwrap().is_empty());
        let err = disable(&t.db, &other).await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "another tenant's plugin is not found");
    }

    async fn an_outbox_row_is_leased_once_and_replays_from_the_dead_letters(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let (acme, other) = (tenant(&t.db, "acme").await, tenant(&t.db, "other").await);
        let mut tx = t.db.begin().await.unwrap();
        let new = NewEvent {
            event_type: "order.paid".into(),
            person_id: None,
            payload: json!({"n": 1}),
            idempotency_key: None,
            occurred_at: None,
        };
        let event = events::append(&mut tx, &acme, new, "test").await.unwrap();
        let at = now();
        outbox::enqueue(&mut tx, &acme, &event.id, "rewards", at).await.unwrap();
        outbox::enqueue(&mut tx, &acme, &event.id, "rewards", at).await.unwrap();
        tx.commit().await.unwrap();

        let lease = Duration::from_secs(60);
        let leased = outbox::lease_due(&t.db, at, lease, 10).await.unwrap();
        assert_eq!(leased.len(), 1, "one row per event and subscriber");
        let d = &leased[0];
        assert_eq!((&d.tenant, d.event_id.as_str(), d.subscriber.as_str(), d.attempts), (&acme, event.id.as_str(), "rewards", 1));
        assert!(outbox::lease_due(&t.db, at, lease, 10).await.unwrap().is_empty(), "a leased row is not due");

        let retry_at = Timestamp(at.0 + 1_000_000);
        outbox::settle(&t.db, &d.id, at, &Settlement::Retry { error: "boom".into(), retry_at }).await.unwrap();
        assert!(outbox::lease_due(&t.db, at, lease, 10).await.unwrap().is_empty(), "a retry waits");
        let again = outbox::lease_due(&t.db, retry_at, lease, 10).await.unwrap();
        assert_eq!(again[0].attempts, 2);

        outbox::settle(&t.db, &d.id, retry_at, &Settlement::Dead { error: "boom again".into() }).await.unwrap();
        let dead = outbox::dead_letters(&t.db, &acme).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_type.as_str(), dead[0].attempts, dead[0].last_error.as_deref()), ("order.paid", 2, Some("boom again")));
        assert!(outbox::dead_letters(&t.db, &other).await.unwrap().is_empty());
        let far = Timestamp(retry_at.0 + 3_600_000_000);
        assert!(outbox::lease_due(&t.db, far, lease, 10).await.unwrap().is_empty(), "a dead letter is not due");

        let err = outbox::replay(&t.db, &other, &d.id, far).await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "another tenant's dead letter is not found");
        outbox::replay(&t.db, &acme, &d.id, far).await.unwrap();
        assert!(outbox::dead_letters(&t.db, &acme).await.unwrap().is_empty());
        let replayed = outbox::lease_due(&t.db, far, lease, 10).await.unwrap();
        assert_eq!(replayed[0].attempts, 1, "fresh attempts");

        outbox::settle(&t.db, &d.id, far, &Settlement::Delivered).await.unwrap();
        let later = Timestamp(far.0 + 3_600_000_000);
        assert!(outbox::lease_due(&t.db, later, lease, 10).await.unwrap().is_empty(), "a delivered row is done");
        let err = outbox::replay(&t.db, &acme, &d.id, later).await.unwrap_err();
        assert_eq!(err.code(), "NOT_FOUND", "only a dead letter replays");
    }
}
