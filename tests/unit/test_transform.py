"""The default preprocessing built from a schema, fitted on the train split only."""

from __future__ import annotations

import hashlib
import io
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures

from conveyor.data.schema import FeatureSchema, Schema
from conveyor.materializers.sklearn import MODEL_FILE, SklearnMaterializer
from conveyor.modeling.bundle import load_bundle
from conveyor.modeling.training import fit_model
from conveyor.modeling.transform import (
    MISSING_CATEGORY,
    TransformError,
    build_preprocessor,
    fit_preprocessor,
    fit_transform_on_train,
    plan_features,
    resolve_transformer,
    save_transformer,
    transformer_bytes,
)


def _schema() -> Schema:
    kinds = {
        "id": FeatureSchema(type="int", identifier=True),
        "age": FeatureSchema(type="int"),
        "hours": FeatureSchema(type="float", max_missing_fraction=0.5),
        "city": FeatureSchema(type="string", max_missing_fraction=0.5),
        "member": FeatureSchema(type="bool"),
        "seen_at": FeatureSchema(type="datetime"),
        "y": FeatureSchema(type="string"),
    }
    return Schema(label="y", features=kinds)


def _parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a Dataset split reads it back (pandas dtypes after a Parquet round trip)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return pd.read_parquet(io.BytesIO(buffer.getvalue()))


