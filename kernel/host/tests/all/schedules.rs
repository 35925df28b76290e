//! Scheduled jobs: each tick runs once across kernel processes, in the
//! tenant's time zone, with retries and dead letters; time is driven by the
//! tests through `Scheduler::tick(now)`.

use std::time::Duration;

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use keel_core::schedules::{Filter, RunStatus};
use keel_core::{Backend, Db, TenantId, Timestamp, counters, tenants};
use keel_host::manifest::{Grants, Manifest};
use keel_host::outbox::{Dispatcher, DispatcherConfig};
use keel_host::schedules::{self, CronExpr, TickReport};
use keel_host::{Host, HostConfig, Registry, Scheduler, SchedulerConfig};
use keel_testkit::on_both_backends;
use serde_json::json;

use crate::support::{Fixture, PROBE_MANIFEST, fixture, limits};

/// The probe's manifest with these `[[schedules]]` (name, cron, attempts).
fn manifest(schedules: &[(&str, &str, Option<u32>)]) -> Manifest {
    let mut text = PROBE_MANIFEST.to_owned();
    for (name, cron, attempts) in schedules {
        text.push_str(&format!(
            "\n[[schedules]]\nname = \"{name}\"\ncron = \"{cron}\"\noperation = \"tick\"\n"
        ));
        if let Some(n) = attempts {
            text.push_str(&format!("max_attempts = {n}\n"));
        }
    }
    Manifest::from_toml(&text).unwrap()
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    }
}

/// A kernel process: a host and registry of its own on a database.
async fn process(db: Db) -> (Registry, Scheduler, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let mut host_config = HostConfig::new(cache.path());
    limits(&mut host_config);
    let host = Host::new(db.clone(), host_config).await.unwrap();
    let registry = Registry::new(host, db.clone());
    let scheduler = Scheduler::new(db, registry.clone(), config());
    (registry, scheduler, cache)
}

/// Installs the probe with `schedules` and enables it for the fixture's
/// tenant; returns the registry and a scheduler on it.
async fn enabled(f: &Fixture, schedules: &[(&str, &str, Option<u32>)]) -> (Registry, Scheduler) {
    let registry = f.registry();
    let m = manifest(schedules);
    registry
        .install(m.clone(), &fixture("probe"))
        .await
        .unwrap();
    let grants = Grants::all_requested(&m);
    registry
        .enable(&f.tenant, "probe", None, grants, json!({}), &|_| Ok(()))
        .await
        .unwrap();
    let scheduler = Scheduler::new(f.db.db.clone(), registry.clone(), config());
    (registry, scheduler)
}

/// Midnight UTC a few days from now: test ticks lie after the plugin was
/// enabled (real time), and their dates are known.
fn day() -> DateTime<Utc> {
    let d = Utc::now() + chrono::Duration::days(3);
    Utc.with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
        .unwrap()
}

fn at(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(t)
}

