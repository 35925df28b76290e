//! SQLite's one writer, driven in the calling task.
//!
//! sqlx's SQLite driver runs every connection on a thread of its own and
//! hands each statement to it and its rows back over channels: a round trip
//! of two thread wake-ups per statement (≈46 µs under load on two cores,
//! `docs/design/hot-path.md`). On the writer that cost is paid while every
//! other writer waits, so it, not SQLite, set the rate of scans and claims.
//! This driver runs the writer's statements on the task that awaits them,
//! through rusqlite, so a statement costs what SQLite spends on it.
//!
//! It plugs into sqlx as an `Any` driver (URL scheme `keel-sqlite`), so the
//! kernel's queries, transactions and savepoints are the same code on every
//! backend and nothing above [`crate::db`] knows. What it keeps of sqlx's
//! SQLite driver, on purpose: `$N`/`?N`/`?` parameters bound the same way,
//! the same `Any` value kinds for the same SQLite values (so every decode
//! behaves alike), the same error codes and kinds, and the same transaction
//! and savepoint statements.
//!
//! The same driver opens the read-only connections of
//! [`crate::Db::point_reader`], for the short reads of a plugin's host
//! calls (`?mode=ro`).
//!
//! Blocking: a statement runs on the runtime's thread, which is what makes
//! it cheap; the writer's statements and point reads are short (the
//! general readers, which may run long queries, stay on sqlx's driver).
//! Waiting for the file's write lock held by another process never blocks
//! the thread: the connection's busy timeout is zero and a `BEGIN` or
//! `COMMIT` that finds the lock taken is retried after an asynchronous
//! pause, up to the busy timeout.
//!
//! One cost moves onto the runtime thread with the writer: the commit
//! that fills the write-ahead log past SQLite's automatic checkpoint
//! (≈1,000 pages) copies it into the database file and syncs it, as it
//! did on sqlx's thread; the benchmarks' p99 includes it.
//!
//! A transaction SQLite rolled back on its own after an error (a full
//! disk, an I/O error, a `ROLLBACK` raised) is refused to the end: the
//! caller's later statements and its commit fail instead of running
//! outside any transaction.
//!
//! The driver has no native rows, values or statements: the `Database`
//! face sqlx requires of a driver is made of uninhabited types, and every
//! query goes through [`AnyConnectionBackend`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef as SqlValue;
use rusqlite::{Connection as Sqlite, ErrorCode, OpenFlags};
use sqlx_core::Either;
use sqlx_core::any::{
    AnyColumn, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind,
};
use sqlx_core::error::{DatabaseError, Error as SqlxError, ErrorKind};
use sqlx_core::ext::ustr::UStr;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
};

mod driver;

pub(crate) use driver::DRIVER;
use driver::InlineOptions;

/// The URL scheme of this driver: `keel-sqlite://path/to/file.db`.
pub(crate) const SCHEME: &str = "keel-sqlite";

/// How long a `BEGIN` or `COMMIT` waits for another process to release the
/// file's write lock before it fails with SQLite's `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection (the kernel's distinct queries).
const STATEMENT_CACHE: usize = 1024;

/// The writer: a SQLite connection and its transaction depth.
pub(crate) struct InlineConnection {
    db: Sqlite,
    /// Open transactions: 1 for `BEGIN`, one more per savepoint.
    depth: usize,
    busy_timeout: Duration,
}

impl fmt::Debug for InlineConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineConnection")
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

/// Why a statement did not run.
enum Failure {
    /// The file's write lock is held by another connection, and nothing
    /// of this statement ran: it may be tried again.
    Busy(SqlxError),
    Other(SqlxError),
}

impl From<Failure> for SqlxError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Busy(e) | Failure::Other(e) => e,
        }
    }
}

type Output = Either<AnyQueryResult, AnyRow>;

