//! Coupon redemption, offered to other plugins (a checkout marks the
//! coupon its order uses inside the order's transaction): not on GraphQL.
//!
//! A coupon is the code of a `COUPON` award; it is the person's who won it
//! (or the person they were merged into). Redeeming marks it used, once: a
//! record `redemptions/award:{award}` created only if absent, so two
//! concurrent redemptions cannot both pass. The caller's idempotency key
//! (in the calling plugin's own space) is kept under
//! `redemptions/key:{key}`: a retry with the key returns the first
//! redemption; the key used for another coupon is a conflict.

use keel_sdk::records::{self, Expect};
use keel_sdk::time::parse_rfc3339;
use keel_sdk::{Context, Error, Result, events, persons};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::claim::Award;
use crate::model::{now, rfc3339};
use crate::wallet::scoped_key;

/// `Err(denied)` unless another plugin is calling: `op` is offered to
/// plugins only. The calling plugin's name.
pub(crate) fn offered_only<'a>(ctx: &'a Context, op: &str) -> Result<&'a str> {
    ctx.calling_plugin()
        .ok_or_else(|| Error::Denied(format!("{op} is offered to other plugins only")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RedeemInput {
    person_id: String,
    /// The coupon's code, as the person shows it.
    code: String,
    /// The award that gave it, when the caller knows it (a coupon won
    /// before the person was merged is found only this way).
    #[serde(default)]
    award_id: Option<String>,
    /// The order it is used for, kept with the redemption.
    #[serde(default)]
    order_id: Option<String>,
    idempotency_key: String,
}

/// A redemption, as stored and returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Redemption {
    award_id: String,
    campaign: String,
    prize: String,
    prize_name: String,
    person_id: String,
    order_id: Option<String>,
    /// The plugin that redeemed it.
    redeemed_by: String,
    redeemed_at: String,
}

/// Which award a key redeemed (`redemptions/key:{key}`).
#[derive(Serialize, Deserialize)]
struct KeyUse {
    award: String,
}

/// How many of a person's awards are searched for the code (100 a page).
const MAX_PAGES: usize = 50;

fn not_held() -> Error {
    Error::refused(
        "COUPON_NOT_HELD",
        "the person holds no coupon with this code",
    )
}

/// Marks a coupon the person holds as used. Refused with
/// `COUPON_NOT_HELD` (not theirs, not a coupon, no such code),
/// `COUPON_USED` (redeemed before, under another key) or
/// `COUPON_EXPIRED` (past its prize's `valid_days`).
pub(crate) fn redeem(ctx: &Context, i: RedeemInput) -> Result<Redemption> {
    let by = offered_only(ctx, "redeemCoupon")?.to_owned();
    let code = i.code.trim();
    if code.is_empty() || code.len() > 200 {
        return Err(Error::invalid("code: 1-200 characters"));
    }
    if i.person_id.is_empty() || i.person_id.len() > 100 {
        return Err(Error::invalid("personId: 1-100 characters"));
    }
    if i.idempotency_key.is_empty() || i.idempotency_key.len() > 100 {
        return Err(Error::invalid("idempotencyKey: 1-100 characters"));
    }
    if i.order_id.as_ref().is_some_and(|o| o.len() > 100) {
        return Err(Error::invalid("orderId: at most 100 characters"));
    }
    let key = scoped_key(ctx, "redeem", &i.idempotency_key);
    let award = find(&i.person_id, code, i.award_id.as_deref())?;
    let used = records::get::<Redemption>("redemptions", &format!("award:{}", award.id))?;
    let key_use = records::get::<KeyUse>("redemptions", &format!("key:{key}"))?;
    match (used, key_use) {
        // A retry: the first redemption stands.
        (Some(r), Some(k)) if k.data.award == award.id => return Ok(r.data),
        (_, Some(_)) => {
            return Err(Error::Conflict(format!(
                "idempotencyKey: {} was used to redeem another coupon",
                i.idempotency_key
            )));
        }
        (Some(r), None) => {
            return Err(Error::refused(
                "COUPON_USED",
                format!("the coupon was used at {}", r.data.redeemed_at),
            ));
        }
        (None, None) => {}
    }
    let campaign = crate::campaigns::load(&award.campaign)?.data;
    let prize = campaign.prizes.iter().find(|p| p.id == award.prize);
    if let Some(days) = prize.and_then(|p| p.valid_days) {
        let won = parse_rfc3339("award.at", &award.at)?;
        let until = won + chrono::Duration::days(i64::from(days));
        if now() >= until {
            return Err(Error::refused(
                "COUPON_EXPIRED",
                format!("the coupon expired at {}", rfc3339(until)),
            ));
        }
    }
    let redemption = Redemption {
        award_id: award.id.clone(),
        campaign: award.campaign.clone(),
        prize: award.prize.clone(),
        prize_name: award.prize_name.clone(),
        person_id: i.person_id.clone(),
        order_id: i.order_id.clone(),
        redeemed_by: by,
        redeemed_at: rfc3339(now()),
    };
    // Created only if absent: of two concurrent redemptions one waits and
    // then finds the coupon used.
    match records::put(
        "redemptions",
        &format!("award:{}", award.id),
        &redemption,
        Expect::Absent,
    ) {
        Err(Error::Conflict(_)) => {
            return Err(Error::refused("COUPON_USED", "the coupon was just used"));
        }
        r => r?,
    };
    let key_use = KeyUse {
        award: award.id.clone(),
    };
    records::put(
        "redemptions",
        &format!("key:{key}"),
        &key_use,
        Expect::Absent,
    )?;
    events::emit(
        "rewards.coupon_redeemed",
        Some(&i.person_id),
        &json!({"award": award.id, "campaign": award.campaign, "prize": award.prize,
                "orderId": i.order_id, "redeemedBy": redemption.redeemed_by}),
        Some(&key),
    )?;
    Ok(redemption)
}

/// The person's coupon award with `code`.
fn find(person: &str, code: &str, award_id: Option<&str>) -> Result<Award> {
    let is_it = |a: &Award| a.kind == "COUPON" && a.coupon.as_deref() == Some(code);
    if let Some(id) = award_id {
        let award = records::get::<Award>("awards", id)?
            .map(|r| r.data)
            .filter(is_it)
            .ok_or_else(not_held)?;
        return match &award.person_id {
            Some(winner) if winner == person => Ok(award),
            Some(winner) if persons::get(winner)?.is_some_and(|p| p.id == person) => Ok(award),
            _ => Err(not_held()),
        };
    }
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page =
            records::query::<Award>("awards", "person", &json!(person), after.as_deref(), 100)?;
        if let Some(r) = page.records.into_iter().find(|r| is_it(&r.data)) {
            return Ok(r.data);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Err(not_held())
}
