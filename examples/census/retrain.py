"""The lean census retraining pipeline the continuous-training controller runs.

    ingest the newest span ─► [label_bug: invert the labels] ─► statistics ─► infer_schema
        ─► validate (a data-quality gate) ─► transform ─► train ─► evaluate vs production
        ─► register WITHOUT an alias (the controller canaries it, then promotes or rolls back)

It is ``training.py`` without what makes that one slow or unsuited to a loop:

- **no tuning and no explanation**: a logistic regression with fixed settings (one-hot and
  scaled inputs from ``transform``) trains in a fraction of a second; a retrain triggered by
  drift must be quick, and its job is to learn the new data, not to search again;
- **validation against the schema, not the previous span**: ``training.py`` blocks a span
  that drifted from the one before, by design. A retrain is started *because* the data
  drifted, so comparing the new span with the old one would block every retrain. Here the
  span is checked against the schema inferred from its own statistics: types, missing
  values, domains and ranges across its train and eval splits (data quality); drift is the
  monitor's business;
- **no serving check**: the controller's canary serves the new version for real;
- **registration without ``alias="production"``**: production moves only through the
  controller's canary (``docs/continuous-training.md``, *Roll-out*).

``label_bug=true`` simulates a bug upstream of training: the label column arrives inverted
(a broken join, say). Everything downstream sees the inverted labels, the evaluation split
included, so the candidate looks excellent offline and production looks terrible on the same
rows: it is blessed. Only online ground truth shows it is wrong -- which is what the canary is
for. The continuous-training story uses it to show an automatic rollback.

Run it by hand on the newest span of a folder of ``span=N`` sub-folders::

    conveyor run examples/census/retrain.py -p source=data/census
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from conveyor import Dataset, after, component, pipeline
from conveyor.components import (
    evaluate,
    infer_schema,
    ingest,
    register,
    statistics,
    train,
    transform,
    validate,
)

LABEL = "income"
CLASSES = ("<=50K", ">50K")

ESTIMATOR = {
    "flavour": "sklearn",
    "class": "sklearn.linear_model.LogisticRegression",
    "params": {"C": 1.0, "max_iter": 1000},
}
THRESHOLDS = [
    {"metric": "roc_auc", "min": 0.75},  # a sanity floor; the drifted worlds are harder
    {"metric": "accuracy", "max_drop": 0.02},  # vs production, re-scored on the same rows
    {"metric": "roc_auc", "max_drop": 0.02},
]


@component
def invert_labels(data: Dataset, label: str = LABEL) -> Dataset:
    """Swap the two classes of ``label`` in every split: the simulated upstream bug."""
    scratch = Path(tempfile.mkdtemp(prefix="census-label-bug-"))
    folder = scratch / "dataset"
    swap = {CLASSES[0]: CLASSES[1], CLASSES[1]: CLASSES[0]}
    for split in data.splits():
        frame = data.to_pandas(split=split)
        frame[label] = frame[label].map(swap)
        (folder / f"split={split}").mkdir(parents=True)
        frame.to_parquet(folder / f"split={split}" / "part-0.parquet", index=False)
    inverted = Dataset.from_path(folder, **{**data.properties, "label_bug": True})
    weakref.finalize(inverted, _remove, scratch)  # the runner copies it into the store first
    return inverted


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


@pipeline
def census_retrain(
    source: str = "data/census",
    model: str = "census",
    drift_threshold: float = 0.2,
    label_bug: bool = False,
    seed: int = 0,
) -> None:
    """Retrain on the newest span; register a blessed candidate without moving production."""
    data = ingest(source, name=model, span_window=1, stratify_by=LABEL)
    if label_bug:
        data = invert_labels(data, label=LABEL)
    stats = statistics(data, label=LABEL)
    # psi with one threshold for every input: what the monitor compares serving inputs with
    schema = infer_schema(
        stats,
        label=LABEL,
        method="psi",
        drift_threshold=drift_threshold,
        skew_threshold=drift_threshold,
    )
    report = validate(stats, schema, data)
    with after(report):  # nothing is trained on data that failed validation
        prep = transform(data, schema, label=LABEL)
        candidate = train(data, label=LABEL, estimator=ESTIMATOR, preprocessing=prep, seed=seed)
        result = evaluate(
            candidate,
            data,
            label=LABEL,
            slices=["sex"],
            thresholds=THRESHOLDS,
            model_name=model,
        )
        register(candidate, result.blessing, name=model, evaluation=result.evaluation)
