"""Content-addressed, atomic artifact storage on any fsspec filesystem.

Layout under the root URL::

    objects/<sha[:2]>/<sha>/            one artifact: the payload files a materializer wrote
    objects/<sha[:2]>/<sha>/_conveyor.json  written last; an artifact exists iff it is there
    .tmp/<pid>-<uuid>/                  staging folders (local roots only), swept when stale

A payload is staged in a local folder, fingerprinted (sha256 over the artifact type and the
sorted relative paths, sizes and bytes of its files), then published: on a local root by one
``os.rename`` of the staged folder (atomic: a crash never leaves a half artifact visible);
on other filesystems by uploading the payload first and the ``_conveyor.json`` marker last.
Identical content is stored once: publishing a fingerprint that already exists is a no-op.

Local publishing protocol, in order: hash the staged files (each read once); if the object
exists already, drop the staging folder; otherwise fsync every payload file and folder and
make the files read-only (objects are immutable), write
and fsync the marker, rename the folder into ``objects/`` and fsync its parent. When two
processes publish the same content at once, one rename wins and the loser, finding the
marker in place, deletes its staging folder. A destination left without a marker (damaged
by hand) is moved aside and replaced.

``_conveyor.json`` holds ``{"sha256", "size", "type_name", "files"}``; ``files`` lists the
payload's relative POSIX paths. The name is reserved: a payload may not contain it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.exceptions import ArtifactStoreError

__all__ = ["MARKER_NAME", "ArtifactStore", "StoredArtifact", "fingerprint_folder"]

MARKER_NAME = "_conveyor.json"
"""The completion marker inside every published object folder."""

_HASH_DOMAIN = b"conveyor-artifact-v1\n"
_CHUNK = 1 << 20
_REMOTE_STAGING_PREFIX = "conveyor-stage-"
# Staging folders this process is writing into, shared by every store instance so
# ``sweep_staging`` never removes a folder that is still in use here.
_ACTIVE_STAGING: set[str] = set()


@dataclass(frozen=True)
class StoredArtifact:
    """Where a published payload lives and what it is."""

    uri: str
    sha256: str
    size: int  # bytes of payload, marker excluded


@dataclass(frozen=True)
class _Scan:
    sha256: str
    size: int
    files: list[str]  # relative POSIX paths, sorted
    dirs: list[Path]  # every folder of the payload, the root included


def fingerprint_folder(folder: Path, type_name: str) -> tuple[str, int]:
    """Return (sha256 hex, total size) of a payload folder for an artifact type.

    A top-level ``_conveyor.json`` is ignored, so a published object folder fingerprints
    to its own address.

    Example:
        >>> sha, size = fingerprint_folder(Path("objects/ab/abc..."), "JSON")
    """
    scan = _scan(Path(folder), type_name)
    return scan.sha256, scan.size


def _check_type_name(type_name: str) -> None:
    if not isinstance(type_name, str) or not type_name or "\0" in type_name:
        raise ArtifactStoreError(f"invalid artifact type name {type_name!r}")


def _list_payload(folder: Path) -> tuple[list[tuple[str, Path]], list[Path]]:
    """(relative path, absolute path) of every payload file, sorted; and every folder."""
    if not folder.is_dir():
        raise ArtifactStoreError(f"payload folder {folder} does not exist")
    files: list[tuple[str, Path]] = []
    dirs: list[Path] = [folder]
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink():
                    raise ArtifactStoreError(f"payload may not contain symlinks: {path}")
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(path)
                    pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    rel = path.relative_to(folder).as_posix()
                    if rel != MARKER_NAME:
                        files.append((rel, path))
                else:
                    raise ArtifactStoreError(f"payload may only contain regular files: {path}")
    files.sort(key=lambda item: item[0])
    return files, dirs


def _scan(folder: Path, type_name: str) -> _Scan:
    _check_type_name(type_name)
    files, dirs = _list_payload(folder)
    digest = hashlib.sha256(_HASH_DOMAIN)
    digest.update(type_name.encode() + b"\0")
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    for rel, path in files:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest.update(f"{rel}\0{size}\0".encode())
            read = 0
            while n := handle.readinto(buffer):
                digest.update(view[:n])
                read += n
        if read != size:
            raise ArtifactStoreError(f"payload file {path} changed while it was being hashed")
        total += size
    return _Scan(digest.hexdigest(), total, [rel for rel, _ in files], dirs)


def _marker_bytes(scan: _Scan, type_name: str) -> bytes:
    marker = {"sha256": scan.sha256, "size": scan.size, "type_name": type_name, "files": scan.files}
    return json.dumps(marker, sort_keys=True, separators=(",", ":")).encode()


def _fsync_path(path: Path) -> None:
    """Flush a folder's entries; a no-op where folders cannot be fsynced (some network
    filesystems, Windows)."""
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


def _seal(folder: Path, scan: _Scan, durable: bool) -> None:
    """Make payload files read-only and, when durable, flush files and folders to disk."""
    write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for rel in scan.files:
        fd = os.open(folder / rel, os.O_RDONLY)
        try:
            if durable:
                os.fsync(fd)
            if hasattr(os, "fchmod"):  # POSIX (Windows only from Python 3.13)
                os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~write_bits)
        finally:
            os.close(fd)
    if durable:
        for directory in scan.dirs:
            _fsync_path(directory)


def _write_file(path: Path, data: bytes, durable: bool) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def _rmtree(path: Path) -> bool:
    """Remove a tree; False when it could not be removed (gone already counts as removed)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def _is_stale(path: Path, max_age_s: float) -> bool:
    """A staging folder is stale when its writer is dead or it is older than max_age_s."""
    if str(path) in _ACTIVE_STAGING:
        return False
    pid_text = path.name.removeprefix(_REMOTE_STAGING_PREFIX).split("-", 1)[0]
    if pid_text.isdigit() and not _pid_alive(int(pid_text)):
        return True
    try:
        return time.time() - path.stat().st_mtime > max_age_s
    except FileNotFoundError:
        return False


