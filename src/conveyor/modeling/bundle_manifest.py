"""The manifest of a model bundle (``bundle.json``), its hash, and integrity checks.

``bundle.json`` lists every other file of the bundle with its sha256; ``bundle.sha256``
holds the sha256 of the manifest's canonical JSON (sorted keys, no spaces), so one hash
covers every byte of the bundle. :func:`verify_folder` recomputes both: a changed byte, a
file added or removed, or an edited manifest is a :class:`BundleIntegrityError` that names
the file. The hash proves integrity, not origin: anyone able to write the folder can rehash
it, which is why loading never runs code whatever the hash says.

A bundle stored in the artifact store also holds the store's ``_conveyor.json`` marker,
which is not part of the bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.modeling.bundle_errors import BundleIntegrityError, SignatureError
from conveyor.modeling.bundle_signature import Signature

__all__ = [
    "FORMAT_VERSION",
    "HASH_FILE",
    "MANIFEST_FILE",
    "BundleManifest",
    "canonical_bytes",
    "file_sha256",
    "hash_files",
    "read_manifest",
    "verify_folder",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_FILE = "bundle.json"
HASH_FILE = "bundle.sha256"
_STORE_MARKER = "_conveyor.json"  # the artifact store's marker, next to a stored bundle
_NOT_LISTED = frozenset({MANIFEST_FILE, HASH_FILE, _STORE_MARKER})
_REQUIRED = ("format_version", "flavour", "model", "signature", "files", "created_at")


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, finite numbers only.

    Example:
        >>> canonical_bytes({"b": 1, "a": [1.5, None]})
        b'{"a":[1.5,null],"b":1}'
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _render(value: Any) -> bytes:
    """The exact bytes of ``bundle.json`` for a manifest (readable, and deterministic)."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of the bundle's files (manifest, hash and store
    marker excluded). Symbolic links are refused: a bundle holds its own bytes."""
    hashes: dict[str, str] = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise BundleIntegrityError(f"{folder}: {rel!r} is a symbolic link; bundles hold files")
        if path.is_file() and rel not in _NOT_LISTED:
            hashes[rel] = file_sha256(path)
    return hashes


@dataclass(frozen=True)
class BundleManifest:
    """The parsed ``bundle.json``.

    Example:
        >>> manifest = verify_bundle("bundle/")
        >>> manifest.flavour_name, manifest.task, manifest.sha256[:12]
        ('sklearn', 'binary', '3f9a0c2d41be')
    """

    format_version: int
    flavour: dict[str, Any]
    model: dict[str, Any]
    signature: Signature
    files: dict[str, str]
    created_at: str
    preprocessing: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    history: str | None = None

    @property
    def flavour_name(self) -> str:
        """The flavour that loads the model."""
        return str(self.flavour.get("name", ""))

    @property
    def task(self) -> str | None:
        """``binary``, ``multiclass`` or ``regression``."""
        return self.signature.task

    @property
    def classes(self) -> tuple[Any, ...] | None:
        """Class labels (classification), in the order of ``predict_proba``'s columns."""
        return self.signature.classes

    @property
    def sha256(self) -> str:
        """sha256 of the canonical manifest: the hash of the whole bundle."""
        return hashlib.sha256(canonical_bytes(self.to_dict())).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``bundle.json``."""
        return {
            "format_version": self.format_version,
            "flavour": self.flavour,
            "model": self.model,
            "preprocessing": self.preprocessing,
            "signature": self.signature.to_dict(),
            "metrics": self.metrics,
            "lineage": self.lineage,
            "seed": self.seed,
            "params": self.params,
            "environment": self.environment,
            "created_at": self.created_at,
            "files": self.files,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = MANIFEST_FILE) -> BundleManifest:
        """Read the JSON form; BundleIntegrityError names what is malformed."""
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise BundleIntegrityError(f"{where}: missing key(s) {missing}: not a model bundle")
        version = data["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise BundleIntegrityError(
                f"{where}: bundle format {version!r} is newer than this conveyor reads "
                f"({FORMAT_VERSION}); upgrade conveyor-ml"
            )
        try:
            signature = Signature.from_dict(data["signature"])
        except SignatureError as exc:
            raise BundleIntegrityError(f"{where}: {exc}") from exc
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "signature"}
        return cls(signature=signature, **fields)


def write_manifest(folder: Path, manifest: BundleManifest) -> None:
    """Write ``bundle.json`` and ``bundle.sha256`` into ``folder``."""
    data = manifest.to_dict()
    (folder / MANIFEST_FILE).write_bytes(_render(data))
    (folder / HASH_FILE).write_text(manifest.sha256 + "\n", encoding="ascii")


def _read_manifest(folder: Path) -> tuple[dict[str, Any], bytes]:
    path = folder / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleIntegrityError(f"{folder}: no {MANIFEST_FILE}: not a model bundle") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BundleIntegrityError(
            f"{folder}: {MANIFEST_FILE} is not valid JSON (was it edited?): {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise BundleIntegrityError(f"{folder}: {MANIFEST_FILE} holds no manifest object")
    return data, raw


def _check_manifest_hash(folder: Path, data: dict[str, Any], raw: bytes) -> None:
    try:
        expected = (folder / HASH_FILE).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{folder}: {HASH_FILE} is missing or unreadable") from exc
    try:
        actual = hashlib.sha256(canonical_bytes(data)).hexdigest()
    except ValueError as exc:  # NaN or infinity: never written by save_bundle
        raise BundleIntegrityError(f"{folder}: {MANIFEST_FILE} was changed: {exc}") from exc
    if actual != expected:
        raise BundleIntegrityError(
            f"{folder}: file {MANIFEST_FILE!r} was changed: its sha256 {actual[:12]}... does "
            f"not match {HASH_FILE} ({expected[:12]}...)"
        )
    if _render(data) != raw:
        raise BundleIntegrityError(
            f"{folder}: file {MANIFEST_FILE!r} was edited (its bytes differ from the manifest "
            "it was written as)"
        )


def _check_files(folder: Path, listed: Mapping[str, str]) -> None:
    found = hash_files(folder)
    for rel, expected in sorted(listed.items()):
        actual = found.get(rel)
        if actual is None:
            raise BundleIntegrityError(f"{folder}: file {rel!r} is missing")
        if actual != expected:
            raise BundleIntegrityError(
                f"{folder}: file {rel!r} was changed (sha256 {actual[:12]}..., the manifest "
                f"says {expected[:12]}...)"
            )
    extra = sorted(set(found) - set(listed))
    if extra:
        raise BundleIntegrityError(
            f"{folder}: file {extra[0]!r} is not in the manifest (added after the bundle was "
            f"made){f'; {len(extra)} such files' if len(extra) > 1 else ''}"
        )


def verify_folder(folder: str | Path) -> BundleManifest:
    """Check every hash of the bundle in ``folder`` and return its manifest.

    Raises BundleIntegrityError naming the manifest or the file that does not match.
    """
    folder = Path(folder)
    data, raw = _read_manifest(folder)
    _check_manifest_hash(folder, data, raw)
    manifest = BundleManifest.from_dict(data, f"{folder}/{MANIFEST_FILE}")
    if not isinstance(manifest.files, dict):
        raise BundleIntegrityError(f"{folder}: {MANIFEST_FILE} 'files' is not a mapping")
    _check_files(folder, manifest.files)
    return manifest


def read_manifest(folder: str | Path) -> BundleManifest:
    """The manifest of the bundle in ``folder``, without checking any hash."""
    folder = Path(folder)
    data, _ = _read_manifest(folder)
    return BundleManifest.from_dict(data, f"{folder}/{MANIFEST_FILE}")
