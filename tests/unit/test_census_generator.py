"""The census demo generator: deterministic, realistic, and its knobs do what they say."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).parents[2] / "examples" / "census" / "generate.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("census_generate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load()
ROWS = 20_000


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return gen.generate_span(1, ROWS, seed=0)


def test_same_span_seed_and_knobs_give_the_same_rows() -> None:
    first = gen.generate_span(2, 500, seed=3, covariate_shift=0.5, label_shift=0.3)
    again = gen.generate_span(2, 500, seed=3, covariate_shift=0.5, label_shift=0.3)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(gen.generate_span(3, 500, seed=3, covariate_shift=0.5))
    assert not first.equals(gen.generate_span(2, 500, seed=4, covariate_shift=0.5))


def test_schema(base: pd.DataFrame) -> None:
    assert list(base.columns) == gen.COLUMNS
    assert len(base) == ROWS
    for column in ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week"):
        assert base[column].dtype == np.int64, column
    assert set(base["income"]) == {">50K", "<=50K"}
    assert set(base["sex"]) == {"Male", "Female"}
    assert base["age"].between(17, 90).all()
    assert base["hours_per_week"].between(1, 99).all()
    assert base["education_num"].between(1, 16).all()
    assert base[["workclass", "occupation", "native_country"]].isna().any().all()
    assert base.drop(columns=["workclass", "occupation", "native_country"]).notna().all().all()


def test_zero_rows_keeps_the_schema() -> None:
    empty = gen.generate_span(0, 0)
    assert list(empty.columns) == gen.COLUMNS and empty.empty


def test_dependencies_between_columns_hold(base: pd.DataFrame) -> None:
    assert not ((base["relationship"] == "Husband") & (base["sex"] == "Female")).any()
    assert not ((base["relationship"] == "Wife") & (base["sex"] == "Male")).any()
    married = base["marital_status"].isin(["Married-civ-spouse", "Married-AF-spouse"])
    assert base.loc[married, "relationship"].isin(["Husband", "Wife"]).all()
    assert not base.loc[~married, "relationship"].isin(["Husband", "Wife"]).any()
    assert base.groupby("education")["education_num"].nunique().eq(1).all()
    assert base["workclass"].isna().equals(base["occupation"].isna())
    assert not ((base["capital_gain"] > 0) & (base["capital_loss"] > 0)).any()
    young = base[base["age"] < 25]
    assert (young["marital_status"] == "Never-married").mean() > 0.8
    degree = base["education_num"] >= 13
    prof = base["occupation"].isin(["Prof-specialty", "Exec-managerial"])
    assert prof[degree].mean() > 2 * prof[~degree].mean()


def test_positive_rate_is_realistic(base: pd.DataFrame) -> None:
    rate = (base["income"] == ">50K").mean()
    assert 0.21 < rate < 0.27
    by_degree = base.groupby(base["education_num"] >= 13)["income"].apply(
        lambda s: (s == ">50K").mean()
    )
    assert by_degree[True] > 2 * by_degree[False]


def _calibration_gap(frame: pd.DataFrame, concept_drift: float = 0.0) -> float:
    """Largest |observed rate - predicted probability| over deciles of the prediction."""
    predicted = gen.label_probability(frame, concept_drift=concept_drift)
    observed = (frame["income"] == ">50K").to_numpy()
    bins = pd.qcut(predicted, 10, labels=False, duplicates="drop")
    table = pd.DataFrame({"p": predicted, "y": observed, "bin": bins}).groupby("bin").mean()
    return float((table["y"] - table["p"]).abs().max())


def test_covariate_shift_moves_inputs_but_keeps_p_label_given_x(base: pd.DataFrame) -> None:
    shifted = gen.generate_span(1, ROWS, seed=0, covariate_shift=1.0)
    assert shifted["age"].mean() > base["age"].mean() + 4
    assert shifted["hours_per_week"].mean() < base["hours_per_week"].mean() - 2
    assert shifted["education_num"].mean() > base["education_num"].mean() + 0.5
    assert _calibration_gap(base) < 0.04
    assert _calibration_gap(shifted) < 0.04  # the base label model still explains the labels
    cell = (shifted["education_num"] == 13) & (shifted["marital_status"] == "Never-married")
    base_cell = (base["education_num"] == 13) & (base["marital_status"] == "Never-married")
    cell_p = gen.label_probability(shifted[cell]).mean()
    assert abs((shifted.loc[cell, "income"] == ">50K").mean() - cell_p) < 0.05
    assert base_cell.sum() > 200 and cell.sum() > 200


def test_concept_drift_changes_labels_given_the_same_inputs(base: pd.DataFrame) -> None:
    drifted = gen.generate_span(1, ROWS, seed=0, concept_drift=1.0)
    inputs = [c for c in gen.COLUMNS if c != "income"]
    pd.testing.assert_frame_equal(drifted[inputs], base[inputs])
    changed = (drifted["income"] != base["income"]).mean()
    assert changed > 0.08
    assert _calibration_gap(drifted) > 0.1  # the base model no longer explains the labels
    assert _calibration_gap(drifted, concept_drift=1.0) < 0.04
    assert 0.18 < (drifted["income"] == ">50K").mean() < 0.32


def test_label_shift_moves_the_prior_and_keeps_p_x_given_label(base: pd.DataFrame) -> None:
    shifted = gen.generate_span(1, ROWS, seed=0, label_shift=1.0)
    base_rate = (base["income"] == ">50K").mean()
    rate = (shifted["income"] == ">50K").mean()
    expected = 1 / (1 + np.exp(-(np.log(base_rate / (1 - base_rate)) + 1.0)))
    assert rate == pytest.approx(expected, abs=0.01)
    for label in (">50K", "<=50K"):
        before = base.loc[base["income"] == label, "age"].mean()
        after = shifted.loc[shifted["income"] == label, "age"].mean()
        assert after == pytest.approx(before, abs=1.0), label


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="rows must be an integer >= 0"):
        gen.generate_span(1, -1)
    with pytest.raises(ValueError, match="concept_drift must be a finite number"):
        gen.generate_span(1, 10, concept_drift=float("nan"))
    with pytest.raises(ValueError, match="unknown knob 'shift'"):
        gen.write_spans(Path("unused"), drift_at={1: {"shift": 1.0}})
    with pytest.raises(ValueError, match=r"drift_at names spans \[5\], outside spans 1..4"):
        gen.write_spans(Path("unused"), drift_at={5: {"covariate": 1.0}})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_spans_writes_one_file_per_span(tmp_path: Path, fmt: str) -> None:
    paths = gen.write_spans(tmp_path, spans=3, rows=200, drift_at={2: {"covariate": 1.0}}, fmt=fmt)
    assert paths == [tmp_path / f"span={n}" / f"data.{fmt}" for n in (1, 2, 3)]
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    frames = [read(path) for path in paths]
    assert [len(frame) for frame in frames] == [200, 200, 200]
    assert list(frames[0].columns) == gen.COLUMNS
    assert frames[1]["age"].mean() > frames[0]["age"].mean()
    assert not list(tmp_path.rglob("*.tmp"))
    again = gen.write_spans(tmp_path / "again", spans=3, rows=200, fmt=fmt)
    assert again[0].read_bytes() == paths[0].read_bytes()


def test_parse_drift() -> None:
    assert gen.parse_drift(["3:covariate=1.0,label=0.5", "4:concept_drift=2"]) == {
        3: {"covariate_shift": 1.0, "label_shift": 0.5},
        4: {"concept_drift": 2.0},
    }
    with pytest.raises(ValueError, match="want SPAN:KNOB=VALUE"):
        gen.parse_drift(["covariate=1"])


def test_command_line(tmp_path: Path) -> None:
    args = [str(tmp_path), "--spans", "2", "--rows", "50", "--drift", "2:label=1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "span 2:" in done.stdout and "label_shift=1" in done.stdout
    assert (tmp_path / "span=2" / "data.csv").is_file()
