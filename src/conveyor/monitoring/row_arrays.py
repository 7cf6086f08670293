"""The rows read from the log as arrays, so each window is a cheap numpy/Arrow take.

A check measures hundreds of windows; slicing a pandas frame per window costs more than the
measurements themselves. :class:`RowArrays` converts the frame once (numbers to float64
arrays, text and booleans to Arrow arrays, missing masks, class probabilities to a matrix,
slice membership to integer codes) and every per-window function takes ``(arrays, rows)``,
``rows`` being positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from conveyor.modeling.slicing import SliceSpec, slice_rows
from conveyor.monitoring.prediction_rows import InputColumn

__all__ = ["RowArrays", "Rows", "slice_members"]

Rows = npt.NDArray[np.intp]
"""Positions of a window's rows in the :class:`RowArrays`."""


def slice_members(frame: pd.DataFrame, spec: SliceSpec) -> dict[str, Rows]:
    """Rows of each slice of ``spec`` (positions in ``frame``): the slices and names of
    :func:`conveyor.modeling.slicing.slice_rows`, computed on the distinct value
    combinations only (naming a slice formats its value in Python)."""
    columns = [c.feature for c in spec.columns]
    groups = frame.groupby(columns, dropna=False, sort=False).ngroup().to_numpy()
    _, firsts = np.unique(groups, return_index=True)
    distinct = frame[columns].iloc[firsts].reset_index(drop=True)
    members: dict[str, Rows] = {}
    for name, (_, rows) in slice_rows(distinct, spec).items():
        members[name] = np.flatnonzero(np.isin(groups, groups[firsts[rows]]))
    return members


@dataclass
class RowArrays:
    """Per-row arrays of the log rows (see the module docstring).

    Attributes:
        frame: The frame they come from (text columns for the class matching).
        route: Route code per row (an index into ``routes``).
        routes: The route names.
        first: True on the first row of each request (one latency per request).
        latency: Request latency (ms) per row.
        numbers: Numeric inputs as float64 (NaN when missing or not a number).
        values: Text and boolean inputs as Arrow arrays (null when missing).
        missing: Missing mask per input.
        label: The predicted label per row, as text (Arrow).
        proba: Class probabilities, one column per class (NaN when absent).
        value: Regression predictions.
        slices: Per slice spec name: each row's slice code (-1: none) and the slice names.
        notes: Slice specs that could not be applied, and why.
    """

    frame: pd.DataFrame
    route: npt.NDArray[np.intp]
    routes: list[str]
    first: npt.NDArray[np.bool_]
    latency: npt.NDArray[np.float64]
    numbers: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    values: dict[str, pa.Array] = field(default_factory=dict)
    missing: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    label: pa.Array | None = None
    proba: npt.NDArray[np.float64] | None = None
    value: npt.NDArray[np.float64] | None = None
    slices: dict[str, tuple[npt.NDArray[np.int64], list[str]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        inputs: Sequence[InputColumn],
        classes: int,
        slices: Sequence[SliceSpec] = (),
    ) -> RowArrays:
        """Convert ``frame`` (:meth:`LogReader.rows`) once."""
        route, routes = pd.factorize(frame["route"])
        arrays = cls(
            frame=frame,
            route=np.asarray(route, dtype=np.intp),
            routes=[str(r) for r in routes],
            first=(frame["row"] == 0).to_numpy(dtype=bool),
            latency=frame["latency_ms"].to_numpy(dtype=float, na_value=np.nan),
            value=frame["out:value"].to_numpy(dtype=float, na_value=np.nan),
            label=pa.array(frame["out:label"], from_pandas=True, type=pa.string()),
        )
        for column in inputs:
            series = frame[column.column]
            arrays.missing[column.name] = series.isna().to_numpy(dtype=bool, na_value=True)
            if column.type == "number":
                arrays.numbers[column.name] = series.to_numpy(dtype=float, na_value=np.nan)
            else:
                arrays.values[column.name] = pa.array(series, from_pandas=True)
        if classes:
            names = [f"out:p{i}" for i in range(classes)]
            arrays.proba = frame[names].to_numpy(dtype=float, na_value=np.nan)
        arrays._add_slices(frame, slices)
        return arrays

    def _add_slices(self, frame: pd.DataFrame, slices: Sequence[SliceSpec]) -> None:
        features = frame.rename(columns=lambda c: c[3:] if c.startswith("in:") else f"_{c}")
        for spec in slices:
            absent = [c.feature for c in spec.columns if c.feature not in features]
            if absent:
                self.notes[f"slice {spec.name}"] = f"{absent[0]!r} is not a model input"
                continue
            codes = np.full(len(frame), -1, dtype=np.int64)
            members = slice_members(features, spec)
            for code, rows in enumerate(members.values()):
                codes[rows] = code
            self.slices[spec.name] = (codes, list(members))

    def __len__(self) -> int:
        return len(self.first)

    def routes_of(self, rows: Rows) -> tuple[str, ...]:
        """The route names of a window's rows, sorted."""
        return tuple(sorted(self.routes[code] for code in np.unique(self.route[rows]).tolist()))

    def window_slices(self, rows: Rows) -> list[tuple[str, Rows]]:
        """The slices of a window: (slice name, positions *within* ``rows``)."""
        found = []
        for codes, names in self.slices.values():
            local = codes[rows]
            for code in np.unique(local[local >= 0]).tolist():
                found.append((names[code], np.flatnonzero(local == code)))
        return found