fn mins(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn z(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// How many times the probe ran `schedule` for `tick`.
async fn ran(db: &Db, tenant: &TenantId, schedule: &str, tick: DateTime<Utc>) -> i64 {
    counters::get(db, tenant, "probe", &format!("tick:{schedule}:{}", z(tick)))
        .await
        .unwrap()
}

async fn total(db: &Db, tenant: &TenantId, schedule: &str) -> i64 {
    counters::get(db, tenant, "probe", &format!("ticks:{schedule}"))
        .await
        .unwrap()
}

async fn runs(db: &Db, tenant: &TenantId, status: Option<RunStatus>) -> Vec<schedules::Run> {
    let filter = Filter {
        status,
        ..Filter::default()
    };
    keel_core::schedules::list(db, tenant, &filter, 100)
        .await
        .unwrap()
}

async fn two_processes_run_each_tick_once(kind: Backend) {
    let f = Fixture::new(kind).await;
    let (_, a) = enabled(&f, &[("every-5", "*/5 * * * *", None)]).await;
    let (_, b, _cache) = process(f.db.another_process().await).await;
    let start = day();
    let mut claims = (0, 0);
    for i in 0..6 {
        // Both processes pass a little after the tick, concurrently.
        let now = at(start + mins(5 * i) + secs(7));
        let (ra, rb) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { ra.tick(now).await.unwrap() });
        let tb = tokio::spawn(async move { rb.tick(now).await.unwrap() });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        assert_eq!(
            ra.claimed + rb.claimed,
            1,
            "tick {i}: one claim, {ra:?} {rb:?}"
        );
        assert_eq!(ra.succeeded + rb.succeeded, 1, "tick {i}: one run");
        claims.0 += ra.claimed;
        claims.1 += rb.claimed;
        // A second pass of either process finds nothing new.
        assert_eq!(a.tick(now).await.unwrap(), TickReport::default());
        assert_eq!(b.tick(now).await.unwrap(), TickReport::default());
    }
    for i in 0..6 {
        let tick = start + mins(5 * i);
        assert_eq!(
            ran(&f.db.db, &f.tenant, "every-5", tick).await,
            1,
            "tick {}",
            z(tick)
        );
    }
    assert_eq!(total(&f.db.db, &f.tenant, "every-5").await, 6);
    assert_eq!(claims.0 + claims.1, 6);
    let all = runs(&f.db.db, &f.tenant, None).await;
    assert_eq!(all.len(), 6);
    assert!(
        all.iter()
            .all(|r| r.status == RunStatus::Succeeded && r.attempts == 1)
    );
    assert_eq!(all[0].tick, at(start + mins(25)), "newest first");
}

async fn time_zone_is_respected(kind: Backend) {
    let f = Fixture::new(kind).await;
    let (_, s) = enabled(&f, &[("nine", "0 9 * * *", None)]).await;
    let d = day();
    // Asia/Shanghai (the default) is UTC+8: 09:00 there is 01:00 UTC.
    let first = s.tick(at(d + mins(30))).await.unwrap();
    assert_eq!(
        first.claimed, 1,
        "the previous day's tick was missed: run once"
    );
    let yesterday = d - chrono::Duration::days(1) + mins(60);
    assert_eq!(ran(&f.db.db, &f.tenant, "nine", yesterday).await, 1);
    assert_eq!(
        s.tick(at(d + mins(60) - secs(1))).await.unwrap(),
        TickReport::default()
    );
    let report = s.tick(at(d + mins(60))).await.unwrap();
    assert_eq!((report.claimed, report.succeeded), (1, 1));
    let key = format!("tick:nine:{}", z(d + mins(60)));
    let mut conn = f.db.db.reader().acquire().await.unwrap();
    let loc = keel_core::records::Location {
        namespace: "probe",
        collection: "items",
        key: &key,
    };
    let record = keel_core::records::get(&mut conn, &f.tenant, loc)
        .await
        .unwrap()
        .expect("the run's record");
    let local = format!("{}T09:00:00+08:00", d.format("%Y-%m-%d"));
    assert_eq!(record.data["local"], json!(local));
    // Another zone: 09:00 in London (UTC+0 in winter, UTC+1 in summer).
    let mut tx = f.db.db.begin().await.unwrap();
    tenants::set_time_zone(&mut tx, &f.tenant, "Europe/London")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let london = chrono_tz::Europe::London
        .with_ymd_and_hms(d.year(), d.month(), d.day(), 9, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        s.tick(at(london - secs(1))).await.unwrap(),
        TickReport::default()
    );
    assert_eq!(s.tick(at(london + secs(2))).await.unwrap().claimed, 1);
    assert_eq!(ran(&f.db.db, &f.tenant, "nine", london).await, 1);
    assert_eq!(total(&f.db.db, &f.tenant, "nine").await, 3);
}

async fn a_failing_run_is_retried_then_dead_then_replayed(kind: Backend) {
    let f = Fixture::new(kind).await;
    let (registry, s) = enabled(&f, &[("gated-daily", "0 6 * * *", Some(3))]).await;
    let tick = day() - chrono::Duration::hours(2); // 06:00 in Shanghai
    let r = s.tick(at(tick + secs(1))).await.unwrap();
    assert_eq!((r.claimed, r.failed), (1, 1), "{r:?}");
    let run = runs(&f.db.db, &f.tenant, None).await.remove(0);
    assert_eq!(
        (run.status, run.attempts, run.max_attempts),
        (RunStatus::Retrying, 1, 3)
    );
    assert!(
        run.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("GATE_CLOSED"),
        "{run:?}"
    );
    assert!(
        run.next_attempt_at >= at(tick + secs(61)),
        "backoff: {run:?}"
    );
    // Not due yet; then the second attempt, whose backoff doubles.
    assert_eq!(
        s.tick(at(tick + secs(30))).await.unwrap(),
        TickReport::default()
    );
    let r = s.tick(at(tick + mins(2))).await.unwrap();
    assert_eq!((r.retried, r.failed), (1, 1), "{r:?}");
    let run = keel_core::schedules::list(&f.db.db, &f.tenant, &Filter::default(), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(run.attempts, 2);
    assert!(run.next_attempt_at >= at(tick + mins(4)), "{run:?}");
    let r = s.tick(at(tick + mins(5))).await.unwrap();
    assert_eq!((r.retried, r.dead), (1, 1), "{r:?}");
    let dead = runs(&f.db.db, &f.tenant, Some(RunStatus::Dead)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].dead_at.is_some() && dead[0].finished_at.is_some());
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("attempt 3"),
        "{dead:?}"
    );
    assert_eq!(
        s.tick(at(tick + mins(90))).await.unwrap(),
        TickReport::default(),
        "dead stays dead"
    );
    assert_eq!(ran(&f.db.db, &f.tenant, "gated-daily", tick).await, 0);

    // Replaying refuses what is not a dead letter of the tenant.
    let other = Fixture::tenant_in(&f.db, "other").await;
    let e = keel_core::schedules::replay(&f.db.db, &other, &dead[0].id, keel_core::now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "NOT_FOUND", "{e}");
    let e = keel_core::schedules::replay(&f.db.db, &f.tenant, "no-such-run", keel_core::now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "NOT_FOUND", "{e}");
    // Open the gate (a write of the probe's own), replay: the next pass runs it.
    let plugins = registry.enabled(&f.tenant).await.unwrap();
    let act = plugins.get("probe").unwrap();
    crate::support::call(&f.host, act, "put", json!({"key": "gate", "data": {}}))
        .await
        .unwrap();
    let replayed = keel_core::schedules::replay(&f.db.db, &f.tenant, &dead[0].id, keel_core::now())
        .await
        .unwrap();
    assert_eq!(
        (replayed.status, replayed.attempts),
        (RunStatus::Retrying, 0)
    );
    let r = s.tick(at(tick + mins(91))).await.unwrap();
    assert_eq!((r.retried, r.succeeded), (1, 1), "{r:?}");
    assert_eq!(ran(&f.db.db, &f.tenant, "gated-daily", tick).await, 1);
    let e = keel_core::schedules::replay(&f.db.db, &f.tenant, &dead[0].id, keel_core::now())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "CONFLICT", "{e}");
    assert!(e.to_string().contains("succeeded"), "{e}");
}

