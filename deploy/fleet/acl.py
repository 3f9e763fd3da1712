"""The access matrix (ARCHITECTURE.md §9): what each identity may publish and subscribe to.

One function, :func:`rules`, turns an identity into MQTT topic filters; Mosquitto gets them as its
ACL file (:mod:`deploy.fleet.mosquitto`) and the embedded broker checks them through
:func:`may_publish`, :func:`may_subscribe` and :func:`may_receive`. Everything not listed is refused.

- a car publishes only its own status, telemetry, frames, events, model and detector state and
  command responses, and reads only its own commands, its own and its groups' models (pilot and
  detector) and the e-stop;
- the hub publishes its status, commands, models (pilots and detectors), the e-stop and job
  requests, and reads what it ingests (the cars' streams, command responses, job progress and results);
- an operator publishes commands, models and the e-stop, and reads everything under the prefix;
- a trainer reads job requests and publishes job progress and results on topics that end in its own
  name (``jobs/{kind}/{job}/result/{trainer}``), so the hub knows which trainer took a job and
  refuses another's reports for it; it reads every trainer's progress, so that of two agents that
  see one job only the first to claim it runs it.

docs/security.md has the matrix as a table.

Per-identity rules rather than Mosquitto's ``pattern … %u`` lines: a pattern applies to every user,
so it would give a trainer or an operator a car's rights under ``cars/{its own name}/``, and a car's
groups cannot be written as a pattern at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from deploy.fleet.identities import Identity, Role
from schemas.topics import CAR_LEAVES, Topics

CAR_PUBLISHES = (*CAR_LEAVES, "cmd/+/response")


class Access(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True)
class Rules:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def rules(identity: Identity, topics: Topics) -> Rules:
    """The topic filters ``identity`` may publish on and subscribe to."""
    root = topics.root
    control = (
        f"{root}/cars/+/cmd/+",
        f"{root}/cars/+/model",
        f"{root}/groups/+/model",
        f"{root}/cars/+/detector",
        f"{root}/groups/+/detector",
        topics.fleet_estop(),
    )
    match identity.role:
        case Role.CAR:
            car = f"{root}/cars/{identity.name}"
            models = [topics.car_model(identity.name), topics.car_detector(identity.name)]
            models += [topics.group_model(g) for g in identity.groups]
            models += [topics.group_detector(g) for g in identity.groups]
            return Rules(
                publish=tuple(f"{car}/{leaf}" for leaf in CAR_PUBLISHES),
                subscribe=(f"{car}/cmd/+", *models, topics.fleet_estop()),
            )
        case Role.HUB:
            return Rules(
                publish=(topics.hub_status(), *control, f"{root}/jobs/+"),
                subscribe=(
                    *(f"{root}/cars/+/{leaf}" for leaf in CAR_PUBLISHES),  # all the cars publish
                    f"{root}/jobs/+/+/#",
                    topics.fleet_estop(),  # the retained e-stop: what the web app shows after a restart
                ),
            )
        case Role.OPERATOR:
            return Rules(publish=control, subscribe=(f"{root}/#",))
        case Role.TRAINER:
            return Rules(
                publish=(
                    f"{root}/jobs/+/+/progress/{identity.name}",
                    f"{root}/jobs/+/+/result/{identity.name}",
                ),
                # every trainer's progress: the agents see each other's claims (trainer/agent.py)
                subscribe=(f"{root}/jobs/+", f"{root}/jobs/+/+/progress/+"),
            )
    raise AssertionError(f"no rules for role {identity.role}")


def topic_matches(topic: str, topic_filter: str) -> bool:
    """MQTT matching of a concrete topic against a filter (``+`` one level, ``#`` the rest)."""
    if topic.startswith("$") != topic_filter.startswith("$"):
        return False
    levels, want = topic.split("/"), topic_filter.split("/")
    for i, w in enumerate(want):
        if w == "#":
            return i == len(want) - 1
        if i >= len(levels) or (w != "+" and w != levels[i]):
            return False
    return len(levels) == len(want)


def filter_within(requested: str, allowed: str) -> bool:
    """True when every topic that ``requested`` matches is also matched by ``allowed``."""
    if requested.startswith("$") != allowed.startswith("$"):
        return False
    req, allow = requested.split("/"), allowed.split("/")
    for i, a in enumerate(allow):
        if a == "#":
            return i == len(allow) - 1
        if i >= len(req):
            return False
        r = req[i]
        if r == "#" or (a != "+" and (r == "+" or r != a)):
            return False
    return len(req) == len(allow)


@lru_cache(maxsize=4096)
def _rules(identity: Identity, prefix: str) -> Rules:
    return rules(identity, Topics(prefix))


def may_publish(identity: Identity, topics: Topics, topic: str) -> bool:
    return any(topic_matches(topic, f) for f in _rules(identity, topics.prefix).publish)


def may_subscribe(identity: Identity, topics: Topics, topic_filter: str) -> bool:
    return any(filter_within(topic_filter, f) for f in _rules(identity, topics.prefix).subscribe)


def may_receive(identity: Identity, topics: Topics, topic: str) -> bool:
    return any(topic_matches(topic, f) for f in _rules(identity, topics.prefix).subscribe)
