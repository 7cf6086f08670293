"""Thresholds are validated before evaluation; blessing names every failing slice and metric."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from conveyor.modeling.evaluation_model import Blessing, EvaluationResult, SliceMetrics
from conveyor.modeling.metrics import EvaluationError
from conveyor.modeling.slicing import compute_sliced_metrics
from conveyor.modeling.thresholds import Threshold, bless, required_metrics, validate_thresholds


def result(
    overall: dict[str, float],
    slices: dict[str, dict[str, float]] | None = None,
    *,
    counts: dict[str, int] | None = None,
    version: str | None = None,
    task: str = "binary",
) -> EvaluationResult:
    """An evaluation with 100 rows per slice unless ``counts`` says otherwise."""
    counts = counts or {}
    return EvaluationResult(
        task=task,
        count=1000,
        overall=overall,
        min_count=30,
        model_version=version,
        slices={
            name: SliceMetrics(
                spec=name.split("=")[0],
                values={name.split("=")[0]: name.split("=")[1]},
                count=counts.get(name, 100),
                metrics=metrics,
                flagged=counts.get(name, 100) < 30,
            )
            for name, metrics in (slices or {}).items()
        },
    )


BASELINE = result(
    {"accuracy": 0.85, "roc_auc": 0.90, "log_loss": 0.30},
    {
        "sex=Female": {"accuracy": 0.88, "roc_auc": 0.91, "log_loss": 0.28},
        "sex=Male": {"accuracy": 0.83, "roc_auc": 0.89, "log_loss": 0.32},
    },
    version="census:3",
)
RULES = [
    {"metric": "roc_auc", "min": 0.80},
    {"metric": "accuracy", "max_drop": 0.01, "slices": True},
    {"metric": "log_loss", "max_increase": 0.02, "slices": ["sex=Female"]},
]


def failures(blessing: Blessing) -> list[tuple[str, str | None]]:
    return [(r.metric, r.slice) for r in blessing.failures]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "task", "match"),
    [
        (
            {"metric": "roc_acu", "min": 0.8},
            "binary",
            r"#1 on 'roc_acu': unknown metric \(did you mean 'roc_auc'",
        ),
        (
            {"metric": "rmse", "max": 3},
            "binary",
            r"#1 on 'rmse': a binary task has no 'rmse'; binary metrics: accuracy",
        ),
        (
            {"metric": "calibration_error", "max": 0.1},
            "multiclass",
            r"a multiclass task has no 'calibration_error'",
        ),
        (
            {"metric": "accuracy"},
            "binary",
            r"give at least one of min, max, max_drop, max_increase",
        ),
        (
            {"metric": "log_loss", "max_drop": 0.1},
            "binary",
            r"'log_loss' is lower-is-better; use max_increase",
        ),
        (
            {"metric": "accuracy", "max_increase": 0.1},
            "binary",
            r"'accuracy' is higher-is-better; use max_drop",
        ),
        (
            {"metric": "accuracy", "max_drop": -0.1},
            "binary",
            r"max_drop / max_increase must be >= 0",
        ),
        ({"metric": "accuracy", "min": 0.9, "max": 0.8}, "binary", r"min 0.9 is above max 0.8"),
        ({"metric": "accuracy", "min": float("nan")}, "binary", r"bounds must be finite numbers"),
        (
            {"metric": "accuracy", "mni": 0.9},
            "binary",
            r"threshold #1: unknown key 'mni' \(did you mean 'min'\?\)",
        ),
        (
            {"metric": "accuracy", "min": "high"},
            "binary",
            r"threshold #1: min: Input should be a valid number",
        ),
        (
            {"metric": "accuracy", "min": 0.5, "slices": [""]},
            "binary",
            r"slice names must be non-empty",
        ),
        ("accuracy >= 0.8", "binary", r"threshold #1 must be a mapping like"),
    ],
)
def test_bad_thresholds_fail_before_evaluation(spec, task, match):
    with pytest.raises(EvaluationError, match=match):
        validate_thresholds([spec], task)


def test_validation_parses_plain_data():
    rules = validate_thresholds(RULES, "binary")
    assert rules[1] == Threshold(metric="accuracy", max_drop=0.01, slices=True)
    assert rules[2].slices == ("sex=Female",)
    assert rules[2].describe() == ["max_increase 0.02"]
    assert required_metrics(rules) == ["roc_auc", "accuracy", "log_loss"]
    assert validate_thresholds([{"metric": "r2", "min": 0.5}], "regression")[0].min == 0.5


# -- blessing scenarios --------------------------------------------------------------------


def test_better_candidate_is_blessed():
    candidate = result(
        {"accuracy": 0.86, "roc_auc": 0.91, "log_loss": 0.29},
        {
            "sex=Female": {"accuracy": 0.88, "roc_auc": 0.92, "log_loss": 0.27},
            "sex=Male": {"accuracy": 0.845, "roc_auc": 0.90, "log_loss": 0.31},
        },
    )
    blessing = bless(candidate, RULES, BASELINE)
    assert blessing.blessed and blessing.failures == []
    assert blessing.baseline_version == "census:3"
    assert blessing.note == "compared with baseline census:3"
    # roc_auc min (1) + accuracy overall and 2 slices (3) + log_loss overall and Female (2)
    assert len(blessing.reasons) == 6 and not any(r.skipped for r in blessing.reasons)
    female = next(r for r in blessing.reasons if r.metric == "log_loss" and r.slice == "sex=Female")
    assert female.message == (
        "log_loss on slice 'sex=Female': better by 0.01 than the baseline (0.28 -> 0.27), "
        "within max_increase 0.02"
    )


def test_drop_exactly_at_the_threshold_passes():
    candidate = result(
        {"accuracy": 0.84}, {"sex=Female": {"accuracy": 0.87}, "sex=Male": {"accuracy": 0.82}}
    )
    assert bless(
        candidate, [{"metric": "accuracy", "max_drop": 0.01, "slices": True}], BASELINE
    ).blessed


def test_worse_overall_is_not_blessed():
    candidate = result(
        {"accuracy": 0.80, "roc_auc": 0.90, "log_loss": 0.30},
        {
            "sex=Female": {"accuracy": 0.88, "roc_auc": 0.91, "log_loss": 0.28},
            "sex=Male": {"accuracy": 0.83, "roc_auc": 0.89, "log_loss": 0.32},
        },
    )
    blessing = bless(candidate, RULES, BASELINE)
    assert not blessing.blessed
    assert failures(blessing) == [("accuracy", None)]
    assert blessing.failures[0].message == (
        "accuracy overall: worse by 0.05 than the baseline (0.85 -> 0.8), more than max_drop 0.01"
    )
    assert (blessing.failures[0].candidate_value, blessing.failures[0].baseline_value) == (
        0.80,
        0.85,
    )
    assert blessing.note == "compared with baseline census:3; 1 of 6 checks failed"


def test_worse_on_one_slice_only_is_not_blessed_and_names_the_slice():
    candidate = result(
        {"accuracy": 0.85, "roc_auc": 0.90, "log_loss": 0.30},
        {
            "sex=Female": {"accuracy": 0.84, "roc_auc": 0.91, "log_loss": 0.33},
            "sex=Male": {"accuracy": 0.84, "roc_auc": 0.89, "log_loss": 0.32},
        },
    )
    blessing = bless(candidate, RULES, BASELINE)
    assert not blessing.blessed
    assert failures(blessing) == [("accuracy", "sex=Female"), ("log_loss", "sex=Female")]
    assert "accuracy on slice 'sex=Female': worse by 0.04" in blessing.failures[0].message
    assert "log_loss on slice 'sex=Female': worse by 0.05" in blessing.failures[1].message


def test_absolute_threshold_fails_on_a_slice():
    candidate = result(
        {"roc_auc": 0.9}, {"sex=Female": {"roc_auc": 0.75}, "sex=Male": {"roc_auc": 0.95}}
    )
    blessing = bless(candidate, [{"metric": "roc_auc", "min": 0.8, "slices": True}])
    assert failures(blessing) == [("roc_auc", "sex=Female")]
    assert blessing.failures[0].message == "roc_auc on slice 'sex=Female': 0.75 is below min 0.8"


def test_no_baseline_blesses_on_absolute_thresholds_alone_and_says_so():
    female = {"accuracy": 0.5, "roc_auc": 0.85, "log_loss": 0.9}
    candidate = result({"accuracy": 0.5, "roc_auc": 0.85, "log_loss": 0.9}, {"sex=Female": female})
    blessing = bless(candidate, RULES)
    assert blessing.blessed and blessing.baseline_version is None
    assert (
        blessing.note
        == "no baseline: judged on absolute thresholds alone (2 relative checks not run)"
    )
    skipped = [r for r in blessing.reasons if r.skipped]
    assert [(r.metric, r.threshold) for r in skipped] == [
        ("accuracy", "max_drop 0.01"),
        ("log_loss", "max_increase 0.02"),
    ]
    assert all(r.passed and "no baseline; not checked" in r.message for r in skipped)
    low = result({"accuracy": 0.9, "roc_auc": 0.7, "log_loss": 0.3}, {"sex=Female": female})
    assert failures(bless(low, RULES)) == [("roc_auc", None)]


def test_metric_missing_from_the_baseline_skips_the_relative_check():
    old = result({"accuracy": 0.85}, {"sex=Female": {"accuracy": 0.88}}, version="census:2")
    candidate = result(
        {"accuracy": 0.85, "roc_auc": 0.5, "log_loss": 0.4},
        {
            "sex=Female": {"accuracy": 0.88, "log_loss": 0.4},
            "sex=Male": {"accuracy": 0.83, "log_loss": 0.5},
        },
    )
    rules = [{"metric": "log_loss", "max_increase": 0.01, "slices": True}]
    blessing = bless(candidate, rules, old)
    assert blessing.blessed
    messages = [r.message for r in blessing.reasons]
    missing = "the baseline has no 'log_loss' (evaluated before it was configured?); not checked"
    assert messages == [
        f"log_loss overall: {missing}",
        f"log_loss on slice 'sex=Female': {missing}",
        "log_loss on slice 'sex=Male': the baseline has no such slice; not checked",
    ]
    assert all(r.skipped for r in blessing.reasons)


def test_flagged_and_undefined_slices_are_not_gated():
    candidate = result(
        {"roc_auc": 0.9},
        {"race=Other": {"roc_auc": 0.5}, "race=Asian": {"roc_auc": math.nan}},
        counts={"race=Other": 12},
    )
    blessing = bless(candidate, [{"metric": "roc_auc", "min": 0.8, "slices": True}])
    assert blessing.blessed
    other, asian = blessing.reasons[1:]
    assert (
        other.skipped
        and other.message == "roc_auc on slice 'race=Other': 12 rows < min_count 30; not checked"
    )
    assert asian.skipped and "undefined on this slice" in asian.message


def test_undefined_overall_fails():
    blessing = bless(result({"roc_auc": math.nan}), [{"metric": "roc_auc", "min": 0.8}])
    assert not blessing.blessed
    assert blessing.failures[0].message == "roc_auc overall: undefined on the evaluation data"


def test_unknown_listed_slice_fails_with_a_hint():
    candidate = result({"accuracy": 0.9}, {"sex=Female": {"accuracy": 0.9}})
    blessing = bless(candidate, [{"metric": "accuracy", "min": 0.5, "slices": ["sex=Femal"]}])
    assert failures(blessing) == [("accuracy", "sex=Femal")]
    assert "has no such slice (did you mean 'sex=Female'?)" in blessing.failures[0].message


def test_lower_is_better_regression_thresholds():
    base = result({"rmse": 2.0, "r2": 0.8}, task="regression", version="house:1")
    worse = result({"rmse": 2.6, "r2": 0.79}, task="regression")
    rules = [
        {"metric": "rmse", "max": 3.0, "max_increase": 0.5},
        {"metric": "r2", "max_drop": 0.05},
    ]
    blessing = bless(worse, rules, base)
    assert failures(blessing) == [("rmse", None)]
    assert "rmse overall: worse by 0.6" in blessing.failures[0].message


def test_no_thresholds_blesses_and_says_so():
    blessing = bless(result({"accuracy": 0.1}), [])
    assert blessing.blessed and blessing.note == "no thresholds: blessed without checks"


def test_blessing_errors():
    with pytest.raises(EvaluationError, match=r"a binary task has no 'rmse'"):
        bless(result({"accuracy": 0.9}), [{"metric": "rmse", "max": 1}])
    with pytest.raises(
        EvaluationError,
        match=r"threshold on 'pr_auc', but the candidate's evaluation has no 'pr_auc' "
        r"\(it has: accuracy\)",
    ):
        bless(result({"accuracy": 0.9}), [{"metric": "pr_auc", "min": 0.5}])
    with pytest.raises(
        EvaluationError,
        match=r"the baseline is a regression evaluation, the candidate a binary one",
    ):
        bless(result({"accuracy": 0.9}), [], result({"rmse": 1.0}, task="regression"))


def test_blessing_round_trips_as_json():
    blessing = bless(result({"roc_auc": math.nan}), [{"metric": "roc_auc", "min": 0.8}])
    back = Blessing.model_validate_json(blessing.model_dump_json())
    assert back.blessed is False and math.isnan(back.reasons[0].candidate_value or 0.0)


# -- end to end: two real models -----------------------------------------------------------


def test_a_model_worse_on_one_group_is_not_blessed():
    """The baseline scores well everywhere; the candidate is noisy for women only."""
    rng = np.random.default_rng(5)
    n = 4000
    frame = pd.DataFrame({"sex": rng.choice(["Female", "Male"], n), "age": rng.integers(18, 80, n)})
    frame["label"] = rng.integers(0, 2, n)
    good = np.clip(frame["label"] * 0.6 + rng.normal(0.2, 0.2, n), 0, 1)
    noisy = np.where(frame["sex"] == "Female", rng.random(n), good)
    common = {
        "task": "binary",
        "y_pred_col": "pred",
        "y_score_col": "score",
        "slices": ["sex", {"feature": "age", "buckets": [18, 40, 80]}],
    }
    baseline = compute_sliced_metrics(
        frame.assign(score=good, pred=(good > 0.5).astype(int)),
        "label",
        model_version="m:1",
        **common,
    )
    candidate = compute_sliced_metrics(
        frame.assign(score=noisy, pred=(noisy > 0.5).astype(int)), "label", **common
    )
    rules = [
        {"metric": "roc_auc", "min": 0.6},
        {"metric": "roc_auc", "max_drop": 0.02, "slices": True},
    ]
    blessing = bless(candidate, rules, baseline)
    assert not blessing.blessed
    assert ("roc_auc", "sex=Female") in failures(blessing)
    assert ("roc_auc", "sex=Male") not in failures(blessing)
    assert blessing.baseline_version == "m:1"
    assert bless(baseline, rules, baseline).blessed
