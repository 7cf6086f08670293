"""The evaluation report page and the Evaluation / Blessing artifacts."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from conveyor.components.model_evaluate import Baseline, evaluate_models
from conveyor.core.materializers import artifact_type_of, materializer_for
from conveyor.modeling.bundle import LoadedBundle, load_bundle, save_bundle
from conveyor.modeling.evaluation_artifacts import (
    BlessingMaterializer,
    EvaluationConfig,
    EvaluationMaterializer,
    EvaluationReport,
)
from conveyor.modeling.evaluation_model import Blessing
from conveyor.modeling.evaluation_report import headline_metrics, render_evaluation_html
from conveyor.modeling.explain import Explanation, explain_model

EVIL = "<script>alert(1)</script>"
GATE = [
    {"metric": "roc_auc", "min": 0.7},
    {"metric": "accuracy", "max_drop": 0.02, "slices": True},
]


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "city": rng.choice(["Lyon", EVIL], n),
        }
    )
    frame["y"] = np.where(frame["x1"] + 0.8 * frame["x2"] + rng.normal(0, 0.4, n) > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedBundle]:
    root = tmp_path_factory.mktemp("bundles")
    train = _frame(seed=1)
    good = LogisticRegression().fit(train[["x1", "x2"]], train["y"])
    weak = LogisticRegression().fit(train[["x1"]], train["y"])
    target = train["x1"] * 2 + train["x2"]
    save_bundle(root / "good", good, signature=train[["x1", "x2"]], task="binary")
    save_bundle(root / "weak", weak, signature=train[["x1"]], task="binary")
    save_bundle(
        root / "reg",
        Ridge().fit(train[["x1", "x2"]], target),
        signature=train[["x1", "x2"]],
        task="regression",
    )
    return {name: load_bundle(root / name) for name in ("good", "weak", "reg")}


@pytest.fixture(scope="module")
def report(bundles: dict[str, LoadedBundle]) -> EvaluationReport:
    config = EvaluationConfig.create(
        "binary",
        slices=["city", {"feature": "x1", "buckets": [-5, 0, 5]}],
        thresholds=GATE,
        sensitive_features=["city"],
    )
    return evaluate_models(
        bundles["weak"],
        _frame(),
        "y",
        config,
        baseline=Baseline(bundles["good"], f"census:{EVIL}"),
        model_name=f"census {EVIL}",
        candidate_version="census:2",
    )


@pytest.fixture(scope="module")
def page(report: EvaluationReport) -> str:
    return render_evaluation_html(report)


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)


def test_the_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "<img", "http://", "https://", "@import", "src="):
        assert needle not in page, needle
    assert re.findall(r"url\(([^)]*)\)", page) == [m for m in re.findall(r"url\((#[^)]*)\)", page)]


def test_every_text_from_data_is_escaped(page: str) -> None:
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # slice values, names, messages
    assert "Evaluation: census &lt;script&gt;" in page


def test_the_verdict_lists_every_reason_failures_first(page: str, report: EvaluationReport) -> None:
    assert not report.blessing.blessed
    assert '<div class="banner fail"><b>Not blessed</b>' in page
    for reason in report.blessing.reasons:
        assert html.escape(reason.message) in page
    verdict = page[page.index("<h2>Verdict</h2>") : page.index("<h2>Overall</h2>")]
    assert verdict.index("failed") < verdict.index("passed")


def test_metrics_slices_fairness_matrices_and_curves_are_drawn(
    page: str, report: EvaluationReport
) -> None:
    for section in ("Overall", "Slices", "Fairness", "Confusion matrices", "Curves"):
        assert f"<h2>{section}</h2>" in page
    assert headline_metrics(report) == ["roc_auc", "accuracy", "f1"]
    svgs = _svgs(page)
    assert len(svgs) == 3, "bars for two slice specs, and one figure of curves"
    assert all('class="plot"' in svg for svg in svgs)
    curves = svgs[-1]
    assert "ROC" in curves and "calibration" in curves and "precision-recall" in curves
    assert "census:2" in svgs[0] and "census:" in svgs[0], "candidate and baseline bars"
    delta = report.comparison.overall["accuracy"]
    assert delta.better is False and f"{delta.delta:+.4g}" in page
    assert page.count("true \\ predicted") == 2, "candidate's and baseline's matrices"
    assert "demographic_parity_difference" in page


def test_the_page_is_deterministic_and_dated_from_the_bundle(
    page: str, report: EvaluationReport
) -> None:
    assert render_evaluation_html(report) == page
    when = report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"generated {when}" in page
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "no id is shared between plots"


def test_without_a_baseline_and_for_regression(bundles: dict[str, LoadedBundle]) -> None:
    frame = _frame().assign(target=lambda f: f["x1"] * 2 + f["x2"])
    config = EvaluationConfig.create(
        "regression", slices=["city"], thresholds=[{"metric": "rmse", "max_increase": 0.1}]
    )
    report = evaluate_models(
        bundles["reg"], frame, "target", config, baseline=Baseline(note="first model")
    )
    page = render_evaluation_html(report)
    assert report.blessing.blessed and "first model" in report.blessing.note
    overall = page[page.index("<h2>Overall</h2>") : page.index("<h2>Slices</h2>")]
    assert "no baseline" in page and "baseline" not in overall
    assert "<h2>Curves</h2>" not in page and "Confusion" not in page
    assert len(_svgs(page)) == 1, "the slice bars only"


def test_an_explanation_is_drawn(
    bundles: dict[str, LoadedBundle], report: EvaluationReport
) -> None:
    explanation = explain_model(
        bundles["good"], _frame(), "y", top_k=1, n_repeats=2, ice_lines=5, grid_points=5
    )
    page = render_evaluation_html(report, explanation=explanation)
    section = page[page.index("<h2>Explanation</h2>") :]
    assert "Permutation importance" in section and "partial dependence" in section
    assert len(_svgs(section)) == 2
    kept = report.model_copy(update={"explanation": explanation})
    assert render_evaluation_html(kept) == page, "the report's own explanation by default"
    as_json = explanation.model_dump(mode="json")
    assert render_evaluation_html(report, explanation=as_json) == page
    assert isinstance(Explanation.model_validate(as_json), Explanation)


def test_the_evaluation_artifact_round_trips_with_identical_bytes(
    report: EvaluationReport, tmp_path: Path
) -> None:
    assert artifact_type_of(EvaluationReport) == "Evaluation"
    assert artifact_type_of(Blessing) == "Blessing"
    assert isinstance(materializer_for(EvaluationReport).get(), EvaluationMaterializer)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    props = EvaluationMaterializer().save(report, first)
    loaded = EvaluationMaterializer().load(first, EvaluationReport)
    assert loaded == report
    EvaluationMaterializer().save(loaded, second)
    for name in ("evaluation.json", "report.html"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert props["blessed"] is False and props["baseline_version"] == f"census:{EVIL}"
    assert props["failed_checks"] == len(report.blessing.failures) > 0
    assert props["metrics"]["roc_auc"] == report.candidate.overall["roc_auc"]


def test_the_blessing_artifact(report: EvaluationReport, tmp_path: Path) -> None:
    props = BlessingMaterializer().save(report.blessing, tmp_path)
    assert BlessingMaterializer().load(tmp_path, Blessing) == report.blessing
    assert props == {
        "blessed": False,
        "failed_checks": len(report.blessing.failures),
        "checks": len(report.blessing.reasons),
        "baseline_version": f"census:{EVIL}",
        "note": report.blessing.note,
    }