class ArtifactStore(ABC):
    """Publish and read artifact payloads by content.

    Example:
        >>> store = ArtifactStore.open("/tmp/arts")
        >>> with store.staging() as folder:
        ...     (folder / "data.json").write_text("{}")
        ...     stored = store.publish(folder, "JSON")
    """

    def __init__(self, url: str, *, durable: bool = True) -> None:
        self._url = url
        self._durable = durable

    @classmethod
    def open(cls, url: str, *, durable: bool = True) -> ArtifactStore:
        """A local path, ``file://`` URL or any fsspec URL (``memory://``, ``s3://`` ...).

        ``durable=False`` skips fsync on local roots (tests, throw-away stores).
        """
        text = os.fspath(url)
        if "://" not in text or text.startswith("file://"):
            root = Path(text.removeprefix("file://")).expanduser().resolve()
            return _LocalArtifactStore(root, durable=durable)
        import fsspec  # not for local roots: it costs ~30 ms of a step's cold start

        try:
            fs, root_path = fsspec.core.url_to_fs(text)
        except (ImportError, ValueError) as exc:
            raise ArtifactStoreError(f"cannot open artifact store {text!r}: {exc}") from exc
        return _FsspecArtifactStore(text.rstrip("/"), fs, root_path.rstrip("/"))

    @property
    def url(self) -> str:
        """The store's root: an absolute path for local roots, else the fsspec URL."""
        return self._url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """An empty local folder to write a payload into; removed on exit if not published."""
        folder = self._new_staging_folder()
        _ACTIVE_STAGING.add(str(folder))
        try:
            yield folder
        finally:
            _ACTIVE_STAGING.discard(str(folder))
            if folder.exists():
                _rmtree(folder)

    @abstractmethod
    def _new_staging_folder(self) -> Path: ...

    @abstractmethod
    def publish(self, folder: Path, type_name: str) -> StoredArtifact:
        """Fingerprint ``folder`` and make it visible under its content address (atomically).

        The staged folder is consumed (moved or deleted). On error it is left in place for
        the caller (``staging()`` removes it)."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """True when the artifact at ``uri`` is completely published."""

    @abstractmethod
    def local_folder(self, uri: str) -> contextlib.AbstractContextManager[Path]:
        """A local folder holding the payload of ``uri`` (the folder itself on local roots,
        a temporary download otherwise). Raises ArtifactStoreError naming the URI when missing.

        The folder includes the ``_conveyor.json`` marker; treat it as read-only."""

    @abstractmethod
    def uri_for(self, sha256: str) -> str:
        """The URI an artifact with this fingerprint has (or would have) in this store."""

    def verify(self, uri: str) -> StoredArtifact:
        """Re-hash the payload of ``uri`` and check it against its marker.

        Raises ArtifactStoreError naming the URI when it is missing or was altered."""
        with self.local_folder(uri) as folder:
            marker = json.loads((folder / MARKER_NAME).read_bytes())
            sha, size = fingerprint_folder(folder, marker["type_name"])
        if sha != marker["sha256"] or not uri.rstrip("/").endswith(sha):
            raise ArtifactStoreError(f"artifact {uri} is corrupted: its content hashes to {sha}")
        return StoredArtifact(uri, sha, size)

    def sweep_staging(self, max_age_s: float = 3600.0) -> int:
        """Remove staging folders whose writer process is gone (or older than max_age_s)."""
        removed = 0
        for path in self._staging_candidates():
            if _is_stale(path, max_age_s) and _rmtree(path):
                removed += 1
        return removed

    def _staging_candidates(self) -> list[Path]:
        temp = Path(tempfile.gettempdir())
        return sorted(temp.glob(f"{_REMOTE_STAGING_PREFIX}*"))


class _LocalArtifactStore(ArtifactStore):
    """Objects in a local folder, published by an atomic ``os.rename``."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        super().__init__(str(root), durable=durable)
        self._root = root
        self._tmp = root / ".tmp"

    def uri_for(self, sha256: str) -> str:
        return str(self._root / "objects" / sha256[:2] / sha256)

    def _new_staging_folder(self) -> Path:
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            folder = self._tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
            folder.mkdir()
        except OSError as exc:
            msg = f"cannot create staging folder under {self._tmp}: {exc}"
            raise ArtifactStoreError(msg) from exc
        return folder

    def publish(self, folder: Path, type_name: str) -> StoredArtifact:
        folder = Path(folder)
        if (folder / MARKER_NAME).exists():
            raise ArtifactStoreError(f"payload in {folder} may not contain {MARKER_NAME}")
        scan = _scan(folder, type_name)
        dest = Path(self.uri_for(scan.sha256))
        stored = StoredArtifact(str(dest), scan.sha256, scan.size)
        if (dest / MARKER_NAME).is_file():
            _rmtree(folder)
            return stored
        try:
            _seal(folder, scan, self._durable)
            _write_file(folder / MARKER_NAME, _marker_bytes(scan, type_name), self._durable)
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot publish {folder} into {self._url}: {exc}") from exc
        self._move_into_place(folder, dest)
        return stored

    def _move_into_place(self, folder: Path, dest: Path) -> None:
        error: OSError | None = None
        for _attempt in range(3):
            try:
                os.rename(folder, dest)
            except OSError as exc:
                error = exc
                if (dest / MARKER_NAME).is_file():  # published meanwhile: same content
                    _rmtree(folder)
                    return
                if exc.errno == errno.EXDEV:  # payload staged on another filesystem
                    folder = self._restage(folder)
                elif dest.exists():  # left without a marker (damaged): replace it
                    self._discard_broken(dest)
                # else: another process was replacing a damaged copy; try again
            else:
                if self._durable:
                    _fsync_path(dest.parent)
                return
        raise ArtifactStoreError(f"cannot publish {folder} as {dest}: {error}") from error

    def _restage(self, folder: Path) -> Path:
        staged = self._new_staging_folder()
        shutil.copytree(folder, staged, dirs_exist_ok=True)
        _rmtree(folder)
        return staged

    def _discard_broken(self, dest: Path) -> None:
        aside = self._tmp / f"{os.getpid()}-broken-{uuid.uuid4().hex}"
        self._tmp.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.rename(dest, aside)
            _rmtree(aside)

    def exists(self, uri: str) -> bool:
        return (Path(uri) / MARKER_NAME).is_file()

    @contextmanager
    def local_folder(self, uri: str) -> Iterator[Path]:
        if not self.exists(uri):
            raise ArtifactStoreError(f"artifact {uri} does not exist in {self._url}")
        yield Path(uri)

    def _staging_candidates(self) -> list[Path]:
        if not self._tmp.is_dir():
            return []
        return sorted(self._tmp.iterdir())


