-- The link registry. One schema for SQLite and PostgreSQL: only TEXT and BIGINT columns (times are Unix
-- milliseconds, flags 0/1, JSON as TEXT), so the same statements run on both engines.

-- One row per link, keyed on the custom resource's PhysicalResourceId. It always reflects the newest event
-- (by the event's own timestamp) that reached it; older events arriving late only go into `events`.
CREATE TABLE links (
    link_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    partition_name TEXT NOT NULL,
    region TEXT NOT NULL,
    stack_id TEXT NOT NULL,
    logical_resource_id TEXT NOT NULL,
    state TEXT NOT NULL,
    external_id TEXT,
    roles TEXT NOT NULL,
    regions TEXT NOT NULL,
    vpc_id TEXT,
    vpc_count BIGINT NOT NULL,
    subnet_count BIGINT NOT NULL,
    route_table_count BIGINT NOT NULL,
    inventory_complete BIGINT NOT NULL,
    caller_arn TEXT,
    linked_at BIGINT,
    updated_at BIGINT NOT NULL,
    unlinked_at BIGINT,
    last_event_at BIGINT NOT NULL,
    last_event_id TEXT NOT NULL
);
CREATE INDEX links_by_account ON links (account_id);
CREATE INDEX links_by_update ON links (updated_at, link_id);

-- The newest complete inventory of each link: the event that carried it, and its body only when no single
-- delivery holds it (a split event, put back together). Otherwise the inventory is the one in that event's
-- stored body (events.webhook_id = event_id), which is not written twice.
CREATE TABLE inventories (
    link_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_at BIGINT NOT NULL,
    body TEXT
);

-- Every accepted delivery, exactly once: the primary key is the webhook-id, which is how a retried or
-- concurrent delivery of the same event is recognised, across restarts and receivers.
CREATE TABLE events (
    webhook_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    link_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    part_index BIGINT,
    part_count BIGINT,
    part_set TEXT,
    caller_arn TEXT,
    body TEXT NOT NULL
);
CREATE INDEX events_by_link ON events (link_id, event_at);
CREATE INDEX events_by_event ON events (event_id, part_set);

-- How many parts of a split event have arrived. The row is updated (and so locked) by every part, so of
-- two receivers storing the last two parts at once exactly one sees the set complete and reassembles it.
CREATE TABLE part_sets (
    event_id TEXT NOT NULL,
    part_set TEXT NOT NULL,
    part_count BIGINT NOT NULL,
    received BIGINT NOT NULL,
    PRIMARY KEY (event_id, part_set)
);
