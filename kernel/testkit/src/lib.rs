#![doc = include_str!("../README.md")]

pub mod chromium;
pub mod guide;
pub mod wechat;

use keel_core::sealing::{self, Sealer};

use keel_core::{Backend, Db, DbOptions};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "KEEL_TEST_POSTGRES_URL";

/// A migrated database that disappears with the value. Its handles seal
/// secrets under a random master key of its own ([`TestDb::sealer`]).
#[derive(Debug)]
pub struct TestDb {
    pub db: Db,
    url: String,
    sealer: Sealer,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A fresh SQLite file in a temporary folder.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let sealer = Sealer::random();
        let db = open(&url, &sealer).await;
        TestDb {
            db,
            url,
            sealer,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh schema on the test PostgreSQL server, or `None` when none is
    /// configured (outside CI).
    pub async fn postgres() -> Option<TestDb> {
        let Some(admin_url) = postgres_url() else {
            eprintln!("{POSTGRES_URL_VAR} is not set: skipping the PostgreSQL half of this test");
            return None;
        };
        let schema = format!("keel_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Db::connect(
            &admin_url,
            &DbOptions {
                max_connections: 1,
                ..Default::default()
            },
        )
        .await
        .expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(admin.reader())
            .await
            .expect("create test schema");
        admin.close().await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options[search_path]={schema}");
        let sealer = Sealer::random();
        let db = open(&url, &sealer).await;
        Some(TestDb {
            db,
            url,
            sealer,
            _dir: None,
            pg: Some((admin_url, schema)),
        })
    }

    /// The same backend as `kind`.
    pub async fn of(kind: Backend) -> Option<TestDb> {
        match kind {
            Backend::Sqlite => Some(Self::sqlite().await),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// The URL to open this database again.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A second, independent handle (its own pools) on the same database,
    /// as a second kernel process would have.
    pub async fn another_process(&self) -> Db {
        Db::connect(&self.url, &DbOptions::default())
            .await
            .expect("reopen")
            .with_sealer(self.sealer.clone())
    }

    /// The master key(s) this database's handles seal secrets with.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }
}

/// Opens, migrates and unlocks `url` as `keel serve` does.
async fn open(url: &str, sealer: &Sealer) -> Db {
    let db = Db::connect(url, &DbOptions::default())
        .await
        .expect("open the test database")
        .with_sealer(sealer.clone());
    db.migrate().await.expect("migrate the test database");
    sealing::unlock(&db)
        .await
        .expect("unlock the test database");
    db
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, schema)) = self.pg.take() else {
            return;
        };
        // Drop the schema from a thread of its own: Drop cannot await, and
        // the test's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(admin) = Db::connect(
                        &admin_url,
                        &DbOptions {
                            max_connections: 1,
                            ..Default::default()
                        },
                    )
                    .await
                    {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(admin.reader())
                            .await;
                        admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// The test PostgreSQL URL; under `CI=true` its absence is a failure.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{POSTGRES_URL_VAR} must be set in CI: PostgreSQL is tested for real"
            );
            None
        }
    }
}

/// Runs each test body on SQLite and on PostgreSQL, as `name::sqlite` and
/// `name::postgres`. The body sees `$kind: keel_core::Backend`.
#[macro_export]
macro_rules! on_both_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($kind:ident) $body:block )*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($kind: keel_core::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    run(keel_core::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if $crate::postgres_url().is_none() {
                        return;
                    }
                    run(keel_core::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Checks that the committed file at `path` (relative to the repository
/// root) equals `actual`, generated from code; with `KEEL_BLESS=1` rewrites
/// it instead. `regenerate` tells the reader how to refresh it.
pub fn assert_committed(path: &str, actual: &str, regenerate: &str) {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if std::env::var("KEEL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&full, actual).expect("writing the blessed file");
        return;
    }
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(
        committed == actual,
        "{path} is out of date with the code; regenerate it with `{regenerate}` and review the diff"
    );
}
