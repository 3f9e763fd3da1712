"""The fleet's broker identities: who may connect, and what each may publish and subscribe.

- :mod:`deploy.fleet.passwords` — Mosquitto's PBKDF2-SHA512 (``$7$``) password hashes.
- :mod:`deploy.fleet.identities` — the identity store (cars, trainers, operators, hubs).
- :mod:`deploy.fleet.acl` — the access matrix, one function both brokers enforce.
- :mod:`deploy.fleet.mosquitto` — Mosquitto's password and ACL files from the store.
- :mod:`deploy.fleet.bundles` — per-identity credentials bundles for provisioning.
- :mod:`deploy.fleet.tls` — a fleet CA and the broker's and clients' certificates.
"""
