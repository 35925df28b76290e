use std::sync::Arc;

use keel_core::counters::{self, Add, Outcome};
use keel_core::{Backend, Db, TenantId, tenants};
use keel_testkit::{TestDb, on_both_backends};

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn add(key: &str, delta: i64, max: i64) -> Add<'_> {
    Add {
        namespace: "test",
        key,
        delta,
        min: 0,
        max,
        idempotency_key: None,
    }
}

/// 1,000 increments from many tasks spread over two independent handles
/// (two "replicas"), against a limit of 100.
async fn race(kind: Backend) -> (usize, usize, i64) {
    let t = TestDb::of(kind).await.unwrap();
    let second = t.another_process().await;
    let tenant = Arc::new(tenant(&t.db, "acme").await);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let db = if i % 2 == 0 {
            t.db.clone()
        } else {
            second.clone()
        };
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            counters::add_now(&db, &tenant, add("stock", 1, 100)).await
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Outcome::Applied(_) => ok += 1,
            Outcome::LimitReached(v) => {
                assert!(v <= 100);
                limited += 1
            }
        }
    }
    let value = counters::get(&t.db, &tenant, "test", "stock")
        .await
        .unwrap();
    (ok, limited, value)
}

on_both_backends! {
    async fn exactly_the_limit_succeeds_among_1000_concurrent_increments_from_two_processes(kind) {
        let (ok, limited, value) = race(kind).await;
        assert_eq!(ok, 100);
        assert_eq!(limited, 900);
        assert_eq!(value, 100);
    }

    async fn an_add_that_would_cross_a_limit_changes_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        assert_eq!(counters::add_now(&t.db, &tenant, add("budget", 70, 100)).await.unwrap(), Outcome::Applied(70));
        assert_eq!(counters::add_now(&t.db, &tenant, add("budget", 31, 100)).await.unwrap(), Outcome::LimitReached(70));
        assert_eq!(counters::add_now(&t.db, &tenant, add("budget", 30, 100)).await.unwrap(), Outcome::Applied(100));
        // Going down is bounded by min.
        assert_eq!(counters::add_now(&t.db, &tenant, add("budget", -101, 100)).await.unwrap(), Outcome::LimitReached(100));
        assert_eq!(counters::add_now(&t.db, &tenant, add("budget", -100, 100)).await.unwrap(), Outcome::Applied(0));
    }

    async fn a_counter_starts_at_zero_and_is_created_only_within_its_limits(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        // Out of range from zero, in either direction: refused, nothing made.
        assert_eq!(counters::add_now(&t.db, &tenant, add("fresh", -1, 10)).await.unwrap(), Outcome::LimitReached(0));
        assert_eq!(counters::add_now(&t.db, &tenant, add("fresh", 11, 10)).await.unwrap(), Outcome::LimitReached(0));
        assert_eq!(counters::get(&t.db, &tenant, "test", "fresh").await.unwrap(), 0);
        assert_eq!(counters::add_now(&t.db, &tenant, add("fresh", 3, 10)).await.unwrap(), Outcome::Applied(3));
        // A step outside [min, max] on its own still applies when the
        // result is inside (spending 2 of 3 points).
        assert_eq!(counters::add_now(&t.db, &tenant, add("fresh", -2, 10)).await.unwrap(), Outcome::Applied(1));
        assert_eq!(counters::add_now(&t.db, &tenant, add("fresh", -2, 10)).await.unwrap(), Outcome::LimitReached(1));
        let wide = Add { min: -5, ..add("fresh", -6, 10) };
        assert_eq!(counters::add_now(&t.db, &tenant, wide).await.unwrap(), Outcome::Applied(-5));
    }

    async fn a_retried_add_with_the_same_idempotency_key_applies_once(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let a = || Add { idempotency_key: Some("claim-1"), ..add("points", 5, 1000) };
        assert_eq!(counters::add_now(&t.db, &tenant, a()).await.unwrap(), Outcome::Applied(5));
        assert_eq!(counters::add_now(&t.db, &tenant, a()).await.unwrap(), Outcome::Applied(5));
        assert_eq!(counters::get(&t.db, &tenant, "test", "points").await.unwrap(), 5);
        let other = Add { idempotency_key: Some("claim-1"), ..add("points", 6, 1000) };
        let err = counters::add_now(&t.db, &tenant, other).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
    }

    async fn concurrent_retries_with_one_idempotency_key_apply_once(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let second = t.another_process().await;
        let tenant = Arc::new(tenant(&t.db, "acme").await);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let db = if i % 2 == 0 { t.db.clone() } else { second.clone() };
            let tenant = tenant.clone();
            tasks.push(tokio::spawn(async move {
                let a = Add { idempotency_key: Some("same"), ..add("points", 7, 1000) };
                counters::add_now(&db, &tenant, a).await
            }));
        }
        for task in tasks {
            // Each call either sees the first outcome or is told to retry.
            match task.await.unwrap() {
                Ok(o) => assert_eq!(o, Outcome::Applied(7)),
                Err(e) => assert_eq!(e.code(), "CONFLICT", "{e}"),
            }
        }
        assert_eq!(counters::get(&t.db, &tenant, "test", "points").await.unwrap(), 7);
    }

    async fn counters_of_one_tenant_are_invisible_to_another(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let a = tenant(&t.db, "tenant-a").await;
        let b = tenant(&t.db, "tenant-b").await;
        counters::add_now(&t.db, &a, add("stock", 3, 10)).await.unwrap();
        assert_eq!(counters::get(&t.db, &b, "test", "stock").await.unwrap(), 0);
        assert_eq!(counters::add_now(&t.db, &b, add("stock", 10, 10)).await.unwrap(), Outcome::Applied(10));
        assert_eq!(counters::get(&t.db, &a, "test", "stock").await.unwrap(), 3);
    }

    async fn bad_counter_input_is_refused_with_the_field_named(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let cases = [
            (Add { min: 10, max: 5, ..add("k", 1, 5) }, "min"),
            (add("", 1, 5), "key"),
            (Add { delta: i64::MAX, ..add("k", 1, 5) }, "delta"),
            (Add { max: i64::MAX, ..add("k", 1, 5) }, "min"),
            (Add { idempotency_key: Some(""), ..add("k", 1, 5) }, "idempotencyKey"),
        ];
        for (a, field) in cases {
            match counters::add_now(&t.db, &tenant, a).await {
                Err(keel_core::Error::BadInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected BadInput on {field}, got {other:?}"),
            }
        }
        assert_eq!(counters::get(&t.db, &tenant, "test", "k").await.unwrap(), 0);
    }
}
