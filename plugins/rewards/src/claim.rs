//! Claiming a scan's rewards: once per scan (a retry returns the first
//! result), judged against every open campaign in priority order, each
//! limit reserved through the kernel's counters so that no budget, stock
//! or per-person limit is ever exceeded, whatever the concurrency.
//!
//! A campaign's reservations are made one after another; when one is
//! refused, those made before it are given back in the same transaction,
//! so a claim never leaves a partial award.
//!
//! A replayed claim returns the first result, but a prize's secret (a won
//! coupon code) only to the person who won it: holding a scan id is not
//! being its winner.
//!
//! A campaign limited to an org node judges only scans in that node's
//! regions (`scope::ScanRegion`). A claim judges every campaign whoever
//! calls it (it happens once per scan); a dry run by a caller limited to
//! an org node judges only the campaigns it reaches.

use keel_rewards_core::prizes::{self, PrizeKind};
use keel_rewards_core::rules::Facts;
use keel_sdk::counters::{self, Outcome};
use keel_sdk::records::{self, Expect};
use keel_sdk::{Context, Error, Result, persons};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::campaigns::{self, Campaign, Trigger, coupon_key, spend_key, stock_key};
use crate::model::{Identifier, day, now, random_u64, rfc3339, time_key};
use crate::scans::{Scan, count_person_scan};
use crate::scope::{Reach, ScanRegion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ClaimOutcome {
    Won,
    NoPrize,
    ScanNotFound,
    NotGenuine,
    NoCampaign,
    NotEligible,
    CodeAlreadyWon,
    PersonRequired,
    PersonLimit,
    SoldOut,
    BudgetExhausted,
    Blocked,
}

impl ClaimOutcome {
    fn message(self) -> &'static str {
        use ClaimOutcome::*;
        match self {
            Won => "Congratulations, you won!",
            NoPrize => "No prize this time. Thank you for taking part!",
            ScanNotFound => "We do not know this scan. Scan the code on the pack again.",
            NotGenuine => "Only genuine, activated products take part.",
            NoCampaign => "There is no campaign running right now.",
            NotEligible => "This product or place does not take part in the current campaigns.",
            CodeAlreadyWon => "This code has already won its prize.",
            PersonRequired => "Sign in to claim this prize.",
            PersonLimit => "You have reached the most prizes you can win for now.",
            SoldOut => "This prize is all gone.",
            BudgetExhausted => "The campaign's prizes are all given out.",
            Blocked => "This account cannot take part in the campaigns.",
        }
    }

    /// How telling a campaign's outcome is, when none awarded: the claim
    /// reports the most telling one.
    fn rank(self) -> u8 {
        use ClaimOutcome::*;
        match self {
            Won => 9,
            NoPrize => 8,
            PersonLimit | SoldOut | BudgetExhausted | CodeAlreadyWon | PersonRequired | Blocked => {
                7
            }
            NotEligible => 2,
            _ => 1,
        }
    }
}

/// GraphQL `RewardAward`, also the stored award.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Award {
    pub id: String,
    pub campaign: String,
    pub prize: String,
    pub prize_name: String,
    pub kind: String,
    pub points: Option<i64>,
    pub amount_cents: Option<i64>,
    pub coupon: Option<String>,
    pub scan_id: String,
    pub code_id: String,
    pub person_id: Option<String>,
    pub region: Option<String>,
    pub at: String,
    pub payout_status: Option<String>,
    /// Indexed: the UTC day, the person, the campaign.
    pub day: String,
    pub person: Option<String>,
}

impl Award {
    /// Clears what only the winner may see: the coupon code.
    fn hide_secrets(&mut self) {
        self.coupon = None;
    }

