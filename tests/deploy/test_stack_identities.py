"""The local stack (what `paddock demo` runs) gives its hub, trainer agent, cars and operator their
own identities on the embedded broker, which refuses everyone else and holds each to the ACL."""

import asyncio
from pathlib import Path

from deploy.stack import LocalStack, StackConfig
from tests.transport.acl_matrix import Client


async def test_the_stack_runs_on_generated_identities_and_refuses_strangers(tmp_path: Path) -> None:
    config = StackConfig(root=tmp_path / "stack", cars=1, trainer=True, car_hz=10.0)
    async with LocalStack(config) as stack:
        assert stack.cars["car-1"].link.connected.is_set()
        assert stack.hub is not None and await stack.hub.wait_connected(5)
        url = stack.broker_url
        bundles = stack.fleet_dir / "bundles"
        assert sorted(p.name for p in bundles.iterdir()) == ["car-1", "hub", "operator", "trainer"]

        def password(name: str) -> str:
            return (bundles / name / "password").read_text().strip()

        def probe() -> tuple[int, int, bool]:
            anonymous = Client(url, None, None)
            refused = anonymous.connect()
            anonymous.close()
            car = Client(url, "car-1", password("car-1"))
            assert car.connect() == 0
            # a car may not read another car's commands nor publish the e-stop
            granted = car.subscribe("paddock/v1/cars/+/cmd/+")
            operator = Client(url, "operator", password("operator"))
            assert operator.connect() == 0 and operator.subscribe("paddock/v1/fleet/estop") == 1
            car.publish("paddock/v1/fleet/estop", b'{"active": false}')
            operator.publish("paddock/v1/fleet/estop", b"marker")
            seen = operator.wait_for(b"marker")
            car.close()
            operator.close()
            return refused, granted, any(p != b"marker" for _, p in seen)

        refused, granted, estop_faked = await asyncio.to_thread(probe)
        assert refused == 135  # not authorised
        assert granted == 0x80
        assert not estop_faked
