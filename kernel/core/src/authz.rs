//! Authorization: casbin RBAC with the tenant as domain.
//!
//! The policy is data: rows of `authz_rules` (`p, role, domain, object,
//! action`), seeded with the built-in roles by a migration, loaded into a
//! casbin enforcer. A principal's roles come from its credential; a request
//! is allowed when casbin allows one of those roles in the principal's
//! tenant, and — for a credential with scopes — one scope covers it too.
//! A platform administrator acts in the `platform` domain only and is not a
//! member of any tenant.

use std::fmt;

use casbin::{CoreApi as _, DefaultModel, Enforcer, MemoryAdapter, MgmtApi as _};
use sqlx::Row as _;
use tokio::sync::RwLock;

use crate::identity::Principal;
use crate::{Db, Error, Result, TenantId};

const MODEL: &str = r#"
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.sub == p.sub && (p.dom == "*" || p.dom == r.dom) && (p.obj == "*" || keyMatch(r.obj, p.obj)) && (p.act == "*" || p.act == r.act)
"#;

/// The domain of platform-wide operations (creating tenants).
pub const PLATFORM_DOMAIN: &str = "platform";

/// What a principal wants to do to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Write,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Object names of the kernel's operations (plugins add their own).
pub mod objects {
    pub const TENANTS: &str = "tenants";
    pub const API_KEYS: &str = "apikeys";
    pub const OPERATORS: &str = "operators";
    /// Granting or taking away the `owner` role.
    pub const OWNERS: &str = "owners";
    pub const PERSONS: &str = "persons";
    /// Erasing persons (personal-information rights): admins and owners.
    pub const PRIVACY: &str = "privacy";
    pub const EVENTS: &str = "events";
    pub const COUNTERS: &str = "counters";
    pub const RECORDS: &str = "records";
    /// The product catalogue: products and SKUs.
    pub const CATALOG: &str = "catalog";
    /// Enabling, disabling and configuring plugins.
    pub const PLUGINS: &str = "plugins";
    /// Installing plugin packages (platform).
    pub const PACKAGES: &str = "packages";
    /// Plugins' scheduled jobs: their runs and dead letters.
    pub const SCHEDULES: &str = "schedules";
    /// Tenant-wide settings, such as its time zone.
    pub const SETTINGS: &str = "settings";
    /// The organisation tree and its staff.
    pub const ORG: &str = "org";
}

/// **What a credential limited to an org node may do with the kernel's
/// objects** — the one rule of scoped principals ("HQ sets the rules,
/// regions spend"), checked by [`Authorizer::tenant`] for every kernel
/// operation, root field or nested, on top of roles and scopes:
///
/// - `org`: read and write, and the operations keep to the node's subtree
///   (other nodes are `NOT_FOUND`; writes outside are `FORBIDDEN`);
/// - `catalog`: read only: products are the brand's master data;
/// - `apikeys`, `operators`: credentials limited to the node or one under
///   it (the operations keep to those, and never hand out a wider one);
/// - plugin operations (`plugin.<name>`): allowed; the plugin receives the
///   scope in its call context and enforces it on its own data.
///
/// Every other kernel object (persons, events, counters, records, plugins,
/// owners, schedules, settings, and any added later) is tenant-wide and
/// refused: a new object stays closed to scoped principals until it is
/// listed here.
pub const SCOPED_KERNEL_ACCESS: &[(&str, Option<Action>)] = &[
    (objects::ORG, None),
    (objects::CATALOG, Some(Action::Read)),
    (objects::API_KEYS, None),
    (objects::OPERATORS, None),
];

/// True when a principal limited to an org node may `action` on `object`
/// (see [`SCOPED_KERNEL_ACCESS`]).
pub fn scoped_may(object: &str, action: Action) -> bool {
    object.starts_with("plugin.")
        || SCOPED_KERNEL_ACCESS
            .iter()
            .any(|(o, a)| *o == object && a.is_none_or(|a| a == action))
}

/// The enforcer, shared by every request.
pub struct Authorizer {
    enforcer: RwLock<Enforcer>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Loads the policy from the database.
    pub async fn load(db: &Db) -> Result<Authorizer> {
        let enforcer = build_enforcer(db).await?;
        Ok(Authorizer {
            enforcer: RwLock::new(enforcer),
        })
    }

    /// Re-reads the policy from the database (after it changed).
    pub async fn reload(&self, db: &Db) -> Result<()> {
        let fresh = build_enforcer(db).await?;
        *self.enforcer.write().await = fresh;
        Ok(())
    }

    /// Allows or refuses `action` on `object` in the principal's tenant, and
    /// returns that tenant. Platform administrators are refused: they are
    /// not members of any tenant.
    pub async fn tenant(
        &self,
        principal: &Principal,
        object: &str,
        action: Action,
    ) -> Result<TenantId> {
        let Some(tenant) = principal.tenant.clone() else {
            return Err(Error::Forbidden(
                "a platform administrator is not a member of any tenant; use a tenant's key".into(),
            ));
        };
        self.check(principal, tenant.as_str(), object, action)
            .await?;
        Ok(tenant)
    }

