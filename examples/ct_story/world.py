"""The story's world: its periods of census data, the traffic they send, and its policy.

Four periods, each a *span* of labelled census rows that lands in ``data/span=N/`` (the
training data of a retrain) plus the requests of the same period, drawn from the same world
by ``examples/census/generate.py``:

=====  =====================  ==========================================================
span   period                 what changes
=====  =====================  ==========================================================
1      before the story       nothing: the first model is trained on it
2      ordinary days          nothing: the requests look like the training data
3      a covariate shift      the people change: older (+6 years), shorter weeks, more
                              degrees; what decides income does not
4      a concept drift        the same people as span 3, but what decides income changes:
                              hours worked count far more, degrees and marriage barely
=====  =====================  ==========================================================

Because the data is synthetic, the best accuracy any model could reach on a period is known
(:func:`best_accuracy`): the story prints it next to what the models really do.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LABEL",
    "MODEL",
    "PERIODS",
    "RETRAIN",
    "Period",
    "StoryPolicy",
    "best_accuracy",
    "generator",
    "panel_rows",
    "policy_text",
    "traffic_rows",
    "write_span",
]

HERE = Path(__file__).resolve().parent
CENSUS = HERE.parent / "census"
RETRAIN = CENSUS / "retrain.py"
MODEL = "income"
LABEL = "income"
TRAFFIC_SPAN_OFFSET = 100  # traffic is a sample of its own: span 3's requests = span 103's rows
PANEL_SPAN = 200  # the panel: the same people in every period (see panel_rows)


@dataclass(frozen=True)
class Period:
    """One period of the story: its span number and the generator's knobs."""

    span: int
    knobs: dict[str, float] = field(default_factory=dict)

    @property
    def concept_drift(self) -> float:
        """The label model's knob (needed to know the best possible accuracy)."""
        return self.knobs.get("concept_drift", 0.0)


SHIFT = {"covariate_shift": 1.0}
PERIODS = {
    1: Period(1),
    2: Period(2),
    3: Period(3, dict(SHIFT)),  # the covariate shift
    4: Period(4, {**SHIFT, "concept_drift": 1.5}),  # the same people, other rules
}


def generator() -> ModuleType:
    """``examples/census/generate.py``, loaded by path (the examples are not a package)."""
    name = "census_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CENSUS / "generate.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {CENSUS / 'generate.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_span(data: Path, period: Period, rows: int, seed: int) -> Path:
    """Write the labelled rows of ``period`` to ``data/span=N/data.csv``; return the file."""
    (path,) = generator().write_spans(
        data, spans=1, rows=rows, drift_at={period.span: period.knobs}, seed=seed,
        first_span=period.span,
    )  # fmt: skip
    return Path(path)


def traffic_rows(period: Period, rows: int, seed: int) -> pd.DataFrame:
    """The requests of ``period``: another sample of its world, label included.

    Missing categories are empty texts, as ``ingest`` reads the CSV files the models were
    trained on (pandas would make them NaN).
    """
    return _rows(period.span + TRAFFIC_SPAN_OFFSET, rows, seed, period.knobs)


def panel_rows(period: Period, rows: int, seed: int) -> pd.DataFrame:
    """A fixed panel of people, asked again after each promotion to measure the new model.

    The panel's inputs depend on the population's knob only: with the same covariate shift,
    the concept drift leaves them identical (the generator draws inputs and labels from
    separate streams), so the accuracy before and after a concept drift is measured on the
    very same people, each labelled by the rules of the time. That keeps sampling noise out
    of the comparison.
    """
    return _rows(PANEL_SPAN, rows, seed, period.knobs)


def _rows(span: int, rows: int, seed: int, knobs: dict[str, float]) -> pd.DataFrame:
    frame: pd.DataFrame = generator().generate_span(span, rows, seed=seed, **knobs)
    text = frame.select_dtypes(exclude="number").columns
    frame[text] = frame[text].fillna("")
    return frame


def best_accuracy(frame: pd.DataFrame, period: Period) -> float:
    """The accuracy of the true P(income | inputs) on ``frame``: no model can beat it."""
    inputs = frame.replace({"": None})
    p = generator().label_probability(inputs, concept_drift=period.concept_drift)
    return float(np.mean(np.maximum(p, 1.0 - p)))


@dataclass(frozen=True)
class StoryPolicy:
    """The policy's numbers (see ``docs/continuous-training.md`` for each key)."""

    window: int
    canary_percent: float
    promote_after: int
    tolerance: float
    drift_threshold: float = 0.25
    accuracy_threshold: float = 0.74
    seed: int = 0


def policy_text(policy: StoryPolicy, data: Path) -> str:
    """The story folder's ``conveyor.toml``: its home, then the continuous-training policy."""
    params: dict[str, Any] = {
        "source": str(data),
        "model": MODEL,
        "drift_threshold": policy.drift_threshold,
        "seed": policy.seed,
    }
    inline = ", ".join(f"{k} = {_toml(v)}" for k, v in params.items())
    return textwrap.dedent(
        f"""\
        # The continuous-training story's project: this folder is its conveyor home.
        [conveyor]
        home = "."

        [monitoring]
        window = {policy.window}                  # windows of {policy.window} predictions
        label_delay = "0s"            # ground truth comes one batch of requests later, and
        min_feedback_coverage = 1.0   # a window is judged once all of its labels are in

        [pipelines.retrain]           # the lean retraining pipeline, on the newest span
        file = {_toml(str(RETRAIN))}
        function = "census_retrain"
        model = "{MODEL}"
        params = {{ {inline} }}

        [[alerts]]
        name = "age-drift"            # the age of the people asking has drifted
        model = "{MODEL}"
        metric = "drift"
        feature = "age"               # threshold: the schema's (psi {policy.drift_threshold:g})
        windows = 1
        cooldown = "1h"

        [[alerts]]
        name = "accuracy-drop"        # the model is right less often than it should be
        model = "{MODEL}"
        metric = "accuracy"
        threshold = {policy.accuracy_threshold}
        windows = 2
        cooldown = "1h"

        [[triggers]]
        name = "retrain-on-drift"
        pipeline = "retrain"
        on = "alert"
        alerts = ["age-drift"]

        [[triggers]]
        name = "retrain-on-accuracy-drop"
        pipeline = "retrain"
        on = "alert"
        alerts = ["accuracy-drop"]

        [controller]
        poll = "1s"
        debounce = "0s"
        min_interval = "0s"
        canary_percent = {policy.canary_percent:g}
        promote_after = {policy.promote_after}
        metric = "accuracy"
        tolerance = {policy.tolerance:g}
        """
    )


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
