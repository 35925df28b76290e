-- Scheduled jobs: a tenant's time zone, and one row per run of a plugin's
-- schedule at one tick.

-- The IANA time zone a tenant's schedules (and plugins' notion of "today")
-- follow; validated by the kernel with the tz database.
ALTER TABLE tenants ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'Asia/Shanghai';

-- One row per (tenant, plugin, schedule, tick): the unique key is the claim,
-- so a tick runs once however many kernel processes see it due. The row is
-- also the run's record: attempts, lease, retries and the dead letter.
-- status: running (leased to a process until locked_until), retrying
-- (waiting for next_attempt_at), succeeded, dead (out of attempts).
CREATE TABLE schedule_runs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    plugin           TEXT NOT NULL,
    schedule         TEXT NOT NULL,
    tick             BIGINT NOT NULL,
    operation        TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    dead_at          BIGINT,
    UNIQUE (tenant_id, plugin, schedule, tick)
);
CREATE INDEX schedule_runs_due ON schedule_runs (status, next_attempt_at);
CREATE INDEX schedule_runs_recent ON schedule_runs (tenant_id, tick);

-- Who may see schedules and replay their dead letters (`schedules`), and
-- change tenant-wide settings such as the time zone (`settings`): admins
-- (owners may do anything already).
INSERT INTO authz_rules (ptype, v0, v1, v2, v3) VALUES
    ('p', 'admin', '*', 'schedules', '*'),
    ('p', 'admin', '*', 'settings',  '*');
