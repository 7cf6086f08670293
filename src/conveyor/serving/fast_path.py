"""The numeric fast path: check and predict plain numeric requests without building a DataFrame.

Most tabular requests are a few rows of plain numbers. For them the general path (a pandas
frame per request, :meth:`Signature.check_input`, then the model called on a DataFrame, which
scikit-learn validates column by column again) costs milliseconds where the model itself needs
microseconds. This module gives the same answers for those requests at a fraction of the cost,
and steps aside (returns None) for everything else, so the general path still decides and
still names every error:

- :func:`numeric_instances` reads a TF Serving row-format body whose values are all plain
  numbers into the columns :func:`~conveyor.serving.protocols.tfserving.parse_predict_request`
  would give;
- :func:`checked_columns` accepts columns that :func:`~conveyor.serving.inference.input_frame`
  would accept (right names, numeric types that fit, no NaN where the signature forbids it, no
  Infinity), in signature order, using numpy only;
- :class:`ArrayModels` gives, per loaded bundle, an :class:`ArrayModel`: the bundle's
  scikit-learn model called on one 2-D array in signature order. A bundle qualifies only when
  it has no preprocessing and only int/float inputs, and when a probe (rows built from the
  signature's ranges) gives exactly the bundle's own outputs without any warning; otherwise
  the bundle keeps the general path.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from conveyor.modeling.bundle import LoadedBundle
from conveyor.modeling.bundle_signature import Signature

__all__ = [
    "ArrayModel",
    "ArrayModels",
    "checked_columns",
    "model_outputs",
    "numeric_instances",
]

logger = logging.getLogger(__name__)

_NUMERIC = frozenset({"int", "float"})
_PLAIN_NUMBERS = frozenset({int, float})


# ---------------------------------------------------------------------------- parsing


def numeric_instances(document: Any) -> dict[str, np.ndarray] | None:
    """Columns of ``{"instances": [{"name": number, ...}, ...]}`` when every value is a plain
    number (not a bool) and every instance has the same names; else None.

    Ints stay int64; a column with any float is float64 (as the TF Serving codec stacks them).
    """
    if not isinstance(document, dict) or len(document) != 1:
        return None
    instances = document.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        return None
    names = list(instances[0])
    if not names:
        return None
    width = len(names)
    columns: dict[str, np.ndarray] = {}
    try:
        for name in names:
            values = [instance[name] for instance in instances]
            kinds = set(map(type, values))
            if not kinds <= _PLAIN_NUMBERS:  # bool is not int here
                return None
            array = np.array(values)
            wanted = np.int64 if kinds == {int} else np.float64
            if array.dtype != wanted:
                return None  # ints beyond int64 (numpy may widen them to float): the codec decides
            columns[name] = array
    except (KeyError, TypeError, OverflowError):
        return None  # an instance without this name, or not an object
    if any(type(instance) is not dict or len(instance) != width for instance in instances):
        return None
    return columns


# ---------------------------------------------------------------------------- checking


def _fits(spec_type: str, nullable: bool, array: np.ndarray) -> bool:
    kind = array.dtype.kind
    if kind in "iu":
        return spec_type in _NUMERIC
    if kind != "f" or spec_type not in _NUMERIC:
        return False
    finite = np.isfinite(array)
    if not finite.all():
        missing = np.isnan(array)
        if not nullable or not (finite | missing).all():
            return False  # NaN where forbidden, or an Infinity: the general path says which
        array = array[finite]
    return spec_type == "float" or bool(np.all(array == np.round(array)))


def checked_columns(
    signature: Signature, columns: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray] | None:
    """``columns`` flattened to one value per row and in signature order, when every input is
    a numeric column that fits its spec; None when the general check must decide.

    None is not a verdict: a valid request with text or bool columns also gets None.
    """
    inputs = signature.inputs
    if len(columns) != len(inputs):
        return None
    checked: dict[str, np.ndarray] = {}
    floats: list[np.ndarray] = []  # float columns of float specs: one finiteness test for all
    for spec in inputs:
        array = columns.get(spec.name)
        if array is None:
            return None
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if array.ndim != 1:
            return None
        if array.dtype.kind == "f" and spec.type == "float":
            floats.append(array)
        elif not _fits(spec.type, spec.nullable, array):
            return None
        checked[spec.name] = array
    if floats and not np.isfinite(np.concatenate(floats)).all():
        # some NaN or Infinity: decide column by column (NaN may be allowed where nullable)
        specs = {spec.name: spec for spec in inputs}
        for name, array in checked.items():
            spec = specs[name]
            if array.dtype.kind == "f" and not _fits(spec.type, spec.nullable, array):
                return None
    return checked


# ---------------------------------------------------------------------------- predicting


@dataclass(frozen=True)
class ArrayModel:
    """A bundle's scikit-learn model called on one 2-D array whose columns follow the signature.

    ``model`` is a shallow copy of the bundle's model without ``feature_names_in_`` (the names
    were checked against the signature once; the copy shares the fitted arrays).
    """

    model: Any
    names: tuple[str, ...]
    classifier: bool

    def accepts(self, columns: Mapping[str, np.ndarray]) -> bool:
        """Whether ``columns`` are this model's inputs, each numeric with one value per row
        (what :func:`checked_columns` returns)."""
        return len(columns) == len(self.names) and all(
            (array := columns.get(name)) is not None
            and array.ndim == 1
            and array.dtype.kind in "iuf"
            for name in self.names
        )

    def matrix(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The columns as one (rows, features) array, column-major as pandas would hand it."""
        return np.vstack([columns[name] for name in self.names]).T

    def outputs(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named outputs: ``label`` + ``probabilities``, or ``prediction``."""
        import sklearn  # loaded already: the bundle is a scikit-learn model

        features = self.matrix(columns)
        finite = features.dtype.kind != "f" or bool(np.isfinite(features).all())
        # scikit-learn tests finiteness in every call (predict, then predict_proba): once will do
        with sklearn.config_context(assume_finite=finite):
            predictions = np.asarray(self.model.predict(features))
            if not self.classifier:
                return {"prediction": predictions}
            probabilities = np.asarray(self.model.predict_proba(features), dtype=float)
        return {"label": predictions, "probabilities": probabilities}


def _probe(signature: Signature) -> pd.DataFrame:
    """Three rows per input from its recorded range (or 0, 1, -1), typed as the signature."""
    columns: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        low = spec.min if spec.min is not None else -1
        high = spec.max if spec.max is not None else 1
        values = [low, high, (low + high) / 2]
        dtype = np.int64 if spec.type == "int" else np.float64
        columns[spec.name] = np.array(
            [round(v) for v in values] if spec.type == "int" else values, dtype=dtype
        )
    return pd.DataFrame(columns)


def model_outputs(bundle: LoadedBundle, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Named outputs as the signature names them: label + probabilities, or prediction."""
    predictions = bundle.predict(frame)
    if bundle.signature.task == "regression" or bundle.signature.classes is None:
        return {"prediction": predictions}
    return {"label": predictions, "probabilities": bundle.predict_proba(frame)}


def _same(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> bool:
    return ours.keys() == theirs.keys() and all(
        ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]) for k in ours
    )


