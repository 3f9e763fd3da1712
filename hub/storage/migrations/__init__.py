"""SQL migrations of the hub catalog, applied in order of their number (``PRAGMA user_version``)."""
