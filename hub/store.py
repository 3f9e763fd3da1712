"""Object storage: a local directory (default) or any S3-compatible service.

Keys are the ones ``schemas.dataset`` builds (``datasets/{car}/{session}/shard-000000.tar`` ...).
Every key is checked before it touches a filesystem or a bucket, so no id or path can reach outside
the store. Local writes are atomic (temporary file, fsync, rename).
"""

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit

_KEY_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*/?$")


class StoreError(RuntimeError):
    """The object store failed (unreachable, refused, full)."""


class NoSuchKey(KeyError):
    """The key does not exist in the store."""


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, contain '..' or characters outside the id alphabet."""
    if not isinstance(key, str) or len(key) > 1024 or not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid object key {key!r}")
    if any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get(self, key: str) -> bytes: ...
    def open(self, key: str) -> IO[bytes]: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def check(self) -> None: ...


class LocalStore:
    """Objects as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"invalid object key {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as src:
            self._write(key, lambda out: shutil.copyfileobj(src, out, 1024 * 1024))

    def _write(self, key: str, fill: Callable[[IO[bytes]], object]) -> None:
        """Write through a temporary file, fsync, rename: readers see the whole object or none."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NoSuchKey(key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NoSuchKey(key) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NoSuchKey(key) from None

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

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if base.is_file():
            yield prefix
            return
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.root} is not writable")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class S3Store:
    """Objects in an S3 bucket (AWS, MinIO, Ceph, moto ...), optionally under a key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
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
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
            ),
        )
        self._create_bucket = create_bucket

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _wrap(self, exc: Exception, key: str) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NoSuchKey(key)
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

    def open(self, key: str) -> IO[bytes]:
        k = self._key(key)
        try:
            stream: IO[bytes] = self._client.get_object(Bucket=self.bucket, Key=k)["Body"]
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

    def list(self, prefix: str) -> Iterator[str]:
        full = self.prefix + (check_key(prefix) if prefix else "")
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]
        except Exception as exc:
            raise self._wrap(exc, prefix) from None

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
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    create_bucket: bool = True,
) -> ObjectStore:
    """Open the store at ``url``: a path, ``file:///path`` or ``s3://bucket/prefix``."""
    if url.startswith("s3://"):
        parts = urlsplit(url)
        return S3Store(
            parts.netloc,
            parts.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            create_bucket=create_bucket,
        )
    if url.startswith("file://"):
        return LocalStore(Path(urlsplit(url).path))
    if "://" in url:
        raise ValueError(f"unsupported store url {url!r}")
    return LocalStore(Path(url))
