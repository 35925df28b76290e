-- One ID's lookups by person: without an index led by (tenant_id,
-- person_id), SQLite's planner answered "the identifiers of person P" from
-- the primary key's tenant_id prefix (the ORDER BY kind matches its next
-- column), reading every identifier of the tenant: a person's load grew
-- with the tenant's size. The covering index serves the load's join, the
-- identifiers' listing and a merge's move; the partial index serves the
-- lineage walk (persons merged into P), which scanned the tenant's persons.
DROP INDEX person_identifiers_person;
CREATE INDEX person_identifiers_person ON person_identifiers (tenant_id, person_id, kind, created_at, value);
CREATE INDEX persons_merged ON persons (tenant_id, merged_into) WHERE merged_into IS NOT NULL;
