//! keel-gateway's integration tests: a real kernel on an ephemeral port,
//! called over real HTTP, on SQLite and on PostgreSQL.

mod support;

mod admission;
mod api_keys;
mod audit;
mod batches;
mod catalog;
mod consumers;
mod counters;
mod cross_tenant;
mod event_types;
mod events;
mod files;
mod graphiql;
mod http;
mod kernel;
mod limits;
mod operators;
mod org;
mod org_scope;
mod packages;
mod pages;
mod permissions;
mod persons;
mod plugin_output;
mod plugins;
mod schedules;
mod sdl;
mod tenants;
