"""Train to race, the recording part: the line-following expert records sessions in the hub's layout."""

from pathlib import Path

import numpy as np

from firmware.sim import get_track
from infra.store import LocalStore
from schemas.messages import SessionRef
from trainer.data import load_frames
from trainer.race.autopilot import record_race_sessions
from trainer.race.line import LineEvaluator, smoothest_genes
from trainer.record import RecordConfig, record_session


def test_the_line_following_expert_records_faster_laps_than_the_expert(tmp_path: Path) -> None:
    track = get_track("oval")
    ev = LineEvaluator(track)
    line = ev.estimate(smoothest_genes(ev))
    store = LocalStore(tmp_path)
    (race,) = record_race_sessions(store, track, line, sessions=1, laps=0.5)
    slow = record_session(store, "oval", "sim-expert", "expert-0", config=RecordConfig(laps=0.5))
    assert race.car == "sim-expert" and race.session.startswith("race-oval")
    assert race.frame_count > 50 and race.stats.speed_mean is not None and slow.stats.speed_mean is not None
    assert race.stats.speed_mean > 1.3 * slow.stats.speed_mean
    assert race.stats.duration_s is not None and slow.stats.duration_s is not None
    assert race.stats.duration_s < slow.stats.duration_s  # half a lap, sooner
    table = load_frames(store, [SessionRef(car=race.car, session=race.session)])
    assert len(table) == race.frame_count
    assert np.isfinite(table.actions).all()
