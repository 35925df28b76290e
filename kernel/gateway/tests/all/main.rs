//! keel-gateway's integration tests: a real kernel on an ephemeral port,
//! called over real HTTP, on SQLite and on PostgreSQL.

mod support;

mod api_keys;
mod counters;
mod cross_tenant;
mod events;
mod files;
mod http;
mod limits;
mod operators;
mod pages;
mod permissions;
mod persons;
mod plugins;
mod sdl;
mod tenants;
