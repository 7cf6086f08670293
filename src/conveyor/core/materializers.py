"""Materializers turn Python objects into stored artifacts and back.

A materializer writes an object into an empty local folder and reads it back from one; the
artifact store takes care of fingerprints, atomicity and where bytes live. Each materializer
names the *artifact type* it writes (``"Dataset"``, ``"Model"``, ``"JSON"`` ...) and the
artifact types it can read, which is how the pipeline builder checks that an edge fits.

Materializers for optional libraries (pandas, Arrow, numpy, scikit-learn) are registered by
type *name* and imported on first use, so this module never imports them.

Resolution: a type annotation is reduced to a class (``Annotated[X, ...]`` -> ``X``,
``Optional[X]`` -> ``X``, ``list[int]`` -> ``list``), then its MRO is walked; the first class
with a registration wins, matched by identity or by its qualified name
(``f"{cls.__module__}.{cls.__qualname__}"``) against registrations made by name. For the
same class, user registrations beat the built-ins, and later ones beat earlier ones.

The folder a materializer reads from is a published object folder: next to the payload it
holds the store's ``_conveyor.json`` marker (``{"sha256", "size", "type_name", "files"}``),
which ``conveyor.core.artifacts.read_marker`` returns and ``payload_files`` leaves out.

Runners make one call each way: :func:`save_artifact` (stage, save, publish) and
:func:`load_artifact` (check the type, load; handles learn their uri, sha and properties).
"""

from __future__ import annotations

import atexit
import importlib
import math
import threading
import types
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    NewType,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from conveyor.exceptions import ConveyorError, MaterializerError

__all__ = [
    "MARKER_NAME",
    "Materializer",
    "MaterializerEntry",
    "PayloadStore",
    "artifact_type_of",
    "can_load",
    "check_json",
    "check_properties",
    "load_artifact",
    "load_folder",
    "materializer_for",
    "normalize_type",
    "qualified_name",
    "register_materializer",
    "resolve_type_name",
    "save_artifact",
    "type_label",
]

MARKER_NAME = "_conveyor.json"
"""The artifact store's completion marker (``conveyor.store`` owns it; the engine's layers
may not import each other, so the name is repeated here and a test keeps both equal)."""

_EXTRA_FOR_MODULE = {"pandas": "data", "pyarrow": "data", "numpy": "data"}
_EXTRA_FOR_MODULE |= {"sklearn": "sklearn", "skops": "sklearn", "scipy": "sklearn"}


class Materializer(ABC):
    """Save objects of some Python types into a folder and load them back.

    Subclass, set the class variables and register it::

        class YamlMaterializer(Materializer):
            python_types = (MyConfig,)
            artifact_type = "Config"

            def save(self, obj, folder):
                (folder / "config.yaml").write_text(obj.to_yaml())
                return {"keys": len(obj)}

            def load(self, folder, python_type):
                return MyConfig.from_yaml((folder / "config.yaml").read_text())

        register_materializer(YamlMaterializer)
    """

    python_types: ClassVar[tuple[type | str, ...]] = ()
    """Types handled; a string is a fully qualified class name, matched without importing."""
    artifact_type: ClassVar[str]
    """The artifact type written by :meth:`save`."""
    also_loads: ClassVar[tuple[str, ...]] = ()
    """Other artifact types :meth:`load` understands ("*" for any)."""
    keeps_folder: ClassVar[bool] = False
    """True when loaded objects point into the folder (paths, handles), so it must outlive
    the load: remote downloads are then kept until the object is garbage collected."""

    @abstractmethod
    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        """Write ``obj`` into the empty ``folder``; return JSON-able artifact properties."""

    @abstractmethod
    def load(self, folder: Path, python_type: type) -> Any:
        """Read an object of ``python_type`` back from ``folder``."""

    def artifact_type_for(self, obj: Any) -> str | None:
        """The artifact type ``obj`` is stored as when it depends on the value (a path to a
        file is a "File", to a folder a "Folder"); None means the registered type."""
        return None

    def bind(
        self, obj: Any, uri: str, type_name: str, sha256: str, properties: dict[str, Any]
    ) -> Any:
        """Tell a loaded object where it came from (handles keep it); default: unchanged."""
        return obj


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, the form string registrations use.

    Example:
        >>> qualified_name(dict)
        'builtins.dict'
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def type_label(tp: Any) -> str:
    """A short name for messages: ``dict``, ``pandas.DataFrame``."""
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else qualified_name(tp)
    return str(tp)


