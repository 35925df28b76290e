//! The design brief's first end-to-end story, over real HTTP: a new brand
//! enables codes and rewards, issues and activates a batch, ships it to a
//! region; consumers scan inside and outside it and claim; the consumer
//! page shows the outcome in headless Chromium; an integration key reads
//! the day's scans and awards and is refused everything else.

use std::collections::HashMap;

use keel_core::Backend;
use serde_json::{Value, json};

use crate::codes::{SHANGHAI, SHENZHEN, activate, chrono_today, setup};
use crate::page::render;
use crate::rewards::{CLAIM, campaign, fast, running, scan};
use crate::support::{Kernel, Provider, code, eventually, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_brand_ships_codes_consumers_scan_and_win_and_the_erp_reads_the_day() {
    let provider = Provider::start(1).await;
    let k = Kernel::start_with(Backend::Sqlite, fast()).await;

    // 1. A brand is created; its admin enables codes and rewards.
    let b = k.brand("brand-x", json!({})).await;
    let payouts = json!({"payout_url": provider.url("/pay"), "payout_retry_seconds": 0});
    k.enable_rewards(&b, payouts, &[provider.host()]).await;

    // 2-3. A batch for lot L2611, activated, shipped to Guangdong.
    let s = setup(&k, &b, 1000).await;
    ok(&activate(&k, &b, &s.units).await);
    let (status, csv) = k
        .download(
            &b.owner,
            "/files/codes/print-file",
            json!({"batch": s.units}),
        )
        .await;
    assert_eq!(status, 200);
    let rows: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1].to_owned(), c[2].to_owned())
        })
        .collect();
    let r = k
        .gql(
            &b.owner,
            "mutation($i: CodeShipmentInput!) { createShipment(input: $i) { id codes } }",
            json!({"i": {"reference": "DN-100", "distributor": "D-GD-01", "region": "CN-GD",
                     "ranges": [{"batch": s.units, "from": 1, "to": 1000}]}}),
        )
        .await;
    assert_eq!(ok(&r)["createShipment"]["codes"], 1000);

    // 5. First scan of lot L2611 in CN-GD: 10% win a red packet of 1-5 CNY,
    //    budget 10,000 CNY, at most 3 wins per person a day.
    let prizes = json!([
        {"id": "red-packet", "name": "Red packet", "kind": "RED_PACKET", "min_cents": 100, "max_cents": 500, "weight": 1},
        {"id": "thanks", "name": "Thanks for taking part", "kind": "THANKS", "weight": 9},
    ]);
    let rule = json!({"all": [{"lot": ["L2611"]}, {"region": ["CN-GD"]}, {"first_scan": true}]});
    // The campaign's window is around the run's own clock: a fixed month
    // would end under a run that crosses it.
    let china = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let now = chrono::Utc::now().with_timezone(&china);
    let at = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    let (starts, ends) = (
        at(now - chrono::Duration::days(1)),
        at(now + chrono::Duration::days(30)),
    );
    let id = running(
        &k,
        &b,
        campaign(
            rule,
            prizes,
            json!({
                "name": "A month in Guangdong",
                "startsAt": starts, "endsAt": ends,
                "budgetCents": 1_000_000, "limits": {"perPersonPerDay": 3},
            }),
        ),
    )
    .await;

    // 4. Consumers scan: 240 units in Shenzhen by 40 people (6 each), 20 in
    //    Shanghai (diverted: not eligible).
    let mut wins_by_person: HashMap<String, u32> = HashMap::new();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    for (i, (code, _)) in rows[..260].iter().enumerate() {
        let (place, who) = if i < 240 {
            (SHENZHEN, format!("o-{}", i % 40))
        } else {
            (SHANGHAI, format!("o-sh-{i}"))
        };
        let scan_id = scan(&k, &b, code, Some(place), Some(&who)).await;
        let c = ok(&k.public(&b.slug, CLAIM, json!({"s": scan_id})).await)["claimReward"].clone();
        let outcome = c["outcome"].as_str().unwrap().to_owned();
        if outcome == "WON" {
            *wins_by_person.entry(who.clone()).or_default() += 1;
            let cents = c["awards"][0]["amountCents"].as_i64().unwrap();
            assert!((100..=500).contains(&cents));
        }
        if i >= 240 {
            assert_eq!(outcome, "NOT_ELIGIBLE", "outside the region");
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    let won = outcomes.get("WON").copied().unwrap_or(0);
    assert!(won >= 5, "about 10% of 240 first scans win: {outcomes:?}");
    assert!(
        wins_by_person.values().all(|&n| n <= 3),
        "{wins_by_person:?}"
    );
    assert_eq!(outcomes.values().sum::<u32>(), 260);

    // The red packets are paid through the provider (which fails each once).
    let paid = eventually(60, || async {
        let r = k
            .gql(
                &b.owner,
                "{ rewardPayouts(status: \"PAID\") { awardId } }",
                json!({}),
            )
            .await;
        let n = ok(&r)["rewardPayouts"].as_array().unwrap().len() as u32;
        (n == won).then_some(n)
    })
    .await;
    assert_eq!(paid, Some(won), "every red packet is paid");

    // The consumer page: a new consumer opens a printed URL (outside
    // WeChat, so anonymously). Headless Chromium denies the location, so
    // the scan has no region and the page says the campaign does not
    // cover it.
    let url = rows[500].1.clone();
    let dom = tokio::task::spawn_blocking(move || render(&url, None))
        .await
        .unwrap();
    assert!(dom.contains("data-verdict=\"GENUINE\""), "{dom}");
    assert!(
        dom.contains("data-outcome=\"NOT_ELIGIBLE\""),
        "the claim's outcome is on the page: {dom}"
    );
    assert!(
        dom.contains("does not take part in the current campaigns"),
        "{dom}"
    );

    // 6. The ERP's key reads the day's scans and awards, and nothing else.
    let erp = k
        .key(
            &b,
            &["integration"],
            &["plugin.codes:read", "plugin.rewards:read"],
        )
        .await;
    let today = chrono_today();
    let r = k.gql(&erp, "query($d: String!) { codeScans(day: $d, limit: 1000) { scans { codeId region diversion { allowedRegion } } } \
        rewardAwards(day: $d, limit: 1000) { awards { id amountCents payoutStatus personId } } }", json!({"d": today})).await;
    let scans = ok(&r)["codeScans"]["scans"].as_array().unwrap().clone();
    assert_eq!(scans.len(), 261);
    assert_eq!(
        scans
            .iter()
            .filter(|s| s["diversion"] != Value::Null)
            .count(),
        20
    );
    let awards = ok(&r)["rewardAwards"]["awards"].as_array().unwrap().clone();
    assert!(awards.len() as u32 >= won);
    let r = k.gql(&erp, "query($c: String!, $d: String!) { campaignReport(id: $c, from: $d, to: $d) { spentCents budgetCents } }",
        json!({"c": id, "d": today})).await;
    let report = &ok(&r)["campaignReport"];
    assert!(report["spentCents"].as_i64().unwrap() <= 1_000_000);
    for refused in [
        "mutation { createCampaign(input: {name: \"x\", startsAt: \"2026-01-01T00:00:00Z\", endsAt: \"2027-01-01T00:00:00Z\", rule: {}, prizes: []}) { id } }",
        "mutation { issueCodeBatch(product: \"WINE-750\", lot: \"L9\", quantity: 10) { id } }",
        "mutation { spendPoints(personId: \"p\", points: 1, reason: \"r\", idempotencyKey: \"k\") { balance } }",
        "{ personByIdentifier(kind: \"wechat_openid\", value: \"o-1\") { id } }",
        "{ events { edges { node { id } } } }",
        "{ deadLetters { eventId } }",
    ] {
        let r = k.gql(&erp, refused, json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{refused}: {r}");
    }
    let (status, _) = k
        .download(&erp, "/files/codes/print-file", json!({"batch": s.units}))
        .await;
    assert_eq!(status, 403);
}
