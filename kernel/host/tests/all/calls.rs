//! Plugin-to-plugin calls: the `caller` fixture calls operations the probe
//! offers, inside its own transaction, with the probe's own rights; every
//! call it was not allowed fails with a typed error and changes nothing.

use std::sync::Arc;

use keel_core::{counters, events, records};
use keel_host::manifest::{Capability, DeliveryMode, Grants, Manifest, Subscription};
use keel_host::stubs::{CallStubs, StubAnswer};
use keel_host::{Activation, CallContext, PluginCall, TenantPlugins};
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::support::{Fixture, PROBE_MANIFEST, fixture, grants_without, limits};

/// What the probe offers to other plugins in these tests.
const PROBE_OFFERS: &str = r#"
[offers]
operations = ["put", "call", "context", "touch", "big", "hog"]
"#;

/// The caller fixture's manifest, named `name`, declaring `calls`; it
/// enforces org scopes (it is called for a caller limited to CN-GD).
fn caller_manifest(name: &str, calls: &[&str]) -> Manifest {
    let mut text = format!(
        r#"
name = "{name}"
version = "0.1.0"
publisher = "Keel tests"
description = "Calls other plugins."
wit = "0.2.0"
enforces_org_scope = true

[[collections]]
name = "orders"

[[collections]]
name = "items"

[events]
emits = ["caller.put"]

[events.schemas."caller.put"]
type = "object"
properties = {{ key = {{ type = "string" }} }}

[capabilities]
capabilities = ["records", "events", "counters"]

[offers]
operations = ["relay"]
"#
    );
    for call in calls {
        let c: PluginCall = call.parse().unwrap();
        text.push_str(&format!(
            "\n[[calls]]\nplugin = \"{}\"\noperation = \"{}\"\n",
            c.plugin, c.operation
        ));
    }
    Manifest::from_toml(&text).unwrap()
}

/// The probe's manifest with its offers, as `name`. It enforces org
/// scopes: the calls below run for a caller limited to CN-GD.
fn probe_manifest(name: &str) -> Manifest {
    let mut m = Manifest::from_toml(&format!("{PROBE_MANIFEST}{PROBE_OFFERS}")).unwrap();
    m.name = name.to_owned();
    m.enforces_org_scope = true;
    m
}

async fn activation(
    f: &Fixture,
    manifest: Manifest,
    grants: Option<Grants>,
    wasm: &str,
) -> Arc<Activation> {
    let grants = grants.unwrap_or_else(|| Grants::all_requested(&manifest));
    Arc::new(Activation {
        tenant: f.tenant.clone(),
        manifest: Arc::new(manifest),
        component: f.host.load(&fixture(wasm)).await.unwrap(),
        grants,
        config: json!({}),
    })
}

/// The caller, named `name`, declaring and granted `calls`.
async fn caller(f: &Fixture, name: &str, calls: &[&str]) -> Arc<Activation> {
    activation(f, caller_manifest(name, calls), None, "caller").await
}

/// The probe, offering [`PROBE_OFFERS`], with every grant but `without`.
async fn probe(f: &Fixture, without: Option<Capability>) -> Arc<Activation> {
    let grants = without.map(grants_without);
    activation(f, probe_manifest("probe"), grants, "probe").await
}

fn set(plugins: &[&Arc<Activation>]) -> Arc<TenantPlugins> {
    Arc::new(TenantPlugins {
        version: 1,
        plugins: plugins.iter().map(|a| (*a).clone()).collect(),
    })
}

fn ctx(plugins: &Arc<TenantPlugins>) -> CallContext {
    CallContext {
        caller: Some("key:test".into()),
        request_id: "calls-test".into(),
        scope: Some("CN-GD".into()),
        plugins: Some(plugins.clone()),
        ..CallContext::default()
    }
}

async fn call_op(
    f: &Fixture,
    act: &Arc<Activation>,
    plugins: &Arc<TenantPlugins>,
    op: &str,
    input: Value,
) -> keel_host::Result<Value> {
    let out = f
        .host
        .call_operation(act, op, &input.to_string(), ctx(plugins))
        .await?;
    Ok(serde_json::from_str(&out).unwrap())
}

/// The caller's `order` with one call to the probe.
fn order(key: &str, operation: &str, input: Value) -> Value {
    json!({"key": key, "calls": [{"plugin": "probe", "operation": operation, "input": input}]})
}