    fn has_secrets(&self) -> bool {
        self.coupon.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Check {
    campaign: String,
    outcome: ClaimOutcome,
    message: String,
}

/// GraphQL `ClaimResult`, also what a claim record keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimResult {
    outcome: ClaimOutcome,
    message: String,
    scan_id: String,
    awards: Vec<Award>,
    checks: Vec<Check>,
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimInput {
    scan_id: String,
    identifiers: Option<Vec<Identifier>>,
}

/// The claim record: `pending` while its transaction runs.
#[derive(Serialize, Deserialize)]
struct Stored {
    result: Option<ClaimResult>,
}

fn bare(scan_id: &str, outcome: ClaimOutcome, dry_run: bool) -> ClaimResult {
    ClaimResult {
        outcome,
        message: outcome.message().into(),
        scan_id: scan_id.to_owned(),
        awards: Vec::new(),
        checks: Vec::new(),
        dry_run,
    }
}

fn check_scan_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 100 {
        return Err(Error::invalid("scanId: 1-100 characters"));
    }
    Ok(())
}

pub(crate) fn claim(ctx: &Context, input: ClaimInput) -> Result<ClaimResult> {
    check_scan_id(&input.scan_id)?;
    let ids = input.identifiers.as_deref();
    if let Some(c) = records::get::<Stored>("claims", &input.scan_id)?
        && let Some(r) = c.data.result
    {
        return replayed(ctx, ids, r);
    }
    let Some(scan) = records::get::<Scan>("scans", &input.scan_id)?.map(|r| r.data) else {
        return Ok(bare(&input.scan_id, ClaimOutcome::ScanNotFound, false));
    };
    // The person is read before the first write: until then the call
    // holds no write transaction (on SQLite, not the one writer). The
    // campaigns are read after it, so that a campaign paused or cut down
    // at the same time is judged as it is when the claim reserves.
    let known = match scan.person {
        Some(_) => Some(person_of(ctx, &scan, ids, false)?),
        None => None,
    };
    // The claim record is the first write: a concurrent claim of the same scan waits
    // here for this one to commit, then returns its result.
    let pending = match records::put(
        "claims",
        &input.scan_id,
        &Stored { result: None },
        Expect::Absent,
    ) {
        Ok(p) => p,
        Err(Error::Conflict(_)) => {
            return match records::get::<Stored>("claims", &input.scan_id)?
                .and_then(|c| c.data.result)
            {
                Some(r) => replayed(ctx, ids, r),
                None => Err(Error::Conflict("this scan is being claimed; retry".into())),
            };
        }
        Err(e) => return Err(e),
    };
    let person = match known {
        Some(p) => p,
        None => person_of(ctx, &scan, ids, false)?,
    };
    // The events of the awards go out after the claim's last write
    // (`emits`): the tenant's event head is locked last and briefly.
    crate::emits::held(|| {
        let listed = campaigns::all()?;
        let result = judge(
            &scan,
            person,
            listed,
            false,
            &mut Reach::everything(),
            Trigger::Scan,
        )?;
        let done = Stored {
            result: Some(result.clone()),
        };
        records::put(
            "claims",
            &input.scan_id,
            &done,
            Expect::Version(pending.version),
        )?;
        Ok(result)
    })
}

/// The dry run: what a claim would give now, writing nothing.
pub(crate) fn preview(ctx: &Context, input: ClaimInput) -> Result<ClaimResult> {
    check_scan_id(&input.scan_id)?;
    let Some(scan) = records::get::<Scan>("scans", &input.scan_id)?.map(|r| r.data) else {
        return Ok(bare(&input.scan_id, ClaimOutcome::ScanNotFound, true));
    };
    if let Some(c) = records::get::<Stored>("claims", &input.scan_id)?
        && let Some(mut r) = c.data.result
    {
        r.dry_run = true;
        only_reached(ctx, &mut r)?;
        return Ok(r);
    }
    let person = person_of(ctx, &scan, input.identifiers.as_deref(), true)?;
    judge(
        &scan,
        person,
        campaigns::all()?,
        true,
        &mut Reach::of(ctx),
        Trigger::Scan,
    )
}

/// Judges the TIER_UP campaigns for `person`, who just moved up the
/// CDP's ladder (`tier.changed` event `event`): the occasion is a scan of
/// its own (`tier:{event}`, of the "code" `tier:{person}`, so each campaign
/// awards a person once), recorded as a claim so that a redelivered event
/// judges nothing twice. Eligibility is the campaign's rule on the tier
/// the CDP holds now (`memberFacts`), never the event's payload.
pub(crate) fn judge_tier_up(event: &str, person: &persons::Person) -> Result<()> {
    let scan_id = format!("tier:{event}");
    let pending = match records::put("claims", &scan_id, &Stored { result: None }, Expect::Absent) {
        Ok(p) => p,
        Err(Error::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let at = now();
    let scan = Scan {
        scan_id: scan_id.clone(),
        code_id: format!("tier:{}", person.id),
        batch: String::new(),
        serial: 0,
        sku: String::new(),
        lot: String::new(),
        verdict: "GENUINE".into(),
        first_scan: false,
        region: None,
        location: None,
        person: Some(person.id.clone()),
        person_scan_n: None,
        at: rfc3339(at),
        at_micros: at.timestamp_micros(),
    };
    let claimant = Claimant {
        id: person.id.clone(),
        profile: serde_json::Value::Object(person.attributes.clone()),
        scan_n: None,
    };
    crate::emits::held(|| {
        let result = judge(
            &scan,
            Some(claimant),
            campaigns::all()?,
            false,
            &mut Reach::everything(),
            Trigger::TierUp,
        )?;
        records::put(
            "claims",
            &scan_id,
            &Stored {
                result: Some(result),
            },
            Expect::Version(pending.version),
        )?;
        Ok(())
    })
}

/// A claim's result as a caller limited to an org node may see it: the
/// checks and awards of the campaigns it reaches only.
fn only_reached(ctx: &Context, r: &mut ClaimResult) -> Result<()> {
    if ctx.scope().is_none() || r.checks.is_empty() {
        return Ok(());
    }
    let mut reach = Reach::of(ctx);
    let mut reached = Vec::new();
    for c in campaigns::all()? {
        if reach.covers(&c)? {
            reached.push(c.id);
        }
    }
    r.checks.retain(|c| reached.contains(&c.campaign));
    r.awards.retain(|a| reached.contains(&a.campaign));
    r.outcome = if r.checks.is_empty() {
        ClaimOutcome::NoCampaign
    } else {
        overall(&r.checks)
    };
    r.message = r.outcome.message().into();
    Ok(())
}

/// The most telling of the campaigns' outcomes.
fn overall(checks: &[Check]) -> ClaimOutcome {
    checks
        .iter()
        .map(|c| c.outcome)
        .max_by_key(|o| o.rank())
        .unwrap_or(ClaimOutcome::NotEligible)
}

/// The person and profile a claim is judged for: the scan's, or the one
/// the claim's identifiers name (resolved through One ID; a dry run only
/// looks them up by the scan).
struct Claimant {
    id: String,
    profile: serde_json::Value,
    scan_n: Option<u64>,
}

fn person_of(
    ctx: &Context,
    scan: &Scan,
    ids: Option<&[Identifier]>,
    dry: bool,
) -> Result<Option<Claimant>> {
    let (person, fresh) = match &scan.person {
        Some(p) => (persons::get(p)?, false),
        None if !dry => (caller_person(ctx, ids)?, true),
        None => (None, false),
    };
    let Some(p) = person else { return Ok(None) };
    let scan_n = match (fresh, scan.person_scan_n) {
        (false, n) => n,
        (true, _) => Some(count_person_scan(&p.id, &scan.scan_id)?),
    };
    Ok(Some(Claimant {
        id: p.id,
        profile: serde_json::Value::Object(p.attributes),
        scan_n,
    }))
}

/// The person making this call: the signed-in consumer of a public
/// claim, or the person a trusted caller's `identifiers` name (see
/// `persons::acting_for`); a public claim cannot name its person.
fn caller_person(ctx: &Context, ids: Option<&[Identifier]>) -> Result<Option<persons::Person>> {
    let pairs: Vec<(&str, &str)> = ids
        .unwrap_or_default()
        .iter()
        .map(|i| (i.kind.as_str(), i.value.as_str()))
        .collect();
    persons::acting_for(ctx, &pairs)
}

/// A claim's first result, given again: a prize's secret stays in an
/// award only when the caller is the award's person.
fn replayed(ctx: &Context, ids: Option<&[Identifier]>, mut r: ClaimResult) -> Result<ClaimResult> {
    if !r.awards.iter().any(Award::has_secrets) {
        return Ok(r);
    }
    let caller = caller_person(ctx, ids)?.map(|p| p.id);
    for a in r.awards.iter_mut().filter(|a| a.has_secrets()) {
        if !is_winner(caller.as_deref(), a.person_id.as_deref())? {
            a.hide_secrets();
        }
    }
    Ok(r)
}

/// True when the caller is the award's person (or the person it was
/// merged into). An award without a person has no one to show it to.
fn is_winner(caller: Option<&str>, winner: Option<&str>) -> Result<bool> {
    let (Some(caller), Some(winner)) = (caller, winner) else {
        return Ok(false);
    };
    if caller == winner {
        return Ok(true);
    }
    Ok(persons::get(winner)?.is_some_and(|p| p.id == caller))
}

/// Counter additions of one campaign, given back if a later one fails.
struct Reservations {
    dry: bool,
    made: Vec<(String, i64)>,
}

impl Reservations {
    /// Adds `delta` to `key` if it stays at most `max`; false if not.
    fn take(&mut self, key: &str, delta: i64, max: i64) -> Result<bool> {
        Ok(self.take_value(key, delta, max)?.is_some())
    }

    /// [`Reservations::take`], with the counter's new value (a dry run's
    /// is what it would be).
    fn take_value(&mut self, key: &str, delta: i64, max: i64) -> Result<Option<i64>> {
        if self.dry {
            let v = counters::get(key)? + delta;
            return Ok((v <= max).then_some(v));
        }
        match counters::add(key, delta, i64::MIN, max, None)? {
            Outcome::Applied(v) => {
                self.made.push((key.to_owned(), delta));
                Ok(Some(v))
            }
            Outcome::LimitReached(_) => Ok(None),
        }
    }

    fn give_back(&mut self) -> Result<()> {
        for (key, delta) in self.made.drain(..).rev() {
            counters::add(&key, -delta, i64::MIN, i64::MAX, None)?;
        }
        Ok(())
    }
}

/// Judges a scan against the open campaigns `reach` covers.
fn judge(
    scan: &Scan,
    person: Option<Claimant>,
    listed: Vec<Campaign>,
    dry: bool,
    reach: &mut Reach,
    trigger: Trigger,
) -> Result<ClaimResult> {
    if !scan.verdict.starts_with("GENUINE") {
        return Ok(bare(&scan.scan_id, ClaimOutcome::NotGenuine, dry));
    }
    let at = now();
    let mut open: Vec<Campaign> = Vec::new();
    for c in listed {
        if c.trigger == trigger && c.open_at(at.timestamp_micros()) && reach.covers(&c)? {
            open.push(c);
        }
    }
    if open.is_empty() {
        return Ok(bare(&scan.scan_id, ClaimOutcome::NoCampaign, dry));
    }
    open.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    // Member facts only when an open campaign reads them.
    let mut segments = Vec::new();
    let honour_blocklist = crate::model::config()?.honour_blocklist == Some(true);
    let mut wanted = honour_blocklist;
    let rules = open
        .iter()
        .map(Campaign::rule)
        .collect::<Result<Vec<_>>>()?;
    for (c, rule) in open.iter().zip(&rules) {
        wanted |= rule.member_needs(&mut segments) || c.tier_multiplier;
    }
    let member = match (&person, wanted) {
        (Some(p), true) => crate::members::ask(&p.id, &segments)?,
        _ => None,
    };
    let multiplier = member.as_ref().map_or(100, |a| a.multiplier);
    let blocked = honour_blocklist && member.as_ref().is_some_and(|a| a.blocked);
    let facts = Facts {
        sku: scan.sku.clone(),
        lot: scan.lot.clone(),
        batch: scan.batch.clone(),
        serial: scan.serial,
        region: scan.region.clone(),
        location: scan.location,
        at_micros: scan.at_micros,
        first_scan: scan.first_scan,
        person_scan_n: person.as_ref().and_then(|p| p.scan_n),
        profile: person.as_ref().map(|p| p.profile.clone()),
        member: member.map(|a| a.member),
    };
    let mut awards = Vec::new();
    let mut checks = Vec::new();
    let mut won_groups: Vec<String> = Vec::new();
    let mut region = ScanRegion::new(scan.region.as_deref());
    for (c, rule) in open.iter().zip(&rules) {
        if c.group.as_ref().is_some_and(|g| won_groups.contains(g)) {
            continue;
        }
        // Outside its node, a limited campaign does not judge the scan:
        // not eligible, and not counted in its report.
        let judged = region.judged_by(c)?;
        let outcome = if !judged {
            ClaimOutcome::NotEligible
        } else if blocked {
            ClaimOutcome::Blocked
        } else if rule.eval(&facts) {
            let who = person.as_ref().map(|p| p.id.as_str());
            let (outcome, award) = try_campaign(c, scan, who, multiplier, dry, at)?;
            if let Some(a) = award {
                awards.push(a);
                if let Some(g) = &c.group {
                    won_groups.push(g.clone());
                }
            }
            outcome
        } else {
            ClaimOutcome::NotEligible
        };
        if !dry && judged {
            let group = crate::reports::Group::of(&c.id, scan);
            crate::emits::late(group.claims_key(), move || {
                crate::reports::count_claim(group, outcome)
            })?;
        }
        checks.push(Check {
            campaign: c.id.clone(),
            outcome,
            message: outcome.message().into(),
        });
    }
    let outcome = overall(&checks);
    Ok(ClaimResult {
        outcome,
        message: outcome.message().into(),
        scan_id: scan.scan_id.clone(),
        awards,
        checks,
        dry_run: dry,
    })
}

/// One campaign's draw and reservations.
fn try_campaign(
    c: &Campaign,
    scan: &Scan,
    person: Option<&str>,
    multiplier: u32,
    dry: bool,
    at: crate::model::Time,
) -> Result<(ClaimOutcome, Option<Award>)> {
    let needs_person = c.limits.per_person_per_day.is_some()
        || c.limits.per_person_total.is_some()
        || c.prizes.iter().any(|p| {
            matches!(
                p.kind,
                PrizeKind::Points { .. } | PrizeKind::RedPacket { .. }
            )
        });
    if needs_person && person.is_none() {
        return Ok((ClaimOutcome::PersonRequired, None));
    }
    let mut r = Reservations {
        dry,
        made: Vec::new(),
    };
    // One draw per code and campaign.
    if !r.take(&format!("c:{}:code:{}", c.id, scan.code_id), 1, 1)? {
        return Ok((ClaimOutcome::CodeAlreadyWon, None));
    }
    let prize = &c.prizes[prizes::draw(&c.prizes, random_u64()?)];
    if !prize.is_win() {
        return Ok((ClaimOutcome::NoPrize, None));
    }
    let today = day(at);
    if let Some(p) = person {
        let limits = [
            (
                format!("c:{}:pd:{p}:{today}", c.id),
                c.limits.per_person_per_day,
            ),
            (format!("c:{}:pt:{p}", c.id), c.limits.per_person_total),
        ];
        for (key, limit) in limits {
            if let Some(max) = limit
                && !r.take(&key, 1, max)?
            {
                r.give_back()?;
                return Ok((ClaimOutcome::PersonLimit, None));
            }
        }
    }
    let stock_n = match prize.stock {
        Some(stock) => {
            let key = stock_key(&c.id, &prize.id);
            match r.take_value(&key, 1, stock)? {
                Some(n) if !dry => Some(n),
                Some(_) => Some(0),
                None => {
                    r.give_back()?;
                    return Ok((ClaimOutcome::SoldOut, None));
                }
            }
        }
        None => None,
    };
    let mut award = Award {
        id: String::new(),
        campaign: c.id.clone(),
        prize: prize.id.clone(),
        prize_name: prize.name.clone(),
        kind: String::new(),
        points: None,
        amount_cents: None,
        coupon: None,
        scan_id: scan.scan_id.clone(),
        code_id: scan.code_id.clone(),
        person_id: person.map(str::to_owned),
        region: scan.region.clone(),
        at: rfc3339(at),
        payout_status: None,
        day: today,
        person: person.map(str::to_owned),
    };
    match &prize.kind {
        PrizeKind::RedPacket {
            min_cents,
            max_cents,
        } => {
            let budget = c.budget_cents.unwrap_or(0);
            let mut amount = prizes::amount(*min_cents, *max_cents, random_u64()?);
            if !r.take(&spend_key(&c.id), amount, budget)? {
                // Cut to what is left, if that is still a prize.
                let left = budget - counters::get(&spend_key(&c.id))?;
                if left < *min_cents || !r.take(&spend_key(&c.id), left, budget)? {
                    r.give_back()?;
                    return Ok((ClaimOutcome::BudgetExhausted, None));
                }
                amount = left;
            }
            award.kind = "RED_PACKET".into();
            award.amount_cents = Some(amount);
            award.payout_status = Some("PENDING".into());
        }
        PrizeKind::Points { points } => {
            award.kind = "POINTS".into();
            award.points = Some(if c.tier_multiplier {
                points * i64::from(multiplier) / 100
            } else {
                *points
            });
        }
        PrizeKind::Coupon => {
            award.kind = "COUPON".into();
            if !dry {
                let n = stock_n.unwrap_or(0);
                let coupon =
                    records::get::<serde_json::Value>("coupons", &coupon_key(&c.id, &prize.id, n))?;
                match coupon.and_then(|c| {
                    c.data
                        .get("code")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                }) {
                    Some(code) => award.coupon = Some(code),
                    None => {
                        r.give_back()?;
                        return Ok((ClaimOutcome::SoldOut, None));
                    }
                }
            }
        }
        PrizeKind::Thanks => unreachable!("thanks is not a win"),
    }
    if dry {
        return Ok((ClaimOutcome::Won, Some(award)));
    }
    award.id = format!("A{}", time_key(at)?);
    records::put("awards", &award.id, &award, Expect::Absent)?;
    if let (Some(points), Some(p)) = (award.points, person) {
        crate::wallet::credit_award(p, points, &format!("won in campaign {}", c.id))?;
    }
    if let Some(amount) = award.amount_cents {
        crate::payouts::request(&award, amount)?;
    }
    // Rows every claim of the campaign updates, last (`emits::late`): on
    // PostgreSQL a claim holds each from its update to its commit.
    if prize.stock.is_none() {
        let key = format!("c:{}:won:{}", c.id, prize.id);
        crate::emits::late(key.clone(), move || {
            counters::add(&key, 1, 0, i64::MAX, None).map(|_| ())
        })?;
    }
    if let Some(amount) = award.amount_cents {
        let key = crate::reports::Group::of(&award.campaign, scan).spend_key();
        crate::emits::late(key.clone(), move || crate::reports::add_spend(&key, amount))?;
    }
    crate::emits::emit(
        "rewards.awarded",
        person,
        &json!({"award": award.id, "campaign": c.id, "prize": prize.id, "kind": award.kind,
                "points": award.points, "amountCents": award.amount_cents, "scanId": scan.scan_id,
                "codeId": scan.code_id, "region": scan.region}),
        Some(&format!("award:{}", award.id)),
    )?;
    Ok((ClaimOutcome::Won, Some(award)))
}
