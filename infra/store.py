"""The object store client the hub and the trainer share: a local directory or any S3-compatible
service, opened by URL (:func:`open_store`).

* a directory: ``/srv/paddock/store`` or ``file:///srv/paddock/store``;
* S3 (AWS, MinIO, Ceph, moto): ``s3://bucket/optional/prefix``, the endpoint from ``endpoint_url=``,
  ``?endpoint=http://host:9000`` or ``AWS_ENDPOINT_URL``, credentials from arguments or boto3's usual
  sources. boto3 is imported only when an S3 store is opened.

Keys are the ones ``schemas.dataset`` builds (``datasets/{car}/{session}/shard-000000.tar`` ...).
Every key is checked before it touches a filesystem or a bucket, so no id or path can reach outside
the store. Local writes are atomic (:mod:`infra.files`).

One error hierarchy: :class:`StoreError` for everything; :class:`NoSuchKey` (also a ``KeyError``) for
a missing object; :class:`InvalidKey` and :class:`UnsupportedStoreUrl` (also ``ValueError``) for a
bad key or URL.
"""

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from infra.files import write_atomic_with

_KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*/?$")


class StoreError(RuntimeError):
    """The object store failed (unreachable, refused, full), or was asked for something it lacks."""


class NoSuchKey(StoreError, KeyError):
    """The key does not exist in the store (``args[0]`` is the key; the message names the store)."""

    def __init__(self, key: str, where: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.where = where

    def __str__(self) -> str:  # KeyError would print only the quoted key
        return f"{self.where}: no object {self.key!r}" if self.where else f"no object {self.key!r}"


# The trainer's name for the same error.
MissingObject = NoSuchKey


class InvalidKey(StoreError, ValueError):
    """A key outside the alphabet, absolute, or with ``.``/``..`` parts."""


class UnsupportedStoreUrl(StoreError, ValueError):
    """A store URL that is neither a path, ``file://`` nor ``s3://bucket``."""


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, contain '..' or characters outside the id alphabet."""
    if not isinstance(key, str) or len(key) > 1024 or not _KEY_RE.fullmatch(key):
        raise InvalidKey(f"invalid object key {key!r}")
    if any(part in (".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get(self, key: str) -> bytes: ...
    def open(self, key: str, start: int = 0) -> IO[bytes]:
        """The object as a stream, from byte ``start`` on (a byte range served without reading the start)."""
        ...

    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def check(self) -> None: ...


class LocalStore:
    """Objects as files under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidKey(f"invalid object key {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as src:
            self._write(key, lambda out: shutil.copyfileobj(src, out, 1024 * 1024))

    def _write(self, key: str, fill: Callable[[IO[bytes]], object]) -> None:
        """Readers see the whole object or none (:func:`infra.files.write_atomic_with`)."""
        write_atomic_with(self._path(key), fill)

    def _missing(self, key: str) -> NoSuchKey:
        return NoSuchKey(key, self.url)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None

    def open(self, key: str, start: int = 0) -> IO[bytes]:
        try:
            fh = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None
        fh.seek(start)
        return fh

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Remove directories left empty, up to the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder ``a/`` or a key's beginning ``a/b``), sorted."""
        if not prefix.strip("/"):
            folder = self.root
        else:
            check_key(prefix)
            folder = self.root / prefix if prefix.endswith("/") else (self.root / prefix).parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            # Names starting with "." are outside the key alphabet: a crashed write's temporary files.
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def check(self) -> None:
        """Create the root if needed and make sure it can be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {self.root}: {exc}") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.root} is not writable")


class S3Store:
    """Objects in an S3 bucket (AWS, MinIO, Ceph, moto ...), optionally under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = True,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            check_key(self.prefix)
        self.url = f"s3://{bucket}/{self.prefix}"
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )
        self._create_bucket = create_bucket

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint_url!r})"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _wrap(self, exc: Exception, key: str) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NoSuchKey(key, self.url)
        return StoreError(f"{self.url}{key}: {exc}")

    def put(self, key: str, data: bytes) -> None:
        k = self._key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=k, Body=data)
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def put_file(self, key: str, path: Path) -> None:
        k = self._key(key)
        try:
            self._client.upload_file(str(path), self.bucket, k)
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def get(self, key: str) -> bytes:
        k = self._key(key)
        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=k)["Body"].read()
            return body
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def open(self, key: str, start: int = 0) -> IO[bytes]:
        k = self._key(key)
        span = {"Range": f"bytes={start}-"} if start else {}
        try:
            stream: IO[bytes] = self._client.get_object(Bucket=self.bucket, Key=k, **span)["Body"]
            return stream
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def size(self, key: str) -> int:
        k = self._key(key)
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=k)["ContentLength"])
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NoSuchKey:
            return False
        return True

    def delete(self, key: str) -> None:
        k = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=k)
        except Exception as exc:
            raise self._wrap(exc, key) from None

    def list(self, prefix: str) -> list[str]:
        full = self.prefix + (check_key(prefix) if prefix else "")
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._wrap(exc, prefix) from None
        return sorted(keys)

    def check(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound") and self._create_bucket:
                try:
                    self._client.create_bucket(Bucket=self.bucket)
                except Exception as exc2:
                    raise StoreError(f"cannot create bucket {self.bucket}: {exc2}") from None
                return
            raise StoreError(f"bucket {self.bucket}: {exc}") from None
        except Exception as exc:
            raise StoreError(f"{self.url}: {exc}") from None


def open_store(
    url: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    create_bucket: bool = True,
) -> ObjectStore:
    """Open the store at ``url``: a path, ``file:///path`` or ``s3://bucket/prefix[?endpoint=URL]``."""
    text = os.fspath(url)
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UnsupportedStoreUrl(f"store URL {text!r} names no bucket (expected s3://bucket/prefix)")
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        return S3Store(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint or endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            create_bucket=create_bucket,
        )
    if parts.scheme == "file":
        return LocalStore(unquote(parts.path))
    if parts.scheme == "" or len(parts.scheme) == 1:  # a drive letter counts as a path
        return LocalStore(text)
    raise UnsupportedStoreUrl(
        f"unsupported store URL {text!r}: use a directory, file://… or s3://bucket/prefix"
    )
