//! Campaigns: schedule, status, priority and exclusion group, the
//! targeting rule and prize table (validated on save), coupon pools, the
//! org node a campaign is limited to and the callers that reach it
//! (`scope`).

use keel_rewards_core::prizes::{self, Prize, PrizeKind, Simulation};
use keel_rewards_core::rules::{Rule, micros};
use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect, Record};
use keel_sdk::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{now, rfc3339};
use crate::scope::{Limit, Reach, limit_for, require_writable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Status {
    Draft,
    Active,
    Paused,
    Ended,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Window {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Limits {
    pub per_person_per_day: Option<i64>,
    pub per_person_total: Option<i64>,
}

/// A campaign as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Campaign {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub starts_at: String,
    pub ends_at: String,
    pub starts_micros: i64,
    pub ends_micros: i64,
    pub windows: Vec<Window>,
    pub utc_offset_minutes: i32,
    pub priority: i64,
    pub group: Option<String>,
    pub rule: Value,
    pub prizes: Vec<Prize>,
    pub budget_cents: Option<i64>,
    pub limits: Limits,
    /// The org node the campaign is limited to: it judges only scans in
    /// that node's regions, and only callers at or above it reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_to: Option<Limit>,
    /// Points prizes are multiplied by the winner's CDP tier multiplier.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tier_multiplier: bool,
    /// What it judges: scans, or members reaching a tier.
    #[serde(default, skip_serializing_if = "Trigger::is_scan")]
    pub trigger: Trigger,
    pub created_at: String,
}

/// What a campaign judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Trigger {
    /// Each claim of a genuine scan.
    #[default]
    Scan,
    /// A member moving up the CDP's tier ladder (`tier.changed`, up): once
    /// per person per campaign, as its rule (on the tier the CDP holds)
    /// allows — e.g. a coupon for reaching gold.
    TierUp,
}

impl Trigger {
    fn is_scan(&self) -> bool {
        *self == Trigger::Scan
    }
}

impl Campaign {
    pub fn rule(&self) -> Result<Rule> {
        Rule::parse_stored(&self.rule)
            .map_err(|e| Error::Internal(format!("campaign {}: {e}", self.id)))
    }

    /// Active, within its dates and (if any) one of its daily windows.
    pub fn open_at(&self, at_micros: i64) -> bool {
        if self.status != Status::Active
            || at_micros < self.starts_micros
            || at_micros >= self.ends_micros
        {
            return false;
        }
        self.windows.is_empty()
            || self.windows.iter().any(|w| {
                Rule::Hours {
                    from: w.from.clone(),
                    to: w.to.clone(),
                    utc_offset_minutes: self.utc_offset_minutes,
                }
                .eval(&keel_rewards_core::rules::Facts {
                    at_micros,
                    ..Default::default()
                })
            })
    }
}

/// Counter keys of a campaign.
pub(crate) fn spend_key(id: &str) -> String {
    format!("c:{id}:spend")
}
pub(crate) fn stock_key(id: &str, prize: &str) -> String {
    format!("c:{id}:stock:{prize}")
}
pub(crate) fn pool_key(id: &str, prize: &str) -> String {
    format!("c:{id}:pool:{prize}")
}

/// GraphQL `Campaign`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CampaignOut {
    id: String,
    name: String,
    status: Status,
    starts_at: String,
    ends_at: String,
    windows: Vec<Window>,
    utc_offset_minutes: i32,
    priority: i64,
    group: Option<String>,
    rule: Value,
    prizes: Value,
    budget_cents: Option<i64>,
    spent_cents: i64,
    limits: Limits,
    limited_to: Option<Limit>,
    tier_multiplier: bool,
    trigger: Trigger,
    created_at: String,
}

