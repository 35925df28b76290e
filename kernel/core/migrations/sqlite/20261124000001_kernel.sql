-- Keel kernel schema, SQLite dialect. Keep in step with ../postgres.
-- Times are microseconds since the Unix epoch (UTC); JSON is stored as TEXT.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- API keys of a tenant (tenant_id set) or of the platform (tenant_id NULL).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT REFERENCES tenants(id),
    name          TEXT NOT NULL,
    roles         TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL UNIQUE,
    secret_prefix TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE operators (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    email           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    roles           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    deactivated_at  BIGINT,
    UNIQUE (tenant_id, email)
);

CREATE TABLE operator_sessions (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    operator_id  TEXT NOT NULL REFERENCES operators(id),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- casbin rules (ptype, v0..v5), the authorization policy as data.
CREATE TABLE authz_rules (
    ptype TEXT NOT NULL,
    v0 TEXT NOT NULL DEFAULT '',
    v1 TEXT NOT NULL DEFAULT '',
    v2 TEXT NOT NULL DEFAULT '',
    v3 TEXT NOT NULL DEFAULT '',
    v4 TEXT NOT NULL DEFAULT '',
    v5 TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (ptype, v0, v1, v2, v3, v4, v5)
);

-- One ID
CREATE TABLE persons (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    attributes   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    merged_into  TEXT REFERENCES persons(id)
);
CREATE INDEX persons_tenant ON persons (tenant_id, created_at);

CREATE TABLE person_identifiers (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    person_id   TEXT NOT NULL REFERENCES persons(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
);
CREATE INDEX person_identifiers_person ON person_identifiers (person_id);

CREATE TABLE person_merges (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    survivor_id   TEXT NOT NULL REFERENCES persons(id),
    merged_id     TEXT NOT NULL REFERENCES persons(id),
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    identifiers   TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX person_merges_survivor ON person_merges (tenant_id, survivor_id);

-- One Data: the append-only event log. `tenant_seq` is the reading
-- position: handed out under a per-tenant row lock held to commit, so it
-- grows in commit order and a reader following it never skips an event.
CREATE TABLE event_heads (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    last_seq   BIGINT NOT NULL
);

CREATE TABLE events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_seq       BIGINT NOT NULL,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    type             TEXT NOT NULL,
    occurred_at      BIGINT NOT NULL,
    recorded_at      BIGINT NOT NULL,
    person_id        TEXT REFERENCES persons(id),
    payload          TEXT NOT NULL,
    idempotency_key  TEXT,
    producer         TEXT NOT NULL,
    UNIQUE (tenant_id, tenant_seq),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX events_tenant_type ON events (tenant_id, type, tenant_seq);
CREATE INDEX events_tenant_person ON events (tenant_id, person_id, tenant_seq);

-- One Data: records with optimistic versions, per namespace (a plugin) and collection.
CREATE TABLE records (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    namespace   TEXT NOT NULL,
    collection  TEXT NOT NULL,
    key         TEXT NOT NULL,
    version     BIGINT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, collection, key)
);

-- Counters with limits.
CREATE TABLE counters (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, key)
);

-- Remembered outcomes of counter additions made with an idempotency key.
CREATE TABLE counter_ops (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    namespace        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    key              TEXT NOT NULL,
    delta            BIGINT NOT NULL,
    outcome          BIGINT NOT NULL,
    applied          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, namespace, idempotency_key)
);
