-- A live link (issue 18): the provider assumes the roles a link's stack created, records whether it could,
-- and lists the account's networks itself (a refresh). Every change is additive, so a receiver of the
-- previous release keeps working against this schema during a rolling upgrade.

-- The newest role check of each role of a link: assumable (ok = 1) or refused, with AWS's error code and
-- message, and when.
CREATE TABLE role_checks (
    link_id TEXT NOT NULL,
    role_name TEXT NOT NULL,
    role_arn TEXT NOT NULL,
    ok BIGINT NOT NULL,
    error_code TEXT,
    message TEXT,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (link_id, role_name)
);

-- One row per link the registry refreshes: when the next scheduled refresh is due, and the lease of the
-- receiver doing one now. A receiver takes a lease only where none is held or it expired (a conditional
-- UPDATE), so of several receivers sharing the database exactly one refreshes a link at a time, and a
-- killed receiver's lease expires for another to take.
CREATE TABLE refreshes (
    link_id TEXT PRIMARY KEY,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    status TEXT,
    problem TEXT,
    runs BIGINT NOT NULL DEFAULT 0,
    -- The last refresh's changes against the inventory it replaced (JSON), when it stored one.
    changes TEXT
);
CREATE INDEX refreshes_by_due ON refreshes (due_at);

-- Whether a link's newest inventory came from a refresh (1) or from the stack's event (0). A refresh's
-- inventory is the body of the history entry it recorded (events.event_type = 'registry.refreshed').
ALTER TABLE inventories ADD COLUMN refreshed BIGINT NOT NULL DEFAULT 0;
