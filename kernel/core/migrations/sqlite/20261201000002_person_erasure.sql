-- Erasure of a person (China's PIPL, the GDPR's right to erasure): the
-- person's row stays, as the opaque id other records point at, with no
-- identifier and no attribute; `erased_at` says when. Each erasure leaves
-- an audit record without personal data. Erasing is its own right
-- (`privacy`): admins and owners hold it, marketers and integrations not.
ALTER TABLE persons ADD COLUMN erased_at BIGINT;
CREATE TABLE person_erasures (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    person_id    TEXT NOT NULL,
    persons      BIGINT NOT NULL,
    identifiers  BIGINT NOT NULL,
    events       BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX person_erasures_tenant ON person_erasures (tenant_id, created_at);
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES ('p', 'admin', '*', 'privacy', '*');
