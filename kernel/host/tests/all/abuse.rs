//! A plugin that loops, hogs memory, panics, floods its output or reaches
//! past its grants gets its caller a clear error in time, loses its writes,
//! and leaves the kernel serving everyone else.

use std::time::{Duration, Instant};

use keel_core::{Backend, counters, events, records};
use keel_host::PluginError;
use keel_host::manifest::Capability;
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, call, grants_without};

/// Runs `abuse` while a well-behaved call runs beside it; both must finish,
/// the good one successfully.
async fn beside_a_good_call(
    f: &Fixture,
    op: &str,
    input: serde_json::Value,
) -> (PluginError, Duration) {
    let act = f.probe().await;
    let start = Instant::now();
    let bad = call(&f.host, &act, op, input);
    let good = async {
        // Give the abuser a head start, then do real work beside it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        call(&f.host, &act, "caller", json!({})).await
    };
    let (bad, good) = tokio::join!(bad, good);
    assert!(good.is_ok(), "the well-behaved call failed: {good:?}");
    (bad.expect_err("the abuse must fail"), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    let f = Fixture::new(Backend::Sqlite).await;
    let (err, took) = beside_a_good_call(&f, "forever", json!({})).await;
    assert!(matches!(err, PluginError::Deadline { .. }), "{err:?}");
    assert_eq!(err.code(), "PLUGIN_TIMEOUT");
    assert!(took < Duration::from_secs(5), "stopped only after {took:?}");
}

/// One runtime thread: a call computing to its deadline yields it at
/// every epoch tick, so the thread's other tasks (another request, the
/// request's own timeout) run meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_that_loops_lets_other_tasks_run_on_its_thread() {
    let f = Fixture::new(Backend::Sqlite).await;
    let act = f.probe().await;
    let done = std::cell::Cell::new(false);
    let ticks = std::cell::Cell::new(0_u32);
    let bad = async {
        let r = call(&f.host, &act, "forever", json!({})).await;
        done.set(true);
        r
    };
    let ticker = async {
        while !done.get() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticks.set(ticks.get() + 1);
        }
    };
    let start = Instant::now();
    let (bad, ()) = tokio::join!(bad, ticker);
    let took = start.elapsed();
    let err = bad.expect_err("the loop must be stopped");
    assert!(matches!(err, PluginError::Deadline { .. }), "{err:?}");
    // A tick every 10 ms of the call, give or take the ticks' own delays.
    let expected = (took.as_millis() / 10 / 2) as u32;
    assert!(
        ticks.get() >= expected.max(5),
        "{} ticks beside a call of {took:?}",
        ticks.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_allocates_without_end_hits_its_memory_cap() {
    let f = Fixture::new(Backend::Sqlite).await;
    let (err, _) = beside_a_good_call(&f, "hog", json!({})).await;
    assert!(
        matches!(err, PluginError::MemoryLimit { bytes, .. } if bytes == 32 << 20),
        "{err:?}"
    );
    assert_eq!(err.code(), "PLUGIN_OUT_OF_MEMORY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_that_panics_fails_its_call_only() {
    let f = Fixture::new(Backend::Sqlite).await;
    let (err, _) = beside_a_good_call(&f, "crash", json!({})).await;
    match &err {
        PluginError::Trapped { detail, .. } => {
            assert!(detail.contains("panics on purpose"), "{detail}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(err.code(), "PLUGIN_FAILED");
    // The message a client sees does not carry the plugin's internals.
    assert!(!err.to_string().contains("panics on purpose"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_output_over_the_cap_is_refused() {
    let f = Fixture::new(Backend::Sqlite).await;
    let (err, _) = beside_a_good_call(&f, "big", json!({"bytes": 200_000})).await;
    assert!(
        matches!(err, PluginError::TooLarge { what: "output", limit, .. } if limit == 64 << 10),
        "{err:?}"
    );
    let act = f.probe().await;
    let small = call(&f.host, &act, "big", json!({"bytes": 1000}))
        .await
        .unwrap();
    assert_eq!(small.as_str().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_input_over_the_cap_is_refused_before_the_plugin_runs() {
    let f = Fixture::with(Backend::Sqlite, |c| c.max_input_bytes = 1024).await;
    let act = f.probe().await;
    let err = call(
        &f.host,
        &act,
        "big",
        json!({"bytes": 1, "pad": "x".repeat(2000)}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PluginError::TooLarge { what: "input", .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_capability_not_granted_is_denied_with_a_typed_error() {
    let f = Fixture::new(Backend::Sqlite).await;
    let cases = [
        (
            Capability::Records,
            json!({"capability": "records", "arg": "items"}),
        ),
        (
            Capability::Events,
            json!({"capability": "events", "arg": "probe.touched"}),
        ),
        (
            Capability::PersonsRead,
            json!({"capability": "persons", "arg": "13800000000"}),
        ),
        (
            Capability::PersonsWrite,
            json!({"capability": "persons-write", "arg": "13800000000"}),
        ),
        (
            Capability::Counters,
            json!({"capability": "counters", "arg": "k"}),
        ),
        (
            Capability::Secrets,
            json!({"capability": "secret", "arg": "token"}),
        ),
        (
            Capability::Http,
            json!({"capability": "http", "arg": "http://127.0.0.1:9/"}),
        ),
        (
            Capability::CatalogRead,
            json!({"capability": "catalog-read", "arg": "96385074"}),
        ),
        (
            Capability::CatalogWrite,
            json!({"capability": "catalog-write", "arg": "[]"}),
        ),
        (
            Capability::OrgRead,
            json!({"capability": "org-read", "arg": "23.1,113.3"}),
        ),
        (
            Capability::OrgWrite,
            json!({"capability": "org-write", "arg": "[]"}),
        ),
    ];
    for (cap, input) in cases {
        let act = f
            .activation(&f.tenant, "probe", Some(grants_without(cap)))
            .await;
        let full = f.probe().await;
        let (denied, good) = tokio::join!(
            call(&f.host, &act, "call", input.clone()),
            call(&f.host, &full, "caller", json!({}))
        );
        assert!(
            good.is_ok(),
            "the well-behaved call beside it failed: {good:?}"
        );
        let err = denied.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN", "{cap:?}: {err:?}");
        assert!(err.to_string().contains(cap.as_str()), "{cap:?}: {err}");
        // With the grant, the same call is not refused for want of it.
        if let Err(e) = call(&f.host, &full, "call", input).await {
            assert_ne!(e.code(), "FORBIDDEN", "{cap:?} granted but refused: {e}");
        }
    }
}

on_both_backends! {
    async fn a_call_that_fails_after_writing_leaves_no_write_behind(kind) {
        let f = Fixture::new(kind).await;
        let act = f.probe().await;
        for (n, then) in ["error", "panic", "loop"].into_iter().enumerate() {
            let key = format!("k{n}");
            let err = call(&f.host, &act, "put", json!({"key": key, "data": {"color": "red"}, "then": then})).await.unwrap_err();
            let expected = match then { "error" => "CHANGED_MY_MIND", "panic" => "PLUGIN_FAILED", _ => "PLUGIN_TIMEOUT" };
            assert_eq!(err.code(), expected, "{then}: {err:?}");
            let mut c = f.db.db.reader().acquire().await.unwrap();
            let loc = records::Location { namespace: "probe", collection: "items", key: &key };
            assert_eq!(records::get(&mut c, &f.tenant, loc).await.unwrap(), None, "{then}: the record stayed");
        }
        let evs = events::list(&f.db.db, &f.tenant, &events::EventFilter::default(), 100, None).await.unwrap();
        assert!(evs.events.is_empty(), "events stayed: {:?}", evs.events);
        assert_eq!(counters::get(&f.db.db, &f.tenant, "probe", "puts").await.unwrap(), 0);
        // The same call that ends well commits all three writes together.
        let ok = call(&f.host, &act, "put", json!({"key": "good", "data": {"color": "red"}})).await.unwrap();
        assert_eq!(ok["version"], 1);
        assert_eq!(counters::get(&f.db.db, &f.tenant, "probe", "puts").await.unwrap(), 1);
        let evs = events::list(&f.db.db, &f.tenant, &events::EventFilter::default(), 100, None).await.unwrap();
        assert_eq!(evs.events.len(), 1);
        assert_eq!(evs.events[0].producer, "probe");
    }
}
