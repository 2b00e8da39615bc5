-- Console sessions, shared by every receiver on the database. The browser's cookie holds a random id; only
-- a keyed hash of it is stored (HMAC with a key derived from the API token), so a reader of this table
-- cannot use a session. A session ends at logout (its row is deleted), after --session-idle without use
-- (last_seen) or --session-lifetime after its login (created_at); expired rows are deleted as they are found
-- and periodically.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_creation ON console_sessions (created_at);
CREATE INDEX console_sessions_by_use ON console_sessions (last_seen);
