//! Scheduled jobs: plugins' `[[schedules]]`, run at each tick of their cron
//! expression in the tenant's time zone, once across every kernel process.
//!
//! A pass ([`Scheduler::tick`]) looks at every tenant's enabled plugins. For
//! each schedule it computes the latest tick at or before the pass's instant
//! (in the tenant's IANA time zone) and claims it with one `INSERT` on a
//! unique key (tenant, plugin, schedule, tick): only one process wins, and
//! only the winner calls the operation — through [`Host::call_operation`],
//! with the plugin's usual limits, the tenant's plugins (so emitted events
//! reach their subscribers) and the schedule's name in the call context.
//!
//! - **Missed ticks** (no process was running, or a pass came late): only
//!   the latest one runs, once; the ones before it are skipped, never run
//!   in a burst. A tick at or before the plugin was enabled is not due.
//! - **Failures** (a typed error, a trap, the deadline): retried with
//!   exponential backoff until the schedule's `max_attempts`, then the run
//!   becomes a dead letter, listed with the runs and replayable — the
//!   outbox's model. A run whose process died mid-attempt is taken over
//!   when its lease runs out.
//! - **Exactly once**: a tick is claimed once and each attempt is leased to
//!   one process, so a tick never runs twice concurrently and never again
//!   after it succeeded. The plugin's transaction and the run's record are
//!   separate, though: a process that dies after the plugin committed but
//!   before recording the success leaves the run to be retried after its
//!   lease. Operations get the tick in their input to stay idempotent.
//!
//! The operation's input is a JSON object: `schedule` (its name), `tick`
//! (RFC 3339, UTC), `localTime` (the same instant in the tenant's zone),
//! `timeZone` and `attempt` (1 for the first).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use futures::StreamExt as _;
use keel_core::schedules::{self as store, Claim, Outcome};
use keel_core::{Db, TenantId, Timestamp, now};

pub use keel_core::schedules::{Filter, Run, RunStatus};

use crate::manifest::{Manifest, Schedule};
use crate::{CallContext, PluginError, Registry, Result};

/// Attempts of a schedule that does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The most attempts a schedule may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// The most schedules one manifest may declare: each runs for every tenant
/// that enables the plugin, on the processes' shared run slots.
pub const MAX_SCHEDULES: usize = 16;

/// A parsed cron expression: five fields in the POSIX/Vixie dialect (see
/// [`Schedule::cron`]).
#[derive(Debug, Clone)]
pub struct CronExpr(Cron);

impl CronExpr {
    /// Parses `expr`, refusing a seconds or year field and an expression
    /// that never fires.
    pub fn parse(expr: &str) -> std::result::Result<CronExpr, String> {
        let cron = Self::compile(expr)?;
        let from = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if from
            .and_then(|t| cron.0.find_next_occurrence(&t, false).ok())
            .is_none()
        {
            return Err(format!("{expr:?} never fires"));
        }
        Ok(cron)
    }

