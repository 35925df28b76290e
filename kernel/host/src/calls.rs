//! Plugin-to-plugin calls (contract 0.2): what a manifest declares, what a
//! tenant grants, and what every call carries down its chain.
//!
//! A plugin declares each operation it calls on another plugin
//! (`[[calls]]`) and the operations it offers to other plugins
//! (`[offers]`); the tenant grants calls at enable time like capabilities
//! ([`Grants::calls`](crate::Grants::calls)). `plugins.call` (in
//! `capabilities/plugins.rs`) runs the callee inside the caller's
//! transaction, behind a savepoint, with the callee's own activation.
//!
//! ```toml
//! [[calls]]
//! plugin = "rewards"
//! operation = "spendPoints"
//!
//! [offers]
//! operations = ["reserveStock"]
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SUPPORTED_WIT_VERSIONS;
use crate::manifest::{Manifest, is_name, is_operation};

/// How deeply invocations may nest inside one call from a client, a
/// schedule or the outbox: plugin calls and sync event deliveries count
/// alike (a call made by a sync subscriber runs one level below it). Depth
/// 0 is the outermost invocation; one at depth 4 can neither call another
/// plugin (`CALL_TOO_DEEP`) nor deliver an event to a sync subscriber
/// (`EVENT_LOOP`). So a chain holds at most five plugins.
pub const MAX_DEPTH: u8 = 4;

/// The refusal of a call to a plugin already on the call chain.
pub const CALL_CYCLE: &str = "CALL_CYCLE";
/// The refusal of a call past [`MAX_DEPTH`].
pub const CALL_TOO_DEEP: &str = "CALL_TOO_DEEP";

/// The share of its remaining time a caller keeps for itself when it
/// calls a plugin (one in 4): the callee must end by the other three
/// quarters, so that the caller can still handle a callee that ran out of
/// time, and a whole chain ends within the outermost call's deadline. (A
/// fraction of what remains, not of the deadline, so a chain of five still
/// leaves the innermost plugin about a third of it.)
pub const CALLER_KEEPS_ONE_IN: u32 = 4;

/// A callee is not started with less time than this.
const MIN_CALLEE_TIME: Duration = Duration::from_millis(10);

/// At most this many `[[calls]]`, and this many offered operations.
const MAX_DECLARED: usize = 64;

/// One operation of another plugin: a call a manifest declares, or one a
/// tenant granted. Written `plugin.operation` (`rewards.spendPoints`) in
/// GraphQL and in messages.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct PluginCall {
    /// The callee's name (as in its manifest).
    pub plugin: String,
    /// An operation the callee offers (its `[offers] operations`).
    pub operation: String,
}

impl PluginCall {
    pub fn new(plugin: impl Into<String>, operation: impl Into<String>) -> PluginCall {
        PluginCall {
            plugin: plugin.into(),
            operation: operation.into(),
        }
    }

    /// Itself, or why a part is not a valid name.
    fn checked(self) -> Result<PluginCall, String> {
        if !is_name(&self.plugin, 40) || self.plugin.contains('_') {
            return Err(format!(
                "{:?} is not a plugin name (2-40 characters of a-z, 0-9 and '-')",
                self.plugin
            ));
        }
        if !is_operation(&self.operation) {
            return Err(format!(
                "{:?} is not an operation name (1-64 characters of A-Z, a-z, 0-9, '_' and '-')",
                self.operation
            ));
        }
        Ok(self)
    }
}

impl fmt::Display for PluginCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.plugin, self.operation)
    }
}

/// Parses `plugin.operation`, e.g. `rewards.spendPoints`.
impl FromStr for PluginCall {
    type Err = String;

    fn from_str(s: &str) -> Result<PluginCall, String> {
        let (plugin, operation) = s
            .split_once('.')
            .ok_or_else(|| format!("{s:?} is not a call; write plugin.operation"))?;
        PluginCall::new(plugin, operation)
            .checked()
            .map_err(|e| format!("{s:?}: {e}"))
    }
}

/// The operations a plugin offers to other plugins of the same tenant
/// (`[offers]`). Offered operations are not on GraphQL unless the SDL also
/// has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Offers {
    /// Names of operations its handler serves, callable by a plugin that
    /// declares the call and was granted it.
    #[serde(default)]
    pub operations: Vec<String>,
}

impl Offers {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }
}

impl Manifest {
    /// Whether another plugin may call `operation` of this one.
    pub fn offers(&self, operation: &str) -> bool {
        self.offers.operations.iter().any(|o| o == operation)
    }

    /// Whether this plugin declares that it calls `operation` of `plugin`.
    pub fn declares_call(&self, plugin: &str, operation: &str) -> bool {
        self.calls
            .iter()
            .any(|c| c.plugin == plugin && c.operation == operation)
    }
}

/// Checks `[[calls]]` and `[offers]`: valid names, none twice, no call to
/// itself, and only from contract 0.2.0 on.
pub(crate) fn validate(m: &Manifest) -> Result<(), String> {
    let since = keel_contract::WIT_0_2_0;
    let position = |v: &str| SUPPORTED_WIT_VERSIONS.iter().position(|s| *s == v);
    if position(&m.wit) < position(since) {
        let field = if !m.calls.is_empty() {
            Some("calls")
        } else if !m.offers.is_empty() {
            Some("offers")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(format!(
                "{field}: plugin-to-plugin calls need keel:plugin@{since} or later; this manifest is for keel:plugin@{}",
                m.wit
            ));
        }
    }
    if m.calls.len() > MAX_DECLARED {
        return Err(format!("calls: at most {MAX_DECLARED}"));
    }
    let mut seen = BTreeSet::new();
    for c in &m.calls {
        let c = c.clone().checked().map_err(|e| format!("calls: {e}"))?;
        if c.plugin == m.name {
            return Err(format!(
                "calls: {c}: a plugin does not call itself; call the function directly"
            ));
        }
        if !seen.insert(c.clone()) {
            return Err(format!("calls: {c} is declared twice"));
        }
    }
    if m.offers.operations.len() > MAX_DECLARED {
        return Err(format!("offers.operations: at most {MAX_DECLARED}"));
    }
    let mut seen = BTreeSet::new();
    for o in &m.offers.operations {
        if !is_operation(o) {
            return Err(format!(
                "offers.operations: {o:?} must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
            ));
        }
        if !seen.insert(o) {
            return Err(format!("offers.operations: {o:?} is declared twice"));
        }
    }
    Ok(())
}

