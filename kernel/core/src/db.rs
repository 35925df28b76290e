//! The database handle: one code path over SQLite (embedded) and PostgreSQL.
//!
//! Queries are written once in the SQL both backends accept (`$1` parameters,
//! `ON CONFLICT`, `RETURNING`), through sqlx's `Any` driver. Only the DDL
//! differs, in `migrations/sqlite` and `migrations/postgres`.
//!
//! SQLite has one writer at a time; rather than let concurrent writers fight
//! over the file lock, the handle keeps a separate pool of exactly one writing
//! connection, whose transactions start with `BEGIN IMMEDIATE`. That writer
//! runs its statements in the calling task ([`inline`]); the readers use
//! sqlx's SQLite driver. On PostgreSQL reads and writes share one pool and
//! the server arbitrates.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Executor as _};

use crate::sealing::Sealer;
use crate::{Error, Result};

mod inline;

/// Installs sqlx's `Any` drivers: PostgreSQL, SQLite, and the in-task
/// SQLite writer. Must run before any other `Any` connection is made in
/// the process; [`Db::connect`] calls it.
pub fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = sqlx::any::install_drivers(&[
            sqlx::postgres::any::DRIVER,
            sqlx::sqlite::any::DRIVER,
            inline::DRIVER,
        ]) {
            tracing::error!(error = %e, "sqlx's Any drivers were installed before keel's");
        }
    });
}

/// A connection usable for the kernel's queries: a pooled connection or an
/// open transaction (`&mut *tx`).
pub type Conn = sqlx::AnyConnection;

/// A write transaction: commit it, or drop it to roll back.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Tunables of a [`Db`].
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Upper bound of pooled connections (PostgreSQL; SQLite readers).
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// A pooled connection idle for longer is pinged before it is handed
    /// out (and replaced if the server hung up on it). One that was just
    /// used is handed out as it is: a ping per acquire was a round trip
    /// for every read of a plugin call and one more under SQLite's writer.
    pub ping_after_idle: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            ping_after_idle: Duration::from_secs(5),
        }
    }
}

/// The kernel's database: cheap to clone, shared by every request.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    reader: AnyPool,
    point_reader: AnyPool,
    writer: AnyPool,
    sealer: Option<Sealer>,
}

/// A pool of at most `max` connections with `opts`' timeouts.
fn pool_options(opts: &DbOptions, max: u32) -> AnyPoolOptions {
    let ping_after = opts.ping_after_idle;
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(opts.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ping_after {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Db {
    /// Connects to `url`: `sqlite://path/to/file.db` (the file and its folder
    /// are created if missing) or `postgres://…`.
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Db> {
        install_drivers();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            Self::connect_sqlite(rest, opts).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = AnyConnectOptions::from_str(url)
                .map_err(|e| Error::bad_input("database_url", e.to_string()))?
                .log_statements(tracing::log::LevelFilter::Trace);
            let pool = pool_options(opts, opts.max_connections)
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")
                .map_err(Error::Internal)?;
            Ok(Db {
                backend: Backend::Postgres,
                reader: pool.clone(),
                point_reader: pool.clone(),
                writer: pool,
                sealer: None,
            })
        } else {
            Err(Error::bad_input(
                "database_url",
                "expected a sqlite:// or postgres:// URL",
            ))
        }
    }

    async fn connect_sqlite(rest: &str, opts: &DbOptions) -> Result<Db> {
        let path_part = rest.trim_start_matches("//");
        let (path, query) = path_part.split_once('?').unwrap_or((path_part, ""));
        if path.is_empty() || path == ":memory:" || query.contains("memory") {
            return Err(Error::bad_input(
                "database_url",
                "an in-memory SQLite database is not supported: name a file",
            ));
        }
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the data folder {}", dir.display()))
                .map_err(Error::Internal)?;
        }
        let url = if query.is_empty() {
            format!("sqlite://{path}?mode=rwc")
        } else {
            format!("sqlite://{path}?{query}")
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| Error::bad_input("database_url", e.to_string()))?
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = |max: u32| {
            pool_options(opts, max).after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            })
        };
        let inline = |suffix: &str| {
            AnyConnectOptions::from_str(&format!("{}://{path}{suffix}", inline::SCHEME))
                .map_err(|e| Error::bad_input("database_url", e.to_string()))
        };
        let writer = pool_options(opts, 1)
            .connect_with(inline("")?)
            .await
            .context("opening the SQLite database for writing (keel_core::db::install_drivers must run before any other sqlx Any connection)")
            .map_err(Error::Internal)?;
        let point_reader = pool_options(opts, opts.max_connections.max(2))
            .connect_with(inline("?mode=ro")?)
            .await
            .context("opening the SQLite database for reading")
            .map_err(Error::Internal)?;
        let reader = pool(opts.max_connections.max(2))
            .connect_with(options)
            .await
            .context("opening the SQLite database")
            .map_err(Error::Internal)?;
        Ok(Db {
            backend: Backend::Sqlite,
            reader,
            point_reader,
            writer,
            sealer: None,
        })
    }

    /// This handle with the master key(s) that seal secrets at rest
    /// ([`crate::sealing`]); call [`crate::sealing::unlock`] next.
    pub fn with_sealer(mut self, sealer: Sealer) -> Db {
        self.sealer = Some(sealer);
        self
    }

    /// The master key(s) given with [`Db::with_sealer`].
    pub fn sealer(&self) -> Result<&Sealer> {
        self.sealer.as_ref().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "no master key was given to this database handle (Db::with_sealer)"
            ))
        })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration of this backend (on SQLite through
    /// a reader's connection: the writer's driver has no migrator).
    pub async fn migrate(&self) -> Result<()> {
        self.migrator().run(&self.reader).await?;
        Ok(())
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// True when the database answers and every migration this build knows
    /// has been applied (readiness).
    pub async fn is_ready(&self) -> bool {
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: std::result::Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.reader)
                .await;
        matches!(applied, Ok(Some(v)) if v >= latest)
    }

    /// The pool for reads. Reads never wait behind a writer.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for short reads on a request's hot path (a plugin's host
    /// calls: a record, a counter, a page). On SQLite its connections run
    /// their statements in the calling task, like the writer, so a read
    /// costs SQLite's work and no thread hand-off, and a long one would
    /// hold a runtime thread: reads that may take long (whole lists,
    /// exports, reports) use [`Db::reader`]. On PostgreSQL it is the one
    /// pool.
    pub fn point_reader(&self) -> &AnyPool {
        &self.point_reader
    }

    /// Starts a write transaction. Everything done through it commits
    /// together on [`sqlx::Transaction::commit`] and vanishes when dropped.
    pub async fn begin(&self) -> Result<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(tx)
    }

    /// Runs `f` in a write transaction, committing when it returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> futures::future::BoxFuture<'c, Result<T>>,
    {
        let mut tx = self.begin().await?;
        let out = f(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
        self.point_reader.close().await;
        self.reader.close().await;
    }
}
