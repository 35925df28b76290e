//! Upgrading `codes` on a database made by the previous release: codes 0.1
//! kept products and regions as records of its own; 0.2 reads the kernel's
//! catalogue and org tree, and its `on-enable` moves the old records there
//! (`plugins/codes/src/upgrade.rs`).
//!
//! The previous release's records (`keel serve --demo`: product DEMO-WINE,
//! regions CN, CN-GD and CN-SH, batch 0000001 and its secret) are written
//! into a fresh database with keel-core's records API and the 0.1.0
//! manifest's indexes, as that release wrote them.

use keel_codes_core::{BatchCodec, Key};
use keel_core::TenantId;
use keel_core::records::{self, Expect, Location};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{SCAN, SHANGHAI, SHENZHEN, square};
use crate::support::{ADMIN, Brand, CODES_GRANTS, Kernel, code, ok};

const FIXTURE: &str = include_str!("../fixtures/codes-0.1.0-records.json");

/// The indexed fields codes 0.1.0's manifest declared.
const OLD_INDEXES: &[(&str, &[&str])] = &[
    ("products", &["gtin"]),
    ("batches", &["product", "lot_key", "gtin_lot"]),
    ("regions", &["parent"]),
];

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

/// The fixture's record of `collection`/`key`.
fn record<'a>(f: &'a Value, collection: &str, key: &str) -> &'a Value {
    f["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["collection"] == collection && r["key"] == key)
        .unwrap_or_else(|| panic!("the fixture has {collection}/{key}"))
}

