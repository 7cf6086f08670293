"""``conveyor models evaluate NAME[:VERSION|:ALIAS] --data DATA``: metrics evolve.

Re-evaluates any registered model version on any data -- a Dataset artifact (``12``, ``a12``,
``artifact:12``; its ``--split``) or a Parquet/CSV file or folder -- with *today's* metric,
slice and threshold configuration, so an old model and a new one are compared on the same
footing (``--baseline production`` evaluates that version too, on the same rows). The work is
:func:`conveyor.components.model_evaluate.evaluate_models`, the same as the ``evaluate`` step's.

Prints the metrics (and the baseline's, with deltas), the headline metrics per slice and, with
thresholds, the verdict; ``--json`` prints the whole report; ``--html OUT`` writes the HTML
report. Evaluating is a finding, not a gate: the exit code is 0 whether blessed or not; bad
input (unknown model, metric, column, threshold) exits 2 and writes nothing. Like the other
``models`` commands, it never creates a home.

Mounted by the root app as ``conveyor models evaluate`` (``models.app.command("evaluate")``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.artifacts import parse_artifact_id
from conveyor.cli.models import parse_model_ref
from conveyor.cli.render import err_console, out_console, print_json, write_page
from conveyor.cli.state import read_store, settings_from
from conveyor.components.model_evaluate import (
    Baseline,
    as_task,
    evaluate_models,
    load_registered,
)
from conveyor.core.artifacts import Dataset
from conveyor.exceptions import ConveyorError
from conveyor.modeling.evaluation_artifacts import EvaluationConfig, EvaluationReport
from conveyor.modeling.evaluation_report import headline_metrics, render_evaluation_html
from conveyor.modeling.metrics import EvaluationError
from conveyor.registry import ModelRegistry
from conveyor.store.artifact_store import ArtifactStore
from conveyor.store.metadata.store import MetadataStore

__all__ = ["evaluate_command", "parse_slice_option", "parse_threshold_option"]

_SLICE_HELP = (
    "Slice spec, repeatable: 'sex' (per value), 'age:0,30,50,120' (buckets), 'age:q4' "
    "(quartiles), 'sex*race' (a cross), or JSON."
)
_THRESHOLD_HELP = (
    "Threshold, repeatable: 'roc_auc>=0.8', 'log_loss<=0.35', 'accuracy:max_drop=0.01:slices' "
    "(relative to --baseline, on every slice too), or JSON like "
    '\'{"metric": "f1", "min": 0.5, "slices": ["sex=F"]}\'.'
)
_BOUND_KEYS = ("min", "max", "max_drop", "max_increase")
_DISPARITIES = ("demographic_parity_difference", "equalized_odds_difference")


def _number(text: str, what: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{what}: {text!r} is not a number") from None
    return int(value) if value.is_integer() and "." not in text else value


def _slice_column(text: str) -> str | dict[str, Any]:
    feature, sep, spec = text.partition(":")
    if not sep:
        return feature.strip()
    if spec.strip().lower().startswith("q"):
        return {"feature": feature.strip(), "quantiles": _number(spec.strip()[1:], text)}
    edges = [_number(edge.strip(), text) for edge in spec.split(",") if edge.strip()]
    return {"feature": feature.strip(), "buckets": edges}


def parse_slice_option(text: str) -> Any:
    """A ``--slice`` value as a slice spec (plain data).

    Example:
        >>> parse_slice_option("sex*age:0,30,120")
        ['sex', {'feature': 'age', 'buckets': [0, 30, 120]}]
    """
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as exc:
            message = f"{text!r} is not valid JSON: {exc}"
            raise typer.BadParameter(message, param_hint="--slice") from exc
    if "*" in text:
        return [_slice_column(part) for part in text.split("*")]
    return _slice_column(text)


def parse_threshold_option(text: str) -> dict[str, Any]:
    """A ``--threshold`` value as a threshold spec (plain data).

    Example:
        >>> parse_threshold_option("accuracy:max_drop=0.01:slices")
        {'metric': 'accuracy', 'max_drop': 0.01, 'slices': True}
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            message = f"{text!r} is not valid JSON: {exc}"
            raise typer.BadParameter(message, param_hint="--threshold") from exc
        return loaded if isinstance(loaded, dict) else {"metric": loaded}
    head, *rest = text.split(":")
    spec: dict[str, Any] = {}
    for op, key in ((">=", "min"), ("<=", "max")):
        if op in head:
            head, _, bound = head.partition(op)
            spec[key] = _number(bound.strip(), text)
    spec = {"metric": head.strip(), **spec}
    for part in (p.strip() for p in rest):
        key, sep, value = part.partition("=")
        if part == "slices":
            spec["slices"] = True
        elif sep and key in _BOUND_KEYS:
            spec[key] = _number(value, text)
        else:
            raise typer.BadParameter(
                f"{text!r}: {part!r} is not one of {', '.join(k + '=X' for k in _BOUND_KEYS)} "
                "or 'slices'",
                param_hint="--threshold",
            )
    return spec