class MaterializerEntry:
    """A registered materializer, possibly not imported yet."""

    artifact_type: str
    also_loads: tuple[str, ...]

    def __init__(
        self,
        target: type[Materializer] | str,
        python_types: tuple[type | str, ...],
        artifact_type: str,
        also_loads: tuple[str, ...],
        *,
        builtin: bool = False,
        order: int = 0,
    ) -> None:
        self.target = target
        self.python_types = python_types
        self.artifact_type = artifact_type
        self.also_loads = also_loads
        self.builtin = builtin
        self.order = order
        self._classes = frozenset(t for t in python_types if isinstance(t, type))
        self._names = frozenset(t for t in python_types if isinstance(t, str))
        self._instance: Materializer | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """``module:Class`` of the materializer."""
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    def __repr__(self) -> str:
        return f"MaterializerEntry({self.name}, artifact_type={self.artifact_type!r})"

    def matches(self, cls: type, name: str) -> bool:
        """True when this entry handles exactly ``cls`` (whose qualified name is ``name``)."""
        return cls in self._classes or name in self._names

    def loads(self, artifact_type: str) -> bool:
        """True when :meth:`Materializer.load` reads artifacts of ``artifact_type``."""
        return (
            artifact_type == self.artifact_type
            or artifact_type in self.also_loads
            or "*" in self.also_loads
        )

    def get(self) -> Materializer:
        """The materializer instance, imported and created on first use."""
        if self._instance is None:
            with self._lock:
                if self._instance is None:
                    self._instance = self._resolve()()
        return self._instance

    def artifact_type_for(self, obj: Any) -> str:
        """The artifact type ``obj`` is stored as."""
        return self.get().artifact_type_for(obj) or self.artifact_type

    def _resolve(self) -> type[Materializer]:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = _EXTRA_FOR_MODULE.get((exc.name or "").split(".")[0])
            hint = f"; pip install 'conveyor-ml[{extra}]'" if extra else ""
            raise MaterializerError(
                f"cannot import materializer {self.target}: {exc}{hint}"
            ) from exc
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Materializer)):
            raise MaterializerError(f"{self.target} is not a Materializer subclass")
        return cls


class _Registry:
    """Entries in registration order, with a per-class lookup cache."""

    def __init__(self, entries: Iterable[MaterializerEntry] = ()) -> None:
        self.entries: list[MaterializerEntry] = list(entries)
        self._cache: dict[type, MaterializerEntry] = {}
        self._lock = threading.Lock()

    def copy(self) -> _Registry:
        return _Registry(self.entries)

    def add(self, entry: MaterializerEntry) -> None:
        with self._lock:
            entry.order = len(self.entries)
            self.entries.append(entry)
            self._cache.clear()

    def lookup(self, cls: type) -> MaterializerEntry | None:
        found = self._cache.get(cls)
        if found is None:
            found = self._walk(cls)
            if found is not None:
                self._cache[cls] = found
        return found

    def _walk(self, cls: type) -> MaterializerEntry | None:
        for klass in getattr(cls, "__mro__", (cls,)):
            name = qualified_name(klass)
            matches = [e for e in self.entries if e.matches(klass, name)]
            if matches:
                return max(matches, key=lambda e: (not e.builtin, e.order))
        return None

    def known_types(self) -> list[str]:
        labels = {type_label(t) for e in self.entries for t in e.python_types}
        return sorted(labels, key=lambda label: ("." in label, label))  # builtins first


def register_materializer(
    materializer: type[Materializer] | str,
    python_types: tuple[type | str, ...] = (),
    artifact_type: str | None = None,
    also_loads: tuple[str, ...] = (),
) -> None:
    """Register a materializer class, or lazily by ``"module:Class"`` (then give the types).

    Arguments given here override the class variables of a materializer class.

    Example:
        >>> register_materializer(YamlMaterializer)
        >>> register_materializer("my_pkg.io:ImageMaterializer",
        ...                       python_types=("PIL.Image.Image",), artifact_type="Image")
    """
    _REGISTRY.add(_make_entry(materializer, python_types, artifact_type, also_loads))


