"""Shared infrastructure every room may import: atomic files, the object store client, TOML config
loading and writing, SQLite connections, and the spool record format.

It imports only :mod:`schemas` and the standard library at import time; heavy clients (boto3) are
imported when first used, so the car can import it without the hub's or the trainer's dependencies.
See docs/architecture.md.
"""