# -- data ----------------------------------------------------------------------------------


def _from_dataset(dataset: Dataset, split: str) -> tuple[pd.DataFrame, str | None]:
    if not dataset.splits():
        whole: pd.DataFrame = dataset.to_pandas()
        return whole, None
    frame: pd.DataFrame = dataset.to_pandas(split=split)
    return frame, split


def _load_data(
    text: str, split: str, store: MetadataStore, artifact_url: str, stack: ExitStack
) -> tuple[pd.DataFrame, str | None, str, str]:
    """(frame, split used, uri, sha256) of a Dataset artifact id or a file/folder path."""
    path = Path(text).expanduser()
    if not path.exists():
        try:
            artifact_id = parse_artifact_id(text)
        except ConveyorError:
            raise EvaluationError(
                f"--data {text!r}: no such file or folder, and not an artifact id (a12)"
            ) from None
        record = store.get_artifact(artifact_id)
        if record.type_name != "Dataset":
            raise EvaluationError(
                f"--data a{artifact_id} is a {record.type_name} artifact, not a Dataset"
            )
        folder = stack.enter_context(ArtifactStore.open(artifact_url).local_folder(record.uri))
        dataset = Dataset(record.uri, folder, "Dataset", record.sha256, dict(record.properties))
        return (*_from_dataset(dataset, split), record.uri, record.sha256)
    if path.is_dir() and any(p.name.startswith("split=") for p in path.iterdir()):
        return (*_from_dataset(Dataset.from_path(path), split), str(path.absolute()), "")
    from conveyor.data.drift_io import read_table  # pyarrow: only when used

    return read_table(path).to_pandas(), None, str(path.absolute()), ""


# -- the command ---------------------------------------------------------------------------


def _label(label: str | None, lineage: dict[str, Any], ref: str) -> str:
    params = lineage.get("params")
    found = params.get("label") if isinstance(params, dict) else None
    if label or isinstance(found, str):
        return label or str(found)
    raise EvaluationError(f"{ref}: its bundle does not record the label column; give --label")


def _evaluate(ctx: typer.Context, ref: str, data: str, options: dict[str, Any]) -> EvaluationReport:
    name, version = parse_model_ref(ref)
    artifact_url = settings_from(ctx).artifact_url
    with read_store(ctx) as store, ExitStack() as stack:
        registry = ModelRegistry(store)
        bundle, record = load_registered(registry, name, version or "latest", artifact_url, stack)
        config = EvaluationConfig.create(
            as_task(bundle.manifest.task, f"{name}:{record.version}"), **options["config"]
        )
        label = _label(options["label"], bundle.manifest.lineage, f"{name}:{record.version}")
        frame, split, uri, sha = _load_data(data, options["split"], store, artifact_url, stack)
        config.check_frame(frame, label)
        baseline = None
        if options["baseline"]:
            base, base_record = load_registered(
                registry, name, options["baseline"], artifact_url, stack
            )
            baseline = Baseline(base, f"{name}:{base_record.version}")
        with _busy(options["quiet"], f"evaluating {name}:{record.version}..."):
            return evaluate_models(
                bundle,
                frame,
                label,
                config,
                baseline=baseline,
                model_name=name,
                candidate_version=f"{name}:{record.version}",
                split=split,
                data_uri=uri,
                data_sha256=sha,
            )


