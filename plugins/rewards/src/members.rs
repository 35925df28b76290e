//! Member facts from the `cdp` plugin: the tier (with its points
//! multiplier) and segment membership a campaign's `tier` and `segment`
//! rules and its `tierMultiplier` read.
//!
//! Asked once per claim, through a plugin-to-plugin call inside the
//! claim's transaction (`[[calls]]` in the manifest, granted by the tenant
//! as `cdp.memberFacts`), and only when an open campaign needs it: a
//! claim whose campaigns read none of it costs nothing more. When the call
//! is not granted, or `cdp` is not enabled, the person has no member facts
//! (no `tier` or `segment` rule holds, the multiplier is 1, the blocklist
//! is not checked) and a warning is logged; a campaign that reads them
//! cannot be saved in that state.
//!
//! With `honour_blocklist` in the tenant's config every claim with a
//! person asks, and a blocked person's claim is `BLOCKED` in every
//! campaign that judges it.

use keel_rewards_core::rules::Member;
use keel_sdk::{Error, Result, log, plugins};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Facts {
    tier: Option<String>,
    #[serde(default)]
    segments: Vec<String>,
    multiplier_hundredths: u32,
    #[serde(default)]
    blocked: bool,
}

/// What a claim learns of its person from the CDP.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    pub member: Member,
    /// The tier's points multiplier, in hundredths.
    pub multiplier: u32,
    pub blocked: bool,
}

/// The person's member facts (membership only of `segments`), points
/// multiplier and block; `None` when the CDP cannot be asked.
pub(crate) fn ask(person: &str, segments: &[String]) -> Result<Option<Asked>> {
    // The CDP answers about at most 100 segments by name; beyond that,
    // every segment the person is in.
    let named = (segments.len() <= 100).then_some(segments);
    let asked = plugins::call::<_, Facts>(
        "cdp",
        "memberFacts",
        &json!({"personId": person, "segments": named}),
    );
    match asked {
        Ok(f) => Ok(Some(Asked {
            member: Member {
                tier: f.tier,
                segments: f.segments,
            },
            multiplier: f.multiplier_hundredths.clamp(100, 1000),
            blocked: f.blocked,
        })),
        Err(Error::Denied(m) | Error::NotFound(m)) => {
            log::warn(&format!(
                "member facts of {person} unavailable ({m}): tier and segment rules do not hold, the blocklist is not checked"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Refuses to save a campaign that reads member facts the CDP cannot give.
pub(crate) fn check_available() -> Result<()> {
    // A person id that names nobody: the CDP answers not-found for the
    // person, after the kernel has checked the call is declared, granted
    // and offered.
    match plugins::call::<_, serde_json::Value>("cdp", "memberFacts", &json!({"personId": "-"})) {
        Ok(_) => Ok(()),
        Err(Error::NotFound(m)) if m.starts_with("personId") => Ok(()),
        Err(Error::Denied(m)) => Err(Error::invalid(format!(
            "rule: tier, segment and tierMultiplier ask the cdp plugin, and this tenant did not grant rewards the call cdp.memberFacts ({m}); grant it with upgradePlugin(name: \"rewards\", version: its version, capabilities: its capabilities, calls: [\"cdp.memberFacts\"])"
        ))),
        Err(Error::NotFound(m)) => Err(Error::invalid(format!(
            "rule: tier, segment and tierMultiplier ask the cdp plugin, which is not enabled for this tenant ({m})"
        ))),
        Err(e) => Err(e),
    }
}
