-- The detector: a second model slot on every car. A deployment action is for one slot of its
-- target (rows from before are the pilot's); a car's detector reports its own ModelState.
ALTER TABLE deployments ADD COLUMN slot TEXT NOT NULL DEFAULT 'pilot' CHECK (slot IN ('pilot', 'detector'));
CREATE INDEX deployments_slot ON deployments (target_kind, target, slot, id);
ALTER TABLE cars ADD COLUMN detector_state TEXT;
