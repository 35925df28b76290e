-- The plugin runtime's tables.

-- Kernel-wide settings and secrets (e.g. the key that authenticates the
-- compiled-plugin cache).
CREATE TABLE kernel_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Index of records by the top-level fields a plugin's manifest declares.
CREATE TABLE record_index (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    namespace   TEXT NOT NULL,
    collection  TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    key         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, collection, field, value, key)
);
CREATE INDEX record_index_key ON record_index (tenant_id, namespace, collection, key);

-- Plugin packages installed on the platform, one row per version.
CREATE TABLE plugins (
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    manifest        TEXT NOT NULL,
    component       BYTEA NOT NULL,
    component_hash  TEXT NOT NULL,
    installed_at    BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

-- Plugins enabled per tenant, with what the tenant granted and configured.
-- A disabled plugin keeps its row (and its data) with disabled_at set.
CREATE TABLE tenant_plugins (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    grants       TEXT NOT NULL,
    config       TEXT NOT NULL,
    enabled_at   BIGINT NOT NULL,
    disabled_at  BIGINT,
    PRIMARY KEY (tenant_id, name)
);

-- Bumped whenever a tenant's set of enabled plugins changes, so that every
-- kernel process rebuilds that tenant's GraphQL schema.
CREATE TABLE tenant_schema_versions (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    version    BIGINT NOT NULL
);

-- Secrets a tenant stores for a plugin.
CREATE TABLE plugin_secrets (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    plugin     TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, plugin, name)
);

-- The transactional outbox: one row per (event, async subscriber), written
-- in the emitting transaction, delivered at least once after commit.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    event_id         TEXT NOT NULL REFERENCES events(id),
    subscriber       TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL,
    last_error       TEXT,
    delivered_at     BIGINT,
    dead_at          BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (event_id, subscriber)
);
CREATE INDEX outbox_due ON outbox (delivered_at, dead_at, next_attempt_at);
