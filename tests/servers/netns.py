"""A car on its own network: a Linux network namespace joined to the test's by a veth pair.

The broker listens on the host end of the pair; a car daemon started with :meth:`CarNetwork.argv`
runs inside the namespace and reaches the broker only over that link. Faults are made on the link:
:meth:`down` is a partition (packets vanish, no reset: both sides find out by their keepalives),
:meth:`up` heals it, :meth:`flap` toggles it.

It needs root and iproute2 (Debian ``iproute2``); without them a test skips, or fails under CI.
"""

import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.missing import missing

_subnets = itertools.count(1)


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


class CarNetwork:
    """One namespace and one veth link ``host_ip`` (test side) — ``car_ip`` (inside the namespace)."""

    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:6]
        self.name = f"pdk-{uid}"
        self.host_if, self.car_if = f"pdkh{uid}", f"pdkc{uid}"
        net = (os.getpid() * 7 + next(_subnets)) % 250 + 1  # a /30 of its own per link
        self.host_ip, self.car_ip = f"10.231.{net}.1", f"10.231.{net}.2"

    def create(self) -> "CarNetwork":
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.car_if)
            _ip("link", "set", self.car_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("addr", "add", f"{self.car_ip}/30", "dev", self.car_if, netns=self.name)
            _ip("link", "set", "lo", "up", netns=self.name)
            _ip("link", "set", self.car_if, "up", netns=self.name)
            _ip("link", "set", self.host_if, "up")
        except Exception:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the car's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def down(self) -> None:
        """A partition: the car's end of the link goes down, what is in flight is lost."""
        _ip("link", "set", self.car_if, "down", netns=self.name)

    def up(self) -> None:
        _ip("link", "set", self.car_if, "up", netns=self.name)

    def flap(self, down_s: float, up_s: float, times: int) -> None:
        """Toggle the link ``times`` times: ``down_s`` down, then ``up_s`` up."""
        for _ in range(times):
            self.down()
            time.sleep(down_s)
            self.up()
            time.sleep(up_s)


def netns_available() -> str | None:
    """None when this machine can make namespaces, else why not (and how to fix it)."""
    if shutil.which("ip") is None:
        return "iproute2 is not installed: apt-get install iproute2"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the tests as root)"
    probe = f"pdk-probe-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        return f"cannot make a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@contextmanager
def car_network() -> Iterator[CarNetwork]:
    """A fresh :class:`CarNetwork`, deleted afterwards; skips (fails under CI) where none can be made."""
    why = netns_available()
    if why is not None:
        missing(why)
    net = CarNetwork().create()
    try:
        yield net
    finally:
        net.delete()
