//! Reports: per campaign — claims, wins by prize, spend against budget,
//! by day and region — and the day's awards for an ERP.
//!
//! Figures are counters (exact under any concurrency); a `groups` record
//! names each (campaign, day, region) that has any. A caller limited to an
//! org node sees only the campaigns it reaches and their awards.

use std::collections::HashMap;

use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::campaigns::{Campaign, load_reached, spend_key, stock_key};
use crate::claim::{Award, ClaimOutcome};
use crate::model::{page_limit, parse_day};
use crate::scans::Scan;
use crate::scope::Reach;

/// The (campaign, day, region) group a claim is counted in.
#[derive(Serialize, Deserialize)]
pub(crate) struct Group {
    campaign: String,
    day: String,
    region: String,
}

impl Group {
    /// The group of a claim of `scan` judged by `campaign`.
    pub(crate) fn of(campaign: &str, scan: &Scan) -> Group {
        Group {
            campaign: campaign.to_owned(),
            day: scan.at.get(..10).unwrap_or("").to_owned(),
            region: scan.region.as_deref().unwrap_or("-").to_owned(),
        }
    }

    /// Its key: of its record, and inside its counters' keys.
    fn key(&self) -> String {
        format!("{}|{}|{}", self.campaign, self.day, self.region)
    }

    /// The counter of its claims.
    pub(crate) fn claims_key(&self) -> String {
        format!("r:{}:claims", self.key())
    }

    /// The counter of its cash spent.
    pub(crate) fn spend_key(&self) -> String {
        format!("r:{}:spend", self.key())
    }
}

fn bump(key: &str, by: i64) -> Result<i64> {
    match counters::add(key, by, i64::MIN, i64::MAX, None)? {
        Outcome::Applied(n) | Outcome::LimitReached(n) => Ok(n),
    }
}

/// Counts a campaign's judgement of a claim in its group.
pub(crate) fn count_claim(g: Group, outcome: ClaimOutcome) -> Result<()> {
    let key = g.key();
    if bump(&g.claims_key(), 1)? == 1 {
        records::put("groups", &key, &g, Expect::Absent)?;
    }
    if outcome == ClaimOutcome::Won {
        bump(&format!("r:{key}:wins"), 1)?;
    }
    Ok(())
}

/// Adds an award's cash (its final amount) to its group's spend.
pub(crate) fn add_spend(key: &str, amount_cents: i64) -> Result<()> {
    bump(key, amount_cents).map(|_| ())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Row {
    day: String,
    region: String,
    claims: i64,
    wins: i64,
    spent_cents: i64,
}

#[derive(Serialize)]
pub(crate) struct PrizeWins {
    prize: String,
    wins: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    campaign: String,
    budget_cents: Option<i64>,
    spent_cents: i64,
    claims: i64,
    wins: i64,
    by_prize: Vec<PrizeWins>,
    rows: Vec<Row>,
}

#[derive(Deserialize)]
pub(crate) struct ReportInput {
    id: String,
    from: String,
    to: String,
}

pub(crate) fn campaign(ctx: &Context, i: ReportInput) -> Result<Report> {
    let (from, to) = (parse_day("from", &i.from)?, parse_day("to", &i.to)?);
    if to < from || (to - from).num_days() > 91 {
        return Err(Error::invalid("from..to: at most 92 days, from first"));
    }
    let c = load_reached(ctx, &i.id)?.data;
    let mut rows = Vec::new();
    let mut after = Some(format!("{}|{}", c.id, i.from));
    let prefix = format!("{}|", c.id);
    'pages: while let Some(a) = after.take() {
        let page = records::scan::<Group>("groups", Some(&a), 500)?;
        for g in page.records {
            if !g.key.starts_with(&prefix) || g.data.day > i.to {
                break 'pages;
            }
            let n = |what: &str| counters::get(&format!("r:{}:{what}", g.key));
            rows.push(Row {
                claims: n("claims")?,
                wins: n("wins")?,
                spent_cents: n("spend")?,
                day: g.data.day,
                region: g.data.region,
            });
        }
        after = page.next;
    }
    let mut by_prize = Vec::new();
    for p in &c.prizes {
        if p.is_win() {
            let wins = if p.stock.is_some() {
                counters::get(&stock_key(&c.id, &p.id))?
            } else {
                counters::get(&format!("c:{}:won:{}", c.id, p.id))?
            };
            by_prize.push(PrizeWins {
                prize: p.id.clone(),
                wins,
            });
        }
    }
    Ok(Report {
        claims: rows.iter().map(|r| r.claims).sum(),
        wins: rows.iter().map(|r| r.wins).sum(),
        spent_cents: counters::get(&spend_key(&c.id))?,
        budget_cents: c.budget_cents,
        campaign: c.id,
        by_prize,
        rows,
    })
}

#[derive(Deserialize)]
pub(crate) struct AwardsInput {
    day: String,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct AwardPage {
    awards: Vec<Award>,
    next: Option<String>,
}

/// A day's awards, oldest first, with each red packet's payout status; for
/// a caller limited to an org node, those of the campaigns it reaches (a
/// page may then hold fewer than `limit`; follow `next`).
pub(crate) fn awards(ctx: &Context, i: AwardsInput) -> Result<AwardPage> {
    parse_day("day", &i.day)?;
    let limit = page_limit(i.limit, 100, 1000)?;
    let page = records::query::<Award>("awards", "day", &json!(i.day), i.after.as_deref(), limit)?;
    let mut reach = Reach::of(ctx);
    let mut reached: HashMap<String, bool> = HashMap::new();
    let mut awards = Vec::new();
    for r in page.records {
        let mut a = r.data;
        if ctx.scope().is_some() {
            let ok = match reached.get(&a.campaign) {
                Some(&ok) => ok,
                None => {
                    let ok = match records::get::<Campaign>("campaigns", &a.campaign)? {
                        Some(c) => reach.covers(&c.data)?,
                        None => false,
                    };
                    reached.insert(a.campaign.clone(), ok);
                    ok
                }
            };
            if !ok {
                continue;
            }
        }
        if a.amount_cents.is_some()
            && let Some(p) = records::get::<serde_json::Value>("payouts", &a.id)?
        {
            a.payout_status = p
                .data
                .get("status")
                .and_then(|s| s.as_str())
                .map(str::to_owned);
        }
        awards.push(a);
    }
    Ok(AwardPage {
        awards,
        next: page.next,
    })
}
