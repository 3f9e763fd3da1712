"""The one plugin mechanism: entry points, by group, loaded by name.

A package adds a camera, actuators, a pilot or a model runtime by declaring an entry point in
its ``pyproject.toml``; paddock declares its own the same way::

    [project.entry-points."paddock.cameras"]
    mycam = "mypackage.camera:build"          # build(config: CarConfig) -> firmware.camera.Camera

=====================  ===========================================================================
group                  an entry point's object
=====================  ===========================================================================
``paddock.cameras``    ``factory(config: CarConfig) -> Camera``
``paddock.actuators``  ``factory(config: CarConfig) -> Actuators``
``paddock.pilots``     ``factory(body: Body, config: CarConfig) -> Pilot`` (raise where the body
                       cannot carry it, e.g. the expert off the simulator)
``paddock.runtimes``   a :class:`edge.runtimes.Runtime` subclass (its ``formats`` say what it runs)
=====================  ===========================================================================

Entry points come from installed distribution metadata, which a source checkout (``PYTHONPATH``)
or an install made before a plugin was added lacks. :data:`BUILT_IN` therefore holds paddock's own
entry points (the same names and objects as ``pyproject.toml``; a test keeps the two equal), and
:func:`plugins` always includes them. A third-party plugin cannot take a built-in's name.
"""

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

CAMERAS = "paddock.cameras"
ACTUATORS = "paddock.actuators"
PILOTS = "paddock.pilots"
RUNTIMES = "paddock.runtimes"

BUILT_IN: dict[str, dict[str, str]] = {
    CAMERAS: {
        "picamera": "edge.body_factory:picamera",
        "usb": "edge.body_factory:usb_camera",
        "test_pattern": "edge.body_factory:test_pattern_camera",
    },
    ACTUATORS: {
        "pwm": "edge.body_factory:pwm_actuators",
        "pca9685": "edge.body_factory:pca9685_actuators",
        "none": "edge.body_factory:null_actuators",
    },
    PILOTS: {"expert": "edge.sim:expert_pilot", "race-line": "edge.sim:race_line_pilot"},
    RUNTIMES: {"onnx": "edge.runtimes.onnx:OnnxRuntime", "tflite": "edge.runtimes.litert:LiteRtRuntime"},
}
# What one item of each group is called in messages.
KIND = {CAMERAS: "camera", ACTUATORS: "actuators", PILOTS: "pilot", RUNTIMES: "runtime"}


class PluginError(LookupError):
    """A plugin that is not installed, or that fails to load."""


@dataclass(frozen=True, slots=True)
class Plugin:
    group: str
    name: str
    value: str  # "module:attribute"
    origin: str  # "paddock" or the distribution that declares it

    def load(self) -> Any:
        module, _, attribute = self.value.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attribute.split(".") if attribute else []:
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginError(
                f"{KIND.get(self.group, 'plugin')} {self.name!r} ({self.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return obj


def plugins(group: str) -> dict[str, Plugin]:
    """The plugins of ``group`` by name: paddock's own first, then those of installed packages."""
    found = {name: Plugin(group, name, value, "paddock") for name, value in BUILT_IN.get(group, {}).items()}
    for ep in entry_points(group=group):
        origin = ep.dist.name if ep.dist is not None else "?"
        if ep.name in found:
            if found[ep.name].value != ep.value:
                log.warning("%s: %s from %s ignored: the name is paddock's own", group, ep.name, origin)
            continue
        found[ep.name] = Plugin(group, ep.name, ep.value, origin)
    return found


def load(group: str, name: str) -> Any:
    """The object of plugin ``name``; :class:`PluginError` names what is installed otherwise."""
    found = plugins(group)
    if name not in found:
        raise PluginError(
            f"no {KIND.get(group, 'plugin')} named {name!r}; installed: {', '.join(sorted(found)) or 'none'}"
        )
    return found[name].load()


def names(group: str) -> list[str]:
    return sorted(plugins(group))
