//! The product catalogue over real HTTP: `upsertProducts`, `products`,
//! `product` and `sku` — idempotent batches, refusals naming their item,
//! tenant isolation, paging and who may do what.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, code, field, ok};

const UPSERT: &str = "mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { \
    changed created updated unchanged skusCreated skusUpdated products { id code change skusCreated skusUpdated } } }";
const PRODUCT: &str = "query($id: ID, $code: String, $ext: ExternalIdInput) { product(id: $id, code: $code, externalId: $ext) { \
    id code name category unit status attributes externalIds { system id } updatedAt \
    skus { id productId code gtin name status attributes externalIds { system id } } } }";
const SKU: &str = "query($id: ID, $code: String, $gtin: String, $ext: ExternalIdInput) { sku(id: $id, code: $code, gtin: $gtin, externalId: $ext) { \
    sku { id code gtin } product { id code } } }";
const LIST: &str = "query($first: Int, $after: String) { products(first: $first, after: $after) { \
    edges { cursor node { code skus { code } } } pageInfo { hasNextPage endCursor } } }";
const PRODUCT_EVENTS: &str = "{ events(first: 100, filter: {types: [\"product.created\", \"product.updated\"]}) { edges { node { type producer payload } } } }";

fn cola() -> Value {
    json!({
        "code": "COLA", "name": "Cola", "category": "drinks", "unit": "bottle",
        "attributes": {"brand": "Fizz"},
        "externalIds": [{"system": "kingdee", "id": "MAT-1"}],
        "skus": [
            {"code": "COLA-330", "name": "Cola 330 ml", "gtin": "6901234567892",
             "externalIds": [{"system": "kingdee", "id": "MAT-1-330"}]},
            {"code": "COLA-500", "name": "Cola 500 ml", "gtin": "96385074", "status": "INACTIVE"},
        ],
    })
}

