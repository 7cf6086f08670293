"""Preprocessing fitted on the train split only, shipped inside the model bundle.

The ``transform`` component (:mod:`conveyor.components.model_transform`) fits a scikit-learn
transformer here and stores it as a "Model" artifact; ``train(..., preprocessing=...)`` puts it
in the bundle, and the bundle applies it before the model at serving time, so training and
serving run exactly the same steps.

The default is built from the schema (:func:`build_preprocessor`): the schema decides *which*
columns and *how* (by type), while every learned value (medians, means, scales, categories)
comes from the train split alone. The schema's domains are deliberately not used as
categories: ``infer_schema`` merges every split, so they would carry eval values into the
transformer. Identifiers, the label and datetime features are left out.

============ ======================================================= ========================
group        steps                                                   missing / unknown values
============ ======================================================= ========================
numeric      median imputer, then standard / min-max scaler / none   median of train
categorical  constant imputer (``"__missing__"``), one-hot / ordinal one-hot: all zeros;
                                                                     ordinal: ``-1``
boolean      one-hot / ordinal (no imputer: scikit-learn refuses     a category of its own
             bool data in one; the encoders treat None/NaN as a
             category)
============ ======================================================= ========================

Any scikit-learn-compatible transformer can replace the default (:func:`resolve_transformer`):
``{"class": "sklearn.preprocessing.PolynomialFeatures", "params": {"degree": 2}}`` or
``"module:function"`` returning an unfitted transformer. Whatever it is, it is fitted on the
train features exactly as serving will call it: every input column but the label, in order.

Stored bytes are deterministic (:func:`transformer_bytes`): skops names archive members after
object ids and stamps the time, so the archive is rewritten canonically. An equal transformer
is then the same artifact (same sha256), which is how a test proves the eval split never
reaches it.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import sklearn
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from conveyor.data.schema import Schema
from conveyor.data.statistics_model import FeatureType
from conveyor.exceptions import did_you_mean
from conveyor.materializers.sklearn import MODEL_FILE, trusted_types
from conveyor.modeling.bundle_errors import BundleError

__all__ = [
    "MISSING_CATEGORY",
    "CategoricalEncoding",
    "FeaturePlan",
    "NumericScaling",
    "TransformError",
    "TransformResult",
    "build_preprocessor",
    "fit_preprocessor",
    "fit_transform_on_train",
    "plan_features",
    "resolve_transformer",
    "save_transformer",
    "transformer_bytes",
]

NumericScaling = Literal["standard", "minmax", "none"]
CategoricalEncoding = Literal["onehot", "ordinal"]
MISSING_CATEGORY = "__missing__"
"""What the categorical imputer writes for a missing string value."""

_NUMERIC: tuple[str, ...] = ("standard", "minmax", "none")
_CATEGORICAL: tuple[str, ...] = ("onehot", "ordinal")
_SPEC_KEYS = ("class", "params")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


class TransformError(BundleError):
    """The preprocessing cannot be built, fitted or stored: bad strategy, bad transformer
    spec, a feature missing from the train split, types a bundle would refuse to load."""


@dataclass(frozen=True)
class FeaturePlan:
    """Which columns the default preprocessing uses, by group, and which it leaves out (why).

    Example:
        >>> plan_features(schema).excluded
        {'id': 'identifier', 'income': 'label'}
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    boolean: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def used(self) -> tuple[str, ...]:
        """Every column the preprocessing reads, group by group."""
        return (*self.numeric, *self.categorical, *self.boolean)