def array_model(bundle: LoadedBundle) -> ArrayModel | None:
    """The bundle's :class:`ArrayModel`, or None when it does not qualify (see the module)."""
    signature = bundle.signature
    if bundle.flavour.name != "sklearn" or bundle.preprocessing is not None:
        return None
    if not signature.inputs or any(spec.type not in _NUMERIC for spec in signature.inputs):
        return None
    fitted_names = getattr(bundle.model, "feature_names_in_", None)
    if fitted_names is not None and [str(n) for n in fitted_names] != signature.names:
        return None
    model = copy.copy(bundle.model)
    vars(model).pop("feature_names_in_", None)  # a property (pipelines) stays: the probe warns
    candidate = ArrayModel(
        model,
        tuple(signature.names),
        signature.task != "regression" and signature.classes is not None,
    )
    probe = _probe(signature)
    try:
        expected = model_outputs(bundle, probe)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = candidate.outputs({n: probe[n].to_numpy() for n in candidate.names})
    except Exception as exc:
        logger.info("%s: numeric fast path off (the probe failed: %s)", bundle.path, exc)
        return None
    if caught or not _same(got, expected):
        why = caught[0].message if caught else "other outputs than the bundle's"
        logger.info("%s: numeric fast path off (%s)", bundle.path, why)
        return None
    return candidate


class ArrayModels:
    """:func:`array_model` per loaded bundle, decided once and forgotten with the bundle.

    Entries are keyed by ``id(bundle)`` and hold only a weak reference to it, so an unloaded
    bundle's array model (which shares the fitted arrays) is dropped at the next lookup.
    Thread-safe; two threads deciding for the same bundle at once both get the same answer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[int, tuple[weakref.ref[LoadedBundle], ArrayModel | None]] = {}
        self._dead: list[int] = []  # appended by weakref callbacks: no lock taken there

    def __len__(self) -> int:
        return len(self._known)

    def get(self, bundle: LoadedBundle) -> ArrayModel | None:
        """The bundle's array model, or None when it must take the general path."""
        if self._dead:
            self._prune()
        key = id(bundle)
        known = self._known.get(key)
        if known is not None and known[0]() is bundle:
            return known[1]
        decided = array_model(bundle)
        dead = self._dead
        ref = weakref.ref(bundle, lambda _, key=key: dead.append(key))  # type: ignore[misc]
        with self._lock:
            self._known[key] = (ref, decided)
        return decided

    def _prune(self) -> None:
        with self._lock:
            while self._dead:
                key = self._dead.pop()
                entry = self._known.get(key)
                if entry is not None and entry[0]() is None:  # not a new bundle at that id
                    del self._known[key]
