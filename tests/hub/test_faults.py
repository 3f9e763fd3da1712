"""Faults survived with real parts: a real hub, a real Mosquitto, real car daemons. A car that
needs faults on its link runs as ``paddock car run`` inside its own network namespace, joined to
the broker by a veth link that the test cuts (a partition) or toggles (a flapping link).

Every test prints one ``FAULT`` line: frames the car sent (its own count, or its spool), frames the
hub persisted (the sealed session), frames lost. The scenarios live in tests/hub/faults.py;
tests/bench/bench_faults.py runs them longer, and docs/security.md quotes both.

Covered elsewhere, not repeated here: a broker stopped and started while a car records
(tests/edge/test_daemon_mqtt.py), the hub restarted with frames queued at the broker and the
hub's sealer process killed (tests/hub/test_ingest.py), the hub killed with SIGKILL at random
moments (tests/hub/test_crash.py), a full car spool (tests/edge/test_daemon_mqtt.py).
"""

from pathlib import Path
from typing import Any

from tests.hub.faults import (
    DEADMAN_MS,
    HZ,
    broker_kill_run,
    broker_on,
    car_kill_run,
    fault_line,
    max_tick_step,
    partition_run,
)
from tests.servers.netns import car_network


async def test_partition_and_flapping_link_lose_no_frame_and_keep_the_car_safe(tmp_path: Path) -> None:
    with car_network() as net:
        broker = broker_on(net, tmp_path / "mosquitto")
        try:
            run = await partition_run(net, broker, tmp_path, partition_s=5.0, flaps=4)
        finally:
            broker.stop()
    cut, flapping = run.between("down", "up"), run.between("up", "flapped")
    m = run.manifest
    fault_line(
        "partition 5 s + 4 flaps", run.sent, m.frame_count, gaps=m.gaps, frames_while_cut=len(cut),
        frames_while_flapping=len(flapping), missed_ticks=run.missed_ticks,
    )  # fmt: skip
    assert run.sent > 10 * HZ and m.frame_count == run.sent and m.gaps == []
    first = run.records[0]["seq"]
    assert [r["seq"] for r in run.records] == list(range(first, first + run.sent))

    # The autopilot drove on through the partition and the flapping: a frame on (nearly) every tick.
    for part, (a, b) in ((cut, ("down", "up")), (flapping, ("up", "flapped"))):
        seconds = (run.marks[b] - run.marks[a]) / 1e9
        assert len(part) >= 0.8 * seconds * HZ, (len(part), seconds)
        assert all(r["mode"] == "autopilot" and r["throttle"] > 0 for r in part)
        assert max_tick_step(part) <= 10  # no stall of a third of a second
    assert run.missed_ticks <= 0.05 * (run.marks["flapped"] - run.marks["down"]) / 1e9 * HZ

    # Manual: the car followed the joystick until the link went, then stopped within the deadman.
    down = run.marks["manual_down"]
    driving = [r for r in run.records if down - 1.0e9 <= r["t_capture_ns"] < down - 0.2e9]
    assert driving and all(r["mode"] == "manual" and r["throttle"] == 0.4 for r in driving)
    stopped_by = down + (DEADMAN_MS + 100) * 1e6  # the deadman, and a tick and a frame of slack
    held = [r for r in run.records if stopped_by <= r["t_capture_ns"] < run.marks["manual_up"]]
    assert len(held) > HZ and all(r["throttle"] == 0.0 for r in held)


async def test_a_car_killed_mid_session_sends_its_spool_when_restarted(tmp_path: Path) -> None:
    with car_network() as net:
        broker = broker_on(net, tmp_path / "mosquitto")
        try:
            (killed,) = await car_kill_run(net, broker, tmp_path, kills=1)
        finally:
            broker.stop()
    fault_line(
        "car SIGKILL + restart", killed.sent, len(killed.seqs), at_hub_before=killed.at_hub,
        spooled=len(killed.spooled), gaps=killed.gaps,
    )  # fmt: skip
    assert len(killed.spooled) > HZ  # two seconds of frames waited on the car's disk when it died
    assert set(killed.spooled) <= set(killed.seqs)
    first = killed.seqs[0]
    assert killed.seqs == list(range(first, first + len(killed.seqs))) and killed.gaps == []
    assert len(killed.seqs) == killed.sent


async def test_broker_kill9_under_load_is_measured_and_the_outbox_resends(
    mosquitto_factory: Any, tmp_path: Path
) -> None:
    broker = mosquitto_factory()
    broker.start()
    run = await broker_kill_run(broker, tmp_path, cars=2, hz=100, kills=1)
    for i, car in enumerate(run.cars):
        sent, m = run.sent[i], run.manifests[i]
        fault_line(f"broker kill -9 ({car})", sent, m.frame_count, gaps=m.gaps, duplicates=run.duplicates[i])
        assert sent > 300
        # What was lost is measured, never guessed: every frame the car counted is either in the
        # session or in one of its gaps; nothing the broker had not acknowledged is lost (the car's
        # outbox sent it again), and the broker's acknowledged frames came back from its file.
        assert m.frame_count + run.missing(i) == sent
        assert m.seq_first is not None and m.seq_last is not None
        assert m.seq_last - m.seq_first + 1 == sent
