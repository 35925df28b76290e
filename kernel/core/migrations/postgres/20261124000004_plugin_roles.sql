-- Who may manage plugins (`plugins`) and call their operations
-- (`plugin.<name>`, matched by the `plugin.*` pattern; read = queries,
-- write = mutations). An integration key still needs a scope such as
-- `plugin.codes:read`.
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'platform',    'platform', 'packages', '*'),
    ('p', 'admin',       '*', 'plugins',   '*'),
    ('p', 'admin',       '*', 'plugin.*',  '*'),
    ('p', 'marketer',    '*', 'plugins',   'read'),
    ('p', 'marketer',    '*', 'plugin.*',  '*'),
    ('p', 'analyst',     '*', 'plugins',   'read'),
    ('p', 'analyst',     '*', 'plugin.*',  'read'),
    ('p', 'integration', '*', 'plugin.*',  '*');
