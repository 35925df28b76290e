//! The organisation tree: batch upserts by code, moves, lookups, paging,
//! regions at a point, and what bad batches get.

use keel_core::events::{self, EventFilter};
use keel_core::org::{
    self, Change, ExternalId, GeoPoint, Listing, Node, NodeKey, NodeKind, Scope, UpsertOutcome,
};
use keel_core::{Db, Error, Result, TenantId, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::{Value, json};

pub(crate) async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

/// Upserts a JSON batch (the WIT's form) in a transaction of its own that is
/// committed even when the call fails: a refused batch must have written
/// nothing by itself.
pub(crate) async fn upsert_as(
    db: &Db,
    tenant: &TenantId,
    scope: Scope<'_>,
    nodes: Value,
) -> Result<UpsertOutcome> {
    let inputs = org::parse_nodes_json(&nodes.to_string())?;
    let mut tx = db.begin().await.unwrap();
    let r = org::upsert_nodes(&mut tx, tenant, scope, &inputs, "key:test").await;
    tx.commit().await.unwrap();
    r
}

pub(crate) async fn upsert(db: &Db, tenant: &TenantId, nodes: Value) -> Result<UpsertOutcome> {
    upsert_as(db, tenant, Scope::Tenant, nodes).await
}

pub(crate) async fn node(db: &Db, tenant: &TenantId, code: &str) -> Node {
    get(db, tenant, Scope::Tenant, code).await.unwrap()
}

pub(crate) async fn get(db: &Db, tenant: &TenantId, scope: Scope<'_>, code: &str) -> Option<Node> {
    let mut c = db.reader().acquire().await.unwrap();
    org::get_node(&mut c, tenant, scope, &NodeKey::Code(code.into()))
        .await
        .unwrap()
}

async fn under(db: &Db, tenant: &TenantId, code: &str, kind: Option<NodeKind>) -> Vec<String> {
    let top = node(db, tenant, code).await;
    let mut c = db.reader().acquire().await.unwrap();
    let page = org::list(
        &mut c,
        tenant,
        Scope::Tenant,
        Listing::Under(&top.id),
        kind,
        None,
        200,
    )
    .await
    .unwrap();
    page.nodes.into_iter().map(|n| n.code).collect()
}

async fn within(db: &Db, tenant: &TenantId, a: &str, b: &str) -> bool {
    let (a, b) = (node(db, tenant, a).await, node(db, tenant, b).await);
    let mut c = db.reader().acquire().await.unwrap();
    org::is_within(&mut c, tenant, Scope::Tenant, &a.id, &b.id)
        .await
        .unwrap()
}

pub(crate) async fn org_events(db: &Db, tenant: &TenantId) -> Vec<events::Event> {
    let filter = EventFilter {
        types: vec![
            "org.node_created".into(),
            "org.node_updated".into(),
            "org.staff_added".into(),
            "org.staff_removed".into(),
        ],
        ..Default::default()
    };
    events::list(db, tenant, &filter, events::MAX_PAGE, None)
        .await
        .unwrap()
        .events
}

pub(crate) fn bad_field<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::BadInput { field, .. }) => field,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

pub(crate) fn forbidden<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::Forbidden(m)) => m,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

/// A brand's tree: HQ, two provinces, a city region, a distributor and
/// stores. Guangdong's boundary is the box 20-25N, 110-117E with a hole
/// at 21-21.5N, 111-111.5E; Shenzhen's the box 22-23N, 113.5-114.5E.
pub(crate) fn tree() -> Value {
    json!([
        {"code": "HQ", "kind": "headquarters", "name": "Acme China"},
        {"code": "CN-GD", "kind": "region", "name": "Guangdong", "parentCode": "HQ",
         "boundary": {"type": "Polygon", "coordinates": [
            [[110, 20], [117, 20], [117, 25], [110, 25], [110, 20]],
            [[111.0, 21.0], [111.5, 21.0], [111.5, 21.5], [111.0, 21.5], [111.0, 21.0]]]}},
        {"code": "CN-GD-SZ", "kind": "region", "name": "Shenzhen", "parentCode": "CN-GD",
         "boundary": {"type": "MultiPolygon", "coordinates": [[
            [[113.5, 22], [114.5, 22], [114.5, 23], [113.5, 23], [113.5, 22]]]]}},
        {"code": "D-SZ-1", "kind": "distributor", "name": "Shenzhen Trading", "parentCode": "CN-GD-SZ",
         "externalIds": [{"system": "kingdee", "id": "C-0001"}]},
        {"code": "S-SZ-1", "kind": "store", "name": "Futian store", "parentCode": "D-SZ-1",
         "address": "1 Futian Rd", "location": {"lat": 22.54, "lng": 114.05},
         "attributes": {"tier": "A"}},
        {"code": "S-SZ-2", "kind": "store", "name": "Nanshan store", "parentCode": "CN-GD-SZ"},
        {"code": "CN-BJ", "kind": "region", "name": "Beijing", "parentCode": "HQ"},
        {"code": "S-BJ-1", "kind": "store", "name": "Chaoyang store", "parentCode": "CN-BJ"}
    ])
}

