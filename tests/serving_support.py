"""What the serving tests share: a free port and a small registered model bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conveyor.config import Settings, load_settings
from conveyor.modeling.bundle import LoadedBundle, load_bundle, save_bundle
from conveyor.registry import ModelRegistry
from conveyor.registry.recorded_bundle import record_bundle
from conveyor.serving.server_process import free_port
from conveyor.store.workspace import Workspace

__all__ = [
    "free_port",
    "home_with_production",
    "register_production",
    "register_two_versions",
    "store_bundle",
]


def store_bundle(ws: Workspace, folder: Path, seed: int = 0) -> tuple[int, Path]:
    """Fit a one-hot + logistic-regression bundle on columns x, n, city and store it as the
    output of a recorded run; return its artifact id and stored folder."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=200),
            "n": rng.integers(0, 10, 200),
            "city": rng.choice(["Lyon", "Paris", "Nice"], 200),
        }
    )
    y = ((frame["x"] + (frame["city"] == "Paris") + rng.normal(0, 0.3, 200)) > 0.5).astype(int)
    prep = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    ).fit(frame)
    model = LogisticRegression().fit(prep.transform(frame), y)
    save_bundle(folder, model, signature=frame, task="binary", preprocessing=prep)
    recorded = record_bundle(ws, folder, "train")
    return recorded.artifact_id, Path(recorded.uri)


def register_production(ws: Workspace, root: Path) -> Path:
    """A bundle registered as ``census`` under the ``production`` alias; its stored folder."""
    artifact_id, _ = store_bundle(ws, root / "bundle")
    registry = ModelRegistry(ws)
    registry.register("census", artifact_id, require_blessing=False, alias="production")
    return Path(registry.load_bundle_path("census", "production"))


def home_with_production(root: Path) -> Settings:
    """A conveyor home under ``root`` whose registry holds ``census`` at ``production``."""
    settings = load_settings(home=root / "home")
    ws = Workspace.open(settings)
    try:
        register_production(ws, root)
    finally:
        ws.close()
    return settings


def register_two_versions(ws: Workspace, root: Path) -> dict[str, LoadedBundle]:
    """``census`` version 1 at ``production`` and version 2 at ``candidate`` (two different
    fits); each version's bundle as loaded offline, by version number as text."""
    registry = ModelRegistry(ws)
    for seed, alias in ((1, "production"), (2, "candidate")):
        artifact_id, _ = store_bundle(ws, root / f"bundle-{seed}", seed=seed)
        registry.register("census", artifact_id, require_blessing=False, alias=alias)
    return {v: load_bundle(registry.load_bundle_path("census", int(v))) for v in "12"}
