//! The codes plugin end to end over real HTTP: issue → print file →
//! activate → pack → ship → scan inside and outside the region → trace →
//! reports → EPCIS, and who may read what.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{Brand, Kernel, code, ok};

pub const SCAN: &str = "mutation($c: String!, $l: ScanLocationInput, $r: String, $i: [ScanIdentifierInput!], $k: String) { \
    scan(code: $c, location: $l, region: $r, identifiers: $i, idempotencyKey: $k) { verdict message scanId scanCount codeId \
    firstScan { at region } product { sku name } lot region diversion { scanRegion allowedRegion shipment reference distributor } } }";

/// Rectangles as GeoJSON polygons: [lon, lat] corners.
pub fn square(lon0: f64, lat0: f64, lon1: f64, lat1: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]})
}

pub const SHENZHEN: (f64, f64) = (22.54, 114.06);
pub const SHANGHAI: (f64, f64) = (31.23, 121.47);

/// A brand's catalogue: a product, unit/case/pallet batches, regions.
pub struct Setup {
    pub units: String,
    pub cases: String,
    pub pallets: String,
}

pub async fn setup(k: &Kernel, b: &Brand, units: u32) -> Setup {
    let r = k.gql(&b.owner, "mutation { createCodeProduct(sku: \"WINE-750\", name: \"Red Wine 750ml\", gtin: \"6901234567892\") { sku gtin } }", json!({})).await;
    assert_eq!(ok(&r)["createCodeProduct"]["gtin"], "6901234567892");
    let issue = "mutation($q: Int!, $l: PackagingLevel) { issueCodeBatch(product: \"WINE-750\", lot: \"L2611\", quantity: $q, level: $l, \
        productionDate: \"2026-11-01\", expiryDate: \"2031-11-01\") { id quantity level activeCount } }";
    let mut ids = Vec::new();
    for (q, level) in [(units, "UNIT"), (50, "CASE"), (5, "PALLET")] {
        let r = k.gql(&b.owner, issue, json!({"q": q, "l": level})).await;
        assert_eq!(ok(&r)["issueCodeBatch"]["activeCount"], 0);
        ids.push(ok(&r)["issueCodeBatch"]["id"].as_str().unwrap().to_owned());
    }
    for (code, name, boundary) in [
        ("CN", "China", Value::Null),
        ("CN-GD", "Guangdong", square(109.6, 20.2, 117.3, 25.5)),
        ("CN-GD-SZ", "Shenzhen", square(113.7, 22.4, 114.6, 22.9)),
        ("CN-SH", "Shanghai", square(120.8, 30.6, 122.2, 31.9)),
    ] {
        let r = k.gql(&b.owner, "mutation($c: String!, $n: String!, $b: JSON) { defineRegion(code: $c, name: $n, boundary: $b) { code parent } }",
            json!({"c": code, "n": name, "b": boundary})).await;
        assert_eq!(ok(&r)["defineRegion"]["code"], code);
    }
    let (pallets, cases, units) = (ids.pop().unwrap(), ids.pop().unwrap(), ids.pop().unwrap());
    Setup {
        units,
        cases,
        pallets,
    }
}

/// The code and URL of one serial (the reprint operation).
pub async fn code_of(k: &Kernel, b: &Brand, batch: &str, serial: u32) -> (String, String) {
    let r = k
        .gql(
            &b.owner,
            "mutation($b: String!, $s: Int!) { reprintCode(batch: $b, serial: $s) { code url } }",
            json!({"b": batch, "s": serial}),
        )
        .await;
    let c = &ok(&r)["reprintCode"];
    (
        c["code"].as_str().unwrap().to_owned(),
        c["url"].as_str().unwrap().to_owned(),
    )
}

pub async fn activate(k: &Kernel, b: &Brand, batch: &str) -> Value {
    k.gql(
        &b.owner,
        "mutation($b: String!) { activateCodes(batch: $b) { activeCount activated { from to } } }",
        json!({"b": batch}),
    )
    .await
}

