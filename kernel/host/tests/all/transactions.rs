//! Where a call's reads and writes run: reads before its first write on a
//! pooled reader (holding no write transaction, seeing what is committed),
//! everything from the first write on in the call's one transaction.

use std::time::Duration;

use keel_core::records::{self, Expect, Location};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, call};

/// Bounds a call that would wait forever for the writer this test holds,
/// so that the test fails instead of hanging. Not a speed check.
const STUCK: Duration = Duration::from_secs(30);

on_both_backends! {
    async fn reads_before_a_calls_first_write_need_no_write_transaction(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        call(&f.host, &probe, "put", json!({"key": "k", "data": {"v": 1}})).await.unwrap();
        // Another transaction changes the record and keeps SQLite's one
        // writer (and, on PostgreSQL, the record's row) until it ends.
        let mut held = f.db.db.begin().await.unwrap();
        let loc = Location { namespace: "probe", collection: "items", key: "k" };
        records::put(&mut held, &f.tenant, loc, &json!({"v": 2}), Expect::Any).await.unwrap();
        let read = call(&f.host, &probe, "call", json!({"capability": "records", "arg": "items"}));
        let seen = tokio::time::timeout(STUCK, read)
            .await
            .expect("a read-only call waited for the writer")
            .unwrap();
        assert_eq!(seen, json!({"v": 1}), "the call saw an uncommitted write");
        let counted = call(&f.host, &probe, "call", json!({"capability": "counters", "arg": "touch:k"}));
        assert_eq!(tokio::time::timeout(STUCK, counted).await.unwrap().unwrap(), json!(0));
        held.commit().await.unwrap();
        let seen = call(&f.host, &probe, "call", json!({"capability": "records", "arg": "items"})).await.unwrap();
        assert_eq!(seen, json!({"v": 2}), "a committed write is seen by the next call");
    }

    async fn a_call_reads_its_own_writes(kind) {
        let f = Fixture::new(kind).await;
        let probe = f.probe().await;
        let seen = call(&f.host, &probe, "call", json!({"capability": "read-own-write", "arg": "mine"})).await.unwrap();
        assert_eq!(seen, json!({"own": "mine"}));
    }
}
