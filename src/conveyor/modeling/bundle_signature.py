"""The signature of a model bundle: which columns go in, what comes out, for which task.

A signature is inferred from the training frame (:func:`infer_signature`): each feature
column gets a type (``int``, ``float``, ``bool``, ``string``, ``datetime``), whether it had
missing values, the categories of a string column (up to :data:`MAX_DOMAIN`) and the range
of a numeric one. :meth:`Signature.for_task` adds the task, the class labels and the
outputs. Serving and evaluation call :meth:`Signature.check_input` before predicting, so a
bad request is refused with the column at fault named, instead of a library's stack trace.

Domains and ranges are recorded, not enforced: a category never seen in training is what the
preprocessing's unknown-category handling is for, and drift checks compare against them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from conveyor.exceptions import did_you_mean
from conveyor.modeling.bundle_errors import SignatureError

__all__ = [
    "COLUMN_TYPES",
    "MAX_DOMAIN",
    "TASKS",
    "ColumnSpec",
    "OutputSpec",
    "Signature",
    "column_type",
    "infer_signature",
    "plain_value",
]

COLUMN_TYPES = ("int", "float", "bool", "string", "datetime")
TASKS = ("binary", "multiclass", "regression")
MAX_DOMAIN = 100
"""String columns with at most this many distinct values record them as their domain."""

_INFERRED = {
    "string": "string",
    "boolean": "bool",
    "integer": "int",
    "floating": "float",
    "mixed-integer-float": "float",
    "decimal": "float",
    "datetime": "datetime",
    "datetime64": "datetime",
    "date": "datetime",
    "empty": "empty",
}


def plain_value(value: Any) -> Any:
    """A JSON-able Python scalar for a label or category (numpy scalars unwrapped).

    Example:
        >>> plain_value(np.int64(3))
        3
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise SignatureError(
        f"value {value!r} ({type(value).__name__}) is not a str, int, float or bool"
    )


def column_type(values: pd.Series | pd.Index) -> str:
    """The signature type of a column: one of :data:`COLUMN_TYPES`, ``"empty"`` (all
    missing) or a description of what it holds instead (``"mixed"``, ``"complex"``...).

    Example:
        >>> column_type(pd.Series(["a", None]))
        'string'
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column_type(pd.Index(dtype.categories)) if len(dtype.categories) else "empty"
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_integer_dtype(dtype):
        return "int"
    if ptypes.is_float_dtype(dtype):
        return "float"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_string_dtype(dtype) and dtype != np.dtype(object):
        return "string"
    if dtype == np.dtype(object):
        inferred = ptypes.infer_dtype(values, skipna=True)
        return _INFERRED.get(inferred, inferred)
    return str(dtype)


def _fits(expected: str, actual: str, values: pd.Series) -> bool:
    if actual in (expected, "empty"):
        return True
    if expected == "float" and actual == "int":
        return True
    if expected == "int" and actual == "float":  # ints with NaN arrive as floats
        present = values.dropna().to_numpy(dtype=float)
        return bool(np.all(np.isfinite(present) & (present == np.round(present))))
    return False


@dataclass(frozen=True)
class ColumnSpec:
    """One input column.

    Example:
        >>> ColumnSpec("age", "int", nullable=True, min=17, max=90).to_dict()["type"]
        'int'
    """

    name: str
    type: str
    nullable: bool = False
    domain: tuple[Any, ...] | None = None
    min: float | int | None = None
    max: float | int | None = None

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise SignatureError(
                f"column {self.name!r}: type {self.type!r} is not one of {list(COLUMN_TYPES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON form; optional keys only when set."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.domain is not None:
            out["domain"] = list(self.domain)
        out.update({k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Read the JSON form; SignatureError names a bad entry."""
        unknown = set(data) - {"name", "type", "nullable", "domain", "min", "max"}
        if unknown or not isinstance(data.get("name"), str):
            raise SignatureError(f"bad signature input {dict(data)!r}")
        domain = data.get("domain")
        return cls(
            name=data["name"],
            type=str(data.get("type")),
            nullable=bool(data.get("nullable", False)),
            domain=tuple(domain) if domain is not None else None,
            min=data.get("min"),
            max=data.get("max"),
        )

    def check(self, values: pd.Series) -> None:
        """Raise SignatureError naming this column when ``values`` do not fit."""
        actual = column_type(values)
        if not _fits(self.type, actual, values):
            raise SignatureError(
                f"column {self.name!r}: expected {self.type}, got {actual} (dtype {values.dtype})"
            )
        missing = values.isna()
        if not self.nullable and bool(missing.any()):
            first = values.index[missing.to_numpy()][0]
            raise SignatureError(
                f"column {self.name!r}: {int(missing.sum())} missing value(s) (first at row "
                f"{first!r}), but the model was trained without missing values in it"
            )


