"""Composition root: the ``paddock`` command, the embedded stack and the demo, service files."""
