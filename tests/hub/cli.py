"""``paddock car …`` and ``paddock hub …`` with only those commands registered: the same commands
as the installed ``paddock``, without importing every other one. The full command line imports
torch (``paddock hub smoke-test``'s module imports deploy.smoke, which imports the trainer agent):
seconds of CPU per start on a loaded test machine, and 200 MB in the hub's memory where the soak
measures it; a car has no torch, so there ``paddock`` is as quick.

    python -m tests.hub.cli car run --config car.toml
    python -m tests.hub.cli hub serve --config hub.toml
"""

import typer

from deploy.commands import car, hub

app = typer.Typer(name="paddock", add_completion=False)
car.register(app)
hub.register(app)

if __name__ == "__main__":
    app(prog_name="paddock")
