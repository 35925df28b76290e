-- The product catalogue (One Meta), SQLite dialect. Keep in step with
-- ../postgres. Owned by the kernel, read by every plugin; see
-- docs/catalog.md. Codes compare byte by byte (SQLite's BINARY collation;
-- COLLATE "C" on PostgreSQL), so listings page in the same order on both.

-- Products (SPU). `code` is the brand's own, unique in the tenant.
CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    category    TEXT,
    unit        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    attributes  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Bumped when the product or one of its SKUs changes.
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, code)
);

-- SKUs. `code` is unique in the tenant; `gtin` (14 digits, zero-padded,
-- check digit verified) is unique in the tenant when present.
CREATE TABLE skus (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    product_id  TEXT NOT NULL REFERENCES products(id),
    code        TEXT NOT NULL,
    gtin        TEXT,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    attributes  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, code),
    UNIQUE (tenant_id, gtin)
);
CREATE INDEX skus_product ON skus (tenant_id, product_id, code);

-- Ids of products (kind 'product') and SKUs (kind 'sku') in other systems
-- (an ERP, a mall): one owner per (tenant, kind, system, id).
CREATE TABLE catalog_external_ids (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    kind         TEXT NOT NULL CHECK (kind IN ('product', 'sku')),
    external_id  TEXT NOT NULL,
    system       TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, kind, external_id, system)
);
CREATE INDEX catalog_external_ids_owner ON catalog_external_ids (tenant_id, owner_id);

-- Who may read and write the catalogue (object `catalog`): owners (through
-- their `*` rule), admins and integration keys (narrowed by scopes such as
-- `catalog:read`) read and write; marketers and analysts read.
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'admin',       '*', 'catalog', '*'),
    ('p', 'marketer',    '*', 'catalog', 'read'),
    ('p', 'analyst',     '*', 'catalog', 'read'),
    ('p', 'integration', '*', 'catalog', '*');
