//! A plugin reaches neither another tenant's data nor another plugin's.

use keel_core::{counters, records};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, call};

on_both_backends! {
    async fn a_plugin_sees_only_its_tenants_records_counters_and_events(kind) {
        let f = Fixture::new(kind).await;
        let other = Fixture::tenant_in(&f.db, "globex").await;
        let mine = f.probe().await;
        let theirs = f.activation(&other, "probe", None).await;
        call(&f.host, &mine, "put", json!({"key": "k", "data": {"secret": "acme"}})).await.unwrap();
        call(&f.host, &mine, "touch", json!({"key": "k"})).await.unwrap();
        let seen = call(&f.host, &theirs, "touch", json!({"key": "k"})).await.unwrap();
        assert_eq!(seen, json!({"found": false, "count": 1}), "globex saw acme's record or counter");
        let mut c = f.db.db.reader().acquire().await.unwrap();
        let loc = records::Location { namespace: "probe", collection: "items", key: "k" };
        assert!(records::get(&mut c, &other, loc).await.unwrap().is_none());
        assert_eq!(counters::get(&f.db.db, &f.tenant, "probe", "touch:k").await.unwrap(), 1);
    }

    async fn a_plugin_sees_only_its_own_collections_and_counters(kind) {
        let f = Fixture::new(kind).await;
        let alpha = f.activation(&f.tenant, "alpha", None).await;
        let beta = f.activation(&f.tenant, "beta", None).await;
        call(&f.host, &alpha, "put", json!({"key": "k", "data": {"owner": "alpha"}})).await.unwrap();
        call(&f.host, &alpha, "touch", json!({"key": "k"})).await.unwrap();
        let seen = call(&f.host, &beta, "touch", json!({"key": "k"})).await.unwrap();
        assert_eq!(seen, json!({"found": false, "count": 1}), "beta saw alpha's record or counter");
        // A collection the plugin did not declare is denied, not empty.
        let err = call(&f.host, &beta, "call", json!({"capability": "records", "arg": "orders"})).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN");
        // An event type the plugin did not declare is denied.
        let err = call(&f.host, &beta, "call", json!({"capability": "events", "arg": "order.paid"})).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN");
    }
}

/// A call's memory holds only what the component starts with, whatever
/// the calls before it on the same instance slots wrote — another tenant's
/// included: the kernel keeps freed memory resident and resets it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_memory_a_call_before_it_wrote() {
    let f = Fixture::new(keel_core::Backend::Sqlite).await;
    let other = Fixture::tenant_in(&f.db, "globex").await;
    let (mine, theirs) = (f.probe().await, f.activation(&other, "probe", None).await);
    let scribble = json!({"capability": "scribble", "arg": ""});
    for round in 0..20 {
        let act = if round % 2 == 0 { &mine } else { &theirs };
        let out = call(&f.host, act, "call", scribble.clone()).await.unwrap();
        assert_eq!(out, json!({"clean": true}), "sequential call {round}");
    }
    let calls = (0..16).map(|i| {
        let (host, act, arg) = (
            f.host.clone(),
            if i % 2 == 0 {
                mine.clone()
            } else {
                theirs.clone()
            },
            scribble.clone(),
        );
        tokio::spawn(async move { call(&host, &act, "call", arg).await.unwrap() })
    });
    for out in futures::future::join_all(calls).await {
        assert_eq!(out.unwrap(), json!({"clean": true}), "concurrent calls");
    }
}
