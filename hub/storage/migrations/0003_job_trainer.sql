-- The trainer (broker identity) that took a job: the first to report on it. Reports from any other
-- trainer for that job are refused.
ALTER TABLE jobs ADD COLUMN trainer TEXT;
