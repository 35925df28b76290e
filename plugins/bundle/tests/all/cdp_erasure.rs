//! A person's data exported, then erased end to end, on SQLite and
//! PostgreSQL: after the
//! kernel's `erasePerson` and the CDP's `person.erased`, none of the
//! person's identifiers or attributes is left anywhere in the database —
//! checked by searching every column of every raw table — while another
//! person's data stays; the right is the admins'.

use keel_core::Backend;
use keel_testkit::on_both_backends;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::cdp::{CDP_GRANTS, person_id, track};
use crate::rewards::{campaign, claim, points, running, scan, shop};
use crate::support::{Kernel, code, eventually, ok};

const IDENTIFY: &str = "mutation($b: String!, $r: [CdpIdentifyInput!]!) { cdpIdentify(batchId: $b, rows: $r) { accepted personIds } }";
const ERASE: &str = "mutation($i: ErasePersonInput!) { erasePerson(input: $i) { id personId persons identifiers events } }";

/// The tables (and the row's text) in which `needle` occurs.
async fn occurrences(k: &Kernel, needle: &str) -> Vec<String> {
    let pool = k.db.reader();
    let pattern = format!("%{needle}%");
    let mut found = Vec::new();
    match k.db.backend() {
        Backend::Sqlite => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(pool)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.try_get::<String, _>(0).unwrap())
                        .collect();
                let row = cols
                    .iter()
                    .map(|c| format!("COALESCE(CAST(\"{c}\" AS TEXT), '')"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let hits: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT {row} FROM \"{t}\" WHERE {row} LIKE $1"))
                        .bind(&pattern)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                found.extend(hits.into_iter().map(|h| format!("{t}: {h}")));
            }
        }
        Backend::Postgres => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for t in tables {
                let hits: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT r::text FROM \"{t}\" r WHERE r::text LIKE $1"
                ))
                .bind(&pattern)
                .fetch_all(pool)
                .await
                .unwrap();
                found.extend(hits.into_iter().map(|h| format!("{t}: {h}")));
            }
        }
    }
    found
}

fn row(phone: &str, member: &str, name: &str, city: &str) -> Value {
    json!({"identifiers": [{"kind": "phone", "value": phone}, {"kind": "member_no", "value": member}],
           "attributes": {"name": name, "city": city}, "tags": ["vip"]})
}

