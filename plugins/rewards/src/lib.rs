//! Keel's first-party `rewards` plugin: scan-to-win campaigns.
//!
//! Written only against `keel-sdk`. It learns of scans from the `codes`
//! plugin's `code.scanned` events (delivered inside the scan's
//! transaction), never by calling it. The strategy engine (rules, draws,
//! simulation) lives in `keel-rewards-core`:
//!
//! - `campaigns` — campaigns, their prize tables and coupon pools;
//! - `scans` — the copy of each scan a claim is judged on;
//! - `claim` — the public claim and its dry run, every limit reserved
//!   through the kernel's counters; `emits` holds a claim's events until
//!   its last write;
//! - `wallet` — points; `payouts` — red packets through the provider;
//! - `redeem` — coupon redemption. With `spendPoints` and `creditPoints`
//!   it is offered to other plugins (`[offers]`), which call it inside
//!   their own transaction (a checkout and its order commit together);
//! - `reports` — per campaign, day and region, and the day's awards;
//! - `scope` — campaigns limited to an org node, and callers limited to
//!   one: a scoped marketer reaches only its node's campaigns;
//! - `members` — member facts (tier, multiplier, segments) asked of the
//!   `cdp` plugin, once per claim, only when a campaign reads them;
//! - `benefits` — `TIER_UP` campaigns, judged when a member moves up the
//!   CDP's tier ladder (a coupon for reaching gold).

mod benefits;
mod campaigns;
mod claim;
mod emits;
mod members;
mod model;
mod payouts;
mod redeem;
mod reports;
mod scans;
mod scope;
mod wallet;

use keel_sdk::plugin;

plugin! {
    operations: {
        "campaigns" => campaigns::list,
        "campaign" => campaigns::get,
        "createCampaign" => campaigns::create,
        "updateCampaign" => campaigns::update,
        "setCampaignStatus" => campaigns::set_status,
        "addCoupons" => campaigns::add_coupons,
        "simulateCampaign" => campaigns::simulate,
        "claimReward" => claim::claim,
        "previewClaim" => claim::preview,
        "campaignReport" => reports::campaign,
        "rewardAwards" => reports::awards,
        "pointsWallet" => wallet::wallet,
        "spendPoints" => wallet::spend,
        "creditPoints" => wallet::credit_points,
        "redeemCoupon" => redeem::redeem,
        "rewardPayouts" => payouts::list,
    },
    events: {
        "code.scanned" => scans::on_scanned,
        "rewards.payout_requested" => payouts::on_requested,
        "tier.changed" => benefits::on_tier_changed,
    },
}