pub async fn scan_at(k: &Kernel, b: &Brand, text: &str, at: Option<(f64, f64)>) -> Value {
    let l = at.map(|(lat, lon)| json!({"lat": lat, "lon": lon}));
    let r = k.public(&b.slug, SCAN, json!({"c": text, "l": l})).await;
    ok(&r)["scan"].clone()
}

on_both_backends! {
    async fn issue_export_activate_pack_ship_scan_and_trace(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let s = setup(&k, &b, 1000).await;

        // The print file: a header and one row per serial, every code distinct.
        let (status, csv) = k.download(&b.owner, "/files/codes/print-file", json!({"batch": s.units})).await;
        assert_eq!(status, 200, "{csv}");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert_eq!(lines[0], "serial,code,url");
        let mut seen = std::collections::HashSet::new();
        for (i, line) in lines[1..].iter().enumerate() {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols[0], (i + 1).to_string());
            assert_eq!(cols[1].len(), keel_codes_core::CODE_LEN);
            assert_eq!(cols[2], k.url(&format!("/t/acme/p/codes/c/{}", cols[1])));
            assert!(seen.insert(cols[1].to_owned()), "duplicate code {}", cols[1]);
        }
        let row = |serial: usize| lines[serial].split(',').nth(1).unwrap().to_owned();
        assert_eq!(code_of(&k, &b, &s.units, 3).await.0, row(3), "a reprint is the printed code");

        // Before activation a printed code is worthless.
        let v = scan_at(&k, &b, &row(3), None).await;
        assert_eq!(v["verdict"], "NOT_ACTIVATED");
        for batch in [&s.units, &s.cases, &s.pallets] {
            let r = activate(&k, &b, batch).await;
            assert!(ok(&r)["activateCodes"]["activeCount"].as_u64().unwrap() > 0);
        }

        // Pack units 1-24 and unit 100 into case 1, case 1 onto pallet 1.
        let (case1, _) = code_of(&k, &b, &s.cases, 1).await;
        let (pallet1, _) = code_of(&k, &b, &s.pallets, 1).await;
        let pack = "mutation($p: String!, $c: [String!], $r: [SerialRangeInput!]) { aggregateCodes(parent: $p, children: $c, ranges: $r) { parent children eventId } }";
        let r = k.gql(&b.owner, pack, json!({"p": case1, "c": [row(100)], "r": [{"batch": s.units, "from": 1, "to": 24}]})).await;
        assert_eq!(ok(&r)["aggregateCodes"]["children"], 25);
        let r = k.gql(&b.owner, pack, json!({"p": pallet1, "c": [case1]})).await;
        assert_eq!(ok(&r)["aggregateCodes"]["parent"], format!("{}/1", s.pallets));

        // Shipping the pallet ships everything on it; a retry is the same shipment.
        let ship = "mutation($i: CodeShipmentInput!) { createShipment(input: $i) { id reference region codes status } }";
        let dn1 = json!({"reference": "DN-1", "distributor": "D-GD-01", "distributorName": "Guangdong Wines", "region": "CN-GD", "codes": [pallet1]});
        let r = k.gql(&b.owner, ship, json!({"i": dn1})).await;
        let shipment = ok(&r)["createShipment"].clone();
        assert_eq!(shipment["codes"], 25);
        let r = k.gql(&b.owner, ship, json!({"i": dn1})).await;
        assert_eq!(ok(&r)["createShipment"]["id"], shipment["id"]);
        let r = k.gql(&b.owner, ship, json!({"i": {"reference": "DN-2", "distributor": "D-SH-01", "region": "CN-SH",
            "ranges": [{"batch": s.units, "from": 200, "to": 299}]}})).await;
        assert_eq!(ok(&r)["createShipment"]["codes"], 100);

        // A consumer in Shenzhen scans unit 3 (in case 1, on pallet 1): genuine, first scan.
        let first = scan_at(&k, &b, lines[3].split(',').nth(2).unwrap(), Some(SHENZHEN)).await;
        assert_eq!(first["verdict"], "GENUINE", "{first:#}");
        assert_eq!(first["scanCount"], 1);
        assert_eq!(first["region"], "CN-GD-SZ");
        assert_eq!(first["diversion"], Value::Null);
        assert_eq!(first["product"]["name"], "Red Wine 750ml");
        assert_eq!(first["codeId"], format!("{}/3", s.units));
        // The same unit scanned in Shanghai: scanned before, and diverted.
        let display = keel_codes_core::display(&row(3)).to_lowercase();
        let again = scan_at(&k, &b, &display, Some(SHANGHAI)).await;
        assert_eq!(again["verdict"], "GENUINE_SCANNED_BEFORE");
        assert_eq!(again["scanCount"], 2);
        assert_eq!(again["firstScan"]["region"], "CN-GD-SZ");
        assert!(again["message"].as_str().unwrap().contains("scanned 1 time before"));
        assert_eq!(again["diversion"], json!({"scanRegion": "CN-SH", "allowedRegion": "CN-GD",
            "shipment": shipment["id"], "reference": "DN-1", "distributor": "D-GD-01"}));
        // A unit of the Shanghai range scanned in Shanghai is fine; one never shipped has nothing to divert.
        assert_eq!(scan_at(&k, &b, &row(250), Some(SHANGHAI)).await["diversion"], Value::Null);
        let loose = scan_at(&k, &b, &row(500), Some(SHANGHAI)).await;
        assert_eq!((loose["verdict"].as_str(), &loose["diversion"]), (Some("GENUINE"), &Value::Null));
        // A region given by name instead of coordinates.
        let r = k.public(&b.slug, SCAN, json!({"c": row(4), "r": "CN-SH"})).await;
        assert_eq!(ok(&r)["scan"]["diversion"]["scanRegion"], "CN-SH");

        // The trace of unit 3.
        let r = k.gql(&b.owner, "query($c: String!) { traceCode(code: $c) { codeId level state serial parents { codeId level } \
            shipment { id reference region } shippedVia scanCount firstScan { region } scans { verdict region diversion { scanRegion } } \
            batch { id lot product { sku } } } }", json!({"c": row(3)})).await;
        let t = &ok(&r)["traceCode"];
        assert_eq!(t["state"], "active");
        assert_eq!(t["parents"], json!([{"codeId": format!("{}/1", s.cases), "level": "CASE"}, {"codeId": format!("{}/1", s.pallets), "level": "PALLET"}]));
        assert_eq!(t["shipment"]["reference"], "DN-1");
        assert_eq!(t["shippedVia"], format!("{}/1", s.pallets));
        assert_eq!(t["scanCount"], 2);
        assert_eq!(t["firstScan"]["region"], "CN-GD-SZ");
        let verdicts: Vec<&str> = t["scans"].as_array().unwrap().iter().map(|s| s["verdict"].as_str().unwrap()).collect();
        assert_eq!(verdicts, ["NOT_ACTIVATED", "GENUINE", "GENUINE_SCANNED_BEFORE"]);
        assert_eq!(t["scans"][2]["diversion"]["scanRegion"], "CN-SH");
        let r = k.gql(&b.owner, "query($c: String!) { traceCode(code: $c) { children childRanges { batch from to } } }", json!({"c": case1})).await;
        assert_eq!(ok(&r)["traceCode"]["children"], json!([format!("{}/100", s.units)]));
        assert_eq!(ok(&r)["traceCode"]["childRanges"], json!([{"batch": s.units, "from": 1, "to": 24}]));

        // Reports: the day's scans, the diversion alerts, figures per region.
        let today = chrono_today();
        let r = k.gql(&b.owner, "query($d: String!) { codeScans(day: $d) { scans { codeId verdict } next } diversionAlerts(day: $d) { scans { codeId diversion { allowedRegion } } } }", json!({"d": today})).await;
        assert_eq!(ok(&r)["codeScans"]["scans"].as_array().unwrap().len(), 6);
        let alerts = ok(&r)["diversionAlerts"]["scans"].as_array().unwrap().clone();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert_eq!(alerts[0]["diversion"]["allowedRegion"], "CN-GD");
        let r = k.gql(&b.owner, "query($d: String!) { scanReport(from: $d, to: $d) { region scans firstScans diversions lot } }", json!({"d": today})).await;
        let rows = ok(&r)["scanReport"].as_array().unwrap().clone();
        let sh = rows.iter().find(|r| r["region"] == "CN-SH").unwrap();
        assert_eq!((sh["scans"].as_i64(), sh["firstScans"].as_i64(), sh["diversions"].as_i64()), (Some(4), Some(3), Some(2)));
        let r = k.gql(&b.owner, "query($d: String!) { scanReport(from: $d, to: $d, region: \"CN-GD\") { region scans } }", json!({"d": today})).await;
        assert_eq!(ok(&r)["scanReport"], json!([{"region": "CN-GD-SZ", "scans": 1}]));
        // Before activation's scan is recorded too, under no region.
        let r = k.gql(&b.owner, "query($d: String!) { scanReport(from: $d, to: $d, sku: \"WINE-750\", lot: \"L2611\") { region scans } }", json!({"d": today})).await;
        assert!(ok(&r)["scanReport"].as_array().unwrap().iter().any(|r| r["region"] == "-"));

        // Each scan is an event other plugins subscribe to.
        let r = k.gql(&b.owner, "{ events(filter: {types: [\"code.scanned\"]}) { edges { node { producer payload } } } }", json!({})).await;
        let edges = ok(&r)["events"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), 6);
        assert_eq!(edges[0]["node"]["producer"], "codes");
        assert!(!edges.iter().any(|e| e.to_string().contains(&row(3))), "events never carry the secret code");

        // The lot's EPCIS 2.0 document.
        let (status, doc) = k.download(&b.owner, "/files/codes/epcis", json!({"sku": "WINE-750", "lot": "L2611"})).await;
        assert_eq!(status, 200, "{doc}");
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(doc["type"], "EPCISDocument");
        let kinds: Vec<String> = doc["epcisBody"]["eventList"].as_array().unwrap().iter()
            .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["bizStep"].as_str().unwrap())).collect();
        assert_eq!(kinds, ["ObjectEvent commissioning", "ObjectEvent commissioning", "ObjectEvent commissioning",
            "AggregationEvent packing", "AggregationEvent packing", "ObjectEvent shipping", "ObjectEvent shipping"]);
        assert!(!doc.to_string().contains(&row(3)), "EPCIS names codes by their public ids");
    }

    async fn an_erp_key_reads_scans_and_reports_and_nothing_else(kind) {
        let k = Kernel::start(kind).await;
        let b = k.brand("acme", json!({})).await;
        let s = setup(&k, &b, 10).await;
        ok(&activate(&k, &b, &s.units).await);
        let (c, _) = code_of(&k, &b, &s.units, 1).await;
        scan_at(&k, &b, &c, Some(SHENZHEN)).await;
        let erp = k.key(&b, &["integration"], &["plugin.codes:read"]).await;
        let today = chrono_today();
        let r = k.gql(&erp, "query($d: String!) { codeScans(day: $d) { scans { codeId region } } scanReport(from: $d, to: $d) { scans } }", json!({"d": today})).await;
        assert_eq!(ok(&r)["codeScans"]["scans"][0]["region"], "CN-GD-SZ");
        assert_eq!(ok(&r)["scanReport"][0]["scans"], 1);
        for write in [
            "mutation { createCodeProduct(sku: \"X\", name: \"x\") { sku } }",
            "mutation { reprintCode(batch: \"B1\", serial: 1) { code } }",
            "mutation { activateCodes(batch: \"B1\") { id } }",
        ] {
            let r = k.gql(&erp, write, json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{write}");
        }
        let r = k.gql(&erp, "{ personByIdentifier(kind: \"phone\", value: \"+86 138 0000 0001\") { id } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let (status, body) = k.download(&erp, "/files/codes/print-file", json!({"batch": s.units})).await;
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains(&c));
        // An analyst reads but cannot print codes either.
        let analyst = k.key(&b, &["analyst"], &[]).await;
        assert_eq!(k.download(&analyst, "/files/codes/print-file", json!({"batch": s.units})).await.0, 403);
        assert_eq!(k.download(&analyst, "/files/codes/epcis", json!({"sku": "WINE-750", "lot": "L2611"})).await.0, 200);
    }

    async fn another_brands_code_is_not_a_code_here(kind) {
        let k = Kernel::start(kind).await;
        let a = k.brand("acme", json!({})).await;
        let other = k.brand("other", json!({})).await;
        let s = setup(&k, &a, 10).await;
        setup(&k, &other, 10).await;
        ok(&activate(&k, &a, &s.units).await);
        ok(&activate(&k, &other, &s.units).await);
        let (c, url) = code_of(&k, &a, &s.units, 1).await;
        let v = scan_at(&k, &other, &c, None).await;
        assert_eq!(v["verdict"], "NOT_A_CODE");
        assert_eq!(v["product"], Value::Null);
        assert_eq!(scan_at(&k, &other, &url, None).await["verdict"], "NOT_A_CODE");
        let r = k.gql(&other.owner, "query($c: String!) { traceCode(code: $c) { codeId } }", json!({"c": c})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(!r.to_string().contains("acme"));
        // The same code at its own brand is genuine.
        assert_eq!(scan_at(&k, &a, &url, None).await["verdict"], "GENUINE");
    }
}

pub fn chrono_today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

on_both_backends! {
    async fn concurrent_packings_and_shipments_of_the_same_codes_never_both_succeed(kind) {
        let k = std::sync::Arc::new(Kernel::start(kind).await);
        let b = k.brand("acme", json!({})).await;
        let s = setup(&k, &b, 200).await;
        for batch in [&s.units, &s.cases] {
            assert!(ok(&activate(&k, &b, batch).await)["activateCodes"]["activeCount"].as_u64().unwrap() > 0);
        }
        // Eight overlapping ranges of units into eight cases, all at once:
        // "not packed yet" is a read, so only one-at-a-time keeps a unit
        // from ending up in two cases.
        let pack = "mutation($p: String!, $r: [SerialRangeInput!]) { aggregateCodes(parent: $p, ranges: $r) { children } }";
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let (k, owner, units) = (k.clone(), b.owner.clone(), s.units.clone());
            let (case, _) = code_of(&k, &b, &s.cases, i + 1).await;
            tasks.push(tokio::spawn(async move {
                let r = k.gql(&owner, pack, json!({"p": case, "r": [{"batch": units, "from": 1 + 3 * i, "to": 10 + 3 * i}]})).await;
                (i, r)
            }));
        }
        let mut packed: Vec<(u32, u32)> = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            if r.get("errors").is_some() {
                assert_eq!(code(&r), "ALREADY_AGGREGATED", "{r:#}");
            } else {
                packed.push((1 + 3 * i, 10 + 3 * i));
            }
        }
        assert!(!packed.is_empty(), "no packing succeeded");
        for (n, a) in packed.iter().enumerate() {
            for other in &packed[n + 1..] {
                assert!(a.1 < other.0 || other.1 < a.0, "units {a:?} and {other:?} were both packed");
            }
        }
        // Four shipments under one delivery-note reference, other codes
        // each, at once: one shipment holds the reference.
        let ship = "mutation($i: CodeShipmentInput!) { createShipment(input: $i) { id } }";
        let mut tasks = Vec::new();
        for i in 0..4u32 {
            let (k, owner, units) = (k.clone(), b.owner.clone(), s.units.clone());
            tasks.push(tokio::spawn(async move {
                let input = json!({"reference": "DN-9", "distributor": "D-1", "region": "CN-GD",
                    "ranges": [{"batch": units, "from": 101 + 10 * i, "to": 110 + 10 * i}]});
                k.gql(&owner, ship, json!({"i": input})).await
            }));
        }
        let mut shipped = 0;
        for t in tasks {
            let r = t.await.unwrap();
            if r.get("errors").is_some() {
                assert_eq!(code(&r), "CONFLICT", "{r:#}");
            } else {
                shipped += 1;
            }
        }
        assert_eq!(shipped, 1, "one reference, one shipment");
    }
}

