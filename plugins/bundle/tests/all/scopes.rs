//! "HQ sets the rules, regions spend" in the rewards plugin, over real
//! HTTP: a marketer limited to an org node (CN-GD) creates only campaigns
//! limited to its node, sees and changes only those and their reports;
//! a limited campaign judges only scans of its node's regions; HQ sees
//! everything; and the kernel refuses the same kind of credential outside
//! its node.

use keel_testkit::on_both_backends;
use serde_json::{Value, json};

use crate::codes::{SHANGHAI, SHENZHEN, activate, chrono_today, setup, square};
use crate::rewards::{CREATE, STATUS, campaign, claim, points, scan};
use crate::support::{Brand, Kernel, code, ok};

const UPSERT: &str =
    "mutation($n: [OrgNodeInput!]!) { upsertOrgNodes(nodes: $n) { created updated } }";
const NODE: &str = "query($c: String) { orgNode(code: $c) { id } }";
const CREATE_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }";
const CAMPAIGNS: &str = "{ campaigns { id limitedTo { id code } } }";
const GET: &str = "query($id: String!) { campaign(id: $id) { id limitedTo { code } } }";
const UPDATE: &str = "mutation($id: String!, $i: CampaignInput!) { updateCampaign(id: $id, input: $i) { id limitedTo { code } } }";
const REPORT: &str = "query($c: String!, $d: String!) { campaignReport(id: $c, from: $d, to: $d) { claims wins rows { region claims wins } } }";
const AWARDS: &str = "query($d: String!) { rewardAwards(day: $d) { awards { campaign region } } }";
const PASSWORD: &str = "correct horse battery";

/// The brand's tree: HQ → Guangdong (→ Shenzhen) and Shanghai, with the
/// same codes and boundaries as the codes plugin's sales regions.
fn tree() -> Value {
    json!([
        {"code": "HQ", "kind": "HEADQUARTERS", "name": "Acme China"},
        {"code": "CN-GD", "kind": "REGION", "name": "Guangdong", "parentCode": "HQ",
         "boundary": square(109.6, 20.2, 117.3, 25.5)},
        {"code": "CN-GD-SZ", "kind": "REGION", "name": "Shenzhen", "parentCode": "CN-GD",
         "boundary": square(113.7, 22.4, 114.6, 22.9)},
        {"code": "CN-SH", "kind": "REGION", "name": "Shanghai", "parentCode": "HQ",
         "boundary": square(120.8, 30.6, 122.2, 31.9)},
    ])
}

/// A brand with codes, rewards (granted `org-read`), its org tree and
/// `n` activated unit codes.
async fn brand(k: &Kernel, n: u32) -> (Brand, Vec<String>) {
    let b = k.brand("acme", json!({})).await;
    k.enable_rewards(&b, json!({}), &[]).await;
    let s = setup(k, &b, n).await;
    ok(&activate(k, &b, &s.units).await);
    ok(&k.gql(&b.owner, UPSERT, json!({"n": tree()})).await);
    let (_, csv) = k
        .download(
            &b.owner,
            "/files/codes/print-file",
            json!({"batch": s.units}),
        )
        .await;
    let codes = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect();
    (b, codes)
}

async fn node_id(k: &Kernel, b: &Brand, code: &str) -> String {
    let r = k.gql(&b.owner, NODE, json!({"c": code})).await;
    ok(&r)["orgNode"]["id"].as_str().unwrap().to_owned()
}