def plan_features(
    schema: Schema, *, label: str | None = None, columns: Collection[str] | None = None
) -> FeaturePlan:
    """Sort the schema's features into numeric, categorical and boolean groups.

    Args:
        schema: the data schema.
        label: the label column (default: ``schema.label``); never a feature.
        columns: the columns the data has; an absent optional feature is left out, an
            absent required one is a TransformError.
    """
    label = label if label is not None else schema.label
    groups: dict[FeatureType, list[str]] = {t: [] for t in FeatureType}
    excluded: dict[str, str] = {}
    for name in sorted(schema.features):
        feature = schema.features[name]
        reason = _exclusion(name, feature.identifier, feature.type, label)
        if reason is None and columns is not None and name not in columns:
            if feature.required:
                hint = did_you_mean(name, [str(c) for c in columns])
                raise TransformError(f"required feature {name!r} is not in the data{hint}")
            reason = "absent"
        if reason is not None:
            excluded[name] = reason
        else:
            groups[feature.type].append(name)
    numeric = (*groups[FeatureType.INT], *groups[FeatureType.FLOAT])
    plan = FeaturePlan(
        tuple(sorted(numeric)),
        tuple(groups[FeatureType.STRING]),
        tuple(groups[FeatureType.BOOL]),
        excluded,
    )
    if not plan.used:
        raise TransformError(
            f"the schema leaves no feature to preprocess (left out: {excluded or 'none'})"
        )
    return plan


def _exclusion(name: str, identifier: bool, kind: FeatureType, label: str | None) -> str | None:
    if name == label:
        return "label"
    if identifier:
        return "identifier"
    if kind is FeatureType.DATETIME:
        return "datetime"  # derive numbers from dates with a transformer of your own
    return None


def _choice(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise TransformError(
            f"unknown {what} {value!r}{did_you_mean(value, valid)}; choose one of {list(valid)}"
        )
    return value


def _encoder(categorical: str) -> OneHotEncoder | OrdinalEncoder:
    if categorical == "onehot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
    )


def _numeric_steps(numeric: str, impute: bool) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = []
    if impute:
        # keep_empty_features: an all-missing column stays a column, so widths never change
        steps.append(("impute", SimpleImputer(strategy="median", keep_empty_features=True)))
    if numeric == "standard":
        steps.append(("scale", StandardScaler()))
    elif numeric == "minmax":
        steps.append(("scale", MinMaxScaler()))
    return steps


