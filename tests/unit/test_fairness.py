"""Fairness figures equal Fairlearn's MetricFrame and disparity functions on the same data."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_score

from conveyor.modeling.fairness import GROUP_METRICS, compute_fairness, format_value
from conveyor.modeling.metrics import EvaluationError

TOL = 1e-12
FAIRLEARN_METRICS = {
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "precision": partial(precision_score, zero_division=0),
    "true_positive_rate": true_positive_rate,
    "false_positive_rate": false_positive_rate,
    "false_negative_rate": false_negative_rate,
}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=TOL)


def assert_equals_fairlearn(y_true, y_pred, sensitive) -> None:
    ours = compute_fairness(y_true, y_pred, sensitive, labels=[0, 1], feature="group")
    frame = MetricFrame(
        metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive
    )
    assert list(GROUP_METRICS) == list(FAIRLEARN_METRICS)
    by_group = frame.by_group
    assert sorted(ours.groups) == sorted(format_value(g) for g in by_group.index)
    for group, row in by_group.iterrows():
        mine = ours.groups[format_value(group)]
        assert mine.count == int(np.sum(np.asarray(sensitive) == group))
        for metric in GROUP_METRICS:
            assert same(mine.metrics[metric], row[metric]), (group, metric)
    for metric in GROUP_METRICS:
        assert same(ours.overall[metric], frame.overall[metric]), metric
    kwargs = {"sensitive_features": sensitive}
    assert same(
        ours.demographic_parity_difference, demographic_parity_difference(y_true, y_pred, **kwargs)
    )
    assert same(ours.demographic_parity_ratio, demographic_parity_ratio(y_true, y_pred, **kwargs))
    assert same(ours.equalized_odds_difference, equalized_odds_difference(y_true, y_pred, **kwargs))
    assert same(ours.equalized_odds_ratio, equalized_odds_ratio(y_true, y_pred, **kwargs))


@st.composite
def fairness_data(draw):
    n = draw(st.integers(2, 60))  # fairlearn squeezes a 1-row feature to 0-D
    y_true = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    groups = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
    return y_true, y_pred, np.array(groups)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fairness_data())
def test_equal_to_fairlearn_on_generated_data(data):
    """Includes the corner cases: one group, groups without positives, all-zero rates."""
    assert_equals_fairlearn(*data)


def test_equal_to_fairlearn_on_a_biased_classifier():
    rng = np.random.default_rng(11)
    n = 3000
    sex = rng.choice(["Female", "Male"], n, p=[0.35, 0.65])
    race = rng.choice(["White", "Black", "Asian"], n, p=[0.75, 0.15, 0.1])
    y_true = rng.binomial(1, np.where(sex == "Male", 0.3, 0.15))
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true) & (
        rng.random(n) < np.where(race == "Black", 0.6, 0.95)
    )
    for feature in (sex, race):
        assert_equals_fairlearn(y_true, y_pred, feature)
    result = compute_fairness(y_true, y_pred, pd.Series(race, name="race"))
    assert result.feature == "race" and list(result.groups) == ["Asian", "Black", "White"]
    assert 0 < result.demographic_parity_ratio < 1
    assert (
        result.equalized_odds_difference
        >= result.groups["White"].metrics["true_positive_rate"]
        - result.groups["Black"].metrics["true_positive_rate"]
    )


def test_string_labels_use_the_positive_label():
    y_true = np.array(["yes", "no", "yes", "no", "yes", "no"])
    y_pred = np.array(["yes", "no", "no", "yes", "yes", "no"])
    group = ["a", "a", "a", "b", "b", "b"]
    ours = compute_fairness(y_true, y_pred, group, labels=["no", "yes"], feature="g")
    assert ours.positive_label == "yes"
    reference = demographic_parity_difference(
        (y_true == "yes").astype(int), (y_pred == "yes").astype(int), sensitive_features=group
    )
    assert ours.demographic_parity_difference == pytest.approx(reference, abs=TOL)
    assert ours.groups["a"].metrics["true_positive_rate"] == 0.5


def test_numeric_and_missing_groups_are_named_like_slices():
    result = compute_fairness([1, 0, 1, 0], [1, 0, 0, 1], [1.0, 10.0, None, 1.0], labels=[0, 1])
    assert list(result.groups) == ["1", "10", "<missing>"]
    assert result.feature == "sensitive"


def test_bad_input_is_a_clear_error():
    with pytest.raises(
        EvaluationError,
        match=r"fairness on 'sex': y_true, y_pred and the feature have 3, 3 and 2 rows",
    ):
        compute_fairness([0, 1, 1], [0, 1, 0], ["a", "b"], feature="sex")
    with pytest.raises(EvaluationError, match=r"binary task needs 2 labels, the data has 3"):
        compute_fairness([0, 1, 2], [0, 1, 0], ["a", "b", "c"], feature="sex")
