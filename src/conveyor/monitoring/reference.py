"""What a model version is compared with: its training data, schema and reference predictions.

Found through the registry and lineage, never configured by hand::

    registry: model:version ──► bundle artifact ──(upstream lineage)──► train step
        train step's "data" input ──► the training Dataset (its ``split=train`` rows)
        nearest Schema upstream   ──► per-feature drift method/threshold, missing limits
        nearest Statistics upstream (recorded for the reader)
    bundle artifact ──(downstream)──► an evaluate step's "data" input and "split"
        (else the training Dataset's ``eval`` split) ──► the version's predictions on it

Drift is computed exactly as data validation computes it (:func:`conveyor.data.validation.
compare_distributions`): the same features (numbers, booleans, features with a domain or a
comparator; never identifiers), the same kind rule (a domain, strings and booleans are
categorical; other columns follow Evidently's type rule, applied once to the training
column so a feature keeps its kind across windows), and the schema's comparator. Serving
inputs against training data is TFDV's *skew*, so the feature's ``skew`` comparator is used
when the schema sets one, else its ``drift`` comparator, else ``auto`` with the method's
default threshold.

Anything that cannot be reached (no lineage, a deleted artifact, a corrupt bundle) becomes a
note in :attr:`VersionReference.notes`; building a reference never fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from conveyor.data.drift_samples import DriftSample, Kind, infer_kind, make_sample
from conveyor.data.schema import FeatureSchema, Schema
from conveyor.data.statistics_model import FeatureType
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.prediction_rows import InputColumn, input_column
from conveyor.store.lineage import downstream, upstream
from conveyor.store.metadata.records import ArtifactRecord, ExecutionRecord
from conveyor.store.workspace import Workspace

__all__ = ["FeatureReference", "VersionReference", "find_reference", "prediction_sample"]

_PLAIN_TYPES = (FeatureType.INT, FeatureType.FLOAT, FeatureType.BOOL)
_READ_ERRORS = (ConveyorError, OSError, ValueError, pa.ArrowException)


@dataclass(frozen=True)
class FeatureReference:
    """One input's training values and how drift is judged for it."""

    name: str
    kind: Kind
    sample: DriftSample
    method: str = "auto"
    threshold: float | None = None
    source: str = "default"


@dataclass
class VersionReference:
    """What the windows of one model version are compared with.

    Attributes:
        model: The model name.
        version: The version number (None when the log did not name one).
        inputs: The signature's inputs, typed for extraction from the log.
        task: ``binary``, ``multiclass``, ``regression`` (None when the bundle is unknown).
        classes: Class labels in probability-column order.
        features: Drift references per comparable input (empty without training data).
        missing_limits: The schema's ``max_missing_fraction`` per input.
        prediction: The reference predictions (None: use the first complete window).
        notes: Why something is missing, by metric name (``drift``, ``prediction_drift``).
        found: Artifact ids and descriptions of what was found (for the result).
    """

    model: str
    version: int | None
    inputs: list[InputColumn] = field(default_factory=list)
    task: str | None = None
    classes: tuple[Any, ...] | None = None
    features: dict[str, FeatureReference] = field(default_factory=dict)
    missing_limits: dict[str, float] = field(default_factory=dict)
    prediction: DriftSample | None = None
    notes: dict[str, str] = field(default_factory=dict)
    found: dict[str, Any] = field(default_factory=dict)


def prediction_sample(task: str | None, values: Any) -> DriftSample:
    """The predictions drift compares: the positive class's probability (binary), the
    predicted label as text (multiclass) or the predicted value (regression)."""
    if task == "multiclass":
        array = values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True)
        return make_sample(array.cast(pa.string()), "categorical", column="prediction")
    return make_sample(np.asarray(values, dtype=float), "numeric", column="prediction")


def find_reference(workspace: Workspace, model: str, version_text: str) -> VersionReference:
    """The reference of ``model`` version ``version_text`` (as logged); see the module doc."""
    version = int(version_text) if version_text.isdigit() else None
    ref = VersionReference(model, version)
    if version is None:
        why = f"the prediction log names no version number ({version_text!r})"
        ref.notes.update(drift=why, prediction_drift=why)
        return ref
    from conveyor.registry import ModelRegistry

    try:
        record = ModelRegistry(workspace).get(model, version)
    except ConveyorError as exc:
        why = f"{model}:{version} is not in the registry ({exc})"
        ref.notes.update(drift=why, prediction_drift=why)
        return ref
    ref.found["bundle"] = f"a{record.artifact_id}"
    with _local(workspace, record.artifact_uri, ref, "bundle") as folder:
        if folder is not None:
            _read_signature(folder, ref)
    training, schema = _training_inputs(workspace, record.artifact_id, ref)
    if training is not None:
        _load_features(workspace, training, schema, ref)
    _load_prediction_reference(workspace, record.artifact_id, record.artifact_uri, training, ref)
    return ref


