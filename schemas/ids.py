"""Identifiers that travel in topics and storage keys.

Car and group ids appear in MQTT topics and in object-store keys, so they are restricted to a small
alphabet: nothing that could be a wildcard, a path separator or a relative path component. Session,
model and job ids follow the same idea with a slightly larger alphabet.
"""

import re
from typing import Annotated

from pydantic import AfterValidator

from schemas.errors import ContractError

CAR_ID_PATTERN = r"^[a-z0-9-]{1,32}$"
GROUP_ID_PATTERN = CAR_ID_PATTERN
# Sessions, datasets, models, versions and jobs: letters, digits, '-', '_' and '.', never starting with '.'.
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"

_CAR_RE = re.compile(CAR_ID_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)


def check_car_id(value: str) -> str:
    """Return ``value`` if it is a valid car id, else raise :class:`ContractError`."""
    if not isinstance(value, str) or not _CAR_RE.fullmatch(value):
        raise ContractError(f"invalid car id {value!r}: expected 1-32 characters of a-z, 0-9 and '-'")
    return value


def check_group_id(value: str) -> str:
    """Return ``value`` if it is a valid group id, else raise :class:`ContractError`."""
    if not isinstance(value, str) or not _CAR_RE.fullmatch(value):
        raise ContractError(f"invalid group id {value!r}: expected 1-32 characters of a-z, 0-9 and '-'")
    return value


def check_name(value: str, what: str = "name") -> str:
    """Validate a session, dataset, model, version or job id (safe as one path component)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value in {".", ".."}:
        raise ContractError(
            f"invalid {what} {value!r}: expected 1-64 characters of letters, digits, '-', '_' and '.', "
            "not starting with '.'"
        )
    return value


def _session(value: str) -> str:
    return check_name(value, "session id")


def _job(value: str) -> str:
    return check_name(value, "job id")


CarId = Annotated[str, AfterValidator(check_car_id)]
GroupId = Annotated[str, AfterValidator(check_group_id)]
SessionId = Annotated[str, AfterValidator(_session)]
JobId = Annotated[str, AfterValidator(_job)]
Name = Annotated[str, AfterValidator(check_name)]