def _frame(
    n: int, seed: int, *, shift: float = 0.0, cities: tuple[str, ...] = ("a", "b")
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hours = rng.normal(40 + shift, 5, n)
    hours[::7] = np.nan
    city = rng.choice(np.array(cities, dtype=object), n)
    city[::5] = None
    return _parquet(
        pd.DataFrame(
            {
                "id": np.arange(n) + seed * 10_000,
                "age": rng.integers(18, 70, n) + int(shift),
                "hours": hours,
                "city": city,
                "member": rng.choice([True, False], n),
                "seen_at": pd.Timestamp("2024-01-01"),
                "y": rng.choice(["no", "yes"], n),
            }
        )
    )


def _sha(transformer: object) -> str:
    return hashlib.sha256(transformer_bytes(transformer)).hexdigest()


def test_plan_groups_features_and_leaves_out_identifiers_label_and_datetimes() -> None:
    plan = plan_features(_schema())
    assert plan.numeric == ("age", "hours")
    assert plan.categorical == ("city",)
    assert plan.boolean == ("member",)
    assert plan.excluded == {"id": "identifier", "seen_at": "datetime", "y": "label"}


def test_default_preprocessor_learns_from_train_only_values() -> None:
    train = _frame(300, 1)
    prep = fit_preprocessor(train, _schema())
    numeric = prep.named_transformers_["numeric"]
    observed = train[["age", "hours"]]
    np.testing.assert_allclose(numeric["impute"].statistics_, observed.median().to_numpy())
    np.testing.assert_allclose(numeric["scale"].mean_, observed.fillna(observed.median()).mean())
    categories = prep.named_transformers_["categorical"]["encode"].categories_[0]
    assert sorted(categories) == sorted([MISSING_CATEGORY, "a", "b"])
    assert prep.get_feature_names_out().tolist()[:2] == ["numeric__age", "numeric__hours"]


def test_eval_statistics_never_reach_the_fitted_transformer() -> None:
    train = _frame(300, 1)
    # Eval: another world. Means 1000 higher, categories train never saw.
    wild = _frame(200, 2, shift=1000.0, cities=("zurich", "oslo"))
    tame = _frame(200, 3)
    fitted = fit_transform_on_train({"train": train, "eval": wild}, _schema())
    alone = fit_preprocessor(train, _schema())
    scaler = fitted.transformer.named_transformers_["numeric"]["scale"]
    np.testing.assert_array_equal(scaler.mean_, alone.named_transformers_["numeric"]["scale"].mean_)
    assert scaler.mean_[0] < 100  # age from train, not eval's 1000+
    encoder = fitted.transformer.named_transformers_["categorical"]["encode"]
    assert "zurich" not in encoder.categories_[0] and "oslo" not in encoder.categories_[0]
    # Unseen categories are ignored: all-zero one-hot columns, no error.
    names = fitted.feature_names or []
    city_columns = [i for i, n in enumerate(names) if n.startswith("categorical__city_")]
    assert np.all(fitted.splits["eval"][:, city_columns][wild["city"].notna()] == 0)
    # Another eval split: byte-identical stored transformer.
    other = fit_transform_on_train({"train": train, "eval": tame}, _schema())
    assert _sha(fitted.transformer) == _sha(other.transformer) == _sha(alone)


def test_transformer_bytes_are_deterministic_and_load_with_trusted_types(tmp_path: Path) -> None:
    train = _frame(120, 4)
    first, second = fit_preprocessor(train, _schema()), fit_preprocessor(train, _schema())
    assert transformer_bytes(first) == transformer_bytes(second)
    props = save_transformer(first, tmp_path)
    assert props["estimator"] == "ColumnTransformer" and props["n_features_out"] == 7
    loaded = SklearnMaterializer().load(tmp_path, ColumnTransformer)
    np.testing.assert_array_equal(loaded.transform(train), first.transform(train))
    assert (tmp_path / MODEL_FILE).read_bytes() == transformer_bytes(first)


@pytest.mark.parametrize(
    ("numeric", "categorical", "width"),
    [("standard", "onehot", 7), ("minmax", "ordinal", 4), ("none", "onehot", 7)],
)
def test_strategies(numeric: str, categorical: str, width: int) -> None:
    train, other = _frame(200, 5), _frame(50, 6, cities=("c",))
    result = fit_transform_on_train(
        {"train": train, "eval": other},
        _schema(),
        numeric=numeric,  # type: ignore[arg-type]
        categorical=categorical,  # type: ignore[arg-type]
    )
    out = result.splits["train"]
    assert out.shape == (200, width) and not np.isnan(out).any()
    if numeric == "minmax":
        assert out[:, :2].min() == 0.0 and out[:, :2].max() == 1.0
    if numeric == "none":
        np.testing.assert_array_equal(out[:, 0], train["age"].to_numpy())
    if categorical == "ordinal":  # an unseen city is -1
        assert set(result.splits["eval"][other["city"].notna().to_numpy(), 2]) == {-1.0}


def test_without_imputation_missing_values_pass_through() -> None:
    train = _frame(100, 7)
    out = fit_transform_on_train({"train": train}, _schema(), impute=False).splits["train"]
    assert np.isnan(out[:, 1]).sum() == train["hours"].isna().sum()


def test_a_required_feature_missing_from_train_is_named() -> None:
    train = _frame(50, 8).drop(columns=["hours"])
    with pytest.raises(TransformError, match="required feature 'hours' is not in the data"):
        fit_preprocessor(train, _schema())
    optional = _schema().model_copy(deep=True)
    optional.features["hours"].required = False
    names = fit_preprocessor(train, optional).get_feature_names_out()
    assert not any("hours" in name for name in names)
    assert plan_features(optional, columns=list(train.columns)).excluded["hours"] == "absent"


def test_bad_strategy_and_empty_schema() -> None:
    with pytest.raises(TransformError, match=r"unknown numeric scaling 'standart'.*'standard'"):
        build_preprocessor(_schema(), numeric="standart")  # type: ignore[arg-type]
    only_label = Schema(label="y", features={"y": FeatureSchema(type="string")})
    with pytest.raises(TransformError, match="no feature to preprocess"):
        build_preprocessor(only_label)


def test_a_transformer_spec_replaces_the_default() -> None:
    schema = Schema(label="y", features={c: FeatureSchema(type="float") for c in "aby"})
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.0, 1.0], "y": [0.0, 1.0, 0.0]})
    spec = {"class": "sklearn.preprocessing.PolynomialFeatures", "params": {"degree": 2}}
    fitted = fit_preprocessor(train, schema, transformer=spec)
    assert isinstance(fitted, PolynomialFeatures) and fitted.n_features_in_ == 2  # label out
    assert fitted.transform(train.drop(columns="y")).shape == (3, 6)


