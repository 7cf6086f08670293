"""The protocol-neutral batch both codecs parse into and encode from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.serving.protocols.errors import invalid

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class TabularBatch:
    """Named columns that share their first dimension (the row count).

    A column may have more than one dimension (one row is then a sub-array); :meth:`to_pandas`
    turns such a column into an object column holding one array per row.
    """

    columns: dict[str, np.ndarray]
    num_rows: int

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray], kind: str = "input") -> TabularBatch:
        """Build a batch, checking that every column has the same 0-th dimension.

        ``kind`` ("input" or "output") is how error messages name a column.

        Raises:
            ProtocolError: 400 naming the column that is a scalar or has another row count,
                or, for inputs, when there are no rows (a model cannot predict nothing).
        """
        if not columns:
            raise invalid("the batch has no columns")
        num_rows: int | None = None
        first = ""
        for name, array in columns.items():
            if array.ndim == 0:
                raise invalid(f"{kind} '{name}' is a scalar; a batch needs one value per row")
            if num_rows is None:
                num_rows, first = int(array.shape[0]), name
            elif array.shape[0] != num_rows:
                raise invalid(
                    f"{kind} '{name}' has {array.shape[0]} rows but {kind} '{first}' has "
                    f"{num_rows}; all named {kind}s must have the same 0-th dimension"
                )
        assert num_rows is not None
        if num_rows == 0 and kind == "input":
            raise invalid(
                f"the batch has no rows ({kind} '{first}' has 0-th dimension 0); send at least "
                "one row"
            )
        return cls(columns=dict(columns), num_rows=num_rows)

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with one column per input; multi-dimensional inputs become object columns."""
        import pandas as pd

        data: dict[str, Any] = {}
        for name, array in self.columns.items():
            if array.ndim == 1:
                data[name] = array
            else:
                column = np.empty(self.num_rows, dtype=object)
                for i in range(self.num_rows):
                    column[i] = array[i]
                data[name] = column
        return pd.DataFrame(data, index=pd.RangeIndex(self.num_rows))


@dataclass(frozen=True)
class ModelOutputs:
    """What a model returns for a batch: predictions and, for classifiers, class probabilities.

    ``probabilities`` has shape ``(rows, len(class_labels))``.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None = None
    class_labels: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.probabilities is None:
            return
        if self.probabilities.ndim != 2 or self.probabilities.shape[0] != len(self.predictions):
            raise ValueError(
                f"probabilities must have shape (rows, classes), got {self.probabilities.shape}"
            )
        if self.class_labels is not None and len(self.class_labels) != self.probabilities.shape[1]:
            raise ValueError(
                f"{len(self.class_labels)} class labels for "
                f"{self.probabilities.shape[1]} probability columns"
            )

    def as_tensors(self) -> dict[str, np.ndarray]:
        """Named output tensors: ``predictions`` and, when present, ``probabilities``."""
        tensors = {"predictions": np.asarray(self.predictions)}
        if self.probabilities is not None:
            tensors["probabilities"] = np.asarray(self.probabilities)
        return tensors