async fn product_events(app: &TestApp, key: &str) -> Vec<Value> {
    let r = app.gql(Some(key), PRODUCT_EVENTS, json!({})).await;
    ok(&r)["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn codes(app: &TestApp, key: &str) -> Vec<String> {
    let r = app.gql(Some(key), LIST, json!({"first": 100})).await;
    ok(&r)["products"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect()
}

on_both_backends! {
    async fn an_erp_upserts_a_batch_and_reads_it_back_by_every_key(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let erp = app.key(&owner, &["integration"], &["catalog:*"]).await;
        let r = app.gql(Some(&erp), UPSERT, json!({"p": [cola(), {"code": "TEA", "name": "Tea", "unit": "can"}]})).await;
        let out = &ok(&r)["upsertProducts"];
        assert_eq!((out["changed"].as_i64(), out["created"].as_i64(), out["skusCreated"].as_i64()), (Some(2), Some(2), Some(2)));
        assert_eq!(out["products"][0]["change"], "CREATED");
        let id = out["products"][0]["id"].as_str().unwrap().to_owned();

        let r = app.gql(Some(&erp), PRODUCT, json!({"id": id})).await;
        let p = ok(&r)["product"].clone();
        assert_eq!(p["status"], "ACTIVE");
        assert_eq!(p["attributes"], json!({"brand": "Fizz"}));
        assert_eq!(p["externalIds"], json!([{"system": "kingdee", "id": "MAT-1"}]));
        assert_eq!(p["skus"][0]["gtin"], "06901234567892");
        assert_eq!(p["skus"][1]["status"], "INACTIVE");
        for vars in [json!({"code": "COLA"}), json!({"ext": {"system": "kingdee", "id": "MAT-1"}})] {
            let r = app.gql(Some(&erp), PRODUCT, vars.clone()).await;
            assert_eq!(ok(&r)["product"], p, "{vars}");
        }
        for vars in [
            json!({"code": "COLA-330"}),
            json!({"gtin": "6901234567892"}),
            json!({"id": p["skus"][0]["id"]}),
            json!({"ext": {"system": "kingdee", "id": "MAT-1-330"}}),
        ] {
            let r = app.gql(Some(&erp), SKU, vars.clone()).await;
            let found = &ok(&r)["sku"];
            assert_eq!((&found["sku"]["code"], &found["product"]["id"]), (&json!("COLA-330"), &json!(id)), "{vars}");
        }
        let r = app.gql(Some(&erp), SKU, json!({"code": "NOPE"})).await;
        assert_eq!(ok(&r)["sku"], Value::Null);
        let evs = product_events(&app, &owner).await;
        assert_eq!(evs.len(), 2);
        assert!(evs.iter().all(|e| e["type"] == "product.created" && e["producer"] == "kernel"));
        assert!(evs[0]["payload"]["actor"].as_str().unwrap().starts_with("key:"));
    }

    async fn a_retried_batch_changes_nothing_and_emits_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let vars = json!({"p": [cola()]});
        ok(&app.gql(Some(&owner), UPSERT, vars.clone()).await);
        let before = app.gql(Some(&owner), PRODUCT, json!({"code": "COLA"})).await;
        for _ in 0..3 {
            let r = app.gql(Some(&owner), UPSERT, vars.clone()).await;
            let out = &ok(&r)["upsertProducts"];
            assert_eq!((out["changed"].as_i64(), out["unchanged"].as_i64()), (Some(0), Some(1)), "{out}");
            assert_eq!(out["products"][0]["change"], "UNCHANGED");
        }
        assert_eq!(product_events(&app, &owner).await.len(), 1);
        assert_eq!(app.gql(Some(&owner), PRODUCT, json!({"code": "COLA"})).await, before);

        // A real change: one event, saying what changed; left-out fields stay.
        let r = app.gql(Some(&owner), UPSERT, json!({"p": [{"code": "COLA", "name": "Cola Classic", "unit": "bottle", "category": null}]})).await;
        assert_eq!(ok(&r)["upsertProducts"]["updated"], 1);
        let evs = product_events(&app, &owner).await;
        assert_eq!(evs[1]["type"], "product.updated");
        assert_eq!(evs[1]["payload"]["changedFields"], json!(["name", "category"]));
        let r = app.gql(Some(&owner), PRODUCT, json!({"code": "COLA"})).await;
        let p = &ok(&r)["product"];
        assert_eq!((&p["category"], &p["attributes"], p["skus"].as_array().unwrap().len()), (&Value::Null, &json!({"brand": "Fizz"}), 2));
    }

    async fn a_bad_batch_is_refused_naming_its_item_and_writes_nothing(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"p": [cola()]})).await);
        let fine = json!({"code": "FINE", "name": "Fine", "unit": "box"});
        let cases = [
            (json!([fine, {"code": "P1", "name": "N", "unit": "u", "skus": [{"code": "S1", "name": "S", "gtin": "6901234567895"}]}]),
             "products[1].skus[0].gtin", "products[1].skus[0].gtin: check digit is 2, not 5"),
            (json!([fine, {"code": "FINE", "name": "N", "unit": "u"}]),
             "products[1].code", "products[1].code: the product code FINE is also in products[0]; list each once per batch"),
            (json!([fine, {"code": "P1", "name": "N", "unit": "u", "skus": [{"code": "S1", "name": "S"}, {"code": "S1", "name": "S"}]}]),
             "products[1].skus[1].code", "products[1].skus[1].code: the SKU code S1 is also in products[1].skus[0]; list each once per batch"),
            (json!([fine, {"code": "P1", "name": "N", "unit": "u", "attributes": "red"}]),
             "products[1].attributes", "products[1].attributes: must be a JSON object"),
        ];
        for (p, f, message) in cases {
            let r = app.gql(Some(&owner), UPSERT, json!({"p": p})).await;
            assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", f), "{r}");
            assert_eq!(r["errors"][0]["message"], message);
        }
        // A status that is not one is refused by the schema itself.
        let r = app.gql(Some(&owner), UPSERT, json!({"p": [{"code": "P1", "name": "N", "unit": "u", "status": "DELETED"}]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        // Over the limit.
        let many: Vec<Value> = (0..1001).map(|i| json!({"code": format!("P{i}"), "name": "N", "unit": "u"})).collect();
        let r = app.gql(Some(&owner), UPSERT, json!({"p": many})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "products"), "{r}");
        // A GTIN another product's SKU owns.
        let r = app.gql(Some(&owner), UPSERT, json!({"p": [fine, {"code": "TEA", "name": "Tea", "unit": "can",
            "skus": [{"code": "TEA-1", "name": "Tea", "gtin": "06901234567892"}]}]})).await;
        assert_eq!(code(&r), "CONFLICT", "{r}");
        assert_eq!(r["errors"][0]["message"], "products[1].skus[0].gtin: the GTIN 06901234567892 belongs to the SKU \"COLA-330\"");
        // A NUL character never reaches the catalogue.
        let r = app.gql(Some(&owner), UPSERT, json!({"p": [{"code": "P\u{0}1", "name": "N", "unit": "u"}]})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(codes(&app, &owner).await, ["COLA"], "nothing of the refused batches was written");
        assert_eq!(product_events(&app, &owner).await.len(), 1);

        // Lookups take exactly one key.
        for vars in [json!({}), json!({"code": "COLA", "id": "prd_x"})] {
            let r = app.gql(Some(&owner), PRODUCT, vars.clone()).await;
            assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "id"), "{vars}: {r}");
        }
        let r = app.gql(Some(&owner), SKU, json!({"gtin": "123"})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "gtin"), "{r}");
    }

    async fn another_tenants_products_are_null_here(kind) {
        let app = TestApp::start(kind).await;
        let (_, a) = app.tenant("acme").await;
        let (_, b) = app.tenant("bravo").await;
        let r = app.gql(Some(&a), UPSERT, json!({"p": [cola()]})).await;
        let id = ok(&r)["upsertProducts"]["products"][0]["id"].clone();
        let r = app.gql(Some(&a), PRODUCT, json!({"id": id})).await;
        let sku_id = ok(&r)["product"]["skus"][0]["id"].clone();
        for vars in [json!({"id": id}), json!({"code": "COLA"}), json!({"ext": {"system": "kingdee", "id": "MAT-1"}})] {
            let r = app.gql(Some(&b), PRODUCT, vars.clone()).await;
            assert_eq!(ok(&r)["product"], Value::Null, "{vars}");
        }
        for vars in [json!({"id": sku_id}), json!({"code": "COLA-330"}), json!({"gtin": "6901234567892"})] {
            let r = app.gql(Some(&b), SKU, vars.clone()).await;
            assert_eq!(ok(&r)["sku"], Value::Null, "{vars}");
        }
        assert!(codes(&app, &b).await.is_empty());
        assert!(product_events(&app, &b).await.is_empty());
        // B's own COLA is B's: same codes, another product.
        let r = app.gql(Some(&b), UPSERT, json!({"p": [cola()]})).await;
        assert_eq!(ok(&r)["upsertProducts"]["created"], 1);
        assert_ne!(ok(&r)["upsertProducts"]["products"][0]["id"], id);
    }

    async fn products_page_in_code_order(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let batch: Vec<Value> = ["P3", "P1", "p0", "P2", "P10"].iter().map(|c| json!({"code": c, "name": "N", "unit": "u", "skus": [{"code": format!("{c}-S"), "name": "S"}]})).collect();
        ok(&app.gql(Some(&owner), UPSERT, json!({"p": batch})).await);
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let r = app.gql(Some(&owner), LIST, json!({"first": 2, "after": after})).await;
            let c = &ok(&r)["products"];
            for e in c["edges"].as_array().unwrap() {
                assert_eq!(e["node"]["skus"][0]["code"], json!(format!("{}-S", e["cursor"].as_str().unwrap())));
                seen.push(e["cursor"].as_str().unwrap().to_owned());
            }
            if c["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = c["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(seen, ["P1", "P10", "P2", "P3", "p0"]);
        for first in [0, 101] {
            let r = app.gql(Some(&owner), LIST, json!({"first": first})).await;
            assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "first"), "{r}");
        }
    }

    async fn the_catalogue_is_read_and_written_by_the_roles_that_need_it(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        ok(&app.gql(Some(&owner), UPSERT, json!({"p": [cola()]})).await);
        let who = [
            ("owner", owner.clone()),
            ("admin", app.key(&owner, &["admin"], &[]).await),
            ("marketer", app.key(&owner, &["marketer"], &[]).await),
            ("analyst", app.key(&owner, &["analyst"], &[]).await),
            ("erp reader", app.key(&owner, &["integration"], &["catalog:read"]).await),
            ("erp writer", app.key(&owner, &["integration"], &["catalog:write"]).await),
            ("erp of events", app.key(&owner, &["integration"], &["events:*"]).await),
            ("platform", ADMIN_TOKEN.to_owned()),
        ];
        // (read, write) per principal, from the built-in policy.
        let expect = [
            (true, true), (true, true), (true, false), (true, false),
            (true, false), (false, true), (false, false), (false, false),
        ];
        for ((name, key), (read, write)) in who.iter().zip(expect) {
            for (q, vars, allowed) in [
                (LIST, json!({}), read),
                (PRODUCT, json!({"code": "COLA"}), read),
                (SKU, json!({"gtin": "96385074"}), read),
                (UPSERT, json!({"p": [{"code": format!("BY-{name}"), "name": "N", "unit": "u"}]}), write),
            ] {
                let r = app.gql(Some(key), q, vars).await;
                if allowed {
                    ok(&r);
                } else {
                    assert_eq!(code(&r), "FORBIDDEN", "{name}: {q}: {r}");
                }
            }
        }
        let r = app.gql(None, LIST, json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
        assert_eq!(codes(&app, &owner).await, ["BY-admin", "BY-erp writer", "BY-owner", "COLA"]);
    }
}
