//! The CDP plugin's ingest, measured in one run on SQLite and (with
//! KEEL_TEST_POSTGRES_URL) PostgreSQL:
//!
//! - `cdpIdentify` of `PERSONS` × 0.8 persons (batches of 1,000 rows);
//! - `cdpTrack` of `EVENTS` events (100,000 unless set) over `PERSONS`
//!   persons (50,000 unless set; 80% already known, the rest created by
//!   One ID on the way), 5 computed traits and 4 segments, batches of
//!   1,000 over HTTP
//!   from `BATCH_CLIENTS` clients (4 unless set);
//! - the database's own rate for a batch of the same shape: per event a
//!   marker and a timeline row inserted, per person one upsert of its
//!   profile row, 1,000 events a transaction, plain sqlx on the kernel's
//!   pools;
//! - the profile view of a person with 10,000 events: p50 and p99.
//!
//! `cargo bench -p keel-plugins --bench cdp`.

#[path = "../tests/all/support.rs"]
#[allow(dead_code, reason = "the tests' support module, shared")]
mod support;
#[path = "timing/mod.rs"]
#[allow(dead_code, reason = "the timing module, shared with the other benches")]
mod timing;

use std::sync::Arc;

use keel_core::{Backend, Db};
use serde_json::{Value, json};
use support::{Kernel, ok};
use timing::{Stats, measure};

const TRACK: &str = "mutation($b: String!, $e: [CdpEventInput!]!) { cdpTrack(batchId: $b, events: $e) { accepted rejected { index message } } }";
const IDENTIFY: &str = "mutation($b: String!, $r: [CdpIdentifyInput!]!) { cdpIdentify(batchId: $b, rows: $r) { accepted } }";
const BATCH: usize = 1000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn phone(p: usize) -> String {
    format!("+86139{p:08}")
}

/// Event `i`: an order of one of `persons` persons, spread so that a batch
/// names ~1,000 different persons, over the last 60 days.
fn event(i: usize, persons: usize, now: chrono::DateTime<chrono::Utc>) -> Value {
    let p = (i.wrapping_mul(2_654_435_761)) % persons;
    let at = now - chrono::Duration::seconds((i % (60 * 86_400)) as i64);
    json!({
        "messageId": format!("o{i}"),
        "source": "shop",
        "type": if i.is_multiple_of(5) { "page.viewed" } else { "order.paid" },
        "identifiers": [{"kind": "phone", "value": phone(p)}],
        "occurredAt": at.to_rfc3339(),
        "properties": {"total": (i % 997) as f64 / 10.0, "store": format!("S{}", i % 50), "channel": if i.is_multiple_of(3) { "store" } else { "web" }},
    })
}

fn row(name: &str, unit: &str, s: &Stats, per_call: usize) {
    println!(
        "{name:<52} {:>9.0} {unit}/s   p50 {:>8.2} ms   p99 {:>8.2} ms",
        s.per_sec * per_call as f64,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3
    );
}