def build_preprocessor(
    schema: Schema,
    *,
    numeric: NumericScaling = "standard",
    categorical: CategoricalEncoding = "onehot",
    impute: bool = True,
    label: str | None = None,
    columns: Collection[str] | None = None,
) -> ColumnTransformer:
    """The default preprocessing for ``schema``, unfitted (see the module docstring).

    Args:
        schema: decides the columns and their groups (identifiers, label, datetimes left out).
        numeric: ``"standard"`` (zero mean, unit variance), ``"minmax"`` ([0, 1]) or ``"none"``.
        categorical: ``"onehot"`` (unknown values: all zeros) or ``"ordinal"`` (unknown: -1).
        impute: fill missing numbers with the train median and strings with ``"__missing__"``.
        label: the label column (default: ``schema.label``).
        columns: the data's columns (see :func:`plan_features`).

    Example:
        >>> prep = build_preprocessor(schema, numeric="minmax", categorical="ordinal")
        >>> prep.fit(train.drop(columns=["income"])).transform(eval_features).shape
        (250, 6)
    """
    _choice(numeric, _NUMERIC, "numeric scaling")
    _choice(categorical, _CATEGORICAL, "categorical encoding")
    plan = plan_features(schema, label=label, columns=columns)
    parts: list[tuple[str, Any, list[str]]] = []
    if plan.numeric:
        steps = _numeric_steps(numeric, impute)
        parts.append(("numeric", Pipeline(steps) if steps else "passthrough", list(plan.numeric)))
    if plan.categorical:
        steps = [("encode", _encoder(categorical))]
        if impute:
            fill = SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
            steps.insert(0, ("impute", fill))
        parts.append(("categorical", Pipeline(steps), list(plan.categorical)))
    if plan.boolean:
        parts.append(("boolean", _encoder(categorical), list(plan.boolean)))
    # Dense numpy output: every flavour takes it, and no generated column name ("x_<=50K")
    # can upset a booster's feature-name rules.
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _import_class(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise TransformError(f"transformer class {path!r} must be 'package.module.Class'")
    try:
        found = getattr(importlib.import_module(module_name), name, None)
    except ImportError as exc:
        raise TransformError(f"cannot import transformer class {path!r}: {exc}") from exc
    if not isinstance(found, type):
        raise TransformError(f"{path!r} is not a class in {module_name}")
    return found


def _from_spec(spec: Mapping[str, Any]) -> Any:
    for key in spec:
        if key not in _SPEC_KEYS:
            hint = did_you_mean(str(key), _SPEC_KEYS)
            raise TransformError(f"unknown transformer spec key {key!r}{hint}")
    path, params = spec.get("class"), spec.get("params", {})
    if not isinstance(path, str):
        raise TransformError(
            "a transformer spec needs 'class', e.g. 'sklearn.preprocessing.PolynomialFeatures'"
        )
    if not isinstance(params, Mapping):
        raise TransformError(f"transformer spec 'params' must be a dict, not {params!r}")
    try:
        return _import_class(path)(**params)
    except TypeError as exc:
        raise TransformError(f"{path}: bad params {sorted(params)}: {exc}") from exc


def _from_function(path: str, schema: Schema) -> Any:
    if path.count(":") != 1 or not all(path.split(":")):
        raise TransformError(f"transformer {path!r} must be 'module:function' or a spec dict")
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransformError(f"cannot import transformer module {module_name!r}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise TransformError(f"{module_name} has no function {name!r}{did_you_mean(name, names)}")
    try:
        # A factory may ask for the schema (one parameter) or not (none).
        return fn(schema) if inspect.signature(fn).parameters else fn()
    except Exception as exc:
        raise TransformError(f"transformer function {path!r} raised: {exc}") from exc


def resolve_transformer(spec: Mapping[str, Any] | str | Any, schema: Schema) -> Any:
    """An unfitted transformer from a spec dict, a ``"module:function"`` path or an object.

    A function is called with the schema when it takes a parameter, without otherwise.

    Example:
        >>> resolve_transformer({"class": "sklearn.preprocessing.PolynomialFeatures",
        ...                      "params": {"degree": 2}}, schema)
        PolynomialFeatures()
    """
    if isinstance(spec, Mapping):
        found = _from_spec(spec)
    elif isinstance(spec, str):
        found = _from_function(spec, schema)
    else:
        found = spec
    if not (hasattr(found, "fit") and hasattr(found, "transform")):
        raise TransformError(
            f"{type(found).__name__} is not a transformer: it needs fit() and transform()"
        )
    return found


def _features(frame: pd.DataFrame, label: str | None) -> pd.DataFrame:
    # Exactly what serving passes to the preprocessing: every input column, label removed.
    return frame.drop(columns=[label]) if label is not None and label in frame else frame


def fit_preprocessor(
    train: pd.DataFrame,
    schema: Schema,
    *,
    numeric: NumericScaling = "standard",
    categorical: CategoricalEncoding = "onehot",
    impute: bool = True,
    transformer: Mapping[str, Any] | str | Any | None = None,
    label: str | None = None,
) -> Any:
    """Fit the preprocessing on the train split's features (label removed); nothing else.

    ``transformer`` replaces the default built from the schema (see
    :func:`resolve_transformer`); ``numeric``, ``categorical`` and ``impute`` shape the default.

    Example:
        >>> prep = fit_preprocessor(train, schema)
        >>> prep.named_transformers_["numeric"]["scale"].mean_  # from train only
        array([38.6, 40.4])
    """
    label = label if label is not None else schema.label
    features = _features(train, label)
    if transformer is None:
        chosen: Any = build_preprocessor(
            schema,
            numeric=numeric,
            categorical=categorical,
            impute=impute,
            label=label,
            columns=[str(c) for c in features.columns],
        )
    else:
        chosen = resolve_transformer(transformer, schema)
    try:
        return chosen.fit(features)
    except Exception as exc:
        raise TransformError(
            f"{type(chosen).__name__} failed to fit on the train split: {exc}"
        ) from exc


@dataclass(frozen=True)
class TransformResult:
    """A transformer fitted on train, and every split transformed by it.

    Example:
        >>> result = fit_transform_on_train({"train": train, "eval": eval_}, schema)
        >>> result.splits["eval"].shape
        (250, 9)
    """

    transformer: Any
    splits: dict[str, Any]
    feature_names: list[str] | None


def fit_transform_on_train(
    splits: Mapping[str, pd.DataFrame],
    schema: Schema,
    *,
    train_split: str = "train",
    numeric: NumericScaling = "standard",
    categorical: CategoricalEncoding = "onehot",
    impute: bool = True,
    transformer: Mapping[str, Any] | str | Any | None = None,
    label: str | None = None,
) -> TransformResult:
    """Fit on ``splits[train_split]`` only, then transform every split (label removed).

    Raises:
        TransformError: no train split, a bad spec, or a split the fitted transformer fails
            on (named).
    """
    if train_split not in splits:
        hint = did_you_mean(train_split, [str(name) for name in splits])
        raise TransformError(f"no {train_split!r} split to fit on{hint}")
    label = label if label is not None else schema.label
    fitted = fit_preprocessor(
        splits[train_split],
        schema,
        numeric=numeric,
        categorical=categorical,
        impute=impute,
        transformer=transformer,
        label=label,
    )
    out: dict[str, Any] = {}
    for name, frame in splits.items():
        try:
            out[name] = fitted.transform(_features(frame, label))
        except Exception as exc:
            raise TransformError(
                f"the fitted preprocessing fails on split {name!r}: {exc}"
            ) from exc
    return TransformResult(fitted, out, _feature_names(fitted))


def _feature_names(fitted: Any) -> list[str] | None:
    try:
        return [str(n) for n in fitted.get_feature_names_out()]
    except Exception:  # not every transformer can name its outputs
        return None


def _canonical_schema(schema: Any) -> tuple[Any, dict[str, str]]:
    """``schema.json`` with object ids renumbered in order of appearance, and the member
    renames that go with them (skops names arrays ``<id>.npy`` and bytes ``<uuid>.bin``)."""
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def new_id(old: int) -> int:
        return ids.setdefault(old, len(ids) + 1)  # 0 would read as "no id" to skops

    def rename(name: str) -> str:
        stem, _, suffix = name.rpartition(".")
        fresh = str(new_id(int(stem))) if stem.isdigit() else f"blob{len(files)}"
        return files.setdefault(name, f"{fresh}.{suffix}")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    node[key] = new_id(value)
                elif key == "file" and isinstance(value, str):
                    node[key] = rename(value)
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(schema)
    return schema, files


def transformer_bytes(transformer: Any) -> bytes:
    """The skops archive of a fitted transformer, byte-identical for equal transformers.

    Raises:
        TransformError: skops cannot save it, or it holds types a bundle refuses to load
            (anything but scikit-learn, numpy, scipy and safe builtins).
    """
    kind = f"{type(transformer).__module__}.{type(transformer).__qualname__}"
    try:
        raw = skops.io.dumps(transformer)
        untrusted = skops.io.get_untrusted_types(data=raw)
    except Exception as exc:  # skops raises TypeErrors and its own errors for unsupported parts
        raise TransformError(f"skops cannot save the preprocessing ({kind}): {exc}") from exc
    _, refused = trusted_types(untrusted)
    if refused:
        raise TransformError(
            f"the preprocessing ({kind}) contains types {sorted(refused)} that a bundle will "
            "not load (only scikit-learn, numpy and scipy types are trusted); compose "
            "scikit-learn transformers instead"
        )
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        schema, files = _canonical_schema(json.loads(source.read("schema.json")))
        members = sorted((files[name], source.read(name)) for name in files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, data in [*members, ("schema.json", json.dumps(schema, indent=2).encode())]:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED  # schema.json is mostly indentation
            info.external_attr = 0o644 << 16
            target.writestr(info, data)
    return buffer.getvalue()


def save_transformer(transformer: Any, folder: Path) -> dict[str, Any]:
    """Write ``folder/model.skops`` (what the "Model" materializer reads); return properties."""
    (folder / MODEL_FILE).write_bytes(transformer_bytes(transformer))
    names = _feature_names(transformer)
    return {
        "flavour": "sklearn",
        "estimator": type(transformer).__name__,
        "estimator_class": f"{type(transformer).__module__}.{type(transformer).__qualname__}",
        "sklearn_version": sklearn.__version__,
        "n_features_out": None if names is None else len(names),
        "features_out": None if names is None else names[:200],
        "n_features_in": int(getattr(transformer, "n_features_in_", 0)) or None,
    }