def test_a_transformer_function_may_take_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_prep.py").write_text(
        textwrap.dedent(
            """
            from sklearn.preprocessing import StandardScaler

            def scaler():
                return StandardScaler(with_mean=False)

            def numeric_only(schema):
                from sklearn.compose import make_column_transformer
                names = [n for n, f in schema.features.items() if f.type == "float"]
                return make_column_transformer((StandardScaler(), names))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    schema = Schema(features={"a": FeatureSchema(type="float"), "s": FeatureSchema(type="string")})
    assert resolve_transformer("my_prep:scaler", schema).with_mean is False
    frame = pd.DataFrame({"a": [1.0, 3.0], "s": ["x", "y"]})
    fitted = fit_preprocessor(frame, schema, transformer="my_prep:numeric_only")
    np.testing.assert_allclose(fitted.transform(frame).ravel(), [-1.0, 1.0])
    sys.modules.pop("my_prep", None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"klass": "x"}, "unknown transformer spec key 'klass' \\(did you mean 'class'\\?\\)"),
        ({"params": {}}, "needs 'class'"),
        ({"class": "sklearn.preprocessing.Nope"}, "'sklearn.preprocessing.Nope' is not a class"),
        ({"class": "sklearn.preprocessing.StandardScaler", "params": {"wat": 1}}, "bad params"),
        ({"class": "sklearn.linear_model.LinearRegression"}, "not a transformer"),
        ("no_colon", "must be 'module:function'"),
        ("conveyor.modeling.transform:nothing_here", "has no function 'nothing_here'"),
    ],
)
def test_bad_transformer_specs_are_named(spec: object, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        resolve_transformer(spec, _schema())


def test_a_transformer_failing_to_fit_is_wrapped() -> None:
    spec = {"class": "sklearn.preprocessing.PolynomialFeatures"}  # strings cannot be squared
    with pytest.raises(TransformError, match="PolynomialFeatures failed to fit on the train"):
        fit_preprocessor(_frame(20, 9), _schema(), transformer=spec)


def test_untrusted_types_are_refused_before_they_are_stored() -> None:
    custom = FunctionTransformer(func=_double).fit(np.ones((2, 1)))
    with pytest.raises(TransformError, match=r"test_transform\._double"):
        transformer_bytes(custom)


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


def test_the_bundle_applies_the_fitted_preprocessing(tmp_path: Path) -> None:
    train, eval_ = _frame(300, 10), _frame(100, 11, cities=("a", "b", "new"))
    prep = fit_preprocessor(train.drop(columns=["seen_at"]), _schema())
    result = fit_model(
        train.drop(columns=["seen_at"]),
        label="y",
        estimator={"flavour": "sklearn", "class": "sklearn.linear_model.LogisticRegression"},
        preprocessing=prep,
    )
    result.save(tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    features = eval_.drop(columns=["seen_at", "y"])
    direct = LogisticRegression().fit(
        prep.transform(train.drop(columns=["seen_at", "y"])), train["y"]
    )
    np.testing.assert_allclose(
        bundle.predict_proba(features), direct.predict_proba(prep.transform(features))
    )


def test_the_component_reads_the_train_split_only(tmp_path: Path) -> None:
    from conveyor import Dataset
    from conveyor.components.model_transform import transform

    for name, frame in (("train", _frame(80, 12)), ("eval", _frame(40, 13, shift=500.0))):
        (tmp_path / f"split={name}").mkdir()
        frame.to_parquet(tmp_path / f"split={name}" / "part-0.parquet", index=False)
    handle = transform(Dataset.from_path(tmp_path), _schema(), numeric="minmax")
    assert handle.properties["fitted_on"] == "train" and handle.properties["n_train"] == 80
    assert handle.properties["excluded"] == {
        "id": "identifier",
        "seen_at": "datetime",
        "y": "label",
    }
    stored = (handle.path / MODEL_FILE).read_bytes()
    alone = fit_preprocessor(_frame(80, 12), _schema(), numeric="minmax")
    assert stored == transformer_bytes(alone)
    only_eval = tmp_path / "only-eval"
    only_eval.mkdir()
    (tmp_path / "split=eval").rename(only_eval / "split=eval")
    with pytest.raises(TransformError, match=r"no split=train sub-folder \(it has: \['eval'\]\)"):
        transform(Dataset.from_path(only_eval), _schema())


def test_fit_transform_on_train_names_a_missing_train_split_and_a_failing_split() -> None:
    with pytest.raises(TransformError, match=r"no 'train' split to fit on \(did you mean 'trian'"):
        fit_transform_on_train({"trian": _frame(20, 14)}, _schema())
    broken = _frame(20, 15).assign(age="old")  # text where train had numbers
    with pytest.raises(TransformError, match="fails on split 'eval'"):
        fit_transform_on_train({"train": _frame(20, 14), "eval": broken}, _schema())
