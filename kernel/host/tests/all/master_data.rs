//! Contract 0.2's `catalog`, `org` and `config.time-zone` imports against
//! the kernel's own catalogue, organisation tree and tenant settings.

use keel_core::{events, org, tenants};
use keel_host::{CallContext, CallerRights};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, call, ctx};

async fn kernel_events(f: &Fixture, prefix: &str) -> Vec<events::Event> {
    let all = events::list(
        &f.db.db,
        &f.tenant,
        &events::EventFilter::default(),
        100,
        None,
    )
    .await
    .unwrap();
    all.events
        .into_iter()
        .filter(|e| e.event_type.starts_with(prefix))
        .collect()
}

on_both_backends! {
    async fn a_plugin_writes_and_reads_the_kernels_catalogue(kind) {
        let f = Fixture::new(kind).await;
        let act = f.probe().await;
        let wine = json!([{
            "code": "WINE", "name": "Red wine", "unit": "bottle",
            "skus": [{"code": "WINE-750", "name": "750 ml", "gtin": "96385074"}]
        }]);
        let put = |arg: serde_json::Value| {
            call(&f.host, &act, "call", json!({"capability": "catalog-write", "arg": arg.to_string()}))
        };
        assert_eq!(put(wine.clone()).await.unwrap(), json!(1));
        // Idempotent: the same batch again changes nothing and emits nothing.
        assert_eq!(put(wine.clone()).await.unwrap(), json!(0));
        let created = kernel_events(&f, "product.").await;
        assert_eq!(created.len(), 1, "{created:?}");
        assert_eq!(created[0].event_type, "product.created");
        assert_eq!(created[0].producer, "kernel");

        let found = call(&f.host, &act, "call", json!({"capability": "catalog-read", "arg": "96385074"}))
            .await
            .unwrap();
        assert_eq!(found, json!({"product": "WINE", "sku": "WINE-750", "gtin": "00000096385074"}));
        let missing = call(&f.host, &act, "call", json!({"capability": "catalog-read", "arg": "40123455"}))
            .await
            .unwrap();
        assert_eq!(missing, json!(null));

        // One bad GTIN refuses the batch, naming the item; nothing is written.
        let err = put(json!([
            {"code": "BEER", "name": "Beer", "unit": "can"},
            {"code": "CIDER", "name": "Cider", "unit": "can",
             "skus": [{"code": "CIDER-1", "name": "1", "gtin": "96385075"}]}
        ]))
        .await
        .unwrap_err();
        assert_eq!(err.code(), "BAD_USER_INPUT", "{err:?}");
        assert!(err.to_string().contains("[1]"), "{err}");
        let mut c = f.db.db.reader().acquire().await.unwrap();
        let beer = keel_core::catalog::get_product(&mut c, &f.tenant, &keel_core::catalog::ProductKey::Code("BEER".into()))
            .await
            .unwrap();
        assert!(beer.is_none(), "a refused batch left a product behind");
        assert_eq!(kernel_events(&f, "product.").await.len(), 1);
    }

    async fn a_plugin_reads_and_writes_the_org_tree(kind) {
        let f = Fixture::new(kind).await;
        let act = f.probe().await;
        let square = json!({"type": "Polygon", "coordinates": [[[113.0, 22.0], [114.0, 22.0], [114.0, 24.0], [113.0, 24.0], [113.0, 22.0]]]});
        let nodes = json!([
            {"code": "HQ", "kind": "headquarters", "name": "HQ"},
            {"code": "CN-GD", "kind": "region", "name": "Guangdong", "parentCode": "HQ", "boundary": square},
        ]);
        let put = |arg: serde_json::Value| {
            call(&f.host, &act, "call", json!({"capability": "org-write", "arg": arg.to_string()}))
        };
        assert_eq!(put(nodes.clone()).await.unwrap(), json!(2));
        assert_eq!(put(nodes).await.unwrap(), json!(0), "a retried batch changes nothing");
        assert_eq!(kernel_events(&f, "org.").await.len(), 2);

        let at = call(&f.host, &act, "call", json!({"capability": "org-read", "arg": "23.1,113.3"}))
            .await
            .unwrap();
        assert_eq!(at, json!([{"code": "CN-GD", "ancestors": ["HQ"]}]));
        let outside = call(&f.host, &act, "call", json!({"capability": "org-read", "arg": "31.2,121.5"}))
            .await
            .unwrap();
        assert_eq!(outside, json!([]));

        // A store under a parent that does not exist: refused, nothing written.
        let err = put(json!([
            {"code": "S1", "kind": "store", "name": "Store 1", "parentCode": "CN-GD"},
            {"code": "S2", "kind": "store", "name": "Store 2", "parentCode": "NOWHERE"},
        ]))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("nodes[1]"), "{err}");
        let mut c = f.db.db.reader().acquire().await.unwrap();
        let s1 = keel_core::org::get_node(&mut c, &f.tenant, keel_core::org::Scope::Tenant, &keel_core::org::NodeKey::Code("S1".into()))
            .await
            .unwrap();
        assert!(s1.is_none(), "a refused batch left a node behind");
        assert_eq!(kernel_events(&f, "org.").await.len(), 2);
    }

    async fn a_plugin_reads_the_tenants_time_zone(kind) {
        let f = Fixture::new(kind).await;
        let act = f.probe().await;
        let tz = |act| call(&f.host, act, "call", json!({"capability": "time-zone"}));
        assert_eq!(tz(&act).await.unwrap(), json!(tenants::DEFAULT_TIME_ZONE));
        let mut tx = f.db.db.begin().await.unwrap();
        tenants::set_time_zone(&mut tx, &f.tenant, "Europe/Berlin").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(tz(&act).await.unwrap(), json!("Europe/Berlin"));
    }

    async fn a_plugin_writes_master_data_for_a_client_only_where_the_client_could(kind) {
        let f = Fixture::new(kind).await;
        let act = f.probe().await;
        let square = json!({"type": "Polygon", "coordinates": [[[113.0, 22.0], [114.0, 22.0], [114.0, 24.0], [113.0, 24.0], [113.0, 22.0]]]});
        // On its own account (no client behind the call: a schedule, an
        // event), the plugin writes within its grants.
        let tree = json!([
            {"code": "HQ", "kind": "headquarters", "name": "HQ"},
            {"code": "CN-GD", "kind": "region", "name": "Guangdong", "parentCode": "HQ", "boundary": square},
            {"code": "CN-SH", "kind": "region", "name": "Shanghai", "parentCode": "HQ"},
        ]);
        let org_write = |nodes: serde_json::Value| json!({"capability": "org-write", "arg": nodes.to_string()}).to_string();
        let own = CallContext { caller: None, ..ctx() };
        assert_eq!(f.host.call_operation(&act, "call", &org_write(tree), own).await.unwrap(), "3");
        let mut c = f.db.db.reader().acquire().await.unwrap();
        let gd = org::get_node(&mut c, &f.tenant, org::Scope::Tenant, &org::NodeKey::Code("CN-GD".into()))
            .await
            .unwrap()
            .unwrap()
            .id;
        drop(c);

        // A client without the kernel's org write right (a marketer): the
        // plugin may not write the tree for it, however it was granted.
        let marketer = CallContext { caller_rights: Some(CallerRights { catalog_write: false, org_write: false }), ..ctx() };
        let rename = json!([{"code": "CN-GD", "kind": "region", "name": "Renamed"}]);
        let err = f.host.call_operation(&act, "call", &org_write(rename.clone()), marketer).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");
        assert!(err.to_string().contains("organisation tree"), "{err}");

        // A client limited to CN-GD writes under CN-GD only.
        let admin = CallerRights { catalog_write: true, org_write: true };
        let in_gd = || CallContext { caller_rights: Some(admin), scope: Some(gd.clone()), ..ctx() };
        let store = json!([{"code": "S-GZ-1", "kind": "store", "name": "Guangzhou 1", "parentCode": "CN-GD"}]);
        assert_eq!(f.host.call_operation(&act, "call", &org_write(store), in_gd()).await.unwrap(), "1");
        let outside = json!([{"code": "S-SH-1", "kind": "store", "name": "Shanghai 1", "parentCode": "CN-SH"}]);
        let err = f.host.call_operation(&act, "call", &org_write(outside), in_gd()).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");
        let err = f.host.call_operation(&act, "call", &org_write(json!([{"code": "CN-SH", "kind": "region", "name": "Mine"}])), in_gd()).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");
        // ... and not the catalogue, which is the whole tenant's.
        let wine = json!([{"code": "WINE", "name": "Red wine", "unit": "bottle"}]).to_string();
        let catalog_write = json!({"capability": "catalog-write", "arg": wine}).to_string();
        let err = f.host.call_operation(&act, "call", &catalog_write, in_gd()).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");
        let no_catalog = CallContext { caller_rights: Some(CallerRights { catalog_write: false, org_write: true }), ..ctx() };
        let err = f.host.call_operation(&act, "call", &catalog_write, no_catalog).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{err}");

        // None of the refused writes left anything behind.
        let mut c = f.db.db.reader().acquire().await.unwrap();
        let get = |code: &str| org::NodeKey::Code(code.into());
        assert!(org::get_node(&mut c, &f.tenant, org::Scope::Tenant, &get("S-SH-1")).await.unwrap().is_none());
        let sh = org::get_node(&mut c, &f.tenant, org::Scope::Tenant, &get("CN-SH")).await.unwrap().unwrap();
        assert_eq!(sh.name, "Shanghai");
        let gd_node = org::get_node(&mut c, &f.tenant, org::Scope::Tenant, &get("CN-GD")).await.unwrap().unwrap();
        assert_eq!(gd_node.name, "Guangdong");
        let wine = keel_core::catalog::get_product(&mut c, &f.tenant, &keel_core::catalog::ProductKey::Code("WINE".into())).await.unwrap();
        assert!(wine.is_none());
        // A client with the rights writes the catalogue through the plugin.
        drop(c);
        let full = CallContext { caller_rights: Some(admin), ..ctx() };
        assert_eq!(f.host.call_operation(&act, "call", &catalog_write, full).await.unwrap(), "1");
    }
}
