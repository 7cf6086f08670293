"""pandas DataFrames as Parquet "Dataset" artifacts (written and read through pyarrow).

The index is kept (a RangeIndex as metadata, other indexes as columns) and restored on
load; column labels must all be of one type, since Parquet stores them as text and mixed
labels would not come back as they were. Datasets written by Arrow or holding several
Parquet files load too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from conveyor.core.materializers import Materializer
from conveyor.exceptions import MaterializerError
from conveyor.materializers.arrow import read_dataset, table_properties, write_table

__all__ = ["PandasMaterializer"]


def _check_columns(frame: pd.DataFrame) -> None:
    kinds = {type(label).__name__ for label in frame.columns}
    if len(kinds) > 1:
        shown = ", ".join(repr(c) for c in list(frame.columns)[:10])
        raise MaterializerError(
            f"DataFrame column labels mix types ({', '.join(sorted(kinds))}: {shown}); "
            "Parquet would turn them all into strings: rename them to one type"
        )
    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise MaterializerError(f"DataFrame has duplicate columns {duplicated[:10]}; rename them")


class PandasMaterializer(Materializer):
    """``pandas.DataFrame`` <-> Parquet Dataset (``data.parquet``).

    Example:
        >>> PandasMaterializer().save(pd.DataFrame({"x": [1, 2]}), folder)["columns"]
        [{'name': 'x', 'dtype': 'int64'}]
    """

    python_types = ("pandas.DataFrame", "pandas.core.frame.DataFrame")
    artifact_type = "Dataset"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        _check_columns(obj)
        try:
            table = pa.Table.from_pandas(obj, preserve_index=None)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise MaterializerError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
        write_table(table, folder)
        columns = [(str(name), str(dtype)) for name, dtype in obj.dtypes.items()]
        return table_properties(len(obj), columns)

    def load(self, folder: Path, python_type: type) -> Any:
        table = read_dataset(folder)
        try:
            frame = table.to_pandas()
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise MaterializerError(f"cannot convert Dataset {folder} to pandas: {exc}") from exc
        return frame if python_type is pd.DataFrame else python_type(frame)
