//! SQLite's writer and point readers run their statements in the calling
//! task (`db/inline.rs`) while the general readers use sqlx's SQLite
//! driver: the two must agree on every value, parameter, error and
//! transaction, and waiting for another process's write lock must not
//! block the runtime.

use std::time::Duration;

use keel_core::Db;
use keel_testkit::TestDb;
use sqlx::{Connection as _, Row as _};

async fn with_table(db: &Db) {
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "CREATE TABLE probe (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, u TEXT UNIQUE)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// `INSERT` of a bare row `id` into the probe table.
fn insert(id: i64) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query("INSERT INTO probe (id) VALUES ($1)").bind(id)
}

/// The probe table's ids, read through `pool`.
async fn ids(pool: &sqlx::AnyPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM probe ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

type Probe = (
    i64,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<Vec<u8>>,
);

fn probe(row: &sqlx::any::AnyRow) -> Probe {
    (
        row.get("id"),
        row.get("i"),
        row.get("r"),
        row.get("t"),
        row.get("b"),
    )
}

#[tokio::test]
async fn the_writer_reads_back_every_kind_of_value_as_the_readers_do() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;
    let rows: Vec<Probe> = vec![
        (
            1,
            Some(i64::MAX),
            Some(-0.5),
            Some("扫码\0x".into()),
            Some(vec![0, 255, 7]),
        ),
        (
            2,
            Some(i64::MIN),
            Some(1e300),
            Some(String::new()),
            Some(Vec::new()),
        ),
        (3, None, None, None, None),
    ];
    let mut tx = db.begin().await.unwrap();
    for (id, i, r, t, b) in &rows {
        let done = sqlx::query("INSERT INTO probe (id, i, r, t, b) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(i)
            .bind(r)
            .bind(t.as_deref())
            .bind(b.as_deref())
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    let through_writer: Vec<Probe> = sqlx::query("SELECT * FROM probe ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(probe)
        .collect();
    assert_eq!(through_writer, rows);
    tx.commit().await.unwrap();
    let through_reader: Vec<Probe> = sqlx::query("SELECT * FROM probe ORDER BY id")
        .fetch_all(db.reader())
        .await
        .unwrap()
        .iter()
        .map(probe)
        .collect();
    assert_eq!(through_reader, rows);

    // The same types, checked the same way: an i32 that does not fit, a
    // text read as a number, and text that is not UTF-8 fail on both.
    let mut tx = db.begin().await.unwrap();
    for sql in [
        "SELECT i FROM probe WHERE id = 1",
        "SELECT t FROM probe WHERE id = 1",
    ] {
        let w = sqlx::query_scalar::<_, i32>(sql).fetch_one(&mut *tx).await;
        let r = sqlx::query_scalar::<_, i32>(sql)
            .fetch_one(db.reader())
            .await;
        assert!(w.is_err() && r.is_err(), "{sql}: {w:?} / {r:?}");
    }
    let sql = "SELECT CAST(x'ff00' AS TEXT)";
    let w = sqlx::query_scalar::<_, String>(sql)
        .fetch_one(&mut *tx)
        .await;
    assert!(w.is_err(), "not UTF-8, read as {w:?}");
}

#[tokio::test]
async fn statements_report_rows_affected_returning_rows_and_bind_parameters_as_sqlx_does() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;
    let mut tx = db.begin().await.unwrap();
    // `$N` may repeat and come in any order; a bare `?` takes the next one.
    let (a, b, c): (i64, String, i64) = sqlx::query_as("SELECT $2, $1, $2 + 1")
        .bind("one")
        .bind(41_i64)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((a, b.as_str(), c), (41, "one", 42));
    let (x, y): (i64, i64) = sqlx::query_as("SELECT ?, ?")
        .bind(1_i64)
        .bind(2_i64)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((x, y), (1, 2));

    // RETURNING of several rows: fetch_optional sees the first, and every
    // row was written.
    let first: Option<i64> = sqlx::query_scalar(
        "INSERT INTO probe (id, i) VALUES (10, 1), (11, 1), (12, 1) RETURNING id",
    )
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    assert_eq!(first, Some(10));
    let updated = sqlx::query("UPDATE probe SET i = i + 1 WHERE i = 1")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 3);
    // A read reports no rows affected, whatever ran before it.
    let read = sqlx::query("SELECT id FROM probe")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(read.rows_affected(), 0);
    let none = sqlx::query("UPDATE probe SET i = 0 WHERE id = 999")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(none.rows_affected(), 0);

    // Several statements in one string run in order.
    let both =
        sqlx::raw_sql("INSERT INTO probe (id) VALUES (20); INSERT INTO probe (id) VALUES (21);")
            .execute(&mut *tx)
            .await
            .unwrap();
    assert_eq!(both.rows_affected(), 2);

    // A statement SQLite cannot parse is an error naming the problem.
    let bad = sqlx::query("SELEC 1").execute(&mut *tx).await.unwrap_err();
    assert!(bad.to_string().contains("syntax error"), "{bad}");
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM probe")
        .fetch_one(db.reader())
        .await
        .unwrap();
    assert_eq!(n, 5);
}

#[tokio::test]
async fn a_unique_violation_is_reported_as_one_and_the_transaction_goes_on() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;
    let mut tx = db.begin().await.unwrap();
    let insert = "INSERT INTO probe (id, u) VALUES ($1, $2)";
    sqlx::query(insert)
        .bind(1_i64)
        .bind("x")
        .execute(&mut *tx)
        .await
        .unwrap();
    let dup = sqlx::query(insert)
        .bind(2_i64)
        .bind("x")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    let db_err = dup.as_database_error().expect("a database error");
    assert!(db_err.is_unique_violation(), "{dup}");
    assert_eq!(db_err.code().as_deref(), Some("2067"));
    sqlx::query(insert)
        .bind(3_i64)
        .bind("y")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids(db.reader()).await, vec![1, 3]);
}

