-- Built-in roles as casbin policy rules: p, role, domain, object, action.
-- Domain '*' applies in every tenant; 'platform' is the platform's own domain.
-- Object and action '*' match anything. Tenants may add rules for their own
-- domain (their tenant id); these rows are data, not code.
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'platform',    'platform', 'tenants',   '*'),
    ('p', 'owner',       '*', '*',         '*'),
    ('p', 'admin',       '*', 'apikeys',   '*'),
    ('p', 'admin',       '*', 'operators', '*'),
    ('p', 'admin',       '*', 'persons',   '*'),
    ('p', 'admin',       '*', 'events',    '*'),
    ('p', 'admin',       '*', 'counters',  '*'),
    ('p', 'admin',       '*', 'records',   '*'),
    ('p', 'marketer',    '*', 'persons',   '*'),
    ('p', 'marketer',    '*', 'events',    '*'),
    ('p', 'marketer',    '*', 'counters',  '*'),
    ('p', 'marketer',    '*', 'records',   '*'),
    ('p', 'analyst',     '*', 'persons',   'read'),
    ('p', 'analyst',     '*', 'events',    'read'),
    ('p', 'analyst',     '*', 'counters',  'read'),
    ('p', 'analyst',     '*', 'records',   'read'),
    ('p', 'integration', '*', 'persons',   '*'),
    ('p', 'integration', '*', 'events',    '*'),
    ('p', 'integration', '*', 'counters',  '*'),
    ('p', 'integration', '*', 'records',   '*');
