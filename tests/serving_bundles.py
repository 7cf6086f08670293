"""Registering small fitted models as versions, for the serving tests that need several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from conveyor.core.materializers import save_artifact
from conveyor.modeling.bundle import ModelBundle, save_bundle
from conveyor.registry import ModelRegistry
from conveyor.store.metadata import NewArtifact
from conveyor.store.workspace import Workspace


def register_model(
    ws: Workspace,
    name: str,
    folder: Path,
    model: Any,
    features: pd.DataFrame,
    *,
    task: str,
    alias: str | None = None,
    preprocessing: Any | None = None,
) -> int:
    """Save ``model`` as a bundle, store it as the output of a recorded run, register it.

    Returns:
        The new version number.
    """
    save_bundle(folder, model, signature=features, task=task, preprocessing=preprocessing)
    handle = ModelBundle(uri="", path=folder, type_name="ModelBundle", sha256="")
    stored, type_name, props = save_artifact(ws.artifacts, handle)
    meta = ws.metadata
    pipeline = meta.register_pipeline(f"train-{folder.name}", {}, folder.name)
    run = meta.create_run(pipeline, {}, {}, "host", 1)
    execution = meta.create_executions(run.id, [("train", "train", {})])["train"]
    artifact = NewArtifact(type_name, stored.uri, stored.sha256, stored.size, props)
    made = meta.succeed_execution(execution, {}, {"model": artifact})
    record = ModelRegistry(ws).register(name, made["model"].id, require_blessing=False, alias=alias)
    return int(record.version)
