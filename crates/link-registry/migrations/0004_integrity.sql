-- What an event may claim, and how much any one account may make the registry store (issue 17). Every
-- change is additive, so a receiver of the previous release keeps working against this schema during a
-- rolling upgrade.

-- Split events: the digest of the envelope every part must carry unchanged (the first part's), and the
-- bytes the set's parts hold so far (capped, link_contract::parts::MAX_SET_BYTES).
ALTER TABLE part_sets ADD COLUMN envelope TEXT;
ALTER TABLE part_sets ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;

-- Deliveries that were proven (or signed) but conflict with the link they name: another stack's or
-- account's link id. Kept apart, with the reason, for the provider's operators; never applied.
CREATE TABLE rejected_events (
    webhook_id TEXT PRIMARY KEY,
    link_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    caller_arn TEXT,
    reason TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX rejected_by_link ON rejected_events (link_id, received_at);
CREATE INDEX rejected_by_arrival ON rejected_events (received_at);

-- A console request connects the first account that names its external id (several, for a request made
-- for StackSets: any account, or only the expected ones). Every link it connected is in request_links.
ALTER TABLE link_requests ADD COLUMN account_id TEXT;
ALTER TABLE link_requests ADD COLUMN multi_account BIGINT NOT NULL DEFAULT 0;
ALTER TABLE link_requests ADD COLUMN expected_accounts TEXT;
CREATE TABLE request_links (
    link_id TEXT PRIMARY KEY,
    external_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    connected_at BIGINT NOT NULL
);
CREATE INDEX request_links_by_request ON request_links (external_id);
INSERT INTO request_links (link_id, external_id, account_id, connected_at)
    SELECT r.link_id, r.external_id, l.account_id, COALESCE(r.connected_at, 0)
    FROM link_requests r JOIN links l ON l.link_id = r.link_id;
UPDATE link_requests SET account_id = (SELECT l.account_id FROM links l WHERE l.link_id = link_requests.link_id)
    WHERE link_id IS NOT NULL;

-- Per-account quotas: events and bytes stored in each hour (Unix milliseconds / 3 600 000).
CREATE TABLE account_usage (
    account_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    events BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (account_id, hour)
);

-- /healthz commits a heartbeat through the writer: proof that the store can still commit.
CREATE TABLE heartbeat (
    receiver TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
