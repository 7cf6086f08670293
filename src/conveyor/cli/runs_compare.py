"""``conveyor runs compare RUN RUN ...``: parameters and metrics of runs side by side.

What worked and what did not: one column per run, one row per parameter or metric.

- **Parameters**: the run's pipeline parameters (``param.NAME``) and every step's resolved
  parameters (``STEP.NAME``); nested dicts (a search space) are flattened into dotted rows,
  so the row that changed is the one shown. The table shows the rows that differ; ``--json``
  has them all, each with ``differs``.
- **Metrics**, read from artifact properties (nothing is loaded): a "Metrics" artifact's
  values, any output's ``metrics`` property (model bundles, evaluations' overall metrics), an
  "Evaluation"'s ``overall``, and a "TuningResult"'s best value (``STEP.best_METRIC``) and
  trial counts. A row is named ``STEP.METRIC`` (``STEP.OUTPUT.METRIC`` for outputs not
  called ``output``). The best value of a row is marked when its direction is known: from the
  metric table of :mod:`conveyor.modeling.metrics`, or the tuning result's own direction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.render import out_console, print_json, run_dict, status_text
from conveyor.cli.runs import parse_run_id
from conveyor.cli.state import read_store
from conveyor.store.metadata.records import ArtifactRecord, RunRecord
from conveyor.store.metadata.store import MetadataStore

__all__ = ["RunColumn", "collect_run", "compare_command", "compare_runs"]

_COUNTS = ("n_trials", "n_complete", "n_pruned", "n_failed")
_LOWER_IS_BETTER_SUFFIXES = ("loss", "error", "rmse", "mae")
_MAX_TEXT = 40


@dataclass
class RunColumn:
    """One run's flattened parameters and metrics."""

    run: RunRecord
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    directions: dict[str, str] = field(default_factory=dict)  # metric row -> max | min


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _numbers(values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _artifact_metrics(column: RunColumn, prefix: str, artifact: ArtifactRecord) -> None:
    props = artifact.properties
    found = _numbers(props) if artifact.type_name == "Metrics" else {}
    found |= _numbers(props.get("overall")) | _numbers(props.get("metrics"))
    if artifact.type_name == "TuningResult" and isinstance(props.get("best_value"), int | float):
        row = f"{prefix}.best_{props.get('metric', 'value')}"
        column.metrics[row] = float(props["best_value"])
        column.directions[row] = "max" if props.get("direction") == "maximize" else "min"
        found |= {name: float(props[name]) for name in _COUNTS if name in props}
    column.metrics.update({f"{prefix}.{name}": value for name, value in found.items()})


def collect_run(store: MetadataStore, run_id: int) -> RunColumn:
    """A run's parameters and metrics, flattened into rows (NotFoundError for no such run).

    Example:
        >>> collect_run(store, 3).metrics
        {'tune.best_roc_auc': 0.91, 'tune.n_trials': 20.0, 'train.eval_logloss': 0.31}
    """
    column = RunColumn(store.get_run(run_id))
    _flatten("param", column.run.params, column.params)
    for execution in store.list_executions(run_id):
        _flatten(execution.step_name, execution.params, column.params)
        for output, artifact in store.execution_outputs(execution.id).items():
            prefix = execution.step_name + ("" if output == "output" else f".{output}")
            _artifact_metrics(column, prefix, artifact)
    return column


def _direction(row: str, known: dict[str, str]) -> str | None:
    if row in known:
        return known[row]
    name = row.rpartition(".")[2].removeprefix("eval_").removeprefix("best_")
    from conveyor.modeling.metrics import METRICS  # imports scikit-learn: only when needed

    if name in METRICS:
        return "max" if METRICS[name].higher_is_better else "min"
    return "min" if name.endswith(_LOWER_IS_BETTER_SUFFIXES) else None


def _rows(columns: list[RunColumn], kind: str) -> list[dict[str, Any]]:
    names = sorted({name for c in columns for name in getattr(c, kind)})
    known = {k: v for c in columns for k, v in c.directions.items()}
    rows = []
    for name in names:
        values = [getattr(c, kind).get(name) for c in columns]
        shown = {json.dumps(v, sort_keys=True, default=str) for v in values}
        row: dict[str, Any] = {"name": name, "values": values, "differs": len(shown) > 1}
        if kind == "metrics":
            direction = _direction(name, known)
            present = [v for v in values if v is not None]
            best = (max if direction == "max" else min)(present) if direction and present else None
            row["direction"] = direction
            row["best"] = [c.run.id for c, v in zip(columns, values, strict=True) if v == best]
        rows.append(row)
    return rows


def compare_runs(store: MetadataStore, run_ids: list[int]) -> dict[str, Any]:
    """The comparison as plain data: ``runs``, ``params`` and ``metrics`` rows.

    Each row has ``name``, ``values`` (one per run, None where absent) and ``differs``;
    metric rows also ``direction`` (``max``, ``min`` or None) and ``best`` (run ids).

    Example:
        >>> compare_runs(store, [3, 4])["metrics"][0]
        {'name': 'tune.best_roc_auc', 'values': [0.91, 0.93], 'differs': True,
         'direction': 'max', 'best': [4]}
    """
    columns = [collect_run(store, run_id) for run_id in run_ids]
    return {
        "runs": [run_dict(c.run) for c in columns],
        "params": _rows(columns, "params"),
        "metrics": _rows(columns, "metrics"),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _table(title: str, rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column(title.split()[0])
    for run in runs:
        table.add_column(f"run {run['id']}", justify="right")
    for row in rows:
        cells = []
        for run, value in zip(runs, row["values"], strict=True):
            best = run["id"] in row.get("best", ()) and row["differs"]
            cells.append(Text(_cell(value), style="bold green" if best else ""))
        mark = Text("*", style="yellow") if row["differs"] else Text("")
        table.add_row(mark, row["name"], *cells)
    return table


def compare_command(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids: 12, r12 or run:12.")],
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Compare runs: parameters that differ and metrics side by side (best in green)."""
    if len(runs) < 2:
        raise typer.BadParameter("give at least two runs to compare", param_hint="RUNS")
    run_ids = [parse_run_id(text) for text in runs]
    with read_store(ctx) as store:
        comparison = compare_runs(store, run_ids)
    if json_output:
        print_json(comparison)
        return
    console = out_console()
    header = Text("comparing ")
    for run in comparison["runs"]:
        header.append(f"run {run['id']} ({run['pipeline']}) ")
        header.append_text(status_text(run["status"]))
        header.append("  ")
    console.print(header)
    differing = [row for row in comparison["params"] if row["differs"]]
    if differing:
        console.print(_table("parameters that differ", differing, comparison["runs"]))
    else:
        console.print("parameters: all equal")
    if comparison["metrics"]:
        console.print(
            _table("metrics (* differs, best in green)", comparison["metrics"], comparison["runs"])
        )
    else:
        console.print(
            "metrics: none recorded (Metrics, Evaluation, TuningResult or bundle outputs)"
        )
