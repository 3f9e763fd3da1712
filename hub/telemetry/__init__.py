"""Telemetry: the sinks (SQLite, InfluxDB) that car telemetry and ingest points go to, and the
ingest counters with their Prometheus collector."""