/// The code the previous release printed for `serial` of batch 1.
fn printed(f: &Value, serial: u32) -> String {
    let tenant = Key::from_hex(
        record(f, "settings", "keys")["data"]["tenant_key"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let secret = Key::from_hex(
        record(f, "batches", "0000001")["data"]["secret"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    BatchCodec::new(&tenant, 1, secret).code(serial)
}

/// A new tenant with no plugin enabled.
async fn tenant(k: &Kernel, slug: &str) -> (Brand, TenantId) {
    let r = k
        .gql(
            ADMIN,
            "mutation($i: CreateTenantInput!) { createTenant(input: $i) { adminKey } }",
            json!({"i": {"slug": slug, "name": format!("Brand {slug}")}}),
        )
        .await;
    let owner = ok(&r)["createTenant"]["adminKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = keel_core::tenants::get_by_slug(&k.db, slug)
        .await
        .unwrap()
        .id;
    (
        Brand {
            slug: slug.to_owned(),
            owner,
        },
        id,
    )
}

/// Writes the fixture's records (each up to its version) and counters into
/// the tenant's `codes` namespace, as codes 0.1 did.
async fn load(k: &Kernel, tenant: &TenantId, f: &Value) {
    let mut tx = k.db.begin().await.unwrap();
    for r in f["records"].as_array().unwrap() {
        let collection = r["collection"].as_str().unwrap();
        let indexed: Vec<String> = OLD_INDEXES
            .iter()
            .find(|(c, _)| *c == collection)
            .map(|(_, fields)| fields.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        let loc = Location {
            namespace: "codes",
            collection,
            key: r["key"].as_str().unwrap(),
        };
        for v in 1..=r["version"].as_i64().unwrap() {
            let expect = if v == 1 {
                Expect::Absent
            } else {
                Expect::Version(v - 1)
            };
            records::put_indexed(&mut tx, tenant, loc, &r["data"], expect, &indexed)
                .await
                .unwrap();
        }
    }
    for c in f["counters"].as_array().unwrap() {
        let add = keel_core::counters::Add {
            namespace: "codes",
            key: c["key"].as_str().unwrap(),
            delta: c["value"].as_i64().unwrap(),
            min: 0,
            max: i64::MAX >> 2,
            idempotency_key: None,
        };
        keel_core::counters::add(&mut tx, tenant, add)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Enables codes 0.2 with every grant it asks for; the raw response.
async fn enable_codes(k: &Kernel, b: &Brand) -> Value {
    let config = json!({"scan_base_url": k.url(&format!("/t/{}/p/codes/", b.slug))});
    k.gql(
        &b.owner,
        "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { enabled version } }",
        json!({"i": {"name": "codes", "capabilities": CODES_GRANTS, "config": config}}),
    )
    .await
}

/// Every record of the tenant's `codes` namespace in `collection`: key,
/// version and data.
async fn codes_records(
    k: &Kernel,
    tenant: &TenantId,
    collection: &str,
) -> Vec<(String, i64, Value)> {
    let mut conn = k.db.reader().acquire().await.unwrap();
    let (page, more) = records::list(&mut conn, tenant, "codes", collection, None, 1000)
        .await
        .unwrap();
    assert!(!more);
    page.into_iter()
        .map(|r| (r.key, r.version, r.data))
        .collect()
}

/// What an upgrade could change: the catalogue, the org tree, the event
/// log, and codes' own products, regions, settings and batches.
async fn snapshot(k: &Kernel, b: &Brand, tenant: &TenantId) -> Value {
    let r = k.gql(&b.owner, "{ products(first: 100) { edges { node { code name unit updatedAt skus { code gtin name updatedAt } } } } \
        orgNodes(first: 100) { edges { node { id code } } } \
        events(first: 100) { edges { node { id type } } } }", json!({})).await;
    let mut nodes = Vec::new();
    for code in ["CN", "CN-GD", "CN-SH"] {
        let n = k.gql(&b.owner, "query($c: String!) { orgNode(code: $c) { id kind code name parentId boundary updatedAt } }", json!({"c": code})).await;
        nodes.push(ok(&n)["orgNode"].clone());
    }
    let mut own = Vec::new();
    for c in ["products", "regions", "settings", "batches"] {
        own.push(json!([
            c,
            format!("{:?}", codes_records(k, tenant, c).await)
        ]));
    }
    json!({"kernel": ok(&r).clone(), "nodes": nodes, "codes": own})
}

/// A GeoJSON boundary's numbers, in order.
fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => vec![n.as_f64().unwrap()],
        Value::Array(a) => a.iter().flat_map(numbers).collect(),
        Value::Object(m) => m.get("coordinates").map(numbers).unwrap_or_default(),
        _ => Vec::new(),
    }
}

async fn scan(k: &Kernel, b: &Brand, text: &str, at: (f64, f64)) -> Value {
    let r = k
        .public(
            &b.slug,
            SCAN,
            json!({"c": text, "l": {"lat": at.0, "lon": at.1}}),
        )
        .await;
    ok(&r)["scan"].clone()
}

on_both_backends! {
    async fn the_previous_releases_products_and_regions_move_into_the_kernel(kind) {
        let k = Kernel::start(kind).await;
        let f = fixture();
        let (b, t) = tenant(&k, "demo").await;
        load(&k, &t, &f).await;
        // With only the grants codes 0.1 had, the upgrade step refuses,
        // naming what it needs, and nothing moves.
        let config = json!({"scan_base_url": k.url("/t/demo/p/codes/")});
        let r = k.gql(&b.owner, "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { enabled } }",
            json!({"i": {"name": "codes", "capabilities": ["records", "events", "counters", "persons-read"], "config": config}})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        assert!(r.to_string().contains("catalog-write"), "{r}");
        let r = k.gql(&b.owner, "{ product(code: \"DEMO-WINE\") { code } }", json!({})).await;
        assert_eq!(ok(&r)["product"], Value::Null, "a refused upgrade moved a product");
        let r = enable_codes(&k, &b).await;
        let version = ok(&r)["enablePlugin"]["version"].as_str().unwrap().to_owned();
        assert!(version.starts_with("0.2."), "{version}");

        // The replaced operations still answer, and introspection says
        // what replaces them.
        let r = k.gql(&b.owner, "{ __type(name: \"Mutation\") { fields(includeDeprecated: true) { name isDeprecated deprecationReason } } }", json!({})).await;
        let fields = ok(&r)["__type"]["fields"].as_array().unwrap().clone();
        let field = |n: &str| fields.iter().find(|f| f["name"] == n).cloned().unwrap_or_else(|| panic!("no field {n}"));
        assert_eq!(field("defineRegion")["deprecationReason"], "use upsertOrgNodes");
        assert_eq!(field("createCodeProduct")["isDeprecated"], true);
        assert_eq!(field("upsertOrgNodes")["isDeprecated"], false);

        // The catalogue has DEMO-WINE: a product of that code holding one SKU.
        let r = k.gql(&b.owner, "{ product(code: \"DEMO-WINE\") { code name unit skus { code gtin name status } } }", json!({})).await;
        assert_eq!(ok(&r)["product"], json!({"code": "DEMO-WINE", "name": "Demo Red Wine 750ml", "unit": "unit",
            "skus": [{"code": "DEMO-WINE", "gtin": "06901234567892", "name": "Demo Red Wine 750ml", "status": "ACTIVE"}]}));

        // The org tree has CN, and CN-GD and CN-SH under it, with their boundaries.
        let q = "query($c: String!) { orgNode(code: $c) { id kind parentId boundary } }";
        let mut nodes = std::collections::HashMap::new();
        for code in ["CN", "CN-GD", "CN-SH"] {
            let r = k.gql(&b.owner, q, json!({"c": code})).await;
            let n = ok(&r)["orgNode"].clone();
            assert_eq!(n["kind"], "REGION", "{code}: {n}");
            assert_eq!(numbers(&n["boundary"]), numbers(&record(&f, "regions", code)["data"]["boundary"]), "{code}'s boundary");
            nodes.insert(code, n);
        }
        assert_eq!(nodes["CN"]["parentId"], Value::Null);
        assert_eq!(nodes["CN-GD"]["parentId"], nodes["CN"]["id"]);
        assert_eq!(nodes["CN-SH"]["parentId"], nodes["CN"]["id"]);
        assert!(numbers(&nodes["CN-GD"]["boundary"]).len() == 10);

        // The old records are retired, and the tenant marked migrated.
        for (collection, n) in [("products", 1), ("regions", 3)] {
            let old = codes_records(&k, &t, collection).await;
            assert_eq!(old.len(), n, "{collection}");
            assert!(old.iter().all(|(_, _, d)| d["retired"].is_string()), "{collection}: {old:?}");
        }
        let settings = codes_records(&k, &t, "settings").await;
        let marker = settings.iter().find(|(key, _, _)| key == "migration").expect("settings/migration");
        assert_eq!((marker.2["products"].as_i64(), marker.2["regions"].as_i64()), (Some(1), Some(3)));
        assert_eq!(
            settings.iter().find(|(key, _, _)| key == "keys").unwrap().2,
            record(&f, "settings", "keys")["data"],
            "the tenant's code key is kept"
        );

        // A second run of the upgrade changes nothing.
        let before = snapshot(&k, &b, &t).await;
        let r = k.gql(&b.owner, "mutation($v: String!) { upgradePlugin(name: \"codes\", version: $v) { version } }", json!({"v": version})).await;
        assert_eq!(ok(&r)["upgradePlugin"]["version"], version.as_str());
        assert_eq!(snapshot(&k, &b, &t).await, before, "a second run changed something");

        // The deprecated operations read the kernel's data.
        let r = k.gql(&b.owner, "{ codeProduct(sku: \"DEMO-WINE\") { sku name gtin } regions { code } cn: regions(parent: \"CN\") { code parent } \
            region(code: \"CN-SH\") { parent boundary } codeBatch(id: \"B1\") { lot activeCount product { sku gtin } } }", json!({})).await;
        let d = ok(&r);
        assert_eq!(d["codeProduct"], json!({"sku": "DEMO-WINE", "name": "Demo Red Wine 750ml", "gtin": "6901234567892"}));
        assert_eq!(d["regions"], json!([{"code": "CN"}]));
        assert_eq!(d["cn"], json!([{"code": "CN-GD", "parent": "CN"}, {"code": "CN-SH", "parent": "CN"}]));
        assert_eq!(d["region"]["boundary"], record(&f, "regions", "CN-SH")["data"]["boundary"]);
        assert_eq!(d["codeBatch"], json!({"lot": "DEMO-L1", "activeCount": 1000, "product": {"sku": "DEMO-WINE", "gtin": "6901234567892"}}));

        // A code the previous release printed still scans genuine, its
        // region found in the kernel's tree.
        let v = scan(&k, &b, &printed(&f, 1), SHENZHEN).await;
        assert_eq!((v["verdict"].as_str(), v["region"].as_str()), (Some("GENUINE"), Some("CN-GD")), "{v:#}");
        assert_eq!(v["product"]["name"], "Demo Red Wine 750ml");
        assert_eq!(v["codeId"], "B1/1");
        let v = scan(&k, &b, &printed(&f, 2), SHANGHAI).await;
        assert_eq!((v["verdict"].as_str(), v["region"].as_str()), (Some("GENUINE"), Some("CN-SH")), "{v:#}");

        // The brand adds Shenzhen under Guangdong the kernel's way, ships to
        // CN-GD: scanned in CN-GD-SZ is no diversion, in CN-SH it is.
        let r = k.gql(&b.owner, "mutation($n: [OrgNodeInput!]!) { upsertOrgNodes(nodes: $n) { created } }",
            json!({"n": [{"code": "CN-GD-SZ", "kind": "REGION", "name": "Shenzhen", "parentCode": "CN-GD", "boundary": square(113.7, 22.4, 114.6, 22.9)}]})).await;
        assert_eq!(ok(&r)["upsertOrgNodes"]["created"], 1);
        let r = k.gql(&b.owner, "mutation($i: CodeShipmentInput!) { createShipment(input: $i) { codes region } }",
            json!({"i": {"reference": "DN-1", "distributor": "D-GD-01", "region": "CN-GD", "ranges": [{"batch": "B1", "from": 10, "to": 20}]}})).await;
        assert_eq!(ok(&r)["createShipment"], json!({"codes": 11, "region": "CN-GD"}));
        let v = scan(&k, &b, &printed(&f, 10), SHENZHEN).await;
        assert_eq!((v["region"].as_str(), &v["diversion"]), (Some("CN-GD-SZ"), &Value::Null), "{v:#}");
        let v = scan(&k, &b, &printed(&f, 11), SHANGHAI).await;
        assert_eq!((v["diversion"]["scanRegion"].as_str(), v["diversion"]["allowedRegion"].as_str()), (Some("CN-SH"), Some("CN-GD")), "{v:#}");
        let r = k.gql(&b.owner, "query($d: String!) { scanReport(from: $d, to: $d, region: \"CN-GD\") { region scans } }",
            json!({"d": crate::codes::chrono_today()})).await;
        let mut regions: Vec<String> = ok(&r)["scanReport"].as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap().to_owned()).collect();
        regions.sort();
        assert_eq!(regions, ["CN-GD", "CN-GD-SZ"]);

        // Batches keep naming the SKU; a new one continues the numbering.
        let r = k.gql(&b.owner, "mutation { issueCodeBatch(product: \"DEMO-WINE\", lot: \"DEMO-L2\", quantity: 10) { id product { sku } } }", json!({})).await;
        assert_eq!(ok(&r)["issueCodeBatch"], json!({"id": "B2", "product": {"sku": "DEMO-WINE"}}));
    }

    async fn a_bad_old_region_is_named_and_nothing_is_migrated(kind) {
        let k = Kernel::start(kind).await;
        // A ring that does not close (codes' own check), and a boundary
        // codes 0.1 took but the kernel refuses (over 10,000 positions).
        let circle = |lon: f64, lat: f64| -> Value {
            let ring: Vec<Value> = (0..=6000)
                .map(|i| {
                    let a = (i % 6000) as f64 / 6000.0 * std::f64::consts::TAU;
                    json!([lon + 0.5 * a.cos(), lat + 0.5 * a.sin()])
                })
                .collect();
            json!([ring])
        };
        let cases = [
            ("CN-GD", json!({"type": "Polygon", "coordinates": [[[109.6, 20.2], [117.3, 20.2], [117.3, 25.5], [109.6, 25.5]]]}),
                "must end where it starts"),
            ("CN-SH", json!({"type": "MultiPolygon", "coordinates": [circle(121.0, 31.0), circle(122.0, 31.5)]}),
                "at most 10000 positions"),
        ];
        for (n, (bad, boundary, says)) in cases.into_iter().enumerate() {
            let mut f = fixture();
            for r in f["records"].as_array_mut().unwrap() {
                if r["collection"] == "regions" && r["key"] == bad {
                    r["data"]["boundary"] = boundary.clone();
                }
            }
            let (b, t) = tenant(&k, &format!("old-{n}")).await;
            load(&k, &t, &f).await;
            let before: Vec<_> = [codes_records(&k, &t, "products").await, codes_records(&k, &t, "regions").await, codes_records(&k, &t, "settings").await].concat();

            let r = enable_codes(&k, &b).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{r:#}");
            let message = r["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(&format!("old region {bad}")) && message.contains(says), "{message}");

            // Nothing half-migrated: no product, no node, codes not enabled,
            // the old records as they were.
            let r = k.gql(&b.owner, "{ products(first: 10) { edges { node { code } } } orgNodes(first: 10) { edges { node { code } } } plugins { name } }", json!({})).await;
            assert_eq!(ok(&r)["products"]["edges"], json!([]), "{bad}");
            assert_eq!(ok(&r)["orgNodes"]["edges"], json!([]), "{bad}");
            assert_eq!(ok(&r)["plugins"], json!([]), "{bad}");
            let after: Vec<_> = [codes_records(&k, &t, "products").await, codes_records(&k, &t, "regions").await, codes_records(&k, &t, "settings").await].concat();
            assert_eq!(after, before, "{bad}");
        }
    }
}
