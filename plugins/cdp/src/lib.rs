//! Keel's first-party `cdp` plugin: member operations (会员经营).
//!
//! Written only against `keel-sdk`; the arithmetic (trait definitions and
//! their order-independent aggregates) lives in `keel-cdp-core`:
//!
//! - `ingest` — `cdpTrack` and `cdpIdentify`, batches resolved through One
//!   ID with bad items reported by index, once per batch id;
//! - `collect` — the browser tracker's script and its public `cdpCollect`;
//! - `track` — taking an event in, once per `{source}:{messageId}`, into
//!   the timeline and the computed traits;
//! - `sources` — `code.scanned` and `rewards.awarded` from their owners;
//! - `merge` — `person.merged`: profiles folded, a tombstone left;
//! - `erase` — `person.erased`: everything held of the person deleted;
//! - `definitions` — the tenant's computed traits, checked on save;
//! - `tags` — manual tags and their sizes;
//! - `history` — traits rebuilt from the timeline: segments' `event`
//!   leaves as hidden counts, and new or changed traits;
//! - `segments` — rules, membership kept with every profile write,
//!   preview and members; `recompute` — the full recompute, a page a step;
//! - `tiers` — the member-tier ladder, each profile's standing, history;
//! - `consent` — consent per purpose, its log, the consumer's own say;
//! - `facts` — `memberFacts`, offered to other plugins;
//! - `blocklist` — prize farmers blocked by hand or by a blocking segment;
//! - `exports` — files: a segment's audience as CSV, a person's data as
//!   JSON lines;
//! - `view` — the profile a marketer opens;
//! - `model` — the profile record and shared checks.

mod blocklist;
mod collect;
mod consent;
mod definitions;
mod erase;
mod exports;
mod facts;
mod history;
mod ingest;
mod merge;
mod model;
mod recompute;
mod segments;
mod sources;
mod tags;
mod tiers;
mod track;
mod view;

use keel_sdk::plugin;

plugin! {
    operations: {
        "cdpTraits" => definitions::list,
        "setCdpTraits" => definitions::set,
        "cdpTrack" => ingest::track,
        "cdpIdentify" => ingest::identify,
        "cdpProfile" => view::profile,
        "cdpTags" => tags::list,
        "tagPersons" => tags::tag,
        "untagPersons" => tags::untag,
        "cdpSegments" => segments::list,
        "saveSegment" => segments::save,
        "deleteSegment" => segments::delete,
        "previewSegment" => segments::preview,
        "segmentMembers" => segments::members,
        "recomputeSegments" => recompute::recompute,
        "cdpRecomputeJob" => recompute::get,
        "cdpTiers" => tiers::get,
        "setCdpTiers" => tiers::set,
        "setCdpConsent" => consent::set,
        "setMyCdpConsent" => consent::set_mine,
        "myCdpConsent" => consent::mine,
        "memberFacts" => facts::member_facts,
        "blockPersons" => blocklist::block,
        "blockIdentifiers" => blocklist::block_identifiers,
        "unblockPersons" => blocklist::unblock,
        "cdpBlocklist" => blocklist::list,
        "audienceChunk" => exports::audience_chunk,
        "personExportChunk" => exports::person_chunk,
        "cdpCollect" => collect::collect,
        "cdpTracker" => collect::stats,
        "page" => collect::page,
    },
    events: {
        "person.merged" => merge::on_merged,
        "code.scanned" => sources::on_event,
        "rewards.awarded" => sources::on_event,
        "cdp.recompute_step" => recompute::on_step,
        "person.erased" => erase::on_erased,
        "cdp.erase_step" => erase::on_step,
    },
}
