//! Campaigns limited to a node of the kernel's organisation tree, and
//! callers limited to one ("HQ sets the rules, regions spend").
//!
//! A campaign may be limited to an org node (`limitedTo`, stored as the
//! node's id and code). Then:
//!
//! - **its claims**: it judges only scans whose region (the codes plugin's
//!   region code, a node code of the tree) is that node or lies under it;
//!   other scans are not eligible and do not count in its report;
//! - **its callers**: an operator or key limited to a node (`ctx.scope()`)
//!   reaches only campaigns limited to its node or a node under it. It
//!   creates only such campaigns; other campaigns are absent from its lists
//!   and reports, `NOT_FOUND` when read by id and `FORBIDDEN` when written,
//!   as the kernel treats its own objects. Person-level data (wallets,
//!   payouts) is tenant-wide and `FORBIDDEN` to it.
//!
//! A caller for the whole tenant reaches everything, and nothing here asks
//! the kernel anything for it; an unlimited campaign judges every scan.
//! Only limited campaigns and scoped callers cost `org-read` host calls,
//! each node asked at most once per call.

use std::collections::HashMap;

use keel_sdk::org::{self, NodeKey};
use keel_sdk::{Context, Error, Result, log};
use serde::{Deserialize, Serialize};

use crate::campaigns::Campaign;

/// The org node a campaign is limited to (GraphQL `CampaignNode`). A
/// node's code is the key the brand writes the tree by, and never changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limit {
    pub id: String,
    pub code: String,
}

/// The node `given` names: a code, or an id (`org_…`).
fn find(given: &str) -> Result<Option<org::Node>> {
    if let Some(n) = org::get_node(&NodeKey::Code(given.to_owned()))? {
        return Ok(Some(n));
    }
    if given.starts_with("org_") {
        return org::get_node(&NodeKey::Id(given.to_owned()));
    }
    Ok(None)
}

/// How an error names the caller's node: its code, or its id if the tree
/// cannot say (only error paths ask).
fn label(node_id: &str) -> String {
    match org::get_node(&NodeKey::Id(node_id.to_owned())) {
        Ok(Some(n)) => n.code,
        _ => node_id.to_owned(),
    }
}

/// The limit a campaign input asks for (`limitedTo`: a node's code or id),
/// checked against the caller: a scoped caller must name its node or one
/// under it.
pub(crate) fn limit_for(ctx: &Context, limited_to: Option<&str>) -> Result<Option<Limit>> {
    let Some(given) = limited_to.map(str::trim) else {
        return match ctx.scope() {
            Some(scope) => Err(Error::Denied(format!(
                "limitedTo: this caller is limited to org node {} and may create or change only \
                 campaigns limited to that node or one under it; name one in limitedTo",
                label(scope)
            ))),
            None => Ok(None),
        };
    };
    if given.is_empty() || given.len() > 64 {
        return Err(Error::invalid(
            "limitedTo: an org node's code or id, or leave it out",
        ));
    }
    let node = match find(given) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(Error::invalid(format!("limitedTo: no org node {given}"))),
        Err(Error::Denied(m)) => return Err(Error::Denied(format!("limitedTo: {m}"))),
        Err(e) => return Err(e),
    };
    if !ctx.covers(&node.id)? {
        return Err(Error::Denied(format!(
            "limitedTo: this caller is limited to org node {} and may not limit a campaign to \
             org node {}, which is not at or under it",
            label(ctx.scope().unwrap_or_default()),
            node.code
        )));
    }
    Ok(Some(Limit {
        id: node.id,
        code: node.code,
    }))
}

/// Which campaigns a caller reaches, each limit node asked once.
pub(crate) struct Reach<'a> {
    /// `None`: every campaign (the whole tenant's caller, or a claim).
    ctx: Option<&'a Context>,
    seen: HashMap<String, bool>,
}

impl<'a> Reach<'a> {
    /// The campaigns `ctx`'s caller reaches.
    pub fn of(ctx: &'a Context) -> Self {
        Reach {
            ctx: ctx.scope().is_some().then_some(ctx),
            seen: HashMap::new(),
        }
    }

