//! Rate limits: login attempts and public calls, per client address.
//!
//! They live in each kernel process's memory: with N processes behind a
//! load balancer a client gets up to N times each budget. That is the
//! intent for these limits, which slow guessing and flooding; what must be
//! exact (prize stock, budgets, per-person limits) is kept in the database
//! by counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::errors::gql_error;

/// How many login attempts are allowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginQuotas {
    /// Attempts per client address per minute, whatever the account.
    pub per_ip_per_minute: u32,
    /// Attempts per account from one address per minute.
    pub per_account_ip_per_minute: u32,
    /// Attempts per account per hour from addresses that never logged in to
    /// it: slow guessing from many addresses. An address where the account
    /// logged in before is not held back by it.
    pub per_account_per_hour: u32,
}

/// How long an address where an account logged in stays known-good.
const KNOWN_GOOD_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Known-good (account, address) pairs kept, at most.
const KNOWN_GOOD_MAX: usize = 200_000;

/// Limits login attempts so that guessing is slow from one address and
/// slow against one account from many, while nobody can lock an operator
/// out: a flood of wrong passwords for an account from other addresses
/// does not stop its right password from an address it used before.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account_ip: DefaultKeyedRateLimiter<(String, IpAddr)>,
    per_account: DefaultKeyedRateLimiter<String>,
    known_good: Mutex<HashMap<(String, IpAddr), Instant>>,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl LoginLimiter {
    pub(crate) fn new(q: LoginQuotas) -> Self {
        LoginLimiter {
            per_ip: RateLimiter::keyed(Quota::per_minute(nonzero(q.per_ip_per_minute))),
            per_account_ip: RateLimiter::keyed(Quota::per_minute(nonzero(
                q.per_account_ip_per_minute,
            ))),
            per_account: RateLimiter::keyed(Quota::per_hour(nonzero(q.per_account_per_hour))),
            known_good: Mutex::new(HashMap::new()),
        }
    }

    fn is_known_good(&self, ip: IpAddr, account: &str) -> bool {
        self.known_good
            .lock()
            .ok()
            .and_then(|m| m.get(&(account.to_owned(), ip)).copied())
            .is_some_and(|at| at.elapsed() < KNOWN_GOOD_FOR)
    }

    /// Takes one attempt from the budgets that apply, or refuses with
    /// `RATE_LIMITED`.
    pub(crate) fn check(&self, ip: IpAddr, account: &str) -> async_graphql::Result<()> {
        for len in [
            self.per_ip.len(),
            self.per_account_ip.len(),
            self.per_account.len(),
        ] {
            if len > 100_000 {
                self.per_ip.retain_recent();
                self.per_account_ip.retain_recent();
                self.per_account.retain_recent();
                break;
            }
        }
        let ip_ok = self.per_ip.check_key(&ip).is_ok();
        let pair_ok = ip_ok
            && self
                .per_account_ip
                .check_key(&(account.to_owned(), ip))
                .is_ok();
        let account_ok = pair_ok
            && (self.is_known_good(ip, account)
                || self.per_account.check_key(&account.to_owned()).is_ok());
        if account_ok {
            Ok(())
        } else {
            Err(gql_error(
                "RATE_LIMITED",
                "too many login attempts; wait a minute",
            ))
        }
    }

    /// Remembers that `account` logged in from `ip`.
    pub(crate) fn succeeded(&self, ip: IpAddr, account: &str) {
        if let Ok(mut m) = self.known_good.lock() {
            if m.len() >= KNOWN_GOOD_MAX {
                m.retain(|_, at| at.elapsed() < KNOWN_GOOD_FOR);
                if m.len() >= KNOWN_GOOD_MAX {
                    m.clear();
                }
            }
            m.insert((account.to_owned(), ip), Instant::now());
        }
    }
}

/// Limits calls of public plugin operations per client address and tenant.
#[derive(Debug)]
pub(crate) struct PublicLimiter {
    per_ip: DefaultKeyedRateLimiter<(IpAddr, String)>,
}

impl PublicLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        PublicLimiter {
            per_ip: RateLimiter::keyed(Quota::per_minute(nonzero(per_minute))),
        }
    }

    /// Takes `calls` calls from the address's budget in `tenant`, all or
    /// none.
    pub(crate) fn check(&self, ip: IpAddr, tenant: &str, calls: u32) -> bool {
        if self.per_ip.len() > 100_000 {
            self.per_ip.retain_recent();
        }
        self.per_ip
            .check_key_n(&(ip, tenant.to_owned()), nonzero(calls))
            .is_ok_and(|r| r.is_ok())
    }
}
