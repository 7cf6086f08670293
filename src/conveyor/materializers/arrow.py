"""pyarrow Tables as Parquet "Dataset" artifacts, and the Parquet reading pandas shares.

A Dataset folder holds one or more ``.parquet`` files, possibly in hive-style
``key=value/`` sub-folders; reading unifies their schemas. Writing uses pyarrow's defaults,
which are deterministic: the same table gives the same bytes (and the same fingerprint)
with the same pyarrow version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from conveyor.core.artifacts import payload_files
from conveyor.core.materializers import Materializer
from conveyor.exceptions import MaterializerError

__all__ = ["MAX_COLUMNS_IN_PROPERTIES", "ArrowMaterializer", "dataset_files", "read_dataset"]

MAX_COLUMNS_IN_PROPERTIES = 1000
"""Wider tables list only their first columns in the artifact properties."""


def dataset_files(folder: Path) -> list[Path]:
    """The Parquet files of a Dataset folder (or the file itself), sorted."""
    return [p for p in payload_files(folder) if p.suffix == ".parquet"]


def read_dataset(folder: Path) -> pa.Table:
    """Read every Parquet file of a Dataset folder into one table.

    Raises MaterializerError naming the folder when it has no Parquet files or their
    schemas conflict.
    """
    files = dataset_files(folder)
    if not files:
        raise MaterializerError(f"Dataset {folder} holds no .parquet files")
    try:
        if len(files) == 1 and files[0].parent == Path(folder):
            return pq.read_table(files[0])
        base = Path(folder) if Path(folder).is_dir() else Path(folder).parent
        paths = [str(f) for f in files]
        dataset = ds.dataset(
            paths, format="parquet", partitioning="hive", partition_base_dir=str(base)
        )
        # The discovered schema is the first file's plus the partition keys; unify them all
        # so part files with extra columns keep them (missing ones read as nulls).
        schema = pa.unify_schemas([*(pq.read_schema(f) for f in files), dataset.schema])
        return dataset.replace_schema(schema).to_table()
    except (pa.ArrowException, OSError) as exc:
        raise MaterializerError(f"cannot read Dataset {folder}: {exc}") from exc


def write_table(table: pa.Table, folder: Path) -> None:
    """Write ``table`` as ``data.parquet`` (pyarrow defaults: deterministic)."""
    try:
        pq.write_table(table, folder / "data.parquet")
    except (pa.ArrowException, OSError) as exc:
        raise MaterializerError(f"cannot write Parquet: {exc}") from exc


def table_properties(num_rows: int, columns: list[tuple[str, str]]) -> dict[str, Any]:
    """num_rows, num_columns and (the first) columns with their dtypes."""
    shown = columns[:MAX_COLUMNS_IN_PROPERTIES]
    props: dict[str, Any] = {
        "num_rows": num_rows,
        "num_columns": len(columns),
        "columns": [{"name": name, "dtype": dtype} for name, dtype in shown],
    }
    if len(columns) > len(shown):
        props["columns_truncated"] = True
    return props


class ArrowMaterializer(Materializer):
    """``pyarrow.Table`` <-> Parquet Dataset.

    Example:
        >>> ArrowMaterializer().save(pa.table({"x": [1, 2]}), folder)["num_rows"]
        2
    """

    python_types = ("pyarrow.lib.Table",)
    artifact_type = "Dataset"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        write_table(obj, folder)
        columns = [(f.name, str(f.type)) for f in obj.schema]
        return table_properties(obj.num_rows, columns)

    def load(self, folder: Path, python_type: type) -> Any:
        return read_dataset(folder)
