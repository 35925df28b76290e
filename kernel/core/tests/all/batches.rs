//! Batch writes for ingest: `events::append_batch` and
//! `persons::identify_batch` — in order, idempotent where their single
//! forms are, all or nothing, every refusal naming its item.

use keel_core::events::{self, EventFilter, NewEvent};
use keel_core::persons::{self, Identified, Identify};
use keel_core::{Db, Error, Result, TenantId, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::{Value, json};

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn event(event_type: &str, payload: Value, key: Option<&str>) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        person_id: None,
        payload,
        idempotency_key: key.map(Into::into),
        occurred_at: None,
    }
}

/// Appends in a transaction of its own, committed whatever the outcome.
async fn append(db: &Db, tenant: &TenantId, batch: Vec<NewEvent>) -> Result<Vec<events::Event>> {
    let mut tx = db.begin().await.unwrap();
    let r = events::append_batch(&mut tx, tenant, batch, "key:test").await;
    tx.commit().await.unwrap();
    r
}

async fn stored(db: &Db, tenant: &TenantId) -> Vec<events::Event> {
    events::list(db, tenant, &EventFilter::default(), events::MAX_PAGE, None)
        .await
        .unwrap()
        .events
}

fn ids(events: &[events::Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

fn bad_input<T: std::fmt::Debug>(r: Result<T>) -> (String, String) {
    match r {
        Err(Error::BadInput { field, message }) => (field, message),
        other => panic!("expected BadInput, got {other:?}"),
    }
}

fn phones(list: &[&str]) -> Identify {
    Identify {
        identifiers: list
            .iter()
            .map(|p| ("phone".to_owned(), (*p).to_owned()))
            .collect(),
        ..Default::default()
    }
}

async fn identify(db: &Db, tenant: &TenantId, batch: Vec<Identify>) -> Result<Vec<Identified>> {
    let mut tx = db.begin().await.unwrap();
    let r = persons::identify_batch(&mut tx, tenant, batch, "key:test").await;
    tx.commit().await.unwrap();
    r
}

async fn person_count(db: &Db, tenant: &TenantId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM persons WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_one(db.reader())
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_batch_appends_in_order_and_a_retry_stores_nothing_twice(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let earlier = append(&t.db, &tenant, vec![event("order.paid", json!({"n": 0}), Some("order-0"))]).await.unwrap();
        let batch = || vec![
            event("order.paid", json!({"n": 1}), Some("order-1")),
            event("code.scanned", json!({"n": 2}), None),
            event("order.paid", json!({"n": 3}), Some("order-0")),
            event("order.paid", json!({"n": 4}), Some("order-1")),
            event("order.paid", json!({"n": 5}), Some("order-5")),
        ];
        let first = append(&t.db, &tenant, batch()).await.unwrap();
        assert_eq!(first.len(), 5);
        assert_eq!(first[2], earlier[0], "a key stored before returns its event");
        assert_eq!(first[3], first[0], "a key repeated in the batch returns its first event");
        // ...of the same type only: another type under a key the batch
        // already used is refused, naming the item, and nothing is stored.
        let clash = vec![event("order.paid", json!({}), Some("k-9")), event("order.refunded", json!({}), Some("k-9"))];
        match append(&t.db, &tenant, clash).await {
            Err(Error::Conflict(m)) => assert!(m.contains("events[1]") && m.contains("order.paid"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(first[0].payload, json!({"n": 1}));
        assert!(first[0].seq < first[1].seq && first[1].seq < first[4].seq, "positions follow the batch order");
        assert!(first.iter().all(|e| e.producer == "key:test"));
        let all = stored(&t.db, &tenant).await;
        assert_eq!(ids(&all), [earlier[0].id.as_str(), first[0].id.as_str(), first[1].id.as_str(), first[4].id.as_str()]);

        let retry = append(&t.db, &tenant, batch()).await.unwrap();
        for (a, b) in first.iter().zip(&retry) {
            if a.idempotency_key.is_some() {
                assert_eq!(a, b);
            }
        }
        // The unkeyed event is appended again; everything keyed is not.
        assert_eq!(stored(&t.db, &tenant).await.len(), 5);
        assert_eq!(append(&t.db, &tenant, vec![]).await.unwrap(), vec![]);
        // Single appends go on after the batch's positions.
        let next = append(&t.db, &tenant, vec![event("order.paid", json!({}), None)]).await.unwrap();
        assert!(next[0].seq > retry[1].seq);
    }

    async fn events_of_a_batch_name_live_persons(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let people = identify(&t.db, &tenant, vec![phones(&["13800000001"]), phones(&["13800000002"])]).await.unwrap();
        let (a, b) = (people[0].person.id.clone(), people[1].person.id.clone());
        let mut tx = t.db.begin().await.unwrap();
        persons::merge(&mut tx, &tenant, &a, &b, "duplicate", "test").await.unwrap();
        tx.commit().await.unwrap();
        let batch = vec![
            NewEvent { person_id: Some(b.clone()), ..event("order.paid", json!({}), None) },
            NewEvent { person_id: Some(a.clone()), ..event("order.paid", json!({}), None) },
        ];
        let out = append(&t.db, &tenant, batch).await.unwrap();
        assert_eq!(out[0].person_id.as_deref(), Some(a.as_str()), "a merged person's events go to the survivor");
        assert_eq!(out[1].person_id.as_deref(), Some(a.as_str()));
    }

    async fn an_invalid_event_refuses_the_batch_naming_it(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let other = tenant_person(&t.db, "bravo").await;
        let ok = || event("order.paid", json!({}), Some("ok"));
        let cases = [
            (vec![ok(), event("Order Paid", json!({}), None)], "events[1].type"),
            (vec![ok(), ok(), event("order.paid", json!([1]), None)], "events[2].payload"),
            (vec![ok(), event("order.paid", json!({}), Some(""))], "events[1].idempotencyKey"),
            (vec![ok(), event("order.paid", json!({"big": "x".repeat(300 * 1024)}), None)], "events[1].payload"),
            (vec![ok(), NewEvent { person_id: Some("nobody".into()), ..event("order.paid", json!({}), None) }], "events[1].personId"),
            // Another tenant's person does not exist here.
            (vec![ok(), NewEvent { person_id: Some(other.clone()), ..event("order.paid", json!({}), None) }], "events[1].personId"),
        ];
        for (batch, field) in cases {
            assert_eq!(bad_input(append(&t.db, &tenant, batch).await).0, field);
        }
        let too_many: Vec<NewEvent> = (0..1001).map(|_| event("order.paid", json!({}), None)).collect();
        let (f, m) = bad_input(append(&t.db, &tenant, too_many).await);
        assert_eq!((f.as_str(), m.as_str()), ("events", "1001 events; at most 1000 per call"));
        assert!(stored(&t.db, &tenant).await.is_empty(), "nothing was written");
        // A full batch goes in.
        let full: Vec<NewEvent> = (0..1000).map(|i| event("order.paid", json!({"i": i}), Some(&format!("k{i}")))).collect();
        assert_eq!(append(&t.db, &tenant, full).await.unwrap().len(), 1000);
    }

    async fn identify_batch_resolves_each_item_in_order(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let batch = || vec![
            phones(&["13800000001"]),
            Identify {
                identifiers: vec![("phone".into(), "138-0000-0001".into()), ("email".into(), "A@Example.com".into())],
                attributes: Some(json!({"tier": "gold"}).as_object().cloned().unwrap()),
                merge: false,
            },
            phones(&["13800000002"]),
        ];
        let first = identify(&t.db, &tenant, batch()).await.unwrap();
        assert_eq!(first.iter().map(|r| r.created).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(first[0].person.id, first[1].person.id, "a later item sees what an earlier one created");
        assert_eq!(first[1].person.identifiers.len(), 2);
        assert_eq!(first[1].person.attributes["tier"], json!("gold"));
        let again = identify(&t.db, &tenant, batch()).await.unwrap();
        assert!(again.iter().all(|r| !r.created));
        let ids = |r: &[Identified]| r.iter().map(|x| x.person.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&first));
        assert_eq!(person_count(&t.db, &tenant).await, 2);
        assert!(identify(&t.db, &tenant, vec![]).await.unwrap().is_empty());
    }

    async fn a_refused_item_leaves_nothing_of_the_batch(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let bad = Identify { identifiers: vec![("fax".into(), "1".into())], ..Default::default() };
        let (f, _) = bad_input(identify(&t.db, &tenant, vec![phones(&["13800000001"]), bad]).await);
        assert_eq!(f, "batch[1].identifiers[0].kind");
        let (f, _) = bad_input(identify(&t.db, &tenant, vec![Identify::default()]).await);
        assert_eq!(f, "batch[0].identifiers");
        let too_many: Vec<Identify> = (0..1001).map(|i| phones(&[&format!("1380000{i:04}")])).collect();
        assert_eq!(bad_input(identify(&t.db, &tenant, too_many).await).0, "batch");
        assert_eq!(person_count(&t.db, &tenant).await, 0);

        // Item 2 names two persons that items 0 and 1 created: without
        // merge it is refused, after the first two ran — and they vanish
        // with it, even though the caller commits its transaction.
        let batch = vec![
            phones(&["13800000001"]),
            phones(&["13800000002"]),
            phones(&["13800000001", "13800000002"]),
        ];
        match identify(&t.db, &tenant, batch).await {
            Err(Error::Conflict(m)) => assert!(m.starts_with("batch[2]: these identifiers belong to 2 different persons"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(person_count(&t.db, &tenant).await, 0);
        // Over the phone limit (3) for one person: refused naming the item.
        let four = phones(&["13800000001", "13800000002", "13800000003", "13800000004"]);
        match identify(&t.db, &tenant, vec![phones(&["13900000000"]), four]).await {
            Err(Error::Conflict(m)) => assert!(m.starts_with("batch[1]: a person may have at most 3 phone"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(person_count(&t.db, &tenant).await, 0);
    }
}

/// A person of a new tenant `slug`.
async fn tenant_person(db: &Db, slug: &str) -> String {
    let t = tenant(db, slug).await;
    identify(db, &t, vec![phones(&["13700000000"])])
        .await
        .unwrap()[0]
        .person
        .id
        .clone()
}