def _make_entry(
    materializer: type[Materializer] | str,
    python_types: tuple[type | str, ...],
    artifact_type: str | None,
    also_loads: tuple[str, ...],
    *,
    builtin: bool = False,
) -> MaterializerEntry:
    if isinstance(materializer, str):
        if materializer.count(":") != 1 or not all(materializer.split(":")):
            raise MaterializerError(f"lazy materializer {materializer!r} must be 'module:Class'")
    elif not (isinstance(materializer, type) and issubclass(materializer, Materializer)):
        raise MaterializerError(
            f"{materializer!r} is not a Materializer subclass or 'module:Class'"
        )
    else:
        python_types = python_types or materializer.python_types
        artifact_type = artifact_type or getattr(materializer, "artifact_type", None)
        also_loads = also_loads or materializer.also_loads
    who = materializer if isinstance(materializer, str) else materializer.__qualname__
    if not python_types:
        raise MaterializerError(f"materializer {who} names no python_types")
    for tp in python_types:
        if not (isinstance(tp, type) or (isinstance(tp, str) and "." in tp)):
            msg = f"materializer {who}: python type {tp!r} must be a class or 'module.Class'"
            raise MaterializerError(msg)
    if not isinstance(artifact_type, str) or not artifact_type:
        raise MaterializerError(f"materializer {who} names no artifact_type")
    return MaterializerEntry(
        materializer, tuple(python_types), artifact_type, tuple(also_loads), builtin=builtin
    )


def resolve_type_name(name: str) -> type:
    """Import the class named by a qualified name such as ``"pandas.DataFrame"``.

    Example:
        >>> resolve_type_name("pathlib.Path")
        <class 'pathlib.Path'>
    """
    parts = name.split(".")
    if len(parts) == 1:
        parts = ["builtins", *parts]
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise MaterializerError(
                f"cannot import {module_name} for type {name!r}: {exc}"
            ) from exc
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        if isinstance(obj, type):
            return obj
        break
    raise MaterializerError(
        f"type {name!r} not found; give a qualified name like 'pandas.DataFrame'"
    )


def normalize_type(python_type: Any) -> type:
    """Reduce an annotation to the class whose materializer applies.

    ``Annotated[X, ...]`` and ``Optional[X]`` give ``X``, ``list[int]`` gives ``list``,
    ``None`` gives ``NoneType`` and a string is imported by :func:`resolve_type_name`.
    """
    if python_type is None:
        return type(None)
    if python_type is Any:
        raise MaterializerError("cannot store or load values annotated Any: not a class")
    if isinstance(python_type, str):
        return resolve_type_name(python_type)
    if isinstance(python_type, NewType):
        return normalize_type(python_type.__supertype__)
    origin = get_origin(python_type)
    if origin is Annotated:
        return normalize_type(get_args(python_type)[0])
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(python_type) if a is not type(None)]
        if len(args) != 1:
            msg = f"cannot store a value of union type {python_type}: annotate a single type"
            raise MaterializerError(msg)
        return normalize_type(args[0])
    if isinstance(origin, type):
        return origin
    if isinstance(python_type, type):
        return python_type
    raise MaterializerError(f"cannot store or load values of {python_type!r}: not a class")


def materializer_for(python_type: Any) -> MaterializerEntry:
    """The entry for a Python type (nearest class in its MRO wins; user registrations beat
    built-ins). Raises MaterializerError naming the type and listing known ones."""
    cls = normalize_type(python_type)
    entry = _REGISTRY.lookup(cls)
    if entry is None:
        known = _REGISTRY.known_types()
        more = f", ... ({len(known) - 15} more)" if len(known) > 15 else ""
        raise MaterializerError(
            f"no materializer for type {qualified_name(cls)!r}; register one with "
            f"conveyor.register_materializer (known: {', '.join(known[:15])}{more})"
        )
    return entry


def artifact_type_of(python_type: Any) -> str:
    """The artifact type a value of ``python_type`` is stored as."""
    return materializer_for(python_type).artifact_type


def can_load(python_type: Any, artifact_type: str) -> bool:
    """True when a consumer annotated with ``python_type`` can read ``artifact_type``."""
    return materializer_for(python_type).loads(artifact_type)


# -- JSON checks shared by materializers and properties ------------------------------


def _json_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def check_json(value: Any, path: str = "$") -> None:
    """Raise MaterializerError naming the key path (``$.a[2]``) of the first non-JSON value.

    Dict keys must be strings (JSON would turn others into strings silently) and numbers
    finite; tuples pass (they load back as lists).
    """
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MaterializerError(
                f"value at {path} is {value!r}; JSON allows finite numbers only"
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"key {key!r} at {path} is a {type(key).__name__}; JSON keys are strings"
                raise MaterializerError(msg)
            check_json(item, _json_path(path, key))
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, _json_path(path, index))
        return
    raise MaterializerError(
        f"value at {path} is a {type_label(type(value))}, which JSON cannot hold"
    )