@dataclass(frozen=True)
class OutputSpec:
    """One output: ``label`` and ``probabilities`` for classification, else ``prediction``."""

    name: str
    type: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "type": self.type, "shape": list(self.shape)}


def _outputs(task: str, classes: tuple[Any, ...] | None) -> tuple[OutputSpec, ...]:
    if task == "regression" or classes is None:
        return (OutputSpec("prediction", "float", (-1,)),)
    label_type = column_type(pd.Series(list(classes), dtype=object))
    return (
        OutputSpec("label", label_type, (-1,)),
        OutputSpec("probabilities", "float", (-1, len(classes))),
    )


@dataclass(frozen=True)
class Signature:
    """Inputs (with types, nullability, domains), outputs, task and class labels.

    Example:
        >>> sig = infer_signature(frame.drop(columns="label")).for_task("binary", [0, 1])
        >>> sig.check_input(request_frame)  # SignatureError names a bad column
    """

    inputs: tuple[ColumnSpec, ...]
    task: str | None = None
    classes: tuple[Any, ...] | None = None
    outputs: tuple[OutputSpec, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        """The input column names, in the order the model expects them."""
        return [c.name for c in self.inputs]

    def column(self, name: str) -> ColumnSpec:
        """The spec of input ``name``; SignatureError (with a hint) when there is none."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise SignatureError(f"no input column {name!r}" + did_you_mean(name, self.names))

    def for_task(self, task: str, classes: Iterable[Any] | None = None) -> Signature:
        """This signature with the task, class labels and outputs set (and checked)."""
        if task not in TASKS:
            raise SignatureError(f"task {task!r} is not one of {list(TASKS)}")
        labels = tuple(plain_value(c) for c in classes) if classes is not None else None
        if task == "regression" and labels is not None:
            raise SignatureError("a regression model has no classes; pass classes=None")
        if task != "regression":
            _check_classes(task, labels)
        return replace(self, task=task, classes=labels, outputs=_outputs(task, labels))

    def check_input(self, frame: Any, *, allow_extra: bool = False) -> pd.DataFrame:
        """``frame`` with the signature's columns in order; SignatureError names the column
        that is unknown, missing, of the wrong type or has missing values it may not have.

        Args:
            frame: a DataFrame, a dict of columns or a list of row dicts.
            allow_extra: drop columns the model does not know instead of refusing them.

        Example:
            >>> sig.check_input(pd.DataFrame({"age": ["old"]}))
            Traceback (most recent call last):
            SignatureError: column 'age': expected int, got string (dtype str)
        """
        data = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
        names = self.names
        columns = [str(c) for c in data.columns]
        unknown = [c for c in columns if c not in set(names)]
        if unknown and not allow_extra:
            hint = did_you_mean(unknown[0], [n for n in names if n not in columns])
            raise SignatureError(
                f"unknown column {unknown[0]!r}{hint}; the model takes {_few(names)}"
            )
        missing = [n for n in names if n not in set(columns)]
        if missing:
            raise SignatureError(f"missing column {missing[0]!r}; the model takes {_few(names)}")
        for spec in self.inputs:
            spec.check(data[spec.name])
        return data[names]

    def categorize(self, features: Any) -> Any:
        """String columns as pandas categoricals over their recorded domain (boosters need
        the same category codes at training and serving); a value outside the domain becomes
        missing. Other inputs are returned as is."""
        if not isinstance(features, pd.DataFrame):
            return features
        out = features
        for spec in self.inputs:
            if spec.type != "string" or spec.name not in features.columns:
                continue
            if spec.domain is None:
                raise SignatureError(
                    f"column {spec.name!r} has more than {MAX_DOMAIN} categories: encode it "
                    "in a preprocessing step before a booster sees it"
                )
            out = out.copy() if out is features else out
            values = features[spec.name].astype(object)
            known = values.where(values.isin(spec.domain), None)  # unseen categories: missing
            out[spec.name] = pd.Categorical(known, categories=list(spec.domain))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as stored in ``bundle.json``."""
        out: dict[str, Any] = {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [o.to_dict() for o in self.outputs],
            "task": self.task,
        }
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Read the JSON form (outputs are derived again from task and classes)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("inputs"), list):
            raise SignatureError(f"bad signature: {str(data)[:200]}")
        inputs = tuple(ColumnSpec.from_dict(c) for c in data["inputs"])
        sig = cls(inputs)
        task = data.get("task")
        return sig.for_task(task, data.get("classes")) if task is not None else sig