async fn record(f: &Fixture, namespace: &str, collection: &str, key: &str) -> Option<Value> {
    let mut c = f.db.db.reader().acquire().await.unwrap();
    let loc = records::Location {
        namespace,
        collection,
        key,
    };
    records::get(&mut c, &f.tenant, loc)
        .await
        .unwrap()
        .map(|r| r.data)
}

async fn event_types(f: &Fixture) -> Vec<(String, String)> {
    let evs = events::list(
        &f.db.db,
        &f.tenant,
        &events::EventFilter::default(),
        100,
        None,
    )
    .await
    .unwrap();
    evs.events
        .into_iter()
        .map(|e| (e.event_type, e.producer))
        .collect()
}

async fn puts(f: &Fixture) -> i64 {
    counters::get(&f.db.db, &f.tenant, "probe", "puts")
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_call_runs_the_callee_with_its_own_rights_and_commits_with_the_caller(kind) {
        let f = Fixture::new(kind).await;
        let caller = caller(&f, "caller", &["probe.put", "probe.context", "probe.touch"]).await;
        let probe = probe(&f, None).await;
        // A sync subscriber of the probe's `probe.touched`.
        let mut m = probe_manifest("listener");
        m.events.subscribes = vec![Subscription { event_type: "probe.touched".into(), mode: DeliveryMode::Sync }];
        let listener = activation(&f, m, None, "probe").await;
        let plugins = set(&[&caller, &probe, &listener]);

        let out = call_op(&f, &caller, &plugins, "order", order("o1", "put", json!({"key": "k1", "data": {"color": "red"}}))).await.unwrap();
        assert_eq!(out["results"][0]["ok"]["version"], 1, "{out}");
        // Both commit: the caller's order in its namespace, the callee's
        // record, counter and event in the probe's.
        assert!(record(&f, "caller", "orders", "o1").await.is_some());
        assert_eq!(record(&f, "probe", "items", "k1").await, Some(json!({"color": "red"})));
        assert_eq!(record(&f, "caller", "items", "k1").await, None, "never in the caller's namespace");
        assert_eq!(puts(&f).await, 1);
        assert_eq!(event_types(&f).await, [("probe.put".to_owned(), "probe".to_owned())]);

        // The callee sees the original caller, its scope and the calling plugin.
        let out = call_op(&f, &caller, &plugins, "order", order("o2", "context", json!({}))).await.unwrap();
        assert_eq!(out["results"][0]["ok"], json!({
            "caller": "key:test", "request": "calls-test", "scope": "CN-GD",
            "calling_plugin": "caller", "schedule": null,
        }));

        // Events the callee emits reach sync subscribers inside the call.
        call_op(&f, &caller, &plugins, "order", order("o3", "touch", json!({"key": "t1"}))).await.unwrap();
        assert_eq!(counters::get(&f.db.db, &f.tenant, "listener", "seen:t1").await.unwrap(), 1);
    }

    async fn a_chain_rolls_back_entirely_when_the_callee_refuses_or_traps(kind) {
        // The looping callee runs to its end, three quarters of the
        // caller's; the caller's last quarter must suffice to pass the error
        // on even on two busy cores, so the deadline is 2 s, not 0.5 s.
        let f = Fixture::with(kind, |c| { limits(c); c.deadline = std::time::Duration::from_secs(2); }).await;
        let caller = caller(&f, "caller", &["probe.put", "probe.hog"]).await;
        let probe = probe(&f, None).await;
        let plugins = set(&[&caller, &probe]);
        let cases = [
            ("refuse", "put", json!({"then": "error"}), "CHANGED_MY_MIND", "refusing after writing"),
            ("trap", "put", json!({"then": "panic"}), "PLUGIN_FAILED", "probe.put failed: the plugin probe failed (trapped)"),
            ("timeout", "put", json!({"then": "loop"}), "PLUGIN_FAILED", "probe.put failed: the plugin probe did not finish"),
            ("memory", "hog", json!({}), "PLUGIN_FAILED", "probe.hog failed: the plugin probe exceeded its memory limit"),
        ];
        for (key, op, then, code, message) in cases {
            let mut input = json!({"key": key, "data": {"n": 1}});
            input.as_object_mut().unwrap().extend(then.as_object().unwrap().clone());
            // The caller passes the callee's error on: nothing stays.
            let err = call_op(&f, &caller, &plugins, "order", order(key, op, input.clone())).await.unwrap_err();
            assert_eq!(err.code(), code, "{key}: {err:?}");
            assert!(err.to_string().contains(message), "{key}: {err}");
            assert_eq!(record(&f, "caller", "orders", key).await, None, "{key}: the caller's write stayed");
            assert_eq!(record(&f, "probe", "items", key).await, None, "{key}: the callee's write stayed");

            // The caller keeps the error and returns Ok: only the callee's
            // writes are gone.
            let mut kept = order(&format!("{key}-kept"), op, input);
            kept["swallow"] = json!(true);
            let out = call_op(&f, &caller, &plugins, "order", kept).await.unwrap();
            let error = &out["results"][0]["error"];
            let (kind, expected_code) = if code == "PLUGIN_FAILED" { ("internal", Value::Null) } else { ("refused", json!(code)) };
            assert_eq!((&error["kind"], &error["code"]), (&json!(kind), &expected_code), "{key}: {out}");
            assert!(record(&f, "caller", "orders", &format!("{key}-kept")).await.is_some(), "{key}: the caller's order");
            assert_eq!(record(&f, "probe", "items", key).await, None, "{key}: the callee's write stayed");
        }
        assert_eq!(puts(&f).await, 0);
        assert!(event_types(&f).await.is_empty(), "the callee's events stayed");

        // The callee succeeds but the caller then fails: both roll back.
        let mut input = order("late", "put", json!({"key": "late", "data": {}}));
        input["then"] = json!("error");
        let err = call_op(&f, &caller, &plugins, "order", input).await.unwrap_err();
        assert_eq!(err.code(), "ORDER_FAILED");
        assert_eq!(record(&f, "probe", "items", "late").await, None);
        assert_eq!(puts(&f).await, 0);
    }

    async fn a_callee_is_denied_a_capability_its_caller_has(kind) {
        let f = Fixture::new(kind).await;
        let caller = caller(&f, "caller", &["probe.call"]).await;
        assert!(caller.grants.has(Capability::Counters));
        let probe = probe(&f, Some(Capability::Counters)).await;
        let plugins = set(&[&caller, &probe]);
        let mut input = order("o1", "call", json!({"capability": "counters", "arg": "k"}));
        input["swallow"] = json!(true);
        let out = call_op(&f, &caller, &plugins, "order", input).await.unwrap();
        let error = &out["results"][0]["error"];
        assert_eq!(error["kind"], "denied", "{out}");
        assert_eq!(error["message"], "the plugin probe was not granted the counters capability");
        // Passed on, it reaches the client as FORBIDDEN.
        let err = call_op(&f, &caller, &plugins, "order", order("o2", "call", json!({"capability": "counters", "arg": "k"}))).await.unwrap_err();
        assert_eq!(err.code(), "FORBIDDEN");
        assert!(record(&f, "caller", "orders", "o2").await.is_none());
    }

    async fn calls_not_allowed_are_typed_errors_that_change_nothing(kind) {
        let f = Fixture::with(kind, |c| { limits(c); c.max_input_bytes = 4096; }).await;
        let other = Fixture::tenant_in(&f.db, "other").await;
        let grants = {
            let m = caller_manifest("caller", &["probe.put", "probe.context", "probe.lines", "probe.big", "ghost.put", "elsewhere.put", "plain.put"]);
            let mut g = Grants::all_requested(&m);
            g.calls.remove(&"probe.context".parse().unwrap());
            (m, g)
        };
        let caller = activation(&f, grants.0, Some(grants.1), "caller").await;
        let probe = probe(&f, None).await;
        // A plugin of another tenant slipped into the set is still not found.
        let m = probe_manifest("elsewhere");
        let mut elsewhere = (*activation(&f, m, None, "probe").await).clone_with_config(json!({}));
        elsewhere.tenant = other;
        // A plugin that does not enforce org scopes, called for a caller
        // limited to CN-GD, would act on the whole tenant for it.
        let mut m = probe_manifest("plain");
        m.enforces_org_scope = false;
        let plain = activation(&f, m, None, "probe").await;
        let plugins = set(&[&caller, &probe, &Arc::new(elsewhere), &plain]);
        let call = |plugin: &str, operation: &str, input: Value, pad: usize| {
            json!({"plugin": plugin, "operation": operation, "input": input, "pad": pad})
        };
        let put = json!({"key": "k", "data": {}});
        let out = call_op(&f, &caller, &plugins, "order", json!({"key": "o1", "swallow": true, "calls": [
            call("probe", "touch", json!({"key": "k"}), 0),
            call("probe", "context", json!({}), 0),
            call("probe", "lines", json!({}), 0),
            call("ghost", "put", put.clone(), 0),
            call("elsewhere", "put", put.clone(), 0),
            call("probe", "put", json!([1]), 0),
            call("probe", "put", put.clone(), 5000),
            call("probe", "big", json!({"bytes": 100_000}), 0),
            call("plain", "put", put.clone(), 0),
        ]})).await.unwrap();
        let expected = [
            ("denied", "the plugin caller does not declare the call probe.touch (add it to [[calls]] in its manifest)"),
            ("denied", "the plugin caller was not granted the call probe.context"),
            ("not-found", "the plugin probe offers no operation \"lines\" to other plugins"),
            ("not-found", "the plugin ghost is not enabled for this tenant"),
            ("not-found", "the plugin elsewhere is not enabled for this tenant"),
            ("invalid-input", "input: the input of probe.put must be a JSON object"),
            ("invalid-input", "input: the input of probe.put is 5030 bytes; the limit is 4096"),
            ("internal", "probe.big failed: the plugin probe's output is 100002 bytes; the limit is 65536"),
            ("denied", "the caller is limited to an org node, and the plugin plain does not enforce org scopes"),
        ];
        for (n, (kind, message)) in expected.iter().enumerate() {
            let e = &out["results"][n]["error"];
            assert_eq!((e["kind"].as_str(), e["message"].as_str()), (Some(*kind), Some(*message)), "call {n}: {out}");
        }
        assert_eq!(record(&f, "probe", "items", "k").await, None);
        assert_eq!(record(&f, "plain", "items", "k").await, None);
        assert_eq!(puts(&f).await, 0);
    }

    async fn a_stubbed_call_answers_its_script_only_after_the_callers_checks(kind) {
        let stubs = CallStubs::default();
        let f = Fixture::with(kind, |c| { limits(c); c.call_stubs = Some(stubs.clone()); }).await;
        // Neither callee is enabled: the stubs answer for them.
        stubs.set("rewards", "creditPoints", StubAnswer::Output(json!({"balance": 5})));
        let refusal = StubAnswer::Error { code: "INSUFFICIENT_POINTS".into(), message: "none left".into() };
        stubs.set("rewards", "spendPoints", refusal);
        stubs.set("rewards", "undeclared", StubAnswer::Output(json!(1)));
        let caller = caller(&f, "caller", &["rewards.creditPoints", "rewards.spendPoints"]).await;
        let plugins = set(&[&caller]);
        let call = |operation: &str, input: Value| json!({"plugin": "rewards", "operation": operation, "input": input});
        let out = call_op(&f, &caller, &plugins, "order", json!({"key": "o1", "swallow": true, "calls": [
            call("creditPoints", json!({"points": 5})),
            call("spendPoints", json!({"points": 1})),
            call("undeclared", json!({})),
            call("creditPoints", json!([1])),
        ]})).await.unwrap();
        assert_eq!(out["results"][0], json!({"ok": {"balance": 5}}), "{out}");
        let e = &out["results"][1]["error"];
        assert_eq!((e["kind"].as_str(), e["code"].as_str()), (Some("refused"), Some("INSUFFICIENT_POINTS")), "{out}");
        assert_eq!(out["results"][2]["error"]["kind"], "denied", "a stub skips no check: {out}");
        assert_eq!(out["results"][3]["error"]["kind"], "invalid-input", "{out}");
        let calls = stubs.calls(true);
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0], json!({"plugin": "rewards", "operation": "creditPoints", "input": {"points": 5}, "caller": "caller"}));
        assert!(stubs.calls(false).is_empty(), "cleared");
        // The caller's own writes commit as usual around the stubbed calls.
        assert!(record(&f, "caller", "orders", "o1").await.is_some());
    }

    async fn a_cycle_and_a_chain_past_the_depth_limit_are_refused(kind) {
        let f = Fixture::new(kind).await;
        let names = ["c0", "c1", "c2", "c3", "c4", "c5"];
        let mut acts = Vec::new();
        for name in names {
            let calls: Vec<String> = names.iter().filter(|n| **n != name).map(|n| format!("{n}.relay")).collect();
            let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
            acts.push(caller(&f, name, &calls).await);
        }
        let plugins = set(&acts.iter().collect::<Vec<_>>());
        let relay = |tag: &str, chain: &[&str]| json!({"tag": tag, "chain": chain});
        // Five plugins deep (depths 0 to 4) is allowed, and everyone commits.
        let out = call_op(&f, &acts[0], &plugins, "relay", relay("ok", &["c1", "c2", "c3", "c4"])).await.unwrap();
        assert_eq!(out["ran"], 5, "{out}");
        let innermost = &out["innermost"]["innermost"]["innermost"]["innermost"];
        assert_eq!(innermost["caller"], "key:test", "the original caller, all the way down");
        assert_eq!(innermost["calling_plugin"], "c3");
        for name in &names[..5] {
            assert!(record(&f, name, "orders", "relay:ok").await.is_some(), "{name}");
        }
        // A sixth is refused, and the whole chain rolls back.
        let err = call_op(&f, &acts[0], &plugins, "relay", relay("deep", &["c1", "c2", "c3", "c4", "c5"])).await.unwrap_err();
        assert_eq!(err.code(), "CALL_TOO_DEEP", "{err:?}");
        assert!(err.to_string().contains("c4 cannot call c5.relay"), "{err}");
        // A plugin already on the chain is refused.
        let err = call_op(&f, &acts[0], &plugins, "relay", relay("cycle", &["c1", "c2", "c0"])).await.unwrap_err();
        assert_eq!(err.code(), "CALL_CYCLE", "{err:?}");
        assert!(err.to_string().contains("c0 → c1 → c2 → c0"), "{err}");
        for name in names {
            for tag in ["deep", "cycle"] {
                assert!(record(&f, name, "orders", &format!("relay:{tag}")).await.is_none(), "{name}: a write stayed");
            }
        }
    }
}

