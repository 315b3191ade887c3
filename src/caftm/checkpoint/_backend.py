"""Storage edge of the checkpoint store: durable local files, or any fsspec filesystem.

Two backends share one small contract. :class:`LocalBackend` writes through the OS so it can
make each file durable (temp file, fsync, rename, fsync the directory). :class:`FsspecBackend`
serves every other fsspec filesystem (s3://, gs://, memory://, ...), where an object appears
whole when its upload completes. Both checksum the bytes while writing them, in the hashing pool of
:mod:`caftm.checkpoint.checksum` (hashlib and file writes release the GIL), so a file is written
and checksummed in one pass.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from caftm.checkpoint._direct import MIN_BYTES, open_direct, read_direct, write_direct
from caftm.checkpoint.checksum import BLOCK_BYTES, TreeHasher, tree_sha256
from caftm.errors import CheckpointError, ConfigError

__all__ = ["Backend", "FsspecBackend", "LocalBackend", "open_backend"]

_T = TypeVar("_T")

_WRITE_CHUNK_BYTES = 64 * 2**20
_REMOTE_CHUNK_BYTES = 16 * 2**20
_READ_CHUNK_BYTES = 8 * 2**20
_OBJECT_STORE_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"}


def _start_hash(buffers: Sequence[memoryview]) -> TreeHasher:
    """Begin checksumming ``buffers`` in the hashing pool while the caller writes them."""
    hasher = TreeHasher()
    for buffer in buffers:
        hasher.update(buffer)
    return hasher


def _chunks(buffers: Sequence[memoryview], chunk_bytes: int) -> Iterator[memoryview]:
    for buffer in buffers:
        for start in range(0, buffer.nbytes, chunk_bytes):
            yield buffer[start : start + chunk_bytes]


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


class Backend:
    """Contract of a checkpoint storage backend; paths are backend-native strings."""

    root: str

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def subdir(self, name: str) -> Backend:
        """The same storage, rooted at the folder ``name`` under this root."""
        raise NotImplementedError

    def url(self, path: str) -> str:
        """Path as the user would write it (with protocol for remote stores)."""
        return path

    def list_names(self, path: str) -> list[str]:
        """Base names of the entries directly under ``path`` (empty when it is absent)."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def size(self, path: str) -> int:
        raise NotImplementedError

    def sha256(self, path: str) -> str:
        raise NotImplementedError

    def make_dir(self, path: str) -> None:
        raise NotImplementedError

    def write_file(self, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
        """Write ``buffers`` to ``path`` durably; return (size in bytes, sha256 hex).

        Raises:
            CheckpointError: Any storage error (full disk, permissions), naming the path.
        """
        raise NotImplementedError

    def sync_dir(self, path: str) -> None:
        """Make the directory entries under ``path`` durable (no-op for object stores)."""

    def remove_file(self, path: str) -> None:
        raise NotImplementedError

    def remove_dir(self, path: str) -> None:
        raise NotImplementedError


class LocalBackend(Backend):
    """Checkpoints on a local (or mounted) filesystem, written with fsync and atomic renames."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def subdir(self, name: str) -> Backend:
        return LocalBackend(self.join(name))

    def list_names(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CheckpointError(f"cannot list checkpoint directory {path}: {_describe(e)}") from e

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def sha256(self, path: str) -> str:
        with open(path, "rb") as f:
            return tree_sha256(iter(lambda: f.read(BLOCK_BYTES), b""), streaming=True)

    def make_dir(self, path: str) -> None:
        try:
            created = not os.path.isdir(path)
            os.makedirs(path, exist_ok=True)
            if created:
                self.sync_dir(os.path.dirname(path))
        except OSError as e:
            raise CheckpointError(
                f"cannot create checkpoint directory {path}: {_describe(e)}; "
                "check the path, free space and permissions"
            ) from e

    def write_file(self, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
        temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        hashing = _start_hash(buffers)
        try:
            if not self._write_direct(temp, buffers):
                with open(temp, "wb") as f:
                    for chunk in _chunks(buffers, _WRITE_CHUNK_BYTES):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(temp, path)
        except OSError as e:
            hashing.hexdigest()
            self._discard(temp)
            raise CheckpointError(
                f"cannot write checkpoint file {path}: {_describe(e)}; "
                "check free space and permissions (earlier checkpoints are untouched)"
            ) from e
        return sum(b.nbytes for b in buffers), hashing.hexdigest()

    @staticmethod
    def _write_direct(temp: str, buffers: Sequence[memoryview]) -> bool:
        """Write a large file past the page cache (:mod:`~caftm.checkpoint._direct`) and fsync
        it; False (nothing written) where it is small or the filesystem refuses direct I/O."""
        if sum(b.nbytes for b in buffers) < MIN_BYTES:
            return False
        fd = open_direct(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        if fd is None:
            return False
        try:
            write_direct(fd, buffers)
            os.fsync(fd)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            os.close(fd)  # opened, but its writes refused (an odd block size): write buffered
            os.unlink(temp)
            return False
        os.close(fd)
        return True

    def read_verified(self, path: str, size: int, sha256: str, *, where: str) -> memoryview:
        """The whole file, read once and checked against ``size`` and ``sha256`` (each block
        hashed as it arrives); a large file is read past the page cache.

        Raises:
            CheckpointError: its size or checksum differ (``where`` names it).
            OSError: it cannot be read.
        """
        actual = self.size(path)
        if actual != size:
            raise CheckpointError(f"{where} is {actual} bytes, manifest says {size}")
        fd = open_direct(path, os.O_RDONLY) if size >= MIN_BYTES else None
        data: memoryview | None = None
        if fd is not None:
            hasher = TreeHasher()
            try:
                buffer = read_direct(fd, size, hasher)
                data = memoryview(buffer.numpy()).cast("B")  # type: ignore[arg-type]
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise  # EINVAL: opened, but its reads refused (an odd block size)
            finally:
                os.close(fd)
                digest = hasher.hexdigest()  # waits for the blocks in flight, even on failure
        if data is None:
            with open(path, "rb") as f:
                data = memoryview(bytearray(f.read()))
            if data.nbytes != size:
                raise CheckpointError(f"{where} is {data.nbytes} bytes, manifest says {size}")
            digest = tree_sha256([data])
        if digest != sha256:
            raise CheckpointError(f"{where} sha256 {digest} != manifest {sha256}")
        return data

    @staticmethod
    def _discard(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def sync_dir(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise CheckpointError(f"cannot open directory {path} to sync: {_describe(e)}") from e
        try:
            os.fsync(fd)
        except OSError as e:
            raise CheckpointError(f"cannot sync directory {path}: {_describe(e)}") from e
        finally:
            os.close(fd)

    def remove_file(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise CheckpointError(f"cannot delete {path}: {_describe(e)}") from e

    def remove_dir(self, path: str) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class FsspecBackend(Backend):
    """Checkpoints on any fsspec filesystem; each object is complete once its write closes."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or root

    def url(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    def subdir(self, name: str) -> Backend:
        return FsspecBackend(self.fs, self.join(name))

    def list_names(self, path: str) -> list[str]:
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        except Exception as e:
            raise CheckpointError(f"cannot list {self.url(path)}: {_describe(e)}") from e
        return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def _call(self, action: str, path: str, function: Callable[[], _T]) -> _T:
        """Run a storage call; FileNotFoundError passes, other failures become CheckpointError."""
        try:
            return function()
        except FileNotFoundError:
            raise
        except Exception as e:
            raise CheckpointError(f"cannot {action} {self.url(path)}: {_describe(e)}") from e

    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return bool(self._call("check", path, lambda: self.fs.exists(path)))

    def read_bytes(self, path: str) -> bytes:
        return bytes(self._call("read", path, lambda: self.fs.cat_file(path)))

    def size(self, path: str) -> int:
        self.fs.invalidate_cache(path)
        return int(self._call("stat", path, lambda: self.fs.size(path)))

    def sha256(self, path: str) -> str:
        def digest() -> str:
            with self.fs.open(path, "rb") as f:
                return tree_sha256(iter(lambda: f.read(_READ_CHUNK_BYTES), b""), streaming=True)

        return self._call("read", path, digest)

    def make_dir(self, path: str) -> None:
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else self.fs.protocol
        if set(protocols) & _OBJECT_STORE_PROTOCOLS:
            return  # no directories to make; never create buckets behind the user's back
        try:
            self.fs.makedirs(path, exist_ok=True)
        except Exception as e:
            raise CheckpointError(f"cannot create {self.url(path)}: {_describe(e)}") from e

    def write_file(self, path: str, buffers: Sequence[memoryview]) -> tuple[int, str]:
        hashing = _start_hash(buffers)
        try:
            with self.fs.open(path, "wb") as f:
                for chunk in _chunks(buffers, _REMOTE_CHUNK_BYTES):
                    f.write(chunk)
        except Exception as e:
            hashing.hexdigest()
            raise CheckpointError(
                f"cannot write checkpoint file {self.url(path)}: {_describe(e)}; "
                "check free space, permissions and credentials (earlier checkpoints are untouched)"
            ) from e
        return sum(b.nbytes for b in buffers), hashing.hexdigest()

    def remove_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", path, lambda: self.fs.rm_file(path))

    def remove_dir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", path, lambda: self.fs.rm(path, recursive=True))
        self.fs.invalidate_cache(path)


def open_backend(
    url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None, filesystem: Any
) -> Backend:
    """The backend for ``url``: a local path/``file://`` URL, or any fsspec URL.

    Args:
        url: Where checkpoints live.
        storage_options: Passed to fsspec (e.g. ``{"endpoint_url": ...}`` for s3).
        filesystem: An fsspec filesystem instance to use with ``url`` as its path.

    Raises:
        ConfigError: ``url`` is not a non-empty path or URL, ``storage_options`` is not a
            mapping, or ``filesystem`` is not an fsspec filesystem.
        CheckpointError: The URL's protocol is unknown, its package is not installed, or its
            filesystem cannot be opened.
    """
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(url, str | os.PathLike) or not str(os.fspath(url)).strip():
        raise ConfigError(f"checkpoint store URL must be a non-empty path or URL, got {url!r}")
    text = str(os.fspath(url))
    if filesystem is not None:
        if not isinstance(filesystem, fsspec.AbstractFileSystem):
            raise ConfigError(
                f"filesystem must be an fsspec filesystem, got {type(filesystem).__qualname__}"
            )
        if isinstance(filesystem, LocalFileSystem):
            return LocalBackend(filesystem._strip_protocol(text))
        return FsspecBackend(filesystem, filesystem._strip_protocol(text))
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise ConfigError(
            f"storage_options must be a dict, got {type(storage_options).__qualname__}"
        )
    try:
        fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    except Exception as e:  # any fsspec implementation's failure to start (OSError, TypeError)
        hint = " (pip install 'caftm[s3]')" if text.startswith("s3") else ""
        raise CheckpointError(f"cannot open checkpoint store {text}: {_describe(e)}{hint}") from e
    if isinstance(fs, LocalFileSystem):
        return LocalBackend(path)
    return FsspecBackend(fs, path)
