//! sqlx's side of the in-task SQLite driver: the `Database` face sqlx
//! requires of a driver (uninhabited rows, values and statements: every
//! query goes through [`AnyConnectionBackend`]), its connect options, and
//! the `Any` backend that hands queries and transactions to
//! [`InlineConnection`].

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use sqlx_core::Either;
use sqlx_core::any::{
    Any, AnyArguments, AnyConnectOptions, AnyConnectionBackend, AnyQueryResult, AnyRow,
    AnyStatement, AnyTypeInfo,
};
use sqlx_core::connection::{ConnectOptions, Connection};
use sqlx_core::database::Database;
use sqlx_core::describe::Describe;
use sqlx_core::error::Error as SqlxError;
use sqlx_core::transaction::{Transaction, TransactionManager};

use super::{BUSY_TIMEOUT, InlineConnection, Output, SCHEME, error};

/// The driver, for `sqlx::any::install_drivers`.
pub(crate) const DRIVER: sqlx_core::any::driver::AnyDriver =
    sqlx_core::any::driver::AnyDriver::without_migrate::<InlineSqlite>();

/// The database type sqlx requires of a driver (see the module docs).
#[derive(Debug)]
pub(crate) struct InlineSqlite;

impl Database for InlineSqlite {
    type Connection = InlineConnection;
    type TransactionManager = InlineTransactions;
    type Row = Never;
    type QueryResult = AnyQueryResult;
    type Column = Never;
    type TypeInfo = AnyTypeInfo;
    type Value = Never;
    type ValueRef<'r> = Never;
    type Arguments<'q> = NoArguments;
    type ArgumentBuffer<'q> = ();
    type Statement<'q> = Never;

    const NAME: &'static str = "SQLite";
    const URL_SCHEMES: &'static [&'static str] = &[SCHEME];
}

/// Where to open the writer.
#[derive(Debug, Clone)]
pub(crate) struct InlineOptions {
    pub(super) path: String,
    /// `?mode=ro`: a reader, opened read-only.
    pub(super) read_only: bool,
    pub(super) busy_timeout: Duration,
}

impl FromStr for InlineOptions {
    type Err = SqlxError;

    fn from_str(url: &str) -> Result<Self, SqlxError> {
        let rest = url
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or_else(|| SqlxError::Configuration(format!("not a {SCHEME}: URL").into()))?;
        let rest = rest.trim_start_matches("//");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let read_only = query.split('&').any(|kv| kv == "mode=ro");
        let path = sqlx_core::percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|e| SqlxError::Configuration(e.into()))?;
        if path.is_empty() {
            return Err(SqlxError::Configuration(
                "the SQLite writer needs a file".into(),
            ));
        }
        Ok(InlineOptions {
            path: path.into_owned(),
            read_only,
            busy_timeout: BUSY_TIMEOUT,
        })
    }
}

impl TryFrom<&AnyConnectOptions> for InlineOptions {
    type Error = SqlxError;

    fn try_from(opts: &AnyConnectOptions) -> Result<Self, SqlxError> {
        opts.database_url.as_str().parse()
    }
}

impl ConnectOptions for InlineOptions {
    type Connection = InlineConnection;

    fn from_url(url: &sqlx_core::Url) -> Result<Self, SqlxError> {
        url.as_str().parse()
    }

    fn connect(&self) -> BoxFuture<'_, Result<InlineConnection, SqlxError>> {
        Box::pin(async move { InlineConnection::open(self) })
    }

    fn log_statements(self, _level: tracing::log::LevelFilter) -> Self {
        self
    }

    fn log_slow_statements(self, _level: tracing::log::LevelFilter, _after: Duration) -> Self {
        self
    }
}

impl AnyConnectionBackend for InlineConnection {
    fn name(&self) -> &str {
        InlineSqlite::NAME
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, sqlx_core::Result<()>> {
        let closed = self.db.close().map_err(|(_, e)| error(e));
        Box::pin(async move { closed })
    }

    fn close_hard(self: Box<Self>) -> BoxFuture<'static, sqlx_core::Result<()>> {
        self.close()
    }

    /// The database is a library in this process: there is no peer that
    /// could have gone away. A connection still in a transaction (which
    /// dropping a transaction never leaves) is not fit to be pooled.
    fn ping(&mut self) -> BoxFuture<'_, sqlx_core::Result<()>> {
        let idle = self.is_idle();
        Box::pin(async move {
            if idle {
                Ok(())
            } else {
                Err(SqlxError::Protocol(
                    "the SQLite connection is still in a transaction".into(),
                ))
            }
        })
    }

    fn begin(
        &mut self,
        statement: Option<Cow<'static, str>>,
    ) -> BoxFuture<'_, sqlx_core::Result<()>> {
        Box::pin(InlineConnection::begin(self, statement))
    }

    fn commit(&mut self) -> BoxFuture<'_, sqlx_core::Result<()>> {
        Box::pin(InlineConnection::commit(self))
    }

    fn rollback(&mut self) -> BoxFuture<'_, sqlx_core::Result<()>> {
        let done = self.rollback_now();
        Box::pin(async move { done })
    }

    fn start_rollback(&mut self) {
        if let Err(e) = self.rollback_now() {
            tracing::error!(error = %e, "rolling back the SQLite writer's transaction failed");
        }
    }

    fn get_transaction_depth(&self) -> usize {
        self.depth
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, sqlx_core::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }

    fn fetch_many<'q>(
        &'q mut self,
        query: &'q str,
        persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxStream<'q, sqlx_core::Result<Output>> {
        let args = arguments.map(|a| a.values.0).unwrap_or_default();
        futures::stream::once(
            async move { self.retrying(query, &args, persistent, None, false).await },
        )
        .map_ok(|outputs| futures::stream::iter(outputs.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'q>(
        &'q mut self,
        query: &'q str,
        persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxFuture<'q, sqlx_core::Result<Option<AnyRow>>> {
        let args = arguments.map(|a| a.values.0).unwrap_or_default();
        Box::pin(async move {
            let outputs = self
                .retrying(query, &args, persistent, Some(1), false)
                .await?;
            // As sqlx's driver: a row only when the first statement gives one.
            Ok(outputs.into_iter().next().and_then(Either::right))
        })
    }

    fn prepare_with<'c, 'q: 'c>(
        &'c mut self,
        _sql: &'q str,
        _parameters: &[AnyTypeInfo],
    ) -> BoxFuture<'c, sqlx_core::Result<AnyStatement<'q>>> {
        Box::pin(async { Err(unsupported("preparing a statement apart")) })
    }

    fn describe<'q>(
        &'q mut self,
        _sql: &'q str,
    ) -> BoxFuture<'q, sqlx_core::Result<Describe<Any>>> {
        Box::pin(async { Err(unsupported("describing a statement")) })
    }
}

