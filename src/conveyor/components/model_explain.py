"""The standard ``explain`` step: why a trained model predicts what it does.

Written with the public API only; the work is done by
:func:`conveyor.modeling.explain.explain_model`. The step opens the bundle (verified, never
unpickled), reads one split of the Dataset and explains the model on its raw columns through
the bundle's own predict, so the shipped preprocessing is part of what is explained. The
result is an "Explanation" artifact that the evaluation report draws
(:func:`conveyor.modeling.explain_report.render_explanation_svgs`).
"""

from __future__ import annotations

import pandas as pd

from conveyor import Dataset, component
from conveyor.exceptions import did_you_mean
from conveyor.modeling.bundle import ModelBundle
from conveyor.modeling.explain import ExplainError, Explanation, explain_model

__all__ = ["explain"]


def _rows(data: Dataset, split: str) -> pd.DataFrame:
    names = data.splits()
    if not names:  # a Dataset without split=NAME folders is explained as a whole
        whole: pd.DataFrame = data.to_pandas()
        return whole
    if split not in names:
        raise ExplainError(
            f"Dataset {data.uri or data.path} has no split {split!r}"
            f"{did_you_mean(split, names)} (it has: {names})"
        )
    frame: pd.DataFrame = data.split(split).to_pandas()
    return frame


@component
def explain(
    model: ModelBundle,
    data: Dataset,
    label: str,
    split: str = "eval",
    top_k: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    metric: str | None = None,
    max_rows: int = 2000,
) -> Explanation:
    """Explain ``model`` on one split of ``data``: permutation importance, SHAP, PD and ICE.

    Args:
        model: the model bundle (``train``'s output).
        data: a Dataset with ``split=NAME`` sub-folders (or none: then all of it is used).
        label: the label column.
        split: the split to explain on; ``eval`` by default, never the rows it was fitted on.
        top_k: features (by permutation importance) that get partial dependence and ICE curves.
        n_repeats: permutations per feature.
        seed: seeds the row sample, the permutations and the ICE rows: same seed, same result.
        metric: the permutation importance metric (default: roc_auc, log_loss or r2 by task).
        max_rows: rows sampled from the split when it has more.

    Returns:
        The :class:`~conveyor.modeling.explain.Explanation` (properties: metric,
        top_features, n_rows, shap).

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = ingest(source="landing/", name="census")
        ...     bundle = train(data, label="income", estimator={"flavour": "lightgbm"})
        ...     explain(bundle, data, label="income", top_k=3)
    """
    loaded = model.open()
    explanation = explain_model(
        loaded,
        _rows(data, split),
        label,
        metric=metric,
        top_k=top_k,
        n_repeats=n_repeats,
        seed=seed,
        max_rows=max_rows,
    )
    shown = ", ".join(f"{name} {value:+.4f}" for name, value in explanation.importances().items())
    print(f"permutation importance ({explanation.permutation.metric}): {shown}")
    if explanation.shap_note:
        print(f"no SHAP values: {explanation.shap_note}")
    return explanation
