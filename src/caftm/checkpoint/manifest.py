"""The checkpoint manifest: which files make a checkpoint, their sizes and sha256.

``MANIFEST.json`` is written last; a checkpoint directory without a valid one is incomplete and
is never loaded. ``checksum`` names the checksum scheme of the files (manifests without it, from
before the field was written, use :data:`~caftm.checkpoint.checksum.CHECKSUM_NAME`). ``job``
names the job that wrote it (see :mod:`caftm.checkpoint.owner`); it is absent when a script ran
alone or an older caftm wrote it. Example::

    {"format": "caftm-checkpoint", "format_version": 2, "checksum": "sha256-tree-64MiB",
     "step": 123, "created_unix_s": 1764170000.25, "created_utc": "2026-11-26T15:13:20Z",
     "caftm_version": "0.1.0", "job": {"name": "cnn", "digest": "3f0c9a51d2e87b64"},
     "files": [{"name": "tensors.safetensors", "size_bytes": 4096, "sha256": "ab12..."},
               {"name": "state.json", "size_bytes": 812, "sha256": "cd34..."}]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from caftm.checkpoint.checksum import CHECKSUM_NAME, tree_sha256
from caftm.errors import CheckpointError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "REQUIRED_FILES",
    "STATE_NAME",
    "TENSORS_NAME",
    "FileEntry",
    "Manifest",
]

FORMAT_NAME = "caftm-checkpoint"
FORMAT_VERSION = 2  # 2: files checksummed as a sha256 tree over 64 MiB blocks
MANIFEST_NAME = "MANIFEST.json"
TENSORS_NAME = "tensors.safetensors"
STATE_NAME = "state.json"
REQUIRED_FILES = (TENSORS_NAME, STATE_NAME)

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class FileEntry:
    """One data file of a checkpoint.

    Attributes:
        name: File name inside the checkpoint directory (no path separators).
        size_bytes: Exact size in bytes.
        sha256: Lower-case hex checksum of the whole file: the sha256 tree of
            :mod:`caftm.checkpoint.checksum` (plain sha256 for files up to 64 MiB).
    """

    name: str
    size_bytes: int
    sha256: str

    def check(self, data: bytes | memoryview, *, where: str) -> None:
        """Verify ``data`` against this entry (size first, then sha256).

        Raises:
            CheckpointError: Size or checksum differ; names ``where``.
        """
        if len(data) != self.size_bytes:
            raise CheckpointError(
                f"{where}/{self.name} is {len(data)} bytes, manifest says {self.size_bytes}"
            )
        digest = tree_sha256([data])
        if digest != self.sha256:
            raise CheckpointError(f"{where}/{self.name} sha256 {digest} != manifest {self.sha256}")


@dataclass(frozen=True)
class Manifest:
    """What a complete checkpoint holds.

    Attributes:
        step: Training step the checkpoint was taken at.
        files: The data files, each with size and sha256.
        created_unix_s: Creation time, seconds since the epoch (UTC).
        caftm_version: Version of caftm that wrote it.
        format_version: On-disk format version; only :data:`FORMAT_VERSION` is loadable.
        checksum: Checksum scheme of the files; only
            :data:`~caftm.checkpoint.checksum.CHECKSUM_NAME` is loadable.
        job: the job that wrote it (None: a script run alone, or an older caftm).
        job_digest: that job's training digest (:func:`~caftm.checkpoint.owner.training_digest`).
    """

    step: int
    files: tuple[FileEntry, ...]
    created_unix_s: float
    caftm_version: str
    format_version: int = FORMAT_VERSION
    checksum: str = CHECKSUM_NAME
    job: str | None = None
    job_digest: str | None = None

    @property
    def size_bytes(self) -> int:
        """Total size of the data files in bytes."""
        return sum(f.size_bytes for f in self.files)

    def file(self, name: str) -> FileEntry:
        """The entry for ``name``.

        Raises:
            CheckpointError: No such file in the manifest.
        """
        for entry in self.files:
            if entry.name == name:
                return entry
        raise CheckpointError(f"manifest of step {self.step} lists no file {name!r}")

    def to_json(self) -> bytes:
        """The manifest as UTF-8 JSON."""
        created = datetime.fromtimestamp(self.created_unix_s, tz=UTC)
        body = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "checksum": self.checksum,
            "step": self.step,
            "created_unix_s": self.created_unix_s,
            "created_utc": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "caftm_version": self.caftm_version,
            "files": [
                {"name": f.name, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in self.files
            ],
        }
        if self.job is not None:
            body["job"] = {"name": self.job, "digest": self.job_digest}
        return json.dumps(body, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Manifest:
        """Parse and validate a manifest.

        Args:
            data: The raw ``MANIFEST.json`` bytes.
            where: The checkpoint directory, for messages.

        Raises:
            CheckpointError: Not JSON, another format or version, an unknown checksum scheme,
                or a malformed field.
        """
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{where}/{MANIFEST_NAME} is not valid JSON: {e}") from e
        if not isinstance(body, dict) or body.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{where}/{MANIFEST_NAME} is not a {FORMAT_NAME} manifest")
        version = body.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{where} has checkpoint format version {version!r}; this caftm reads only "
                f"version {FORMAT_VERSION} — upgrade caftm to load it"
            )
        checksum = body.get("checksum", CHECKSUM_NAME)  # absent: written before the field
        if checksum != CHECKSUM_NAME:
            raise CheckpointError(
                f"{where}/{MANIFEST_NAME} names checksum scheme {checksum!r}; this caftm knows "
                f"only {CHECKSUM_NAME!r} — upgrade caftm to load it"
            )
        try:
            files = tuple(_entry(item) for item in body["files"])
            job, job_digest = _owner(body.get("job"))  # absent: a script alone, an older caftm
            manifest = cls(
                step=_int(body["step"]),
                files=files,
                created_unix_s=float(body["created_unix_s"]),
                caftm_version=str(body["caftm_version"]),
                format_version=version,
                checksum=checksum,
                job=job,
                job_digest=job_digest,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}/{MANIFEST_NAME} is malformed: {e!r}") from e
        names = [f.name for f in files]
        missing = [n for n in REQUIRED_FILES if n not in names]
        if missing or len(set(names)) != len(names):
            raise CheckpointError(
                f"{where}/{MANIFEST_NAME} must list {list(REQUIRED_FILES)} once each, has {names}"
            )
        return manifest


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _owner(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    name, digest = value["name"], value.get("digest")
    if not isinstance(name, str) or not name or not isinstance(digest, str | None):
        raise ValueError(f"job must be {{'name': str, 'digest': str}}, got {value!r}")
    return name, digest


def _entry(item: Any) -> FileEntry:
    name, sha = str(item["name"]), str(item["sha256"])
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"unsafe file name {name!r}")
    if not _SHA256_HEX.match(sha):
        raise ValueError(f"sha256 of {name} is not 64 hex digits")
    return FileEntry(name=name, size_bytes=_int(item["size_bytes"]), sha256=sha)