    /// Parses without the search for a first tick (expressions that were
    /// checked at install).
    fn compile(expr: &str) -> std::result::Result<CronExpr, String> {
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && fields != 5 {
            return Err(format!(
                "{expr:?} has {fields} fields; a cron expression here has five: minute hour \
                 day-of-month month day-of-week (e.g. \"0 9 * * *\")"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
        Ok(CronExpr(cron))
    }

    /// The latest tick at or before `at`, on the wall clock of `tz`.
    pub fn latest_at_or_before(&self, at: Timestamp, tz: Tz) -> Option<Timestamp> {
        let at = whole_second(at)?.with_timezone(&tz);
        let t = self.0.find_previous_occurrence(&at, true).ok()?;
        Some(Timestamp::from_datetime(t.with_timezone(&Utc)))
    }

    /// The first tick after `at`, on the wall clock of `tz`.
    pub fn next_after(&self, at: Timestamp, tz: Tz) -> Option<Timestamp> {
        let at = whole_second(at)?.with_timezone(&tz);
        let t = self.0.find_next_occurrence(&at, false).ok()?;
        Some(Timestamp::from_datetime(t.with_timezone(&Utc)))
    }
}

fn whole_second(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.div_euclid(1_000_000), 0)
}

/// Checks a manifest's `[[schedules]]`: names, cron expressions,
/// operations and attempts, naming the schedule at fault.
pub(crate) fn validate(schedules: &[Schedule]) -> std::result::Result<(), String> {
    if schedules.len() > MAX_SCHEDULES {
        return Err(format!(
            "schedules: {} declared; a plugin may declare at most {MAX_SCHEDULES}",
            schedules.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for s in schedules {
        let name_ok = (2..=40).contains(&s.name.len())
            && s.name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!(
                "schedules: {:?} must be 2-40 characters of a-z, 0-9 and '-', starting with a letter",
                s.name
            ));
        }
        if !seen.insert(&s.name) {
            return Err(format!("schedules: {:?} is declared twice", s.name));
        }
        CronExpr::parse(&s.cron).map_err(|e| format!("schedules.{}.cron: {e}", s.name))?;
        let op_ok = (1..=64).contains(&s.operation.len())
            && s.operation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !op_ok {
            return Err(format!(
                "schedules.{}.operation: {:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
                s.name, s.operation
            ));
        }
        if s.max_attempts
            .is_some_and(|n| !(1..=MAX_ATTEMPTS).contains(&n))
        {
            return Err(format!(
                "schedules.{}.max_attempts: must be 1 to {MAX_ATTEMPTS}",
                s.name
            ));
        }
    }
    Ok(())
}

impl Manifest {
    /// The schedule named `name`, if declared.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

impl Schedule {
    /// Attempts before a failing run becomes a dead letter.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }
}

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pause between passes.
    pub poll: Duration,
    /// The first retry waits this long; each next one twice as long.
    pub backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// How long an attempt stays leased to one process: far longer than a
    /// plugin call's deadline, so only a process that died loses it.
    pub lease: Duration,
    /// Retries leased per pass.
    pub batch: i64,
    /// Runs under way at once in one process.
    pub concurrency: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            poll: Duration::from_secs(1),
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            lease: Duration::from_secs(300),
            batch: 32,
            concurrency: 4,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Ticks this process claimed (and ran).
    pub claimed: usize,
    /// Earlier runs it attempted again.
    pub retried: usize,
    pub succeeded: usize,
    /// Attempts that failed and will be retried.
    pub failed: usize,
    /// Attempts that failed for the last time.
    pub dead: usize,
}

/// (tenant, plugin, schedule): the latest tick this process claimed or saw
/// claimed, so that it tries each tick's claim once.
type Seen = HashMap<(String, String, String), i64>;

/// Manifests by (name, version): a version's content never changes.
type Manifests = HashMap<(String, String), Arc<Manifest>>;

/// Runs the schedules of every tenant's enabled plugins.
#[derive(Clone)]
pub struct Scheduler {
    db: Db,
    registry: Registry,
    config: SchedulerConfig,
    seen: Arc<Mutex<Seen>>,
    manifests: Arc<Mutex<Manifests>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

fn rfc3339<T: chrono::TimeZone>(t: DateTime<T>) -> String
where
    T::Offset: std::fmt::Display,
{
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A tenant's time zone as stored; one that no longer parses (a tz
/// database without it) falls back to the default, loudly.
fn zone(tenant: &TenantId, name: &str) -> Tz {
    keel_core::tenants::parse_time_zone(name).unwrap_or_else(|_| {
        tracing::error!(%tenant, time_zone = name, "unknown stored time zone; using the default");
        chrono_tz::Asia::Shanghai
    })
}

impl Scheduler {
    pub fn new(db: Db, registry: Registry, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            db,
            registry,
            config,
            seen: Arc::new(Mutex::new(HashMap::new())),
            manifests: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs a pass every `poll` until `stop` resolves; a pass under way
    /// finishes first (each call is bounded by the plugin deadline).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.tick(now()).await {
                tracing::error!(error = %e, "scheduler pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// One pass at the instant `now`: claims and runs the ticks due, then
    /// the retries due. Tests call it with the time they choose.
    pub async fn tick(&self, now: Timestamp) -> Result<TickReport> {
        let mut jobs = Vec::new();
        for p in store::enabled_plugins(&self.db).await? {
            let manifest = match self.manifest(&p.plugin, &p.version).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(tenant = %p.tenant, plugin = p.plugin, error = %e, "schedules: no manifest");
                    continue;
                }
            };
            if manifest.schedules.is_empty() {
                continue;
            }
            let tz = zone(&p.tenant, &p.time_zone);
            for s in &manifest.schedules {
                // One schedule's failed claim (the database hiccuped) must
                // not keep the others, or the runs already claimed, waiting.
                match self.claim_due(&p, s, tz, now).await {
                    Ok(Some(run)) => jobs.push(run),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(tenant = %p.tenant, plugin = p.plugin, schedule = s.name, error = %e, "claiming a tick failed");
                    }
                }
            }
        }
        let claimed = jobs.len();
        let retries = store::lease_due(&self.db, now, self.config.lease, self.config.batch).await?;
        let mut report = TickReport {
            claimed,
            retried: retries.len(),
            ..TickReport::default()
        };
        jobs.extend(retries);
        let outcomes: Vec<Result<Option<Run>>> = futures::stream::iter(jobs)
            .map(|run| self.execute(run, now))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            match outcome? {
                Some(r) if r.status == RunStatus::Succeeded => report.succeeded += 1,
                Some(r) if r.status == RunStatus::Dead => report.dead += 1,
                Some(_) => report.failed += 1,
                None => {}
            }
        }
        Ok(report)
    }

    async fn manifest(&self, name: &str, version: &str) -> Result<Arc<Manifest>> {
        let key = (name.to_owned(), version.to_owned());
        if let Some(m) = self
            .manifests
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(m);
        }
        let m = self.registry.package(name, Some(version)).await?.manifest;
        if let Ok(mut cache) = self.manifests.lock() {
            cache.insert(key, m.clone());
        }
        Ok(m)
    }

    /// Claims the latest tick of `s` at or before `now`, unless it is not
    /// the plugin's (enabled later) or this process already tried it.
    async fn claim_due(
        &self,
        p: &store::EnabledPlugin,
        s: &Schedule,
        tz: Tz,
        now: Timestamp,
    ) -> Result<Option<Run>> {
        let cron = match CronExpr::compile(&s.cron) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(tenant = %p.tenant, plugin = p.plugin, schedule = s.name, error = e, "invalid stored schedule");
                return Ok(None);
            }
        };
        let Some(tick) = cron.latest_at_or_before(now, tz) else {
            return Ok(None);
        };
        if tick <= p.enabled_at {
            return Ok(None);
        }
        let key = (
            p.tenant.as_str().to_owned(),
            p.plugin.clone(),
            s.name.clone(),
        );
        let seen = self.seen.lock().ok().and_then(|m| m.get(&key).copied());
        if seen.is_some_and(|t| t >= tick.0) {
            return Ok(None);
        }
        let claim = Claim {
            tenant: &p.tenant,
            plugin: &p.plugin,
            schedule: &s.name,
            tick,
            operation: &s.operation,
            max_attempts: i64::from(s.attempts()),
        };
        let run = store::claim(&self.db, &claim, now, self.config.lease).await?;
        if let Ok(mut m) = self.seen.lock() {
            m.insert(key, tick.0);
        }
        Ok(run)
    }

