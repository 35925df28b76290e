//! One ID's reads by person use the index led by (tenant_id, person_id):
//! SQLite's planner, without it, read "the identifiers of person P" from
//! the primary key's tenant_id prefix — every identifier of the tenant —
//! because the ORDER BY matched the key's next column, so loading a person
//! grew with the tenant. The statements are those of `persons::fetch`,
//! `identifiers_of`, the merge's move and `lineage`.

use keel_core::Backend;
use keel_testkit::TestDb;

async fn plan(db: &keel_core::Db, sql: &str) -> String {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
        .bind("tenant")
        .bind("person")
        .fetch_all(db.reader())
        .await
        .unwrap();
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn a_persons_reads_use_its_own_index_on_sqlite() {
    let t = TestDb::of(Backend::Sqlite).await.unwrap();
    for sql in [
        "SELECT p.id, p.merged_into, p.attributes, p.created_at, p.updated_at, i.kind, i.value \
         FROM persons p LEFT JOIN person_identifiers i ON i.tenant_id = p.tenant_id AND i.person_id = p.id \
         WHERE p.tenant_id = $1 AND p.id = $2 ORDER BY i.kind, i.created_at, i.value",
        "SELECT kind, value FROM person_identifiers WHERE tenant_id = $1 AND person_id = $2 \
         ORDER BY kind, created_at, value",
        "UPDATE person_identifiers SET person_id = 'x' WHERE tenant_id = $1 AND person_id = $2",
    ] {
        let p = plan(&t.db, sql).await;
        assert!(
            p.contains("person_identifiers_person (tenant_id=? AND person_id=?)"),
            "{sql}\n{p}"
        );
        assert!(!p.contains("autoindex_person_identifiers"), "{sql}\n{p}");
    }
    let p = plan(
        &t.db,
        "SELECT id FROM persons WHERE tenant_id = $1 AND merged_into = $2",
    )
    .await;
    assert!(
        p.contains("persons_merged (tenant_id=? AND merged_into=?)"),
        "{p}"
    );
}

/// The batch lookups of `persons::lookup_batch`: each identifier of the
/// list found by the primary key, each person by its id, never a scan of
/// the tenant.
#[tokio::test]
async fn a_batchs_reads_are_driven_by_its_list_on_sqlite() {
    let t = TestDb::of(Backend::Sqlite).await.unwrap();
    let plan = |sql: &'static str| {
        let db = t.db.clone();
        async move {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .bind("tenant")
                    .bind("phone")
                    .bind("1")
                    .bind("phone")
                    .bind("2")
                    .fetch_all(db.reader())
                    .await
                    .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
    };
    let p = plan(
        "SELECT i.kind, i.value, i.person_id FROM (VALUES ($2, $3), ($4, $5)) AS w \
         CROSS JOIN person_identifiers i CROSS JOIN persons p \
         WHERE i.tenant_id = $1 AND i.kind = w.column1 AND i.value = w.column2 \
         AND p.tenant_id = i.tenant_id AND p.id = i.person_id",
    )
    .await;
    assert!(p.starts_with("SCAN"), "the list first: {p}");
    assert!(
        p.contains("autoindex_person_identifiers_1 (tenant_id=? AND kind=? AND value=?)"),
        "{p}"
    );
    let p = plan(
        "SELECT p.id, i.kind, i.value FROM persons p LEFT JOIN person_identifiers i \
         ON i.tenant_id = p.tenant_id AND i.person_id = p.id \
         WHERE p.tenant_id = $1 AND p.id IN ($2, $3, $4, $5) AND p.merged_into IS NULL \
         ORDER BY p.id, i.kind, i.created_at, i.value",
    )
    .await;
    assert!(
        p.contains("person_identifiers_person (tenant_id=? AND person_id=?)"),
        "{p}"
    );
    assert!(!p.contains("SCAN"), "{p}");
}
