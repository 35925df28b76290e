//! keel-core's storage and concurrency tests, each on SQLite and PostgreSQL.

mod counters;
mod events;
mod persons;
mod records;
mod secrets;
