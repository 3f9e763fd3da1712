"""The rooms' import rules (docs/architecture.md), checked on the source itself."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("schemas", "infra", "firmware", "edge", "hub", "trainer", "deploy")
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "infra": {"schemas"},
    "firmware": {"schemas", "infra"},
    "edge": {"schemas", "infra", "firmware"},
    "hub": {"schemas", "infra"},
    "trainer": {"schemas", "infra", "firmware"},
    "deploy": {"schemas", "infra", "firmware", "edge", "hub", "trainer"},
}
# Heavy third-party packages a room must never import (even lazily).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "edge": {"torch", "fastapi", "uvicorn"},
    "firmware": {"torch", "fastapi", "uvicorn"},
    "hub": {"torch", "picamera2", "onnxruntime"},
    "schemas": {"torch", "fastapi", "aiomqtt", "paho"},
    "infra": {"torch", "fastapi", "uvicorn", "aiomqtt", "paho", "onnxruntime"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _room_files(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_only_what_they_may(room: str) -> None:
    bad = []
    for path in _room_files(room):
        imported = _imports(path)
        for other in (imported & set(ROOMS)) - ALLOWED[room] - {room}:
            bad.append(f"{path.relative_to(ROOT)} imports {other}")
        for heavy in imported & FORBIDDEN_THIRD_PARTY.get(room, set()):
            bad.append(f"{path.relative_to(ROOT)} imports {heavy}")
    assert not bad, "\n".join(bad)


def test_trainer_uses_only_the_simulator_from_firmware() -> None:
    bad = []
    for path in _room_files("trainer"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for mod in mods:
                if mod.split(".")[0] == "firmware" and not mod.startswith("firmware.sim"):
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import hub.api\nfrom edge import loop\n")
    assert _imports(f) == {"hub", "edge"}


# --- import cycles --------------------------------------------------------------------------------
# Every import counts, lazy ones (inside a function) included: a lazy import that closes a cycle
# only hides it. A package's ``__init__`` is a module like any other.


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` (module ``module``) imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from a import b`` imports the module a.b when there is one, else a name from a.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    return found


def import_graph(root: Path, rooms: tuple[str, ...]) -> dict[str, set[str]]:
    files = {_module_name(root, p): p for room in rooms for p in sorted((root / room).rglob("*.py"))}
    known = set(files)
    return {m: _imported_modules(m, p, known) for m, p in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph(ROOT, ROOMS))
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "room" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "room" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")  # relative: room.sub.b
    (pkg / "b.py").write_text("def f():\n    from ..c import g\n")  # lazy and relative: room.c
    (tmp_path / "room" / "c.py").write_text("import room.sub.a\ng = 1\n")
    (tmp_path / "room" / "d.py").write_text("from room.sub import a\n")  # imports into the cycle only
    graph = import_graph(tmp_path, ("room",))
    assert graph["room.sub.a"] == {"room.sub.b"}
    assert graph["room.sub.b"] == {"room.c"}
    assert import_cycles(graph) == [["room.c", "room.sub.a", "room.sub.b"]]
    (tmp_path / "room" / "c.py").write_text("g = 1\n")
    assert import_cycles(import_graph(tmp_path, ("room",))) == []


def test_the_car_imports_no_store_or_web_dependencies() -> None:
    """infra is shared with the car: boto3 (S3 only) and FastAPI must stay out of its imports."""
    code = (
        "import sys\n"
        "import infra.config, infra.files, infra.records, infra.store, edge.config, edge.daemon\n"
        "heavy = sorted({'boto3', 'botocore', 'fastapi', 'uvicorn'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# hub's sub-packages along the frame's path: each may import only those after it (docs/hub.md).
HUB_LAYERS = ("service", "api", "fleet", "mlops", "ingest", "storage", "telemetry")


def _hub_layer(path: Path) -> str | None:
    parts = path.relative_to(ROOT / "hub").with_suffix("").parts
    return parts[0] if parts[0] in HUB_LAYERS else None


def test_hub_sub_packages_point_down_the_frames_path() -> None:
    bad = []
    for path in _room_files("hub"):
        layer = _hub_layer(path)
        if layer is None:
            continue
        below = set(HUB_LAYERS[HUB_LAYERS.index(layer) + 1 :])
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                parts = mod.split(".")
                other = parts[1] if parts[0] == "hub" and len(parts) > 1 else None
                if other in HUB_LAYERS and other != layer and other not in below:
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)
