"""Monitor over the prediction log of a really trained, registered model.

One training pipeline runs per module (data -> statistics -> schema -> transform -> train ->
evaluate -> register), so each version reaches its training data, schema and evaluation data
through lineage. Traffic is answered by the real bundle and written through PredictionLog (or
a real uvicorn server); feedback through FeedbackStore (or ``POST /v1/feedback``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from conveyor.monitoring import AlertRule, Monitor, WindowResult, WindowSpec
from conveyor.registry import ModelRegistry
from conveyor.serving.app import create_app
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.server import BackgroundServer
from monitoring_support import (
    MODEL,
    T0,
    Trained,
    census_rows,
    train_census,
    write_feedback,
    write_log,
)
from serving_support import free_port, store_bundle

pytestmark = pytest.mark.slow

SIZE = 500
SHIFT_AT = 2250  # rows before the age shift: window 4 (rows 2000-2499) is the first to see it
ROWS = 3500
LATER = T0 + dt.timedelta(hours=3)
SLICES = ["sex", {"feature": "age", "buckets": [0, 40, 120]}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
            patch.delenv(name, raising=False)
        root = tmp_path_factory.mktemp("monitoring")
        patch.chdir(root)
        result = train_census(root)
    yield result
    result.workspace.close()


@dataclass
class Log:
    root: Path
    frame: pd.DataFrame
    truth: np.ndarray
    ids: list[str]


@pytest.fixture(scope="module")
def shifted(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Log:
    """3,500 one-row requests, one a second; age shifted by +15 from row 2,250. Three rows in
    five get their label ten minutes after the prediction."""
    root = tmp_path_factory.mktemp("shifted-log")
    before, truth_before = census_rows(SHIFT_AT, seed=11)
    after, truth_after = census_rows(ROWS - SHIFT_AT, seed=12, age_shift=15.0)
    frame = pd.concat([before, after], ignore_index=True)
    truth = np.concatenate([truth_before, truth_after])
    ids = write_log(root, trained.bundle, frame)
    labelled = [i for i in range(ROWS) if i % 5 < 3]
    write_feedback(
        root,
        [ids[i] for i in labelled],
        [int(truth[i]) for i in labelled],
        times=[T0 + dt.timedelta(seconds=i + 600) for i in labelled],
    )
    return Log(root, frame, truth, ids)


def _monitor(trained: Trained, log: Log | Path, **options: object) -> Monitor:
    root = log.root if isinstance(log, Log) else log
    options.setdefault("window", WindowSpec(size=SIZE))
    return Monitor(trained.workspace, log_root=str(root), **options)  # type: ignore[arg-type]


def _served(results: list[WindowResult]) -> list[WindowResult]:
    return [r for r in results if r.route_kind == "served"]


def test_drift_shows_in_the_first_window_after_the_shift_and_not_before(
    trained: Trained, shifted: Log
) -> None:
    results = _served(_monitor(trained, shifted).results(MODEL, now=LATER))
    assert [r.index for r in results] == list(range(7))
    assert all(r.complete and r.count == SIZE and r.version == 1 for r in results)
    for window in results:
        drifted = sorted(
            k for k, v in window.drift.items() if v.drifted and k != "prediction_drift"
        )
        expected = ["drift:age"] if window.index >= SHIFT_AT // SIZE else []
        assert drifted == expected, (window.index, window.metrics)
    verdict = results[5].drift["drift:age"]
    assert (verdict.method, verdict.threshold, verdict.source) == (
        "wasserstein",
        0.25,
        "schema drift",
    )
    assert results[5].metrics["drift:age"] > 1.0
    assert max(r.metrics[f"drift:{f}"] for r in results[:4] for f in ("age", "hours")) < 0.15
    assert results[0].reference["training_data"].startswith("a")
    assert results[0].reference["schema"].startswith("a")
    assert results[0].reference["prediction_reference"].startswith("predictions on a")
    assert results[0].metrics["prediction_drift"] < 0.1 < results[6].metrics["prediction_drift"]
    json.dumps([r.to_dict() for r in results])  # JSON-serialisable as it is


def _joined(root: Path) -> pd.DataFrame:
    """The labelled rows through FeedbackStore's own join (an independent reading path)."""
    table = FeedbackStore(root).joined(MODEL).to_pandas()
    table["index"] = table["request_id"].str[1:].astype(int)
    table["y_true"] = table["label"].map(json.loads)
    outputs = table["outputs"].map(json.loads)
    table["y_pred"] = outputs.map(lambda o: o["label"][0])
    table["score"] = outputs.map(lambda o: o["probabilities"][0][1])
    table["sex"] = table["inputs"].map(lambda i: json.loads(i)["sex"][0])
    table["age"] = table["inputs"].map(lambda i: json.loads(i)["age"][0])
    return table


