//! keel-host's tests: real components compiled from source, a real database.

mod support;

mod abuse;
mod calls;
mod contract;
mod crypto;
mod described_events;
mod isolation;
mod manifest;
mod master_data;
mod outbox;
mod resources;
mod schedules;
mod secrets;
mod transactions;
mod versions;
mod warmup;
