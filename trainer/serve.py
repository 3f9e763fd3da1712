"""A pilot model served over HTTP for clients that have no runtime of their own (games, web pages):
a camera image in, steering and throttle out, run by ONNX Runtime.

    app = create_app("model.onnx")          # FastAPI; run it with uvicorn (``paddock serve``)

* ``POST /predict`` — the body is one image (JPEG or PNG, any size: it is cropped, converted and
  resized as the model's card says, exactly as the car does); the answer is
  ``{steering, throttle, batch}``.
* ``GET /card`` — the model card (input size, colour, crop, normalisation; outputs) and the file's sha256.
* ``GET /stats`` — requests, batches and the mean batch size; ``GET /health``.
* ``GET /openapi.json`` and ``/docs`` — the OpenAPI description.

Under concurrent load requests are micro-batched: the first request of a batch waits at most
``max_wait_ms`` for others (up to ``max_batch``), then one ONNX Runtime call answers them all, off
the event loop. A model without a dynamic batch axis is run one image at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from schemas.errors import ContractError
from schemas.model_card import ModelCard, decode_outputs, preprocess

IMAGE_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
MAX_IMAGE_BYTES = 4 * 1024 * 1024


class Prediction(BaseModel):
    steering: float = Field(description="-1 full left … +1 full right")
    throttle: float | None = Field(default=None, description="-1 … 1 (None: the model gives no throttle)")
    batch: int = Field(description="how many requests the model answered in the same call")


class CardOut(BaseModel):
    card: ModelCard
    sha256: str
    file: str


class Stats(BaseModel):
    requests: int
    batches: int
    mean_batch: float
    max_batch: int
    max_wait_ms: float


def load_card(session: Any, path: Path) -> ModelCard:
    meta = session.get_modelmeta().custom_metadata_map
    if "paddock.card" not in meta:
        raise ValueError(f"{path}: no model card in the file's metadata (export it with paddock train)")
    return ModelCard.model_validate_json(meta["paddock.card"])


def _batched(session: Any) -> bool:
    dim = session.get_inputs()[0].shape[0]
    return not isinstance(dim, int)


@dataclass
class _Pending:
    sample: NDArray[np.float32]
    future: asyncio.Future[tuple[dict[str, float], int]]


class Batcher:
    """Collects samples into batches and runs each batch with one ONNX Runtime call."""

    def __init__(self, session: Any, card: ModelCard, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        self.session, self.card = session, card
        self.max_batch = max_batch if _batched(session) else 1
        self.max_wait_s = max_wait_ms / 1000
        self.input = session.get_inputs()[0].name
        self.names = [o.name for o in session.get_outputs()]
        self.requests = self.batches = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="onnx")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, sample: NDArray[np.float32]) -> tuple[dict[str, float], int]:
        future: asyncio.Future[tuple[dict[str, float], int]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(sample, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            x = np.stack([p.sample for p in batch])
            try:
                outputs = await loop.run_in_executor(self._executor, self.session.run, None, {self.input: x})
            except Exception as exc:  # the model failed this batch: its requests get the error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.requests += len(batch)
            self.batches += 1
            for i, p in enumerate(batch):
                if p.future.done():  # the client went away
                    continue
                try:
                    values = {name: out[i : i + 1] for name, out in zip(self.names, outputs, strict=True)}
                    p.future.set_result((decode_outputs(self.card, values), len(batch)))
                except ContractError as exc:
                    p.future.set_exception(exc)


def decode_image(data: bytes) -> NDArray[np.uint8]:
    """JPEG or PNG bytes → ``H×W×3`` RGB; a ValueError for anything else."""
    import cv2

    if not data:
        raise ValueError("empty body: send one JPEG or PNG image")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"image of {len(data)} bytes; at most {MAX_IMAGE_BYTES}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("the body is not a JPEG or PNG image")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def create_app(model: str | Path, *, max_batch: int = 32, max_wait_ms: float = 2.0, threads: int = 1) -> Any:
    """The FastAPI app serving ``model`` (an ONNX file exported by paddock, card in its metadata)."""
    from contextlib import asynccontextmanager

    import onnxruntime as ort

    path = Path(model)
    options = ort.SessionOptions()  # as trainer.export.onnx_session, without importing torch
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    card = load_card(session, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    batcher = Batcher(session, card, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="paddock pilot",
        version="1",
        description="A camera image in, steering and throttle out (ONNX Runtime, micro-batched).",
        lifespan=lifespan,
    )
    body_doc = {
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
        }
    }

    @app.post(
        "/predict",
        response_model=Prediction,
        openapi_extra=body_doc,
        responses={400: {"description": "not an image"}, 415: {"description": "wrong content type"}},
    )
    async def predict(request: Request) -> Prediction:
        """Steering and throttle for one camera image (JPEG or PNG body)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind not in IMAGE_TYPES:
            raise HTTPException(415, f"content type {kind!r}; send {', '.join(IMAGE_TYPES)}")
        try:
            sample = preprocess(decode_image(await request.body()), card.input)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            actions, size = await batcher.predict(sample)
        except ContractError as exc:
            raise HTTPException(500, f"the model gave an unusable output: {exc}") from None
        return Prediction(steering=actions.get("steering", 0.0), throttle=actions.get("throttle"), batch=size)

    @app.get("/card", response_model=CardOut)
    def get_card() -> CardOut:
        """The model card (how to preprocess, what comes out) and the model file's sha256."""
        return CardOut(card=card, sha256=sha, file=path.name)

    @app.get("/stats", response_model=Stats)
    def stats() -> Stats:
        mean = batcher.requests / batcher.batches if batcher.batches else 0.0
        return Stats(
            requests=batcher.requests,
            batches=batcher.batches,
            mean_batch=mean,
            max_batch=batcher.max_batch,
            max_wait_ms=max_wait_ms,
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
