"""``conveyor show ID``: look at an artifact the way people read it.

Statistics and ValidationReport artifacts become a self-contained HTML page in
``<home>/reports/a<ID>-<type>.html`` (written to a temporary name, then renamed), a short
summary is printed with the page's path, and ``--open`` opens it in the default browser.
When the artifact's folder holds a ``report.html`` it is used as is; otherwise the page is
rendered from the artifact's JSON by :mod:`conveyor.data.report`, with the statistics the
lineage leads to: a validation report's input statistics and, when it was checked for drift
against a previous span's Dataset, the statistics computed from that Dataset (overlaid).
Any other artifact is shown as ``conveyor artifacts show`` shows it.
"""

from __future__ import annotations

import json
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table
from rich.text import Text

from conveyor.cli import artifacts as artifacts_cli
from conveyor.cli.artifacts import parse_artifact_id
from conveyor.cli.render import err_console, out_console, print_json, write_page
from conveyor.cli.state import read_store, settings_from
from conveyor.config import Settings
from conveyor.core.materializers import load_folder, materializer_for
from conveyor.data.errors import DataError
from conveyor.data.statistics_model import DatasetStatistics
from conveyor.data.validation_model import ValidationReport
from conveyor.exceptions import MaterializerError
from conveyor.store.artifact_store import MARKER_NAME, ArtifactStore
from conveyor.store.metadata.records import ArtifactRecord, EventKind
from conveyor.store.metadata.store import MetadataStore

__all__ = ["REPORT_TYPES", "show_command"]

REPORT_TYPES = ("Statistics", "ValidationReport")
_HOME_FIX = "make the home's reports folder writable, or pick another --home"
REPORT_FILE = "report.html"
_MAX_EXECUTIONS = 20  # lineage hops looked at when searching for related statistics

ModelT = TypeVar("ModelT", bound=BaseModel)


def _load(artifacts: ArtifactStore, record: ArtifactRecord, cls: type[ModelT]) -> ModelT:
    """Load an artifact as ``cls``: through its materializer, else from its JSON payload."""
    with artifacts.local_folder(record.uri) as folder:
        try:
            loaded: ModelT = load_folder(materializer_for(cls), folder, cls, record.type_name)
            return loaded
        except MaterializerError:
            pass  # no materializer registered for cls (yet): read the JSON ourselves
        for path in sorted(folder.rglob("*.json")):
            if path.name == MARKER_NAME:
                continue
            try:
                return cls.model_validate_json(path.read_bytes())
            except (ValidationError, ValueError):
                continue
    raise DataError(f"artifact a{record.id} ({record.type_name}) holds no readable JSON payload")


def _stored_page(artifacts: ArtifactStore, record: ArtifactRecord) -> str | None:
    with artifacts.local_folder(record.uri) as folder:
        page = folder / REPORT_FILE
        return page.read_text(encoding="utf-8") if page.is_file() else None


def _executions(store: MetadataStore, artifact_id: int, kind: EventKind) -> Iterator[int]:
    events = [ev for ev in store.events_for_artifact(artifact_id) if ev.kind == kind]
    return iter(dict.fromkeys(ev.execution_id for ev in events[:_MAX_EXECUTIONS]))


def _statistics_made_from(store: MetadataStore, dataset_id: int) -> ArtifactRecord | None:
    """The Statistics artifact some execution computed from a Dataset artifact."""
    for execution_id in _executions(store, dataset_id, EventKind.INPUT):
        for output in store.execution_outputs(execution_id).values():
            if output.type_name == "Statistics":
                return output
    return None


def related_statistics(
    store: MetadataStore, record: ArtifactRecord
) -> tuple[ArtifactRecord | None, ArtifactRecord | None]:
    """(statistics, previous span's statistics) of a report artifact, found through lineage.

    A ValidationReport's producer has the statistics as input; a Statistics artifact is its
    own. The previous span's statistics are those computed from the Dataset a validation
    step took as ``previous`` (the producer's, or for Statistics, a consumer's).
    """
    is_stats = record.type_name == "Statistics"
    statistics = record if is_stats else None
    kind = EventKind.INPUT if is_stats else EventKind.OUTPUT
    for execution_id in _executions(store, record.id, kind):
        inputs = store.execution_inputs(execution_id)
        if statistics is None:
            statistics = next((a for a in inputs.values() if a.type_name == "Statistics"), None)
        previous = inputs.get("previous")
        if previous is not None and previous.type_name == "Dataset":
            previous_stats = _statistics_made_from(store, previous.id)
            if previous_stats is not None and previous_stats.id != record.id:
                return statistics, previous_stats
    return statistics, None


def _render(
    store: MetadataStore, artifacts: ArtifactStore, record: ArtifactRecord
) -> tuple[str, DatasetStatistics | ValidationReport]:
    """The HTML page of a report artifact and the object it shows."""
    from conveyor.data.report import render_statistics_html, render_validation_html

    stats_record, previous_record = related_statistics(store, record)
    previous = _load(artifacts, previous_record, DatasetStatistics) if previous_record else None
    identity = f"artifact a{record.id} ({record.type_name}, sha256 {record.sha256[:12]})"
    if record.type_name == "Statistics":
        stats = _load(artifacts, record, DatasetStatistics)
        page = _stored_page(artifacts, record)
        return page or render_statistics_html(stats, previous=previous, identity=identity), stats
    report = _load(artifacts, record, ValidationReport)
    statistics = _load(artifacts, stats_record, DatasetStatistics) if stats_record else None
    page = _stored_page(artifacts, record) or render_validation_html(
        report, statistics=statistics, previous=previous, identity=identity
    )
    return page, report