#[tokio::test]
async fn savepoints_roll_back_alone_and_a_dropped_transaction_rolls_back_everything() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;

    let mut tx = db.begin().await.unwrap();
    insert(1).execute(&mut *tx).await.unwrap();
    {
        let mut inner = tx.begin().await.unwrap();
        insert(2).execute(&mut *inner).await.unwrap();
        // Dropped: only the savepoint's insert goes.
    }
    {
        let mut inner = tx.begin().await.unwrap();
        insert(3).execute(&mut *inner).await.unwrap();
        inner.commit().await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut dropped = db.begin().await.unwrap();
    insert(4).execute(&mut *dropped).await.unwrap();
    drop(dropped);
    // The writer is free again at once, with nothing left of the drop.
    let mut tx = db.begin().await.unwrap();
    insert(5).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(ids(db.reader()).await, vec![1, 3, 5]);
}

/// One runtime thread: if waiting for the lock blocked it, the test's own
/// task could never run to release the lock.
#[tokio::test(flavor = "current_thread")]
async fn waiting_for_another_process_s_write_lock_does_not_block_the_runtime() {
    let test = TestDb::sqlite().await;
    with_table(&test.db).await;
    let other = test.another_process().await;
    let mut held = other.begin().await.unwrap();
    insert(1).execute(&mut *held).await.unwrap();

    let db = test.db.clone();
    let waiting = tokio::spawn(async move {
        let mut tx = db.begin().await?;
        insert(2).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, anyhow::Error>(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "began while another process wrote");
    held.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("began once the lock was free")
        .unwrap()
        .unwrap();
    assert_eq!(ids(test.db.reader()).await, vec![1, 2]);
}

#[tokio::test]
async fn point_reads_see_what_was_committed_and_cannot_write() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;
    let mut tx = db.begin().await.unwrap();
    insert(1).execute(&mut *tx).await.unwrap();
    assert_eq!(
        ids(db.point_reader()).await,
        Vec::<i64>::new(),
        "saw an uncommitted write"
    );
    tx.commit().await.unwrap();
    assert_eq!(ids(db.point_reader()).await, vec![1]);
    let refused = sqlx::query("INSERT INTO probe (id) VALUES (2)")
        .execute(db.point_reader())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("readonly"), "{refused}");
    assert_eq!(ids(db.point_reader()).await, vec![1]);
}

/// SQLite rolls a whole transaction back on its own after some errors (a
/// full disk, an I/O error, a `ROLLBACK` raised by a trigger): the caller's
/// later statements must fail rather than run outside any transaction, its
/// commit must fail, and the writer must serve the next transaction.
#[tokio::test]
async fn a_transaction_sqlite_rolled_back_on_its_own_fails_to_the_end_and_frees_the_writer() {
    let test = TestDb::sqlite().await;
    let db = &test.db;
    with_table(db).await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON probe WHEN NEW.id = 666 \
         BEGIN SELECT RAISE(ROLLBACK, 'refused by a trigger'); END",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.begin().await.unwrap();
    insert(1).execute(&mut *tx).await.unwrap();
    {
        let mut inner = tx.begin().await.unwrap();
        let refused = insert(666).execute(&mut *inner).await.unwrap_err();
        assert!(
            refused.to_string().contains("refused by a trigger"),
            "{refused}"
        );
        let after = insert(2).execute(&mut *inner).await.unwrap_err();
        assert!(after.to_string().contains("rolled back"), "{after}");
    }
    let late = insert(3).execute(&mut *tx).await.unwrap_err();
    assert!(late.to_string().contains("rolled back"), "{late}");
    let commit = tx.commit().await.unwrap_err();
    assert!(commit.to_string().contains("rolled back"), "{commit}");

    let mut tx = db
        .begin()
        .await
        .expect("the writer serves the next transaction");
    insert(4).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        ids(db.reader()).await,
        vec![4],
        "nothing of the lost transaction, nor after it"
    );
}
