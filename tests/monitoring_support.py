"""What the monitoring tests share: a really trained and registered model, and real logs.

:func:`train_census` runs a tiny but complete training pipeline (data -> statistics -> schema
-> transform -> train -> evaluate -> register) in a fresh workspace, so the registered
version has lineage to its training Dataset, Schema and Statistics. :func:`census_rows` draws
serving traffic from the same distribution (optionally shifted); :func:`write_log` answers it
with the real bundle and records it through :class:`PredictionLog`, one request per row or
in batches, at chosen times.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import conveyor
from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.modeling.bundle import LoadedBundle, load_bundle
from conveyor.registry import ModelRegistry
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord
from conveyor.store.metadata.records import RunStatus
from conveyor.store.workspace import Workspace

MODEL = "census"
T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # a Monday, midnight: aligned to any window

# The pipeline file gets census_rows' own source (see train_census): worker processes import
# the file alone, without the tests folder on their path.
PIPELINE = """
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components import evaluate, infer_schema, register, statistics, train, transform

{census_rows}

@component
def make_data(n: int = 4000, seed: int = 0) -> Dataset:
    frame, labels = census_rows(n, seed)
    frame["y"] = labels
    root = Path(tempfile.mkdtemp()) / "data"
    cut = int(n * 0.75)
    for name, part in (("train", frame.iloc[:cut]), ("eval", frame.iloc[cut:])):
        (root / f"split={name}").mkdir(parents=True)
        part.to_parquet(root / f"split={name}" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@pipeline
def training(seed: int = 0) -> None:
    data = make_data(seed=seed)
    stats = statistics(data, label="y")
    schema = infer_schema(stats, label="y", drift_threshold=0.25)
    prep = transform(data, schema, label="y")
    logreg = {"flavour": "sklearn", "class": "sklearn.linear_model.LogisticRegression"}
    model = train(data, label="y", preprocessing=prep, estimator=logreg)
    checked = evaluate(model, data, label="y", model_name="census", slices=["sex"])
    register(model, checked.blessing, name="census", alias="production",
             require_blessing=False, evaluation=checked.evaluation)
"""


def census_rows(n: int, seed: int, age_shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` rows of age, hours, sex, city and their label (income above a line)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": (rng.normal(40, 10, n) + age_shift).round(1),
            "hours": rng.integers(10, 70, n),
            "sex": rng.choice(["Female", "Male"], n, p=[0.4, 0.6]),
            "city": rng.choice(["Lyon", "Nice", "Paris"], n),
        }
    )
    score = (frame["age"] - 40) / 10 + (frame["sex"] == "Male") * 0.8 + rng.normal(0, 0.7, n)
    return frame, (score > 0.4).to_numpy(dtype=int)


@dataclass
class Trained:
    """A workspace with one trained, registered version of ``census``."""

    workspace: Workspace
    bundle: LoadedBundle
    home: Path


def train_census(root: Path) -> Trained:
    """Run the training pipeline in a workspace under ``root``."""
    source = PIPELINE.replace("{census_rows}", inspect.getsource(census_rows))
    (root / "training.py").write_text(source)
    pipeline = load_pipeline(f"{root / 'training.py'}:training", reload=True)
    home = root / "home"
    result = conveyor.run(pipeline, home=home, max_workers=2)
    assert result.status == RunStatus.SUCCEEDED, result.error
    workspace = Workspace.open(load_settings(home=home), recover=False)
    path = ModelRegistry(workspace).load_bundle_path(MODEL, "production")
    return Trained(workspace, load_bundle(path), home)


def write_log(
    root: str | Path,
    bundle: LoadedBundle,
    frame: pd.DataFrame,
    *,
    start: dt.datetime = T0,
    step: dt.timedelta = dt.timedelta(seconds=1),
    version: str = "1",
    route: str = "production",
    batch: int = 1,
    prefix: str = "r",
    model: str = MODEL,
) -> list[str]:
    """Answer ``frame`` with ``bundle`` and log it, ``batch`` rows per request, request ``i``
    at ``start + i * step``; returns the request ids."""
    labels = bundle.predict(frame)
    outputs: dict[str, np.ndarray] = {"label": labels}
    if bundle.signature.task != "regression":
        outputs["probabilities"] = bundle.predict_proba(frame)
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    ids = []
    with PredictionLog(f"{root}/predictions", durable=False, flush_interval_s=60) as log:
        for i, begin in enumerate(range(0, len(frame), batch)):
            end = begin + batch
            request = f"{prefix}{i}"
            ids.append(request)
            log.record(
                PredictionRecord(
                    request_id=request,
                    model=model,
                    version=version,
                    route=route,
                    inputs={c: v[begin:end] for c, v in columns.items()},
                    outputs={k: v[begin:end] for k, v in outputs.items()},
                    latency_ms=1.0 + i % 10,
                    time=start + i * step,
                    protocol="v2",
                )
            )
    return ids


def write_feedback(
    root: str | Path,
    ids: Sequence[str],
    labels: Sequence[object],
    *,
    times: Sequence[dt.datetime],
) -> None:
    """Store ``labels[i]`` as the ground truth of ``ids[i]`` received at ``times[i]``."""
    FeedbackStore(root, durable=False).add_many(
        [(request, label, when) for request, label, when in zip(ids, labels, times, strict=True)]
    )
