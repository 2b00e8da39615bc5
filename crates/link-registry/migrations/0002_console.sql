-- The console: links a provider's customer started ("pending" until the stack's account.linked event
-- names their external id), and the network each link's customer picked.

CREATE TABLE link_requests (
    external_id TEXT PRIMARY KEY,
    stack_name TEXT NOT NULL,
    region TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    link_id TEXT,
    connected_at BIGINT
);
CREATE INDEX link_requests_by_link ON link_requests (link_id);
CREATE INDEX link_requests_by_creation ON link_requests (created_at);

CREATE TABLE selections (
    link_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    vpc_id TEXT NOT NULL,
    subnet_ids TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The console asks "has anything arrived since?" every few seconds.
CREATE INDEX events_by_arrival ON events (received_at);