    /// Runs one leased attempt and records its outcome; `None` when the
    /// lease was lost meanwhile.
    async fn execute(&self, run: Run, now: Timestamp) -> Result<Option<Run>> {
        let started = Instant::now();
        let result = self.call(&run).await;
        let finished = Timestamp(now.0.saturating_add(micros(started.elapsed())));
        let outcome = match result {
            Ok(()) => Outcome::Succeeded,
            Err(error) => {
                let factor = 1u32 << (run.attempts - 1).clamp(0, 20);
                let wait = self
                    .config
                    .backoff
                    .saturating_mul(factor)
                    .min(self.config.max_backoff);
                tracing::warn!(
                    tenant = %run.tenant, plugin = run.plugin, schedule = run.schedule,
                    attempt = run.attempts, error, "scheduled run failed"
                );
                Outcome::Failed {
                    error,
                    retry_at: Timestamp(finished.0.saturating_add(micros(wait))),
                }
            }
        };
        let settled = store::settle(&self.db, &run.id, run.attempts, finished, &outcome).await?;
        if settled.is_none() {
            tracing::warn!(
                run = run.id,
                attempt = run.attempts,
                "schedule run lease lost; outcome dropped"
            );
        }
        Ok(settled)
    }

    /// Calls the schedule's operation as its plugin is enabled now.
    async fn call(&self, run: &Run) -> std::result::Result<(), String> {
        let plugins = self.registry.enabled(&run.tenant).await.map_err(describe)?;
        let act = plugins
            .get(&run.plugin)
            .cloned()
            .ok_or_else(|| format!("the plugin {} is not enabled", run.plugin))?;
        let schedule = act.manifest.schedule(&run.schedule).ok_or_else(|| {
            format!(
                "schedules.{}: {} {} no longer declares it",
                run.schedule, act.manifest.name, act.manifest.version
            )
        })?;
        let tz_name = keel_core::tenants::time_zone(self.db.reader(), &run.tenant)
            .await
            .map_err(|e| describe(e.into()))?;
        let tz = zone(&run.tenant, &tz_name);
        let tick = run.tick.to_datetime();
        let input = serde_json::json!({
            "schedule": run.schedule,
            "tick": rfc3339(tick),
            "localTime": rfc3339(tick.with_timezone(&tz)),
            "timeZone": tz.name(),
            "attempt": run.attempts,
        });
        let ctx = CallContext {
            caller: None,
            request_id: format!("schedule:{}:{}", run.id, run.attempts),
            schedule: Some(run.schedule.clone()),
            plugins: Some(plugins.clone()),
            ..CallContext::default()
        };
        self.registry
            .host()
            .call_operation(&act, &schedule.operation, &input.to_string(), ctx)
            .await
            .map(|_| ())
            .map_err(describe)
    }
}

