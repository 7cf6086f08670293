"""Canary requests: rows of data as a real client sends them, and answers compared offline.

Pure functions over DataFrames, JSON documents and numpy arrays; the HTTP calls are made by
:mod:`conveyor.serving.infra_validation`. A canary batch is sent over one protocol:

- ``v2``, the Open Inference Protocol: one tensor per input column (``INT64``, ``FP64``,
  ``BOOL``, or ``BYTES`` for text and for datetimes as ISO 8601 text) to
  ``POST /v2/models/{m}/versions/{v}/infer``;
- ``v1``, TF Serving REST in the columnar format (``{"inputs": {column: [values]}}``) to
  ``POST /v1/models/{m}/versions/{v}:predict``.

A float NaN travels as the JSON token ``NaN`` (what Python's ``json`` writes); any other missing
value has no representation in either protocol, so :func:`canary_rows` leaves such rows out
unless asked to send them (as ``null``, which the server refuses).

:func:`compare` checks every answered row against the bundle's own predictions on the same
rows: labels equal, probabilities and regression values within an absolute tolerance.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from conveyor.modeling.bundle import LoadedBundle
from conveyor.modeling.bundle_signature import Signature, column_type
from conveyor.serving.fast_path import model_outputs
from conveyor.serving.protocols import v2

__all__ = [
    "PROTOCOLS",
    "Difference",
    "Protocol",
    "canary_rows",
    "compare",
    "decode_answer",
    "encode_request",
    "offline_outputs",
    "request_path",
]

Protocol = Literal["v2", "v1"]
PROTOCOLS: tuple[Protocol, ...] = ("v2", "v1")


@dataclass(frozen=True)
class Difference:
    """One output of one row that the server answered differently from the bundle offline.

    Attributes:
        row: the row's position in the examples.
        output: ``label``, ``probabilities`` or ``prediction``.
        expected: the offline value (JSON-able).
        got: the served value (JSON-able), or a description of what is missing.
    """

    row: int
    output: str
    expected: Any
    got: Any

    def describe(self) -> str:
        """``row 12 label: expected '>50K', got '<=50K'``."""
        return f"row {self.row} {self.output}: expected {self.expected!r}, got {self.got!r}"


def _unsendable(values: pd.Series) -> pd.Series:
    """Rows whose value neither protocol can carry: missing, in a column that is not float."""
    if column_type(values) == "float":
        return pd.Series(False, index=values.index)
    return values.isna()


def canary_rows(
    examples: pd.DataFrame, signature: Signature, rows: int, *, skip_missing: bool = True
) -> tuple[pd.DataFrame, int]:
    """The first ``rows`` rows of the signature's input columns that can be sent as they are.

    The frame keeps the rows' positions in ``examples`` as its index.

    Args:
        examples: the examples (extra columns are ignored).
        signature: the bundle's signature; its input columns are taken, in its order.
        rows: how many rows to take at most.
        skip_missing: leave out rows with a missing value outside float columns (no protocol
            can carry it); False keeps them (they are sent as ``null``).

    Returns:
        The rows, and how many of the examples before the last one taken were left out.

    Raises:
        SignatureError: an input column is missing or of another type.
    """
    frame = signature.check_input(examples, allow_extra=True).reset_index(drop=True)
    if not skip_missing:
        return frame.head(rows), 0
    bad = np.zeros(len(frame), dtype=bool)
    for name in frame.columns:
        bad |= _unsendable(frame[name]).to_numpy(dtype=bool)
    kept = frame[~bad].head(rows)
    last = int(kept.index[-1]) + 1 if len(kept) else len(frame)
    return kept, int(bad[:last].sum())


def _json_value(value: Any, kind: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "float":
        return math.nan if value is None or value is pd.NA else float(value)
    missing = value is None or value is pd.NA or value is pd.NaT
    if missing or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, dt.date):  # datetimes and pandas Timestamps too
        return value.isoformat()
    if kind in ("int", "bool"):
        return value
    return value if isinstance(value, str) else str(value)


def _column(values: pd.Series) -> tuple[str, list[Any]]:
    """The column's signature kind and its values as JSON (NaN stays a float)."""
    kind = column_type(values)
    return kind, [_json_value(v, kind) for v in values.astype(object).tolist()]


