//! The product catalogue: batch upserts (idempotent, all or nothing, every
//! refusal naming its item), lookups, paging and tenant isolation.

use keel_core::catalog::{self, Change, ExternalId, ProductKey, SkuKey, Status, UpsertOutcome};
use keel_core::events::{self, EventFilter};
use keel_core::{Db, Error, Result, TenantId, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::{Value, json};

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

/// Upserts the JSON batch in a transaction of its own, committed whatever
/// the outcome: a refused batch must not have written anything.
async fn upsert(db: &Db, tenant: &TenantId, batch: Value) -> Result<UpsertOutcome> {
    let mut tx = db.begin().await.unwrap();
    let r = catalog::upsert_products_json(&mut tx, tenant, &batch.to_string(), "key:erp").await;
    tx.commit().await.unwrap();
    r
}

async fn product(db: &Db, tenant: &TenantId, key: ProductKey) -> Option<catalog::Product> {
    let mut conn = db.reader().acquire().await.unwrap();
    catalog::get_product(&mut conn, tenant, &key).await.unwrap()
}

async fn sku(db: &Db, tenant: &TenantId, key: SkuKey) -> Option<(catalog::Product, catalog::Sku)> {
    let mut conn = db.reader().acquire().await.unwrap();
    catalog::find_sku(&mut conn, tenant, &key).await.unwrap()
}

async fn codes(db: &Db, tenant: &TenantId) -> Vec<String> {
    let mut conn = db.reader().acquire().await.unwrap();
    let page = catalog::list_products(&mut conn, tenant, None, 1000)
        .await
        .unwrap();
    page.products.into_iter().map(|p| p.code).collect()
}

/// Every `product.*` event of the tenant, oldest first.
async fn product_events(db: &Db, tenant: &TenantId) -> Vec<events::Event> {
    let filter = EventFilter {
        types: vec!["product.created".into(), "product.updated".into()],
        ..Default::default()
    };
    events::list(db, tenant, &filter, events::MAX_PAGE, None)
        .await
        .unwrap()
        .events
}

fn bad_input<T: std::fmt::Debug>(r: Result<T>) -> (String, String) {
    match r {
        Err(Error::BadInput { field, message }) => (field, message),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

fn conflict<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Conflict(m)) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn ext(system: &str, id: &str) -> ExternalId {
    ExternalId {
        system: system.into(),
        id: id.into(),
    }
}

/// A cola with two SKUs, as an ERP would send it.
fn cola() -> Value {
    json!({
        "code": "COLA", "name": "Cola", "category": "drinks", "unit": "bottle",
        "attributes": {"brand": "Fizz"},
        "externalIds": [{"system": "kingdee", "id": "MAT-1"}],
        "skus": [
            {"code": "COLA-330", "name": "Cola 330 ml", "gtin": "6901234567892",
             "attributes": {"ml": 330}, "externalIds": [{"system": "kingdee", "id": "MAT-1-330"}]},
            {"code": "COLA-500", "name": "Cola 500 ml", "gtin": "96385074"},
        ],
    })
}

on_both_backends! {
    async fn an_upserted_product_reads_back_by_every_key(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let out = upsert(&t.db, &tenant, json!([cola()])).await.unwrap();
        assert_eq!((out.changed(), out.count(Change::Created), out.skus_created()), (1, 1, 2));
        let id = out.products[0].id.clone();
        assert!(id.starts_with("prd_"), "{id}");

        let p = product(&t.db, &tenant, ProductKey::Id(id.clone())).await.unwrap();
        assert_eq!((p.code.as_str(), p.name.as_str(), p.unit.as_str()), ("COLA", "Cola", "bottle"));
        assert_eq!(p.category.as_deref(), Some("drinks"));
        assert_eq!(p.status, Status::Active);
        assert_eq!(Value::Object(p.attributes.clone()), json!({"brand": "Fizz"}));
        assert_eq!(p.external_ids, vec![ext("kingdee", "MAT-1")]);
        assert_eq!(p.skus.iter().map(|s| s.code.as_str()).collect::<Vec<_>>(), ["COLA-330", "COLA-500"]);
        let s330 = &p.skus[0];
        assert!(s330.id.starts_with("sku_"));
        assert_eq!(s330.product_id, id);
        // GTINs are kept in their 14-digit form.
        assert_eq!(s330.gtin.as_deref(), Some("06901234567892"));
        assert_eq!(p.skus[1].gtin.as_deref(), Some("00000096385074"));
        assert_eq!(s330.external_ids, vec![ext("kingdee", "MAT-1-330")]);

        for key in [ProductKey::Code(" COLA ".into()), ProductKey::External(ext("KingDee", "MAT-1"))] {
            assert_eq!(product(&t.db, &tenant, key).await.as_ref(), Some(&p));
        }
        for key in [
            SkuKey::Id(s330.id.clone()),
            SkuKey::Code("COLA-330".into()),
            SkuKey::Gtin("6901234567892".into()),
            SkuKey::Gtin("06901234567892".into()),
            SkuKey::External(ext("kingdee", "MAT-1-330")),
        ] {
            let (found_p, found_s) = sku(&t.db, &tenant, key.clone()).await.unwrap_or_else(|| panic!("{key:?}"));
            assert_eq!((&found_p, &found_s), (&p, s330), "{key:?}");
        }
        // The product's external id is not a SKU's, and vice versa.
        assert!(sku(&t.db, &tenant, SkuKey::External(ext("kingdee", "MAT-1"))).await.is_none());
        assert!(product(&t.db, &tenant, ProductKey::External(ext("kingdee", "MAT-1-330"))).await.is_none());
        for missing in [ProductKey::Id("prd_nope".into()), ProductKey::Code("NOPE".into())] {
            assert!(product(&t.db, &tenant, missing).await.is_none());
        }
        let mut conn = t.db.reader().acquire().await.unwrap();
        let (f, m) = bad_input(catalog::find_sku(&mut conn, &tenant, &SkuKey::Gtin("6901234567891".into())).await);
        assert_eq!((f.as_str(), m.as_str()), ("gtin", "check digit is 2, not 1"));
        assert_eq!(bad_input(catalog::get_product(&mut conn, &tenant, &ProductKey::Code("".into())).await).0, "code");

        let evs = product_events(&t.db, &tenant).await;
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event_type, "product.created");
        assert_eq!(evs[0].producer, "kernel");
        assert_eq!(evs[0].payload["productId"], json!(id));
        assert_eq!(evs[0].payload["actor"], json!("key:erp"));
        assert_eq!(evs[0].payload["skus"].as_array().unwrap().len(), 2);
    }

    async fn a_retried_upsert_changes_nothing_and_emits_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let batch = json!([cola(), {"code": "TEA", "name": "Tea", "unit": "can"}]);
        upsert(&t.db, &tenant, batch.clone()).await.unwrap();
        let before = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        let events_before = product_events(&t.db, &tenant).await.len();
        for _ in 0..3 {
            let again = upsert(&t.db, &tenant, batch.clone()).await.unwrap();
            assert_eq!(again.changed(), 0);
            assert_eq!(again.count(Change::Unchanged), 2);
            assert_eq!((again.skus_created(), again.skus_updated()), (0, 0));
            assert!(again.events.is_empty());
        }
        assert_eq!(product_events(&t.db, &tenant).await.len(), events_before);
        let after = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        assert_eq!(after, before, "not even updated_at moved");
        // The same batch written differently (spacing, GTIN form, key
        // order, status case) is the same data.
        let same = json!([{
            "unit": "bottle", "code": " COLA", "name": "Cola ", "category": "drinks",
            "status": "ACTIVE", "attributes": {"brand": "Fizz"},
            "externalIds": [{"system": "KINGDEE", "id": "MAT-1"}],
            "skus": [{"code": "COLA-500", "name": "Cola 500 ml", "gtin": "00000096385074"}],
        }]);
        assert_eq!(upsert(&t.db, &tenant, same).await.unwrap().changed(), 0);
    }

    async fn a_change_updates_only_what_it_sends_and_says_what_changed(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, json!([cola()])).await.unwrap();
        let before = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        // Left out: category, attributes, external ids, status, the SKU
        // COLA-330 and COLA-500's GTIN — all kept.
        let out = upsert(&t.db, &tenant, json!([{
            "code": "COLA", "name": "Cola Classic", "unit": "bottle",
            "skus": [
                {"code": "COLA-500", "name": "Cola 500 ml", "status": "inactive"},
                {"code": "COLA-1L", "name": "Cola 1 l", "gtin": "4006381333931"},
            ],
        }])).await.unwrap();
        assert_eq!(out.products[0].change, Change::Updated);
        assert_eq!((out.skus_created(), out.skus_updated()), (1, 1));
        let p = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        assert_eq!(p.name, "Cola Classic");
        assert_eq!((p.category.clone(), p.attributes.clone(), p.external_ids.clone()), (before.category.clone(), before.attributes.clone(), before.external_ids.clone()));
        assert!(p.updated_at > before.updated_at);
        let codes: Vec<_> = p.skus.iter().map(|s| (s.code.as_str(), s.status, s.gtin.as_deref())).collect();
        assert_eq!(codes, [
            ("COLA-1L", Status::Active, Some("04006381333931")),
            ("COLA-330", Status::Active, Some("06901234567892")),
            ("COLA-500", Status::Inactive, Some("00000096385074")),
        ]);
        assert_eq!(p.skus[1], before.skus[0], "an unlisted SKU is left alone");
        let e = &out.events[0];
        assert_eq!(e.event_type, "product.updated");
        assert_eq!(e.payload["changedFields"], json!(["name"]));
        assert_eq!(e.payload["skusCreated"][0]["code"], json!("COLA-1L"));
        assert_eq!(e.payload["skusUpdated"][0]["code"], json!("COLA-500"));

        // null clears; a sent collection replaces the stored one entirely.
        let out = upsert(&t.db, &tenant, json!([{
            "code": "COLA", "name": "Cola Classic", "unit": "bottle", "category": null,
            "attributes": {"sugar": false}, "externalIds": [],
            "skus": [{"code": "COLA-330", "name": "Cola 330 ml", "gtin": null}],
        }])).await.unwrap();
        assert_eq!(out.events[0].payload["changedFields"], json!(["category", "attributes", "externalIds"]));
        let p = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        assert_eq!((p.category, Value::Object(p.attributes), p.external_ids), (None, json!({"sugar": false}), vec![]));
        assert_eq!(p.skus[1].gtin, None);
        assert!(product(&t.db, &tenant, ProductKey::External(ext("kingdee", "MAT-1"))).await.is_none());
        // The GTIN it gave up is free for another SKU.
        upsert(&t.db, &tenant, json!([{"code": "TEA", "name": "Tea", "unit": "can",
            "skus": [{"code": "TEA-1", "name": "Tea", "gtin": "6901234567892"}]}])).await.unwrap();
        // A change to a SKU alone is a product.updated with no changed fields.
        let out = upsert(&t.db, &tenant, json!([{"code": "TEA", "name": "Tea", "unit": "can",
            "skus": [{"code": "TEA-1", "name": "Green tea"}]}])).await.unwrap();
        assert_eq!(out.events[0].payload["changedFields"], json!([]));
        assert_eq!(out.events[0].payload["skusUpdated"][0]["code"], json!("TEA-1"));
    }

    async fn an_invalid_item_refuses_the_batch_naming_it_and_writes_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let ok = json!({"code": "OK", "name": "Fine", "unit": "box"});
        let huge = "x".repeat(10 << 20);
        let with = |bad: Value| json!([ok.clone(), {"code": "P1", "name": "N", "unit": "u", "skus": [{"code": "S0", "name": "S"}, bad]}]);
        let cases = [
            (with(json!({"code": "S1", "name": "S", "gtin": "6901234567895"})), "products[1].skus[1].gtin", "check digit is 2, not 5"),
            (with(json!({"code": "S1", "name": "S", "gtin": "12345"})), "products[1].skus[1].gtin", "has 5 digits; a GTIN has 8, 12, 13 or 14"),
            (with(json!({"code": "S1", "name": "S", "status": "deleted"})), "products[1].skus[1].status", "\"deleted\" is not a status; use active or inactive"),
            (with(json!({"code": "S0", "name": "S"})), "products[1].skus[1].code", "the SKU code S0 is also in products[1].skus[0]; list each once per batch"),
            (with(json!({"code": "S\u{0}1", "name": "S"})), "products[1].skus[1].code", "contains the control character U+0000"),
            (with(json!({"code": "S1", "name": huge})), "products[1].skus[1].name", "is 10485760 bytes long; at most 200 characters"),
            (with(json!({"code": "S1", "name": "S", "attributes": [1]})), "products[1].skus[1].attributes", "must be a JSON object"),
            (with(json!({"code": "S1", "name": "S", "externalIds": [{"system": "Kin Dee", "id": "1"}]})), "products[1].skus[1].externalIds[0].system", "must be 1-64 characters of a-z, 0-9, _, - and ., e.g. kingdee"),
            (with(json!({"code": "S1", "name": "S", "attributes": {"blob": "x".repeat(20_000)}})), "products[1].skus[1].attributes", "is 20011 bytes; the limit is 16384"),
            (json!([ok.clone(), {"code": "OK", "name": "Again", "unit": "box"}]), "products[1].code", "the product code OK is also in products[0]; list each once per batch"),
            (json!([ok.clone(), {"code": "P1", "name": "N", "unit": "u", "status": "gone"}]), "products[1].status", "\"gone\" is not a status; use active or inactive"),
            (json!([ok.clone(), {"code": "P1", "name": "  ", "unit": "u"}]), "products[1].name", "must not be empty"),
            (json!([ok.clone(), {"code": "P1", "name": "N"}]), "products[1].unit", "is required"),
            (json!([ok.clone(), {"code": "P1", "name": "N", "unit": "u", "gtin": "1"}]), "products[1]", "unknown field \"gtin\"; the fields are code, name, category, unit, status, attributes, externalIds, skus"),
        ];
        for (batch, field, message) in cases {
            let (f, m) = bad_input(upsert(&t.db, &tenant, batch).await);
            assert_eq!((f.as_str(), m.as_str()), (field, message));
        }
        let too_many: Vec<Value> = (0..1001).map(|i| json!({"code": format!("P{i}"), "name": "N", "unit": "u"})).collect();
        let (f, m) = bad_input(upsert(&t.db, &tenant, Value::Array(too_many)).await);
        assert_eq!((f.as_str(), m.as_str()), ("products", "1001 products; at most 1000 per call"));
        let skus: Vec<Value> = (0..1001).map(|i| json!({"code": format!("S{i}"), "name": "S"})).collect();
        let (f, _) = bad_input(upsert(&t.db, &tenant, json!([{"code": "P", "name": "N", "unit": "u", "skus": skus}])).await);
        assert_eq!(f, "products[0].skus");
        assert!(codes(&t.db, &tenant).await.is_empty(), "nothing was written");
        assert!(product_events(&t.db, &tenant).await.is_empty());
        // A typed caller gets the same checks as the JSON one.
        let mut tx = t.db.begin().await.unwrap();
        let typed = vec![catalog::ProductInput { code: "P".into(), name: "N".into(), unit: "u".into(), status: Some("nope".into()), ..Default::default() }];
        assert_eq!(bad_input(catalog::upsert_products(&mut tx, &tenant, typed, "test").await).0, "products[0].status");
    }

    async fn a_thousand_products_go_in_one_call(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let batch: Vec<Value> = (0..1000).map(|i| json!({
            "code": format!("P{i:04}"), "name": format!("Product {i}"), "unit": "box",
            "externalIds": [{"system": "sap", "id": format!("M{i}")}],
            "skus": [{"code": format!("S{i:04}"), "name": "Each"}],
        })).collect();
        let out = upsert(&t.db, &tenant, Value::Array(batch.clone())).await.unwrap();
        assert_eq!((out.changed(), out.skus_created(), out.events.len()), (1000, 1000, 1000));
        let again = upsert(&t.db, &tenant, Value::Array(batch)).await.unwrap();
        assert_eq!((again.changed(), again.events.len()), (0, 0));
        assert_eq!(codes(&t.db, &tenant).await.len(), 1000);
    }

    async fn codes_gtins_and_external_ids_owned_by_another_object_are_conflicts(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, json!([cola()])).await.unwrap();
        let before = product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap();
        let new = |extra: Value| {
            let mut p = json!({"code": "TEA", "name": "Tea", "unit": "can"});
            p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!([{"code": "NEW", "name": "New", "unit": "u"}, p])
        };
        let cases = [
            (new(json!({"skus": [{"code": "TEA-1", "name": "T", "gtin": "6901234567892"}]})),
             "products[1].skus[0].gtin: the GTIN 06901234567892 belongs to the SKU \"COLA-330\""),
            (new(json!({"skus": [{"code": "COLA-500", "name": "T"}]})),
             "products[1].skus[0].code: the SKU \"COLA-500\" belongs to the product \"COLA\"; a SKU stays with its product (give the new one another code)"),
            (new(json!({"externalIds": [{"system": "kingdee", "id": "MAT-1"}]})),
             "products[1].externalIds: the external id kingdee:\"MAT-1\" belongs to the product \"COLA\""),
            (new(json!({"skus": [{"code": "TEA-1", "name": "T", "externalIds": [{"system": "kingdee", "id": "MAT-1-330"}]}]})),
             "products[1].skus[0].externalIds: the external id kingdee:\"MAT-1-330\" belongs to the sku \"COLA-330\""),
        ];
        for (batch, message) in cases {
            assert_eq!(conflict(upsert(&t.db, &tenant, batch).await), message);
        }
        assert_eq!(codes(&t.db, &tenant).await, ["COLA"], "nothing of the refused batches was written");
        assert_eq!(product(&t.db, &tenant, ProductKey::Code("COLA".into())).await.unwrap(), before);

        // Inside one batch, objects may hand GTINs and external ids over:
        // COLA-330 and COLA-500 swap GTINs, the id MAT-1 moves to TEA.
        let out = upsert(&t.db, &tenant, json!([
            {"code": "COLA", "name": "Cola", "unit": "bottle", "externalIds": [],
             "skus": [{"code": "COLA-330", "name": "Cola 330 ml", "gtin": "96385074"},
                      {"code": "COLA-500", "name": "Cola 500 ml", "gtin": "6901234567892"}]},
            {"code": "TEA", "name": "Tea", "unit": "can", "externalIds": [{"system": "kingdee", "id": "MAT-1"}]},
        ])).await.unwrap();
        assert_eq!(out.changed(), 2);
        let (p, s) = sku(&t.db, &tenant, SkuKey::Gtin("96385074".into())).await.unwrap();
        assert_eq!((p.code.as_str(), s.code.as_str()), ("COLA", "COLA-330"));
        assert_eq!(product(&t.db, &tenant, ProductKey::External(ext("kingdee", "MAT-1"))).await.unwrap().code, "TEA");
        // A SKU that keeps its GTIN (leaves it out) still owns it.
        let m = conflict(upsert(&t.db, &tenant, json!([{"code": "COLA", "name": "Cola", "unit": "bottle", "skus": [
            {"code": "COLA-330", "name": "Cola 330 ml"},
            {"code": "COLA-500", "name": "Cola 500 ml", "gtin": "96385074"},
        ]}])).await);
        assert_eq!(m, "products[0].skus[1].gtin: the GTIN 00000096385074 belongs to the SKU \"COLA-330\"");
    }

    async fn another_tenants_catalogue_does_not_exist_here(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let a = tenant(&t.db, "acme").await;
        let b = tenant(&t.db, "bravo").await;
        let out = upsert(&t.db, &a, json!([cola()])).await.unwrap();
        let p = product(&t.db, &a, ProductKey::Id(out.products[0].id.clone())).await.unwrap();
        for key in [ProductKey::Id(p.id.clone()), ProductKey::Code("COLA".into()), ProductKey::External(ext("kingdee", "MAT-1"))] {
            assert!(product(&t.db, &b, key).await.is_none());
        }
        for key in [SkuKey::Id(p.skus[0].id.clone()), SkuKey::Code("COLA-330".into()), SkuKey::Gtin("6901234567892".into()), SkuKey::External(ext("kingdee", "MAT-1-330"))] {
            assert!(sku(&t.db, &b, key).await.is_none());
        }
        assert!(codes(&t.db, &b).await.is_empty());
        // Codes, GTINs and external ids are the tenant's own: B may use them too.
        let out_b = upsert(&t.db, &b, json!([cola()])).await.unwrap();
        assert_eq!(out_b.count(Change::Created), 1);
        assert_ne!(out_b.products[0].id, p.id);
        assert_eq!(product(&t.db, &a, ProductKey::Code("COLA".into())).await.unwrap(), p);
        assert!(product_events(&t.db, &b).await.iter().all(|e| e.payload["productId"] == json!(out_b.products[0].id)));
    }

    async fn products_page_in_byte_order_of_their_codes(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let batch: Vec<Value> = ["b-2", "B-10", "a", "Z", "b-10", "乌龙"].iter()
            .map(|c| json!({"code": c, "name": "N", "unit": "u"})).collect();
        upsert(&t.db, &tenant, Value::Array(batch)).await.unwrap();
        let want = ["B-10", "Z", "a", "b-10", "b-2", "乌龙"];
        let mut conn = t.db.reader().acquire().await.unwrap();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = catalog::list_products(&mut conn, &tenant, after.as_deref(), 4).await.unwrap();
            seen.extend(page.products.iter().map(|p| p.code.clone()));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, want);
        let first = catalog::list_products(&mut conn, &tenant, None, 6).await.unwrap();
        assert_eq!((first.products.len(), first.next), (6, None), "a page that ends at the last product has no next");
        assert_eq!(bad_input(catalog::list_products(&mut conn, &tenant, None, 0).await).0, "limit");
        assert_eq!(bad_input(catalog::list_products(&mut conn, &tenant, None, 1001).await).0, "limit");
        assert_eq!(bad_input(catalog::list_products(&mut conn, &tenant, Some(&"x".repeat(1000)), 10).await).0, "after");
    }

    async fn a_refused_batch_leaves_nothing_even_when_its_caller_commits(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, json!([cola()])).await.unwrap();
        // A plugin's call: its own write, a refused upsert it shrugs off, commit.
        let mut tx = t.db.begin().await.unwrap();
        let before = upsert_in(&mut tx, &tenant, json!([{"code": "FIRST", "name": "N", "unit": "u"}])).await.unwrap();
        assert_eq!(before.changed(), 1);
        let refused = upsert_in(&mut tx, &tenant, json!([{"code": "TEA", "name": "Tea", "unit": "can",
            "skus": [{"code": "TEA-1", "name": "T", "gtin": "6901234567892"}]}])).await;
        conflict(refused);
        tx.commit().await.unwrap();
        assert_eq!(codes(&t.db, &tenant).await, ["COLA", "FIRST"]);
    }
}

async fn upsert_in(
    tx: &mut keel_core::Tx,
    tenant: &TenantId,
    batch: Value,
) -> Result<UpsertOutcome> {
    catalog::upsert_products_json(tx, tenant, &batch.to_string(), "plugin:test").await
}
