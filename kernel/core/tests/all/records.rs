use keel_core::records::{self, Expect, Location, Record};
use keel_core::{Db, Error, Result, TenantId, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::{Value, json};

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn at<'a>(collection: &'a str, key: &'a str) -> Location<'a> {
    Location {
        namespace: "shop",
        collection,
        key,
    }
}

/// One `put` in a transaction of its own, committed whether or not the put
/// succeeds: a refused write must not have written anything.
async fn put(
    db: &Db,
    tenant: &TenantId,
    loc: Location<'_>,
    data: Value,
    expect: Expect,
) -> Result<Record> {
    let mut tx = db.begin().await.unwrap();
    let r = records::put(&mut tx, tenant, loc, &data, expect).await;
    tx.commit().await.unwrap();
    r
}

async fn delete(
    db: &Db,
    tenant: &TenantId,
    loc: Location<'_>,
    expect_version: Option<i64>,
) -> Result<bool> {
    let mut tx = db.begin().await.unwrap();
    let r = records::delete(&mut tx, tenant, loc, expect_version).await;
    tx.commit().await.unwrap();
    r
}

async fn get(db: &Db, tenant: &TenantId, loc: Location<'_>) -> Option<Record> {
    let mut c = db.reader().acquire().await.unwrap();
    records::get(&mut c, tenant, loc).await.unwrap()
}

async fn list(
    db: &Db,
    tenant: &TenantId,
    namespace: &str,
    collection: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Record>, bool)> {
    let mut c = db.reader().acquire().await.unwrap();
    records::list(&mut c, tenant, namespace, collection, after, limit).await
}

fn keys(page: &[Record]) -> Vec<&str> {
    page.iter().map(|r| r.key.as_str()).collect()
}

fn bad_field<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::BadInput { field, .. }) => field,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

