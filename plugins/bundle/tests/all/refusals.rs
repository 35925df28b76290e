//! Bad input to the codes plugin: each gets its own verdict or a clear
//! error, and a refused operation changes nothing.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{SCAN, activate, code_of, scan_at, setup};
use crate::support::{Kernel, code, ok};

/// One row: a request and the error code it must get (message must mention `says`).
async fn check(k: &Kernel, key: &str, query: &str, vars: Value, expected: &str, says: &str) {
    let r = k.gql(key, query, vars.clone()).await;
    assert_eq!(code(&r), expected, "{query} {vars}: {r:#}");
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(says),
        "{query} {vars}: {message:?} should say {says:?}"
    );
    assert!(!message.to_lowercase().contains("sql"), "{message}");
}

on_both_backends! {
    async fn every_bad_code_gets_its_own_verdict(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let s = setup(&k, &b, 100).await;
        ok(&activate(&k, &b, &s.units).await);
        let (good, _) = code_of(&k, &b, &s.units, 7).await;
        let mut typo = good.clone().into_bytes();
        typo[12] = if typo[12] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        let mut forged = good.clone().into_bytes();
        // Same batch and serial, another tag, a valid check character.
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        let body = &forged[..29];
        let check = keel_codes_core::alphabet::PRINT_SAFE.check_char(body).unwrap();
        forged[29] = check;
        let forged = String::from_utf8(forged).unwrap();
        r#void(&k, &b, &s.units, 50, 60).await;
        let (voided, _) = code_of(&k, &b, &s.units, 55).await;
        for (text, verdict) in [
            ("hello world", "MALFORMED"),
            ("https://q.brand.cn/c/", "MALFORMED"),
            (typo.as_str(), "MISTYPED"),
            (forged.as_str(), "NOT_A_CODE"),
            (voided.as_str(), "VOIDED"),
            (good.as_str(), "GENUINE"),
        ] {
            let v = scan_at(&k, &b, text, None).await;
            assert_eq!(v["verdict"], verdict, "{text}: {v:#}");
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        for (vars, says) in [
            (json!({"c": ""}), "code"),
            (json!({"c": "x".repeat(600)}), "code"),
            (json!({"c": good, "l": {"lat": 91.0, "lon": 0.0}}), "latitude"),
            (json!({"c": good, "r": "XX-NOPE"}), "region"),
            (json!({"c": good, "r": "not a region"}), "region"),
        ] {
            let r = k.public(&b.slug, SCAN, vars.clone()).await;
            assert_eq!(code(&r), "BAD_USER_INPUT", "{vars}: {r:#}");
            assert!(r["errors"][0]["message"].as_str().unwrap().contains(says));
        }
    }

    async fn guessing_from_one_address_is_cut_off(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({"invalid_scans_per_hour": 3})).await;
        let s = setup(&k, &b, 10).await;
        ok(&activate(&k, &b, &s.units).await);
        let (good, _) = code_of(&k, &b, &s.units, 1).await;
        for i in 0..3 {
            let v = scan_at(&k, &b, &format!("guess-{i}"), None).await;
            assert_eq!(v["verdict"], "MALFORMED");
        }
        for text in ["guess-4", good.as_str()] {
            let r = k.public(&b.slug, SCAN, json!({"c": text})).await;
            assert_eq!(code(&r), "RATE_LIMITED", "even a good code, so guessing learns nothing");
        }
        // Genuine scans never count towards the limit.
        let other = k.brand("other", json!({"invalid_scans_per_hour": 1})).await;
        let s2 = setup(&k, &other, 10).await;
        ok(&activate(&k, &other, &s2.units).await);
        let (c, _) = code_of(&k, &other, &s2.units, 1).await;
        for _ in 0..3 {
            assert!(scan_at(&k, &other, &c, None).await["verdict"].as_str().unwrap().starts_with("GENUINE"));
        }
    }

    async fn a_retried_scan_is_counted_once(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let s = setup(&k, &b, 10).await;
        ok(&activate(&k, &b, &s.units).await);
        let (c, _) = code_of(&k, &b, &s.units, 2).await;
        let vars = json!({"c": c, "k": "page-load-1"});
        let first = ok(&k.public_as(&b.slug, Some("o-dana"), SCAN, vars.clone()).await)["scan"].clone();
        let retry = ok(&k.public_as(&b.slug, Some("o-dana"), SCAN, vars).await)["scan"].clone();
        assert_eq!(first, retry);
        assert_eq!(retry["scanCount"], 1);
        let next = ok(&k.public(&b.slug, SCAN, json!({"c": c})).await)["scan"].clone();
        assert_eq!(next["scanCount"], 2);
        // The identified consumer is a person of One ID, on the scan event.
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"wechat_openid\", value: \"o-dana\") { id } \
            events(filter: {types: [\"code.scanned\"]}) { edges { node { personId } } } }", json!({})).await;
        let person = ok(&r)["personByIdentifier"]["id"].clone();
        assert_eq!(ok(&r)["events"]["edges"][0]["node"]["personId"], person);
        assert_eq!(ok(&r)["events"]["edges"].as_array().unwrap().len(), 2);
    }

    async fn refused_operations_say_why_and_change_nothing(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let o = &b.owner;
        let s = setup(&k, &b, 100).await;
        let issue = "mutation($p: String!, $l: String!, $q: Int!, $f: CodeFormat, $pd: String, $ed: String) { \
            issueCodeBatch(product: $p, lot: $l, quantity: $q, format: $f, productionDate: $pd, expiryDate: $ed) { id } }";
        let batch = |p: &str, q: i64| json!({"p": p, "l": "L1", "q": q});
        for (vars, expected, says) in [
            (batch("WINE-750", 0), "BAD_USER_INPUT", "quantity"),
            (batch("WINE-750", 16_777_216), "BAD_USER_INPUT", "quantity"),
            (batch("NOPE", 10), "NOT_FOUND", "NOPE"),
            (json!({"p": "WINE-750", "l": "", "q": 10}), "BAD_USER_INPUT", "lot"),
            (json!({"p": "WINE-750", "l": "L1", "q": 10, "pd": "2026-13-01"}), "BAD_USER_INPUT", "productionDate"),
            (json!({"p": "WINE-750", "l": "L1", "q": 10, "pd": "2026-11-02", "ed": "2026-11-01"}), "BAD_USER_INPUT", "expiryDate"),
            (json!({"p": "WINE-750", "l": "A-LOT-NUMBER-LONGER-THAN-20", "q": 10, "f": "GS1_DIGITAL_LINK"}), "BAD_USER_INPUT", "lot"),
        ] {
            check(&k, o, issue, vars, expected, says).await;
        }
        let product = "mutation($s: String!, $g: String) { createCodeProduct(sku: $s, name: \"n\", gtin: $g) { sku } }";
        check(&k, o, product, json!({"s": "WINE-750"}), "CONFLICT", "WINE-750").await;
        check(&k, o, product, json!({"s": "OK-1", "g": "6901234567891"}), "BAD_USER_INPUT", "gtin").await;
        check(&k, o, product, json!({"s": "bad sku!"}), "BAD_USER_INPUT", "sku").await;
        let r = k.gql(o, product, json!({"s": "PLAIN"})).await;
        ok(&r);
        check(&k, o, issue, json!({"p": "PLAIN", "l": "L1", "q": 10, "f": "GS1_DIGITAL_LINK"}), "BAD_USER_INPUT", "GTIN").await;

        // Activation and voids.
        let act = "mutation($b: String!, $f: Int, $t: Int) { activateCodes(batch: $b, from: $f, to: $t) { activeCount } }";
        check(&k, o, act, json!({"b": s.units, "f": 0, "t": 10}), "BAD_USER_INPUT", "range").await;
        check(&k, o, act, json!({"b": s.units, "f": 1, "t": 101}), "BAD_USER_INPUT", "range").await;
        check(&k, o, act, json!({"b": "B999"}), "NOT_FOUND", "B999").await;
        check(&k, o, act, json!({"b": "batch-1"}), "BAD_USER_INPUT", "batch").await;
        ok(&k.gql(o, act, json!({"b": s.units, "f": 1, "t": 50})).await);
        check(&k, o, act, json!({"b": s.units, "f": 40, "t": 60}), "ALREADY_ACTIVE", "40..50").await;
        r#void(&k, &b, &s.units, 90, 100).await;
        check(&k, o, act, json!({"b": s.units, "f": 51, "t": 100}), "CODE_VOIDED", "90..100").await;
        let void = "mutation($b: String!, $f: Int!, $t: Int!, $r: String!) { voidCodes(batch: $b, from: $f, to: $t, reason: $r) { voidedCount } }";
        check(&k, o, void, json!({"b": s.units, "f": 95, "t": 99, "r": "again"}), "ALREADY_VOIDED", "95..99").await;
        check(&k, o, void, json!({"b": s.units, "f": 1, "t": 2, "r": " "}), "BAD_USER_INPUT", "reason").await;
        let r = k.gql(o, "query($b: String!) { codeBatch(id: $b) { activeCount voidedCount activated { from to } } }", json!({"b": s.units})).await;
        assert_eq!(ok(&r)["codeBatch"], json!({"activeCount": 50, "voidedCount": 11, "activated": [{"from": 1, "to": 50}]}));

        // Packing.
        ok(&activate(&k, &b, &s.cases).await);
        let (case1, _) = code_of(&k, &b, &s.cases, 1).await;
        let (case2, _) = code_of(&k, &b, &s.cases, 2).await;
        let (unit1, _) = code_of(&k, &b, &s.units, 1).await;
        let (unit95, _) = code_of(&k, &b, &s.units, 95).await;
        let pack = "mutation($p: String!, $c: [String!], $r: [SerialRangeInput!]) { aggregateCodes(parent: $p, children: $c, ranges: $r) { children } }";
        check(&k, o, pack, json!({"p": unit1, "c": [case1]}), "BAD_USER_INPUT", "cannot go into").await;
        check(&k, o, pack, json!({"p": case1, "c": [case2]}), "BAD_USER_INPUT", "cannot go into").await;
        check(&k, o, pack, json!({"p": case1, "c": [unit95]}), "CODE_VOIDED", "voided").await;
        check(&k, o, pack, json!({"p": case1}), "BAD_USER_INPUT", "at least one").await;
        check(&k, o, pack, json!({"p": case1, "c": ["nonsense"]}), "BAD_USER_INPUT", "children[0]").await;
        ok(&k.gql(o, pack, json!({"p": case1, "r": [{"batch": s.units, "from": 1, "to": 10}]})).await);
        // A child already packed: refused, and the other child of the call is not packed either.
        let (unit20, _) = code_of(&k, &b, &s.units, 20).await;
        check(&k, o, pack, json!({"p": case2, "c": [unit20, unit1]}), "ALREADY_AGGREGATED", "already packed").await;
        check(&k, o, pack, json!({"p": case2, "r": [{"batch": s.units, "from": 5, "to": 15}]}), "ALREADY_AGGREGATED", "5..10").await;
        let r = k.gql(o, "query($c: String!) { traceCode(code: $c) { parents { codeId } } }", json!({"c": unit20})).await;
        assert_eq!(ok(&r)["traceCode"]["parents"], json!([]), "the refused call packed nothing");
        let unpack = "mutation($p: String!, $c: [String!]) { disaggregateCodes(parent: $p, children: $c) { children } }";
        check(&k, o, unpack, json!({"p": case2}), "NOT_AGGREGATED", "holds nothing").await;
        check(&k, o, unpack, json!({"p": case1, "c": [unit20]}), "NOT_AGGREGATED", "not packed").await;
        let r = k.gql(o, unpack, json!({"p": case1})).await;
        assert_eq!(ok(&r)["disaggregateCodes"]["children"], 10);

        // Regions.
        let region = "mutation($c: String!, $b: JSON) { defineRegion(code: $c, name: \"x\", boundary: $b) { code } }";
        check(&k, o, region, json!({"c": "JP-13"}), "BAD_USER_INPUT", "parent JP").await;
        check(&k, o, region, json!({"c": "cn-gd"}), "BAD_USER_INPUT", "region code").await;
        check(&k, o, region, json!({"c": "CN-ZJ", "b": {"type": "Point", "coordinates": [1, 2]}}), "BAD_USER_INPUT", "Polygon").await;

        // Shipments: voided, inactive, unknown region, empty; nothing bound after a refusal.
        let ship = "mutation($i: CodeShipmentInput!) { createShipment(input: $i) { id codes } }";
        let (unit60, _) = code_of(&k, &b, &s.units, 60).await;
        let (unit30, _) = code_of(&k, &b, &s.units, 30).await;
        let shipment = |codes: Value| json!({"i": {"reference": "DN-9", "distributor": "D1", "region": "CN-GD", "codes": codes}});
        check(&k, o, ship, shipment(json!([unit30, unit95])), "CODE_VOIDED", "voided").await;
        check(&k, o, ship, shipment(json!([unit60])), "NOT_ACTIVATED", "not activated").await;
        check(&k, o, ship, json!({"i": {"reference": "DN-9", "distributor": "D1", "region": "CN-XX", "codes": [unit30]}}), "BAD_USER_INPUT", "CN-XX").await;
        check(&k, o, ship, shipment(json!([])), "BAD_USER_INPUT", "at least one").await;
        check(&k, o, ship, json!({"i": {"reference": "DN-9", "distributor": "D1", "region": "CN-GD",
            "ranges": [{"batch": s.units, "from": 40, "to": 60}]}}), "NOT_ACTIVATED", "40..60").await;
        let r = k.gql(o, ship, shipment(json!([unit30]))).await;
        assert_eq!(ok(&r)["createShipment"]["codes"], 1, "unit 30 was not bound by the refused calls");
        let id = ok(&r)["createShipment"]["id"].clone();
        check(&k, o, ship, shipment(json!([unit1])), "CONFLICT", "DN-9").await;
        check(&k, o, ship, json!({"i": {"reference": "DN-10", "distributor": "D1", "region": "CN-GD",
            "ranges": [{"batch": s.units, "from": 25, "to": 35}]}}), "ALREADY_SHIPPED", "30..30").await;
        let cancel = "mutation($id: String!) { cancelShipment(id: $id) { status } }";
        let r = k.gql(o, cancel, json!({"id": id})).await;
        assert_eq!(ok(&r)["cancelShipment"]["status"], "cancelled");
        check(&k, o, cancel, json!({"id": id}), "ALREADY_CANCELLED", "cancelled").await;
        check(&k, o, cancel, json!({"id": "SH999999"}), "NOT_FOUND", "SH999999").await;

        // Downloads and reports.
        let (status, body) = k.download(o, "/files/codes/print-file", json!({"batch": s.units, "from": 5, "to": 1})).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = k.download(o, "/files/codes/print-file", json!({"batch": "B77"})).await;
        assert_eq!(status, 404);
        let (status, _) = k.download(o, "/files/codes/epcis", json!({"sku": "WINE-750", "lot": "NOPE"})).await;
        assert_eq!(status, 404);
        let report = "query($f: String!, $t: String!) { scanReport(from: $f, to: $t) { scans } }";
        check(&k, o, report, json!({"f": "2026-11-30", "t": "2026-11-01"}), "BAD_USER_INPUT", "from").await;
        check(&k, o, report, json!({"f": "2026-01-01", "t": "2026-12-31"}), "BAD_USER_INPUT", "92 days").await;
        check(&k, o, report, json!({"f": "yesterday", "t": "2026-12-31"}), "BAD_USER_INPUT", "from").await;
    }
}

