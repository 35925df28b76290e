//! Prize tables: validation, the weighted draw, and a campaign's simulated
//! cost.

use serde::{Deserialize, Serialize};

/// What a prize gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", tag = "kind")]
pub enum PrizeKind {
    /// Points to the person's wallet.
    Points { points: i64 },
    /// One code from the prize's coupon pool.
    Coupon,
    /// Cash to the person's wallet, in fen (cents): a fixed amount when
    /// `min_cents == max_cents`, else uniform in the range.
    RedPacket { min_cents: i64, max_cents: i64 },
    /// "Thanks for taking part": no prize.
    Thanks,
}

/// One line of a prize table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prize {
    /// `[a-z0-9-]`, unique in the campaign.
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub kind: PrizeKind,
    /// Relative chance against the other prizes' weights.
    pub weight: u32,
    /// How many can be won in all; `None` for no limit (points, thanks).
    #[serde(default)]
    pub stock: Option<i64>,
    /// A coupon's validity: it can be redeemed for this many days after it
    /// was won (1..=3650); `None` for no expiry. Coupon prizes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_days: Option<u32>,
}

impl Prize {
    pub fn is_win(&self) -> bool {
        !matches!(self.kind, PrizeKind::Thanks)
    }

    /// The lowest cash a win of this prize costs.
    pub fn min_cash(&self) -> i64 {
        match self.kind {
            PrizeKind::RedPacket { min_cents, .. } => min_cents,
            _ => 0,
        }
    }
}

/// Checks a prize table against a budget (fen), naming the first mistake.
pub fn validate(prizes: &[Prize], budget_cents: Option<i64>) -> Result<(), String> {
    if prizes.is_empty() || prizes.len() > 50 {
        return Err("prizes: 1-50 prizes".into());
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, p) in prizes.iter().enumerate() {
        let at = format!("prizes[{i}]");
        let id_ok = (1..=40).contains(&p.id.len())
            && p.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!("{at}.id: 1-40 characters of a-z, 0-9 and '-'"));
        }
        if !ids.insert(&p.id) {
            return Err(format!("{at}.id: {} is used twice", p.id));
        }
        if p.name.trim().is_empty() || p.name.chars().count() > 100 {
            return Err(format!("{at}.name: 1-100 characters"));
        }
        if p.weight == 0 || p.weight > 1_000_000 {
            return Err(format!(
                "{at}.weight: 1..=1000000 (a prize that cannot be drawn has no place)"
            ));
        }
        if let Some(s) = p.stock
            && s < 1
        {
            return Err(format!("{at}.stock: at least 1, or leave it out"));
        }
        match p.valid_days {
            Some(_) if !matches!(p.kind, PrizeKind::Coupon) => {
                return Err(format!("{at}.valid_days: only a coupon prize expires"));
            }
            Some(d) if !(1..=3650).contains(&d) => {
                return Err(format!("{at}.valid_days: 1..=3650, or leave it out"));
            }
            _ => {}
        }
        match &p.kind {
            PrizeKind::Points { points } if *points < 1 || *points > 1_000_000 => {
                return Err(format!("{at}.points: 1..=1000000"));
            }
            PrizeKind::RedPacket {
                min_cents,
                max_cents,
            } => {
                if *min_cents < 1 || max_cents < min_cents || *max_cents > 10_000_000 {
                    return Err(format!(
                        "{at}: a red packet needs 1 <= min_cents <= max_cents <= 10000000"
                    ));
                }
                match budget_cents {
                    None => return Err(format!("{at}: a red packet needs a campaign budget")),
                    Some(b) if b < *min_cents => {
                        return Err(format!(
                            "budget_cents: {b} is lower than one {} ({min_cents})",
                            p.id
                        ));
                    }
                    _ => {}
                }
            }
            PrizeKind::Coupon if p.stock.is_none() => {
                return Err(format!(
                    "{at}.stock: a coupon prize needs a stock (its pool size)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The prize `r` (uniform over u64) draws, by weight.
pub fn draw(prizes: &[Prize], r: u64) -> usize {
    let total: u64 = prizes.iter().map(|p| p.weight as u64).sum();
    let mut x = ((r as u128 * total as u128) >> 64) as u64;
    for (i, p) in prizes.iter().enumerate() {
        if x < p.weight as u64 {
            return i;
        }
        x -= p.weight as u64;
    }
    prizes.len() - 1
}

/// A red packet's amount for `r` (uniform over u64).
pub fn amount(min_cents: i64, max_cents: i64, r: u64) -> i64 {
    let span = (max_cents - min_cents + 1) as u128;
    min_cents + ((r as u128 * span) >> 64) as i64
}

/// A small deterministic generator for simulations (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What N synthetic claims would cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub claims: u64,
    pub wins: u64,
    pub by_prize: Vec<PrizeCount>,
    pub cash_cents: i64,
    pub points: i64,
    /// The claim after which no further cash prize could be paid, if any.
    pub budget_exhausted_after: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrizeCount {
    pub prize: String,
    pub wins: u64,
}

/// Draws `claims` times with the table, stock and budget rules of a live
/// claim (a draw of a prize out of stock, or cash beyond the budget, wins
/// nothing; cash is cut to what the budget has left).
pub fn simulate(prizes: &[Prize], budget_cents: Option<i64>, claims: u64, seed: u64) -> Simulation {
    let mut rng = SplitMix(seed);
    let mut won = vec![0u64; prizes.len()];
    let (mut cash, mut points, mut wins, mut exhausted) = (0i64, 0i64, 0u64, None);
    let min_cash = prizes.iter().map(Prize::min_cash).filter(|&c| c > 0).min();
    for n in 1..=claims {
        let i = draw(prizes, rng.next_u64());
        let p = &prizes[i];
        let r = rng.next_u64();
        if !p.is_win() || p.stock.is_some_and(|s| won[i] as i64 >= s) {
            continue;
        }
        match p.kind {
            PrizeKind::RedPacket {
                min_cents,
                max_cents,
            } => {
                let left = budget_cents.unwrap_or(0) - cash;
                let a = amount(min_cents, max_cents, r).min(left);
                if a < min_cents {
                    continue;
                }
                cash += a;
            }
            PrizeKind::Points { points: p } => points += p,
            _ => {}
        }
        won[i] += 1;
        wins += 1;
        if exhausted.is_none()
            && let (Some(b), Some(m)) = (budget_cents, min_cash)
            && b - cash < m
        {
            exhausted = Some(n);
        }
    }
    Simulation {
        claims,
        wins,
        by_prize: prizes
            .iter()
            .zip(won)
            .map(|(p, wins)| PrizeCount {
                prize: p.id.clone(),
                wins,
            })
            .collect(),
        cash_cents: cash,
        points,
        budget_exhausted_after: exhausted,
    }
}