/// The print file derives its codes many at a time, hashing through the
/// kernel (`keel:plugin/crypto`): every row must hold the code that the
/// one-at-a-time derivation (a reprint) gives its serial, in both formats,
/// across chunks and for a sub-range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_files_hold_each_serials_code_in_both_formats_across_chunks() {
    let k = Kernel::start(keel_core::Backend::Sqlite).await;
    let b = k.brand("acme", json!({})).await;
    let r = k.gql(&b.owner, "mutation { createCodeProduct(sku: \"WINE-750\", name: \"Red Wine\", gtin: \"6901234567892\") { sku } }", json!({})).await;
    ok(&r);
    let issue = "mutation($q: Int!, $f: CodeFormat) { issueCodeBatch(product: \"WINE-750\", lot: \"L 1/2\", quantity: $q, format: $f) { id } }";
    // 40,000 rows are about 2.8 MB: the file comes in four chunks (the
    // gateway fetching two at a time), the last one shorter.
    let n = 40_000usize;
    for format in ["DEFAULT", "GS1_DIGITAL_LINK"] {
        let r = k.gql(&b.owner, issue, json!({"q": n, "f": format})).await;
        let batch = ok(&r)["issueCodeBatch"]["id"].as_str().unwrap().to_owned();
        let (status, csv) = k
            .download(&b.owner, "/files/codes/print-file", json!({"batch": batch}))
            .await;
        assert_eq!(status, 200, "{csv}");
        let rows: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), n, "{format}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row[0], (i + 1).to_string(), "{format}: serials in order");
        }
        // Every 500th serial, and the first and last, against a reprint.
        for serial in (1..=n).step_by(500).chain([2, n - 1, n]) {
            let (code, url) = code_of(&k, &b, &batch, serial as u32).await;
            let row = &rows[serial - 1];
            assert_eq!(
                (row[1], row[2]),
                (code.as_str(), url.as_str()),
                "{format} serial {serial}"
            );
        }
        if format == "GS1_DIGITAL_LINK" {
            let url = rows[0][2];
            assert!(url.contains("/01/06901234567892/10/L%201%2F2/21/"), "{url}");
            assert!(
                rows.iter()
                    .all(|r| r[1].len() == keel_codes_core::GS1_SERIAL_LEN)
            );
        } else {
            assert!(rows.iter().all(|r| r[1].len() == keel_codes_core::CODE_LEN));
        }
        let codes: std::collections::HashSet<&str> = rows.iter().map(|r| r[1]).collect();
        assert_eq!(codes.len(), n, "{format}: every code distinct");
        // A sub-range is the same rows, in one chunk or in several.
        for (from, to) in [(9_990, 10_010), (1_001, 30_000)] {
            let (status, part) = k
                .download(
                    &b.owner,
                    "/files/codes/print-file",
                    json!({"batch": batch, "from": from, "to": to}),
                )
                .await;
            assert_eq!(status, 200, "{part}");
            let part: Vec<&str> = part.lines().skip(1).collect();
            let whole: Vec<&str> = csv.lines().skip(from).take(to - from + 1).collect();
            assert_eq!(part, whole, "{format} {from}..={to}");
        }
    }
}
