"""``conveyor data list``: datasets, their versions, spans, row counts and the runs that used them.

A *dataset* is every Dataset artifact whose ``dataset`` property has that name (the ``ingest``
component sets it). A *version* is one content fingerprint: ingesting unchanged data again makes
a new artifact record with the same sha256, so the records are grouped by sha256 and their ids
listed together. "Used by" lists the runs whose executions consumed any of a version's records.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.artifacts import artifact_usage
from conveyor.cli.render import out_console, print_json, timestamp
from conveyor.cli.state import read_store
from conveyor.exceptions import NotFoundError, did_you_mean
from conveyor.store.metadata.records import ArtifactRecord
from conveyor.store.metadata.store import MetadataStore

__all__ = ["dataset_versions", "list_command"]

_MAX_ARTIFACTS = 100_000


def _version(store: MetadataStore, records: list[ArtifactRecord]) -> dict[str, Any]:
    """One version (records sharing a sha256, oldest first) as a JSON-able dict."""
    newest = records[-1]
    props = newest.properties
    produced: set[int] = set()
    used: set[int] = set()
    for record in records:
        usage = artifact_usage(store, record.id)
        produced.update(entry["run_id"] for entry in usage["producers"])
        used.update(entry["run_id"] for entry in usage["consumers"])
    return {
        "sha256": newest.sha256,
        "artifact_ids": [r.id for r in records],
        "created_at": records[0].created_at,
        "last_ingested_at": newest.created_at,
        "spans": props.get("spans", []),
        "num_rows": props.get("num_rows"),
        "rows": props.get("rows", {}),
        "source": props.get("source"),
        "produced_by_runs": sorted(produced),
        "used_by_runs": sorted(used),
    }


def dataset_versions(store: MetadataStore, name: str | None = None) -> list[dict[str, Any]]:
    """Every dataset (or the one named) with its versions, newest version first.

    Timestamps are ``datetime`` objects (``print_json`` writes them as ISO-8601).

    Raises:
        NotFoundError: ``name`` is given and no Dataset artifact has that name.

    Example:
        >>> dataset_versions(store, "census")[0]["versions"][0]["rows"]  # doctest: +SKIP
        {'train': 802, 'eval': 198}
    """
    records = store.list_artifacts(type_name="Dataset", limit=_MAX_ARTIFACTS)
    grouped: dict[str, dict[str, list[ArtifactRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in sorted(records, key=lambda r: r.id):
        dataset = record.properties.get("dataset")
        if isinstance(dataset, str) and dataset:
            grouped[dataset][record.sha256].append(record)
    if name is not None and name not in grouped:
        raise NotFoundError(f"no dataset named {name!r}" + did_you_mean(name, grouped))
    result = []
    for dataset in sorted(grouped) if name is None else [name]:
        versions = [_version(store, recs) for recs in grouped[dataset].values()]
        versions.sort(key=lambda v: v["artifact_ids"][-1], reverse=True)
        result.append({"dataset": dataset, "versions": versions})
    return result


def _spans_text(spans: list[dict[str, Any]], limit: int = 3) -> str:
    labels = [str(s.get("label", s.get("number", "?"))) for s in spans]
    if len(labels) > limit:
        labels = [*labels[: limit - 1], "…", labels[-1]]
    return ", ".join(labels) or "-"


def _runs_text(runs: list[int], limit: int = 6) -> str:
    shown = [f"r{r}" for r in runs[-limit:]]
    return ("…, " if len(runs) > limit else "") + ", ".join(shown) if runs else "-"


def _render(datasets: list[dict[str, Any]]) -> None:
    console = out_console()
    table = Table(
        "dataset", "version", "artifacts", "created", "spans", "rows", "made by", "used by"
    )
    for entry in datasets:
        for index, version in enumerate(entry["versions"]):
            rows = " · ".join(f"{k} {v}" for k, v in version["rows"].items()) or "-"
            table.add_row(
                entry["dataset"] if index == 0 else "",
                version["sha256"][:12],
                ", ".join(f"a{i}" for i in version["artifact_ids"]),
                timestamp(version["created_at"]),
                _spans_text(version["spans"]),
                rows,
                _runs_text(version["produced_by_runs"]),
                _runs_text(version["used_by_runs"]),
            )
    console.print(table)


def list_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Only this dataset (its versions, newest first).", show_default=False
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output.")
    ] = False,
) -> None:
    """List datasets: versions (by content), spans, rows per split, and the runs that used them."""
    with read_store(ctx) as store:
        datasets = dataset_versions(store, name)
    if json_output:
        print_json(datasets)
        return
    if not datasets:
        out_console().print("no datasets (run a pipeline with the ingest component)")
        return
    _render(datasets)
