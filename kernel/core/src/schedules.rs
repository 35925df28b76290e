//! The runs of plugins' scheduled jobs: claims, leases, retries and dead
//! letters (the SQL; `keel-host`'s scheduler decides what is due and calls
//! the plugin).
//!
//! One row per (tenant, plugin, schedule, tick). Its unique key is the
//! claim: however many kernel processes see a tick due, one `INSERT` wins
//! and only its process runs the tick. The row then records the run: a
//! lease while an attempt is under way, a retry time after a failure, the
//! outcome, and — once attempts run out — the dead letter, which an admin
//! can replay. A settlement names the attempt it settles, so a process whose
//! lease ran out can never overwrite a newer attempt's outcome.

use std::time::Duration;

use sqlx::Row as _;

use crate::time::micros;
use crate::{Db, Error, Result, TenantId, Timestamp};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// An attempt is under way, leased to one process.
    Running,
    /// The last attempt failed; another waits for `next_attempt_at`.
    Retrying,
    /// An attempt succeeded.
    Succeeded,
    /// Every attempt failed: a dead letter, until replayed.
    Dead,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Retrying => "retrying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Result<RunStatus> {
        Ok(match s {
            "running" => RunStatus::Running,
            "retrying" => RunStatus::Retrying,
            "succeeded" => RunStatus::Succeeded,
            "dead" => RunStatus::Dead,
            other => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "schedule_runs.status {other:?} is not a run status"
                )));
            }
        })
    }
}

/// One run of a schedule at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub tenant: TenantId,
    pub plugin: String,
    pub schedule: String,
    /// The occurrence of the cron expression this run is for.
    pub tick: Timestamp,
    /// The operation it calls (as the manifest said when it was claimed).
    pub operation: String,
    pub status: RunStatus,
    /// Attempts started so far (the current one included).
    pub attempts: i64,
    pub max_attempts: i64,
    /// When a retrying run is next attempted.
    pub next_attempt_at: Timestamp,
    /// The last failed attempt's error (cleared by a success).
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    /// When the latest attempt started.
    pub started_at: Option<Timestamp>,
    /// When it succeeded or became a dead letter.
    pub finished_at: Option<Timestamp>,
    pub dead_at: Option<Timestamp>,
}

const COLUMNS: &str = "id, tenant_id, plugin, schedule, tick, operation, status, attempts, \
     max_attempts, next_attempt_at, last_error, created_at, started_at, finished_at, dead_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Run> {
    let status: String = row.try_get("status")?;
    Ok(Run {
        id: row.try_get("id")?,
        tenant: TenantId::from_db(row.try_get("tenant_id")?),
        plugin: row.try_get("plugin")?,
        schedule: row.try_get("schedule")?,
        tick: Timestamp(row.try_get("tick")?),
        operation: row.try_get("operation")?,
        status: RunStatus::parse(&status)?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        started_at: row.try_get::<Option<i64>, _>("started_at")?.map(Timestamp),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Timestamp),
        dead_at: row.try_get::<Option<i64>, _>("dead_at")?.map(Timestamp),
    })
}

/// A plugin enabled by a tenant, with what the scheduler needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnabledPlugin {
    pub tenant: TenantId,
    /// The tenant's IANA time zone.
    pub time_zone: String,
    pub plugin: String,
    pub version: String,
    /// Ticks at or before this instant are not the plugin's to run.
    pub enabled_at: Timestamp,
}

/// Every enabled plugin of every tenant, by tenant then name: one query
/// per scheduler pass.
pub async fn enabled_plugins(db: &Db) -> Result<Vec<EnabledPlugin>> {
    let rows = sqlx::query(
        "SELECT p.tenant_id, t.time_zone, p.name, p.version, p.enabled_at \
         FROM tenant_plugins p JOIN tenants t ON t.id = p.tenant_id \
         WHERE p.disabled_at IS NULL ORDER BY p.tenant_id, p.name",
    )
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EnabledPlugin {
                tenant: TenantId::from_db(r.try_get("tenant_id")?),
                time_zone: r.try_get("time_zone")?,
                plugin: r.try_get("name")?,
                version: r.try_get("version")?,
                enabled_at: Timestamp(r.try_get("enabled_at")?),
            })
        })
        .collect()
}

