//! Rate limits on credential guessing.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::errors::gql_error;

/// Limits login attempts per client address and per account, so that
/// guessing passwords is slow from one machine and slow against one account
/// from many.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
}

impl LoginLimiter {
    pub(crate) fn new(per_ip_per_minute: u32, per_account_per_minute: u32) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        LoginLimiter {
            per_ip: RateLimiter::keyed(quota(per_ip_per_minute)),
            per_account: RateLimiter::keyed(quota(per_account_per_minute)),
        }
    }

    /// Takes one attempt from both budgets, or refuses with `RATE_LIMITED`.
    pub(crate) fn check(&self, ip: IpAddr, account: &str) -> async_graphql::Result<()> {
        if self.per_account.len() > 100_000 {
            self.per_account.retain_recent();
        }
        if self.per_ip.len() > 100_000 {
            self.per_ip.retain_recent();
        }
        let ip_ok = self.per_ip.check_key(&ip).is_ok();
        let account_ok = self.per_account.check_key(&account.to_owned()).is_ok();
        if ip_ok && account_ok {
            Ok(())
        } else {
            Err(gql_error(
                "RATE_LIMITED",
                "too many login attempts; wait a minute",
            ))
        }
    }

    /// Records a failed attempt (it costs one more from the account's budget).
    pub(crate) fn failed(&self, _ip: IpAddr, account: &str) {
        let _ = self.per_account.check_key(&account.to_owned());
    }
}

/// Limits calls of public plugin operations per client address and tenant.
#[derive(Debug)]
pub(crate) struct PublicLimiter {
    per_ip: DefaultKeyedRateLimiter<(IpAddr, String)>,
}

impl PublicLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        PublicLimiter {
            per_ip: RateLimiter::keyed(quota),
        }
    }

    /// Takes one call from the address's budget in `tenant`.
    pub(crate) fn check(&self, ip: IpAddr, tenant: &str) -> bool {
        if self.per_ip.len() > 100_000 {
            self.per_ip.retain_recent();
        }
        self.per_ip.check_key(&(ip, tenant.to_owned())).is_ok()
    }
}
