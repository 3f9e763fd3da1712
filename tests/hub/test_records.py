"""The MLOps loop's stored decisions: what one hub saved, the next one started on the store reads."""

from pathlib import Path

from hub.mlops.canary import PREFIX as CANARIES
from hub.mlops.records import StoredRecords
from hub.mlops.release import PREFIX as RELEASES
from hub.mlops.release import Release
from infra.store import LocalStore


def test_saved_records_are_read_back_by_the_next_hub(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = StoredRecords(store, RELEASES, Release, key=lambda r: r.job)
    assert first.records == {}
    a = Release(job="train-a", model="pilot:7", mode="group", created=1.0, state="deployed", groups=["fleet"])
    first.save(a)
    first.save(a.model_copy(update={"state": "refused"}))  # a later save of the same job replaces it
    first.save(Release(job="train-b", model="pilot:8", mode="canary", created=2.0))
    again = StoredRecords(store, RELEASES, Release, key=lambda r: r.job)
    assert again.records == first.records and again.records["train-a"].state == "refused"
    assert sorted(store.list(RELEASES)) == ["releases/train-a.json", "releases/train-b.json"]
    assert store.list(CANARIES) == []  # each kind under its own prefix
