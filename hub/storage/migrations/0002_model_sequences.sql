-- The sequence of the last model envelope signed for each target, and when it expires: a car
-- refuses an envelope whose sequence is not above the last it accepted, or that has expired.
CREATE TABLE model_sequences (
    target_kind    TEXT NOT NULL CHECK (target_kind IN ('car', 'group')),
    target         TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    expires        REAL NOT NULL,
    PRIMARY KEY (target_kind, target)
);
