use keel_core::events::{self, Event, EventFilter, NewEvent};
use keel_core::persons::{self, Identify};
use keel_core::{Db, Error, Result, TenantId, Timestamp, tenants};
use keel_testkit::{TestDb, on_both_backends};
use serde_json::{Value, json};

async fn tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        person_id: None,
        payload,
        idempotency_key: None,
        occurred_at: None,
    }
}

fn of_person(event_type: &str, person: &str) -> NewEvent {
    NewEvent {
        person_id: Some(person.into()),
        ..event(event_type, json!({}))
    }
}

/// One append in a transaction of its own, committed whether or not the
/// append succeeds: a refused append must not have stored an event (it
/// may have skipped a position).
async fn append(db: &Db, tenant: &TenantId, new: NewEvent) -> Result<Event> {
    let mut tx = db.begin().await.unwrap();
    let r = events::append(&mut tx, tenant, new, "test").await;
    tx.commit().await.unwrap();
    r
}

/// A new person identified by `phone`.
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
    assert!(p.created);
    p.person.id
}

async fn merge(db: &Db, tenant: &TenantId, survivor: &str, merged: &str) {
    let mut tx = db.begin().await.unwrap();
    persons::merge(
        &mut tx,
        tenant,
        survivor,
        merged,
        "duplicate",
        "operator:test",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Every event matching `filter`, in one page.
async fn all(db: &Db, tenant: &TenantId, filter: &EventFilter) -> Vec<Event> {
    let page = events::list(db, tenant, filter, events::MAX_PAGE, None)
        .await
        .unwrap();
    assert!(!page.has_next_page);
    page.events
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

fn bad_field<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(Error::BadInput { field, .. }) => field,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

on_both_backends! {
    async fn an_appended_event_reads_back_by_id_with_everything_it_was_given(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let p = person(&t.db, &tenant, "13800000001").await;
        let new = NewEvent {
            person_id: Some(p.clone()),
            idempotency_key: Some("scan-1".into()),
            occurred_at: Some(Timestamp(1_700_000_000_000_000)),
            ..event("code.scanned", json!({"code": "X1", "n": [1, 2]}))
        };
        let e = append(&t.db, &tenant, new).await.unwrap();
        assert_eq!(e.event_type, "code.scanned");
        assert_eq!(e.payload, json!({"code": "X1", "n": [1, 2]}));
        assert_eq!(e.person_id.as_deref(), Some(p.as_str()));
        assert_eq!(e.idempotency_key.as_deref(), Some("scan-1"));
        assert_eq!(e.producer, "test");
        assert_eq!(e.occurred_at, Timestamp(1_700_000_000_000_000));
        assert!(e.recorded_at > e.occurred_at);
        assert_eq!(events::get(&t.db, &tenant, &e.id).await.unwrap(), e);

        // Without occurred_at, it happened when it was recorded.
        let now = append(&t.db, &tenant, event("order.paid", json!({}))).await.unwrap();
        assert_eq!(now.occurred_at, now.recorded_at);
        assert_eq!(now.person_id, None);
        assert!(now.seq > e.seq);
        assert_ne!(now.id, e.id);

        match events::get(&t.db, &tenant, "no-such-event").await {
            Err(Error::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    async fn an_append_retried_with_the_same_idempotency_key_returns_the_first_event(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let keyed = |n: i64| NewEvent {
            idempotency_key: Some("order-7-paid".into()),
            ..event("order.paid", json!({"n": n}))
        };
        let first = append(&t.db, &tenant, keyed(1)).await.unwrap();
        let again = append(&t.db, &tenant, keyed(1)).await.unwrap();
        assert_eq!(again, first);
        // A retry whose body differs still gets the stored event, unchanged.
        let different = append(&t.db, &tenant, keyed(2)).await.unwrap();
        assert_eq!(different, first);
        assert_eq!(different.payload, json!({"n": 1}));
        // A retry inside a transaction that also appends other things.
        let mut tx = t.db.begin().await.unwrap();
        let in_tx = events::append(&mut tx, &tenant, keyed(3), "test").await.unwrap();
        assert_eq!(in_tx, first);
        tx.commit().await.unwrap();

        assert_eq!(ids(&all(&t.db, &tenant, &EventFilter::default()).await), vec![first.id.as_str()]);

        // Another key, or none, appends anew.
        let other = append(&t.db, &tenant, NewEvent { idempotency_key: Some("order-8-paid".into()), ..keyed(1) }).await.unwrap();
        let unkeyed_1 = append(&t.db, &tenant, event("order.paid", json!({}))).await.unwrap();
        let unkeyed_2 = append(&t.db, &tenant, event("order.paid", json!({}))).await.unwrap();
        assert_ne!(unkeyed_1.id, unkeyed_2.id);
        let listed = all(&t.db, &tenant, &EventFilter::default()).await;
        assert_eq!(ids(&listed), vec![first.id.as_str(), other.id.as_str(), unkeyed_1.id.as_str(), unkeyed_2.id.as_str()]);

        let long_key = "k".repeat(201);
        for bad in ["", long_key.as_str()] {
            let new = NewEvent { idempotency_key: Some(bad.into()), ..keyed(1) };
            assert_eq!(bad_field(append(&t.db, &tenant, new).await), "idempotencyKey");
        }
    }

    async fn events_page_forward_by_sequence(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let mut appended = Vec::new();
        for i in 0..5 {
            appended.push(append(&t.db, &tenant, event("code.scanned", json!({"i": i}))).await.unwrap());
        }
        let all_ids = ids(&appended);
        let none = EventFilter::default();

        let p1 = events::list(&t.db, &tenant, &none, 2, None).await.unwrap();
        assert_eq!((ids(&p1.events), p1.has_next_page), (all_ids[0..2].to_vec(), true));
        let p2 = events::list(&t.db, &tenant, &none, 2, Some(p1.events[1].seq)).await.unwrap();
        assert_eq!((ids(&p2.events), p2.has_next_page), (all_ids[2..4].to_vec(), true));
        let p3 = events::list(&t.db, &tenant, &none, 2, Some(p2.events[1].seq)).await.unwrap();
        assert_eq!((ids(&p3.events), p3.has_next_page), (all_ids[4..5].to_vec(), false));
        let end = events::list(&t.db, &tenant, &none, 2, Some(p3.events[0].seq)).await.unwrap();
        assert_eq!((end.events.len(), end.has_next_page), (0, false));
        // A page that ends exactly at the last event has nothing after it.
        let exact = events::list(&t.db, &tenant, &none, 3, Some(p1.events[1].seq)).await.unwrap();
        assert_eq!((ids(&exact.events), exact.has_next_page), (all_ids[2..5].to_vec(), false));
        let one = events::list(&t.db, &tenant, &none, 1, None).await.unwrap();
        assert_eq!((ids(&one.events), one.has_next_page), (all_ids[0..1].to_vec(), true));
        // Oldest first, by position.
        assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq));

        assert_eq!(events::list(&t.db, &tenant, &none, events::MAX_PAGE, None).await.unwrap().events.len(), 5);
        assert_eq!(bad_field(events::list(&t.db, &tenant, &none, 0, None).await), "first");
        assert_eq!(bad_field(events::list(&t.db, &tenant, &none, 101, None).await), "first");
    }

    async fn events_filter_by_type_and_by_when_they_occurred(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let at = |event_type: &str, micros: i64| NewEvent {
            occurred_at: Some(Timestamp(micros)),
            ..event(event_type, json!({}))
        };
        let a = append(&t.db, &tenant, at("order.paid", 1_000)).await.unwrap();
        let b = append(&t.db, &tenant, at("code.scanned", 2_000)).await.unwrap();
        let c = append(&t.db, &tenant, at("order.refunded", 3_000)).await.unwrap();
        let d = append(&t.db, &tenant, event("order.paid", json!({}))).await.unwrap();

        let types = |ts: &[&str]| EventFilter { types: ts.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        assert_eq!(ids(&all(&t.db, &tenant, &types(&["order.paid"])).await), ids(&[a.clone(), d.clone()]));
        assert_eq!(ids(&all(&t.db, &tenant, &types(&["order.paid", "order.refunded"])).await), ids(&[a.clone(), c.clone(), d.clone()]));
        assert!(all(&t.db, &tenant, &types(&["order.shipped"])).await.is_empty());

        let window = |since: Option<i64>, until: Option<i64>| EventFilter {
            since: since.map(Timestamp),
            until: until.map(Timestamp),
            ..Default::default()
        };
        // since is inclusive, until exclusive.
        assert_eq!(ids(&all(&t.db, &tenant, &window(Some(2_000), None)).await), ids(&[b.clone(), c.clone(), d.clone()]));
        assert_eq!(ids(&all(&t.db, &tenant, &window(None, Some(3_000))).await), ids(&[a.clone(), b.clone()]));
        assert_eq!(ids(&all(&t.db, &tenant, &window(Some(2_000), Some(3_000))).await), ids(std::slice::from_ref(&b)));
        assert!(all(&t.db, &tenant, &window(Some(2_000), Some(2_000))).await.is_empty());

        // Filters combine.
        let paid_early = EventFilter { until: Some(Timestamp(5_000)), ..types(&["order.paid"]) };
        assert_eq!(ids(&all(&t.db, &tenant, &paid_early).await), ids(std::slice::from_ref(&a)));
        // And so do filters and the cursor.
        let page = events::list(&t.db, &tenant, &types(&["order.paid"]), 1, None).await.unwrap();
        assert_eq!((ids(&page.events), page.has_next_page), (ids(std::slice::from_ref(&a)), true));
        let page = events::list(&t.db, &tenant, &types(&["order.paid"]), 1, Some(a.seq)).await.unwrap();
        assert_eq!((ids(&page.events), page.has_next_page), (ids(std::slice::from_ref(&d)), false));

        let none = EventFilter::default();
        let bad = types(&["order.paid", "Order Paid"]);
        assert_eq!(bad_field(events::list(&t.db, &tenant, &bad, 10, None).await), "filter.types[1]");
        assert_eq!(events::list(&t.db, &tenant, &none, 10, None).await.unwrap().events.len(), 4);
    }

    async fn events_of_a_person_include_those_recorded_under_persons_merged_into_it(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let survivor = person(&t.db, &tenant, "13800000001").await;
        let duplicate = person(&t.db, &tenant, "13800000002").await;
        let stranger = person(&t.db, &tenant, "13800000003").await;

        let before = append(&t.db, &tenant, of_person("order.paid", &duplicate)).await.unwrap();
        let own = append(&t.db, &tenant, of_person("order.paid", &survivor)).await.unwrap();
        let theirs = append(&t.db, &tenant, of_person("order.paid", &stranger)).await.unwrap();
        let anonymous = append(&t.db, &tenant, event("order.paid", json!({}))).await.unwrap();
        merge(&t.db, &tenant, &survivor, &duplicate).await;
        // An append naming the merged person lands on the survivor.
        let after = append(&t.db, &tenant, of_person("code.scanned", &duplicate)).await.unwrap();
        assert_eq!(after.person_id.as_deref(), Some(survivor.as_str()));
        // The event recorded before the merge keeps the id it was recorded under.
        assert_eq!(events::get(&t.db, &tenant, &before.id).await.unwrap().person_id.as_deref(), Some(duplicate.as_str()));

        let of = |p: &str| EventFilter { person_id: Some(p.into()), ..Default::default() };
        let history = all(&t.db, &tenant, &of(&survivor)).await;
        // before, own, the merge itself, after.
        assert_eq!(history.len(), 4, "{history:?}");
        assert_eq!(history[0].id, before.id);
        assert_eq!(history[1].id, own.id);
        let merged = &history[2];
        assert_eq!(merged.event_type, "person.merged");
        assert_eq!(merged.producer, "kernel");
        assert_eq!(merged.person_id.as_deref(), Some(survivor.as_str()));
        assert_eq!(merged.payload["survivorId"], json!(survivor));
        assert_eq!(merged.payload["mergedId"], json!(duplicate));
        assert_eq!(history[3].id, after.id);
        // Asking by the merged id gives the same history.
        assert_eq!(ids(&all(&t.db, &tenant, &of(&duplicate)).await), ids(&history));
        assert_eq!(ids(&all(&t.db, &tenant, &of(&stranger)).await), vec![theirs.id.as_str()]);
        let paid = EventFilter { types: vec!["order.paid".into()], ..of(&duplicate) };
        assert_eq!(ids(&all(&t.db, &tenant, &paid).await), vec![before.id.as_str(), own.id.as_str()]);
        // Everything, person or not, is still in the unfiltered log.
        let everything = all(&t.db, &tenant, &EventFilter::default()).await;
        assert_eq!(everything.len(), 6);
        assert!(everything.iter().any(|e| e.id == anonymous.id));

        match events::list(&t.db, &tenant, &of("no-such-person"), 10, None).await {
            Err(Error::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }

        // A keyed append retried naming the merged person, or by mistake no
        // person of the tenant, gets the stored event, not a second one.
        let keyed = |p: &str| NewEvent { idempotency_key: Some("shipped-1".into()), ..of_person("order.shipped", p) };
        let first = append(&t.db, &tenant, keyed(&survivor)).await.unwrap();
        assert_eq!(append(&t.db, &tenant, keyed(&duplicate)).await.unwrap(), first);
        assert_eq!(append(&t.db, &tenant, keyed("no-such-person")).await.unwrap(), first);
        assert_eq!(all(&t.db, &tenant, &EventFilter::default()).await.len(), 7);
    }

    async fn malformed_events_are_refused_with_the_field_named(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let long_type = format!("a.{}", "b".repeat(99));
        for bad in ["Order Paid", "order", "order.Paid", "order.", ".paid", "order..paid", "order.paid!", "1order.paid", "order-line.paid", "", long_type.as_str()] {
            assert_eq!(bad_field(append(&t.db, &tenant, event(bad, json!({}))).await), "type", "{bad:?}");
        }
        for bad in [json!([1]), json!("text"), json!(3), json!(false), Value::Null] {
            assert_eq!(bad_field(append(&t.db, &tenant, event("order.paid", bad.clone())).await), "payload", "{bad}");
        }
        let huge = json!({"blob": "x".repeat(events::MAX_PAYLOAD_BYTES)});
        assert_eq!(bad_field(append(&t.db, &tenant, event("order.paid", huge)).await), "payload");
        assert_eq!(bad_field(append(&t.db, &tenant, of_person("order.paid", "no-such-person")).await), "personId");

        // Nothing of it was stored...
        assert!(all(&t.db, &tenant, &EventFilter::default()).await.is_empty());
        // ...while well-formed types are fine, up to 100 characters.
        let longest = format!("a.{}", "b".repeat(98));
        for ok in ["order.paid", "a.b.c", "loyalty_v2.points_added", longest.as_str()] {
            assert_eq!(append(&t.db, &tenant, event(ok, json!({}))).await.unwrap().event_type, ok);
        }
    }

    async fn events_of_one_tenant_are_invisible_to_another(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let a = tenant(&t.db, "tenant-a").await;
        let b = tenant(&t.db, "tenant-b").await;
        let pa = person(&t.db, &a, "13800000001").await;
        let keyed = NewEvent { idempotency_key: Some("same-key".into()), ..of_person("order.paid", &pa) };
        let ea = append(&t.db, &a, keyed).await.unwrap();

        match events::get(&t.db, &b, &ea.id).await {
            Err(Error::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(all(&t.db, &b, &EventFilter::default()).await.is_empty());
        // A's person is no person in B: not to record events of, nor to filter by.
        assert_eq!(bad_field(append(&t.db, &b, of_person("order.paid", &pa)).await), "personId");
        let by_a_person = EventFilter { person_id: Some(pa.clone()), ..Default::default() };
        match events::list(&t.db, &b, &by_a_person, 10, None).await {
            Err(Error::NotFound(_)) => {}
            other => panic!("expected NotFound, got {other:?}"),
        }
        // An idempotency key is per tenant: B's use of A's key appends B's own event.
        let eb = append(&t.db, &b, NewEvent { idempotency_key: Some("same-key".into()), ..event("order.paid", json!({"b": true})) }).await.unwrap();
        assert_ne!(eb.id, ea.id);
        assert_eq!(eb.payload, json!({"b": true}));
        assert_eq!(ids(&all(&t.db, &a, &EventFilter::default()).await), vec![ea.id.as_str()]);
        assert_eq!(ids(&all(&t.db, &b, &EventFilter::default()).await), vec![eb.id.as_str()]);
        assert_eq!(events::get(&t.db, &a, &ea.id).await.unwrap(), ea);
    }

    // Races an append left open against a second one. On SQLite the second
    // waits for the single writer; on PostgreSQL it commits first. A slow
    // machine can only make this pass without racing, never fail spuriously.
    async fn a_reader_following_the_cursor_sees_every_committed_event(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let none = EventFilter::default();
        let mut slow = t.db.begin().await.unwrap();
        let e1 = events::append(&mut slow, &tenant, event("order.paid", json!({"n": 1})), "test").await.unwrap();
        let fast = {
            let (db, tenant) = (t.db.clone(), tenant.clone());
            tokio::spawn(async move { append(&db, &tenant, event("order.paid", json!({"n": 2}))).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        // A consumer tails the log: it reads a page and moves its cursor past it.
        let page = events::list(&t.db, &tenant, &none, 10, None).await.unwrap();
        let cursor = page.events.last().map(|e| e.seq);
        let mut seen: Vec<String> = page.events.iter().map(|e| e.id.clone()).collect();
        slow.commit().await.unwrap();
        let e2 = fast.await.unwrap().unwrap();
        let page = events::list(&t.db, &tenant, &none, 10, cursor).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.id.clone()));

        assert!(seen.contains(&e2.id), "{seen:?}");
        assert!(seen.contains(&e1.id), "the consumer never saw event seq {} (cursor moved to {cursor:?} past it)", e1.seq);
    }
}

on_both_backends! {
    async fn no_producer_can_take_another_producers_idempotency_key(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = tenant(&t.db, "acme").await;
        let append_as = |producer: &'static str, event_type: &'static str, key: &'static str| {
            let db = t.db.clone();
            let tenant = tenant.clone();
            async move {
                let mut tx = db.begin().await.unwrap();
                let new = NewEvent { idempotency_key: Some(key.into()), ..event(event_type, json!({"by": producer})) };
                let r = events::append(&mut tx, &tenant, new, producer).await;
                tx.commit().await.unwrap();
                r
            }
        };
        // A client grabs the key the rewards plugin will use next: the
        // plugin's append is refused, not handed the client's event.
        let squatted = append_as("key:k1", "rewards.awarded", "rewards:claim-9").await.unwrap();
        match append_as("rewards", "rewards.awarded", "rewards:claim-9").await {
            Err(Error::Conflict(m)) => assert!(m.contains("idempotencyKey"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Nor may a client read a plugin's event back by its key.
        append_as("rewards", "rewards.awarded", "rewards:claim-10").await.unwrap();
        assert!(matches!(append_as("key:k1", "rewards.awarded", "rewards:claim-10").await, Err(Error::Conflict(_))));
        // The same key for another type is refused too, even by its producer.
        assert!(matches!(append_as("key:k1", "order.paid", "rewards:claim-9").await, Err(Error::Conflict(_))));
        // Two credentials of the tenant may retry each other's (a rotated key).
        let retried = append_as("key:k2", "rewards.awarded", "rewards:claim-9").await.unwrap();
        assert_eq!(retried, squatted);
        // In a batch, the refusal names the item.
        let mut tx = t.db.begin().await.unwrap();
        let batch = vec![
            NewEvent { idempotency_key: Some("fresh".into()), ..event("order.paid", json!({})) },
            NewEvent { idempotency_key: Some("rewards:claim-10".into()), ..event("rewards.awarded", json!({})) },
        ];
        match events::append_batch(&mut tx, &tenant, batch, "key:k1").await {
            Err(Error::Conflict(m)) => assert!(m.starts_with("events[1]"), "{m}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        drop(tx);
        let stored = all(&t.db, &tenant, &EventFilter::default()).await;
        assert_eq!(stored.len(), 2, "nothing of the refused batch was written: {stored:?}");
    }
}
