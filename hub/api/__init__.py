"""The REST API: an app factory (:func:`hub.api.app.create_app`), response models, one router per
resource; its collaborators are passed in, so it never imports the service."""