impl InlineConnection {
    fn open(options: &InlineOptions) -> Result<InlineConnection, SqlxError> {
        let access = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        };
        let db = Sqlite::open_with_flags(&options.path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(error)?;
        // Waiting for the lock is done here, asynchronously (`retrying`).
        db.busy_timeout(Duration::ZERO).map_err(error)?;
        if !options.read_only {
            let mode: String = db
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(error)?;
            // The lock handling here (readers beside the one writer, a
            // busy `BEGIN` retried) assumes write-ahead logging.
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(SqlxError::Configuration(
                    format!("SQLite refused write-ahead logging (journal mode {mode})").into(),
                ));
            }
        }
        db.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(error)?;
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(InlineConnection {
            db,
            depth: 0,
            busy_timeout: options.busy_timeout,
        })
    }

    /// Runs `sql`; outside a transaction (a `BEGIN`, a point read) and for
    /// a `COMMIT`, tries again while another connection holds the lock and
    /// nothing has run yet, up to the busy timeout. Inside a transaction a
    /// busy statement fails at once, as SQLite advises.
    async fn retrying(
        &mut self,
        sql: &str,
        args: &[AnyValueKind<'_>],
        persistent: bool,
        limit: Option<usize>,
        commit: bool,
    ) -> Result<Vec<Output>, SqlxError> {
        let retry = commit || self.depth == 0;
        let deadline = Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            match self.run(sql, args, persistent, limit) {
                Err(Failure::Busy(_)) if retry && Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                done => return done.map_err(SqlxError::from),
            }
        }
    }

    /// Runs every statement of `sql` with `args`, collecting each row and
    /// each statement's result; stops after `limit` rows.
    fn run(
        &mut self,
        sql: &str,
        args: &[AnyValueKind<'_>],
        persistent: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Output>, Failure> {
        if self.lost() {
            // Not in autocommit mode: that would write outside the
            // transaction the caller believes it is in.
            return Err(Failure::Other(SqlxError::Protocol(
                "SQLite rolled this transaction back after an error (a full disk, an I/O \
                 error, a ROLLBACK raised): it can only be rolled back"
                    .into(),
            )));
        }
        let mut out = Vec::new();
        if !sql.trim_end().trim_end_matches(';').contains(';') {
            // One statement (the kernel's queries): from the cache.
            let mut statement = if persistent {
                self.db.prepare_cached(sql).map(Prepared::Cached)
            } else {
                self.db.prepare(sql).map(Prepared::Once)
            }
            .map_err(failure(true))?;
            step(&self.db, statement.get(), args, 0, limit, &mut out, true)?;
        } else {
            // Perhaps several (a `;` may also sit in a literal): prepared
            // one after the other, never cached, binding from the same
            // arguments as sqlx does.
            let mut batch = rusqlite::Batch::new(&self.db, sql);
            let mut used = 0;
            let mut first = true;
            while let Some(mut statement) = batch.next().map_err(failure(first))? {
                used += step(&self.db, &mut statement, args, used, limit, &mut out, first)?;
                first = false;
                if limit.is_some_and(|l| rows(&out) >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn begin(&mut self, statement: Option<Cow<'static, str>>) -> Result<(), SqlxError> {
        let custom = statement.is_some();
        let sql = match statement {
            Some(_) if self.depth > 0 => return Err(SqlxError::InvalidSavePointStatement),
            Some(s) => s,
            None => begin_ansi_transaction_sql(self.depth),
        };
        self.retrying(&sql, &[], true, None, false).await?;
        if custom && self.db.is_autocommit() {
            return Err(SqlxError::BeginFailed);
        }
        self.depth += 1;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), SqlxError> {
        if self.depth > 0 {
            let sql = commit_ansi_transaction_sql(self.depth);
            // A lost transaction fails here (`run`) and is rolled back
            // when the caller drops it.
            self.retrying(&sql, &[], true, None, true).await?;
            self.depth -= 1;
        }
        Ok(())
    }

    fn rollback_now(&mut self) -> Result<(), SqlxError> {
        if self.lost() {
            // SQLite already rolled everything back; a ROLLBACK would fail.
            self.depth -= 1;
        } else if self.depth > 0 {
            let sql = rollback_ansi_transaction_sql(self.depth);
            self.run(&sql, &[], true, None)?;
            self.depth -= 1;
        }
        Ok(())
    }

    /// True when the caller holds a transaction that SQLite has already
    /// rolled back on its own, after an error.
    fn lost(&self) -> bool {
        self.depth > 0 && self.db.is_autocommit()
    }

    /// Fit to be handed out again: no transaction left open or lost.
    pub(super) fn is_idle(&self) -> bool {
        self.depth == 0 && self.db.is_autocommit()
    }
}

/// A statement from the cache or prepared for one use.
enum Prepared<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Once(rusqlite::Statement<'c>),
}

impl<'c> Prepared<'c> {
    fn get(&mut self) -> &mut rusqlite::Statement<'c> {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Once(s) => s,
        }
    }
}

fn rows(out: &[Output]) -> usize {
    out.iter().filter(|o| o.is_right()).count()
}

/// Binds `args` to `statement` (counting anonymous parameters from
/// `offset`), steps it to its end or to `limit` rows in `out`, and returns
/// how many anonymous parameters it used.
fn step(
    db: &Sqlite,
    statement: &mut rusqlite::Statement<'_>,
    args: &[AnyValueKind<'_>],
    offset: usize,
    limit: Option<usize>,
    out: &mut Vec<Output>,
    first: bool,
) -> Result<usize, Failure> {
    let used = bind(statement, args, offset).map_err(Failure::Other)?;
    let readonly = statement.readonly();
    let names: Vec<UStr> = statement
        .column_names()
        .into_iter()
        .map(UStr::new)
        .collect();
    let columns = Columns::new(statement, names);
    let before = rows(out);
    let mut result = statement.raw_query();
    loop {
        let row = match result.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(failure(first && rows(out) == before)(e)),
        };
        let mut values = Vec::with_capacity(columns.list.len());
        for (i, column) in columns.list.iter().enumerate() {
            let value = row.get_ref(i).map_err(|e| Failure::Other(error(e)))?;
            values.push(AnyValue {
                kind: any_value(value, column)?,
            });
        }
        out.push(Either::Right(AnyRow {
            column_names: columns.names.clone(),
            columns: columns.list.clone(),
            values,
        }));
        if limit.is_some_and(|l| rows(out) >= l) {
            return Ok(used);
        }
    }
    drop(result);
    out.push(Either::Left(AnyQueryResult {
        rows_affected: if readonly { 0 } else { db.changes() },
        last_insert_id: None,
    }));
    Ok(used)
}

/// A statement's columns as sqlx's `Any` rows carry them.
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    list: Vec<AnyColumn>,
}

impl Columns {
    fn new(statement: &rusqlite::Statement<'_>, names: Vec<UStr>) -> Columns {
        let declared = statement.columns();
        let list = names
            .iter()
            .enumerate()
            .map(|(ordinal, name)| AnyColumn {
                ordinal,
                name: name.clone(),
                type_info: AnyTypeInfo {
                    kind: declared_kind(declared.get(ordinal).and_then(|c| c.decl_type())),
                },
            })
            .collect();
        let names = names.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        Columns {
            names: Arc::new(names),
            list,
        }
    }
}

/// The `Any` kind of a column declared with `decl` (by SQLite's affinity
/// rules, as sqlx's driver reads declared types).
fn declared_kind(decl: Option<&str>) -> AnyTypeInfoKind {
    let Some(decl) = decl else {
        return AnyTypeInfoKind::Null;
    };
    let decl = decl.to_ascii_uppercase();
    if decl.contains("INT") {
        AnyTypeInfoKind::BigInt
    } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        AnyTypeInfoKind::Text
    } else if decl.contains("BLOB") {
        AnyTypeInfoKind::Blob
    } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
        AnyTypeInfoKind::Double
    } else {
        AnyTypeInfoKind::Null
    }
}

