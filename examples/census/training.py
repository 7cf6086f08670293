"""The census training pipeline: the whole offline loop, one span at a time.

    ingest ─► statistics ─► infer_schema ─► validate (gate: bad data stops here)
                                               │ after
                                               ▼
    transform (fit on train only) ─► tune (a few trials) ─► train ─► explain
                                                              │
                         evaluate vs the production model ◄───┤  (gate: blessing)
                                                              │
      infra_validate: serve it in a separate process and ◄────┘  (gate: serving)
      check canary answers from the eval split == offline predictions
                                                              │ after both
                                                              ▼
                                        register, alias production when blessed

Run it span by span as the data arrives::

    python examples/census/generate.py data/census --spans 4
    conveyor run examples/census/training.py -p source=data/census -p until_span=1
    conveyor run examples/census/training.py -p source=data/census -p until_span=2
"""

from __future__ import annotations

from conveyor import after, pipeline
from conveyor.components import (
    evaluate,
    explain,
    infer_schema,
    infra_validate,
    ingest,
    register,
    statistics,
    train,
    transform,
    tune,
    validate,
)

LABEL = "income"
MODEL = "census"

SPACE = {
    "model": {
        "choice": {
            "hgb": {
                "flavour": "sklearn",
                "class": "sklearn.ensemble.HistGradientBoostingClassifier",
                "params": {
                    "max_depth": {"int": [2, 6]},
                    "learning_rate": {"float": [0.03, 0.3], "log": True},
                    "random_state": 0,
                },
            },
            "logreg": {
                "flavour": "sklearn",
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"C": {"float": [0.01, 10.0], "log": True}, "max_iter": 1000},
            },
        }
    }
}

SLICES = ["sex", {"feature": "age", "buckets": [17, 30, 45, 60, 91]}]
THRESHOLDS = [
    {"metric": "roc_auc", "min": 0.80},
    {"metric": "accuracy", "max_drop": 0.01},  # overall
    {"metric": "roc_auc", "max_drop": 0.01},
    {"metric": "accuracy", "max_drop": 0.03, "slices": True},  # and on every slice, with
    {"metric": "roc_auc", "max_drop": 0.03, "slices": True},  # room for a smaller sample
]


@pipeline
def census_training(
    source: str = "data/census",
    until_span: int = 1,
    n_trials: int = 4,
    drift_threshold: float = 0.1,
    seed: int = 0,
) -> None:
    """Validate the newest span, then train, evaluate against production, check the model
    serves the same answers, and register."""
    data = ingest(source, name=MODEL, until_span=until_span, stratify_by=LABEL)
    previous = None
    if until_span > 1:
        previous = ingest.configure(name="ingest_previous")(
            source, name=MODEL, until_span=until_span, span_offset=1, stratify_by=LABEL
        )
    stats = statistics(data, label=LABEL)
    schema = infer_schema(stats, label=LABEL, drift_threshold=drift_threshold)
    report = validate(stats, schema, data, previous=previous)
    with after(report):  # nothing is trained on data that failed validation
        prep = transform(data, schema, label=LABEL)
        tuned = tune(
            data, label=LABEL, space=SPACE, n_trials=n_trials, seed=seed, preprocessing=prep
        )
        model = train(data, label=LABEL, tuned=tuned, preprocessing=prep, seed=seed)
        why = explain(model, data, label=LABEL, seed=seed)
        result = evaluate(
            model,
            data,
            label=LABEL,
            slices=SLICES,
            sensitive_features=["sex"],
            thresholds=THRESHOLDS,
            model_name=MODEL,
            explanation=why,
        )
        # latency is measured, not gated: the server shares the CPU with explain and evaluate
        served = infra_validate(model, data, model_name=MODEL)
        with after(served):  # a model the server cannot answer with is never registered
            register(
                model,
                result.blessing,
                name=MODEL,
                alias="production",
                evaluation=result.evaluation,
            )