async fn missed_ticks_run_the_latest_once_and_disabled_plugins_stop(kind: Backend) {
    let f = Fixture::new(kind).await;
    let (registry, s) = enabled(&f, &[("every-5", "*/5 * * * *", None)]).await;
    // Ticks at or before enabling are not the plugin's.
    let enabled_at = registry.list(&f.tenant).await.unwrap()[0].enabled_at;
    assert_eq!(s.tick(enabled_at).await.unwrap(), TickReport::default());
    let t0 = day();
    assert_eq!(s.tick(at(t0 + secs(1))).await.unwrap().claimed, 1);
    // No pass for 27 minutes: only the latest tick (t0 + 25) runs, once.
    let r = s.tick(at(t0 + mins(27))).await.unwrap();
    assert_eq!((r.claimed, r.succeeded), (1, 1));
    for m in [5, 10, 15, 20] {
        assert_eq!(ran(&f.db.db, &f.tenant, "every-5", t0 + mins(m)).await, 0);
    }
    assert_eq!(ran(&f.db.db, &f.tenant, "every-5", t0 + mins(25)).await, 1);
    // A pass that comes back to an earlier instant never runs an older tick.
    assert_eq!(
        s.tick(at(t0 + mins(12))).await.unwrap(),
        TickReport::default()
    );
    let (_, fresh, _cache) = process(f.db.db.clone()).await;
    assert_eq!(
        fresh.tick(at(t0 + mins(12))).await.unwrap(),
        TickReport::default()
    );
    // Emitted events went through the outbox to the async subscriber.
    let dispatcher = Dispatcher::new(
        f.db.db.clone(),
        registry.clone(),
        DispatcherConfig::default(),
    );
    assert_eq!(dispatcher.deliver_due().await.unwrap(), 2);
    let seen = counters::get(&f.db.db, &f.tenant, "probe", "seen:tick-every-5")
        .await
        .unwrap();
    assert_eq!(seen, 2);

    registry.disable(&f.tenant, "probe").await.unwrap();
    assert_eq!(
        s.tick(at(t0 + mins(30) + secs(1))).await.unwrap(),
        TickReport::default()
    );
    assert_eq!(
        fresh.tick(at(t0 + mins(45) + secs(1))).await.unwrap(),
        TickReport::default()
    );
    assert_eq!(total(&f.db.db, &f.tenant, "every-5").await, 2);
    let m = registry.package("probe", None).await.unwrap().manifest;
    registry
        .enable(
            &f.tenant,
            "probe",
            None,
            Grants::all_requested(&m),
            json!({}),
            &|_| Ok(()),
        )
        .await
        .unwrap();
    assert_eq!(
        s.tick(at(t0 + mins(50) + secs(1))).await.unwrap().claimed,
        1,
        "runs again once enabled"
    );
    assert_eq!(total(&f.db.db, &f.tenant, "every-5").await, 3);
}

