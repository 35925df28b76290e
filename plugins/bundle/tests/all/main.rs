//! keel-plugins' integration tests: the bundled first-party plugins in a
//! real kernel, over real HTTP, on SQLite and on PostgreSQL.

mod support;

mod codes;
mod page;
mod refusals;
mod rewards;
mod story;
