"""The standard ``transform`` step: preprocessing fitted on the train split only.

Written with the public API only, like any user component; the work is done by
:func:`conveyor.modeling.transform.fit_preprocessor`. The step reads nothing but the
``split=train`` sub-folder of its Dataset, so no statistic of another split can reach the
fitted transformer. It returns a "Model" artifact holding ``model.skops`` (saved
deterministically: an equal transformer is the same artifact), which
``train(..., preprocessing=...)`` loads with trusted types and ships inside the bundle, so
serving applies exactly the steps fitted here.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import pandas as pd

from conveyor import Dataset, Model, component
from conveyor.data.schema import Schema
from conveyor.modeling.transform import (
    CategoricalEncoding,
    NumericScaling,
    TransformError,
    fit_preprocessor,
    plan_features,
    save_transformer,
)

__all__ = ["transform"]


def _train_split(data: Dataset) -> pd.DataFrame:
    if "train" not in data.splits():
        raise TransformError(
            f"Dataset {data.uri or data.path} has no split=train sub-folder (it has: "
            f"{data.splits() or 'none'}); the preprocessing is fitted on train only"
        )
    frame: pd.DataFrame = data.split("train").to_pandas()
    return frame


def _handle(fitted: Any, properties: dict[str, Any]) -> Model:
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-transform-"))
    try:
        props = {**save_transformer(fitted, workdir), **properties}
        handle = Model.from_path(workdir, **props)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    # The engine copies the folder into the artifact store after the step returns.
    weakref.finalize(handle, shutil.rmtree, workdir, ignore_errors=True)
    return handle


@component
def transform(
    data: Dataset,
    schema: Schema,
    numeric: NumericScaling = "standard",
    categorical: CategoricalEncoding = "onehot",
    transformer: dict[str, Any] | str | None = None,
    impute: bool = True,
    label: str | None = None,
) -> Model:
    """Fit the preprocessing on ``data``'s train split; return it for ``train`` to ship.

    Args:
        data: a Dataset with a ``split=train`` sub-folder (other splits are never read).
        schema: picks the columns and their groups; identifiers, the label and datetime
            features are left out of the default.
        numeric: ``"standard"``, ``"minmax"`` or ``"none"`` (numbers are median-imputed).
        categorical: ``"onehot"`` (unknown values: all zeros) or ``"ordinal"`` (unknown: -1).
        transformer: replaces the default: ``{"class": "sklearn....", "params": {...}}`` or
            ``"module:function"`` returning an unfitted scikit-learn transformer.
        impute: fill missing numbers with the train median, strings with ``"__missing__"``.
        label: the label column (default: the schema's); never a feature.

    Returns:
        The fitted transformer as a "Model" artifact (``model.skops``), with properties
        ``fitted_on``, ``n_train``, ``features``, ``excluded``, ``features_out``.

    Example:
        >>> @pipeline
        ... def training() -> None:
        ...     data = ingest(source="landing/", name="census")
        ...     schema = infer_schema(statistics(data), label="income")
        ...     prep = transform(data, schema, numeric="minmax")
        ...     train(data, label="income", preprocessing=prep, estimator={...})
    """
    train = _train_split(data)
    fitted = fit_preprocessor(
        train,
        schema,
        numeric=numeric,
        categorical=categorical,
        impute=impute,
        transformer=transformer,
        label=label,
    )
    properties: dict[str, Any] = {"fitted_on": "train", "n_train": len(train)}
    if transformer is None:
        plan = plan_features(schema, label=label, columns=[str(c) for c in train.columns])
        properties |= {"features": list(plan.used), "excluded": plan.excluded}
    else:
        properties["transformer"] = transformer
    return _handle(fitted, properties)
