"""Autopilot runtimes: turn model bytes + model card into something that runs one sample.

Built in: ``onnx`` (ONNX Runtime, the default) and ``tflite`` (LiteRT from ``ai-edge-litert``,
falling back to ``tflite_runtime``). Both are entry points of the group ``paddock.runtimes``
(:mod:`edge.plugins`), and a package adds more the same way: the value is a :class:`Runtime`
subclass whose ``formats`` say which manifest formats it takes.
"""

import logging
from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import NDArray

from edge import plugins
from schemas.model_card import ModelCard

log = logging.getLogger(__name__)


class RuntimeUnavailable(RuntimeError):
    """The library a runtime needs is not installed."""


class ModelLoadError(ValueError):
    """The model bytes do not load, or do not match the model card."""


class LoadedModel(ABC):
    """A model ready to run. ``run`` takes one preprocessed sample (no batch axis)."""

    runtime: str = ""

    @abstractmethod
    def run(self, sample: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """Raw output tensors by name, batch axis removed."""

    def close(self) -> None:  # noqa: B027 - most runtimes free on garbage collection
        pass


class Runtime(ABC):
    name: str = ""
    formats: tuple[str, ...] = ()

    def preload(self) -> None:  # noqa: B027 - runtimes without a heavy import need nothing
        """Import the runtime's library now. Importing holds the GIL for ~100 ms, which would
        delay control ticks if it happened during the first hot-swap."""

    @abstractmethod
    def load(self, model: bytes, card: ModelCard, threads: int = 1) -> LoadedModel:
        """Load ``model``; raise :class:`ModelLoadError` if it does not fit ``card``,
        :class:`RuntimeUnavailable` if the runtime library is missing."""


def check_input_shape(declared: list[object], card: ModelCard, where: str) -> None:
    """Compare a model's declared input shape (batch first; symbolic dims allowed) with the card."""
    want = (1, *card.input.shape)
    if len(declared) != len(want):
        raise ModelLoadError(
            f"{where}: model input has {len(declared)} dimensions {declared}, card expects {list(want)}"
        )
    for i, (d, w) in enumerate(zip(declared, want, strict=True)):
        if isinstance(d, int) and d > 0 and d != w and not (i == 0 and d == 1):
            raise ModelLoadError(
                f"{where}: model input shape {declared} does not match the card's "
                f"{list(want)} ({card.input.layout}, {card.input.colour})"
            )


def available_runtimes() -> dict[str, type[Runtime]]:
    """The runtimes that load: paddock's own (``onnx``, ``tflite``) first, then plugins."""
    found: dict[str, type[Runtime]] = {}
    for name, plugin in plugins.plugins(plugins.RUNTIMES).items():
        try:
            cls = plugin.load()
        except plugins.PluginError as exc:
            log.warning("%s", exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Runtime):
            found[name] = cls
        else:
            log.warning("runtime plugin %s is not a Runtime subclass", name)
    return found


def runtime_for(fmt: str) -> Runtime:
    """A runtime for a manifest ``format``; built-ins win over plugins for the same format."""
    for cls in available_runtimes().values():
        if fmt in cls.formats:
            return cls()
    raise RuntimeUnavailable(f"no runtime for model format {fmt!r}")


def preload(formats: list[str]) -> list[str]:
    """Import the libraries of the runtimes for ``formats``; return those that are available."""
    ready = []
    for fmt in formats:
        try:
            runtime_for(fmt).preload()
        except RuntimeUnavailable as exc:
            log.info("runtime for %s not preloaded: %s", fmt, exc)
            continue
        ready.append(fmt)
    return ready