/// An attempt's error as the run records it (admins read it).
fn describe(e: PluginError) -> String {
    match e {
        PluginError::Returned { code, message, .. } => format!("{code}: {message}"),
        PluginError::Internal(cause) => {
            tracing::error!(error = ?cause, "scheduled run: internal error");
            "INTERNAL: internal error (see the kernel's log)".to_owned()
        }
        other => format!("{}: {other}", other.code()),
    }
}

/// A schedule of one of a tenant's enabled plugins, with its last and next
/// runs.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub plugin: String,
    pub schedule: Schedule,
    /// The tenant's IANA time zone, which the cron expression follows.
    pub time_zone: String,
    /// The run of the latest tick claimed.
    pub last_run: Option<Run>,
    /// The first tick after `now`.
    pub next_run_at: Option<Timestamp>,
}

/// The schedules of the tenant's enabled plugins at the instant `now`, by
/// plugin then declaration order.
pub async fn overview(
    db: &Db,
    registry: &Registry,
    tenant: &TenantId,
    now: Timestamp,
) -> Result<Vec<ScheduleView>> {
    let plugins = registry.enabled(tenant).await?;
    let time_zone = keel_core::tenants::time_zone(db.reader(), tenant).await?;
    let tz = zone(tenant, &time_zone);
    let mut last: HashMap<(String, String), Run> = store::latest(db, tenant)
        .await?
        .into_iter()
        .map(|r| ((r.plugin.clone(), r.schedule.clone()), r))
        .collect();
    let mut acts: Vec<_> = plugins.plugins.iter().collect();
    acts.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    let mut out = Vec::new();
    for act in acts {
        for s in &act.manifest.schedules {
            let next_run_at = CronExpr::compile(&s.cron)
                .ok()
                .and_then(|c| c.next_after(now, tz));
            out.push(ScheduleView {
                plugin: act.manifest.name.clone(),
                schedule: s.clone(),
                time_zone: time_zone.clone(),
                last_run: last.remove(&(act.manifest.name.clone(), s.name.clone())),
                next_run_at,
            });
        }
    }
    Ok(out)
}
