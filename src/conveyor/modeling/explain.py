"""Why a model predicts what it does: permutation importance, SHAP, partial dependence, ICE.

:func:`explain_model` works on the *raw* feature columns and gets every prediction from the
bundle (``LoadedBundle.predict``/``predict_proba``), so the preprocessing is explained too,
exactly as it runs at serving time:

- **permutation importance**: scikit-learn's own ``permutation_importance`` (same seed, same
  numbers) with a scorer over :mod:`conveyor.modeling.metrics`; losses are negated, so a
  positive importance always means the feature helps;
- **SHAP** mean ``|value|`` per raw feature for tree models, when ``shap`` is installed
  (``pip install 'conveyor-ml[explain]'``): transformed columns are summed back to their raw
  feature (one-hot columns add up); ``shap_note`` says why there is none;
- **partial dependence** and **ICE** for the ``top_k`` features: the mean (and per-row, for
  ``ice_lines`` sampled rows) response with the feature set to each grid value; numeric grids
  are quantiles between the 5th and 95th percentile, categorical ones the categories. Equal to
  ``sklearn.inspection.partial_dependence`` (``method="brute"``) on the same grid.

The row sample, permutations and ICE rows all derive from ``seed``. An :class:`Explanation`
is stored as an "Explanation" artifact (``explanation.json``) and drawn by
:mod:`conveyor.modeling.explain_report`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.compose import ColumnTransformer
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from conveyor.core.materializers import Materializer
from conveyor.exceptions import ConveyorError, did_you_mean
from conveyor.modeling.bundle import LoadedBundle
from conveyor.modeling.bundle_signature import ColumnSpec
from conveyor.modeling.evaluation_model import Task
from conveyor.modeling.metrics import (
    METRICS,
    EvaluationError,
    compute_metrics,
    higher_is_better,
    validate_metrics,
)

__all__ = [
    "DEFAULT_METRIC",
    "EXPLANATION_FILE",
    "DependenceCurve",
    "ExplainError",
    "Explanation",
    "ExplanationMaterializer",
    "FeatureImportance",
    "PermutationImportance",
    "ShapImportance",
    "explain_model",
]

EXPLANATION_FILE = "explanation.json"
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "r2"}
"""Metric of the permutation importance when none is given, per task."""
_SHAP_ROWS = 500  # TreeExplainer is exact; a few hundred rows give a stable mean |value|
_MAX_CATEGORIES = 30
_PERCENTILES = (0.05, 0.95)  # scikit-learn's default range for partial dependence grids
_LEAST = {"top_k": 0, "n_repeats": 1, "max_rows": 1, "ice_lines": 0, "grid_points": 2}
"""The smallest value of each option of :func:`explain_model`, in its argument order."""


class ExplainError(EvaluationError):
    """An explanation cannot be computed: bad options, no rows, data that does not fit."""


class _Model(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings", extra="forbid")


class FeatureImportance(_Model):
    """One raw feature's permutation importance: mean and std over the repeats, and each."""

    feature: str
    mean: float
    std: float
    repeats: list[float]


class PermutationImportance(_Model):
    """Importance of every raw feature for ``metric``, most important first.

    ``baseline`` is the metric on the rows as they are; an importance is baseline minus the
    permuted score for a metric where higher is better, and the reverse for a loss.
    """

    metric: str
    higher_is_better: bool
    baseline: float
    n_repeats: int
    seed: int
    features: list[FeatureImportance]


class ShapImportance(_Model):
    """Mean |SHAP value| per raw feature (its columns summed, classes averaged), largest first."""

    explainer: str
    n_rows: int
    mean_abs: dict[str, float]


class DependenceCurve(_Model):
    """Partial dependence and ICE of one feature.

    ``average[o][g]`` is the mean response ``outputs[o]`` with the feature set to ``grid[g]``
    on every row; ``ice[o][i][g]`` the response of the i-th sampled row. Responses are the
    predicted value (regression) or class probabilities (the positive class for binary).
    """

    feature: str
    kind: Literal["numeric", "categorical"]
    grid: list[float | str]
    outputs: list[str]
    average: list[list[float]]
    ice: list[list[list[float]]]
    n_rows: int


