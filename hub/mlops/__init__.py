"""The MLOps policies of the hub: model monitoring (drift and degradation) from the cars' telemetry."""
