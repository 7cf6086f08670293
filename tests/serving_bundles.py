"""Registering small fitted models as versions, for the serving tests that need several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from conveyor.modeling.bundle import save_bundle
from conveyor.registry import ModelRegistry
from conveyor.registry.recorded_bundle import record_bundle
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
    recorded = record_bundle(ws, folder, f"train-{folder.name}")
    record = ModelRegistry(ws).register(
        name, recorded.artifact_id, require_blessing=False, alias=alias
    )
    return int(record.version)
