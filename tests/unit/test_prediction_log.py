"""Prediction log and feedback store: buffering, partitioned append-only files, queries."""

from __future__ import annotations

import csv
import datetime as dt
import json
import threading
import uuid
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from conveyor.serving.feedback import Feedback, FeedbackStore
from conveyor.serving.prediction_log import (
    PREDICTION_SCHEMA,
    PredictionLog,
    PredictionRecord,
    connect,
    export,
    tail,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _rec(
    i: int, *, model: str = "m", when: dt.datetime | None = None, rid: str = ""
) -> PredictionRecord:
    return PredictionRecord(
        request_id=rid or f"r{i}",
        model=model,
        version="1",
        route="production",
        inputs={"x": [float(i), 2.0]},
        outputs={"y": [i % 2]},
        latency_ms=0.5 + i,
        time=when or T0 + dt.timedelta(seconds=i),
        protocol="v2",
    )


def _parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def _count(root: Path) -> int:
    con = duckdb.connect()
    return int(
        con.execute(
            f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
        ).fetchone()[0]  # type: ignore[index]
    )


# -- record / flush / close -------------------------------------------------------------------


def test_close_flushes_everything_and_nothing_before(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    log = PredictionLog(root, flush_interval_s=60)
    for i in range(10):
        log.record(_rec(i))
    assert log.pending == 10
    assert _parquet_files(root) == []  # record does no I/O
    log.close()
    assert log.pending == 0 and log.written == 10 and log.dropped == 0
    assert _count(root) == 10
    log.close()  # idempotent
    log.record(_rec(99))  # after close: counted as dropped, never raises
    assert log.dropped == 1


def test_background_flush_by_interval(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with PredictionLog(root, flush_interval_s=0.05) as log:
        log.record(_rec(1))
        for _ in range(200):
            if _parquet_files(root):
                break
            threading.Event().wait(0.02)
        assert len(_parquet_files(root)) == 1
        assert log.pending == 0


def test_background_flush_by_max_batch(tmp_path: Path) -> None:
    root = tmp_path / "p"
    with PredictionLog(root, flush_interval_s=60, max_batch=50) as log:
        for i in range(50):
            log.record(_rec(i))
        for _ in range(200):
            if log.written == 50:
                break
            threading.Event().wait(0.02)
        assert log.written == 50


def test_partitioning_layout_schema_and_atomic_names(tmp_path: Path) -> None:
    root = tmp_path / "p"
    day2 = dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    with PredictionLog(root, flush_interval_s=60) as log:
        log.record(_rec(1, model="alpha"))
        log.record(_rec(2, model="beta/v2 x"))
        log.record(_rec(3, model="alpha", when=day2))
        # a naive time counts as UTC; another zone is converted
        log.record(_rec(4, model="alpha", when=dt.datetime(2026, 3, 2, 5)))
        log.record(
            _rec(
                5,
                model="alpha",
                when=dt.datetime(2026, 3, 2, 1, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            )
        )
    dirs = sorted(str(p.parent.relative_to(root)) for p in _parquet_files(root))
    # one file per (date, model) per flush; record 5 is 2026-03-01 22:00 UTC
    assert len(dirs) == 3
    assert sorted(set(dirs)) == [
        "date=2026-03-01/model=alpha",
        "date=2026-03-01/model=beta%2Fv2%20x",
        "date=2026-03-02/model=alpha",
    ]
    for path in _parquet_files(root):
        assert path.name.startswith("part-") and not path.name.startswith(".")
        assert pq.read_schema(path).remove_metadata() == PREDICTION_SCHEMA
    assert not list(root.rglob("*.tmp"))
    con = connect(root)
    rows = con.execute(
        "SELECT request_id, model, date, time FROM predictions ORDER BY request_id"
    ).fetchall()
    assert [(r[0], r[1], r[2].isoformat()) for r in rows] == [
        ("r1", "alpha", "2026-03-01"),
        ("r2", "beta/v2 x", "2026-03-01"),
        ("r3", "alpha", "2026-03-02"),
        ("r4", "alpha", "2026-03-02"),
        ("r5", "alpha", "2026-03-01"),
    ]
    assert rows[3][3] == dt.datetime(2026, 3, 2, 5, tzinfo=UTC)
    assert rows[4][3] == dt.datetime(2026, 3, 1, 22, tzinfo=UTC)


def test_duckdb_query_over_many_files(tmp_path: Path) -> None:
    root = tmp_path / "p"
    log = PredictionLog(root, flush_interval_s=60)
    for flush in range(30):
        for j in range(10):
            i = flush * 10 + j
            log.record(_rec(i, model=f"m{i % 3}"))
        log.flush()
    log.close()
    assert len(_parquet_files(root)) == 30 * 3
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT model, count(*), count(DISTINCT request_id) FROM read_parquet("
        f"'{root}/**/*.parquet', hive_partitioning=true) GROUP BY model ORDER BY model"
    ).fetchall()
    assert rows == [("m0", 100, 100), ("m1", 100, 100), ("m2", 100, 100)]
    # JSON columns are queryable
    value = con.execute(
        f"SELECT json_extract(inputs, '$.x[0]')::DOUBLE FROM read_parquet('{root}/**/*.parquet') "
        "WHERE request_id = 'r7'"
    ).fetchone()
    assert value == (7.0,)


def test_json_encoding_of_awkward_values(tmp_path: Path) -> None:
    root = tmp_path / "p"
    circular: list[object] = []
    circular.append(circular)
    with PredictionLog(root) as log:
        log.record(
            PredictionRecord(
                "a",
                "m",
                "1",
                "r",
                {"x": np.arange(3), "b": b"hi", "t": T0},
                {"y": np.float32(0.5)},
                1.0,
                T0,
            )
        )
        log.record(PredictionRecord("b", "m", "1", "r", circular, None, 1.0, T0))
    rows = {r["request_id"]: r for r in tail(root, 10)}
    assert rows["a"]["inputs"] == {"x": [0, 1, 2], "b": "hi", "t": T0.isoformat()}
    assert rows["a"]["outputs"] == {"y": 0.5}
    assert isinstance(rows["b"]["inputs"], str)  # repr fallback, the record is kept
    assert rows["b"]["outputs"] is None


def test_thread_safety_many_writers(tmp_path: Path) -> None:
    root = tmp_path / "p"
    threads_n, per_thread = 8, 2000
    log = PredictionLog(root, flush_interval_s=0.01, max_batch=500)

    def work(t: int) -> None:
        for i in range(per_thread):
            log.record(_rec(i, rid=f"t{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert log.dropped == 0
    con = connect(root)
    total, distinct = con.execute(
        "SELECT count(*), count(DISTINCT request_id) FROM predictions"
    ).fetchone()  # type: ignore[misc]
    assert total == distinct == threads_n * per_thread
    assert log.files_written > 1


def test_bounded_buffer_drops_oldest_when_flushing_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log folder should be")
    log = PredictionLog(blocker / "p", flush_interval_s=0.02, max_batch=10, max_buffer=100)
    with caplog.at_level("WARNING", logger="conveyor.serving.prediction_log"):
        for i in range(250):
            log.record(_rec(i))
        for _ in range(200):
            if log.last_error is not None and "dropped" in caplog.text:
                break
            threading.Event().wait(0.02)
    assert log.pending == 100
    assert log.dropped == 150
    assert log.last_error is not None
    assert "dropped" in caplog.text
    # the newest 100 are kept; closing fails loudly since they cannot be written
    with pytest.raises(OSError):
        log.close()
    assert log.pending == 100


def test_failed_flush_requeues_and_recovers(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.parent.mkdir(exist_ok=True)
    root.write_text("blocked")
    log = PredictionLog(root, flush_interval_s=60)
    for i in range(5):
        log.record(_rec(i))
    with pytest.raises(OSError):
        log.flush()
    assert log.pending == 5 and log.dropped == 0
    root.unlink()
    log.close()
    assert _count(root) == 5


def test_stale_temp_files_are_invisible_and_swept(tmp_path: Path) -> None:
    root = tmp_path / "p"
    folder = root / "date=2026-03-01" / "model=m"
    folder.mkdir(parents=True)
    stale = folder / ".part-20260301T000000000000Z-999999999-0.parquet.tmp"
    stale.write_bytes(b"PAR1 half a file")
    with PredictionLog(root, flush_interval_s=0.01) as log:
        log.record(_rec(1))
    assert _count(root) == 1  # the half file was never visible to DuckDB
    assert not stale.exists()


def test_memory_filesystem_root() -> None:
    url = f"memory://conveyor-test-{uuid.uuid4().hex}/predictions"
    with PredictionLog(url, flush_interval_s=60) as log:
        log.record(_rec(1, model="a"))
        log.record(_rec(2, model="b"))
    fs = fsspec.filesystem("memory")
    files = fs.glob(url.removeprefix("memory://") + "/**/*.parquet")
    assert len(files) == 2
    assert [r["request_id"] for r in tail(url, 5)] == ["r1", "r2"]


# -- tail / export ----------------------------------------------------------------------------


def test_tail(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert tail(root) == []  # empty or missing log
    with PredictionLog(root) as log:
        for i in range(30):
            log.record(_rec(i, model="a" if i % 3 else "b"))
    rows = tail(root, 5)
    assert [r["request_id"] for r in rows] == ["r25", "r26", "r27", "r28", "r29"]
    assert rows[-1]["inputs"] == {"x": [29.0, 2.0]} and rows[-1]["outputs"] == {"y": [1]}
    assert rows[-1]["time"] == T0 + dt.timedelta(seconds=29)
    assert [r["request_id"] for r in log.tail(3, model="b")] == ["r21", "r24", "r27"]
    assert tail(root, 0) == []


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_formats_and_filters(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "p"
    with PredictionLog(root) as log:
        for i in range(20):
            log.record(_rec(i, model="a" if i % 2 else "b"))
    out = tmp_path / "out" / f"x.{fmt}"
    since, until = T0 + dt.timedelta(seconds=5), T0 + dt.timedelta(seconds=15)
    n = export(root, out, since=since, until=until, model="a", format=fmt)  # type: ignore[arg-type]
    expected = [f"r{i}" for i in range(5, 15) if i % 2]
    assert n == len(expected)
    if fmt == "parquet":
        ids = pq.read_table(out).column("request_id").to_pylist()
    elif fmt == "csv":
        with open(out, newline="") as handle:
            rows = list(csv.DictReader(handle))
        ids = [r["request_id"] for r in rows]
        assert json.loads(rows[0]["inputs"]) == {"x": [5.0, 2.0]}
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        ids = [r["request_id"] for r in lines]
        assert json.loads(lines[0]["inputs"]) == {"x": [5.0, 2.0]}
    assert ids == expected
    assert log.export(tmp_path / "all.parquet") == 20


def test_export_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        export(tmp_path, tmp_path / "x.xml", format="xml")  # type: ignore[arg-type]


# -- feedback ---------------------------------------------------------------------------------


def test_feedback_join_latest_wins_and_label_delay(tmp_path: Path) -> None:
    with PredictionLog(tmp_path / "predictions") as log:
        for i in range(6):
            log.record(_rec(i, model="a" if i < 4 else "b"))
    store = FeedbackStore(tmp_path)
    store.add("r0", 1, time=T0 + dt.timedelta(minutes=1))
    store.add("r0", 0, time=T0 + dt.timedelta(minutes=5))  # latest wins
    store.add("r0", 1, time=T0 + dt.timedelta(minutes=3))  # written later, but older
    assert (
        store.add_many(
            [
                Feedback("r1", {"cls": "x"}, T0 + dt.timedelta(hours=1)),
                {"request_id": "r4", "label": 7.5, "time": T0 + dt.timedelta(days=1)},
                ("r1", {"cls": "y"}, T0 + dt.timedelta(hours=1)),  # same time: write order
                ("unknown-id", 1),
            ]
        )
        == 4
    )
    # feedback is partitioned by date and never mixed into the prediction glob
    assert {p.parent.name for p in (tmp_path / "feedback").rglob("*.parquet")} == {
        "date=2026-03-01",
        "date=2026-03-02",
        f"date={dt.datetime.now(UTC):%Y-%m-%d}",
    }
    table = store.joined()
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["r0", "r1", "r4"]
    assert json.loads(rows["r0"]["label"]) == 0
    assert json.loads(rows["r1"]["label"]) == {"cls": "y"}
    assert rows["r0"]["label_delay_s"] == pytest.approx(300.0)
    assert rows["r4"]["label_delay_s"] == pytest.approx(86400.0 - 4)
    assert rows["r4"]["feedback_time"] == T0 + dt.timedelta(days=1)
    assert [r["request_id"] for r in store.joined(model="a").to_pylist()] == ["r0", "r1"]
    assert [
        r["request_id"] for r in store.joined(since=T0 + dt.timedelta(seconds=1)).to_pylist()
    ] == [
        "r1",
        "r4",
    ]
    left = store.joined(model="a", how="left").to_pylist()
    assert [r["request_id"] for r in left] == ["r0", "r1", "r2", "r3"]
    assert left[2]["label"] is None and left[2]["label_delay_s"] is None
    counts = store.sql("SELECT count(*) AS n FROM feedback").to_pylist()
    assert counts == [{"n": 7}]
    latest = store.sql("SELECT count(*) AS n FROM feedback_latest").to_pylist()
    assert latest == [{"n": 4}]


def test_feedback_empty_and_validation(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, predictions=tmp_path / "elsewhere")
    assert store.joined().num_rows == 0
    assert "label_delay_s" in store.joined().column_names
    with pytest.raises(ValueError):
        store.add("", 1)
    with pytest.raises(ValueError):
        store.add_many([{"label": 1}])
    with pytest.raises(TypeError):
        store.add_many([42])  # type: ignore[list-item]
    assert not (tmp_path / "feedback").exists()  # nothing half-written
    with PredictionLog(tmp_path / "elsewhere") as log:
        log.record(_rec(1))
    store.add("r1", "yes", time=dt.datetime(2026, 3, 1, 12, 0, 2))  # naive = UTC
    (row,) = store.joined().to_pylist()
    assert row["label_delay_s"] == pytest.approx(1.0)