/// A change to a manifest.
type Edit = fn(&mut Manifest);

async fn install_refuses_invalid_schedules(kind: Backend) {
    let f = Fixture::new(kind).await;
    let registry = f.registry();
    let wasm = fixture("probe");
    let base = manifest(&[("nightly", "0 2 * * *", None)]);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "bad cron",
            |m| m.schedules[0].cron = "61 * * * *".into(),
            "schedules.nightly.cron",
        ),
        (
            "seconds",
            |m| m.schedules[0].cron = "0 0 2 * * *".into(),
            "five",
        ),
        (
            "never",
            |m| m.schedules[0].cron = "0 0 31 2 *".into(),
            "never fires",
        ),
        (
            "twice",
            |m| m.schedules.push(m.schedules[0].clone()),
            "\"nightly\" is declared twice",
        ),
        (
            "attempts",
            |m| m.schedules[0].max_attempts = Some(0),
            "schedules.nightly.max_attempts",
        ),
        (
            "name",
            |m| m.schedules[0].name = "Nightly".into(),
            "schedules: \"Nightly\"",
        ),
        (
            "op",
            |m| m.schedules[0].operation = "no good".into(),
            "schedules.nightly.operation",
        ),
        (
            "too many",
            |m| {
                m.schedules = (0..17)
                    .map(|n| {
                        let mut s = m.schedules[0].clone();
                        s.name = format!("job-{n}");
                        s
                    })
                    .collect()
            },
            "at most 16",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut m = base.clone();
        edit(&mut m);
        let e = registry.install(m, &wasm).await.unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT", "{what}: {e}");
        assert!(
            e.to_string().contains(needle),
            "{what}: {e} lacks {needle:?}"
        );
    }
    assert!(
        registry.packages().await.unwrap().is_empty(),
        "nothing installed"
    );
    registry.install(base, &wasm).await.unwrap();
}

on_both_backends! {
    async fn two_kernel_processes_run_each_of_six_ticks_exactly_once(kind) {
        two_processes_run_each_tick_once(kind).await
    }

    async fn a_0900_job_in_asia_shanghai_fires_at_0100_utc_and_follows_a_new_zone(kind) {
        time_zone_is_respected(kind).await
    }

    async fn a_failing_run_is_retried_with_backoff_then_dead_lettered_and_replayable(kind) {
        a_failing_run_is_retried_then_dead_then_replayed(kind).await
    }

    async fn missed_ticks_run_only_the_latest_and_a_disabled_plugin_stops(kind) {
        missed_ticks_run_the_latest_once_and_disabled_plugins_stop(kind).await
    }

    async fn install_refuses_an_invalid_cron_or_duplicate_schedule_naming_it(kind) {
        install_refuses_invalid_schedules(kind).await
    }
}