def evaluate_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME (latest), NAME:VERSION or NAME:ALIAS.")],
    data: Annotated[
        str,
        typer.Option(
            "--data", "-d", help="A Dataset artifact id (a12) or a Parquet/CSV file or folder."
        ),
    ],
    label: Annotated[
        str | None,
        typer.Option("--label", help="Label column (default: the one the model was trained on)."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of a split Dataset.")] = "eval",
    slices: Annotated[list[str] | None, typer.Option("--slice", help=_SLICE_HELP)] = None,
    sensitive: Annotated[
        list[str] | None, typer.Option("--sensitive", help="Fairness over this column (binary).")
    ] = None,
    metrics: Annotated[
        list[str] | None, typer.Option("--metric", help="Metric, repeatable (default: all).")
    ] = None,
    thresholds: Annotated[
        list[str] | None, typer.Option("--threshold", help=_THRESHOLD_HELP)
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Version or alias to compare with (e.g. production)."),
    ] = None,
    min_count: Annotated[
        int, typer.Option("--min-count", min=0, help="Smaller slices are flagged, not gated.")
    ] = 30,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the HTML report here.", dir_okay=False)
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-evaluate a registered model version on any data with today's metrics and slices."""
    config = {
        "slices": [parse_slice_option(s) for s in slices or []],
        "metrics": metrics or None,
        "thresholds": [parse_threshold_option(t) for t in thresholds or []],
        "sensitive_features": sensitive or [],
        "min_count": min_count,
    }
    options = {"label": label, "split": split, "baseline": baseline, "quiet": json_output}
    report = _evaluate(ctx, model, data, {**options, "config": config})
    written = (
        None
        if html is None
        else write_page(html, render_evaluation_html(report), fix="pick another --html")
    )
    if json_output:
        print_json({**json.loads(report.model_dump_json()), "html": written and str(written)})
        return
    _print_report(report)
    if written is not None:
        out_console().print(f"report: {written}", markup=False, soft_wrap=True)


@contextmanager
def _busy(quiet: bool, message: str) -> Iterator[None]:
    console = err_console()
    if quiet or not console.is_terminal:
        yield
        return
    with console.status(message):
        yield


# -- printing ------------------------------------------------------------------------------


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _delta(delta: float | None, better: bool | None) -> Text:
    if delta is None:
        return Text("-", style="dim")
    style = "dim" if better is None else "green" if better else "red"
    return Text(f"{delta:+.4g}", style=style)


def _print_report(report: EvaluationReport) -> None:
    console = out_console()
    cand, base = report.candidate, report.baseline
    against = f" vs {base.model_version}" if base is not None else ""
    where = f"split {report.split}" if report.split else "all rows"
    console.print(
        Text(f"{cand.model_version}{against} · {where} · {cand.count:,} rows", style="bold")
    )
    table = Table("metric", "candidate", *(("baseline", "delta") if base else ()))
    for metric, d in report.comparison.overall.items():
        more = (_value(d.baseline), _delta(d.delta, d.better)) if base else ()
        table.add_row(metric, _value(d.candidate), *more)
    console.print(table)
    if cand.slices:
        console.print(_slice_table(report))
    if cand.fairness:
        console.print(_fairness_table(report))
    if report.config.thresholds:
        _print_verdict(report)


def _slice_table(report: EvaluationReport) -> Table:
    metrics = headline_metrics(report)
    base = report.baseline is not None
    table = Table("slice", "rows", *(f"{m}{' (delta)' if base else ''}" for m in metrics))
    for name, sliced in report.candidate.slices.items():
        cells: list[Text | str] = []
        for metric in metrics:
            d = report.comparison.slices[name][metric]
            cell = Text(_value(d.candidate))
            if base:
                cell.append(" (").append(_delta(d.delta, d.better)).append(")")
            cells.append(cell)
        rows = f"{sliced.count:,}" + (" (few)" if sliced.flagged else "")
        table.add_row(Text(name), rows, *cells)
    return table


def _fairness_table(report: EvaluationReport) -> Table:
    base = report.baseline
    table = Table("sensitive feature", "disparity", "candidate", *(("baseline",) if base else ()))
    for feature, result in report.candidate.fairness.items():
        other = None if base is None else base.fairness.get(feature)
        for name in _DISPARITIES:
            more = (_value(None if other is None else getattr(other, name)),) if base else ()
            table.add_row(Text(feature), name, _value(getattr(result, name)), *more)
    return table


def _print_verdict(report: EvaluationReport) -> None:
    console = out_console()
    blessing = report.blessing
    verdict = Text("blessed", style="bold green") if blessing.blessed else None
    verdict = verdict or Text("not blessed", style="bold red")
    console.print(Text.assemble("verdict: ", verdict, f" ({blessing.note})"), soft_wrap=True)
    for reason in blessing.failures:
        console.print(Text(f"  failed: {reason.message}", style="red"), soft_wrap=True)
