"""The first demo: breast-cancer data that scikit-learn ships, a model, a metric.

Run it with ``conveyor run examples/demo/pipeline.py`` (``make demo`` does that and more).
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor import Metrics, component, pipeline

LABEL = "target"


@component
def ingest() -> pd.DataFrame:
    """Load the Wisconsin breast-cancer table bundled with scikit-learn (no download)."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame


class Split(NamedTuple):
    train: pd.DataFrame
    test: pd.DataFrame


@component
def split(data: pd.DataFrame, test_fraction: float = 0.25, seed: int = 0) -> Split:
    """Stratified, seeded train/test split."""
    train, test = train_test_split(
        data, test_size=test_fraction, random_state=seed, stratify=data[LABEL]
    )
    return Split(train, test)


@component
def train(data: pd.DataFrame, c: float = 1.0, seed: int = 0) -> BaseEstimator:
    """Scale the features, then fit a logistic regression."""
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=1000, random_state=seed)
    )
    model.fit(data.drop(columns=[LABEL]), data[LABEL])
    print(f"trained on {len(data)} rows with C={c}")
    return model


@component
def evaluate(model: BaseEstimator, data: pd.DataFrame) -> Metrics:
    """Accuracy and ROC AUC on the held-out rows."""
    features, labels = data.drop(columns=[LABEL]), data[LABEL]
    scores = model.predict_proba(features)[:, 1]  # type: ignore[attr-defined]
    return Metrics(
        accuracy=float(accuracy_score(labels, scores >= 0.5)),
        roc_auc=float(roc_auc_score(labels, scores)),
        test_rows=float(len(data)),
    )


@pipeline
def demo(c: float = 1.0, test_fraction: float = 0.25, seed: int = 0) -> None:
    """ingest -> split -> train -> evaluate."""
    parts = split(ingest(), test_fraction=test_fraction, seed=seed)
    model = train(parts.train, c=c, seed=seed)
    evaluate(model, parts.test)
