"""Model bundles: a fitted model with its preprocessing, signature, lineage and hashes.

A bundle is a folder::

    bundle.json              manifest: flavour, signature, metrics, lineage, seed, params,
                             environment, created_at, and the sha256 of every other file
    bundle.sha256            sha256 of the canonical manifest (covers every byte)
    model/                   the flavour's files (model.skops, model.ubj, model.txt ...)
    preprocessing/           optional fitted transformer, preprocessing.skops
    metrics_history.json     optional per-iteration metrics logged while training

:func:`save_bundle` writes one atomically (a hidden staging folder, then one rename);
:func:`verify_bundle` checks every hash; :func:`load_bundle` verifies, refuses any pickle,
and loads through the flavour (skops with trusted types only, boosters in their own
formats), so loading never runs code the bundle brings. The ``train`` component returns a
:class:`ModelBundle` handle, stored by the engine as a "ModelBundle" artifact.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from conveyor import Artifact
from conveyor.exceptions import ConveyorError
from conveyor.modeling.bundle_errors import (
    BundleError,
    BundleIntegrityError,
    SignatureError,
    UnsafeBundleError,
)
from conveyor.modeling.bundle_manifest import (
    FORMAT_VERSION,
    BundleManifest,
    canonical_bytes,
    hash_files,
    read_manifest,
    verify_folder,
    write_manifest,
)
from conveyor.modeling.bundle_signature import Signature, infer_signature
from conveyor.modeling.environment import capture_environment
from conveyor.modeling.flavours import Flavour, detect_flavour, get_flavour

__all__ = [
    "HISTORY_FILE",
    "LoadedBundle",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "verify_bundle",
]

MODEL_DIR = "model"
PREPROCESSING_FILE = "preprocessing/preprocessing.skops"
HISTORY_FILE = "metrics_history.json"
_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth", ".sav"})


def _json_ready(value: Any, what: str) -> Any:
    try:
        canonical_bytes(value)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{what} must be JSON (finite numbers, string keys): {exc}") from exc
    return value


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        number = value.item() if isinstance(value, np.generic) else value
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise BundleError(f"metric {name!r} is {value!r}, not a number")
        if not np.isfinite(number):
            raise BundleError(f"metric {name!r} is {value!r}; metrics must be finite")
        clean[str(name)] = number
    return clean


def _choose_flavour(flavour: str | Flavour | None, model: Any) -> Flavour:
    if isinstance(flavour, Flavour):
        return flavour
    return get_flavour(flavour) if flavour is not None else detect_flavour(model)


def _final_signature(
    signature: Signature | pd.DataFrame,
    task: str,
    classes: Sequence[Any] | None,
    flavour: Flavour,
    model: Any,
) -> Signature:
    base = infer_signature(signature) if isinstance(signature, pd.DataFrame) else signature
    if not isinstance(base, Signature):
        raise SignatureError(
            f"signature must be a Signature or the training features (a DataFrame), "
            f"not {type(signature).__name__}"
        )
    if task == "regression":
        return base.for_task(task, None)
    known = flavour.classes(model)
    if classes is not None and known is not None and list(classes) != known:
        raise SignatureError(
            f"classes {list(classes)!r} do not match the model's own {known!r}, which its "
            "probability columns follow"
        )
    labels = classes if classes is not None else known
    if labels is None:
        raise SignatureError(
            f"pass classes= for a {task} {flavour.name} model: it does not record its labels"
        )
    return base.for_task(task, labels)


def _write_contents(
    staging: Path,
    model: Any,
    flavour: Flavour,
    preprocessing: Any | None,
    history: Sequence[Mapping[str, Any]] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, str | None]:
    model_dir = staging / MODEL_DIR
    model_dir.mkdir()
    details = {"name": flavour.name, **flavour.save(model, model_dir)}
    files = sorted(p.relative_to(staging).as_posix() for p in model_dir.rglob("*") if p.is_file())
    prep = None
    if preprocessing is not None:
        from conveyor.modeling.flavour_sklearn import save_skops  # scikit-learn on demand

        (staging / PREPROCESSING_FILE).parent.mkdir()
        save_skops(preprocessing, staging / PREPROCESSING_FILE, "preprocessing")
        kind = f"{type(preprocessing).__module__}.{type(preprocessing).__qualname__}"
        prep = {"file": PREPROCESSING_FILE, "format": "skops", "class": kind}
    history_file = None
    if history:
        points = _json_ready([dict(p) for p in history], "metrics history")
        (staging / HISTORY_FILE).write_bytes(canonical_bytes(points) + b"\n")
        history_file = HISTORY_FILE
    return details, {"path": MODEL_DIR, "files": files}, prep, history_file


def save_bundle(
    folder: str | Path,
    model: Any,
    *,
    signature: Signature | pd.DataFrame,
    task: str,
    flavour: str | Flavour | None = None,
    preprocessing: Any | None = None,
    classes: Sequence[Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    lineage: Mapping[str, Any] | None = None,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> BundleManifest:
    """Save a fitted model (and its fitted preprocessing) as a bundle in a new ``folder``.

    Args:
        folder: where the bundle goes; must not exist or be empty. Written atomically.
        model: the fitted model. Its flavour is detected unless ``flavour`` names one.
        signature: a :class:`Signature`, or the raw training features to infer it from.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        preprocessing: a fitted scikit-learn transformer applied before the model.
        classes: class labels in ``predict_proba`` column order (default: the model's).
        metrics, lineage, seed, params: recorded in the manifest.
        history: per-iteration metrics (``{"name", "step", "value"}``), saved as a file.

    Example:
        >>> model = LogisticRegression().fit(x_train, y_train)
        >>> manifest = save_bundle("bundle", model, signature=x_train, task="binary")
        >>> manifest.classes
        (0, 1)
    """
    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleError(f"cannot save a bundle into {target}: it exists and is not empty")
    chosen = _choose_flavour(flavour, model)
    sig = _final_signature(signature, task, classes, chosen, model)
    clean = _checked_metrics(metrics or {})
    lineage_json = _json_ready(dict(lineage or {}), "lineage")
    params_json = _json_ready(dict(params or {}), "params")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        details, model_info, prep, history_file = _write_contents(
            staging, model, chosen, preprocessing, history
        )
        manifest = BundleManifest(
            format_version=FORMAT_VERSION,
            flavour=details,
            model=model_info,
            signature=sig,
            files=hash_files(staging),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            preprocessing=prep,
            metrics=clean,
            lineage=lineage_json,
            seed=seed,
            params=params_json,
            environment=capture_environment(),
            history=history_file,
        )
        write_manifest(staging, manifest)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def verify_bundle(folder: str | Path) -> BundleManifest:
    """Recompute every file hash and the manifest hash; return the verified manifest.

    Raises BundleIntegrityError naming the file that changed, appeared or is missing.

    Example:
        >>> verify_bundle("bundle").sha256 == Path("bundle/bundle.sha256").read_text().strip()
        True
    """
    return verify_folder(folder)


def _inside(folder: Path, rel: Any) -> Path:
    parts = PurePosixPath(str(rel)).parts
    if not isinstance(rel, str) or not parts or rel.startswith("/") or ".." in parts:
        raise BundleIntegrityError(f"{folder}: path {rel!r} in the manifest leaves the bundle")
    return folder.joinpath(*parts)


def _refuse_pickles(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        with open(path, "rb") as handle:
            head = handle.read(2)
        # Pickle protocols 2-5 begin with the PROTO opcode 0x80 and the protocol number.
        if path.suffix.lower() in _PICKLE_SUFFIXES or (
            head[:1] == b"\x80" and head[1:] in (b"\x02", b"\x03", b"\x04", b"\x05")
        ):
            rel = path.relative_to(folder).as_posix()
            raise UnsafeBundleError(
                f"{folder}: refusing to load: {rel!r} is a pickle, and bundles are never "
                "unpickled (scikit-learn models are saved with skops, boosters natively)"
            )


def load_bundle(folder: str | Path, *, verify: bool = True) -> LoadedBundle:
    """Load a bundle: verify its hashes, refuse pickles and untrusted types, load the model.

    Args:
        folder: the bundle folder (a stored "ModelBundle" artifact's path works too).
        verify: check every hash first (leave on unless the caller just verified it).

    Example:
        >>> bundle = load_bundle("bundle")
        >>> bundle.predict(pd.DataFrame({"age": [31], "city": ["Lyon"]}))
        array([1])
    """
    folder = Path(folder)
    if not (folder / "bundle.json").is_file():
        raise BundleIntegrityError(f"{folder}: no bundle.json: not a model bundle")
    _refuse_pickles(folder)
    manifest = verify_folder(folder) if verify else read_manifest(folder)
    flavour = get_flavour(manifest.flavour_name)
    model = flavour.load(_inside(folder, manifest.model.get("path", MODEL_DIR)))
    preprocessing = None
    if manifest.preprocessing:
        from conveyor.modeling.flavour_sklearn import load_skops  # scikit-learn on demand

        path = _inside(folder, manifest.preprocessing.get("file"))
        preprocessing = load_skops(path, "preprocessing")
    return LoadedBundle(folder, manifest, flavour, model, preprocessing)


@dataclass(frozen=True)
class LoadedBundle:
    """A loaded bundle: check input against the signature, preprocess, predict.

    Example:
        >>> bundle = load_bundle("bundle")
        >>> bundle.predict_proba(frame)[:, 1]  # columns follow bundle.signature.classes
    """

    path: Path
    manifest: BundleManifest
    flavour: Flavour
    model: Any
    preprocessing: Any | None = None

    @property
    def signature(self) -> Signature:
        """Inputs, outputs, task and classes."""
        return self.manifest.signature

    def check_input(self, frame: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        """The input columns in model order; SignatureError names a bad column."""
        return self.signature.check_input(frame, allow_extra=allow_extra)

    def transform(self, frame: Any, *, allow_extra: bool = False) -> Any:
        """Checked input passed through the bundle's preprocessing (if it has one)."""
        checked = self.check_input(frame, allow_extra=allow_extra)
        if self.preprocessing is None:
            return checked
        try:
            return self.preprocessing.transform(checked)
        except Exception as exc:
            raise BundleError(f"{self.path}: preprocessing failed: {exc}") from exc

    def predict(self, frame: Any, *, allow_extra: bool = False) -> np.ndarray:
        """Class labels (classification) or values (regression), one per row."""
        features = self.transform(frame, allow_extra=allow_extra)
        return self._call(self.flavour.predict, features)

    def predict_proba(self, frame: Any, *, allow_extra: bool = False) -> np.ndarray:
        """Probabilities, one column per class in ``signature.classes`` order."""
        if self.signature.task == "regression":
            raise BundleError(f"{self.path}: predict_proba is for classification, not regression")
        features = self.transform(frame, allow_extra=allow_extra)
        return self._call(self.flavour.predict_proba, features)

    def _call(self, method: Any, features: Any) -> np.ndarray:
        try:
            return np.asarray(method(self.model, features, self.signature))
        except ConveyorError:
            raise
        except Exception as exc:  # the library's own failure: name the bundle, keep the cause
            raise BundleError(f"{self.path}: the {self.flavour.name} model failed: {exc}") from exc


class ModelBundle(Artifact):
    """A stored model bundle ("ModelBundle" artifact): what ``train`` returns.

    Example:
        >>> @component
        ... def score(bundle: ModelBundle, data: Dataset) -> Dataset:
        ...     model = bundle.open()  # verified, never unpickled
        ...     frame = data.to_pandas()
        ...     return frame.assign(score=model.predict_proba(frame)[:, 1])
    """

    artifact_type: ClassVar[str] = "ModelBundle"

    @property
    def manifest(self) -> BundleManifest:
        """The bundle's manifest (not verified: see :meth:`verify`)."""
        return read_manifest(self.path)

    def verify(self) -> BundleManifest:
        """Check every hash of the bundle; return its manifest."""
        return verify_bundle(self.path)

    def open(self, *, verify: bool = True) -> LoadedBundle:
        """Load the bundle for predictions (see :func:`load_bundle`)."""
        return load_bundle(self.path, verify=verify)
