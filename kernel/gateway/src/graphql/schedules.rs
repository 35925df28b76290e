//! Scheduled jobs over GraphQL: each enabled plugin's schedules with their
//! last and next runs, the runs themselves (dead letters included), and
//! replaying a dead letter.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keel_core::authz::{Action, objects};
use keel_core::schedules::{self as runs, Filter, Run, RunStatus};
use keel_host::schedules::{self, ScheduleView};

use super::{authorize, services, to_time};
use crate::errors::Gql as _;
use crate::errors::plugin_error;

/// Where a scheduled run stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ScheduleRunStatus")]
pub(crate) enum Status {
    /// An attempt is under way.
    Running,
    /// The last attempt failed; another follows at `nextAttemptAt`.
    Retrying,
    Succeeded,
    /// Every attempt failed: a dead letter, until replayed.
    Dead,
}

impl From<RunStatus> for Status {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Running => Status::Running,
            RunStatus::Retrying => Status::Retrying,
            RunStatus::Succeeded => Status::Succeeded,
            RunStatus::Dead => Status::Dead,
        }
    }
}

impl From<Status> for RunStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Running => RunStatus::Running,
            Status::Retrying => RunStatus::Retrying,
            Status::Succeeded => RunStatus::Succeeded,
            Status::Dead => RunStatus::Dead,
        }
    }
}

/// One run of a plugin's schedule, for one tick.
#[derive(SimpleObject)]
pub(crate) struct ScheduleRun {
    id: ID,
    plugin: String,
    schedule: String,
    /// The cron occurrence this run is for.
    tick: DateTime<Utc>,
    /// The operation called.
    operation: String,
    status: Status,
    /// Attempts so far (the current one included).
    attempts: i64,
    max_attempts: i64,
    /// The last failed attempt's error; null once an attempt succeeded.
    last_error: Option<String>,
    /// When the latest attempt started.
    started_at: Option<DateTime<Utc>>,
    /// When it succeeded or became a dead letter.
    finished_at: Option<DateTime<Utc>>,
    /// When a retrying run is attempted again.
    next_attempt_at: Option<DateTime<Utc>>,
    dead_at: Option<DateTime<Utc>>,
}

impl From<Run> for ScheduleRun {
    fn from(r: Run) -> Self {
        ScheduleRun {
            id: r.id.into(),
            plugin: r.plugin,
            schedule: r.schedule,
            tick: to_time(r.tick),
            operation: r.operation,
            status: r.status.into(),
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            last_error: r.last_error,
            started_at: r.started_at.map(to_time),
            finished_at: r.finished_at.map(to_time),
            next_attempt_at: (r.status == RunStatus::Retrying).then(|| to_time(r.next_attempt_at)),
            dead_at: r.dead_at.map(to_time),
        }
    }
}

/// A job an enabled plugin runs on a cron schedule.
#[derive(SimpleObject)]
pub(crate) struct Schedule {
    plugin: String,
    name: String,
    /// Five fields (minute hour day-of-month month day-of-week), read on
    /// the wall clock of `timeZone`.
    cron: String,
    operation: String,
    /// The tenant's IANA time zone.
    time_zone: String,
    /// Attempts before a failing run becomes a dead letter.
    max_attempts: i64,
    /// The run of the latest tick claimed, if any.
    last_run: Option<ScheduleRun>,
    /// The next tick.
    next_run_at: Option<DateTime<Utc>>,
}

impl From<ScheduleView> for Schedule {
    fn from(v: ScheduleView) -> Self {
        Schedule {
            plugin: v.plugin,
            max_attempts: i64::from(v.schedule.attempts()),
            name: v.schedule.name,
            cron: v.schedule.cron,
            operation: v.schedule.operation,
            time_zone: v.time_zone,
            last_run: v.last_run.map(Into::into),
            next_run_at: v.next_run_at.map(to_time),
        }
    }
}

#[derive(Default)]
pub(crate) struct ScheduleQuery;

#[Object]
impl ScheduleQuery {
    /// The schedules of the plugins this tenant enabled, with their last
    /// and next runs.
    async fn schedules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Schedule>> {
        let tenant = authorize(ctx, objects::SCHEDULES, Action::Read).await?;
        let s = services(ctx);
        let list = schedules::overview(&s.db, &s.plugins, &tenant, keel_core::now())
            .await
            .map_err(plugin_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// Runs of the tenant's schedules, newest tick first; `status: DEAD`
    /// lists the dead letters.
    async fn schedule_runs(
        &self,
        ctx: &Context<'_>,
        plugin: Option<String>,
        schedule: Option<String>,
        status: Option<Status>,
        #[graphql(default = 50)] first: i64,
    ) -> async_graphql::Result<Vec<ScheduleRun>> {
        let tenant = authorize(ctx, objects::SCHEDULES, Action::Read).await?;
        let filter = Filter {
            plugin: plugin.as_deref(),
            schedule: schedule.as_deref(),
            status: status.map(Into::into),
        };
        let list = runs::list(&services(ctx).db, &tenant, &filter, first)
            .await
            .gql()?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub(crate) struct ScheduleMutation;

#[Object]
impl ScheduleMutation {
    /// Puts a dead run back in line with fresh attempts; the scheduler runs
    /// it within moments.
    async fn replay_schedule_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ScheduleRun> {
        let tenant = authorize(ctx, objects::SCHEDULES, Action::Write).await?;
        let run = runs::replay(&services(ctx).db, &tenant, &id, keel_core::now())
            .await
            .gql()?;
        Ok(run.into())
    }
}