async fn r#void(k: &Kernel, b: &crate::support::Brand, batch: &str, from: u32, to: u32) {
    let r = k
        .gql(&b.owner, "mutation($b: String!, $f: Int!, $t: Int!) { voidCodes(batch: $b, from: $f, to: $t, reason: \"damaged roll\") { voidedCount } }",
            json!({"b": batch, "f": from, "t": to}))
        .await;
    ok(&r);
}

on_both_backends! {
    async fn degenerate_and_crossing_region_boundaries_are_refused_and_nothing_is_stored(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let o = &b.owner;
        let define = "mutation($c: String!, $b: JSON) { defineRegion(code: $c, name: \"x\", boundary: $b) { code } }";
        let square = json!({"type": "Polygon", "coordinates": [[[113, 22], [115, 22], [115, 23], [113, 23], [113, 22]]]});
        ok(&k.gql(o, define, json!({"c": "CN"})).await);
        ok(&k.gql(o, define, json!({"c": "CN-GD", "b": square})).await);
        let polygon = |ring: Value| json!({"type": "Polygon", "coordinates": [ring]});
        let circle: Vec<Value> = (0..=10_000)
            .map(|i| {
                let a = (i % 10_000) as f64 / 10_000.0 * std::f64::consts::TAU;
                json!([114.0 + a.cos(), 22.5 + a.sin()])
            })
            .collect();
        for (boundary, says) in [
            (
                polygon(json!([[113, 22], [115, 23], [115, 22], [113, 23], [113, 22]])),
                "boundary: ring coordinates[0] (the outer ring): the ring crosses itself",
            ),
            (
                json!({"type": "MultiPolygon", "coordinates": [
                    [[[100, 0], [101, 0], [101, 1], [100, 1], [100, 0]]],
                    [[[113, 22], [115, 22], [115, 23], [113, 23], [113, 22]],
                     [[113.5, 22.2], [114, 22.8], [114, 22.2], [113.5, 22.8], [113.5, 22.2]]]
                ]}),
                "ring coordinates[1][1] (a hole): the ring crosses itself",
            ),
            (polygon(json!([[113, 22], [115, 22], [113, 22]])), "at least four positions, this one has 3"),
            (polygon(json!([[113, 22], [115, 22], [115, 23], [113, 23]])), "must end where it starts"),
            (polygon(json!([[113, 22], [114, 22], [115, 22], [113, 22]])), "encloses no area"),
            (polygon(json!([[113, 22], [113, 22], [113, 22], [113, 22]])), "at least three distinct vertices"),
            (polygon(json!([[113, 22], [181, 22], [115, 23], [113, 22]])), "coordinates[0][1]: longitude 181 is outside -180..180"),
            (polygon(json!([[113, 22], [115, -91], [115, 23], [113, 22]])), "coordinates[0][1]: latitude -91 is outside -90..90"),
            (polygon(Value::Array(circle)), "at most 10000 vertices, this one has 10001"),
        ] {
            // Neither a new region nor a new boundary for an existing one.
            check(&k, o, define, json!({"c": "CN-ZJ", "b": boundary}), "BAD_USER_INPUT", says).await;
            check(&k, o, define, json!({"c": "CN-GD", "b": boundary}), "BAD_USER_INPUT", says).await;
        }
        let r = k.gql(o, "{ region(code: \"CN-ZJ\") { code } regions(parent: \"CN\") { code boundary } }", json!({})).await;
        assert_eq!(ok(&r)["region"], Value::Null, "nothing stored");
        assert_eq!(ok(&r)["regions"], json!([{"code": "CN-GD", "boundary": square}]), "the old boundary stands");
    }
}

