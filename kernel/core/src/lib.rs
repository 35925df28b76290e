#![doc = include_str!("../README.md")]

pub mod authz;
pub mod catalog;
pub mod consumers;
pub mod counters;
mod db;
mod error;
pub mod events;
pub mod identity;
pub mod master_data;
pub mod org;
pub mod outbox;
pub mod persons;
pub mod plugins;
pub mod records;
pub mod schedules;
pub mod sealing;
pub mod settings;
pub mod tenants;
mod time;

pub use db::{Backend, Conn, Db, DbOptions, Tx};
pub use error::{Error, Result};
pub use tenants::TenantId;
pub use time::{Timestamp, now};
