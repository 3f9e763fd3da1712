"""How paddock is distributed: the distribution's name and the install hint every error text uses.

The command is ``paddock``, but PyPI's ``paddock`` is an unrelated project, so the distribution is
``paddock-fleet``. Releases are wheels built by ``script/build`` (docs/install.md); a hint names the
wheel of the running version, so copying it installs the same paddock, never a stranger's package.
"""

from schemas import __version__

DISTRIBUTION = "paddock-fleet"
WHEEL_NAME = f"paddock_fleet-{__version__}-py3-none-any.whl"


def install_hint(extra: str) -> str:
    """``pip install './paddock_fleet-0.1.0-py3-none-any.whl[car]'`` and where the wheel comes from."""
    return f"pip install './{WHEEL_NAME}[{extra}]' (the wheel script/build makes; see docs/install.md)"