/// Validates the probe's manifest with one `[[schedules]]` table.
fn check(table: &str, expected: Result<(), &str>) {
    let text = format!("{PROBE_MANIFEST}\n[[schedules]]\n{table}\n");
    match (Manifest::from_toml(&text), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err(needle)) => assert!(e.contains(needle), "{table}: {e} lacks {needle:?}"),
        (got, want) => panic!("{table}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn schedule_validation_table() {
    let ok = |cron: &str| format!("name = \"job\"\ncron = \"{cron}\"\noperation = \"tick\"");
    check(&ok("0 9 * * *"), Ok(()));
    check(&ok("*/15 8-18 * * MON-FRI"), Ok(()));
    check(&ok("0 0 L * *"), Ok(()));
    check(&ok("@daily"), Ok(()));
    check(
        &ok("0 9 * *"),
        Err("schedules.job.cron: \"0 9 * *\" has 4 fields"),
    );
    check(&ok("0 0 9 * * *"), Err("has 6 fields"));
    check(&ok("0 25 * * *"), Err("schedules.job.cron"));
    check(&ok("every day"), Err("schedules.job.cron"));
    check(&ok("0 0 30 2 *"), Err("never fires"));
    check(&format!("{}\nmax_attempts = 10", ok("@hourly")), Ok(()));
    check(
        &format!("{}\nmax_attempts = 11", ok("@hourly")),
        Err("1 to 10"),
    );
    check(
        "name = \"j\"\ncron = \"@daily\"\noperation = \"tick\"",
        Err("2-40"),
    );
    check(
        "name = \"job_1\"\ncron = \"@daily\"\noperation = \"tick\"",
        Err("schedules: \"job_1\""),
    );
    check(
        "name = \"job\"\ncron = \"@daily\"\noperation = \"\"",
        Err("schedules.job.operation"),
    );
    check(
        "name = \"job\"\ncron = \"@daily\"",
        Err("missing field `operation`"),
    );
    check(
        "name = \"job\"\ncron = \"@daily\"\noperation = \"t\"\nevery = 1",
        Err("unknown field"),
    );
}

#[test]
fn cron_ticks_follow_the_zone_across_daylight_saving() {
    let utc = |y, mo, d, h, mi| at(Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap());
    let cron = CronExpr::parse("30 2 * * *").unwrap();
    let berlin = chrono_tz::Europe::Berlin;
    // 2027-03-28: Berlin's clocks jump from 02:00 to 03:00, there is no
    // 02:30; the tick runs at the first instant after the gap (03:00 CEST).
    let gap = cron.next_after(utc(2027, 3, 27, 12, 0), berlin).unwrap();
    assert_eq!(gap, utc(2027, 3, 28, 1, 0));
    assert_eq!(
        cron.latest_at_or_before(utc(2027, 3, 28, 12, 0), berlin),
        Some(gap)
    );
    // 2027-10-31: 02:30 happens twice; the job runs once, at the first.
    let first = cron.next_after(utc(2027, 10, 30, 12, 0), berlin).unwrap();
    assert_eq!(first, utc(2027, 10, 31, 0, 30));
    assert_eq!(
        cron.next_after(first, berlin),
        Some(utc(2027, 11, 1, 1, 30))
    );
    assert_eq!(
        cron.latest_at_or_before(utc(2027, 10, 31, 1, 45), berlin),
        Some(first)
    );
    // 09:00 in Shanghai is 01:00 UTC.
    let nine = CronExpr::parse("0 9 * * *").unwrap();
    let shanghai = chrono_tz::Asia::Shanghai;
    let t = Timestamp(utc(2027, 1, 10, 1, 0).0 - 1);
    assert_eq!(
        nine.latest_at_or_before(t, shanghai),
        Some(utc(2027, 1, 9, 1, 0))
    );
    assert_eq!(nine.next_after(t, shanghai), Some(utc(2027, 1, 10, 1, 0)));
    assert_eq!(
        nine.latest_at_or_before(utc(2027, 1, 10, 1, 0), shanghai),
        Some(utc(2027, 1, 10, 1, 0))
    );
}
