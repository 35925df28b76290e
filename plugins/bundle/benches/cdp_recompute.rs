//! The CDP's full segment recompute over `RECOMPUTE_PERSONS` profiles
//! (1,000,000 unless set), on SQLite (unless `RECOMPUTE_SQLITE=0`) and
//! (with KEEL_TEST_POSTGRES_URL and `RECOMPUTE_POSTGRES=1`) PostgreSQL:
//! time and peak memory.
//!
//! The profiles are written straight into the plugin's records (their
//! trait states built by keel-cdp-core, as ingest would have left them),
//! so that the run measures the recompute, not the ingest before it. Four
//! traits, four segments (a sum, a windowed count, a tag, and a segment of
//! segments). Two recomputes are timed: the first build (every member
//! enters) and the nightly one after it (nothing changes).
//!
//! `cargo bench -p keel-plugins --bench cdp_recompute`.

#[path = "../tests/all/support.rs"]
#[allow(dead_code, reason = "the tests' support module, shared")]
mod support;

use std::time::{Duration, Instant};

use keel_cdp_core::aggregate::{Part, TraitState};
use keel_cdp_core::traits::{day_of, parse_all};
use keel_core::Backend;
use keel_core::records::{Expect, Location};
use serde_json::{Value, json};
use support::{Kernel, ok};

/// Profiles written per transaction.
const CHUNK: usize = 10_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The process's peak resident memory since the last reset, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts counting the peak again from the current use (Linux).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn traits() -> Value {
    json!([
        {"name": "orders", "event": "order.paid", "agg": "count"},
        {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
        {"name": "last_store", "event": "order.paid", "agg": "last", "property": "store"},
        {"name": "views_30d", "event": "page.viewed", "agg": "count", "windowDays": 30},
    ])
}

/// Profile `p`: a few orders and page views over the last 60 days.
fn profile(p: usize, defs: &[keel_cdp_core::traits::TraitDef], today: i32) -> Value {
    let mut states = serde_json::Map::new();
    let orders = p % 7;
    let views = (p / 7) % 5;
    for d in defs {
        let mut s = TraitState::default();
        let n = if d.event == "page.viewed" {
            views
        } else {
            orders
        };
        for i in 0..n {
            let day = today - ((p + i * 13) % 60) as i32;
            let part = match d.name.as_str() {
                "spend_total" => Part::number(((p * 31 + i * 97) % 400) as i128 * 10_000),
                "last_store" => Part::stamped(keel_cdp_core::aggregate::Stamp {
                    at: i64::from(day) * 86_400_000_000,
                    id: format!("o{p}-{i}"),
                    v: json!(format!("S{}", (p + i) % 50)),
                }),
                _ => Part::one(),
            };
            s.add(d, day, part);
        }
        if !s.is_empty() {
            states.insert(format!("{}@1", d.name), serde_json::to_value(&s).unwrap());
        }
    }
    let tags = if p.is_multiple_of(10) {
        json!(["vip"])
    } else {
        json!([])
    };
    // Created after the traits were declared, as ingest leaves it: every
    // state complete (`filled`), nothing to rebuild from the timeline.
    let filled: Vec<String> = defs.iter().map(|d| format!("{}@1", d.name)).collect();
    json!({"traits": states, "tags": tags, "events": orders + views, "filled": filled})
}

async fn recompute(k: &Kernel, owner: &str) -> (Duration, u64) {
    let started = Instant::now();
    let r = k
        .gql(owner, "mutation { recomputeSegments { id } }", json!({}))
        .await;
    let id = ok(&r)["recomputeSegments"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = k
            .gql(
                owner,
                "query($id: String!) { cdpRecomputeJob(id: $id) { status scanned } }",
                json!({"id": id}),
            )
            .await;
        let job = &ok(&r)["cdpRecomputeJob"];
        if job["status"] == "DONE" {
            return (started.elapsed(), job["scanned"].as_u64().unwrap());
        }
    }
}

async fn run(kind: Backend, persons: usize) {
    let k = Kernel::start(kind).await;
    let b = k.brand("acme", json!({})).await;
    k.enable(
        &b,
        "cdp",
        &[
            "records",
            "events",
            "counters",
            "persons-read",
            "persons-write",
        ],
        json!({}),
        &[],
    )
    .await;
    ok(&k
        .gql(
            &b.owner,
            "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }",
            json!({"t": traits()}),
        )
        .await);
    for (id, rule) in [
        (
            "big",
            json!({"trait": {"name": "spend_total", "op": "gte", "value": 500}}),
        ),
        (
            "browsers",
            json!({"all": [{"trait": {"name": "views_30d", "op": "gte", "value": 2}}, {"trait": {"name": "orders", "op": "lt", "value": 1}}]}),
        ),
        ("vips", json!({"tag": "vip"})),
        (
            "big_vips",
            json!({"all": [{"segment": "big"}, {"segment": "vips"}]}),
        ),
    ] {
        ok(&k
            .gql(
                &b.owner,
                "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }",
                json!({"i": {"id": id, "name": id, "rule": rule}}),
            )
            .await);
    }
    // Let the saves' own recomputes (over no profiles) finish first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let tenant = keel_core::tenants::get_by_slug(&k.db, "acme")
        .await
        .unwrap()
        .id;
    let defs = parse_all(&traits()).unwrap();
    let today = day_of(chrono::Utc::now().timestamp_micros());
    let written = Instant::now();
    for chunk in (0..persons).collect::<Vec<_>>().chunks(CHUNK) {
        let mut tx = k.db.begin().await.unwrap();
        for p in chunk {
            let key = format!("P{p:09}");
            let loc = Location {
                namespace: "cdp",
                collection: "profiles",
                key: &key,
            };
            keel_core::records::put(
                &mut tx,
                &tenant,
                loc,
                &profile(*p, &defs, today),
                Expect::Absent,
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let written = written.elapsed();

    reset_peak();
    let base = peak_mib();
    let (first, scanned) = recompute(&k, &b.owner).await;
    let first_peak = peak_mib();
    assert_eq!(scanned, persons as u64);
    let r = k
        .gql(&b.owner, "{ cdpSegments { id size } }", json!({}))
        .await;
    let sizes = ok(&r)["cdpSegments"].clone();
    reset_peak();
    let (again, _) = recompute(&k, &b.owner).await;
    let again_peak = peak_mib();

    println!("\n== {kind:?}: segment recompute over {persons} profiles, 4 traits, 4 segments ==");
    println!(
        "profiles written (direct, {CHUNK} a transaction)  {:>8.1} s",
        written.as_secs_f64()
    );
    for (name, t, peak) in [
        ("first build (every member enters)", first, first_peak),
        ("nightly (nothing changes)", again, again_peak),
    ] {
        println!(
            "{name:<40} {:>8.1} s   {:>8.0} profiles/s   peak RSS {:>6.0} MiB (from {base:.0})",
            t.as_secs_f64(),
            persons as f64 / t.as_secs_f64(),
            peak
        );
    }
    println!("segment sizes: {sizes}");
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let persons = env("RECOMPUTE_PERSONS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if env("RECOMPUTE_SQLITE", 1) == 1 {
            run(Backend::Sqlite, persons).await;
        }
        if keel_testkit::postgres_url().is_some() && env("RECOMPUTE_POSTGRES", 0) == 1 {
            run(Backend::Postgres, persons).await;
        }
    });
}
