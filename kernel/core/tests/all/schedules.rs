//! Schedule runs' storage: the claim that only one process wins, leases,
//! fenced settlements, dead letters and replay; and tenants' time zones.

use std::sync::Arc;
use std::time::Duration;

use keel_core::schedules::{self, Claim, Filter, Outcome, RunStatus};
use keel_core::{Db, TenantId, Timestamp, tenants};
use keel_testkit::{TestDb, on_both_backends};

const MIN: i64 = 60_000_000;
const LEASE: Duration = Duration::from_secs(300);

async fn new_tenant(db: &Db, slug: &str) -> TenantId {
    let mut tx = db.begin().await.unwrap();
    let t = tenants::create(&mut tx, slug, "Test").await.unwrap();
    tx.commit().await.unwrap();
    t.id
}

fn claim(tenant: &TenantId, tick: i64) -> Claim<'_> {
    Claim {
        tenant,
        plugin: "probe",
        schedule: "nightly",
        tick: Timestamp(tick),
        operation: "tick",
        max_attempts: 2,
    }
}

/// An instant well after any real clock in these tests.
const T: i64 = 2_000_000_000_000_000;

on_both_backends! {
    async fn one_of_forty_concurrent_claims_from_two_processes_wins_a_tick(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let second = t.another_process().await;
        let tenant = Arc::new(new_tenant(&t.db, "acme").await);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let db = if i % 2 == 0 { t.db.clone() } else { second.clone() };
            let tenant = tenant.clone();
            tasks.push(tokio::spawn(async move {
                schedules::claim(&db, &claim(&tenant, T), Timestamp(T + 1), LEASE).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            won.extend(task.await.unwrap());
        }
        assert_eq!(won.len(), 1, "exactly one claim wins");
        let run = &won[0];
        assert_eq!((run.status, run.attempts, run.max_attempts), (RunStatus::Running, 1, 2));
        assert_eq!((run.tick, run.started_at), (Timestamp(T), Some(Timestamp(T + 1))));
        // An earlier tick is never claimed after a later one.
        let earlier = schedules::claim(&t.db, &claim(&tenant, T - MIN), Timestamp(T + 2), LEASE).await.unwrap();
        assert_eq!(earlier, None);
        // Another schedule, plugin or tenant is a claim of its own.
        let other = new_tenant(&t.db, "globex").await;
        assert!(schedules::claim(&t.db, &claim(&other, T), Timestamp(T + 1), LEASE).await.unwrap().is_some());
        let c = Claim { schedule: "hourly", ..claim(&tenant, T) };
        assert!(schedules::claim(&t.db, &c, Timestamp(T + 1), LEASE).await.unwrap().is_some());
        let c = Claim { max_attempts: 0, ..claim(&tenant, T + MIN) };
        let e = schedules::claim(&t.db, &c, Timestamp(T + 1), LEASE).await.unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
    }

    async fn failures_retry_until_max_attempts_then_dead_and_replay_starts_over(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = new_tenant(&t.db, "acme").await;
        let run = schedules::claim(&t.db, &claim(&tenant, T), Timestamp(T), LEASE).await.unwrap().unwrap();
        // Leased: nothing else is due.
        assert!(schedules::lease_due(&t.db, Timestamp(T + MIN), LEASE, 10).await.unwrap().is_empty());
        let failed = Outcome::Failed { error: "BOOM: first".into(), retry_at: Timestamp(T + 2 * MIN) };
        let r = schedules::settle(&t.db, &run.id, 1, Timestamp(T + 1), &failed).await.unwrap().unwrap();
        assert_eq!((r.status, r.next_attempt_at), (RunStatus::Retrying, Timestamp(T + 2 * MIN)));
        assert_eq!(r.last_error.as_deref(), Some("BOOM: first"));
        assert!(schedules::lease_due(&t.db, Timestamp(T + MIN), LEASE, 10).await.unwrap().is_empty(), "not yet");
        let again = schedules::lease_due(&t.db, Timestamp(T + 2 * MIN), LEASE, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].status, again[0].attempts), (RunStatus::Running, 2));
        // A stale settlement of attempt 1 changes nothing.
        assert_eq!(schedules::settle(&t.db, &run.id, 1, Timestamp(T + 3 * MIN), &Outcome::Succeeded).await.unwrap(), None);
        let failed = Outcome::Failed { error: "BOOM: second".into(), retry_at: Timestamp(T + 9 * MIN) };
        let dead = schedules::settle(&t.db, &run.id, 2, Timestamp(T + 3 * MIN), &failed).await.unwrap().unwrap();
        assert_eq!(dead.status, RunStatus::Dead);
        assert_eq!((dead.dead_at, dead.finished_at), (Some(Timestamp(T + 3 * MIN)), Some(Timestamp(T + 3 * MIN))));
        assert!(schedules::lease_due(&t.db, Timestamp(T + 60 * MIN), LEASE, 10).await.unwrap().is_empty(), "dead stays dead");
        let letters = schedules::list(&t.db, &tenant, &Filter { status: Some(RunStatus::Dead), ..Filter::default() }, 10).await.unwrap();
        assert_eq!(letters, vec![dead.clone()]);

        let replayed = schedules::replay(&t.db, &tenant, &run.id, Timestamp(T + 61 * MIN)).await.unwrap();
        assert_eq!((replayed.status, replayed.attempts, replayed.dead_at), (RunStatus::Retrying, 0, None));
        let leased = schedules::lease_due(&t.db, Timestamp(T + 61 * MIN), LEASE, 10).await.unwrap();
        assert_eq!(leased[0].attempts, 1, "fresh attempts");
        let ok = schedules::settle(&t.db, &run.id, 1, Timestamp(T + 62 * MIN), &Outcome::Succeeded).await.unwrap().unwrap();
        assert_eq!((ok.status, ok.last_error, ok.finished_at), (RunStatus::Succeeded, None, Some(Timestamp(T + 62 * MIN))));
        let e = schedules::replay(&t.db, &tenant, &run.id, Timestamp(T)).await.unwrap_err();
        assert_eq!(e.code(), "CONFLICT");
        let other = new_tenant(&t.db, "globex").await;
        let e = schedules::replay(&t.db, &other, &run.id, Timestamp(T)).await.unwrap_err();
        assert_eq!(e.code(), "NOT_FOUND", "another tenant's run does not exist");
    }

    async fn a_run_whose_process_died_is_taken_over_when_its_lease_runs_out(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let second = t.another_process().await;
        let tenant = new_tenant(&t.db, "acme").await;
        let run = schedules::claim(&t.db, &claim(&tenant, T), Timestamp(T), LEASE).await.unwrap().unwrap();
        let lease_end = T + LEASE.as_micros() as i64;
        assert!(schedules::lease_due(&second, Timestamp(lease_end - 1), LEASE, 10).await.unwrap().is_empty());
        let taken = schedules::lease_due(&second, Timestamp(lease_end), LEASE, 10).await.unwrap();
        assert_eq!((taken.len(), taken[0].attempts), (1, 2));
        // The first process wakes up: its attempt's outcome no longer counts.
        assert_eq!(schedules::settle(&t.db, &run.id, 1, Timestamp(lease_end), &Outcome::Succeeded).await.unwrap(), None);
        let done = schedules::settle(&second, &run.id, 2, Timestamp(lease_end + 1), &Outcome::Succeeded).await.unwrap().unwrap();
        assert_eq!(done.status, RunStatus::Succeeded);
    }

    async fn latest_and_list_show_a_tenants_runs_newest_first(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = new_tenant(&t.db, "acme").await;
        for i in 0..3 {
            schedules::claim(&t.db, &claim(&tenant, T + i * MIN), Timestamp(T + i * MIN), LEASE).await.unwrap().unwrap();
        }
        let c = Claim { schedule: "hourly", ..claim(&tenant, T) };
        schedules::claim(&t.db, &c, Timestamp(T), LEASE).await.unwrap().unwrap();
        let latest = schedules::latest(&t.db, &tenant).await.unwrap();
        let got: Vec<_> = latest.iter().map(|r| (r.schedule.as_str(), r.tick.0)).collect();
        assert_eq!(got, vec![("hourly", T), ("nightly", T + 2 * MIN)]);
        let all = schedules::list(&t.db, &tenant, &Filter::default(), 10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].tick, Timestamp(T + 2 * MIN));
        let f = Filter { schedule: Some("nightly"), ..Filter::default() };
        assert_eq!(schedules::list(&t.db, &tenant, &f, 2).await.unwrap().len(), 2);
        let f = Filter { plugin: Some("other"), ..Filter::default() };
        assert!(schedules::list(&t.db, &tenant, &f, 10).await.unwrap().is_empty());
        let e = schedules::list(&t.db, &tenant, &Filter::default(), 501).await.unwrap_err();
        assert_eq!(e.to_string(), "first: must be 1 to 500");
        let other = new_tenant(&t.db, "globex").await;
        assert!(schedules::latest(&t.db, &other).await.unwrap().is_empty());
        assert_eq!(schedules::get(&t.db, &other, &all[0].id).await.unwrap_err().code(), "NOT_FOUND");
    }

    async fn a_tenant_has_an_iana_time_zone_shanghai_by_default(kind) {
        let t = TestDb::of(kind).await.unwrap();
        let tenant = new_tenant(&t.db, "acme").await;
        assert_eq!(tenants::time_zone(t.db.reader(), &tenant).await.unwrap(), "Asia/Shanghai");
        assert_eq!(tenants::get(&t.db, &tenant).await.unwrap().time_zone, "Asia/Shanghai");
        let mut tx = t.db.begin().await.unwrap();
        let e = tenants::set_time_zone(&mut tx, &tenant, "Asia/Beijing").await.unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
        assert!(e.to_string().starts_with("timeZone: \"Asia/Beijing\" is not an IANA time zone"), "{e}");
        let updated = tenants::set_time_zone(&mut tx, &tenant, " America/New_York ").await.unwrap();
        assert_eq!(updated.time_zone, "America/New_York");
        // Inside the transaction, and after its commit.
        assert_eq!(tenants::time_zone(&mut *tx, &tenant).await.unwrap(), "America/New_York");
        tx.commit().await.unwrap();
        assert_eq!(tenants::list(&t.db).await.unwrap()[0].time_zone, "America/New_York");
        let slug = tenants::get_by_slug(&t.db, "acme").await.unwrap();
        assert_eq!(slug.time_zone, "America/New_York");
    }
}
