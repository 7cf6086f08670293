"""``conveyor data ...`` and ``conveyor schema ...``: data tools that work on plain files.

The commands live in their own modules (``data_stats``, ``data_drift``, ``data_validate``,
``data_list``, ``schema``); this module only groups them.
"""

from __future__ import annotations

import typer

from conveyor.cli import data_drift, data_list, data_stats, data_validate, schema

__all__ = ["data_app", "schema_app"]

data_app = typer.Typer(
    no_args_is_help=True, help="Describe, compare and validate data files and datasets."
)
data_app.command("stats")(data_stats.stats_command)
data_app.command("drift")(data_drift.drift_command)
data_app.command("validate")(data_validate.validate_command)
data_app.command("list")(data_list.list_command)

schema_app = typer.Typer(no_args_is_help=True, help="Show and compare data schemas.")
schema_app.command("show")(schema.show_command)
schema_app.command("diff")(schema.diff_command)
