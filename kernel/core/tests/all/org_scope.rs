//! Staff of org nodes, and what a caller limited to an org node sees and
//! may change (reads, writes, staff, credentials it hands out).

use keel_core::identity::api_keys::{self, NewApiKey};
use keel_core::identity::operators::{self, NewOperator};
use keel_core::identity::{self, Principal};
use keel_core::org::{self, GeoPoint, Listing, NodeKey, Scope};
use keel_core::persons::{self, Identify};
use keel_core::{Db, Error, Result, TenantId};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::json;

use crate::org::{bad_field, forbidden, get, node, org_events, tenant, tree, upsert, upsert_as};

async fn person(db: &Db, tenant: &TenantId, phone: &str) -> String {
    let mut tx = db.begin().await.unwrap();
    let input = Identify {
        identifiers: vec![("phone".into(), phone.into())],
        ..Default::default()
    };
    let p = persons::identify(&mut tx, tenant, input, "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    p.person.id
}

async fn add(
    db: &Db,
    t: &TenantId,
    scope: Scope<'_>,
    node: &str,
    person: &str,
    role: &str,
) -> Result<org::StaffChange> {
    let mut tx = db.begin().await.unwrap();
    let r = org::add_staff(&mut tx, t, scope, node, person, role, "key:test").await;
    tx.commit().await.unwrap();
    r
}

async fn remove(
    db: &Db,
    t: &TenantId,
    scope: Scope<'_>,
    node: &str,
    person: &str,
    role: &str,
) -> Result<Option<org::StaffChange>> {
    let mut tx = db.begin().await.unwrap();
    let r = org::remove_staff(&mut tx, t, scope, node, person, role, "key:test").await;
    tx.commit().await.unwrap();
    r
}

on_both_backends! {
    async fn staff_are_added_and_removed_once_with_their_events(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let store = node(&t.db, &tenant, "S-SZ-1").await;
        let dist = node(&t.db, &tenant, "D-SZ-1").await;
        let ann = person(&t.db, &tenant, "+8613800000001").await;
        let bob = person(&t.db, &tenant, "+8613800000002").await;
        let added = add(&t.db, &tenant, Scope::Tenant, &store.id, &ann, "guide").await.unwrap();
        assert!(added.event.is_some());
        assert!(add(&t.db, &tenant, Scope::Tenant, &store.id, &ann, "guide").await.unwrap().event.is_none(), "again: no change");
        add(&t.db, &tenant, Scope::Tenant, &store.id, &bob, "manager").await.unwrap();
        add(&t.db, &tenant, Scope::Tenant, &dist.id, &ann, "salesperson").await.unwrap();
        let mut c = t.db.reader().acquire().await.unwrap();
        let at_store = org::staff_of_node(&mut c, &tenant, Scope::Tenant, &store.id).await.unwrap();
        let pairs: Vec<(&str, &str)> = at_store.iter().map(|s| (s.role.as_str(), s.person_id.as_str())).collect();
        assert_eq!(pairs, [("guide", ann.as_str()), ("manager", bob.as_str())]);
        let of_ann = org::staff_of_person(&mut c, &tenant, Scope::Tenant, &ann).await.unwrap();
        assert_eq!(of_ann.len(), 2);
        drop(c);
        // A merge: Ann's entries follow her into the survivor.
        let mut tx = t.db.begin().await.unwrap();
        persons::merge(&mut tx, &tenant, &bob, &ann, "same guide", "test").await.unwrap();
        tx.commit().await.unwrap();
        let mut c = t.db.reader().acquire().await.unwrap();
        let at_store = org::staff_of_node(&mut c, &tenant, Scope::Tenant, &store.id).await.unwrap();
        assert!(at_store.iter().all(|s| s.person_id == bob), "{at_store:?}");
        assert_eq!(org::staff_of_person(&mut c, &tenant, Scope::Tenant, &bob).await.unwrap().len(), 3);
        drop(c);
        let gone = remove(&t.db, &tenant, Scope::Tenant, &store.id, &bob, "guide").await.unwrap().unwrap();
        assert_eq!(gone.staff.person_id, bob);
        assert!(remove(&t.db, &tenant, Scope::Tenant, &store.id, &bob, "guide").await.unwrap().is_none(), "again: nothing");
        let types: Vec<String> = org_events(&t.db, &tenant).await.into_iter().skip(8).map(|e| e.event_type).collect();
        assert_eq!(types, ["org.staff_added", "org.staff_added", "org.staff_added", "org.staff_removed"]);
        // Bad input and unknown things.
        assert_eq!(bad_field(add(&t.db, &tenant, Scope::Tenant, &store.id, &bob, "Guide!").await), "role");
        assert!(matches!(add(&t.db, &tenant, Scope::Tenant, &store.id, "nobody", "guide").await, Err(Error::NotFound(_))));
        assert!(matches!(add(&t.db, &tenant, Scope::Tenant, "org_nope", &bob, "guide").await, Err(Error::NotFound(_))));
        let other = tenant_with_tree(&t.db, "globex").await;
        assert!(matches!(add(&t.db, &other, Scope::Tenant, &store.id, &bob, "guide").await, Err(Error::NotFound(_))));
    }

    async fn a_scoped_caller_sees_only_its_subtree(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let gd = node(&t.db, &tenant, "CN-GD").await;
        let scope = Scope::Node(&gd.id);
        assert!(get(&t.db, &tenant, scope, "S-SZ-1").await.is_some());
        assert!(get(&t.db, &tenant, scope, "CN-GD").await.is_some());
        assert!(get(&t.db, &tenant, scope, "S-BJ-1").await.is_none());
        assert!(get(&t.db, &tenant, scope, "HQ").await.is_none());
        let bj = node(&t.db, &tenant, "S-BJ-1").await;
        let hq = node(&t.db, &tenant, "HQ").await;
        let store = node(&t.db, &tenant, "S-SZ-1").await;
        let mut c = t.db.reader().acquire().await.unwrap();
        // The roots of a scoped caller are its own node; ancestors stop there.
        let roots = org::children(&mut c, &tenant, scope, None, None, 10).await.unwrap();
        assert_eq!(roots.nodes.iter().map(|n| n.code.as_str()).collect::<Vec<_>>(), ["CN-GD"]);
        let up = org::ancestors(&mut c, &tenant, scope, &store.id).await.unwrap();
        assert_eq!(up.iter().map(|n| n.code.as_str()).collect::<Vec<_>>(), ["CN-GD", "CN-GD-SZ", "D-SZ-1"]);
        for r in [
            org::ancestors(&mut c, &tenant, scope, &bj.id).await.map(|_| ()),
            org::children(&mut c, &tenant, scope, Some(&hq.id), None, 10).await.map(|_| ()),
            org::list(&mut c, &tenant, scope, Listing::Under(&hq.id), None, None, 10).await.map(|_| ()),
            org::is_within(&mut c, &tenant, scope, &store.id, &hq.id).await.map(|_| ()),
            org::staff_of_node(&mut c, &tenant, scope, &bj.id).await.map(|_| ()),
        ] {
            assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
        }
        let ext = NodeKey::External(org::ExternalId { system: "kingdee".into(), id: "C-0001".into() });
        let bj_scope = node(&t.db, &tenant, "CN-BJ").await;
        assert!(org::get_node(&mut c, &tenant, Scope::Node(&bj_scope.id), &ext).await.unwrap().is_none());
        let regions = org::regions_at(&mut c, &tenant, Scope::Node(&node(&t.db, &tenant, "CN-GD-SZ").await.id), GeoPoint { lat: 22.54, lng: 114.05 }).await.unwrap();
        assert_eq!(regions.len(), 1, "Guangdong is above the scope");
    }

    async fn a_scoped_caller_writes_only_under_its_node(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let gd = node(&t.db, &tenant, "CN-GD").await;
        let scope = Scope::Node(&gd.id);
        // Inside: create, update, move within.
        let ok = upsert_as(&t.db, &tenant, scope, json!([
            {"code": "S-GZ-1", "kind": "store", "name": "Tianhe", "parentCode": "CN-GD"},
            {"code": "S-SZ-2", "kind": "store", "name": "Nanshan", "parentCode": "D-SZ-1"},
            {"code": "CN-GD", "kind": "region", "name": "Guangdong province"}
        ])).await.unwrap();
        assert_eq!(ok.changed(), 3);
        // Outside, or moving out, or a root, or its own node: refused, naming it.
        for (bad, needle) in [
            (json!({"code": "S-BJ-1", "kind": "store", "name": "x"}), "S-BJ-1"),
            (json!({"code": "S-X", "kind": "store", "name": "x", "parentCode": "CN-BJ"}), "CN-BJ"),
            (json!({"code": "S-SZ-1", "kind": "store", "name": "x", "parentCode": "CN-BJ"}), "CN-BJ"),
            (json!({"code": "S-X", "kind": "store", "name": "x"}), "root"),
            (json!({"code": "CN-GD", "kind": "region", "name": "GD", "parentCode": null}), "cannot move"),
            (json!({"code": "HQ", "kind": "headquarters", "name": "HQ"}), "HQ"),
        ] {
            let batch = json!([{"code": "S-GZ-2", "kind": "store", "name": "ok", "parentCode": "CN-GD"}, bad]);
            let m = forbidden(upsert_as(&t.db, &tenant, scope, batch).await);
            assert!(m.starts_with("nodes[1]: ") && m.contains(needle) && m.contains("CN-GD"), "{m}");
        }
        assert!(get(&t.db, &tenant, Scope::Tenant, "S-GZ-2").await.is_none(), "nothing of a refused batch");
        // Staff: inside fine; outside FORBIDDEN naming the node.
        let p = person(&t.db, &tenant, "+8613800000003").await;
        let bj = node(&t.db, &tenant, "S-BJ-1").await;
        let sz = node(&t.db, &tenant, "S-SZ-1").await;
        add(&t.db, &tenant, scope, &sz.id, &p, "guide").await.unwrap();
        assert!(forbidden(add(&t.db, &tenant, scope, &bj.id, &p, "guide").await).contains("S-BJ-1"));
        add(&t.db, &tenant, Scope::Tenant, &bj.id, &p, "guide").await.unwrap();
        assert!(forbidden(remove(&t.db, &tenant, scope, &bj.id, &p, "guide").await).contains("S-BJ-1"));
        let mut c = t.db.reader().acquire().await.unwrap();
        let mine = org::staff_of_person(&mut c, &tenant, scope, &p).await.unwrap();
        assert_eq!(mine.iter().map(|s| s.node_id.as_str()).collect::<Vec<_>>(), [sz.id.as_str()]);
    }

    async fn a_scoped_credential_hands_out_only_its_node_or_below(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        upsert(&t.db, &tenant, tree()).await.unwrap();
        let (gd, sz, bj, hq) = (
            node(&t.db, &tenant, "CN-GD").await.id,
            node(&t.db, &tenant, "CN-GD-SZ").await.id,
            node(&t.db, &tenant, "CN-BJ").await.id,
            node(&t.db, &tenant, "HQ").await.id,
        );
        let mut tx = t.db.begin().await.unwrap();
        let (owner, _) = api_keys::create_owner_key(&mut tx, &tenant, "owner", "test").await.unwrap();
        tx.commit().await.unwrap();
        let new = || NewApiKey { name: "k".into(), roles: vec!["marketer".into()], scopes: vec![] };
        let hq_principal = owner_principal(&owner.id);
        // The whole tenant may create a key limited to Guangdong.
        let mut tx = t.db.begin().await.unwrap();
        let (gd_key, secret) = api_keys::create_scoped(&mut tx, &tenant, new(), Some(&gd), &hq_principal).await.unwrap();
        tx.commit().await.unwrap();
        let gd_principal = identity::authenticate(&t.db, &secret).await.unwrap();
        assert_eq!(gd_principal.org_scope.as_deref(), Some(gd.as_str()));
        // Guangdong may hand out Guangdong or Shenzhen, never Beijing, HQ or the tenant.
        let mut tx = t.db.begin().await.unwrap();
        let (sz_key, _) = api_keys::create_scoped(&mut tx, &tenant, new(), Some(&sz), &gd_principal).await.unwrap();
        for wider in [Some(bj.as_str()), Some(hq.as_str()), None] {
            let r = api_keys::create_scoped(&mut tx, &tenant, new(), wider, &gd_principal).await;
            assert!(forbidden(r).contains("CN-GD"), "{wider:?}");
        }
        let op = NewOperator { email: "gd@acme.example".into(), password: "a long enough password".into(), roles: vec!["marketer".into()] };
        assert!(matches!(operators::create_scoped(&mut tx, &tenant, op.clone(), None, &gd_principal).await, Err(Error::Forbidden(_))));
        operators::create_scoped(&mut tx, &tenant, op, Some(&gd), &gd_principal).await.unwrap();
        assert_eq!(bad_field(api_keys::create_scoped(&mut tx, &tenant, new(), Some("org_nope"), &hq_principal).await), "orgScope");
        tx.commit().await.unwrap();
        // Lists and lookups keep to the scope.
        let mine = api_keys::list_within(&t.db, &tenant, Scope::Node(&gd)).await.unwrap();
        let mut ids: Vec<&str> = mine.iter().map(|k| k.id.as_str()).collect();
        ids.sort();
        let mut want = vec![gd_key.id.as_str(), sz_key.id.as_str()];
        want.sort();
        assert_eq!(ids, want);
        assert_eq!(api_keys::list(&t.db, &tenant).await.unwrap().len(), 3);
        assert_eq!(operators::list_within(&t.db, &tenant, Scope::Node(&sz)).await.unwrap().len(), 0);
        assert_eq!(operators::list_within(&t.db, &tenant, Scope::Node(&gd)).await.unwrap().len(), 1);
        let mut c = t.db.reader().acquire().await.unwrap();
        assert!(matches!(api_keys::get_within(&mut c, &tenant, Scope::Node(&sz), &gd_key.id).await, Err(Error::NotFound(_))));
        assert!(matches!(api_keys::get_within(&mut c, &tenant, Scope::Node(&gd), &owner.id).await, Err(Error::NotFound(_))));
        api_keys::get_within(&mut c, &tenant, Scope::Node(&gd), &sz_key.id).await.unwrap();
        drop(c);
        // A scoped owner key is not the tenant's owner: the last unscoped
        // owner still cannot go, and the scoped one can.
        let mut tx = t.db.begin().await.unwrap();
        let owner_new = NewApiKey { name: "gd owner".into(), roles: vec!["owner".into()], scopes: vec![] };
        let (gd_owner, _) = api_keys::create_scoped(&mut tx, &tenant, owner_new, Some(&gd), &hq_principal).await.unwrap();
        assert!(matches!(api_keys::revoke(&mut tx, &tenant, &owner.id).await, Err(Error::Conflict(_))));
        api_keys::revoke(&mut tx, &tenant, &gd_owner.id).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// The principal of the tenant's owner key (its secret is not kept), as
/// far as creating credentials looks at it: its label and org scope.
fn owner_principal(key_id: &str) -> Principal {
    Principal {
        credential: identity::Credential::ApiKey {
            key_id: key_id.into(),
        },
        tenant: None,
        roles: vec!["owner".into()],
        scopes: vec![],
        org_scope: None,
    }
}

async fn tenant_with_tree(db: &Db, slug: &str) -> TenantId {
    let t = tenant(db, slug).await;
    upsert(db, &t, tree()).await.unwrap();
    t
}
