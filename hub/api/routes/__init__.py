"""One router per resource; :func:`hub.api.app.create_app` includes them all."""
