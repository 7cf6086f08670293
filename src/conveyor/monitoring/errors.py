"""Errors of monitoring::

    ConveyorError
    └── MonitoringError         a bad window spec, slice, rule or prediction log

DuckDB and pyarrow errors met while reading the prediction log are re-raised as
:class:`MonitoringError` naming the log, with the original chained.
"""

from __future__ import annotations

from conveyor.exceptions import ConveyorError

__all__ = ["MonitoringError"]


class MonitoringError(ConveyorError):
    """Monitoring cannot run as asked: the message names the setting, rule or file at fault."""