pub(crate) fn out(c: Campaign) -> Result<CampaignOut> {
    Ok(CampaignOut {
        spent_cents: counters::get(&spend_key(&c.id))?,
        prizes: serde_json::to_value(&c.prizes).map_err(|e| Error::Internal(e.to_string()))?,
        id: c.id,
        name: c.name,
        status: c.status,
        starts_at: c.starts_at,
        ends_at: c.ends_at,
        windows: c.windows,
        utc_offset_minutes: c.utc_offset_minutes,
        priority: c.priority,
        group: c.group,
        rule: c.rule,
        budget_cents: c.budget_cents,
        limits: c.limits,
        limited_to: c.limited_to,
        tier_multiplier: c.tier_multiplier,
        trigger: c.trigger,
        created_at: c.created_at,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CampaignInput {
    name: String,
    starts_at: String,
    ends_at: String,
    windows: Option<Vec<Window>>,
    utc_offset_minutes: Option<i64>,
    priority: Option<i64>,
    group: Option<String>,
    rule: Value,
    prizes: Value,
    budget_cents: Option<i64>,
    limits: Option<Limits>,
    /// An org node's code or id.
    limited_to: Option<String>,
    tier_multiplier: Option<bool>,
    trigger: Option<Trigger>,
}

/// GraphQL's JSON scalar may arrive as text.
fn json_arg(field: &str, v: Value) -> Result<Value> {
    match v {
        Value::String(s) => {
            serde_json::from_str(&s).map_err(|e| Error::invalid(format!("{field}: not JSON: {e}")))
        }
        v => Ok(v),
    }
}

/// Checks an input and builds the campaign it describes.
fn build(id: String, status: Status, created_at: String, i: CampaignInput) -> Result<Campaign> {
    let name = i.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name: 1-100 characters"));
    }
    let (Some(starts), Some(ends)) = (micros(&i.starts_at), micros(&i.ends_at)) else {
        return Err(Error::invalid("startsAt, endsAt: RFC 3339 times"));
    };
    if starts >= ends {
        return Err(Error::invalid("endsAt: must be after startsAt"));
    }
    let offset = i.utc_offset_minutes.unwrap_or(480);
    if offset.abs() > 14 * 60 {
        return Err(Error::invalid("utcOffsetMinutes: within ±840"));
    }
    let windows = i.windows.unwrap_or_default();
    for (n, w) in windows.iter().enumerate() {
        Rule::parse(&serde_json::json!({"hours": {"from": w.from, "to": w.to}})).map_err(|e| {
            Error::invalid(format!(
                "windows[{n}]: {}",
                e.trim_start_matches("rule.hours: ")
            ))
        })?;
    }
    let priority = i.priority.unwrap_or(0);
    if !(-1000..=1000).contains(&priority) {
        return Err(Error::invalid("priority: -1000..=1000"));
    }
    if let Some(g) = &i.group {
        let ok = (1..=40).contains(&g.len())
            && g.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Error::invalid("group: 1-40 characters of a-z, 0-9 and '-'"));
        }
    }
    let rule = json_arg("rule", i.rule)?;
    let parsed = Rule::parse(&rule).map_err(Error::invalid)?;
    let tier_multiplier = i.tier_multiplier.unwrap_or(false);
    let trigger = i.trigger.unwrap_or_default();
    if trigger == Trigger::TierUp && !parsed.reads_tier() {
        return Err(Error::invalid(
            "rule: a TIER_UP campaign names the tiers it rewards reaching, e.g. {\"tier\": [\"gold\"]}",
        ));
    }
    if parsed.member_needs(&mut Vec::new()) || tier_multiplier {
        crate::members::check_available()?;
    }
    let prizes: Vec<Prize> = serde_json::from_value(json_arg("prizes", i.prizes)?)
        .map_err(|e| Error::invalid(format!("prizes: {e}")))?;
    if let Some(b) = i.budget_cents
        && b < 1
    {
        return Err(Error::invalid(
            "budgetCents: at least 1 fen, or leave it out",
        ));
    }
    prizes::validate(&prizes, i.budget_cents).map_err(Error::invalid)?;
    let limits = i.limits.unwrap_or_default();
    for (field, v) in [
        ("perPersonPerDay", limits.per_person_per_day),
        ("perPersonTotal", limits.per_person_total),
    ] {
        if v.is_some_and(|v| v < 1) {
            return Err(Error::invalid(format!(
                "limits.{field}: at least 1, or leave it out"
            )));
        }
    }
    // Whom a claim is for comes only from a verified consumer session: a
    // brand without consumer sign-in has only anonymous claims, which no
    // per-person limit can count and no wallet can receive.
    let per_person = limits.per_person_per_day.is_some()
        || limits.per_person_total.is_some()
        || prizes.iter().any(|p| {
            matches!(
                p.kind,
                PrizeKind::Points { .. } | PrizeKind::RedPacket { .. }
            )
        });
    // A tier campaign's person is the CDP's member, not a consumer's claim.
    if per_person && trigger == Trigger::Scan && keel_sdk::config::consumer_sign_in()?.is_none() {
        return Err(Error::invalid(
            "this brand has no consumer sign-in (a WeChat app, set with setWechatApp), so every \
             public claim is anonymous: per-person limits and prizes paid to a person (points, \
             red packets) need it; set up sign-in, or use coupons and thanks without per-person limits",
        ));
    }
    Ok(Campaign {
        id,
        name: name.to_owned(),
        status,
        starts_at: i.starts_at,
        ends_at: i.ends_at,
        starts_micros: starts,
        ends_micros: ends,
        windows,
        utc_offset_minutes: offset as i32,
        priority,
        group: i.group,
        rule,
        prizes,
        budget_cents: i.budget_cents,
        limits,
        limited_to: None,
        tier_multiplier,
        trigger,
        created_at,
    })
}

