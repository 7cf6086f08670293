"""Errors of the data layer (ingest, statistics, schema, validation, drift).

They hang under :class:`conveyor.exceptions.ConveyorError`, so the CLI maps them to exit code 2
like every other conveyor error::

    ConveyorError
    └── DataError                     anything wrong with data or its description
        ├── DataSourceError           a file / SQL source cannot be read (names file, row, column)
        ├── SchemaError               a schema is invalid or does not fit the data
        ├── ValidationFailed          validation found error-severity anomalies (carries .report)
        └── DriftError                drift cannot be computed (unknown method, missing column, ...)

Errors of pyarrow, pandas, DuckDB or SQLAlchemy are caught at the boundary and re-raised as one
of these with the original chained (``raise ... from exc``).
"""

from __future__ import annotations

from typing import Any

from conveyor.exceptions import ConveyorError

__all__ = [
    "DataError",
    "DataSourceError",
    "DriftError",
    "SchemaError",
    "ValidationFailed",
]


class DataError(ConveyorError):
    """Root of the data layer's errors."""


class DataSourceError(DataError):
    """A data source (file, folder, SQL query) cannot be read.

    The message names the file and, when known, the row and column at fault.
    """


class SchemaError(DataError):
    """A schema is invalid, or data does not have the shape a schema or caller expects."""


class ValidationFailed(DataError):
    """Validation found anomalies of error severity; the pipeline must stop here.

    Attributes:
        report: the validation report that holds the anomalies (type defined by the validator).

    Example:
        >>> err = ValidationFailed("2 anomalies of severity error", report={"anomalies": 2})
        >>> err.report
        {'anomalies': 2}
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class DriftError(DataError):
    """Drift cannot be computed: unknown method, unsupported column kind, missing column."""
