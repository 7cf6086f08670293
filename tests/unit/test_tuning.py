"""Search spaces (parsing, validation, conditional sampling) and tune_model on small data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conveyor.data.schema import FeatureSchema, Schema
from conveyor.modeling.tuning import (
    TuningResult,
    TuningResultMaterializer,
    check_estimators,
    tune_model,
)
from conveyor.modeling.tuning_space import TuningError, parse_space

optuna = pytest.importorskip("optuna")

RF = "sklearn.ensemble.RandomForestClassifier"
LOGREG = "sklearn.linear_model.LogisticRegression"
TREE = "sklearn.tree.DecisionTreeClassifier"

EXAMPLE = {
    "model": {
        "choice": {
            "xgboost": {
                "flavour": "xgboost",
                "params": {
                    "max_depth": {"int": [2, 8]},
                    "learning_rate": {"float": [0.01, 0.3], "log": True},
                },
            },
            "rf": {
                "flavour": "sklearn",
                "class": RF,
                "params": {"n_estimators": {"int": [50, 300], "step": 50}},
            },
        }
    },
    "preprocessing": {"numeric": {"categorical": ["standard", "minmax"]}},
}

SMALL = {
    "model": {
        "choice": {
            "logreg": {
                "flavour": "sklearn",
                "class": LOGREG,
                "params": {"C": {"float": [0.01, 10], "log": True}},
            },
            "tree": {"flavour": "sklearn", "class": TREE, "params": {"max_depth": {"int": [1, 6]}}},
        }
    }
}


class FakeTrial:
    """Draws the low bound or the first choice unless told otherwise; records every name."""

    def __init__(self, picks: dict[str, Any] | None = None) -> None:
        self.picks = picks or {}
        self.drawn: dict[str, Any] = {}

    def _pick(self, name: str, default: Any) -> Any:
        self.drawn[name] = self.picks.get(name, default)
        return self.drawn[name]

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return int(self._pick(name, low))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._pick(name, low))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._pick(name, choices[0])


def _data(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["city"] = rng.choice(["a", "b", "c"], n)
    score = frame["x1"] + 0.5 * frame["x2"] + (frame["city"] == "a") + rng.normal(0, 0.5, n)
    frame["y"] = np.where(score > 0.3, "yes", "no")
    cut = int(n * 0.7)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def _numeric(frames: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frames[0].drop(columns=["city"]), frames[1].drop(columns=["city"])


# -- parsing ---------------------------------------------------------------------------------


def test_the_example_space_parses_with_one_dimension_per_drawn_value() -> None:
    space = parse_space(EXAMPLE)
    assert list(space.models) == ["xgboost", "rf"]
    assert space.dimensions == 5  # family, max_depth, learning_rate, n_estimators, numeric


def test_sampling_draws_only_the_chosen_family_parameters() -> None:
    trial = FakeTrial({"model": "rf", "model.rf.n_estimators": 150})
    candidate = parse_space(EXAMPLE).sample(trial)
    assert candidate.family == "rf"
    assert candidate.estimator == {
        "flavour": "sklearn",
        "class": RF,
        "params": {"n_estimators": 150},
    }
    assert candidate.preprocessing == {"numeric": "standard"}
    assert set(trial.drawn) == {"model", "model.rf.n_estimators", "preprocessing.numeric"}


def test_a_parameter_choice_adds_its_branch_parameters_only_when_chosen() -> None:
    space = parse_space(
        {
            "model": {
                "flavour": "sklearn",
                "class": "sklearn.svm.SVC",
                "params": {
                    "probability": True,
                    "kernel": {
                        "choice": {"rbf": {"gamma": {"float": [0.01, 1.0]}}, "linear": None}
                    },
                },
            }
        }
    )
    rbf = FakeTrial({"model.kernel": "rbf", "model.kernel.rbf.gamma": 0.5})
    assert space.sample(rbf).estimator["params"] == {
        "probability": True,
        "kernel": "rbf",
        "gamma": 0.5,
    }
    linear = FakeTrial({"model.kernel": "linear"})
    assert space.sample(linear).estimator["params"] == {"probability": True, "kernel": "linear"}
    assert "model.kernel.rbf.gamma" not in linear.drawn


def test_constants_pass_through_and_a_null_preprocessing_branch_means_none() -> None:
    space = parse_space(
        {
            "model": {
                "flavour": "xgboost",
                "early_stopping_rounds": {"categorical": [5, 10]},
                "params": {
                    "n_estimators": 50,
                    "interaction_constraints": [[0, 1]],
                    "extra": {"const": {"a": 1}},
                },
            },
            "preprocessing": {"choice": {"none": None, "scaled": {"numeric": "minmax"}}},
        }
    )
    candidate = space.sample(FakeTrial({"preprocessing": "none"}))
    assert candidate.estimator == {
        "flavour": "xgboost",
        "params": {"n_estimators": 50, "interaction_constraints": [[0, 1]], "extra": {"a": 1}},
        "early_stopping_rounds": 5,
    }
    assert candidate.preprocessing is None
    assert space.sample(FakeTrial({"preprocessing": "scaled"})).preprocessing == {
        "numeric": "minmax"
    }


def _model(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": {"flavour": "xgboost", "params": params, **extra}}


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, r"^space: the search space is empty; give at least 'model'"),
        ([], r"^space: a search space is a dict like .*, not list"),
        ({"modle": {}}, r"^space.modle: unknown key \(did you mean 'model'\?\)"),
        ({"preprocessing": {"numeric": "minmax"}}, r"^space.model: missing"),
        (
            {
                "model": {
                    "choice": {
                        "xgboost": {"flavour": "xgboost", "params": {"max_depth": {"int": [8, 2]}}}
                    }
                }
            },
            r"^space\.model\.choice\.xgboost\.params\.max_depth: low 8 > high 2$",
        ),
        (
            _model({"max_depth": {"integer": [2, 8]}}),
            r"^space\.model\.params\.max_depth: unknown distribution keyword 'integer' "
            r"\(did you mean 'int'\?\)",
        ),
        (
            _model({"eta": {"float": ["a", 1]}}),
            r"^space\.model\.params\.eta: bounds must be numbers",
        ),
        (_model({"eta": {"float": [0, float("inf")]}}), r"bounds must be finite"),
        (
            _model({"depth": {"int": [1.5, 8]}}),
            r"depth: bounds of an int distribution must be integers",
        ),
        (_model({"depth": {"int": [2, 8, 3]}}), r"'int' takes \[low, high\]"),
        (
            _model({"eta": {"float": [0, 1], "log": True}}),
            r"eta: a log float distribution needs low > 0",
        ),
        (
            _model({"n": {"int": [1, 9], "step": 2, "log": True}}),
            r"n: 'step' and 'log' cannot be combined",
        ),
        (
            _model({"n": {"int": [1, 9], "lgo": True}}),
            r"^space\.model\.params\.n\.lgo: unknown option of 'int'",
        ),
        (_model({"n": {"int": [1, 9], "step": 0}}), r"n\.step: a positive integer"),
        (
            _model({"n": {"int": [1, 2], "float": [1, 2]}}),
            r"give one distribution, not both 'int' and 'float'",
        ),
        ({"model": {"choice": {}}}, r"^space\.model\.choice: empty choice"),
        (_model({"booster": {"categorical": []}}), r"booster: empty 'categorical'"),
        (_model({"booster": {"categorical": ["a", "a"]}}), r"booster: duplicate values"),
        (
            _model({"booster": {"categorical": [["a"]]}}),
            r"categorical values are str, number, bool or null",
        ),
        (_model({"booster": {"choice": {"a": 3}}}), r"booster\.choice\.a: a dict of name"),
        ({"model": {"params": {}}}, r"^space\.model\.flavour: missing"),
        (
            {"model": {"flavour": "sklearn", "params": {"C": {"float": [1, 2]}}}},
            r"^space\.model\.class: missing",
        ),
        (
            {"model": {"flavour": "xgboost", "parms": {}}},
            r"^space\.model\.parms: unknown key \(did you mean 'params'\?\)",
        ),
        (_model({"max_depth": 3}), r"^space: nothing to search"),
        (
            _model({"d": {"int": [1, 3]}}, early_stopping_rounds={"float": [1, 5]}),
            r"early_stopping_rounds: must be",
        ),
        (
            _model({"gamma": 1, "kernel": {"choice": {"rbf": {"gamma": {"float": [0.1, 1]}}}}}),
            r"kernel\.choice\.rbf\.gamma: also given next to 'kernel'",
        ),
    ],
)
def test_bad_spaces_name_the_path_at_fault(space: Any, match: str) -> None:
    with pytest.raises(TuningError, match=match):
        parse_space(space)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            {"choice": {"a": {"flavour": "xgbost", "params": {"d": {"int": [1, 3]}}}}},
            r"^space\.model\.choice\.a\.flavour: unknown flavour 'xgbost' "
            r"\(did you mean 'xgboost'\?\)",
        ),
        (
            {"flavour": "sklearn", "class": RF, "params": {"n_estimator": {"int": [5, 9]}}},
            r"^space\.model\.params\.n_estimator: RandomForestClassifier has no parameter "
            r"'n_estimator' \(did you mean 'n_estimators'\?\)",
        ),
        (
            {"flavour": "sklearn", "class": "os.system", "params": {"n": {"int": [5, 9]}}},
            r"^space\.model\.class: estimator class 'os\.system' must be a 'sklearn\.' class",
        ),
    ],
)
def test_estimator_checks_name_the_path(model: dict[str, Any], match: str) -> None:
    with pytest.raises(TuningError, match=match):
        check_estimators(parse_space({"model": model}))


# -- sampling with Optuna --------------------------------------------------------------------


def _candidates(seed: int, n: int = 15) -> list[Any]:
    space = parse_space(EXAMPLE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    out = []
    for _ in range(n):
        trial = study.ask()
        candidate = space.sample(trial)
        params = candidate.estimator["params"]
        study.tell(trial, float(sum(v for v in params.values() if isinstance(v, int | float))))
        out.append(candidate)
    return out


def test_the_same_seed_draws_the_same_candidates_and_another_seed_others() -> None:
    assert _candidates(3) == _candidates(3)
    assert _candidates(3) != _candidates(4)
    families = {c.family for c in _candidates(3)}
    assert families == {"xgboost", "rf"}  # the family itself is searched


# -- tune_model ------------------------------------------------------------------------------


def test_tune_model_is_deterministic_for_a_seed_and_records_every_trial() -> None:
    train, eval_ = _numeric(_data())
    first = tune_model(train, eval_, label="y", space=SMALL, n_trials=5, seed=7)
    second = tune_model(train, eval_, label="y", space=SMALL, n_trials=5, seed=7)
    assert [(t.params, t.value) for t in first.trials] == [
        (t.params, t.value) for t in second.trials
    ]
    assert first.metric == "roc_auc" and first.direction == "maximize" and first.task == "binary"
    assert first.n_trials == first.n_complete == 5 and len(first.trials) == 5
    best = max(first.trials, key=lambda t: t.value or 0)
    assert first.best_trial == best.number and first.best_value == best.value
    assert first.best_estimator["flavour"] == "sklearn" and first.best_family == best.family
    for trial in first.trials:
        assert trial.state == "complete" and trial.duration_s is not None and trial.duration_s >= 0
        assert trial.metrics["roc_auc"] == trial.value


def test_boosters_are_pruned_at_fixed_checkpoints() -> None:
    train, eval_ = _numeric(_data(400))
    space = {
        "model": {
            "flavour": "xgboost",
            "params": {"n_estimators": 150, "learning_rate": {"float": [0.001, 0.5], "log": True}},
        }
    }
    result = tune_model(
        train, eval_, label="y", space=space, n_trials=14, seed=0, metric="log_loss"
    )
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert result.direction == "minimize" and result.n_pruned == len(pruned) >= 1
    checkpoints = {7, 15, 31, 63, 99, 127}  # rounds 8, 16, 32, 64, 100, 128 (0-based steps)
    assert all(t.last_step in checkpoints and t.value is None for t in pruned)


def test_a_study_in_a_database_resumes_without_redoing_trials(tmp_path: Path) -> None:
    train, eval_ = _numeric(_data())
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    first = tune_model(
        train, eval_, label="y", space=SMALL, n_trials=3, storage_url=url, study_name="s"
    )
    kept = optuna.load_study(study_name="s", storage=url).trials
    assert [t.params for t in kept] == [t.params for t in first.trials]
    assert all(t.user_attrs["metrics"]["roc_auc"] == t.value for t in kept)
    resumed = tune_model(
        train, eval_, label="y", space=SMALL, n_trials=6, storage_url=url, study_name="s"
    )
    assert resumed.n_trials == 6 and [t.number for t in resumed.trials] == list(range(6))
    assert [t.params for t in resumed.trials[:3]] == [t.params for t in first.trials]  # not redone
    assert {t.number: t.state for t in optuna.load_study(study_name="s", storage=url).trials} == {
        n: optuna.trial.TrialState.COMPLETE for n in range(6)
    }
    again = tune_model(
        train, eval_, label="y", space=SMALL, n_trials=6, storage_url=url, study_name="s"
    )
    assert again.trials == resumed.trials  # nothing left to do


def test_a_metric_the_study_maximises_cannot_resume_a_minimising_study(tmp_path: Path) -> None:
    train, eval_ = _numeric(_data())
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    tune_model(train, eval_, label="y", space=SMALL, n_trials=1, storage_url=url, study_name="s")
    with pytest.raises(TuningError, match="study 's' exists and maximizes; this one minimizes"):
        tune_model(
            train, eval_, label="y", space=SMALL, metric="log_loss", storage_url=url, study_name="s"
        )


def test_preprocessing_is_searched_with_the_schema() -> None:
    train, eval_ = _data()
    schema = Schema(
        label="y",
        features={
            "x1": FeatureSchema(type="float"),
            "x2": FeatureSchema(type="float"),
            "city": FeatureSchema(type="string"),
            "y": FeatureSchema(type="string"),
        },
    )
    space = {
        "model": {
            "flavour": "sklearn",
            "class": LOGREG,
            "params": {"C": {"float": [0.1, 10], "log": True}},
        },
        "preprocessing": {
            "numeric": {"categorical": ["standard", "minmax"]},
            "categorical": "onehot",
        },
    }
    result = tune_model(train, eval_, label="y", space=space, n_trials=4, schema=schema)
    assert result.n_complete == 4
    assert result.best_preprocessing is not None
    assert result.best_preprocessing["numeric"] in ("standard", "minmax")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "auc"}, r"^metric: unknown metric 'auc'"),
        ({"metric": "rmse"}, r"^metric: metric 'rmse' is for regression tasks, not binary"),
        ({"label": "z"}, r"label column 'z' is not in the train split"),
        ({"n_trials": 0}, r"n_trials must be a positive int, not 0"),
        ({"n_jobs": 0}, r"n_jobs must be a positive int or -1"),
        ({"timeout_s": -1.0}, r"timeout_s must be positive"),
        (
            {"space": {"model": SMALL["model"], "preprocessing": {"numeric": "minmax"}}},
            r"needs the data's schema",
        ),
    ],
)
def test_bad_settings_fail_before_any_trial(kwargs: dict[str, Any], match: str) -> None:
    train, eval_ = _numeric(_data())
    args: dict[str, Any] = {"label": "y", "space": SMALL, **kwargs}
    with pytest.raises(TuningError, match=match):
        tune_model(train, eval_, **args)


def test_no_eval_split_and_bad_preprocessing_options_are_refused() -> None:
    train, eval_ = _numeric(_data())
    with pytest.raises(
        TuningError, match="scores every trial on the eval split; the data has no split=eval"
    ):
        tune_model(train, None, label="y", space=SMALL)
    schema = Schema(
        label="y", features={"x1": FeatureSchema(type="float"), "y": FeatureSchema(type="string")}
    )
    for options, match in (
        (
            {"numerc": "minmax"},
            r"^space\.preprocessing\.numerc: unknown preprocessing option 'numerc' "
            r"\(did you mean 'numeric'\?\)",
        ),
        (
            {"numeric": {"categorical": ["standard", "robust"]}},
            r"^space\.preprocessing\.numeric: numeric is one of .*, not 'robust'",
        ),
    ):
        with pytest.raises(TuningError, match=match):
            tune_model(
                train,
                eval_,
                label="y",
                space={"model": SMALL["model"], "preprocessing": options},
                schema=schema,
            )


def test_all_trials_failing_is_an_error_naming_the_cause() -> None:
    train, eval_ = _numeric(_data())
    space = {"model": {"flavour": "sklearn", "class": LOGREG, "params": {"C": {"float": [-2, -1]}}}}
    with pytest.raises(
        TuningError, match=r"no trial of study .* completed \(0 pruned, 2 failed\); errors: .*C"
    ):
        tune_model(train, eval_, label="y", space=space, n_trials=2)


def test_the_result_round_trips_through_its_materializer(tmp_path: Path) -> None:
    train, eval_ = _numeric(_data())
    result = tune_model(train, eval_, label="y", space=SMALL, n_trials=2)
    props = TuningResultMaterializer().save(result, tmp_path)
    assert TuningResultMaterializer().load(tmp_path, TuningResult) == result
    assert props["metric"] == "roc_auc" and props["best_value"] == result.best_value
    assert props["n_trials"] == 2 and props["best_params"] == result.best_params