/// A key of `roles` limited to the node `scope` (an id).
async fn scoped_key(k: &Kernel, b: &Brand, roles: &[&str], scope: &str) -> String {
    let i = json!({"name": "regional", "roles": roles, "orgScope": scope});
    let r = k.gql(&b.owner, CREATE_KEY, json!({"i": i})).await;
    ok(&r)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates and activates a points campaign as `key` (`extra` overrides
/// fields); its id.
async fn running_as(k: &Kernel, key: &str, extra: Value) -> String {
    let input = campaign(json!({"all": []}), points(5), extra);
    let r = k.gql(key, CREATE, json!({"i": input})).await;
    let id = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
    let r = k.gql(key, STATUS, json!({"id": id, "s": "ACTIVE"})).await;
    assert_eq!(ok(&r)["setCampaignStatus"]["status"], "ACTIVE", "{r}");
    id
}

/// The campaign ids a credential lists.
async fn listed(k: &Kernel, key: &str) -> Vec<String> {
    let r = k.gql(key, CAMPAIGNS, json!({})).await;
    ok(&r)["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or_default()
}

on_both_backends! {
    async fn a_scoped_marketer_creates_and_sees_only_campaigns_of_its_node(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = brand(&k, 1).await;
        let (gd, sz) = (node_id(&k, &b, "CN-GD").await, node_id(&k, &b, "CN-GD-SZ").await);
        let gd_key = scoped_key(&k, &b, &["marketer"], &gd).await;
        // HQ runs one campaign for the whole tenant and one for Shanghai.
        let hq = running_as(&k, &b.owner, json!({})).await;
        let sh = running_as(&k, &b.owner, json!({"limitedTo": "CN-SH"})).await;
        let r = k.gql(&b.owner, CREATE, json!({"i": campaign(json!({"all": []}), points(1), json!({"limitedTo": "CN-XX"}))})).await;
        assert_eq!(code(&r), "BAD_USER_INPUT");
        assert!(message(&r).contains("limitedTo") && message(&r).contains("CN-XX"), "{r}");

        // Guangdong's marketer: its node by code, a node under it by id.
        let r = k.gql(&gd_key, CREATE, json!({"i": campaign(json!({"all": []}), points(1), json!({"limitedTo": "CN-GD"}))})).await;
        let mine = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
        let r = k.gql(&gd_key, CREATE, json!({"i": campaign(json!({"all": []}), points(1), json!({"limitedTo": sz}))})).await;
        let mine_sz = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
        let r = k.gql(&gd_key, GET, json!({"id": mine_sz})).await;
        assert_eq!(ok(&r)["campaign"]["limitedTo"]["code"], "CN-GD-SZ");
        // Another region, HQ above it, or no limit at all: FORBIDDEN, naming
        // the nodes, and nothing is stored.
        for (limit, says) in [(json!("CN-SH"), "CN-SH"), (json!("HQ"), "HQ"), (Value::Null, "limitedTo")] {
            let input = campaign(json!({"all": []}), points(1), json!({"limitedTo": limit}));
            let r = k.gql(&gd_key, CREATE, json!({"i": input})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{limit}: {r}");
            assert!(message(&r).contains(says) && message(&r).contains("CN-GD"), "{limit}: {r}");
        }
        let mut all = vec![hq.clone(), sh.clone(), mine.clone(), mine_sz.clone()];
        all.sort();
        let mut seen = listed(&k, &b.owner).await;
        seen.sort();
        assert_eq!(seen, all, "HQ sees every campaign; the refused ones were not stored");
        let mut own = vec![mine.clone(), mine_sz.clone()];
        own.sort();
        let mut seen = listed(&k, &gd_key).await;
        seen.sort();
        assert_eq!(seen, own, "the marketer sees only its node's campaigns");

        // HQ's and Shanghai's campaigns do not exist for it, and it cannot change them.
        for other in [&hq, &sh] {
            let r = k.gql(&gd_key, GET, json!({"id": other})).await;
            assert_eq!(ok(&r)["campaign"], Value::Null, "{other}");
            let r = k.gql(&gd_key, STATUS, json!({"id": other, "s": "PAUSED"})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{other}: {r}");
            assert!(message(&r).contains(other.as_str()) && message(&r).contains("CN-GD"), "{r}");
            let r = k.gql(&gd_key, UPDATE, json!({"id": other, "i": campaign(json!({"all": []}), points(1), json!({"limitedTo": "CN-GD"}))})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{other}: {r}");
            let r = k.gql(&gd_key, "mutation($c: String!) { addCoupons(campaign: $c, prize: \"pts\", codes: [\"X\"]) }", json!({"c": other})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{other}: {r}");
            let r = k.gql(&gd_key, "query($id: String!) { simulateCampaign(id: $id, claims: 10, seed: 1) { claims } }", json!({"id": other})).await;
            assert_eq!(code(&r), "NOT_FOUND", "{other}: {r}");
            let r = k.gql(&gd_key, REPORT, json!({"c": other, "d": chrono_today()})).await;
            assert_eq!(code(&r), "NOT_FOUND", "{other}: {r}");
        }
        let r = k.gql(&b.owner, GET, json!({"id": sh})).await;
        assert_eq!(ok(&r)["campaign"]["limitedTo"]["code"], "CN-SH", "HQ's campaigns are unchanged");
        // Its own: it may change it within its node, never move it out.
        let r = k.gql(&gd_key, UPDATE, json!({"id": mine, "i": campaign(json!({"all": []}), points(2), json!({"limitedTo": "CN-GD-SZ"}))})).await;
        assert_eq!(ok(&r)["updateCampaign"]["limitedTo"]["code"], "CN-GD-SZ");
        let r = k.gql(&gd_key, UPDATE, json!({"id": mine, "i": campaign(json!({"all": []}), points(2), json!({"limitedTo": "CN-SH"}))})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = k.gql(&gd_key, UPDATE, json!({"id": mine, "i": campaign(json!({"all": []}), points(2), json!({}))})).await;
        assert_eq!(code(&r), "FORBIDDEN", "nor make it the whole tenant's");
        // HQ may move any campaign anywhere, or lift its limit.
        let r = k.gql(&b.owner, UPDATE, json!({"id": mine, "i": campaign(json!({"all": []}), points(2), json!({"limitedTo": "CN-GD"}))})).await;
        assert_eq!(ok(&r)["updateCampaign"]["limitedTo"]["code"], "CN-GD");
        let r = k.gql(&b.owner, UPDATE, json!({"id": mine_sz, "i": campaign(json!({"all": []}), points(2), json!({}))})).await;
        assert_eq!(ok(&r)["updateCampaign"]["limitedTo"], Value::Null);
        assert_eq!(listed(&k, &gd_key).await, std::slice::from_ref(&mine), "an unlimited campaign is HQ's");
        // Person-level data is tenant-wide.
        let r = k.gql(&gd_key, "query { pointsWallet(personId: \"p\") { balance } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
        let r = k.gql(&gd_key, "query { rewardPayouts { awardId } }", json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN");
    }

    async fn limited_campaigns_judge_only_scans_of_their_node_and_report_to_it(kind) {
        let k = Kernel::start(kind).await;
        let (b, codes) = brand(&k, 6).await;
        let gd = node_id(&k, &b, "CN-GD").await;
        let gd_key = scoped_key(&k, &b, &["marketer"], &gd).await;
        let hq = running_as(&k, &b.owner, json!({})).await;
        let sh = running_as(&k, &b.owner, json!({"limitedTo": "CN-SH"})).await;
        let mine = running_as(&k, &gd_key, json!({"limitedTo": "CN-GD"})).await;

        // A Shenzhen scan (region CN-GD-SZ, under CN-GD): HQ's and Guangdong's
        // campaigns award; Shanghai's does not judge it.
        let s = scan(&k, &b, &codes[0], Some(SHENZHEN), Some("o-alice")).await;
        let r = claim(&k, &b, &s).await;
        let outcome = |r: &Value, c: &str| r["checks"].as_array().unwrap().iter()
            .find(|x| x["campaign"] == c).map(|x| x["outcome"].clone()).unwrap_or(Value::Null);
        assert_eq!((outcome(&r, &hq), outcome(&r, &mine), outcome(&r, &sh)),
            (json!("WON"), json!("WON"), json!("NOT_ELIGIBLE")), "{r:#}");
        // A Shanghai scan: the other way round.
        let s = scan(&k, &b, &codes[1], Some(SHANGHAI), Some("o-bob")).await;
        let r = claim(&k, &b, &s).await;
        assert_eq!((outcome(&r, &hq), outcome(&r, &mine), outcome(&r, &sh)),
            (json!("WON"), json!("NOT_ELIGIBLE"), json!("WON")), "{r:#}");
        // A scan without a region is in no node.
        let s = scan(&k, &b, &codes[2], None, Some("o-carol")).await;
        let r = claim(&k, &b, &s).await;
        assert_eq!((outcome(&r, &hq), outcome(&r, &mine), outcome(&r, &sh)),
            (json!("WON"), json!("NOT_ELIGIBLE"), json!("NOT_ELIGIBLE")), "{r:#}");

        // Its report counts only the scans it judged, in its own regions.
        let today = chrono_today();
        let r = k.gql(&gd_key, REPORT, json!({"c": mine, "d": today})).await;
        assert_eq!(ok(&r)["campaignReport"], json!({"claims": 1, "wins": 1,
            "rows": [{"region": "CN-GD-SZ", "claims": 1, "wins": 1}]}));
        // HQ reads every report; HQ's campaign judged all three scans.
        let r = k.gql(&b.owner, REPORT, json!({"c": hq, "d": today})).await;
        assert_eq!(ok(&r)["campaignReport"]["claims"], 3);
        let r = k.gql(&b.owner, REPORT, json!({"c": mine, "d": today})).await;
        assert_eq!(ok(&r)["campaignReport"]["claims"], 1);
        // The day's awards: the marketer's campaigns only; HQ all of them.
        let r = k.gql(&gd_key, AWARDS, json!({"d": today})).await;
        assert_eq!(ok(&r)["rewardAwards"]["awards"], json!([{"campaign": mine, "region": "CN-GD-SZ"}]));
        let r = k.gql(&b.owner, AWARDS, json!({"d": today})).await;
        assert_eq!(ok(&r)["rewardAwards"]["awards"].as_array().unwrap().len(), 5);
        // A dry run by the marketer shows only its campaigns.
        let s = scan(&k, &b, &codes[3], Some(SHENZHEN), Some("o-dan")).await;
        let r = k.gql(&gd_key, "query($s: String!) { previewClaim(scanId: $s) { outcome checks { campaign outcome } } }", json!({"s": s})).await;
        assert_eq!(ok(&r)["previewClaim"], json!({"outcome": "WON", "checks": [{"campaign": mine, "outcome": "WON"}]}));
        let r = k.gql(&b.owner, "query($s: String!) { previewClaim(scanId: $s) { checks { campaign } } }", json!({"s": s})).await;
        assert_eq!(ok(&r)["previewClaim"]["checks"].as_array().unwrap().len(), 3);
        // Moving Shenzhen under Shanghai in the tree moves its scans out of Guangdong.
        ok(&k.gql(&b.owner, UPSERT, json!({"n": [{"code": "CN-GD-SZ", "kind": "REGION", "name": "Shenzhen", "parentCode": "CN-SH"}]})).await);
        let s = scan(&k, &b, &codes[4], Some(SHENZHEN), Some("o-erin")).await;
        let r = claim(&k, &b, &s).await;
        assert_eq!((outcome(&r, &mine), outcome(&r, &sh)), (json!("NOT_ELIGIBLE"), json!("WON")), "{r:#}");
    }

    async fn the_kernel_refuses_a_scoped_credential_outside_its_node(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = brand(&k, 1).await;
        let gd = node_id(&k, &b, "CN-GD").await;
        let gd_admin = scoped_key(&k, &b, &["admin"], &gd).await;
        // Under its node the tree is its to write; under Shanghai it is not.
        let inside = json!([{"code": "S-GZ-1", "kind": "STORE", "name": "Tianhe", "parentCode": "CN-GD"}]);
        assert_eq!(ok(&k.gql(&gd_admin, UPSERT, json!({"n": inside})).await)["upsertOrgNodes"]["created"], 1);
        let outside = json!([{"code": "S-SH-1", "kind": "STORE", "name": "Pudong", "parentCode": "CN-SH"}]);
        let r = k.gql(&gd_admin, UPSERT, json!({"n": outside})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let r = k.gql(&gd_admin, UPSERT, json!({"n": [{"code": "CN-SH", "kind": "REGION", "name": "mine now"}]})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let r = k.gql(&gd_admin, NODE, json!({"c": "CN-SH"})).await;
        assert_eq!(ok(&r)["orgNode"], Value::Null, "another region does not exist for it");
        // Tenant-wide kernel objects and plugin administration are closed to it.
        for q in ["{ plugins { name } }", "{ person(id: \"x\") { id } }"] {
            let r = k.gql(&gd_admin, q, json!({})).await;
            assert_eq!(code(&r), "FORBIDDEN", "{q}: {r}");
        }
        // A scoped operator signs in and is limited in rewards like a key.
        let op = json!({"i": {"email": "gd@acme.example", "password": PASSWORD, "roles": ["marketer"], "orgScope": gd}});
        ok(&k.gql(&b.owner, "mutation($i: CreateOperatorInput!) { createOperator(input: $i) { id } }", op).await);
        let login = json!({"query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
            "variables": {"i": {"tenant": "acme", "email": "gd@acme.example", "password": PASSWORD}}});
        let r: Value = k.http.post(k.url("/graphql")).json(&login).send().await.unwrap().json().await.unwrap();
        let session = ok(&r)["login"]["token"].as_str().unwrap().to_owned();
        let r = k.gql(&session, CREATE, json!({"i": campaign(json!({"all": []}), points(1), json!({"limitedTo": "CN-SH"}))})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        let r = k.gql(&session, CREATE, json!({"i": campaign(json!({"all": []}), points(1), json!({"limitedTo": "CN-GD-SZ"}))})).await;
        let id = ok(&r)["createCampaign"]["id"].as_str().unwrap().to_owned();
        assert_eq!(listed(&k, &session).await, [id]);
    }

    async fn no_plugin_writes_the_kernels_master_data_beyond_its_caller(kind) {
        let k = Kernel::start(kind).await;
        let (b, _) = brand(&k, 1).await;
        let gd = node_id(&k, &b, "CN-GD").await;
        let define = "mutation($c: String!, $n: String!) { defineRegion(code: $c, name: $n) { code } }";
        let product = "mutation { createCodeProduct(sku: \"BEER-330\", name: \"Beer\", unit: \"can\") { sku } }";
        // A marketer of the whole tenant may use codes, but the kernel's tree
        // and catalogue are not its to write (it only reads them): codes'
        // deprecated writers cannot write them for it.
        let i = json!({"name": "marketing", "roles": ["marketer"]});
        let marketer = ok(&k.gql(&b.owner, CREATE_KEY, json!({"i": i})).await)["createApiKey"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = k.gql(&marketer, define, json!({"c": "CN-GD", "n": "renamed"})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        assert!(message(&r).contains("organisation tree"), "{r}");
        let r = k.gql(&marketer, product, json!({})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        // codes does not enforce org scopes: a credential limited to CN-GD
        // may not call it at all, even as an admin.
        let gd_admin = scoped_key(&k, &b, &["admin"], &gd).await;
        let r = k.gql(&gd_admin, define, json!({"c": "CN-SH", "n": "mine"})).await;
        assert_eq!(code(&r), "FORBIDDEN", "{r}");
        assert!(message(&r).contains("does not enforce org scopes"), "{r}");
        // Nothing changed; the owner still may.
        let r = k.gql(&b.owner, "query($c: String) { orgNode(code: $c) { name } }", json!({"c": "CN-GD"})).await;
        assert_eq!(ok(&r)["orgNode"]["name"], "Guangdong");
        let r = k.gql(&b.owner, "query($c: String) { orgNode(code: $c) { name } }", json!({"c": "CN-SH"})).await;
        assert_eq!(ok(&r)["orgNode"]["name"], "Shanghai");
        ok(&k.gql(&b.owner, product, json!({})).await);
    }
}
