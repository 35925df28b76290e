//! keel-core's storage and concurrency tests, each on SQLite and PostgreSQL.

mod batches;
mod catalog;
mod counters;
mod events;
mod org;
mod org_scope;
mod person_plans;
mod persons;
mod plugins;
mod pools;
mod records;
mod schedules;
mod secrets;
mod writer;