/// A SQLite value as the `Any` value sqlx's SQLite driver makes of it: the
/// kind follows the value's own storage class.
fn any_value(value: SqlValue<'_>, column: &AnyColumn) -> Result<AnyValueKind<'static>, Failure> {
    Ok(match value {
        SqlValue::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        SqlValue::Integer(i) => AnyValueKind::BigInt(i),
        SqlValue::Real(f) => AnyValueKind::Double(f),
        SqlValue::Text(t) => match std::str::from_utf8(t) {
            Ok(t) => AnyValueKind::Text(Cow::Owned(t.to_owned())),
            Err(e) => {
                return Err(Failure::Other(SqlxError::ColumnDecode {
                    index: column.name.to_string(),
                    source: Box::new(e),
                }));
            }
        },
        SqlValue::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
    })
}

/// Binds `args` the way sqlx's SQLite driver does: `$N` and `?N` name the
/// N-th argument, a bare `?` the next one after `offset`; parameters
/// beyond the arguments stay NULL.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    args: &[AnyValueKind<'_>],
    offset: usize,
) -> Result<usize, SqlxError> {
    let mut next = offset;
    for index in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(index) {
            Some(name) => {
                let digits = name
                    .strip_prefix('?')
                    .or_else(|| name.strip_prefix('$'))
                    .ok_or_else(|| {
                        SqlxError::Protocol(format!("unsupported SQL parameter format: {name}"))
                    })?;
                digits.parse::<usize>().map_err(|_| {
                    SqlxError::Protocol(format!(
                        "parameters with non-integer names are not supported: {name}"
                    ))
                })?
            }
            None => {
                next += 1;
                next
            }
        };
        if n == 0 || n > args.len() {
            break;
        }
        let value = match &args[n - 1] {
            AnyValueKind::Null(_) => SqlValue::Null,
            AnyValueKind::Bool(b) => SqlValue::Integer(i64::from(*b)),
            AnyValueKind::SmallInt(i) => SqlValue::Integer(i64::from(*i)),
            AnyValueKind::Integer(i) => SqlValue::Integer(i64::from(*i)),
            AnyValueKind::BigInt(i) => SqlValue::Integer(*i),
            AnyValueKind::Real(r) => SqlValue::Real(f64::from(*r)),
            AnyValueKind::Double(d) => SqlValue::Real(*d),
            AnyValueKind::Text(t) => SqlValue::Text(t.as_bytes()),
            AnyValueKind::Blob(b) => SqlValue::Blob(b),
            other => {
                return Err(SqlxError::Protocol(format!(
                    "no SQLite value for the argument {other:?}"
                )));
            }
        };
        statement
            .raw_bind_parameter(index, rusqlite::types::ToSqlOutput::Borrowed(value))
            .map_err(error)?;
    }
    Ok(next - offset)
}

/// A rusqlite error as sqlx reports a SQLite error.
fn error(e: rusqlite::Error) -> SqlxError {
    match e {
        rusqlite::Error::SqliteFailure(e, message) => SqlxError::Database(Box::new(SqliteError {
            code: e.extended_code,
            message: message.unwrap_or_else(|| e.to_string()),
        })),
        other => SqlxError::AnyDriverError(Box::new(other)),
    }
}

/// `error`, telling a busy lock apart when nothing ran yet (`untouched`).
fn failure(untouched: bool) -> impl Fn(rusqlite::Error) -> Failure {
    move |e| {
        let busy =
            matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DatabaseBusy);
        if busy && untouched {
            Failure::Busy(error(e))
        } else {
            Failure::Other(error(e))
        }
    }
}

/// An error SQLite returned, with its extended result code.
#[derive(Debug)]
struct SqliteError {
    code: i32,
    message: String,
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteError {}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
