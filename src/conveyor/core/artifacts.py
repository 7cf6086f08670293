"""Artifact handles, metrics, and the built-in materializers of the engine.

A component may annotate an input with a *handle* type (:class:`Artifact`, :class:`Dataset`,
:class:`Model`, :class:`File`, :class:`Folder`) to receive a reference to the stored payload
instead of a loaded object: out-of-core work reads the Parquet files itself. Returning a
handle made with ``from_path`` stores an existing local file or folder as the output
(copied into the store; the source is left as it was).

Built-in materializers, registered by ``conveyor.core.materializers`` and imported from here
on first use: JSON values, ``pathlib.Path`` (File/Folder), :class:`Metrics` and the handles.
Runners save and load through ``materializers.save_artifact``/``load_artifact``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from conveyor.core.materializers import (
    MARKER_NAME,
    Materializer,
    check_json,
    check_properties,
    load_folder,
    materializer_for,
    normalize_type,
    type_label,
)
from conveyor.exceptions import MaterializerError, NotFoundError, did_you_mean

__all__ = [
    "Artifact",
    "Dataset",
    "File",
    "Folder",
    "HandleMaterializer",
    "JsonMaterializer",
    "Metrics",
    "MetricsMaterializer",
    "Model",
    "PathMaterializer",
    "canonical_json",
    "link_or_copy",
    "payload_files",
    "read_marker",
]


# -- helpers shared by the materializers ------------------------------------------------


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The store's ``_conveyor.json`` of a published folder, or None outside the store."""
    try:
        data = json.loads((Path(folder) / MARKER_NAME).read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise MaterializerError(f"unreadable {MARKER_NAME} in {folder}: {exc}") from exc
    return data if isinstance(data, dict) else None


def payload_files(folder: Path) -> list[Path]:
    """The payload files of a folder (or the file itself), marker excluded, sorted."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    found = [p for p in folder.rglob("*") if p.is_file()]
    return sorted(
        (p for p in found if p != folder / MARKER_NAME),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def _copy_file(source: Path, target: Path) -> None:
    # A copy, never a hard link: a link would share the stored object's inode with the
    # user's file, so rewriting that file in place would corrupt the store (and the store's
    # read-only mode would leak onto the user's file).
    shutil.copyfile(source, target)


def link_or_copy(source: Path, folder: Path) -> list[Path]:
    """Put a file (under its name) or a folder's tree into ``folder``; return the files.

    Files are copied (``copyfile`` uses the kernel's copy where it can), so the user's own
    files stay untouched and independent of the store. A source
    folder's own ``_conveyor.json`` (it was an artifact itself) is not copied.
    """
    source, folder = Path(source), Path(folder)
    if source.is_file():
        if source.name == MARKER_NAME:
            raise MaterializerError(f"cannot store a file named {MARKER_NAME}: {source}")
        _copy_file(source, folder / source.name)
        return [folder / source.name]
    if not source.is_dir():
        raise MaterializerError(f"cannot store {source}: no such file or folder")
    written = []
    for path in payload_files(source):
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_file(path, target)
        written.append(target)
    return written


def canonical_json(value: Any) -> bytes:
    """Canonical UTF-8 JSON (sorted keys, no spaces); MaterializerError names a bad key path.

    Example:
        >>> canonical_json({"b": 1, "a": [1.5, None]})
        b'{"a":[1.5,null],"b":1}'
    """
    check_json(value)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MaterializerError(f"text is not valid Unicode (lone surrogate?): {exc}") from exc


@dataclass(frozen=True)
class Artifact:
    """A reference to an artifact's payload folder, or to a local file/folder to store.

    Attributes:
        uri: where the artifact is stored ("" until it is).
        path: the local payload folder (for ``from_path`` handles: the file or folder given).
        type_name: the artifact type ("Dataset", "Model" ...).
        sha256: the content fingerprint ("" until stored).
        properties: JSON properties recorded with the artifact.

    Example:
        >>> @component
        ... def export(model: Model) -> Artifact:
        ...     out = Path("bundle")
        ...     build_bundle(model.path, out)
        ...     return Artifact.from_path(out, flavour="sklearn")
    """

    uri: str
    path: Path
    type_name: str
    sha256: str
    properties: dict[str, Any] = field(default_factory=dict, hash=False)
    artifact_type: ClassVar[str] = "Artifact"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], **properties: Any) -> Self:
        """An output handle for a local file or folder, with extra JSON properties.

        Storing copies the files into the store; the source stays yours to change.
        """
        source = Path(path).expanduser().absolute()
        cls._check_source(source)
        checked = check_properties(properties, f"{cls.__name__}.from_path({source})")
        return cls(uri="", path=source, type_name=cls.artifact_type, sha256="", properties=checked)

    @classmethod
    def _check_source(cls, source: Path) -> None:
        if not source.exists():
            raise MaterializerError(f"{cls.__name__} path {source} does not exist")

    @property
    def stored(self) -> bool:
        """True once the payload is in the artifact store."""
        return bool(self.uri)

    def files(self) -> list[Path]:
        """The payload files (the store's marker excluded), sorted by relative path."""
        return payload_files(self.path)

    def load(self, python_type: type | str) -> Any:
        """Load the payload as another Python type through the materializer registry.

        Example:
            >>> frame = dataset.load("pandas.DataFrame")
        """
        cls = normalize_type(python_type)
        entry = materializer_for(cls)
        obj = load_folder(entry, self.path, cls, self.type_name)
        return entry.get().bind(obj, self.uri, self.type_name, self.sha256, self.properties)


class Dataset(Artifact):
    """Tabular data as Parquet files in a folder (one or several part files).

    Example:
        >>> def train(data: Dataset) -> Model:
        ...     frame = data.to_pandas()
        ...     for part in data.parquet_files():  # or stream it part by part
        ...         ...
    """

    artifact_type: ClassVar[str] = "Dataset"

    @classmethod
    def _check_source(cls, source: Path) -> None:
        super()._check_source(source)
        if source.is_file() and source.suffix != ".parquet":
            raise MaterializerError(f"Dataset file {source} is not a .parquet file")
        if source.is_dir() and not any(p.suffix == ".parquet" for p in payload_files(source)):
            raise MaterializerError(f"Dataset folder {source} holds no .parquet files")

    def parquet_files(self) -> list[Path]:
        """The Parquet files of the dataset, sorted by relative path."""
        return [p for p in self.files() if p.suffix == ".parquet"]

    def splits(self) -> list[str]:
        """Names of the ``split=NAME`` sub-folders: train, eval, test first, then by name.

        Example:
            >>> data.splits()
            ['train', 'eval', 'test']
        """
        if not self.path.is_dir():
            return []
        names = [
            p.name.partition("=")[2]
            for p in self.path.iterdir()
            if p.is_dir() and p.name.startswith("split=")
        ]
        first = {"train": 0, "eval": 1, "test": 2}
        return sorted(names, key=lambda n: (first.get(n, 3), n))

    def split(self, name: str) -> Dataset:
        """A handle on one split's sub-folder; NotFoundError lists the splits there are.

        Example:
            >>> train = data.split("train").to_pandas()
        """
        names = self.splits()
        if name not in names:
            shown = did_you_mean(name, names) if names else " (it has no split=NAME sub-folders)"
            raise NotFoundError(f"Dataset {self.uri or self.path} has no split {name!r}{shown}")
        properties = {**self.properties, "split": name}
        uri = f"{self.uri}/split={name}" if self.uri else ""
        return Dataset(uri, self.path / f"split={name}", self.type_name, "", properties)

    def to_pandas(self, split: str | None = None) -> Any:
        """The whole dataset (or one split) as a ``pandas.DataFrame``.

        Example:
            >>> frame = data.to_pandas(split="eval")
        """
        if split is not None:
            return self.split(split).to_pandas()
        return self.load("pandas.DataFrame")

    def to_arrow(self, split: str | None = None) -> Any:
        """The whole dataset (or one split) as a ``pyarrow.Table``."""
        if split is not None:
            return self.split(split).to_arrow()
        return self.load("pyarrow.Table")


class Model(Artifact):
    """A model as any folder (or single file) of files in the library's own format.

    Example:
        >>> booster.save_model("out/model.json")
        >>> return Model.from_path("out", flavour="xgboost")
    """

    artifact_type: ClassVar[str] = "Model"


class File(Artifact):
    """One file, stored under its original name.

    Example:
        >>> return File.from_path("report.html")
    """

    artifact_type: ClassVar[str] = "File"

    @classmethod
    def _check_source(cls, source: Path) -> None:
        super()._check_source(source)
        if not source.is_file():
            raise MaterializerError(f"File path {source} is not a file (use Folder)")

    @property
    def file(self) -> Path:
        """The path of the one file."""
        files = self.files()
        if len(files) != 1:
            raise MaterializerError(f"File artifact {self.path} holds {len(files)} files, not 1")
        return files[0]


class Folder(Artifact):
    """A folder tree, stored as is.

    Example:
        >>> return Folder.from_path("plots/")
    """

    artifact_type: ClassVar[str] = "Folder"

    @classmethod
    def _check_source(cls, source: Path) -> None:
        super()._check_source(source)
        if not source.is_dir():
            raise MaterializerError(f"Folder path {source} is not a folder (use File)")


_HANDLE_FOR_TYPE: dict[str, type[Artifact]] = {
    h.artifact_type: h for h in (Dataset, Model, File, Folder)
}


class HandleMaterializer(Materializer):
    """Stores a handle's file or folder; loads any artifact as a handle to its folder.

    Example:
        >>> HandleMaterializer().load(folder, Dataset).parquet_files()
    """

    python_types = (Artifact,)
    artifact_type = "Artifact"
    also_loads = ("*",)
    keeps_folder = True

    def artifact_type_for(self, obj: Any) -> str | None:
        return str(obj.type_name or type(obj).artifact_type)

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        # A stored File handle (passed through) points at its folder: take the one file.
        source = obj.file if isinstance(obj, File) else obj.path
        type(obj)._check_source(source)
        files = link_or_copy(source, folder)
        return {**obj.properties, "num_files": len(files)}

    def load(self, folder: Path, python_type: type) -> Any:
        marker = read_marker(folder) or {}
        default = getattr(python_type, "artifact_type", Artifact.artifact_type)
        type_name = str(marker.get("type_name") or default)
        handle_type = _HANDLE_FOR_TYPE.get(type_name, python_type)
        if not issubclass(handle_type, python_type):
            handle_type = python_type
        sha256 = str(marker.get("sha256", ""))
        return handle_type(uri="", path=Path(folder), type_name=type_name, sha256=sha256)

    def bind(
        self, obj: Any, uri: str, type_name: str, sha256: str, properties: dict[str, Any]
    ) -> Any:
        if not isinstance(obj, Artifact):
            return obj
        return dataclasses.replace(
            obj, uri=uri, type_name=type_name, sha256=sha256, properties=dict(properties)
        )


class Metrics(dict[str, float]):
    """Metric name -> number, stored as JSON ("Metrics"); the values become properties.

    Example:
        >>> @component
        ... def evaluate(model: Model, data: Dataset) -> Metrics:
        ...     return Metrics(accuracy=0.93, f1=0.91)
    """


def _checked_metrics(values: Mapping[Any, Any]) -> dict[str, int | float]:
    clean: dict[str, int | float] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise MaterializerError(f"metric name {key!r} is not a string")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise MaterializerError(f"metric {key!r} is {value!r}, not a number")
        number = int(value) if isinstance(value, numbers.Integral) else float(value)
        if not math.isfinite(number):
            raise MaterializerError(f"metric {key!r} is {value!r}; metrics must be finite")
        clean[key] = number
    return clean


class MetricsMaterializer(Materializer):
    """:class:`Metrics` as canonical ``data.json``, values copied into the properties.

    Example:
        >>> MetricsMaterializer().save(Metrics(auc=0.9), folder)
        {'auc': 0.9}
    """

    python_types = (Metrics,)
    artifact_type = "Metrics"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        clean = _checked_metrics(obj)
        (folder / "data.json").write_bytes(canonical_json(clean))
        return dict(clean)

    def load(self, folder: Path, python_type: type) -> Any:
        path = Path(folder) / "data.json"
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise MaterializerError(f"cannot read metrics from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise MaterializerError(f"{path} holds a {type(data).__name__}, not metrics")
        return python_type(_checked_metrics(data))


def _coerce(value: Any, python_type: type, folder: Path) -> Any:
    """Give a loaded JSON value the consumer's type (int for float, dict for a dict subclass)."""
    if isinstance(value, python_type):
        return value
    if python_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if value is not None and issubclass(python_type, type(value)):
        try:
            return python_type(value)
        except (TypeError, ValueError) as exc:
            raise MaterializerError(f"cannot make {type_label(python_type)} from {folder}") from exc
    msg = f"artifact in {folder} holds a {type_label(type(value))}, not a {type_label(python_type)}"
    raise MaterializerError(msg)


class JsonMaterializer(Materializer):
    """JSON values (dict, list, str, int, float, bool, None) as canonical ``data.json``.

    Example:
        >>> JsonMaterializer().save({"b": 1, "a": 2}, folder)  # data.json: {"a":2,"b":1}
        {'json_type': 'dict'}
    """

    python_types = (dict, list, str, int, float, bool, type(None))
    artifact_type = "JSON"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        (folder / "data.json").write_bytes(canonical_json(obj))
        return {"json_type": type(obj).__name__ if obj is not None else "null"}

    def load(self, folder: Path, python_type: type) -> Any:
        path = Path(folder) / "data.json"
        try:
            value = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise MaterializerError(f"no data.json in {folder}") from exc
        except ValueError as exc:
            raise MaterializerError(f"{path} is not valid JSON: {exc}") from exc
        return _coerce(value, python_type, folder)


class PathMaterializer(Materializer):
    """A local file ("File" artifact) or folder ("Folder") given as a ``pathlib.Path``.

    Saving links or copies the file under its name, or the folder's tree; loading gives the
    stored file's path, or the stored folder (which also holds the store's marker file).

    Example:
        >>> PathMaterializer().artifact_type_for(Path("report.html"))
        'File'
    """

    python_types = (Path,)
    artifact_type = "Folder"
    also_loads = ("File",)
    keeps_folder = True

    def artifact_type_for(self, obj: Any) -> str | None:
        return "File" if Path(obj).is_file() else "Folder"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        files = link_or_copy(Path(obj), folder)
        return {"name": Path(obj).name, "num_files": len(files)}

    def load(self, folder: Path, python_type: type) -> Any:
        folder = Path(folder)
        marker = read_marker(folder)
        if folder.is_dir() and marker is not None and marker.get("type_name") == "File":
            files = payload_files(folder)
            if len(files) != 1:
                raise MaterializerError(f"File artifact {folder} holds {len(files)} files, not 1")
            return python_type(files[0])
        return python_type(folder)
