-- The organisation tree (One Meta): headquarters, sales regions,
-- distributors, stores and warehouses, their brand codes and external ids,
-- and the staff attached to them; and the org node an API key or an
-- operator may be limited to. PostgreSQL dialect; keep in step with ../sqlite.

-- One node. `path` is the materialised path of ids from the root down to the
-- node itself, each followed by '/' (`org_a/org_b/`): the subtree of a node
-- with path P is the index range [P, P with its last '/' replaced by '0'),
-- so "is X within Y" and "everything under Y" are one indexed comparison.
-- `depth` is the number of ancestors (a root has 0). Ids are the kernel's
-- (`org_` and 32 lower-case hex digits), so a path never holds a '/' or any
-- character below '0' except its separators. A region's boundary is a
-- validated GeoJSON Polygon or MultiPolygon with its bounding box beside it
-- (`min_lat`…`max_lng`) for the point-in-region query. Nodes are never
-- deleted, only made inactive. `path` and `code` compare bytewise
-- (COLLATE "C") whatever the database's collation: the path range means
-- "under", and pages in code order are the same on both backends.
CREATE TABLE org_nodes (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL
        CHECK (kind IN ('headquarters', 'region', 'distributor', 'store', 'warehouse')),
    code        TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    parent_id   TEXT REFERENCES org_nodes(id),
    path        TEXT COLLATE "C" NOT NULL,
    depth       BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    address     TEXT,
    lat         DOUBLE PRECISION,
    lng         DOUBLE PRECISION,
    boundary    TEXT,
    min_lat     DOUBLE PRECISION,
    min_lng     DOUBLE PRECISION,
    max_lat     DOUBLE PRECISION,
    max_lng     DOUBLE PRECISION,
    attributes  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, code)
);
CREATE INDEX org_nodes_children ON org_nodes (tenant_id, parent_id, code);
CREATE UNIQUE INDEX org_nodes_path ON org_nodes (tenant_id, path);
CREATE INDEX org_nodes_kind ON org_nodes (tenant_id, kind, code);
CREATE INDEX org_nodes_boundary ON org_nodes (tenant_id, min_lat, max_lat)
    WHERE boundary IS NOT NULL;

-- A node's ids in other systems: one per system and node, and each
-- (system, id) names one node of the tenant.
CREATE TABLE org_external_ids (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    system       TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    node_id      TEXT NOT NULL REFERENCES org_nodes(id),
    PRIMARY KEY (tenant_id, system, external_id),
    UNIQUE (node_id, system)
);

-- People working at a node with a role (guide, salesperson, manager…).
CREATE TABLE org_staff (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    node_id     TEXT NOT NULL REFERENCES org_nodes(id),
    person_id   TEXT NOT NULL REFERENCES persons(id),
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, node_id, person_id, role)
);
CREATE INDEX org_staff_person ON org_staff (tenant_id, person_id);

-- One row per tenant whose tree was ever written: every batch of tree
-- writes takes this row's lock first, so moves, cycle checks and path
-- rewrites of one tenant never interleave (PostgreSQL; SQLite has one
-- writer anyway). `version` counts those batches.
CREATE TABLE org_trees (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    version    BIGINT NOT NULL
);

-- "HQ sets the rules, regions spend": a credential limited to an org node
-- acts only at or under it (NULL: the whole tenant).
ALTER TABLE api_keys ADD COLUMN org_scope TEXT REFERENCES org_nodes(id);
ALTER TABLE operators ADD COLUMN org_scope TEXT REFERENCES org_nodes(id);

-- Who may read and write the tree and its staff. Owners have everything
-- already; an ERP's integration key still needs a scope such as `org:write`.
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'admin',       '*', 'org', '*'),
    ('p', 'marketer',    '*', 'org', 'read'),
    ('p', 'analyst',     '*', 'org', 'read'),
    ('p', 'integration', '*', 'org', '*');
