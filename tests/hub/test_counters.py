"""Per-car state stays bounded: invented car ids fold into one bucket of the ingest counters (totals
are kept), and the fleet monitor forgets the car heard from least recently."""

from hub.telemetry.metrics import OTHER_CARS, IngestCounters


def test_invented_car_ids_cannot_grow_the_counters() -> None:
    counters = IngestCounters(max_cars=100)
    counters.car("real-car").frames_persisted += 7
    for i in range(5000):
        counters.car(f"invented-{i}").telemetry += 1
        counters.add_malformed(f"invented-{i}", "frames", "invalid")
    assert len(counters.cars) == 101 and OTHER_CARS in counters.cars
    assert len(counters.malformed) <= 4096 + 1
    stats = counters.snapshot()
    assert stats.frames_persisted == 7 and stats.malformed == 5000
    assert sum(c.telemetry for c in stats.cars.values()) == 5000
    assert "invented-4999" in counters.cars and "real-car" not in counters.cars  # folded, still counted


def test_the_fleet_monitor_forgets_the_car_heard_from_least_recently() -> None:
    from hub.config import MlopsConfig
    from hub.mlops.monitor import MAX_CARS, FleetMonitor
    from schemas.messages import Telemetry

    monitor = FleetMonitor(MlopsConfig(), lambda ref: None, lambda c, e: None)
    for i in range(3 * MAX_CARS):
        msg = Telemetry(seq=i, ts=float(i), mode="autopilot", model=f"invented:{i}")
        monitor.on_telemetry(f"car-{i}", msg)
    rows = monitor.rows()
    assert len(rows) == MAX_CARS and rows[-1].car == f"car-{3 * MAX_CARS - 1}"