/// A TIER_UP campaign judges members, who have no scan region: one
/// limited to an org node would never award.
fn refuse_limited_tier_up(c: &Campaign) -> Result<()> {
    if c.trigger == Trigger::TierUp && c.limited_to.is_some() {
        return Err(Error::invalid(
            "limitedTo: a TIER_UP campaign rewards members wherever they are; it is not limited to an org node",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct CreateInput {
    input: CampaignInput,
}

/// Saves a new draft. A caller limited to an org node must limit it to
/// that node or one under it; the whole tenant's caller may limit it too.
pub(crate) fn create(ctx: &Context, mut i: CreateInput) -> Result<CampaignOut> {
    let limited_to = limit_for(ctx, i.input.limited_to.take().as_deref())?;
    let n = match counters::add("campaign-seq", 1, 0, i64::MAX, None)? {
        Outcome::Applied(n) | Outcome::LimitReached(n) => n,
    };
    let mut c = build(format!("C{n}"), Status::Draft, rfc3339(now()), i.input)?;
    c.limited_to = limited_to;
    refuse_limited_tier_up(&c)?;
    records::put("campaigns", &c.id, &c, Expect::Absent)?;
    out(c)
}

pub(crate) fn load(id: &str) -> Result<Record<Campaign>> {
    records::get::<Campaign>("campaigns", id)?
        .ok_or_else(|| Error::NotFound(format!("no campaign {id}")))
}

/// A campaign the caller reaches: one outside a scoped caller's node does
/// not exist for it.
pub(crate) fn load_reached(ctx: &Context, id: &str) -> Result<Record<Campaign>> {
    let c = load(id)?;
    if !Reach::of(ctx).covers(&c.data)? {
        return Err(Error::NotFound(format!("no campaign {id}")));
    }
    Ok(c)
}

/// A campaign the caller may change (`FORBIDDEN` outside its node).
fn load_writable(ctx: &Context, id: &str) -> Result<Record<Campaign>> {
    let c = load(id)?;
    require_writable(ctx, &c.data)?;
    Ok(c)
}

fn save(c: &Record<Campaign>) -> Result<()> {
    match records::put("campaigns", &c.key, &c.data, Expect::Version(c.version)) {
        Err(Error::Conflict(_)) => Err(Error::Conflict(format!(
            "campaign {} changed meanwhile; retry",
            c.key
        ))),
        r => r.map(|_| ()),
    }
}

#[derive(Deserialize)]
pub(crate) struct UpdateInput {
    id: String,
    input: CampaignInput,
}

/// Changes a draft or paused campaign; a budget never drops below what
/// is spent. The input replaces the campaign, `limitedTo` included, but
/// its trigger is kept unless given (a paused TIER_UP campaign left to
/// default would start judging every scan).
pub(crate) fn update(ctx: &Context, mut i: UpdateInput) -> Result<CampaignOut> {
    let mut stored = load_writable(ctx, &i.id)?;
    i.input.trigger = i.input.trigger.or(Some(stored.data.trigger));
    if !matches!(stored.data.status, Status::Draft | Status::Paused) {
        return Err(Error::refused(
            "CAMPAIGN_LOCKED",
            format!("pause campaign {} before changing it", i.id),
        ));
    }
    let limited_to = limit_for(ctx, i.input.limited_to.take().as_deref())?;
    let mut c = build(
        i.id.clone(),
        stored.data.status,
        stored.data.created_at.clone(),
        i.input,
    )?;
    c.limited_to = limited_to;
    refuse_limited_tier_up(&c)?;
    let spent = counters::get(&spend_key(&c.id))?;
    if c.budget_cents.is_some_and(|b| b < spent) {
        return Err(Error::invalid(format!(
            "budgetCents: {spent} fen are already spent"
        )));
    }
    for p in &stored.data.prizes {
        let won = counters::get(&stock_key(&c.id, &p.id))?;
        if let Some(now) = c.prizes.iter().find(|n| n.id == p.id)
            && now.stock.is_some_and(|s| s < won)
        {
            return Err(Error::invalid(format!(
                "prizes: {} has already been won {won} times",
                p.id
            )));
        }
    }
    stored.data = c;
    save(&stored)?;
    out(stored.data)
}

#[derive(Deserialize)]
pub(crate) struct StatusInput {
    id: String,
    status: Status,
}

pub(crate) fn set_status(ctx: &Context, i: StatusInput) -> Result<CampaignOut> {
    let mut c = load_writable(ctx, &i.id)?;
    use Status::*;
    let allowed = matches!(
        (c.data.status, i.status),
        (Draft, Active) | (Active, Paused) | (Paused, Active) | (Draft | Active | Paused, Ended)
    );
    if !allowed {
        return Err(Error::refused(
            "INVALID_TRANSITION",
            format!(
                "campaign {} is {:?} and cannot become {:?}",
                i.id, c.data.status, i.status
            ),
        ));
    }
    if i.status == Active {
        for p in &c.data.prizes {
            if matches!(p.kind, PrizeKind::Coupon)
                && counters::get(&pool_key(&c.data.id, &p.id))? < 1
            {
                return Err(Error::refused(
                    "EMPTY_COUPON_POOL",
                    format!(
                        "prize {} has no coupons: add them with addCoupons first",
                        p.id
                    ),
                ));
            }
        }
    }
    c.data.status = i.status;
    save(&c)?;
    out(c.data)
}

/// The campaigns the caller reaches.
pub(crate) fn list(ctx: &Context, _i: Value) -> Result<Vec<CampaignOut>> {
    let mut reach = Reach::of(ctx);
    let mut list = Vec::new();
    for c in all()? {
        if reach.covers(&c)? {
            list.push(out(c)?);
        }
    }
    Ok(list)
}

/// Every campaign (a brand runs dozens, not thousands).
pub(crate) fn all() -> Result<Vec<Campaign>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = records::scan::<Campaign>("campaigns", after.as_deref(), 1000)?;
        out.extend(page.records.into_iter().map(|r| r.data));
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct IdInput {
    id: String,
}

/// A campaign the caller reaches, or null.
pub(crate) fn get(ctx: &Context, i: IdInput) -> Result<Option<CampaignOut>> {
    match records::get::<Campaign>("campaigns", &i.id)? {
        Some(r) if Reach::of(ctx).covers(&r.data)? => out(r.data).map(Some),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
pub(crate) struct CouponsInput {
    campaign: String,
    prize: String,
    codes: Vec<String>,
}

/// Appends codes to a coupon prize's pool (at most its stock in all).
pub(crate) fn add_coupons(ctx: &Context, i: CouponsInput) -> Result<i64> {
    let c = load_writable(ctx, &i.campaign)?.data;
    let Some(prize) = c.prizes.iter().find(|p| p.id == i.prize) else {
        return Err(Error::NotFound(format!(
            "campaign {} has no prize {}",
            c.id, i.prize
        )));
    };
    if !matches!(prize.kind, PrizeKind::Coupon) {
        return Err(Error::invalid(format!(
            "prize {} is not a coupon prize",
            prize.id
        )));
    }
    if i.codes.is_empty() || i.codes.len() > 10_000 {
        return Err(Error::invalid("codes: 1-10000 per call"));
    }
    if let Some((n, _)) = i
        .codes
        .iter()
        .enumerate()
        .find(|(_, c)| c.trim().is_empty() || c.len() > 200)
    {
        return Err(Error::invalid(format!("codes[{n}]: 1-200 characters")));
    }
    let stock = prize.stock.unwrap_or(0);
    let start = match counters::add(
        &pool_key(&c.id, &prize.id),
        i.codes.len() as i64,
        0,
        stock,
        None,
    )? {
        Outcome::Applied(n) => n - i.codes.len() as i64,
        Outcome::LimitReached(n) => {
            return Err(Error::invalid(format!(
                "codes: the pool holds {n} of its stock of {stock}; {} more do not fit",
                i.codes.len()
            )));
        }
    };
    let items: Vec<(String, Value)> = i
        .codes
        .iter()
        .enumerate()
        .map(|(k, code)| {
            (
                coupon_key(&c.id, &prize.id, start + k as i64 + 1),
                serde_json::json!({"code": code}),
            )
        })
        .collect();
    records::insert_batch("coupons", &items)?;
    Ok(start + i.codes.len() as i64)
}

pub(crate) fn coupon_key(campaign: &str, prize: &str, n: i64) -> String {
    format!("{campaign}:{prize}:{n:08}")
}

#[derive(Deserialize)]
pub(crate) struct SimulateInput {
    id: String,
    claims: i64,
    seed: Option<i64>,
}

/// What `claims` draws would cost, from the stock and budget left now.
pub(crate) fn simulate(ctx: &Context, i: SimulateInput) -> Result<Simulation> {
    if !(1..=1_000_000).contains(&i.claims) {
        return Err(Error::invalid("claims: 1..=1000000"));
    }
    let c = load_reached(ctx, &i.id)?.data;
    let spent = counters::get(&spend_key(&c.id))?;
    let mut prizes = c.prizes.clone();
    for p in &mut prizes {
        if let Some(s) = p.stock.as_mut() {
            *s -= counters::get(&stock_key(&c.id, &p.id))?;
        }
    }
    // Prizes out of stock can still be drawn: a draw of one wins nothing.
    for p in &mut prizes {
        if p.stock.is_some_and(|s| s < 1) {
            p.stock = Some(0);
        }
    }
    let seed = match i.seed {
        Some(s) => s as u64,
        None => crate::model::random_u64()?,
    };
    Ok(prizes::simulate(
        &prizes,
        c.budget_cents.map(|b| b - spent),
        i.claims as u64,
        seed,
    ))
}
