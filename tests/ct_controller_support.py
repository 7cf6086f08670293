"""What the controller tests share: small real pipelines, a policy, and simulated traffic.

``PIPELINES`` is a pipeline file with three pipelines the controller runs for real:

- ``census`` trains a one-hot + logistic-regression bundle on census-like rows (the rows of
  :func:`monitoring_support.census_rows`), blesses it or not (``blessed``), and registers it
  as ``census`` *without* an alias -- how a pipeline run by the controller should register
  (``alias`` makes it move one itself). ``flip=True`` trains on inverted labels: a blessed but
  bad candidate.
- ``chores`` is one quick step (``seconds`` of sleep), for scheduling tests.
- ``slow`` sleeps ``seconds`` in a step after writing that step's pid to ``pid_file``.

:func:`serve_traffic` answers rows with a registered version's real bundle, logs them
through :class:`PredictionLog` with their ground truth through :class:`FeedbackStore`, as a
server with delayed feedback would, only faster.
"""

from __future__ import annotations

import datetime as dt
import inspect
import textwrap
from pathlib import Path

import numpy as np

from conveyor.ct import load_policy
from conveyor.ct.policy_model import Policy
from conveyor.modeling.bundle import load_bundle
from conveyor.registry import ModelRegistry
from conveyor.store.workspace import Workspace
from monitoring_support import census_rows, write_feedback, write_log

PIPELINES = """
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor import Dataset, component, pipeline
from conveyor.components import register
from conveyor.modeling.bundle import ModelBundle, save_bundle

{census_rows}


@component
def make_data(n: int = 1500, seed: int = 0) -> Dataset:
    frame, labels = census_rows(n, seed)
    frame["y"] = labels
    root = Path(tempfile.mkdtemp()) / "data"
    (root / "split=train").mkdir(parents=True)
    frame.to_parquet(root / "split=train" / "part-0.parquet", index=False)
    return Dataset.from_path(root)


@component
def fit(data: Dataset, flip: bool = False) -> ModelBundle:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    frame = data.to_pandas(split="train")
    labels = frame.pop("y").to_numpy()
    if flip:
        labels = 1 - labels
    prep = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["sex", "city"])],
        remainder="passthrough",
    ).fit(frame)
    model = LogisticRegression(max_iter=500).fit(prep.transform(frame), labels)
    folder = Path(tempfile.mkdtemp()) / "bundle"
    save_bundle(folder, model, signature=frame, task="binary", preprocessing=prep)
    return ModelBundle.from_path(folder)


@component
def verdict(blessed: bool = True) -> dict:
    reasons = [] if blessed else ["accuracy 0.61 < production 0.83 on the evaluation split"]
    return {"blessed": blessed, "reasons": reasons}


@pipeline
def census(seed: int = 0, blessed: bool = True, flip: bool = False, alias: str = "") -> None:
    model = fit(make_data(seed=seed), flip=flip)
    register(model, verdict(blessed=blessed), name="census", alias=alias or None)


@component
def chore(seconds: float = 0.0, tag: str = "") -> str:
    time.sleep(seconds)
    return tag


@pipeline
def chores(seconds: float = 0.0, tag: str = "") -> None:
    chore(seconds=seconds, tag=tag)


@component
def nap(seconds: float = 60.0, pid_file: str = "") -> str:
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "awake"


@pipeline
def slow(seconds: float = 60.0, pid_file: str = "") -> None:
    nap(seconds=seconds, pid_file=pid_file)
"""


def policy_text(
    *,
    debounce: str = "0s",
    min_interval: str = "0s",
    window: int = 100,
    promote_after: int = 3,
    tolerance: float = 0.02,
    extra: str = "",
) -> str:
    """A policy over the three pipelines of ``PIPELINES`` (file ``pipelines.py``)."""
    return (
        textwrap.dedent(
            f"""\
        [monitoring]
        window = {window}
        label_delay = "0s"
        min_feedback_coverage = 0.5

        [pipelines.census]
        file = "pipelines.py"
        function = "census"
        model = "census"

        [pipelines.chores]
        file = "pipelines.py"
        function = "chores"

        [pipelines.slow]
        file = "pipelines.py"
        function = "slow"

        [controller]
        poll = "1s"
        debounce = "{debounce}"
        min_interval = "{min_interval}"
        canary_percent = 10
        promote_after = {promote_after}
        metric = "accuracy"
        tolerance = {tolerance}
        """
        )
        + extra
    )


def write_project(folder: Path, text: str | None = None) -> Path:
    """Write ``pipelines.py`` and ``policy.toml`` into ``folder``; return the policy's path."""
    folder.mkdir(parents=True, exist_ok=True)
    source = PIPELINES.replace("{census_rows}", inspect.getsource(census_rows))
    (folder / "pipelines.py").write_text(source)
    policy = folder / "policy.toml"
    policy.write_text(policy_text() if text is None else text)
    return policy


def project_policy(folder: Path, text: str | None = None) -> Policy:
    """:func:`write_project`, then load its policy."""
    return load_policy(write_project(folder, text))


def serve_traffic(
    workspace: Workspace,
    version: int,
    *,
    rows: int,
    start: dt.datetime,
    seed: int,
    prefix: str,
    step: dt.timedelta = dt.timedelta(seconds=1),
) -> float:
    """Answer ``rows`` census rows with ``version`` of ``census``, log them with their ground
    truth (feedback one second after each prediction); return the answers' accuracy."""
    path = ModelRegistry(workspace).load_bundle_path("census", version)
    bundle = load_bundle(path)
    frame, truth = census_rows(rows, seed)
    root = workspace.settings.artifact_url
    ids = write_log(
        root, bundle, frame, start=start, step=step, version=str(version), prefix=prefix
    )
    times = [start + i * step + dt.timedelta(seconds=1) for i in range(rows)]
    write_feedback(root, ids, [int(t) for t in truth], times=times)
    return float(np.mean(bundle.predict(frame) == truth))