/// A change to a manifest.
type Edit = dyn Fn(&mut Manifest);

#[test]
fn calls_and_offers_need_contract_0_2_and_valid_names() {
    let base = caller_manifest("caller", &[]);
    let with = |edit: &Edit| {
        let mut m = base.clone();
        edit(&mut m);
        m.validate()
    };
    assert!(with(&|_| {}).is_ok());
    let legacy = with(&|m| {
        m.wit = "0.1.0".into();
        m.events.schemas.clear();
        m.offers.operations.clear();
        m.enforces_org_scope = false;
        m.calls = vec![PluginCall::new("rewards", "spendPoints")];
    });
    assert!(
        legacy
            .as_ref()
            .is_err_and(|e| e.starts_with("calls: ") && e.contains("keel:plugin@0.2.0")),
        "{legacy:?}"
    );
    let legacy = with(&|m| {
        m.wit = "0.1.0".into();
        m.events.schemas.clear();
        m.enforces_org_scope = false;
    });
    assert!(
        legacy.as_ref().is_err_and(|e| e.starts_with("offers: ")),
        "{legacy:?}"
    );
    // A 0.1.0 component never sees a scope, so it cannot enforce one.
    let legacy = with(&|m| {
        m.wit = "0.1.0".into();
        m.events.schemas.clear();
        m.offers.operations.clear();
    });
    assert!(
        legacy
            .as_ref()
            .is_err_and(|e| e.starts_with("enforces_org_scope: ")),
        "{legacy:?}"
    );
    let cases: [(&Edit, &str); 6] = [
        (
            &|m| m.calls = vec![PluginCall::new("caller", "relay")],
            "calls: caller.relay: a plugin does not call itself",
        ),
        (
            &|m| m.calls = vec![PluginCall::new("Rewards", "x")],
            "calls: \"Rewards\" is not a plugin name",
        ),
        (
            &|m| m.calls = vec![PluginCall::new("rewards", "spend points")],
            "calls: \"spend points\" is not an operation name",
        ),
        (
            &|m| m.calls = vec![PluginCall::new("rewards", "a"); 2],
            "calls: rewards.a is declared twice",
        ),
        (
            &|m| m.offers.operations = vec!["relay".into(), "relay".into()],
            "offers.operations: \"relay\" is declared twice",
        ),
        (
            &|m| m.offers.operations = vec!["".into()],
            "offers.operations: \"\" must be",
        ),
    ];
    for (edit, expected) in cases {
        let got = with(edit);
        assert!(
            got.as_ref().is_err_and(|e| e.starts_with(expected)),
            "{expected}: {got:?}"
        );
    }
}

#[test]
fn a_grant_names_only_calls_the_manifest_declares() {
    let m = caller_manifest("caller", &["probe.put"]);
    let mut g = Grants::all_requested(&m);
    assert_eq!(
        g.calls.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["probe.put"]
    );
    assert!(g.check_within(&m).is_ok());
    g.calls.insert("rewards.spendPoints".parse().unwrap());
    assert_eq!(
        g.check_within(&m).unwrap_err(),
        "grants: caller declares no call to rewards.spendPoints"
    );
    // Stored grants without calls (every grant before contract 0.2) read as none.
    let old: Grants =
        serde_json::from_str(r#"{"capabilities": ["records"], "http_hosts": []}"#).unwrap();
    assert!(old.calls.is_empty());
}
