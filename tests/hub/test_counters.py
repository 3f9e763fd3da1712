"""Per-car ingest counters stay bounded: invented car ids fold into one bucket, totals are kept."""

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
