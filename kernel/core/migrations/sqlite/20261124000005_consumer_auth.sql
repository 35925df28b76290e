-- Keep in step with ../postgres.
-- Consumers' identity: each tenant's WeChat official-account app for web
-- authorization (网页授权). The app secret is sealed under the master key
-- (`keel-sealed:v1:…`), never stored in plain text.
CREATE TABLE tenant_wechat_apps (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    app_id      TEXT NOT NULL,
    app_secret  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);

-- Who may configure consumer sign-in (`consumerauth`): owners (through
-- their `*` rule) and admins; marketers may see whether it is configured.
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'admin',    '*', 'consumerauth', '*'),
    ('p', 'marketer', '*', 'consumerauth', 'read');