/// The codes plugin's config is checked before it is enabled: a scan URL
/// that is not http(s), does not end in '/', or is too long to print is
/// refused with the field, and the plugin stays disabled until a good one.
#[tokio::test]
async fn a_scan_url_that_cannot_be_printed_is_refused_at_enable() {
    let k = Kernel::start(keel_core::Backend::Sqlite).await;
    let b = k.brand("acme", json!({})).await;
    let disable = "mutation { disablePlugin(name: \"codes\") { enabled } }";
    ok(&k.gql(&b.owner, disable, json!({})).await);
    let enable = "mutation($i: EnablePluginInput!) { enablePlugin(input: $i) { enabled } }";
    let with = |url: String| json!({"i": {"name": "codes", "capabilities": crate::support::CODES_GRANTS, "config": {"scan_base_url": url}}});
    let long = format!("https://scan.example.com/{}/", "a".repeat(490));
    assert_eq!(long.len(), 516);
    for bad in [
        long,
        "https://scan.example.com/c".into(),
        "ftp://scan.example.com/".into(),
        "https://scan.example.com/\u{0}/".into(),
        "https://scan.example.com/a,b/".into(),
        "https://scan.example.com/\"/".into(),
    ] {
        let r = k.gql(&b.owner, enable, with(bad.clone())).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{bad:?}: {r}");
        // A NUL byte is refused by the gateway before any schema, in any field.
        if !bad.contains('\0') {
            assert_eq!(r["errors"][0]["extensions"]["field"], "config", "{r}");
        }
    }
    let r = k
        .gql(&b.owner, "{ plugins { name enabled } }", json!({}))
        .await;
    assert!(
        !ok(&r)["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "codes" && p["enabled"] == true),
        "{r}"
    );
    let good = format!("https://scan.example.com/{}/", "a".repeat(486));
    assert_eq!(good.len(), 512);
    let r = k.gql(&b.owner, enable, with(good)).await;
    assert_eq!(ok(&r)["enablePlugin"]["enabled"], true, "{r}");
}
