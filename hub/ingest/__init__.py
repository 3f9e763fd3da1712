"""Ingest: the MQTT client, the acknowledgement tracker, and the receiver that checks each message
and hands frames to the write-ahead spool and telemetry to the sinks."""
