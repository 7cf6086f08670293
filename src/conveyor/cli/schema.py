"""``conveyor schema show SCHEMA`` and ``conveyor schema diff A B``.

SCHEMA is a YAML file or a stored Schema artifact (``artifact:12``, ``a12`` or ``12``); the
schema model, its YAML form and the diff live in :mod:`conveyor.data.schema`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from conveyor.cli.artifacts import parse_artifact_id
from conveyor.cli.render import out_console, print_json
from conveyor.cli.state import read_store, settings_from
from conveyor.data.errors import SchemaError
from conveyor.data.schema import SCHEMA_FILE, FeatureSchema, Schema, diff_schemas, load_schema
from conveyor.store.artifact_store import ArtifactStore

__all__ = ["diff_command", "resolve_schema", "show_command"]

_ARTIFACT_ID = re.compile(r"^(artifact:|a)?\d+$")

SchemaArg = Annotated[
    str,
    typer.Argument(
        metavar="SCHEMA", help="A schema YAML file, or a Schema artifact: 12, a12 or artifact:12."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def resolve_schema(ctx: typer.Context, text: str) -> tuple[Schema, str]:
    """Load a schema from a YAML path or an artifact id; returns (schema, where it came from).

    Raises SchemaError for a missing file, an invalid schema or an artifact of another type,
    NotFoundError for an unknown artifact id.

    Example:
        >>> schema, where = resolve_schema(ctx, "a12")  # doctest: +SKIP
    """
    path = Path(text).expanduser()
    if path.exists() or not _ARTIFACT_ID.match(text.strip()):
        if not path.is_file():
            raise SchemaError(f"{text}: no such schema file (or give an artifact id: a12)")
        return load_schema(path), str(path)
    artifact_id = parse_artifact_id(text)
    with read_store(ctx) as store:
        record = store.get_artifact(artifact_id)
    if record.type_name != "Schema":
        raise SchemaError(f"artifact a{artifact_id} is a {record.type_name}, not a Schema")
    artifacts = ArtifactStore.open(settings_from(ctx).artifact_url)
    with artifacts.local_folder(record.uri) as folder:
        return load_schema(folder / SCHEMA_FILE), f"artifact a{artifact_id}"


def _checks(feature: FeatureSchema) -> str:
    parts = []
    if feature.min is not None or feature.max is not None:
        low = "-inf" if feature.min is None else f"{feature.min:g}"
        high = "inf" if feature.max is None else f"{feature.max:g}"
        limit = f" (<= {feature.max_out_of_range_fraction:g} outside)"
        parts.append(f"[{low}, {high}]" + (limit if feature.max_out_of_range_fraction else ""))
    if feature.domain is not None:
        shown = ", ".join(feature.domain[:5]) + (", …" if len(feature.domain) > 5 else "")
        unseen = feature.max_unseen_fraction
        parts.append(f"{len(feature.domain)} values: {shown}")
        if unseen:
            parts.append(f"<= {unseen:g} unseen")
    return "; ".join(parts) or "-"


def _comparators(feature: FeatureSchema) -> str:
    parts = []
    for name in ("drift", "skew"):
        comparator = getattr(feature, name)
        if comparator is not None:
            threshold = "default" if comparator.threshold is None else f"{comparator.threshold:g}"
            parts.append(f"{name}: {comparator.method} {threshold}")
    return ", ".join(parts) or "-"


def _schema_table(schema: Schema) -> Table:
    table = Table("feature", "type", "presence", "range / domain", "drift / skew")
    for name in sorted(schema.features):
        feature = schema.features[name]
        label = Text(name, style="bold") if name == schema.label else Text(name)
        if name == schema.label:
            label.append(" (label)", style="dim")
        presence = "required" if feature.required else "optional"
        if feature.max_missing_fraction:
            presence += f", <= {feature.max_missing_fraction:.1%} missing"
        table.add_row(label, feature.type.value, presence, _checks(feature), _comparators(feature))
    return table


def show_command(
    ctx: typer.Context,
    schema: SchemaArg,
    yaml_output: Annotated[bool, typer.Option("--yaml", help="Print the YAML itself.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Show a schema: one row per feature with its type, presence, range or domain, drift."""
    loaded, where = resolve_schema(ctx, schema)
    if json_output:
        print_json(loaded.model_dump(mode="json"))
        return
    if yaml_output:
        typer.echo(loaded.to_yaml(), nl=False)
        return
    console = out_console()
    new = "new columns: warning" if loaded.allow_new_columns else "new columns: error"
    head = f"schema {where}: {len(loaded.features)} features, label {loaded.label or '-'}"
    console.print(
        Text(head, style="bold"), Text(f"({loaded.source}; {new})", style="dim"), soft_wrap=True
    )
    console.print(_schema_table(loaded))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value) if not isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def diff_command(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(metavar="A", help="The old schema: file or artifact.")],
    new: Annotated[str, typer.Argument(metavar="B", help="The new schema: file or artifact.")],
    json_output: JsonOpt = False,
) -> None:
    """Show what changed from schema A to schema B (features added, removed, changed)."""
    (schema_a, where_a), (schema_b, where_b) = resolve_schema(ctx, old), resolve_schema(ctx, new)
    changes = diff_schemas(schema_a, schema_b)
    if json_output:
        print_json({"old": where_a, "new": where_b, "changes": [c.to_dict() for c in changes]})
        return
    console = out_console()
    if not changes:
        console.print(f"{where_a} and {where_b}: no differences", markup=False, soft_wrap=True)
        return
    console.print(
        Text(f"{where_a} -> {where_b}: {len(changes)} changes", style="bold"), soft_wrap=True
    )
    styles = {"added": "green", "removed": "red", "changed": "yellow"}
    table = Table("feature", "field", "change", "old", "new")
    for change in changes:
        old_value, new_value = change.old, change.new
        if change.field is None:  # a whole feature: its type says enough
            old_value = old_value and old_value.get("type")
            new_value = new_value and new_value.get("type")
        table.add_row(
            change.feature or "(schema)",
            change.field or "-",
            Text(change.change, style=styles[change.change]),
            _value(old_value),
            _value(new_value),
        )
    console.print(table)
