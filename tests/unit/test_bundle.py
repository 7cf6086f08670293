"""Model bundles: round trips per flavour, integrity, malicious payloads, signatures."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from conveyor.modeling.bundle import ModelBundle, load_bundle, save_bundle, verify_bundle
from conveyor.modeling.bundle_errors import (
    BundleError,
    BundleIntegrityError,
    FlavourError,
    SignatureError,
    UnsafeBundleError,
)
from conveyor.modeling.bundle_manifest import hash_files, read_manifest, write_manifest
from conveyor.modeling.bundle_signature import ColumnSpec, Signature, infer_signature
from conveyor.modeling.environment import capture_environment, git_state

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50.0, 10.0, n),
            "city": rng.choice(["lyon", "paris", "nice"], n),
        }
    )
    frame["label"] = np.where(frame["income"] + (frame["city"] == "nice") * 8 > 52, "hi", "lo")
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture
def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["age", "income"]]


@pytest.fixture
def sklearn_bundle(tmp_path: Path, frame: pd.DataFrame, numeric: pd.DataFrame) -> Path:
    model = LogisticRegression(max_iter=500).fit(numeric, frame["label"])
    save_bundle(tmp_path / "bundle", model, signature=numeric, task="binary", metrics={"acc": 0.9})
    return tmp_path / "bundle"


# -- round trips ------------------------------------------------------------------------


def test_sklearn_round_trip_predicts_like_the_model(
    tmp_path: Path, frame: pd.DataFrame, numeric: pd.DataFrame
) -> None:
    model = LogisticRegression(max_iter=500).fit(numeric, frame["label"])
    manifest = save_bundle(
        tmp_path / "b", model, signature=numeric, task="binary", seed=7, lineage={"run_id": 3}
    )
    assert manifest.flavour_name == "sklearn" and manifest.classes == ("hi", "lo")
    assert (tmp_path / "b" / "bundle.sha256").read_text().strip() == manifest.sha256
    loaded = load_bundle(tmp_path / "b")
    assert loaded.manifest == manifest
    assert np.array_equal(loaded.predict(numeric), model.predict(numeric))
    assert np.allclose(loaded.predict_proba(numeric), model.predict_proba(numeric))
    assert [o.name for o in loaded.signature.outputs] == ["label", "probabilities"]
    assert loaded.signature.outputs[1].shape == (-1, 2)


def test_preprocessing_is_saved_with_skops_and_applied_before_the_model(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    features = frame.drop(columns="label")
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["city"])]
    ).fit(features)
    model = LogisticRegression(max_iter=500).fit(prep.transform(features), frame["label"])
    manifest = save_bundle(
        tmp_path / "b", model, preprocessing=prep, signature=features, task="binary"
    )
    assert manifest.preprocessing is not None
    assert manifest.preprocessing["file"] in manifest.files
    loaded = load_bundle(tmp_path / "b")
    expected = model.predict_proba(prep.transform(features))
    assert np.allclose(loaded.predict_proba(features), expected)


def test_xgboost_wrapper_round_trip_keeps_class_labels(
    tmp_path: Path, frame: pd.DataFrame, numeric: pd.DataFrame
) -> None:
    codes = (frame["label"] == "lo").astype(int)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(numeric, codes)
    manifest = save_bundle(
        tmp_path / "b", model, signature=numeric, task="binary", classes=["hi", "lo"]
    )
    assert manifest.model["files"] == ["model/model.ubj"]
    loaded = load_bundle(tmp_path / "b")
    assert np.allclose(loaded.predict_proba(numeric), model.predict_proba(numeric), atol=1e-6)
    expected = np.where(model.predict(numeric) == 1, "lo", "hi")
    assert np.array_equal(loaded.predict(numeric), expected)


def test_xgboost_classes_are_required_when_the_model_does_not_know_its_labels(
    tmp_path: Path, frame: pd.DataFrame, numeric: pd.DataFrame
) -> None:
    model = xgb.XGBClassifier(n_estimators=2).fit(numeric, (frame["label"] == "lo").astype(int))
    with pytest.raises(SignatureError, match=r"pass classes= for a binary xgboost model"):
        save_bundle(tmp_path / "b", model, signature=numeric, task="binary")
    assert not (tmp_path / "b").exists()


def test_xgboost_booster_regression_round_trip(tmp_path: Path, numeric: pd.DataFrame) -> None:
    target = numeric["income"] * 2.0
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(numeric, target), num_boost_round=10)
    save_bundle(tmp_path / "b", booster, signature=numeric, task="regression")
    loaded = load_bundle(tmp_path / "b")
    assert np.allclose(loaded.predict(numeric), booster.predict(xgb.DMatrix(numeric)))
    with pytest.raises(BundleError, match=r"predict_proba is for classification"):
        loaded.predict_proba(numeric)


def test_lightgbm_round_trip_classifier_and_regressor(
    tmp_path: Path, frame: pd.DataFrame, numeric: pd.DataFrame
) -> None:
    clf = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(numeric, frame["label"])
    save_bundle(tmp_path / "c", clf, signature=numeric, task="binary")
    loaded = load_bundle(tmp_path / "c")
    assert loaded.manifest.classes == ("hi", "lo")
    assert np.allclose(loaded.predict_proba(numeric), clf.predict_proba(numeric))
    assert np.array_equal(loaded.predict(numeric), clf.predict(numeric))

    reg = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(numeric, numeric["income"])
    save_bundle(tmp_path / "r", reg, signature=numeric, task="regression")
    assert np.allclose(load_bundle(tmp_path / "r").predict(numeric), reg.predict(numeric))


def test_model_bundle_handle_opens_a_bundle(sklearn_bundle: Path, numeric: pd.DataFrame) -> None:
    handle = ModelBundle.from_path(sklearn_bundle, flavour="sklearn")
    assert handle.type_name == "ModelBundle"
    assert handle.manifest.metrics == {"acc": 0.9}
    assert handle.verify().sha256 == handle.manifest.sha256
    assert handle.open().predict(numeric).shape == (len(numeric),)


# -- saving -------------------------------------------------------------------------------


def test_save_refuses_a_non_empty_folder(tmp_path: Path, numeric: pd.DataFrame) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    model = LinearRegression().fit(numeric, numeric["income"])
    with pytest.raises(BundleError, match=r"exists and is not empty"):
        save_bundle(tmp_path / "b", model, signature=numeric, task="regression")
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_a_model_skops_would_not_load_is_refused_when_saving_and_leaves_nothing(
    tmp_path: Path, numeric: pd.DataFrame
) -> None:
    model = FunctionTransformer(func=np.log1p)  # a numpy ufunc: trusted
    save_bundle(tmp_path / "ok", model.fit(numeric), signature=numeric, task="regression")
    evil = EvilEstimator()
    with pytest.raises(FlavourError, match=r"EvilEstimator.*will not load"):
        save_bundle(tmp_path / "b", evil, signature=numeric, task="regression")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_metrics_must_be_finite_numbers(tmp_path: Path, numeric: pd.DataFrame) -> None:
    model = LinearRegression().fit(numeric, numeric["income"])
    with pytest.raises(BundleError, match=r"metric 'rmse' is nan"):
        save_bundle(
            tmp_path / "b", model, signature=numeric, task="regression", metrics={"rmse": np.nan}
        )


def test_environment_names_python_packages_and_git() -> None:
    env = capture_environment()
    assert env["python"].count(".") == 2
    assert {"numpy", "pandas", "scikit-learn", "skops"} <= set(env["packages"])
    repo = git_state(Path(__file__).parent)
    assert repo is not None and re.fullmatch(r"[0-9a-f]{40}", repo["commit"])
    assert isinstance(repo["dirty"], bool)


def test_git_state_is_none_outside_a_repository(tmp_path: Path) -> None:
    assert git_state(tmp_path) is None


# -- tampering ------------------------------------------------------------------------------


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_a_changed_byte_in_the_model_file_is_refused(sklearn_bundle: Path) -> None:
    _flip_byte(sklearn_bundle / "model" / "model.skops", offset=100)
    with pytest.raises(BundleIntegrityError, match=r"file 'model/model.skops' was changed"):
        verify_bundle(sklearn_bundle)
    with pytest.raises(BundleIntegrityError, match=r"model/model.skops"):
        load_bundle(sklearn_bundle)


def test_a_changed_value_in_bundle_json_is_refused(sklearn_bundle: Path) -> None:
    path = sklearn_bundle / "bundle.json"
    path.write_text(path.read_text().replace('"acc": 0.9', '"acc": 0.99'))
    with pytest.raises(BundleIntegrityError, match=r"file 'bundle.json' was changed"):
        load_bundle(sklearn_bundle)


def test_a_changed_byte_in_bundle_json_layout_is_refused(sklearn_bundle: Path) -> None:
    path = sklearn_bundle / "bundle.json"
    path.write_text(path.read_text().replace('{\n  "created_at"', '{\n   "created_at"'))
    with pytest.raises(BundleIntegrityError, match=r"'bundle.json' was edited"):
        verify_bundle(sklearn_bundle)


def test_a_broken_bundle_json_is_refused(sklearn_bundle: Path) -> None:
    _flip_byte(sklearn_bundle / "bundle.json", offset=0)  # "{" becomes "z"
    with pytest.raises(BundleIntegrityError, match=r"bundle.json is not valid JSON"):
        verify_bundle(sklearn_bundle)


def test_added_and_missing_files_are_refused(sklearn_bundle: Path) -> None:
    (sklearn_bundle / "model" / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(
        BundleIntegrityError, match=r"file 'model/extra.bin' is not in the manifest"
    ):
        verify_bundle(sklearn_bundle)
    (sklearn_bundle / "model" / "extra.bin").unlink()
    (sklearn_bundle / "model" / "model.skops").unlink()
    with pytest.raises(BundleIntegrityError, match=r"file 'model/model.skops' is missing"):
        verify_bundle(sklearn_bundle)


def test_a_changed_manifest_hash_is_refused(sklearn_bundle: Path) -> None:
    (sklearn_bundle / "bundle.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(BundleIntegrityError, match=r"does not match bundle.sha256"):
        verify_bundle(sklearn_bundle)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleIntegrityError, match=r"no bundle.json: not a model bundle"):
        load_bundle(tmp_path)


# -- malicious payloads --------------------------------------------------------------------


class PickleBomb:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


class EvilEstimator(BaseEstimator):
    """A skops file holding this runs ``__setstate__`` when loaded with it trusted."""

    marker: str = ""

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state.get("marker") or os.environ["EVIL_MARKER"]).write_text("code ran")
        self.__dict__.update(state)


def _rehash(folder: Path, **changes: Any) -> None:
    """Rewrite the manifest as an attacker with write access would: hashes all consistent."""
    manifest = read_manifest(folder)
    write_manifest(folder, dataclasses.replace(manifest, files=hash_files(folder), **changes))


def test_a_pickle_in_a_bundle_is_never_unpickled(tmp_path: Path, sklearn_bundle: Path) -> None:
    marker = tmp_path / "PWNED"
    (sklearn_bundle / "model" / "model.skops").unlink()
    (sklearn_bundle / "model" / "model.pkl").write_bytes(pickle.dumps(PickleBomb(marker)))
    _rehash(sklearn_bundle, model={"path": "model", "files": ["model/model.pkl"]})
    verify_bundle(sklearn_bundle)  # the hashes are consistent: integrity is not the defence
    for verify in (True, False):
        with pytest.raises(UnsafeBundleError, match=r"'model/model.pkl' is a pickle"):
            load_bundle(sklearn_bundle, verify=verify)
    assert not marker.exists()
    pickle.loads((sklearn_bundle / "model" / "model.pkl").read_bytes())  # the payload is live
    assert marker.exists()


def test_a_pickle_disguised_as_a_skops_file_is_never_unpickled(
    tmp_path: Path, sklearn_bundle: Path
) -> None:
    marker = tmp_path / "PWNED"
    target = sklearn_bundle / "model" / "model.skops"
    target.chmod(0o644)
    target.write_bytes(pickle.dumps(PickleBomb(marker)))
    _rehash(sklearn_bundle)
    with pytest.raises(UnsafeBundleError, match=r"'model/model.skops' is a pickle"):
        load_bundle(sklearn_bundle)
    target.write_bytes(pickle.dumps(PickleBomb(marker), protocol=0))  # no PROTO header
    _rehash(sklearn_bundle)
    with pytest.raises(UnsafeBundleError, match=r"not a skops file .*never pickles"):
        load_bundle(sklearn_bundle)
    assert not marker.exists()


def test_a_skops_file_with_a_custom_type_is_refused_by_name(
    tmp_path: Path, sklearn_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "PWNED"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    target = sklearn_bundle / "model" / "model.skops"
    target.chmod(0o644)
    skops.io.dump(EvilEstimator(), target)
    _rehash(sklearn_bundle)
    with pytest.raises(UnsafeBundleError, match=r"untrusted types \[.*EvilEstimator'\]"):
        load_bundle(sklearn_bundle)
    assert not marker.exists()
    skops.io.load(target, trusted=skops.io.get_untrusted_types(file=target))  # the payload is live
    assert marker.exists()


def test_a_skops_file_referencing_os_system_is_refused_by_name(
    tmp_path: Path, sklearn_bundle: Path, frame: pd.DataFrame
) -> None:
    target = sklearn_bundle / "preprocessing" / "preprocessing.skops"
    target.parent.mkdir()
    skops.io.dump(FunctionTransformer(func=os.system), target)
    prep = {"file": "preprocessing/preprocessing.skops", "format": "skops", "class": "x"}
    _rehash(sklearn_bundle, preprocessing=prep)
    system = f"{os.system.__module__}.system"
    with pytest.raises(UnsafeBundleError, match=rf"preprocessing .*untrusted types \['{system}'\]"):
        load_bundle(sklearn_bundle)


def test_manifest_paths_may_not_leave_the_bundle(sklearn_bundle: Path) -> None:
    _rehash(sklearn_bundle, model={"path": "../elsewhere", "files": []})
    with pytest.raises(BundleIntegrityError, match=r"'../elsewhere' in the manifest leaves"):
        load_bundle(sklearn_bundle)


def test_a_newer_bundle_format_is_refused(sklearn_bundle: Path) -> None:
    _rehash(sklearn_bundle, format_version=99)
    with pytest.raises(BundleIntegrityError, match=r"bundle format 99 is newer.*upgrade"):
        load_bundle(sklearn_bundle)


# -- signatures ------------------------------------------------------------------------------


def test_infer_signature_records_types_nulls_domains_and_ranges() -> None:
    features = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, None, 2.0],
            "flag": [True, False, True],
            "city": ["b", "a", None],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
            "many": pd.Categorical(["u", "v", "u"]),
        }
    )
    sig = infer_signature(features)
    by_name = {c.name: c for c in sig.inputs}
    assert by_name["n"] == ColumnSpec("n", "int", False, None, 1, 3)
    assert by_name["x"] == ColumnSpec("x", "float", True, None, 0.5, 2.0)
    assert by_name["flag"].type == "bool" and by_name["when"].type == "datetime"
    assert by_name["city"] == ColumnSpec("city", "string", True, ("a", "b"))
    assert by_name["many"].domain == ("u", "v")
    wide = infer_signature(pd.DataFrame({"id": [f"v{i}" for i in range(101)]}))
    assert wide.inputs[0].domain is None


def test_signature_json_round_trip() -> None:
    sig = infer_signature(_frame().drop(columns="label")).for_task("multiclass", ["a", "b", "c"])
    again = Signature.from_dict(json.loads(json.dumps(sig.to_dict())))
    assert again == sig


@pytest.fixture
def signature() -> Signature:
    return infer_signature(_frame().drop(columns="label")).for_task("binary", ["hi", "lo"])


def test_check_input_names_an_unknown_column(signature: Signature) -> None:
    request = _frame().drop(columns="label").rename(columns={"age": "agee"})
    with pytest.raises(SignatureError, match=r"unknown column 'agee' \(did you mean 'age'\?\)"):
        signature.check_input(request)


def test_check_input_names_a_missing_column(signature: Signature) -> None:
    request = _frame().drop(columns=["label", "city"])
    with pytest.raises(SignatureError, match=r"missing column 'city'"):
        signature.check_input(request)


def test_check_input_names_a_wrong_type(signature: Signature) -> None:
    request = _frame().drop(columns="label").assign(income="lots")
    with pytest.raises(SignatureError, match=r"column 'income': expected float, got string"):
        signature.check_input(request)


def test_check_input_names_missing_values_in_a_non_nullable_column(signature: Signature) -> None:
    request = _frame().drop(columns="label")
    request.loc[7, "income"] = np.nan
    with pytest.raises(
        SignatureError, match=r"column 'income': 1 missing value\(s\) \(first at row 7"
    ):
        signature.check_input(request)


def test_check_input_accepts_compatible_types_and_reorders(signature: Signature) -> None:
    request = _frame().drop(columns="label")[["city", "income", "age"]]
    request = request.assign(age=request["age"].astype(float), extra=1)
    checked = signature.check_input(request, allow_extra=True)
    assert list(checked.columns) == ["age", "income", "city"]
    rows = [{"age": 30, "income": 51.0, "city": "lyon"}]
    assert len(signature.check_input(rows)) == 1
    with pytest.raises(SignatureError, match=r"column 'age': expected int, got float"):
        signature.check_input([{"age": 30.5, "income": 51.0, "city": "lyon"}])


def test_bundle_predict_checks_input_first(sklearn_bundle: Path, numeric: pd.DataFrame) -> None:
    loaded = load_bundle(sklearn_bundle)
    with pytest.raises(SignatureError, match=r"unknown column 'city'"):
        loaded.predict(numeric.assign(city="nice"))


def test_task_and_classes_are_checked() -> None:
    sig = infer_signature(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(SignatureError, match=r"task 'binary' needs 2 classes, got 3"):
        sig.for_task("binary", [1, 2, 3])
    with pytest.raises(SignatureError, match=r"task 'ranking' is not one of"):
        sig.for_task("ranking")
    with pytest.raises(SignatureError, match=r"a regression model has no classes"):
        sig.for_task("regression", [0, 1])