/// The database's own rate for an ingest batch's writes, plain sqlx:
/// `batches` transactions of `BATCH` events, each a marker and a timeline
/// row, and one profile upsert per distinct person of the batch.
async fn database(db: &Db, batches: usize, persons: usize, clients: usize) -> Stats {
    let mut tx = db.begin().await.unwrap();
    for ddl in [
        "CREATE TABLE IF NOT EXISTS bench_marks (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS bench_timeline (id TEXT PRIMARY KEY, person TEXT NOT NULL, body TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS bench_timeline_person ON bench_timeline (person, id)",
        "CREATE TABLE IF NOT EXISTS bench_profiles (id TEXT PRIMARY KEY, version BIGINT NOT NULL, body TEXT NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let db = Arc::new(db.clone());
    let now = chrono::Utc::now();
    measure(batches, clients, move |b| {
        let db = db.clone();
        async move {
            let events: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
                .map(|i| event(i, persons, now))
                .collect();
            let mut tx = db.begin().await.unwrap();
            let mut people = std::collections::BTreeSet::new();
            for e in &events {
                let id = e["messageId"].as_str().unwrap();
                let person = e["identifiers"][0]["value"].as_str().unwrap();
                sqlx::query("INSERT INTO bench_marks (id, body) VALUES ($1, $2)")
                    .bind(id)
                    .bind(person)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query("INSERT INTO bench_timeline (id, person, body) VALUES ($1, $2, $3)")
                    .bind(format!("{}:{id}", e["occurredAt"].as_str().unwrap()))
                    .bind(person)
                    .bind(e.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                people.insert(person.to_owned());
            }
            let body = format!("{{\"traits\":{{\"pad\":\"{}\"}}}}", "x".repeat(400));
            for p in people {
                sqlx::query(
                    "INSERT INTO bench_profiles (id, version, body) VALUES ($1, 1, $2) \
                     ON CONFLICT (id) DO UPDATE SET version = bench_profiles.version + 1, body = excluded.body",
                )
                .bind(p)
                .bind(&body)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
    })
    .await
}

async fn run(kind: Backend, events: usize, persons: usize) {
    let k = Arc::new(Kernel::start(kind).await);
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
    let traits = json!([
        {"name": "orders", "event": "order.paid", "agg": "count"},
        {"name": "spend_total", "event": "order.paid", "agg": "sum", "property": "total"},
        {"name": "biggest", "event": "order.paid", "agg": "max", "property": "total"},
        {"name": "last_store", "event": "order.paid", "agg": "last", "property": "store", "filter": {"channel": "store"}},
        {"name": "views_30d", "event": "page.viewed", "agg": "count", "windowDays": 30},
    ]);
    ok(&k
        .gql(
            &b.owner,
            "mutation($t: JSON!) { setCdpTraits(traits: $t) { name } }",
            json!({"t": traits}),
        )
        .await);
    // Four segments, saved before any profile exists (their first
    // recompute has nothing to do); every profile write evaluates them.
    for (id, rule) in [
        (
            "big",
            json!({"trait": {"name": "spend_total", "op": "gte", "value": 500}}),
        ),
        (
            "store_buyers",
            json!({"trait": {"name": "last_store", "op": "exists"}}),
        ),
        (
            "browsers",
            json!({"all": [{"trait": {"name": "views_30d", "op": "gte", "value": 2}}, {"trait": {"name": "orders", "op": "lt", "value": 1}}]}),
        ),
        ("members", json!({"not": {"tag": "blocked"}})),
    ] {
        ok(&k
            .gql(
                &b.owner,
                "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }",
                json!({"i": {"id": id, "name": id, "rule": rule}}),
            )
            .await);
    }
    let clients = env("BATCH_CLIENTS", 4);
    let owner: Arc<str> = b.owner.clone().into();

    let known = persons * 8 / 10;
    let identify = {
        let (k, owner) = (k.clone(), owner.clone());
        measure(known.div_ceil(BATCH), clients, move |n| {
            let (k, owner) = (k.clone(), owner.clone());
            async move {
                let rows: Vec<Value> = (n * BATCH..((n + 1) * BATCH).min(known))
                    .map(|p| json!({"identifiers": [{"kind": "phone", "value": phone(p)}], "attributes": {"member": true}}))
                    .collect();
                let r = k.gql(&owner, IDENTIFY, json!({"b": format!("id-{n}"), "r": rows})).await;
                assert!(ok(&r)["cdpIdentify"]["accepted"].as_u64().unwrap() > 0, "{r}");
            }
        })
        .await
    };

    let now = chrono::Utc::now();
    let batches = events / BATCH;
    let track = {
        let (k, owner) = (k.clone(), owner.clone());
        measure(batches, clients, move |n| {
            let (k, owner) = (k.clone(), owner.clone());
            async move {
                let events: Vec<Value> = (n * BATCH..(n + 1) * BATCH)
                    .map(|i| event(i, persons, now))
                    .collect();
                let r = k
                    .gql(&owner, TRACK, json!({"b": format!("t-{n}"), "e": events}))
                    .await;
                assert_eq!(ok(&r)["cdpTrack"]["accepted"], BATCH, "{r}");
            }
        })
        .await
    };
    let db = database(&k.db, batches, persons, clients).await;

    // One person with 10,000 events, then their profile opened 200 times.
    let heavy = "+86130000000";
    for n in 0..10 {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                let mut e = event(n * BATCH + i, persons, now);
                e["messageId"] = json!(format!("h{n}-{i}"));
                e["identifiers"] = json!([{"kind": "phone", "value": heavy}]);
                e
            })
            .collect();
        ok(&k
            .gql(&b.owner, TRACK, json!({"b": format!("h-{n}"), "e": events}))
            .await);
    }
    let r = k
        .gql(
            &b.owner,
            "{ personByIdentifier(kind: \"phone\", value: \"+86130000000\") { id } }",
            json!({}),
        )
        .await;
    let person: Arc<str> = ok(&r)["personByIdentifier"]["id"].as_str().unwrap().into();
    let view = {
        let (k, owner) = (k.clone(), owner.clone());
        measure(200, 1, move |_| {
            let (k, owner, person) = (k.clone(), owner.clone(), person.clone());
            async move {
                let r = k
                    .gql(&owner, "query($p: String!) { cdpProfile(personId: $p, limit: 50) { events traits { value } timeline { events { messageId } next } } }", json!({"p": &*person}))
                    .await;
                assert_eq!(ok(&r)["cdpProfile"]["events"], 10_000, "{r}");
            }
        })
        .await
    };

    println!(
        "\n== {kind:?}: {events} events over {persons} persons, batches of {BATCH}, {clients} clients =="
    );
    row(
        "cdpIdentify (One ID, attributes)",
        "persons",
        &identify,
        BATCH,
    );
    row(
        "cdpTrack (One ID, dedupe, timeline, traits, segments)",
        "events",
        &track,
        BATCH,
    );
    row(
        "database: the same writes per batch (sqlx)",
        "events",
        &db,
        BATCH,
    );
    println!(
        "cdpTrack / database: {:.1}%",
        100.0 * track.per_sec / db.per_sec
    );
    row("profile view, 10,000 events (HTTP)", "views", &view, 1);
}

fn main() {
    // `RUST_LOG=warn` shows why a call failed (the kernel's log).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let events = env("EVENTS", 100_000);
    let persons = env("PERSONS", 50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(Backend::Sqlite, events, persons).await;
        if keel_testkit::postgres_url().is_some() {
            run(Backend::Postgres, events, persons).await;
        }
    });
}
