-- Only the parts of split events are ever looked up by (event_id, part_set), to put them back together; a
-- whole event is found by its webhook-id. Indexing only the parts saves every whole event an insert into a
-- B-tree keyed on a random id (one more page written to the WAL per delivery, at any rate).
DROP INDEX events_by_event;
CREATE INDEX events_by_part ON events (event_id, part_set) WHERE part_set IS NOT NULL;