/// A tick to claim.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub tenant: &'a TenantId,
    pub plugin: &'a str,
    pub schedule: &'a str,
    pub tick: Timestamp,
    pub operation: &'a str,
    pub max_attempts: i64,
}

/// Claims a tick for the caller: records the run as `running`, its first
/// attempt leased until `now + lease`, and returns it. Returns `None` when
/// the tick is already claimed (by any process) or a later tick of the
/// same schedule was: ticks are never run out of order, nor run twice.
pub async fn claim(db: &Db, c: &Claim<'_>, now: Timestamp, lease: Duration) -> Result<Option<Run>> {
    if c.max_attempts < 1 {
        return Err(Error::bad_input(
            "max_attempts",
            format!("schedule {}: must be at least 1", c.schedule),
        ));
    }
    let mut tx = db.begin().await?;
    // The SELECT's WHERE also keeps SQLite from reading ON CONFLICT as a
    // join constraint.
    let row = sqlx::query(&format!(
        "INSERT INTO schedule_runs (id, tenant_id, plugin, schedule, tick, operation, status, \
         attempts, max_attempts, next_attempt_at, locked_until, created_at, started_at) \
         SELECT $1, $2, $3, $4, CAST($5 AS BIGINT), $6, 'running', 1, CAST($7 AS BIGINT), \
         CAST($8 AS BIGINT), CAST($9 AS BIGINT), CAST($8 AS BIGINT), CAST($8 AS BIGINT) \
         WHERE NOT EXISTS (SELECT 1 FROM schedule_runs WHERE tenant_id = $2 AND plugin = $3 \
         AND schedule = $4 AND tick >= CAST($5 AS BIGINT)) \
         ON CONFLICT (tenant_id, plugin, schedule, tick) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(c.tenant.as_str())
    .bind(c.plugin)
    .bind(c.schedule)
    .bind(c.tick.0)
    .bind(c.operation)
    .bind(c.max_attempts)
    .bind(now.0)
    .bind(now.0.saturating_add(micros(lease)))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.as_ref().map(from_row).transpose()
}

/// Leases up to `limit` runs due for another attempt — retrying runs whose
/// time came, and running ones whose lease ran out (their process died) —
/// each to the caller until `now + lease`, counting the attempt.
pub async fn lease_due(db: &Db, now: Timestamp, lease: Duration, limit: i64) -> Result<Vec<Run>> {
    const DUE: &str = "status IN ('running', 'retrying') AND next_attempt_at <= $2 \
                       AND locked_until <= $2";
    // Most passes find nothing: look on the read pool before taking the
    // write lock.
    let any: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT 1 FROM schedule_runs WHERE {} LIMIT 1",
        DUE.replace("$2", "$1")
    ))
    .bind(now.0)
    .fetch_optional(db.reader())
    .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = db.begin().await?;
    let rows = sqlx::query(&format!(
        "UPDATE schedule_runs SET status = 'running', locked_until = $1, \
         attempts = attempts + 1, started_at = $2 \
         WHERE id IN (SELECT id FROM schedule_runs WHERE {DUE} ORDER BY next_attempt_at LIMIT $3) \
         AND {DUE} RETURNING {COLUMNS}"
    ))
    .bind(now.0.saturating_add(micros(lease)))
    .bind(now.0)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(from_row).collect()
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed: retried at `retry_at` while attempts remain, otherwise the
    /// run becomes a dead letter.
    Failed {
        error: String,
        retry_at: Timestamp,
    },
}

