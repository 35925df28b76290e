//! Scheduled jobs over real HTTP: the view of each schedule's last and next
//! runs, dead letters and their replay, the tenant's time zone, and who may
//! see and change them. The scheduler's passes are driven by the test.

use chrono::{DateTime, Datelike as _, TimeZone as _, Utc};
use keel_core::Timestamp;
use keel_host::manifest::Schedule;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::plugins::{SDL, enable, manifest, probe_wasm};
use crate::support::{TestApp, code, field, ok};

const VIEW: &str = "{ schedules { plugin name cron operation timeZone maxAttempts nextRunAt \
     lastRun { id tick status attempts maxAttempts lastError finishedAt } } }";

fn schedule(name: &str, cron: &str, max_attempts: Option<u32>) -> Schedule {
    Schedule {
        name: name.into(),
        cron: cron.into(),
        operation: "tick".into(),
        max_attempts,
    }
}

/// Midnight UTC a few days ahead: after the plugin was enabled.
fn day() -> DateTime<Utc> {
    let d = Utc::now() + chrono::Duration::days(3);
    Utc.with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
        .unwrap()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// The first `hour`:00 UTC after `t`.
fn next_utc_hour(t: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let today = Utc
        .with_ymd_and_hms(t.year(), t.month(), t.day(), hour, 0, 0)
        .unwrap();
    if today > t {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

on_both_backends! {
    async fn the_schedule_view_shows_last_and_next_runs_and_dead_letters_over_http(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let mut m = manifest("probe", "0.1.0", SDL);
        m.schedules = vec![
            schedule("nine", "0 9 * * *", None),
            schedule("gated-early", "0 6 * * *", Some(1)),
        ];
        app.plugins.install(m, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "probe", json!({})).await);

        // Before any run: no last run, the next 09:00 in Shanghai (01:00 UTC).
        let before = Utc::now();
        let r = app.gql(Some(&owner), VIEW, json!({})).await;
        let after = Utc::now();
        let list = ok(&r)["schedules"].as_array().unwrap().clone();
        assert_eq!(list.len(), 2, "{r:#}");
        assert_eq!(list[0]["name"], "nine");
        assert_eq!(list[0]["cron"], "0 9 * * *");
        assert_eq!(list[0]["timeZone"], "Asia/Shanghai");
        assert_eq!(list[0]["maxAttempts"], 3);
        assert_eq!(list[0]["lastRun"], Value::Null);
        let next = time(&list[0]["nextRunAt"]);
        assert!(
            [next_utc_hour(before, 1), next_utc_hour(after, 1)].contains(&next),
            "{next}"
        );

        // One pass at 01:00:05 UTC on a coming day: `nine` runs; the gated
        // job (its 06:00 tick is 22:00 UTC the day before) fails once and,
        // with one attempt allowed, is a dead letter at once.
        let d = day();
        let scheduler = app.kernel.kernel().scheduler();
        let pass = scheduler.tick(Timestamp::from_datetime(d + chrono::Duration::seconds(3605))).await.unwrap();
        assert_eq!((pass.claimed, pass.succeeded, pass.dead), (2, 1, 1), "{pass:?}");
        let r = app.gql(Some(&owner), VIEW, json!({})).await;
        let list = ok(&r)["schedules"].as_array().unwrap().clone();
        let last = &list[0]["lastRun"];
        assert_eq!(time(&last["tick"]), d + chrono::Duration::hours(1));
        assert_eq!(last["status"], "SUCCEEDED");
        assert_eq!(last["attempts"], 1);
        assert_eq!(last["lastError"], Value::Null);
        assert!(last["finishedAt"].is_string(), "{last}");
        let dead = &list[1]["lastRun"];
        assert_eq!(list[1]["name"], "gated-early");
        assert_eq!(time(&dead["tick"]), d - chrono::Duration::hours(2));
        assert_eq!(dead["status"], "DEAD");
        assert_eq!((dead["attempts"].clone(), dead["maxAttempts"].clone()), (json!(1), json!(1)));
        assert!(dead["lastError"].as_str().unwrap().starts_with("GATE_CLOSED"), "{dead}");

        // The dead letters, and replaying one.
        let r = app.gql(Some(&owner), "{ scheduleRuns(status: DEAD) { id schedule status deadAt } }", json!({})).await;
        let letters = ok(&r)["scheduleRuns"].as_array().unwrap().clone();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0]["id"], dead["id"]);
        assert!(letters[0]["deadAt"].is_string());
        let r = app.gql(Some(&owner), "{ scheduleRuns(plugin: \"probe\", schedule: \"nine\") { status } }", json!({})).await;
        assert_eq!(ok(&r)["scheduleRuns"], json!([{"status": "SUCCEEDED"}]));
        let r = app.gql(Some(&owner), "{ scheduleRuns(first: 0) { id } }", json!({})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "first"));
        let replay = "mutation($id: ID!) { replayScheduleRun(id: $id) { status attempts nextAttemptAt } }";
        let r = app.gql(Some(&owner), replay, json!({"id": dead["id"]})).await;
        assert_eq!(ok(&r)["replayScheduleRun"]["status"], "RETRYING");
        assert_eq!(ok(&r)["replayScheduleRun"]["attempts"], 0);
        let r = app.gql(Some(&owner), replay, json!({"id": dead["id"]})).await;
        assert_eq!(code(&r), "CONFLICT", "only a dead run is replayed: {r}");
        let (_, other) = app.tenant("globex").await;
        let r = app.gql(Some(&other), replay, json!({"id": dead["id"]})).await;
        assert_eq!(code(&r), "NOT_FOUND", "another tenant's run does not exist: {r}");
    }

    async fn the_tenant_time_zone_is_set_by_its_owner_or_admin_and_moves_the_next_run(kind) {
        let app = TestApp::start(kind).await;
        let (_, owner) = app.tenant("acme").await;
        let mut m = manifest("probe", "0.1.0", SDL);
        m.schedules = vec![schedule("nine", "0 9 * * *", None)];
        app.plugins.install(m, &probe_wasm()).await.unwrap();
        ok(&enable(&app, &owner, "probe", json!({})).await);
        let tz = "{ viewer { tenant { timeZone } } }";
        let r = app.gql(Some(&owner), tz, json!({})).await;
        assert_eq!(ok(&r)["viewer"]["tenant"]["timeZone"], "Asia/Shanghai");
        let set = "mutation($z: String!) { setTenantTimeZone(timeZone: $z) { slug timeZone } }";
        let r = app.gql(Some(&owner), set, json!({"z": "Mars/Olympus_Mons"})).await;
        assert_eq!((code(&r), field(&r)), ("BAD_USER_INPUT", "timeZone"));
        assert!(r["errors"][0]["message"].as_str().unwrap().contains("Mars/Olympus_Mons"), "{r}");
        let admin = app.key(&owner, &["admin"], &[]).await;
        let r = app.gql(Some(&admin), set, json!({"z": "Europe/Berlin"})).await;
        assert_eq!(ok(&r)["setTenantTimeZone"], json!({"slug": "acme", "timeZone": "Europe/Berlin"}));
        let r = app.gql(Some(&owner), tz, json!({})).await;
        assert_eq!(ok(&r)["viewer"]["tenant"]["timeZone"], "Europe/Berlin");
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 in summer.
        let r = app.gql(Some(&admin), VIEW, json!({})).await;
        let s = &ok(&r)["schedules"][0];
        assert_eq!(s["timeZone"], "Europe/Berlin");
        let next = time(&s["nextRunAt"]);
        assert!(next > Utc::now() && next.format("%M:%S").to_string() == "00:00", "{next}");
        assert!([7, 8].contains(&next.format("%H").to_string().parse::<u32>().unwrap()), "{next}");

        // Marketers and analysts neither see schedules nor set the zone.
        for role in ["marketer", "analyst"] {
            let key = app.key(&owner, &[role], &[]).await;
            let r = app.gql(Some(&key), VIEW, json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}: {r}");
            let r = app.gql(Some(&key), "{ scheduleRuns { id } }", json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}: {r}");
            let r = app.gql(Some(&key), set, json!({"z": "UTC"})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{role}: {r}");
        }
        let r = app.gql(None, VIEW, json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
    }
}
