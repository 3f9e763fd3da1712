"""The object store the trainer reads datasets from and writes models to (docs/wire.md "Storage layout").

Two backends share one small interface, addressed by URL:

* a local directory: ``/srv/paddock/store`` or ``file:///srv/paddock/store``;
* any S3-compatible service: ``s3://bucket/optional/prefix``, with the endpoint from
  ``?endpoint=http://host:9000`` or ``AWS_ENDPOINT_URL``, and credentials from boto3's usual sources.

Keys are the layout's keys (``datasets/{car}/{session}/shard-000000.tar``), built by
:mod:`schemas.dataset`; a store never sees a path outside its root.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit


class StoreError(RuntimeError):
    """The store cannot be reached, or a key is missing."""


class MissingObject(StoreError):
    """A key that does not exist."""


class ObjectStore(Protocol):
    url: str

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> None: ...

    def list(self, prefix: str) -> list[str]: ...

    def exists(self, key: str) -> bool: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts[:-1])
        or parts[-1]
        in (
            ".",
            "..",
        )
    ):
        raise StoreError(f"invalid object key {key!r}")
    return key


class LocalStore:
    """A directory whose files are the objects; writes are atomic (temp file + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise MissingObject(f"{self.url}: no object {key!r}") from None
        except IsADirectoryError:
            raise MissingObject(f"{self.url}: {key!r} is a folder, not an object") from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"


class S3Store:
    """A bucket (and optional key prefix) in an S3-compatible service, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, **client: Any) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.url = f"s3://{bucket}/{self.prefix}"
        client.setdefault("region_name", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        self._s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            **client,
        )

    def _key(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = obj["Body"].read()
            return data
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MissingObject(f"{self.url}: no object {key!r}") from None
            raise StoreError(f"{self.url}: cannot read {key!r}: {exc}") from None

    def put(self, key: str, data: bytes) -> None:
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                keys.append(obj["Key"][len(self.prefix) :])
        return sorted(keys)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint_url!r})"


def open_store(url: str | os.PathLike[str]) -> ObjectStore:
    """Open a store by URL: a path, ``file://…`` or ``s3://bucket/prefix[?endpoint=…]``."""
    text = os.fspath(url)
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreError(f"store URL {text!r} names no bucket (expected s3://bucket/prefix)")
        query = parse_qs(parts.query)
        endpoint = query.get("endpoint", [None])[0]
        return S3Store(parts.netloc, unquote(parts.path), endpoint_url=endpoint)
    if parts.scheme == "file":
        return LocalStore(unquote(parts.path))
    if parts.scheme in ("", "local") or len(parts.scheme) == 1:  # a drive letter counts as a path
        return LocalStore(text if parts.scheme != "local" else unquote(parts.path))
    raise StoreError(f"unsupported store URL {text!r}: use a directory, file://… or s3://bucket/prefix")
