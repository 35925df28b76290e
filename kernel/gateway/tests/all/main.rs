//! keel-gateway's integration tests: a real kernel on an ephemeral port,
//! called over real HTTP, on SQLite and on PostgreSQL.

mod support;

mod admission;
mod api_keys;
mod audit;
mod consumers;
mod counters;
mod cross_tenant;
mod events;
mod files;
mod graphiql;
mod http;
mod limits;
mod operators;
mod pages;
mod permissions;
mod persons;
mod plugin_output;
mod plugins;
mod sdl;
mod tenants;
