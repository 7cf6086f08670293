"""Reading the prediction log as rows: batches, shapes, route kinds and the feedback join.

Real Parquet files written by :class:`PredictionLog` and :class:`FeedbackStore`, read by
DuckDB through :class:`LogReader`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.monitoring import MonitoringError
from conveyor.monitoring.prediction_rows import InputColumn, LogReader
from conveyor.monitoring.row_arrays import RowArrays
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord

T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
INPUTS = [InputColumn("age", "number"), InputColumn("sex", "text"), InputColumn("ok", "bool")]


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Four requests of model m: a 3-row batch, a [rows, 1] shadow answer, a row without a
    version, and another model's row."""
    with PredictionLog(tmp_path / "predictions", durable=False) as log:
        log.record(
            PredictionRecord(
                "b1",
                "m",
                "1",
                "production",
                {
                    "age": np.array([30.0, np.nan, 50.0]),
                    "sex": np.array(["F", None, "M"], dtype=object),
                    "ok": np.array([True, False, True]),
                },
                {
                    "label": np.array([0, 1, 1]),
                    "probabilities": np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6]]),
                },
                3.0,
                time=_at(0),
            )
        )
        log.record(
            PredictionRecord(
                "s1",
                "m",
                "2",
                "production:shadow",
                {"age": np.array([[41]]), "sex": np.array([["M"]])},
                {"label": np.array([1]), "probabilities": np.array([[0.2, 0.8]])},
                5.0,
                time=_at(1),
            )
        )
        log.record(
            PredictionRecord(
                "n1", "m", None, "production", {"age": [7]}, {"prediction": [3.5]}, 2.0, time=_at(2)
            )
        )  # type: ignore[arg-type]
        log.record(
            PredictionRecord(
                "x1", "other", "1", "production", {"age": [1]}, {"label": [0]}, 1.0, time=_at(3)
            )
        )
    return tmp_path


def test_requests_are_unnested_into_typed_rows(root: Path) -> None:
    frame = LogReader(str(root)).rows("m", INPUTS, since=None, now=_at(60), classes=2)
    assert list(
        zip(frame["version"], frame["route_kind"], frame["request_id"], frame["row"], strict=True)
    ) == [
        ("", "served", "n1", 0),
        ("1", "served", "b1", 0),
        ("1", "served", "b1", 1),
        ("1", "served", "b1", 2),
        ("2", "shadow", "s1", 0),
    ]
    batch = frame[frame["request_id"] == "b1"]
    assert batch["in:age"].tolist()[0] == 30.0 and np.isnan(batch["in:age"].tolist()[1])
    assert batch["in:sex"].isna().tolist() == [False, True, False]
    assert batch["in:ok"].tolist() == [True, False, True]
    assert batch["out:label"].tolist() == ["0", "1", "1"]
    assert batch["out:p1"].tolist() == [0.1, 0.7, 0.6]
    shadow = frame[frame["request_id"] == "s1"].iloc[0]
    assert (shadow["in:age"], shadow["in:sex"], shadow["route"]) == (41.0, "M", "production:shadow")
    assert frame[frame["request_id"] == "n1"]["out:value"].tolist() == [3.5]
    arrays = RowArrays.from_frame(frame, INPUTS, 2)
    assert arrays.first.tolist() == [True, True, False, False, True]
    assert arrays.missing["sex"].tolist() == [True, False, True, False, False]


def test_window_offsets_count_rows_not_requests(root: Path) -> None:
    reader = LogReader(str(root))
    assert reader.rows_before("m", _at(1.5)) == {("1", "served"): 3, ("2", "shadow"): 1}
    assert reader.versions("m", _at(0.5), _at(60)) == ["", "2"]
    assert reader.first_time("m", ("2", "shadow"), _at(60)) == _at(1)
    assert reader.first_time("m", ("9", "served"), _at(60)) is None


def test_inputs_can_be_guessed_from_the_log(root: Path) -> None:
    assert LogReader(str(root)).input_columns("m", None, _at(60)) == [
        InputColumn("age", "number"),
        InputColumn("ok", "text"),
        InputColumn("sex", "text"),
    ]


def test_feedback_is_joined_per_row_latest_before_now_wins(root: Path) -> None:
    FeedbackStore(root, durable=False).add_many(
        [
            ("b1", [1, 0, 1], _at(10)),
            ("b1", [0, 0, 0], _at(100)),  # arrives after the "now" used below
            ("s1", 1, _at(10)),
            ("n1", [1, 2], _at(10)),  # two labels for a one-row request: unusable
        ]
    )
    reader = LogReader(str(root))
    frame = reader.rows("m", INPUTS, since=None, now=_at(60), classes=2)
    labels = dict(
        zip(frame["request_id"] + ":" + frame["row"].astype(str), frame["label"], strict=True)
    )
    assert [labels[f"b1:{i}"] for i in range(3)] == ["1", "0", "1"]
    assert labels["s1:0"] == "1" and pd.isna(labels["n1:0"])
    later = reader.rows("m", INPUTS, since=None, now=_at(200), classes=2)
    assert later[later["request_id"] == "b1"]["label"].tolist() == ["0", "0", "0"]


def test_since_and_now_bound_the_rows(root: Path) -> None:
    frame = LogReader(str(root)).rows("m", INPUTS, since=_at(1), now=_at(2))
    assert frame["request_id"].tolist() == ["s1"]


def test_an_empty_log_reads_as_no_rows(tmp_path: Path) -> None:
    reader = LogReader(str(tmp_path))
    assert reader.versions("m", None, _at(0)) == []
    assert reader.rows("m", INPUTS, since=None, now=_at(0)).empty


def test_an_unreadable_log_names_itself(tmp_path: Path) -> None:
    folder = tmp_path / "predictions" / "date=2026-03-02" / "model=m"
    folder.mkdir(parents=True)
    (folder / "part-broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MonitoringError, match=r"cannot read the prediction log .*predictions"):
        LogReader(str(tmp_path)).versions("m", None, _at(60))
