//! The connection pools hand out a connection without a ping when it was
//! used a moment ago (a ping per acquire was a round trip for every read
//! of a plugin call), and ping one that sat idle longer than
//! `ping_after_idle`, replacing it when the server hung up on it.

use std::time::Duration;

use keel_core::{Db, DbOptions};
use keel_testkit::TestDb;

/// A one-connection pool on `test`'s database, and its backend's pid.
async fn one_connection(test: &TestDb, ping_after_idle: Duration) -> (Db, i32) {
    let db = Db::connect(
        test.url(),
        &DbOptions {
            max_connections: 1,
            ping_after_idle,
            ..DbOptions::default()
        },
    )
    .await
    .unwrap();
    let pid = backend_pid(&db).await.unwrap();
    (db, pid)
}

async fn backend_pid(db: &Db) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db.reader())
        .await
}

/// Ends the server process behind `pid`, as a server restart or a
/// firewall's idle timeout would, and waits until it is gone.
async fn hang_up(test: &TestDb, pid: i32) {
    let admin = test.another_process().await;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(admin.reader())
        .await
        .unwrap();
    assert!(ended);
    for _ in 0..100 {
        let alive: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(admin.reader())
            .await
            .unwrap();
        if alive == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} did not end");
}

#[tokio::test]
async fn an_idle_connection_the_server_hung_up_on_is_replaced_before_use() {
    let Some(test) = TestDb::postgres().await else {
        return;
    };
    let (db, pid) = one_connection(&test, Duration::ZERO).await;
    hang_up(&test, pid).await;
    let again = backend_pid(&db)
        .await
        .expect("pinged, found dead, replaced");
    assert_ne!(again, pid);
}

#[tokio::test]
async fn a_connection_used_a_moment_ago_is_handed_out_without_a_ping() {
    let Some(test) = TestDb::postgres().await else {
        return;
    };
    let (db, pid) = one_connection(&test, Duration::from_secs(3600)).await;
    hang_up(&test, pid).await;
    // No ping: the query itself meets the closed connection.
    assert!(
        backend_pid(&db).await.is_err(),
        "the dead connection was used as it was"
    );
    // Which the pool then drops: the next query gets a new one.
    assert_ne!(backend_pid(&db).await.unwrap(), pid);
}