on_both_backends! {
    async fn an_erased_person_leaves_no_identifier_or_attribute_in_any_table(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = shop(&k, "acme", 4, json!({}), &[]).await;
        k.enable(&b, "cdp", CDP_GRANTS, json!({}), &[]).await;
        ok(&k.gql(&b.owner, "mutation($i: CdpSegmentInput!) { saveSegment(input: $i) { id } }",
            json!({"i": {"id": "vips", "name": "VIP", "rule": {"tag": "vip"}, "emitEvents": true}})).await);

        // The person to erase: a CRM row, events, consent; and, as a WeChat
        // consumer, a scan and a win — then merged into one person.
        let erased = ["+8613900000077", "ERASE-77", "王小明", "杭州西湖区", "o-erase-77"];
        let kept = ["+8613900000088", "KEEP-88", "李四", "成都武侯区"];
        let r = k.gql(&b.owner, IDENTIFY, json!({"b": "crm-1", "r": [row(erased[0], erased[1], erased[2], erased[3]), row(kept[0], kept[1], kept[2], kept[3])]})).await;
        assert_eq!(ok(&r)["cdpIdentify"]["accepted"], 2);
        let a = person_id(&k, &b, "member_no", erased[1]).await;
        let c = person_id(&k, &b, "member_no", kept[1]).await;
        let ev = |id: &str, member: &str, note: &str| json!({"messageId": id, "type": "page.viewed", "occurredAt": "2026-11-01T00:00:00Z",
            "identifiers": [{"kind": "member_no", "value": member}], "properties": {"note": note}});
        ok(&track(&k, &b, "t1", &[ev("e1", erased[1], erased[2]), ev("e2", kept[1], kept[2])], None).await);
        ok(&k.gql(&b.owner, "mutation($s: [CdpConsentInput!]!) { setCdpConsent(statements: $s) }",
            json!({"s": [{"personId": a, "purpose": "marketing_sms", "granted": true, "source": "crm"}]})).await);
        running(&k, &b, campaign(json!({"all": []}), points(5), json!({}))).await;
        let s = scan(&k, &b, &codes[0], None, Some(erased[4])).await;
        assert_eq!(claim(&k, &b, &s).await["outcome"], "WON");
        let wechat = person_id(&k, &b, "wechat_openid", erased[4]).await;
        ok(&k.gql(&b.owner, "mutation($i: MergePersonsInput!) { mergePersons(input: $i) { id } }",
            json!({"i": {"survivorId": a, "mergedId": wechat, "reason": "same phone"}})).await);
        for needle in erased.iter().chain(&kept) {
            assert!(!occurrences(&k, needle).await.is_empty(), "{needle} is in the database before");
        }

        // The person's own copy of what the CDP holds (access, portability):
        // the profile, then their events and consent statements.
        let (status, body) = k.download(&b.owner, "/files/cdp/person", json!({"personId": a})).await;
        assert_eq!(status, 200, "{body}");
        let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["kind"], "profile");
        assert_eq!(lines[0]["attributes"]["name"], erased[2]);
        assert!(lines[0]["identifiers"].as_array().unwrap().iter().any(|i| i["value"] == erased[4]), "merged in: {}", lines[0]);
        // Their page view, scan and win (across the merged ids), then consent.
        let kinds: Vec<&str> = lines[1..].iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["event", "event", "event", "consent"], "{body}");
        let mut types: Vec<&str> = lines[1..4].iter().map(|l| l["type"].as_str().unwrap()).collect();
        types.sort();
        assert_eq!(types, ["code.scanned", "page.viewed", "rewards.awarded"]);
        assert!(lines.iter().any(|l| l["properties"]["note"] == erased[2]), "{body}");
        let (status, _) = k.download(&b.owner, "/files/cdp/person", json!({"personId": "P-nobody"})).await;
        assert_eq!(status, 404);
        let analyst = k.key(&b, &["analyst"], &[]).await;
        let (status, _) = k.download(&analyst, "/files/cdp/person", json!({"personId": a})).await;
        assert_eq!(status, 403, "a read-only key cannot export personal data");

        // Refused: a marketer (no privacy right), a bad reason, nobody.
        let marketer = k.key(&b, &["marketer"], &[]).await;
        let r = k.gql(&marketer, ERASE, json!({"i": {"personId": a, "reason": "ticket 1"}})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = k.gql(&b.owner, ERASE, json!({"i": {"personId": a, "reason": " "}})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        let r = k.gql(&b.owner, ERASE, json!({"i": {"personId": "P-nobody", "reason": "ticket 1"}})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        assert!(!occurrences(&k, erased[2]).await.is_empty(), "refusals erase nothing");

        // Erasing the merged id erases the one data subject behind it.
        // Refused while the person's events are still being delivered to
        // plugins (the scan, the win): retried until they are.
        let r = eventually(60, || async {
            let r = k.gql(&b.owner, ERASE, json!({"i": {"personId": wechat, "reason": "PIPL request 2026-118"}})).await;
            match r["errors"][0]["extensions"]["code"].as_str() {
                Some("CONFLICT") => None,
                _ => Some(r),
            }
        })
        .await
        .expect("the erasure goes through once deliveries are done");
        let e = &ok(&r)["erasePerson"];
        assert_eq!(e["personId"], a.as_str());
        assert_eq!(e["persons"], json!([a, wechat]));
        assert_eq!(e["identifiers"], 3);
        assert!(e["events"].as_i64().unwrap() >= 4, "{e}");
        let left = eventually(60, || async {
            let mut left = Vec::new();
            for needle in erased {
                left.extend(occurrences(&k, needle).await);
            }
            left.is_empty().then_some(())
        })
        .await;
        if left.is_none() {
            let mut still = Vec::new();
            for needle in erased {
                still.extend(occurrences(&k, needle).await);
            }
            panic!("the erased person's data is still there: {still:#?}");
        }
        for needle in kept {
            assert!(!occurrences(&k, needle).await.is_empty(), "{needle}, another person's, stays");
        }
        let audit = sqlx::query("SELECT person_id, persons, identifiers, reason, actor FROM person_erasures")
            .fetch_all(k.db.reader())
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].try_get::<String, _>("person_id").unwrap(), a);
        assert_eq!(audit[0].try_get::<i64, _>("persons").unwrap(), 2);
        assert_eq!(audit[0].try_get::<String, _>("reason").unwrap(), "PIPL request 2026-118");
        assert!(audit[0].try_get::<String, _>("actor").unwrap().starts_with("key:"));
        // The kernel no longer finds the erased person, by id either.
        let r = k.gql(&b.owner, "query($p: ID!) { person(id: $p) { id } }", json!({"p": a})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = k.gql(&b.owner, "{ personByIdentifier(kind: \"phone\", value: \"+8613900000077\") { id } }", json!({})).await;
        assert_eq!(code(&r), "NOT_FOUND");
        let r = k.gql(&b.owner, "{ cdpSegments { id size } }", json!({})).await;
        assert_eq!(ok(&r)["cdpSegments"][0]["size"], 1, "only the kept person is a VIP now");
        let r = k.gql(&b.owner, "query($p: String!) { cdpProfile(personId: $p) { events tags consent { purpose } timeline { events { type } } } }", json!({"p": c})).await;
        assert_eq!(ok(&r)["cdpProfile"]["events"], 1, "{r}");
    }
}
