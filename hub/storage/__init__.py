"""Storage: the write-ahead spool and its seq sets, the sealer (in-process or its own process)
that turns spooled frames into shards in the object store, and the catalog (SQLite, migrations)."""