@contextlib.contextmanager
def _local(
    workspace: Workspace, uri: str, ref: VersionReference, what: str
) -> Iterator[Path | None]:
    """A local folder for ``uri``, or None (with a note) when it cannot be reached.

    Only reaching the folder is guarded: errors of the caller's block propagate.
    """
    stack = contextlib.ExitStack()
    folder: Path | None = None
    try:
        folder = stack.enter_context(workspace.artifacts.local_folder(uri))
    except ConveyorError as exc:
        ref.notes.setdefault(what, f"{what} {uri} cannot be read: {exc}")
    with stack:
        yield folder


def _read_signature(folder: Path, ref: VersionReference) -> None:
    from conveyor.modeling.bundle_manifest import read_manifest

    try:
        signature = read_manifest(folder).signature
    except ConveyorError as exc:
        ref.notes["bundle"] = f"the bundle's manifest cannot be read: {exc}"
        return
    ref.inputs = [input_column(spec.name, spec.type) for spec in signature.inputs]
    ref.task, ref.classes = signature.task, signature.classes


def _training_inputs(
    workspace: Workspace, bundle_id: int, ref: VersionReference
) -> tuple[ArtifactRecord | None, Schema | None]:
    """The training Dataset and the Schema upstream of the bundle (with notes when absent)."""
    graph = upstream(workspace.metadata, ("artifact", bundle_id))
    producers = graph.producers(f"artifact:{bundle_id}")
    inputs = [
        (graph.edge_names[(src, key)], src) for key in producers for src in graph.producers(key)
    ]
    datasets = []
    for name, key in inputs:
        record = graph.nodes[key].record
        if isinstance(record, ArtifactRecord) and record.type_name == "Dataset":
            datasets.append((name, record))
    datasets.sort(key=lambda item: item[0] != "data")  # the train step's "data" first
    found = [n.record for n in graph.nodes.values() if isinstance(n.record, ArtifactRecord)]
    schema_record = next((a for a in found if a.type_name == "Schema"), None)
    statistics = next((a for a in found if a.type_name == "Statistics"), None)
    if statistics is not None:
        ref.found["statistics"] = f"a{statistics.id}"
    if not datasets:
        ref.notes["drift"] = (
            f"{ref.model}:{ref.version} has no reachable training data: its bundle "
            f"(a{bundle_id}) was not made by a recorded step with a Dataset input"
        )
        return None, None
    training = datasets[0][1]
    ref.found["training_data"] = f"a{training.id}"
    schema = _load_schema(workspace, schema_record, ref) if schema_record else None
    return training, schema


def _load_schema(
    workspace: Workspace, record: ArtifactRecord, ref: VersionReference
) -> Schema | None:
    from conveyor.data.schema import SCHEMA_FILE, load_schema

    with _local(workspace, record.uri, ref, "schema") as folder:
        if folder is None:
            return None
        try:
            schema = load_schema(folder / SCHEMA_FILE)
        except ConveyorError as exc:
            ref.notes["schema"] = f"schema a{record.id} cannot be read: {exc}"
            return None
    ref.found["schema"] = f"a{record.id}"
    ref.missing_limits = {n: f.max_missing_fraction for n, f in schema.features.items()}
    return schema


def _read_split(folder: Path, split: str, columns: list[str] | None) -> pa.Table:
    """One split of a Dataset folder (the whole folder when it has no splits)."""
    import pyarrow.dataset as pads

    from conveyor.data.validation import split_files

    files = split_files(folder, split)
    dataset = pads.dataset([str(p) for p in files], format="parquet")
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    return dataset.to_table(columns=wanted)


def _comparable(name: str, schema: Schema | None) -> FeatureSchema | bool | None:
    """The schema entry of a feature drift compares, True without a schema, False to skip."""
    if schema is None:
        return True
    feature = schema.features.get(name)
    if feature is None or feature.identifier or name == schema.label:
        return False
    plain = feature.type in _PLAIN_TYPES
    if feature.drift is not None or feature.skew is not None or plain or feature.domain:
        return feature
    return False