class _FsspecArtifactStore(ArtifactStore):
    """Objects on any fsspec filesystem: upload the payload, then the marker."""

    def __init__(self, url: str, fs: Any, root_path: str) -> None:
        super().__init__(url)
        self._fs = fs
        self._root_path = root_path

    def uri_for(self, sha256: str) -> str:
        return f"{self._url}/objects/{sha256[:2]}/{sha256}"

    def _fs_path(self, uri: str) -> tuple[Any, str]:
        uri = uri.rstrip("/")
        if uri.startswith(self._url + "/"):
            return self._fs, self._root_path + uri[len(self._url) :]
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return fs, path.rstrip("/")

    def _new_staging_folder(self) -> Path:
        prefix = f"{_REMOTE_STAGING_PREFIX}{os.getpid()}-"
        return Path(tempfile.mkdtemp(prefix=prefix))

    def publish(self, folder: Path, type_name: str) -> StoredArtifact:
        folder = Path(folder)
        if (folder / MARKER_NAME).exists():
            raise ArtifactStoreError(f"payload in {folder} may not contain {MARKER_NAME}")
        scan = _scan(folder, type_name)
        uri = self.uri_for(scan.sha256)
        fs, dest = self._fs_path(uri)
        try:
            if not fs.exists(f"{dest}/{MARKER_NAME}"):
                for rel in scan.files:
                    target = f"{dest}/{rel}"
                    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                    fs.put_file(str(folder / rel), target)
                fs.pipe_file(f"{dest}/{MARKER_NAME}", _marker_bytes(scan, type_name))
        except Exception as exc:  # fsspec backends raise anything
            raise ArtifactStoreError(f"cannot upload {folder} to {uri}: {exc}") from exc
        _rmtree(folder)
        return StoredArtifact(uri, scan.sha256, scan.size)

    def exists(self, uri: str) -> bool:
        fs, path = self._fs_path(uri)
        try:
            return bool(fs.isfile(f"{path}/{MARKER_NAME}"))
        except Exception as exc:
            raise ArtifactStoreError(f"cannot check artifact {uri}: {exc}") from exc

    @contextmanager
    def local_folder(self, uri: str) -> Iterator[Path]:
        if not self.exists(uri):
            raise ArtifactStoreError(f"artifact {uri} does not exist in {self._url}")
        fs, path = self._fs_path(uri)
        with tempfile.TemporaryDirectory(prefix="conveyor-download-") as tmp:
            local = Path(tmp)
            try:
                self._download(fs, path, local)
            except Exception as exc:
                raise ArtifactStoreError(f"cannot download artifact {uri}: {exc}") from exc
            yield local

    @staticmethod
    def _download(fs: Any, path: str, local: Path) -> None:
        marker = json.loads(fs.cat_file(f"{path}/{MARKER_NAME}"))
        for rel in [*marker["files"], MARKER_NAME]:
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{path}/{rel}", str(target))
