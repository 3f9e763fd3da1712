"""``paddock serve MODEL``: a pilot model over HTTP (ONNX Runtime, micro-batched; see trainer/serve.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deploy.errors import UserError, classify

console = Console(stderr=True, soft_wrap=True)


def serve(
    model: Annotated[
        Path, typer.Argument(help="An ONNX model exported by paddock (its card is in the file).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for the LAN).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="Most requests answered by one call.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(min=0, max=1000, help="How long a request waits for others to batch with.")
    ] = 2.0,
    threads: Annotated[int, typer.Option(min=1, max=64, help="ONNX Runtime intra-op threads.")] = 1,
) -> None:
    """Serve MODEL over HTTP: POST an image (JPEG/PNG) to /predict, get steering and throttle.

    GET /card gives the model card, /docs and /openapi.json the API description, /stats the batching.
    """
    import uvicorn

    from trainer.serve import create_app

    if not model.is_file():
        raise UserError(f"{model}: no such file")
    try:
        app = create_app(model, max_batch=max_batch, max_wait_ms=max_wait_ms, threads=threads)
    except Exception as exc:  # onnxruntime raises its own types for a file that is not a model
        raise UserError(f"{model}: not a model paddock can serve ({str(exc).strip()[:200]})") from None
    console.print(f"serving {model} on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _main() -> int:
    """``python -m deploy.commands.serve MODEL``: without the other commands, errors reported alike."""
    command = typer.Typer(add_completion=False)
    command.command()(serve)
    try:
        command(standalone_mode=False)
    except Exception as exc:
        verdict = classify(exc, sys.argv[1:])
        if verdict is None:
            raise
        typer.echo(f"{'error' if verdict[0] == 2 else 'failed'}: {verdict[1]}", err=True)
        return verdict[0]
    return 0


if __name__ == "__main__":
    sys.exit(_main())