# -- the runner's two calls ---------------------------------------------------------------

StoredT = TypeVar("StoredT")
StoredT_co = TypeVar("StoredT_co", covariant=True)


class PayloadStore(Protocol[StoredT_co]):
    """What save/load need from an artifact store: ``conveyor.store.ArtifactStore`` (which
    ``core`` may not import: the two are independent layers)."""

    def staging(self) -> AbstractContextManager[Path]: ...

    def publish(self, folder: Path, type_name: str) -> StoredT_co: ...

    def local_folder(self, uri: str) -> AbstractContextManager[Path]: ...


def check_properties(properties: Any, who: str) -> dict[str, Any]:
    """A copy of JSON-able artifact properties; MaterializerError naming ``who`` otherwise."""
    if not isinstance(properties, Mapping):
        raise MaterializerError(f"{who} gave {type_label(type(properties))}, not a properties dict")
    try:
        check_json(dict(properties))
    except MaterializerError as exc:
        raise MaterializerError(f"properties of {who}: {exc}") from exc
    return dict(properties)


def _cannot_load(type_name: str, cls: type, entry: MaterializerEntry, uri: str) -> str:
    readable = ", ".join(repr(t) for t in (entry.artifact_type, *entry.also_loads))
    where = f" {uri}" if uri else ""
    return f"cannot load {type_name!r} artifact{where} as {type_label(cls)} (it reads: {readable})"


def load_folder(entry: MaterializerEntry, folder: Path, cls: type, type_name: str) -> Any:
    """Load ``folder`` (an artifact of ``type_name``) as ``cls`` with ``entry``.

    Checks the artifact type first and wraps a materializer's own errors."""
    if not entry.loads(type_name):
        raise MaterializerError(_cannot_load(type_name, cls, entry, ""))
    try:
        obj = entry.get().load(folder, cls)
    except ConveyorError:
        raise
    except Exception as exc:  # a materializer's own failure: wrap it, keep the cause
        msg = f"{entry.name} could not load {folder} as {type_label(cls)}: {exc}"
        raise MaterializerError(msg) from exc
    if not isinstance(obj, cls):
        raise MaterializerError(
            f"{entry.name} loaded a {type_label(type(obj))}, not a {type_label(cls)}"
        )
    return obj


def _fits(obj: Any, cls: type) -> bool:
    if isinstance(obj, cls):
        return True
    return cls is float and isinstance(obj, int) and not isinstance(obj, bool)


def save_artifact(
    store: PayloadStore[StoredT], obj: Any, python_type: Any = None
) -> tuple[StoredT, str, dict[str, Any]]:
    """Store ``obj`` as declared by ``python_type`` (None: by the value's own type).

    Returns (stored artifact, artifact type name, properties). The type name can depend on
    the value (a ``Path`` to a file is a "File", an ``Artifact`` handle has its own): record
    the returned one.

    Example:
        >>> stored, type_name, props = save_artifact(store, frame, pd.DataFrame)
    """
    cls = type(obj) if python_type is None else normalize_type(python_type)
    if not _fits(obj, cls):
        got = type_label(type(obj))
        raise MaterializerError(f"value is a {got}, but the output is declared {type_label(cls)}")
    entry = materializer_for(cls)
    with store.staging() as folder:
        try:
            properties = entry.get().save(obj, folder)
            type_name = entry.artifact_type_for(obj)
        except ConveyorError:
            raise
        except Exception as exc:
            msg = f"{entry.name} could not save a {type_label(type(obj))}: {exc}"
            raise MaterializerError(msg) from exc
        properties = check_properties(properties or {}, entry.name)
        stored = store.publish(folder, type_name)
    return stored, type_name, properties


_PINNED: list[Callable[[], object]] = []


def _release_pinned() -> None:
    while _PINNED:
        _PINNED.pop()()


def _keep_until_collected(obj: Any, release: Callable[[], object]) -> None:
    try:
        weakref.finalize(obj, release)
    except TypeError:  # not weak-referenceable (a Path): keep until the process exits
        if not _PINNED:
            atexit.register(_release_pinned)
        _PINNED.append(release)