    /// Every campaign.
    pub fn everything() -> Self {
        Reach {
            ctx: None,
            seen: HashMap::new(),
        }
    }

    /// True when the caller reaches `c`: it is not scoped, or `c` is
    /// limited to its node or one under it.
    pub fn covers(&mut self, c: &Campaign) -> Result<bool> {
        let Some(ctx) = self.ctx else { return Ok(true) };
        let Some(limit) = &c.limited_to else {
            return Ok(false);
        };
        if let Some(&known) = self.seen.get(&limit.id) {
            return Ok(known);
        }
        let covered = ctx.covers(&limit.id)?;
        self.seen.insert(limit.id.clone(), covered);
        Ok(covered)
    }
}

/// `Ok` when the caller may change `c`; `FORBIDDEN` naming the campaign
/// and the caller's node otherwise.
pub(crate) fn require_writable(ctx: &Context, c: &Campaign) -> Result<()> {
    if Reach::of(ctx).covers(c)? {
        return Ok(());
    }
    let whose = match &c.limited_to {
        Some(l) => format!("limited to org node {}", l.code),
        None => "the whole tenant's".to_owned(),
    };
    Err(Error::Denied(format!(
        "campaign {} is {whose}; this caller is limited to org node {} and may not change it",
        c.id,
        label(ctx.scope().unwrap_or_default())
    )))
}

/// `Ok` unless the caller is limited to an org node and calls directly:
/// `what` is tenant-wide (a plugin calling on a scoped caller's behalf
/// answers for its caller itself).
pub(crate) fn require_tenant_wide(ctx: &Context, what: &str) -> Result<()> {
    match ctx.scope() {
        Some(scope) if ctx.calling_plugin().is_none() => Err(Error::Denied(format!(
            "this caller is limited to org node {} and may not use {what}, which is tenant-wide",
            label(scope)
        ))),
        _ => Ok(()),
    }
}

/// Whether one scan lies within the limit nodes of the campaigns judging
/// it, for one claim: the scan's region node is looked up once (only if a
/// limited campaign needs it), each limit node asked once.
pub(crate) struct ScanRegion<'a> {
    code: Option<&'a str>,
    /// The region's node id, once looked up (`Some(None)`: not a node).
    node: Option<Option<String>>,
    within: HashMap<String, bool>,
}

impl<'a> ScanRegion<'a> {
    pub fn new(code: Option<&'a str>) -> Self {
        ScanRegion {
            code,
            node: None,
            within: HashMap::new(),
        }
    }

    /// True when `c` judges this scan: it is not limited, or the scan's
    /// region is its node or lies under it. A scan without a region, or
    /// with one the tree does not have, lies under no node.
    pub fn judged_by(&mut self, c: &Campaign) -> Result<bool> {
        let Some(limit) = &c.limited_to else {
            return Ok(true);
        };
        let Some(code) = self.code else {
            return Ok(false);
        };
        if code == limit.code {
            return Ok(true);
        }
        if let Some(&known) = self.within.get(&limit.id) {
            return Ok(known);
        }
        let within = match self.node_id(code)? {
            Some(id) => tree(org::is_within(&id, &limit.id))?.unwrap_or(false),
            None => false,
        };
        self.within.insert(limit.id.clone(), within);
        Ok(within)
    }

    fn node_id(&mut self, code: &str) -> Result<Option<String>> {
        if self.node.is_none() {
            let node = tree(org::get_node(&NodeKey::Code(code.to_owned())))?.flatten();
            self.node = Some(node.map(|n| n.id));
        }
        Ok(self.node.clone().flatten())
    }
}

/// A tree answer at claim time: a node the tenant lacks, or a tree the
/// plugin may no longer read (`org-read` withdrawn), leaves the limited
/// campaign out of this claim instead of failing the others.
fn tree<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(Error::Denied(m)) => {
            log::warn(&format!(
                "a campaign limited to an org node is left out of a claim: {m}"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
