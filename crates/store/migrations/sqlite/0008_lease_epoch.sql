-- Fencing: a lease's epoch grows each time another holder takes it (a release keeps the row, so
-- the count never restarts). Whoever acts under a lease carries the epoch it was given, and the
-- ledger transaction checks it: an instance that stalled past its lease and lost it to another
-- can no longer record deliveries. Keep in step with ../postgres/0008_lease_epoch.sql.
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
