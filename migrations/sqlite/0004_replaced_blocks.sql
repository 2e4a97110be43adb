-- Block files that compaction or retention took out of the index and that are to be
-- deleted (after a grace period for searches already running over them). A file named
-- here is certainly superseded: startup deletes it instead of setting it aside as a
-- block the index does not know.
CREATE TABLE replaced_blocks (
    path TEXT PRIMARY KEY NOT NULL,
    replaced_unix_ms BIGINT NOT NULL
);