def test_online_metrics_match_scikit_learn_overall_and_per_slice(
    trained: Trained, shifted: Log
) -> None:
    monitor = _monitor(
        trained, shifted, label_delay=dt.timedelta(minutes=30), slices=SLICES, min_coverage=0.3
    )
    results = _served(monitor.results(MODEL, now=LATER))
    joined = _joined(shifted.root)
    for window in results:
        rows = joined[(joined["index"] // SIZE) == window.index]
        assert window.metrics["feedback_coverage"] == pytest.approx(len(rows) / SIZE)
        assert window.metrics["accuracy"] == pytest.approx(
            accuracy_score(rows["y_true"], rows["y_pred"]), abs=1e-12
        )
        assert window.metrics["f1"] == pytest.approx(f1_score(rows["y_true"], rows["y_pred"]))
        assert window.metrics["roc_auc"] == pytest.approx(
            roc_auc_score(rows["y_true"], rows["score"])
        )
        women = rows[rows["sex"] == "Female"]
        assert window.metrics["accuracy[sex=Female]"] == pytest.approx(
            accuracy_score(women["y_true"], women["y_pred"])
        )
        young = rows[rows["age"] < 40]
        assert window.metrics["accuracy[age=[0, 40)]"] == pytest.approx(
            accuracy_score(young["y_true"], young["y_pred"])
        )


def test_performance_waits_for_the_label_delay_and_ignores_later_feedback(
    trained: Trained, shifted: Log
) -> None:
    now = T0 + dt.timedelta(seconds=4200)
    delayed = _monitor(trained, shifted, label_delay=dt.timedelta(minutes=30))
    results = _served(delayed.results(MODEL, now=now))
    for window in results:
        due = window.end + dt.timedelta(minutes=30) <= now
        assert (window.metrics["accuracy"] is not None) == due, window.index
        if not due:
            assert window.metrics["feedback_coverage"] is None
            assert "labels are due at" in window.notes["accuracy"]
    assert [r.index for r in results if r.metrics["accuracy"] is not None] == [0, 1, 2, 3]

    # Labels arrive 10 minutes after each prediction: at 2,100 s window 3 (rows 1,500-1,999)
    # has almost none of them yet, whatever the store holds today.
    early = _served(_monitor(trained, shifted).results(MODEL, now=T0 + dt.timedelta(seconds=2100)))
    assert early[0].metrics["feedback_coverage"] == pytest.approx(0.6)
    assert early[3].metrics["feedback_coverage"] < 0.01
    assert early[3].metrics["accuracy"] is None
    assert "below the minimum 50.0%" in early[3].notes["accuracy"]
    assert not early[4].complete and early[4].metrics == {"count": 100.0}


def test_since_keeps_window_numbers_and_values(trained: Trained, shifted: Log) -> None:
    monitor = _monitor(trained, shifted)
    everything = {r.index: r for r in _served(monitor.results(MODEL, now=LATER))}
    later = _served(monitor.results(MODEL, since=T0 + dt.timedelta(seconds=750), now=LATER))
    assert [r.index for r in later] == [2, 3, 4, 5, 6]  # window 1 began before since
    for window in later:
        assert window.metrics == pytest.approx(everything[window.index].metrics)


def test_a_moving_since_counts_only_the_rows_it_passed(
    trained: Trained, shifted: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = _monitor(trained, shifted)
    counted: list[tuple[dt.datetime, dt.datetime | None]] = []
    rows_before = monitor.reader.rows_before

    def spy(
        model: str, before: dt.datetime, since: dt.datetime | None = None
    ) -> dict[tuple[str, str], int]:
        counted.append((before, since))
        return rows_before(model, before, since=since)

    monkeypatch.setattr(monitor.reader, "rows_before", spy)
    first, second = T0 + dt.timedelta(seconds=750), T0 + dt.timedelta(seconds=1300)
    monitor.results(MODEL, since=first, now=LATER)
    moved = _served(monitor.results(MODEL, since=second, now=LATER))
    fresh = _served(_monitor(trained, shifted).results(MODEL, since=second, now=LATER))
    assert [r.index for r in moved] == [r.index for r in fresh] == [3, 4, 5, 6]
    for ours, theirs in zip(moved, fresh, strict=True):
        assert ours.metrics == pytest.approx(theirs.metrics)
    assert counted == [(first, None), (second, first)]  # the second poll counted 550 s only
    monitor.results(MODEL, since=first, now=LATER)  # back in time: counted afresh
    assert counted[-1] == (first, None)


def test_time_windows_are_aligned_to_the_epoch(trained: Trained, shifted: Log) -> None:
    monitor = _monitor(trained, shifted, window=WindowSpec(duration=dt.timedelta(minutes=10)))
    results = _served(monitor.results(MODEL, now=T0 + dt.timedelta(seconds=3550)))
    first = int(T0.timestamp()) // 600
    assert [r.index for r in results] == [first + k for k in range(6)]
    assert [r.start for r in results] == [T0 + dt.timedelta(minutes=10 * k) for k in range(6)]
    assert [r.count for r in results] == [600] * 5 + [500]
    assert [r.complete for r in results] == [True] * 5 + [False]
    assert "drift:age" not in results[-1].metrics


def test_rules_fire_on_consecutive_drifting_windows_once_per_cooldown(
    trained: Trained, shifted: Log
) -> None:
    rules = [
        AlertRule("age-drift", MODEL, "drift", feature="age", windows=2),
        AlertRule("any-drift", MODEL, "drift", feature="*", windows=4),
        AlertRule("scores", MODEL, "prediction_drift", threshold=0.2, windows=3),
        AlertRule("other", "another-model", "drift", feature="*"),
    ]
    results, alerts = _monitor(trained, shifted).check(MODEL, rules, {}, LATER)
    assert len(results) == 7
    fired = {a.rule: a for a in alerts}
    assert sorted(fired) == ["age-drift", "scores"]  # any-drift: only 3 windows drifted
    age = fired["age-drift"]
    assert (age.version, age.feature, age.threshold) == (1, "age", 0.25)
    assert age.window_start == results[4].start and age.window_end == results[6].end
    assert age.value == pytest.approx(results[6].metrics["drift:age"])
    assert age.details["run_length"] == 3 and age.fired_at == LATER
    assert "drift of 'age' of census version 1" in age.reason()

    recent = {"age-drift": LATER - dt.timedelta(minutes=5)}
    cooled = [AlertRule("age-drift", MODEL, "drift", feature="age", cooldown=dt.timedelta(hours=1))]
    assert _monitor(trained, shifted).check(MODEL, cooled, recent, LATER)[1] == []


def test_shadow_answers_are_a_series_of_their_own(trained: Trained, tmp_path: Path) -> None:
    frame, _ = census_rows(1200, seed=21)
    write_log(tmp_path, trained.bundle, frame.iloc[:1000], prefix="p")
    write_log(tmp_path, trained.bundle, frame.iloc[:600], prefix="s", route="production:shadow")
    write_log(
        tmp_path,
        trained.bundle,
        frame.iloc[1000:],
        prefix="c",
        route="canary",
        start=T0 + dt.timedelta(hours=1),
    )
    results = _monitor(trained, tmp_path).results(MODEL, now=LATER)
    series = [(r.route_kind, r.index, r.complete, r.count) for r in results]
    assert series == [
        ("served", 0, True, 500),
        ("served", 1, True, 500),
        ("served", 2, False, 200),
        ("shadow", 0, True, 500),
        ("shadow", 1, False, 100),
    ]
    assert results[3].routes == ("production:shadow",)
    assert results[2].routes == ("canary",)


def test_a_version_without_lineage_is_monitored_with_notes(
    trained: Trained, tmp_path: Path
) -> None:
    artifact_id, folder = store_bundle(trained.workspace, tmp_path / "bundle")
    ModelRegistry(trained.workspace).register("loose", artifact_id, require_blessing=False)
    from conveyor.modeling.bundle import load_bundle

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=1000),
            "n": rng.integers(0, 10, 1000),
            "city": rng.choice(["Lyon", "Paris", "Nice"], 1000),
        }
    )
    write_log(tmp_path, load_bundle(folder), frame, model="loose", batch=10)
    results = _monitor(trained, tmp_path, window=WindowSpec(size=250)).results("loose", now=LATER)
    assert [r.count for r in results] == [250] * 4
    first, second = results[0], results[1]
    assert "has no reachable training data" in first.notes["drift"]
    assert first.metrics["drift:x"] is None and first.metrics["missing_rate:x"] == 0.0
    assert first.metrics["requests"] == 25.0
    assert first.metrics["prediction_drift"] is None
    assert first.notes["prediction_drift"] == "this window is the prediction reference"
    assert second.metrics["prediction_drift"] is not None
    assert second.reference["prediction_reference"].startswith("the first complete window")
    assert first.inputs["city"]["distinct"] == 3 and first.inputs["x"]["count"] == 250

    # The fallback reference stays the version's first window when since hides it.
    later = _monitor(trained, tmp_path, window=WindowSpec(size=250)).results(
        "loose", since=results[2].start, now=LATER
    )
    assert [r.index for r in later] == [2, 3]
    assert later[0].metrics["prediction_drift"] == pytest.approx(
        results[2].metrics["prediction_drift"]
    )
    timed = WindowSpec(duration=dt.timedelta(seconds=30))
    whole = _monitor(trained, tmp_path, window=timed).results("loose", now=LATER)
    part = _monitor(trained, tmp_path, window=timed).results(
        "loose", since=T0 + dt.timedelta(seconds=30), now=LATER
    )
    assert [r.index for r in part] == [r.index for r in whole[1:]]
    assert whole[0].notes["prediction_drift"] == "this window is the prediction reference"
    assert part[0].metrics["prediction_drift"] == pytest.approx(
        whole[1].metrics["prediction_drift"]
    )


