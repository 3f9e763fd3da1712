"""The one store client's error hierarchy, as the hub and the trainer catch it."""

from pathlib import Path

import pytest

from infra.store import InvalidKey, LocalStore, NoSuchKey, StoreError, UnsupportedStoreUrl, open_store


def test_every_store_error_is_a_store_error_and_keeps_its_older_meaning(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s"))
    with pytest.raises(NoSuchKey) as missing:
        store.get("datasets/none.json")
    assert isinstance(missing.value, StoreError) and isinstance(missing.value, KeyError)
    assert missing.value.args[0] == "datasets/none.json"  # what the API's 404 names
    assert "no object 'datasets/none.json'" in str(missing.value)
    with pytest.raises(InvalidKey) as invalid:
        store.put("../x", b"x")
    assert isinstance(invalid.value, StoreError) and isinstance(invalid.value, ValueError)
    with pytest.raises(UnsupportedStoreUrl) as url:
        open_store("ftp://host/x")
    assert isinstance(url.value, StoreError) and isinstance(url.value, ValueError)
    with pytest.raises(UnsupportedStoreUrl, match="names no bucket"):
        open_store("s3:///prefix")


def test_opening_a_local_store_creates_nothing_until_it_is_written(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "typo")
    assert store.list("datasets/") == [] and not (tmp_path / "typo").exists()
    store.put("datasets/a.json", b"{}")
    assert store.list("datasets/") == ["datasets/a.json"]
    assert store.list("datasets/a") == ["datasets/a.json"]  # a key's beginning, not only a folder