def _print_statistics(stats: DatasetStatistics) -> None:
    console = out_console()
    table = Table("split", "rows", "numeric", "categorical", "label")
    for name, split in stats.splits.items():
        kinds = [f.kind.value for f in split.features.values()]
        label = "-"
        if split.label is not None and split.label.distribution:
            total = sum(split.label.distribution.values()) or 1
            label = ", ".join(f"{k} {v / total:.1%}" for k, v in split.label.distribution.items())
        counts = (str(kinds.count("numeric")), str(kinds.count("categorical")))
        table.add_row(name, f"{split.num_rows:,}", *counts, label)
    console.print(table)


def _print_validation(report: ValidationReport) -> None:
    console = out_console()
    verdict = Text("PASSED", style="bold green") if report.ok else Text("FAILED", style="bold red")
    console.print(verdict)
    console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    for title, result in (("drift", report.drift), ("skew", report.skew)):
        if result is None:
            continue
        columns = result.get("columns") or {}
        entries = list(columns.values() if isinstance(columns, dict) else columns)
        drifted = [
            str(c.get("column")) for c in entries if isinstance(c, dict) and c.get("drifted")
        ]
        line = f"{title}: {len(drifted)} of {len(entries)} features drifted"
        console.print(f"{line}: {', '.join(drifted) or 'none'}", markup=False, soft_wrap=True)


def show_command(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="Artifact id: 12, a12 or artifact:12.")],
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML report in the default web browser.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """Show an artifact: Statistics and ValidationReport as an HTML report, others as text."""
    artifact_id = parse_artifact_id(artifact)
    settings = settings_from(ctx)
    with read_store(ctx) as store:
        record = store.get_artifact(artifact_id)
        if record.type_name not in REPORT_TYPES:
            shown = None
        else:
            with err_console().status(f"rendering the report of artifact a{record.id}..."):
                shown = _render(store, ArtifactStore.open(settings.artifact_url), record)
    if shown is None and _stored_report(settings, record, json_output, open_browser):
        return
    if shown is None:
        artifacts_cli.show_command(ctx, artifact, json_output=json_output)
        if open_browser:
            err_console().print(f"--open: no HTML report for {record.type_name} artifacts")
        return
    page, obj = shown
    name = f"a{record.id}-{record.type_name.lower()}.html"
    path = write_page(settings.home / "reports" / name, page, fix=_HOME_FIX)
    _report_back(record, obj, path, json_output)
    if open_browser and not webbrowser.open(path.as_uri()):
        err_console().print(f"no web browser found: open {path} yourself", style="yellow")


def _stored_report(
    settings: Settings, record: ArtifactRecord, as_json: bool, open_browser: bool
) -> bool:
    """Any other artifact whose payload holds a ``report.html`` (an Evaluation, say): copy the
    page to the reports folder, print the headline figures and the path. False if none."""
    with ArtifactStore.open(settings.artifact_url).local_folder(record.uri) as folder:
        page_file = folder / REPORT_FILE
        if not page_file.is_file():
            return False
        page = page_file.read_text(encoding="utf-8")
        data_file = folder / "evaluation.json"
        data = json.loads(data_file.read_text(encoding="utf-8")) if data_file.is_file() else {}
    name = f"a{record.id}-{record.type_name.lower()}.html"
    path = write_page(settings.home / "reports" / name, page, fix=_HOME_FIX)
    if as_json:
        print_json({"artifact": record.id, "type": record.type_name, "report": str(path)})
    else:
        console = out_console()
        console.print(Text(f"artifact a{record.id} · {record.type_name}", style="bold"))
        _print_comparison(data.get("comparison", {}).get("overall", {}))
        console.print(f"report: {path}", markup=False, soft_wrap=True)
    if open_browser and not webbrowser.open(path.as_uri()):
        err_console().print(f"no web browser found: open {path} yourself", style="yellow")
    return True


def _print_comparison(overall: dict[str, Any]) -> None:
    """Candidate vs baseline, one row per metric (an Evaluation's headline)."""
    if not overall:
        return
    table = Table("metric", "candidate", "baseline", "delta", box=None, pad_edge=False)
    for metric, row in overall.items():
        cells = [row.get("candidate"), row.get("baseline"), row.get("delta")]
        text = ["-" if v is None or isinstance(v, str) else f"{v:.4f}" for v in cells]
        style = {True: "green", False: "red"}.get(row.get("better"), "")
        table.add_row(metric, text[0], text[1], Text(text[2], style=style))
    out_console().print(table)


def _report_back(
    record: ArtifactRecord, obj: DatasetStatistics | ValidationReport, path: Path, as_json: bool
) -> None:
    if as_json:
        data = {"artifact": record.id, "type": record.type_name, "report": str(path)}
        if isinstance(obj, ValidationReport):
            data |= {"ok": obj.ok, "errors": len(obj.errors), "warnings": len(obj.warnings)}
        print_json(data)
        return
    console = out_console()
    what = f"artifact a{record.id} · {record.type_name}"
    if isinstance(obj, DatasetStatistics):
        span = f" span {obj.span}" if obj.span is not None else ""
        console.print(Text(f"{what} · {obj.dataset or 'dataset'}{span}", style="bold"))
        _print_statistics(obj)
    else:
        console.print(Text(what, style="bold"))
        _print_validation(obj)
    console.print(f"report: {path}", markup=False, soft_wrap=True)