def test_a_version_missing_from_the_registry_still_gets_traffic_metrics(
    trained: Trained, tmp_path: Path
) -> None:
    frame, _ = census_rows(300, seed=5)
    write_log(tmp_path, trained.bundle, frame, version="7")
    (window,) = _monitor(trained, tmp_path, window=WindowSpec(size=300)).results(MODEL, now=LATER)
    assert window.version == 7 and window.count == 300
    assert "census:7 is not in the registry" in window.notes["drift"]
    assert window.inputs["age"]["mean"] == pytest.approx(frame["age"].mean())
    assert window.inputs["sex"]["top"]["Male"] == int((frame["sex"] == "Male").sum())
    assert "task is unknown" in window.notes["performance"]


def test_through_a_real_server_batches_and_feedback(trained: Trained) -> None:
    ws = trained.workspace
    frame, truth = census_rows(200, seed=31)
    app = create_app(
        ws,
        models=[MODEL],
        memory_budget_bytes=256 << 20,
        flush_interval_s=0.2,
        reload_interval_s=None,
    )
    with (
        BackgroundServer(app, port=free_port()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for k in range(4):
            part = frame.iloc[50 * k : 50 * (k + 1)]
            body = (
                {"instances": part.to_dict(orient="records")}
                if k % 2 == 0
                else {"inputs": {c: part[c].tolist() for c in part.columns}}
            )
            answer = client.post(
                f"/v1/models/{MODEL}:predict", json=body, headers={"X-Request-Id": f"srv{k}"}
            )
            assert answer.status_code == 200, answer.text
        labels = [
            {"request_id": f"srv{k}", "label": truth[50 * k : 50 * (k + 1)].tolist()}
            for k in range(3)
        ]
        stored = client.post("/v1/feedback", json={"feedback": labels})
        assert stored.status_code == 200, stored.text
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    monitor = Monitor(ws, window=WindowSpec(size=100))
    results = monitor.results(MODEL, since=now - dt.timedelta(hours=1), now=now)
    assert [(r.index, r.count, r.metrics["requests"]) for r in results] == [
        (0, 100, 2.0),
        (1, 100, 2.0),
    ]
    predicted = trained.bundle.predict(frame)
    assert results[0].metrics["accuracy"] == pytest.approx(
        accuracy_score(truth[:100], predicted[:100])
    )
    assert results[1].metrics["feedback_coverage"] == pytest.approx(0.5)
    assert results[1].metrics["accuracy"] == pytest.approx(
        accuracy_score(truth[100:150], predicted[100:150])
    )


def test_a_hundred_thousand_predictions_in_a_few_seconds(trained: Trained, tmp_path: Path) -> None:
    frame, truth = census_rows(100_000, seed=41)
    ids = write_log(tmp_path, trained.bundle, frame, step=dt.timedelta(milliseconds=20))
    write_feedback(tmp_path, ids[::2], truth[::2].tolist(), times=[T0] * len(ids[::2]))
    monitor = _monitor(trained, tmp_path, window=WindowSpec(size=1000), slices=SLICES)
    monitor.reference(MODEL, 1)  # the reference is looked up once per version; not timed
    began = time.perf_counter()
    results = monitor.results(MODEL, now=LATER)
    elapsed = time.perf_counter() - began
    print(f"\nmonitor: 100,000 predictions, 100 windows in {elapsed:.2f} s")
    assert len(results) == 100 and all(r.metrics["accuracy"] is not None for r in results)
    assert elapsed < 15.0