on_both_backends! {
    async fn a_batch_builds_the_tree_and_every_lookup_finds_it(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let out = upsert(&t.db, &tenant, tree()).await.unwrap();
        assert_eq!(out.changed(), 8);
        assert!(out.nodes.iter().all(|n| n.change == Change::Created));
        let store = node(&t.db, &tenant, "S-SZ-1").await;
        assert!(store.id.starts_with("org_") && store.id.len() == 36, "{}", store.id);
        assert_eq!((store.kind, store.depth), (NodeKind::Store, 4));
        assert_eq!(store.address.as_deref(), Some("1 Futian Rd"));
        assert_eq!(store.location, Some(GeoPoint { lat: 22.54, lng: 114.05 }));
        assert_eq!(store.attributes["tier"], "A");
        let mut c = t.db.reader().acquire().await.unwrap();
        let by_id = org::get_node(&mut c, &tenant, Scope::Tenant, &NodeKey::Id(store.id.clone())).await.unwrap();
        assert_eq!(by_id.as_ref().map(|n| &n.code), Some(&store.code));
        let x = ExternalId { system: "kingdee".into(), id: "C-0001".into() };
        let by_ext = org::get_node(&mut c, &tenant, Scope::Tenant, &NodeKey::External(x.clone())).await.unwrap().unwrap();
        assert_eq!((by_ext.code.as_str(), by_ext.external_ids.clone()), ("D-SZ-1", vec![x]));
        assert!(org::get_node(&mut c, &tenant, Scope::Tenant, &NodeKey::Code("NOPE".into())).await.unwrap().is_none());
        // Ancestors: the root first, ending with the parent.
        let up = org::ancestors(&mut c, &tenant, Scope::Tenant, &store.id).await.unwrap();
        let codes: Vec<&str> = up.iter().map(|n| n.code.as_str()).collect();
        assert_eq!(codes, ["HQ", "CN-GD", "CN-GD-SZ", "D-SZ-1"]);
        // Children page in code order; the roots are the headquarters.
        let hq = node(&t.db, &tenant, "HQ").await;
        let p1 = org::children(&mut c, &tenant, Scope::Tenant, Some(&hq.id), None, 1).await.unwrap();
        assert_eq!((p1.nodes[0].code.as_str(), p1.next.as_deref()), ("CN-BJ", Some("CN-BJ")));
        let p2 = org::children(&mut c, &tenant, Scope::Tenant, Some(&hq.id), p1.next.as_deref(), 1).await.unwrap();
        assert_eq!((p2.nodes[0].code.as_str(), p2.next), ("CN-GD", None));
        let roots = org::children(&mut c, &tenant, Scope::Tenant, None, None, 10).await.unwrap();
        assert_eq!(roots.nodes.len(), 1);
        drop(c);
        // Everything under a node, optionally of one kind.
        assert_eq!(under(&t.db, &tenant, "CN-GD", None).await, ["CN-GD-SZ", "D-SZ-1", "S-SZ-1", "S-SZ-2"]);
        assert_eq!(under(&t.db, &tenant, "HQ", Some(NodeKind::Store)).await, ["S-BJ-1", "S-SZ-1", "S-SZ-2"]);
        assert!(within(&t.db, &tenant, "S-SZ-1", "CN-GD").await);
        assert!(within(&t.db, &tenant, "CN-GD", "CN-GD").await);
        assert!(!within(&t.db, &tenant, "S-BJ-1", "CN-GD").await);
        assert!(!within(&t.db, &tenant, "CN-GD", "S-SZ-1").await);
        // One created event per node, in the same transaction.
        let evs = org_events(&t.db, &tenant).await;
        assert_eq!(evs.len(), 8);
        assert_eq!(evs[4].payload["node"]["code"], "S-SZ-1");
        assert_eq!(evs[4].payload["node"]["parentId"], json!(node(&t.db, &tenant, "D-SZ-1").await.id));
        assert_eq!((evs[4].producer.as_str(), evs[4].payload["actor"].as_str()), ("kernel", Some("key:test")));
    }

    async fn a_retried_batch_changes_nothing_and_emits_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let before = node(&t.db, &tenant, "S-SZ-1").await;
        let again = upsert(&t.db, &tenant, tree()).await.unwrap();
        assert_eq!(again.changed(), 0);
        assert!(again.events.is_empty());
        assert_eq!(node(&t.db, &tenant, "S-SZ-1").await, before);
        assert_eq!(org_events(&t.db, &tenant).await.len(), 8);
        // Left-out fields keep their value; a changed one is an update that
        // names what changed; null clears.
        let out = upsert(&t.db, &tenant, json!([{"code": "S-SZ-1", "kind": "store", "name": "Futian flagship"}])).await.unwrap();
        assert_eq!(out.nodes[0].change, Change::Updated);
        let n = &out.nodes[0].node;
        assert_eq!((n.name.as_str(), n.address.as_deref(), n.parent_id.as_ref()), ("Futian flagship", Some("1 Futian Rd"), before.parent_id.as_ref()));
        assert_eq!(out.events[0].payload["changed"], json!(["name"]));
        let out = upsert(&t.db, &tenant, json!([{"code": "S-SZ-1", "kind": "store", "name": "Futian flagship",
            "address": null, "attributes": null, "externalIds": [{"system": "pos", "id": "77"}], "status": "INACTIVE"}])).await.unwrap();
        assert_eq!(out.events[0].payload["changed"], json!(["status", "address", "attributes", "externalIds"]));
        let n = node(&t.db, &tenant, "S-SZ-1").await;
        assert_eq!((n.address, n.attributes.len(), n.external_ids.len()), (None, 0, 1));
        assert_eq!(n.created_at, before.created_at);
        assert_eq!(org_events(&t.db, &tenant).await.len(), 10);
    }

    async fn moving_a_node_moves_its_subtree(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        // The distributor (with its store) moves to Beijing.
        let out = upsert(&t.db, &tenant, json!([{"code": "D-SZ-1", "kind": "distributor", "name": "Shenzhen Trading", "parentCode": "CN-BJ"}])).await.unwrap();
        assert_eq!(out.events[0].payload["changed"], json!(["parentId"]));
        assert!(within(&t.db, &tenant, "S-SZ-1", "CN-BJ").await);
        assert!(!within(&t.db, &tenant, "S-SZ-1", "CN-GD").await);
        assert_eq!(node(&t.db, &tenant, "S-SZ-1").await.depth, 3);
        assert_eq!(under(&t.db, &tenant, "CN-BJ", None).await, ["D-SZ-1", "S-BJ-1", "S-SZ-1"]);
        assert_eq!(under(&t.db, &tenant, "CN-GD", None).await, ["CN-GD-SZ", "S-SZ-2"]);
        // A move and a child of the moved node in one batch; then a root.
        let out = upsert(&t.db, &tenant, json!([
            {"code": "CN-GD-SZ", "kind": "region", "name": "Shenzhen", "parentCode": "CN-BJ"},
            {"code": "S-SZ-3", "kind": "store", "name": "Bao'an", "parentCode": "CN-GD-SZ"},
            {"code": "CN-BJ", "kind": "region", "name": "Beijing", "parentCode": null}
        ])).await.unwrap();
        assert_eq!(out.changed(), 3);
        assert!(within(&t.db, &tenant, "S-SZ-3", "CN-BJ").await);
        assert!(!within(&t.db, &tenant, "S-SZ-3", "HQ").await);
        assert_eq!(node(&t.db, &tenant, "S-SZ-3").await.depth, 2);
        let mut c = t.db.reader().acquire().await.unwrap();
        let s3 = node(&t.db, &tenant, "S-SZ-3").await;
        let up = org::ancestors(&mut c, &tenant, Scope::Tenant, &s3.id).await.unwrap();
        assert_eq!(up.iter().map(|n| n.code.as_str()).collect::<Vec<_>>(), ["CN-BJ", "CN-GD-SZ"]);
    }

    async fn one_bad_item_fails_the_batch_naming_it_and_writes_nothing(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let good = json!({"code": "S-NEW", "kind": "store", "name": "New", "parentCode": "CN-GD"});
        let deep: Vec<Value> = (0..16).map(|i| json!({"code": format!("R{i}"), "kind": "region", "name": "r",
            "parentCode": if i == 0 { json!("HQ") } else { json!(format!("R{}", i - 1)) }})).collect();
        for (bad, field) in [
            (json!({"code": "X", "kind": "store", "name": "x", "parentCode": "NOPE"}), "nodes[1].parentCode"),
            (json!({"code": "CN-GD", "kind": "region", "name": "GD", "parentCode": "S-SZ-1"}), "nodes[1].parentCode"),
            (json!({"code": "CN-GD", "kind": "region", "name": "GD", "parentCode": "CN-GD-SZ"}), "nodes[1].parentCode"),
            (json!({"code": "HQ", "kind": "headquarters", "name": "HQ", "parentCode": "HQ"}), "nodes[1].parentCode"),
            (json!({"code": "R", "kind": "region", "name": "r", "parentCode": "D-SZ-1"}), "nodes[1].parentCode"),
            (json!({"code": "H2", "kind": "headquarters", "name": "h", "parentCode": "CN-GD"}), "nodes[1].parentCode"),
            (json!({"code": "CN-GD-SZ", "kind": "store", "name": "SZ"}), "nodes[1].kind"),
            (json!({"code": "S-SZ-1", "kind": "region", "name": "Futian"}), "nodes[1].kind"),
            (json!({"code": "S-SZ-2", "kind": "store", "name": "x", "boundary": {"type": "Polygon", "coordinates": []}}), "nodes[1].boundary"),
            (json!({"code": "X", "kind": "region", "name": "x", "boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}), "nodes[1].boundary.coordinates[0]"),
            (json!({"code": "X", "kind": "store", "name": "x\u{0}"}), "nodes[1].name"),
            (json!({"code": "X", "kind": "store", "name": "x".repeat(201)}), "nodes[1].name"),
            (json!({"code": "X Y", "kind": "store", "name": "x"}), "nodes[1].code"),
            (json!({"code": "X", "kind": "store", "name": "x", "location": {"lat": 99, "lng": 0}}), "nodes[1].location.lat"),
            (json!({"code": "X", "kind": "store", "name": "x", "attributes": [1]}), "nodes[1].attributes"),
            (json!({"code": "X", "kind": "store", "name": "x", "attributes": {"big": "x".repeat(70_000)}}), "nodes[1].attributes"),
            (json!({"code": "X", "kind": "store", "name": "x", "externalIds": [{"system": "a", "id": "1"}, {"system": "a", "id": "2"}]}), "nodes[1].externalIds[1].system"),
            (json!({"code": "X", "kind": "store", "name": "x", "externalIds": [{"system": "Bad System", "id": "1"}]}), "nodes[1].externalIds[0].system"),
            (json!({"code": "S-NEW", "kind": "store", "name": "again"}), "nodes[1].code"),
        ] {
            let r = upsert(&t.db, &tenant, json!([good, bad])).await;
            assert_eq!(bad_field(r), field, "{bad}");
        }
        // Too deep: 16 more levels under the headquarters.
        let mut batch = vec![good.clone()];
        batch.extend(deep);
        assert_eq!(bad_field(upsert(&t.db, &tenant, Value::Array(batch)).await), "nodes[16].parentCode");
        // An external id that names another node.
        let r = upsert(&t.db, &tenant, json!([good, {"code": "X", "kind": "store", "name": "x", "parentCode": "CN-GD",
            "externalIds": [{"system": "kingdee", "id": "C-0001"}]}])).await;
        match r {
            Err(Error::Conflict(m)) => assert!(m.starts_with("nodes[1]: externalIds[0]") && m.contains("D-SZ-1"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Over the limit.
        let many: Vec<Value> = (0..1001).map(|i| json!({"code": format!("S{i}"), "kind": "store", "name": "s"})).collect();
        assert_eq!(bad_field(upsert(&t.db, &tenant, Value::Array(many)).await), "nodes");
        // None of it was written.
        assert!(get(&t.db, &tenant, Scope::Tenant, "S-NEW").await.is_none());
        assert!(get(&t.db, &tenant, Scope::Tenant, "R0").await.is_none());
        assert_eq!(node(&t.db, &tenant, "CN-GD-SZ").await.kind, NodeKind::Region);
        assert_eq!(org_events(&t.db, &tenant).await.len(), 8);
    }

    async fn a_thousand_nodes_fit_in_one_batch(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let mut batch = vec![json!({"code": "HQ", "kind": "headquarters", "name": "HQ"})];
        batch.extend((1..1000).map(|i| json!({"code": format!("S{i:04}"), "kind": "store", "name": "s", "parentCode": "HQ",
            "externalIds": [{"system": "erp", "id": format!("E{i}")}]})));
        let out = upsert(&t.db, &tenant, Value::Array(batch.clone())).await.unwrap();
        assert_eq!(out.changed(), 1000);
        assert_eq!(upsert(&t.db, &tenant, Value::Array(batch)).await.unwrap().changed(), 0);
        let hq = node(&t.db, &tenant, "HQ").await;
        let mut c = t.db.reader().acquire().await.unwrap();
        let mut after: Option<String> = None;
        let mut seen = 0;
        loop {
            let page = org::children(&mut c, &tenant, Scope::Tenant, Some(&hq.id), after.as_deref(), 200).await.unwrap();
            seen += page.nodes.len();
            match page.next { Some(n) => after = Some(n), None => break }
        }
        assert_eq!(seen, 999);
    }

    async fn regions_at_a_point_come_innermost_first_and_holes_are_outside(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let mut c = t.db.reader().acquire().await.unwrap();
        let at = |lat, lng| GeoPoint { lat, lng };
        let codes = |v: Vec<Node>| v.into_iter().map(|n| n.code).collect::<Vec<_>>();
        let sz = org::regions_at(&mut c, &tenant, Scope::Tenant, at(22.54, 114.05)).await.unwrap();
        assert_eq!(codes(sz), ["CN-GD-SZ", "CN-GD"]);
        let gz = org::regions_at(&mut c, &tenant, Scope::Tenant, at(23.13, 113.26)).await.unwrap();
        assert_eq!(codes(gz), ["CN-GD"]);
        let hole = org::regions_at(&mut c, &tenant, Scope::Tenant, at(21.2, 111.2)).await.unwrap();
        assert!(hole.is_empty(), "inside Guangdong's hole and outside Shenzhen");
        assert!(org::regions_at(&mut c, &tenant, Scope::Tenant, at(39.9, 116.4)).await.unwrap().is_empty());
        assert!(matches!(org::regions_at(&mut c, &tenant, Scope::Tenant, at(95.0, 0.0)).await, Err(Error::BadInput { .. })));
        // The stored boundary is the canonical GeoJSON.
        let sz = node(&t.db, &tenant, "CN-GD-SZ").await;
        assert_eq!(sz.boundary.unwrap()["type"], "MultiPolygon");
    }

    async fn another_tenants_nodes_do_not_exist(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let acme = tenant(&t.db, "acme").await;
        let globex = tenant(&t.db, "globex").await;
        upsert(&t.db, &acme, tree()).await.unwrap();
        let store = node(&t.db, &acme, "S-SZ-1").await;
        let mut c = t.db.reader().acquire().await.unwrap();
        assert!(org::get_node(&mut c, &globex, Scope::Tenant, &NodeKey::Id(store.id.clone())).await.unwrap().is_none());
        assert!(matches!(org::ancestors(&mut c, &globex, Scope::Tenant, &store.id).await, Err(Error::NotFound(_))));
        assert!(matches!(org::children(&mut c, &globex, Scope::Tenant, Some(&store.id), None, 10).await, Err(Error::NotFound(_))));
        drop(c);
        // The same codes are free in another tenant.
        assert_eq!(upsert(&t.db, &globex, tree()).await.unwrap().changed(), 8);
        assert_ne!(node(&t.db, &globex, "S-SZ-1").await.id, store.id);
    }
}