/// Refuses granted calls that the manifest does not declare, naming the
/// first.
pub(crate) fn check_grants(granted: &BTreeSet<PluginCall>, m: &Manifest) -> Result<(), String> {
    match granted
        .iter()
        .find(|c| !m.declares_call(&c.plugin, &c.operation))
    {
        Some(c) => Err(format!("grants: {} declares no call to {c}", m.name)),
        None => Ok(()),
    }
}

/// What an invocation passes on to the plugins it calls (and to the sync
/// subscribers of the events it emits): the plugins above it on the chain,
/// for cycle detection, and the original caller, whom every callee sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallChain {
    /// The plugins whose invocations enclose this one, outermost first.
    pub(crate) plugins: Vec<String>,
    pub(crate) caller: Option<String>,
    pub(crate) client_address: Option<String>,
    pub(crate) scope: Option<String>,
    /// The original client's master-data rights
    /// ([`crate::CallContext::caller_rights`]); every plugin on the chain is
    /// held to them.
    pub(crate) caller_rights: Option<crate::CallerRights>,
    /// The instant the invocation must end by: its own end, in its state;
    /// the end its caller allows, in a plugin call's environment, and the
    /// emitter's end, in a sync subscriber's.
    pub(crate) deadline: Option<Instant>,
}

impl CallChain {
    /// The chain of an operation called by a client or a schedule.
    pub(crate) fn root(ctx: &crate::CallContext) -> CallChain {
        CallChain {
            plugins: Vec::new(),
            caller: ctx.caller.clone(),
            client_address: ctx.client_address.clone(),
            scope: ctx.scope.clone(),
            caller_rights: ctx.caller_rights,
            deadline: None,
        }
    }

    /// The chain below `plugin`'s invocation, ending when it ends: a sync
    /// subscriber of its events gets no more than what is left of it (so
    /// that delivering a batch of events to subscribers that emit more
    /// cannot outrun the emitter's deadline); a callee gets less, the end
    /// its caller sets.
    pub(crate) fn below(&self, plugin: &str) -> CallChain {
        let mut next = self.clone();
        next.plugins.push(plugin.to_owned());
        next
    }

    /// How long an invocation on this chain may run: the host's
    /// `deadline`, or less when its caller must end sooner.
    pub(crate) fn time_left(&self, deadline: Duration) -> Duration {
        match self.deadline {
            None => deadline,
            Some(end) => end.saturating_duration_since(Instant::now()).min(deadline),
        }
    }

    /// The end a callee gets: all but one in [`CALLER_KEEPS_ONE_IN`] of
    /// the time this invocation has left; `None` when that is too little.
    pub(crate) fn callee_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let left = self.deadline?.saturating_duration_since(now);
        let callee = left - left / CALLER_KEEPS_ONE_IN;
        (callee >= MIN_CALLEE_TIME).then_some(now + callee)
    }

    /// Whether `plugin` is already on the chain.
    pub(crate) fn holds(&self, plugin: &str) -> bool {
        self.plugins.iter().any(|p| p == plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_written_plugin_dot_operation() {
        let c: PluginCall = "rewards.spendPoints".parse().unwrap();
        assert_eq!(c, PluginCall::new("rewards", "spendPoints"));
        assert_eq!(c.to_string(), "rewards.spendPoints");
        for bad in [
            "rewards",
            "Rewards.spendPoints",
            "rewards.",
            ".op",
            "r.op",
            "a_b.op",
        ] {
            let e = bad.parse::<PluginCall>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        // The operation may not hold a dot: the first one splits.
        assert!("rewards.spend.points".parse::<PluginCall>().is_err());
    }

    #[test]
    fn a_callee_ends_before_its_caller_keeping_a_quarter_for_it() {
        let second = Duration::from_secs(1);
        let root = CallChain::default();
        assert_eq!(root.time_left(second), second);
        assert_eq!(root.callee_deadline(), None, "no end, no callee end");
        let caller = CallChain {
            deadline: Some(Instant::now() + 4 * second),
            ..CallChain::default()
        };
        let callee = CallChain {
            deadline: caller.callee_deadline(),
            ..caller.below("caller")
        };
        assert!(callee.time_left(10 * second) <= 3 * second);
        assert!(callee.time_left(10 * second) > 2 * second);
        assert!(callee.time_left(Duration::from_millis(1)) <= Duration::from_millis(1));
        let spent = CallChain {
            deadline: Some(Instant::now() + Duration::from_millis(5)),
            ..CallChain::default()
        };
        assert_eq!(spent.callee_deadline(), None, "too little left");
        assert_eq!(
            caller.below("x").deadline,
            caller.deadline,
            "a sync subscriber ends when its emitter does"
        );
    }

    #[test]
    fn the_chain_remembers_who_is_above() {
        let root = CallChain::default();
        let below = root.below("shop").below("rewards");
        assert!(below.holds("shop") && below.holds("rewards"));
        assert!(!root.holds("shop"));
        assert_eq!(below.plugins, ["shop", "rewards"]);
    }
}