/// Records how attempt number `attempt` of run `id` ended, at `now`.
/// Returns the run as it now stands, or `None` when that attempt is no
/// longer the run's current one (its lease ran out and another process
/// took the run over): the newer attempt's outcome stands.
pub async fn settle(
    db: &Db,
    id: &str,
    attempt: i64,
    now: Timestamp,
    outcome: &Outcome,
) -> Result<Option<Run>> {
    let succeeded = format!(
        "UPDATE schedule_runs SET status = 'succeeded', finished_at = $1, last_error = NULL, \
         locked_until = 0 WHERE id = $2 AND attempts = $3 AND status = 'running' \
         RETURNING {COLUMNS}"
    );
    let failed = format!(
        "UPDATE schedule_runs SET last_error = $1, locked_until = 0, \
         status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END, \
         dead_at = CASE WHEN attempts >= max_attempts THEN $2 ELSE NULL END, \
         finished_at = CASE WHEN attempts >= max_attempts THEN $2 ELSE NULL END, \
         next_attempt_at = $3 \
         WHERE id = $4 AND attempts = $5 AND status = 'running' RETURNING {COLUMNS}"
    );
    let q = match outcome {
        Outcome::Succeeded => sqlx::query(&succeeded).bind(now.0).bind(id).bind(attempt),
        Outcome::Failed { error, retry_at } => sqlx::query(&failed)
            .bind(truncate(error, 2000))
            .bind(now.0)
            .bind(retry_at.0)
            .bind(id)
            .bind(attempt),
    };
    let mut tx = db.begin().await?;
    let row = q.fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    row.as_ref().map(from_row).transpose()
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// The latest run (by tick) of each of the tenant's schedules.
pub async fn latest(db: &Db, tenant: &TenantId) -> Result<Vec<Run>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedule_runs r WHERE tenant_id = $1 AND tick = \
         (SELECT MAX(tick) FROM schedule_runs l WHERE l.tenant_id = r.tenant_id \
          AND l.plugin = r.plugin AND l.schedule = r.schedule) ORDER BY plugin, schedule"
    ))
    .bind(tenant.as_str())
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub plugin: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub status: Option<RunStatus>,
}

/// The most runs [`list`] returns at once.
pub const MAX_LIST: i64 = 500;

/// The tenant's runs matching `filter`, newest tick first, at most `limit`
/// (1 to [`MAX_LIST`]).
pub async fn list(db: &Db, tenant: &TenantId, filter: &Filter<'_>, limit: i64) -> Result<Vec<Run>> {
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Error::bad_input(
            "first",
            format!("must be 1 to {MAX_LIST}"),
        ));
    }
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedule_runs WHERE tenant_id = $1 \
         AND ($2 = '' OR plugin = $2) AND ($3 = '' OR schedule = $3) AND ($4 = '' OR status = $4) \
         ORDER BY tick DESC, plugin, schedule LIMIT $5"
    ))
    .bind(tenant.as_str())
    .bind(filter.plugin.unwrap_or(""))
    .bind(filter.schedule.unwrap_or(""))
    .bind(filter.status.map(RunStatus::as_str).unwrap_or(""))
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The tenant's run `id`.
pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<Run> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedule_runs WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::not_found("schedule run", id))?;
    from_row(&row)
}

/// Puts a dead letter of `tenant` back in line with fresh attempts, due at
/// `now`. Refused for a run that is not dead.
pub async fn replay(db: &Db, tenant: &TenantId, id: &str, now: Timestamp) -> Result<Run> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE schedule_runs SET status = 'retrying', attempts = 0, next_attempt_at = $1, \
         locked_until = 0, dead_at = NULL, finished_at = NULL \
         WHERE tenant_id = $2 AND id = $3 AND status = 'dead' RETURNING {COLUMNS}"
    ))
    .bind(now.0)
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match row {
        Some(row) => from_row(&row),
        None => {
            let run = get(db, tenant, id).await?;
            Err(Error::Conflict(format!(
                "schedule run {id:?} ({} {} at tick {}) is {}; only a dead run can be replayed",
                run.plugin,
                run.schedule,
                run.tick.to_datetime().to_rfc3339(),
                run.status.as_str()
            )))
        }
    }
}
