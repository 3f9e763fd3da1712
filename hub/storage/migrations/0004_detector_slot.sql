-- The detector: a second model slot on every car. A deployment action is for one slot of its
-- target (rows from before are the pilot's); a car's detector reports its own ModelState.
ALTER TABLE deployments ADD COLUMN slot TEXT NOT NULL DEFAULT 'pilot' CHECK (slot IN ('pilot', 'detector'));
CREATE INDEX deployments_slot ON deployments (target_kind, target, slot, id);
ALTER TABLE cars ADD COLUMN detector_state TEXT;

-- Both slots of a target share its signing sequence (model_sequences), but each slot's envelope
-- expires on its own, so each is refreshed before it does. Envelopes signed before were pilots.
CREATE TABLE model_slot_expiries (
    target_kind    TEXT NOT NULL CHECK (target_kind IN ('car', 'group')),
    target         TEXT NOT NULL,
    slot           TEXT NOT NULL CHECK (slot IN ('pilot', 'detector')),
    expires        REAL NOT NULL,
    PRIMARY KEY (target_kind, target, slot)
);
INSERT INTO model_slot_expiries (target_kind, target, slot, expires)
    SELECT target_kind, target, 'pilot', expires FROM model_sequences;