fn unsupported(what: &str) -> SqlxError {
    SqlxError::AnyDriverError(
        format!("the SQLite writer runs queries; {what} is not supported").into(),
    )
}

impl Connection for InlineConnection {
    type Database = InlineSqlite;
    type Options = InlineOptions;

    fn close(self) -> BoxFuture<'static, Result<(), SqlxError>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn close_hard(self) -> BoxFuture<'static, Result<(), SqlxError>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), SqlxError>> {
        AnyConnectionBackend::ping(self)
    }

    fn begin(&mut self) -> BoxFuture<'_, Result<Transaction<'_, InlineSqlite>, SqlxError>> {
        Transaction::begin(self, None)
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), SqlxError>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }
}

/// Transactions of the native face (the `Any` face is what the kernel uses).
#[derive(Debug)]
pub(crate) struct InlineTransactions;

impl TransactionManager for InlineTransactions {
    type Database = InlineSqlite;

    fn begin<'c>(
        conn: &'c mut InlineConnection,
        statement: Option<Cow<'static, str>>,
    ) -> BoxFuture<'c, Result<(), SqlxError>> {
        Box::pin(conn.begin(statement))
    }

    fn commit(conn: &mut InlineConnection) -> BoxFuture<'_, Result<(), SqlxError>> {
        Box::pin(conn.commit())
    }

    fn rollback(conn: &mut InlineConnection) -> BoxFuture<'_, Result<(), SqlxError>> {
        let done = conn.rollback_now();
        Box::pin(async move { done })
    }

    fn start_rollback(conn: &mut InlineConnection) {
        AnyConnectionBackend::start_rollback(conn)
    }

    fn get_transaction_depth(conn: &InlineConnection) -> usize {
        conn.depth
    }
}

/// The native face's rows, columns, values and statements: there are none.
#[derive(Debug)]
pub(crate) enum Never {}

impl sqlx_core::row::Row for Never {
    type Database = InlineSqlite;

    fn columns(&self) -> &[Never] {
        match *self {}
    }

    fn try_get_raw<I>(&self, _index: I) -> Result<Never, SqlxError>
    where
        I: sqlx_core::column::ColumnIndex<Self>,
    {
        match *self {}
    }
}

impl sqlx_core::column::Column for Never {
    type Database = InlineSqlite;

    fn ordinal(&self) -> usize {
        match *self {}
    }

    fn name(&self) -> &str {
        match *self {}
    }

    fn type_info(&self) -> &AnyTypeInfo {
        match *self {}
    }
}

impl sqlx_core::value::Value for Never {
    type Database = InlineSqlite;

    fn as_ref(&self) -> Never {
        match *self {}
    }

    fn type_info(&self) -> Cow<'_, AnyTypeInfo> {
        match *self {}
    }

    fn is_null(&self) -> bool {
        match *self {}
    }
}

impl sqlx_core::value::ValueRef<'_> for Never {
    type Database = InlineSqlite;

    fn to_owned(&self) -> Never {
        match *self {}
    }

    fn type_info(&self) -> Cow<'_, AnyTypeInfo> {
        match *self {}
    }

    fn is_null(&self) -> bool {
        match *self {}
    }
}

impl<'q> sqlx_core::statement::Statement<'q> for Never {
    type Database = InlineSqlite;

    fn to_owned(&self) -> Never {
        match *self {}
    }

    fn sql(&self) -> &str {
        match *self {}
    }

    fn parameters(&self) -> Option<Either<&[AnyTypeInfo], usize>> {
        match *self {}
    }

    fn columns(&self) -> &[Never] {
        match *self {}
    }

    sqlx_core::impl_statement_query!(NoArguments);
}

/// Arguments of the native face: no Rust type encodes to it.
#[derive(Debug, Default)]
pub(crate) struct NoArguments;

impl<'q> sqlx_core::arguments::Arguments<'q> for NoArguments {
    type Database = InlineSqlite;

    fn reserve(&mut self, _additional: usize, _size: usize) {}

    fn add<T>(&mut self, _value: T) -> Result<(), sqlx_core::error::BoxDynError>
    where
        T: sqlx_core::encode::Encode<'q, InlineSqlite> + sqlx_core::types::Type<InlineSqlite>,
    {
        Err(unsupported("binding outside the Any driver").into())
    }

    fn len(&self) -> usize {
        0
    }
}

impl<'q> sqlx_core::arguments::IntoArguments<'q, InlineSqlite> for NoArguments {
    fn into_arguments(self) -> NoArguments {
        self
    }
}