class Explanation(_Model):
    """What :func:`explain_model` found; stored as ``explanation.json``.

    Example:
        >>> explanation = explain_model(bundle, eval_frame, "income", seed=0)
        >>> explanation.top_features
        ['age', 'hours_per_week', 'education']
        >>> explanation.permutation.features[0].mean
        0.081
    """

    format_version: Literal[1] = 1
    task: Task
    label: str
    classes: list[str] | None = None
    n_rows: int
    n_rows_total: int
    permutation: PermutationImportance
    shap: ShapImportance | None = None
    shap_note: str | None = None
    dependence: list[DependenceCurve] = Field(default_factory=list)

    @property
    def top_features(self) -> list[str]:
        """The features with dependence curves, most important first."""
        return [curve.feature for curve in self.dependence]

    def importances(self) -> dict[str, float]:
        """Feature -> mean permutation importance, most important first."""
        return {f.feature: f.mean for f in self.permutation.features}


class ExplanationMaterializer(Materializer):
    """:class:`Explanation` <-> ``explanation.json`` (artifact type ``"Explanation"``)."""

    python_types = (Explanation,)
    artifact_type = "Explanation"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        explanation: Explanation = obj
        (folder / EXPLANATION_FILE).write_text(explanation.model_dump_json() + "\n")
        return {
            "metric": explanation.permutation.metric,
            "top_features": explanation.top_features,
            "n_rows": explanation.n_rows,
            "shap": explanation.shap is not None,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        return Explanation.model_validate_json((folder / EXPLANATION_FILE).read_text())


class _BundleEstimator:
    """What scikit-learn's inspection functions call: the bundle's own predictions."""

    def __init__(self, bundle: LoadedBundle) -> None:
        self.bundle = bundle

    def fit(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ExplainError("a model bundle is already fitted")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.bundle.predict(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.bundle.predict_proba(frame)

    def response(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, outputs): the value, the positive class' probability, or every class'."""
        task = self.bundle.signature.task
        if task == "regression":
            return np.asarray(self.predict(frame), dtype=float).reshape(-1, 1)
        proba = np.asarray(self.predict_proba(frame), dtype=float)
        return proba[:, -1:] if task == "binary" else proba


@dataclass(frozen=True)
class _Scorer:
    """A scikit-learn scorer ``(estimator, X, y) -> float`` for one conveyor metric."""

    metric: str
    task: Task
    classes: list[Any] | None

    def value(self, estimator: _BundleEstimator, frame: pd.DataFrame, y: Any) -> float:
        """The metric itself (a loss stays a loss)."""
        given: dict[str, Any] = {}
        if METRICS[self.metric].needs == "y_score":
            proba = estimator.predict_proba(frame)
            given["y_score"] = proba[:, -1] if self.task == "binary" else proba
        else:
            given["y_pred"] = estimator.predict(frame)
        found = compute_metrics(self.task, y, metrics=[self.metric], labels=self.classes, **given)
        return float(found[self.metric])

    def __call__(self, estimator: _BundleEstimator, frame: pd.DataFrame, y: Any) -> float:
        value = self.value(estimator, frame, y)
        return value if higher_is_better(self.metric) else -value


def _check_options(*values: int) -> None:
    for name, value in zip(_LEAST, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or value < _LEAST[name]:
            raise ExplainError(f"{name} must be an integer >= {_LEAST[name]}, not {value!r}")


def _inputs(
    bundle: LoadedBundle, frame: pd.DataFrame, label: str, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.Series]:
    if label not in frame.columns:
        hint = did_you_mean(label, [str(c) for c in frame.columns])
        raise ExplainError(f"label column {label!r} is not in the data{hint}")
    if len(frame) == 0:
        raise ExplainError("cannot explain a model on 0 rows")
    if len(frame) > max_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), size=max_rows, replace=False))]
    frame = frame.reset_index(drop=True)
    if frame[label].isna().any():
        raise ExplainError(f"label column {label!r} has missing values")
    try:
        features = bundle.check_input(frame.drop(columns=[label]), allow_extra=True)
    except ConveyorError as exc:
        raise ExplainError(f"the data does not fit the model: {exc}") from exc
    return features.copy(), frame[label]


def _permutation(
    model: _BundleEstimator, x: pd.DataFrame, y: pd.Series, scorer: _Scorer, repeats: int, seed: int
) -> PermutationImportance:
    result = permutation_importance(
        model, x, y, scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=None
    )
    features = [
        FeatureImportance(
            feature=str(name),
            mean=float(result.importances_mean[i]),
            std=float(result.importances_std[i]),
            repeats=[float(v) for v in result.importances[i]],
        )
        for i, name in enumerate(x.columns)
    ]
    features.sort(key=lambda f: (math.isnan(f.mean), -f.mean if not math.isnan(f.mean) else 0))
    return PermutationImportance(
        metric=scorer.metric,
        higher_is_better=higher_is_better(scorer.metric),
        baseline=scorer.value(model, x, y),
        n_repeats=repeats,
        seed=seed,
        features=features,
    )


def _grid(column: pd.Series, spec: ColumnSpec, points: int) -> tuple[str, list[Any]] | None:
    values = column.dropna()
    if values.empty or spec.type == "datetime":  # no meaningful grid over dates
        return None
    if spec.type == "bool":
        return "categorical", sorted({bool(v) for v in values})
    if spec.type == "string":
        domain = list(spec.domain or ())
        if not domain or len(domain) > _MAX_CATEGORIES:
            domain = [str(v) for v in values.value_counts().index[:_MAX_CATEGORIES]]
        return "categorical", sorted(domain)
    numbers = values.to_numpy()
    grid = np.unique(numbers)
    if len(grid) > points:  # quantiles of the values, not of the distinct values
        grid = np.unique(np.quantile(numbers.astype(float), np.linspace(*_PERCENTILES, points)))
        grid = np.unique(np.round(grid)).astype(np.int64) if spec.type == "int" else grid
    return "numeric", list(grid.tolist())


def _outputs(bundle: LoadedBundle) -> list[str]:
    classes = bundle.signature.classes
    if bundle.signature.task == "regression" or classes is None:
        return ["prediction"]
    return [str(classes[-1])] if bundle.signature.task == "binary" else [str(c) for c in classes]


def _curve(
    model: _BundleEstimator,
    x: pd.DataFrame,
    feature: str,
    found: tuple[str, list[Any]],
    ice_rows: np.ndarray,
) -> DependenceCurve:
    (kind, grid), rows = found, len(x)
    # Every row with the feature at grid[0], then every row at grid[1], ...: one prediction
    # call per feature, reshaped to (grid, rows, outputs).
    stacked = pd.concat([x] * len(grid), ignore_index=True)
    stacked[feature] = np.repeat(np.asarray(grid), rows)
    try:
        cube = model.response(stacked).reshape(len(grid), rows, -1)
    except ConveyorError as exc:
        raise ExplainError(f"predicting with {feature!r} set to its grid failed: {exc}") from exc
    return DependenceCurve(
        feature=feature,
        kind=cast(Literal["numeric", "categorical"], kind),
        grid=[float(v) if kind == "numeric" else str(v) for v in grid],
        outputs=_outputs(model.bundle),
        average=cube.mean(axis=1).T.tolist(),
        ice=cube[:, ice_rows, :].transpose(2, 1, 0).tolist(),
        n_rows=rows,
    )


def _dependence(
    model: _BundleEstimator,
    x: pd.DataFrame,
    ranked: Sequence[str],
    top_k: int,
    points: int,
    ice_rows: np.ndarray,
) -> list[DependenceCurve]:
    curves: list[DependenceCurve] = []
    for feature in ranked:
        found = _grid(x[feature], model.bundle.signature.column(feature), points)
        if found is not None and len(curves) < top_k:
            curves.append(_curve(model, x, feature, found, ice_rows))
    return curves


def explain_model(
    bundle: LoadedBundle,
    frame: pd.DataFrame,
    label: str,
    *,
    metric: str | None = None,
    top_k: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    max_rows: int = 2000,
    ice_lines: int = 50,
    grid_points: int = 20,
) -> Explanation:
    """Explain ``bundle`` on ``frame`` (raw feature columns plus the label).

    Args:
        bundle: a loaded model bundle; its preprocessing is applied as at serving time.
        frame: the rows to explain on (the eval split, usually), with the ``label`` column.
        label: the label column.
        metric: the permutation importance metric (default: :data:`DEFAULT_METRIC` of the task).
        top_k: features (by permutation importance) that get PD/ICE curves.
        n_repeats: permutations per feature.
        seed: seeds the row sample, the permutations and the ICE rows.
        max_rows: rows sampled from ``frame`` when it has more.
        ice_lines: rows drawn as ICE curves.
        grid_points: at most this many grid values per numeric feature.

    Raises:
        ExplainError: a bad option, no rows, a missing label, data the model does not take.
        EvaluationError: an unknown metric, or one the task cannot have.

    Example:
        >>> explanation = explain_model(load_bundle("bundle"), eval_frame, "income")
        >>> explanation.importances()
        {'age': 0.08, 'hours_per_week': 0.05, ...}
    """
    _check_options(top_k, n_repeats, max_rows, ice_lines, grid_points)
    task = cast(Task, bundle.signature.task)
    name = validate_metrics(task, [metric or DEFAULT_METRIC[task]])[0]
    classes = None if bundle.signature.classes is None else list(bundle.signature.classes)
    rng = np.random.default_rng(seed)
    x, y = _inputs(bundle, frame, label, max_rows, rng)
    model = _BundleEstimator(bundle)
    scorer = _Scorer(name, task, classes)
    try:
        permutation = _permutation(model, x, y, scorer, n_repeats, seed)
    except ConveyorError as exc:
        raise ExplainError(f"permutation importance failed: {exc}") from exc
    ranked = [f.feature for f in permutation.features]
    shap_result, note = _shap(bundle, x, ranked)
    ice_rows = np.sort(rng.choice(len(x), size=min(ice_lines, len(x)), replace=False))
    return Explanation(
        task=task,
        label=label,
        classes=None if classes is None else [str(c) for c in classes],
        n_rows=len(x),
        n_rows_total=len(frame),
        permutation=permutation,
        shap=shap_result,
        shap_note=note,
        dependence=_dependence(model, x, ranked, top_k, grid_points, ice_rows),
    )


# -- SHAP -----------------------------------------------------------------------------------


def _column_names(columns: Any, names_in: Sequence[str]) -> list[str] | None:
    items = [columns] if isinstance(columns, str) else list(np.asarray(columns).tolist())
    if all(isinstance(c, str) for c in items):
        return [str(c) for c in items]
    if all(isinstance(c, int) and not isinstance(c, bool) for c in items):
        return [names_in[int(c)] for c in items]
    return None  # a slice, a mask or a callable: not worth guessing


def _owners(transformer: Any, columns: list[str], width: int) -> list[str] | None:
    """The raw column behind each of ``width`` output columns of one fitted transformer."""
    if len(columns) == 1:
        return columns * width
    if len(columns) == width:  # an elementwise step: imputer, scaler, ordinal encoder
        return columns
    last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
    if isinstance(last, OneHotEncoder) and last.drop is None and last.max_categories is None:
        widths = [len(c) for c in last.categories_]
        if sum(widths) == width and last.min_frequency is None:
            return [c for c, n in zip(columns, widths, strict=True) for _ in range(n)]
    return None


def _output_owners(preprocessing: Any, columns: list[str]) -> list[str] | None:
    """The raw column behind each transformed column, or None when it cannot be told."""
    if preprocessing is None:
        return columns
    if not isinstance(preprocessing, ColumnTransformer):
        return None
    names_in = [str(n) for n in getattr(preprocessing, "feature_names_in_", columns)]
    total = max((s.stop for s in preprocessing.output_indices_.values()), default=0)
    owners: list[str | None] = [None] * total
    for name, transformer, picked in preprocessing.transformers_:
        span = preprocessing.output_indices_[name]
        if span.stop == span.start:
            continue
        names = _column_names(picked, names_in)
        found = None if names is None else _owners(transformer, names, span.stop - span.start)
        if found is None:
            return None
        owners[span] = found
    return None if any(o is None for o in owners) else [str(o) for o in owners]


def _shap_values(bundle: LoadedBundle, rows: pd.DataFrame) -> tuple[np.ndarray, str]:
    import shap

    features = bundle.transform(rows)
    if bundle.flavour.name != "sklearn":  # boosters see string columns as categoricals
        features = bundle.signature.categorize(features)
    explainer = shap.TreeExplainer(bundle.model)
    values = explainer.shap_values(features, check_additivity=False)
    array = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)
    return (array[:, :, None] if array.ndim == 2 else array), type(explainer).__name__


def _shap(
    bundle: LoadedBundle, x: pd.DataFrame, ranked: Sequence[str]
) -> tuple[ShapImportance | None, str | None]:
    try:
        with warnings.catch_warnings():  # shap's colormap setup warns on import
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap  # noqa: F401
    except ImportError:
        return None, "shap is not installed (pip install 'conveyor-ml[explain]')"
    owners = _output_owners(bundle.preprocessing, [str(c) for c in x.columns])
    if owners is None:
        kind = type(bundle.preprocessing).__name__
        return None, f"SHAP values of a {kind} preprocessing cannot be mapped to raw features"
    rows = x.iloc[:_SHAP_ROWS]
    try:
        values, explainer = _shap_values(bundle, rows)
    except Exception as exc:  # not a tree model, or a model shap cannot read
        return None, f"SHAP skipped ({type(exc).__name__}: {str(exc)[:200]})"
    if values.shape[1] != len(owners):
        return None, f"SHAP gave {values.shape[1]} columns, the preprocessing {len(owners)}"
    index = np.asarray(owners)
    mean_abs = {
        name: float(np.abs(values[:, index == name, :].sum(axis=1)).mean())
        for name in ranked
        if name in owners
    }
    ordered = dict(sorted(mean_abs.items(), key=lambda item: -item[1]))
    return ShapImportance(explainer=explainer, n_rows=len(rows), mean_abs=ordered), None
