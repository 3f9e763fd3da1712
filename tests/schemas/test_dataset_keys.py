"""Object-store keys of named datasets never reach outside ``datasets/`` nor meet a car's folder."""

import pytest

from schemas.dataset import dataset_manifest_key, session_prefix
from schemas.errors import ContractError
from schemas.ids import check_car_id


def test_dataset_manifest_key() -> None:
    assert dataset_manifest_key("laps-v2") == "datasets/_sets/laps-v2/manifest.json"


@pytest.mark.parametrize("bad", ["", "..", "../x", "a/b", ".hidden", "x" * 65])
def test_dataset_manifest_key_rejects_unsafe_names(bad: str) -> None:
    with pytest.raises(ContractError):
        dataset_manifest_key(bad)


def test_sets_folder_is_not_a_car_id() -> None:
    with pytest.raises(ContractError):
        check_car_id("_sets")
    assert not dataset_manifest_key("a").startswith(session_prefix("a", "b")[: len("datasets/a/")])
