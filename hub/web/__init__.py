"""The operator's web app: static HTML, CSS and ES modules served by the hub at ``/`` (no build step).

The files live in ``hub/web/static``; :mod:`hub.api.routes.web` serves them and
:mod:`hub.api.routes.live` gives them their live state.
"""

from importlib.resources import files
from pathlib import Path

STATIC_DIR = Path(str(files("hub.web") / "static"))
