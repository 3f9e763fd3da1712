"""The MLOps loop's decisions (canaries, releases) kept in the object store, one JSON object per
record under a prefix, and read back when the hub starts: a restart forgets none of them."""

from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel

from infra.store import ObjectStore

M = TypeVar("M", bound=BaseModel)


class StoredRecords(Generic[M]):
    """``records[key]`` in memory, each also at ``{prefix}{key}.json`` in ``store``. Not locked:
    its owner holds its own lock around reads and saves."""

    def __init__(self, store: ObjectStore, prefix: str, model: type[M], key: Callable[[M], str]) -> None:
        self.store, self.prefix, self.key = store, prefix, key
        loaded = (model.model_validate_json(store.get(k)) for k in store.list(prefix))
        self.records: dict[str, M] = {key(r): r for r in loaded}

    def save(self, record: M) -> None:
        self.records[self.key(record)] = record
        self.store.put(f"{self.prefix}{self.key(record)}.json", record.model_dump_json(indent=2).encode())