def load_artifact(
    store: PayloadStore[Any],
    uri: str,
    type_name: str,
    sha256: str,
    properties: Mapping[str, Any],
    python_type: Any,
) -> Any:
    """Load the artifact at ``uri`` as ``python_type``; handles get uri/sha/properties.

    Raises MaterializerError when ``python_type`` cannot read ``type_name`` artifacts.
    Handles and paths point into the payload folder: on remote stores its download is
    kept until the handle is garbage collected (paths: until the process exits).

    Example:
        >>> data = load_artifact(store, uri, "Dataset", sha, props, Dataset)
        >>> data.to_pandas()
    """
    cls = normalize_type(python_type)
    entry = materializer_for(cls)
    if not entry.loads(type_name):
        raise MaterializerError(_cannot_load(type_name, cls, entry, uri))
    materializer = entry.get()
    if not materializer.keeps_folder:
        with store.local_folder(uri) as folder:
            return load_folder(entry, folder, cls, type_name)
    context = store.local_folder(uri)
    folder = context.__enter__()  # left open while the loaded object points into it

    def release() -> object:
        return context.__exit__(None, None, None)

    try:
        obj = load_folder(entry, folder, cls, type_name)
        obj = materializer.bind(obj, uri, type_name, sha256, dict(properties))
    except BaseException:
        release()
        raise
    _keep_until_collected(obj, release)
    return obj


def _builtin_entries() -> list[MaterializerEntry]:
    arts = "conveyor.core.artifacts"
    handles = [("Artifact", ("*",)), ("Dataset", ()), ("Model", ()), ("File", ()), ("Folder", ())]
    specs: list[
        tuple[type[Materializer] | str, tuple[type | str, ...], str | None, tuple[str, ...]]
    ]
    specs = [
        (f"{arts}:JsonMaterializer", (list, str, int, float, bool, type(None)), "JSON", ()),
        (f"{arts}:JsonMaterializer", (dict,), "JSON", ("Metrics",)),  # a dict reads Metrics
        (f"{arts}:PathMaterializer", (Path,), "Folder", ("File",)),
        (f"{arts}:MetricsMaterializer", (f"{arts}.Metrics",), "Metrics", ()),
        *((f"{arts}:HandleMaterializer", (f"{arts}.{n}",), n, also) for n, also in handles),
        (
            "conveyor.materializers.pandas:PandasMaterializer",
            ("pandas.DataFrame", "pandas.core.frame.DataFrame"),  # pandas 3 / pandas 2
            "Dataset",
            (),
        ),
        ("conveyor.materializers.arrow:ArrowMaterializer", ("pyarrow.lib.Table",), "Dataset", ()),
        ("conveyor.materializers.numpy:NumpyMaterializer", ("numpy.ndarray",), "Array", ()),
        (
            "conveyor.materializers.sklearn:SklearnMaterializer",
            ("sklearn.base.BaseEstimator",),
            "Model",
            (),
        ),
        (
            f"{arts}:HandleMaterializer",
            ("conveyor.modeling.bundle.ModelBundle",),
            "ModelBundle",
            (),
        ),
        ("conveyor.data.schema:SchemaMaterializer", ("conveyor.data.schema.Schema",), "Schema", ()),
        (
            "conveyor.data.validation_model:ValidationReportMaterializer",
            ("conveyor.data.validation_model.ValidationReport",),
            "ValidationReport",
            (),
        ),
        (
            "conveyor.data.statistics:StatisticsMaterializer",
            ("conveyor.data.statistics_model.DatasetStatistics",),
            "Statistics",
            (),
        ),
        (
            "conveyor.modeling.evaluation_artifacts:EvaluationMaterializer",
            ("conveyor.modeling.evaluation_artifacts.EvaluationReport",),
            "Evaluation",
            (),
        ),
        (
            "conveyor.modeling.evaluation_artifacts:BlessingMaterializer",
            ("conveyor.modeling.evaluation_model.Blessing",),
            "Blessing",
            (),
        ),
        (
            "conveyor.serving.infra_validation:InfraValidationMaterializer",
            ("conveyor.serving.infra_validation.InfraValidation",),
            "InfraValidation",
            (),
        ),
        (
            "conveyor.modeling.explain:ExplanationMaterializer",
            ("conveyor.modeling.explain.Explanation",),
            "Explanation",
            (),
        ),
        (
            "conveyor.modeling.tuning:TuningResultMaterializer",
            ("conveyor.modeling.tuning.TuningResult",),
            "TuningResult",
            (),
        ),
    ]
    entries = [_make_entry(*spec, builtin=True) for spec in specs]
    for order, entry in enumerate(entries):
        entry.order = order
    return entries


_REGISTRY = _Registry(_builtin_entries())
