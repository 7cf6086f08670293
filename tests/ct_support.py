"""Shared by the continuous-training tests: a small pipeline file and a valid policy.

``POLICY`` is a complete, valid ``conveyor.toml`` policy whose line numbers the tests rely on:
``policy_text({18: 'threshold = "0.1"'})`` replaces line 18 and keeps every other line where
it was, so an expected message can name the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

PIPELINE_FILE = '''
from conveyor import pipeline


@pipeline
def census_training(
    source: str = "data/census", until_span: int = 1, n_trials: int = 4, seed: int = 0
) -> None:
    """Stands in for the census training pipeline: same parameters, no steps."""


@pipeline
def needs_source(source: str) -> None:
    """A pipeline with a parameter that has no default."""
'''

POLICY = """\
[monitoring]
window = 500
label_delay = "0s"
min_feedback_coverage = 0.5
slices = ["sex"]

[pipelines.census]
file = "train.py"
function = "census_training"
model = "census"
params = { n_trials = 2 }

[[alerts]]
name = "age-drift"
model = "census"
metric = "drift"
feature = "age"
threshold = 0.1
windows = 2
cooldown = "30m"

[[alerts]]
name = "accuracy-drop"
model = "census"
metric = "accuracy"
threshold = 0.8

[[triggers]]
name = "retrain-on-drift"
pipeline = "census"
on = "alert"
alerts = ["age-drift", "accuracy-drop"]

[[triggers]]
name = "nightly"
pipeline = "census"
on = "cron"
cron = "*/15 * * * *"

[[triggers]]
name = "new-data"
pipeline = "census"
on = "new_data"
watch = "data/census"
span_param = "until_span"
source_param = "source"

[controller]
poll = "5s"
debounce = "30s"
min_interval = "10m"
canary_percent = 10
promote_after = 3
metric = "accuracy"
tolerance = 0.02
"""


def policy_text(changes: Mapping[int, str] | None = None) -> str:
    """``POLICY`` with the given 1-based lines replaced (a value may hold several lines)."""
    lines = POLICY.splitlines()
    for number, text in sorted((changes or {}).items()):
        if number == len(lines) + 1:
            lines.append(text)
        else:
            lines[number - 1] = text
    return "\n".join(lines) + "\n"


def make_project(folder: Path, text: str | None = None, name: str = "conveyor.toml") -> Path:
    """Write the pipeline file, a span folder and the policy into ``folder``; return the policy."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(PIPELINE_FILE)
    add_span(folder / "data" / "census", 1)
    policy = folder / name
    policy.write_text(policy_text() if text is None else text)
    return policy


def add_span(root: Path, number: int, folder: str | None = None) -> Path:
    """Write a one-row CSV span ``span=N/part.csv`` (or the named folder) under ``root``."""
    span = root / (folder or f"span={number}")
    span.mkdir(parents=True, exist_ok=True)
    (span / "part.csv").write_text(f"age,income\n{30 + number},1\n")
    return span