    /// Allows or refuses a platform-wide operation.
    pub async fn platform(
        &self,
        principal: &Principal,
        object: &str,
        action: Action,
    ) -> Result<()> {
        if principal.tenant.is_some() {
            return Err(Error::Forbidden(
                "only a platform administrator may do this".into(),
            ));
        }
        self.check(principal, PLATFORM_DOMAIN, object, action).await
    }

    /// True when `role` alone would allow `action` on `object` in `domain`.
    pub async fn role_allows(
        &self,
        role: &str,
        domain: &str,
        object: &str,
        action: Action,
    ) -> bool {
        let e = self.enforcer.read().await;
        e.enforce((role, domain, object, action.as_str()))
            .unwrap_or(false)
    }

    async fn check(&self, p: &Principal, domain: &str, object: &str, action: Action) -> Result<()> {
        let mut allowed = false;
        for role in &p.roles {
            if self.role_allows(role, domain, object, action).await {
                allowed = true;
                break;
            }
        }
        if allowed && !p.scopes.is_empty() {
            allowed = p.scopes.iter().any(|s| scope_covers(s, object, action));
        }
        if let (true, Some(node)) = (allowed, &p.org_scope)
            && !scoped_may(object, action)
        {
            return Err(Error::Forbidden(format!(
                "this credential is limited to org node {node} and may not {action} {object}, which \
                 is tenant-wide; a limited credential works on the org tree and staff under its \
                 node, reads the catalogue, manages credentials under its node and calls plugin \
                 operations"
            )));
        }
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "not allowed to {action} {object}"
            )))
        }
    }
}

/// True when scope `s` (`object:action`, action may be `*`) covers the request.
pub fn scope_covers(s: &str, object: &str, action: Action) -> bool {
    match s.split_once(':') {
        Some((o, a)) => o == object && (a == "*" || a == action.as_str()),
        None => false,
    }
}

/// True when a credential limited to `caller` scopes may hand out a
/// credential limited to `requested`: a scoped caller may only create
/// scoped credentials, each scope within its own (`x:*` needs `x:*`). An
/// unscoped caller is limited by its roles alone.
pub fn scopes_within(caller: &[String], requested: &[String]) -> bool {
    if caller.is_empty() {
        return true;
    }
    !requested.is_empty()
        && requested.iter().all(|r| match r.split_once(':') {
            Some((obj, "*")) => caller.iter().any(|c| c == &format!("{obj}:*")),
            Some((obj, "read")) => caller.iter().any(|c| scope_covers(c, obj, Action::Read)),
            Some((obj, "write")) => caller.iter().any(|c| scope_covers(c, obj, Action::Write)),
            _ => false,
        })
}

async fn build_enforcer(db: &Db) -> Result<Enforcer> {
    let internal = |e: casbin::Error| Error::Internal(anyhow::anyhow!("casbin: {e}"));
    let model = DefaultModel::from_str(MODEL).await.map_err(internal)?;
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
        .await
        .map_err(internal)?;
    let rows = sqlx::query("SELECT ptype, v0, v1, v2, v3 FROM authz_rules WHERE ptype = 'p'")
        .fetch_all(db.reader())
        .await?;
    let mut rules = Vec::with_capacity(rows.len());
    for row in &rows {
        rules.push(vec![
            row.try_get::<String, _>("v0")?,
            row.try_get::<String, _>("v1")?,
            row.try_get::<String, _>("v2")?,
            row.try_get::<String, _>("v3")?,
        ]);
    }
    enforcer.add_policies(rules).await.map_err(internal)?;
    Ok(enforcer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_principal_limited_to_an_org_node_reaches_only_the_listed_kernel_objects() {
        use Action::{Read, Write};
        for (object, action, ok) in [
            (objects::ORG, Read, true),
            (objects::ORG, Write, true),
            (objects::CATALOG, Read, true),
            (objects::CATALOG, Write, false),
            (objects::API_KEYS, Write, true),
            (objects::OPERATORS, Read, true),
            ("plugin.rewards", Write, true),
            (objects::PERSONS, Read, false),
            (objects::EVENTS, Read, false),
            (objects::COUNTERS, Write, false),
            (objects::RECORDS, Read, false),
            (objects::PLUGINS, Write, false),
            (objects::OWNERS, Write, false),
            (objects::SCHEDULES, Read, false),
            (objects::SETTINGS, Write, false),
            ("something-new", Read, false),
            ("plugins", Read, false),
        ] {
            assert_eq!(scoped_may(object, action), ok, "{object}:{action}");
        }
    }

    #[test]
    fn a_scoped_caller_hands_out_only_scopes_within_its_own() {
        let caller = v(&["events:read", "persons:*"]);
        for (requested, ok) in [
            (v(&["events:read"]), true),
            (v(&["persons:write", "persons:read"]), true),
            (v(&["persons:*"]), true),
            (v(&["events:write"]), false),
            (v(&["events:*"]), false),
            (v(&["counters:read"]), false),
            (v(&[]), false),
        ] {
            assert_eq!(scopes_within(&caller, &requested), ok, "{requested:?}");
        }
        assert!(scopes_within(&[], &[]));
        assert!(scopes_within(&[], &v(&["events:read"])));
    }
}
