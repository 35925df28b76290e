//! keel-host's tests: real components compiled from source, a real database.

mod support;

mod abuse;
mod contract;
mod isolation;
mod manifest;
mod outbox;
mod secrets;