def encode_request(rows: pd.DataFrame, protocol: Protocol, request_id: str) -> bytes:
    """A request body for ``rows`` (input columns only) in ``protocol``, as JSON."""
    columns = {str(name): _column(rows[name]) for name in rows.columns}
    document: dict[str, Any]
    if protocol == "v2":
        tensors = [
            {"name": name, "datatype": v2.column_datatype(kind), "shape": [len(data)]}
            | {"data": data}
            for name, (kind, data) in columns.items()
        ]
        document = {"id": request_id, "inputs": tensors}
    else:
        document = {"inputs": {name: data for name, (_, data) in columns.items()}}
    return json.dumps(document, allow_nan=True).encode("utf-8")


def request_path(protocol: Protocol, model: str, version: int) -> str:
    """The endpoint one explicit version of ``model`` answers on."""
    if protocol == "v2":
        return f"/v2/models/{model}/versions/{version}/infer"
    return f"/v1/models/{model}/versions/{version}:predict"


def _plain(array: np.ndarray) -> np.ndarray:
    """Bytes decoded as text (V2 sends text labels as BYTES)."""
    if array.dtype.kind != "O":
        return array
    decoded = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()]
    return np.array(decoded, dtype=object).reshape(array.shape)


def decode_answer(
    body: bytes, headers: Mapping[str, str], protocol: Protocol, names: list[str]
) -> dict[str, np.ndarray]:
    """The named outputs of a 200 answer.

    ``names`` are the outputs the model has (a TF Serving answer with one output is that
    output's bare value).

    Raises:
        ValueError: the body is not an answer of ``protocol``.
    """
    if protocol == "v2":
        try:
            answer = v2.parse_infer_response(body, headers)
        except Exception as exc:
            raise ValueError(f"not an inference response: {exc}") from exc
        return {name: _plain(np.asarray(t.data)) for name, t in answer.outputs.items()}
    document = json.loads(body)
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if outputs is None:
        raise ValueError(f"no 'outputs' in the answer: {body[:200]!r}")
    if not isinstance(outputs, dict) or len(names) == 1:
        outputs = {names[0]: outputs}
    return {str(name): _plain(np.asarray(value, dtype=object)) for name, value in outputs.items()}


def offline_outputs(bundle: LoadedBundle, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the server is meant to answer for ``rows``: the bundle's own predictions."""
    return {name: np.asarray(values) for name, values in model_outputs(bundle, rows).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _numbers_equal(expected: Any, got: Any, tolerance: float) -> bool:
    try:
        want = np.asarray(expected, dtype=float)
        have = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False
    if want.shape != have.shape:
        return False
    same = np.isclose(have, want, rtol=0.0, atol=tolerance, equal_nan=True)
    return bool(np.all(same))


def _same(name: str, expected: Any, got: Any, tolerance: float) -> bool:
    if name == "label":
        return bool(_jsonable(expected) == _jsonable(got))
    return _numbers_equal(expected, got, tolerance)


def compare(
    expected: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    rows: list[int],
    *,
    tolerance: float = 1e-9,
) -> list[Difference]:
    """Every output of every row where ``got`` differs from ``expected``.

    Args:
        expected: the offline outputs (one entry per row along the first axis).
        got: the served outputs.
        rows: the rows' positions in the examples, in order.
        tolerance: largest absolute difference allowed for numbers (labels must be equal).

    Example:
        >>> compare({"label": np.array([1, 0])}, {"label": np.array([1, 1])}, [10, 11])
        [Difference(row=11, output='label', expected=0, got=1)]
    """
    differences: list[Difference] = []
    for name, want in expected.items():
        have = got.get(name)
        if have is None or len(have) != len(want):
            count = "no" if have is None else f"{len(have)} rows of"
            what = f"{count} '{name}' in the answer"
            differences.extend(
                Difference(r, name, _jsonable(w), what) for r, w in zip(rows, want, strict=True)
            )
            continue
        for row, w, h in zip(rows, want, have, strict=True):
            if not _same(name, w, h, tolerance):
                differences.append(Difference(row, name, _jsonable(w), _jsonable(h)))
    return differences