on_both_backends! {
    async fn creating_a_key_that_already_exists_is_a_conflict_that_leaves_the_record_unchanged(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let first = put(&t.db, &tenant, at("orders", "o-1"), json!({"total": 10}), Expect::Absent).await.unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(first.data, json!({"total": 10}));
        assert_eq!((first.collection.as_str(), first.key.as_str()), ("orders", "o-1"));
        assert_eq!(first.created_at, first.updated_at);

        let err = put(&t.db, &tenant, at("orders", "o-1"), json!({"total": 99}), Expect::Absent).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");

        let stored = get(&t.db, &tenant, at("orders", "o-1")).await.unwrap();
        assert_eq!(stored, first);
    }

    async fn an_update_at_the_current_version_bumps_it_and_a_stale_version_is_a_conflict(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let v1 = put(&t.db, &tenant, at("orders", "o-1"), json!({"status": "new"}), Expect::Absent).await.unwrap();
        let v2 = put(&t.db, &tenant, at("orders", "o-1"), json!({"status": "paid"}), Expect::Version(1)).await.unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.data, json!({"status": "paid"}));
        assert_eq!(v2.created_at, v1.created_at);
        assert!(v2.updated_at >= v1.updated_at);

        // A writer still holding version 1 loses, and changes nothing.
        let err = put(&t.db, &tenant, at("orders", "o-1"), json!({"status": "cancelled"}), Expect::Version(1)).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        // So does one expecting a version from the future.
        let err = put(&t.db, &tenant, at("orders", "o-1"), json!({"status": "cancelled"}), Expect::Version(3)).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        assert_eq!(get(&t.db, &tenant, at("orders", "o-1")).await.unwrap(), v2);

        // An update of a record that does not exist creates nothing.
        let err = put(&t.db, &tenant, at("orders", "o-2"), json!({"status": "new"}), Expect::Version(1)).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        assert_eq!(get(&t.db, &tenant, at("orders", "o-2")).await, None);
    }

    async fn a_write_expecting_anything_creates_then_overwrites(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let created = put(&t.db, &tenant, at("carts", "c-1"), json!({"items": 1}), Expect::Any).await.unwrap();
        assert_eq!(created.version, 1);
        let overwritten = put(&t.db, &tenant, at("carts", "c-1"), json!({"items": 2}), Expect::Any).await.unwrap();
        assert_eq!(overwritten.version, 2);
        assert_eq!(overwritten.data, json!({"items": 2}));
        assert_eq!(overwritten.created_at, created.created_at);
        assert_eq!(get(&t.db, &tenant, at("carts", "c-1")).await.unwrap(), overwritten);
        // An overwrite replaces the object; it does not merge into it.
        let replaced = put(&t.db, &tenant, at("carts", "c-1"), json!({"owner": "ann"}), Expect::Any).await.unwrap();
        assert_eq!(replaced.version, 3);
        assert_eq!(replaced.data, json!({"owner": "ann"}));
    }

    async fn a_delete_at_the_wrong_version_is_a_conflict_and_a_delete_of_a_missing_key_deletes_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        put(&t.db, &tenant, at("orders", "o-1"), json!({"n": 1}), Expect::Absent).await.unwrap();
        let v2 = put(&t.db, &tenant, at("orders", "o-1"), json!({"n": 2}), Expect::Version(1)).await.unwrap();

        let err = delete(&t.db, &tenant, at("orders", "o-1"), Some(1)).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        assert_eq!(get(&t.db, &tenant, at("orders", "o-1")).await.unwrap(), v2);

        assert!(delete(&t.db, &tenant, at("orders", "o-1"), Some(2)).await.unwrap());
        assert_eq!(get(&t.db, &tenant, at("orders", "o-1")).await, None);

        // Missing keys: nothing to delete, with or without an expected version.
        assert!(!delete(&t.db, &tenant, at("orders", "o-1"), None).await.unwrap());
        assert!(!delete(&t.db, &tenant, at("orders", "o-1"), Some(2)).await.unwrap());
        assert!(!delete(&t.db, &tenant, at("orders", "never"), None).await.unwrap());

        // Without an expected version any version goes.
        put(&t.db, &tenant, at("orders", "o-3"), json!({}), Expect::Any).await.unwrap();
        put(&t.db, &tenant, at("orders", "o-3"), json!({}), Expect::Any).await.unwrap();
        assert!(delete(&t.db, &tenant, at("orders", "o-3"), None).await.unwrap());
        assert_eq!(get(&t.db, &tenant, at("orders", "o-3")).await, None);
    }

    async fn a_collection_lists_in_key_order_one_page_at_a_time(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        for k in ["d", "b", "e", "a", "c"] {
            put(&t.db, &tenant, at("orders", k), json!({"k": k}), Expect::Absent).await.unwrap();
        }
        // Another collection of the same namespace stays out of the listing.
        put(&t.db, &tenant, at("carts", "b2"), json!({}), Expect::Absent).await.unwrap();

        let (page, more) = list(&t.db, &tenant, "shop", "orders", None, 2).await.unwrap();
        assert_eq!((keys(&page), more), (vec!["a", "b"], true));
        let (page, more) = list(&t.db, &tenant, "shop", "orders", Some("b"), 2).await.unwrap();
        assert_eq!((keys(&page), more), (vec!["c", "d"], true));
        let (page, more) = list(&t.db, &tenant, "shop", "orders", Some("d"), 2).await.unwrap();
        assert_eq!((keys(&page), more), (vec!["e"], false));
        assert_eq!(page[0].data, json!({"k": "e"}));
        // Exactly one page's worth left: no more after it.
        let (page, more) = list(&t.db, &tenant, "shop", "orders", Some("c"), 2).await.unwrap();
        assert_eq!((keys(&page), more), (vec!["d", "e"], false));
        // The cursor need not be a stored key.
        let (page, more) = list(&t.db, &tenant, "shop", "orders", Some("bb"), 1000).await.unwrap();
        assert_eq!((keys(&page), more), (vec!["c", "d", "e"], false));
        let (page, more) = list(&t.db, &tenant, "shop", "orders", Some("e"), 10).await.unwrap();
        assert_eq!((page.len(), more), (0, false));

        assert_eq!(bad_field(list(&t.db, &tenant, "shop", "orders", None, 0).await), "limit");
        assert_eq!(bad_field(list(&t.db, &tenant, "shop", "orders", None, 1001).await), "limit");
    }

    async fn bad_record_input_is_refused_with_the_field_named(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let long_collection = "c".repeat(64);
        let long_key = "k".repeat(257);
        let bad_locations = [
            (at("Orders", "k"), "collection"),
            (at("", "k"), "collection"),
            (at("1orders", "k"), "collection"),
            (at("_orders", "k"), "collection"),
            (at("order-lines", "k"), "collection"),
            (at(&long_collection, "k"), "collection"),
            (at("orders", ""), "key"),
            (at("orders", &long_key), "key"),
        ];
        for (loc, field) in bad_locations {
            assert_eq!(bad_field(put(&t.db, &tenant, loc, json!({}), Expect::Any).await), field, "{loc:?}");
            let mut c = t.db.reader().acquire().await.unwrap();
            assert_eq!(bad_field(records::get(&mut c, &tenant, loc).await), field, "{loc:?}");
            drop(c);
            assert_eq!(bad_field(delete(&t.db, &tenant, loc, None).await), field, "{loc:?}");
        }
        assert_eq!(bad_field(list(&t.db, &tenant, "shop", "Orders", None, 10).await), "collection");

        for data in [json!([1, 2]), json!("text"), json!(42), json!(true), Value::Null] {
            for expect in [Expect::Absent, Expect::Any, Expect::Version(1)] {
                assert_eq!(bad_field(put(&t.db, &tenant, at("orders", "k"), data.clone(), expect).await), "data", "{data}");
            }
        }
        let huge = json!({"blob": "x".repeat(records::MAX_RECORD_BYTES)});
        assert_eq!(bad_field(put(&t.db, &tenant, at("orders", "k"), huge, Expect::Any).await), "data");

        // The limits themselves are accepted.
        let edge_key = "k".repeat(256);
        let edge = put(&t.db, &tenant, at(&"c".repeat(63), &edge_key), json!({}), Expect::Absent).await.unwrap();
        assert_eq!(edge.version, 1);
        // Nothing of the refused writes was stored.
        let (page, _) = list(&t.db, &tenant, "shop", "orders", None, 10).await.unwrap();
        assert!(page.is_empty(), "{page:?}");
    }

    async fn records_of_one_tenant_or_namespace_are_invisible_to_another(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let a = tenant(&t.db, "tenant-a").await;
        let b = tenant(&t.db, "tenant-b").await;
        let mine = put(&t.db, &a, at("orders", "o-1"), json!({"owner": "a"}), Expect::Absent).await.unwrap();

        assert_eq!(get(&t.db, &b, at("orders", "o-1")).await, None);
        let (page, more) = list(&t.db, &b, "shop", "orders", None, 10).await.unwrap();
        assert_eq!((page.len(), more), (0, false));
        // Tenant B cannot update or delete A's record either...
        let err = put(&t.db, &b, at("orders", "o-1"), json!({"owner": "b"}), Expect::Version(1)).await.unwrap_err();
        assert_eq!(err.code(), "CONFLICT", "{err}");
        assert!(!delete(&t.db, &b, at("orders", "o-1"), None).await.unwrap());
        // ...and creating the same key makes a record of its own.
        let theirs = put(&t.db, &b, at("orders", "o-1"), json!({"owner": "b"}), Expect::Absent).await.unwrap();
        assert_eq!(theirs.version, 1);
        assert_eq!(get(&t.db, &a, at("orders", "o-1")).await.unwrap(), mine);
        assert_eq!(get(&t.db, &b, at("orders", "o-1")).await.unwrap(), theirs);

        // Namespaces of one tenant are just as separate.
        let ns = |namespace: &'static str| Location { namespace, collection: "settings", key: "main" };
        put(&t.db, &a, ns("b"), json!({"plugin": "b"}), Expect::Absent).await.unwrap();
        assert_eq!(get(&t.db, &a, ns("a")).await, None);
        let (page, _) = list(&t.db, &a, "a", "settings", None, 10).await.unwrap();
        assert!(page.is_empty(), "{page:?}");
        assert!(!delete(&t.db, &a, ns("a"), None).await.unwrap());
        let own = put(&t.db, &a, ns("a"), json!({"plugin": "a"}), Expect::Absent).await.unwrap();
        assert_eq!(own.version, 1);
        assert_eq!(get(&t.db, &a, ns("b")).await.unwrap().data, json!({"plugin": "b"}));
        let (page, _) = list(&t.db, &a, "b", "settings", None, 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].data, json!({"plugin": "b"}));
    }

    async fn writes_in_a_transaction_that_is_dropped_leave_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let kept = put(&t.db, &tenant, at("orders", "kept"), json!({"n": 1}), Expect::Absent).await.unwrap();
        {
            let mut tx = t.db.begin().await.unwrap();
            let r = records::put(&mut tx, &tenant, at("orders", "new"), &json!({"n": 1}), Expect::Absent).await.unwrap();
            // Inside the transaction the write is visible...
            assert_eq!(records::get(&mut tx, &tenant, at("orders", "new")).await.unwrap(), Some(r));
            records::put(&mut tx, &tenant, at("orders", "kept"), &json!({"n": 2}), Expect::Version(1)).await.unwrap();
            assert!(records::delete(&mut tx, &tenant, at("orders", "kept"), Some(2)).await.unwrap());
            // ...and the transaction is dropped without a commit.
        }
        assert_eq!(get(&t.db, &tenant, at("orders", "new")).await, None);
        assert_eq!(get(&t.db, &tenant, at("orders", "kept")).await.unwrap(), kept);
        // The key is still free, and the kept record still at version 1.
        let created = put(&t.db, &tenant, at("orders", "new"), json!({"n": 3}), Expect::Absent).await.unwrap();
        assert_eq!(created.version, 1);
        put(&t.db, &tenant, at("orders", "kept"), json!({"n": 2}), Expect::Version(1)).await.unwrap();
    }
}