def _check_classes(task: str, labels: tuple[Any, ...] | None) -> None:
    if labels is None or len(labels) < 2:
        raise SignatureError(f"task {task!r} needs at least 2 class labels, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise SignatureError(f"class labels must be distinct, got {list(labels)!r}")
    if task == "binary" and len(labels) != 2:
        raise SignatureError(f"task 'binary' needs 2 classes, got {len(labels)}: use 'multiclass'")


def _few(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"{shown}, ... ({len(names)} columns)" if len(names) > limit else shown


def _infer_column(name: str, values: pd.Series, max_domain: int) -> ColumnSpec:
    kind = column_type(values)
    if kind == "empty":
        kind = "string"  # nothing to go by: all values are missing
    if kind not in COLUMN_TYPES:
        raise SignatureError(
            f"column {name!r} holds {kind} values (dtype {values.dtype}); convert it to "
            f"one of {', '.join(COLUMN_TYPES)}"
        )
    nullable = bool(values.isna().any())
    domain = None
    if kind == "string":
        if isinstance(values.dtype, pd.CategoricalDtype):
            distinct = [str(c) for c in values.dtype.categories]
        else:
            distinct = sorted({str(v) for v in values.dropna().unique()})
        domain = tuple(sorted(distinct)) if len(distinct) <= max_domain else None
    low, high = _range(kind, values)
    return ColumnSpec(name, kind, nullable, domain, low, high)


def _range(kind: str, values: pd.Series) -> tuple[Any, Any]:
    if kind not in ("int", "float"):
        return None, None
    present = values.dropna().to_numpy(dtype=float)
    present = present[np.isfinite(present)]
    if not len(present):
        return None, None
    low, high = float(present.min()), float(present.max())
    return (int(low), int(high)) if kind == "int" else (low, high)


def infer_signature(features: pd.DataFrame, *, max_domain: int = MAX_DOMAIN) -> Signature:
    """Infer the inputs of a signature from the feature columns of a training frame.

    Example:
        >>> infer_signature(pd.DataFrame({"age": [30, 41], "city": ["a", "b"]})).names
        ['age', 'city']
    """
    if not isinstance(features, pd.DataFrame):
        raise SignatureError(f"infer a signature from a DataFrame, not {type(features).__name__}")
    for name in features.columns:
        if not isinstance(name, str):
            raise SignatureError(f"column name {name!r} is not a string")
    if features.columns.has_duplicates:
        dup = features.columns[features.columns.duplicated()][0]
        raise SignatureError(f"column {dup!r} appears twice")
    return Signature(tuple(_infer_column(n, features[n], max_domain) for n in features.columns))
