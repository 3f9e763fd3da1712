"""TOML configuration shared by the car and the hub: reading a file, formatting validation errors as
one line that names the file and the fields, and writing a model's defaults as a commented file."""

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the field."""


def read_toml(path: Path, error: type[ConfigError] = ConfigError, hint: str = "") -> dict[str, Any]:
    """The file's table; ``error`` (one line: file, problem) when missing, unreadable or not TOML."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such file{hint}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def format_errors(exc: ValidationError) -> str:
    """``loc: message; loc: message``, with pydantic's jargon replaced where users meet it most."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        elif err["type"] == "missing":
            msg = "required"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def validate(model: type[M], data: dict[str, Any], source: str, error: type[ConfigError] = ConfigError) -> M:
    """``model`` built from ``data``, or ``error`` naming ``source`` and every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: {format_errors(exc)}") from None


# --- the commented file ------------------------------------------------------------------------------
def toml_literal(value: Any) -> str | None:
    """``value`` as a TOML literal; ``None`` for values written as a commented-out line."""
    if value is None or isinstance(value, SecretStr):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return _toml_str(str(value))
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(toml_literal(v)) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def commented_toml(model: BaseModel, header: list[str]) -> str:
    """Every field of ``model`` with its value and its description as a comment, sections as tables."""
    lines = [f"# {line}" if line else "" for line in header]
    _emit(model, lines, prefix="")
    return "\n".join(lines).rstrip() + "\n"


def _emit(model: BaseModel, lines: list[str], prefix: str) -> None:
    sections: list[tuple[str, BaseModel]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            sections.append((name, value))
            continue
        if field.description:
            lines.extend(f"# {chunk}" for chunk in wrap(field.description))
        rendered = toml_literal(value)
        lines.append(f"{name} = {rendered}" if rendered is not None else f"# {name} =")
    for name, section in sections:
        table = f"{prefix}{name}"
        lines.append("")
        doc = (type(section).__doc__ or "").strip().splitlines()
        if doc and not doc[0].startswith("Usage docs"):
            lines.append(f"# {doc[0]}")
        lines.append(f"[{table}]")
        _emit(section, lines, prefix=f"{table}.")


def wrap(text: str, width: int = 100) -> list[str]:
    """Words of ``text`` in lines of at most ``width`` characters (a longer word gets its own line)."""
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out
