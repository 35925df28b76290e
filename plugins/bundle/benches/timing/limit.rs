//! The database's own limit for a transaction of a claim's or a scan's
//! shape, measured with plain sqlx on the kernel's own pools (on SQLite
//! the one writer connection, `BEGIN IMMEDIATE`), in the same run as the
//! plugin paths so that the ratio compares like with like.

use std::sync::Arc;

use keel_core::Db;

use super::{Stats, measure};

/// Where a transaction touches the hot row.
#[derive(Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "each bench measures the shapes it compares with")]
pub enum Hot {
    /// No hot row: three inserts (a scan's shape).
    None,
    /// The hot row's conditional update before the inserts.
    First,
    /// The hot row's conditional update after the inserts.
    Last,
}

async fn prepare(db: &Db) {
    let mut tx = db.begin().await.unwrap();
    for ddl in [
        "CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS bench_hot (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO bench_hot (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    ] {
        sqlx::query(ddl).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The hot row's conditional update (a stock that never runs out).
async fn bump(tx: &mut keel_core::Tx) {
    let v: Option<i64> = sqlx::query_scalar(
        "UPDATE bench_hot SET value = value + 1 WHERE id = 1 AND value + 1 <= $1 RETURNING value",
    )
    .bind(i64::MAX / 2)
    .fetch_optional(&mut **tx)
    .await
    .unwrap();
    assert!(v.is_some());
}

/// `n` transactions from `clients` tasks, each three inserts of ~200-byte
/// rows and, unless `hot` is `None`, one conditional update of one row
/// shared by all (a stock that never runs out).
pub async fn transactions(db: &Db, n: usize, clients: usize, hot: Hot, tag: &str) -> Stats {
    prepare(db).await;
    let db = Arc::new(db.clone());
    let tag: Arc<str> = tag.into();
    measure(n, clients, move |i| {
        let (db, tag) = (db.clone(), tag.clone());
        async move {
            let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(180));
            let mut tx = db.begin().await.unwrap();
            if hot == Hot::First {
                bump(&mut tx).await;
            }
            for part in ["a", "b", "c"] {
                sqlx::query("INSERT INTO bench_rows (id, body) VALUES ($1, $2)")
                    .bind(format!("{tag}:{i}:{part}"))
                    .bind(&body)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            if hot == Hot::Last {
                bump(&mut tx).await;
            }
            tx.commit().await.unwrap();
        }
    })
    .await
}
