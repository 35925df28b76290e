//! keel-plugins' integration tests: the bundled first-party plugins in a
//! real kernel, over real HTTP, on SQLite and on PostgreSQL.

mod support;

mod calls;
mod cdp;
mod cdp_attacks;
mod cdp_erasure;
mod cdp_history;
mod cdp_members;
mod cdp_rewards;
mod cdp_segments;
mod cdp_tracker;
mod codes;
mod codes_upgrade;
mod page;
mod refusals;
mod rewards;
mod scopes;
mod story;
