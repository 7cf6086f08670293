"""Alert rules the monitoring can judge on its own: thresholds from data validation, slices."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.ct import PolicyError, load_policy
from ct_support import make_project, policy_text


@pytest.fixture(autouse=True)
def _in_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("changes", "metric", "feature"),
    [
        ({16: 'metric = "missing_rate"', 18: ""}, "missing_rate", "age"),
        ({16: 'metric = "prediction_drift"', 17: "", 18: ""}, "prediction_drift", None),
        ({18: ""}, "drift", "age"),
    ],
)
def test_metrics_with_a_threshold_of_their_own_may_leave_it_out(
    tmp_path: Path, changes: dict[int, str], metric: str, feature: str | None
) -> None:
    policy = load_policy(make_project(tmp_path, policy_text(changes)))
    rule = policy.alert("age-drift")
    assert rule is not None
    assert (rule.metric, rule.feature, rule.threshold) == (metric, feature, None)


@pytest.mark.parametrize("feature", ["sex=Female", "*", "sex=Male & sex=Female"])
def test_a_performance_rule_may_name_a_slice_or_any_slice(tmp_path: Path, feature: str) -> None:
    policy = load_policy(make_project(tmp_path, policy_text({27: f'feature = "{feature}"'})))
    rule = policy.alert("accuracy-drop")
    assert rule is not None and rule.feature == feature


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'feature = "age"',
            r"conveyor.toml:27: \[\[alerts\]\] #2 \"accuracy-drop\": metric 'accuracy' is not "
            r"per feature; remove feature = 'age', name a slice of \[monitoring\] slices "
            r"\(e.g. 'sex=VALUE'\) or \"\*\" for the whole window and any slice",
        ),
        ('feature = "city=Nice"', r"conveyor.toml:27: .*remove feature = 'city=Nice', name a"),
    ],
)
def test_a_performance_rule_naming_no_declared_slice_is_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(make_project(tmp_path, policy_text({27: line})))


def test_a_traffic_rule_takes_no_feature_at_all(tmp_path: Path) -> None:
    text = policy_text({25: 'metric = "latency_p99"', 26: "threshold = 50", 27: 'feature = "*"'})
    with pytest.raises(
        PolicyError, match=r"metric 'latency_p99' is not per feature; remove feature = '\*'$"
    ):
        load_policy(make_project(tmp_path, text))
