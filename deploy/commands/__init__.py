"""One module per room's subcommands; each defines ``register(app: typer.Typer)``."""