def _feature_reference(name: str, column: pa.ChunkedArray, entry: Any) -> FeatureReference:
    feature = entry if isinstance(entry, FeatureSchema) else None
    categorical = feature is not None and (
        feature.domain is not None or feature.type in (FeatureType.STRING, FeatureType.BOOL)
    )
    kind: Kind = (
        "categorical" if categorical else infer_kind(column, column.slice(0, 0), column=name)
    )
    comparator, source = None, "default"
    if feature is not None and feature.skew is not None:
        comparator, source = feature.skew, "schema skew"
    elif feature is not None and feature.drift is not None:
        comparator, source = feature.drift, "schema drift"
    return FeatureReference(
        name=name,
        kind=kind,
        sample=make_sample(column, kind, column=name, side="reference"),
        method=comparator.method if comparator is not None else "auto",
        threshold=comparator.threshold if comparator is not None else None,
        source=source,
    )


def _load_features(
    workspace: Workspace, training: ArtifactRecord, schema: Schema | None, ref: VersionReference
) -> None:
    names = [c.name for c in ref.inputs]
    with _local(workspace, training.uri, ref, "drift") as folder:
        if folder is None:
            return
        try:
            table = _read_split(folder, "train", names or None)
        except _READ_ERRORS as exc:
            ref.notes["drift"] = f"training data a{training.id} cannot be read: {exc}"
            return
    ref.found["training_rows"] = table.num_rows
    for name in names or table.column_names:
        entry = _comparable(name, schema)
        if entry is False or name not in table.column_names:
            continue
        try:
            ref.features[name] = _feature_reference(name, table.column(name), entry)
        except ConveyorError as exc:
            ref.notes[f"drift:{name}"] = f"not compared: {exc}"
    if not ref.features:
        ref.notes["drift"] = f"training data a{training.id} has none of the inputs {names}"


def _evaluation_data(
    workspace: Workspace, bundle_id: int, training: ArtifactRecord | None
) -> tuple[ArtifactRecord, str] | None:
    """The Dataset and split an evaluate step scored the bundle on, else training's eval."""
    graph = downstream(workspace.metadata, ("artifact", bundle_id), max_depth=1)
    for node in graph.nodes.values():
        record = node.record
        if isinstance(record, ExecutionRecord) and "evaluate" in record.component_name:
            data = workspace.metadata.execution_inputs(record.id).get("data")
            if data is not None and data.type_name == "Dataset":
                return data, str(record.params.get("split") or "eval")
    return (training, "eval") if training is not None else None


def _load_prediction_reference(
    workspace: Workspace,
    bundle_id: int,
    bundle_uri: str,
    training: ArtifactRecord | None,
    ref: VersionReference,
) -> None:
    target = _evaluation_data(workspace, bundle_id, training)
    fallback = "; the version's first complete window is the reference"
    if target is None or ref.task is None:
        ref.notes["prediction_drift"] = "no evaluation data reachable" + fallback
        return
    data, split = target
    try:
        with _local(workspace, data.uri, ref, "evaluation") as folder:
            frame = None if folder is None else _read_split(folder, split, None).to_pandas()
        with _local(workspace, bundle_uri, ref, "bundle") as bundle_folder:
            values = (
                None
                if bundle_folder is None or frame is None
                else _predict(bundle_folder, ref.task, frame)
            )
        if values is not None and len(values):
            ref.prediction = prediction_sample(ref.task, values)
    except _READ_ERRORS as exc:
        ref.notes["prediction_drift"] = f"cannot score evaluation data a{data.id}: {exc}" + fallback
        return
    if ref.prediction is None:
        why = "is empty" if values is not None else "or the bundle cannot be read"
        ref.notes["prediction_drift"] = (
            f"evaluation data a{data.id} split {split!r} {why}" + fallback
        )
        return
    ref.found["prediction_reference"] = (
        f"predictions on a{data.id} split {split} ({ref.prediction.n} rows)"
    )


def _predict(folder: Path, task: str, frame: Any) -> Any:
    from conveyor.modeling.bundle import load_bundle

    bundle = load_bundle(folder)
    if task == "binary":
        return bundle.predict_proba(frame, allow_extra=True)[:, 1]
    return bundle.predict(frame, allow_extra=True)
