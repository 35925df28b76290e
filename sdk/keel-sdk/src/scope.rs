//! Enforcing a scoped caller on the plugin's own data.
//!
//! An operator or API key may be limited to a node of the tenant's
//! organisation tree ("HQ sets the rules, regions spend"). The kernel
//! enforces that on its own data and passes the node to the plugin as
//! [`Context::scope`]; the plugin enforces it on its own, with
//! [`Context::covers`] and [`Context::require_within`]:
//!
//! ```no_run
//! # use keel_sdk::{Context, Result, Value};
//! # struct Campaign { region_id: String }
//! # struct UpdateInput { id: String }
//! # fn load(_: &str) -> Result<Campaign> { unimplemented!() }
//! # fn all() -> Result<Vec<Campaign>> { unimplemented!() }
//! fn update_campaign(ctx: &Context, i: UpdateInput) -> Result<Campaign> {
//!     let mut c = load(&i.id)?;
//!     // Ok for the whole tenant's callers and for a node at or under the
//!     // caller's; a typed `Error::Denied` (FORBIDDEN) naming both otherwise.
//!     ctx.require_within(&c.region_id)?;
//!     // …
//! #   Ok(c)
//! }
//!
//! fn list_campaigns(ctx: &Context, _: Value) -> Result<Vec<Campaign>> {
//!     let mut mine = Vec::new();
//!     for c in all()? {
//!         if ctx.covers(&c.region_id)? { mine.push(c) }
//!     }
//!     Ok(mine)
//! }
//! # fn main() {}
//! ```
//!
//! Only a scoped caller costs a host call (`org::is_within`, which needs
//! the `org-read` capability): a caller for the whole tenant, or a node
//! equal to the caller's own, is answered without one. Decide yourself what
//! an object that belongs to no node means for a scoped caller — usually
//! that it is the tenant's, and out of reach.

use crate::{Context, Error, Result, org};

impl Context {
    /// True when the caller may act on `node_id` (an org node's id): the
    /// caller is not limited to a node ([`scope`](Self::scope) is `None`),
    /// or `node_id` is its node or lies under it. A node the tenant does not
    /// have is never covered by a scope.
    ///
    /// A scoped caller costs one `org::is_within` host call (the plugin
    /// needs `org-read`), unless `node_id` is the scope itself.
    pub fn covers(&self, node_id: &str) -> Result<bool> {
        covers_with(self.scope(), node_id, org::is_within)
    }

    /// `Ok` when the caller may act on `node_id` ([`covers`](Self::covers)),
    /// otherwise [`Error::Denied`] (GraphQL `FORBIDDEN`) naming the node and
    /// the caller's scope.
    pub fn require_within(&self, node_id: &str) -> Result<()> {
        require_with(self.scope(), node_id, org::is_within)
    }
}

/// [`Context::covers`] with the tree's `is_within(id, ancestor_id)` given.
pub(crate) fn covers_with(
    scope: Option<&str>,
    node_id: &str,
    is_within: impl FnOnce(&str, &str) -> Result<bool>,
) -> Result<bool> {
    let Some(scope) = scope else { return Ok(true) };
    if node_id == scope {
        return Ok(true);
    }
    match is_within(node_id, scope) {
        // A node the tenant does not have lies under nothing.
        Err(Error::NotFound(_)) => Ok(false),
        r => r,
    }
}

/// [`Context::require_within`] with the tree's `is_within` given.
pub(crate) fn require_with(
    scope: Option<&str>,
    node_id: &str,
    is_within: impl FnOnce(&str, &str) -> Result<bool>,
) -> Result<()> {
    if covers_with(scope, node_id, is_within)? {
        return Ok(());
    }
    Err(Error::Denied(format!(
        "this caller is limited to org node {} and may not act on org node {node_id}, \
         which is not at or under it",
        scope.unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of paths: `HQ/GD/SZ`, `HQ/SH`.
    fn tree(id: &str, ancestor: &str) -> Result<bool> {
        let path = |n: &str| match n {
            "HQ" => Some("HQ/"),
            "GD" => Some("HQ/GD/"),
            "SZ" => Some("HQ/GD/SZ/"),
            "SH" => Some("HQ/SH/"),
            _ => None,
        };
        match (path(id), path(ancestor)) {
            (Some(p), Some(a)) => Ok(p.starts_with(a)),
            _ => Err(Error::NotFound(format!("org node {id}"))),
        }
    }

    fn no_host(_: &str, _: &str) -> Result<bool> {
        panic!("answered without a host call")
    }

    #[test]
    fn the_whole_tenant_covers_everything_without_a_host_call() {
        assert_eq!(covers_with(None, "SZ", no_host), Ok(true));
        assert_eq!(covers_with(None, "anything", no_host), Ok(true));
        assert_eq!(require_with(None, "SH", no_host), Ok(()));
    }

    #[test]
    fn a_scope_covers_its_node_and_what_lies_under_it() {
        assert_eq!(covers_with(Some("GD"), "GD", no_host), Ok(true));
        assert_eq!(covers_with(Some("GD"), "SZ", tree), Ok(true));
        assert_eq!(covers_with(Some("GD"), "SH", tree), Ok(false));
        assert_eq!(
            covers_with(Some("GD"), "HQ", tree),
            Ok(false),
            "not above it"
        );
        assert_eq!(
            covers_with(Some("GD"), "nope", tree),
            Ok(false),
            "not a node"
        );
    }

    #[test]
    fn outside_the_scope_is_denied_naming_both_nodes() {
        assert_eq!(require_with(Some("GD"), "SZ", tree), Ok(()));
        let Err(Error::Denied(m)) = require_with(Some("GD"), "SH", tree) else {
            panic!("denied expected");
        };
        assert!(
            m.contains("org node GD") && m.contains("org node SH"),
            "{m}"
        );
    }

    #[test]
    fn host_errors_other_than_not_found_propagate() {
        let denied = |_: &str, _: &str| Err(Error::Denied("no org-read".into()));
        assert_eq!(
            covers_with(Some("GD"), "SZ", denied),
            Err(Error::Denied("no org-read".into()))
        );
    }
}
